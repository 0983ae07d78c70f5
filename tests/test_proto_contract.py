"""The wire contract: committed stubs match protos/, and the live server's
reflection (when turned on: it is opt-in) lists exactly the services the
.proto files declare (+ health and reflection); health is always on."""

import grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from bridge.proto import codegen
from bridge.proto.greenlight.v1 import bridge_pb2


def test_committed_stubs_match_protos(tmp_path):
    written = codegen.generate(tmp_path)
    assert written, "codegen wrote nothing"
    for path in written:
        rel = path.relative_to(tmp_path)
        committed = codegen.PACKAGE_ROOT / rel
        assert committed.exists(), f"{rel} is not committed; run python -m bridge.proto.codegen"
        assert committed.read_text() == path.read_text(), (
            f"bridge/proto/{rel} is out of date with protos/; run python -m bridge.proto.codegen")


def _proto_services():
    names = set()
    for proto in codegen.PROTO_FILES:
        text = (codegen.PROTO_ROOT / proto).read_text()
        package = next(line.split()[1].rstrip(";") for line in text.splitlines() if line.startswith("package "))
        names |= {f"{package}.{line.split()[1]}" for line in text.splitlines() if line.startswith("service ")}
    return names


def test_reflection_lists_the_proto_services(start_bridge):
    bridge = start_bridge(reflection=True)
    with grpc.insecure_channel(bridge.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    listed = {s.name for s in replies[0].list_services_response.service}
    assert _proto_services() == {"greenlight.v1.Bridge"}
    assert listed == _proto_services() | {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}
    # every rpc of the descriptor the server registered is one the .proto declares
    methods = {m.name for m in bridge_pb2.DESCRIPTOR.services_by_name["Bridge"].methods}
    assert methods == {"SubmitShot", "WatchJob", "CancelJob", "RunJobNow", "GetJob", "ListJobs", "GetReport",
                       "GetCapabilities", "DeleteJob", "EstimateJob"}


def test_reflection_is_off_by_default(start_bridge):
    bridge = start_bridge()
    with grpc.insecure_channel(bridge.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        try:
            replies = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNIMPLEMENTED, exc
        else:
            raise AssertionError(f"reflection answered without being turned on: {replies}")
        # health is on all the same
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_health_reports_serving(start_bridge):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    bridge = start_bridge()
    with grpc.insecure_channel(bridge.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "greenlight.v1.Bridge"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_capabilities_advertise_every_limit(start_bridge):
    import dataclasses

    from bridge.client import BridgeClient
    from bridge.server.config import Limits

    limits = Limits(max_frames=7, max_steps=11, max_prompt_chars=99, max_output_width=320, max_output_height=240,
                    max_streams_per_client=5, max_streams_per_project=6, upload_idle_timeout_s=2.5,
                    min_free_disk_bytes=12345)
    bridge = start_bridge(limits=limits)
    with BridgeClient(bridge.address) as client:
        advertised = client.capabilities().limits
    names = {f.name for f in dataclasses.fields(Limits)}
    assert names == set(type(advertised).DESCRIPTOR.fields_by_name), "a limit the protocol does not advertise"
    assert {n: getattr(advertised, n) for n in names} == dataclasses.asdict(limits)
