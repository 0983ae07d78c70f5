"""The animatediff backend on a tiny random-weight model saved in the hub
layout and loaded through the real profile loader (HF_HUB_OFFLINE=1, no
downloads). Output pixels are noise; the tests check plumbing, determinism,
streaming, cancel, long shots, controls and errors."""

import dataclasses
import math
import os
from pathlib import Path

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

from bridge.backends.animatediff import AnimateDiffBackend, decode_frame  # noqa: E402
from bridge.backends.conditioning_video import control_videos  # noqa: E402
from bridge.backends.loading import ComponentCache, ModelMissingError  # noqa: E402
from bridge.client import BridgeClient, EventKind  # noqa: E402
from bridge.errors import InvalidArgumentError, PreconditionError  # noqa: E402
from bridge.shot.request import ControlSettings, GenerationSettings  # noqa: E402
from bridge.shot.synthetic import sample_shot  # noqa: E402

pytestmark = pytest.mark.diffusion   # needs torch + diffusers (tests/conftest.py)


@pytest.fixture(scope="module")
def tiny_profile(tmp_path_factory):
    """The tiny model's profile file, in a folder on $GREENLIGHT_PROFILES (jobs name it: "tiny")."""
    from bridge.backends.tiny import build_tiny_animatediff

    profile = build_tiny_animatediff(tmp_path_factory.mktemp("tiny-animatediff"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GREENLIGHT_PROFILES", str(profile.parent))
        yield profile


@pytest.fixture(scope="module")
def shot8():
    return sample_shot(frames=8, width=64, height=64)


class RecordingContext:
    """A JobContext that records what the backend reports (the bridge's
    executor is the real one; this isolates the backend)."""

    job_id = "test"

    def __init__(self, cancel_after_step=None, frames_done=frozenset()):
        self.cancel_after_step = cancel_after_step
        self.frames_done = frozenset(frames_done)
        self.events = []
        self.frames = {}
        self.works = {}
        self._cancelled = False

    @property
    def cancelled(self):
        return self._cancelled

    def progress(self, step, total, stage=""):
        self.events.append(("progress", step, stage))
        if self.cancel_after_step is not None and stage == "denoising" and step >= self.cancel_after_step:
            self._cancelled = True

    def preview(self, index, step, rgb):
        self.events.append(("preview", index, step))

    def frame(self, index, rgb, work=1.0):
        self.events.append(("frame", index))
        self.frames[index] = rgb
        self.works[index] = work


def _settings(profile, **kw):
    """``profile``: a profile file on $GREENLIGHT_PROFILES (named by its stem) or a name."""
    return GenerationSettings(backend="animatediff", prompt="a red robot", seed=kw.pop("seed", 7),
                              model_profile=profile.stem if isinstance(profile, Path) else profile, **kw)


def _run(backend, shot, settings, **ctx_kw):
    ctx = RecordingContext(**ctx_kw)
    backend.run(shot, settings, ctx)
    return ctx


def test_streams_frames_in_order_with_progress_and_previews(tiny_profile, shot8):
    backend = AnimateDiffBackend()
    settings = _settings(tiny_profile)
    backend.check_inputs(shot8, settings)
    ctx = _run(backend, shot8, settings)
    frames = [e[1] for e in ctx.events if e[0] == "frame"]
    assert frames == list(range(8))
    assert all(ctx.frames[i].shape == (64, 64, 3) and ctx.frames[i].dtype == np.uint8 for i in frames)
    steps = [e[1] for e in ctx.events if e[0] == "progress" and e[2] == "denoising"]
    assert steps == [1, 2, 3, 4]                       # one per denoising step (tiny profile: 4 steps)
    assert [e for e in ctx.events if e[0] == "preview"] == [("preview", 4, 2)]   # every 2 steps, middle frame
    first_frame = ctx.events.index(("frame", 0))
    assert all(e[0] != "progress" or e[2] != "denoising" for e in ctx.events[first_frame:])
    assert all(w > 0 for w in ctx.works.values())


def test_bridge_frames_equal_a_direct_diffusers_call(tiny_profile, shot8, monkeypatch):
    import torch

    from bridge.backends.tiny import direct_animatediff_pipeline

    # like with like: the direct pipeline is float32, so the bridge's CPU tier is told float32 too
    # (on a bf16-capable CPU it would choose bfloat16; tests/test_cpu_tier.py covers that choice)
    monkeypatch.setenv("GREENLIGHT_CPU_DTYPE", "float32")

    pipe = direct_animatediff_pipeline(tiny_profile)
    direct = pipe(prompt="a red robot", num_frames=8, height=64, width=64, num_inference_steps=4,
                  guidance_scale=7.5, conditioning_frames=control_videos(shot8, ["depth", "pose"]),
                  generator=torch.Generator("cpu").manual_seed(7), output_type="np").frames[0]
    direct_u8 = (direct * 255).round().astype(np.uint8)
    ctx = _run(AnimateDiffBackend(), shot8, _settings(tiny_profile))
    ours = np.stack([ctx.frames[i] for i in range(8)])
    assert ours.shape == direct_u8.shape
    assert np.abs(ours.astype(int) - direct_u8.astype(int)).max() <= 1
    assert ours.std() > 1, "frames are blank"


def test_same_seed_same_frames_other_seed_differs(tiny_profile, shot8):
    backend = AnimateDiffBackend()
    a = _run(backend, shot8, _settings(tiny_profile, seed=11)).frames
    b = _run(backend, shot8, _settings(tiny_profile, seed=11)).frames
    c = _run(backend, shot8, _settings(tiny_profile, seed=12)).frames
    assert all(np.array_equal(a[i], b[i]) for i in range(8))
    assert not np.array_equal(a[3], c[3])
    assert backend.cache.loads == 1, "the second and third job reloaded the model"


def test_cancel_stops_within_one_step(tiny_profile, shot8):
    settings = _settings(tiny_profile, steps=10)
    ctx = _run(AnimateDiffBackend(), shot8, settings, cancel_after_step=3)
    steps = [e[1] for e in ctx.events if e[0] == "progress" and e[2] == "denoising"]
    assert steps == [1, 2, 3], "denoising continued after cancel"
    assert ctx.frames == {}


def test_long_shot_uses_context_windows_and_comes_back_whole(tiny_profile):
    backend = AnimateDiffBackend()
    long_shot = sample_shot(frames=40, width=64, height=64)
    ctx = _run(backend, long_shot, _settings(tiny_profile, steps=2))
    assert sorted(ctx.frames) == list(range(40))
    # FreeNoise was switched off again: a short job on the cached model matches a fresh backend
    short = sample_shot(frames=8, width=64, height=64)
    after = _run(backend, short, _settings(tiny_profile, steps=2)).frames
    fresh = _run(AnimateDiffBackend(cache=ComponentCache()), short, _settings(tiny_profile, steps=2)).frames
    assert all(np.array_equal(after[i], fresh[i]) for i in range(8))


def test_disabled_control_is_really_ignored(tiny_profile, shot8):
    backend = AnimateDiffBackend()
    depth_only = _settings(tiny_profile, controls=(ControlSettings("pose", enabled=False),))
    both = _run(backend, shot8, _settings(tiny_profile)).frames
    without_pose = _run(backend, shot8, depth_only).frames
    assert not np.array_equal(both[4], without_pose[4]), "switching pose off changed nothing"
    # with pose off, a different pose pass makes no difference at all
    moved = tuple(dataclasses.replace(f, poses=tuple(dataclasses.replace(p, keypoints_px=p.keypoints_px + 9)
                                                     for p in f.poses)) for f in shot8.frames)
    shot_moved = dataclasses.replace(shot8, frames=moved)
    assert all(np.array_equal(without_pose[i], _run(backend, shot_moved, depth_only).frames[i]) for i in range(8))
    # and with pose on it does
    assert not np.array_equal(both[4], _run(backend, shot_moved, _settings(tiny_profile)).frames[4])


def test_bad_requests_are_refused_before_any_work(tiny_profile, shot8):
    backend = AnimateDiffBackend()
    off = (ControlSettings("depth", enabled=False), ControlSettings("pose", enabled=False))
    with pytest.raises(InvalidArgumentError, match="enable depth and/or pose"):
        backend.check_inputs(shot8, _settings(tiny_profile, controls=off))
    with pytest.raises(InvalidArgumentError, match=r"60x64 must be a multiple of 8 .* 56x64"):
        backend.check_inputs(shot8, _settings(tiny_profile, output_width=60, output_height=64))
    no_depth = dataclasses.replace(shot8, frames=tuple(dataclasses.replace(f, depth_m=None) for f in shot8.frames))
    with pytest.raises(InvalidArgumentError, match="shot has no depth pass"):
        backend.check_inputs(no_depth, _settings(tiny_profile))
    with pytest.raises(InvalidArgumentError, match=r"unknown model profile 'nope'; available: \[.*'tiny'"):
        backend.check_inputs(shot8, _settings("nope"))


def test_missing_component_names_it_and_how_to_get_it(tiny_profile, shot8, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    text = tiny_profile.read_text().replace('controlnet_pose = "./controlnet_pose"',
                                            'controlnet_pose = "lllyasviel/control_v11p_sd15_openpose"')
    profile = tiny_profile.parent / "half.toml"
    profile.write_text(text)
    backend = AnimateDiffBackend()
    with pytest.raises(ModelMissingError) as err:
        backend.check_inputs(shot8, _settings(profile))
    message = str(err.value)
    assert "'controlnet_pose'" in message and "lllyasviel/control_v11p_sd15_openpose" in message
    assert "HF_HUB_OFFLINE=1" in message and "greenlight models pull tiny" in message
    assert isinstance(err.value, PreconditionError)
    # the depth-only job needs no pose model: it is accepted
    backend.check_inputs(shot8, _settings(profile, controls=(ControlSettings("pose", enabled=False),)))


def test_default_profile_without_weights_is_refused_clearly(shot8, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    with pytest.raises(ModelMissingError, match="profile 'animatediff-sd15' is not available: "
                                                "stable-diffusion-v1-5/stable-diffusion-v1-5"):
        AnimateDiffBackend().check_inputs(shot8, GenerationSettings(backend="animatediff"))


def test_out_of_memory_is_retried_once_with_lower_memory(tiny_profile, shot8):
    import torch

    class OomOnceBackend(AnimateDiffBackend):
        """Fake OOM injected into the real backend's run (labelled test double)."""

        calls = []

        def _run(self, shot, settings, ctx, plan, choice, memory):
            self.calls.append(memory)
            if len(self.calls) == 1:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return super()._run(shot, settings, ctx, plan, choice, memory)

    backend = OomOnceBackend()
    ctx = _run(backend, shot8, _settings(tiny_profile, steps=1))
    assert len(ctx.frames) == 8
    assert backend.calls[1].attention_slicing and backend.calls[1].vae_tiling and not backend.calls[0].vae_tiling

    class AlwaysOom(OomOnceBackend):
        calls = []

        def _run(self, *a):
            self.calls.append(a[-1])
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    from bridge.errors import BackendError

    with pytest.raises(BackendError, match="out of memory on cpu at 64x64x8 even with VAE slicing"):
        _run(AlwaysOom(), shot8, _settings(tiny_profile, steps=1))


def test_through_the_bridge_with_streamed_frames(tiny_profile, shot8, start_bridge, tmp_path):
    from bridge.backends.guides import GuidesBackend

    bridge = start_bridge(backends={"guides": GuidesBackend(), "animatediff": AnimateDiffBackend()})
    with BridgeClient(bridge.address) as client:
        job = client.submit(shot8, _settings(tiny_profile)).job
        events = list(client.watch(job.job_id, include_previews=True))
        kinds = [e.kind for e in events]
        assert kinds[-1] is EventKind.COMPLETED, events[-1].message
        frames = [e for e in events if e.kind is EventKind.FRAME]
        assert [e.frame.index for e in frames] == list(range(8))
        assert all(e.image.startswith(b"\x89PNG") for e in frames)
        assert EventKind.PREVIEW in kinds and EventKind.PROGRESS in kinds
        previews = [e.preview for e in events if e.kind is EventKind.PREVIEW]
        assert all(0 <= p.index < 8 and p.step >= 0 and p.png.startswith(b"\x89PNG") for p in previews)
        # the energy of the shared denoising loop is charged to frames as they are decoded (each takes
        # its share of what is pending, spread over the frames still to come), fixed then: the report's
        # per-frame figures are the streamed ones, and its total their exact sum plus the attempt's rest
        report = events[-1].report
        assert [(f.index, f.energy_wh, f.co2e_g_location) for f in report.per_frame] == [
            (e.frame.index, e.frame.energy_wh, e.frame.co2e_g_location) for e in frames]
        assert all(e.frame.energy_wh > 0 for e in frames)
        assert report.energy.energy_wh == math.fsum(
            [*(f.energy_wh for f in report.per_frame), *(a.unattributed_wh for a in report.attempts)])
        # a profile whose weights are missing is refused at submit, with the component named
        with pytest.raises(PreconditionError, match="stable-diffusion-v1-5"):
            os.environ["HF_HOME"], old = str(tmp_path / "empty"), os.environ.get("HF_HOME")
            try:
                client.submit(shot8, GenerationSettings(backend="animatediff"))
            finally:
                if old is None:
                    del os.environ["HF_HOME"]
                else:
                    os.environ["HF_HOME"] = old


def test_decode_frame_matches_pipeline_decode(tiny_profile, shot8):
    import torch

    backend = AnimateDiffBackend()
    settings = _settings(tiny_profile)
    plan = backend.plan(shot8, settings)
    entry = backend.components(plan, "cpu", torch.float32)
    pipe = backend.build_pipeline(entry, plan)
    latents = torch.randn(1, 4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        whole = pipe.video_processor.postprocess_video(pipe.decode_latents(latents), output_type="np")[0]
    for i in range(3):
        assert np.abs(decode_frame(pipe, latents, i).astype(int)
                      - (whole[i] * 255).round().astype(int)).max() <= 1
