"""The greenlight.v1.Bridge servicer (grpc.aio): translate messages and
status codes, delegate every decision to ``JobManager`` (STYLE practice 9).

Handlers run on the server's event loop, where an open stream costs a
suspended coroutine, not a thread. Everything that blocks (the SQLite store,
file reads and writes, the manager) runs in a bounded thread pool through
``_run``; WatchJob waits for job changes with ``JobChannel.wait_async``.

One decorator per call shape (``_unary``, ``_server_stream``) authenticates,
maps errors to statuses (a Greenlight error to its rich status; anything
else to INTERNAL with a short id that names the log entry, never its text),
releases the call's stream slots on every exit path, and records the audit
entry and the metrics.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import shutil
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import grpc

from .. import __version__
from ..errors import (
    DeadlineExceededError,
    GreenlightError,
    InternalError,
    InvalidArgumentError,
    LimitExceededError,
)
from ..jobs.model import JobState
from ..proto.greenlight.v1 import bridge_pb2, bridge_pb2_grpc
from ..shot.model import ShotOutline
from ..shot.stream_check import scan_shot_file
from ..shot.wire import generation_from_pb, scheduling_from_pb
from .auth import Principal, authenticate
from .config import Limits
from .convert import decision_pb, frame_energy_pb, job_report, job_status
from .manager import DeclaredShot, JobManager
from .status import abort_async

log = logging.getLogger(__name__)
PROTOCOL_VERSION = "greenlight.v1"
# A watcher is woken by the job's channel; this is only the safety net for a
# change nobody notified.
WATCH_POLL_S = 1.0
T = TypeVar("T")


class Unimplemented(GreenlightError):
    """A call this bridge does not serve yet (UNIMPLEMENTED); never raised outside this module."""

    code = "UNIMPLEMENTED"


# ------------------------------------------------------------------ streams
class StreamSlots:
    """Open SubmitShot / WatchJob streams per client and per project, capped
    by ``limits.max_streams_per_client`` / ``max_streams_per_project``."""

    def __init__(self, limits: Limits):
        self._caps = {"client": ("max_streams_per_client", limits.max_streams_per_client),
                      "project": ("max_streams_per_project", limits.max_streams_per_project)}
        self._lock = threading.Lock()
        self._open: dict[tuple[str, str], int] = {}

    def take(self, kind: str, key: str) -> tuple[str, str]:
        """One slot of ``kind`` ("client" or "project") for ``key``, or LimitExceededError."""
        limit, maximum = self._caps[kind]
        slot = (kind, key)
        with self._lock:
            n = self._open.get(slot, 0)
            if n >= maximum:
                raise LimitExceededError(limit, n + 1, maximum)
            self._open[slot] = n + 1
        return slot

    def give_back(self, slot: tuple[str, str]) -> None:
        with self._lock:
            n = self._open.get(slot, 0) - 1
            if n > 0:
                self._open[slot] = n
            else:
                self._open.pop(slot, None)

    def open(self, kind: str, key: str) -> int:
        with self._lock:
            return self._open.get((kind, key), 0)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(n for (kind, _), n in self._open.items() if kind == "client")


def peer_host(peer: str) -> str:
    """The host part of a gRPC peer string ("ipv4:127.0.0.1:5555" -> "127.0.0.1",
    "ipv6:[::1]:5555" -> "::1"); the whole string for other transports."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0] or rest
    if kind == "ipv6":
        host = rest.rpartition(":")[0] or rest
        return host.strip("[]")
    return peer


@dataclass
class _Call:
    """What one RPC learned on its way, for the audit log, metrics and cleanup."""

    rpc: str
    principal: Principal | None = None
    job_id: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    slots: list[tuple[str, str]] = field(default_factory=list)
    stream: str = ""          # "submit" | "watch" once counted as an open stream
    code: str = "OK"
    ended: bool = False
    done: bool = False        # its last message was handed to gRPC: a cancel after this is the client leaving

    @property
    def who(self) -> Principal:
        """The authenticated caller (handlers run only after authentication)."""
        assert self.principal is not None
        return self.principal


# ------------------------------------------------------------------ decorators
def _unary(audited: bool = False):
    """Unary and stream-unary handlers: ``method(self, request, context, call)``."""

    def wrap(method):
        @functools.wraps(method)
        async def handler(self: BridgeServicer, request, context: grpc.aio.ServicerContext):
            call = _Call(method.__name__)
            started = time.perf_counter()
            try:
                call.principal = self._authenticate(context)
                reply = await method(self, request, context, call)
            except BaseException as exc:   # every exit is recorded, then the error goes on (or becomes a status)
                error = self._classify(call, exc)
                self._ended_quietly(call, started, audited)   # before the status: abort sends it at once
                if error is None:
                    raise
                await abort_async(context, error)
            await self._ended(call, started, audited)
            return reply

        return handler

    return wrap


