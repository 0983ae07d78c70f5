"""Temporal consistency from the engine's own truth (docs/temporal.md).

A masked warping error between consecutive output frames under the engine's
forward flow: a pixel of frame t counts only when it shows a surface, its
flow target lies inside frame t+1, and the depth test passes (frame t's
surface point, reprojected into frame t+1's camera, lands at frame t+1's
depth within a relative tolerance). Occluded pixels fail the depth test;
disoccluded pixels of t+1 are the target of no valid pixel of t. So only
what the engine says is the same surface is compared.

Engine-free numpy; no torch. Output frames are compared at the passes'
resolution (outputs of another size are resampled first).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..shot.camera import unproject_depth, world_to_camera
from ..shot.model import Frame, Shot, ShotOutline

DEPTH_TOLERANCE = 0.05   # relative: |z_reprojected - z_next| <= 5% of z_next
WINDOW = 8               # frames per trajectory
MAX_SAMPLES = 256 * 256  # compared pixels per frame at most (a regular grid beyond that)
METHOD = "masked-warp-l1"


@dataclass(frozen=True)
class PairScore:
    """Frame ``index`` against ``index + gap`` along the engine flow."""

    index: int
    gap: int
    error: float            # mean |RGB difference| over valid pixels, 0..1 (nan when none)
    valid_pixels: int
    valid_fraction: float   # of frame ``index``'s pixels


@dataclass(frozen=True)
class TemporalScore:
    """``gap1``: consecutive pairs; ``trajectory``: along WINDOW-frame
    trajectories (each window start against every later frame of the window).
    Both are pixel-weighted means of their pairs' errors (0 = the output
    follows the engine motion exactly; uniform noise scores about 1/3)."""

    gap1: float
    trajectory: float
    valid_fraction: float    # mean over gap-1 pairs
    pairs: tuple[PairScore, ...]
    trajectory_pairs: tuple[PairScore, ...]
    window: int = WINDOW
    depth_tolerance: float = DEPTH_TOLERANCE
    method: str = METHOD

    def to_dict(self, per_pair: bool = True) -> dict:
        d = {"method": self.method, "gap1": _num(self.gap1), "trajectory": _num(self.trajectory),
             "window": self.window, "valid_fraction": _num(self.valid_fraction),
             "depth_tolerance": self.depth_tolerance}
        if per_pair:
            d["pairs"] = [{"index": p.index, "error": _num(p.error), "valid_fraction": _num(p.valid_fraction)}
                          for p in self.pairs]
        return d


def _num(x: float) -> float | None:
    return None if not math.isfinite(x) else round(float(x), 6)


# ------------------------------------------------------------------ geometry
def _surface(depth: np.ndarray) -> np.ndarray:
    return np.isfinite(depth) & (depth > 0)


def flow_step(frame: Frame, next_frame: Frame, x: np.ndarray, y: np.ndarray, alive: np.ndarray,
              tolerance: float = DEPTH_TOLERANCE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Advance pixel positions (x, y: continuous, pixel centres at +0.5) from
    ``frame`` to ``next_frame`` along ``frame``'s forward flow; ``alive``
    becomes False where the target leaves the image or fails the depth test.

    Positions start on pixel centres, then the flow and depth at a
    fractional position are read from the nearest pixel (depth must not be
    blended across an occlusion edge)."""
    if frame.depth_m is None or frame.motion_px is None or next_frame.depth_m is None:
        raise ValueError("temporal score needs depth and motion passes on every frame")
    depth0 = np.asarray(frame.depth_m, dtype=np.float64)
    depth1 = np.asarray(next_frame.depth_m, dtype=np.float64)
    h, w = depth0.shape
    ix = np.clip(np.floor(x).astype(np.int64), 0, w - 1)
    iy = np.clip(np.floor(y).astype(np.int64), 0, h - 1)
    d0 = depth0[iy, ix]
    alive = alive & _surface(d0)
    flow = np.asarray(frame.motion_px, dtype=np.float64)[iy, ix]
    nx, ny = x + flow[..., 0], y + flow[..., 1]
    inside = (nx >= 0.5) & (nx <= w - 0.5) & (ny >= 0.5) & (ny <= h - 0.5)
    alive = alive & inside
    # the surface point seen at (x, y), reprojected into the next camera
    rays_d = np.where(alive, d0, 1.0)
    world = _unproject_points(frame, x, y, rays_d, w, h)
    cam1 = world @ world_to_camera(next_frame.camera)[:3, :3].T + world_to_camera(next_frame.camera)[:3, 3]
    z_pred = -cam1[..., 2]
    jx = np.clip(np.floor(nx).astype(np.int64), 0, w - 1)
    jy = np.clip(np.floor(ny).astype(np.int64), 0, h - 1)
    z_next = depth1[jy, jx]
    with np.errstate(invalid="ignore"):
        agree = _surface(z_next) & (np.abs(z_pred - z_next) <= tolerance * np.where(_surface(z_next), z_next, 1.0))
    return nx, ny, alive & agree


