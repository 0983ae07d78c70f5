"""The embedded executor: runs scheduled jobs in-process, one job per device
at a time, in a worker thread per device (DESIGN section 7).

It owns the run of an attempt: state transitions, energy windows around the
whole run and each frame, frame files, and the final report.
"""

from __future__ import annotations

import logging
import queue
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
from ..jobs.model import Attempt, AttemptOutcome, FrameRecord, JobReport, JobState, SchedulingFacts, Tags
from ..jobs.store import JobRecord, JobStore

log = logging.getLogger(__name__)
CHECKPOINT_EVERY_S = 5.0    # an attempt's energy is stored at least this often (and with every frame)
SIGNAL_RETRY_S = 60.0       # after a carbon-signal outage, frames use the static figure this long before a retry


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
    started: float = field(default_factory=time.monotonic)
    frame_window: Window | None = None   # laps once per frame: consecutive windows tile the attempt
    produced_indices: set[int] = field(default_factory=set)
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
        return self.cancel_event.is_set()

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
        self.check_index(index)
        self.meter_lap()     # one meter read; sub-100 ms NVML windows are power x time
        self.record_frame(index, work, lambda meta: encode_png(rgb, meta))

    def check_index(self, index: int) -> None:
        if not 0 <= index < self.job.frame_count:
            raise GreenlightError(f"backend produced frame {index}, outside 0..{self.job.frame_count - 1}")

    def record_frame(self, index: int, work: float, encode) -> bool:
        """Charge, price and store a frame; ``encode(meta) -> bytes`` makes
        the file with the fixed figures in its metadata."""
        if index in self.frames_done or index in self.produced_indices:
            return False     # already stored: charge nothing twice
        wh = self.attribution.charge(work)
        now = self.executor.now()
        location, market, used = price(self.site, wh, self.executor.intensity_at(self.site, now))
        rec = FrameRecord(index=index, attempt=self.record.number, meter=self.record.meter,
                          measured=self.record.measured, energy_wh=wh, work=float(work), site=self.site.name,
                          pue=self.site.pue, intensity_g_per_kwh=used.g_per_kwh, intensity_source=used.source,
                          intensity_kind=used.kind, co2e_g_location=location, co2e_g_market=market, created=now)
        meta = {"job_id": self.job_id, "frame": index, "energy_wh": f"{wh:.9g}",
                "energy_method": "measured" if rec.measured else "estimated", "meter": rec.meter,
                "site": rec.site, "intensity_g_per_kwh": f"{used.g_per_kwh:.9g}", "intensity_source": used.source,
                "intensity_kind": used.kind, "co2e_g_location": f"{location:.9g}"}
        if market is not None:
            meta["co2e_g_market"] = f"{market:.9g}"
        self.record = replace(self.record, frames=self.record.frames + 1,
                              frames_energy_wh=self.record.frames_energy_wh + wh)
        self.produced_indices.add(index)
        stored = self.executor.store.add_frame(self.job_id, rec, encode(meta), self.checkpoint())
        self.executor.channels.notify(self.job_id)
        return stored

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
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._running: dict[str, _Attempt] = {}
        # cancels that arrived after a job turned RUNNING in the store but before its attempt was registered
        self._cancel_pending: set[str] = set()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._work, name=f"greenlight-{d}", daemon=True) for d in devices]
        self._stopping = threading.Event()

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask running jobs to stop and the workers to exit; running jobs stay
        ``running`` in the store and are re-queued by the next start."""
        self._stopping.set()
        with self._lock:
            for attempt in self._running.values():
                attempt.cancel_event.set()
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout)

    def enqueue(self, job_id: str) -> None:
        self._queue.put(job_id)

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
            except Exception:  # a bug in the executor itself: keep serving
                log.exception("job %s: executor error", job_id)

    def _start_attempt(self, job_id: str) -> _Attempt | None:
        """SCHEDULED -> RUNNING and the attempt's record; None when the job
        was cancelled (or already run) while it waited in the queue."""
        try:
            job = self.store.transition(job_id, JobState.RUNNING, expect={JobState.SCHEDULED}, count_attempt=True)
        except GreenlightError as exc:
            log.info("job %s: not started: %s", job_id, exc)
            return None
        done = frozenset(f.index for f in self.store.frames(job_id))
        attempt = self._new_attempt(job, done)
        self.store.save_attempt(job_id, attempt.checkpoint())
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
        attempt.frame_window = Window(self.meter).open()
        log.info("job %s: running %s (attempt %d)", job_id, job.backend, job.attempts)
        error: str | None = None
        try:
            backend = self.backends[job.backend]
            msg = shot_pb2.Shot()
            msg.ParseFromString(self.store.shot_path(job_id).read_bytes())
            shot = shot_from_pb(msg)
            backend.run(shot, job.generation, attempt)
        except Exception as exc:  # a job failure must never escape as a crash
            log.error("job %s: failed\n%s", job_id, traceback.format_exc())
            error = f"{type(exc).__name__}: {exc}"
        finally:
            with self._lock:
                self._running.pop(job_id, None)
            attempt.meter_lap()     # the tail after the last frame
        self._end_attempt(attempt, error)

    def _end_attempt(self, attempt: _Attempt, error: str | None) -> None:
        """The one end-of-attempt path of both executors: close the attempt's
        record, then the job: cancelled, failed, or completed when every
        frame is stored. A bridge shutting down leaves the job running (the
        next start re-queues it) and the attempt interrupted."""
        job = attempt.job
        if self._stopping.is_set() and error is None and attempt.cancelled:
            self.store.end_attempt(job.job_id, attempt.close(AttemptOutcome.INTERRUPTED, "the bridge stopped"))
            return
        if attempt.cancelled:
            state, reason = JobState.CANCELLED, "cancelled by request"
        elif error is not None:
            state, reason = JobState.FAILED, error
        else:
            missing = job.frame_count - len(self.store.frames(job.job_id))
            state, reason = ((JobState.FAILED, f"backend {job.backend!r} ended with {missing} frames missing")
                             if missing else (JobState.COMPLETED, ""))
        outcome = {JobState.CANCELLED: AttemptOutcome.CANCELLED, JobState.FAILED: AttemptOutcome.FAILED,
                   JobState.COMPLETED: AttemptOutcome.COMPLETED}[state]
        self.store.end_attempt(job.job_id, attempt.close(outcome, reason))
        self._finish(job.job_id, state, reason)

    def _finish(self, job_id: str, state: JobState, reason: str) -> None:
        job = self.store.get(job_id)
        report = self.report_for(job, state)
        self.store.save_report(job_id, report)
        if self.ledger is not None:
            try:
                self.ledger.record(report)
            except Exception:  # the ledger is a record, never a reason to fail a job
                log.exception("job %s: ledger write failed", job_id)
        self.store.transition(job_id, state, reason)
        self.channels.notify(job_id)
        self.channels.discard(job_id)
        log.info("job %s: %s %s", job_id, state.value, reason)

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
        return build_report(job_id=job.job_id, tags=Tags(job.project, job.shot, job.version), backend=job.backend,
                            generation=job.generation.to_dict(), state=state, fps=job.fps, frames=frames,
                            attempts=attempts, site=self.site_for(job), scheduling=facts, finished=self.now())
