"""Errors a user sees: each says what happened and what to do. Internal detail goes to the log."""


class KbError(Exception):
    """An error with a message fit for the user. The CLI prints it without a traceback."""

    exit_code = 1


class ConfigError(KbError):
    exit_code = 2


class NotFound(KbError):
    exit_code = 3


class IntegrityError(KbError):
    """Sealed data failed authentication: tampered, truncated, wrong key or moved to another record."""

    exit_code = 4


class PermissionDenied(KbError):
    exit_code = 5
