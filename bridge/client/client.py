"""The Greenlight client used by both add-ons and the CLI.

Needs grpcio, protobuf and numpy; never torch or bpy. Only connection setup
and refused requests raise (``GreenlightError`` subclasses); a job that fails
on the bridge arrives as a FAILED event.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import grpc

from ..errors import BridgeUnavailableError, GreenlightError
from ..jobs.model import JobEvent, JobReport, JobStatus
from ..proto.greenlight.v1 import bridge_pb2, bridge_pb2_grpc, shot_pb2
from ..shot.model import Shot
from ..shot.request import GenerationSettings, SchedulingSettings
from ..shot.validation import validate_shot
from ..shot.wire import generation_to_pb, scheduling_to_pb, shot_to_pb
from .defaults import DEFAULT_ADDRESS
from .events import event_from_pb, report_from_pb, status_from_pb
from .status import error_from_rpc

log = logging.getLogger(__name__)
DEFAULT_CHUNK_BYTES = 2 * 1024 * 1024   # well under the bridge's 4 MiB default limit
_RETRYABLE = {grpc.StatusCode.UNAVAILABLE}
_MAX_BACKOFF_S = 2.0   # between submit retries, and the channel's reconnect attempts
FIRST_CONTACT_RETRY_S = 2.0   # submit retries to a bridge this client has never reached


@dataclass(frozen=True)
class Accepted:
    job: JobStatus
    duplicate: bool


class BridgeClient:
    """``with BridgeClient("127.0.0.1:50151") as c: job = c.submit(shot)``."""

    def __init__(self, address: str = DEFAULT_ADDRESS, token: str | None = None,
                 tls_root_cert: bytes | None = None, tls: bool = False, timeout_s: float = 30.0,
                 reconnect_s: float = 60.0, submit_retry_s: float = 30.0):
        """``timeout_s``: each call's deadline; ``reconnect_s``: how long a broken
        watch keeps resuming without progress; ``submit_retry_s``: how long a
        submit keeps retrying while the bridge is unreachable (a restart)."""
        self.address = address
        self.timeout_s = timeout_s
        self.reconnect_s = reconnect_s
        self.submit_retry_s = submit_retry_s
        self._reached = False   # any call answered by the bridge (even with an error status)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1),
                   # reconnect soon after a bridge comes back (gRPC's default backoff grows to 120 s)
                   ("grpc.initial_reconnect_backoff_ms", 200), ("grpc.min_reconnect_backoff_ms", 200),
                   ("grpc.max_reconnect_backoff_ms", int(_MAX_BACKOFF_S * 1000))]
        if tls or tls_root_cert is not None:
            creds = grpc.ssl_channel_credentials(root_certificates=tls_root_cert)
            self._channel = grpc.secure_channel(address, creds, options=options)
        else:
            self._channel = grpc.insecure_channel(address, options=options)
        self._stub = bridge_pb2_grpc.BridgeStub(self._channel)

    def __enter__(self) -> BridgeClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method, request, timeout: float | None = None):
        try:
            reply = method(request, timeout=timeout or self.timeout_s, metadata=self._metadata)
        except grpc.RpcError as exc:
            if exc.code() not in _RETRYABLE:
                self._reached = True   # the bridge answered, with an error
            raise _error(exc, self.address) from None
        self._reached = True
        return reply

    # ------------------------------------------------------------ calls
    def capabilities(self) -> bridge_pb2.Capabilities:
        return self._call(self._stub.GetCapabilities, bridge_pb2.GetCapabilitiesRequest())

    def submit(self, shot: Shot, generation: GenerationSettings = GenerationSettings(),
               scheduling: SchedulingSettings = SchedulingSettings(), request_id: str | None = None,
               chunk_bytes: int = DEFAULT_CHUNK_BYTES, retries: int | None = None,
               retry_s: float | None = None) -> Accepted:
        """Validate locally, then upload in chunks. Retried on UNAVAILABLE
        (see ``submit_bytes``): the request id makes a retry return the same
        job, never a second one."""
        validate_shot(shot)
        data = shot_to_pb(shot).SerializeToString()
        header = bridge_pb2.SubmitHeader(
            request_id=request_id or uuid.uuid4().hex, generation=generation_to_pb(generation),
            scheduling=scheduling_to_pb(scheduling), shot_bytes=len(data),
            shot_sha256=hashlib.sha256(data).digest(), project=shot.tags.project, frame_count=shot.frame_count,
            resolution=shot_pb2.Resolution(width=shot.width, height=shot.height))
        return self.submit_bytes(header, data, chunk_bytes, retries, retry_s)

    def submit_bytes(self, header: bridge_pb2.SubmitHeader, data: bytes,
                     chunk_bytes: int = DEFAULT_CHUNK_BYTES, retries: int | None = None,
                     retry_s: float | None = None) -> Accepted:
        """Upload a serialized shot. While the bridge is unreachable
        (UNAVAILABLE: down, restarting) the upload is retried for up to
        ``retry_s`` seconds (default ``submit_retry_s``), backing off
        exponentially to at most 2 s between tries; ``retries`` also caps the
        number of retries (0 = none). Safe: the header's request id makes a
        retry return the job a lost reply had created."""

        def chunks():
            yield bridge_pb2.SubmitChunk(header=header)
            view = memoryview(data)
            for start in range(0, len(data), chunk_bytes):
                yield bridge_pb2.SubmitChunk(data=bytes(view[start:start + chunk_bytes]))

        timeout = max(self.timeout_s, len(data) / 5e6)  # >= 5 MB/s
        if retry_s is None:
            # a bridge this client has reached may be restarting: outlast it; an address that never
            # answered is most likely wrong or down: say so after a short try, not after 30 s
            retry_s = self.submit_retry_s if self._reached else min(self.submit_retry_s, FIRST_CONTACT_RETRY_S)
        give_up = time.monotonic() + retry_s
        attempt = 0
        while True:
            try:
                reply = self._stub.SubmitShot(chunks(), timeout=timeout, metadata=self._metadata)
                self._reached = True
                return Accepted(status_from_pb(reply.job), reply.duplicate)
            except grpc.RpcError as exc:
                if exc.code() not in _RETRYABLE:
                    self._reached = True
                delay = min(0.2 * 2 ** attempt, _MAX_BACKOFF_S)
                if (exc.code() not in _RETRYABLE or (retries is not None and attempt >= retries)
                        or time.monotonic() + delay > give_up):
                    raise _error(exc, self.address) from None
                log.info("submit %s: bridge unreachable (%s); retrying in %.1f s", header.request_id,
                         exc.details(), delay)
                time.sleep(delay)
                attempt += 1

    def job(self, job_id: str) -> JobStatus:
        return status_from_pb(self._call(self._stub.GetJob, bridge_pb2.GetJobRequest(job_id=job_id)))

    def jobs(self, project: str = "", limit: int = 100) -> list[JobStatus]:
        reply = self._call(self._stub.ListJobs, bridge_pb2.ListJobsRequest(project=project, limit=limit))
        return [status_from_pb(j) for j in reply.jobs]

    def cancel(self, job_id: str, reason: str = "") -> JobStatus:
        return status_from_pb(self._call(self._stub.CancelJob,
                                         bridge_pb2.CancelJobRequest(job_id=job_id, reason=reason)))

    def run_now(self, job_id: str) -> JobStatus:
        """Start a job that waits for a greener window now."""
        return status_from_pb(self._call(self._stub.RunJobNow, bridge_pb2.RunJobNowRequest(job_id=job_id)))

    def report(self, job_id: str) -> JobReport:
        return report_from_pb(self._call(self._stub.GetReport, bridge_pb2.GetReportRequest(job_id=job_id)))

    def delete(self, job_id: str, reason: str = "") -> int:
        """Delete an ended job on the bridge; returns the bytes freed there."""
        reply = self._call(self._stub.DeleteJob, bridge_pb2.DeleteJobRequest(job_id=job_id, reason=reason))
        return int(reply.bytes_freed)

    def estimate(self, project: str, frame_count: int, width: int, height: int,
                 generation: GenerationSettings = GenerationSettings(),
                 scheduling: SchedulingSettings = SchedulingSettings()) -> bridge_pb2.JobEstimate:
        """What a shot of this size would cost with these settings (estimates
        only; nothing is created on the bridge)."""
        return self._call(self._stub.EstimateJob, bridge_pb2.EstimateJobRequest(
            project=project, frame_count=frame_count,
            resolution=shot_pb2.Resolution(width=width, height=height),
            generation=generation_to_pb(generation), scheduling=scheduling_to_pb(scheduling)))

    # ------------------------------------------------------------ watch
    def watch(self, job_id: str, from_frame: int = 0, include_previews: bool = False) -> Iterator[JobEvent]:
        """Events until the job ends. A dropped connection is resumed from the
        first frame not yet received, for up to ``reconnect_s`` seconds
        without progress; frames are never yielded twice."""
        received: set[int] = set()
        cursor = from_frame
        last_progress = time.monotonic()
        backoff = 0.1
        while True:
            request = bridge_pb2.WatchJobRequest(job_id=job_id, from_frame=cursor, include_previews=include_previews)
            try:
                for msg in self._stub.WatchJob(request, metadata=self._metadata):
                    event = event_from_pb(msg)
                    last_progress = time.monotonic()
                    backoff = 0.1
                    if event.frame is not None:
                        if event.frame.index in received:
                            continue
                        received.add(event.frame.index)
                        while cursor in received:
                            cursor += 1
                    yield event
                    if event.kind.terminal:
                        return
                log.warning("watch %s: stream ended without a final event; resuming from frame %d", job_id, cursor)
            except grpc.RpcError as exc:
                if exc.code() not in _RETRYABLE:
                    raise _error(exc, self.address) from None
                if time.monotonic() - last_progress > self.reconnect_s:
                    raise _error(exc, self.address) from None
                log.warning("watch %s: connection lost (%s); resuming from frame %d", job_id, exc.details(), cursor)
            time.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    def download(self, job_id: str, folder: str | Path, on_event: Callable[[JobEvent], None] | None = None,
                 include_previews: bool = False) -> JobEvent | None:
        """Write frames to ``folder`` as they arrive (``frame_00000.png``),
        then ``report.json`` beside them; resumes after frames already there.
        ``on_event`` sees each frame record with its local path. Returns the
        final event (None when the stream ended without one)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        start = 0
        while (folder / frame_name(start)).exists():
            start += 1
        final = None
        for event in self.watch(job_id, from_frame=start, include_previews=include_previews):
            if event.frame is not None:
                path = folder / frame_name(event.frame.index)
                _write_atomic(path, event.image)
                event = replace(event, frame=event.frame.with_path(str(path)))
            elif event.report is not None:
                _write_atomic(folder / "report.json",
                              json.dumps(event.report.to_dict(), indent=1, allow_nan=False).encode())
            if on_event is not None:
                on_event(event)
            if event.kind.terminal:
                final = event
        return final


def frame_name(index: int) -> str:
    return f"frame_{index:05d}.png"


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _error(exc: grpc.RpcError, address: str) -> GreenlightError:
    """The typed error the bridge sent (same class and fields: ``status.py``);
    UNAVAILABLE is always ours: the bridge could not be reached."""
    if exc.code() is grpc.StatusCode.UNAVAILABLE:
        return BridgeUnavailableError(f"cannot reach the Greenlight bridge at {address}: {exc.details()} "
                                      "(is `greenlight serve` running?)")
    return error_from_rpc(exc)
