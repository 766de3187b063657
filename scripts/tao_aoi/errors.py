"""The one exception type that means "the user (or their data) must fix something".

Scripts turn it into a single stderr line and exit code 2; anything else is a bug (exit 1).
"""


class UserError(Exception):
    """Bad input or a failed gate. The message names the file/row/key and what to do."""


class HardStop(UserError):
    """A DEFT gate that must stop the run (leakage, allocation mismatch, silent drop, ...)."""


class SchemaViolation(ValueError):
    """Raised by the generated state-schema validators (``state/schema_validators.py``), with the
    signature of fastjsonschema's exception; ``state.schema_check`` turns it into a UserError."""

    def __init__(self, message: str, value: object = None, name: str | None = None, definition: object = None,
                 rule: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.name = name
        self.rule = rule


class DiskFull(HardStop):
    """An output could not be written: the file system holding it is full (ENOSPC) or over quota.
    Nothing was half-written (tao_aoi.atomic); freeing space and rerunning the same command resumes."""
