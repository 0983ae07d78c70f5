"""LoRA components of model profiles (bridge/backends/lora.py, docs/cpu.md):
a random PEFT LoRA for the tiny model, saved with diffusers'
``save_lora_weights`` and named in a profile, is found by the real loader,
merged into the cached weights exactly (W + scale * alpha/r * B @ A), once
per load, and changes the output; a missing file, a bad scale and a missing
peft are refused with the reason. The shipped AnimateLCM profile names its
LoRA, scheduler and licence."""

import os
import shutil

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

from bridge.backends.animatediff import AnimateDiffBackend  # noqa: E402
from bridge.backends.loading import ModelMissingError, missing_components  # noqa: E402
from bridge.backends.profiles import load_profile  # noqa: E402
from bridge.errors import PreconditionError  # noqa: E402
from bridge.shot.request import GenerationSettings  # noqa: E402
from bridge.shot.synthetic import sample_shot  # noqa: E402
from tests.test_animatediff import RecordingContext  # noqa: E402

pytestmark = pytest.mark.diffusion   # needs torch + diffusers (tests/conftest.py)

SCALE = 0.75
RANK = 2
TARGET = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"


def _lora_profile(base_toml, name, component="./lora", weight="pytorch_lora_weights.safetensors", scale=SCALE):
    text = base_toml.read_text().replace('name = "tiny"', f'name = "{name}"')
    text = text.replace("[components]\n", f'[components]\nlora = "{component}"\n', 1)
    text = text.replace("[defaults]\n", f'[defaults]\nlora_weight_name = "{weight}"\nlora_scale = {scale}\n', 1)
    text += ('\n[licenses.lora]\nid = "LicenseRef-Greenlight-random-weights"\ncommercial = "yes"\nurl = ""\n'
             'checked = "2026-12-02"\n')
    path = base_toml.parent / f"{name}.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def profiles(tmp_path_factory):
    """tiny (no LoRA) and tiny-lora (a random UNet + text-encoder LoRA) side by side on $GREENLIGHT_PROFILES;
    float32 so the merge is checked to float32 precision."""
    from bridge.backends.tiny import build_tiny_animatediff, build_tiny_lora

    tiny = build_tiny_animatediff(tmp_path_factory.mktemp("tiny-lora"))
    root = tiny.parent
    weights = build_tiny_lora(root / "base" / "unet", root / "lora", rank=RANK,
                              text_encoder_folder=root / "base" / "text_encoder")
    _lora_profile(tiny, "tiny-lora")
    _lora_profile(tiny, "tiny-lora-missing", component="./no-such-lora")
    _lora_profile(tiny, "tiny-lora-bad-scale", scale=-1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GREENLIGHT_PROFILES", str(root))
        mp.setenv("GREENLIGHT_CPU_DTYPE", "float32")
        yield root, weights


@pytest.fixture(scope="module")
def shot():
    return sample_shot(frames=8, width=64, height=64)


def _settings(profile, **kw):
    return GenerationSettings(backend="animatediff", prompt="a red robot", seed=5, model_profile=profile, **kw)


def _expected(root, weights):
    """The merged weight of TARGET computed here from the saved file: W + scale * (alpha / r) * B @ A."""
    from diffusers import UNet2DConditionModel
    from safetensors.torch import load_file

    state = load_file(weights)
    a = next(v for k, v in state.items() if TARGET in k and "lora_A" in k)
    b = next(v for k, v in state.items() if TARGET in k and "lora_B" in k)
    base = UNet2DConditionModel.from_pretrained(root / "base" / "unet").get_submodule(TARGET).weight.detach()
    return base, base + SCALE * (RANK / RANK) * (b.float() @ a.float())


def test_a_profile_lora_is_merged_exactly_once_per_load(profiles, shot):
    root, weights = profiles
    backend = AnimateDiffBackend()
    plan = backend.plan(shot, _settings("tiny-lora"))
    assert "lora" in backend.needed(plan)
    backend.check_inputs(shot, _settings("tiny-lora"))
    import torch

    base, expected = _expected(root, weights)
    entry = backend.components(plan, "cpu", torch.float32)
    merged = entry["unet_motion"].get_submodule(TARGET).weight.detach()
    assert not torch.allclose(merged, base, atol=1e-4), "the LoRA changed nothing"
    assert torch.allclose(merged, expected, atol=1e-5)
    # every layer the file has an adapter for, UNet and text encoder, was merged
    from safetensors.torch import load_file

    layers = {k.split(".lora_A")[0] for k in load_file(weights) if ".lora_A" in k}
    assert {k.split(".")[0] for k in layers} == {"unet", "text_encoder"}
    assert entry["lora_merged"] == len(layers)
    # the adapter layers are gone: plain weights, nothing of peft left to slow a step down
    names = [n for n, _ in entry["unet_motion"].named_parameters()] + [
        n for n, _ in entry["text_encoder"].named_parameters()]
    assert not [n for n in names if "lora" in n]
    before = merged.clone()
    a = RecordingContext()
    backend.run(shot, _settings("tiny-lora"), a)
    backend.run(shot, _settings("tiny-lora"), RecordingContext())
    after = backend.components(plan, "cpu", torch.float32)["unet_motion"].get_submodule(TARGET).weight
    assert torch.equal(before, after), "a later job merged the LoRA again"
    assert backend.cache.loads == 1
    assert sorted(a.frames) == list(range(8))


def test_the_lora_changes_the_output_and_stays_deterministic(profiles, shot):
    backend = AnimateDiffBackend()
    with_lora, again = RecordingContext(), RecordingContext()
    backend.run(shot, _settings("tiny-lora"), with_lora)
    backend.run(shot, _settings("tiny-lora"), again)
    plain = RecordingContext()
    AnimateDiffBackend().run(shot, _settings("tiny"), plain)
    assert all(np.array_equal(with_lora.frames[i], again.frames[i]) for i in range(8))
    assert not np.array_equal(with_lora.frames[4], plain.frames[4])


def test_a_missing_lora_file_is_refused_naming_the_component(profiles, shot):
    backend = AnimateDiffBackend()
    with pytest.raises(ModelMissingError) as err:
        backend.check_inputs(shot, _settings("tiny-lora-missing"))
    assert err.value.component == "lora"
    assert "no-such-lora" not in str(err.value)       # a local folder is named only in the log
    missing = missing_components(load_profile("tiny-lora-missing"))
    assert [m[0] for m in missing] == ["lora"]
    assert "pytorch_lora_weights.safetensors" in missing[0][2]


def test_a_wrong_weight_file_name_is_refused(profiles, shot, tmp_path):
    root, _ = profiles
    _lora_profile(root / "tiny.toml", "tiny-lora-wrong-file", weight="other.safetensors")
    try:
        with pytest.raises(ModelMissingError) as err:
            AnimateDiffBackend().check_inputs(shot, _settings("tiny-lora-wrong-file"))
        assert err.value.component == "lora"
    finally:
        (root / "tiny-lora-wrong-file.toml").unlink()


def test_a_bad_scale_is_a_broken_profile(profiles, shot):
    import torch

    backend = AnimateDiffBackend()
    plan = backend.plan(shot, _settings("tiny-lora-bad-scale"))
    with pytest.raises(PreconditionError, match=r"lora_scale must be a number in \(0, 4\]"):
        backend.components(plan, "cpu", torch.float32)


def test_without_peft_the_bridge_says_what_to_install(profiles, monkeypatch):
    import importlib.util

    from bridge.backends import lora

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "peft" else real(name, *a))
    with pytest.raises(PreconditionError, match=r"peft is not installed.*greenlight\[diffusion\]"):
        lora.require_peft()


