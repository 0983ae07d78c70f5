"""Shot list -> blocking: what a host needs to build each scene, engine-free.

``plan_blocking(shot_list)`` gives one ``SceneBlocking`` per scene:

- ``set``: the placeholder set. Inside (INT, INT/EXT, or no setting) a floor
  and four walls ``WALL_HEIGHT_M`` high enclosing every mark and every
  camera position with ``SET_MARGIN_M`` to spare (at least ``MIN_ROOM_M``);
  outside (EXT) a ground plane at least ``MIN_GROUND_M`` square, no walls.
- ``marks``: where each of the scene's characters stands (feet on the
  floor, z = 0) and faces. One character stands at the origin facing the
  camera side (-Y); two or more stand on a half circle of ``ARC_RADIUS_M``
  behind the origin (+Y side), first character on the left, facing its
  centre, so two face each other across the X axis (the line of action).
  Every camera stays on the -Y side of it (the 180-degree rule).
- ``shots``: per shot its frames within the scene (``frame_start`` from 0),
  a pose per character from ``POSE_VERBS`` and the camera path from
  ``bridge.shot.moves`` (framing-gated: a shot that would crop its subject
  raises ``FramingError`` naming it).

Poses (``POSE_VERBS``, first row whose word is in the sentence that names
the character; a one-character shot reads the whole action): ``sitting`` and
``standing`` last until another verb changes them, ``walking`` lasts one
shot; the speaker of a dialogue shot is ``talking`` (``sitting`` if seated).
Characters stand still on their marks during a shot; a seated figure is
framed at ``SEATED_HEIGHT`` of its height.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidArgumentError
from ..shot.model import CameraSample
from ..shot.moves import CameraMove, Figure, ShotSize, shot_camera
from .shots import PlannedShot, SceneShots, ShotList

__all__ = [
    "Wall", "SetPlan", "Mark", "ShotBlocking", "SceneBlocking", "plan_blocking", "POSE_VERBS", "POSES",
    "blocking_to_json", "blocking_from_json",
]

POSES = ("standing", "walking", "sitting", "talking")
POSE_VERBS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("sits", "sit", "sitting", "seated", "sat", "perches", "slumps"), "sitting"),
    (("stands", "stand", "standing", "rises", "gets up", "stands up"), "standing"),
    (("walks", "walking", "crosses", "enters", "exits", "runs", "paces", "hurries", "strides", "climbs",
      "approaches", "follows", "backs away", "retreats"), "walking"),
)
SEATED_HEIGHT = 0.72
DEFAULT_HEIGHT_M = 1.75
ARC_RADIUS_M = 0.8
CAMERA_SIDE = (0.0, -1.0)
WALL_HEIGHT_M = 3.0
SET_MARGIN_M = 1.0
MIN_ROOM_M = (6.0, 5.0)
MIN_GROUND_M = 40.0


@dataclass(frozen=True)
class Wall:
    name: str
    start_m: tuple[float, float]
    end_m: tuple[float, float]
    height_m: float


@dataclass(frozen=True)
class SetPlan:
    """Floor rectangle from ``floor_min_m`` to ``floor_max_m`` (x, y metres, z = 0) and its walls."""

    setting: str
    interior: bool
    floor_min_m: tuple[float, float]
    floor_max_m: tuple[float, float]
    walls: tuple[Wall, ...]


@dataclass(frozen=True)
class Mark:
    character: str
    position_m: tuple[float, float, float]
    facing_rad: float
    height_m: float


@dataclass(frozen=True)
class ShotBlocking:
    shot_id: str
    size: ShotSize
    move: CameraMove
    frame_start: int
    frame_count: int
    poses: Mapping[str, str]            # every scene character -> one of POSES
    in_frame: tuple[str, ...]           # the shot list's characters in frame (subject first)
    camera: tuple[CameraSample, ...]    # one per frame


@dataclass(frozen=True)
class SceneBlocking:
    number: int
    heading: str
    set: SetPlan
    marks: tuple[Mark, ...]
    shots: tuple[ShotBlocking, ...]
    fps: float
    width: int
    height: int

    @property
    def frame_count(self) -> int:
        return sum(s.frame_count for s in self.shots)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def _has(words: Sequence[str], cue: str) -> bool:
    c = cue.split()
    return any(list(words[i:i + len(c)]) == c for i in range(len(words) - len(c) + 1))


def _pose_from(text: str) -> str | None:
    words = _words(text)
    for cues, pose in POSE_VERBS:
        if any(_has(words, cue) for cue in cues):
            return pose
    return None


def _marks(scene: SceneShots, heights: Mapping[str, float]) -> tuple[Mark, ...]:
    names = scene.characters
    if len(names) == 1:
        return (Mark(names[0], (0.0, 0.0, 0.0), -math.pi / 2, heights.get(names[0], DEFAULT_HEIGHT_M)),)
    marks = []
    for i, name in enumerate(names):
        a = math.pi * (1.0 - i / (len(names) - 1))   # pi (left, -X) ... 0 (right, +X)
        x, y = ARC_RADIUS_M * math.cos(a), ARC_RADIUS_M * math.sin(a)
        x, y = round(x, 9) + 0.0, round(y, 9) + 0.0
        marks.append(Mark(name, (x, y, 0.0), math.atan2(-y, -x), heights.get(name, DEFAULT_HEIGHT_M)))
    return tuple(marks)


def _poses(scene: SceneShots) -> list[dict[str, str]]:
    state = dict.fromkeys(scene.characters, "standing")
    out = []
    for shot in scene.shots:
        now = dict(state)
        if shot.action:
            sentences = re.split(r"(?<=[.!?])\s+", shot.action)
            for name in scene.characters:
                if name not in shot.characters:
                    continue
                pattern = re.compile(r"(?<![A-Za-z0-9'])" + re.escape(name) + r"(?![A-Za-z0-9'])", re.I)
                text = shot.action if len(shot.characters) == 1 else " ".join(s for s in sentences
                                                                             if pattern.search(s))
                pose = _pose_from(text)
                if pose is not None:
                    now[name] = pose
                    if pose != "walking":
                        state[name] = pose
        if shot.speaker in shot.characters and now[shot.speaker] != "sitting":   # not an off-screen voice
            now[shot.speaker] = "talking"
        out.append(now)
    return out


def _set(setting: str, points: np.ndarray) -> SetPlan:
    lo, hi = points[:, :2].min(axis=0), points[:, :2].max(axis=0)
    interior = setting != "EXT"
    if interior:
        lo, hi = lo - SET_MARGIN_M, hi + SET_MARGIN_M
        for k, minimum in enumerate(MIN_ROOM_M):
            grow = max(0.0, minimum - (hi[k] - lo[k])) / 2
            lo[k], hi[k] = lo[k] - grow, hi[k] + grow
    else:
        centre = (lo + hi) / 2
        half = max(MIN_GROUND_M / 2, *(np.abs(points[:, :2] - centre).max(axis=0) + 5.0))
        lo, hi = centre - half, centre + half
    lo_t = (round(float(lo[0]), 3), round(float(lo[1]), 3))
    hi_t = (round(float(hi[0]), 3), round(float(hi[1]), 3))
    walls: tuple[Wall, ...] = ()
    if interior:
        (x0, y0), (x1, y1) = lo_t, hi_t
        walls = (Wall("back", (x0, y1), (x1, y1), WALL_HEIGHT_M), Wall("front", (x1, y0), (x0, y0), WALL_HEIGHT_M),
                 Wall("left", (x0, y0), (x0, y1), WALL_HEIGHT_M), Wall("right", (x1, y1), (x1, y0), WALL_HEIGHT_M))
    return SetPlan(setting, interior, lo_t, hi_t, walls)


def _shot_camera(shot: PlannedShot, scene: SceneShots, marks: Mapping[str, Mark], poses: Mapping[str, str],
                 frame_count: int, fps: float, width: int, height: int) -> list[CameraSample]:
    def figure(name: str) -> Figure:
        m = marks[name]
        h = m.height_m * (SEATED_HEIGHT if poses[name] == "sitting" else 1.0)
        return Figure(name, m.position_m, m.facing_rad, h)

    names = list(shot.characters)
    over = None
    prop = None
    if shot.size is ShotSize.OVER_THE_SHOULDER:
        over = figure(names[1])
        names = names[:1]
    elif shot.size is ShotSize.WIDE and not names:
        names = list(scene.characters)   # an empty establishing wide frames the whole cast's marks
    figures = [figure(n) for n in names]
    if not figures and shot.size is ShotSize.INSERT:
        prop = (0.0, 0.0, 0.9)
    if not figures and shot.size is ShotSize.WIDE:
        figures = [Figure("the set", (0.0, 0.0, 0.0), -math.pi / 2, DEFAULT_HEIGHT_M)]
    return shot_camera(shot.id, shot.size, shot.move, figures, frame_count, over=over, prop_m=prop,
                       amount=shot.move_amount, ease=shot.ease, fps=fps, width=width, height=height,
                       camera_side=CAMERA_SIDE)


def plan_blocking(shot_list: ShotList, *, fps: float = 24.0, width: int = 1280, height: int = 720,
                  heights: Mapping[str, float] | None = None) -> list[SceneBlocking]:
    """Per scene: set, marks, poses and a framing-gated camera path per shot.
    ``heights``: standing height per character in metres (default 1.75)."""
    if not (math.isfinite(fps) and fps > 0):
        raise InvalidArgumentError(f"fps {fps!r} must be a positive number", field="fps")
    heights = dict(heights or {})
    out = []
    for scene in shot_list.scenes:
        marks = _marks(scene, heights)
        by_name = {m.character: m for m in marks}
        shots = []
        start = 0
        points = [np.array(m.position_m) for m in marks] or [np.zeros(3)]
        for shot, poses in zip(scene.shots, _poses(scene)):
            n = max(1, round(shot.duration_s * fps))
            path = _shot_camera(shot, scene, by_name, poses, n, fps, width, height)
            points += [c.position_m for c in path]
            shots.append(ShotBlocking(shot.id, shot.size, shot.move, start, n, poses, shot.characters, tuple(path)))
            start += n
        out.append(SceneBlocking(scene.number, scene.heading, _set(scene.setting, np.array(points)), marks,
                                 tuple(shots), fps, width, height))
    return out


# ---- JSON (for a host that runs in another process, e.g. Blender in the background) ---------------------------
def _camera_dict(c: CameraSample) -> dict:
    return {"world_matrix": np.asarray(c.world_matrix, dtype=np.float64).tolist(),
            "focal_length_mm": c.focal_length_mm, "sensor_width_mm": c.sensor_width_mm,
            "sensor_height_mm": c.sensor_height_mm, "sensor_fit": c.sensor_fit, "clip_start_m": c.clip_start_m,
            "clip_end_m": c.clip_end_m, "focus_distance_m": c.focus_distance_m}


def blocking_to_json(scenes: Sequence[SceneBlocking]) -> str:
    doc = {"schema": "greenlight.blocking/1", "scenes": [{
        "number": s.number, "heading": s.heading, "fps": s.fps, "width": s.width, "height": s.height,
        "set": {"setting": s.set.setting, "interior": s.set.interior, "floor_min_m": list(s.set.floor_min_m),
                "floor_max_m": list(s.set.floor_max_m),
                "walls": [{"name": w.name, "start_m": list(w.start_m), "end_m": list(w.end_m),
                           "height_m": w.height_m} for w in s.set.walls]},
        "marks": [{"character": m.character, "position_m": list(m.position_m), "facing_rad": m.facing_rad,
                   "height_m": m.height_m} for m in s.marks],
        "shots": [{"shot_id": b.shot_id, "size": b.size.value, "move": b.move.value, "frame_start": b.frame_start,
                   "frame_count": b.frame_count, "poses": dict(b.poses), "in_frame": list(b.in_frame),
                   "camera": [_camera_dict(c) for c in b.camera]} for b in s.shots],
    } for s in scenes]}
    return json.dumps(doc, indent=1, allow_nan=False) + "\n"


def blocking_from_json(text: str) -> list[SceneBlocking]:
    doc = json.loads(text)
    if doc.get("schema") != "greenlight.blocking/1":
        raise InvalidArgumentError(f"schema {doc.get('schema')!r} is not 'greenlight.blocking/1'", field="schema")
    out = []
    for s in doc["scenes"]:
        st = s["set"]
        set_plan = SetPlan(st["setting"], st["interior"], tuple(st["floor_min_m"]), tuple(st["floor_max_m"]),
                           tuple(Wall(w["name"], tuple(w["start_m"]), tuple(w["end_m"]), w["height_m"])
                                 for w in st["walls"]))
        marks = tuple(Mark(m["character"], tuple(m["position_m"]), m["facing_rad"], m["height_m"])
                      for m in s["marks"])
        shots = tuple(ShotBlocking(
            b["shot_id"], ShotSize(b["size"]), CameraMove(b["move"]), b["frame_start"], b["frame_count"],
            dict(b["poses"]), tuple(b["in_frame"]),
            tuple(CameraSample(world_matrix=np.array(c.pop("world_matrix"), dtype=np.float64), **c)
                  for c in b["camera"])) for b in s["shots"])
        out.append(SceneBlocking(s["number"], s["heading"], set_plan, marks, shots, s["fps"], s["width"],
                                 s["height"]))
    return out

