"""The ``animatediff`` backend: diffusers' AnimateDiffControlNetPipeline with
a MultiControlNet of depth and OpenPose, conditioned on engine passes.

0. defaults from the model profile, 1. components from the cache (loaded
once per profile), 2. control videos from the passes, 3. a pipeline over the
cached components with only the enabled ControlNets, 4. memory settings,
5. FreeNoise context windows for shots longer than the motion window,
6. denoise to latents with progress / preview / cancel per step, 7. decode
frame by frame and stream each frame as soon as it is decoded.
"""

# diffusers re-exports its public classes from a lazy __init__ (``from .models import X`` under TYPE_CHECKING,
# no __all__), so pyright reports the documented ``from diffusers import X`` as a private import.
# pyright: reportPrivateImportUsage=false

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import numpy as np

from ..errors import BackendError, InvalidArgumentError
from ..shot.model import Shot
from ..shot.request import ControlSettings, GenerationSettings
from .base import JobContext
from .devices import MemorySettings, default_memory_settings, is_out_of_memory, pick_device
from .diffusion import DiffusionBackend
from .loading import require_components
from .profiles import ModelProfile, load_profile

if TYPE_CHECKING:
    from diffusers import UNetMotionModel
    from diffusers.image_processor import PipelineImageInput

log = logging.getLogger(__name__)
DEFAULT_PROFILE = "animatediff-sd15"
CONTROL_COMPONENT = {"depth": "controlnet_depth", "pose": "controlnet_pose"}
BASE_COMPONENTS = {"tokenizer", "text_encoder", "unet", "vae", "scheduler", "motion_adapter"}


@dataclass(frozen=True)
class _Plan:
    """Everything run() decided before touching the model."""

    profile: ModelProfile
    controls: tuple[ControlSettings, ...]   # enabled, in pipeline order
    steps: int
    guidance_scale: float
    width: int
    height: int
    preview_every: int
    context_length: int
    context_stride: int
    scheduler: str


