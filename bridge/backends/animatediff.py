"""The ``animatediff`` backend: diffusers' AnimateDiffControlNetPipeline with
a MultiControlNet of depth and OpenPose, conditioned on engine passes.

0. defaults from the model profile, 1. components from the cache (loaded
once per profile), 2. control videos from the passes, 3. a pipeline over the
cached components with only the enabled ControlNets, 4. memory settings,
5. FreeNoise context windows for shots longer than the motion window,
6. denoise to latents with progress / preview / cancel per step, 7. decode
frame by frame and stream each frame as soon as it is decoded.

Quality presets (docs/cpu.md): "final" (the default) runs the profile's
steps and decodes with the full VAE; "draft" runs the profile's
``[defaults.draft]`` (e.g. 4 LCM steps, guidance 1: no CFG pass) and decodes
with the tiny decoder (``vae_preview``) where the profile has one. Step
previews use the tiny decoder whenever the profile has one.
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
from ..shot.model import Shot, ShotOutline
from ..shot.request import ControlSettings, GenerationSettings
from .base import JobContext, QualityPreset
from .devices import (
    MemorySettings,
    compile_model,
    configure_cpu_threads,
    default_memory_settings,
    is_out_of_memory,
    pick_device,
    release_freed_heap,
    torch_compile_mode,
)
from .diffusion import DiffusionBackend
from .loading import has_component, require_components, to_channels_last
from .profiles import SCHEDULERS, ModelProfile, load_profile

if TYPE_CHECKING:
    from diffusers import UNetMotionModel
    from diffusers.image_processor import PipelineImageInput

log = logging.getLogger(__name__)
DEFAULT_PROFILE = "animatediff-sd15"
CONTROL_COMPONENT = {"depth": "controlnet_depth", "pose": "controlnet_pose"}
BASE_COMPONENTS = {"tokenizer", "text_encoder", "unet", "vae", "scheduler", "motion_adapter"}
TINY_DECODER = "vae_preview"
# decode cost per frame in UNet-pass equivalents (measured, benchmarks/cpu_tier.py: SD1.5 VAE ~2 steps
# for a 16-frame clip, TAESD ~1% of that): used for estimates and the presets' relative cost
DECODE_STEPS = {"full": 2.0, "tiny": 0.05}
DRAFT_STEP_FRACTION = 4      # a profile without [defaults.draft]: a quarter of its steps


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
    quality: str = "final"
    decoder: str = "full"        # final frames: "full" (the VAE) or "tiny" (vae_preview)
    tiny_decoder: bool = False   # the profile has one: previews use it
    beta_schedule: str = ""      # overrides the base scheduler's (AnimateLCM: "linear"); "" keeps it


def preset_defaults(profile: ModelProfile, quality: str) -> dict:
    """steps, guidance_scale, scheduler and decoder of a preset from the profile (what a request may override)."""
    steps = int(profile.default("steps", 25))
    final = {"steps": steps, "guidance_scale": float(profile.default("guidance_scale", 7.5)),
             "scheduler": str(profile.default("scheduler", "ddim")), "decoder": "full"}
    if quality != "draft":
        return final
    draft = profile.default("draft", {})
    if not isinstance(draft, dict):
        raise profile.broken("defaults.draft must be a table ([defaults.draft])")
    out = {"steps": int(draft.get("steps", max(1, steps // DRAFT_STEP_FRACTION))),
           "guidance_scale": float(draft.get("guidance_scale", final["guidance_scale"])),
           "scheduler": str(draft.get("scheduler", final["scheduler"])),
           "decoder": "tiny" if has_component(profile, TINY_DECODER) else "full"}
    if out["scheduler"] not in SCHEDULERS:
        raise profile.broken(f"defaults.draft.scheduler must be one of {SCHEDULERS}")
    return out


BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


def _beta_schedule(profile: ModelProfile) -> str:
    value = profile.default("beta_schedule", "")
    if value and value not in BETA_SCHEDULES:
        raise profile.broken(f"defaults.beta_schedule must be one of {BETA_SCHEDULES}")
    return str(value)


def preset_work(profile: ModelProfile, quality: str, steps: int = 0, guidance_scale: float = 0.0) -> float:
    """Work per frame-pixel of a preset (or its overrides), in UNet-pass equivalents:
    steps, twice over with classifier-free guidance (guidance > 1), plus the decode."""
    p = preset_defaults(profile, quality)
    cfg = 2 if (guidance_scale or p["guidance_scale"]) > 1 else 1
    return (steps or p["steps"]) * cfg + DECODE_STEPS[p["decoder"]]


class AnimateDiffBackend(DiffusionBackend):
    supports_flow_guidance = True
    id = "animatediff"
    description = "AnimateDiff + ControlNet (depth, OpenPose) video diffusion from engine passes"
    default_profile = DEFAULT_PROFILE
    default_max_frames = 480      # FreeNoise windows make long shots possible
    default_max_size = 1024

    # ------------------------------------------------------------ checks
    def plan(self, shot: Shot | ShotOutline, settings: GenerationSettings) -> _Plan:
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
        quality = settings.quality or "final"
        preset = preset_defaults(profile, quality)
        return _Plan(
            profile=profile, controls=tuple(controls),
            steps=settings.steps or preset["steps"],
            guidance_scale=settings.guidance_scale or preset["guidance_scale"],
            width=width, height=height,
            preview_every=settings.preview_every_n_steps or int(profile.default("preview_every_n_steps", 5)),
            context_length=int(profile.default("context_length", 16)),
            context_stride=int(profile.default("context_stride", 4)),
            scheduler=preset["scheduler"], quality=quality, decoder=preset["decoder"],
            tiny_decoder=has_component(profile, TINY_DECODER),
            beta_schedule=_beta_schedule(profile),
        )

    def check_inputs(self, shot: Shot | ShotOutline, settings: GenerationSettings) -> None:
        super().check_inputs(shot, settings)
        plan = self.plan(shot, settings)
        for c in plan.controls:
            if c.kind == "depth" and "depth" not in shot.passes:
                raise InvalidArgumentError("generation.controls: depth is enabled but the shot has no depth pass "
                                           "on every frame; disable it or render depth")
            if c.kind == "pose" and "pose" not in shot.passes:
                raise InvalidArgumentError("generation.controls: pose is enabled but no frame has a character pose; "
                                           "disable it or map an armature")
        if settings.temporal.enabled:
            from ..temporal.score import has_passes

            if not has_passes(shot):
                raise InvalidArgumentError("generation.temporal.mode: flow guidance needs depth and motion passes "
                                           "on every frame; render them or set mode 'off'",
                                           field="generation.temporal.mode")
        torch_compile_mode()       # a bad $GREENLIGHT_TORCH_COMPILE refuses the job now, not after the upload
        require_components(plan.profile, self.needed(plan))

    def needed(self, plan: _Plan) -> set[str]:
        extra = {TINY_DECODER} if plan.tiny_decoder else set()
        if has_component(plan.profile, "lora"):
            extra.add("lora")
        return BASE_COMPONENTS | {CONTROL_COMPONENT[c.kind] for c in plan.controls} | extra

    def estimate_work(self, shot: Shot | ShotOutline, settings: GenerationSettings) -> float:
        """Frames x pixels x (steps + decode), the steps and decoder of the preset asked for."""
        profile = load_profile(settings.model_profile or self.default_profile)
        return super().estimate_work(shot, settings) * preset_work(profile, settings.quality, settings.steps,
                                                                   settings.guidance_scale)

    def quality_presets(self) -> tuple[QualityPreset, ...]:
        """The presets of the default profile, with their cost relative to "final"."""
        try:
            profile = load_profile(self.default_profile)
            draft, final = preset_defaults(profile, "draft"), preset_defaults(profile, "final")
        except Exception as exc:     # a missing/broken default profile: no presets to offer, said in the log
            log.warning("animatediff: no quality presets from profile %r: %s", self.default_profile, exc)
            return ()
        cost = preset_work(profile, "draft") / preset_work(profile, "final")
        decoder = {"tiny": "the tiny decoder (TAESD)", "full": "the full VAE"}
        return (
            QualityPreset("draft", f"{draft['steps']} {draft['scheduler'].upper()} steps, guidance "
                          f"{draft['guidance_scale']:g}, {decoder[draft['decoder']]}: quick previz",
                          round(cost, 4)),
            QualityPreset("final", f"{final['steps']} {final['scheduler'].upper()} steps, guidance "
                          f"{final['guidance_scale']:g}, {decoder['full']}: the finished frames", 1.0),
        )

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
        # the motion UNet first, from the UNet and the motion adapter alone, which are then dropped: the
        # peak holds one UNet's worth of copies, not three (from_unet2d copies every weight)
        entry = self.cache.get(plan.profile, device, dtype, needed={"unet", "motion_adapter"})
        if "unet_motion" not in entry:
            entry["unet_motion"] = build_motion_unet(entry["unet"], entry["motion_adapter"], device, dtype)
            share_motion_weights(entry["motion_adapter"], entry["unet_motion"])
            entry["unet"] = None     # kept as a key: the cache sees it loaded
            import gc

            gc.collect()
            release_freed_heap()     # the 2-D UNet's memory back to the OS before the ControlNets load
        entry = self.cache.get(plan.profile, device, dtype, needed=self.needed(plan))
        if entry.get("lora") is not None and "lora_merged" not in entry:
            from .lora import fuse_lora

            # once per load: the cached UNet and text encoder keep the merged weights
            entry["lora_merged"] = fuse_lora(self.build_pipeline(entry, plan), entry["lora"])
        if torch_compile_mode() == "unet" and "unet_eager" not in entry:
            # after the LoRA merge (compiled code would not see it); once per load, like the merge
            entry["unet_eager"] = entry["unet_motion"]
            entry["unet_motion"] = compile_model(entry["unet_motion"])
        return entry

    def build_pipeline(self, entry: dict, plan: _Plan):
        from diffusers import AnimateDiffControlNetPipeline, DDIMScheduler, EulerDiscreteScheduler, LCMScheduler
        from diffusers.models.controlnets import MultiControlNetModel

        scheduler_cls = {"ddim": DDIMScheduler, "euler": EulerDiscreteScheduler, "lcm": LCMScheduler}[plan.scheduler]
        overrides = {"beta_schedule": plan.beta_schedule} if plan.beta_schedule else {}
        return AnimateDiffControlNetPipeline(
            vae=entry["vae"] if plan.decoder == "full" else entry[TINY_DECODER],
            text_encoder=entry["text_encoder"], tokenizer=entry["tokenizer"],
            unet=entry["unet_motion"], motion_adapter=entry["motion_adapter"],
            controlnet=MultiControlNetModel([entry[CONTROL_COMPONENT[c.kind]] for c in plan.controls]),
            scheduler=scheduler_cls.from_config(entry["scheduler"].config, **overrides),
        )

    def _run(self, shot, settings, ctx: JobContext, plan: _Plan, choice, memory: MemorySettings) -> None:
        import torch

        from .conditioning_video import control_videos

        # 1-3. components, control videos, pipeline
        ctx.progress(0, plan.steps, "loading model")
        if choice.device == "cpu":
            configure_cpu_threads()
        entry = self.components(plan, choice.device, choice.dtype)
        preview_vae = entry[TINY_DECODER] if plan.tiny_decoder else None
        videos = control_videos(shot, [c.kind for c in plan.controls])
        pipe = self.build_pipeline(entry, plan)
        pipe.set_progress_bar_config(disable=True)
        # 4. memory settings
        _apply_memory(pipe, memory, choice.device)
        # 5. long shots: overlapping context windows over the motion module
        long_shot = shot.frame_count > plan.context_length
        if long_shot:
            pipe.enable_free_noise(context_length=plan.context_length, context_stride=plan.context_stride)
        from ..temporal.attention import apply_flow_guidance

        guidance = apply_flow_guidance(pipe, shot, settings.temporal, plan)   # mode off: installs nothing
        started = time.monotonic()
        mid = shot.frame_count // 2

        def on_step_end(pipeline, step, timestep, kwargs):
            ctx.progress(step + 1, plan.steps, "denoising")
            if ctx.cancelled:
                pipeline._interrupt = True
            elif plan.preview_every and (step + 1) % plan.preview_every == 0 and step + 1 < plan.steps:
                ctx.preview(mid, step + 1, decode_frame(pipeline, kwargs["latents"], mid, vae=preview_vae))
            if ctx.cancelled:
                return {}
            return guidance.on_step_end(pipeline, step, timestep, kwargs)

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
            guidance.remove()
            if long_shot:
                pipe.disable_free_noise()
            _reset_memory(pipe, memory, choice.device)


def build_motion_unet(unet, motion_adapter, device: str, dtype) -> UNetMotionModel:
    """``UNetMotionModel.from_unet2d`` built directly in ``dtype`` (it would
    make a float32 model first: a 1.3B-parameter peak in fp32 on SD1.5),
    channels-last on a CPU."""
    import torch
    from diffusers import UNetMotionModel

    before = torch.get_default_dtype()
    if dtype is not None and dtype.is_floating_point:
        torch.set_default_dtype(dtype)
    # from_unet2d ends with model.to(unet.dtype), on which diffusers 0.42 warns about "modules that should be
    # kept in float32: []" (none: an empty list is still warned about); that notice is noise here
    noisy = logging.getLogger("diffusers.models.modeling_utils")
    level = noisy.level
    noisy.setLevel(logging.ERROR)
    try:
        # pyright infers from_unet2d's result from from_config as "model or (model, unused kwargs)"; it is the
        # model. ModelMixin.to is @wraps(nn.Module.to), which pyright reads as the unbound signature (wants self).
        model = cast("UNetMotionModel", UNetMotionModel.from_unet2d(unet, motion_adapter))
    finally:
        torch.set_default_dtype(before)
        noisy.setLevel(level)
    model = model.to(device).eval()  # pyright: ignore[reportCallIssue, reportArgumentType]
    return to_channels_last(model) if device == "cpu" else model


def share_motion_weights(adapter, unet_motion) -> int:
    """Point the motion adapter's parameters at the motion UNet's copies of
    them (same names, same values after from_unet2d), so its own copies are
    freed; the pipeline still reads the adapter's config (FreeNoise does).
    Returns how many parameters are shared."""
    own = dict(unet_motion.named_parameters())
    shared = 0
    for name, param in list(adapter.named_parameters()):
        twin = own.get(name)
        if twin is not None and twin.shape == param.shape and twin.dtype == param.dtype:
            module, _, attr = name.rpartition(".")
            setattr(adapter.get_submodule(module) if module else adapter, attr, twin)
            shared += 1
    return shared


def decode_frame(pipe, latents, index: int, vae=None) -> np.ndarray:
    """Decode one frame of [B, C, F, h, w] latents exactly as the pipeline's
    own ``decode_latents`` + ``postprocess_video`` do; uint8 [H, W, 3].
    ``vae``: another decoder than the pipeline's (the tiny one for previews)."""
    import torch

    vae = vae or pipe.vae
    with torch.inference_mode():
        frame = latents[:, :, index].to(vae.dtype) / vae.config.scaling_factor
        image = vae.decode(frame).sample.float()
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
