"""Headless extraction + submit from a saved .blend (the CI path): frames,
report and MP4 of one new version per run, and an exit code per failure,
each found before the pass render when it can be."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time

from bridge.backends import default_backends
from bridge.server.config import Limits
from tests.blender_scenes import REPO, run_scenario
from tests.helpers.backends import PacedBackend

# The documented entry (docs/blender.md, "Headless (CI)"), as the bpy module runs it.
ENTRY = "from blender_addon import compat, headless; compat.end_process_in_blender(headless.main())"


def _dead_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def _run_entry(args: list[str], code: str = ENTRY, timeout: float = 150) -> subprocess.CompletedProcess:
    env = dict(os.environ, GRPC_ENABLE_FORK_SUPPORT="0", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", code, "--", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_render_and_submit_writes_frames_mp4_and_report(start_bridge, tmp_path):
    bridge = start_bridge()
    out = tmp_path / "out"
    r = run_scenario("headless", frames=8, blend=str(tmp_path / "dolly.blend"), address=bridge.address,
                     out=str(out), range=[103, 108])
    assert r["label"] == "hl010/v001" and r["version"] == 1 and r["frame_start"] == 103
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


def test_headless_exit_codes_and_failures_found_before_the_pass_render(start_bridge, tmp_path):
    bridge = start_bridge(backends={**default_backends(), "paced": PacedBackend(frame_s=0.01, fail_at=1)})
    locked = start_bridge(tokens={"tok-ci": "previz"})
    small = start_bridge(limits=Limits(max_frames=2))
    out = tmp_path / "out"
    blends = {"ok": {"blend": str(tmp_path / "ok.blend"), "frames": 3},
              "nocam": {"blend": str(tmp_path / "nocam.blend"), "frames": 3, "camera": False},
              "rig": {"blend": str(tmp_path / "rig.blend"), "frames": 3, "unmapped_rig": True}}

    def case(name, blend, address, *extra, bug=False):
        argv = [blends[blend]["blend"] if blend in blends else blend, "--address", address, "--out", str(out),
                "--shot", "codes", "--scale", "0.125", *extra]
        return {"name": name, "argv": argv, "bug": bug}

    cases = [
        case("unreachable", "nocam", _dead_address()),    # 3, not 4: the bridge is checked before the scene
        case("no_token", "ok", locked.address),
        case("wrong_token", "ok", locked.address, "--token", "guess"),
        case("bad_scale", "ok", bridge.address, "--scale", "3"),
        case("over_limit", "ok", small.address),   # 3 frames: refused before the render, not after
        case("bad_frames", "ok", bridge.address, "--frames", "a-b"),
        case("no_file", str(tmp_path / "missing.blend"), bridge.address),
        case("missing_root_cert", "ok", bridge.address, "--tls-root-cert", str(tmp_path / "none.pem")),
        case("empty_range", "ok", bridge.address, "--frames", "105-103"),
        case("no_camera", "nocam", bridge.address),
        case("unmapped_rig", "rig", bridge.address),
        case("bug", "ok", bridge.address, bug=True),
        case("job_failed", "ok", bridge.address, "--backend", "paced"),
    ]
    r = run_scenario("headless_codes", blends=blends, cases=cases, timeout=240)
    codes = {name: c["code"] for name, c in r.items()}
    assert codes == {"unreachable": 3, "no_token": 2, "wrong_token": 2, "bad_scale": 2, "over_limit": 2,
                     "bad_frames": 2, "no_file": 2, "missing_root_cert": 2, "empty_range": 4, "no_camera": 4,
                     "unmapped_rig": 4, "bug": 5, "job_failed": 1}, r
    for name in ("unreachable", "no_token", "wrong_token", "bad_scale", "over_limit", "bad_frames", "no_file",
                 "missing_root_cert", "empty_range"):
        assert r[name]["extracted"] == 0, (name, r[name])    # refused before any pass render
    for name in ("unreachable", "no_token", "wrong_token"):
        assert r[name]["seconds"] < 10, (name, r[name])
    assert "cannot reach the Greenlight bridge" in r["unreachable"]["error"]
    assert "requires a token" in r["no_token"]["error"] and "unknown token" in r["wrong_token"]["error"]
    assert "has no active camera" in r["no_camera"]["error"]
    assert "matches no COCO-18 mapping" in r["unmapped_rig"]["error"]
    assert "max_frames: 3 exceeds the bridge's limit of 2" in r["over_limit"]["error"]
    assert "frame range 105..103 is empty" in r["empty_range"]["error"]
    assert r["bug"]["error"].startswith("greenlight: unexpected ZeroDivisionError") and r["bug"]["traceback"]
    assert not any(c["traceback"] for name, c in r.items() if name != "bug")
    assert "failed" in r["job_failed"]["error"]
    # versions refused before any frame came back give their number back; the failed job keeps its frame
    shot_dir = out / "previz" / "codes"
    assert sorted(p.name for p in shot_dir.iterdir()) == ["v001"]
    assert sorted(p.name for p in (shot_dir / "v001").iterdir()) == ["frame_00000.png"]


def test_documented_entry_exits_3_in_seconds_when_the_bridge_is_unreachable(tmp_path):
    run_scenario("save_scene", blend=str(tmp_path / "x.blend"), frames=2)
    t0 = time.monotonic()
    proc = _run_entry([str(tmp_path / "x.blend"), "--address", _dead_address(), "--out", str(tmp_path / "out")])
    assert proc.returncode == 3, proc.stderr
    assert time.monotonic() - t0 < 30
    assert "cannot reach the Greenlight bridge" in proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("frame_*"))


def test_documented_entry_exits_non_zero_with_a_traceback_on_a_bug(start_bridge, tmp_path):
    bridge = start_bridge()
    run_scenario("save_scene", blend=str(tmp_path / "x.blend"), frames=2)
    bug = ("import sys; from blender_addon import headless, host; "
           "host.shot_from_scene_in_blender = lambda *a, **k: {}['boom']; "
           "from blender_addon import compat; compat.end_process_in_blender(headless.main())")
    proc = _run_entry([str(tmp_path / "x.blend"), "--address", bridge.address, "--out", str(tmp_path / "out")],
                      code=bug)
    assert proc.returncode == 5, proc.stderr
    lines = proc.stderr.splitlines()
    assert any(ln.startswith("greenlight: unexpected KeyError: 'boom'") for ln in lines), proc.stderr
    assert "Traceback (most recent call last)" in proc.stderr
