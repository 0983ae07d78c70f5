"""(a) Dolly-in on a posed humanoid: Blender's Human metarig (Rigify) with a
simple mesh body, waving, in a room with a few crates. The camera travels
6.5 m toward the figure, so its depth falls from ~9.5 m to ~3.4 m."""

from __future__ import annotations

NAME = "dolly_character"
DESCRIPTION = "dolly-in on a posed, waving metarig figure in a room"
FIGURE = "Hero"
FIGURE_LOCATION = (0.0, 0.0, 0.0)
CAMERA_START = (0.6, -9.5, 1.6)
CAMERA_END = (0.15, -3.4, 1.5)
LOOK_AT = (0.0, 0.0, 1.15)
LENS_MM = 35.0

# Armature-space directions (the figure faces -Y; its right side is -X).
_BASE_POSE = {
    "upper_arm.L": (0.25, 0.02, -1.0), "forearm.L": (0.15, -0.25, -1.0),
    "upper_arm.R": (-0.6, -0.1, 0.55),
    "thigh.L": (0.05, -0.12, -1.0), "shin.L": (0.03, 0.06, -1.0),
    "thigh.R": (-0.04, 0.03, -1.0),
}
_WAVE_OUT = {"forearm.R": (-0.45, -0.1, 1.0), "hand.R": (-0.5, -0.1, 1.0)}
_WAVE_IN = {"forearm.R": (0.2, -0.15, 1.0), "hand.R": (0.25, -0.15, 1.0)}


def build_scene_in_blender(frames: int, width: int, height: int):
    from . import host

    scene = host.new_scene_in_blender(NAME, frames, width, height)
    host.add_room_in_blender(scene, (-5.0, 5.0), (-12.0, 4.0), 6.0, walls=("back", "left", "right"))
    host.add_box_in_blender(scene, "Crate.1", (-2.3, 1.6, 0.4), (0.8, 0.8, 0.8), rotation_z_deg=20)
    host.add_box_in_blender(scene, "Crate.2", (-2.1, 1.5, 1.05), (0.5, 0.5, 0.5), rotation_z_deg=-10)
    host.add_box_in_blender(scene, "Crate.3", (2.6, 2.4, 0.6), (1.2, 1.2, 1.2))
    host.add_box_in_blender(scene, "Column", (1.9, -1.8, 3.0), (0.4, 0.4, 6.0))
    fig = host.add_character_in_blender(scene, FIGURE, location=FIGURE_LOCATION)
    # Wave: the right forearm swings every ~half second (12 frames at 24 fps).
    keys = []
    n_keys = max(2, (frames - 1) // 12 + 1)
    for i in range(n_keys):
        frame = 1 + round(i * (frames - 1) / (n_keys - 1))
        keys.append((frame, {**_BASE_POSE, **(_WAVE_OUT if i % 2 == 0 else _WAVE_IN)}))
    host.animate_poses_in_blender(fig, keys)
    cam = host.add_camera_in_blender(scene, "DollyCam", lens_mm=LENS_MM)
    host.key_camera_path_in_blender(cam, frames, [CAMERA_START, CAMERA_END], [LOOK_AT, LOOK_AT])
    scene.frame_set(1)
    return scene
