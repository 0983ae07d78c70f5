"""Flow-guided generation for the ``animatediff`` backend (docs/temporal.md,
"Flow-guided generation").

``apply_flow_guidance(pipe, shot, settings, plan)`` installs, on the spatial
self-attention (``attn1`` of the UNet's transformer blocks, not the motion
modules), a processor that adds trajectory attention: a token on an engine
flow trajectory (``bridge.temporal.trajectories``, one set per UNet latent
resolution) also attends to the tokens of its trajectory in the other frames
of the batch, and the result is blended with the normal per-frame
self-attention by ``strength`` within the steps window (FLATTEN's idea,
ICLR 2024; our own implementation). With mode ``attention+fusion`` its
``on_step_end`` also fuses latents along the flow in an early window
(``bridge.temporal.fusion``). ``remove()`` restores the processors exactly.

Mode ``off`` installs nothing: the pipeline runs as it would without this
module, bit for bit.

Frames: diffusers' FreeNoise windows only the motion modules (their
temporal attention sees ``context_length`` frames at a time); the spatial
attention patched here sees every frame of the shot in one batch of
``batch x frames`` rows, so trajectories span the whole shot and reach
across FreeNoise windows. A caller that feeds the UNet a window of frames
sets it with ``set_window(frame_indices)``. Classifier-free guidance doubles
the batch; each half is guided with the same trajectories.

Imports torch only when used.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..shot.model import Shot
from ..shot.request import TemporalSettings
from .trajectories import TokenTrajectories, latent_grids, shot_trajectories

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

DEFAULT_STRENGTH = 0.8      # strength 0 in the request
DEFAULT_STEP_END = 0.8      # step_end 0 in the request: the last fifth of the schedule refines detail freely
FUSION_SHARE = 0.5          # fusion runs in the first half of the guidance window ...
FUSION_WEIGHT = 0.5         # ... with blend weight FUSION_WEIGHT * strength
VAE_FACTOR = 8


class PlanInfo(Protocol):
    """What the backend decided: denoising steps and output size (the
    animatediff backend's ``_Plan`` has these)."""

    @property
    def steps(self) -> int: ...
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...


@dataclass(frozen=True)
class ResolvedTemporal:
    mode: str
    strength: float
    step_start: float
    step_end: float

    @property
    def attention(self) -> bool:
        return self.mode in ("attention", "attention+fusion")

    @property
    def fusion(self) -> bool:
        return self.mode == "attention+fusion"


def resolve(settings: TemporalSettings) -> ResolvedTemporal:
    """Request values with the defaults filled in (0 = default)."""
    mode = settings.mode or "off"
    end = settings.step_end or (DEFAULT_STEP_END if settings.step_start < DEFAULT_STEP_END else 1.0)
    return ResolvedTemporal(mode, settings.strength or DEFAULT_STRENGTH, settings.step_start, end)


class FlowGuidance:
    """What ``apply_flow_guidance`` installed. Use as a context manager or
    call ``remove()``; chain ``on_step_end`` into the pipeline's callback."""

    def __init__(self, settings: ResolvedTemporal, steps: int, frames: int,
                 trajectories: dict[tuple[int, int], TokenTrajectories] | None = None,
                 fusion_grid: tuple[int, int] | None = None):
        self.settings = settings
        self.steps = max(int(steps), 1)
        self.frames = frames
        self.trajectories = trajectories or {}
        self.by_tokens = {h * w: t for (h, w), t in self.trajectories.items()}
        self.fusion_grid = fusion_grid
        self.window: tuple[int, ...] = tuple(range(frames))
        self.step = 0                 # index of the denoising step the UNet is running
        self.unet_calls = 0
        self.attention_calls = 0      # trajectory-attention evaluations (for tests and cost reports)
        self.fusions = 0
        self._restore: list[tuple[Any, Any]] = []
        self._hook = None
        self._buckets: dict[tuple, list] = {}
        self._fallback_logged = False

    # ---------------------------------------------------------------- state
    def in_window(self, step: int, share: float = 1.0) -> bool:
        s = self.settings
        end = s.step_start + share * (s.step_end - s.step_start)
        return s.step_start <= step / self.steps < end

    @property
    def active(self) -> bool:
        return self.settings.attention and self.in_window(self.step)

    def set_window(self, frames: Sequence[int]) -> None:
        """Absolute indices of the frames in the batch the UNet sees next."""
        self.window = tuple(int(f) for f in frames)

    def _pre_forward(self, module, args, kwargs) -> None:
        self.step = self.unet_calls
        self.unet_calls += 1

    # ---------------------------------------------------------------- fusion
    def on_step_end(self, pipeline, step: int, timestep, kwargs: dict) -> dict:
        """Chain into ``callback_on_step_end``: returns {"latents": fused}
        inside the fusion window, else {}."""
        if not self.settings.fusion or self.fusion_grid is None or not self.in_window(step, FUSION_SHARE):
            return {}
        from .fusion import fuse_latents

        latents = kwargs["latents"]
        traj = self.trajectories[self.fusion_grid]
        if latents.shape[2] != traj.frames:
            return {}
        self.fusions += 1
        return {"latents": fuse_latents(latents, traj, FUSION_WEIGHT * self.settings.strength)}

    # ---------------------------------------------------------------- attention
    def buckets(self, tokens: int, device) -> list | None:
        traj = self.by_tokens.get(tokens)
        if traj is None:
            return None
        key = (tokens, self.window, str(device))
        if key not in self._buckets:
            import torch

            groups = []
            for index, mask in traj.buckets(self.window):
                idx = torch.from_numpy(index).to(device)
                m = torch.from_numpy(mask).to(device)
                groups.append((idx, m, idx[m]))
            self._buckets[key] = groups
        return self._buckets[key]

    def note_fallback(self, why: str) -> None:
        if not self._fallback_logged:
            log.warning("flow guidance: plain self-attention where %s", why)
            self._fallback_logged = True

    # ---------------------------------------------------------------- lifetime
    def install(self, unet) -> None:
        if not self.settings.attention:
            return
        for name, module in unet.named_modules():
            if name.endswith(".attn1") and "motion_modules" not in name and hasattr(module, "set_processor"):
                original = module.processor
                self._restore.append((module, original))
                module.set_processor(TrajectoryAttnProcessor(self, original))
        self._hook = unet.register_forward_pre_hook(self._pre_forward, with_kwargs=True)

    def remove(self) -> None:
        for module, original in reversed(self._restore):
            module.set_processor(original)
        self._restore.clear()
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def __enter__(self) -> FlowGuidance:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


class TrajectoryAttnProcessor:
    """Self-attention plus trajectory attention, blended by strength. Outside
    the steps window, and for inputs it does not handle (cross-attention, a
    mask, 4-D input, a batch that is not whole frames), it calls the
    processor it replaced."""

    def __init__(self, guidance: FlowGuidance, original):
        self.guidance = guidance
        self.original = original

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 *args, **kwargs) -> torch.Tensor:
        g = self.guidance
        plain = (encoder_hidden_states is not None or attention_mask is not None or hidden_states.ndim != 3
                 or attn.spatial_norm is not None or attn.group_norm is not None)
        if not g.active or plain:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        rows, tokens, _ = hidden_states.shape
        frames = len(g.window)
        buckets = g.buckets(tokens, hidden_states.device)
        if buckets is None or frames == 0 or rows % frames:
            g.note_fallback(f"the batch ({rows} x {tokens} tokens) does not match the shot's "
                            f"{frames} frames and latent grids")
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        g.attention_calls += 1
        return self._attend(attn, hidden_states, buckets, rows // frames, frames, tokens)

    def _attend(self, attn, hidden_states, buckets, batch: int, frames: int, tokens: int):
        import torch.nn.functional as F

        residual = hidden_states
        rows = batch * frames
        query, key, value = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        heads = attn.heads
        dim = key.shape[-1] // heads
        q, k, v = (x.view(rows, tokens, heads, dim).transpose(1, 2) for x in (query, key, value))
        if attn.norm_q is not None:
            q = attn.norm_q(q)
        if attn.norm_k is not None:
            k = attn.norm_k(k)
        normal = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0, is_causal=False)
        # rows are batch-major (b * frames + f): [batch, frames * tokens, heads, dim], positions frame-major
        qt, kt, vt, nt = (x.transpose(1, 2).reshape(batch, frames * tokens, heads, dim) for x in (q, k, v, normal))
        mixed = nt.clone()
        strength = self.guidance.settings.strength
        for index, mask, members in buckets:
            count, length = index.shape

            def gather(x, count=count, length=length, index=index):
                return x[:, index].permute(0, 1, 3, 2, 4).reshape(batch * count, heads, length, dim)

            keep = mask[None, :, None, None, :].expand(batch, count, 1, 1, length).reshape(batch * count, 1, 1, length)
            out = F.scaled_dot_product_attention(gather(qt), gather(kt), gather(vt), attn_mask=keep)
            out = out.reshape(batch, count, heads, length, dim).permute(0, 1, 3, 2, 4)[:, mask]
            base = nt[:, members]
            mixed[:, members] = base + strength * (out - base)
        hidden_states = mixed.reshape(batch, frames, tokens, heads * dim).reshape(rows, tokens, heads * dim)
        hidden_states = hidden_states.to(query.dtype)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def apply_flow_guidance(pipe, shot: Shot, settings: TemporalSettings, plan: PlanInfo) -> FlowGuidance:
    """Install flow guidance on ``pipe`` (an AnimateDiff pipeline whose UNet
    is a UNetMotionModel) for ``shot``; returns what to chain into the step
    callback and to ``remove()`` after the call. Mode off installs nothing."""
    resolved = resolve(settings)
    if resolved.mode == "off":
        return FlowGuidance(resolved, plan.steps, shot.frame_count)
    levels = len(getattr(pipe.unet, "down_blocks", ())) or 4
    grids = latent_grids(plan.height, plan.width, VAE_FACTOR, levels)
    trajectories = shot_trajectories(shot, grids)
    guidance = FlowGuidance(resolved, plan.steps, shot.frame_count, trajectories, fusion_grid=grids[0])
    guidance.install(pipe.unet)
    log.info("flow guidance %s: %s", resolved.mode,
             ", ".join(f"{h}x{w}: {t.count} trajectories, mean {np.mean(t.lengths()):.1f} frames"
                       for (h, w), t in trajectories.items()))
    return guidance
