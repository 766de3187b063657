"""One module per CLI; ``scripts/<name>.py`` is a thin wrapper over ``commands/<name>.main``."""
