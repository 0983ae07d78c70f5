"""Errors keep their type across the wire (STYLE practice 18): a real bridge
on loopback raises each error class on a real path, and the client catches
the same class with the same fields, for unary, stream-unary (SubmitShot)
and server-streaming (WatchJob) calls. Plus: every class in
``bridge.errors.__all__`` round-trips through the encoder and decoder without
a server, and a status without details (an older bridge) still gives the
class for its code."""

import dataclasses
import hashlib
from concurrent import futures

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from bridge import errors
from bridge.client import BridgeClient
from bridge.client.status import DETAILS_KEY, error_from_status
from bridge.errors import (
    BackendError,
    BridgeUnavailableError,
    DeadlineExceededError,
    GreenlightError,
    InternalError,
    InvalidArgumentError,
    LimitExceededError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionError,
    ShotValidationError,
    UnauthenticatedError,
)
from bridge.proto.greenlight.v1 import bridge_pb2, bridge_pb2_grpc, shot_pb2
from bridge.server import status as server_status
from bridge.server.config import Limits
from bridge.shot.request import GenerationSettings
from bridge.shot.wire import generation_to_pb, shot_to_pb
from tests.helpers.backends import PacedBackend

TOKENS = {"tok-a": "alpha", "tok-b": "beta"}


def _header(data: bytes, **kw) -> bridge_pb2.SubmitHeader:
    """A header for ``data``; its shot facts are the ``small_shot`` fixture's (demo, 6 frames, 64x36)."""
    fields = dict(request_id="r", generation=generation_to_pb(GenerationSettings()), shot_bytes=len(data),
                  shot_sha256=hashlib.sha256(data).digest(), project="demo", frame_count=6,
                  resolution=shot_pb2.Resolution(width=64, height=36))
    fields.update(kw)
    return bridge_pb2.SubmitHeader(**fields)


def _caught(excinfo, cls, **fields):
    err = excinfo.value
    assert type(err) is cls, f"{type(err).__name__}: {err}"
    assert err.code == cls.code
    for name, value in fields.items():
        assert getattr(err, name) == value, name
    return err


def _raw_status(call) -> status_pb2.Status:
    """The rich status a generic gRPC client sees (grpcio-status)."""
    with pytest.raises(grpc.RpcError) as err:
        call()
    status = rpc_status.from_call(err.value)
    assert status is not None, "no google.rpc.Status details"
    return status


def _unpack(status: status_pb2.Status, kind):
    found = []
    for detail in status.details:
        msg = kind()
        if detail.Unpack(msg):
            found.append(msg)
    return found


# ------------------------------------------------------------ real bridge
def test_limits_keep_limit_value_and_maximum(start_bridge, small_shot):
    bridge = start_bridge(limits=Limits(max_frames=4, max_upload_bytes=200_000, max_chunk_bytes=64 * 1024))
    data = shot_to_pb(small_shot).SerializeToString()
    with BridgeClient(bridge.address) as client:
        big = dataclasses.replace(small_shot, frames=small_shot.frames * 8)     # over max_upload_bytes
        big = dataclasses.replace(big, frames=tuple(dataclasses.replace(f, index=i) for i, f in enumerate(big.frames)))
        big_bytes = len(shot_to_pb(big).SerializeToString())
        assert big_bytes > 200_000
        with pytest.raises(LimitExceededError) as err:       # the header's check, before any data
            client.submit(big, chunk_bytes=32 * 1024)
        _caught(err, LimitExceededError, limit="max_upload_bytes", value=big_bytes, maximum=200_000)
        with pytest.raises(LimitExceededError) as err:       # the header's frame count, before any data
            client.submit(small_shot, chunk_bytes=32 * 1024)
        _caught(err, LimitExceededError, limit="max_frames", value=6, maximum=4)
        with pytest.raises(LimitExceededError) as err:       # mid-stream
            client.submit_bytes(_header(data[:100_000], shot_bytes=100_000, frame_count=4), data[:100_000],
                                chunk_bytes=100_000)
        _caught(err, LimitExceededError, limit="max_chunk_bytes", value=100_000, maximum=64 * 1024)


