"""Headless extraction + submit from a saved .blend (the CI path)."""

from __future__ import annotations

import json
import math
import socket

from tests.blender_scenes import run_scenario


def test_render_and_submit_writes_frames_mp4_and_report(start_bridge, tmp_path):
    bridge = start_bridge()
    out = tmp_path / "out"
    r = run_scenario("headless", frames=8, blend=str(tmp_path / "dolly.blend"), address=bridge.address,
                     out=str(out), range=[103, 108])
    assert r["label"] == "hl010/v001" and r["frame_start"] == 103
    assert r["frames"] == 6 and r["report_frames"] == 6
    folder = out / "ci" / "hl010" / "v001"
    assert r["folder"] == str(folder)
    assert sorted(p.name for p in folder.glob("frame_*.png")) == [f"frame_{i:05d}.png" for i in range(6)]
    assert (folder / "report.json").exists()
    assert r["report_state"] == "completed" and r["report_per_frame"] == list(range(6))
    # the total is the exact sum of the frames' fixed figures and the attempt's rest
    assert r["report_energy_wh"] == math.fsum(r["report_parts_wh"]) and r["report_energy_wh"] > 0
    assert json.loads((folder / "report.json").read_text()) == r["report_json"]   # what the download wrote
    assert r["mp4"] and (folder / "animatic.mp4").stat().st_size > 0
    assert r["pass_methods"]["pose"] == "rig-joints-projected:metarig"


def test_headless_cli_exit_code_3_when_the_bridge_is_unreachable(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = run_scenario("headless", frames=2, blend=str(tmp_path / "x.blend"), address=f"127.0.0.1:{port}",
                     out=str(tmp_path / "out"), cli=True)
    assert r["exit_code"] == 3
