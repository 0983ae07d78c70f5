"""The CPU tier (docs/cpu.md): the dtype chosen from the CPU's flags (fake
/proc/cpuinfo text) or $GREENLIGHT_CPU_DTYPE, torch's thread count from the
process's affinity, the tiny decoder (a random AutoencoderTiny saved in the
hub layout and loaded through the real loader) for previews and draft frames,
and the draft/final quality presets: validated, advertised by a real bridge,
reflected in its estimates, and giving deterministic, different output."""

import os

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

from bridge.backends.animatediff import AnimateDiffBackend, preset_defaults  # noqa: E402
from bridge.backends.devices import (  # noqa: E402
    configure_cpu_threads,
    cpu_bf16_support,
    cpu_dtype,
    pick_device,
    usable_cores,
)
from bridge.backends.guides import GuidesBackend  # noqa: E402
from bridge.backends.loading import ComponentCache  # noqa: E402
from bridge.client import BridgeClient, EventKind  # noqa: E402
from bridge.errors import InvalidArgumentError, PreconditionError  # noqa: E402
from bridge.shot.request import GenerationSettings, validate_generation  # noqa: E402
from bridge.shot.synthetic import sample_shot  # noqa: E402
from bridge.shot.wire import generation_from_pb, generation_to_pb  # noqa: E402
from tests.test_animatediff import RecordingContext  # noqa: E402

# /proc/cpuinfo excerpts (x86 "flags", arm64 "Features")
SAPPHIRE_RAPIDS = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"
ZEN4 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16\n"
SKYLAKE = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n"
GRAVITON = "processor\t: 0\nFeatures\t: fp asimd sve\n"


