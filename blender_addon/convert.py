"""Blender values -> shot model values, engine-free (numpy only).

The host functions read raw numbers from Blender and hand them here; every
unit/convention rule of the add-on lives in this one module (STYLE practice
4). Facts relied on (bpy 5.0.1, DESIGN section 10): the Cycles Depth pass is
planar camera distance in metres with 1e10 for background; the Vector pass
is pixels, y up, ``Z,W`` = position now minus next frame.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from ._deps import errors, model, tags

BACKGROUND_DEPTH_M = 1e9   # Cycles writes 1e10 where no surface is hit


def camera_sample(name: str, *, matrix_world, cam_type: str, lens_mm: float, sensor_width_mm: float,
                  sensor_height_mm: float, sensor_fit: str, clip_start_m: float, clip_end_m: float,
                  focus_distance_m: float, shift_x: float, shift_y: float,
                  pixel_aspect: float = 1.0) -> model.CameraSample:
    """A CameraSample from a Blender camera's evaluated values.

    Scale on the camera's world matrix is removed, as Blender's renderer
    does; shear or a mirroring (negative) scale is refused, as are
    non-perspective cameras, lens shift and non-square pixels, which the
    pinhole model in ``bridge.shot.camera`` cannot represent.
    """
    if cam_type != "PERSP":
        kind = {"ORTHO": "orthographic", "PANO": "panoramic"}.get(cam_type, cam_type)
        raise errors.InvalidArgumentError(
            f"camera {name!r} is {kind}: Greenlight supports perspective cameras only "
            "(Camera properties > Lens > Type: Perspective)")
    if abs(shift_x) > 1e-6 or abs(shift_y) > 1e-6:
        raise errors.InvalidArgumentError(
            f"camera {name!r} has lens shift ({shift_x:g}, {shift_y:g}): Greenlight's camera model has no "
            "shift yet; set Lens > Shift X/Y to 0 (move or rotate the camera instead)")
    if abs(pixel_aspect - 1.0) > 1e-6:
        raise errors.InvalidArgumentError(
            f"the render pixel aspect is {pixel_aspect:g}: Greenlight needs square pixels "
            "(Output properties > Format > Aspect X = Aspect Y)")
    m = np.array(matrix_world, dtype=np.float64).reshape(4, 4)
    if not np.all(np.isfinite(m)):
        raise errors.InvalidArgumentError(f"camera {name!r}: world matrix has NaN or infinite values")
    axes = m[:3, :3]
    scale = np.linalg.norm(axes, axis=0)
    if np.any(scale < 1e-9):
        raise errors.InvalidArgumentError(
            f"camera {name!r} has zero scale on an axis: fix the camera's (or a parent's) scale")
    rot = axes / scale
    if np.abs(rot.T @ rot - np.eye(3)).max() > 1e-5:
        raise errors.InvalidArgumentError(
            f"camera {name!r} is sheared (a parent has non-uniform scale and rotation): "
            "apply the parents' scale or unparent the camera")
    if np.linalg.det(rot) < 0:
        raise errors.InvalidArgumentError(f"camera {name!r} is mirrored (negative scale): use a positive scale")
    world = np.eye(4)
    world[:3, :3] = rot
    world[:3, 3] = m[:3, 3]
    return model.CameraSample(
        world_matrix=world, focal_length_mm=float(lens_mm), sensor_width_mm=float(sensor_width_mm),
        sensor_height_mm=float(sensor_height_mm), sensor_fit=sensor_fit, clip_start_m=float(clip_start_m),
        clip_end_m=float(clip_end_m), focus_distance_m=max(float(focus_distance_m), 0.0))


def focus_distance_m(camera_matrix, focus_point=None, focus_distance: float = 0.0) -> float:
    """Blender's focus distance: planar distance to the focus object when set."""
    if focus_point is None:
        return float(focus_distance)
    m = np.array(camera_matrix, dtype=np.float64).reshape(4, 4)
    local = np.linalg.solve(m, np.r_[np.asarray(focus_point, dtype=np.float64), 1.0])
    return max(float(-local[2]), 0.0)


