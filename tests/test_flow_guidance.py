"""Flow-guided generation (docs/temporal.md, "Flow-guided generation"):
trajectories of latent tokens from hand-made flows with exact expected ids,
trajectory attention and latent fusion on the tiny random-weight AnimateDiff
(saved in the hub layout, loaded back through the backend's own loader and
pipeline builder), the settings and their protocol round trip, and the
control-adherence measure on synthetic edges."""

import dataclasses
import math
import os

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

from bridge.errors import InvalidArgumentError  # noqa: E402
from bridge.shot.request import GenerationSettings, TemporalSettings, validate_generation  # noqa: E402
from bridge.shot.synthetic import sample_shot  # noqa: E402
from bridge.temporal.adherence import control_adherence, depth_edges, image_edges  # noqa: E402
from bridge.temporal.trajectories import build_trajectories, latent_grids, token_flow  # noqa: E402


# ------------------------------------------------------------------ trajectories
def _flows(frames, h, w, dx=0.0, dy=0.0):
    flow = np.zeros((frames - 1, h, w, 2))
    flow[..., 0], flow[..., 1] = dx, dy
    return flow


def test_constant_translation_by_one_token_per_frame_chains_exactly():
    # 32x32 pixels on a 4x4 grid (8 px tokens), everything moves 8 px right per frame
    traj = build_trajectories(_flows(3, 32, 32, dx=8.0), np.ones((2, 32, 32), bool), (4, 4))
    raster = np.arange(16).reshape(4, 4)
    assert np.array_equal(traj.ids[0], raster)
    # column 0 is disoccluded each frame (new ids, numbered in raster order); the rest inherit from the left
    assert np.array_equal(traj.ids[1], np.column_stack([np.arange(16, 20), raster[:, :3]]))
    assert np.array_equal(traj.ids[2], np.column_stack([np.arange(20, 24), np.arange(16, 20), raster[:, :2]]))
    prev1 = traj.prev[1].reshape(4, 4)
    assert np.array_equal(prev1[:, 1:], raster[:, :3]) and (prev1[:, 0] == -1).all()
    assert (traj.prev[0] == -1).all()
    lengths = traj.lengths()
    assert lengths[[0, 1, 2, 3, 16, 20]].tolist() == [3, 3, 2, 1, 2, 1]   # columns 2, 3 leave on the right


def test_sub_token_motion_keeps_the_nearest_token_and_downward_flow():
    # 0.4 token down: the centre stays in its own token; 0.6 token down: the next row
    still = build_trajectories(_flows(2, 16, 16, dy=0.4 * 8), np.ones((1, 16, 16), bool), (2, 2))
    assert np.array_equal(still.ids[1], still.ids[0])
    moved = build_trajectories(_flows(2, 16, 16, dy=0.6 * 8), np.ones((1, 16, 16), bool), (2, 2))
    assert np.array_equal(moved.ids[1], [[4, 5], [0, 1]])


def test_split_and_occlusion_start_new_trajectories():
    # 4x1 tokens (8 px each), 2 frames. Tokens 0 and 1 both land on token 1 (1 exactly on its centre,
    # 0 a quarter token off): 1 keeps it, 0's trajectory ends.
    # Token 2 is occluded (fails the depth test), token 3 stays: token 0 and 2 of frame 1 are new.
    flow = np.zeros((1, 8, 32, 2))
    flow[0, :, 0:8, 0] = 10.0     # token 0 -> centre 14.0 px = token 1 at 0.25 token from its centre
    flow[0, :, 8:16, 0] = 0.0     # token 1 stays exactly
    visible = np.ones((1, 8, 32), bool)
    visible[0, :, 16:24] = False  # token 2 occluded
    visible[0, :2, 24:32] = False  # token 3: 2 of 8 rows hidden, still mostly visible
    traj = build_trajectories(flow, visible, (1, 4))
    assert traj.ids[0].tolist() == [[0, 1, 2, 3]]
    assert traj.ids[1].tolist() == [[4, 1, 5, 3]]
    assert traj.prev[1].tolist() == [-1, 1, -1, 3]


