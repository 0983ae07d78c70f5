"""Rebuild the bridge's typed errors from a gRPC status, client side.

The bridge sends a ``google.rpc.Status`` in the ``grpc-status-details-bin``
trailer (``bridge/server/status.py``); its ``ErrorInfo`` names the error
class and carries its fields. Decoded here with ``googleapis-common-protos``
and protobuf alone (no ``grpcio-status``: one wheel less in the Blender
add-on and the Unreal plugin). A status without usable details (an older
bridge, a proxy) still gives the class for its code.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from ..errors import GreenlightError

DOMAIN = "greenlight.v1"
DETAILS_KEY = "grpc-status-details-bin"


def error_from_status(code: grpc.StatusCode, message: str,
                      trailing_metadata: Iterable[tuple[str, Any]] | None) -> GreenlightError:
    """The ``GreenlightError`` subclass the bridge raised, with its fields."""
    reason, fields = None, {}
    info = _error_info(code, trailing_metadata)
    if info is not None:
        reason, fields = info.reason, dict(info.metadata)
    return GreenlightError.from_parts(reason, message or code.name, fields, code.name)


def error_from_rpc(exc: grpc.RpcError) -> GreenlightError:
    """``error_from_status`` for a failed call (unary or streaming)."""
    code = (exc.code() if callable(getattr(exc, "code", None)) else None) or grpc.StatusCode.UNKNOWN
    details = exc.details() if callable(getattr(exc, "details", None)) else ""
    trailers = (cast("list[tuple[str, Any]]", list(exc.trailing_metadata() or ()))   # grpc's stub types them loosely
                if callable(getattr(exc, "trailing_metadata", None)) else None)
    return error_from_status(code, details or "", trailers)


def _error_info(code: grpc.StatusCode, trailing_metadata) -> error_details_pb2.ErrorInfo | None:
    for key, value in trailing_metadata or ():
        if key != DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status()
        try:
            status.ParseFromString(value)
        except DecodeError:
            return None
        if status.code != code.value[0]:
            return None   # rewritten on the way (a proxy): trust the code
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info) and info.domain == DOMAIN:     # False for other detail types
                return info
        return None
    return None
