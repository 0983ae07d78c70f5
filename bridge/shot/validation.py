"""Shot validation: refuse bad input with the field path and what was expected.

Run by the add-ons before upload and again by the bridge (never trust the
client). Limits come from the bridge's capabilities.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..errors import LimitExceededError, ShotValidationError
from . import coco
from .model import DEPTH_BACKGROUNDS, SENSOR_FITS, Shot

_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DTYPES = {
    "depth_m": ("float32", "float16"),
    "motion_px": ("float16", "float32"),
    "normals": ("float16", "float32"),
    "mask": ("uint8",),
}


@dataclass(frozen=True)
class ShotLimits:
    max_frames: int = 480
    max_width: int = 2048
    max_height: int = 2048


def validate_shot(shot: Shot, limits: ShotLimits | None = None) -> Shot:
    """Raise ShotValidationError / LimitExceededError; return the shot if fine."""
    validate_shot_fields(shot, shot.frame_count, limits)
    for i, frame in enumerate(shot.frames):
        validate_frame(shot, frame, i)
    return shot


def validate_shot_fields(shot, frame_count: int, limits: ShotLimits | None = None) -> None:
    """Everything but the frames (``shot`` needs tags, fps, width, height and
    depth_background; its frames may be absent, as while a file is scanned)."""
    _check_tags(shot)
    if not (isinstance(shot.fps.numerator, int) and isinstance(shot.fps.denominator, int)
            and shot.fps.numerator > 0 and shot.fps.denominator > 0):
        raise ShotValidationError("fps",
                                  f"must be a positive fraction, got {shot.fps.numerator}/{shot.fps.denominator}")
    if shot.width <= 0 or shot.height <= 0:
        raise ShotValidationError("resolution", f"must be positive, got {shot.width}x{shot.height}")
    if shot.depth_background not in DEPTH_BACKGROUNDS:
        raise ShotValidationError("depth_background",
                                  f"must be one of {DEPTH_BACKGROUNDS}, got {shot.depth_background!r}")
    if not frame_count:
        raise ShotValidationError("frames", "the shot has no frames")
    if limits is not None:
        if frame_count > limits.max_frames:
            raise LimitExceededError("max_frames", frame_count, limits.max_frames)
        if shot.width > limits.max_width:
            raise LimitExceededError("max_width", shot.width, limits.max_width)
        if shot.height > limits.max_height:
            raise LimitExceededError("max_height", shot.height, limits.max_height)


def validate_frame(shot, frame, i: int) -> None:
    """One frame against the shot's resolution and depth convention."""
    where = f"frames[{i}]"
    if frame.index != i:
        raise ShotValidationError(f"{where}.index",
                                  f"expected {i} (frames are indexed 0..n-1 in order), got {frame.index}")
    _check_camera(frame.camera, f"{where}.camera")
    _check_arrays(shot, frame, where)
    names = set()
    for j, pose in enumerate(frame.poses):
        _check_pose(shot, pose, f"{where}.poses[{j}]")
        if pose.name in names:
            raise ShotValidationError(f"{where}.poses[{j}].name", f"duplicate character {pose.name!r}")
        names.add(pose.name)


def _check_tags(shot: Shot) -> None:
    for name in ("project", "shot"):
        value = getattr(shot.tags, name)
        if not value:
            raise ShotValidationError(f"tags.{name}", "is required")
        if not _TAG.match(value):
            raise ShotValidationError(
                f"tags.{name}", f"{value!r} must be 1-64 characters of letters, digits, '.', '_' or '-'")
    if not isinstance(shot.tags.version, int) or shot.tags.version < 1:
        raise ShotValidationError("tags.version", f"must be >= 1, got {shot.tags.version!r}")


