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
from dataclasses import dataclass, field

import numpy as np

from ..backends.base import Backend
from ..energy.accounting import Site, account, functional_unit, operational_g
from ..energy.attribution import attribute, rule_for
from ..energy.ledger import Ledger
from ..energy.meters import Meter, Window, joules_to_wh
from ..errors import GreenlightError
from ..jobs.channels import ChannelRegistry, ProgressInfo
from ..jobs.images import encode_png
from ..jobs.state import JobState
from ..jobs.store import JobRecord, JobStore

log = logging.getLogger(__name__)


@dataclass
class _Attempt:
    """The JobContext a backend reports to during one run."""

    job: JobRecord
    executor: "LocalExecutor"
    frames_done: frozenset[int]
    cancel_event: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)
    start_joules: float = 0.0
    frame_window: Window | None = None   # laps once per frame: consecutive windows tile the job window
    produced: int = 0

    @property
    def job_id(self) -> str:
        return self.job.job_id

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def _energy_so_far_wh(self) -> float:
        return self.job.energy_wh + joules_to_wh(self.executor.meter.read().joules - self.start_joules)

    def progress(self, step: int, total_steps: int, stage: str = "") -> None:
        elapsed = time.monotonic() - self.started
        eta = elapsed / step * (total_steps - step) if step > 0 else -1.0
        self.executor.channels.notify(self.job_id, progress=ProgressInfo(
            step=step, total_steps=total_steps, frames_done=len(self.frames_done) + self.produced,
            elapsed_s=elapsed, eta_s=eta, energy_wh_so_far=self._energy_so_far_wh(), stage=stage))

    def preview(self, index: int, step: int, rgb: np.ndarray) -> None:
        png = encode_png(rgb, {"job_id": self.job_id, "frame": index, "step": step, "preview": 1})
        self.executor.channels.notify(self.job_id, preview=(index, step, png))

    def frame(self, index: int, rgb: np.ndarray, work: float = 1.0) -> None:
        if not 0 <= index < self.job.frame_count:
            raise GreenlightError(f"backend produced frame {index}, outside 0..{self.job.frame_count - 1}")
        window = self.frame_window.lap()     # one meter read; sub-100 ms NVML windows are power x time
        window_wh = window.wh
        co2e_location, co2e_market = operational_g(self.executor.site, window_wh)
        meta = {
            "job_id": self.job_id, "frame": index, "energy_wh": f"{window_wh:.9g}",
            "energy_method": window.energy_method, "meter": window.meter, "energy_window": window.method,
            "co2e_g_location": f"{co2e_location:.9g}",
        }
        if co2e_market is not None:
            meta["co2e_g_market"] = f"{co2e_market:.9g}"
        png = encode_png(rgb, meta)
        if self.executor.store.add_frame(self.job_id, index, png, window_wh, work):
            self.produced += 1
            self.executor.channels.notify(self.job_id)


