"""Trajectories of latent tokens along the engine's forward flow, one set
per UNet latent resolution (docs/temporal.md, "Flow-guided generation").

For a grid of ``h x w`` tokens over the ``H x W`` passes, each token covers
a block of pixels. Per frame pair the flow is area-averaged over the block's
pixels that pass the score's depth test (visible in both frames: see
``bridge.temporal.score.valid_mask``) and expressed in tokens. A token whose
block is mostly visible moves to the token nearest its displaced centre; when
several land on one token the nearest to its centre keeps it (ties: the lower
source index). Tokens that move out, are occluded, or are nobody's target
(disoccluded) start or end trajectories. Vectorised numpy: one pass per frame
pair, no per-pixel Python.

Engine-free; no torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..shot.model import Shot

VISIBLE_SHARE = 0.5   # a token is visible when at least this share of its pixels pass the depth test


@dataclass(frozen=True)
class TokenTrajectories:
    """Trajectories on one ``height x width`` token grid over ``frames`` frames.

    ``ids[f, y, x]``: trajectory id of the token (0..count-1, numbered in
    order of first appearance, frame-major then raster). ``prev[f, n]``: flat
    index (y * width + x) of the same trajectory's token in frame f-1, or -1
    where the trajectory starts at f."""

    ids: np.ndarray
    prev: np.ndarray

    @property
    def frames(self) -> int:
        return int(self.ids.shape[0])

    @property
    def grid(self) -> tuple[int, int]:
        return int(self.ids.shape[1]), int(self.ids.shape[2])

    @property
    def count(self) -> int:
        return int(self.ids.max()) + 1 if self.ids.size else 0

    def lengths(self) -> np.ndarray:
        """Frames per trajectory, indexed by id."""
        return np.bincount(self.ids.reshape(-1), minlength=self.count)

    def buckets(self, frames: Sequence[int] | None = None, min_length: int = 2
                ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Trajectories (restricted to ``frames``, default all, in that order)
        of at least ``min_length`` tokens, grouped by padded length (powers of
        two): per group ``(index [T, L], mask [T, L])`` where index holds
        positions ``local_frame * h * w + n`` into the frames' tokens, in frame
        order, and mask marks the real (unpadded) entries."""
        sel = np.arange(self.frames) if frames is None else np.asarray(frames, dtype=np.int64)
        flat = self.ids[sel].reshape(-1)
        if flat.size == 0:
            return []
        order = np.argsort(flat, kind="stable")          # by id, then frame (positions are frame-major)
        uniq, starts, counts = np.unique(flat[order], return_index=True, return_counts=True)
        del uniq
        keep = counts >= min_length
        starts, counts = starts[keep], counts[keep]
        padded = 2 ** np.ceil(np.log2(np.maximum(counts, 1))).astype(np.int64)
        out = []
        for length in np.unique(padded):
            pick = padded == length
            s, c = starts[pick], counts[pick]
            lane = np.arange(int(length), dtype=np.int64)[None, :]
            mask = lane < c[:, None]
            index = order[np.where(mask, s[:, None] + lane, s[:, None])]
            out.append((index, mask))
        return out


def latent_grids(height: int, width: int, factor: int = 8, levels: int = 4) -> list[tuple[int, int]]:
    """Token grids of the UNet's resolutions for ``height x width`` images:
    H/8, then each stride-2 downsampling (ceil) for SD1.5-class UNets."""
    h, w = math.ceil(height / factor), math.ceil(width / factor)
    grids = []
    for _ in range(levels):
        grids.append((h, w))
        h, w = (h + 1) // 2, (w + 1) // 2
    return grids


