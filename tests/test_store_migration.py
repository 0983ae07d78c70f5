"""A data folder written by greenlight 0.1 (unversioned schema, untyped
report, settings from another version) opens in this one: the store and the
ledger migrate in place, recovery re-queues what was running, the jobs run
to the end, and old reports read back as ``JobReport``."""

import json
import sqlite3
import time
from pathlib import Path

import pytest

from bridge.client import BridgeClient
from bridge.energy.ledger import Ledger
from bridge.errors import PreconditionError
from bridge.jobs import store as store_module
from bridge.jobs.images import encode_png
from bridge.jobs.model import AttemptOutcome, JobReport, JobState
from bridge.jobs.store import JobStore
from bridge.shot.synthetic import sample_shot
from bridge.shot.wire import shot_to_pb

FIXTURES = Path(__file__).parent / "fixtures" / "schema_v0"
FRAMES = 3

# What greenlight 0.1's executor wrote as report.json (an untyped dict; "attempts" was a count).
OLD_REPORT = {
    "job_id": "c-done", "tags": {"project": "p", "shot": "s", "version": 3}, "backend": "guides",
    "generation": {"backend": "guides", "seed": 5}, "state": "completed", "frames": 3, "fps": [24, 1],
    "wall_s": 1.5, "attempts": 1,
    "energy": {"energy_wh": 0.003, "measured": False, "meter": "cpu-time-model", "co2e_g_location": 0.0015,
               "co2e_g_market": None},
    "site": "local", "grid_region": "WORLD", "it_energy_wh": 0.003, "pue": 1.0, "pue_source": "x",
    "facility_energy_wh": 0.003, "wue_l_per_kwh": 0.0, "wue_source": "y", "water_l": 0.0,
    "intensity_g_per_kwh": 480.0, "intensity_source": "Ember 2024", "market_g_per_kwh": None,
    "market_source": "none", "embodied_co2e_g": 0.01, "embodied_source": "z", "reserved_s": 1.5,
    "resource_share": 1.0, "device_lifetime_years": 4.0, "sci": 0.0920, "sci_unit": "gCO2e per second of animatic",
    "sci_formula": "f", "functional_units": 0.125,
    "sci_alternatives": {"frame": {"sci": 0.0038, "sci_unit": "gCO2e per frame", "functional_units": 3.0}},
    "per_frame": [{"index": i, "work": 1.0, "energy_wh": 0.001, "co2e_g_location": 0.0005, "co2e_g_market": None}
                  for i in range(3)],
    "attribution": "old rule",
}


def _write_v0_folder(root: Path) -> dict[str, str]:
    """A 0.1 data folder: a queued job (generation with a key this version
    does not know and one missing), a running job with one stored frame, a
    completed job with its report, and a 0.1 ledger with one row."""
    shot = sample_shot(frames=FRAMES, width=32, height=18)
    data = shot_to_pb(shot).SerializeToString()
    db = sqlite3.connect(root / "bridge.sqlite3")
    db.executescript((FIXTURES / "store.sql").read_text())
    now = time.time()
    generation = {"backend": "guides", "prompt": "", "negative_prompt": "", "seed": 1, "steps": 0,
                  "guidance_scale": 0.0, "controls": [{"kind": "depth", "strength": 1.0, "future_flag": True}],
                  "output_width": 0, "output_height": 0, "model_profile": "", "future_knob": 3}
    scheduling = {"job_class": "interactive", "deadline": None, "allowed_sites": [], "max_co2e_g": None}
    decision = {"site": "local", "planned_start": "2026-01-01T00:00:00+00:00", "expected_co2e_g": 0.1,
                "run_now_co2e_g": 0.1, "reason": "interactive: runs now", "retired_key": 1}
    jobs = {"a-queued": "queued", "b-running": "running", "c-done": "completed"}
    for n, (job_id, state) in enumerate(jobs.items()):
        folder = root / "jobs" / job_id
        (folder / "frames").mkdir(parents=True)
        (folder / "shot.pb").write_bytes(data)
        db.execute("INSERT INTO jobs (job_id, project, shot, version, request_id, shot_sha256, backend, state,"
                   " state_reason, frame_count, work_estimate, attempts, energy_wh, generation, scheduling,"
                   " decision, created, updated) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   (job_id, "p", "s", n + 1, f"req-{n}", "ab" * 32, "guides", state, "", FRAMES, 3.0,
                    0 if state == "queued" else 1, 0.0 if state == "queued" else 0.002, json.dumps(generation),
                    json.dumps(scheduling), json.dumps(decision if state != "queued" else {}), now + n, now + n))
    png = encode_png(shot.frames[0].depth_m.astype("uint8")[..., None].repeat(3, axis=2), {"frame": 0})
    (root / "jobs" / "b-running" / "frames" / "frame_00000.png").write_bytes(png)
    db.execute("INSERT INTO frames (job_id, idx, file, energy_wh, work, created) VALUES (?,?,?,?,?,?)",
               ("b-running", 0, "frame_00000.png", 0.0007, 1.0, now))
    for i in range(FRAMES):
        db.execute("INSERT INTO frames (job_id, idx, file, energy_wh, work, created) VALUES (?,?,?,?,?,?)",
                   ("c-done", i, f"frame_{i:05d}.png", 0.001, 1.0, now))
    db.execute("INSERT INTO reports (job_id, json) VALUES (?, ?)", ("c-done", json.dumps(OLD_REPORT)))
    db.commit()
    db.close()
    ledger = sqlite3.connect(root / "ledger.sqlite")
    ledger.executescript((FIXTURES / "ledger.sql").read_text())
    ledger.execute("INSERT INTO ledger_jobs VALUES (" + ",".join("?" * 26) + ")",
                   ("c-done", "p", "s", 3, "completed", "guides", now, "local", "WORLD", 3, 0.125, 1.5, 0.003, 0,
                    "cpu-time-model", 0.003, 0.0, 0.0015, None, 0.01, 480.0, "Ember 2024", "interactive", 0, None,
                    json.dumps(OLD_REPORT)))
    ledger.commit()
    ledger.close()
    return jobs


