"""The temporal-consistency score against cases with a known answer
(docs/temporal.md): warped images score about 0, noise scores high, the
sample shot's own consistent render scores near the floor, and an occluder
is masked exactly where the engine says the surface is hidden."""

import numpy as np
import pytest

from bridge.shot.camera import look_at
from bridge.shot.model import CameraSample, Fps, Frame, Shot, Tags
from bridge.shot.synthetic import sample_shot
from bridge.temporal.score import score_shot, valid_mask, world_texture

W, H = 96, 64


def _texture(x, y, phase=0.0):
    return np.stack([0.5 + 0.4 * np.sin(x / 7.0 + phase) * np.cos(y / 9.0),
                     0.5 + 0.4 * np.cos(x / 11.0 - y / 13.0 + phase),
                     0.5 + 0.3 * np.sin((x + y) / 17.0 + phase)], axis=-1)


def _flat_shot(depths, flows):
    cam = CameraSample(world_matrix=look_at((0, -10, 0), (0, 0, 0)), focal_length_mm=35.0)
    frames = tuple(Frame(index=i, camera=cam, depth_m=d.astype(np.float32), motion_px=f.astype(np.float16))
                   for i, (d, f) in enumerate(zip(depths, flows)))
    return Shot(tags=Tags("p", "s"), fps=Fps(24), width=W, height=H, frames=frames)


def _grid():
    return np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)


def _translating(n=10, d=(2.3, 0.7)):
    xs, ys = _grid()
    depth = np.full((H, W), 5.0)
    flow = np.broadcast_to(np.array(d), (H, W, 2)).copy()
    shot = _flat_shot([depth] * n, [flow] * (n - 1) + [np.zeros((H, W, 2))])
    frames = [_texture(xs - k * d[0], ys - k * d[1]) for k in range(n)]
    return shot, frames


def test_frames_warped_along_the_flow_score_about_zero():
    shot, frames = _translating()
    score = score_shot(shot, frames)
    assert score.gap1 < 0.003
    assert score.trajectory < 0.006
    assert len(score.pairs) == 9 and all(p.valid_fraction > 0.9 for p in score.pairs)
    # trajectories lose the pixels that leave the frame, hop by hop
    assert score.trajectory_pairs[0].valid_pixels > score.trajectory_pairs[6].valid_pixels > 0


def test_the_same_frames_without_motion_score_high():
    """Frames that move while the engine says they should not: the score sees it."""
    shot, frames = _translating()
    still = _flat_shot([f.depth_m for f in shot.frames], [np.zeros((H, W, 2))] * shot.frame_count)
    assert score_shot(still, frames).gap1 > 20 * score_shot(shot, frames).gap1


def test_independent_noise_scores_high():
    shot, good = _translating()
    rng = np.random.default_rng(7)
    noise = [rng.random((H, W, 3)) for _ in range(shot.frame_count)]
    bad = score_shot(shot, noise)
    assert bad.gap1 > 0.15 and bad.trajectory > 0.15
    assert bad.gap1 > 50 * score_shot(shot, good).gap1


def test_uint8_and_larger_outputs_are_compared_at_pass_resolution():
    shot, frames = _translating()
    big = [np.repeat(np.repeat((f * 255).round().astype(np.uint8), 2, axis=0), 2, axis=1) for f in frames]
    assert score_shot(shot, big).gap1 == pytest.approx(score_shot(shot, frames).gap1, abs=0.004)


def test_the_sample_shots_own_consistent_render_scores_near_the_floor():
    shot = sample_shot(frames=12, width=128, height=72)
    consistent = score_shot(shot, [world_texture(f) for f in shot.frames])
    rng = np.random.default_rng(1)
    noise = score_shot(shot, [rng.random((72, 128, 3)) for _ in shot.frames])
    assert consistent.valid_fraction > 0.8          # the wall and floor fill most of the frame
    # what is left is bilinear resampling of a texture a few pixels across
    assert consistent.gap1 < 0.015 and consistent.gap1 < noise.gap1 / 15
    assert consistent.trajectory < noise.trajectory / 8
    # the depth pass as an image: it changes as the camera moves, but slowly
    depth_img = [np.repeat((1.0 / np.asarray(f.depth_m, dtype=np.float64))[..., None], 3, axis=-1)
                 for f in shot.frames]
    assert score_shot(shot, depth_img).gap1 < noise.gap1 / 5


