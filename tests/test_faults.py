"""Faults end jobs in defined states (issue 13): a full disk, a failing
database, a failing meter or a crashing backend leave the job FAILED with a
reason a person can read, watchers are told, the bridge keeps serving and
other jobs are untouched. A stop drains: the running job finishes its frame
and is re-queued with its frames."""

import errno
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from bridge.client import BridgeClient, EventKind
from bridge.energy.ledger import Ledger
from bridge.energy.meters import MeterError
from bridge.errors import LimitExceededError
from bridge.jobs.model import AttemptOutcome, JobState
from bridge.shot.request import GenerationSettings
from tests.helpers.backends import PacedBackend

REPO = Path(__file__).resolve().parents[1]
PACED = GenerationSettings(backend="paced")


def _wait(client, job_id, states, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.job(job_id)
        if job.state in states:
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} is {job.state}, never one of {states}")


def _ends_failed_and_bridge_serves(bridge, client, job_id, reason_part):
    events = list(client.watch(job_id))
    assert events[-1].kind is EventKind.FAILED and reason_part in events[-1].message
    job = client.job(job_id)
    assert job.state == JobState.FAILED and reason_part in job.state_reason
    assert str(bridge.config.data_dir) not in job.state_reason and "Traceback" not in job.state_reason
    assert client.capabilities().protocol_version
    return job


def _other_job_completes(client, shot):
    other = client.submit(shot, PACED).job
    assert _wait(client, other.job_id, {JobState.COMPLETED, JobState.FAILED}).state == JobState.COMPLETED
    return other


def test_disk_full_while_writing_a_frame(start_bridge, small_shot, paced, monkeypatch):
    bridge = start_bridge(backends={"paced": paced})
    store = bridge.manager.store
    real = store.add_frame
    doomed = set()

    def add_frame(job_id, record, data, attempt=None):
        if job_id in doomed and record.index == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(store.frame_path(job_id, 2)))
        return real(job_id, record, data, attempt)

    monkeypatch.setattr(store, "add_frame", add_frame)
    with BridgeClient(bridge.address) as client:
        first = client.submit(small_shot, PACED, request_id="full").job
        doomed.add(first.job_id)
        job = _ends_failed_and_bridge_serves(bridge, client, first.job_id, "disk is full")
        assert job.frames_done == 2
        assert [a.outcome for a in store.attempts(first.job_id)] == [AttemptOutcome.FAILED]
        assert store.report(first.job_id) is not None
        _other_job_completes(client, small_shot)
    assert list((store.job_dir(first.job_id) / "frames").glob("*.partial")) == []


def test_a_partial_frame_file_is_removed_when_the_disk_fills(tmp_path, monkeypatch):
    from bridge.jobs.model import FrameRecord
    from bridge.jobs.store import JobStore
    from tests.test_jobs_store import _create

    store = JobStore(tmp_path)
    job, _ = _create(store)

    def full(self, data):
        Path.write_text(self, "half")   # something landed before the disk filled
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(OSError):
        store.add_frame(job.job_id, FrameRecord(index=0, energy_wh=0.1), b"png")
    monkeypatch.undo()
    assert list(store.frame_path(job.job_id, 0).parent.iterdir()) == [] and store.frames(job.job_id) == []


def test_database_error_at_the_end_of_the_attempt(start_bridge, small_shot, paced, monkeypatch):
    bridge = start_bridge(backends={"paced": paced})
    store = bridge.manager.store
    real = store.end_attempt
    failing = {"on": True}

    def end_attempt(job_id, attempt):
        if failing["on"]:
            failing["on"] = False
            raise sqlite3.OperationalError("database or disk is full")
        return real(job_id, attempt)

    monkeypatch.setattr(store, "end_attempt", end_attempt)
    with BridgeClient(bridge.address) as client:
        job = client.submit(small_shot, PACED).job
        _ends_failed_and_bridge_serves(bridge, client, job.job_id, "job database failed")
        _other_job_completes(client, small_shot)