def test_shot_validation_keeps_field_and_detail(start_bridge, small_shot):
    bridge = start_bridge()
    nan = dataclasses.replace(small_shot.frames[0], depth_m=np.full((36, 64), np.nan, np.float32))
    bad_shots = {
        "tags.shot": (small_shot.with_tags(shot=""), "is required"),   # (the header already names the project)
        "frames[0].depth_m": (dataclasses.replace(small_shot, frames=(nan,) + small_shot.frames[1:]),
                              "2304 NaN values; depth must be metres >= 0"),
    }
    with BridgeClient(bridge.address) as client:
        for field, (shot, detail) in bad_shots.items():
            data = shot_to_pb(shot).SerializeToString()   # past the client's own validation
            with pytest.raises(ShotValidationError) as err:
                client.submit_bytes(_header(data), data)
            _caught(err, ShotValidationError, field=field, detail=detail)
            assert str(err.value) == f"{field}: {detail}"


def test_invalid_argument_is_not_a_shot_validation_error(start_bridge, small_shot):
    bridge = start_bridge()
    data = shot_to_pb(small_shot).SerializeToString()
    with BridgeClient(bridge.address) as client:
        with pytest.raises(InvalidArgumentError) as err:
            client.submit(small_shot, GenerationSettings(backend="sdxl"))
        _caught(err, InvalidArgumentError, field="generation.backend")   # as raised, never parsed from the text
        assert "unknown backend 'sdxl'" in str(err.value)
        with pytest.raises(InvalidArgumentError) as err:
            client.submit_bytes(_header(data, shot_sha256=b"short"), data)
        _caught(err, InvalidArgumentError, field="header.shot_sha256")


def test_not_found_unary_and_streaming(start_bridge):
    bridge = start_bridge()
    with BridgeClient(bridge.address) as client:
        with pytest.raises(NotFoundError) as err:
            client.job("nope")
        _caught(err, NotFoundError)
        assert str(err.value) == "job 'nope' not found"
        with pytest.raises(NotFoundError) as err:
            list(client.watch("nope"))
        _caught(err, NotFoundError)
        with pytest.raises(NotFoundError) as err:
            client.cancel("nope")
        _caught(err, NotFoundError)


def test_unauthenticated_and_permission_denied(start_bridge, small_shot):
    bridge = start_bridge(tokens=TOKENS)
    with BridgeClient(bridge.address, token="guess") as guesser:
        with pytest.raises(UnauthenticatedError) as err:
            guesser.capabilities()
        _caught(err, UnauthenticatedError)
        with pytest.raises(UnauthenticatedError) as err:          # stream-unary
            guesser.submit(small_shot.with_tags(project="alpha"))
        _caught(err, UnauthenticatedError)
        with pytest.raises(UnauthenticatedError) as err:          # server streaming
            list(guesser.watch("any"))
        _caught(err, UnauthenticatedError)
    with BridgeClient(bridge.address, token="tok-b") as bob:
        with pytest.raises(PermissionDeniedError) as err:
            bob.jobs("alpha")
        _caught(err, PermissionDeniedError)
        with pytest.raises(PermissionDeniedError) as err:
            bob.submit(small_shot.with_tags(project="alpha"))
        _caught(err, PermissionDeniedError)


def test_precondition_on_a_running_job(start_bridge, small_shot):
    bridge = start_bridge(backends={"paced": PacedBackend(frame_s=0.2)})
    with BridgeClient(bridge.address) as client:
        job = client.submit(small_shot, GenerationSettings(backend="paced"), request_id="req-1").job
        with pytest.raises(PreconditionError) as err:
            client.report(job.job_id)
        _caught(err, PreconditionError)
        assert "its report exists once it has ended" in str(err.value)
        with pytest.raises(PreconditionError) as err:         # stream-unary: a request id reused
            client.submit(small_shot.with_tags(version=2), GenerationSettings(backend="paced"),
                          request_id="req-1")
        _caught(err, PreconditionError)
        client.cancel(job.job_id)


class _BrokenBackend(PacedBackend):
    id = "broken"

    def check_inputs(self, shot, settings):
        raise BackendError("backend 'broken' cannot take jobs right now")