def test_an_occluder_moving_across_the_frame_is_masked_where_it_hides_the_background():
    n, step, x0, size = 6, 3.0, 10, 20
    xs, ys = _grid()
    depths, flows, frames, covered = [], [], [], []
    for k in range(n):
        left = x0 + k * step
        sq = (xs >= left) & (xs < left + size) & (ys >= 20) & (ys < 20 + size)
        covered.append(sq)
        depths.append(np.where(sq, 2.0, 10.0))
        flows.append(np.where(sq[..., None], np.array([step, 0.0]), 0.0) if k < n - 1 else np.zeros((H, W, 2)))
        # background texture static, the square's texture travels with it
        frames.append(np.where(sq[..., None], _texture(xs - k * step, ys, phase=2.0), _texture(xs, ys)))
    shot = _flat_shot(depths, flows)
    for t in range(n - 1):
        hidden_next = ~covered[t] & covered[t + 1]      # background that the square covers at t+1
        np.testing.assert_array_equal(valid_mask(shot.frames[t], shot.frames[t + 1]), ~hidden_next)
    score = score_shot(shot, frames)
    assert score.gap1 < 1e-9                            # every compared pixel is the same surface
    # had the hidden pixels counted, the error would be far from zero
    t = 0
    raw = np.abs(frames[t] - frames[t + 1]).mean(axis=-1)[~covered[t] & covered[t + 1]].mean()
    assert raw > 0.05


def test_missing_passes_and_frame_count_mismatch_are_refused():
    shot, frames = _translating(n=4)
    with pytest.raises(ValueError, match="3 frames for a 4-frame shot"):
        score_shot(shot, frames[:3])
    bare = Shot(tags=shot.tags, fps=shot.fps, width=W, height=H,
                frames=tuple(Frame(index=f.index, camera=f.camera) for f in shot.frames))
    with pytest.raises(ValueError, match="depth and motion"):
        score_shot(bare, frames)


def test_trajectories_hop_within_windows_of_eight_frames():
    shot, frames = _translating(n=20)
    score = score_shot(shot, iter(frames))     # any iterable: frames are streamed
    starts = sorted({p.index for p in score.trajectory_pairs})
    assert starts == [0, 8, 16]
    assert max(p.gap for p in score.trajectory_pairs) == 7
    assert [p.gap for p in score.trajectory_pairs if p.index == 16] == [1, 2, 3]


def _png(rgb):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_report_figures_from_stored_frames():
    from bridge.temporal.report import consistency

    shot, frames = _translating(n=6)
    pngs = [_png(f) for f in frames]
    t = consistency(shot, lambda i: pngs[i], range(6))
    assert t.computed and t.method == "masked-warp-l1" and t.window == 8
    assert t.gap1 is not None and t.gap1 < 0.006 and len(t.pairs) == 5
    assert consistency(shot, lambda i: pngs[i], [0, 1, 2]).reason == "3 of 6 frames were produced"
    broken = consistency(shot, lambda i: b"not a png", range(6))
    assert not broken.computed and "could not be read" in broken.reason
    bare = Shot(tags=shot.tags, fps=shot.fps, width=W, height=H,
                frames=tuple(Frame(index=f.index, camera=f.camera) for f in shot.frames))
    assert "no depth and motion" in consistency(bare, lambda i: pngs[i], range(6)).reason


def test_large_frames_are_compared_on_a_pixel_grid_with_the_same_verdict():
    """Past MAX_SAMPLES pixels a frame is sampled on a regular grid: the cost
    per pair is bounded and the figures stay those of the full comparison."""
    from bridge.temporal.score import sample_stride

    assert sample_stride(256, 256, 256 * 256) == 1 and sample_stride(2048, 2048, 256 * 256) == 8
    shot = sample_shot(frames=6, width=192, height=108)
    rng = np.random.default_rng(3)
    for frames in ([world_texture(f) for f in shot.frames], [rng.random((108, 192, 3)) for _ in shot.frames]):
        full = score_shot(shot, frames, max_samples=10**9)
        grid = score_shot(shot, frames, max_samples=2000)       # every 4th pixel
        assert grid.pairs[0].valid_pixels < full.pairs[0].valid_pixels / 10
        assert grid.gap1 == pytest.approx(full.gap1, rel=0.15, abs=0.002)
        assert grid.valid_fraction == pytest.approx(full.valid_fraction, abs=0.03)


