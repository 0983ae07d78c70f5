"""Project 3D joints into a camera as COCO-18 keypoints with visibility.

Shared by the add-ons (joints from rigs) and the synthetic sample shot.
"""

from __future__ import annotations

import numpy as np

from . import coco
from .camera import project
from .model import CameraSample, CharacterPose


def pose_from_joints(
    name: str,
    camera: CameraSample,
    width: int,
    height: int,
    joints_m: np.ndarray,
    present: np.ndarray | None = None,
    depth_m: np.ndarray | None = None,
    occlusion_tolerance_m: float = 0.15,
) -> CharacterPose:
    """``joints_m`` [18, 3] world positions in COCO-18 order; ``present`` [18]
    bool marks joints the rig maps. A joint is absent when unmapped, behind the
    camera or outside the frame; occluded when ``depth_m`` holds a surface more
    than ``occlusion_tolerance_m`` in front of it; visible otherwise."""
    joints = np.asarray(joints_m, dtype=np.float64).reshape(coco.COUNT, 3)
    present = np.ones(coco.COUNT, bool) if present is None else np.asarray(present, bool)
    px, depth = project(camera, width, height, joints)
    inside = (depth > camera.clip_start_m) & (px[:, 0] >= 0) & (px[:, 0] < width) \
        & (px[:, 1] >= 0) & (px[:, 1] < height)
    vis = np.where(present & inside, coco.VISIBLE, coco.ABSENT).astype(np.uint8)
    if depth_m is not None:
        for i in np.flatnonzero(vis):
            col = min(int(px[i, 0]), width - 1)
            row = min(int(px[i, 1]), height - 1)
            surface = float(depth_m[row, col])
            if 0 < surface < depth[i] - occlusion_tolerance_m:
                vis[i] = coco.OCCLUDED
    keypoints = np.where(vis[:, None] > 0, px, 0.0).astype(np.float32)
    return CharacterPose(name=name, keypoints_px=keypoints, visibility=vis)