def test_backend_error(start_bridge, small_shot):
    bridge = start_bridge(backends={"broken": _BrokenBackend()})
    with BridgeClient(bridge.address) as client:
        with pytest.raises(BackendError) as err:
            client.submit(small_shot, GenerationSettings(backend="broken"))
        _caught(err, BackendError)
        assert str(err.value) == "backend 'broken' cannot take jobs right now"


def test_unreachable_bridge_is_bridge_unavailable(start_bridge):
    bridge = start_bridge()
    address = bridge.address
    bridge.stop(grace=0)
    with BridgeClient(address, timeout_s=5, reconnect_s=0) as client:
        with pytest.raises(BridgeUnavailableError) as err:
            client.job("x")
        _caught(err, BridgeUnavailableError)
        assert address in str(err.value)
        with pytest.raises(BridgeUnavailableError):
            client.submit_bytes(_header(b"x"), b"x", retries=0)
        with pytest.raises(BridgeUnavailableError):
            list(client.watch("x"))


def test_a_submit_retry_outlasts_a_bridge_restart(start_bridge, small_shot):
    """The bridge goes down after accepting a job; the same submit (same
    request id) retries while it is down and gets the same job from the
    bridge restarted on the same port and data folder."""
    import threading
    import time

    from bridge.server.app import create_server

    paced = GenerationSettings(backend="paced")
    first = start_bridge(backends={"paced": PacedBackend(frame_s=0.0)})
    config = first.config   # the bound port, the same data folder
    with BridgeClient(first.address, timeout_s=5) as client:
        job = client.submit(small_shot, paced, request_id="survives").job
        first.stop(grace=0)
        restarted = []

        def restart():
            time.sleep(1.5)   # the client is mid-retry by then
            restarted.append(create_server(config, backends={"paced": PacedBackend(frame_s=0.0)}))

        thread = threading.Thread(target=restart)
        thread.start()
        try:
            started = time.monotonic()
            again = client.submit(small_shot, paced, request_id="survives", retry_s=20)
            waited = time.monotonic() - started
        finally:
            thread.join(20)
        try:
            assert again.duplicate and again.job.job_id == job.job_id
            assert waited >= 1.0                        # it did wait for the restart
            assert len(client.jobs("demo")) == 1        # and made no second job
        finally:
            for bridge in restarted:
                bridge.stop(grace=0)
    with BridgeClient(first.address, timeout_s=5) as client:   # no bridge: it gives up when told to
        started = time.monotonic()
        with pytest.raises(BridgeUnavailableError):
            client.submit(small_shot, paced, retry_s=1.0)
        assert time.monotonic() - started < 5


def test_a_second_bridge_on_a_busy_port_fails_clearly_and_holds_nothing(start_bridge, tmp_path):
    from bridge.server.app import create_server
    from bridge.server.config import BridgeConfig

    first = start_bridge(backends={"paced": PacedBackend(frame_s=0.0)})
    other_dir = tmp_path / "second"
    config = BridgeConfig(data_dir=other_dir, port=first.port, meter="estimate")
    with pytest.raises(PreconditionError, match=f"could not listen on 127.0.0.1:{first.port}: the address is in use"):
        create_server(config, backends={"paced": PacedBackend(frame_s=0.0)})
    # the failed start let go of its data folder: a bridge on another port takes it at once
    from dataclasses import replace

    second = create_server(replace(config, port=0), backends={"paced": PacedBackend(frame_s=0.0)})
    try:
        with BridgeClient(second.address) as client:
            assert client.capabilities().protocol_version == "greenlight.v1"
    finally:
        second.stop(grace=0)
    with BridgeClient(first.address) as client:   # the first one was never disturbed
        assert client.capabilities().protocol_version == "greenlight.v1"


