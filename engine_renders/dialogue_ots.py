"""(c) Two-character dialogue, over the shoulder: the camera sits behind the
listener's right shoulder and pushes in slowly on the speaker, who gestures.
Both armatures are metarigs with mesh bodies, so the shot carries two
characters' poses (the listener mostly from behind: few keypoints in frame,
its face ones occluded by its own head)."""

from __future__ import annotations

NAME = "dialogue_ots"
DESCRIPTION = "two characters, over the listener's shoulder onto the gesturing speaker"
LISTENER, SPEAKER = "Listener", "Speaker"
LISTENER_LOCATION = (-0.25, 0.0, 0.0)
SPEAKER_LOCATION = (0.35, 1.5, 0.0)
SPEAKER_FACING_DEG = -20.0   # turned toward the listener
EYE_START = (0.5, -1.5, 1.75)
EYE_END = (0.42, -1.15, 1.72)
LOOK_AT = (0.15, 1.5, 1.4)
LENS_MM = 32.0

_SPEAKER_A = {"upper_arm.L": (0.3, -0.6, -0.6), "forearm.L": (0.1, -1.0, 0.25), "hand.L": (0.1, -1.0, 0.3),
              "upper_arm.R": (-0.25, 0.02, -1.0), "forearm.R": (-0.12, -0.1, -1.0)}
_SPEAKER_B = {"upper_arm.L": (0.5, -0.5, -0.4), "forearm.L": (0.6, -0.8, 0.4), "hand.L": (0.7, -0.8, 0.5),
              "upper_arm.R": (-0.35, -0.3, -0.9), "forearm.R": (-0.1, -1.0, -0.1)}
_LISTENER = {"upper_arm.L": (0.25, 0.02, -1.0), "forearm.L": (0.12, -0.1, -1.0),
             "upper_arm.R": (-0.25, 0.02, -1.0), "forearm.R": (-0.12, -0.1, -1.0)}


def build_scene_in_blender(frames: int, width: int, height: int):
    from . import host

    scene = host.new_scene_in_blender(NAME, frames, width, height)
    host.add_room_in_blender(scene, (-4.0, 4.0), (-4.0, 5.0), 3.2, walls=("back", "left", "right"))
    host.add_box_in_blender(scene, "Shelf", (-1.6, 4.7, 1.0), (1.6, 0.5, 2.0))
    host.add_box_in_blender(scene, "Plant", (1.5, 3.9, 0.45), (0.5, 0.5, 0.9), rotation_z_deg=30)
    listener = host.add_character_in_blender(scene, LISTENER, location=LISTENER_LOCATION, facing_deg=180.0)
    host.animate_poses_in_blender(listener, [(1, _LISTENER)])
    speaker = host.add_character_in_blender(scene, SPEAKER, location=SPEAKER_LOCATION, facing_deg=SPEAKER_FACING_DEG)
    keys = []
    n_keys = max(2, (frames - 1) // 16 + 1)
    for i in range(n_keys):
        keys.append((1 + round(i * (frames - 1) / (n_keys - 1)), _SPEAKER_A if i % 2 == 0 else _SPEAKER_B))
    host.animate_poses_in_blender(speaker, keys)
    cam = host.add_camera_in_blender(scene, "OTSCam", lens_mm=LENS_MM)
    host.key_camera_path_in_blender(cam, frames, [EYE_START, EYE_END], [LOOK_AT, LOOK_AT])
    scene.frame_set(1)
    return scene
