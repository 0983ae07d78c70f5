"""The bridge over real gRPC on loopback: the job loop, and every kind of bad
input answered with the right status code while the server keeps serving
and leaves no half-written job behind."""

import dataclasses
import hashlib
import math
import threading
import time

import grpc
import numpy as np
import pytest

from bridge.client import BridgeClient, EventKind
from bridge.errors import InvalidArgumentError, LimitExceededError, NotFoundError, PreconditionError
from bridge.jobs.images import read_png_metadata
from bridge.jobs.model import JobState
from bridge.proto.greenlight.v1 import bridge_pb2, bridge_pb2_grpc
from bridge.server.config import Limits
from bridge.shot.request import GenerationSettings, SchedulingSettings
from bridge.shot.wire import generation_to_pb, shot_to_pb


def _figures(frame):
    """A frame record without where the file lies and when it was written (not on the wire)."""
    return dataclasses.replace(frame, path="", created=0.0)


def _leftovers(bridge):
    store = bridge.manager.store
    return list(store.incoming_dir.iterdir()), sorted(p.name for p in store.jobs_dir.iterdir())


def _wait_state(client, job_id, states, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.job(job_id)
        if job.state in states:
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} still {job.state}")


def test_submit_watch_report_end_to_end(start_bridge, small_shot, tmp_path):
    bridge = start_bridge()
    with BridgeClient(bridge.address) as client:
        accepted = client.submit(small_shot)
        assert not accepted.duplicate
        assert accepted.job.state in ("scheduled", "running", "completed")
        assert accepted.job.site == "local" and "interactive" in accepted.job.scheduling_reason
        events = []
        final = client.download(accepted.job.job_id, tmp_path / "out", on_event=events.append)
    assert final.kind is EventKind.COMPLETED
    frames = [e for e in events if e.kind is EventKind.FRAME]
    assert [e.frame.index for e in frames] == list(range(6))
    assert events[0].kind is EventKind.STATUS
    files = sorted((tmp_path / "out").glob("frame_*.png"))
    assert len(files) == 6
    meta = read_png_metadata(files[3].read_bytes())
    assert meta["job_id"] == accepted.job.job_id and meta["frame"] == "3"
    assert meta["energy_method"] == "estimated"
    report = final.report
    assert report.frames == 6 and report.state is JobState.COMPLETED
    assert report.energy.measured is False and "cpu-time-model" in report.energy.meter
    # the job total is the exact sum of its frames and its attempts' unattributed energy
    assert report.energy.energy_wh == math.fsum([*(f.energy_wh for f in report.per_frame),
                                                 *(a.unattributed_wh for a in report.attempts)])
    # the streamed frame records are the report's, field by field
    assert [_figures(e.frame) for e in frames] == [_figures(f) for f in report.per_frame]
    assert float(meta["energy_wh"]) == pytest.approx(report.per_frame[3].energy_wh, rel=1e-8)
    assert report.functional_units == pytest.approx(6 / 24)
    assert report.sci == pytest.approx((report.energy.co2e_g_location + report.embodied_co2e_g) / (6 / 24))
    assert (tmp_path / "out" / "report.json").exists()
    # the frame images are the guides: not blank
    from PIL import Image

    assert np.asarray(Image.open(files[0])).std() > 5


def test_resubmitting_a_request_id_returns_the_same_job(start_bridge, small_shot):
    bridge = start_bridge()
    with BridgeClient(bridge.address) as client:
        first = client.submit(small_shot, request_id="req-1")
        again = client.submit(small_shot, request_id="req-1")
        assert again.duplicate and again.job.job_id == first.job.job_id
        assert len(client.jobs("demo")) == 1
        other = small_shot.with_tags(version=2)
        with pytest.raises(PreconditionError, match="already used .* for a different shot"):
            client.submit(other, request_id="req-1")
        assert len(client.jobs("demo")) == 1
    assert _leftovers(bridge)[0] == []


