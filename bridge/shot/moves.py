"""Camera-move vocabulary as code: shot sizes and moves become camera paths.

Engine-free (numpy only), shared by both add-ons and the storyboard tools.
Canonical space (DESIGN section 5): Z-up, metres, cameras look down local -Z.

A shot is framed on one or more ``Figure`` s standing on the floor (feet at
``position_m``, top of the head at ``position_m.z + height_m``):

- ``frame_shot(size, figures, ...)`` places the camera for the shot's *size*
  (``FRAMINGS``: which band of the body fills how much of the frame, with
  which lens) and returns a ``Framed`` (camera, target, distance);
- ``camera_path(framed, move, frame_count, ...)`` turns it into one
  ``CameraSample`` per frame for the *move* (``DEFAULT_AMOUNTS`` gives each
  move's default amount and unit), eased in/out;
- ``check_framing(shot_id, framed, path, ...)`` is the framing gate: it
  projects the parts the size promises (every figure's head; for wide and
  medium the framed body band too; for an insert its prop) on every frame
  and raises ``FramingError`` naming the shot, the frame and the part that
  would be cropped;
- ``shot_camera(...)`` does all three.

The framed size is the move's tightest moment: a dolly-in or zoom ends on
it, a dolly-out starts on it, the other moves sweep symmetrically about it.
Figures stand still during a shot (blocking moves them between shots).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

import numpy as np

from ..errors import InvalidArgumentError
from .camera import focal_length_px, look_at, project
from .model import CameraSample

__all__ = [
    "ShotSize", "CameraMove", "Ease", "Figure", "Framing", "FRAMINGS", "DEFAULT_AMOUNTS", "MOVE_UNITS",
    "Framed", "FramingError", "frame_shot", "camera_path", "check_framing", "framing_violations", "shot_camera",
    "ease_curve", "default_view_dir",
]


class ShotSize(StrEnum):
    WIDE = "wide"
    MEDIUM = "medium"
    CLOSE_UP = "close-up"
    OVER_THE_SHOULDER = "over-the-shoulder"
    INSERT = "insert"


class CameraMove(StrEnum):
    STATIC = "static"
    PAN = "pan"
    TILT = "tilt"
    DOLLY_IN = "dolly-in"
    DOLLY_OUT = "dolly-out"
    TRUCK = "truck"
    CRANE = "crane"
    ORBIT = "orbit"
    ZOOM = "zoom"


class Ease(StrEnum):
    LINEAR = "linear"
    IN = "in"           # starts slowly
    OUT = "out"         # ends slowly
    IN_OUT = "in-out"   # both (smoothstep)


# Body landmarks as fractions of the figure's height (top of head = 1.0).
HEAD_CENTRE = 0.935
HEAD_RADIUS = 0.065          # about 11 cm on a 1.75 m figure
SHOULDER_HALF_WIDTH = 0.13   # about 23 cm
HANDS = 0.55                 # where an insert's prop is held, in front of the body
PROP_REACH_M = 0.35
PROP_HALF_SIZE_M = 0.08


@dataclass(frozen=True)
class Figure:
    """A character as the camera sees it: feet at ``position_m`` (x, y, z
    metres), facing ``facing_rad`` (yaw from +X toward +Y), top of the head
    ``height_m`` above the feet (a seated figure is shorter)."""

    name: str
    position_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    facing_rad: float = -math.pi / 2
    height_m: float = 1.75

    def __post_init__(self):
        if not (math.isfinite(self.height_m) and 0.3 <= self.height_m <= 3.0):
            raise InvalidArgumentError(f"figure {self.name!r}: height_m {self.height_m!r} is not between 0.3 and 3.0",
                                       field="height_m")

    @property
    def front(self) -> np.ndarray:
        return np.array([math.cos(self.facing_rad), math.sin(self.facing_rad), 0.0])

    def point(self, fraction: float) -> np.ndarray:
        """The point on the figure's vertical axis at ``fraction`` of its height."""
        p = np.asarray(self.position_m, dtype=np.float64).copy()
        p[2] += fraction * self.height_m
        return p

    @property
    def head_centre_m(self) -> np.ndarray:
        return self.point(HEAD_CENTRE)

    @property
    def head_radius_m(self) -> float:
        return HEAD_RADIUS * self.height_m

    @property
    def prop_m(self) -> np.ndarray:
        """Where an insert's prop sits by default: in the hands, in front of the body."""
        return self.point(HANDS) + self.front * PROP_REACH_M


