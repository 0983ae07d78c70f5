"""Pinhole camera maths in canonical space (Z-up, metres, camera looks -Z,
+Y up; image origin top-left, y down). Sensor fit follows Blender's rules so
the add-on's samples project exactly as Blender renders them."""

from __future__ import annotations

import numpy as np

from .model import CameraSample


def focal_length_px(camera: CameraSample, width: int, height: int) -> float:
    """Focal length in pixels (square pixels, no lens shift)."""
    fit = camera.sensor_fit
    if fit == "AUTO":
        fit = "HORIZONTAL" if width >= height else "VERTICAL_FROM_WIDTH"
    if fit == "HORIZONTAL":
        return camera.focal_length_mm / camera.sensor_width_mm * width
    if fit == "VERTICAL_FROM_WIDTH":  # AUTO on a portrait image: width spans height
        return camera.focal_length_mm / camera.sensor_width_mm * height
    return camera.focal_length_mm / camera.sensor_height_mm * height


def intrinsics(camera: CameraSample, width: int, height: int) -> np.ndarray:
    """3x3 intrinsic matrix K for image pixels (x right, y down)."""
    f = focal_length_px(camera, width, height)
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


def world_to_camera(camera: CameraSample) -> np.ndarray:
    return np.linalg.inv(np.asarray(camera.world_matrix, dtype=np.float64))


def project(camera: CameraSample, width: int, height: int, points_m: np.ndarray):
    """Project world points [N, 3] to pixels [N, 2] and planar depth [N] (metres).

    Points behind the camera get depth <= 0; their pixel coordinates are
    meaningless and callers must mask them.
    """
    pts = np.asarray(points_m, dtype=np.float64).reshape(-1, 3)
    cam = (world_to_camera(camera) @ np.c_[pts, np.ones(len(pts))].T).T[:, :3]
    depth = -cam[:, 2]
    f = focal_length_px(camera, width, height)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = width / 2.0 + f * cam[:, 0] / depth
        y = height / 2.0 - f * cam[:, 1] / depth
    return np.stack([x, y], axis=1), depth


def pixel_rays(camera: CameraSample, width: int, height: int) -> np.ndarray:
    """Camera-space directions [H, W, 3] through pixel centres with z = -1."""
    f = focal_length_px(camera, width, height)
    xs = (np.arange(width) + 0.5 - width / 2.0) / f
    ys = -(np.arange(height) + 0.5 - height / 2.0) / f
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx, gy, -np.ones_like(gx)], axis=-1)


def unproject_depth(camera: CameraSample, depth_m: np.ndarray) -> np.ndarray:
    """World points [H, W, 3] of each pixel centre at its planar depth."""
    h, w = depth_m.shape
    cam_pts = pixel_rays(camera, w, h) * np.asarray(depth_m, dtype=np.float64)[..., None]
    m = np.asarray(camera.world_matrix, dtype=np.float64)
    return cam_pts @ m[:3, :3].T + m[:3, 3]


def static_forward_flow(cam0: CameraSample, cam1: CameraSample, depth0_m: np.ndarray) -> np.ndarray:
    """Forward flow [H, W, 2] (pixels, dx right, dy down) of a static scene
    seen with depth ``depth0_m`` from ``cam0`` as the camera moves to ``cam1``.
    Background (non-finite or 0 depth) gets zero flow."""
    h, w = depth0_m.shape
    valid = np.isfinite(depth0_m) & (depth0_m > 0)
    safe = np.where(valid, depth0_m, 1.0)
    world = unproject_depth(cam0, safe).reshape(-1, 3)
    px1, d1 = project(cam1, w, h, world)
    xs, ys = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    flow = np.stack([px1[:, 0].reshape(h, w) - xs, px1[:, 1].reshape(h, w) - ys], axis=-1)
    ok = valid & (d1.reshape(h, w) > 0)
    flow[~ok] = 0.0
    return flow


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Camera-to-world matrix of a camera at ``eye`` looking at ``target``."""
    eye = np.asarray(eye, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - eye
    forward /= np.linalg.norm(forward)
    z = -forward
    x = np.cross(np.asarray(up, dtype=np.float64), z)
    if np.linalg.norm(x) < 1e-9:
        raise ValueError("look_at: up is parallel to the view direction")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x, y, z, eye
    return m
