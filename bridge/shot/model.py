"""The engine-free shot model: frozen dataclasses over numpy arrays.

Canonical space (DESIGN section 5): right-handed, Z-up, metres; cameras look
down local -Z with +Y up. Image space: origin top-left, x right, y down,
pixels. Field names carry their units.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from fractions import Fraction

import numpy as np

SENSOR_FITS = ("AUTO", "HORIZONTAL", "VERTICAL")
DEPTH_BACKGROUNDS = ("inf", "zero")


@dataclass(frozen=True)
class Tags:
    project: str
    shot: str
    version: int = 1

    @property
    def label(self) -> str:
        return f"{self.shot}/v{self.version:03d}"


@dataclass(frozen=True)
class Fps:
    """Frames per second as an exact fraction (24000/1001 is 23.976)."""

    numerator: int
    denominator: int = 1

    @property
    def value(self) -> float:
        return self.numerator / self.denominator

    @property
    def fraction(self) -> Fraction:
        return Fraction(self.numerator, self.denominator)

    @classmethod
    def parse(cls, text: str) -> Fps:
        """``"24"``, ``"24000/1001"`` or ``"23.976"`` (mapped to 24000/1001)."""
        text = text.strip()
        if "/" in text:
            num, den = text.split("/", 1)
            return cls(int(num), int(den))
        frac = Fraction(text)
        ntsc = {Fraction(23976, 1000): (24000, 1001), Fraction(2997, 100): (30000, 1001),
                Fraction(5994, 100): (60000, 1001)}
        if frac in ntsc:
            return cls(*ntsc[frac])
        frac = frac.limit_denominator(1001)
        return cls(frac.numerator, frac.denominator)


@dataclass(frozen=True, eq=False)
class CameraSample:
    """One camera sample. ``world_matrix`` is camera-to-world, 4x4, metres."""

    world_matrix: np.ndarray
    focal_length_mm: float
    sensor_width_mm: float = 36.0
    sensor_height_mm: float = 24.0
    sensor_fit: str = "AUTO"
    clip_start_m: float = 0.1
    clip_end_m: float = 1000.0
    focus_distance_m: float = 0.0

    def __eq__(self, other):
        if not isinstance(other, CameraSample):
            return NotImplemented
        return (
            np.array_equal(self.world_matrix, other.world_matrix)
            and (self.focal_length_mm, self.sensor_width_mm, self.sensor_height_mm,
                 self.sensor_fit, self.clip_start_m, self.clip_end_m, self.focus_distance_m)
            == (other.focal_length_mm, other.sensor_width_mm, other.sensor_height_mm,
                other.sensor_fit, other.clip_start_m, other.clip_end_m, other.focus_distance_m)
        )

    @property
    def position_m(self) -> np.ndarray:
        return np.asarray(self.world_matrix)[:3, 3]


@dataclass(frozen=True, eq=False)
class CharacterPose:
    """COCO-18 keypoints of one character (order in ``bridge.shot.coco``).

    ``keypoints_px`` float32 [18, 2] image pixels; ``visibility`` uint8 [18]:
    0 absent (unmapped / behind camera / outside frame), 1 occluded, 2 visible.
    """

    name: str
    keypoints_px: np.ndarray
    visibility: np.ndarray

    def __eq__(self, other):
        if not isinstance(other, CharacterPose):
            return NotImplemented
        return (self.name == other.name
                and _arrays_equal(self.keypoints_px, other.keypoints_px)
                and _arrays_equal(self.visibility, other.visibility))


@dataclass(frozen=True, eq=False)
class Frame:
    """Everything the engine produced for one frame (index from shot start).

    ``depth_m``: float32/16 [H, W] planar metres. ``motion_px``: float16/32
    [H, W, 2] forward flow (dx right, dy down) to the next frame.
    """

    index: int
    camera: CameraSample
    depth_m: np.ndarray | None = None
    motion_px: np.ndarray | None = None
    poses: tuple[CharacterPose, ...] = ()
    normals: np.ndarray | None = None
    mask: np.ndarray | None = None

    ARRAY_FIELDS = ("depth_m", "motion_px", "normals", "mask")

    def __eq__(self, other):
        if not isinstance(other, Frame):
            return NotImplemented
        return (
            self.index == other.index
            and self.camera == other.camera
            and all(_arrays_equal(getattr(self, f), getattr(other, f)) for f in self.ARRAY_FIELDS)
            and tuple(self.poses) == tuple(other.poses)
        )


@dataclass(frozen=True, eq=False)
class Shot:
    """A shot as sampled from the engine: the self-contained render request input."""

    tags: Tags
    fps: Fps
    width: int
    height: int
    frames: tuple[Frame, ...]
    frame_start: int = 1
    depth_background: str = "inf"
    pass_methods: Mapping[str, str] = field(default_factory=dict)
    source: str = ""

    @property
    def frame_count(self) -> int:
        return len(self.frames)

    @property
    def duration_s(self) -> float:
        return self.frame_count * self.fps.denominator / self.fps.numerator

    @property
    def camera_path(self) -> np.ndarray:
        """[N, 4, 4] camera-to-world matrices."""
        return np.stack([np.asarray(f.camera.world_matrix, dtype=np.float64) for f in self.frames])

    @property
    def passes(self) -> tuple[str, ...]:
        """Passes present on every frame ("depth", "motion", "pose", ...)."""
        names = []
        for name, attr in (("depth", "depth_m"), ("motion", "motion_px"),
                           ("normals", "normals"), ("mask", "mask")):
            if self.frames and all(getattr(f, attr) is not None for f in self.frames):
                names.append(name)
        if self.frames and any(f.poses for f in self.frames):
            names.append("pose")
        return tuple(names)

    @property
    def nbytes(self) -> int:
        total = 0
        for f in self.frames:
            for name in Frame.ARRAY_FIELDS:
                arr = getattr(f, name)
                if arr is not None:
                    total += arr.nbytes
        return total

    def with_tags(self, **changes) -> Shot:
        return replace(self, tags=replace(self.tags, **changes))

    def __eq__(self, other):
        if not isinstance(other, Shot):
            return NotImplemented
        return (
            (self.tags, self.fps, self.width, self.height, self.frame_start,
             self.depth_background, dict(self.pass_methods), self.source)
            == (other.tags, other.fps, other.width, other.height, other.frame_start,
                other.depth_background, dict(other.pass_methods), other.source)
            and tuple(self.frames) == tuple(other.frames)
        )


@dataclass(frozen=True)
class ShotOutline:
    """What admitting a shot needs to know about it, without its pass arrays:
    built while a stored upload is scanned frame by frame
    (``bridge.shot.stream_check``). Has the attributes of ``Shot`` that the
    checks and estimates read (tags, fps, size, frame count, passes)."""

    tags: Tags
    fps: Fps
    width: int
    height: int
    frame_count: int
    passes: tuple[str, ...]
    frame_start: int = 1
    depth_background: str = "inf"
    pass_methods: Mapping[str, str] = field(default_factory=dict)
    source: str = ""

    @property
    def duration_s(self) -> float:
        return self.frame_count * self.fps.denominator / self.fps.numerator

    @classmethod
    def of(cls, shot: Shot) -> ShotOutline:
        return cls(tags=shot.tags, fps=shot.fps, width=shot.width, height=shot.height,
                   frame_count=shot.frame_count, passes=shot.passes, frame_start=shot.frame_start,
                   depth_background=shot.depth_background, pass_methods=dict(shot.pass_methods),
                   source=shot.source)


def _arrays_equal(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    a = np.asarray(a)
    b = np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
