"""gRPC client shared by the Blender add-on, the Unreal plugin and the CLI
(grpcio + protobuf + numpy; no torch, no bpy)."""

from .client import Accepted, BridgeClient, frame_name
from .events import EventKind, FrameEnergy, JobEvent, JobInfo

__all__ = ["Accepted", "BridgeClient", "EventKind", "FrameEnergy", "JobEvent", "JobInfo", "frame_name"]
