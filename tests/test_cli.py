"""The greenlight command: the demo end to end in a subprocess, and
submit/jobs/report/cancel against a real bridge."""

import json
import math
import os
import subprocess
import sys

from bridge.cli import main
from bridge.client.animatic import probe_frame_count
from bridge.jobs.images import read_png_metadata
from bridge.jobs.model import JobReport
from tests.conftest import REPO


def test_demo_writes_frames_mp4_and_a_consistent_report(tmp_path):
    # a cache of its own, so the test renders with Blender instead of reusing an earlier run's shot
    env = dict(os.environ, GRPC_ENABLE_FORK_SUPPORT="0", GREENLIGHT_ENGINE_RENDERS_CACHE=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-m", "bridge.cli", "demo", "--frames", "10", "--width", "160",
                          "--height", "90", "--out", str(tmp_path / "out")],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    # the README's demo: sample shot (a) rendered by real Blender headless, not the synthetic one
    assert "extracted with Blender headless" in out.stdout
    [folder] = (tmp_path / "out").glob("*/v001")
    frames = sorted(folder.glob("frame_*.png"))
    assert len(frames) == 10
    assert probe_frame_count(folder / "animatic.mp4") == 10
    report = json.loads((folder / "report.json").read_text())
    assert report["frames"] == 10
    assert {read_png_metadata(f.read_bytes())["job_id"] for f in frames} == {report["job_id"]}
    # the job total is the exact sum of what its frames and attempts were charged
    assert report["energy"]["energy_wh"] == math.fsum(
        [*(f["energy_wh"] for f in report["per_frame"]), *(a["unattributed_wh"] for a in report["attempts"])])
    assert report["schema_version"] == JobReport.from_dict(report).schema_version >= 2
    assert "estimated by cpu-time-model" in out.stdout and "SCI:" in out.stdout
    assert str(folder / "animatic.mp4") in out.stdout


def test_cli_submit_watch_jobs_report(start_bridge, tmp_path, capsys):
    bridge = start_bridge()
    shot_file = tmp_path / "s.glshot"
    assert main(["shot", "sample", str(shot_file), "--frames", "5", "--width", "64", "--height", "36"]) == 0
    assert main(["shot", "inspect", str(shot_file)]) == 0
    assert "5 frames at 24/1 fps" in capsys.readouterr().out
    addr = ["--address", bridge.address]
    assert main(["submit", str(shot_file), "--watch", "--out", str(tmp_path / "o"), "--project", "cli", *addr]) == 0
    folder = tmp_path / "o" / "cli" / "dolly" / "v001"
    assert len(list(folder.glob("frame_*.png"))) == 5 and (folder / "animatic.mp4").exists()
    capsys.readouterr()
    assert main(["jobs", "--project", "cli", "--json", *addr]) == 0
    jobs = json.loads(capsys.readouterr().out)
    assert [j["state"] for j in jobs] == ["completed"]
    assert main(["report", jobs[0]["job_id"], "--json", *addr]) == 0
    assert json.loads(capsys.readouterr().out)["frames"] == 5


def test_cli_errors_have_exit_codes(start_bridge, tmp_path, capsys):
    bridge = start_bridge()
    (tmp_path / "bad.glshot").write_text("nope")
    assert main(["submit", str(tmp_path / "bad.glshot"), "--address", bridge.address]) == 2
    assert "not a Greenlight shot file" in capsys.readouterr().err
    assert main(["report", "missing", "--address", bridge.address]) == 2
    assert main(["jobs", "--project", "x", "--address", "127.0.0.1:1"]) == 3
    assert "cannot reach the Greenlight bridge" in capsys.readouterr().err


def test_cli_usd_camera_submit_writes_an_otio_timeline(start_bridge, tmp_path, capsys):
    import opentimelineio as otio

    bridge = start_bridge()
    shot_file = tmp_path / "s.glshot"
    assert main(["shot", "sample", str(shot_file), "--frames", "4", "--width", "64", "--height", "36"]) == 0
    assert main(["shot", "usd", str(shot_file), str(tmp_path / "cam.usda")]) == 0
    code = main(["submit", str(tmp_path / "cam.usda"), "--watch", "--otio", "--out", str(tmp_path / "o"),
                 "--address", bridge.address])
    assert code == 0, capsys.readouterr().err
    timelines = list((tmp_path / "o").rglob("*.otio"))
    assert len(timelines) == 1
    timeline = otio.adapters.read_from_file(str(timelines[0]))
    assert len(timeline.tracks) == 1
    clip = timeline.tracks[0][0]
    assert clip.duration().value == 4
    assert clip.metadata["greenlight"]["backend"] == "guides"
