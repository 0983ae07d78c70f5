"""Typed, frozen settings for one previz run (STYLE practices 3 and 14).

Built once from the user's choices (menu, headless flags) and passed down;
code below never reads a global or the editor for options.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bridge.client.settings import BridgeSettings  # shared with Blender and the CLI
from bridge.shot.request import GenerationSettings, SchedulingSettings
from bridge.shot.tags import safe_tag

from .mrq_exr import DepthDecoding, MotionEncoding

PASSES = ("depth", "motion", "pose")


@dataclass(frozen=True)
class PrevizSettings:
    """``shot`` defaults to the Level Sequence's name; ``version`` 0 means
    the next free version for that shot in ``content_path``."""

    project: str = "unreal"
    shot: str = ""
    version: int = 0
    width: int = 512
    height: int = 288
    passes: tuple[str, ...] = PASSES
    characters: tuple[str, ...] = ()           # actor labels; empty = every skeletal mesh bound in the sequence
    mapping_path: str = ""                     # "" = the shipped UE5 Manny mapping
    aspect_axis: str = "x"                     # keep horizontal FOV (Unreal's default axis constraint)
    near_clip_cm: float = 10.0
    far_clip_cm: float = 1.0e6
    depth: DepthDecoding = DepthDecoding()
    motion: MotionEncoding = MotionEncoding()
    work_folder: str = ""                      # "" = <Project>/Saved/Greenlight
    content_path: str = "/Game/Greenlight"     # where ImgMediaSource assets go
    bridge: BridgeSettings = BridgeSettings()
    generation: GenerationSettings = GenerationSettings()
    scheduling: SchedulingSettings = field(default_factory=SchedulingSettings)

    def __post_init__(self):
        unknown = set(self.passes) - set(PASSES)
        if unknown:
            raise ValueError(f"PrevizSettings.passes: unknown {sorted(unknown)}; valid: {PASSES}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"PrevizSettings: resolution must be positive, got {self.width}x{self.height}")
        if self.version < 0:
            raise ValueError(f"PrevizSettings.version must be >= 0 (0 = next), got {self.version}")


def tag_safe(name: str) -> str:
    """A Level Sequence name as a shot tag (letters, digits, '.', '_', '-'); "shot" when none is left."""
    return safe_tag(name, "shot")
