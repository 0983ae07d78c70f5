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


# ---------------------------------------------------------------- greenlight render (Blender headless)
def _render(*args: str, timeout: float = 150) -> subprocess.CompletedProcess:
    env = dict(os.environ, GRPC_ENABLE_FORK_SUPPORT="0")
    env.pop("GREENLIGHT_TOKEN", None)
    return subprocess.run([sys.executable, "-m", "bridge.cli", "render", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _summary(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _version_holds_its_own_job(folder, job_id: str, frames: int) -> None:
    pngs = sorted(folder.glob("frame_*.png"))
    assert [p.name for p in pngs] == [f"frame_{i:05d}.png" for i in range(frames)]
    assert sorted(p.name for p in folder.iterdir()) == sorted([*(p.name for p in pngs), "report.json", "animatic.mp4"])
    report = json.loads((folder / "report.json").read_text())
    assert report["job_id"] == job_id and report["frames"] == frames
    assert {read_png_metadata(p.read_bytes())["job_id"] for p in pngs} == {job_id}
    assert probe_frame_count(folder / "animatic.mp4") == frames


def test_render_twice_makes_two_versions_and_save_places_the_new_strip(start_bridge, tmp_path):
    import hashlib

    from tests.blender_scenes import run_scenario

    bridge = start_bridge()
    blend = tmp_path / "dolly.blend"
    run_scenario("save_scene", blend=str(blend), frames=6)      # frames 101..106
    digest = hashlib.sha256(blend.read_bytes()).hexdigest()
    common = [str(blend), "--address", bridge.address, "--out", str(tmp_path / "out"), "--shot", "sh010",
              "--project", "ci", "--scale", "0.125"]
    first = _summary(_render(*common))
    assert hashlib.sha256(blend.read_bytes()).hexdigest() == digest      # no --save: the .blend is untouched
    second = _summary(_render(*common, "--frames", "101-103", "--save"))
    shot_dir = tmp_path / "out" / "ci" / "sh010"
    assert sorted(p.name for p in shot_dir.iterdir()) == ["v001", "v002"]
    assert (first["version"], first["label"], first["frames"]) == (1, "sh010/v001", 6)
    assert (second["version"], second["label"], second["frames"]) == (2, "sh010/v002", 3)
    assert first["folder"] == str(shot_dir / "v001") and second["folder"] == str(shot_dir / "v002")
    assert first["job_id"] != second["job_id"]
    _version_holds_its_own_job(shot_dir / "v001", first["job_id"], 6)
    _version_holds_its_own_job(shot_dir / "v002", second["job_id"], 3)
    # --save: reopened, the file has the new version's strip and job record
    saved = run_scenario("blend_strips", blend=str(blend))
    [strip] = saved["strips"]
    assert (strip["name"], strip["channel_name"], strip["start"]) == ("sh010/v002", "sh010/v002", 101)
    assert strip["directory"].rstrip("/\\") == str(shot_dir / "v002")
    assert strip["files"] == [f"frame_{i:05d}.png" for i in range(3)]
    assert strip["props"]["greenlight_job_id"] == second["job_id"]
    [job] = saved["jobs"]
    assert (job["job_id"], job["version"], job["state"], job["frames_done"]) == (second["job_id"], 2, "completed", 3)


def test_render_passes_the_client_options_on():
    from bridge.cli import build_parser
    from bridge.cli.render import headless_argv

    args = build_parser().parse_args(["render", "s.blend", "--address", "h:1", "--token", "tok", "--tls",
                                      "--tls-root-cert", "ca.pem", "--save", "--seed", "7", "--scene", "S",
                                      "--frames", "1-4", "--out", "o"])
    argv = headless_argv(args)
    assert argv[:5] == ["s.blend", "--address", "h:1", "--out", "o"]
    for flag, value in (("--token", "tok"), ("--tls-root-cert", "ca.pem"), ("--seed", "7"), ("--scene", "S"),
                        ("--frames", "1-4")):
        assert argv[argv.index(flag) + 1] == value, (flag, argv)
    assert "--tls" in argv and "--save" in argv
    bare = headless_argv(build_parser().parse_args(["render", "s.blend"]))
    assert not {"--token", "--tls", "--tls-root-cert", "--save"} & set(bare)


def test_render_with_tls_root_cert_against_a_tls_bridge(start_bridge, tmp_path):
    from tests.blender_scenes import run_scenario
    from tests.test_auth_tls import _self_signed

    cert, key, _ = _self_signed(tmp_path)
    bridge = start_bridge(tls_cert=cert, tls_key=key, host="localhost")
    address = f"localhost:{bridge.port}"
    blend = tmp_path / "dolly.blend"
    run_scenario("save_scene", blend=str(blend), frames=2)
    common = [str(blend), "--address", address, "--out", str(tmp_path / "out"), "--shot", "tls", "--scale", "0.125"]
    plain = _render(*common)       # plaintext to a TLS bridge: unreachable, before any rendering
    assert plain.returncode == 3, plain.stderr[-3000:]
    assert "cannot reach the Greenlight bridge" in plain.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("frame_*"))
    done = _summary(_render(*common, "--tls-root-cert", str(cert)))
    assert done["frames"] == 2 and done["label"] == "tls/v001"
    _version_holds_its_own_job(tmp_path / "out" / "previz" / "tls" / "v001", done["job_id"], 2)
