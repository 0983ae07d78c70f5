"""The bridge's carbon-aware scheduler: turns a job into a planner input,
asks the planner (``carbon_planner.plan``), and releases planned jobs to the
executor when their window opens (DESIGN section 7).

- Interactive jobs: decided without any forecast lookup, released at once.
- Batch jobs: each site's forecast over [now, deadline] from the carbon
  signal chain (a provider outage falls back to the static figure, and the
  reason says so), duration and energy estimated from the backend's history
  on this bridge; held until their planned start, released at once when
  ``should_run_now`` says so (window passed while the bridge was down, or
  the latest safe start came).
- Plans live in SQLite with the job (the decision JSON); a restart rebuilds
  the holds from there. Forecasts are refreshed and held jobs re-planned
  every ``replan_every_s``; ``run_now`` overrides a plan.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Set
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from ..energy.accounting import Site, site_intensity
from ..energy.signals import CarbonSignal, SignalError
from ..errors import InvalidArgumentError
from ..jobs.model import Decision, JobState
from ..jobs.store import JobRecord, JobStore
from .carbon_planner import PlanJob, PlanSite, plan, replan, run_now_reason
from .forecast import build_step_forecast

log = logging.getLogger(__name__)
# Used until this bridge has run a job of the backend: a conservative guess,
# said in the reason (the margin then keeps deadlines safe).
DEFAULT_DURATION = timedelta(minutes=10)


def now_utc() -> datetime:
    return datetime.now(UTC)


class CarbonScheduler:
    def __init__(self, store: JobStore, release: Callable[[str], None], sites: list[tuple[Site, int]],
                 signal: CarbonSignal | None = None, clock: Callable[[], datetime] = now_utc,
                 replan_every_s: float = 1800.0):
        """``sites``: (site, devices there) in order of preference; the first
        is where interactive jobs run."""
        if not sites:
            raise InvalidArgumentError("the scheduler needs at least one site")
        self.store = store
        self.release = release          # executor.enqueue
        self.sites = list(sites)
        self.signal = signal
        self.clock = clock
        self.replan_every_s = replan_every_s
        self._held: dict[str, datetime] = {}     # job id -> when to release it
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="greenlight-scheduler", daemon=True)
        self._last_replan = self.clock()
        self._replan_now = False

    # ------------------------------------------------------------ estimates
    def estimate(self, backend: str, work: float) -> tuple[timedelta, float | None, str]:
        """Expected duration and IT energy of a job from this bridge's history."""
        per_work_s = self.store.seconds_per_work(backend)
        per_work_wh = self.store.energy_per_work(backend)
        if per_work_s is None:
            duration, note = DEFAULT_DURATION, f"no run history for {backend}: assumed {DEFAULT_DURATION}"
        else:
            duration, note = timedelta(seconds=max(per_work_s * work, 1.0)), ""
        return duration, (None if per_work_wh is None else per_work_wh * work), note

    # ------------------------------------------------------------ planning
    def _plan_sites(self, job_class: str, start: datetime, end: datetime,
                    exclude: Set[str] = frozenset()) -> list[PlanSite]:
        # interactive jobs queue on the device whatever is planned: no store scan on their path
        busy = self._busy(exclude) if job_class == "batch" else {}
        return [self._plan_site(site, devices, job_class, start, end, busy.get(site.name, []))
                for site, devices in self.sites]

    def _plan_site(self, site: Site, devices: int, job_class: str, start: datetime, end: datetime,
                   busy: list) -> PlanSite:
        forecast, note = None, ""
        if job_class == "batch" and self.signal is not None:
            try:
                points = self.signal.forecast(site.grid_region, start, end)
                forecast = build_step_forecast(points, start, end, fallback_g_per_kwh=site_intensity(site),
                                               fallback_source=site.intensity_source)
                if points and points[0].fallback:
                    note = (f"forecast from {points[0].provider or points[0].source} after: "
                            + "; ".join(points[0].fallback))
            except SignalError as exc:
                note = f"carbon signal unavailable ({exc})"
                log.warning("no forecast for %s: %s; using its static figure", site.grid_region, exc)
        return PlanSite(name=site.name, region=site.grid_region, pue=site.pue, capacity=devices, forecast=forecast,
                        static_g_per_kwh=site.intensity_g_per_kwh, static_source=site.intensity_source, busy=busy,
                        forecast_note=note)

    def _busy(self, exclude: Set[str] = frozenset()) -> dict[str, list[tuple[datetime, datetime]]]:
        """Device time already promised per site: running and planned jobs."""
        now = self.clock()
        busy: dict[str, list] = {}
        for job in self.store.list(states={JobState.SCHEDULED, JobState.RUNNING}, limit=1_000_000):
            d = job.decision
            if job.job_id in exclude or d is None:
                continue
            start = d.planned_start
            end = d.planned_end if d.planned_end and d.planned_end > start else start + DEFAULT_DURATION
            if job.state is JobState.RUNNING:
                start = now
            if end > now:
                busy.setdefault(d.site, []).append((max(start, now), max(end, now + timedelta(seconds=1))))
        return busy

    def plan_job(self, *, job_id: str, backend: str, work: float, job_class: str, deadline: datetime | None,
                 allowed_sites: tuple[str, ...] = (), max_co2e_g: float | None = None,
                 options: bool = False, duration: timedelta | None = None,
                 energy_wh: float | None = None) -> Decision:
        """Plan one job; ``duration`` / ``energy_wh`` override the estimates
        from history (a dry run where the producer knows better)."""
        est_duration, est_wh, note = self.estimate(backend, work)
        if duration is not None:
            note = ""
        duration = duration or est_duration
        energy_wh = est_wh if energy_wh is None else energy_wh
        now = self.clock()
        job = PlanJob(job_id=job_id, duration=duration, energy_wh=energy_wh, job_class=job_class,
                      deadline=deadline, allowed_sites=allowed_sites, max_co2e_g=max_co2e_g)
        horizon = deadline if (job_class == "batch" and deadline is not None and deadline > now) else now + duration
        sites = self._plan_sites(job_class, now, horizon + timedelta(minutes=5), exclude={job_id})
        decision = plan(job, sites, now, options=options)
        if note:
            decision = _with_reason(decision, f"{decision.reason} ({note})")
        return decision

    def decide(self, job: JobRecord, options: bool = False) -> Decision:
        s = job.scheduling
        return self.plan_job(job_id=job.job_id, backend=job.backend, work=job.work_estimate, job_class=s.job_class,
                             deadline=s.deadline, allowed_sites=s.allowed_sites, max_co2e_g=s.max_co2e_g,
                             options=options)

    # ------------------------------------------------------------ release
    def place(self, job_id: str, decision: Decision) -> None:
        """Release now or hold until the planned start (or the latest safe start)."""
        why = run_now_reason(self.clock(), decision.planned_start, decision.deadline,
                             timedelta(seconds=decision.duration_s), timedelta(seconds=decision.margin_s))
        if decision.job_class != "batch" or why is not None:
            self.release(job_id)
            return
        when = decision.planned_start
        if decision.must_start_by is not None:
            when = min(when, decision.must_start_by)
        with self._cond:
            self._held[job_id] = when
            self._cond.notify_all()
        log.info("job %s: held until %s", job_id, when.isoformat(timespec="seconds"))

    def run_now(self, job_id: str) -> bool:
        """Release a held job at once (the user chose speed over carbon)."""
        with self._cond:
            held = self._held.pop(job_id, None) is not None
        if held:
            self.release(job_id)
        return held

    def job_ended(self, job_id: str = "") -> None:
        """A device came free: re-plan the held jobs now rather than at the
        next ``replan_every_s`` (a job planned behind a busy device would
        otherwise wait for a slot that has already opened)."""
        with self._cond:
            if self._held:
                self._replan_now = True
                self._cond.notify_all()

    def poke(self) -> None:
        """Look at the clock again now (after a clock change or a config reload)."""
        with self._cond:
            self._cond.notify_all()

    def held(self) -> dict[str, datetime]:
        with self._cond:
            return dict(self._held)

    def resume(self, jobs: list[JobRecord]) -> None:
        """After a restart: scheduled jobs go back to their plan (or run at
        once when their window passed while the bridge was down)."""
        for job in jobs:
            if job.decision is None:
                self.release(job.job_id)   # no plan we can read: never strand the job
                continue
            self.place(job.job_id, job.decision)

    # ------------------------------------------------------------ thread
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(5)

    def _loop(self) -> None:
        while True:
            with self._cond:
                if self._stop:
                    return
                now = self.clock()
                due = [j for j, t in self._held.items() if t <= now]
                for j in due:
                    del self._held[j]
                wait = min([(t - now).total_seconds() for t in self._held.values()] + [5.0])
            for j in due:
                log.info("job %s: planned window opens: released", j)
                self.release(j)
            with self._cond:
                replan_now, self._replan_now = self._replan_now, False
            if replan_now or (now - self._last_replan).total_seconds() >= self.replan_every_s:
                self._last_replan = now
                self._replan_held()
            with self._cond:
                if not self._stop:
                    self._cond.wait(max(0.05, min(wait, 5.0)))

    def _replan_held(self) -> None:
        """Fresh forecasts for jobs still waiting; a plan only moves if it is better."""
        held = self.held()
        if not held:
            return
        now = self.clock()
        pending, jobs = [], {}
        for job_id in held:
            try:
                job = self.store.get(job_id)
            except Exception:
                continue
            if job.state is not JobState.SCHEDULED:
                continue
            if job.decision is None:
                continue
            duration, energy_wh, _ = self.estimate(job.backend, job.work_estimate)
            s = job.scheduling
            pending.append((PlanJob(job_id=job_id, duration=duration, energy_wh=energy_wh, job_class=s.job_class,
                                    deadline=s.deadline, allowed_sites=s.allowed_sites, max_co2e_g=s.max_co2e_g),
                            job.decision))
            jobs[job_id] = job
        if not pending:
            return
        latest = max((p[0].deadline for p in pending if p[0].deadline), default=now + timedelta(hours=1))
        # the held jobs' own promises are what is re-planned: plan them on the others' device time
        sites = self._plan_sites("batch", now, latest + timedelta(minutes=5), exclude=set(jobs))
        try:
            new = replan(pending, sites, now)
        except InvalidArgumentError as exc:
            log.warning("re-plan failed: %s; keeping the current plans", exc)
            return
        for job_id, decision in new.items():
            self.store.set_decision(job_id, decision)
            self.place(job_id, decision)


def _with_reason(decision: Decision, reason: str) -> Decision:
    return replace(decision, reason=reason)

