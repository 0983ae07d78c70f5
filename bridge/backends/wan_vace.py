"""The ``wan-vace`` backend: diffusers' WanVACEPipeline (Wan2.1-VACE 1.3B /
14B) with ONE engine pass as the control video (depth or pose).

When to choose it over ``animatediff``: Wan-VACE is a video-native DiT with
a causal 3D VAE, so motion and temporal coherence are better and shots up to
81 frames come out in one piece without context windows; it costs far more
compute (the 1.3B model wants ~8 GB of VRAM at 480p, the 14B a data-centre
GPU) and takes a single control video, so depth and pose cannot be combined.
AnimateDiff is lighter, takes depth and pose together, and handles longer
shots with FreeNoise windows.

Wan's VAE compresses time 4x and decodes causally: the first latent frame
gives one video frame, each further latent frame gives four. We decode latent
frame by latent frame and stream frames as each group comes out. Shots of
4k+1 frames map exactly; other lengths are padded with the last control
frame and the extra frames are not returned.
"""

# diffusers re-exports its public classes from a lazy __init__ (``from .models import X`` under TYPE_CHECKING,
# no __all__), so pyright reports the documented ``from diffusers import X`` as a private import.
# pyright: reportPrivateImportUsage=false

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InvalidArgumentError
from ..shot.model import Shot, ShotOutline
from ..shot.request import ControlSettings, GenerationSettings
from .base import JobContext
from .devices import pick_device
from .diffusion import DiffusionBackend
from .loading import require_components
from .profiles import ModelProfile, load_profile

if TYPE_CHECKING:
    from diffusers.image_processor import PipelineImageInput

log = logging.getLogger(__name__)
DEFAULT_PROFILE = "wan-vace-1.3b"
COMPONENTS = {"tokenizer", "text_encoder", "vae", "transformer", "scheduler"}


@dataclass(frozen=True)
class _Plan:
    profile: ModelProfile
    control: ControlSettings
    steps: int
    guidance_scale: float
    width: int
    height: int
    num_frames: int          # 4k+1 >= the shot's frames
    preview_every: int


