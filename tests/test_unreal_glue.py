"""The plugin's Unreal-side modules against tests/fakes/unreal.py, a
RECORDING FAKE of the ``unreal`` module: these tests check wiring (which
calls are made, with what values), not engine behaviour."""

import threading

import numpy as np
import pytest

from tests.fakes import unreal_scene

fake = unreal_scene.install()
unreal_scene.reload_plugin()
from greenlight_unreal import host, mrq_exr, worker  # noqa: E402
from greenlight_unreal.settings import PrevizSettings  # noqa: E402


@pytest.fixture(autouse=True)
def fresh_fake():
    fake.reset()
    yield fake


def test_menus_register_with_python_commands():
    touched = host.register_menus_in_unreal()
    assert touched == ["LevelEditor.MainMenu.Greenlight", "Sequencer.MainToolBar"]
    sub = fake.STATE.menus["LevelEditor.MainMenu.Greenlight"]
    labels = [e.label for _, e in sub.entries]
    assert labels == ["Generate previz", "Cancel previz"]
    kind, command = sub.entries[0][1].command
    assert kind == "PYTHON" and "greenlight_unreal.previz" in command and "start_from_menu" in command
    compile(command, "<menu>", "exec")
    toolbar = fake.STATE.menus["Sequencer.MainToolBar"].entries
    assert toolbar[0][1].type == "TOOL_BAR_BUTTON"
    assert fake.calls("ToolMenus.refresh_all_widgets")


def test_init_unreal_registers_menus_and_survives_errors():
    code = (unreal_scene.PLUGIN_PY / "init_unreal.py").read_text()
    exec(compile(code, "init_unreal.py", "exec"), {"__name__": "init_unreal"})
    assert "LevelEditor.MainMenu.Greenlight" in fake.STATE.menus
    fake.STATE.menus.clear()          # find_menu returns None -> AttributeError-free path
    fake.ToolMenus.refresh_all_widgets = lambda self: (_ for _ in ()).throw(RuntimeError("boom"))
    try:
        exec(compile(code, "init_unreal.py", "exec"), {"__name__": "init_unreal"})
    finally:
        del fake.ToolMenus.refresh_all_widgets
    assert any("could not register menus" in m for lvl, m in fake.STATE.logs if lvl == "error")


def test_read_sequence_evaluates_every_frame():
    seq = unreal_scene.build_sequence(fake, frames=5, start=100)
    sample = host.read_sequence_in_unreal(seq, PrevizSettings(), bones_needed=("head", "hand_l"))
    assert sample.display_rate == (24, 1) and (sample.start_frame, sample.end_frame) == (100, 105)
    times = [a[0] for a in fake.calls("LevelSequenceEditorBlueprintLibrary.set_current_time")]
    assert times == [100, 101, 102, 103, 104, 100]      # evaluate each frame, then restore the start
    assert [c.location_cm[1] for c in sample.cameras] == [400.0, 404.0, 408.0, 412.0, 416.0]
    assert sample.cameras[0].sensor_height_mm == 20.25 and sample.cameras[0].focus_distance_cm == 800.0
    assert set(sample.characters[0][0].bones) == {"head", "hand_l"}
    assert "pelvis" in sample.skeleton_bones["Manny"]


def test_read_sequence_without_camera_cut_is_refused():
    seq = fake.LevelSequence("Empty")
    with pytest.raises(LookupError, match="no camera cut track"):
        host.read_sequence_in_unreal(seq, PrevizSettings())