def _unproject_points(frame: Frame, x: np.ndarray, y: np.ndarray, depth: np.ndarray, w: int, h: int) -> np.ndarray:
    """World points of continuous pixel positions at planar ``depth``."""
    from ..shot.camera import focal_length_px

    f = focal_length_px(frame.camera, w, h)
    cam = np.stack([(x - w / 2.0) / f * depth, -(y - h / 2.0) / f * depth, -depth], axis=-1)
    m = np.asarray(frame.camera.world_matrix, dtype=np.float64)
    return cam @ m[:3, :3].T + m[:3, 3]


def valid_mask(frame: Frame, next_frame: Frame, tolerance: float = DEPTH_TOLERANCE) -> np.ndarray:
    """[H, W] bool: pixels of ``frame`` that the score compares with ``next_frame``."""
    x, y = _centres(frame)
    _, _, alive = flow_step(frame, next_frame, x, y, np.ones(x.shape, bool), tolerance)
    return alive


def _centres(frame: Frame, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres of ``frame`` (every ``stride``-th pixel in x and y)."""
    if frame.depth_m is None:
        raise ValueError("temporal score needs depth and motion passes on every frame")
    h, w = frame.depth_m.shape
    off = (stride - 1) / 2.0   # the middle pixel of each stride x stride block
    xs, ys = np.meshgrid(np.arange(off, w, stride, dtype=np.float64)[: -(-w // stride)] + 0.5,
                         np.arange(off, h, stride, dtype=np.float64)[: -(-h // stride)] + 0.5)
    return np.floor(xs) + 0.5, np.floor(ys) + 0.5


def sample_stride(width: int, height: int, max_samples: int) -> int:
    """The pixel stride that keeps the compared pixels per frame at or below ``max_samples``."""
    return max(1, math.ceil(math.sqrt(width * height / max_samples)))


# ------------------------------------------------------------------ images
def to_pass_resolution(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """float64 [H, W, C] in 0..1 at the passes' resolution (box-averaged when
    shrinking by a whole factor, bilinear otherwise)."""
    img = np.asarray(rgb)
    scale = 255.0 if img.dtype == np.uint8 else (65535.0 if img.dtype == np.uint16 else 1.0)
    img = img.astype(np.float64) / scale
    if img.ndim == 2:
        img = img[..., None]
    h, w = img.shape[:2]
    if (h, w) == (height, width):
        return img
    if h % height == 0 and w % width == 0:
        fy, fx = h // height, w // width
        return img.reshape(height, fy, width, fx, -1).mean(axis=(1, 3))
    xs = (np.arange(width) + 0.5) * w / width
    ys = (np.arange(height) + 0.5) * h / height
    gx, gy = np.meshgrid(xs, ys)
    return bilinear(img, gx, gy)


def bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sample [H, W, C] at continuous positions (pixel centres at +0.5), edges clamped."""
    h, w = img.shape[:2]
    fx = np.clip(x - 0.5, 0, w - 1)
    fy = np.clip(y - 0.5, 0, h - 1)
    x0 = np.minimum(np.floor(fx).astype(np.int64), w - 2 if w > 1 else 0)
    y0 = np.minimum(np.floor(fy).astype(np.int64), h - 2 if h > 1 else 0)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    ax, ay = (fx - x0)[..., None], (fy - y0)[..., None]
    top = img[y0, x0] * (1 - ax) + img[y0, x1] * ax
    bottom = img[y1, x0] * (1 - ax) + img[y1, x1] * ax
    return top * (1 - ay) + bottom * ay


