"""Every RPC x who is calling, against a real bridge with tokens: the status
each gets is the documented one (the table below is the documentation; the
coordinator copies it into docs/security.md).

| RPC             | no token        | wrong token     | other project's token | own token           |
|-----------------|-----------------|-----------------|-----------------------|---------------------|
| SubmitShot      | UNAUTHENTICATED | UNAUTHENTICATED | PERMISSION_DENIED     | OK                  |
| WatchJob        | UNAUTHENTICATED | UNAUTHENTICATED | NOT_FOUND             | OK                  |
| CancelJob       | UNAUTHENTICATED | UNAUTHENTICATED | NOT_FOUND             | OK                  |
| RunJobNow       | UNAUTHENTICATED | UNAUTHENTICATED | NOT_FOUND             | FAILED_PRECONDITION |
| GetJob          | UNAUTHENTICATED | UNAUTHENTICATED | NOT_FOUND             | OK                  |
| ListJobs        | UNAUTHENTICATED | UNAUTHENTICATED | PERMISSION_DENIED     | OK                  |
| GetReport       | UNAUTHENTICATED | UNAUTHENTICATED | NOT_FOUND             | OK                  |
| GetCapabilities | UNAUTHENTICATED | UNAUTHENTICATED | OK                    | OK                  |
| EstimateJob     | UNAUTHENTICATED | UNAUTHENTICATED | PERMISSION_DENIED     | OK                  |
| DeleteJob       | UNAUTHENTICATED | UNAUTHENTICATED | NOT_FOUND             | OK                  |

A job of another project is NOT_FOUND, never PERMISSION_DENIED: a token
cannot learn which job ids exist elsewhere. A request that names a project
(SubmitShot's header, ListJobs, EstimateJob) is PERMISSION_DENIED. Health
(grpc.health.v1) answers without a token. (RunJobNow on the caller's own,
already finished job is FAILED_PRECONDITION: it is not waiting.)
"""

from __future__ import annotations

import hashlib

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bridge.client import BridgeClient
from bridge.proto.greenlight.v1 import bridge_pb2, bridge_pb2_grpc, shot_pb2
from bridge.shot.request import GenerationSettings
from bridge.shot.wire import generation_to_pb, shot_to_pb
from tests.helpers.backends import PacedBackend

TOKENS = {"tok-alpha": "alpha", "tok-beta": "beta"}
CALLERS = {"no token": None, "wrong token": "tok-guess", "other project's token": "tok-beta",
           "own token": "tok-alpha"}
U, P, N, F, OK = ("UNAUTHENTICATED", "PERMISSION_DENIED", "NOT_FOUND", "FAILED_PRECONDITION", "OK")
#                 no token, wrong token, other project's token, own token
TABLE = {
    "SubmitShot": (U, U, P, OK),
    "WatchJob": (U, U, N, OK),
    "CancelJob": (U, U, N, OK),
    "RunJobNow": (U, U, N, F),
    "GetJob": (U, U, N, OK),
    "ListJobs": (U, U, P, OK),
    "GetReport": (U, U, N, OK),
    "GetCapabilities": (U, U, OK, OK),
    "EstimateJob": (U, U, P, OK),
    "DeleteJob": (U, U, N, OK),   # last: the own token's call deletes the job
}
PACED = GenerationSettings(backend="paced")


def test_the_table_covers_every_rpc():
    methods = [m.name for m in bridge_pb2.DESCRIPTOR.services_by_name["Bridge"].methods]
    assert sorted(TABLE) == sorted(methods)


def _requests(shot, job_id: str, n: int):
    data = shot_to_pb(shot).SerializeToString()
    header = bridge_pb2.SubmitHeader(
        request_id=f"matrix-{n}", generation=generation_to_pb(PACED), shot_bytes=len(data),
        shot_sha256=hashlib.sha256(data).digest(), project=shot.tags.project, frame_count=shot.frame_count,
        resolution=shot_pb2.Resolution(width=shot.width, height=shot.height))
    return {
        "SubmitShot": iter([bridge_pb2.SubmitChunk(header=header), bridge_pb2.SubmitChunk(data=data)]),
        "WatchJob": bridge_pb2.WatchJobRequest(job_id=job_id),
        "CancelJob": bridge_pb2.CancelJobRequest(job_id=job_id, reason="matrix"),
        "RunJobNow": bridge_pb2.RunJobNowRequest(job_id=job_id),
        "GetJob": bridge_pb2.GetJobRequest(job_id=job_id),
        "ListJobs": bridge_pb2.ListJobsRequest(project="alpha"),
        "GetReport": bridge_pb2.GetReportRequest(job_id=job_id),
        "GetCapabilities": bridge_pb2.GetCapabilitiesRequest(),
        "EstimateJob": bridge_pb2.EstimateJobRequest(
            project="alpha", frame_count=shot.frame_count,
            resolution=shot_pb2.Resolution(width=shot.width, height=shot.height), generation=generation_to_pb(PACED)),
        "DeleteJob": bridge_pb2.DeleteJobRequest(job_id=job_id, reason="matrix"),
    }


