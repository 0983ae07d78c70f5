"""Greenlight's errors: one hierarchy, mapped once to gRPC status codes.

    GreenlightError
    ├── InvalidArgumentError        INVALID_ARGUMENT   bad input; names the field
    │   └── ShotValidationError     (a Shot field)
    ├── LimitExceededError          RESOURCE_EXHAUSTED names the limit and value
    ├── NotFoundError               NOT_FOUND
    ├── UnauthenticatedError        UNAUTHENTICATED
    ├── PermissionDeniedError       PERMISSION_DENIED
    ├── PreconditionError           FAILED_PRECONDITION wrong state for the call
    ├── DeadlineExceededError       DEADLINE_EXCEEDED  too slow: an upload went idle, a call ran out of time
    ├── BackendError                INTERNAL           a backend failed a job
    ├── InternalError               INTERNAL           a bug in the bridge; the message names its log entry
    └── BridgeUnavailableError      UNAVAILABLE        the bridge cannot be reached

Messages are for people: they name the thing, the value seen and what was
expected. Codes are names (strings) so this module needs no grpc import (it
is vendored into the Blender add-on and the Unreal plugin).

Errors keep their type across the wire (STYLE practice 18): each class
names the attributes that travel with it (``wire_fields``), ``details()``
gives them as text, and ``GreenlightError.from_parts(reason, message,
metadata, code)`` rebuilds the same class with the same attributes. The gRPC
encoding lives in ``bridge/server/status.py`` and ``bridge/client/status.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import ClassVar

__all__ = [
    "GreenlightError",
    "InvalidArgumentError",
    "ShotValidationError",
    "LimitExceededError",
    "NotFoundError",
    "UnauthenticatedError",
    "PermissionDeniedError",
    "PreconditionError",
    "DeadlineExceededError",
    "BackendError",
    "InternalError",
    "BridgeUnavailableError",
    "error_for_code",
    "exit_code",
    "EXIT_OK",
    "EXIT_JOB_FAILED",
    "EXIT_BAD_INPUT",
    "EXIT_UNREACHABLE",
]


def _number(text: str):
    """A limit's value as sent: int if it reads as one, else float, else the text."""
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return text


def _text(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


class GreenlightError(Exception):
    """Base of every error Greenlight raises on purpose."""

    code = "UNKNOWN"
    #: attribute -> how to read its text form back; these travel with the error.
    wire_fields: ClassVar[Mapping[str, Callable[[str], object]]] = {}

    def details(self) -> dict[str, str]:
        """The attributes that travel with this error, as text (unset ones left out)."""
        out = {}
        for name in self.wire_fields:
            value = getattr(self, name, None)
            if value is not None:
                out[name] = _text(value)
        return out

    @staticmethod
    def from_parts(reason: str | None, message: str, metadata: Mapping[str, str] | None = None,
                   code: str | None = None) -> GreenlightError:
        """Rebuild an error from its class name, message and ``details()``.

        An unknown ``reason`` (an older or newer bridge, or a subclass defined
        outside this module) falls back to the class for ``code``; so does a
        known one whose code disagrees with ``code``. Fields the class does not
        declare are ignored; declared ones that did not arrive are None."""
        cls = _BY_NAME.get(reason or "")
        if cls is None or (code is not None and cls.code != code):
            cls = _BY_CODE.get(code or "", GreenlightError)
        err = cls.__new__(cls)
        Exception.__init__(err, message)
        metadata = metadata or {}
        for name, parse in cls.wire_fields.items():
            text = metadata.get(name)
            setattr(err, name, None if text is None else parse(text))
        if code is not None and code != cls.code:
            err.code = code   # a status this module has no class for, e.g. DEADLINE_EXCEEDED
        return err


class InvalidArgumentError(GreenlightError):
    """Bad input. ``field`` is the path of the offending field when the raiser
    knows it (``header.shot_sha256``); it is never parsed out of the message."""

    code = "INVALID_ARGUMENT"
    wire_fields = {"field": str}

    def __init__(self, message: str = "", *, field: str | None = None):
        super().__init__(message)
        self.field = field


class ShotValidationError(InvalidArgumentError):
    """A Shot field is wrong; ``field`` is its path, e.g. ``frames[3].depth_m``."""

    wire_fields = {"field": str, "detail": str}

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}", field=field)
        self.detail = message


class LimitExceededError(GreenlightError):
    code = "RESOURCE_EXHAUSTED"
    wire_fields = {"limit": str, "value": _number, "maximum": _number}

    def __init__(self, limit: str, value, maximum):
        super().__init__(f"{limit}: {value} exceeds the bridge's limit of {maximum}")
        self.limit = limit
        self.value = value
        self.maximum = maximum


class NotFoundError(GreenlightError):
    """``resource_type`` / ``resource_name`` (e.g. ``"job"``, the id) when the raiser gives them."""

    code = "NOT_FOUND"
    wire_fields = {"resource_type": str, "resource_name": str}

    def __init__(self, message: str = "", *, resource_type: str | None = None, resource_name: str | None = None):
        super().__init__(message)
        self.resource_type = resource_type
        self.resource_name = resource_name


class UnauthenticatedError(GreenlightError):
    code = "UNAUTHENTICATED"


class PermissionDeniedError(GreenlightError):
    code = "PERMISSION_DENIED"


class PreconditionError(GreenlightError):
    code = "FAILED_PRECONDITION"


class DeadlineExceededError(GreenlightError):
    """Something took too long: an upload that went silent past the bridge's
    ``upload_idle_timeout_s``, or a call past its deadline."""

    code = "DEADLINE_EXCEEDED"


class BackendError(GreenlightError):
    code = "INTERNAL"


class InternalError(GreenlightError):
    """An unexpected failure inside the bridge. The message carries a short
    id that names the log entry (with its traceback) and nothing else: no
    exception text or server path reaches the client. A status with code
    INTERNAL and no details arrives as ``BackendError``, the general class."""

    code = "INTERNAL"


class BridgeUnavailableError(GreenlightError):
    code = "UNAVAILABLE"


# Only this module's classes are rebuilt by name: a subclass defined elsewhere
# (CapacityError, ModelMissingError...) arrives as its nearest class here, by code.
_BY_NAME: dict[str, type[GreenlightError]] = {
    _name: globals()[_name] for _name in __all__
    if isinstance(globals().get(_name), type) and issubclass(globals()[_name], GreenlightError)
}
_BY_CODE: dict[str, type[GreenlightError]] = {}
for _cls in _BY_NAME.values():   # the first class per code is the general one
    _BY_CODE.setdefault(_cls.code, _cls)
del _cls


def error_for_code(code: str, message: str) -> GreenlightError:
    """The error for a status code name (``"NOT_FOUND"``) when nothing else is known."""
    return GreenlightError.from_parts(None, message, None, code)


# Exit codes of every command-line entry point (``greenlight``, the Blender
# and Unreal headless runs), by error class: never by message text.
EXIT_OK = 0
EXIT_JOB_FAILED = 1      # the job failed or was cancelled on the bridge
EXIT_BAD_INPUT = 2       # bad input, or the bridge refused the request
EXIT_UNREACHABLE = 3     # the bridge could not be reached


def exit_code(exc: BaseException) -> int:
    """The process exit code for an error that ended a command."""
    if isinstance(exc, BridgeUnavailableError):
        return EXIT_UNREACHABLE
    if isinstance(exc, BackendError):
        return EXIT_JOB_FAILED
    return EXIT_BAD_INPUT
