"""Test scenes for the recording fake ``unreal`` module, and an installer
that puts the fake and the plugin's Python folder on the import path.

The scene is analytic: a CineCamera trucking along Unreal +Y (to its right)
in front of a wall at x = WALL_X_CM, with a Manny-named skeleton standing
in front of the wall. The fake "render" writes the EXRs MRQ would write for
it (depth of the wall in cm, sky rows as background, motion vectors in the
documented MRQ encoding) so decoding can be checked against
``bridge.shot.camera``.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
PLUGIN_PY = REPO / "unreal_plugin" / "Greenlight" / "Content" / "Python"
WALL_X_CM = 800.0
CAMERA_Z_CM = 150.0
TRUCK_CM_PER_FRAME = 4.0
SKY_ROWS = 3
MANNY_BONES = ("root", "pelvis", "spine_01", "spine_02", "spine_03", "spine_04", "spine_05", "neck_01", "neck_02",
               "head", "clavicle_l", "upperarm_l", "lowerarm_l", "hand_l", "clavicle_r", "upperarm_r",
               "lowerarm_r", "hand_r", "thigh_l", "calf_l", "foot_l", "ball_l", "thigh_r", "calf_r", "foot_r",
               "ball_r")


def install():
    """Import the fake as ``unreal`` and make ``greenlight_unreal`` importable; returns the fake."""
    from tests.fakes import unreal as fake

    sys.modules["unreal"] = fake
    if str(PLUGIN_PY) not in sys.path:
        sys.path.insert(0, str(PLUGIN_PY))
    fake.reset()
    return fake


def reload_plugin():
    """Fresh plugin modules bound to the current fake."""
    for name in [n for n in sys.modules if n == "greenlight_unreal" or n.startswith("greenlight_unreal.")]:
        del sys.modules[name]
    return importlib.import_module("greenlight_unreal")


def camera_pose(frame: int):
    """World pose of the camera at a display-rate frame: (location cm, (pitch, yaw, roll))."""
    return (0.0, TRUCK_CM_PER_FRAME * frame, CAMERA_Z_CM), (0.0, 0.0, 0.0)


def manny_bones(frame: int) -> dict:
    """A standing Manny facing the camera (-X), 300 cm in front of it; bone world transforms."""
    x = 300.0
    points = {
        "root": (x, 0, 0), "pelvis": (x, 0, 95), "spine_01": (x, 0, 105), "spine_02": (x, 0, 115),
        "spine_03": (x, 0, 125), "spine_04": (x, 0, 135), "spine_05": (x, 0, 142), "neck_01": (x, 0, 150),
        "neck_02": (x, 0, 155), "head": (x, 0, 160),
        # Unreal is left-handed (facing +X, +Y is to the right), so a character
        # facing -X has its right side at -Y: its right hand shows on image left.
        "clavicle_l": (x, 5, 145), "upperarm_l": (x, 18, 145), "lowerarm_l": (x, 45, 140), "hand_l": (x, 70, 135),
        "clavicle_r": (x, -5, 145), "upperarm_r": (x, -18, 145), "lowerarm_r": (x, -45, 140), "hand_r": (x, -70, 135),
        "thigh_l": (x, 10, 92), "calf_l": (x, 11, 50), "foot_l": (x, 12, 8), "ball_l": (x - 12, 12, 2),
        "thigh_r": (x, -10, 92), "calf_r": (x, -11, 50), "foot_r": (x, -12, 8), "ball_r": (x - 12, -12, 2),
    }
    out = {}
    for name, p in points.items():
        rotation = (0.0, 0.0, 0.0)
        if name == "head":
            # the mapping's assumed head axes: local +X up, +Y toward the face
            # (world -X, the camera), +Z to the character's right (world -Y)
            rotation = (90.0, 0.0, -90.0)
        out[name] = (p, rotation, (1.0, 1.0, 1.0))
    return out


def build_sequence(fake, frames: int = 6, start: int = 10, with_character: bool = True):
    """A LevelSequence with a camera cut on one CineCameraActor (and Manny)."""
    seq = fake.LevelSequence("SEQ_Truck", fake.FrameRate(24, 1), start, start + frames)
    cam = fake.CineCameraActor("CineCam_A", fake.CineCameraComponent(camera_pose, 35.0, fake.Filmback(36.0, 20.25),
                                                                     focus_distance=WALL_X_CM))
    seq.bind("cam-guid", cam)
    seq.add_camera_cut(start, start + frames, "cam-guid")
    if with_character:
        seq.bind("manny-guid", fake.SkeletalMeshActor("Manny", fake.SkeletalMeshComponent(MANNY_BONES, manny_bones)))
    fake.STATE.current_sequence = seq
    return seq


def wall_passes(width: int, height: int, focal_mm=35.0, sensor_mm=36.0):
    """(depth cm [H, W], backward velocity px [H, W, 2]) of the trucking shot:
    a fronto-parallel wall, so every wall pixel moved left by f * truck / depth
    since the previous frame; sky rows have no motion and huge depth."""
    f_px = focal_mm / sensor_mm * width
    depth_cm = np.full((height, width), WALL_X_CM, dtype=np.float32)
    depth_cm[:SKY_ROWS] = 6.0e7
    velocity = np.zeros((height, width, 2))
    velocity[..., 0] = -f_px * TRUCK_CM_PER_FRAME / WALL_X_CM
    velocity[:SKY_ROWS] = 0.0
    return depth_cm, velocity


def write_mrq_exr(path: Path, depth_cm: np.ndarray, rg: tuple[np.ndarray, np.ndarray]) -> None:
    """One multilayer EXR in MRQ's channel layout (beauty + the two material layers)."""
    import OpenEXR

    h, w = depth_cm.shape
    ones = np.ones((h, w), np.float32)
    channels = {"R": ones * 0.2, "G": ones * 0.3, "B": ones * 0.4, "A": ones}
    for c in "RGBA":
        channels[f"FinalImageMovieRenderQueue_WorldDepth.{c}"] = depth_cm.astype(np.float32) if c != "A" else ones
    r, g = rg
    channels["FinalImageMovieRenderQueue_MotionVectors.R"] = r.astype(np.float32)
    channels["FinalImageMovieRenderQueue_MotionVectors.G"] = g.astype(np.float32)
    channels["FinalImageMovieRenderQueue_MotionVectors.B"] = ones * 0.0
    channels["FinalImageMovieRenderQueue_MotionVectors.A"] = ones
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    path.parent.mkdir(parents=True, exist_ok=True)
    with OpenEXR.File(header, channels) as f:
        f.write(str(path))


def render_hook(width: int, height: int, encoding):
    """A fake MRQ render for ``build_sequence``'s shot: writes one EXR per frame."""
    from greenlight_unreal import mrq_exr

    def hook(job) -> bool:
        config = job.get_configuration()
        output = next(s for cls, s in config.settings.items() if cls.__name__ == "MoviePipelineOutputSetting")
        seq = sys.modules["unreal"].STATE.current_sequence
        depth_cm, velocity = wall_passes(width, height)
        rg = mrq_exr.encode_velocity(velocity, encoding)
        for frame in range(seq.get_playback_start(), seq.get_playback_end()):
            write_mrq_exr(mrq_exr.pass_file(output.output_directory.path, seq.get_name(), frame,
                                            output.zero_pad_frame_numbers), depth_cm, rg)
        return True

    return hook