def _code(stub, rpc: str, request, token: str | None) -> str:
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    try:
        reply = getattr(stub, rpc)(request, timeout=10, metadata=metadata)
        if rpc == "WatchJob":
            list(reply)
    except grpc.RpcError as exc:
        return exc.code().name   # type: ignore[attr-defined]
    return "OK"


def test_every_rpc_for_every_caller(start_bridge, small_shot):
    bridge = start_bridge(backends={"paced": PacedBackend(frame_s=0.0)}, tokens=TOKENS)
    shot = small_shot.with_tags(project="alpha")
    with BridgeClient(bridge.address, token="tok-alpha") as alpha:
        job_id = alpha.submit(shot, PACED).job.job_id
        list(alpha.watch(job_id))   # ended: it has a report, and may be deleted
    got: dict[str, tuple[str, ...]] = {}
    with grpc.insecure_channel(bridge.address) as channel:
        stub = bridge_pb2_grpc.BridgeStub(channel)
        for n, token in enumerate(CALLERS.values()):
            requests = _requests(shot, job_id, n)
            for rpc in TABLE:
                got[rpc] = (*got.get(rpc, ()), _code(stub, rpc, requests[rpc], token))
        # health needs no token
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    wrong = {rpc: (got[rpc], want) for rpc, want in TABLE.items() if got[rpc] != want}
    assert wrong == {}, "(got, documented) per RPC, columns: " + ", ".join(CALLERS)


@pytest.mark.parametrize("caller", ["no token", "wrong token"])
def test_unauthenticated_callers_learn_nothing(start_bridge, small_shot, caller):
    """The refusal is the same whether or not the job exists."""
    bridge = start_bridge(backends={"paced": PacedBackend(frame_s=0.0)}, tokens=TOKENS)
    with BridgeClient(bridge.address, token="tok-alpha") as alpha:
        job_id = alpha.submit(small_shot.with_tags(project="alpha"), PACED).job.job_id
    with grpc.insecure_channel(bridge.address) as channel:
        stub = bridge_pb2_grpc.BridgeStub(channel)
        metadata = (("authorization", f"Bearer {CALLERS[caller]}"),) if CALLERS[caller] else ()
        details = set()
        for target in (job_id, "no-such-job"):
            with pytest.raises(grpc.RpcError) as err:
                stub.GetJob(bridge_pb2.GetJobRequest(job_id=target), timeout=10, metadata=metadata)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED   # type: ignore[attr-defined]
            details.add(err.value.details())   # type: ignore[attr-defined]
        assert len(details) == 1


def test_audited_rpcs_name_the_caller_and_the_outcome(start_bridge, small_shot):
    import json

    from bridge.server.auth import hash_token, token_id

    bridge = start_bridge(backends={"paced": PacedBackend(frame_s=0.0)}, tokens=TOKENS)
    with BridgeClient(bridge.address, token="tok-alpha") as alpha, \
            BridgeClient(bridge.address, token="tok-beta") as beta:
        job_id = alpha.submit(small_shot.with_tags(project="alpha"), PACED).job.job_id
        list(alpha.watch(job_id))                 # a download
        alpha.cancel(job_id, "too late, but said")
        with pytest.raises(Exception):            # noqa: B017 - the code is what the log must say
            beta.cancel(job_id, "not mine")
        alpha.delete(job_id, "clean up")
    lines = [json.loads(line) for line in (bridge.config.data_dir / "audit.jsonl").read_text().splitlines()]
    seen = [(e["rpc"], e["token_id"], e["job"], e["outcome"]) for e in lines]
    a, b = token_id(hash_token("tok-alpha")), token_id(hash_token("tok-beta"))
    # a refusal is recorded without holding up its status, so only the successes' order is fixed
    assert seen[:3] == [("SubmitShot", a, job_id, "ok"), ("WatchJob", a, job_id, "ok"),
                        ("CancelJob", a, job_id, "ok")]
    assert sorted(seen[3:]) == [("CancelJob", b, job_id, "NOT_FOUND"), ("DeleteJob", a, job_id, "ok")]
    assert lines[2]["detail"]["reason"] == "too late, but said" and lines[2]["project"] == "alpha"
    assert "tok-alpha" not in (bridge.config.data_dir / "audit.jsonl").read_text()
