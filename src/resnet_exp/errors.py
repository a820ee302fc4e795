"""Errors a user can cause; the CLI prints them as one line instead of a traceback."""


class UserError(Exception):
    """A problem the user can fix; the message names the bad value and what is accepted."""


class ConfigError(UserError, ValueError):
    """A configuration value outside what the code accepts."""


class DataError(UserError):
    """A data folder or file that is missing, incomplete or corrupt."""


class CheckpointError(UserError):
    """A checkpoint that cannot be read or does not match the run."""