def test_token_flow_area_averages_visible_pixels_and_scales_to_tokens():
    flow = np.zeros((16, 16, 2))
    flow[:8, :8, 0] = 16.0             # top-left token: 16 px = 2 tokens of 8 px
    flow[:4, 8:, 0] = 80.0             # top-right: half its pixels say 80 px, but they are hidden ...
    visible = np.ones((16, 16), bool)
    visible[:4, 8:] = False            # ... so the visible half (0 px) wins
    tokens, share = token_flow(flow, visible, (2, 2))
    assert tokens[0, 0, 0] == 2.0 and tokens[0, 1, 0] == 0.0
    assert share[0, 1] == 0.5 and share[0, 0] == 1.0


def test_latent_grids_follow_the_unet_downsampling():
    assert latent_grids(288, 512) == [(36, 64), (18, 32), (9, 16), (5, 8)]
    assert latent_grids(64, 64, levels=2) == [(8, 8), (4, 4)]


def test_buckets_gather_each_trajectory_in_frame_order():
    traj = build_trajectories(_flows(3, 32, 32, dx=8.0), np.ones((2, 32, 32), bool), (4, 4))
    groups = traj.buckets()
    members = {}
    for index, mask in groups:
        assert index.shape[1] in (2, 4)
        for row, m in zip(index, mask, strict=True):
            ids = {int(traj.ids.reshape(-1)[p]) for p in row[m]}
            assert len(ids) == 1
            members[ids.pop()] = row[m].tolist()
    assert members[0] == [0, 16 + 1, 32 + 2]          # frame-major positions: frame * 16 + token
    assert 3 not in members                             # length 1: not in any bucket
    window = traj.buckets(frames=[1, 2])
    assert sum(int(m.sum()) for _, m in window) == 2 * 12   # within frames 1-2: 12 pairs


# ------------------------------------------------------------------ settings
def test_temporal_settings_are_validated_by_field_name():
    base = GenerationSettings(backend="animatediff")
    validate_generation(dataclasses.replace(base, temporal=TemporalSettings("attention+fusion", 0.5, 0.1, 0.6)))
    bad = {
        "generation.temporal.mode": TemporalSettings("flow"),
        "generation.temporal.strength": TemporalSettings("attention", strength=1.5),
        "generation.temporal.step_start": TemporalSettings("attention", step_start=math.nan),
        "generation.temporal.step_end": TemporalSettings("attention", step_start=0.5, step_end=0.4),
    }
    for field, temporal in bad.items():
        with pytest.raises(InvalidArgumentError, match=field.replace(".", r"\.")):
            validate_generation(dataclasses.replace(base, temporal=temporal))
    with pytest.raises(InvalidArgumentError, match=r"generation\.temporal\.strength: must be a finite number"):
        validate_generation(dataclasses.replace(base, temporal=TemporalSettings("attention", strength=math.inf)))


def test_temporal_settings_round_trip_through_the_protocol_and_json():
    from bridge.proto.greenlight.v1 import bridge_pb2
    from bridge.shot.wire import generation_from_pb, generation_to_pb

    gen = GenerationSettings(backend="animatediff", temporal=TemporalSettings("attention+fusion", 0.75, 0.125, 0.5))
    msg = bridge_pb2.GenerationRequest.FromString(generation_to_pb(gen).SerializeToString())
    assert msg.temporal.mode == "attention+fusion"
    assert generation_from_pb(msg) == gen
    assert GenerationSettings.from_dict(gen.to_dict()) == gen
    # unset on the wire (an older client) and mode "" both read as off
    plain = generation_to_pb(GenerationSettings(backend="animatediff"))
    assert not plain.HasField("temporal")
    assert generation_from_pb(plain).temporal == TemporalSettings()
    empty = bridge_pb2.GenerationRequest(backend="animatediff", temporal=bridge_pb2.TemporalSettings(strength=0.5))
    assert generation_from_pb(empty).temporal == TemporalSettings("off", 0.5) and not generation_from_pb(
        empty).temporal.enabled


# ------------------------------------------------------------------ adherence
def _scene(shift=0):
    depth = np.full((48, 64), 5.0, np.float32)
    depth[12:36, 16:40] = 2.0                        # a box nearer than the wall
    img = np.full((48, 64, 3), 0.2)
    img[12 + shift:36 + shift, 16 + shift:40 + shift] = 0.9
    return depth, img