def test_a_lora_for_another_model_is_refused(profiles, shot, tmp_path):
    """A LoRA whose keys match no layer (here: one made for a wider UNet) is an error, not a silent no-op."""
    root, _ = profiles
    from diffusers import UNet2DConditionModel

    from bridge.backends.tiny import build_tiny_lora

    other = tmp_path / "other-unet"
    UNet2DConditionModel(sample_size=8, block_out_channels=(8, 16), down_block_types=("DownBlock2D",
                         "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                         cross_attention_dim=16, norm_num_groups=2, attention_head_dim=2,
                         layers_per_block=1).save_pretrained(other)
    folder = root / "lora-other"
    build_tiny_lora(other, folder)
    _lora_profile(root / "tiny.toml", "tiny-lora-other", component="./lora-other")
    import torch

    try:
        backend = AnimateDiffBackend()
        with pytest.raises(PreconditionError, match=r"only \d+ match this model"):
            backend.components(backend.plan(shot, _settings("tiny-lora-other")), "cpu", torch.float32)
    finally:
        (root / "tiny-lora-other.toml").unlink()
        shutil.rmtree(folder)


def test_the_shipped_animatelcm_profile_names_lora_scheduler_and_licence():
    profile = load_profile("animatediff-sd15-lcm")
    assert profile.source("lora") == "wangfuyun/AnimateLCM"
    assert profile.source("motion_adapter") == "wangfuyun/AnimateLCM"
    assert profile.default("lora_weight_name", "") == "AnimateLCM_sd15_t2v_lora.safetensors"
    assert 0 < profile.default("lora_scale", 0) <= 1
    assert profile.default("scheduler", "") == "lcm" and profile.default("beta_schedule", "") == "linear"
    assert profile.default("draft", {})["steps"] == 4
    assert "lora" in profile.licenses
    # offline, with an empty hub cache: the LoRA is listed as missing by its file name
    missing = {m[0]: m for m in missing_components(profile)}
    assert "AnimateLCM_sd15_t2v_lora.safetensors" in missing["lora"][2]
