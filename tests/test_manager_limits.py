"""Limits enforced up front (issue 13): every check that needs no shot data
runs on the header (JobManager.check_header, before any chunk is read), the
same limits hold on a full submit, [limits] values are finite, the per-project
active-job limit holds under 32 simultaneous submits, estimates leave no
trace, and the audit log keeps one whole JSON line per record."""

import hashlib
import json
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from bridge.backends.base import Backend, BackendInfo
from bridge.client import BridgeClient
from bridge.errors import InvalidArgumentError, LimitExceededError, PermissionDeniedError
from bridge.jobs.model import JobState
from bridge.proto.greenlight.v1 import bridge_pb2
from bridge.server.audit import AuditLog
from bridge.server.auth import Principal
from bridge.server.config import Limits, load_config
from bridge.server.manager import DeclaredShot
from bridge.shot.request import GenerationSettings, SchedulingSettings
from bridge.shot.wire import generation_to_pb, shot_to_pb
from tests.helpers.backends import PacedBackend

ADMIN = Principal(project=None)


class GateBackend(Backend):
    """Holds every job RUNNING until ``gate`` is set (or the job is cancelled), then one flat frame per shot frame."""

    id = "gate"

    def __init__(self):
        self.gate = threading.Event()

    def info(self) -> BackendInfo:
        return BackendInfo(id=self.id, description="test: held until released", conditions=(), max_frames=100,
                           max_width=512, max_height=512, devices=("cpu",))

    def run(self, shot, settings, ctx) -> None:
        while not self.gate.wait(0.05):
            if ctx.cancelled:
                return
        for i in range(shot.frame_count):
            ctx.frame(i, np.zeros((shot.height, shot.width, 3), np.uint8))


def _declared(shot, **kw) -> DeclaredShot:
    return replace(DeclaredShot(project=shot.tags.project, frame_count=shot.frame_count, width=shot.width,
                                height=shot.height, shot_bytes=1000), **kw)


def _nothing_stored(bridge):
    store = bridge.manager.store
    return (store.list(limit=1000) == [] and list(store.jobs_dir.iterdir()) == []
            and list(store.incoming_dir.iterdir()) == [] and bridge.manager.scheduler.held() == {})


LIMITS = Limits(max_frames=10, max_width=128, max_height=64, max_upload_bytes=200_000, max_steps=30,
                max_prompt_chars=20, max_output_width=256, max_output_height=128, max_active_jobs_per_project=2)
BATCH = SchedulingSettings(job_class="batch", deadline=datetime.now(UTC) + timedelta(hours=2))

# (what is wrong, declared facts, generation, scheduling) -> error class, and the limit or field it names
HEADER_CASES = [
    ("request id empty", {}, {}, None, InvalidArgumentError, "header.request_id", ""),
    ("too many bytes", {"shot_bytes": 200_001}, {}, None, LimitExceededError, "max_upload_bytes", "r"),
    ("no bytes", {"shot_bytes": 0}, {}, None, InvalidArgumentError, "shot_bytes", "r"),
    ("negative frames", {"frame_count": -1}, {}, None, InvalidArgumentError, "header.frame_count", "r"),
    ("too many frames", {"frame_count": 11}, {}, None, LimitExceededError, "max_frames", "r"),
    ("too wide", {"width": 129}, {}, None, LimitExceededError, "max_width", "r"),
    ("too tall", {"height": 65}, {}, None, LimitExceededError, "max_height", "r"),
    ("zero size", {"width": 0}, {}, None, InvalidArgumentError, "header.resolution", "r"),
    ("too many steps", {}, {"steps": 31}, None, LimitExceededError, "max_steps (generation.steps)", "r"),
    ("long prompt", {}, {"prompt": "x" * 21}, None, LimitExceededError, "max_prompt_chars (generation.prompt)", "r"),
    ("long negative prompt", {}, {"negative_prompt": "x" * 21}, None, LimitExceededError,
     "max_prompt_chars (generation.negative_prompt)", "r"),
    ("output too wide", {}, {"output_width": 257, "output_height": 64}, None, LimitExceededError,
     "max_output_width (generation.output_resolution.width)", "r"),
    ("output too tall", {}, {"output_width": 64, "output_height": 129}, None, LimitExceededError,
     "max_output_height (generation.output_resolution.height)", "r"),
    ("NaN guidance", {}, {"guidance_scale": float("nan")}, None, InvalidArgumentError,
     "generation.guidance_scale", "r"),
    ("unknown backend", {}, {"backend": "nope"}, None, InvalidArgumentError, "generation.backend", "r"),
    ("backend takes fewer frames", {"frame_count": 6}, {"backend": "small"}, None, InvalidArgumentError,
     "header.frame_count", "r"),
    ("batch without deadline", {}, {}, SchedulingSettings(job_class="batch"), InvalidArgumentError,
     "scheduling.deadline", "r"),
    ("unknown site", {}, {}, replace(BATCH, allowed_sites=("mars",)), InvalidArgumentError,
     "scheduling.allowed_sites", "r"),
]


