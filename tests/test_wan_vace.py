"""The wan-vace backend on a tiny random-weight Wan2.1-VACE saved in the
diffusers layout and loaded through the profile loader (no downloads)."""

import dataclasses
import os

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

from bridge.backends.wan_vace import WanVaceBackend, stream_decode  # noqa: E402
from bridge.errors import InvalidArgumentError  # noqa: E402
from bridge.shot.request import ControlSettings, GenerationSettings  # noqa: E402
from bridge.shot.synthetic import sample_shot  # noqa: E402
from tests.test_animatediff import RecordingContext  # noqa: E402

pytestmark = pytest.mark.diffusion   # needs torch + diffusers (tests/conftest.py)


@pytest.fixture(scope="module")
def wan_profile(tmp_path_factory):
    from bridge.backends.tiny import build_tiny_wan_vace

    profile = build_tiny_wan_vace(tmp_path_factory.mktemp("tiny-wan"))
    with pytest.MonkeyPatch.context() as mp:   # jobs name it ("tiny-wan"), from $GREENLIGHT_PROFILES
        mp.setenv("GREENLIGHT_PROFILES", str(profile.parent))
        yield profile


def _settings(profile, **kw):
    return GenerationSettings(backend="wan-vace", prompt="a robot", seed=kw.pop("seed", 5),
                              model_profile=profile.stem, **kw)


def test_streamed_decode_equals_the_pipeline_output(wan_profile):
    import torch
    from diffusers import WanVACEPipeline

    from bridge.backends.conditioning_video import control_videos

    shot = sample_shot(frames=9, width=32, height=32)
    backend = WanVaceBackend()
    settings = _settings(wan_profile)
    backend.check_inputs(shot, settings)
    ctx = RecordingContext()
    backend.run(shot, settings, ctx)
    assert [e[1] for e in ctx.events if e[0] == "frame"] == list(range(9))
    ours = np.stack([ctx.frames[i] for i in range(9)])

    entry = backend.cache.get(backend.plan(shot, settings).profile, "cpu", None)
    pipe = WanVACEPipeline(**{k: entry[k] for k in ("tokenizer", "text_encoder", "vae", "scheduler", "transformer")})
    pipe.set_progress_bar_config(disable=True)
    direct = pipe(prompt="a robot", video=control_videos(shot, ["depth"])[0], height=32, width=32, num_frames=9,
                  num_inference_steps=3, guidance_scale=5.0, generator=torch.Generator("cpu").manual_seed(5),
                  output_type="np").frames[0]
    assert np.abs(ours.astype(int) - (direct * 255).round().astype(int)).max() <= 1
    assert ours.std() > 1


def test_odd_lengths_are_padded_and_trimmed(wan_profile):
    shot = sample_shot(frames=6, width=32, height=32)   # Wan needs 4k+1: runs 9, returns 6
    ctx = RecordingContext()
    WanVaceBackend().run(shot, _settings(wan_profile, controls=(ControlSettings("pose"),)), ctx)
    assert sorted(ctx.frames) == list(range(6))


def test_stream_decode_yields_one_then_four(wan_profile):
    import torch

    backend = WanVaceBackend()
    shot = sample_shot(frames=9, width=32, height=32)
    entry = backend.cache.get(backend.plan(shot, _settings(wan_profile)).profile, "cpu", None)

    class P:
        vae = entry["vae"]
        from diffusers.video_processor import VideoProcessor

        video_processor = VideoProcessor(vae_scale_factor=8)

    latents = torch.randn(1, 16, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    assert [len(g) for g in stream_decode(P, latents)] == [1, 4, 4]


def test_one_control_only_and_size_rules(wan_profile):
    backend = WanVaceBackend()
    shot = sample_shot(frames=5, width=32, height=32)
    both = (ControlSettings("depth"), ControlSettings("pose"))
    with pytest.raises(InvalidArgumentError, match="exactly one control video; enable depth OR pose"):
        backend.check_inputs(shot, _settings(wan_profile, controls=both))
    with pytest.raises(InvalidArgumentError, match="multiple of 16"):
        backend.check_inputs(shot, _settings(wan_profile, output_width=40, output_height=32))
    with pytest.raises(InvalidArgumentError, match="is a animatediff profile"):
        backend.check_inputs(shot, GenerationSettings(backend="wan-vace", model_profile="animatediff-sd15"))
    no_pose = dataclasses.replace(shot, frames=tuple(dataclasses.replace(f, poses=()) for f in shot.frames))
    with pytest.raises(InvalidArgumentError, match="no pose pass"):
        backend.check_inputs(no_pose, _settings(wan_profile, controls=(ControlSettings("pose"),)))


def test_cancel_stops_denoising(wan_profile):
    shot = sample_shot(frames=5, width=32, height=32)
    ctx = RecordingContext(cancel_after_step=2)
    WanVaceBackend().run(shot, _settings(wan_profile, steps=6), ctx)
    assert [e[1] for e in ctx.events if e[0] == "progress" and e[2] == "denoising"] == [1, 2]
    assert ctx.frames == {}
