"""The one exception type users see: a clear message that names what is wrong and how to fix it."""


class MavisError(Exception):
    """A user-facing error. The command line prints its message on one line, no traceback."""
