"""Greenlight's errors: one hierarchy, mapped once to gRPC status codes.

    GreenlightError
    ├── InvalidArgumentError        INVALID_ARGUMENT   bad input; names the field
    │   └── ShotValidationError     (a Shot field)
    ├── LimitExceededError          RESOURCE_EXHAUSTED names the limit and value
    ├── NotFoundError               NOT_FOUND
    ├── UnauthenticatedError        UNAUTHENTICATED
    ├── PermissionDeniedError       PERMISSION_DENIED
    ├── PreconditionError           FAILED_PRECONDITION wrong state for the call
    ├── BackendError                INTERNAL           a backend failed a job
    └── BridgeUnavailableError      UNAVAILABLE        the bridge cannot be reached

Messages are for people: they name the thing, the value seen and what was
expected. Codes are names (strings) so this module needs no grpc import.
"""

from __future__ import annotations

__all__ = [
    "GreenlightError",
    "InvalidArgumentError",
    "ShotValidationError",
    "LimitExceededError",
    "NotFoundError",
    "UnauthenticatedError",
    "PermissionDeniedError",
    "PreconditionError",
    "BackendError",
    "BridgeUnavailableError",
    "error_for_code",
]


class GreenlightError(Exception):
    """Base of every error Greenlight raises on purpose."""

    code = "UNKNOWN"


class InvalidArgumentError(GreenlightError):
    code = "INVALID_ARGUMENT"


class ShotValidationError(InvalidArgumentError):
    """A Shot field is wrong; ``field`` is its path, e.g. ``frames[3].depth_m``."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.detail = message


class LimitExceededError(GreenlightError):
    code = "RESOURCE_EXHAUSTED"

    def __init__(self, limit: str, value, maximum):
        super().__init__(f"{limit}: {value} exceeds the bridge's limit of {maximum}")
        self.limit = limit
        self.value = value
        self.maximum = maximum


class NotFoundError(GreenlightError):
    code = "NOT_FOUND"


class UnauthenticatedError(GreenlightError):
    code = "UNAUTHENTICATED"


class PermissionDeniedError(GreenlightError):
    code = "PERMISSION_DENIED"


class PreconditionError(GreenlightError):
    code = "FAILED_PRECONDITION"


class BackendError(GreenlightError):
    code = "INTERNAL"


class BridgeUnavailableError(GreenlightError):
    code = "UNAVAILABLE"


_BY_CODE = {
    cls.code: cls
    for cls in (
        InvalidArgumentError,
        LimitExceededError,
        NotFoundError,
        UnauthenticatedError,
        PermissionDeniedError,
        PreconditionError,
        BackendError,
        BridgeUnavailableError,
    )
}


def error_for_code(code: str, message: str) -> GreenlightError:
    """The client-side error for a status code name (``"NOT_FOUND"``)."""
    cls = _BY_CODE.get(code, GreenlightError)
    err = GreenlightError.__new__(cls)
    Exception.__init__(err, message)
    err.code = code
    return err
