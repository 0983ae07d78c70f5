"""(b) A fast pan across a corridor: the camera whips 120 degrees about the
vertical (from looking down one end, across the pillared side wall, to the
other end) while tracking 2 m along the corridor. Large horizontal motion:
about f_px x 120deg / (frames - 1) pixels a frame. A static scene, so the
motion pass must equal the flow predicted from depth + camera path.

Very short shots pan less (at most ``MAX_STEP_DEG`` a frame): at 40 degrees
a frame Blender's Vector pass exceeds float16 for points that leave the
view, and the add-on refuses the shot (seen at 4 frames)."""

from __future__ import annotations

import math

NAME = "corridor_pan"
DESCRIPTION = "fast 120-degree pan across a pillared corridor"
PAN_DEG = 120.0
MAX_STEP_DEG = 12.0
START_YAW_DEG = 150.0     # look direction angle from +X, about +Z (counterclockwise seen from above)
EYE_START = (-1.0, -0.4, 1.6)
EYE_END = (1.0, -0.4, 1.6)
LENS_MM = 18.0
HALF_WIDTH = 1.6
LENGTH = 40.0
HEIGHT = 3.0


def pan_deg(frames: int) -> float:
    """The pan over a shot of ``frames`` frames (120 degrees from 11 frames on)."""
    return min(PAN_DEG, MAX_STEP_DEG * (frames - 1))


def end_yaw_deg(frames: int) -> float:
    return START_YAW_DEG - pan_deg(frames)


def build_scene_in_blender(frames: int, width: int, height: int):
    from . import host

    scene = host.new_scene_in_blender(NAME, frames, width, height)
    x0, x1 = -LENGTH / 2, LENGTH / 2
    host.add_room_in_blender(scene, (x0, x1), (-HALF_WIDTH, HALF_WIDTH), HEIGHT,
                             walls=("front", "back", "left", "right"), ceiling=True)
    for i, x in enumerate(range(int(x0) + 2, int(x1) - 1, 3)):
        for side in (-1, 1):
            host.add_box_in_blender(scene, f"Pillar.{i}.{side}", (x, side * (HALF_WIDTH - 0.15), HEIGHT / 2),
                                    (0.35, 0.3, HEIGHT))
        if i % 2 == 0:
            host.add_box_in_blender(scene, f"Door.{i}", (x + 1.5, HALF_WIDTH - 0.05, 1.05), (1.0, 0.1, 2.1))
    for i, (x, y, s) in enumerate(((-4.0, 0.9, 0.6), (3.0, -1.0, 0.5), (6.5, 1.0, 0.8), (-7.5, -0.9, 0.7))):
        host.add_box_in_blender(scene, f"Crate.{i}", (x, y, s / 2), (s, s, s), rotation_z_deg=15 * i)
    cam = host.add_camera_in_blender(scene, "PanCam", lens_mm=LENS_MM)
    # Three keys (start, middle, end) keep the yaw linear in time.
    eyes, targets = [], []
    for t in (0.0, 0.5, 1.0):
        eye = tuple(a + t * (b - a) for a, b in zip(EYE_START, EYE_END))
        yaw = math.radians(START_YAW_DEG + t * (end_yaw_deg(frames) - START_YAW_DEG))
        eyes.append(eye)
        targets.append((eye[0] + math.cos(yaw), eye[1] + math.sin(yaw), eye[2] - 0.05))
    host.key_camera_path_in_blender(cam, frames, eyes, targets)
    scene.frame_set(1)
    return scene
