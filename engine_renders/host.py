"""Scene-building helpers shared by the sample shots. Every function here
touches Blender data, so every name ends in ``_in_blender`` (STYLE practice
5); they run only in the child Python that ``engine_renders.render_sample``
starts (bpy state is global, one fresh Blender per shot).

Conventions: metres, Z-up; a character stands on z = 0 and, unrotated,
faces -Y (Blender's metarig convention: its left side is +X).
"""

from __future__ import annotations

import math

import bpy
from mathutils import Matrix, Quaternion, Vector

from blender_addon import compat

# ---------------------------------------------------------------- scene, camera, keys


def new_scene_in_blender(name: str, frames: int, width: int, height: int, fps: int = 24):
    """A fresh empty file with one scene of ``frames`` frames (1..frames)."""
    if frames < 2:
        raise ValueError(f"frames must be >= 2 (the shots move), got {frames}")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.name = name
    r = scene.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = int(width), int(height), 100
    r.fps, r.fps_base = fps, 1.0
    scene.frame_start, scene.frame_end = 1, int(frames)
    scene.frame_current = 1
    return scene


def look_at_euler(eye, target):
    """Euler rotation of a camera at ``eye`` looking at ``target`` with +Z up."""
    direction = Vector(target) - Vector(eye)
    return direction.to_track_quat("-Z", "Y").to_euler()


def add_camera_in_blender(scene, name: str = "Camera", lens_mm: float = 35.0, sensor_width_mm: float = 36.0):
    data = bpy.data.cameras.new(name)
    data.lens = lens_mm
    data.sensor_width = sensor_width_mm
    data.sensor_fit = "AUTO"
    data.clip_start, data.clip_end = 0.05, 200.0
    obj = bpy.data.objects.new(name, data)
    scene.collection.objects.link(obj)
    scene.camera = obj
    return obj


def key_in_blender(owner, path: str, keys) -> None:
    """Keyframe ``owner.path`` at (frame, value) pairs, interpolated linearly.
    ``owner`` is an object or a datablock (camera data for ``lens``)."""
    for frame, value in keys:
        setattr(owner, path, value)
        owner.keyframe_insert(path, frame=frame)
    make_linear_in_blender(owner)


def make_linear_in_blender(owner) -> None:
    action = owner.animation_data.action
    for fc in fcurves_in_blender(action):
        for k in fc.keyframe_points:
            k.interpolation = "LINEAR"


def fcurves_in_blender(action) -> list:
    return compat.action_fcurves_in_blender(action)   # the version difference lives in blender_addon.compat


def key_camera_path_in_blender(cam, frames: int, eyes, targets) -> None:
    """Camera through ``eyes[i]`` looking at ``targets[i]`` at evenly spaced
    keys from frame 1 to ``frames`` (linear in between; keys may fall on
    subframes so that the motion is uniform in time)."""
    n = len(eyes)
    at = [1 + i * (frames - 1) / (n - 1) for i in range(n)]
    key_in_blender(cam, "location", [(f, tuple(e)) for f, e in zip(at, eyes)])
    rotations = [look_at_euler(e, t) for e, t in zip(eyes, targets)]
    for i in range(1, n):  # keep Euler angles continuous so the interpolation takes the short way
        rotations[i].make_compatible(rotations[i - 1])
    key_in_blender(cam, "rotation_euler", [(f, tuple(r)) for f, r in zip(at, rotations)])


# ---------------------------------------------------------------- geometry


def mesh_object_in_blender(scene, name: str, verts, faces, location=(0, 0, 0), rotation_z_deg: float = 0.0,
                           collection=None):
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata([tuple(v) for v in verts], [], [tuple(f) for f in faces])
    mesh.update()
    obj = bpy.data.objects.new(name, mesh)
    (collection or scene.collection).objects.link(obj)
    obj.location = location
    obj.rotation_euler = (0.0, 0.0, math.radians(rotation_z_deg))
    return obj


def add_quad_in_blender(scene, name: str, corners):
    return mesh_object_in_blender(scene, name, corners, [(0, 1, 2, 3)])


def add_box_in_blender(scene, name: str, center, size, rotation_z_deg: float = 0.0):
    """An axis-aligned box of ``size`` (x, y, z) metres centred at ``center``."""
    sx, sy, sz = (s / 2.0 for s in size)
    verts = [(x, y, z) for x in (-sx, sx) for y in (-sy, sy) for z in (-sz, sz)]
    faces = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    return mesh_object_in_blender(scene, name, verts, faces, location=center, rotation_z_deg=rotation_z_deg)


