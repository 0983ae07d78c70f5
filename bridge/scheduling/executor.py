"""The embedded executor: runs scheduled jobs in-process, one job per device
at a time, in a worker thread per device (DESIGN section 7).

It owns the run of an attempt: state transitions, energy windows around the
whole run and each frame, frame files, and the final report.

Fairness: released jobs wait in a ``FairQueue`` (interactive before batch,
projects taking turns within a class). A running job of a resumable backend
yields between frames, after ``time_slice_s``, to an interactive job of
another project that waits: its attempt ends ``interrupted`` and the job goes
back to the queue, at the head of its project's line, keeping its frames.

Faults: whatever fails during a run (a full disk, the database, the meter,
the backend) ends the job ``failed`` with a reason a person can read, and its
watchers are told; the worker goes on with the next job.
"""

from __future__ import annotations

import collections
import dataclasses
import errno
import logging
import os
import queue
import sqlite3
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import numpy as np

from ..backends.base import Backend
from ..energy.accounting import Site
from ..energy.attribution import RunningAttribution
from ..energy.job_report import Intensity, build_report, close_attempt, price, saved_vs_submit, static_intensity
from ..energy.ledger import Ledger
from ..energy.meters import Meter, Window
from ..energy.signals import CarbonSignal, IntensityPoint, SignalError, describe
from ..errors import GreenlightError
from ..jobs.channels import ChannelRegistry, ProgressInfo
from ..jobs.images import encode_png
from ..jobs.model import (
    Attempt,
    AttemptOutcome,
    FrameRecord,
    JobReport,
    JobState,
    SchedulingFacts,
    Tags,
    TemporalConsistency,
)
from ..jobs.store import JobRecord, JobStore
from ..temporal.report import LiveConsistency
from ..temporal.score import has_passes

log = logging.getLogger(__name__)
CHECKPOINT_EVERY_S = 5.0    # an attempt's energy is stored at least this often (and with every frame)
SIGNAL_RETRY_S = 60.0       # after a carbon-signal outage, frames use the static figure this long before a retry
TIME_SLICE_S = 30.0         # a resumable job runs at least this long before it yields to another project's job
END_RETRIES = (0.05, 0.2, 1.0)   # waits before retrying a job's final state write (a busy or failing database)
INTERACTIVE, BATCH = 0, 1   # FairQueue priorities
WRITER_DEPTH = 4            # frames waiting to be encoded and stored before the backend waits (bounded memory)
WRITER_NICE = 5             # the frame writer's thread runs this much nicer than torch's (Linux: per thread)
WRITER_CLOSE_S = 60.0       # how long the end of an attempt waits for its last frames to be stored


