"""The one error class of the harness."""


class HarnessError(Exception):
    """An error the user can act on. The CLI prints it as one line, without a traceback
    (exit code 2)."""
