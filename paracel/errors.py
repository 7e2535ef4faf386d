"""The project's exception classes.

Two families matter to the launcher: a :class:`UserError` is the user's to fix
(a bad job file, a missing input, a malformed line) and is printed as one line
with exit status 2; anything else is a bug or a failure and is printed with
its traceback, ending the whole job with status 1.
"""


class ParacelError(Exception):
    """Base class of every error the project raises on purpose."""


class UserError(ParacelError):
    """Something the user can fix; reported as one clear message, exit 2."""


class ConfigError(UserError):
    """A job file or command-line option is wrong; the message names the key."""


class DataError(UserError):
    """An input file is missing, unreadable or malformed; names file and line."""


class CheckpointError(UserError):
    """A checkpoint is missing, damaged, or not of this job; names the folder
    or file and what is wrong."""


class RemoteError(ParacelError):
    """A server failed to carry out a request (for example an update function
    raised); the message carries the server's traceback."""