# ------------------------------------------------------------------ scores
def _pair(index: int, gap: int, a: np.ndarray, b_at: np.ndarray, alive: np.ndarray) -> PairScore:
    n = int(alive.sum())
    err = float(np.abs(a - b_at).mean(axis=-1)[alive].mean()) if n else math.nan
    return PairScore(index, gap, err, n, n / alive.size)


def _weighted(pairs: Sequence[PairScore]) -> float:
    total = sum(p.valid_pixels for p in pairs)
    if not total:
        return math.nan
    return math.fsum(p.error * p.valid_pixels for p in pairs if p.valid_pixels) / total


def has_passes(shot: Shot | ShotOutline) -> bool:
    """Whether the shot carries what the score needs (depth and motion everywhere)."""
    return {"depth", "motion"} <= set(shot.passes)


def score_shot(shot: Shot, frames: Iterable[np.ndarray], tolerance: float = DEPTH_TOLERANCE,
               window: int = WINDOW, max_samples: int = MAX_SAMPLES) -> TemporalScore:
    """Score output ``frames`` (in index order, one per shot frame, uint8 or
    float RGB at any resolution) against ``shot``'s depth and motion.

    Streams: at most three frames (the previous one, the current one and
    the trajectory window's first) are held at the passes' resolution, so
    a 480-frame job costs what a 3-frame one does in memory. Pixels are
    compared on a regular grid of at most ``max_samples`` per frame (every
    pixel up to 256x256; a 2048x2048 shot compares every 8th in x and y),
    so the cost per frame pair is bounded whatever the resolution."""
    if not has_passes(shot):
        raise ValueError("temporal score needs depth and motion passes on every frame")
    stride = sample_stride(shot.width, shot.height, max_samples)
    pairs: list[PairScore] = []
    traj: list[PairScore] = []
    prev = start_img = None
    tx = ty = alive = None
    count = 0
    for t, frame in enumerate(frames):
        if t >= shot.frame_count:
            count = t + 1
            continue
        img = to_pass_resolution(frame, shot.width, shot.height)
        count = t + 1
        if prev is not None:
            f0, f1 = shot.frames[t - 1], shot.frames[t]
            x, y = _centres(f0, stride)
            nx, ny, ok = flow_step(f0, f1, x, y, np.ones(x.shape, bool), tolerance)
            pairs.append(_pair(t - 1, 1, bilinear(prev, x, y), bilinear(img, nx, ny), ok))
            if t % window:   # within the window that began at frame ``start``: one more hop
                assert tx is not None and ty is not None and alive is not None and start_img is not None
                tx, ty, alive = flow_step(f0, f1, tx, ty, alive, tolerance)
                start = t // window * window
                traj.append(_pair(start, t - start, start_img, bilinear(img, tx, ty), alive))
        if t % window == 0:   # a new trajectory window starts here
            tx, ty = _centres(shot.frames[t], stride)
            start_img = bilinear(img, tx, ty)
            alive = np.ones(tx.shape, bool)
        prev = img
    if count != shot.frame_count:
        raise ValueError(f"temporal score: {count} frames for a {shot.frame_count}-frame shot")
    fraction = float(np.mean([p.valid_fraction for p in pairs])) if pairs else math.nan
    return TemporalScore(_weighted(pairs), _weighted(traj), fraction, tuple(pairs), tuple(traj),
                         window=window, depth_tolerance=tolerance)


def world_texture(frame: Frame, period_m: float = 1.0) -> np.ndarray:
    """A 'beauty' render of the shot's surfaces with a 3D procedural texture
    (colour = smooth function of the world point): what a perfectly
    consistent renderer of this scene shows. Background is black."""
    assert frame.depth_m is not None
    depth = np.asarray(frame.depth_m, dtype=np.float64)
    surface = _surface(depth)
    world = unproject_depth(frame.camera, np.where(surface, depth, 1.0))
    k = 2 * math.pi / period_m
    rgb = 0.5 + 0.5 * np.stack([np.sin(k * world[..., 0]) * np.cos(0.7 * k * world[..., 2]),
                                np.sin(0.8 * k * world[..., 1] + 1.0) * np.cos(0.5 * k * world[..., 0]),
                                np.cos(0.9 * k * world[..., 2] + 2.0)], axis=-1)
    return np.where(surface[..., None], rgb, 0.0)