@dataclass(frozen=True)
class Framing:
    """How a size frames its subject: the body band from ``band[0]`` to
    ``band[1]`` (fractions of height) fills ``fill`` of the frame height,
    seen through ``lens_mm`` (over-the-shoulder picks its lens from the
    distance instead). ``promises_band``: the whole band must stay in frame,
    not just the head."""

    band: tuple[float, float]
    fill: float
    lens_mm: float
    promises_band: bool
    description: str


FRAMINGS: dict[ShotSize, Framing] = {
    ShotSize.WIDE: Framing((0.0, 1.0), 0.5, 24.0, True, "feet to head at half the frame height, set around"),
    ShotSize.MEDIUM: Framing((0.6, 1.0), 0.8, 35.0, True, "mid-torso to just above the head"),
    ShotSize.CLOSE_UP: Framing((0.78, 1.0), 0.7, 50.0, False, "shoulders to the top of the head"),
    ShotSize.OVER_THE_SHOULDER: Framing((0.7, 1.0), 0.7, 50.0, False,
                                        "the speaker chest-up, past the listener's shoulder"),
    ShotSize.INSERT: Framing((0.0, 0.0), 0.6, 50.0, False, "a 30 cm detail (the prop in the hands)"),
}
INSERT_FIELD_M = 0.3                  # the visible height an insert's detail fills ``fill`` of
INSERT_ELEVATION_RAD = math.radians(35)
OTS_BEHIND_M = 0.5                    # camera this far behind the listener...
OTS_ASIDE_M = 0.35                    # ...and this far to the camera side of the line between them
OTS_EYE = 0.92                        # ...at this fraction of the listener's height
LENS_RANGE_MM = (12.0, 200.0)
GROUP_FILL_WIDTH = 0.7                # a group fills at most this share of the frame width

# amount per move and its unit; "x distance" amounts scale with the framing distance
DEFAULT_AMOUNTS: dict[CameraMove, float] = {
    CameraMove.STATIC: 0.0,
    CameraMove.PAN: 8.0,
    CameraMove.TILT: 4.0,
    CameraMove.DOLLY_IN: 0.25,
    CameraMove.DOLLY_OUT: 0.25,
    CameraMove.TRUCK: 0.25,
    CameraMove.CRANE: 0.25,
    CameraMove.ORBIT: 30.0,
    CameraMove.ZOOM: 1.25,
}
MOVE_UNITS: dict[CameraMove, str] = {
    CameraMove.STATIC: "none",
    CameraMove.PAN: "degrees of yaw, swept about the framing",
    CameraMove.TILT: "degrees of pitch, swept about the framing",
    CameraMove.DOLLY_IN: "metres toward the target, ending on the framing",
    CameraMove.DOLLY_OUT: "metres away from the target, starting on the framing",
    CameraMove.TRUCK: "metres sideways, swept about the framing (no re-aim)",
    CameraMove.CRANE: "metres up, swept about the framing, re-aimed at the target",
    CameraMove.ORBIT: "degrees around the target's vertical axis, re-aimed",
    CameraMove.ZOOM: "focal-length ratio, zooming in to end on the framing",
}
_DISTANCE_SCALED = {CameraMove.DOLLY_IN, CameraMove.DOLLY_OUT, CameraMove.TRUCK, CameraMove.CRANE}


class FramingError(InvalidArgumentError):
    """The framing gate refused a shot: ``shot`` would crop ``part`` on ``frame``."""

    wire_fields = {"field": str, "shot": str, "part": str, "frame": int}

    def __init__(self, message: str, *, shot: str, part: str = "", frame: int | None = None):
        super().__init__(message, field="camera")
        self.shot = shot
        self.part = part
        self.frame = frame


@dataclass(frozen=True)
class Framed:
    """A shot's camera at its framed size, before any move."""

    size: ShotSize
    figures: tuple[Figure, ...]
    camera: CameraSample
    target_m: np.ndarray
    distance_m: float
    width: int
    height: int
    over: Figure | None = None
    prop_m: np.ndarray | None = None


def ease_curve(ease: Ease | str, t: float) -> float:
    t = min(1.0, max(0.0, t))
    ease = Ease(ease)
    if ease is Ease.IN:
        return t * t
    if ease is Ease.OUT:
        return 1.0 - (1.0 - t) * (1.0 - t)
    if ease is Ease.IN_OUT:
        return t * t * (3.0 - 2.0 * t)
    return t


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    n = np.linalg.norm(v)
    return v / n if n > 1e-12 else v