class SmallBackend(PacedBackend):
    id = "small"

    def info(self) -> BackendInfo:
        return replace(super().info(), id=self.id, max_frames=5)


@pytest.mark.parametrize("case", HEADER_CASES, ids=[c[0] for c in HEADER_CASES])
def test_check_header_refuses_before_any_data(start_bridge, small_shot, paced, case):
    _, facts, gen, sched, cls, names, request_id = case
    bridge = start_bridge(backends={"paced": paced, "small": SmallBackend()}, limits=LIMITS)
    generation = GenerationSettings(**{"backend": "paced", **gen})
    with pytest.raises(cls) as err:
        bridge.manager.check_header(ADMIN, _declared(small_shot, **facts), request_id, generation,
                                    sched or SchedulingSettings())
    named = getattr(err.value, "limit", None) or getattr(err.value, "field", None) or str(err.value)
    assert names in named, (named, str(err.value))
    assert "/" not in str(err.value).replace("x/y", "")   # no server path in the message
    assert _nothing_stored(bridge)


def test_check_header_accepts_a_good_header_and_checks_the_token(start_bridge, small_shot, paced):
    bridge = start_bridge(backends={"paced": paced}, limits=LIMITS)
    good = GenerationSettings(backend="paced", steps=30, prompt="x" * 20, output_width=256, output_height=128)
    bridge.manager.check_header(ADMIN, _declared(small_shot), "r1", good, BATCH)
    bridge.manager.check_header(Principal(small_shot.tags.project, "t1"), _declared(small_shot), "r1", good,
                                SchedulingSettings())
    with pytest.raises(PermissionDeniedError, match="not"):
        bridge.manager.check_header(Principal("other", "t2"), _declared(small_shot), "r1", good,
                                    SchedulingSettings())
    assert _nothing_stored(bridge)


def test_header_facts_left_unset_are_checked_after_upload(start_bridge, small_shot, paced):
    """A client older than the header facts sends project "", frame count 0 and
    resolution 0x0: the header passes, and the same limits hold on the parsed shot."""
    bridge = start_bridge(backends={"paced": paced}, limits=replace(LIMITS, max_frames=5))
    unset = DeclaredShot(project="", frame_count=0, width=0, height=0, shot_bytes=1000)
    gen = GenerationSettings(backend="paced")
    bridge.manager.check_header(Principal("other"), unset, "r1", gen, SchedulingSettings())
    with pytest.raises(InvalidArgumentError, match="header.resolution"):
        bridge.manager.check_header(ADMIN, replace(unset, width=64), "r1", gen, SchedulingSettings())
    with BridgeClient(bridge.address) as client:
        data = shot_to_pb(small_shot).SerializeToString()
        header = client_header(data, gen)
        with pytest.raises(LimitExceededError) as err:
            client.submit_bytes(header, data, retries=0)
    assert err.value.limit == "max_frames" and _nothing_stored(bridge)


def client_header(data: bytes, gen: GenerationSettings):
    return bridge_pb2.SubmitHeader(request_id="old-client", generation=generation_to_pb(gen), shot_bytes=len(data),
                                   shot_sha256=hashlib.sha256(data).digest())