def test_generic_tools_see_the_standard_details(start_bridge, small_shot):
    """QuotaFailure / BadRequest / PreconditionFailure beside ErrorInfo, read
    with grpcio-status as any gRPC client would."""
    bridge = start_bridge(limits=Limits(max_upload_bytes=1000), backends={"paced": PacedBackend(frame_s=0.2)})
    data = shot_to_pb(small_shot).SerializeToString()
    with grpc.insecure_channel(bridge.address) as channel:
        stub = bridge_pb2_grpc.BridgeStub(channel)
        status = _raw_status(lambda: stub.SubmitShot(iter([bridge_pb2.SubmitChunk(header=_header(data))]), timeout=10))
        assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        (info,) = _unpack(status, error_details_pb2.ErrorInfo)
        assert (info.reason, info.domain) == ("LimitExceededError", "greenlight.v1")
        assert dict(info.metadata) == {"limit": "max_upload_bytes", "value": str(len(data)), "maximum": "1000"}
        (quota,) = _unpack(status, error_details_pb2.QuotaFailure)
        assert quota.violations[0].subject == "max_upload_bytes"
        assert quota.violations[0].description == status.message

        status = _raw_status(lambda: stub.SubmitShot(
            iter([bridge_pb2.SubmitChunk(header=_header(data[:10], shot_sha256=b"x"))]), timeout=10))
        (bad,) = _unpack(status, error_details_pb2.BadRequest)
        assert bad.field_violations[0].field == "header.shot_sha256"

        status = _raw_status(lambda: stub.GetJob(bridge_pb2.GetJobRequest(job_id="nope"), timeout=10))
        (info,) = _unpack(status, error_details_pb2.ErrorInfo)
        assert info.reason == "NotFoundError"
        assert dict(info.metadata) == {"resource_type": "job", "resource_name": "nope"}
        (resource,) = _unpack(status, error_details_pb2.ResourceInfo)
        assert (resource.resource_type, resource.resource_name) == ("job", "nope")

        status = _raw_status(lambda: list(stub.WatchJob(bridge_pb2.WatchJobRequest(job_id="nope"), timeout=10)))
        assert _unpack(status, error_details_pb2.ErrorInfo)[0].reason == "NotFoundError"


def test_an_unexpected_failure_is_internal_with_a_log_reference_only(start_bridge, caplog):
    """A bug (not a Greenlight error) in a handler: INTERNAL, a short id that
    names the log entry, and none of the exception's text or the server's paths."""
    bridge = start_bridge()
    secret = str(bridge.config.data_dir / "jobs" / "x.db")

    def broken(*args, **kwargs):
        raise OSError(f"[Errno 5] Input/output error: {secret!r}")

    bridge.manager.get = broken
    import re

    with BridgeClient(bridge.address) as client, caplog.at_level("ERROR", logger="bridge.server.service"):
        for call in (lambda: client.job("x"), lambda: list(client.watch("x"))):
            with pytest.raises(InternalError) as err:
                call()
            message = str(err.value)
            ref = re.fullmatch(r"internal error ([0-9a-f]{8}); see the bridge log", message)
            assert ref, message
            assert secret not in message and "OSError" not in message and "Errno" not in message
            logged = [r for r in caplog.records if ref.group(1) in r.getMessage()]
            assert logged and logged[0].exc_info is not None   # the traceback is in the log, under that id
        assert client.capabilities().protocol_version == "greenlight.v1"   # and the bridge serves on


# ------------------------------------------------------------ without a server
SAMPLES = {
    GreenlightError: GreenlightError("something went wrong"),
    InvalidArgumentError: InvalidArgumentError("header.request_id: must be 1-128 characters, got 0",
                                               field="header.request_id"),
    ShotValidationError: ShotValidationError("frames[3].depth_m", "2304 NaN values"),
    LimitExceededError: LimitExceededError("max_upload_bytes", 10**9, 200_000),
    NotFoundError: NotFoundError("job 'x' not found", resource_type="job", resource_name="x"),
    UnauthenticatedError: UnauthenticatedError("unknown token"),
    PermissionDeniedError: PermissionDeniedError("this token is for project 'a', not 'b'"),
    PreconditionError: PreconditionError("job x is running; its report exists once it has ended"),
    DeadlineExceededError: DeadlineExceededError("SubmitShot: nothing received for 30 s"),
    BackendError: BackendError("the backend failed"),
    InternalError: InternalError("internal error 1a2b3c4d; see the bridge log"),
    BridgeUnavailableError: BridgeUnavailableError("cannot reach the Greenlight bridge"),
}


