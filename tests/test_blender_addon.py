"""The Blender extension with real Blender (bpy, child process) and a real
bridge on a loopback port: registration, Generate -> VSE strip, bad input."""

from __future__ import annotations

import json
import socket

import pytest

from bridge.jobs.model import JobReport, JobState
from tests.blender_scenes import run_scenario


def test_extension_registers_and_unregisters_cleanly():
    r = run_scenario("register")
    nothing = {"panel_3d": False, "panel_vse": False, "op_generate": False, "scene_prop": False,
               "load_handlers": 0, "prefs": False}
    everything = {"panel_3d": True, "panel_vse": True, "op_generate": True, "scene_prop": True,
                  "load_handlers": 1, "prefs": True}
    assert r["before"] == nothing
    for round_ in (0, 1):  # twice: re-enabling after disabling must work too
        assert r[f"enabled_{round_}"] == everything
        assert r[f"disabled_{round_}"] == nothing
        assert r[f"defaults_{round_}"] == {"backend": "guides", "scale": 0.25, "address": "127.0.0.1:50151"}


def test_generate_places_a_12_frame_strip_with_job_properties(start_bridge, tmp_path):
    bridge = start_bridge()
    cache = tmp_path / "cache"
    r = run_scenario("e2e", address=bridge.address, cache=str(cache), frames=12, runs=2)
    assert r["operator"] == [["FINISHED"], ["FINISHED"]]
    assert r["finished_in_time"]
    assert [j["version"] for j in r["jobs"]] == [1, 2], "the version auto-increments per shot"
    by_name = {s["name"]: s for s in r["strips"]}
    assert sorted(by_name) == ["sh010/v001", "sh010/v002"]
    for version, job in zip((1, 2), r["jobs"]):
        label = f"sh010/v{version:03d}"
        strip = by_name[label]
        assert job["state"] == "completed", job
        assert job["frames_done"] == job["frame_count"] == 12
        assert strip["type"] == "IMAGE"
        assert strip["elements"] == 12 and strip["duration"] == 12
        assert (strip["start"], strip["end"]) == (101, 113)  # the scene's range 101..112, end exclusive
        assert strip["channel_name"] == label
        props = strip["props"]
        assert props["greenlight_job_id"] == job["job_id"]
        assert props["greenlight_backend"] == "guides"
        assert props["greenlight_seed"] == 1234
        assert props["greenlight_energy_wh"] > 0 and props["greenlight_co2e_g"] > 0
        assert props["greenlight_sci"] > 0 and props["greenlight_sci_unit"]
        folder = cache / "spaceship" / "sh010" / f"v{version:03d}"
        assert sorted(p.name for p in folder.glob("frame_*.png")) == [f"frame_{i:05d}.png" for i in range(12)]
        assert (folder / "report.json").exists()
        # the strip and the job record show the report's totals (Blender floats: single precision on the record)
        report = JobReport.from_dict(json.loads((folder / "report.json").read_text()))
        assert report.job_id == job["job_id"] and report.state is JobState.COMPLETED and report.frames == 12
        assert props["greenlight_energy_wh"] == pytest.approx(report.energy.energy_wh, rel=1e-6)
        assert props["greenlight_co2e_g"] == pytest.approx(report.energy.co2e_g_location, rel=1e-6)
        assert props["greenlight_sci"] == pytest.approx(report.sci, rel=1e-6)
        # the temporal score and the recipe travel onto the strip (docs/temporal.md, docs/governance.md)
        assert report.temporal.computed and report.temporal.gap1 is not None
        assert props["greenlight_temporal_gap1"] == pytest.approx(report.temporal.gap1, rel=1e-6)
        assert props["greenlight_recipe"] == report.recipe_hash and len(report.recipe_hash) == 16
        assert job["energy_wh"] == pytest.approx(report.energy.energy_wh, rel=1e-6)
        assert job["co2e_g"] == pytest.approx(report.energy.co2e_g_location, rel=1e-6)
    assert by_name["sh010/v001"]["channel"] != by_name["sh010/v002"]["channel"]
    # The bridge saw the shot the add-on extracted.
    from bridge.client import BridgeClient

    with BridgeClient(bridge.address) as client:
        job = client.job(r["jobs"][0]["job_id"])
    assert (job.project, job.shot, job.version, job.frame_count) == ("spaceship", "sh010", 1, 12)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_bridge_reports_clearly_and_changes_nothing(tmp_path):
    r = run_scenario("unreachable", address=f"127.0.0.1:{_free_port()}", cache=str(tmp_path / "cache"))
    assert r["operator"] == ["FINISHED"]  # extraction worked; the network runs on the worker
    assert r["finished_in_time"]
    assert "cannot reach the Greenlight bridge" in r["status"]
    assert r["jobs"] == [] and r["strips"] == []
    assert r["scenes"] == 1
    assert r["online_access"] is False
    assert r["offline_error"] and "online access is off" in r["offline_error"]