def add_room_in_blender(scene, x_range, y_range, height: float, walls=("back", "left", "right"), ceiling=False):
    """Floor (and walls/ceiling) of a box room spanning ``x_range`` x ``y_range``."""
    (x0, x1), (y0, y1) = x_range, y_range
    objs = [add_quad_in_blender(scene, "Floor", [(x0, y0, 0), (x1, y0, 0), (x1, y1, 0), (x0, y1, 0)])]
    quads = {
        "back": [(x0, y1, 0), (x1, y1, 0), (x1, y1, height), (x0, y1, height)],
        "front": [(x0, y0, 0), (x1, y0, 0), (x1, y0, height), (x0, y0, height)],
        "left": [(x0, y0, 0), (x0, y1, 0), (x0, y1, height), (x0, y0, height)],
        "right": [(x1, y0, 0), (x1, y1, 0), (x1, y1, height), (x1, y0, height)],
    }
    for wall in walls:
        objs.append(add_quad_in_blender(scene, f"Wall.{wall}", quads[wall]))
    if ceiling:
        objs.append(add_quad_in_blender(scene, "Ceiling",
                                        [(x0, y0, height), (x1, y0, height), (x1, y1, height), (x0, y1, height)]))
    return objs


def _prism(length: float, r0: float, r1: float, sx: float = 1.0, sz: float = 1.0, segments: int = 8):
    """A tapered elliptical prism along -Y from y = -length (radius r0) to
    y = 0 (radius r1): the shape of a limb in the space of the bone it is
    parented to (a bone child sits at the bone's tail, Y along the bone)."""
    verts = []
    for y, r in ((-length, r0), (0.0, r1)):
        for i in range(segments):
            a = 2 * math.pi * i / segments
            verts.append((r * sx * math.cos(a), y, r * sz * math.sin(a)))
    faces = [(i, (i + 1) % segments, segments + (i + 1) % segments, segments + i) for i in range(segments)]
    faces += [tuple(reversed(range(segments))), tuple(range(segments, 2 * segments))]
    return verts, faces


def _sphere(radius: float, y: float, rings: int = 6, segments: int = 10):
    verts = [(0.0, y, radius), (0.0, y, -radius)]
    for i in range(1, rings):
        phi = math.pi * i / rings
        for j in range(segments):
            th = 2 * math.pi * j / segments
            verts.append((radius * math.sin(phi) * math.cos(th), y + radius * math.sin(phi) * math.sin(th),
                          radius * math.cos(phi)))
    faces = []
    ring = lambda i, j: 2 + (i - 1) * segments + j % segments  # noqa: E731
    for j in range(segments):
        faces.append((0, ring(1, j), ring(1, j + 1)))
        faces.append((1, ring(rings - 1, j + 1), ring(rings - 1, j)))
        for i in range(1, rings - 1):
            faces.append((ring(i, j), ring(i + 1, j), ring(i + 1, j + 1), ring(i, j + 1)))
    return verts, faces


# ---------------------------------------------------------------- characters

# Mesh body parts: bone -> (radius at head, radius at tail, x scale, z scale).
BODY_PARTS = {
    "spine": (0.15, 0.15, 1.3, 0.8), "spine.001": (0.15, 0.16, 1.3, 0.8),
    "spine.002": (0.16, 0.17, 1.3, 0.8), "spine.003": (0.17, 0.15, 1.3, 0.8),
    "spine.004": (0.055, 0.05, 1.0, 1.0), "spine.005": (0.05, 0.05, 1.0, 1.0),
    "upper_arm.L": (0.055, 0.045, 1, 1), "forearm.L": (0.045, 0.035, 1, 1), "hand.L": (0.04, 0.03, 1.3, 0.6),
    "upper_arm.R": (0.055, 0.045, 1, 1), "forearm.R": (0.045, 0.035, 1, 1), "hand.R": (0.04, 0.03, 1.3, 0.6),
    "thigh.L": (0.085, 0.06, 1, 1), "shin.L": (0.055, 0.04, 1, 1), "foot.L": (0.045, 0.04, 1, 0.7),
    "thigh.R": (0.085, 0.06, 1, 1), "shin.R": (0.055, 0.04, 1, 1), "foot.R": (0.045, 0.04, 1, 0.7),
}
HEAD_BONE, HEAD_RADIUS = "spine.006", 0.11