def test_concurrent_duplicate_submits_make_one_job(start_bridge, small_shot):
    bridge = start_bridge()
    results = []
    with BridgeClient(bridge.address) as client:
        threads = [threading.Thread(target=lambda: results.append(client.submit(small_shot, request_id="same")))
                   for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len({r.job.job_id for r in results}) == 1
        assert sum(not r.duplicate for r in results) == 1
        assert len(client.jobs("demo")) == 1


# ---------------------------------------------------------------- bad input
def _raw_submit(address, messages, timeout=10):
    with grpc.insecure_channel(address) as channel:
        stub = bridge_pb2_grpc.BridgeStub(channel)
        return stub.SubmitShot(iter(messages), timeout=timeout)


def _header(data: bytes, **kw):
    fields = dict(request_id="r", generation=generation_to_pb(GenerationSettings()), shot_bytes=len(data),
                  shot_sha256=hashlib.sha256(data).digest())
    fields.update(kw)
    return bridge_pb2.SubmitChunk(header=bridge_pb2.SubmitHeader(**fields))


def _expect_status(bridge, messages, code, pattern):
    with pytest.raises(grpc.RpcError) as err:
        _raw_submit(bridge.address, messages)
    assert err.value.code() == code, err.value.details()
    assert pattern in err.value.details()
    incoming, jobs = _leftovers(bridge)
    assert incoming == [] and jobs == [], "a refused upload left files behind"


def test_malformed_protobuf_is_invalid_argument(start_bridge):
    bridge = start_bridge()
    junk = b"\xff\xff\xff\xff not a protobuf"
    _expect_status(bridge, [_header(junk), bridge_pb2.SubmitChunk(data=junk)],
                   grpc.StatusCode.INVALID_ARGUMENT, "not a valid greenlight.v1.Shot")


def test_stream_without_header_or_empty(start_bridge):
    bridge = start_bridge()
    _expect_status(bridge, [bridge_pb2.SubmitChunk(data=b"x")], grpc.StatusCode.INVALID_ARGUMENT,
                   "first message must be a SubmitHeader")
    _expect_status(bridge, [], grpc.StatusCode.INVALID_ARGUMENT, "stream was empty")


def test_checksum_and_length_mismatches(start_bridge, small_shot):
    bridge = start_bridge()
    data = shot_to_pb(small_shot).SerializeToString()
    _expect_status(bridge, [_header(data, shot_sha256=b"\0" * 32), bridge_pb2.SubmitChunk(data=data)],
                   grpc.StatusCode.INVALID_ARGUMENT, "SHA-256 does not match")
    _expect_status(bridge, [_header(data), bridge_pb2.SubmitChunk(data=data[:1000])],
                   grpc.StatusCode.INVALID_ARGUMENT, f"ended after 1000 of {len(data)} declared bytes")
    _expect_status(bridge, [_header(data[:10]), bridge_pb2.SubmitChunk(data=data[:20])],
                   grpc.StatusCode.INVALID_ARGUMENT, "more than the 10 bytes declared")


@pytest.mark.parametrize("mutate, code, pattern", [
    (lambda s: s.with_tags(project=""), grpc.StatusCode.INVALID_ARGUMENT, "tags.project: is required"),
    (lambda s: dataclasses.replace(
        s, frames=(dataclasses.replace(s.frames[0], depth_m=np.full((36, 64), np.nan, np.float32)),) + s.frames[1:]),
     grpc.StatusCode.INVALID_ARGUMENT, "frames[0].depth_m: 2304 NaN values"),
    (lambda s: dataclasses.replace(
        s, frames=s.frames[:1]
        + (dataclasses.replace(s.frames[1], motion_px=np.zeros((18, 32, 2), np.float16)),)
        + s.frames[2:]),
     grpc.StatusCode.INVALID_ARGUMENT, "frames[1].motion_px: shape (18, 32, 2) does not match"),
])
def test_bad_shots_name_the_field(start_bridge, small_shot, mutate, code, pattern):
    bridge = start_bridge()
    data = shot_to_pb(mutate(small_shot)).SerializeToString()
    _expect_status(bridge, [_header(data), bridge_pb2.SubmitChunk(data=data)], code, pattern)


def test_limits_are_enforced_and_advertised(start_bridge, small_shot):
    limits = Limits(max_frames=4, max_width=48, max_upload_bytes=200_000, max_chunk_bytes=64 * 1024,
                    max_active_jobs_per_project=1)
    bridge = start_bridge(limits=limits)
    with BridgeClient(bridge.address) as client:
        caps = client.capabilities()
        assert (caps.limits.max_frames, caps.limits.max_width, caps.limits.max_upload_bytes) == (4, 48, 200_000)
        assert {b.id for b in caps.backends} == {"guides", "animatediff", "wan-vace"}
        with pytest.raises(LimitExceededError, match="max_frames: 6 exceeds the bridge's limit of 4"):
            client.submit(small_shot, chunk_bytes=32 * 1024)
        shot4 = dataclasses.replace(small_shot, frames=small_shot.frames[:4])
        with pytest.raises(LimitExceededError, match="max_width: 64 exceeds the bridge's limit of 48"):
            client.submit(shot4, chunk_bytes=32 * 1024)
    data = shot_to_pb(small_shot).SerializeToString()
    _expect_status(bridge, [_header(data, shot_bytes=10**9)], grpc.StatusCode.RESOURCE_EXHAUSTED,
                   "max_upload_bytes: 1000000000 exceeds the bridge's limit of 200000")
    _expect_status(bridge, [_header(data[:100_000], shot_bytes=100_000), bridge_pb2.SubmitChunk(data=data[:100_000])],
                   grpc.StatusCode.RESOURCE_EXHAUSTED, "max_chunk_bytes: 100000 exceeds")


def test_active_jobs_per_project_limit(start_bridge, small_shot, paced):
    bridge = start_bridge(backends={"paced": paced}, limits=Limits(max_active_jobs_per_project=2))
    gen = GenerationSettings(backend="paced")
    with BridgeClient(bridge.address) as client:
        client.submit(small_shot, gen)
        client.submit(small_shot, gen)
        with pytest.raises(LimitExceededError, match=r"max_active_jobs_per_project \(project 'demo'\): 3 exceeds .* 2"):
            client.submit(small_shot, gen)
        # another project is not affected
        client.submit(small_shot.with_tags(project="other"), gen)


def test_unknown_backend_and_bad_generation(start_bridge, small_shot):
    bridge = start_bridge()
    with BridgeClient(bridge.address) as client:
        with pytest.raises(InvalidArgumentError,
                           match=r"unknown backend 'sdxl'; available: \['animatediff', 'guides', 'wan-vace'\]"):
            client.submit(small_shot, GenerationSettings(backend="sdxl"))
        from bridge.shot.request import ControlSettings

        with pytest.raises(InvalidArgumentError, match=r"controls\[0\].strength: must be in \[0, 10\]"):
            client.submit(small_shot, GenerationSettings(controls=(ControlSettings("depth", strength=-1),)))
        # NaN passes every range check: it is refused by name (and never written as bare NaN into a report)
        with pytest.raises(InvalidArgumentError, match="generation.guidance_scale: must be a finite number") as nan:
            client.submit(small_shot, GenerationSettings(guidance_scale=float("nan")))
        assert nan.value.field == "generation.guidance_scale"
        with pytest.raises(InvalidArgumentError, match=r"controls\[0\].strength: must be a finite number"):
            client.submit(small_shot, GenerationSettings(controls=(ControlSettings("depth", strength=float("inf")),)))
        with pytest.raises(InvalidArgumentError, match="scheduling.deadline: is required for batch"):
            client.submit(small_shot, scheduling=SchedulingSettings(job_class="batch"))
        with pytest.raises(InvalidArgumentError, match="unknown sites"):
            client.submit(small_shot, scheduling=SchedulingSettings(allowed_sites=("mars",)))
        # the server still serves
        assert client.submit(small_shot).job.state in ("scheduled", "running", "completed")
    assert _leftovers(bridge)[0] == []


def test_stream_cut_mid_upload_leaves_nothing_and_server_keeps_serving(start_bridge, small_shot):
    bridge = start_bridge()
    data = shot_to_pb(small_shot).SerializeToString()
    cut = threading.Event()

    def chunks():
        yield _header(data)
        yield bridge_pb2.SubmitChunk(data=data[:50_000])
        cut.wait(5)
        raise RuntimeError("client crashed mid-upload")

    with grpc.insecure_channel(bridge.address) as channel:
        stub = bridge_pb2_grpc.BridgeStub(channel)
        future = stub.SubmitShot.future(chunks(), timeout=10)
        time.sleep(0.3)
        cut.set()
        with pytest.raises(grpc.RpcError) as err:
            future.result()
    assert err.value.code() in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED, grpc.StatusCode.INVALID_ARGUMENT)
    deadline = time.monotonic() + 5
    while _leftovers(bridge) != ([], []) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _leftovers(bridge) == ([], [])
    with BridgeClient(bridge.address) as client:
        assert client.jobs("demo") == []
        assert client.submit(small_shot).job.job_id


