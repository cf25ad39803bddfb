"""User-facing errors: bad input is reported in one line with exit code 2."""


class UserError(Exception):
    """Bad user input (file, field, value). The CLI prints it on one line and exits with code 2.

    Raise it BEFORE any expensive work starts and before anything is written.
    """

    exit_code = 2