def test_every_completed_job_reports_its_score_through_the_bridge(start_bridge, small_shot, tmp_path):
    """The guides backend's frames (the conditioning itself) scored against
    the shot's engine flow: in the report, its JSON, the ledger and OTIO."""
    from bridge.client import BridgeClient
    from bridge.client.otio_export import read_version, version_metadata
    from bridge.jobs.model import JobState
    from bridge.shot.request import GenerationSettings

    bridge = start_bridge()
    with BridgeClient(bridge.address) as client:
        job = client.submit(small_shot, GenerationSettings(backend="guides")).job
        client.download(job.job_id, tmp_path / "out")
        report = client.report(job.job_id)
    assert report.state is JobState.COMPLETED
    t = report.temporal
    assert t.computed and t.method == "masked-warp-l1" and t.window == 8
    assert t.gap1 is not None and 0 <= t.gap1 < 0.2 and len(t.pairs) == small_shot.frame_count - 1
    assert t.valid_fraction is not None and t.valid_fraction > 0.5
    # the guides frames are drawn from the depth pass: their edges sit on its discontinuities
    assert t.control_adherence is not None and 0.3 < t.control_adherence <= 1.0
    ledger_report = bridge.manager.executor.ledger.report(job.job_id)
    assert ledger_report is not None and ledger_report.temporal == t
    otio = version_metadata(read_version(tmp_path / "out"))
    assert otio["temporal"]["gap1"] == t.gap1 and otio["temporal"]["computed"] is True


def test_the_live_score_equals_the_score_of_the_stored_frames():
    """LiveConsistency, fed frame by frame as a backend makes them, gives exactly the figures that scoring
    the stored (lossless PNG) frames afterwards gives; a frame out of order or a missing one abandons it
    (the report then scores the stored frames)."""
    from bridge.temporal.report import LiveConsistency, consistency, consistency_of

    shot, frames = _translating(n=6)
    u8 = [(np.clip(f, 0, 1) * 255).round().astype(np.uint8) for f in frames]
    pngs = [_png(f) for f in frames]
    stored = consistency(shot, lambda i: pngs[i], range(6))
    live = LiveConsistency(shot, depth=2)
    for i, rgb in enumerate(u8):
        live.feed(i, rgb)
    assert live.finish() == stored == consistency_of(shot, u8)
    skipped = LiveConsistency(shot)
    for i in (0, 2, 1, 3, 4, 5):
        skipped.feed(i, u8[i])
    assert skipped.finish() is None
    short = LiveConsistency(shot)
    for i in range(4):
        short.feed(i, u8[i])
    assert short.finish() is None          # two frames never came (a cancel, a stop)


def test_a_bridge_job_is_scored_while_it_runs_and_a_resumed_one_from_its_stored_frames(
        start_bridge, small_shot, monkeypatch):
    """A fresh attempt's score comes from the live scorer (the stored frames are not read back for it);
    the report's figures are those of the stored frames either way."""
    from bridge.client import BridgeClient
    from bridge.shot.request import GenerationSettings
    from bridge.temporal import report as temporal_report

    after = []
    real = temporal_report.consistency
    monkeypatch.setattr(temporal_report, "consistency", lambda *a: after.append(1) or real(*a))
    bridge = start_bridge()
    with BridgeClient(bridge.address) as client:
        job = client.submit(small_shot, GenerationSettings(backend="guides")).job
        list(client.watch(job.job_id))
        report = client.report(job.job_id)
    assert report.temporal.computed and after == [], "the live score was not used"
    store = bridge.manager.store
    frames = {f.index: f for f in store.frames(job.job_id)}
    recomputed = real(small_shot, lambda i: store.read_frame(job.job_id, frames[i]), sorted(frames))
    assert report.temporal == recomputed
    assert bridge.manager.executor._live_scores == {}