def _server_stream(audited: bool = False):
    """Server-streaming handlers (async generators): ``method(self, request, context, call)``."""

    def wrap(method):
        @functools.wraps(method)
        async def handler(self: BridgeServicer, request, context: grpc.aio.ServicerContext):
            call = _Call(method.__name__)
            started = time.perf_counter()
            try:
                call.principal = self._authenticate(context)
                async for event in method(self, request, context, call):
                    yield event
            except BaseException as exc:
                error = self._classify(call, exc)
                self._ended_quietly(call, started, audited)
                if error is None:
                    raise
                await abort_async(context, error)
            await self._ended(call, started, audited)

        return handler

    return wrap


# ------------------------------------------------------------------ uploads
class _UploadFile:
    """An upload's temp folder and file, written from pool threads. ``discard``
    may come from any thread, also while a write is in flight."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.path = folder / "shot.pb"
        self.digest = hashlib.sha256()
        self._lock = threading.Lock()
        self._fh = None
        self._gone = False

    def write(self, data: bytes) -> None:
        with self._lock:
            if self._gone:
                return
            if self._fh is None:
                self._fh = open(self.path, "wb")   # noqa: SIM115 - closed by close() or discard()
            self._fh.write(data)
            self.digest.update(data)

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
            elif not self._gone:
                self.path.touch()

    def discard(self) -> None:
        with self._lock:
            self._gone = True
            if self._fh is not None:
                self._fh.close()
                self._fh = None
            shutil.rmtree(self.folder, ignore_errors=True)


# ------------------------------------------------------------------ servicer
class BridgeServicer(bridge_pb2_grpc.BridgeServicer):
    """``pool`` runs everything that blocks; ``metrics`` (server.metrics.Metrics)
    is optional, and so is ``manager.audit``."""

    def __init__(self, manager: JobManager, pool: Executor, metrics=None):
        self.manager = manager
        self.config = manager.config
        self.pool = pool
        self.metrics = metrics
        self.streams = StreamSlots(self.config.limits)

    # ------------------------------------------------------------ plumbing
    async def _run(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """``fn(*args, **kwargs)`` in the pool: never block the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, functools.partial(fn, *args, **kwargs))

    def _background(self, fn: Callable[..., Any], *args, **kwargs) -> None:
        """Fire and forget in the pool (cleanup after a cancelled call)."""
        try:
            self.pool.submit(fn, *args, **kwargs)
        except RuntimeError:   # the pool is shut down: the bridge is stopping, run it here
            fn(*args, **kwargs)

    def _authenticate(self, context: grpc.aio.ServicerContext) -> Principal:
        metadata: dict[str, str] = {}
        for key, value in context.invocation_metadata() or ():
            metadata[key] = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        return authenticate(self.config, metadata)

    def _open_stream(self, call: _Call, context: grpc.aio.ServicerContext, kind: str) -> None:
        """Count this call against its client's stream cap (the token, else the peer host)."""
        principal = call.principal
        client = f"token:{principal.token_id}" if principal is not None and principal.token_id else \
            f"host:{peer_host(context.peer() or '')}"
        call.slots.append(self.streams.take("client", client))
        call.stream = kind
        if self.metrics is not None:
            self.metrics.stream_delta(kind, +1)

    def _open_project_stream(self, call: _Call, project: str) -> None:
        if project:
            call.slots.append(self.streams.take("project", project))

    def _release(self, call: _Call) -> None:
        slots, call.slots = call.slots, []
        for slot in slots:
            self.streams.give_back(slot)
        if call.stream and self.metrics is not None:
            self.metrics.stream_delta(call.stream, -1)
        call.stream = ""

    @staticmethod
    def _classify(call: _Call, exc: BaseException) -> GreenlightError | None:
        """Note the call's status code; return the error to end it with, or
        None when ``exc`` is to go on as it is (a cancelled call)."""
        if isinstance(exc, GreenlightError):
            call.code = exc.code
            return exc
        if isinstance(exc, NotImplementedError):
            call.code = "UNIMPLEMENTED"
            log.error("%s: not implemented on this bridge", call.rpc, exc_info=exc)
            return Unimplemented(f"{call.rpc} is not available on this bridge yet")
        if isinstance(exc, Exception) and not isinstance(exc, grpc.aio.AbortError):
            ref = uuid.uuid4().hex[:8]
            call.code = "INTERNAL"
            log.error("%s: internal error %s (job %s)", call.rpc, ref, call.job_id or "-", exc_info=exc)
            return InternalError(f"internal error {ref}; see the bridge log")
        if isinstance(exc, asyncio.CancelledError):
            call.code = "OK" if call.done else "CANCELLED"
        else:
            call.code = "UNKNOWN"
        return None

    async def _ended(self, call: _Call, started: float, audited: bool) -> None:
        """The call succeeded: release, then audit before the reply leaves."""
        if self._end(call, started, audited):
            # shielded: a client that leaves now does not lose the record
            record = self.pool.submit(self._record, self.manager.audit, call)
            await asyncio.shield(asyncio.wrap_future(record))

    def _ended_quietly(self, call: _Call, started: float, audited: bool) -> None:
        """The call failed or was cancelled: release, and audit without waiting."""
        if self._end(call, started, audited):
            self._background(self._record, self.manager.audit, call)

    def _end(self, call: _Call, started: float, audited: bool) -> bool:
        """Release the call's slots and record its metrics (once); True when it is to be audited."""
        self._release(call)
        if call.ended:
            return False
        call.ended = True
        if self.metrics is not None:
            self.metrics.observe_rpc(call.rpc, call.code, time.perf_counter() - started)
        return audited and self.manager.audit is not None and call.principal is not None

    @staticmethod
    def _record(audit, call: _Call) -> None:
        outcome = "ok" if call.code == "OK" else call.code
        assert call.principal is not None
        try:
            audit.record(call.rpc, call.principal, call.job_id, outcome, **call.detail)
        except Exception:   # the audit log failing must not fail (or hide) the call's own outcome
            log.exception("audit: could not record %s of job %s", call.rpc, call.job_id or "-")

    async def _next(self, requests: AsyncIterator, what: str):
        """The next upload message, or None at the end; DEADLINE_EXCEEDED when
        the client sends nothing for ``upload_idle_timeout_s``."""
        idle = self.config.limits.upload_idle_timeout_s
        try:
            return await asyncio.wait_for(anext(requests), idle)
        except StopAsyncIteration:
            return None
        except TimeoutError:
            raise DeadlineExceededError(
                f"SubmitShot: nothing received for {idle:g} s while waiting for {what} "
                f"(the bridge's upload_idle_timeout_s); the upload was dropped, resubmit it") from None

    # ------------------------------------------------------------ submit
    @_unary(audited=True)
    async def SubmitShot(self, request_iterator, context, call):
        manager, limits = self.manager, self.config.limits
        principal = call.who
        self._open_stream(call, context, "submit")   # before anything is read: stalled uploads count
        requests = aiter(request_iterator)
        first = await self._next(requests, "the SubmitHeader")
        if first is None:
            raise InvalidArgumentError("SubmitShot: the stream was empty; send a SubmitHeader first")
        if first.WhichOneof("payload") != "header":
            raise InvalidArgumentError("SubmitShot: the first message must be a SubmitHeader")
        header = first.header
        call.detail["request_id"] = header.request_id[:128]
        self._open_project_stream(call, header.project or (principal.project or ""))
        manager.check_upload_size(header.shot_bytes)
        if len(header.shot_sha256) != 32:
            raise InvalidArgumentError(f"header.shot_sha256: must be 32 bytes (SHA-256), got {len(header.shot_sha256)}",
                                       field="header.shot_sha256")
        generation = generation_from_pb(header.generation)
        scheduling = scheduling_from_pb(header.scheduling)
        declared = DeclaredShot(project=header.project, frame_count=header.frame_count,
                                width=header.resolution.width, height=header.resolution.height,
                                shot_bytes=header.shot_bytes)
        # every check that needs no shot data, before any is read
        await self._run(manager.check_header, principal, declared, header.request_id, generation, scheduling)

        upload = _UploadFile(await self._run(manager.store.new_upload_dir))
        handed_over = False
        try:
            received = 0
            while (chunk := await self._next(requests, "the next chunk")) is not None:
                if chunk.WhichOneof("payload") != "data":
                    raise InvalidArgumentError("SubmitShot: only the first message may be a header")
                if len(chunk.data) > limits.max_chunk_bytes:
                    raise LimitExceededError("max_chunk_bytes", len(chunk.data), limits.max_chunk_bytes)
                received += len(chunk.data)
                if received > header.shot_bytes:
                    raise InvalidArgumentError(
                        f"SubmitShot: received more than the {header.shot_bytes} bytes "
                        f"declared in header.shot_bytes")
                await self._run(upload.write, chunk.data)   # to disk as it comes: never held whole in memory
            await self._run(upload.close)
            if received != header.shot_bytes:
                raise InvalidArgumentError(
                    f"SubmitShot: the stream ended after {received} of {header.shot_bytes} declared bytes")
            if upload.digest.digest() != header.shot_sha256:
                raise InvalidArgumentError("SubmitShot: the shot's SHA-256 does not match header.shot_sha256; "
                                           "the upload was corrupted, resubmit it")
            # checked frame by frame from the file: memory bounded by one frame, not by the upload
            shot = await self._run(scan_shot_file, upload.path, manager.config.limits.shot_limits)
            _check_declared(header, shot)
            handed_over = True   # from here the manager owns the folder (it deletes it on refusal)
            job, created = await self._run(
                manager.submit, principal, upload.folder, shot, upload.digest.hexdigest(), header.request_id,
                generation, scheduling)
        except asyncio.CancelledError:   # the client went away: clean up without holding the task
            if not handed_over:
                self._background(upload.discard)
            raise
        except BaseException:   # refused: the folder is gone before the status leaves
            if not handed_over:
                await self._run(upload.discard)
            raise
        call.job_id = job.job_id
        call.detail["duplicate"] = not created
        return bridge_pb2.JobAccepted(job=job_status(job), duplicate=not created)

    # ------------------------------------------------------------ watch
    @_server_stream(audited=True)
    async def WatchJob(self, request, context, call):
        manager = self.manager
        job = await self._run(manager.get, call.who, request.job_id)
        call.job_id = job.job_id
        self._open_stream(call, context, "watch")
        self._open_project_stream(call, job.project)
        channel = manager.channels.get(job.job_id)
        sent: set[int] = set()
        call.detail["from_frame"] = request.from_frame
        last_state = None
        last_progress = None
        last_preview_seq = channel.seq if not request.include_previews else 0
        while True:
            seen_seq = channel.seq
            job, records = await self._run(self._poll, job.job_id, request.from_frame, frozenset(sent))
            if job.state != last_state:
                last_state = job.state
                yield self._event(job.job_id, status=job_status(job))
            for record in records:
                data = await self._run(_read_frame, manager, job.job_id, record)
                # fields set in place: nested constructors copy the image bytes
                # several times (measured: 13.7 ms vs 0.5 ms for a 6 MB PNG)
                event = self._event(job.job_id)
                event.frame.index = record.index
                event.frame.image.encoding = bridge_pb2.IMAGE_ENCODING_PNG
                event.frame.image.data = data
                frame_energy_pb(event.frame.energy, record)   # as stored when the frame was made
                sent.add(record.index)
                call.detail["frames"] = len(sent)
                yield event
            if channel.progress is not None and channel.progress is not last_progress and not job.state.terminal:
                last_progress = p = channel.progress
                yield self._event(job.job_id, progress=bridge_pb2.Progress(
                    step=p.step, total_steps=p.total_steps, frames_done=p.frames_done, elapsed_s=p.elapsed_s,
                    eta_s=p.eta_s, energy_wh_so_far=p.energy_wh_so_far, stage=p.stage))
            if request.include_previews:
                for pv in list(channel.previews):
                    if pv.seq > last_preview_seq:
                        last_preview_seq = pv.seq
                        event = self._event(job.job_id)
                        event.preview.index, event.preview.step = pv.index, pv.step
                        event.preview.image.encoding = bridge_pb2.IMAGE_ENCODING_PNG
                        event.preview.image.data = pv.png
                        yield event
            if job.state.terminal:
                final = await self._run(self._final_event, job)
                call.done = True
                yield final
                manager.channels.discard(job.job_id)   # nothing changes an ended job: free its entry
                return
            await channel.wait_async(seen_seq, WATCH_POLL_S)

    def _poll(self, job_id: str, from_frame: int, sent: frozenset[int]):
        store = self.manager.store
        job = store.get(job_id)   # state first: frames stored before it are complete
        return job, [r for r in store.frames(job_id, from_frame) if r.index not in sent]

    def _final_event(self, job):
        if job.state is JobState.COMPLETED:
            report = self.manager.store.report(job.job_id)
            if report is not None:
                return self._event(job.job_id, completed=bridge_pb2.JobCompleted(report=job_report(report)))
            return self._event(job.job_id, failed=bridge_pb2.JobFailed(
                message="the job completed but its report is missing from the bridge's store", code="INTERNAL"))
        if job.state is JobState.FAILED:
            return self._event(job.job_id, failed=bridge_pb2.JobFailed(message=job.state_reason, code="INTERNAL"))
        return self._event(job.job_id, cancelled=bridge_pb2.JobCancelled(reason=job.state_reason))

    @staticmethod
    def _event(job_id: str, **kind) -> bridge_pb2.JobEvent:
        event = bridge_pb2.JobEvent(job_id=job_id, **kind)
        event.time.FromDatetime(datetime.now(UTC))
        return event

    # ------------------------------------------------------------ unary
    @_unary(audited=True)
    async def CancelJob(self, request, context, call):
        call.job_id = request.job_id
        call.detail["reason"] = request.reason
        return job_status(await self._run(self.manager.cancel, call.who, request.job_id, request.reason))

    @_unary(audited=True)
    async def RunJobNow(self, request, context, call):
        call.job_id = request.job_id
        return job_status(await self._run(self.manager.run_now, call.who, request.job_id))

    @_unary(audited=True)
    async def DeleteJob(self, request, context, call):
        call.job_id = request.job_id
        call.detail["reason"] = request.reason
        freed = await self._run(self.manager.delete, call.who, request.job_id, request.reason)
        call.detail["bytes_freed"] = freed
        return bridge_pb2.DeleteJobResponse(job_id=request.job_id, bytes_freed=freed)

    @_unary()
    async def GetJob(self, request, context, call):
        return job_status(await self._run(self.manager.get, call.who, request.job_id))

    @_unary()
    async def ListJobs(self, request, context, call):
        jobs = await self._run(self.manager.list, call.who, request.project, request.limit)
        return bridge_pb2.ListJobsResponse(jobs=[job_status(j) for j in jobs])

    @_unary()
    async def GetReport(self, request, context, call):
        return job_report(await self._run(self.manager.report, call.who, request.job_id))

    @_unary()
    async def EstimateJob(self, request, context, call):
        estimate = await self._run(
            self.manager.estimate, call.who, request.project, request.frame_count,
            request.resolution.width, request.resolution.height,
            generation_from_pb(request.generation), scheduling_from_pb(request.scheduling))
        reply = bridge_pb2.JobEstimate(wall_s=estimate.wall_s, energy_wh=estimate.energy_wh,
                                       co2e_g=estimate.co2e_g, basis=estimate.basis)
        decision_pb(reply.scheduling, estimate.decision)
        return reply

    @_unary()
    async def GetCapabilities(self, request, context, call):
        return await self._run(self._capabilities)

    def _capabilities(self) -> bridge_pb2.Capabilities:
        limits = self.config.limits
        caps = bridge_pb2.Capabilities(
            protocol_version=PROTOCOL_VERSION, server_version=__version__, auth_required=bool(self.config.tokens),
            meter=str(getattr(self.manager.executor.meter, "name", "")),
            meter_reason=self.manager.executor.meter_reason,
            limits=limits_pb(limits),
        )
        for backend in self.manager.backends.values():
            info = backend.info()
            caps.backends.add(
                id=info.id, description=info.description, conditions=list(info.conditions),
                max_frames=info.max_frames, max_width=info.max_width, max_height=info.max_height,
                devices=list(info.devices), available=info.available, unavailable_reason=info.unavailable_reason,
                quality_presets=[bridge_pb2.QualityPreset(name=p.name, description=p.description,
                                                          relative_cost=p.relative_cost)
                                 for p in info.quality_presets])
        for site, _devices in self.config.sites:
            caps.sites.add(name=site.name, grid_region=site.grid_region, pue=site.pue,
                           wue_l_per_kwh=site.wue_l_per_kwh)
        return caps


# ------------------------------------------------------------------ helpers
def limits_pb(limits: Limits) -> bridge_pb2.Limits:
    """Every ``Limits`` field, advertised under its own name (a test checks none is missing)."""
    return bridge_pb2.Limits(**{name: getattr(limits, name) for name in bridge_pb2.Limits.DESCRIPTOR.fields_by_name})


def _check_declared(header: bridge_pb2.SubmitHeader, shot: ShotOutline) -> None:
    """The shot must be what its header said. A fact an older client did not
    send (empty, 0) is not compared."""
    pairs = [("header.project", header.project, shot.tags.project),
             ("header.frame_count", header.frame_count, shot.frame_count)]
    if header.HasField("resolution"):
        pairs.append(("header.resolution", (header.resolution.width, header.resolution.height),
                      (shot.width, shot.height)))
    for name, declared, actual in pairs:
        if declared and declared != actual:
            raise InvalidArgumentError(f"{name}: the header says {declared!r} but the shot has {actual!r}; "
                                       "send the shot's own values", field=name)


def _read_frame(manager: JobManager, job_id: str, record) -> bytes:
    return manager.store.read_frame(job_id, record)   # decrypted when the project is encrypted at rest