def test_render_job_is_configured_for_32bit_depth_and_motion(tmp_path):
    seq = unreal_scene.build_sequence(fake)
    finished = []
    host.render_passes_in_unreal(seq, tmp_path, PrevizSettings(width=320, height=180), finished.append)
    job = fake.STATE.queue.get_jobs()[0]
    cfg = {cls.__name__: s for cls, s in job.get_configuration().settings.items()}
    out = cfg["MoviePipelineOutputSetting"]
    assert out.output_directory.path == str(tmp_path)
    assert (out.output_resolution.x, out.output_resolution.y) == (320, 180)
    deferred = cfg["MoviePipelineDeferredPassBase"]
    assert deferred.disable_multisample_effects is True
    mats = [p.material.get_path_name() for p in deferred.additional_post_process_materials]
    assert mats == [mrq_exr.DEPTH_MATERIAL, mrq_exr.MOTION_MATERIAL]
    assert all(p.enabled and p.high_precision_output for p in deferred.additional_post_process_materials)
    assert cfg["MoviePipelineImageSequenceOutput_EXR"].multilayer is True
    assert job.sequence.path == seq.get_path_name()
    fake.STATE.render_hook = lambda job: True
    fake.tick()
    assert finished == [True]


def test_import_creates_media_source_and_track_with_tags(tmp_path):
    seq = unreal_scene.build_sequence(fake, frames=6, start=10)
    made = host.import_frames_in_unreal(seq, tmp_path, "SEQ_Truck", 3, 10, 16, (24, 1),
                                        {"job_id": "j-1", "energy_wh": "0.5"}, "/Game/Greenlight")
    assert made == {"asset": "/Game/Greenlight/SEQ_Truck_v003", "track": "Greenlight SEQ_Truck v003", "range": (10, 16)}
    assert fake.calls("ImgMediaSource.set_sequence_path") == [(str(tmp_path),)]
    track = seq.find_tracks_by_exact_type(fake.MovieSceneMediaTrack)[0]
    section = track.get_sections()[0]
    assert section.range == (10, 16)
    assert section.media_source is fake.STATE.assets["/Game/Greenlight/SEQ_Truck_v003"]
    assert fake.STATE.metadata["/Game/Greenlight/SEQ_Truck_v003.SEQ_Truck_v003"] == {
        "Greenlight.job_id": "j-1", "Greenlight.energy_wh": "0.5"}
    assert host.next_version_in_unreal("/Game/Greenlight", "SEQ_Truck") == 4


def test_pump_runs_work_on_the_tick_and_stops():
    # a generous per-tick budget: logging the failure below's traceback can take tens of ms on a busy machine
    pump = worker.GameThreadPump(host.register_tick_in_unreal, host.unregister_tick_in_unreal, budget_s=5.0)
    pump.start()
    seen = []
    t = threading.Thread(target=lambda: [pump.call_soon(lambda i=i: seen.append((i, threading.current_thread().name)))
                                         for i in range(3)])
    t.start()
    t.join()
    assert seen == []                            # nothing runs until the game thread ticks
    fake.tick()
    assert [i for i, _ in seen] == [0, 1, 2] and {n for _, n in seen} == {threading.main_thread().name}
    pump.call_soon(lambda: 1 / 0)                # a failing update is logged, the pump survives
    pump.call_soon(lambda: seen.append("after"))
    fake.tick()
    assert seen[-1] == "after"
    pump.stop()
    assert not fake.STATE.tick_callbacks and not pump.running


def test_pump_spends_at_most_its_budget_per_tick():
    pump = worker.GameThreadPump(host.register_tick_in_unreal, host.unregister_tick_in_unreal, budget_s=0.0)
    pump.start()
    seen = []
    for i in range(3):
        pump.call_soon(seen.append, i)
    fake.tick()
    assert seen == [0]                           # the budget is spent after one update: the rest wait, in order
    fake.tick()
    fake.tick()
    assert seen == [0, 1, 2]
    pump.stop()


def test_passes_are_decoded_from_the_fake_render(tmp_path):
    seq = unreal_scene.build_sequence(fake, frames=3, start=0)
    fake.STATE.render_hook = unreal_scene.render_hook(32, 18, mrq_exr.MotionEncoding())
    host.render_passes_in_unreal(seq, tmp_path, PrevizSettings(width=32, height=18), lambda ok: None)
    fake.tick()
    depths, flows = mrq_exr.load_passes(tmp_path, "SEQ_Truck", [0, 1, 2])
    assert np.isinf(depths[0][: unreal_scene.SKY_ROWS]).all() and np.allclose(depths[0][5:], 8.0)
    assert len(flows) == 3