def _round_trip(err: GreenlightError) -> GreenlightError:
    status = server_status.to_status(err)
    return error_from_status(status.code, status.details, status.trailing_metadata)


def test_every_error_class_has_a_sample():
    classes = {obj for name in errors.__all__ if isinstance(obj := getattr(errors, name), type)}
    assert classes == set(SAMPLES), "add a sample for each new error class"


@pytest.mark.parametrize("cls", list(SAMPLES), ids=lambda c: c.__name__)
def test_every_error_class_round_trips(cls):
    err = SAMPLES[cls]
    assert type(err) is cls
    assert set(err.details()) == set(cls.wire_fields), "give the sample every field"
    back = _round_trip(err)
    assert type(back) is cls
    assert str(back) == str(err) and back.code == err.code
    # every attribute the class sets travels (an undeclared one fails here)
    assert vars(back) == vars(err)


def test_numbers_round_trip_exactly():
    err = LimitExceededError("scheduling.max_co2e_g", 0.1 + 0.2, 1e-7)
    back = _round_trip(err)
    assert (back.value, back.maximum) == (0.1 + 0.2, 1e-7)
    back = _round_trip(LimitExceededError("max_frames", 12, 8))
    assert (back.value, back.maximum) == (12, 8) and isinstance(back.value, int)


def test_a_subclass_defined_elsewhere_arrives_as_its_nearest_class():
    class CapacityLikeError(LimitExceededError):     # like scheduling's CapacityError
        def __init__(self, message):
            GreenlightError.__init__(self, message)
            self.limit, self.value, self.maximum = "site capacity before the deadline", None, None

    back = _round_trip(CapacityLikeError("no site has a free device before the deadline"))
    assert type(back) is LimitExceededError
    assert (back.limit, back.value, back.maximum) == ("site capacity before the deadline", None, None)
    assert str(back) == "no site has a free device before the deadline"


def test_unknown_reason_or_mismatched_code_falls_back_to_the_code():
    back = GreenlightError.from_parts("QuotaError2", "m", {"limit": "gpus", "unknown": "x"}, "RESOURCE_EXHAUSTED")
    assert type(back) is LimitExceededError and back.limit == "gpus" and back.value is None
    back = GreenlightError.from_parts("ShotValidationError", "m", {"field": "f"}, "NOT_FOUND")
    assert type(back) is NotFoundError
    back = GreenlightError.from_parts(None, "too slow", {}, "DEADLINE_EXCEEDED")
    assert type(back) is DeadlineExceededError and back.code == "DEADLINE_EXCEEDED"
    back = GreenlightError.from_parts(None, "m", {}, "DATA_LOSS")   # a code with no class of its own
    assert type(back) is GreenlightError and back.code == "DATA_LOSS"
    # INTERNAL without details stays the general class for the code (older bridges sent it for backends)
    assert type(GreenlightError.from_parts(None, "m", {}, "INTERNAL")) is BackendError
    assert type(GreenlightError.from_parts("InternalError", "m", {}, "INTERNAL")) is InternalError
    assert type(errors.error_for_code("INVALID_ARGUMENT", "m")) is InvalidArgumentError


def test_corrupt_or_foreign_details_fall_back_to_the_code():
    code = grpc.StatusCode.INVALID_ARGUMENT
    assert type(error_from_status(code, "m", [(DETAILS_KEY, b"\xff\xff not a status")])) is InvalidArgumentError
    foreign = status_pb2.Status(code=code.value[0], message="m")
    foreign.details.add().Pack(error_details_pb2.ErrorInfo(reason="ShotValidationError", domain="example.com"))
    assert type(error_from_status(code, "m", [(DETAILS_KEY, foreign.SerializeToString())])) is InvalidArgumentError
    other_code = status_pb2.Status(code=grpc.StatusCode.NOT_FOUND.value[0], message="m")
    other_code.details.add().Pack(error_details_pb2.ErrorInfo(reason="NotFoundError", domain="greenlight.v1"))
    assert type(error_from_status(code, "m", [(DETAILS_KEY, other_code.SerializeToString())])) is InvalidArgumentError
    assert type(error_from_status(code, "", None)) is InvalidArgumentError