def test_adherence_rewards_edges_on_depth_discontinuities():
    depth, aligned = _scene()
    _, shifted = _scene(shift=6)
    flat = np.full((48, 64, 3), 0.5)
    noise = np.random.default_rng(0).random((48, 64, 3))
    a, s, f, n = (control_adherence(depth, img) for img in (aligned, shifted, flat, noise))
    assert a > 0.9
    assert s < 0.5 * a
    assert f == 0.0
    assert n < 0.5 * a
    assert depth_edges(depth).sum() > 0 and image_edges(flat).sum() == 0
    # background (inf) next to a surface is a discontinuity too
    depth_bg = depth.copy()
    depth_bg[depth_bg == 5.0] = np.inf
    assert control_adherence(depth_bg, aligned) > 0.9


# ------------------------------------------------------------------ generation on the tiny model
@pytest.fixture(scope="module")
def tiny_profile(tmp_path_factory):
    from bridge.backends.tiny import build_tiny_animatediff

    profile = build_tiny_animatediff(tmp_path_factory.mktemp("tiny-flow"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GREENLIGHT_PROFILES", str(profile.parent))
        yield profile


@pytest.fixture(scope="module")
def backend():
    from bridge.backends.animatediff import AnimateDiffBackend

    return AnimateDiffBackend()


def _latents(backend, profile, shot, temporal=None, seed=3, steps=3, guided=True):
    """Latents as the backend's _run makes them (same loader, pipeline builder, FreeNoise switch and
    call), with flow guidance applied as the backend will apply it; ``guided=False``: today's call."""
    import torch

    from bridge.backends.conditioning_video import control_videos
    from bridge.temporal.attention import apply_flow_guidance

    settings = GenerationSettings(backend="animatediff", prompt="a red robot", seed=seed, steps=steps,
                                  model_profile=profile.stem, temporal=temporal or TemporalSettings())
    plan = backend.plan(shot, settings)
    pipe = backend.build_pipeline(backend.components(plan, "cpu", torch.float32), plan)
    pipe.set_progress_bar_config(disable=True)
    long_shot = shot.frame_count > plan.context_length
    if long_shot:
        pipe.enable_free_noise(context_length=plan.context_length, context_stride=plan.context_stride)
    guidance = apply_flow_guidance(pipe, shot, settings.temporal, plan) if guided else None
    try:
        with torch.inference_mode():
            out = pipe(prompt=settings.prompt, num_frames=shot.frame_count, height=plan.height, width=plan.width,
                       num_inference_steps=plan.steps, guidance_scale=plan.guidance_scale,
                       conditioning_frames=control_videos(shot, [c.kind for c in plan.controls]),
                       controlnet_conditioning_scale=[c.strength for c in plan.controls],
                       generator=torch.Generator("cpu").manual_seed(seed), output_type="latent",
                       callback_on_step_end=guidance.on_step_end if guidance else None).frames
    finally:
        if guidance is not None:
            guidance.remove()
        if long_shot:
            pipe.disable_free_noise()
    return out, guidance


@pytest.fixture(scope="module")
def shot6():
    return sample_shot(frames=6, width=64, height=64)


@pytest.mark.diffusion
def test_mode_off_is_bit_identical_to_todays_pipeline(backend, tiny_profile, shot6):
    import torch

    today, _ = _latents(backend, tiny_profile, shot6, guided=False)
    off, guidance = _latents(backend, tiny_profile, shot6, TemporalSettings("off", 0.9))
    assert torch.equal(today, off)
    assert guidance is not None and guidance.unet_calls == 0 and guidance.attention_calls == 0


@pytest.mark.diffusion
def test_attention_changes_the_output_is_deterministic_and_is_removed(backend, tiny_profile, shot6):
    import torch

    today, _ = _latents(backend, tiny_profile, shot6, guided=False)
    a, guidance = _latents(backend, tiny_profile, shot6, TemporalSettings("attention", 1.0))
    b, _ = _latents(backend, tiny_profile, shot6, TemporalSettings("attention", 1.0))
    assert torch.equal(a, b)
    assert not torch.allclose(a, today, atol=1e-4)
    # steps window 0..0.8 of 3 steps: steps 0, 1 and 2 (2/3 < 0.8); 2 resolutions x (down + up) blocks + mid
    assert guidance is not None and guidance.unet_calls == 3 and guidance.attention_calls > 0
    per_step = guidance.attention_calls // 3
    assert per_step == sum(1 for n, _ in backend.components(backend.plan(shot6, GenerationSettings(
        backend="animatediff", model_profile=tiny_profile.stem)), "cpu", torch.float32)["unet_motion"].named_modules()
        if n.endswith(".attn1") and "motion_modules" not in n)
    # remove() restored the cached UNet: an unguided run afterwards is today's, bit for bit
    again, _ = _latents(backend, tiny_profile, shot6, guided=False)
    assert torch.equal(again, today)
    # a window that excludes every step installs but never attends along trajectories
    late, g = _latents(backend, tiny_profile, shot6, TemporalSettings("attention", 1.0, 0.9, 1.0))
    assert torch.equal(late, today) and g is not None and g.attention_calls == 0


@pytest.mark.diffusion
def test_fusion_changes_the_output_and_pulls_frames_together(backend, tiny_profile, shot6):
    import torch

    attn, _ = _latents(backend, tiny_profile, shot6, TemporalSettings("attention", 1.0))
    fused, guidance = _latents(backend, tiny_profile, shot6, TemporalSettings("attention+fusion", 1.0))
    fused2, _ = _latents(backend, tiny_profile, shot6, TemporalSettings("attention+fusion", 1.0))
    assert torch.equal(fused, fused2)
    assert not torch.allclose(fused, attn, atol=1e-4)
    assert guidance is not None and guidance.fusions == 2     # steps 0 and 1 of 3 (window 0..0.4)
    # along the H/8 trajectories, consecutive latents differ less after fusion than with attention alone
    traj = guidance.trajectories[(8, 8)]

    def gap(lat):
        flat = lat.reshape(4, 6, 64)
        diffs = [(flat[:, t, traj.prev[t] >= 0] - flat[:, t - 1, traj.prev[t][traj.prev[t] >= 0]]).abs().mean()
                 for t in range(1, 6)]
        return float(sum(diffs) / len(diffs))

    assert gap(fused) < gap(attn)


@pytest.mark.diffusion
def test_fuse_latents_blends_predecessors_only_where_visible():
    import torch

    from bridge.temporal.fusion import fuse_latents

    traj = build_trajectories(_flows(2, 16, 32, dx=8.0), np.ones((1, 16, 32), bool), (2, 4))
    lat = torch.randn(1, 4, 2, 2, 4, generator=torch.Generator().manual_seed(0))
    same = lat.clone()
    same[:, :, 1, :, 1:] = lat[:, :, 0, :, :3]            # frame 1 already is frame 0 moved one token right
    out = fuse_latents(same, traj, 0.5)
    assert torch.allclose(out, same, atol=1e-6)           # agreeing latents: nothing to change, no rescale
    out = fuse_latents(lat, traj, 1.0)
    assert torch.equal(out[:, :, 1, :, 0], lat[:, :, 1, :, 0])          # disoccluded column untouched
    assert torch.equal(out[:, :, 0], lat[:, :, 0])
    assert torch.allclose(out[:, :, 1, :, 1:], lat[:, :, 0, :, :3], atol=1e-6)   # weight 1: carried


@pytest.mark.diffusion
def test_long_shot_with_freenoise_windows(backend, tiny_profile):
    import torch

    shot = sample_shot(frames=20, width=64, height=64)       # > context_length 16 of the tiny profile
    today, _ = _latents(backend, tiny_profile, shot, steps=2, guided=False)
    guided, guidance = _latents(backend, tiny_profile, shot, TemporalSettings("attention+fusion", 1.0), steps=2)
    assert guided.shape == today.shape == (1, 4, 20, 8, 8)
    assert torch.isfinite(guided).all() and not torch.allclose(guided, today, atol=1e-4)
    assert guidance is not None and guidance.attention_calls > 0
    # trajectories reach across FreeNoise windows: some run through frames 0..19
    assert guidance.trajectories[(8, 8)].lengths().max() == 20
