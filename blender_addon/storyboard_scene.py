"""Blocking -> a Blender scene: the placeholder set, posed placeholder
characters, one animated camera per shot, and a marker bound to each
camera. Every function here touches Blender data (``*_in_blender``, STYLE
practice 5); the plan itself comes engine-free from ``bridge.storyboard``.

- **Set** (``Set`` collection): a floor quad from ``SetPlan.floor_min_m`` to
  ``floor_max_m`` and, inside, one quad per wall (``Wall.start_m`` ->
  ``end_m``, ``height_m`` high).
- **Characters**: the sample shots' metarig builder
  (``engine_renders.host.add_character_in_blender``: metarig bone names
  built in code, a mesh body parented to the bones), on its mark, turned
  to face ``Mark.facing_rad`` and scaled so the top of its head is
  ``Mark.height_m`` above the floor. The real name is kept in the custom
  property ``greenlight_character`` (object names are unique per file, so a
  second scene's "MAYA" may be "MAYA.001").
- **Poses** (``POSE_DIRECTIONS``): standing, walking, sitting and talking as
  armature-space bone directions, keyed at each shot's first frame with
  constant interpolation, so a pose holds for the whole shot and changes
  on the cut. A sitting figure also drops by ``1 - SEATED_HEIGHT`` of its
  height (the figure the blocking framed).
- **Visibility**: a character who is not in the shot's ``in_frame`` is
  hidden (render and viewport, keyed per shot).
- **Cameras**: one per shot, named by the shot id, keyed on every frame
  from the blocking's camera samples (matrix, focal length, sensor, clip);
  a timeline marker at the shot's first frame is bound to it, so playback
  and render cut from camera to camera.

Blender frames start at 1: blocking frame ``f`` of a scene is Blender frame
``1 + f``. In the built extension the figure builder is the copy that
``build.py`` puts in ``_vendor/engine_renders``; in a source checkout it is
the ``engine_renders`` package itself.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
from pathlib import Path

import bpy
from mathutils import Matrix, Quaternion

from . import compat
from ._deps import VENDORED, bridge

FIRST_FRAME = 1
SET_COLLECTION = "Set"
CHARACTER_PROP = "greenlight_character"
SHOT_PROP = "greenlight_storyboard_shot"      # on a camera: JSON of the shot it films
SCENE_PROP = "greenlight_storyboard"          # on a scene: JSON of its shots (id, camera, frames)

# Armature-space bone directions (the figure faces -Y, its left is +X, up is +Z). Bones a pose does not
# name keep their rest direction (the legs hang straight down from the hips).
_ARMS_DOWN = {"upper_arm.L": (0.25, 0.02, -1.0), "forearm.L": (0.12, -0.1, -1.0),
              "upper_arm.R": (-0.25, 0.02, -1.0), "forearm.R": (-0.12, -0.1, -1.0)}
POSE_DIRECTIONS: dict[str, dict[str, tuple[float, float, float]]] = {
    "standing": dict(_ARMS_DOWN),
    "walking": {   # mid-stride: left leg forward, right leg back with the knee bent, arms swinging opposite
        "thigh.L": (0.0, -0.45, -1.0), "shin.L": (0.0, -0.15, -1.0),
        "thigh.R": (0.0, 0.4, -1.0), "shin.R": (0.0, 0.75, -1.0),
        "upper_arm.L": (0.2, 0.35, -1.0), "forearm.L": (0.1, 0.2, -1.0),
        "upper_arm.R": (-0.2, -0.35, -1.0), "forearm.R": (-0.1, -0.7, -1.0),
    },
    "sitting": {   # thighs level and forward, shins down, hands on the lap
        "thigh.L": (0.05, -1.0, -0.05), "shin.L": (0.0, -0.1, -1.0), "foot.L": (0.0, -1.0, -0.3),
        "thigh.R": (-0.05, -1.0, -0.05), "shin.R": (0.0, -0.1, -1.0), "foot.R": (0.0, -1.0, -0.3),
        "upper_arm.L": (0.2, -0.25, -1.0), "forearm.L": (0.05, -1.0, -0.25),
        "upper_arm.R": (-0.2, -0.25, -1.0), "forearm.R": (-0.05, -1.0, -0.25),
    },
    "talking": {   # standing, the right hand raised in a gesture
        **_ARMS_DOWN,
        "upper_arm.R": (-0.35, -0.55, -0.75), "forearm.R": (-0.2, -1.0, 0.45),
    },
}


def figures_module():
    """The sample shots' scene helpers (``engine_renders/host.py``): the
    copy in the built extension, else the repository's package."""
    if VENDORED:
        return importlib.import_module(f"{__package__}._vendor.engine_renders.host")
    return importlib.import_module("engine_renders.host")


def _blocking():
    return bridge("storyboard.blocking")