def test_free_space_guard_refuses_below_the_threshold(start_bridge, small_shot, paced):
    bridge = start_bridge(backends={"paced": paced}, limits=replace(LIMITS, min_free_disk_bytes=10_000))
    manager = bridge.manager
    probed = []

    def free(path):
        probed.append(path)
        return 10_500
    manager.disk_free = free
    gen = GenerationSettings(backend="paced")
    manager.check_header(ADMIN, _declared(small_shot, shot_bytes=500), "r1", gen, SchedulingSettings())  # 10 000 left
    with pytest.raises(LimitExceededError) as err:
        manager.check_header(ADMIN, _declared(small_shot, shot_bytes=501), "r1", gen, SchedulingSettings())
    assert err.value.limit.startswith("min_free_disk_bytes") and err.value.maximum == 10_000
    assert probed[0] == manager.store.root
    # a full submit (shot already uploaded) is refused too, over real gRPC
    manager.disk_free = lambda path: 9_999
    with BridgeClient(bridge.address) as client, pytest.raises(LimitExceededError) as err:
        client.submit(small_shot, GenerationSettings(backend="paced"))
    assert err.value.limit.startswith("min_free_disk_bytes")
    assert _nothing_stored(bridge)
    manager.disk_free = lambda path: 10**12
    with BridgeClient(bridge.address) as client:
        assert client.submit(small_shot, GenerationSettings(backend="paced")).job.job_id


def test_submit_enforces_the_generation_limits_over_grpc(start_bridge, small_shot, paced):
    bridge = start_bridge(backends={"paced": paced}, limits=LIMITS)
    with BridgeClient(bridge.address) as client:
        for gen, limit in [({"steps": 31}, "max_steps (generation.steps)"),
                           ({"prompt": "p" * 21}, "max_prompt_chars (generation.prompt)"),
                           ({"output_width": 512, "output_height": 64},
                            "max_output_width (generation.output_resolution.width)")]:
            with pytest.raises(LimitExceededError) as err:
                client.submit(small_shot, GenerationSettings(backend="paced", **gen))
            assert err.value.limit == limit
    assert _nothing_stored(bridge)


@pytest.mark.parametrize("text, field", [("max_frames = nan", "max_frames"),
                                         ("upload_idle_timeout_s = inf", "upload_idle_timeout_s"),
                                         ("max_steps = -1", "max_steps"), ("max_width = 'wide'", "max_width"),
                                         ("min_free_disk_bytes = -5", "min_free_disk_bytes"),
                                         ("max_prompt_chars = 1.5", "max_prompt_chars"),
                                         ("max_active_jobs_per_project = 0", "max_active_jobs_per_project")])
def test_limits_must_be_finite_and_sane(tmp_path, text, field):
    path = tmp_path / "bridge.toml"
    path.write_text(f"[limits]\n{text}\n")
    with pytest.raises(InvalidArgumentError) as err:
        load_config(path, data_dir=tmp_path / "d")
    assert err.value.field == f"limits.{field}" and field in str(err.value)


def test_sane_limits_load(tmp_path):
    path = tmp_path / "bridge.toml"
    path.write_text("[limits]\nmax_frames = 12\nupload_idle_timeout_s = 2.5\nmin_free_disk_bytes = 0\n")
    limits = load_config(path, data_dir=tmp_path / "d").limits
    assert (limits.max_frames, limits.upload_idle_timeout_s, limits.min_free_disk_bytes) == (12, 2.5, 0)


def test_32_simultaneous_submits_admit_exactly_the_limit(start_bridge, small_shot):
    gate = GateBackend()
    bridge = start_bridge(backends={"gate": gate}, limits=Limits(max_active_jobs_per_project=16))
    barrier = threading.Barrier(32)
    results: list = []
    lock = threading.Lock()

    def submit(i):
        with BridgeClient(bridge.address, timeout_s=30) as client:
            barrier.wait(10)
            try:
                outcome = client.submit(small_shot, GenerationSettings(backend="gate"), request_id=f"race-{i}",
                                        retries=0).job.job_id
            except LimitExceededError as exc:
                outcome = exc
            with lock:
                results.append(outcome)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    admitted = [r for r in results if isinstance(r, str)]
    refused = [r for r in results if isinstance(r, LimitExceededError)]
    assert len(results) == 32
    assert len(admitted) == 16 and len(refused) == 16, (len(admitted), len(refused))
    assert all(r.limit.startswith("max_active_jobs_per_project") and r.maximum == 16 for r in refused)
    store = bridge.manager.store
    assert store.count_active(small_shot.tags.project) == 16
    assert len(list(store.jobs_dir.iterdir())) == 16 and list(store.incoming_dir.iterdir()) == []
    gate.gate.set()