def default_view_dir(figures: Sequence[Figure], camera_side=(0.0, -1.0)) -> np.ndarray:
    """Direction from the subject to the camera (XY, unit): for one figure,
    halfway between where it faces and the camera side (a three-quarter view
    that keeps every camera on one side of the line of action); for a group,
    the camera side itself."""
    side = _unit([camera_side[0], camera_side[1], 0.0])
    if len(figures) == 1:
        mid = figures[0].front + side
        if np.linalg.norm(mid) > 1e-6:
            return _unit(mid)
    return side


def _lens_mm_for(f_px: float, width: int, height: int, like: CameraSample) -> float:
    return f_px / focal_length_px(replace(like, focal_length_mm=1.0), width, height)


def frame_shot(size: ShotSize | str, figures: Sequence[Figure], *, over: Figure | None = None,
               prop_m=None, view_dir=None, camera_side=(0.0, -1.0), lens_mm: float | None = None,
               width: int = 1280, height: int = 720, shot_id: str = "shot") -> Framed:
    """Place the camera for ``size`` on ``figures`` (``figures[0]`` is the
    subject; wide and medium fit every figure). ``over``: the listener an
    over-the-shoulder looks past. ``prop_m``: an insert's detail (default:
    in the subject's hands)."""
    size = ShotSize(size)
    framing = FRAMINGS[size]
    figures = tuple(figures)
    base = CameraSample(world_matrix=np.eye(4), focal_length_mm=lens_mm or framing.lens_mm)
    if width <= 0 or height <= 0:
        raise InvalidArgumentError(f"shot {shot_id}: image size {width}x{height} must be positive", field="width")

    if size is ShotSize.INSERT:
        if prop_m is None:
            if not figures:
                raise FramingError(f"shot {shot_id}: an insert needs a character or a prop position to frame",
                                   shot=shot_id)
            prop_m = figures[0].prop_m
        target = np.asarray(prop_m, dtype=np.float64)
        f_px = focal_length_px(base, width, height)
        d = f_px * INSERT_FIELD_M / (framing.fill * height)
        vd = _unit(view_dir if view_dir is not None else default_view_dir(figures[:1], camera_side))
        vd = _unit([vd[0], vd[1], 0.0])
        eye = target + vd * d * math.cos(INSERT_ELEVATION_RAD) + np.array([0, 0, d * math.sin(INSERT_ELEVATION_RAD)])
        cam = replace(base, world_matrix=look_at(eye, target), focus_distance_m=d)
        return Framed(size, figures, cam, target, d, width, height, prop_m=target)

    if not figures:
        raise FramingError(f"shot {shot_id}: a {size} shot needs at least one character to frame", shot=shot_id)
    key = figures[0]

    if size is ShotSize.OVER_THE_SHOULDER:
        if over is None:
            raise FramingError(f"shot {shot_id}: an over-the-shoulder shot needs a second character to look past",
                               shot=shot_id)
        lo, hi = framing.band
        target = key.point((lo + hi) / 2)
        band_m = (hi - lo) * key.height_m
        axis = np.asarray(over.position_m, dtype=np.float64) - np.asarray(key.position_m, dtype=np.float64)
        axis[2] = 0.0
        if np.linalg.norm(axis) < 0.2:
            raise FramingError(f"shot {shot_id}: {key.name} and {over.name} stand on the same spot; "
                               "an over-the-shoulder needs them apart", shot=shot_id)
        axis = _unit(axis)
        aside = np.array([-axis[1], axis[0], 0.0])
        side = np.array([camera_side[0], camera_side[1], 0.0])
        if float(aside @ side) < 0:
            aside = -aside
        eye = np.asarray(over.position_m, dtype=np.float64) + axis * OTS_BEHIND_M + aside * OTS_ASIDE_M
        eye[2] = over.position_m[2] + OTS_EYE * over.height_m
        d = float(np.linalg.norm(target - eye))
        f_mm = lens_mm or _lens_mm_for(framing.fill * height * d / band_m, width, height, base)
        _check_lens(shot_id, size, f_mm)
        cam = replace(base, world_matrix=look_at(eye, target), focal_length_mm=f_mm, focus_distance_m=d)
        return Framed(size, figures, cam, target, d, width, height, over=over)

    group = figures if size in (ShotSize.WIDE, ShotSize.MEDIUM) else figures[:1]
    lo, hi = framing.band
    z_lo = min(float(f.point(lo)[2]) for f in group)
    z_hi = max(float(f.point(hi)[2]) for f in group)
    vd = _unit(view_dir if view_dir is not None else default_view_dir(group, camera_side))
    vd = _unit([vd[0], vd[1], 0.0])
    right = np.array([-vd[1], vd[0], 0.0])   # camera right when looking along -vd
    feet = np.array([np.asarray(f.position_m, dtype=np.float64) for f in group])
    lateral = feet @ right
    centre_xy = feet.mean(axis=0) + right * ((lateral.max() + lateral.min()) / 2 - float(feet.mean(axis=0) @ right))
    target = np.array([centre_xy[0], centre_xy[1], (z_lo + z_hi) / 2])
    f_mm = lens_mm or framing.lens_mm
    _check_lens(shot_id, size, f_mm)
    cam0 = replace(base, focal_length_mm=f_mm)
    f_px = focal_length_px(cam0, width, height)
    d = f_px * (z_hi - z_lo) / (framing.fill * height)
    half_span = (lateral.max() - lateral.min()) / 2 + max(SHOULDER_HALF_WIDTH * f.height_m for f in group)
    d = max(d, f_px * half_span / (GROUP_FILL_WIDTH / 2 * width))
    depth_in_front = max(float((np.asarray(f.position_m) - target) @ vd) for f in group)
    d += max(0.0, depth_in_front)
    eye = target + vd * d
    cam = replace(cam0, world_matrix=look_at(eye, target), focus_distance_m=d)
    return Framed(size, figures, cam, target, d, width, height)


