"""The job worker both add-ons use (bridge.client.worker), against a real
bridge on loopback: updates arrive in order, totals add up, re-attach
resumes, cancel reaches the bridge, an unreachable bridge is one error."""

import math
import queue
from datetime import UTC
from pathlib import Path

import pytest

from bridge.client import BridgeClient
from bridge.client.worker import JobWorker
from bridge.errors import BridgeUnavailableError
from bridge.jobs.model import EventKind
from bridge.shot.request import GenerationSettings
from tests.helpers.backends import PacedBackend


def _drain(updates):
    out = []
    while not updates.empty():
        out.append(updates.get_nowait())
    return out


def test_submit_and_stream_updates(start_bridge, small_shot, tmp_path):
    bridge = start_bridge()
    updates = queue.Queue()
    worker = JobWorker(lambda: BridgeClient(bridge.address), tmp_path / "f", updates.put, shot=small_shot,
                       key="req-42", origin="a test")
    worker.start()
    worker.join(30)
    got = _drain(updates)
    kinds = [u.kind for u in got]
    assert kinds[0] == "accepted" and kinds[-1] == "completed"
    frames = [u for u in got if u.kind == "frame"]
    assert [u.frame.index for u in frames] == list(range(6))
    assert all(u.key == "req-42" and u.job_id == worker.job_id for u in got)
    assert all(Path(u.frame.path).is_file() and u.image == b"" for u in frames)   # bytes stay on disk
    assert frames[-1].totals.energy_wh == math.fsum(u.frame.energy_wh for u in frames)
    done = got[-1]
    assert done.report.frames == 6 and done.totals.frames == 6
    # what the worker received is what the report holds, exactly
    assert [u.frame.energy_wh for u in frames] == [f.energy_wh for f in done.report.per_frame]
    assert done.report.frames_energy_wh == done.totals.energy_wh
    assert len(list((tmp_path / "f").glob("frame_*.png"))) == 6
    # the key is the idempotency key: the bridge has exactly this request id
    with BridgeClient(bridge.address) as client:
        assert client.job(worker.job_id).request_id == "req-42"

    # re-attach to the finished job: frames on disk are kept, nothing is downloaded twice
    again = queue.Queue()
    attach = JobWorker(lambda: BridgeClient(bridge.address), tmp_path / "f", again.put, job_id=worker.job_id)
    attach.start()
    attach.join(30)
    kinds = [u.kind for u in _drain(again)]
    assert "frame" not in kinds and kinds[-1] == "completed"


def test_cancel_reaches_the_bridge(start_bridge, small_shot, tmp_path):
    bridge = start_bridge(backends={"paced": PacedBackend(frame_s=0.3)})
    updates = queue.Queue()
    worker = JobWorker(lambda: BridgeClient(bridge.address), tmp_path, updates.put, shot=small_shot,
                       generation=GenerationSettings(backend="paced"))
    worker.start()
    first = updates.get(timeout=10)
    assert first.kind == "accepted"
    worker.cancel()
    worker.join(30)
    assert _drain(updates)[-1].kind == "cancelled"


def test_unreachable_bridge_is_one_error_update(small_shot, tmp_path):
    updates = queue.Queue()
    worker = JobWorker(lambda: BridgeClient("127.0.0.1:1", timeout_s=2), tmp_path, updates.put, shot=small_shot)
    worker.start()
    worker.join(30)
    got = _drain(updates)
    assert [u.kind for u in got] == ["error"]
    assert got[0].error.error_class == "BridgeUnavailableError" and got[0].error.code == "UNAVAILABLE"
    assert isinstance(got[0].error.to_exception(), BridgeUnavailableError)


def test_needs_exactly_one_of_shot_or_job_id(small_shot, tmp_path):
    with pytest.raises(ValueError, match="not both"):
        JobWorker(lambda: None, tmp_path, print, shot=small_shot, job_id="x")
    with pytest.raises(ValueError, match="not both"):
        JobWorker(lambda: None, tmp_path, print)


def test_run_now_releases_a_waiting_job(start_bridge, small_shot, tmp_path):
    from datetime import datetime, timedelta

    from bridge.client.worker import send_run_now
    from bridge.shot.request import SchedulingSettings

    trace = tmp_path / "trace.csv"
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    rows = ["Datetime (UTC),Carbon Intensity gCO₂eq/kWh (direct)"]
    rows += [f"{now + timedelta(hours=h):%Y-%m-%d %H:%M:%S},{100 if h == 5 else 500}" for h in range(-1, 20)]
    trace.write_text("\n".join(rows) + "\n")
    bridge = start_bridge(carbon_signals=(f"csv:{trace}",))
    with BridgeClient(bridge.address) as client:
        job = client.submit(small_shot, scheduling=SchedulingSettings(
            job_class="batch", deadline=now + timedelta(hours=12))).job
        assert job.state == "scheduled" and "waiting for a greener window" in job.scheduling_reason
    updates = queue.Queue()
    send_run_now(lambda: BridgeClient(bridge.address), job.job_id, updates.put, key="k")
    update = updates.get(timeout=5)
    assert update.kind is EventKind.STATUS and "started now by request" in update.status.scheduling_reason
    with BridgeClient(bridge.address) as client:
        assert list(client.watch(job.job_id))[-1].kind.value == "completed"
    send_run_now(lambda: BridgeClient(bridge.address), job.job_id, updates.put, key="k")
    assert updates.get(timeout=5).kind == "warning"