def test_estimate_plans_and_leaves_no_trace(start_bridge, small_shot, paced):
    bridge = start_bridge(backends={"paced": paced})
    manager = bridge.manager
    gen = GenerationSettings(backend="paced")
    first = manager.estimate(ADMIN, "demo", 6, 64, 36, gen, SchedulingSettings())
    assert first.wall_s > 0 and first.energy_wh == 0.0 and "no run history" in first.basis
    assert first.decision.site == bridge.config.site.name and first.decision.job_id == ""
    batch = manager.estimate(ADMIN, "demo", 6, 64, 36, gen, BATCH)
    assert batch.decision.job_class == "batch"
    assert _nothing_stored(bridge)
    with pytest.raises(PermissionDeniedError):
        manager.estimate(Principal("other"), "demo", 6, 64, 36, gen, SchedulingSettings())
    with pytest.raises(LimitExceededError, match="max_frames"):
        manager.estimate(ADMIN, "demo", 10_000, 64, 36, gen, SchedulingSettings())
    # with history: figures from the finished job
    with BridgeClient(bridge.address) as client:
        job = client.submit(small_shot, gen).job
        deadline = time.monotonic() + 20
        while client.job(job.job_id).state != JobState.COMPLETED:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    jobs_before = manager.store.list(limit=100)
    after = manager.estimate(ADMIN, "demo", 12, 64, 36, gen, SchedulingSettings())
    assert after.energy_wh > 0 and after.co2e_g > 0 and after.co2e_g == after.decision.expected_co2e_g
    assert "recent finished paced jobs" in after.basis
    assert manager.store.list(limit=100) == jobs_before and manager.scheduler.held() == {}


def test_cancel_keeps_its_reason_for_a_running_job(start_bridge, small_shot):
    gate = GateBackend()
    bridge = start_bridge(backends={"gate": gate})
    with BridgeClient(bridge.address) as client:
        job = client.submit(small_shot, GenerationSettings(backend="gate")).job
        deadline = time.monotonic() + 10
        while client.job(job.job_id).state != JobState.RUNNING:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        client.cancel(job.job_id, reason="wrong camera, redoing the layout")
        while (status := client.job(job.job_id)).state != JobState.CANCELLED:
            assert time.monotonic() < deadline + 10
            time.sleep(0.02)
    assert status.state_reason == "wrong camera, redoing the layout"


def test_audit_log_lines_are_whole_json_and_never_hold_secrets(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl")
    who = Principal("p1", "tok-7f3a")

    def write(n):
        for i in range(50):
            log.record("SubmitShot", who, f"job{n}-{i}", "ok", prompt="a secret prompt", token="s3cr3t",
                       reason="x" * 2000, frames=6, guidance=float("nan"))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    log.record("CancelJob", Principal(None), "j", "ok", reason="changed my mind")
    log.close()
    text = (tmp_path / "audit.jsonl").read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == 401 and len({e["job"] for e in lines}) == 401
    e = lines[0]
    assert set(e) == {"time", "project", "token_id", "rpc", "job", "outcome", "detail"}
    assert e["project"] == "p1" and e["token_id"] == "tok-7f3a" and e["detail"]["frames"] == 6
    assert datetime.fromisoformat(e["time"]).utcoffset() == timedelta(0)
    assert len(e["detail"]["reason"]) == 500 and e["detail"]["guidance"] == "nan"
    assert "secret prompt" not in text and "s3cr3t" not in text
    assert lines[-1]["project"] == "*" and lines[-1]["detail"] == {"reason": "changed my mind"}
    # appends, never truncates
    again = AuditLog(tmp_path / "audit.jsonl")
    again.record("DeleteJob", who, "j2", "NOT_FOUND")
    again.close()
    assert len((tmp_path / "audit.jsonl").read_text().splitlines()) == 402


def test_audit_log_never_raises_on_disk_errors(tmp_path):
    (tmp_path / "is_a_dir").mkdir()
    log = AuditLog(tmp_path / "is_a_dir")      # opening a folder for append fails
    log.record("SubmitShot", Principal("p"), "j", "ok")
    log.record("SubmitShot", Principal("p"), "j", "ok")
    assert log.failures == 2