class AnimateDiffBackend(DiffusionBackend):
    id = "animatediff"
    description = "AnimateDiff + ControlNet (depth, OpenPose) video diffusion from engine passes"
    default_profile = DEFAULT_PROFILE
    default_max_frames = 480      # FreeNoise windows make long shots possible
    default_max_size = 1024

    # ------------------------------------------------------------ checks
    def plan(self, shot: Shot, settings: GenerationSettings) -> _Plan:
        profile = load_profile(settings.model_profile or self.default_profile)
        if profile.family != "animatediff":
            raise InvalidArgumentError(
                f"generation.model_profile: {profile.name!r} is a {profile.family} profile; "
                f"backend {self.id!r} needs an animatediff profile")
        controls = []
        for kind in ("depth", "pose"):
            c = settings.control(kind) or ControlSettings(kind)
            if c.enabled and c.strength > 0:
                controls.append(c)
        motion = settings.control("motion")
        if motion is not None and motion.enabled:
            raise InvalidArgumentError(
                "generation.controls: backend 'animatediff' has no motion control; use depth and/or pose")
        if not controls:
            raise InvalidArgumentError("generation.controls: enable depth and/or pose; "
                                       "backend 'animatediff' generates from engine passes")
        width = settings.output_width or shot.width
        height = settings.output_height or shot.height
        if width % 8 or height % 8:
            raise InvalidArgumentError(
                f"resolution: {width}x{height} must be a multiple of 8 for the latent space "
                f"(set generation.output_resolution, e.g. {width // 8 * 8}x{height // 8 * 8})")
        return _Plan(
            profile=profile, controls=tuple(controls),
            steps=settings.steps or int(profile.default("steps", 25)),
            guidance_scale=settings.guidance_scale or float(profile.default("guidance_scale", 7.5)),
            width=width, height=height,
            preview_every=settings.preview_every_n_steps or int(profile.default("preview_every_n_steps", 5)),
            context_length=int(profile.default("context_length", 16)),
            context_stride=int(profile.default("context_stride", 4)),
            scheduler=str(profile.default("scheduler", "ddim")),
        )

    def check_inputs(self, shot: Shot, settings: GenerationSettings) -> None:
        super().check_inputs(shot, settings)
        plan = self.plan(shot, settings)
        for c in plan.controls:
            if c.kind == "depth" and "depth" not in shot.passes:
                raise InvalidArgumentError("generation.controls: depth is enabled but the shot has no depth pass "
                                           "on every frame; disable it or render depth")
            if c.kind == "pose" and "pose" not in shot.passes:
                raise InvalidArgumentError("generation.controls: pose is enabled but no frame has a character pose; "
                                           "disable it or map an armature")
        require_components(plan.profile, BASE_COMPONENTS | {CONTROL_COMPONENT[c.kind] for c in plan.controls})

    def estimate_work(self, shot: Shot, settings: GenerationSettings) -> float:
        steps = settings.steps or 25
        return super().estimate_work(shot, settings) * steps

    # ------------------------------------------------------------ run
    def run(self, shot: Shot, settings: GenerationSettings, ctx: JobContext) -> None:
        plan = self.plan(shot, settings)
        choice = pick_device(self.device_override)
        memory = default_memory_settings(choice)
        try:
            self._run(shot, settings, ctx, plan, choice, memory)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            log.warning("job %s: out of memory on %s; retrying once with lower-memory settings", ctx.job_id,
                        choice.device)
            self.cache.evict_all()
            try:
                self._run(shot, settings, ctx, plan, choice, memory.lower())
            except Exception as again:
                if is_out_of_memory(again):
                    raise BackendError(
                        f"out of memory on {choice.device} at {plan.width}x{plan.height}x{shot.frame_count} "
                        f"even with VAE slicing/tiling, attention slicing and CPU offload; lower the output "
                        f"resolution or shorten the shot") from again
                raise

    def components(self, plan: _Plan, device: str, dtype) -> dict:
        needed = BASE_COMPONENTS | {CONTROL_COMPONENT[c.kind] for c in plan.controls}
        entry = self.cache.get(plan.profile, device, dtype, needed=needed)
        if "unet_motion" not in entry:
            from diffusers import UNetMotionModel

            # Built once per cached profile: from_unet2d copies weights. Typing: pyright infers from_unet2d's
            # result from from_config as "model or (model, unused kwargs)", but it is the model; and
            # ModelMixin.to is @wraps(nn.Module.to), which pyright reads as the unbound signature (wants self).
            unet_motion = cast("UNetMotionModel", UNetMotionModel.from_unet2d(entry["unet"], entry["motion_adapter"]))
            entry["unet_motion"] = unet_motion.to(device=device, dtype=dtype).eval()  # pyright: ignore[reportCallIssue]
        return entry

    def build_pipeline(self, entry: dict, plan: _Plan):
        from diffusers import AnimateDiffControlNetPipeline, DDIMScheduler, EulerDiscreteScheduler, LCMScheduler
        from diffusers.models.controlnets import MultiControlNetModel

        scheduler_cls = {"ddim": DDIMScheduler, "euler": EulerDiscreteScheduler, "lcm": LCMScheduler}[plan.scheduler]
        return AnimateDiffControlNetPipeline(
            vae=entry["vae"], text_encoder=entry["text_encoder"], tokenizer=entry["tokenizer"],
            unet=entry["unet_motion"], motion_adapter=entry["motion_adapter"],
            controlnet=MultiControlNetModel([entry[CONTROL_COMPONENT[c.kind]] for c in plan.controls]),
            scheduler=scheduler_cls.from_config(entry["scheduler"].config),
        )

    def _run(self, shot, settings, ctx: JobContext, plan: _Plan, choice, memory: MemorySettings) -> None:
        import torch

        from .conditioning_video import control_videos

        # 1-3. components, control videos, pipeline
        ctx.progress(0, plan.steps, "loading model")
        entry = self.components(plan, choice.device, choice.dtype)
        videos = control_videos(shot, [c.kind for c in plan.controls])
        pipe = self.build_pipeline(entry, plan)
        pipe.set_progress_bar_config(disable=True)
        # 4. memory settings
        _apply_memory(pipe, memory, choice.device)
        # 5. long shots: overlapping context windows over the motion module
        long_shot = shot.frame_count > plan.context_length
        if long_shot:
            pipe.enable_free_noise(context_length=plan.context_length, context_stride=plan.context_stride)
        started = time.monotonic()
        mid = shot.frame_count // 2

        def on_step_end(pipeline, step, timestep, kwargs):
            ctx.progress(step + 1, plan.steps, "denoising")
            if ctx.cancelled:
                pipeline._interrupt = True
            elif plan.preview_every and (step + 1) % plan.preview_every == 0 and step + 1 < plan.steps:
                ctx.preview(mid, step + 1, decode_frame(pipeline, kwargs["latents"], mid))
            return {}

        try:
            # 6. denoise to latents. diffusers' annotations are narrower than what the pipeline takes and
            # gives: a list (invariant) of per-ControlNet frame lists, the documented callback signature
            # (pipe, step, timestep, kwargs) -> dict, and the output object (return_dict defaults to True).
            with torch.inference_mode():
                latents = pipe(
                    prompt=settings.prompt, negative_prompt=settings.negative_prompt or None,
                    num_frames=shot.frame_count, height=plan.height, width=plan.width,
                    num_inference_steps=plan.steps, guidance_scale=plan.guidance_scale,
                    conditioning_frames=cast("list[PipelineImageInput]", videos),
                    controlnet_conditioning_scale=[c.strength for c in plan.controls],
                    control_guidance_start=[c.guidance_start for c in plan.controls],
                    control_guidance_end=[c.guidance_end for c in plan.controls],
                    generator=torch.Generator("cpu").manual_seed(settings.seed),
                    output_type="latent",
                    callback_on_step_end=on_step_end,  # pyright: ignore[reportArgumentType]
                ).frames  # pyright: ignore[reportAttributeAccessIssue]
                if ctx.cancelled:
                    return
                denoise_s = time.monotonic() - started
                # 7. decode and stream frame by frame
                for index in range(shot.frame_count):
                    if ctx.cancelled:
                        return
                    if index in ctx.frames_done:
                        continue
                    t0 = time.monotonic()
                    rgb = decode_frame(pipe, latents, index)
                    # work = this frame's share of denoising + its own decode, in device seconds
                    ctx.frame(index, rgb, work=denoise_s / shot.frame_count + (time.monotonic() - t0))
                    ctx.progress(plan.steps, plan.steps, f"decoding {index + 1}/{shot.frame_count}")
        finally:
            if long_shot:
                pipe.disable_free_noise()
            _reset_memory(pipe, memory, choice.device)