def fps(fps_value: int, fps_base: float) -> model.Fps:
    """Blender stores 23.976 as fps=24, fps_base=1.001: keep it exact."""
    frac = Fraction(int(fps_value)) / Fraction(str(round(float(fps_base), 6)))
    frac = frac.limit_denominator(1001)
    return model.Fps(frac.numerator, frac.denominator)


def frame_range(scene_start: int, scene_end: int, start: int | None, end: int | None) -> tuple[int, int]:
    start = scene_start if start is None else start
    end = scene_end if end is None else end
    if end < start:
        raise errors.InvalidArgumentError(
            f"frame range {start}..{end} is empty: the end frame must be >= the start frame")
    return start, end


def pass_resolution(render_x: int, render_y: int, percentage: int, scale: float,
                    width: int | None, height: int | None) -> tuple[int, int]:
    """The shot resolution: explicit, or the render resolution times ``scale``
    (rounded to even numbers, which video encoders prefer)."""
    if width is not None or height is not None:
        if not width or not height or width <= 0 or height <= 0:
            raise errors.InvalidArgumentError(f"resolution: give both width and height > 0, got {width}x{height}")
        return int(width), int(height)
    if not (0 < scale <= 1):
        raise errors.InvalidArgumentError(f"resolution scale must be in (0, 1], got {scale:g}")
    base_x = render_x * percentage / 100.0
    base_y = render_y * percentage / 100.0
    w = max(2, int(round(base_x * scale / 2)) * 2)
    h = max(2, int(round(base_y * scale / 2)) * 2)
    return w, h


def tag(text: str, what: str) -> str:
    """A tag-safe name ('My Shot 1' -> 'My_Shot_1'); refuses an empty result."""
    cleaned = tags.safe_tag(text)
    if not cleaned:
        raise errors.InvalidArgumentError(f"{what} {text!r} has no letters or digits to name the shot with")
    return cleaned


def depth_from_pass(z: np.ndarray) -> np.ndarray:
    """Cycles Depth (``Z`` channel) -> planar metres, background +inf, float32."""
    depth = np.asarray(z, dtype=np.float32).copy()
    depth[~np.isfinite(depth) | (depth >= BACKGROUND_DEPTH_M)] = np.inf
    return depth


def motion_from_pass(vz: np.ndarray, vw: np.ndarray) -> np.ndarray:
    """Cycles Vector ``Z, W`` (now minus next, y up) -> forward flow in
    pixels (dx right, dy down): flow = (-Z, +W). float16 (half the upload)
    unless some vector is beyond float16's range (|v| > 65504 px, a surface
    that leaves the frame by far): then float32, never a clamp or an inf."""
    flow = np.stack([-np.asarray(vz, dtype=np.float32), np.asarray(vw, dtype=np.float32)], axis=-1)
    flow[~np.isfinite(flow)] = 0.0
    return _motion_dtype(flow)


def _motion_dtype(flow: np.ndarray) -> np.ndarray:
    if flow.size and np.abs(flow).max() > np.finfo(np.float16).max:
        return flow
    return flow.astype(np.float16)


def motion_with_zoom(flow: np.ndarray, depth: np.ndarray, zoom: float) -> np.ndarray:
    """Forward flow from a Vector pass that projected the next frame with
    this frame's focal length (Cycles in Blender 4.2: ``compat``) -> the
    flow with the next frame's: a focal-length change by ``zoom`` = f_next /
    f_now scales the image about its centre (lens shift is refused), so
    ``flow = (zoom - 1) (p - c) + zoom * flow_fixed`` on surfaces (finite
    ``depth``); the background keeps its zero vector, as Cycles writes it."""
    h, w = flow.shape[:2]
    fixed = np.asarray(flow, dtype=np.float32)
    out = fixed * np.float32(zoom)
    out[..., 0] += np.float32(zoom - 1.0) * (np.arange(w, dtype=np.float32) + 0.5 - w / 2.0)[None, :]
    out[..., 1] += np.float32(zoom - 1.0) * (np.arange(h, dtype=np.float32) + 0.5 - h / 2.0)[:, None]
    out = np.where(np.isfinite(np.asarray(depth))[..., None], out, fixed)
    return _motion_dtype(out)