@pytest.fixture(scope="module")
def draft_profile(tmp_path_factory):
    """The tiny model with a random AutoencoderTiny as vae_preview and a [defaults.draft] preset
    (2 LCM steps, guidance 1), in a folder on $GREENLIGHT_PROFILES; float32 so figures do not depend
    on this CPU's bf16 support."""
    from bridge.backends.tiny import build_tiny_animatediff

    profile = build_tiny_animatediff(tmp_path_factory.mktemp("tiny-draft"), tiny_decoder=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GREENLIGHT_PROFILES", str(profile.parent))
        mp.setenv("GREENLIGHT_CPU_DTYPE", "float32")
        yield profile


@pytest.fixture(scope="module")
def shot8():
    return sample_shot(frames=8, width=64, height=64)


def _settings(profile, **kw):
    return GenerationSettings(backend="animatediff", prompt="a red robot", seed=kw.pop("seed", 7),
                              model_profile=profile.stem, **kw)


# ------------------------------------------------------------------ dtype and threads
@pytest.mark.diffusion
def test_bf16_where_the_cpu_has_amx_or_avx512_bf16_else_fp32():
    assert cpu_dtype(SAPPHIRE_RAPIDS, env={}) == ("bfloat16", "bf16: the CPU has AMX-BF16 and AVX512-BF16")
    assert cpu_dtype(ZEN4, env={}) == ("bfloat16", "bf16: the CPU has AVX512-BF16")
    name, why = cpu_dtype(SKYLAKE, env={})
    assert name == "float32" and "neither AMX-BF16 nor AVX-512 BF16" in why
    assert cpu_dtype(GRAVITON, env={})[0] == "float32"
    # no flags to read (macOS, Windows): torch's own checks decide
    import torch

    ok, why = cpu_bf16_support("")
    assert ok == (torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    assert why.startswith("torch reports")


def test_env_overrides_the_dtype_and_a_bad_value_is_refused_by_name():
    assert cpu_dtype(SAPPHIRE_RAPIDS, env={"GREENLIGHT_CPU_DTYPE": "float32"}) == (
        "float32", "$GREENLIGHT_CPU_DTYPE=float32")
    assert cpu_dtype(SKYLAKE, env={"GREENLIGHT_CPU_DTYPE": "bfloat16"})[0] == "bfloat16"
    with pytest.raises(PreconditionError, match=r"\$GREENLIGHT_CPU_DTYPE .* \('float32', 'bfloat16'\).*'fp8'"):
        cpu_dtype(ZEN4, env={"GREENLIGHT_CPU_DTYPE": "fp8"})


@pytest.mark.diffusion
def test_pick_device_on_a_cpu_says_which_dtype_and_why(monkeypatch):
    monkeypatch.delenv("GREENLIGHT_CPU_DTYPE", raising=False)
    choice = pick_device("cpu", cpuinfo=ZEN4)
    assert (choice.device, choice.dtype_name) == ("cpu", "bfloat16")
    assert choice.reason == "requested; bf16: the CPU has AVX512-BF16"
    assert pick_device("cpu", cpuinfo=SKYLAKE).dtype_name == "float32"
    monkeypatch.setenv("GREENLIGHT_CPU_DTYPE", "nonsense")
    # a backend whose dtype cannot be chosen is advertised unavailable, with the reason
    info = AnimateDiffBackend(device="cpu").info()
    assert not info.available and "GREENLIGHT_CPU_DTYPE" in info.unavailable_reason


def test_freed_heap_goes_back_to_the_os_where_glibc_has_malloc_trim():
    import platform

    from bridge.backends.devices import release_freed_heap

    assert release_freed_heap() is (platform.libc_ver()[0] == "glibc")


def test_torch_compile_is_off_unless_asked_and_a_bad_value_is_refused_by_name():
    from bridge.backends.devices import torch_compile_mode

    assert torch_compile_mode(env={}) == "off"
    assert torch_compile_mode(env={"GREENLIGHT_TORCH_COMPILE": " UNet "}) == "unet"
    with pytest.raises(PreconditionError, match=r"GREENLIGHT_TORCH_COMPILE.*'max'"):
        torch_compile_mode(env={"GREENLIGHT_TORCH_COMPILE": "max"})


@pytest.mark.diffusion
def test_a_compiled_unet_gives_the_eager_frames_and_is_compiled_once_per_load(draft_profile, shot8, monkeypatch):
    """torch.compile on the motion UNet (GREENLIGHT_TORCH_COMPILE=unet), with torch's real inductor code
    generator: the same frames as eager (to bf16-free float32 rounding), compiled once per cached load."""
    import torch

    from bridge.backends import devices

    eager = RecordingContext()
    AnimateDiffBackend().run(shot8, _settings(draft_profile, quality="draft"), eager)
    monkeypatch.setenv("GREENLIGHT_TORCH_COMPILE", "unet")
    compiled_calls = []
    real = devices.compile_model
    monkeypatch.setattr("bridge.backends.animatediff.compile_model",
                        lambda m: compiled_calls.append(type(m).__name__) or real(m))
    backend = AnimateDiffBackend()
    first, second = RecordingContext(), RecordingContext()
    backend.run(shot8, _settings(draft_profile, quality="draft"), first)
    backend.run(shot8, _settings(draft_profile, quality="draft"), second)
    assert compiled_calls == ["UNetMotionModel"]
    entry = backend.components(backend.plan(shot8, _settings(draft_profile, quality="draft")), "cpu",
                               torch.float32)
    assert isinstance(entry["unet_motion"], torch._dynamo.eval_frame.OptimizedModule)
    for i in range(8):
        assert np.abs(first.frames[i].astype(int) - eager.frames[i].astype(int)).max() <= 2
        assert np.array_equal(first.frames[i], second.frames[i])


@pytest.mark.diffusion
def test_threads_come_from_the_affinity_mask_and_are_set_once():
    import torch

    assert usable_cores() == len(os.sched_getaffinity(0))
    n = configure_cpu_threads()
    assert n == torch.get_num_threads()
    if not os.environ.get("OMP_NUM_THREADS"):
        assert n == usable_cores()
    assert configure_cpu_threads(cores=n + 3) == n and torch.get_num_threads() == n, "set twice"


# ------------------------------------------------------------------ the tiny decoder
@pytest.mark.diffusion
def test_tiny_decoder_loads_through_the_real_loader(draft_profile):
    import torch
    from diffusers import AutoencoderKL, AutoencoderTiny

    from bridge.backends.profiles import load_profile

    profile = load_profile(draft_profile.stem)
    entry = ComponentCache().get(profile, "cpu", torch.bfloat16, needed={"vae", "vae_preview"})
    assert isinstance(entry["vae_preview"], AutoencoderTiny) and isinstance(entry["vae"], AutoencoderKL)
    # straight into the target dtype, channels-last on a CPU
    assert all(p.dtype == torch.bfloat16 for p in entry["vae_preview"].parameters())
    conv = entry["vae_preview"].decoder.layers[0]
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    # TAESD geometry: 4 latent channels in, 8x upsampling out
    out = entry["vae_preview"].decode(torch.zeros(1, 4, 8, 8, dtype=torch.bfloat16)).sample
    assert out.shape == (1, 3, 64, 64)


def _count_calls(module, calls: list, name: str):
    return module.register_forward_hook(lambda *_: calls.append(name))


@pytest.mark.diffusion
def test_previews_use_the_tiny_decoder_final_frames_the_full_vae_draft_frames_the_tiny_one(draft_profile, shot8):
    backend = AnimateDiffBackend()
    plan = backend.plan(shot8, _settings(draft_profile))
    assert (plan.decoder, plan.tiny_decoder, plan.steps, plan.scheduler) == ("full", True, 4, "ddim")
    draft_plan = backend.plan(shot8, _settings(draft_profile, quality="draft"))
    assert (draft_plan.decoder, draft_plan.steps, draft_plan.guidance_scale, draft_plan.scheduler) == (
        "tiny", 2, 1.0, "lcm")
    # explicit settings beat the preset's defaults
    assert backend.plan(shot8, _settings(draft_profile, quality="draft", steps=3)).steps == 3
    import torch

    entry = backend.components(plan, "cpu", torch.float32)
    calls: list[str] = []
    hooks = [_count_calls(entry["vae"].decoder, calls, "full"), _count_calls(entry["vae_preview"].decoder, calls,
                                                                               "tiny")]
    try:
        final = RecordingContext()
        backend.run(shot8, _settings(draft_profile), final)
        previews = [e for e in final.events if e[0] == "preview"]
        assert len(previews) == 1
        assert calls == ["tiny"] + ["full"] * 8, calls     # one preview (tiny), eight frames (full VAE)
        calls.clear()
        draft = RecordingContext()
        backend.run(shot8, _settings(draft_profile, quality="draft"), draft)
        assert calls == ["tiny"] * 8, calls                  # 2 steps: no preview; frames by the tiny decoder
        steps = [e[1] for e in draft.events if e[0] == "progress" and e[2] == "denoising"]
        assert steps == [1, 2]
    finally:
        for h in hooks:
            h.remove()
    assert sorted(draft.frames) == list(range(8)) and draft.frames[0].shape == (64, 64, 3)
    assert not np.array_equal(draft.frames[3], final.frames[3])
    assert backend.cache.loads == 1


@pytest.mark.diffusion
def test_draft_is_deterministic_per_seed(draft_profile, shot8):
    backend = AnimateDiffBackend()
    a = RecordingContext()
    b = RecordingContext()
    c = RecordingContext()
    backend.run(shot8, _settings(draft_profile, quality="draft", seed=3), a)
    backend.run(shot8, _settings(draft_profile, quality="draft", seed=3), b)
    backend.run(shot8, _settings(draft_profile, quality="draft", seed=4), c)
    assert all(np.array_equal(a.frames[i], b.frames[i]) for i in range(8))
    assert not np.array_equal(a.frames[5], c.frames[5])
    assert a.frames[5].std() > 1, "frames are blank"


@pytest.mark.diffusion
def test_bf16_tier_runs_deterministically(draft_profile, shot8, monkeypatch):
    monkeypatch.setenv("GREENLIGHT_CPU_DTYPE", "bfloat16")
    backend = AnimateDiffBackend()
    a, b = RecordingContext(), RecordingContext()
    backend.run(shot8, _settings(draft_profile, quality="draft"), a)
    backend.run(shot8, _settings(draft_profile, quality="draft"), b)
    assert all(np.array_equal(a.frames[i], b.frames[i]) for i in range(8))
    import torch

    entry = backend.components(backend.plan(shot8, _settings(draft_profile)), "cpu", torch.bfloat16)
    assert {p.dtype for p in entry["unet_motion"].parameters()} == {torch.bfloat16}
    # the motion adapter's weights are the motion UNet's (one copy in memory), the 2-D UNet is dropped
    motion = dict(entry["unet_motion"].named_parameters())
    assert all(p is motion[n] for n, p in entry["motion_adapter"].named_parameters())
    assert entry["unet"] is None


# ------------------------------------------------------------------ presets on the wire
def test_quality_is_validated_and_travels_on_the_wire():
    validate_generation(GenerationSettings(quality="draft"))
    validate_generation(GenerationSettings(quality=""))
    with pytest.raises(InvalidArgumentError, match=r"generation.quality: must be one of \('draft', 'final'\)") as err:
        validate_generation(GenerationSettings(quality="best"))
    assert err.value.field == "generation.quality"
    assert generation_from_pb(generation_to_pb(GenerationSettings(quality="draft"))).quality == "draft"
    assert GenerationSettings.from_dict(GenerationSettings(quality="final").to_dict()).quality == "final"
    # a backend without a draft preset refuses one, naming the field
    with pytest.raises(InvalidArgumentError, match="generation.quality: backend 'guides' has no 'draft' preset"):
        GuidesBackend().check_inputs(sample_shot(frames=2, width=32, height=32),
                                     GenerationSettings(backend="guides", quality="draft"))


@pytest.mark.diffusion
def test_estimate_work_reflects_the_preset(draft_profile, shot8):
    backend = AnimateDiffBackend()
    final = backend.estimate_work(shot8, _settings(draft_profile))
    draft = backend.estimate_work(shot8, _settings(draft_profile, quality="draft"))
    pixels = 8 * 64 * 64
    assert final == pixels * (4 * 2 + 2.0)       # 4 DDIM steps with CFG (two UNet passes) + the full VAE
    assert draft == pixels * (2 * 1 + 0.05)      # 2 LCM steps without CFG + the tiny decoder
    assert preset_defaults(backend.plan(shot8, _settings(draft_profile)).profile, "draft")["decoder"] == "tiny"


@pytest.mark.diffusion
def test_presets_are_advertised_and_priced_through_a_real_bridge(draft_profile, shot8, start_bridge):
    bridge = start_bridge(backends={"guides": GuidesBackend(), "animatediff": AnimateDiffBackend(
        profile=draft_profile.stem)})
    with BridgeClient(bridge.address, timeout_s=60) as client:
        caps = client.capabilities()
        by_id = {b.id: b for b in caps.backends}
        presets = {p.name: p for p in by_id["animatediff"].quality_presets}
        assert sorted(presets) == ["draft", "final"]
        assert presets["final"].relative_cost == 1.0
        assert presets["draft"].relative_cost == pytest.approx((2 + 0.05) / (4 * 2 + 2.0), rel=1e-3)
        assert "tiny decoder" in presets["draft"].description
        assert list(by_id["guides"].quality_presets) == []
        # one finished job gives the bridge its seconds and Wh per unit of work; then the estimate of a
        # draft costs the draft's share of a final
        job = client.submit(shot8, _settings(draft_profile, quality="draft")).job
        events = list(client.watch(job.job_id))
        assert events[-1].kind is EventKind.COMPLETED, events[-1].message
        estimates = {q: client.estimate(shot8.tags.project, 400, 512, 512, _settings(draft_profile, quality=q))
                     for q in ("draft", "final")}
        assert estimates["final"].energy_wh > 0
        assert estimates["draft"].energy_wh / estimates["final"].energy_wh == pytest.approx(
            presets["draft"].relative_cost, rel=1e-3)
        assert estimates["draft"].wall_s < estimates["final"].wall_s
        with pytest.raises(InvalidArgumentError, match="generation.quality"):
            client.estimate(shot8.tags.project, 8, 64, 64, _settings(draft_profile, quality="fast"))


@pytest.mark.diffusion
def test_capabilities_never_wait_for_device_detection(monkeypatch):
    """Until torch is imported (by warm() on the bridge's startup thread, or
    a job), info() lists no device instead of importing torch inside an RPC."""
    import sys

    from bridge.backends.animatediff import AnimateDiffBackend
    from bridge.backends.devices import DeviceChoice

    backend = AnimateDiffBackend()
    calls = []

    def pick_device(override=None):
        calls.append(override)
        return DeviceChoice("cpu", "float32", None, "test")

    monkeypatch.setattr("bridge.backends.diffusion.pick_device", pick_device)
    monkeypatch.delitem(sys.modules, "torch", raising=False)   # as in a fresh bridge process
    assert backend.info().devices == () and calls == []
    backend.warm()
    assert backend.info().devices == ("cpu",) and calls == [None]