def describe_failure(exc: BaseException) -> str:
    """Why a job failed, for people: no server paths, no tracebacks (the log has them)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the bridge's disk is full (no space left on device); free space on the bridge and resubmit"
    if isinstance(exc, OSError):
        why = exc.strerror or type(exc).__name__
        return f"the bridge could not read or write the job's files ({why})"
    if isinstance(exc, sqlite3.Error):
        return f"the bridge's job database failed ({exc}); the bridge operator should check its data folder"
    if isinstance(exc, GreenlightError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class FairQueue:
    """The run queue. Interactive jobs before batch jobs (a batch job whose
    latest safe start has come counts as interactive: deadlines hold);
    within a class, projects take turns: the project served least recently
    goes next (round robin, where a project that just ran waits behind one
    that came while it ran); one project's jobs run in the order they came."""

    def __init__(self):
        self._cond = threading.Condition()
        # (priority, project) -> [(job id, unix time it becomes urgent or None, arrival)]
        self._lines: dict[tuple[int, str], collections.deque[tuple[str, float | None, int]]] = {}
        self._served: dict[str, int] = {}    # project -> the tick its last job left the queue
        self._tick = 0
        self._arrival = 0
        self._stops = 0

    def put(self, job_id: str, project: str = "", priority: int = INTERACTIVE, urgent_at: float | None = None,
            front: bool = False) -> None:
        """``front``: at the head of its project's line (a job that yielded keeps its place there)."""
        with self._cond:
            line = self._lines.setdefault((priority, project), collections.deque())
            self._arrival += 1
            if front:
                line.appendleft((job_id, urgent_at, (line[0][2] - 1) if line else self._arrival))
            else:
                line.append((job_id, urgent_at, self._arrival))
            self._cond.notify()

    def put_stop(self) -> None:
        """Wake one worker with None (it exits)."""
        with self._cond:
            self._stops += 1
            self._cond.notify()

    def get(self, timeout: float | None = None) -> str | None:
        """The next job id; None to stop (or after ``timeout`` with nothing to run)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._stops or self._lines, timeout=timeout):
                return None
            if self._stops:
                self._stops -= 1
                return None
            return self._pop()

    def _pop(self) -> str:
        now = time.time()
        urgent = [(line[0][1], line[0][2], key) for key, line in self._lines.items()
                  if key[0] == BATCH and line[0][1] is not None and line[0][1] <= now]
        if urgent:   # a batch job at its latest safe start goes before interactive work
            key = min(urgent)[2]
        else:
            priority = min(prio for prio, _ in self._lines)
            key = min((k for k in self._lines if k[0] == priority),
                      key=lambda k: (self._served.get(k[1], -1), self._lines[k][0][2]))
        line = self._lines[key]
        job_id = line.popleft()[0]
        if not line:
            del self._lines[key]
        self._tick += 1
        self._served[key[1]] = self._tick
        return job_id

    def discard(self, job_id: str) -> None:
        with self._cond:
            for key, line in list(self._lines.items()):
                kept = collections.deque(e for e in line if e[0] != job_id)
                if not kept:
                    del self._lines[key]
                elif len(kept) != len(line):
                    self._lines[key] = kept

    def waiting(self) -> list[tuple[str, str, int]]:
        """(job id, project, priority) of every queued job, in no particular order."""
        with self._cond:
            return [(e[0], project, prio) for (prio, project), line in self._lines.items() for e in line]

    def __len__(self) -> int:
        with self._cond:
            return sum(len(line) for line in self._lines.values())


class FrameWriter:
    """Encodes and stores one attempt's frames on a thread of its own, in
    the order they came, so the backend's (torch's) thread goes on with
    the next frame at once (benchmarks/bridge_overhead.py measures it).
    The thread runs a little nicer than torch's, so during denoising it
    takes the CPU torch leaves idle. The first failure (a full disk, the
    database) is kept: the next ``put`` raises it, and so does ``close``."""

    def __init__(self, name: str, depth: int = WRITER_DEPTH):
        self._queue: queue.Queue[Callable[[], object] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def put(self, job: Callable[[], object]) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(job)

    def _loop(self) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WRITER_NICE)   # this thread only (Linux)
        except (AttributeError, OSError):
            pass
        while (job := self._queue.get()) is not None:
            if self._error is None:
                try:
                    job()
                except BaseException as exc:   # kept for the backend's thread: it raises it
                    self._error = exc

    def close(self, timeout: float = WRITER_CLOSE_S) -> None:
        """Wait for every queued frame to be stored; raise the first failure."""
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"frames were still being stored after {timeout:.0f} s")
        if self._error is not None:
            raise self._error


@dataclass
class _Attempt:
    """The JobContext a backend reports to during one run, and the record
    of that run: frames are charged and priced here, as they are produced
    (``record_frame``), for the local and the Ray executor alike."""

    job: JobRecord
    executor: LocalExecutor
    frames_done: frozenset[int]
    site: Site
    cancel_event: threading.Event = field(default_factory=threading.Event)
    yield_event: threading.Event = field(default_factory=threading.Event)   # set: give the device to another job
    yielded_to: str = ""
    started: float = field(default_factory=time.monotonic)
    frame_window: Window | None = None   # laps once per frame: consecutive windows tile the attempt
    produced_indices: set[int] = field(default_factory=set)
    writer: FrameWriter | None = None    # started by the first frame() (local frames only)
    live: LiveConsistency | None = None  # the temporal score, fed frame by frame (a fresh attempt only)
    record: Attempt = field(init=False)
    attribution: RunningAttribution = field(init=False)
    last_checkpoint: float = field(init=False)

    def __post_init__(self):
        self.record = Attempt(number=self.job.attempts, site=self.site.name, started=self.executor.now())
        self.attribution = RunningAttribution(self.job.frame_count - len(self.frames_done))
        self.last_checkpoint = time.monotonic()

    @property
    def job_id(self) -> str:
        return self.job.job_id

    @property
    def cancelled(self) -> bool:
        """What the backend checks between steps: a cancel, a stop, or a yield."""
        return self.cancel_event.is_set() or self.yield_event.is_set()

    def energy_so_far_wh(self) -> float:
        """The job's energy so far: earlier attempts, this one's frames and what is pending."""
        return self.job.energy_wh + self.record.frames_energy_wh + self.attribution.pending_wh

    def meter_lap(self) -> None:
        """Add the energy since the last lap to the pending pool (local meter)."""
        if self.frame_window is not None:
            window = self.frame_window.lap()
            self.measure(window.wh, window.measured, window.meter)

    def measure(self, energy_wh: float, measured: bool, meter: str) -> None:
        self.attribution.add(energy_wh)
        first = not self.record.meter      # measured only while every reading so far was
        self.record = replace(self.record, meter=meter,
                              measured=measured if first else self.record.measured and measured)

    def progress(self, step: int, total_steps: int, stage: str = "") -> None:
        self.meter_lap()
        self.report_progress(step, total_steps, stage)

    def report_progress(self, step: int, total_steps: int, stage: str) -> None:
        elapsed = time.monotonic() - self.started
        eta = elapsed / step * (total_steps - step) if step > 0 else -1.0
        self.executor.channels.notify(self.job_id, progress=ProgressInfo(
            step=step, total_steps=total_steps, frames_done=len(self.frames_done) + self.produced,
            elapsed_s=elapsed, eta_s=eta, energy_wh_so_far=self.energy_so_far_wh(), stage=stage))
        if time.monotonic() - self.last_checkpoint >= CHECKPOINT_EVERY_S:
            self.executor.store.save_attempt(self.job_id, self.checkpoint())

    def preview(self, index: int, step: int, rgb: np.ndarray) -> None:
        png = encode_png(rgb, {"job_id": self.job_id, "frame": index, "step": step, "preview": 1})
        self.executor.channels.notify(self.job_id, preview=(index, step, png))

    def frame(self, index: int, rgb: np.ndarray, work: float = 1.0) -> None:
        """Charged and priced now, on the backend's thread (its energy is fixed
        here); encoded and stored by the attempt's FrameWriter."""
        self.check_index(index)
        self.meter_lap()     # one meter read; sub-100 ms NVML windows are power x time
        charged = self.charge_frame(index, work)
        if charged is not None:
            if self.writer is None:
                self.writer = FrameWriter(f"greenlight-frames-{self.job_id[:8]}")
            rec, meta, checkpoint = charged
            self.writer.put(lambda: self.store_frame(rec, encode_png(rgb, meta), checkpoint))
            if self.live is not None:
                self.live.feed(index, rgb)
        self.executor.consider_yield(self)

    def flush_frames(self) -> None:
        """Every frame handed to the writer is stored (or its failure raised)."""
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.close()

    def check_index(self, index: int) -> None:
        if not 0 <= index < self.job.frame_count:
            raise GreenlightError(f"backend produced frame {index}, outside 0..{self.job.frame_count - 1}")

    def record_frame(self, index: int, work: float, encode) -> bool:
        """Charge, price and store a frame; ``encode(meta) -> bytes`` makes
        the file with the fixed figures in its metadata."""
        charged = self.charge_frame(index, work)
        if charged is None:
            return False
        rec, meta, checkpoint = charged
        return self.store_frame(rec, encode(meta), checkpoint)

    def store_frame(self, rec: FrameRecord, data: bytes, checkpoint: Attempt) -> bool:
        stored = self.executor.store.add_frame(self.job_id, rec, data, checkpoint)
        self.executor.channels.notify(self.job_id)
        return stored

    def charge_frame(self, index: int, work: float) -> tuple[FrameRecord, dict[str, object], Attempt] | None:
        """Charge and price a frame: (its record, its file's metadata, the attempt's checkpoint after it);
        None when it is stored already (charged nothing twice)."""
        if index in self.frames_done or index in self.produced_indices:
            return None
        wh = self.attribution.charge(work)
        now = self.executor.now()
        location, market, used = price(self.site, wh, self.executor.intensity_at(self.site, now))
        rec = FrameRecord(index=index, attempt=self.record.number, meter=self.record.meter,
                          measured=self.record.measured, energy_wh=wh, work=float(work), site=self.site.name,
                          pue=self.site.pue, intensity_g_per_kwh=used.g_per_kwh, intensity_source=used.source,
                          intensity_kind=used.kind, co2e_g_location=location, co2e_g_market=market, created=now)
        meta: dict[str, object] = {"job_id": self.job_id, "frame": index, "energy_wh": f"{wh:.9g}",
                "energy_method": "measured" if rec.measured else "estimated", "meter": rec.meter,
                "site": rec.site, "intensity_g_per_kwh": f"{used.g_per_kwh:.9g}", "intensity_source": used.source,
                "intensity_kind": used.kind, "co2e_g_location": f"{location:.9g}"}
        if market is not None:
            meta["co2e_g_market"] = f"{market:.9g}"
        self.record = replace(self.record, frames=self.record.frames + 1,
                              frames_energy_wh=self.record.frames_energy_wh + wh)
        self.produced_indices.add(index)
        return rec, meta, self.checkpoint()

    @property
    def produced(self) -> int:
        return len(self.produced_indices)

    def checkpoint(self) -> Attempt:
        """The attempt as it stands, its pending energy priced now."""
        self.last_checkpoint = time.monotonic()
        return self.close(AttemptOutcome.RUNNING)

    def close(self, outcome: AttemptOutcome, reason: str = "") -> Attempt:
        now = self.executor.now()
        return close_attempt(self.record, self.site, pending_wh=self.attribution.pending_wh, outcome=outcome,
                             ended=now, reason=reason, intensity=self.executor.intensity_at(self.site, now))