def scene_name(blocking) -> str:
    """``S02 INT. LIGHTHOUSE KITCHEN - NIGHT`` (Blender caps names at 63 bytes)."""
    return f"S{blocking.number:02d} {blocking.heading}"[:63]


# ------------------------------------------------------------------ set
def add_set_in_blender(scene, set_plan, prefix: str) -> list:
    fig = figures_module()
    coll = bpy.data.collections.new(f"{prefix} {SET_COLLECTION}")
    scene.collection.children.link(coll)
    (x0, y0), (x1, y1) = set_plan.floor_min_m, set_plan.floor_max_m
    objs = [fig.add_quad_in_blender(scene, f"{prefix} Floor", [(x0, y0, 0), (x1, y0, 0), (x1, y1, 0), (x0, y1, 0)])]
    for wall in set_plan.walls:
        (ax, ay), (bx, by) = wall.start_m, wall.end_m
        h = wall.height_m
        objs.append(fig.add_quad_in_blender(scene, f"{prefix} Wall.{wall.name}",
                                            [(ax, ay, 0), (bx, by, 0), (bx, by, h), (ax, ay, h)]))
    for obj in objs:   # into the Set collection only
        coll.objects.link(obj)
        scene.collection.objects.unlink(obj)
    return objs


# ------------------------------------------------------------------ characters
def _parts(arm_obj) -> list:
    return [c for c in arm_obj.children if c.type == "MESH"]


def _top_of_head_in_blender(arm_obj) -> float:
    """Highest point of the figure's body meshes, world z (the armature at rest, unscaled, on z = 0)."""
    bpy.context.view_layer.update()
    return max((p.matrix_world @ v.co).z for p in _parts(arm_obj) for v in p.data.vertices)


def add_character_in_blender(scene, mark) -> object:
    """A placeholder figure on ``mark``: the top of its head ``mark.height_m`` above the floor."""
    fig = figures_module()
    facing_deg = math.degrees(mark.facing_rad + math.pi / 2)   # the builder's figures face -Y unturned
    arm = fig.add_character_in_blender(scene, mark.character, location=tuple(mark.position_m), facing_deg=facing_deg,
                                       use_metarig=False)
    scale = mark.height_m / _top_of_head_in_blender(arm)
    arm.scale = (scale, scale, scale)
    arm[CHARACTER_PROP] = mark.character
    bpy.context.view_layer.update()
    return arm


def key_poses_in_blender(arm_obj, mark, shots) -> None:
    """Key ``shot.poses[character]`` at each shot's first frame (constant: poses change on the cut)."""
    fig = figures_module()
    seated = _blocking().SEATED_HEIGHT
    bones = sorted({b for d in POSE_DIRECTIONS.values() for b in d if b in arm_obj.pose.bones})
    for shot in shots:
        pose = shot.poses.get(mark.character, "standing")
        frame = FIRST_FRAME + shot.frame_start
        rotations = fig.pose_in_blender(arm_obj, {b: d for b, d in POSE_DIRECTIONS[pose].items() if b in bones})
        fig.key_pose_in_blender(arm_obj, frame, {b: rotations.get(b, Quaternion()) for b in bones})
        drop = (1.0 - seated) * mark.height_m if pose == "sitting" else 0.0
        arm_obj.location = (mark.position_m[0], mark.position_m[1], mark.position_m[2] - drop)
        arm_obj.keyframe_insert("location", frame=frame)
    _constant_in_blender(arm_obj)


def key_visibility_in_blender(arm_obj, mark, shots) -> None:
    """Hide the figure (and its body meshes) in shots whose ``in_frame`` leaves it out."""
    for obj in (arm_obj, *_parts(arm_obj)):
        for shot in shots:
            hidden = mark.character not in shot.in_frame
            obj.hide_render = obj.hide_viewport = hidden
            for path in ("hide_render", "hide_viewport"):
                obj.keyframe_insert(path, frame=FIRST_FRAME + shot.frame_start)
        _constant_in_blender(obj)


def _constant_in_blender(owner) -> None:
    if owner.animation_data is None or owner.animation_data.action is None:
        return
    for fc in compat.action_fcurves_in_blender(owner.animation_data.action):
        for k in fc.keyframe_points:
            k.interpolation = "CONSTANT"


