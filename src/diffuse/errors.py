"""The user-facing error type: the CLI prints its message as one line, with no traceback."""


class UserError(Exception):
    """Bad input from the user (a path, a flag value, a checkpoint): the message says what and how to fix it."""
