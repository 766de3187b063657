"""The one exception type that means "the user (or their data) must fix something".

Scripts turn it into a single stderr line and exit code 2; anything else is a bug (exit 1).
"""


class UserError(Exception):
    """Bad input or a failed gate. The message names the file/row/key and what to do."""


class HardStop(UserError):
    """A DEFT gate that must stop the run (leakage, allocation mismatch, silent drop, ...)."""