class LocalExecutor:
    def __init__(self, store: JobStore, channels: ChannelRegistry, backends: dict[str, Backend],
                 meter: Meter, site: Site, devices: tuple[str, ...] = ("cpu",), ledger: Ledger | None = None,
                 signal: CarbonSignal | None = None, clock: Callable[[], datetime] | None = None):
        """``signal`` prices energy with the grid's intensity at the moment it
        is used (None: the site's static figure); ``clock`` is for tests."""
        self.store = store
        self.signal = signal
        self.clock = clock
        self._points: dict[str, IntensityPoint] = {}     # region -> the last point the signal gave
        self._outage: dict[str, tuple[float, str]] = {}   # region -> (monotonic until, why): no retry per frame
        self.channels = channels
        self.backends = backends
        self.meter = meter
        self.site = site
        self.devices = devices
        self.ledger = ledger
        self.meter_reason = getattr(meter, "name", type(meter).__name__)   # what was chosen and why
        self._queue = FairQueue()
        self._running: dict[str, _Attempt] = {}
        # cancels that arrived after a job turned RUNNING in the store but before its attempt was registered
        self._cancel_pending: set[str] = set()
        self._cancel_reasons: dict[str, str] = {}   # job id -> the reason a cancel gave (its state_reason)
        self._live_scores: dict[str, TemporalConsistency] = {}   # job id -> its score, made while it ran
        # a resumable job yields to another project's waiting interactive job after this long (None: never)
        self.time_slice_s: float | None = TIME_SLICE_S
        # called with the job id once a job has ended (the scheduler re-plans held jobs: a device is free)
        self.on_job_end: Callable[[str], None] | None = None
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._work, name=f"greenlight-{d}", daemon=True) for d in devices]
        self._stopping = threading.Event()

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Drain: running jobs finish the frame they are on and stop; their
        attempts end ``interrupted`` and the jobs go back to ``queued`` (the
        next start plans and runs them again, keeping their frames). Then
        the workers exit."""
        self._stopping.set()
        with self._lock:
            for attempt in self._running.values():
                attempt.cancel_event.set()
        for _ in self._threads:
            self._queue.put_stop()
        for t in self._threads:
            t.join(timeout)

    def enqueue(self, job_id: str, front: bool = False) -> None:
        """Queue a released job for a device (scheduler.release)."""
        project, priority, urgent_at = "", INTERACTIVE, None
        try:
            job = self.store.get(job_id)
            project = job.project
            if job.scheduling.job_class == "batch":
                priority = BATCH
                if job.decision is not None and job.decision.must_start_by is not None:
                    urgent_at = job.decision.must_start_by.timestamp()
        except Exception as exc:   # queued anyway: its start reads the store again and says what is wrong
            log.warning("job %s: queued without its project (%s)", job_id, exc)
        self._queue.put(job_id, project, priority, urgent_at, front=front)

    def request_cancel(self, job_id: str, reason: str = "") -> bool:
        """Cancel a running (or starting) job, keeping ``reason`` as its state reason."""
        if reason:
            with self._lock:
                self._cancel_reasons[job_id] = reason
        return self.cancel_running(job_id)

    def queued(self) -> list[str]:
        return [job_id for job_id, _, _ in self._queue.waiting()]

    def consider_yield(self, attempt: _Attempt) -> None:
        """After a frame: give the device to another project's waiting
        interactive job once this one has had its time slice (only a backend
        that resumes from stored frames)."""
        if self.time_slice_s is None or attempt.cancelled or self._stopping.is_set():
            return
        if time.monotonic() - attempt.started < self.time_slice_s:
            return
        backend = self.backends.get(attempt.job.backend)
        if backend is None or not backend.info().can_resume:
            return
        for job_id, project, priority in self._queue.waiting():
            if priority == INTERACTIVE and project != attempt.job.project:
                attempt.yielded_to = job_id
                attempt.yield_event.set()
                log.info("job %s: yields to job %s of project %r after %d frames", attempt.job_id, job_id,
                         project, attempt.produced)
                return

    def cancel_running(self, job_id: str) -> bool:
        with self._lock:
            attempt = self._running.get(job_id)
            if attempt is None:
                self._cancel_pending.add(job_id)    # it is starting: its attempt sees this when registered
                return False
        attempt.cancel_event.set()
        return True

    def is_running(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._running

    def site_for(self, job: JobRecord) -> Site:
        """Where a job runs (the local executor has one site)."""
        return self.site

    def site_named(self, name: str) -> Site:
        """A site's figures by name (the local executor knows its own)."""
        return self.site

    def now(self) -> float:
        """Unix seconds, from the bridge's clock."""
        return self.clock().timestamp() if self.clock is not None else time.time()

    def intensity_at(self, site: Site, t: float) -> Intensity:
        """The grid intensity of ``site`` at unix time ``t`` from the signal
        (one lookup per signal interval), or its static figure, said so."""
        if self.signal is None:
            return static_intensity(site)
        at = datetime.fromtimestamp(t, UTC)
        point = self._points.get(site.grid_region)
        if point is None or not point.start <= at < point.end:
            outage = self._outage.get(site.grid_region)
            if outage is not None and time.monotonic() < outage[0]:
                return static_intensity(site, outage[1])
            try:
                point = self.signal.intensity(site.grid_region, at)
            except SignalError as exc:   # asked again after SIGNAL_RETRY_S, not at every frame
                self._outage[site.grid_region] = (time.monotonic() + SIGNAL_RETRY_S, f"signal unavailable: {exc}")
                return static_intensity(site, f"signal unavailable: {exc}")
            self._points[site.grid_region] = point
        if point.provider == "static":    # the chain's last resort: the site's own figure is the better static one
            return static_intensity(site, "no time-resolved signal answered" + (
                f": {'; '.join(point.fallback)}" if point.fallback else ""))
        return Intensity(point.g_per_kwh, describe(point), "forecast" if point.forecast else "realised")

    # ----------------------------------------------------------- worker
    def _work(self) -> None:
        while not self._stopping.is_set():
            job_id = self._queue.get()
            if job_id is None:
                return
            try:
                self._run(job_id)
            except Exception as exc:  # a bug in the executor itself: the job still ends, the worker goes on
                log.exception("job %s: executor error", job_id)
                self._fail_unstarted(job_id, exc)

    def _fail_unstarted(self, job_id: str, exc: BaseException) -> None:
        """A job whose run could not begin or end normally: FAILED, watchers told."""
        try:
            job = self.store.get(job_id)
            if not job.state.terminal:
                self._finish(job_id, JobState.FAILED, f"the bridge could not run the job: {describe_failure(exc)}")
        except Exception:
            log.exception("job %s: could not be marked failed", job_id)
            self.channels.notify(job_id)

    def _start_attempt(self, job_id: str) -> _Attempt | None:
        """SCHEDULED -> RUNNING and the attempt's record; None when the job
        was cancelled (or already run) while it waited in the queue."""
        try:
            job = self.store.transition(job_id, JobState.RUNNING, expect={JobState.SCHEDULED}, count_attempt=True)
        except GreenlightError as exc:
            log.info("job %s: not started: %s", job_id, exc)
            return None
        try:
            done = frozenset(f.index for f in self.store.frames(job_id))
            attempt = self._new_attempt(job, done)
            self.store.save_attempt(job_id, attempt.checkpoint())
        except Exception as exc:
            log.exception("job %s: could not start", job_id)
            self._finish(job_id, JobState.FAILED, f"the bridge could not start the job: {describe_failure(exc)}")
            return None
        with self._lock:
            self._running[job_id] = attempt
            if job_id in self._cancel_pending:
                self._cancel_pending.discard(job_id)
                attempt.cancel_event.set()
        self.channels.notify(job_id)
        return attempt

    def _new_attempt(self, job: JobRecord, done: frozenset[int]) -> _Attempt:
        return _Attempt(job=job, executor=self, frames_done=done, site=self.site_for(job))

    def _run(self, job_id: str) -> None:
        from ..proto.greenlight.v1 import shot_pb2
        from ..shot.wire import shot_from_pb

        attempt = self._start_attempt(job_id)
        if attempt is None:
            return
        job = attempt.job
        log.info("job %s: running %s (attempt %d)", job_id, job.backend, job.attempts)
        error: str | None = None
        try:
            attempt.frame_window = Window(self.meter).open()
            backend = self.backends[job.backend]
            msg = shot_pb2.Shot()
            msg.ParseFromString(self.store.read_shot_bytes(job_id))
            shot = shot_from_pb(msg)
            if not attempt.frames_done and has_passes(shot):
                attempt.live = LiveConsistency(shot, name=f"greenlight-temporal-{job_id[:8]}")
            backend.run(shot, job.generation, attempt)
        except Exception as exc:  # a job failure must never escape as a crash
            log.error("job %s: failed\n%s", job_id, traceback.format_exc())
            error = describe_failure(exc)
        with self._lock:
            self._running.pop(job_id, None)
        try:
            attempt.meter_lap()     # the tail after the last frame
        except Exception as exc:    # a meter that fails now must not leave the job running
            log.exception("job %s: meter failed at the end of the run", job_id)
            error = error or f"the energy meter failed: {describe_failure(exc)}"
        self._end_attempt(attempt, error)

    def _end_attempt(self, attempt: _Attempt, error: str | None) -> None:
        """The one end-of-attempt path of both executors: close the attempt's
        record, then the job: cancelled, failed, or completed when every
        frame is stored. A bridge shutting down leaves the job running (the
        next start re-queues it) and the attempt interrupted."""
        job = attempt.job
        try:
            attempt.flush_frames()     # the frames the backend handed over are stored before anything is counted
        except Exception as exc:
            log.exception("job %s: storing its frames failed", job.job_id)
            error = error or describe_failure(exc)
        live, attempt.live = attempt.live, None
        if live is not None:
            score = live.finish() if error is None else live.abandon()
            if score is not None:
                with self._lock:
                    self._live_scores[job.job_id] = score
        user_cancel = attempt.cancel_event.is_set()     # set by a cancel, or by stop() for every running job
        stopped = self._stopping.is_set() and user_cancel
        yielded = attempt.yield_event.is_set() and not user_cancel
        if error is None and (stopped or yielded):
            self._requeue(attempt)
            return
        if user_cancel:
            with self._lock:
                why = self._cancel_reasons.pop(job.job_id, "")
            state, reason = JobState.CANCELLED, why or "cancelled by request"
        elif error is not None:
            state, reason = JobState.FAILED, error
        else:
            try:
                missing = job.frame_count - len(self.store.frames(job.job_id))
                state, reason = ((JobState.FAILED, f"backend {job.backend!r} ended with {missing} frames missing")
                                 if missing else (JobState.COMPLETED, ""))
            except Exception as exc:
                log.exception("job %s: could not count its frames", job.job_id)
                state, reason = JobState.FAILED, f"the bridge could not check the job's frames: {describe_failure(exc)}"
        outcome = {JobState.CANCELLED: AttemptOutcome.CANCELLED, JobState.FAILED: AttemptOutcome.FAILED,
                   JobState.COMPLETED: AttemptOutcome.COMPLETED}[state]
        try:
            self.store.end_attempt(job.job_id, attempt.close(outcome, reason))
        except Exception as exc:
            log.exception("job %s: could not close attempt %d", job.job_id, attempt.record.number)
            if state is JobState.COMPLETED:
                state, reason = JobState.FAILED, f"the bridge could not record the job's end: {describe_failure(exc)}"
        self._finish(job.job_id, state, reason)

    def _requeue(self, attempt: _Attempt) -> None:
        """A stop or a yield: the attempt ends interrupted, the job goes back to
        the queue with its frames (after a stop, the next start plans it)."""
        job_id = attempt.job_id
        if attempt.yield_event.is_set():
            why = f"yielded to job {attempt.yielded_to} of another project after {attempt.produced} frames"
        else:
            why = "the bridge stopped"
        try:
            self.store.end_attempt(job_id, attempt.close(AttemptOutcome.INTERRUPTED, why))
            self.store.transition(job_id, JobState.QUEUED, f"re-queued: {why} (attempt {attempt.record.number})")
            if not self._stopping.is_set():
                self.store.transition(job_id, JobState.SCHEDULED, f"waiting for its turn: {why}")
                self.enqueue(job_id, front=True)
        except Exception as exc:
            log.exception("job %s: could not be re-queued", job_id)
            self._finish(job_id, JobState.FAILED, f"the bridge could not re-queue the job: {describe_failure(exc)}")
            return
        self.channels.notify(job_id)

    def _finish(self, job_id: str, state: JobState, reason: str) -> None:
        """The job's last writes: report, ledger row, final state. A failing
        write never leaves the job running: a report that cannot be saved
        makes it FAILED, and the final state write is retried."""
        try:
            report = self.report_for(self.store.get(job_id), state)
            report = self.store.save_report(job_id, report)   # as saved: with its recipe
        except Exception as exc:
            log.exception("job %s: report could not be saved", job_id)
            report = None
            if state is not JobState.FAILED:
                state, reason = JobState.FAILED, f"its report could not be saved: {describe_failure(exc)}"
        if self.ledger is not None and report is not None:
            try:
                self.ledger.record(report)
            except Exception:  # the ledger is a record, never a reason to fail a job
                log.exception("job %s: ledger write failed", job_id)
        try:
            for wait in (*END_RETRIES, None):
                try:
                    self.store.transition(job_id, state, reason)
                    break
                except GreenlightError:
                    raise   # the job is in another state already (an illegal move): nothing to retry
                except Exception:
                    if wait is None:
                        raise
                    log.warning("job %s: final state write failed; retrying in %.2f s", job_id, wait,
                                exc_info=True)
                    time.sleep(wait)
        except Exception:
            log.exception("job %s: could not be marked %s", job_id, state.value)
        finally:
            self.channels.notify(job_id)
            self.channels.discard(job_id)
            with self._lock:
                self._cancel_reasons.pop(job_id, None)
        log.info("job %s: %s %s", job_id, state.value, reason)
        if self.on_job_end is not None:
            try:
                self.on_job_end(job_id)
            except Exception:   # a scheduling hint, never a reason to lose the job's end
                log.exception("job %s: end-of-job hook failed", job_id)

    def report_for(self, job: JobRecord, state: JobState) -> JobReport:
        """The job's report from its stored frames and attempts (see
        ``bridge.energy.job_report``)."""
        d = job.decision
        frames, attempts = self.store.frames(job.job_id), self.store.attempts(job.job_id)
        # a shifted job is priced again as if it had started when it was submitted, where it was submitted
        shifted = bool(d and d.shifted)
        started = min((a.started for a in attempts), default=0.0)
        delay_s = (max(0.0, started - d.decided_at.timestamp()) if shifted and d and d.decided_at and d.waits
                   else 0.0)
        moved = bool(shifted and d and d.run_now_site and d.site != d.run_now_site)
        home = self.site_named(d.run_now_site) if d and d.run_now_site else self.site
        saved, basis = saved_vs_submit(frames, attempts, delay_s, moved, lambda t: self.intensity_at(home, t))
        facts = SchedulingFacts(job_class=job.scheduling.job_class, shifted=bool(d and d.shifted),
                                run_now_co2e_g=d.run_now_co2e_g if d else None,
                                expected_co2e_g=d.expected_co2e_g if d else None, site=d.site if d else "",
                                saved_g_vs_submit=saved, saved_basis=basis)
        report = build_report(job_id=job.job_id, tags=Tags(job.project, job.shot, job.version), backend=job.backend,
                              generation=job.generation.to_dict(), state=state, fps=job.fps, frames=frames,
                              attempts=attempts, site=self.site_for(job), scheduling=facts, finished=self.now())
        return dataclasses.replace(report, temporal=self.temporal_for(job, state, frames))

    def temporal_for(self, job: JobRecord, state: JobState, frames) -> TemporalConsistency:
        """The job's temporal-consistency score (docs/temporal.md): its stored
        frames against the engine's motion and depth in its stored shot."""
        from ..temporal.report import consistency, not_computed

        with self._lock:
            live = self._live_scores.pop(job.job_id, None)
        if state is not JobState.COMPLETED:
            return not_computed(f"the job is {state.value}")
        if live is not None:    # scored while it ran, on the very frames it stored (LiveConsistency)
            return live
        try:
            from ..proto.greenlight.v1 import shot_pb2
            from ..shot.wire import shot_from_pb

            msg = shot_pb2.Shot()
            msg.ParseFromString(self.store.read_shot_bytes(job.job_id))
            shot = shot_from_pb(msg)
        except Exception as exc:   # the score is a report figure, never a reason to fail the job
            log.warning("job %s: temporal score not computed: %s", job.job_id, describe_failure(exc))
            return not_computed("the stored shot could not be read back")
        by_index = {f.index: f for f in frames}
        return consistency(shot, lambda i: self.store.read_frame(job.job_id, by_index[i]), sorted(by_index))