def token_flow(flow_px: np.ndarray, visible: np.ndarray, grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Area-average one frame's pixel flow [H, W, 2] over each token's block
    (visible pixels only where the token has any) and scale it to tokens.
    Returns (flow in tokens [h, w, 2], visible share [h, w])."""
    big_h, big_w = visible.shape
    h, w = grid
    ty = np.minimum(np.arange(big_h) * h // big_h, h - 1)
    tx = np.minimum(np.arange(big_w) * w // big_w, w - 1)
    token = (ty[:, None] * w + tx[None, :]).reshape(-1)
    vis = visible.reshape(-1).astype(np.float64)
    flow = np.nan_to_num(np.asarray(flow_px, dtype=np.float64).reshape(-1, 2))
    n = h * w
    pixels = np.bincount(token, minlength=n).astype(np.float64)
    seen = np.bincount(token, weights=vis, minlength=n)
    out = np.empty((n, 2))
    for c in range(2):
        all_sum = np.bincount(token, weights=flow[:, c], minlength=n)
        vis_sum = np.bincount(token, weights=flow[:, c] * vis, minlength=n)
        out[:, c] = np.where(seen > 0, vis_sum / np.maximum(seen, 1), all_sum / np.maximum(pixels, 1))
    out[:, 0] *= w / big_w
    out[:, 1] *= h / big_h
    return out.reshape(h, w, 2), (seen / np.maximum(pixels, 1)).reshape(h, w)


def build_trajectories(flows_px: np.ndarray, visible: np.ndarray, grid: tuple[int, int],
                       visible_share: float = VISIBLE_SHARE) -> TokenTrajectories:
    """Chain tokens of ``grid`` across frames.

    ``flows_px``: [F-1, H, W, 2] forward flow of frames 0..F-2 in pixels (x
    right, y down: where each pixel is in the next frame); ``visible``:
    [F-1, H, W] bool, pixels of frame t that are the same surface in t+1."""
    flows_px = np.asarray(flows_px)
    visible = np.asarray(visible, dtype=bool)
    if flows_px.ndim != 4 or flows_px.shape[-1] != 2 or visible.shape != flows_px.shape[:3]:
        raise ValueError(f"trajectories: need flows [F-1, H, W, 2] and visible [F-1, H, W], "
                         f"got {flows_px.shape} and {visible.shape}")
    h, w = grid
    n = h * w
    frames = flows_px.shape[0] + 1
    ids = np.empty((frames, n), dtype=np.int64)
    prev = np.full((frames, n), -1, dtype=np.int64)
    ids[0] = np.arange(n)
    next_id = n
    cy, cx = np.divmod(np.arange(n), w)
    for t in range(frames - 1):
        flow, share = token_flow(flows_px[t], visible[t], grid)
        fx = cx + 0.5 + flow[..., 0].reshape(-1)
        fy = cy + 0.5 + flow[..., 1].reshape(-1)
        jx, jy = np.floor(fx).astype(np.int64), np.floor(fy).astype(np.int64)
        ok = (share.reshape(-1) >= visible_share) & (jx >= 0) & (jx < w) & (jy >= 0) & (jy < h)
        src = np.nonzero(ok)[0]
        target = jy[src] * w + jx[src]
        dist = (fx[src] - jx[src] - 0.5) ** 2 + (fy[src] - jy[src] - 0.5) ** 2
        order = np.lexsort((src, dist, target))          # by target, then nearest, then lower source
        first = np.unique(target[order], return_index=True)[1]
        winners = order[first]
        row = np.full(n, -1, dtype=np.int64)
        row[target[winners]] = ids[t, src[winners]]
        prev[t + 1, target[winners]] = src[winners]
        fresh = row < 0
        row[fresh] = next_id + np.arange(int(fresh.sum()))
        next_id += int(fresh.sum())
        ids[t + 1] = row
    return TokenTrajectories(ids=ids.reshape(frames, h, w), prev=prev)


def shot_visibility(shot: Shot) -> tuple[np.ndarray, np.ndarray]:
    """The shot's forward flows [F-1, H, W, 2] and depth-test masks [F-1, H, W]
    (the temporal score's own test: surface, target in frame, reprojected
    depth agrees)."""
    from .score import has_passes, valid_mask

    if not has_passes(shot):
        raise ValueError("flow guidance needs depth and motion passes on every frame")
    frames = shot.frames
    flows = np.stack([np.asarray(f.motion_px, dtype=np.float32) for f in frames[:-1]]) if len(frames) > 1 \
        else np.zeros((0, shot.height, shot.width, 2), np.float32)
    masks = np.stack([valid_mask(a, b) for a, b in zip(frames[:-1], frames[1:], strict=True)]) if len(frames) > 1 \
        else np.zeros((0, shot.height, shot.width), bool)
    return flows, masks


def shot_trajectories(shot: Shot, grids: Sequence[tuple[int, int]]) -> dict[tuple[int, int], TokenTrajectories]:
    """Trajectories of ``shot`` on each grid (see ``latent_grids``)."""
    flows, masks = shot_visibility(shot)
    return {tuple(g): build_trajectories(flows, masks, g) for g in grids}  # type: ignore[misc]
