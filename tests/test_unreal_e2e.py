"""End to end: the plugin's glue (against tests/fakes/unreal.py, a RECORDING
FAKE of ``unreal``) drives a REAL bridge on loopback (guides backend): read
the sequence, "render" passes (the fake writes MRQ-layout EXRs), decode,
submit, watch on a worker thread, import the frames as a media track. The
fake shows wiring; the bridge, client, shot and passes are real."""

import math
import threading
import time

import numpy as np

from tests.fakes import unreal_scene

fake = unreal_scene.install()
unreal_scene.reload_plugin()
from bridge.client import BridgeClient  # noqa: E402
from bridge.jobs.model import JobState  # noqa: E402
from bridge.shot import coco  # noqa: E402
from bridge.shot.camera import static_forward_flow  # noqa: E402
from greenlight_unreal import previz  # noqa: E402
from greenlight_unreal.mrq_exr import MotionEncoding  # noqa: E402
from greenlight_unreal.settings import BridgeSettings, PrevizSettings  # noqa: E402

W, H = 64, 36


def _run_until_done(run, timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    while not run.done and time.monotonic() < deadline:
        fake.tick()
        time.sleep(0.005)
    assert run.done, f"run stuck in {run.state}"


def test_sequence_to_media_track_through_a_real_bridge(start_bridge, tmp_path):
    fake.reset()
    seq = unreal_scene.build_sequence(fake, frames=6, start=10)
    fake.STATE.render_hook = unreal_scene.render_hook(W, H, MotionEncoding())
    bridge = start_bridge()
    settings = PrevizSettings(project="demo", width=W, height=H, work_folder=str(tmp_path / "work"),
                              bridge=BridgeSettings(address=bridge.address))
    finished = []
    run = previz.PrevizRun(settings, on_done=finished.append).start()
    assert run.state == "rendering"                   # MRQ is asynchronous: nothing decoded yet
    _run_until_done(run)
    assert run.state == "completed", run.result.message
    assert finished == [run]

    # the shot that went over the wire
    shot = run.shot
    assert shot.frame_count == 6 and shot.frame_start == 10 and (shot.fps.numerator, shot.fps.denominator) == (24, 1)
    assert shot.tags.shot == "SEQ_Truck" and shot.tags.version == 1
    assert set(shot.passes) == {"depth", "motion", "pose"}
    cams = [f.camera for f in shot.frames]
    assert np.allclose(cams[2].position_m, [0.0, -0.48, 1.5])           # frame 12: Unreal (0, 48, 150) cm
    truth = static_forward_flow(cams[1], cams[2], shot.frames[1].depth_m)
    assert np.allclose(shot.frames[1].motion_px.astype(float)[5:-2, 2:-2], truth[5:-2, 2:-2], atol=0.02)
    pose = shot.frames[0].poses[0]
    assert pose.name == "Manny" and pose.visibility[coco.INDEX["neck"]] == coco.VISIBLE

    # frames on disk, imported as a media track over the shot's range, tagged
    frames = sorted((tmp_path / "work" / "SEQ_Truck" / "v001" / "frames").glob("frame_*.png"))
    assert len(frames) == 6
    assert fake.calls("ImgMediaSource.set_sequence_path") == [(run.result.frames_folder,)]
    track = seq.find_tracks_by_exact_type(fake.MovieSceneMediaTrack)[0]
    assert track.get_display_name() == "Greenlight SEQ_Truck v001"
    assert track.get_sections()[0].range == (10, 16)
    tags = fake.STATE.metadata["/Game/Greenlight/SEQ_Truck_v001.SEQ_Truck_v001"]
    assert tags["Greenlight.job_id"] == run.result.job_id != ""
    assert float(tags["Greenlight.energy_wh"]) == run.result.energy_wh and "Greenlight.co2e_g" in tags
    with BridgeClient(bridge.address) as client:
        assert client.job(run.result.job_id).state is JobState.COMPLETED
        report = client.report(run.result.job_id)
    # the run shows the report's totals, which are the exact sums of the frames and the attempt's rest
    assert run.result.energy_wh == report.energy.energy_wh > 0
    assert run.result.co2e_g == report.energy.co2e_g_location
    assert report.energy.energy_wh == math.fsum(
        [*(f.energy_wh for f in report.per_frame), *(a.unattributed_wh for a in report.attempts)])
    assert [f.index for f in report.per_frame] == list(range(6))

    # every unreal.* call ran on the game (main) thread, none on the worker
    assert fake.THREADS == {threading.main_thread().name}
    assert not fake.STATE.tick_callbacks                 # the pump unregistered itself


def test_cancel_during_generation(start_bridge, paced, tmp_path):
    fake.reset()
    unreal_scene.build_sequence(fake, frames=6, start=0, with_character=False)
    fake.STATE.render_hook = unreal_scene.render_hook(W, H, MotionEncoding())
    bridge = start_bridge(backends={"paced": paced})
    from bridge.shot.request import GenerationSettings

    settings = PrevizSettings(width=W, height=H, passes=("depth", "motion"), work_folder=str(tmp_path),
                              bridge=BridgeSettings(address=bridge.address),
                              generation=GenerationSettings(backend="paced"))
    run = previz.PrevizRun(settings, interactive=False).start()
    deadline = time.monotonic() + 10
    while run.state != "generating" or not run.result.job_id:
        fake.tick()
        time.sleep(0.005)
        assert time.monotonic() < deadline
    run.cancel()
    _run_until_done(run)
    assert run.state == "cancelled"
    assert not fake.calls("AssetTools.create_asset")      # nothing imported


def test_headless_script_writes_a_report_and_quits(start_bridge, tmp_path):
    import json

    fake.reset()
    seq = unreal_scene.build_sequence(fake, frames=4, start=0, with_character=False)
    fake.STATE.assets["/Game/Shots/SEQ_Truck"] = seq
    fake.STATE.render_hook = unreal_scene.render_hook(W, H, MotionEncoding())
    bridge = start_bridge()
    from greenlight_unreal import headless

    report = tmp_path / "out" / "previz.json"
    run = headless.main(["--sequence", "/Game/Shots/SEQ_Truck", "--bridge", bridge.address,
                         "--resolution", f"{W}x{H}", "--passes", "depth,motion", "--work-folder", str(tmp_path),
                         "--report", str(report)])
    _run_until_done(run)
    data = json.loads(report.read_text())
    assert data["state"] == "completed" and data["job_id"] and data["imported"]["range"] == [0, 4]
    assert fake.STATE.quit is True
    assert fake.calls("EditorAssetLibrary.save_loaded_asset")[-1] == (seq.get_path_name(),)
