"""Nothing is lost: a dropped watch stream resumes with no gap and no
duplicate, and a bridge killed with SIGKILL mid-queue runs every job after
a restart."""

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bridge.client import BridgeClient, EventKind
from bridge.jobs.model import AttemptOutcome
from bridge.shot.request import GenerationSettings
from tests.conftest import REPO
from tests.helpers.backends import PacedBackend
from tests.helpers.proxy import CuttableProxy


def test_watch_resumes_after_dropped_connection(start_bridge, small_shot, tmp_path):
    from bridge.shot.synthetic import sample_shot

    shot = sample_shot(frames=20, width=32, height=18)
    bridge = start_bridge(backends={"paced": PacedBackend(frame_s=0.05)})
    proxy = CuttableProxy(bridge.port)
    try:
        with BridgeClient(proxy.address, reconnect_s=10) as client:
            job = client.submit(shot, GenerationSettings(backend="paced")).job
            frames = []
            for event in client.watch(job.job_id):
                if event.kind is EventKind.FRAME:
                    assert event.frame is not None and event.image.startswith(b"\x89PNG")
                    frames.append(event.frame.index)
                    if len(frames) in (3, 9):
                        proxy.cut()   # the stream dies mid-job, twice
                if event.kind.terminal:
                    break
        assert event.kind is EventKind.COMPLETED
        assert frames == list(range(20)), "a frame went missing or came twice"
        assert proxy.connections >= 3, "the drops did not force reconnections"
    finally:
        proxy.close()


def test_download_resumes_from_frames_on_disk(start_bridge, small_shot, tmp_path):
    bridge = start_bridge()
    with BridgeClient(bridge.address) as client:
        job = client.submit(small_shot).job
        client.download(job.job_id, tmp_path)
        for name in ("frame_00004.png", "frame_00005.png", "report.json"):
            (tmp_path / name).unlink()
        seen = []
        client.download(job.job_id, tmp_path, on_event=seen.append)
    frame_events = [e for e in seen if e.kind is EventKind.FRAME]
    assert [e.frame.index for e in frame_events] == [4, 5]
    # on_event sees each frame record with the local file it was written to
    assert [Path(e.frame.path) for e in frame_events] == [tmp_path / "frame_00004.png", tmp_path / "frame_00005.png"]
    assert all(Path(e.frame.path).is_file() for e in frame_events)
    assert len(list(tmp_path.glob("frame_*.png"))) == 6 and (tmp_path / "report.json").exists()
    final = seen[-1]
    assert final.kind is EventKind.COMPLETED and final.report.frames == 6
    # the re-downloaded frames carry the figures the report has for them, exactly
    by_index = {f.index: f for f in final.report.per_frame}
    for e in frame_events:
        assert e.frame.energy_wh == by_index[e.frame.index].energy_wh
        assert e.frame.co2e_g_location == by_index[e.frame.index].co2e_g_location


def _serve(data_dir: Path, config: Path, log: Path) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), GREENLIGHT_TEST_FRAME_S="0.1", GRPC_ENABLE_FORK_SUPPORT="0",
               GREENLIGHT_TEST_RUN_LOG=str(data_dir.parent / "runs.log"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge.cli", "serve", "--config", str(config), "--data-dir", str(data_dir),
         "--port", "0"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log.open("ab"), text=True)
    line = proc.stdout.readline()
    assert "listening on" in line, f"bridge did not start: {line!r} / {log.read_text()}"
    return proc, line.split("listening on ")[1].split()[0]


def test_sigkill_mid_queue_loses_no_job(tmp_path):
    from bridge.shot.synthetic import sample_shot

    config = tmp_path / "bridge.toml"
    config.write_text('extra_backends = ["tests.helpers.backends:PacedBackend"]\n')
    data_dir = tmp_path / "data"
    log = tmp_path / "bridge.log"
    shot = sample_shot(frames=10, width=32, height=18)
    proc, address = _serve(data_dir, config, log)
    try:
        with BridgeClient(address) as client:
            jobs = [client.submit(shot.with_tags(version=v), GenerationSettings(backend="paced")).job.job_id
                    for v in range(1, 5)]
            deadline = time.monotonic() + 20
            while client.job(jobs[0]).frames_done < 3:
                assert time.monotonic() < deadline, "first job made no progress"
                time.sleep(0.02)
            states = [client.job(j).state for j in jobs]
            done_before_kill = client.job(jobs[0]).frames_done
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = time.time()
    assert states[0] == "running" and set(states[1:]) == {"scheduled"}

    proc, address = _serve(data_dir, config, log)
    try:
        with BridgeClient(address) as client:
            finals = [list(client.watch(j))[-1] for j in jobs]
            assert [e.kind for e in finals] == [EventKind.COMPLETED] * 4, [e.message for e in finals]
            first = client.job(jobs[0])
            assert first.attempts == 2 and first.frames_done == 10
            assert all(client.job(j).attempts == 1 for j in jobs[1:])
            # the interrupted job resumed: its early frames were not made again
            report = finals[0].report
            assert report.frames == 10
            # two attempts: the killed one (its energy up to its last checkpoint counts) and the one that finished
            assert [a.number for a in report.attempts] == [1, 2]
            assert [a.outcome for a in report.attempts] == [AttemptOutcome.INTERRUPTED, AttemptOutcome.COMPLETED]
            made_in_first = sum(1 for f in report.per_frame if f.attempt == 1)
            assert made_in_first >= done_before_kill
            assert {f.attempt for f in report.per_frame} == {1, 2}
            assert [a.frames for a in report.attempts] == [made_in_first, 10 - made_in_first]
            # the killed attempt's energy and device time count: the carbon was emitted
            killed = report.attempts[0]
            assert killed.energy_wh > 0 and killed.wall_s > 0 and killed.embodied_co2e_g > 0
            assert report.embodied_co2e_g == math.fsum(a.embodied_co2e_g for a in report.attempts)
            assert report.wall_s == math.fsum(a.wall_s for a in report.attempts)
            # the total is the exact sum of the frames and what the attempts used outside them
            assert report.energy.energy_wh == math.fsum(
                [*(f.energy_wh for f in report.per_frame), *(a.unattributed_wh for a in report.attempts)])
            assert report.frames_energy_wh == math.fsum(f.energy_wh for f in report.per_frame)
            assert client.report(jobs[0]) == report
        frames = sorted((data_dir / "jobs" / jobs[0] / "frames").glob("frame_*.png"))
        assert len(frames) == 10
        made_before_kill = [f for f in frames if f.stat().st_mtime < killed_at]
        assert len(made_before_kill) >= done_before_kill >= 3
        # the second run of the interrupted job started with the frames already stored
        runs = [line.split() for line in (tmp_path / "runs.log").read_text().splitlines()]
        first_runs = [int(n) for j, n in runs if j == jobs[0]]
        assert first_runs[0] == 0 and len(first_runs) == 2 and first_runs[1] >= done_before_kill
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    assert f"job {jobs[0]}: re-queued after a bridge restart interrupted attempt 1" in log.read_text()
