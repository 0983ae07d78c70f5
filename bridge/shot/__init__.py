"""Engine-free shot model: cameras, passes, poses, validation and I/O.

Imports numpy only (protobuf in ``bridge.shot.wire``); never torch, bpy, grpc
or unreal, so both add-ons vendor it unchanged.
"""

from .model import CameraSample, CharacterPose, Fps, Frame, Shot, Tags
from .validation import ShotLimits, validate_shot

__all__ = ["CameraSample", "CharacterPose", "Fps", "Frame", "Shot", "Tags", "ShotLimits", "validate_shot"]
