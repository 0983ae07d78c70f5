"""Greenlight errors as rich gRPC statuses (STYLE practice 18), server side.

Every ``GreenlightError`` leaves the bridge as its status code and message
plus a ``google.rpc.Status`` in the ``grpc-status-details-bin`` trailer:

- ``ErrorInfo``: reason = the error's class name, domain ``greenlight.v1``,
  metadata = its ``details()`` (the attributes the class sends, as text);
  ``bridge/client/status.py`` rebuilds the same class from it;
- for generic gRPC tooling, the standard detail of its kind: ``QuotaFailure``
  (LimitExceededError: subject = the limit), ``BadRequest`` (an
  InvalidArgumentError that names its field), ``PreconditionFailure``
  (PreconditionError) and ``ResourceInfo`` (a NotFoundError that names the
  resource).

The details repeat only what the message and the error's own fields say:
no server path or exception text is added.
"""

from __future__ import annotations

import collections
import urllib.parse
from typing import NoReturn

import grpc
import grpc.aio
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from ..errors import GreenlightError, InvalidArgumentError, LimitExceededError, NotFoundError, PreconditionError

DOMAIN = "greenlight.v1"
# grpc-message and grpc-status-details-bin share the peer's metadata limit
# (8 KiB by default; past it the call fails with RESOURCE_EXHAUSTED, a wrong
# type). Over this budget the standard details are dropped, then the rich
# status altogether: the client then rebuilds the class for the code.
MAX_TRAILER_BYTES = 4096


class _Status(collections.namedtuple("_Status", ("code", "details", "trailing_metadata")), grpc.Status):
    pass


def status_code(exc: GreenlightError) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, exc.code, grpc.StatusCode.UNKNOWN)


def rich_status(exc: GreenlightError) -> status_pb2.Status | None:
    """The ``google.rpc.Status`` for ``exc``; None when even ErrorInfo does
    not fit ``MAX_TRAILER_BYTES`` beside the message."""
    code = status_code(exc)
    message = str(exc)
    room = MAX_TRAILER_BYTES - len(urllib.parse.quote(message, safe=_UNESCAPED))   # grpc-message, as sent
    info = error_details_pb2.ErrorInfo(reason=type(exc).__name__, domain=DOMAIN, metadata=exc.details())
    for details in ([info, *_standard_details(exc, message)], [info]):
        status = status_pb2.Status(code=code.value[0], message=message)
        for detail in details:
            status.details.add().Pack(detail)
        if status.ByteSize() <= room:
            return status
    return None


def to_status(exc: GreenlightError) -> grpc.Status:
    """What ``context.abort_with_status`` takes: code, message and (when it
    fits) the rich status in the ``grpc-status-details-bin`` trailer."""
    status = rich_status(exc)
    if status is None:
        return _Status(status_code(exc), str(exc), ())
    return rpc_status.to_status(status)


def abort(context: grpc.ServicerContext, exc: GreenlightError):
    """End the RPC with ``exc`` (raises, like ``context.abort``)."""
    context.abort_with_status(to_status(exc))


async def abort_async(context: grpc.aio.ServicerContext, exc: GreenlightError) -> NoReturn:
    """``abort`` for grpc.aio handlers (raises ``grpc.aio.AbortError``)."""
    status = to_status(exc)
    await context.abort(status.code, status.details, status.trailing_metadata)
    raise AssertionError("unreachable: abort raises")


# printable ASCII but '%' travels as is in grpc-message; the rest as %XX per byte
_UNESCAPED = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def _standard_details(exc: GreenlightError, message: str) -> list:
    # getattr: subclasses defined elsewhere may skip their parent's __init__
    if isinstance(exc, LimitExceededError):
        return [error_details_pb2.QuotaFailure(violations=[error_details_pb2.QuotaFailure.Violation(
            subject=getattr(exc, "limit", None) or "", description=message)])]
    field = getattr(exc, "field", None)
    if isinstance(exc, InvalidArgumentError) and field:
        return [error_details_pb2.BadRequest(field_violations=[error_details_pb2.BadRequest.FieldViolation(
            field=field, description=getattr(exc, "detail", None) or message)])]
    if isinstance(exc, PreconditionError):
        return [error_details_pb2.PreconditionFailure(violations=[error_details_pb2.PreconditionFailure.Violation(
            type=type(exc).__name__, description=message)])]
    resource_type, resource_name = getattr(exc, "resource_type", None), getattr(exc, "resource_name", None)
    if isinstance(exc, NotFoundError) and (resource_type or resource_name):
        return [error_details_pb2.ResourceInfo(resource_type=resource_type or "", resource_name=resource_name or "",
                                               description=message)]
    return []
