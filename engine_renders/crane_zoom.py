"""(d) Crane-up with a zoom: the camera rises 5 m while tilting down to keep
a figure in a pillared courtyard framed, and the focal length goes from
24 mm to 50 mm over the shot. A static scene."""

from __future__ import annotations

NAME = "crane_zoom"
DESCRIPTION = "crane up 5 m with a 24->50 mm zoom onto a figure in a courtyard"
FIGURE = "Hero"
FIGURE_LOCATION = (0.0, 2.0, 0.0)
EYE_START = (0.0, -6.0, 0.5)
EYE_END = (0.0, -6.5, 5.5)
TARGET_START = (0.0, 2.0, 1.3)
TARGET_END = (0.0, 2.0, 0.9)
LENS_START_MM, LENS_END_MM = 24.0, 50.0

_POSE = {"upper_arm.L": (0.7, -0.1, 0.1), "forearm.L": (0.9, -0.3, 0.4), "hand.L": (0.9, -0.3, 0.5),
         "upper_arm.R": (-0.25, 0.02, -1.0), "forearm.R": (-0.12, -0.1, -1.0),
         "thigh.R": (-0.15, 0.0, -1.0)}


def build_scene_in_blender(frames: int, width: int, height: int):
    from . import host

    scene = host.new_scene_in_blender(NAME, frames, width, height)
    host.add_room_in_blender(scene, (-15.0, 15.0), (-15.0, 9.0), 6.0, walls=("back",))
    for i, x in enumerate((-6.0, -3.0, 3.0, 6.0)):
        for j, y in enumerate((0.0, 5.0)):
            host.add_box_in_blender(scene, f"Pillar.{i}.{j}", (x, y, 2.0), (0.5, 0.5, 4.0))
    host.add_box_in_blender(scene, "Bench", (-1.8, 3.0, 0.25), (1.6, 0.5, 0.5))
    host.add_box_in_blender(scene, "Crate", (1.7, 0.5, 0.4), (0.8, 0.8, 0.8), rotation_z_deg=25)
    fig = host.add_character_in_blender(scene, FIGURE, location=FIGURE_LOCATION)
    host.animate_poses_in_blender(fig, [(1, _POSE)])
    cam = host.add_camera_in_blender(scene, "CraneCam", lens_mm=LENS_START_MM)
    host.key_camera_path_in_blender(cam, frames, [EYE_START, EYE_END], [TARGET_START, TARGET_END])
    host.key_in_blender(cam.data, "lens", [(1, LENS_START_MM), (frames, LENS_END_MM)])
    scene.frame_set(1)
    return scene