# Armature built in code when the bpy build has no Rigify (the operator
# ``object.armature_human_metarig_add`` comes with it): Blender's human
# metarig bone names and (rounded) rest positions, armature space, metres.
FALLBACK_BONES = {
    "spine": ((0, 0.055, 1.01), (0, 0.017, 1.157), None),
    "spine.001": ((0, 0.017, 1.157), (0, 0.012, 1.286), "spine"),
    "spine.002": ((0, 0.012, 1.286), (0, 0.026, 1.418), "spine.001"),
    "spine.003": ((0, 0.026, 1.418), (0, 0.011, 1.658), "spine.002"),
    "spine.004": ((0, 0.011, 1.658), (0, -0.013, 1.72), "spine.003"),
    "spine.005": ((0, -0.013, 1.72), (0, -0.025, 1.781), "spine.004"),
    "spine.006": ((0, -0.025, 1.781), (0, -0.025, 1.98), "spine.005"),
    "nose.002": ((0, -0.197, 1.845), (0, -0.185, 1.84), "spine.006"),
    "eye.L": ((0.052, -0.097, 1.894), (0.052, -0.145, 1.894), "spine.006"),
    "eye.R": ((-0.052, -0.097, 1.894), (-0.052, -0.145, 1.894), "spine.006"),
    "ear.L": ((0.092, -0.031, 1.862), (0.099, -0.034, 1.902), "spine.006"),
    "ear.R": ((-0.092, -0.031, 1.862), (-0.099, -0.034, 1.902), "spine.006"),
    "shoulder.L": ((0.018, -0.006, 1.599), (0.195, 0.027, 1.585), "spine.003"),
    "upper_arm.L": ((0.195, 0.027, 1.585), (0.442, 0.089, 1.449), "shoulder.L"),
    "forearm.L": ((0.442, 0.089, 1.449), (0.659, 0.049, 1.306), "upper_arm.L"),
    "hand.L": ((0.659, 0.049, 1.306), (0.723, 0.041, 1.258), "forearm.L"),
    "shoulder.R": ((-0.018, -0.006, 1.599), (-0.195, 0.027, 1.585), "spine.003"),
    "upper_arm.R": ((-0.195, 0.027, 1.585), (-0.442, 0.089, 1.449), "shoulder.R"),
    "forearm.R": ((-0.442, 0.089, 1.449), (-0.659, 0.049, 1.306), "upper_arm.R"),
    "hand.R": ((-0.659, 0.049, 1.306), (-0.723, 0.041, 1.258), "forearm.R"),
    "thigh.L": ((0.098, 0.012, 1.072), (0.098, -0.029, 0.537), "spine"),
    "shin.L": ((0.098, -0.029, 0.537), (0.098, 0.016, 0.085), "thigh.L"),
    "foot.L": ((0.098, 0.016, 0.085), (0.098, -0.093, 0.017), "shin.L"),
    "thigh.R": ((-0.098, 0.012, 1.072), (-0.098, -0.029, 0.537), "spine"),
    "shin.R": ((-0.098, -0.029, 0.537), (-0.098, 0.016, 0.085), "thigh.R"),
    "foot.R": ((-0.098, 0.016, 0.085), (-0.098, -0.093, 0.017), "shin.R"),
}


def metarig_operator_in_blender() -> bool:
    """Enable Rigify (shipped with Blender and the bpy module) so that the
    Human metarig operator exists; False when this build has no Rigify."""
    import addon_utils

    if not hasattr(bpy.types, "OBJECT_OT_armature_human_metarig_add"):
        try:
            addon_utils.enable("rigify", default_set=True)
        except Exception:  # noqa: BLE001 - any failure means: no metarig operator
            return False
    return hasattr(bpy.types, "OBJECT_OT_armature_human_metarig_add")


def add_armature_in_blender(scene, name: str, use_metarig: bool = True):
    """Blender's Human metarig (Rigify's operator) when available, else an
    armature with the metarig's bone names built in code."""
    if use_metarig and metarig_operator_in_blender():
        for obj in bpy.context.view_layer.objects:
            obj.select_set(False)
        bpy.ops.object.armature_human_metarig_add()
        obj = bpy.context.view_layer.objects.active
        obj.name = obj.data.name = name
        obj["greenlight_rig_source"] = "rigify human metarig"
        return obj
    obj = armature_from_bones_in_blender(scene, name, FALLBACK_BONES)
    obj["greenlight_rig_source"] = "metarig bone names, built in code"
    return obj


def armature_from_bones_in_blender(scene, name: str, bones):
    """An armature object with ``bones``: {bone: (head, tail, parent or None)}
    (metres, armature space); parents are linked, connected where a head sits
    on its parent's tail."""
    arm = bpy.data.armatures.new(name)
    obj = bpy.data.objects.new(name, arm)
    scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    for bone, (head, tail, _) in bones.items():
        eb = arm.edit_bones.new(bone)
        eb.head, eb.tail = head, tail
    for bone, (head, _, parent) in bones.items():
        if parent:
            eb = arm.edit_bones[bone]
            eb.parent = arm.edit_bones[parent]
            eb.use_connect = tuple(arm.edit_bones[parent].tail) == tuple(head)
    bpy.ops.object.mode_set(mode="OBJECT")
    return obj