def _check_lens(shot_id: str, size: ShotSize, f_mm: float) -> None:
    lo, hi = LENS_RANGE_MM
    if not (math.isfinite(f_mm) and lo <= f_mm <= hi):
        raise FramingError(f"shot {shot_id}: framing this {size} shot needs a {f_mm:.0f} mm lens, outside "
                           f"{lo:.0f}-{hi:.0f} mm; move the characters or pick another size", shot=shot_id, part="lens")


def _rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def resolve_amount(framed: Framed, move: CameraMove | str, *, amount: float | None = None,
                   speed: float | None = None, duration_s: float = 1.0) -> float:
    """The move's amount in its unit (``MOVE_UNITS``): ``amount``, or
    ``speed`` (unit per second) x duration, or the default (``DEFAULT_AMOUNTS``;
    the distance-scaled ones times the framing distance)."""
    move = CameraMove(move)
    if amount is not None and speed is not None:
        raise InvalidArgumentError(f"{move}: give the move an amount or a speed, not both", field="amount")
    if speed is not None:
        amount = speed * duration_s
    if amount is None:
        amount = DEFAULT_AMOUNTS[move] * (framed.distance_m if move in _DISTANCE_SCALED else 1.0)
    if not math.isfinite(amount):
        raise InvalidArgumentError(f"{move}: amount {amount!r} is not a finite number", field="amount")
    if move is CameraMove.ZOOM and amount <= 0:
        raise InvalidArgumentError(f"zoom: amount {amount!r} must be a focal-length ratio above 0", field="amount")
    return float(amount)


def camera_path(framed: Framed, move: CameraMove | str, frame_count: int, *, amount: float | None = None,
                speed: float | None = None, ease: Ease | str = Ease.IN_OUT, fps: float = 24.0) -> list[CameraSample]:
    """One camera sample per frame of ``move`` around the framed camera."""
    move = CameraMove(move)
    if frame_count < 1:
        raise InvalidArgumentError(f"frame_count {frame_count} must be at least 1", field="frame_count")
    amount = resolve_amount(framed, move, amount=amount, speed=speed, duration_s=frame_count / fps)
    m0 = np.asarray(framed.camera.world_matrix, dtype=np.float64)
    r0, eye0 = m0[:3, :3], m0[:3, 3]
    target = framed.target_m
    out = []
    for i in range(frame_count):
        e = ease_curve(ease, i / (frame_count - 1)) if frame_count > 1 else 1.0
        sweep = e - 0.5
        m = m0.copy()
        focal = framed.camera.focal_length_mm
        if move is CameraMove.PAN:
            m[:3, :3] = _rot_z(math.radians(amount) * sweep) @ r0
        elif move is CameraMove.TILT:
            m[:3, :3] = r0 @ _rot_x(math.radians(amount) * sweep)
        elif move in (CameraMove.DOLLY_IN, CameraMove.DOLLY_OUT):
            back = (1.0 - e) if move is CameraMove.DOLLY_IN else e
            m[:3, 3] = eye0 + r0[:, 2] * amount * back   # local +Z points away from the view
        elif move is CameraMove.TRUCK:
            m[:3, 3] = eye0 + r0[:, 0] * amount * sweep
        elif move is CameraMove.CRANE:
            eye = eye0 + np.array([0.0, 0.0, amount * sweep])
            m = look_at(eye, target)
        elif move is CameraMove.ORBIT:
            rel = eye0 - target
            eye = target + _rot_z(math.radians(amount) * sweep) @ rel
            m = look_at(eye, target)
        elif move is CameraMove.ZOOM:
            start = focal / amount
            focal = start + (focal - start) * e
        out.append(replace(framed.camera, world_matrix=m, focal_length_mm=focal))
    return out