def test_long_messages_drop_details_before_the_trailer_limit():
    # message + BadRequest (which repeats it) over the budget: ErrorInfo alone still fits
    err = InvalidArgumentError("x" * 1500, field="f")
    status = server_status.rich_status(err)
    assert [d.type_url.rsplit(".", 1)[-1] for d in status.details] == ["ErrorInfo"]
    assert 1500 + status.ByteSize() <= server_status.MAX_TRAILER_BYTES
    assert _round_trip(err).field == "f"
    # non-ASCII travels percent-encoded in grpc-message: 6 bytes per "é"
    assert server_status.rich_status(InvalidArgumentError("é" * 500, field="f")) is None
    huge = InvalidArgumentError("x" * 5000, field="f")
    assert server_status.rich_status(huge) is None
    assert server_status.to_status(huge).trailing_metadata == ()
    back = _round_trip(huge)
    assert type(back) is InvalidArgumentError and back.field is None and str(back) == "x" * 5000


# ------------------------------------------------------------ older bridges
class _OldBridge(bridge_pb2_grpc.BridgeServicer):
    """Statuses as a bridge before typed errors sent them: code and text only."""

    def GetJob(self, request, context):
        context.abort(grpc.StatusCode.NOT_FOUND, f"job {request.job_id!r} not found")

    def SubmitShot(self, request_iterator, context):
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "max_upload_bytes: 9 exceeds the bridge's limit of 1")

    def WatchJob(self, request, context):
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, "not yet")
        yield  # pragma: no cover

    def ListJobs(self, request, context):
        # a newer bridge: a class this client does not know, with a known code
        status = status_pb2.Status(code=grpc.StatusCode.INVALID_ARGUMENT.value[0], message="project: bad")
        status.details.add().Pack(error_details_pb2.ErrorInfo(
            reason="ProjectNameError", domain="greenlight.v1", metadata={"field": "project"}))
        context.abort_with_status(rpc_status.to_status(status))

    def GetCapabilities(self, request, context):
        server_status.abort(context, InvalidArgumentError("y" * 5000, field="f"))

    def GetReport(self, request, context):
        context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "took too long")


@pytest.fixture
def old_bridge():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    bridge_pb2_grpc.add_BridgeServicer_to_server(_OldBridge(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0).wait()


def test_statuses_without_details_rebuild_by_code(old_bridge):
    with BridgeClient(old_bridge, reconnect_s=0) as client:
        with pytest.raises(NotFoundError) as err:
            client.job("x")
        assert str(err.value) == "job 'x' not found"
        with pytest.raises(LimitExceededError) as err:
            client.submit_bytes(_header(b"x"), b"x")
        assert err.value.limit is None           # never parsed from the text
        with pytest.raises(PreconditionError):
            list(client.watch("x"))
        with pytest.raises(InvalidArgumentError) as err:
            client.jobs("p")
        _caught(err, InvalidArgumentError, field="project")
        with pytest.raises(InvalidArgumentError) as err:   # too long for details: the code still holds
            client.capabilities()
        assert str(err.value) == "y" * 5000
        with pytest.raises(DeadlineExceededError) as err:     # by its code alone
            client.report("x")
        assert type(err.value) is DeadlineExceededError and str(err.value) == "took too long"


def test_an_address_never_reached_fails_fast_a_known_bridge_is_waited_for(start_bridge, small_shot):
    """A wrong or dead address is reported after a short try (the add-ons
    show it at once); the long retry is for a bridge this client has reached,
    which may be restarting."""
    import time

    from bridge.client.client import FIRST_CONTACT_RETRY_S

    with BridgeClient("127.0.0.1:1", timeout_s=5, submit_retry_s=30) as client:
        started = time.monotonic()
        with pytest.raises(BridgeUnavailableError):
            client.submit(small_shot)
        assert time.monotonic() - started < FIRST_CONTACT_RETRY_S + 2
    bridge = start_bridge()
    with BridgeClient(bridge.address, timeout_s=5, submit_retry_s=6) as client:
        client.capabilities()
        bridge.stop(grace=0)
        started = time.monotonic()
        with pytest.raises(BridgeUnavailableError):
            client.submit(small_shot)
        assert time.monotonic() - started >= 2.5      # it waited for a restart that never came
