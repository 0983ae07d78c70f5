"""Turn shot passes into control images (DESIGN section 3, step 5).

* depth -> normalised inverse depth (near bright, far dark, background black),
  the MiDaS-style image depth ControlNets are trained on;
* pose -> OpenPose-style COCO-18 skeleton in the OpenPose palette;
* motion -> Middlebury colour-wheel flow visualisation (previews only);
* ``guides_frame`` composes all three into one preview image.

Imports numpy and PIL only (never torch), so it runs anywhere the bridge runs.
All outputs are uint8 [H, W, 3] RGB arrays.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from bridge.shot import coco

__all__ = ["depth_to_control", "draw_pose", "flow_to_color", "guides_frame"]

# Depth values at or beyond this are background (Blender writes 1e10).
BACKGROUND_DEPTH_M = 1e9
# Percentiles of valid inverse depth mapped to black and white.
DEPTH_LOW_PERCENTILE = 2.0
DEPTH_HIGH_PERCENTILE = 98.0
# OpenPose draws limbs at ~60 % of the keypoint colour.
LIMB_DIM = 0.6
# Occluded joints in the guides preview are drawn at this fraction of their colour.
OCCLUDED_DIM = 0.45


# --------------------------------------------------------------------- depth

def _valid_depth_mask(depth: np.ndarray, background: str) -> np.ndarray:
    if background not in ("inf", "zero"):
        raise ValueError(f"background must be 'inf' or 'zero', got {background!r}")
    # Both conventions: non-finite, non-positive (this covers exact 0 for
    # "zero") and Blender's 1e10 "nothing hit" are background.
    return np.isfinite(depth) & (depth > 0) & (depth < BACKGROUND_DEPTH_M)


def depth_to_control(depth_m: np.ndarray, background: str = "inf") -> np.ndarray:
    """Planar metric depth [H, W] -> uint8 [H, W, 3] normalised inverse depth.

    Near is bright, far is dark, background (non-finite, <= 0, >= 1e9, or 0
    when ``background == "zero"``) is black. ``1 / depth`` of the valid
    pixels is mapped linearly so its 2nd percentile is 0 and its 98th is 1
    (clipped), so a few stray near or far pixels cannot wash out the image.
    If all valid pixels share one inverse depth they are drawn white.
    """
    depth = np.asarray(depth_m)
    if depth.ndim == 3 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    if depth.ndim != 2:
        raise ValueError(f"depth_m must be [H, W], got shape {depth.shape}")
    depth = depth.astype(np.float64, copy=False)
    valid = _valid_depth_mask(depth, background)
    out = np.zeros(depth.shape, np.float64)
    if valid.any():
        inv = 1.0 / depth[valid]
        lo, hi = np.percentile(inv, [DEPTH_LOW_PERCENTILE, DEPTH_HIGH_PERCENTILE])
        if hi > lo:
            out[valid] = np.clip((inv - lo) / (hi - lo), 0.0, 1.0)
        else:
            out[valid] = 1.0
    grey = np.round(out * 255.0).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


# ---------------------------------------------------------------------- pose

def _scaled(color, factor: float) -> tuple[int, int, int]:
    r, g, b = color
    return int(round(r * factor)), int(round(g * factor)), int(round(b * factor))


def _draw_pose(poses, width: int, height: int, canvas, include_occluded: bool,
               thickness: int | None, occluded_dim: float) -> np.ndarray:
    width, height = int(width), int(height)
    if canvas is None:
        image = Image.new("RGB", (width, height), (0, 0, 0))
    else:
        arr = np.asarray(canvas)
        if arr.shape != (height, width, 3):
            raise ValueError(f"canvas must be [{height}, {width}, 3], got {arr.shape}")
        # Image.fromarray copies, so the caller's array is never touched.
        image = Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint8).copy(), "RGB")
    if thickness is None:
        thickness = max(2, int(round(min(width, height) / 100)))
    thickness = max(1, int(thickness))
    radius = thickness
    draw = ImageDraw.Draw(image)

    if hasattr(poses, "keypoints_px"):  # a single CharacterPose
        poses = (poses,)
    for pose in poses:
        kp = np.asarray(pose.keypoints_px, dtype=np.float64).reshape(coco.COUNT, 2)
        vis = np.asarray(pose.visibility).reshape(coco.COUNT)
        finite = np.all(np.isfinite(kp), axis=1)
        drawn = finite & ((vis == coco.VISIBLE) | (include_occluded & (vis == coco.OCCLUDED)))
        # Keypoints are continuous image coordinates (pixel i spans [i, i+1));
        # PIL addresses pixel centres with integers.
        pts = kp - 0.5
        factor = np.where(vis == coco.OCCLUDED, occluded_dim, 1.0)

        for limb, (a, b) in enumerate(coco.LIMBS):
            if not (drawn[a] and drawn[b]):
                continue
            f = LIMB_DIM * min(factor[a], factor[b])
            draw.line([tuple(pts[a]), tuple(pts[b])], fill=_scaled(coco.COLORS[limb], f),
                      width=thickness)
        for k in np.flatnonzero(drawn):
            x, y = pts[k]
            draw.ellipse([x - radius, y - radius, x + radius, y + radius],
                         fill=_scaled(coco.COLORS[k], float(factor[k])))
    return np.asarray(image, dtype=np.uint8).copy()


def draw_pose(poses, width: int, height: int, canvas: np.ndarray | None = None,
              include_occluded: bool = False, thickness: int | None = None) -> np.ndarray:
    """OpenPose-style skeletons of ``poses`` (iterable of ``CharacterPose``).

    Returns a new uint8 [height, width, 3] image: black, or a copy of
    ``canvas`` with the skeletons drawn over it. Limb ``i`` of
    ``coco.LIMBS`` is a line in ``coco.COLORS[i]`` dimmed to 60 %; keypoint
    ``k`` is a filled circle in ``coco.COLORS[k]``. Visible keypoints are
    drawn, occluded ones only with ``include_occluded``, absent ones never;
    a limb is drawn only when both its ends are. ``thickness`` (line width
    and circle radius, pixels) defaults to ``max(2, round(min(H, W) / 100))``.
    """
    return _draw_pose(poses, width, height, canvas, include_occluded, thickness, 1.0)


# ---------------------------------------------------------------------- flow

def _color_wheel() -> np.ndarray:
    """[55, 3] float RGB in [0, 1]: the Middlebury wheel red -> yellow -> green
    -> cyan -> blue -> magenta -> red, segment lengths 15/6/4/11/13/6."""
    segments = (
        (15, (1, 0, 0), (1, 1, 0)),  # RY
        (6, (1, 1, 0), (0, 1, 0)),   # YG
        (4, (0, 1, 0), (0, 1, 1)),   # GC
        (11, (0, 1, 1), (0, 0, 1)),  # CB
        (13, (0, 0, 1), (1, 0, 1)),  # BM
        (6, (1, 0, 1), (1, 0, 0)),   # MR
    )
    rows = []
    for n, start, end in segments:
        start, end = np.array(start, float), np.array(end, float)
        ramp = np.floor(255.0 * np.arange(n) / n) / 255.0
        rows.append(start + ramp[:, None] * (end - start))
    return np.concatenate(rows)


_WHEEL = _color_wheel()


def flow_to_color(flow_px: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """Forward flow [H, W, 2] (dx right, dy down, pixels) -> uint8 [H, W, 3].

    Middlebury colour coding (Baker et al.): hue is the flow direction on the
    55-colour wheel (rightward is red, downward yellow-orange, leftward
    cyan-blue, upward blue-violet), saturation is the magnitude divided by
    ``max_magnitude`` (default: the largest magnitude in the image), so zero
    flow is white. Pixels beyond ``max_magnitude`` are drawn at full
    saturation darkened to 75 %, as in the reference code. Non-finite
    components count as 0.
    """
    flow = np.asarray(flow_px)
    if flow.ndim != 3 or flow.shape[-1] != 2:
        raise ValueError(f"flow_px must be [H, W, 2], got shape {flow.shape}")
    flow = flow.astype(np.float64)
    flow[~np.isfinite(flow)] = 0.0
    u, v = flow[..., 0], flow[..., 1]
    mag = np.hypot(u, v)
    if max_magnitude is None:
        max_magnitude = float(mag.max()) if mag.size else 0.0
    scale = float(max_magnitude) if max_magnitude and max_magnitude > 0 else 0.0
    if scale > 0 and np.isfinite(scale):
        rad = mag / scale
    else:
        rad = np.zeros_like(mag)

    ncols = len(_WHEEL)
    angle = np.arctan2(-v, -u) / np.pi  # in [-1, 1]; rightward flow is +-1
    # The reference code scales by (ncols - 1), leaving a seam between the
    # last colour and the first at rightward flow; scaling by ncols closes
    # the wheel (a 1/55-turn difference in hue).
    fk = (angle + 1.0) / 2.0 * ncols
    k0 = np.floor(fk).astype(np.int64) % ncols
    k1 = (k0 + 1) % ncols
    frac = (fk - np.floor(fk))[..., None]
    col = (1.0 - frac) * _WHEEL[k0] + frac * _WHEEL[k1]
    r = rad[..., None]
    inside = r <= 1.0
    col = np.where(inside, 1.0 - r * (1.0 - col), col * 0.75)
    return np.floor(255.0 * np.clip(col, 0.0, 1.0)).astype(np.uint8)


# -------------------------------------------------------------------- guides

def _fit(image: np.ndarray, width: int, height: int, resample) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image, "RGB").resize((width, height), resample))


def guides_frame(frame, width: int, height: int, background: str = "inf") -> np.ndarray:
    """The "guides" preview of one ``Frame`` as uint8 [height, width, 3].

    Base: ``depth_to_control(frame.depth_m)`` (mid-grey when there is no
    depth); over it every pose skeleton (occluded joints included but
    dimmed); and, when ``frame.motion_px`` is present, its colour-wheel image
    as an inset in the bottom-right corner, a quarter of the width and
    height, inside a 1-pixel white border.
    """
    width, height = int(width), int(height)
    if frame.depth_m is not None:
        base = _fit(depth_to_control(frame.depth_m, background), width, height, Image.Resampling.NEAREST)
    else:
        base = np.full((height, width, 3), 128, np.uint8)

    out = _draw_pose(frame.poses, width, height, base, include_occluded=True,
                     thickness=None, occluded_dim=OCCLUDED_DIM)

    if frame.motion_px is not None:
        iw, ih = width // 4, height // 4
        if iw >= 3 and ih >= 3:
            flow_rgb = flow_to_color(frame.motion_px)
            inner = np.asarray(Image.fromarray(flow_rgb, "RGB").resize(
                (iw - 2, ih - 2), Image.Resampling.BILINEAR))
            inset = np.full((ih, iw, 3), 255, np.uint8)
            inset[1:-1, 1:-1] = inner
            out[height - ih:, width - iw:] = inset
    return out