# ---------------------------------------------------------------- job control
def test_cancel_running_job_stops_between_frames(start_bridge, small_shot):
    from tests.helpers.backends import PacedBackend

    slow = PacedBackend(frame_s=0.3)
    bridge = start_bridge(backends={"paced": slow})
    with BridgeClient(bridge.address) as client:
        job = client.submit(small_shot, GenerationSettings(backend="paced")).job
        _wait_state(client, job.job_id, {"running"})
        client.cancel(job.job_id, "changed my mind")
        events = list(client.watch(job.job_id))
        assert events[-1].kind is EventKind.CANCELLED
        final = client.job(job.job_id)
        assert final.state == "cancelled" and final.frames_done < 6
        report = client.report(job.job_id)
        assert report.state is JobState.CANCELLED


def test_cancel_queued_job_never_runs(start_bridge, small_shot):
    from tests.helpers.backends import PacedBackend

    slow = PacedBackend(frame_s=0.2)
    bridge = start_bridge(backends={"paced": slow})
    gen = GenerationSettings(backend="paced")
    with BridgeClient(bridge.address) as client:
        first = client.submit(small_shot, gen).job
        second = client.submit(small_shot, gen).job
        assert client.cancel(second.job_id).state == "cancelled"
        assert client.cancel(second.job_id).state == "cancelled"  # idempotent
        list(client.watch(first.job_id))
    assert [run[0] for run in slow.runs] == [first.job_id]


