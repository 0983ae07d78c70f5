"""Property tests over every RPC's request messages, against a real bridge on
loopback: valid requests, mutated fields, truncated and garbled SubmitShot
streams, NaN/inf, path-like and NUL strings, huge numbers.

Every call ends with a gRPC status well before its short deadline (never a
hang, never UNKNOWN or INTERNAL: those are bugs), no status message holds
the data folder's path, a traceback or an exception class name, the bridge
stays healthy, and nothing is written outside the data folder. Bounded for
CI: ~50 examples per RPC, no example database."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.proto.greenlight.v1 import bridge_pb2, bridge_pb2_grpc, shot_pb2
from bridge.shot.request import GenerationSettings
from bridge.shot.wire import generation_to_pb, shot_to_pb
from tests.helpers.backends import PacedBackend

EXAMPLES = 50
DEADLINE_S = 5.0
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
# codes a bridge answers bad input with; UNKNOWN and INTERNAL mean a handler broke
ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
           grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.RESOURCE_EXHAUSTED,
           grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.DEADLINE_EXCEEDED}
LEAKS = re.compile(r"Traceback|File \"|\b[A-Z][A-Za-z]*(Error|Exception)\b|<[a-z_.]+ object at 0x")

# ------------------------------------------------------------------ strategies
NASTY_TEXT = st.sampled_from([
    "", "demo", "paced", "guides", "local", "../../etc/passwd", "/etc/passwd", "..", "C:\\Windows\\win.ini",
    "a\x00b", "\x00", "%s%s%n", "{0}", "' OR 1=1 --", "\u202egnp.exe", "é" * 40, "x" * 5000, "~/.ssh/id_rsa",
    "file:///etc/shadow", "\n\r\t", "*",
])
TEXT = st.one_of(NASTY_TEXT, st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=64))
U32 = st.one_of(st.sampled_from([0, 1, 2, 6, 480, 2**31 - 1, 2**32 - 1]), st.integers(0, 2**32 - 1))
U64 = st.one_of(st.sampled_from([0, 1, 2**63 - 1, 2**64 - 1]), st.integers(0, 2**64 - 1))
FLOAT = st.one_of(st.sampled_from([0.0, -0.0, 1.0, -1.0, float("nan"), float("inf"), float("-inf"), 1e308, -1e308,
                                   5e-324]), st.floats(allow_nan=True, allow_infinity=True, width=32))
DOUBLE = st.one_of(FLOAT, st.floats(allow_nan=True, allow_infinity=True))
SECONDS = st.one_of(st.sampled_from([0, -1, 1, 253402300799, 253402300800, -62135596800, -62135596801,
                                     2**62, -(2**62)]), st.integers(-(2**63), 2**63 - 1))
NANOS = st.one_of(st.sampled_from([0, -1, 999_999_999, 1_000_000_000]), st.integers(-(2**31), 2**31 - 1))


@st.composite
def generation(draw) -> bridge_pb2.GenerationRequest:
    msg = bridge_pb2.GenerationRequest(
        backend=draw(st.one_of(st.just("paced"), TEXT)), prompt=draw(TEXT), negative_prompt=draw(TEXT),
        seed=draw(U64), steps=draw(U32), guidance_scale=draw(FLOAT), preview_every_n_steps=draw(U32),
        model_profile=draw(TEXT))
    if draw(st.booleans()):
        msg.output_resolution.width, msg.output_resolution.height = draw(U32), draw(U32)
    for _ in range(draw(st.integers(0, 3))):
        msg.controls.add(kind=draw(st.one_of(st.sampled_from(["depth", "pose", "motion"]), TEXT)),
                         enabled=draw(st.booleans()), strength=draw(FLOAT), guidance_start=draw(FLOAT),
                         guidance_end=draw(FLOAT))
    return msg


@st.composite
def scheduling(draw) -> bridge_pb2.SchedulingRequest:
    msg = bridge_pb2.SchedulingRequest(job_class=draw(st.integers(-5, 5)),
                                       allowed_sites=draw(st.lists(TEXT, max_size=3)))
    if draw(st.booleans()):
        msg.deadline.seconds, msg.deadline.nanos = draw(SECONDS), draw(NANOS)
    if draw(st.booleans()):
        msg.max_co2e_g = draw(DOUBLE)
    return msg


def _job_ids(known: list[str]):
    return st.one_of(st.sampled_from(known), TEXT)


def _requests(rpc: str, known: list[str]):
    job_id = _job_ids(known)
    if rpc == "WatchJob":
        return st.builds(bridge_pb2.WatchJobRequest, job_id=job_id, from_frame=U32, include_previews=st.booleans())
    if rpc == "CancelJob":
        return st.builds(bridge_pb2.CancelJobRequest, job_id=job_id, reason=TEXT)
    if rpc == "RunJobNow":
        return st.builds(bridge_pb2.RunJobNowRequest, job_id=job_id)
    if rpc == "GetJob":
        return st.builds(bridge_pb2.GetJobRequest, job_id=job_id)
    if rpc == "GetReport":
        return st.builds(bridge_pb2.GetReportRequest, job_id=job_id)
    if rpc == "ListJobs":
        return st.builds(bridge_pb2.ListJobsRequest, project=TEXT, limit=U32)
    if rpc == "GetCapabilities":
        return st.just(bridge_pb2.GetCapabilitiesRequest())
    if rpc == "DeleteJob":
        return st.builds(bridge_pb2.DeleteJobRequest, job_id=job_id, reason=TEXT)
    if rpc == "EstimateJob":
        return st.builds(bridge_pb2.EstimateJobRequest, project=st.one_of(st.just("demo"), TEXT), frame_count=U32,
                         resolution=st.builds(shot_pb2.Resolution, width=U32, height=U32),
                         generation=generation(), scheduling=scheduling())
    raise AssertionError(rpc)


# ------------------------------------------------------------------ checks
def _check_status(bridge, code: grpc.StatusCode, message: str) -> None:
    assert code in ALLOWED, f"{code.name}: {message}"
    data_dir = str(bridge.config.data_dir)
    assert data_dir not in message and str(Path(data_dir).resolve()) not in message, message
    assert not LEAKS.search(message), message


def _call(bridge, stub, rpc: str, request) -> None:
    try:
        if rpc == "WatchJob":
            for _ in getattr(stub, rpc)(request, timeout=DEADLINE_S):
                pass
        else:
            getattr(stub, rpc)(request, timeout=DEADLINE_S)
    except grpc.RpcError as exc:
        code, message = exc.code(), exc.details() or ""   # type: ignore[attr-defined]
        assert code is not grpc.StatusCode.DEADLINE_EXCEEDED or rpc == "WatchJob", f"{rpc} hung: {message}"
        _check_status(bridge, code, message)


def _snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _healthy(bridge) -> None:
    with grpc.insecure_channel(bridge.address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        caps = bridge_pb2_grpc.BridgeStub(channel).GetCapabilities(bridge_pb2.GetCapabilitiesRequest(), timeout=5)
        assert caps.protocol_version == "greenlight.v1"


@pytest.fixture
def fuzz_bridge(start_bridge, small_shot, tmp_path):
    """A bridge with a fast backend and two real jobs (ended) for the fuzz to hit."""
    from bridge.client import BridgeClient

    bridge = start_bridge(backends={"paced": PacedBackend(frame_s=0.0)}, data_dir=tmp_path / "data")
    with BridgeClient(bridge.address) as client:
        jobs = [client.submit(small_shot, GenerationSettings(backend="paced"), request_id=f"seed-{i}").job.job_id
                for i in range(2)]
        for job_id in jobs:
            list(client.watch(job_id))
    outside = _snapshot(tmp_path)
    cwd = set(os.listdir())   # the bridge resolves nothing against the working folder either
    yield bridge, jobs
    assert {p for p in _snapshot(tmp_path) - outside if not p.startswith("data")} == set(), \
        "something was written outside the data folder"
    assert set(os.listdir()) - cwd - {".pytest_cache", ".hypothesis"} == set()


UNARY_AND_WATCH = ["WatchJob", "CancelJob", "RunJobNow", "GetJob", "ListJobs", "GetReport", "GetCapabilities",
                   "DeleteJob", "EstimateJob"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("rpc", UNARY_AND_WATCH)
def test_every_request_gets_a_clean_status(fuzz_bridge, rpc):
    bridge, jobs = fuzz_bridge
    with grpc.insecure_channel(bridge.address) as channel:
        stub = bridge_pb2_grpc.BridgeStub(channel)

        @FUZZ
        @given(request=_requests(rpc, jobs))
        def run(request):
            _call(bridge, stub, rpc, request)

        run()
    _healthy(bridge)


# ------------------------------------------------------------------ SubmitShot streams
@st.composite
def submit_streams(draw, data: bytes, shot) -> list[bridge_pb2.SubmitChunk]:
    """A valid upload, then mutated: header fields, the data (truncated,
    garbled, extended), the chunking, the order of messages."""
    header = bridge_pb2.SubmitHeader(
        request_id=draw(st.one_of(st.just(f"fuzz-{draw(st.integers(0, 10**9))}"), TEXT)),
        generation=generation_to_pb(GenerationSettings(backend="paced")), shot_bytes=len(data),
        shot_sha256=hashlib.sha256(data).digest(), project=shot.tags.project, frame_count=shot.frame_count,
        resolution=shot_pb2.Resolution(width=shot.width, height=shot.height))
    body = data
    mutations = draw(st.lists(st.sampled_from([
        "generation", "scheduling", "project", "frame_count", "resolution", "shot_bytes", "sha", "truncate",
        "garble", "extend", "junk", "two_headers", "data_first", "empty", "header_only"]), max_size=3))
    for m in mutations:
        if m == "generation":
            header.generation.CopyFrom(draw(generation()))
        elif m == "scheduling":
            header.scheduling.CopyFrom(draw(scheduling()))
        elif m == "project":
            header.project = draw(TEXT)
        elif m == "frame_count":
            header.frame_count = draw(U32)
        elif m == "resolution":
            header.resolution.width, header.resolution.height = draw(U32), draw(U32)
        elif m == "shot_bytes":
            header.shot_bytes = draw(U64)
        elif m == "sha":
            header.shot_sha256 = draw(st.binary(max_size=40))
        elif m == "truncate":
            body = body[:draw(st.integers(0, max(0, len(body) - 1)))]
        elif m == "garble" and body:
            at = draw(st.integers(0, len(body) - 1))
            body = body[:at] + bytes([body[at] ^ draw(st.integers(1, 255))]) + body[at + 1:]
        elif m == "extend":
            body = body + draw(st.binary(min_size=1, max_size=64))
        elif m == "junk":
            body = draw(st.binary(max_size=2048))
            if draw(st.booleans()):   # a junk body with a matching header: it reaches the parser
                header.shot_bytes, header.shot_sha256 = len(body), hashlib.sha256(body).digest()
    chunk = draw(st.sampled_from([1024, 16 * 1024, 64 * 1024, 1 << 20]))
    messages = [bridge_pb2.SubmitChunk(header=header)]
    messages += [bridge_pb2.SubmitChunk(data=body[i:i + chunk]) for i in range(0, len(body), chunk)]
    if "two_headers" in mutations:
        messages.insert(draw(st.integers(1, len(messages))), bridge_pb2.SubmitChunk(header=header))
    if "data_first" in mutations:
        messages = messages[1:] + messages[:1]
    if "header_only" in mutations:
        messages = messages[:1]
    if "empty" in mutations:
        messages = []
    return messages


@pytest.mark.timeout(120)
def test_every_upload_gets_a_clean_status_and_leaves_nothing_half_written(fuzz_bridge, small_shot):
    bridge, _ = fuzz_bridge
    data = shot_to_pb(small_shot).SerializeToString()
    incoming = bridge.manager.store.incoming_dir
    with grpc.insecure_channel(bridge.address) as channel:
        stub = bridge_pb2_grpc.BridgeStub(channel)

        @FUZZ
        @given(messages=submit_streams(data, small_shot))
        def run(messages):
            try:
                stub.SubmitShot(iter(messages), timeout=DEADLINE_S)
            except grpc.RpcError as exc:
                code, message = exc.code(), exc.details() or ""   # type: ignore[attr-defined]
                assert code is not grpc.StatusCode.DEADLINE_EXCEEDED, f"SubmitShot hung: {message}"
                _check_status(bridge, code, message)
            assert list(incoming.iterdir()) == [], "a finished upload left its temp folder behind"

        run()
    _healthy(bridge)
    assert os.path.isdir(bridge.config.data_dir)
