"""Control adherence: does the output follow the depth control? Reported
beside the temporal-consistency score so that consistency is not bought by
blandness (a frozen or blurred output scores well on flicker and badly here).

Measure: the F1 score between the output's image edges and the depth pass's
depth discontinuities, each matched within ``tolerance_px`` pixels of the
other (docs/temporal.md). Image edges are the Sobel gradient magnitude of
the luminance above ``EDGE_THRESHOLD``; depth discontinuities are neighbour
jumps in log depth above ``DEPTH_JUMP`` (background counts as far). 1 = every
depth discontinuity shows as an image edge and no image edge is elsewhere;
0 = none do (or the image has no edges at all). A ControlNet that follows
depth puts object outlines on depth edges; texture edges inside surfaces
lower precision, which is why adherence is compared between runs of the same
model (on/off), not read as an absolute.

Engine-free numpy; no torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from ..shot.model import Shot
from .score import to_pass_resolution

EDGE_THRESHOLD = 0.1     # Sobel magnitude / 4 (a unit step reads 1) of luminance on a 0..1 scale
DEPTH_JUMP = 0.1         # |log(d1 / d2)| between neighbours: about a 10% jump in distance
TOLERANCE_PX = 1
FAR_M = 1e6              # background (inf or 0) reads as this far


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    if radius <= 0:
        return mask.copy()
    h, w = mask.shape
    padded = np.pad(mask, radius)
    out = np.zeros_like(mask)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out |= padded[dy:dy + h, dx:dx + w]
    return out


def image_edges(rgb: np.ndarray, threshold: float = EDGE_THRESHOLD) -> np.ndarray:
    """[H, W] bool: Sobel edges of the luminance of float RGB in 0..1 (or uint8)."""
    img = np.asarray(rgb, dtype=np.float64)
    if np.asarray(rgb).dtype == np.uint8:
        img = img / 255.0
    lum = img if img.ndim == 2 else img[..., :3] @ np.array([0.299, 0.587, 0.114])[: img.shape[-1]]
    p = np.pad(lum, 1, mode="edge")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    return np.hypot(gx, gy) / 4.0 > threshold


def depth_edges(depth_m: np.ndarray, jump: float = DEPTH_JUMP) -> np.ndarray:
    """[H, W] bool: pixels next to a relative depth jump (both sides marked)."""
    d = np.asarray(depth_m, dtype=np.float64)
    d = np.where(np.isfinite(d) & (d > 0), d, FAR_M)
    log_d = np.log(d)
    edges = np.zeros(d.shape, bool)
    dx = np.abs(np.diff(log_d, axis=1)) > jump
    dy = np.abs(np.diff(log_d, axis=0)) > jump
    edges[:, :-1] |= dx
    edges[:, 1:] |= dx
    edges[:-1, :] |= dy
    edges[1:, :] |= dy
    return edges


def control_adherence(depth_m: np.ndarray, rgb: np.ndarray, tolerance_px: int = TOLERANCE_PX) -> float:
    """F1 of image edges against depth discontinuities for one frame (the
    image is brought to the depth pass's resolution first). NaN when the
    depth pass has no discontinuity (nothing to adhere to)."""
    depth = np.asarray(depth_m)
    h, w = depth.shape
    img = to_pass_resolution(np.asarray(rgb), w, h)
    target = depth_edges(depth)
    found = image_edges(img)
    if not target.any():
        return math.nan
    if not found.any():
        return 0.0
    precision = float((found & _dilate(target, tolerance_px)).sum()) / float(found.sum())
    recall = float((target & _dilate(found, tolerance_px)).sum()) / float(target.sum())
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def shot_adherence(shot: Shot, frames: Iterable[np.ndarray], tolerance_px: int = TOLERANCE_PX) -> float:
    """Mean per-frame adherence of output ``frames`` to ``shot``'s depth pass
    (frames without a depth discontinuity are left out; NaN if all are)."""
    values = []
    for frame, rgb in zip(shot.frames, frames, strict=True):
        if frame.depth_m is None:
            raise ValueError("control adherence needs a depth pass on every frame")
        values.append(control_adherence(frame.depth_m, rgb, tolerance_px))
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan
