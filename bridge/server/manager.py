"""Job management behind the servicer: admit, schedule, cancel, recover.

The servicer translates protobuf and status codes; everything decided about
jobs is decided here, so the rules hold whatever the transport.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from ..backends.base import Backend
from ..errors import (
    GreenlightError,
    InvalidArgumentError,
    LimitExceededError,
    NotFoundError,
    PreconditionError,
)
from ..jobs.channels import ChannelRegistry
from ..jobs.model import Decision, JobReport, JobState
from ..jobs.store import JobRecord, JobStore
from ..scheduling.executor import LocalExecutor
from ..scheduling.scheduler import CarbonScheduler
from ..shot.model import Shot
from ..shot.request import GenerationSettings, SchedulingSettings, validate_generation, validate_scheduling
from ..shot.validation import validate_shot
from .auth import Principal
from .config import BridgeConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeclaredShot:
    """What a SubmitHeader says about the shot: checked before any shot data
    is read, then against the parsed shot."""

    project: str
    frame_count: int
    width: int
    height: int
    shot_bytes: int


@dataclass(frozen=True)
class Estimate:
    """What a job would cost (always estimates) and where/when it would run."""

    wall_s: float
    energy_wh: float
    co2e_g: float
    decision: Decision
    basis: str


class JobManager:
    def __init__(self, config: BridgeConfig, store: JobStore, channels: ChannelRegistry,
                 backends: dict[str, Backend], executor: LocalExecutor, scheduler: CarbonScheduler,
                 audit=None):
        self.config = config
        self.audit = audit   # server.audit.AuditLog or None
        self.store = store
        self.channels = channels
        self.backends = backends
        self.executor = executor
        self.scheduler = scheduler

    def start(self) -> None:
        """Recover after a restart: re-queued jobs are planned again, planned
        jobs go back to their plan (or run at once when their window passed
        while the bridge was down)."""
        scheduled = []
        for job in self.store.recover():
            if job.attempts:
                log.warning("job %s: %s", job.job_id, job.state_reason or "resumed after a restart")
            if job.state is JobState.QUEUED:
                self._schedule(job, recovering=True)
            else:
                scheduled.append(job)
        self.scheduler.resume(scheduled)
        self.executor.start()
        self.scheduler.start()

    def stop(self) -> None:
        self.scheduler.stop()
        self.executor.stop()

    # ----------------------------------------------------------- submit
    def check_upload_size(self, declared: int) -> None:
        if declared <= 0:
            raise InvalidArgumentError(f"header.shot_bytes: must be > 0, got {declared}")
        if declared > self.config.limits.max_upload_bytes:
            raise LimitExceededError("max_upload_bytes", declared, self.config.limits.max_upload_bytes)

    def check_header(self, principal: Principal, declared: DeclaredShot, request_id: str,
                     generation: GenerationSettings, scheduling: SchedulingSettings) -> None:
        """Every check that needs no shot data (token vs project, sizes, limits,
        settings, free disk), before the upload is read."""
        raise NotImplementedError   # issue 13: jobs side

    def estimate(self, principal: Principal, project: str, frame_count: int, width: int, height: int,
                 generation: GenerationSettings, scheduling: SchedulingSettings) -> Estimate:
        raise NotImplementedError   # issue 13/14: jobs side

    def delete(self, principal: Principal, job_id: str, reason: str = "") -> int:
        """Delete an ended job's files and rows; return the bytes freed."""
        raise NotImplementedError   # issue 13: jobs side

    def submit(self, principal: Principal, upload_dir: Path, shot: Shot, sha256_hex: str, request_id: str,
               generation: GenerationSettings, scheduling: SchedulingSettings) -> tuple[JobRecord, bool]:
        """Admit a fully uploaded, parsed shot. On any refusal the upload is deleted."""
        try:
            if not 1 <= len(request_id) <= 128:
                raise InvalidArgumentError(f"header.request_id: must be 1-128 characters, got {len(request_id)}")
            validate_shot(shot, self.config.limits.shot_limits)
            principal.check_project(shot.tags.project)
            validate_generation(generation)
            backend = self.backends.get(generation.backend)
            if backend is None:
                raise InvalidArgumentError(
                    f"generation.backend: unknown backend {generation.backend!r}; available: {sorted(self.backends)}")
            backend.check_inputs(shot, generation)
            validate_scheduling(scheduling)
            names = [site.name for site, _ in self.config.sites]
            unknown = set(scheduling.allowed_sites) - set(names)
            if unknown:
                raise InvalidArgumentError(
                    f"scheduling.allowed_sites: unknown sites {sorted(unknown)}; this bridge has {names}")
            decision = None
            work = backend.estimate_work(shot, generation)
            if self.store.find_by_request(shot.tags.project, request_id) is None:
                active = self.store.count_active(shot.tags.project)
                if active >= self.config.limits.max_active_jobs_per_project:
                    raise LimitExceededError(f"max_active_jobs_per_project (project {shot.tags.project!r})",
                                             active + 1, self.config.limits.max_active_jobs_per_project)
                # planned before the job exists: a job that cannot be planned leaves nothing behind
                decision = self.scheduler.plan_job(
                    job_id="", backend=backend.id, work=work, job_class=scheduling.job_class,
                    deadline=scheduling.deadline, allowed_sites=scheduling.allowed_sites,
                    max_co2e_g=scheduling.max_co2e_g)
            job, created = self.store.create_job(
                upload_dir, project=shot.tags.project, shot=shot.tags.shot, version=shot.tags.version,
                request_id=request_id, shot_sha256=sha256_hex, backend=backend.id, frame_count=shot.frame_count,
                work_estimate=work, generation=generation, scheduling=scheduling,
                fps=(shot.fps.numerator, shot.fps.denominator))
        except BaseException:
            shutil.rmtree(upload_dir, ignore_errors=True)
            raise
        if created:
            log.info("job %s: accepted %s/%s v%d, %d frames, backend %s", job.job_id, job.project, job.shot,
                     job.version, job.frame_count, job.backend)
            job = self._schedule(job, decision)
        return job, created

    def _schedule(self, job: JobRecord, decision: Decision | None = None, recovering: bool = False) -> JobRecord:
        if decision is None:
            try:
                decision = self.scheduler.decide(job)
            except GreenlightError as exc:
                if not recovering:
                    raise
                # a re-queued job is never refused: its deadline may have passed while we were down
                decision = self.scheduler.plan_job(job_id=job.job_id, backend=job.backend, work=job.work_estimate,
                                                   job_class="interactive", deadline=None)
                decision = replace(decision, reason=f"re-queued after a restart; runs now ({exc})")
        decision = replace(decision, job_id=job.job_id)
        job = self.store.transition(job.job_id, JobState.SCHEDULED, decision.reason, decision=decision)
        self.channels.notify(job.job_id)
        self.scheduler.place(job.job_id, decision)
        return job

    def run_now(self, principal: Principal, job_id: str) -> JobRecord:
        """Start a job that waits for a greener window now (speed over carbon)."""
        job = self.get(principal, job_id)
        if job.state is not JobState.SCHEDULED:
            raise PreconditionError(f"job {job_id} is {job.state.value}; only a scheduled job can be started now")
        if self.scheduler.run_now(job_id) and job.decision is not None:
            was = job.decision.reason
            self.store.set_decision(job_id, replace(job.decision, reason=f"started now by request (was: {was})"))
            self.channels.notify(job_id)
        return self.store.get(job_id)

    # ----------------------------------------------------------- queries
    def get(self, principal: Principal, job_id: str) -> JobRecord:
        job = self.store.get(job_id)
        if not principal.can_see(job):
            # never reveal other projects' jobs
            raise NotFoundError(f"job {job_id!r} not found", resource_type="job", resource_name=job_id)
        return job

    def list(self, principal: Principal, project: str, limit: int) -> list[JobRecord]:
        if not project:
            if principal.project is None:
                raise InvalidArgumentError("project: is required")
            project = principal.project
        principal.check_project(project)
        return self.store.list(project, limit=limit or 100)

    def report(self, principal: Principal, job_id: str) -> JobReport:
        job = self.get(principal, job_id)
        report = self.store.report(job_id)
        if report is None:
            raise PreconditionError(f"job {job_id} is {job.state.value}; its report exists once it has ended")
        return report

    def cancel(self, principal: Principal, job_id: str, reason: str = "") -> JobRecord:
        job = self.get(principal, job_id)
        if job.state.terminal:
            return job
        if job.state is JobState.RUNNING or self.executor.is_running(job_id):
            self.executor.cancel_running(job_id)
            return self.store.get(job_id)
        try:
            job = self.store.transition(job_id, JobState.CANCELLED, reason or "cancelled by request",
                                        expect={JobState.QUEUED, JobState.SCHEDULED})
        except PreconditionError:
            # it started in between: stop the run instead
            self.executor.cancel_running(job_id)
            return self.store.get(job_id)
        self.store.save_report(job_id, self.executor.report_for(job, JobState.CANCELLED))
        self.channels.notify(job_id)
        return job