def test_report_that_cannot_be_saved_fails_the_job(start_bridge, small_shot, paced, monkeypatch):
    bridge = start_bridge(backends={"paced": paced})
    store = bridge.manager.store
    real = store.save_report
    failing = {"on": True}

    def save_report(job_id, report):
        if failing["on"]:
            failing["on"] = False
            raise OSError(errno.ENOSPC, "No space left on device", str(store.job_dir(job_id)))
        return real(job_id, report)

    monkeypatch.setattr(store, "save_report", save_report)
    with BridgeClient(bridge.address) as client:
        job = client.submit(small_shot, PACED).job
        _ends_failed_and_bridge_serves(bridge, client, job.job_id, "report could not be saved")
        _other_job_completes(client, small_shot)


def test_final_state_write_is_retried(start_bridge, small_shot, paced, monkeypatch):
    bridge = start_bridge(backends={"paced": paced})
    store = bridge.manager.store
    real = store.transition
    fails = {"left": 2}

    def transition(job_id, new, reason="", **kw):
        if new is JobState.COMPLETED and fails["left"]:
            fails["left"] -= 1
            raise sqlite3.OperationalError("database is locked")
        return real(job_id, new, reason, **kw)

    monkeypatch.setattr(store, "transition", transition)
    with BridgeClient(bridge.address) as client:
        job = client.submit(small_shot, PACED).job
        events = list(client.watch(job.job_id))
        assert events[-1].kind is EventKind.COMPLETED and fails["left"] == 0


def test_ledger_write_failure_never_fails_the_job(start_bridge, small_shot, paced, monkeypatch):
    bridge = start_bridge(backends={"paced": paced})
    ledger = bridge.manager.executor.ledger
    assert isinstance(ledger, Ledger)

    def record(report, finished=None):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ledger, "record", record)
    with BridgeClient(bridge.address) as client:
        job = client.submit(small_shot, PACED).job
        assert _wait(client, job.job_id, {JobState.COMPLETED, JobState.FAILED}).state == JobState.COMPLETED


class FlakyMeter:
    """Wraps the bridge's meter; reads raise once ``broken`` is set."""

    def __init__(self, inner):
        self.inner, self.broken = inner, False
        self.name = getattr(inner, "name", "flaky")

    def read(self):
        if self.broken:
            raise MeterError("meter unplugged")
        return self.inner.read()


class BreaksMeterAtTheEnd(PacedBackend):
    """Makes every frame, then breaks the meter: the executor's last read (after the run) fails."""

    def __init__(self, meter: FlakyMeter):
        super().__init__(frame_s=0.01)
        self.meter = meter

    def run(self, shot, settings, ctx) -> None:
        super().run(shot, settings, ctx)
        self.meter.broken = True


def test_meter_failing_after_the_run_does_not_leave_the_job_running(start_bridge, small_shot):
    bridge = start_bridge(backends={})
    executor = bridge.manager.executor
    meter = FlakyMeter(executor.meter)
    executor.meter = meter
    backend = BreaksMeterAtTheEnd(meter)
    executor.backends["paced"] = bridge.manager.backends["paced"] = backend
    with BridgeClient(bridge.address) as client:
        job = client.submit(small_shot, PACED).job
        _ends_failed_and_bridge_serves(bridge, client, job.job_id, "energy meter failed")
        meter.broken = False
        backend.meter = FlakyMeter(meter.inner)   # next job: a healthy meter all along
        _other_job_completes(client, small_shot)


def test_backend_crash(start_bridge, small_shot):
    crashing = PacedBackend(frame_s=0.01, fail_at=3)
    bridge = start_bridge(backends={"paced": crashing})
    with BridgeClient(bridge.address) as client:
        job = client.submit(small_shot, PACED).job
        failed = _ends_failed_and_bridge_serves(bridge, client, job.job_id, "told to fail at frame 3")
        assert failed.frames_done == 3
        crashing.fail_at = None
        _other_job_completes(client, small_shot)