class LocalExecutor:
    def __init__(self, store: JobStore, channels: ChannelRegistry, backends: dict[str, Backend],
                 meter: Meter, site: Site, devices: tuple[str, ...] = ("cpu",), ledger: Ledger | None = None):
        self.store = store
        self.channels = channels
        self.backends = backends
        self.meter = meter
        self.site = site
        self.devices = devices
        self.ledger = ledger
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._running: dict[str, _Attempt] = {}
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
            return False
        attempt.cancel_event.set()
        return True

    def is_running(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._running

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

    def _run(self, job_id: str) -> None:
        from ..shot.wire import shot_from_pb
        from ..proto.greenlight.v1 import shot_pb2

        try:
            job = self.store.transition(job_id, JobState.RUNNING, expect={JobState.SCHEDULED}, count_attempt=True)
        except GreenlightError as exc:  # cancelled (or already run) while waiting in the queue
            log.info("job %s: not started: %s", job_id, exc)
            return
        done = frozenset(f.index for f in self.store.frames(job_id))
        attempt = _Attempt(job=job, executor=self, frames_done=done)
        first = self.meter.read()
        attempt.start_joules = first.joules
        attempt.frame_window = Window(self.meter).open(first)
        with self._lock:
            self._running[job_id] = attempt
        self.channels.notify(job_id)
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
            self.store.add_energy(job_id, joules_to_wh(self.meter.read().joules - attempt.start_joules))
        if self._stopping.is_set() and error is None and attempt.cancelled:
            return  # bridge shutting down: leave it running; recovery re-queues it
        self._conclude(job, attempt, error)

    def _conclude(self, job: JobRecord, attempt: _Attempt, error: str | None) -> None:
        """End an attempt: cancelled, failed, or completed when every frame is stored."""
        wall_s = time.monotonic() - attempt.started
        if attempt.cancelled:
            self._finish(job.job_id, JobState.CANCELLED, wall_s, "cancelled by request")
        elif error is not None:
            self._finish(job.job_id, JobState.FAILED, wall_s, error)
        else:
            missing = job.frame_count - len(self.store.frames(job.job_id))
            if missing:
                self._finish(job.job_id, JobState.FAILED, wall_s,
                             f"backend {job.backend!r} ended with {missing} frames missing")
            else:
                self._finish(job.job_id, JobState.COMPLETED, wall_s, "")

    def _finish(self, job_id: str, state: JobState, wall_s: float, reason: str) -> None:
        job = self.store.get(job_id)
        report = self.build_report(job, state, wall_s)
        self.store.save_report(job_id, report)
        if self.ledger is not None:
            try:
                self.ledger.record(report, job_class=job.scheduling.job_class,
                                   shifted=bool(job.decision.get("shifted", False)),
                                   run_now_co2e_g=job.decision.get("run_now_co2e_g"))
            except Exception:  # the ledger is a record, never a reason to fail a job
                log.exception("job %s: ledger write failed", job_id)
        self.store.transition(job_id, state, reason)
        self.channels.notify(job_id)
        self.channels.discard(job_id)
        log.info("job %s: %s %s", job_id, state.value, reason)

    def build_report(self, job: JobRecord, state: JobState, wall_s: float) -> dict:
        """Final accounting (docs/energy.md): frames share the job's energy in
        proportion to the work the backend reported for each; shares sum to
        the job total exactly."""
        fps = job.fps
        frames = self.store.frames(job.job_id)
        total_wh = job.energy_wh
        works = [f.work for f in frames]
        shares = attribute(total_wh, works)
        if frames:
            self.store.set_frame_energy(job.job_id, {f.index: s for f, s in zip(frames, shares)})
        seconds, unit = functional_unit("second", len(frames), fps)
        acc = account(self.site, total_wh, reserved_s=wall_s, functional_units=seconds, unit=unit)
        reading = self.meter.read()
        per_frame = []
        for f, share in zip(frames, shares):
            location, market = operational_g(self.site, share)
            per_frame.append({"index": f.index, "work": f.work, "energy_wh": share,
                              "co2e_g_location": location, "co2e_g_market": market})
        sci_per = {}
        for kind in ("frame", "shot_version"):
            r, u = functional_unit(kind, len(frames), fps)
            sci_per[kind] = {"sci": (acc["co2e_g_location"] + acc["embodied_co2e_g"]) / r if r and frames else None,
                             "sci_unit": u, "functional_units": r}
        return {
            "job_id": job.job_id,
            "tags": {"project": job.project, "shot": job.shot, "version": job.version},
            "backend": job.backend,
            "generation": job.generation.to_dict(),
            "state": state.value,
            "frames": len(frames),
            "fps": list(fps),
            "wall_s": wall_s,
            "attempts": job.attempts,
            "energy": {"energy_wh": total_wh, "measured": reading.measured, "meter": reading.meter,
                       "co2e_g_location": acc["co2e_g_location"], "co2e_g_market": acc["co2e_g_market"]},
            **{k: v for k, v in acc.items() if k not in ("co2e_g_location", "co2e_g_market")},
            "sci_alternatives": sci_per,
            "per_frame": per_frame,
            "attribution": rule_for(works) if frames else "no frames produced: the energy stays at job level",
        }