# ------------------------------------------------------------------ cameras and markers
def add_shot_camera_in_blender(scene, shot) -> object:
    """A camera named ``shot.shot_id`` keyed on each of the shot's frames from the blocking's samples."""
    first = shot.camera[0]
    data = bpy.data.cameras.new(shot.shot_id)
    data.sensor_width, data.sensor_height = first.sensor_width_mm, first.sensor_height_mm
    data.sensor_fit = first.sensor_fit
    data.clip_start, data.clip_end = first.clip_start_m, first.clip_end_m
    obj = bpy.data.objects.new(shot.shot_id, data)
    scene.collection.objects.link(obj)
    obj.rotation_mode = "XYZ"
    previous = None
    zooms = len({c.focal_length_mm for c in shot.camera}) > 1
    for i, sample in enumerate(shot.camera):
        frame = FIRST_FRAME + shot.frame_start + i
        location, rotation, _ = Matrix([list(row) for row in sample.world_matrix]).decompose()
        euler = rotation.to_euler("XYZ", previous) if previous is not None else rotation.to_euler("XYZ")
        previous = euler
        obj.location, obj.rotation_euler = location, euler
        obj.keyframe_insert("location", frame=frame)
        obj.keyframe_insert("rotation_euler", frame=frame)
        data.lens = sample.focal_length_mm
        if zooms:
            data.keyframe_insert("lens", frame=frame)
    for owner in (obj, data):
        if owner.animation_data is not None and owner.animation_data.action is not None:
            for fc in compat.action_fcurves_in_blender(owner.animation_data.action):
                for k in fc.keyframe_points:
                    k.interpolation = "LINEAR"
    obj[SHOT_PROP] = json.dumps({"shot": shot.shot_id, "size": shot.size.value, "move": shot.move.value,
                                 "frame_start": FIRST_FRAME + shot.frame_start,
                                 "frame_end": FIRST_FRAME + shot.frame_start + shot.frame_count - 1,
                                 "in_frame": list(shot.in_frame)})
    return obj


# ------------------------------------------------------------------ a whole scene
def build_scene_in_blender(scene, blocking) -> list[dict]:
    """Fill ``scene`` (the context scene, or one made current with
    ``bpy.context.temp_override``) from one ``SceneBlocking``; returns its
    shots as ``{"shot", "camera", "frame_start", "frame_end"}`` (Blender
    frames, inclusive), also stored as JSON in ``scene[SCENE_PROP]``."""
    r = scene.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = int(blocking.width), int(blocking.height), 100
    r.fps, r.fps_base = blender_fps(blocking.fps)
    scene.frame_start = FIRST_FRAME
    scene.frame_end = FIRST_FRAME + blocking.frame_count - 1
    prefix = f"S{blocking.number:02d}"
    add_set_in_blender(scene, blocking.set, prefix)
    for mark in blocking.marks:
        arm = add_character_in_blender(scene, mark)
        key_poses_in_blender(arm, mark, blocking.shots)
        key_visibility_in_blender(arm, mark, blocking.shots)
    shots = []
    for shot in blocking.shots:
        cam = add_shot_camera_in_blender(scene, shot)
        marker = scene.timeline_markers.new(shot.shot_id, frame=FIRST_FRAME + shot.frame_start)
        marker.camera = cam
        shots.append({"shot": shot.shot_id, "camera": cam.name, "frame_start": FIRST_FRAME + shot.frame_start,
                      "frame_end": FIRST_FRAME + shot.frame_start + shot.frame_count - 1})
    scene.camera = bpy.data.objects[shots[0]["camera"]]
    scene.frame_set(FIRST_FRAME)
    scene[SCENE_PROP] = json.dumps({"scene": blocking.number, "heading": blocking.heading, "shots": shots})
    return shots


def blender_fps(fps: float) -> tuple[int, float]:
    """Blender's (fps, fps_base) for a rate: 24.0 -> (24, 1.0), 23.976 -> (24, 1.001)."""
    whole = max(1, round(fps))
    return whole, whole / fps


def block_script_in_blender(path: str | Path, *, fps: float, width: int, height: int, planner: str | None = None):
    """The operator's work: parse ``path`` (.fountain/.fdx), plan its shots
    with the rules (or ``planner``), block them and add one Blender scene per
    screenplay scene to the open file. Returns the new scenes."""
    sb = bridge("storyboard.screenplay")
    plan = bridge("storyboard.planner")
    blocking = _blocking().plan_blocking(plan.plan_shots(sb.load_screenplay(path), planner=planner), fps=fps,
                                         width=width, height=height)
    added = []
    for b in blocking:
        sc = bpy.data.scenes.new(scene_name(b))
        with current_scene_in_blender(sc):
            build_scene_in_blender(sc, b)
        added.append(sc)
    return added


@contextlib.contextmanager
def current_scene_in_blender(scene):
    """Make ``scene`` the context scene for a while: the figure builder uses
    operators (edit mode) that act on the window's view layer. The window's
    scene is put back afterwards."""
    window = bpy.context.window
    if window is None:   # no window at all: an override (enough for everything but edit-mode operators)
        with bpy.context.temp_override(scene=scene, view_layer=scene.view_layers[0]):
            yield scene
        return
    before = window.scene
    window.scene = scene
    try:
        yield scene
    finally:
        window.scene = before