def _check_camera(cam, where: str) -> None:
    m = np.asarray(cam.world_matrix, dtype=np.float64)
    if m.shape != (4, 4):
        raise ShotValidationError(f"{where}.world_matrix", f"must be 4x4, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ShotValidationError(f"{where}.world_matrix", "contains NaN or infinite values")
    if not np.allclose(m[3], (0, 0, 0, 1)):
        raise ShotValidationError(f"{where}.world_matrix", f"last row must be (0, 0, 0, 1), got {tuple(m[3])}")
    if abs(np.linalg.det(m[:3, :3])) < 1e-9:
        raise ShotValidationError(f"{where}.world_matrix", "is singular (zero scale)")
    for name in ("focal_length_mm", "sensor_width_mm", "sensor_height_mm", "clip_start_m"):
        value = getattr(cam, name)
        if not (np.isfinite(value) and value > 0):
            raise ShotValidationError(f"{where}.{name}", f"must be > 0, got {value}")
    if not (np.isfinite(cam.clip_end_m) and cam.clip_end_m > cam.clip_start_m):
        raise ShotValidationError(f"{where}.clip_end_m",
                                  f"must be > clip_start_m ({cam.clip_start_m}), got {cam.clip_end_m}")
    if not (np.isfinite(cam.focus_distance_m) and cam.focus_distance_m >= 0):
        raise ShotValidationError(f"{where}.focus_distance_m", f"must be >= 0, got {cam.focus_distance_m}")
    if cam.sensor_fit not in SENSOR_FITS:
        raise ShotValidationError(f"{where}.sensor_fit", f"must be one of {SENSOR_FITS}, got {cam.sensor_fit!r}")


def _check_arrays(shot: Shot, frame, where: str) -> None:
    h, w = shot.height, shot.width
    shapes = {"depth_m": (h, w), "motion_px": (h, w, 2), "normals": (h, w, 3), "mask": (h, w)}
    for name, shape in shapes.items():
        arr = getattr(frame, name)
        if arr is None:
            continue
        if not isinstance(arr, np.ndarray):
            raise ShotValidationError(f"{where}.{name}", f"must be a numpy array, got {type(arr).__name__}")
        if arr.dtype.name not in DTYPES[name]:
            raise ShotValidationError(f"{where}.{name}", f"dtype must be one of {DTYPES[name]}, got {arr.dtype.name}")
        if arr.shape != shape:
            raise ShotValidationError(
                f"{where}.{name}", f"shape {arr.shape} does not match the shot's {w}x{h} resolution (expected {shape})")
    depth = frame.depth_m
    if depth is not None:
        nan = int(np.isnan(depth).sum())
        if nan:
            raise ShotValidationError(f"{where}.depth_m", f"{nan} NaN values; depth must be metres >= 0")
        neg = int((depth < 0).sum())
        if neg:
            raise ShotValidationError(f"{where}.depth_m",
                                      f"{neg} negative values (min {float(depth.min()):.4g}); "
                                      f"depth must be metres >= 0")
        if shot.depth_background == "zero" and np.isinf(depth).any():
            raise ShotValidationError(f"{where}.depth_m", "holds +inf but the shot declares depth_background='zero'")
    for name in ("motion_px", "normals"):
        arr = getattr(frame, name)
        if arr is not None and not np.all(np.isfinite(arr)):
            raise ShotValidationError(f"{where}.{name}", "contains NaN or infinite values")


def _check_pose(shot: Shot, pose, where: str) -> None:
    if not pose.name:
        raise ShotValidationError(f"{where}.name", "is required")
    kp = pose.keypoints_px
    vis = pose.visibility
    if not isinstance(kp, np.ndarray) or kp.shape != (coco.COUNT, 2) or kp.dtype != np.float32:
        got = f"{kp.dtype.name} {kp.shape}" if isinstance(kp, np.ndarray) else type(kp).__name__
        raise ShotValidationError(f"{where}.keypoints_px", f"must be float32 [{coco.COUNT}, 2], got {got}")
    if not isinstance(vis, np.ndarray) or vis.shape != (coco.COUNT,) or vis.dtype != np.uint8:
        got = f"{vis.dtype.name} {vis.shape}" if isinstance(vis, np.ndarray) else type(vis).__name__
        raise ShotValidationError(f"{where}.visibility", f"must be uint8 [{coco.COUNT}], got {got}")
    if (vis > coco.VISIBLE).any():
        raise ShotValidationError(f"{where}.visibility", "values must be 0 (absent), 1 (occluded) or 2 (visible)")
    present = vis > 0
    if not np.all(np.isfinite(kp[present])):
        raise ShotValidationError(f"{where}.keypoints_px", "a present keypoint is NaN or infinite")
