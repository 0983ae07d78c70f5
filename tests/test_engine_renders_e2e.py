"""The four engine-rendered sample shots, end to end: real Blender (bpy in a
child Python) builds each scene in code and extracts its passes with the
add-on's own code; each shot then runs through a real bridge on loopback
with the guides backend and with the tiny random-weight AnimateDiff model.

Per-shot checks compare the passes with analytic expectations: a static
scene's motion pass equals the flow predicted from depth + camera path, the
pan's horizontal flow is at least f_px x yaw step, the crane rises and zooms
by the keyed amounts, the dolly's figure gets nearer while its neck pixel
unprojects to the same point in the room, the dialogue has two characters.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import engine_renders  # noqa: E402
from bridge.client import BridgeClient, EventKind  # noqa: E402
from bridge.client.animatic import probe_frame_count, write_mp4  # noqa: E402
from bridge.jobs.images import read_png_metadata  # noqa: E402
from bridge.jobs.model import JobReport, JobState, Tags  # noqa: E402
from bridge.proto.greenlight.v1 import shot_pb2  # noqa: E402
from bridge.shot import coco  # noqa: E402
from bridge.shot.camera import focal_length_px, static_forward_flow, unproject_depth  # noqa: E402
from bridge.shot.files import load_shot  # noqa: E402
from bridge.shot.request import ControlSettings, GenerationSettings  # noqa: E402
from bridge.shot.wire import shot_from_pb  # noqa: E402
from engine_renders import corridor_pan, crane_zoom, dialogue_ots, dolly_character  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# 96x56: small, 16:9-ish, and a multiple of 8 as the diffusion latent space needs.
W, H, F = 96, 56, 12
NAMES = tuple(engine_renders.SAMPLES)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("engine-renders-cache")


@pytest.fixture(scope="module")
def rendered(cache_dir, tmp_path_factory):
    """All four samples rendered once, cold cache: name -> RenderResult."""
    out = tmp_path_factory.mktemp("samples")
    return {name: engine_renders.render(name, out, W, H, F, cache_dir=cache_dir) for name in NAMES}


@pytest.fixture(scope="module")
def shots(rendered):
    return {name: load_shot(r.path) for name, r in rendered.items()}


@pytest.fixture(scope="module")
def tiny_profile(tmp_path_factory):
    from bridge.backends.tiny import build_tiny_animatediff

    profile = build_tiny_animatediff(tmp_path_factory.mktemp("tiny-model"))
    with pytest.MonkeyPatch.context() as mp:   # jobs name it ("tiny"), from $GREENLIGHT_PROFILES
        mp.setenv("GREENLIGHT_PROFILES", str(profile.parent))
        yield profile


# ---------------------------------------------------------------- rendering and the cache
def test_each_sample_renders_in_blender_with_the_addon_extraction(rendered, shots):
    for name in NAMES:
        r, shot = rendered[name], shots[name]
        assert not r.cached and r.path.name == f"{name}.glshot"
        assert r.info["bpy"][:1].isdigit() and r.timings["extract"] > 0
        assert (shot.frame_count, shot.width, shot.height, shot.frame_start) == (F, W, H, 1)
        assert (shot.fps.numerator, shot.fps.denominator) == (24, 1)
        assert shot.tags.project == "samples" and shot.tags.shot == name
        assert shot.source.startswith(f"blender {r.info['bpy']}: ") and name in shot.source
        # the add-on's method ids: extraction is the add-on's, not a copy
        assert shot.pass_methods["camera"] == "blender-evaluated-camera"
        assert shot.pass_methods["depth"] == "cycles-1spp-depth-pass"
        assert shot.pass_methods["motion"] == "cycles-1spp-vector-pass"
        assert {"depth", "motion"} <= set(shot.passes)
        for f in shot.frames:
            assert f.depth_m.shape == (H, W) and f.motion_px.shape == (H, W, 2)
            assert np.isfinite(f.depth_m).mean() > 0.5, f"{name} frame {f.index}: mostly background"
        characters = {"dolly_character": 1, "corridor_pan": 0, "dialogue_ots": 2, "crane_zoom": 1}[name]
        assert len(r.info["rigs"]) == characters
        if characters:
            assert shot.pass_methods["pose"] == "rig-joints-projected:metarig"
            # Blender's own Human metarig (Rigify ships with the bpy module here)
            assert set(r.info["rigs"].values()) == {"rigify human metarig"}
        else:
            assert "pose" not in shot.pass_methods


def test_cache_is_keyed_by_name_size_frames_and_code(rendered, cache_dir, tmp_path):
    first = rendered["corridor_pan"]
    t0 = time.perf_counter()
    again = engine_renders.render("corridor_pan", tmp_path / "again", W, H, F, cache_dir=cache_dir)
    assert again.cached and time.perf_counter() - t0 < 1.0
    assert again.key == first.key and again.path.read_bytes() == first.path.read_bytes()
    assert first.key.startswith(f"corridor_pan-{W}x{H}-{F}f-") and first.key.endswith(engine_renders.code_hash())
    assert engine_renders.cache_key("corridor_pan", W, H, F + 1) != first.key
    assert engine_renders.cache_key("crane_zoom", W, H, F) != first.key
    assert sorted(p.name for p in cache_dir.glob("*.glshot")) == sorted(r.key + ".glshot" for r in rendered.values())
    assert not [p for p in cache_dir.iterdir() if p.name.startswith(".")], "a temporary render folder was left"


def test_cli_writes_the_shot_from_the_cache(rendered, cache_dir, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "engine_renders", "dialogue_ots", str(tmp_path), "--width", str(W),
                           "--height", str(H), "--frames", str(F), "--cache-dir", str(cache_dir)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "from the cache" in proc.stdout
    assert (tmp_path / "dialogue_ots.glshot").read_bytes() == rendered["dialogue_ots"].path.read_bytes()
    bad = subprocess.run([sys.executable, "-m", "engine_renders", "dialogue_ots", str(tmp_path), "--frames", "2",
                          "--cache-dir", str(cache_dir)], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and "frames must be" in bad.stderr


def test_demo_shot_is_the_dolly(cache_dir, tmp_path, rendered):
    path = engine_renders.demo_shot(tmp_path, width=W, height=H, frames=F, cache_dir=cache_dir)
    assert path == tmp_path / "dolly_character.glshot"
    assert path.read_bytes() == rendered["dolly_character"].path.read_bytes()


def test_demo_shot_without_bpy_raises_a_clear_error(monkeypatch, tmp_path):
    """Where bpy is missing the demo gets BlenderUnavailableError (a
    GreenlightError it catches to fall back to the synthetic shot)."""
    monkeypatch.setattr(engine_renders, "bpy_available", lambda: False)
    with pytest.raises(engine_renders.BlenderUnavailableError, match=r"greenlight\[blender\]"):
        engine_renders.demo_shot(tmp_path, cache_dir=tmp_path / "cache")
    with pytest.raises(engine_renders.BlenderUnavailableError):
        engine_renders.render_sample("crane_zoom", tmp_path, 32, 32, 3, cache_dir=tmp_path / "cache")
    assert not list(tmp_path.rglob("*.glshot"))


def test_fallback_armature_maps_like_the_metarig(tmp_path):
    """Without Rigify the character is built in code with metarig bone names;
    the add-on must map it to all 18 COCO keypoints, with a body attached."""
    code = (
        "import json, bpy\n"
        "from engine_renders import host\n"
        "from blender_addon import host as addon\n"
        "scene = host.new_scene_in_blender('t', 2, 32, 32)\n"
        "fig = host.add_character_in_blender(scene, 'Fig', use_metarig=False)\n"
        "rig = dict((o.name, r) for o, r in addon.characters_in_blender(scene))['Fig']\n"
        "parts = [o.parent_bone for o in scene.objects if o.parent == fig]\n"
        "print('RESULT ' + json.dumps({'mapping': rig.mapping, 'present': sum(rig.present), 'parts': parts,\n"
        "                              'source': fig['greenlight_rig_source']}))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
                          capture_output=True, text=True, timeout=120)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line, proc.stderr[-2000:]
    r = json.loads(line[len("RESULT "):])
    assert r["mapping"] == "metarig" and r["present"] == 18 and "built in code" in r["source"]
    assert {"spine.006", "forearm.R", "shin.L", "spine"} <= set(r["parts"])


# ---------------------------------------------------------------- analytic checks per shot
def _flow_error(shot):
    """Median and 90th-percentile |motion pass - flow predicted from depth and the camera path| (px)."""
    errs = []
    for a, b in zip(shot.frames[:-1], shot.frames[1:]):
        expected = static_forward_flow(a.camera, b.camera, a.depth_m)
        valid = np.isfinite(a.depth_m)
        errs.append(np.linalg.norm(a.motion_px.astype(np.float64) - expected, axis=-1)[valid])
    errs = np.concatenate(errs)
    return float(np.median(errs)), float(np.percentile(errs, 90))


def _yaw(camera) -> float:
    forward = -np.asarray(camera.world_matrix)[:3, 2]
    return float(np.degrees(np.arctan2(forward[1], forward[0])))


def test_corridor_pan_has_large_horizontal_flow(shots):
    shot = shots["corridor_pan"]
    yaws = np.array([_yaw(f.camera) for f in shot.frames])
    steps = np.diff(yaws)
    assert corridor_pan.pan_deg(F) == corridor_pan.PAN_DEG
    expected_step = -corridor_pan.PAN_DEG / (F - 1)          # turning right: yaw falls
    assert yaws[0] == pytest.approx(corridor_pan.START_YAW_DEG, abs=0.5)
    assert yaws[-1] == pytest.approx(corridor_pan.end_yaw_deg(F), abs=0.5)
    np.testing.assert_allclose(steps, expected_step, atol=0.5)
    f_px = focal_length_px(shot.frames[0].camera, W, H)
    for f in shot.frames[:-1]:
        dx = f.motion_px[..., 0].astype(np.float64)
        # a pure yaw moves every pixel at least f * dtheta; the truck adds parallax
        assert np.abs(dx).mean() > 0.9 * f_px * np.radians(abs(expected_step)), f.index
        assert np.abs(dx).mean() > 0.08 * W
        assert dx.mean() < 0, "panning right: the corridor moves left in the image"
    assert np.abs(shot.frames[-1].motion_px).max() < 0.01, "the camera holds after the last frame"
    median, p90 = _flow_error(shot)
    assert median < 0.05 and p90 < 0.5, (median, p90)


def test_crane_zoom_rises_and_zooms(shots):
    shot = shots["crane_zoom"]
    lens = np.array([f.camera.focal_length_mm for f in shot.frames])
    z = np.array([f.camera.position_m[2] for f in shot.frames])
    assert lens[0] == pytest.approx(crane_zoom.LENS_START_MM) and lens[-1] == pytest.approx(crane_zoom.LENS_END_MM)
    np.testing.assert_allclose(np.diff(lens), (crane_zoom.LENS_END_MM - crane_zoom.LENS_START_MM) / (F - 1), rtol=1e-4)
    assert z[0] == pytest.approx(crane_zoom.EYE_START[2], abs=1e-4)
    assert z[-1] == pytest.approx(crane_zoom.EYE_END[2], abs=1e-4)
    assert np.all(np.diff(z) > 0.3)
    pitch = [float(-np.asarray(f.camera.world_matrix)[2, 2]) for f in shot.frames]   # forward.z
    assert pitch[-1] < pitch[0] - 0.4, "the camera tilts down as it rises"
    # the vector pass follows the zoom too: equal to depth + camera reprojection
    median, p90 = _flow_error(shot)
    assert median < 0.05 and p90 < 0.5, (median, p90)
    neck = coco.INDEX["neck"]
    assert all(f.poses[0].visibility[neck] == coco.VISIBLE for f in shot.frames)


def _neck_world(frame, pose):
    x, y = pose.keypoints_px[coco.INDEX["neck"]]
    return float(frame.depth_m[int(y), int(x)]), unproject_depth(frame.camera, np.nan_to_num(
        frame.depth_m, posinf=0.0))[int(y), int(x)]


def test_dolly_figure_gets_nearer(shots):
    shot = shots["dolly_character"]
    depths, points = [], []
    for f in shot.frames:
        (pose,) = f.poses
        assert pose.name == dolly_character.FIGURE
        assert pose.visibility[coco.INDEX["neck"]] == coco.VISIBLE
        d, p = _neck_world(f, pose)
        depths.append(d)
        points.append(p)
    depths = np.array(depths)
    assert np.all(np.diff(depths) < 0), depths
    start = dolly_character.LOOK_AT[1] - dolly_character.CAMERA_START[1]
    end = dolly_character.LOOK_AT[1] - dolly_character.CAMERA_END[1]
    assert depths[0] == pytest.approx(start, abs=0.5) and depths[-1] == pytest.approx(end, abs=0.5)
    # the neck pixel unprojects to the figure's neck (0, 0.01, 1.66) on every frame: depth, camera and pose agree
    points = np.array(points)
    assert np.all(np.linalg.norm(points - [0.0, 0.011, 1.658], axis=1) < 0.3), points
    # the figure waves: its right wrist swings ~0.16 m sideways relative to the neck
    # (forearm 0.26 m turned from 24 deg outward to 11 deg inward), measured in metres at the neck's depth
    f_px = focal_length_px(shot.frames[0].camera, W, H)
    wrist, neck = coco.INDEX["r_wrist"], coco.INDEX["neck"]
    swing_m = np.array([(f.poses[0].keypoints_px[wrist][0] - f.poses[0].keypoints_px[neck][0]) * d / f_px
                        for f, d in zip(shot.frames, depths)])
    assert swing_m.max() - swing_m.min() == pytest.approx(0.16, abs=0.06), swing_m


def test_dialogue_has_two_characters(shots):
    shot = shots["dialogue_ots"]
    for f in shot.frames:
        poses = {p.name: p for p in f.poses}
        assert set(poses) == {dialogue_ots.LISTENER, dialogue_ots.SPEAKER}
        speaker, listener = poses[dialogue_ots.SPEAKER], poses[dialogue_ots.LISTENER]
        assert (speaker.visibility == coco.VISIBLE).sum() >= 12
        assert speaker.visibility[coco.INDEX["nose"]] == coco.VISIBLE
        # seen from behind: the listener's nose is on the far side of its head
        assert listener.visibility[coco.INDEX["nose"]] != coco.VISIBLE
        assert (listener.visibility > 0).sum() >= 3
        # over the listener's right shoulder: the listener is left of the speaker, and nearer
        assert listener.keypoints_px[coco.INDEX["neck"]][0] < speaker.keypoints_px[coco.INDEX["neck"]][0]
        d_listener, _ = _neck_world(f, listener)
        d_speaker, _ = _neck_world(f, speaker)
        assert d_listener < d_speaker


# ---------------------------------------------------------------- end to end through a real bridge
def _generation(backend: str, tiny_profile=None, has_pose: bool = True) -> GenerationSettings:
    if backend == "guides":
        return GenerationSettings(backend="guides")
    # pose control only where the shot has characters (the corridor has none)
    controls = (ControlSettings("depth", strength=1.0), ControlSettings("pose", enabled=has_pose, strength=1.0))
    return GenerationSettings(backend="animatediff", prompt="previz", seed=7, steps=2, controls=controls,
                              model_profile=tiny_profile.stem)


@pytest.mark.parametrize("backend", ["guides", pytest.param("tiny", marks=pytest.mark.diffusion)])
@pytest.mark.parametrize("name", NAMES)
def test_end_to_end_through_the_bridge(name, backend, shots, start_bridge, tmp_path, request):
    profile = request.getfixturevalue("tiny_profile") if backend == "tiny" else None
    shot = shots[name]
    bridge = start_bridge()
    out = tmp_path / "frames"
    with BridgeClient(bridge.address) as client:
        accepted = client.submit(shot, _generation(backend, profile, has_pose="pose" in shot.passes))
        job_id = accepted.job.job_id
        assert accepted.job.frame_count == F
        events = []
        final = client.download(job_id, out, on_event=events.append)
    assert final.kind is EventKind.COMPLETED, final.message
    # the bridge kept the shot as extracted, pass methods included
    stored = shot_pb2.Shot()
    stored.ParseFromString(bridge.manager.store.shot_path(job_id).read_bytes())
    assert dict(shot_from_pb(stored).pass_methods) == dict(shot.pass_methods)
    # frames: all of them, once, in order, with their provenance in the PNG
    frame_events = [e for e in events if e.kind is EventKind.FRAME]
    assert [e.frame.index for e in frame_events] == list(range(F))
    files = sorted(out.glob("frame_*.png"))
    assert [p.name for p in files] == [f"frame_{i:05d}.png" for i in range(F)]
    assert [Path(e.frame.path) for e in frame_events] == files      # each event names the file it wrote
    from PIL import Image

    for i, (path, event) in enumerate(zip(files, frame_events, strict=True)):
        meta = read_png_metadata(path.read_bytes())
        assert meta["job_id"] == job_id and int(meta["frame"]) == i
        assert meta["energy_method"] == "estimated" and float(meta["energy_wh"]) >= 0
        # the figures in the file are the ones streamed: fixed when the frame was made
        assert float(meta["energy_wh"]) == pytest.approx(event.frame.energy_wh, rel=1e-8, abs=1e-300)
        assert float(meta["co2e_g_location"]) == pytest.approx(event.frame.co2e_g_location, rel=1e-8, abs=1e-300)
        assert event.frame.measured is False
        with Image.open(path) as img:
            assert img.size == (W, H)
    if backend == "guides":   # the guides are the conditioning itself: not blank
        with Image.open(files[0]) as img:
            assert np.asarray(img).std() > 5
    # the report adds up
    report = final.report
    assert report.frames == F and report.state is JobState.COMPLETED and report.job_id == job_id
    assert report.backend == ("guides" if backend == "guides" else "animatediff")
    assert report.tags == Tags(project="samples", shot=name, version=1)
    assert [p.index for p in report.per_frame] == list(range(F))
    # per-frame figures are exactly the streamed ones; the total is their exact sum plus the attempt's rest
    assert [(p.energy_wh, p.co2e_g_location) for p in report.per_frame] == [
        (e.frame.energy_wh, e.frame.co2e_g_location) for e in frame_events]
    assert report.frames_energy_wh == math.fsum(p.energy_wh for p in report.per_frame)
    assert report.energy.energy_wh == math.fsum(
        [*(p.energy_wh for p in report.per_frame), *(a.unattributed_wh for a in report.attempts)])
    assert report.energy.co2e_g_location == math.fsum(
        [*(p.co2e_g_location for p in report.per_frame), *(a.unattributed_co2e_g_location for a in report.attempts)])
    assert report.energy.energy_wh > 0 and report.energy.measured is False
    assert report.functional_units == pytest.approx(F / 24)
    assert report.sci_unit == "gCO2e per second of animatic"
    assert report.sci == pytest.approx((report.energy.co2e_g_location + report.embodied_co2e_g) / (F / 24))
    assert JobReport.from_dict(json.loads((out / "report.json").read_text())) == report
    mp4 = write_mp4(files, shot.fps.fraction, out / "animatic.mp4")
    assert probe_frame_count(mp4) == F
