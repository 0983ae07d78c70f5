"""gRPC client shared by the Blender add-on, the Unreal plugin and the CLI
(grpcio + protobuf + numpy; no torch, no bpy).

The names below load on first use, so ``bridge.client.settings`` (and the
add-ons' engine-free modules that import it) load without grpcio.
"""

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:   # what type checkers see; at run time __getattr__ imports them
    from ..jobs.model import EventKind, FrameRecord, JobEvent, JobReport, JobStatus
    from .client import Accepted, BridgeClient, frame_name

_EXPORTS = {"Accepted": "client", "BridgeClient": "client", "frame_name": "client",
            "EventKind": "..jobs.model", "FrameRecord": "..jobs.model", "JobEvent": "..jobs.model",
            "JobReport": "..jobs.model", "JobStatus": "..jobs.model"}

__all__ = ["Accepted", "BridgeClient", "EventKind", "FrameRecord", "JobEvent", "JobReport", "JobStatus", "frame_name"]


def __getattr__(name: str):
    if name in _EXPORTS:
        module = _EXPORTS[name]
        value = getattr(import_module(module if module.startswith("..") else f".{module}", __name__), name)
    elif name in ("client", "events"):   # loaded with the package before; code reaches them as attributes
        value = import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