def test_backend_failure_becomes_failed_event(start_bridge, small_shot):
    from tests.helpers.backends import PacedBackend

    bridge = start_bridge(backends={"paced": PacedBackend(frame_s=0.0, fail_at=3)})
    with BridgeClient(bridge.address) as client:
        job = client.submit(small_shot, GenerationSettings(backend="paced")).job
        events = list(client.watch(job.job_id))
        assert events[-1].kind is EventKind.FAILED
        assert "told to fail at frame 3" in events[-1].message
        assert [e.frame.index for e in events if e.kind is EventKind.FRAME] == [0, 1, 2]
        assert client.job(job.job_id).state == "failed"


def test_unknown_job_and_early_report(start_bridge, small_shot):
    from tests.helpers.backends import PacedBackend

    bridge = start_bridge(backends={"paced": PacedBackend(frame_s=0.2)})
    with BridgeClient(bridge.address) as client:
        with pytest.raises(NotFoundError, match="job 'nope' not found"):
            client.job("nope")
        with pytest.raises(NotFoundError):
            list(client.watch("nope"))
        job = client.submit(small_shot, GenerationSettings(backend="paced")).job
        with pytest.raises(PreconditionError, match="its report exists once it has ended"):
            client.report(job.job_id)


def test_watch_from_frame_skips_earlier_frames(start_bridge, small_shot):
    bridge = start_bridge()
    with BridgeClient(bridge.address) as client:
        job = client.submit(small_shot).job
        list(client.watch(job.job_id))
        events = list(client.watch(job.job_id, from_frame=4))
        assert [e.frame.index for e in events if e.kind is EventKind.FRAME] == [4, 5]
        assert events[-1].kind is EventKind.COMPLETED


def test_a_cancel_that_arrives_while_the_job_starts_is_not_lost(start_bridge, small_shot):
    """The store says RUNNING a moment before the executor has registered
    the attempt: a cancel in that moment used to find nothing to cancel, and
    the job ran to the end. Now the attempt sees it when it registers."""
    from tests.helpers.backends import PacedBackend

    bridge = start_bridge(backends={"paced": PacedBackend(frame_s=0.2)})
    executor = bridge.manager.executor
    original = executor._new_attempt

    def cancel_in_the_gap(job, done):
        executor.cancel_running(job.job_id)      # the job is RUNNING in the store, not yet registered
        return original(job, done)

    executor._new_attempt = cancel_in_the_gap
    with BridgeClient(bridge.address) as client:
        job = client.submit(small_shot, GenerationSettings(backend="paced")).job
        events = list(client.watch(job.job_id))
    assert events[-1].kind is EventKind.CANCELLED
    assert not [e for e in events if e.kind is EventKind.FRAME]