class WanVaceBackend(DiffusionBackend):
    id = "wan-vace"
    description = "Wan2.1-VACE video diffusion with one control video (depth or pose)"
    default_profile = DEFAULT_PROFILE
    default_max_frames = 161
    default_max_size = 1280

    def plan(self, shot: Shot | ShotOutline, settings: GenerationSettings) -> _Plan:
        profile = load_profile(settings.model_profile or self.default_profile)
        if profile.family != "wan-vace":
            raise InvalidArgumentError(
                f"generation.model_profile: {profile.name!r} is a {profile.family} profile; "
                f"backend {self.id!r} needs a wan-vace profile")
        enabled = [settings.control(k) for k in ("depth", "pose")]
        enabled = [c for c in enabled if c is not None and c.enabled and c.strength > 0]
        if not settings.controls:   # nothing said: depth when the shot has it, else pose
            enabled = [ControlSettings("depth" if "depth" in shot.passes else "pose")]
        if len(enabled) != 1:
            raise InvalidArgumentError(
                "generation.controls: wan-vace takes exactly one control video; enable depth OR pose "
                f"(got {[c.kind for c in enabled] or 'none'}); use animatediff to combine them")
        width = settings.output_width or shot.width
        height = settings.output_height or shot.height
        if width % 16 or height % 16:
            raise InvalidArgumentError(
                f"resolution: {width}x{height} must be a multiple of 16 for Wan "
                f"(e.g. {width // 16 * 16}x{height // 16 * 16})")
        return _Plan(
            profile=profile, control=enabled[0],
            steps=settings.steps or int(profile.default("steps", 30)),
            guidance_scale=settings.guidance_scale or float(profile.default("guidance_scale", 5.0)),
            width=width, height=height, num_frames=(shot.frame_count - 1 + 3) // 4 * 4 + 1,
            preview_every=settings.preview_every_n_steps or int(profile.default("preview_every_n_steps", 5)),
        )

    def check_inputs(self, shot: Shot | ShotOutline, settings: GenerationSettings) -> None:
        super().check_inputs(shot, settings)
        plan = self.plan(shot, settings)
        if plan.control.kind not in shot.passes:
            raise InvalidArgumentError(f"generation.controls: {plan.control.kind} is enabled but the shot has no "
                                       f"{plan.control.kind} pass")
        require_components(plan.profile, COMPONENTS)

    def run(self, shot: Shot, settings: GenerationSettings, ctx: JobContext) -> None:
        import torch
        from diffusers import WanVACEPipeline
        from PIL import Image

        from .conditioning_video import control_frames

        plan = self.plan(shot, settings)
        choice = pick_device(self.device_override)
        ctx.progress(0, plan.steps, "loading model")
        # bf16 on CUDA (Wan's training precision), fp32 elsewhere
        dtype = torch.bfloat16 if choice.device.startswith("cuda") else None
        entry = self.cache.get(plan.profile, choice.device, dtype, needed=COMPONENTS)
        pipe = WanVACEPipeline(tokenizer=entry["tokenizer"], text_encoder=entry["text_encoder"], vae=entry["vae"],
                               scheduler=entry["scheduler"], transformer=entry["transformer"])
        pipe.set_progress_bar_config(disable=True)
        frames = control_frames(shot, plan.control.kind)
        frames += [frames[-1]] * (plan.num_frames - len(frames))      # pad to 4k+1
        video: list[PipelineImageInput] = [Image.fromarray(f) for f in frames]
        started = time.monotonic()

        def on_step_end(pipeline, step, timestep, kwargs):
            ctx.progress(step + 1, plan.steps, "denoising")
            if ctx.cancelled:
                pipeline._interrupt = True
            elif plan.preview_every and (step + 1) % plan.preview_every == 0 and step + 1 < plan.steps:
                first = next(stream_decode(pipeline, kwargs["latents"][:, :, :1]))
                ctx.preview(0, step + 1, first[0])
            return {}

        # diffusers' annotations are narrower than what the pipeline takes and gives: negative_prompt defaults
        # to None, the documented callback signature is (pipe, step, timestep, kwargs) -> dict, and the result
        # is the output object (return_dict defaults to True), not a tuple.
        with torch.inference_mode():
            latents = pipe(
                prompt=settings.prompt, video=video,
                negative_prompt=settings.negative_prompt or None,  # pyright: ignore[reportArgumentType]
                conditioning_scale=plan.control.strength, height=plan.height, width=plan.width,
                num_frames=plan.num_frames, num_inference_steps=plan.steps, guidance_scale=plan.guidance_scale,
                generator=torch.Generator("cpu").manual_seed(settings.seed), output_type="latent",
                callback_on_step_end=on_step_end,  # pyright: ignore[reportArgumentType]
            ).frames  # pyright: ignore[reportAttributeAccessIssue]
            if ctx.cancelled:
                return
            denoise_s = time.monotonic() - started
            index = 0
            t0 = time.monotonic()
            for group in stream_decode(pipe, latents):
                decode_s = (time.monotonic() - t0) / len(group)
                for rgb in group:
                    if ctx.cancelled:
                        return
                    if index < shot.frame_count and index not in ctx.frames_done:
                        ctx.frame(index, rgb, work=denoise_s / plan.num_frames + decode_s)
                        ctx.progress(plan.steps, plan.steps, f"decoding {index + 1}/{shot.frame_count}")
                    index += 1
                t0 = time.monotonic()


def stream_decode(pipe, latents):
    """Yield uint8 [H, W, 3] frame groups as Wan's causal VAE decodes each
    latent frame. Same arithmetic as ``WanVACEPipeline`` + ``AutoencoderKLWan
    ._decode`` (un-normalise, post-quant conv, per-frame decoder with the
    feature cache, clamp, postprocess), without waiting for the whole clip.
    Relies on the VAE's decode cache internals (diffusers 0.42)."""
    import torch

    vae = pipe.vae
    z = latents.to(vae.dtype)
    mean = torch.tensor(vae.config.latents_mean).view(1, vae.config.z_dim, 1, 1, 1).to(z.device, z.dtype)
    inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, vae.config.z_dim, 1, 1, 1).to(z.device, z.dtype)
    z = z / inv_std + mean
    with torch.inference_mode():
        vae.clear_cache()
        try:
            x = vae.post_quant_conv(z)
            for i in range(x.shape[2]):
                vae._conv_idx = [0]
                out = vae.decoder(x[:, :, i:i + 1], feat_cache=vae._feat_map, feat_idx=vae._conv_idx,
                                  first_chunk=(i == 0))
                if vae.config.patch_size is not None:
                    from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

                    out = unpatchify(out, patch_size=vae.config.patch_size)
                out = torch.clamp(out, min=-1.0, max=1.0)
                video = pipe.video_processor.postprocess_video(out, output_type="np")[0]
                yield [(f * 255).round().astype(np.uint8) for f in video]
        finally:
            vae.clear_cache()