def _regions(framed: Framed, cam: CameraSample) -> list[tuple[str, np.ndarray]]:
    """(part name, world points) of what the size promises to keep in frame."""
    m = np.asarray(cam.world_matrix, dtype=np.float64)
    right, up = m[:3, 0], m[:3, 1]
    parts: list[tuple[str, np.ndarray]] = []
    if framed.size is ShotSize.INSERT:
        c = np.asarray(framed.prop_m, dtype=np.float64)
        r = PROP_HALF_SIZE_M
        parts.append(("the insert's prop", np.array([c + right * r, c - right * r, c + up * r, c - up * r])))
        return parts
    framing = FRAMINGS[framed.size]
    shown = framed.figures if framed.size in (ShotSize.WIDE, ShotSize.MEDIUM) else framed.figures[:1]
    for fig in shown:
        c, r = fig.head_centre_m, fig.head_radius_m
        parts.append((f"{fig.name}'s head", np.array([c + up * r, c - up * r, c + right * r, c - right * r])))
        if framing.promises_band:
            lo = fig.point(framing.band[0])
            w = SHOULDER_HALF_WIDTH * fig.height_m
            name = "feet" if framing.band[0] == 0.0 else "mid-torso"
            parts.append((f"{fig.name}'s {name}", np.array([lo + right * w, lo - right * w])))
    return parts


def framing_violations(framed: Framed, path: Sequence[CameraSample]) -> list[tuple[int, str, str]]:
    """(frame, part, what is wrong) for every frame that crops a promised part."""
    found = []
    w, h = framed.width, framed.height
    for i, cam in enumerate(path):
        for part, pts in _regions(framed, cam):
            px, depth = project(cam, w, h, pts)
            if np.any(depth <= cam.clip_start_m):
                found.append((i, part, "it is behind the camera or closer than the clip start"))
                continue
            x, y = px[:, 0], px[:, 1]
            if x.min() < 0 or x.max() > w or y.min() < 0 or y.max() > h:
                found.append((i, part, f"it spans x {x.min():.0f}..{x.max():.0f}, y {y.min():.0f}..{y.max():.0f} px "
                                        f"in a {w}x{h} frame"))
    return found


def check_framing(shot_id: str, framed: Framed, path: Sequence[CameraSample], *,
                  move: CameraMove | str = CameraMove.STATIC, subject_may_leave: bool = False) -> None:
    """The framing gate: refuse a path that crops a part its size promises.
    ``subject_may_leave``: the move lets the subject leave the frame (a
    reveal); then nothing is checked."""
    if subject_may_leave:
        return
    bad = framing_violations(framed, path)
    if bad:
        frame, part, why = bad[0]
        frames = sorted({b[0] for b in bad})
        raise FramingError(
            f"shot {shot_id} ({framed.size}, {CameraMove(move)}): would crop {part} on frame {frame} "
            f"({len(frames)} of {len(path)} frames affected): {why}. Use a smaller move amount, a wider size, "
            "or mark the move as letting the subject leave the frame", shot=shot_id, part=part, frame=frame)


def shot_camera(shot_id: str, size: ShotSize | str, move: CameraMove | str, figures: Sequence[Figure],
                frame_count: int, *, over: Figure | None = None, prop_m=None, amount: float | None = None,
                speed: float | None = None, ease: Ease | str = Ease.IN_OUT, fps: float = 24.0,
                width: int = 1280, height: int = 720, lens_mm: float | None = None, view_dir=None,
                camera_side=(0.0, -1.0), subject_may_leave: bool = False) -> list[CameraSample]:
    """Frame, move and gate one shot: its camera path, one sample per frame."""
    framed = frame_shot(size, figures, over=over, prop_m=prop_m, view_dir=view_dir, camera_side=camera_side,
                        lens_mm=lens_mm, width=width, height=height, shot_id=shot_id)
    path = camera_path(framed, move, frame_count, amount=amount, speed=speed, ease=ease, fps=fps)
    check_framing(shot_id, framed, path, move=move, subject_may_leave=subject_may_leave)
    return path