def test_stop_drains_the_running_job_and_requeues_it(start_bridge, small_shot, tmp_path):
    slow = PacedBackend(frame_s=0.15)
    data = tmp_path / "drain"
    bridge = start_bridge(backends={"paced": slow}, data_dir=data)
    with BridgeClient(bridge.address) as client:
        job = client.submit(small_shot, PACED).job
        deadline = time.monotonic() + 10
        while client.job(job.job_id).frames_done < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    bridge.stop(grace=0)
    store = bridge.manager.store
    from bridge.jobs.store import JobStore

    reopened = JobStore(data)
    stopped = reopened.get(job.job_id)
    kept = reopened.frames(job.job_id)
    assert stopped.state is JobState.QUEUED and "the bridge stopped" in stopped.state_reason
    assert 2 <= len(kept) < small_shot.frame_count
    for record in kept:   # every stored frame is whole
        assert reopened.frame_file(job.job_id, record).read_bytes().startswith(b"\x89PNG")
    assert [a.outcome for a in reopened.attempts(job.job_id)] == [AttemptOutcome.INTERRUPTED]
    reopened.close()
    del store
    again = start_bridge(backends={"paced": slow}, data_dir=data)
    with BridgeClient(again.address) as client:
        assert _wait(client, job.job_id, {JobState.COMPLETED}).frames_done == small_shot.frame_count
    assert slow.runs[-1] == (job.job_id, frozenset(r.index for r in kept))   # resumed, nothing made twice


class NoiseBackend(PacedBackend):
    """Random frames (incompressible PNGs, ~200 kB each at 256x256) to fill a small disk."""

    def run(self, shot, settings, ctx) -> None:
        rng = np.random.default_rng(0)
        for i in range(shot.frame_count):
            if ctx.cancelled:
                return
            ctx.frame(i, rng.integers(0, 256, (256, 256, 3), dtype=np.uint8))


SERVE_ON_TMPFS = textwrap.dedent("""
    import os, sys, time
    from bridge.server.app import create_server
    from bridge.server.config import BridgeConfig, Limits
    from tests.test_faults import NoiseBackend
    cfg = BridgeConfig(data_dir=sys.argv[1], port=0, meter="estimate",
                       limits=Limits(min_free_disk_bytes=int(sys.argv[2]), max_frames=100))
    bridge = create_server(cfg, backends={"paced": NoiseBackend()})
    print(bridge.port, flush=True)
    sys.stdin.read()
    bridge.stop(grace=0)
""")


def _can_mount_tmpfs() -> bool:
    try:
        return subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"],
                              capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(sys.platform != "linux" or not _can_mount_tmpfs(),
                    reason="needs unprivileged user+mount namespaces (unshare -rm); "
                           "the monkeypatched disk-full tests above cover the same path")
def test_real_full_tmpfs(tmp_path, small_shot):
    """A bridge whose data folder is a 3 MiB tmpfs: frames fill it, the job FAILS
    with the disk named, the bridge keeps serving, and the free-space guard
    refuses the next upload."""
    from bridge.shot.synthetic import sample_shot

    mount = tmp_path / "small_disk"
    mount.mkdir()
    script = (f"mount -t tmpfs -o size=3m tmpfs {mount} && mkdir {mount}/data && "
              f"exec {sys.executable} -c '{SERVE_ON_TMPFS}' {mount}/data 1500000")
    proc = subprocess.Popen(["unshare", "-rm", "sh", "-c", script], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip().isdigit(), (proc.stderr.read() if proc.stderr and proc.poll() is not None else line)
        address = f"127.0.0.1:{int(line)}"
        big = sample_shot(frames=40, width=64, height=36)
        with BridgeClient(address, timeout_s=20) as client:
            job = client.submit(big, PACED).job
            events = list(client.watch(job.job_id))
            assert events[-1].kind is EventKind.FAILED and "disk is full" in events[-1].message
            status = client.job(job.job_id)
            assert status.state == JobState.FAILED and 0 < status.frames_done < 40
            assert client.capabilities().protocol_version
            with pytest.raises(LimitExceededError) as err:      # below 1.5 MB free now
                client.submit(small_shot, PACED)
            assert err.value.limit.startswith("min_free_disk_bytes")
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