def add_body_in_blender(scene, arm_obj) -> list:
    """Simple meshes (tapered prisms, a sphere head) parented to the bones so
    the depth pass shows the figure and follows its pose."""
    parts = []
    bones = arm_obj.data.bones
    for bone_name, (r0, r1, sx, sz) in BODY_PARTS.items():
        bone = bones.get(bone_name)
        if bone is None:
            continue
        verts, faces = _prism(bone.length, r0, r1, sx, sz)
        parts.append(_bone_child_in_blender(scene, arm_obj, bone_name, verts, faces))
    head = bones.get(HEAD_BONE)
    if head is not None:
        verts, faces = _sphere(HEAD_RADIUS, -head.length * 0.45)
        parts.append(_bone_child_in_blender(scene, arm_obj, HEAD_BONE, verts, faces))
    return parts


def _bone_child_in_blender(scene, arm_obj, bone_name, verts, faces):
    obj = mesh_object_in_blender(scene, f"{arm_obj.name}.{bone_name}", verts, faces)
    obj.parent = arm_obj
    obj.parent_type = "BONE"
    obj.parent_bone = bone_name
    obj.matrix_parent_inverse = Matrix.Identity(4)
    return obj


def add_character_in_blender(scene, name: str, location=(0, 0, 0), facing_deg: float = 0.0, use_metarig: bool = True):
    """A metarig-named armature with a mesh body, at ``location``, turned
    ``facing_deg`` about Z from facing -Y."""
    arm_obj = add_armature_in_blender(scene, name, use_metarig=use_metarig)
    arm_obj.location = location
    arm_obj.rotation_euler = (0.0, 0.0, math.radians(facing_deg))
    add_body_in_blender(scene, arm_obj)
    bpy.context.view_layer.update()
    return arm_obj


def _depth(bones, name: str) -> int:
    d, b = 0, bones[name]
    while b.parent is not None:
        d, b = d + 1, b.parent
    return d


def pose_in_blender(arm_obj, directions: dict) -> dict:
    """Aim bones along armature-space ``directions`` (bone -> (x, y, z); the
    character faces -Y, its left is +X, up is +Z), parents first, from the
    rest pose. Returns every posed bone's local rotation quaternion, ready
    for ``key_pose_in_blender``."""
    pose_bones = arm_obj.pose.bones
    for pb in pose_bones:
        pb.rotation_mode = "QUATERNION"
        pb.rotation_quaternion = Quaternion()
        pb.location = (0, 0, 0)
    bpy.context.view_layer.update()
    names = sorted(directions, key=lambda n: _depth(arm_obj.data.bones, n))
    for name in names:
        pb = pose_bones[name]
        m = pb.matrix.copy()
        current = m.col[1].xyz.normalized()
        target = Vector(directions[name]).normalized()
        turn = current.rotation_difference(target).to_matrix().to_4x4()
        head = m.translation.copy()
        rot = m.copy()
        rot.translation = (0, 0, 0)
        new = turn @ rot
        new.translation = head
        pb.matrix = new
        bpy.context.view_layer.update()
    return {name: pose_bones[name].rotation_quaternion.copy() for name in names}


def key_pose_in_blender(arm_obj, frame: int, rotations: dict) -> None:
    for name, q in rotations.items():
        pb = arm_obj.pose.bones[name]
        pb.rotation_quaternion = q
        pb.keyframe_insert("rotation_quaternion", frame=frame)


def animate_poses_in_blender(arm_obj, keys) -> None:
    """Keyframe poses: ``keys`` is [(frame, {bone: direction})]; bones missing
    from a pose keep the rest rotation there. Linear in between."""
    posed = [(frame, pose_in_blender(arm_obj, dirs)) for frame, dirs in keys]
    names = set().union(*(r for _, r in posed))
    for frame, rotations in posed:
        full = {n: rotations.get(n, Quaternion()) for n in names}
        key_pose_in_blender(arm_obj, frame, full)
    if arm_obj.animation_data and arm_obj.animation_data.action:
        make_linear_in_blender(arm_obj)


# Armature-space directions for common poses (the character faces -Y).
DOWN = (0.0, 0.0, -1.0)
ARMS_AT_SIDES = {"upper_arm.L": (0.25, 0.02, -1.0), "forearm.L": (0.12, -0.1, -1.0),
                 "upper_arm.R": (-0.25, 0.02, -1.0), "forearm.R": (-0.12, -0.1, -1.0)}