def test_fixture_is_the_old_layout(tmp_path):
    """Guard the fixture itself: it is the layout that broke 0.1 -> current
    (no fps columns, user_version 0)."""
    _write_v0_folder(tmp_path)
    db = sqlite3.connect(tmp_path / "bridge.sqlite3")
    assert db.execute("PRAGMA user_version").fetchone()[0] == 0
    assert "fps_numerator" not in {r[1] for r in db.execute("PRAGMA table_info(jobs)")}


def test_store_migrates_and_recovers_old_jobs(tmp_path):
    _write_v0_folder(tmp_path)
    store = JobStore(tmp_path)
    assert store.schema_found == 0
    assert store._db.execute("PRAGMA user_version").fetchone()[0] == store_module.SCHEMA_VERSION
    pending = store.recover()
    assert [j.job_id for j in pending] == ["a-queued", "b-running"]
    a, b = pending
    assert a.fps == (24, 1) and a.generation.seed == 1 and a.generation.controls[0].kind == "depth"
    assert a.decision is None and b.decision is not None and b.decision.site == "local"
    assert b.state is JobState.QUEUED and "re-queued after a bridge restart" in b.state_reason
    old_frame = store.frames("b-running")[0]
    assert old_frame.energy_wh == 0.0007 and "before schema 2" in old_frame.meter
    report = store.report("c-done")
    assert isinstance(report, JobReport) and report.schema_version == 1
    assert report.frames == 3 and report.energy.energy_wh == 0.003 and report.attempts == ()
    assert [f.energy_wh for f in report.per_frame] == [0.001] * 3
    store.close()
    # a second open is a no-op: the migrations ran once
    again = JobStore(tmp_path)
    assert again.schema_found == store_module.SCHEMA_VERSION
    again.close()


def test_old_data_folder_runs_to_the_end_on_a_real_bridge(start_bridge, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    _write_v0_folder(data)
    bridge = start_bridge(data_dir=data)
    with BridgeClient(bridge.address) as client:
        for job_id in ("a-queued", "b-running"):
            events = list(client.watch(job_id))
            assert events[-1].kind.value == "completed", events[-1]
        resumed = client.report("b-running")
        assert resumed.frames == FRAMES and resumed.schema_version >= 2
        # the frame stored by 0.1 keeps its energy; the run after the restart completed the job
        assert resumed.per_frame[0].energy_wh == 0.0007
        assert [a.outcome for a in resumed.attempts][-1] is AttemptOutcome.COMPLETED
        old = client.report("c-done")
        assert old.schema_version == 1 and old.tags.version == 3 and old.sci == pytest.approx(0.0920)
        # the new submit path works on the migrated file (0.1 broke here: "no column named fps_numerator")
        new = client.submit(sample_shot(frames=FRAMES, width=32, height=18)).job
        assert list(client.watch(new.job_id))[-1].kind.value == "completed"
    ledger = Ledger.for_data_dir(data)
    rows = {r["job_id"]: r for r in ledger.jobs("p")}
    assert rows["c-done"]["energy_wh"] == 0.003 and rows["c-done"]["attempts"] == 1
    assert set(rows) >= {"a-queued", "b-running", "c-done"}
    assert ledger.report("b-running") == resumed
    ledger.close()


def test_a_newer_schema_is_refused_not_misread(tmp_path):
    store = JobStore(tmp_path)
    store._db.execute(f"PRAGMA user_version = {store_module.SCHEMA_VERSION + 1}")
    store.close()
    with pytest.raises(PreconditionError, match="written by a newer greenlight"):
        JobStore(tmp_path)


def test_report_and_settings_tolerate_unknown_and_missing_keys(caplog):
    from bridge.shot.request import GenerationSettings

    with caplog.at_level("WARNING"):
        report = JobReport.from_dict({"job_id": "x", "frames": 2, "from_the_future": {"a": 1},
                                      "energy": {"energy_wh": 1.5, "new_meter_field": 2}})
        gen = GenerationSettings.from_dict({"seed": 9, "knob_of_2027": True})
    assert report.frames == 2 and report.energy.energy_wh == 1.5 and report.state is JobState.COMPLETED
    assert gen.seed == 9 and gen.backend == "guides"
    assert "from_the_future" in caplog.text and "knob_of_2027" in caplog.text
    # and what this version writes reads back equal
    assert JobReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report
