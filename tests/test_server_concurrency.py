"""The bridge under many open streams (grpc.aio server, real loopback):
idle streams cost no thread, health and GetCapabilities stay responsive,
stalled uploads are aborted after the idle timeout with their temp folders
removed, and the per-client / per-project stream caps answer
RESOURCE_EXHAUSTED and are released on every exit path.

The clients are grpc.aio too, on one event loop, so the process's thread
count measures the server alone."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bridge.client import BridgeClient
from bridge.client.status import error_from_rpc
from bridge.errors import DeadlineExceededError, LimitExceededError
from bridge.proto.greenlight.v1 import bridge_pb2, bridge_pb2_grpc, shot_pb2
from bridge.server.config import Limits
from bridge.shot.request import GenerationSettings
from bridge.shot.wire import generation_to_pb, shot_to_pb
from tests.helpers.backends import PacedBackend

STREAMS = 64
PACED = GenerationSettings(backend="paced")


def _header(shot, data: bytes, request_id: str = "r") -> bridge_pb2.SubmitHeader:
    return bridge_pb2.SubmitHeader(
        request_id=request_id, generation=generation_to_pb(PACED), shot_bytes=len(data),
        shot_sha256=hashlib.sha256(data).digest(), project=shot.tags.project, frame_count=shot.frame_count,
        resolution=shot_pb2.Resolution(width=shot.width, height=shot.height))


def _os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def _until(check, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def _until_async(check, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]


def _busy_and_queued(bridge, small_shot) -> tuple[str, str]:
    """A slow running job and one queued behind it (the watchers' target)."""
    with BridgeClient(bridge.address) as client:
        running = client.submit(small_shot, PACED).job.job_id
        queued = client.submit(small_shot.with_tags(version=2), PACED).job.job_id
    return running, queued


def test_open_streams_cost_no_thread_and_health_stays_fast(start_bridge, small_shot):
    idle_s = 2.0
    bridge = start_bridge(backends={"paced": PacedBackend(frame_s=1.0)},
                          limits=Limits(upload_idle_timeout_s=idle_s))
    _, queued = _busy_and_queued(bridge, small_shot)
    data = shot_to_pb(small_shot).SerializeToString()
    incoming = bridge.manager.store.incoming_dir

    async def main():
        async with grpc.aio.insecure_channel(bridge.address) as channel:
            stub = bridge_pb2_grpc.BridgeStub(channel)
            health = health_pb2_grpc.HealthStub(channel)
            await stub.GetCapabilities(bridge_pb2.GetCapabilitiesRequest(), timeout=5)   # warm
            threads_before = _os_threads()
            release = asyncio.Event()

            watchers = [stub.WatchJob(bridge_pb2.WatchJobRequest(job_id=queued), timeout=60) for _ in range(STREAMS)]
            for call in watchers:   # each has its first (status) event: the stream is open on the server
                first = await call.read()
                assert first.status.job_id == queued

            async def stalled(i: int):
                async def requests():
                    yield bridge_pb2.SubmitChunk(header=_header(small_shot, data, f"stalled-{i}"))
                    await release.wait()   # ...and nothing more
                started = time.monotonic()
                try:
                    await stub.SubmitShot(requests(), timeout=60)
                except grpc.aio.AioRpcError as exc:
                    return exc, time.monotonic() - started
                raise AssertionError("a stalled upload was accepted")

            uploads = [asyncio.ensure_future(stalled(i)) for i in range(STREAMS)]
            await _until_async(lambda: bridge.open_streams == 2 * STREAMS and len(list(incoming.iterdir())) == STREAMS,
                               what="128 open streams, every upload past its header")
            opened_at = time.monotonic()
            threads_open = _os_threads()
            uploads_with_dirs = len(list(incoming.iterdir()))

            caps_s, health_s = [], []
            for _ in range(20):
                t = time.perf_counter()
                caps = await stub.GetCapabilities(bridge_pb2.GetCapabilitiesRequest(), timeout=5)
                caps_s.append(time.perf_counter() - t)
                t = time.perf_counter()
                reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
                health_s.append(time.perf_counter() - t)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
            measured_in = time.monotonic() - opened_at
            still_open = bridge.open_streams

            results = await asyncio.wait_for(asyncio.gather(*uploads), timeout=30)
            release.set()
            for call in watchers:
                call.cancel()
            return (threads_before, threads_open, uploads_with_dirs, caps, caps_s, health_s, measured_in,
                    still_open, results)

    (threads_before, threads_open, uploads_with_dirs, caps, caps_s, health_s, measured_in, still_open,
     results) = asyncio.run(main())

    assert caps.limits.upload_idle_timeout_s == idle_s
    assert _p99(caps_s) < 0.5, f"GetCapabilities p99 {_p99(caps_s):.3f} s under {2 * STREAMS} open streams"
    assert _p99(health_s) < 0.5, f"health p99 {_p99(health_s):.3f} s under {2 * STREAMS} open streams"
    if measured_in < idle_s:   # (on a very slow machine some uploads may already have timed out)
        assert still_open == 2 * STREAMS
    # 128 open streams; the pool grows to max_workers at most (16), never a thread per stream
    assert threads_open - threads_before <= bridge.config.max_workers + 4, (threads_before, threads_open)
    rpc_threads = [t for t in threading.enumerate() if t.name.startswith("greenlight-rpc")]
    assert len(rpc_threads) <= bridge.config.max_workers
    # every stalled upload had its temp folder, and ended DEADLINE_EXCEEDED after the idle time
    assert uploads_with_dirs == STREAMS
    for exc, took in results:
        assert exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED, exc.details()
        assert "upload_idle_timeout_s" in (exc.details() or "")
        assert took >= idle_s * 0.9
    _until(lambda: not list(incoming.iterdir()), what="stalled uploads' temp folders removed")
    _until(lambda: bridge.open_streams == 0, what="every stream slot released")


def test_an_idle_upload_is_deadline_exceeded_and_its_folder_removed(start_bridge, small_shot):
    bridge = start_bridge(backends={"paced": PacedBackend(frame_s=0.0)}, limits=Limits(upload_idle_timeout_s=0.5))
    data = shot_to_pb(small_shot).SerializeToString()
    stall = threading.Event()

    def chunks():
        yield bridge_pb2.SubmitChunk(header=_header(small_shot, data))
        yield bridge_pb2.SubmitChunk(data=data[:1000])   # some data, then silence
        stall.wait(10)

    with grpc.insecure_channel(bridge.address) as channel:
        stub = bridge_pb2_grpc.BridgeStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.SubmitShot(chunks(), timeout=10)
        stall.set()
    typed = error_from_rpc(err.value)
    assert type(typed) is DeadlineExceededError
    assert "nothing received for 0.5 s" in str(typed) and "resubmit" in str(typed)
    _until(lambda: not list(bridge.manager.store.incoming_dir.iterdir()), what="the upload folder removed")
    assert bridge.open_streams == 0
    with BridgeClient(bridge.address) as client:   # and the bridge still takes a normal upload
        assert client.submit(small_shot, PACED).job.job_id


def test_stream_caps_per_client_and_per_project(start_bridge, small_shot):
    tokens = {"tok-a1": "alpha", "tok-a2": "alpha", "tok-b": "beta"}
    bridge = start_bridge(backends={"paced": PacedBackend(frame_s=1.0)}, tokens=tokens,
                          limits=Limits(max_streams_per_client=2, max_streams_per_project=3))
    with BridgeClient(bridge.address, token="tok-a1") as a1, BridgeClient(bridge.address, token="tok-b") as b:
        a1.submit(small_shot.with_tags(project="alpha"), PACED)
        queued_a = a1.submit(small_shot.with_tags(project="alpha", version=2), PACED).job.job_id
        queued_b = b.submit(small_shot.with_tags(project="beta"), PACED).job.job_id

    def metadata(token):
        return (("authorization", f"Bearer {token}"),)

    async def main():
        async with grpc.aio.insecure_channel(bridge.address) as channel:
            stub = bridge_pb2_grpc.BridgeStub(channel)

            async def watch(token, job_id):
                call = stub.WatchJob(bridge_pb2.WatchJobRequest(job_id=job_id), timeout=30, metadata=metadata(token))
                await call.read()   # raises when refused
                return call

            async def refused(token, job_id):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await watch(token, job_id)
                assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                typed = error_from_rpc(err.value)
                assert isinstance(typed, LimitExceededError)
                return typed

            first = [await watch("tok-a1", queued_a) for _ in range(2)]
            typed = await refused("tok-a1", queued_a)          # the client's third
            assert (typed.limit, typed.value, typed.maximum) == ("max_streams_per_client", 3, 2)
            third = await watch("tok-a2", queued_a)            # another client of alpha: the project's third
            typed = await refused("tok-a2", queued_a)          # the project's fourth
            assert (typed.limit, typed.value, typed.maximum) == ("max_streams_per_project", 4, 3)
            other = await watch("tok-b", queued_b)             # another project is not affected
            assert bridge.open_streams == 4

            # a cancelled stream gives its slots back
            first[0].cancel()
            await _until_async(lambda: bridge.open_streams == 3, what="a cancelled watcher released")
            first[0] = await watch("tok-a1", queued_a)

            # refused and failed calls hold nothing: a submit that fails its checksum, many times over
            bad = _header(small_shot.with_tags(project="beta"), b"x" * 10)
            for _ in range(5):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await stub.SubmitShot(iter([bridge_pb2.SubmitChunk(header=bad),
                                                bridge_pb2.SubmitChunk(data=b"y" * 10)]),
                                          timeout=10, metadata=metadata("tok-b"))
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
            assert bridge.open_streams == 4   # released before the status left
            for call in [*first, third, other]:
                call.cancel()
            await _until_async(lambda: bridge.open_streams == 0, what="every slot released")

    asyncio.run(main())


def test_the_project_cap_counts_uploads_too(start_bridge, small_shot):
    bridge = start_bridge(backends={"paced": PacedBackend(frame_s=0.0)},
                          limits=Limits(max_streams_per_project=2, upload_idle_timeout_s=5.0))
    data = shot_to_pb(small_shot).SerializeToString()

    async def main():
        async with grpc.aio.insecure_channel(bridge.address) as channel:
            stub = bridge_pb2_grpc.BridgeStub(channel)
            release = asyncio.Event()

            async def upload(i: int, stall: bool):
                async def requests():
                    yield bridge_pb2.SubmitChunk(header=_header(small_shot, data, f"u{i}"))
                    if stall:
                        await release.wait()
                    yield bridge_pb2.SubmitChunk(data=data)
                return await stub.SubmitShot(requests(), timeout=20)

            held = [asyncio.ensure_future(upload(i, stall=True)) for i in range(2)]
            incoming = bridge.manager.store.incoming_dir   # a folder exists once the header passed its checks
            await _until_async(lambda: len(list(incoming.iterdir())) == 2, what="two uploads past their headers")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await upload(9, stall=False)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "max_streams_per_project" in (err.value.details() or "")
            release.set()
            accepted = await asyncio.wait_for(asyncio.gather(*held), timeout=20)
            assert all(a.job.job_id for a in accepted)
            await _until_async(lambda: bridge.open_streams == 0, what="slots released after the uploads")
            # the slots are free again: a third upload goes through
            assert (await upload(10, stall=False)).job.job_id

    asyncio.run(main())
