"""Latent fusion along the engine flow (mode ``attention+fusion``).

During an early window of denoising steps, after each step, frame t+1's
latent is blended with frame t's latent carried along the engine flow to the
latent grid (each token of t+1 takes the value of its trajectory
predecessor in t: ``TokenTrajectories.prev`` on the H/8 grid, which exists
only where the depth test says the surface is visible in both frames).
Frames are fused in order, so a fused frame carries into the next one.

The blend ``(1 - a) * x_{t+1} + a * warp(x_t)`` would shrink the noise
share of the latent (two partly independent noises averaged), which the
sampler does not expect and which blurs the result. Per frame pair the
blend's deviation from its mean is rescaled by ``1 / sqrt((1-a)^2 + a^2 + 2 a (1-a) rho)``, with
``rho`` the measured correlation of the two over the fused tokens: 1 when
they already agree (no rescale), larger as they differ. Built from the
Rerender-A-Video paper's description of cross-frame latent fusion (no code
from it). The initial noise is never touched: fusion starts after the
first denoising step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .trajectories import TokenTrajectories

if TYPE_CHECKING:
    import torch


def fuse_latents(latents: torch.Tensor, trajectories: TokenTrajectories, weight: float) -> torch.Tensor:
    """Fused copy of ``latents`` [B, C, F, h, w] (``trajectories`` on the
    same h x w grid and F frames)."""
    import torch

    b, c, frames, h, w = latents.shape
    if trajectories.grid != (h, w) or trajectories.frames != frames:
        raise ValueError(f"fusion: trajectories are {trajectories.frames}x{trajectories.grid}, "
                         f"latents {frames}x{(h, w)}")
    if weight <= 0 or frames < 2:
        return latents
    out = latents.clone(memory_format=torch.contiguous_format)
    flat = out.view(b, c, frames, h * w)
    for t in range(1, frames):
        prev = trajectories.prev[t]
        dst_np = np.nonzero(prev >= 0)[0]
        if dst_np.size == 0:
            continue
        dst = torch.from_numpy(dst_np).to(latents.device)
        src = torch.from_numpy(prev[dst_np]).to(latents.device)
        current = flat[:, :, t, dst].float()
        carried = flat[:, :, t - 1, src].float()
        blend = (1 - weight) * current + weight * carried
        a = current - current.mean(dim=-1, keepdim=True)
        p = carried - carried.mean(dim=-1, keepdim=True)
        rho = float(((a * p).sum() / ((a.square().sum() * p.square().sum()).sqrt() + 1e-12)).clamp(-1, 1))
        scale = ((1 - weight) ** 2 + weight ** 2 + 2 * weight * (1 - weight) * rho) ** -0.5
        mean = blend.mean(dim=-1, keepdim=True)
        flat[:, :, t, dst] = (mean + (blend - mean) * scale).to(latents.dtype)
    return out