def decode_frame(pipe, latents, index: int) -> np.ndarray:
    """Decode one frame of [B, C, F, h, w] latents exactly as the pipeline's
    own ``decode_latents`` + ``postprocess_video`` do; uint8 [H, W, 3]."""
    import torch

    with torch.inference_mode():
        frame = latents[:, :, index].to(pipe.vae.dtype) / pipe.vae.config.scaling_factor
        image = pipe.vae.decode(frame).sample.float()
        array = pipe.video_processor.postprocess(image, output_type="np")[0]
    return (array * 255).round().astype(np.uint8)


def _apply_memory(pipe, memory: MemorySettings, device: str) -> None:
    if memory.vae_slicing:
        pipe.vae.enable_slicing()
    if memory.vae_tiling:
        pipe.vae.enable_tiling()
    if memory.attention_slicing:
        pipe.enable_attention_slicing()
    if memory.model_cpu_offload and device.startswith("cuda"):
        pipe.enable_model_cpu_offload(device=device)
    elif not memory.model_cpu_offload:
        pipe.to(device)


def _reset_memory(pipe, memory: MemorySettings, device: str) -> None:
    pipe.vae.disable_slicing()
    pipe.vae.disable_tiling()
    if memory.attention_slicing:
        pipe.disable_attention_slicing()
    if memory.model_cpu_offload and device.startswith("cuda"):
        pipe.remove_all_hooks()
        pipe.to(device)
