"""Job management behind the servicer: admit, schedule, cancel, recover.

The servicer translates protobuf and status codes; everything decided about
jobs is decided here, so the rules hold whatever the transport.

Governance (docs/governance.md) is applied here too: the licence gate at
``check_header`` and ``submit``, the store's keyring (encryption at rest) and
the recipe every saved report carries.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

from ..backends.base import Backend
from ..backends.profiles import load_profile
from ..errors import (
    GreenlightError,
    InvalidArgumentError,
    LimitExceededError,
    NotFoundError,
    PreconditionError,
)
from ..governance.licenses import check_commercial
from ..governance.recipe import HashCache, recipe_for, recipe_hash
from ..jobs.channels import ChannelRegistry
from ..jobs.model import Decision, JobReport, JobState
from ..jobs.store import JobRecord, JobStore
from ..proto.greenlight.v1 import shot_pb2
from ..scheduling.executor import LocalExecutor
from ..scheduling.scheduler import CarbonScheduler
from ..shot.model import Shot, ShotOutline
from ..shot.request import GenerationSettings, SchedulingSettings, validate_generation, validate_scheduling
from ..shot.validation import validate_shot
from ..shot.wire import shot_from_pb
from .auth import Principal
from .config import BridgeConfig, keyring_for

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


@dataclass(frozen=True)
class _ShotSize:
    """The only facts of a shot ``Backend.estimate_work`` reads: an estimate needs no shot data."""

    frame_count: int
    width: int
    height: int


def disk_free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


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
        # free bytes on the data folder's disk (a test gives its own probe)
        self.disk_free: Callable[[Path], int] = disk_free_bytes
        self._weights = HashCache.for_data_dir(store.root)
        if store.keyring is None:
            store.keyring = keyring_for(config)
        if store.keyring is not None and audit is not None:
            store.keyring.audit = self._audit_key
        store.report_hook = self._complete_report

    # ----------------------------------------------------------- governance
    def _audit_key(self, event: str, project: str, job_id: str, **detail) -> None:
        if self.audit is not None:
            self.audit.record(event, Principal(project, "bridge"), job_id, "ok", **detail)

    def check_governance(self, project: str, generation: GenerationSettings) -> None:
        """The project's licence gate and its encryption key, before any work."""
        settings = self.config.project(project)
        backend = self.backends.get(generation.backend)
        name = generation.model_profile or getattr(backend, "default_profile", "")
        if name:
            check_commercial(load_profile(name), project, settings.commercial)
        if self.store.keyring is not None:
            self.store.keyring.check_ready(project)
        elif settings.encrypt:
            raise PreconditionError(f"project {project!r} is set to encrypt at rest, but this bridge has no keys "
                                    "configured; its operator sets key_file or GREENLIGHT_KEYS")

    def _complete_report(self, job_id: str, report: JobReport) -> JobReport:
        """The report with its recipe (what made the frames); a recipe that
        cannot be made is logged and left out, never a reason to fail the job."""
        if report.recipe:
            return report if report.recipe_hash else replace(report, recipe_hash=recipe_hash(report.recipe))
        try:
            job = self.store.get(job_id)
            backend = self.backends.get(job.backend)
            if backend is None:
                return report
            msg = shot_pb2.Shot()
            msg.ParseFromString(self.store.read_shot_bytes(job_id))
            recipe = recipe_for(backend, job.generation, shot_from_pb(msg), job.shot_sha256, self._weights)
        except Exception:
            log.exception("job %s: its recipe could not be made; the report goes without it", job_id)
            return report
        return replace(report, recipe=recipe, recipe_hash=recipe_hash(recipe))

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
        settings, free disk), before the upload is read.

        Header facts a client left unset (project "", frame count or
        resolution 0: a client older than these fields) are checked on the
        parsed shot by ``submit`` instead; whatever is declared is checked here
        and must match the shot there."""
        self._check_request_id(request_id)
        if declared.project:
            principal.check_project(declared.project)
        self.check_upload_size(declared.shot_bytes)
        self._check_request(declared.frame_count, declared.width, declared.height, generation, scheduling,
                            where="header", declared=True)
        if declared.project and self.store.find_by_request(declared.project, request_id) is None:
            self._check_active(declared.project)     # a retry of an admitted request is never refused here
        project = declared.project or principal.project
        if project:
            self.check_governance(project, generation)
        self.check_free_disk(declared.shot_bytes)

    def check_free_disk(self, incoming_bytes: int = 0) -> None:
        """Refuse work while the data folder's disk would keep less than
        ``min_free_disk_bytes`` free after ``incoming_bytes`` more."""
        minimum = self.config.limits.min_free_disk_bytes
        if minimum <= 0:
            return
        try:
            free = self.disk_free(self.store.root)
        except OSError as exc:
            log.warning("free space of the data folder unknown (%s); not refusing on it", exc)
            return
        left = free - max(incoming_bytes, 0)
        if left < minimum:
            raise LimitExceededError("min_free_disk_bytes (free space left on the bridge's disk)", max(left, 0),
                                     minimum)

    @staticmethod
    def _check_request_id(request_id: str) -> None:
        if not 1 <= len(request_id) <= 128:
            raise InvalidArgumentError(f"header.request_id: must be 1-128 characters, got {len(request_id)}",
                                       field="header.request_id")

    def _check_generation(self, generation: GenerationSettings, width: int, height: int) -> None:
        """The settings, with the bridge's limits; the output resolution as it
        will be made (0 = the shot's; a shot size of 0 = not known yet)."""
        limits = self.config.limits
        validate_generation(generation, max_steps=limits.max_steps, max_prompt_chars=limits.max_prompt_chars,
                            max_output_width=limits.max_output_width, max_output_height=limits.max_output_height)
        if not generation.output_width:
            if width > limits.max_output_width:
                raise LimitExceededError("max_output_width (the shot's width, as no output resolution is set)",
                                         width, limits.max_output_width)
            if height > limits.max_output_height:
                raise LimitExceededError("max_output_height (the shot's height, as no output resolution is set)",
                                         height, limits.max_output_height)

    def _backend(self, generation: GenerationSettings) -> Backend:
        backend = self.backends.get(generation.backend)
        if backend is None:
            raise InvalidArgumentError(
                f"generation.backend: unknown backend {generation.backend!r}; available: {sorted(self.backends)}",
                field="generation.backend")
        return backend

    def _check_scheduling(self, scheduling: SchedulingSettings) -> None:
        validate_scheduling(scheduling)
        names = [site.name for site, _ in self.config.sites]
        unknown = set(scheduling.allowed_sites) - set(names)
        if unknown:
            raise InvalidArgumentError(
                f"scheduling.allowed_sites: unknown sites {sorted(unknown)}; this bridge has {names}",
                field="scheduling.allowed_sites")

    def _check_request(self, frame_count: int, width: int, height: int, generation: GenerationSettings,
                       scheduling: SchedulingSettings, where: str, declared: bool = False) -> Backend:
        """Sizes against ``[limits]`` and the backend, settings, scheduling: all
        a submit checks that needs only the shot's size. ``declared``: a
        header's facts, where 0 means "not declared" (checked after upload)."""
        limits = self.config.limits
        if frame_count < 0 or (frame_count == 0 and not declared):
            raise InvalidArgumentError(f"{where}.frame_count: must be > 0, got {frame_count}",
                                       field=f"{where}.frame_count")
        unknown_size = declared and width == 0 and height == 0
        if not unknown_size and (width <= 0 or height <= 0):
            raise InvalidArgumentError(f"{where}.resolution: must be positive, got {width}x{height}",
                                       field=f"{where}.resolution")
        if frame_count > limits.max_frames:
            raise LimitExceededError("max_frames", frame_count, limits.max_frames)
        if width > limits.max_width:
            raise LimitExceededError("max_width", width, limits.max_width)
        if height > limits.max_height:
            raise LimitExceededError("max_height", height, limits.max_height)
        self._check_generation(generation, width, height)
        backend = self._backend(generation)
        info = backend.info()
        if not info.available:
            raise InvalidArgumentError(
                f"generation.backend: {backend.id!r} is not available here: {info.unavailable_reason}",
                field="generation.backend")
        out_w, out_h = generation.output_width or width, generation.output_height or height   # 0: not known yet
        if frame_count > info.max_frames:
            raise InvalidArgumentError(
                f"frames: backend {backend.id!r} takes at most {info.max_frames} frames, got {frame_count}",
                field=f"{where}.frame_count")
        if out_w > info.max_width or out_h > info.max_height:
            raise InvalidArgumentError(
                f"resolution: backend {backend.id!r} takes at most {info.max_width}x{info.max_height}, "
                f"got {out_w}x{out_h}", field="generation.output_resolution")
        self._check_scheduling(scheduling)
        return backend

    def _check_active(self, project: str) -> None:
        """A cheap early refusal; the store's create_job is the one that holds under races."""
        active = self.store.count_active(project)
        limit = self.config.limits.max_active_jobs_per_project
        if active >= limit:
            raise LimitExceededError(f"max_active_jobs_per_project (project {project!r})", active + 1, limit)

    def estimate(self, principal: Principal, project: str, frame_count: int, width: int, height: int,
                 generation: GenerationSettings, scheduling: SchedulingSettings) -> Estimate:
        """What a shot of this size would cost and where/when it would run:
        checked like a submit's header, planned, never stored (a plan reserves nothing)."""
        if not project:
            raise InvalidArgumentError("project: is required (the shot's project)", field="project")
        principal.check_project(project)
        backend = self._check_request(frame_count, width, height, generation, scheduling, where="request")
        work = backend.estimate_work(cast(Any, _ShotSize(frame_count, width, height)), generation)
        duration, energy_wh, note = self.scheduler.estimate(backend.id, work)
        decision = self.scheduler.plan_job(
            job_id="", backend=backend.id, work=work, job_class=scheduling.job_class, deadline=scheduling.deadline,
            allowed_sites=scheduling.allowed_sites, max_co2e_g=scheduling.max_co2e_g)
        if energy_wh is None:
            basis = (f"{note}; energy and gCO2e unknown (0) until this bridge has finished a {backend.id} job"
                     if note else f"no energy history for {backend.id} on this bridge: energy and gCO2e unknown (0)")
        else:
            basis = (f"from this bridge's recent finished {backend.id} jobs ({work:.3g} units of work); "
                     f"{decision.reason}")
        return Estimate(wall_s=duration.total_seconds(), energy_wh=energy_wh or 0.0,
                        co2e_g=decision.expected_co2e_g or 0.0, decision=decision, basis=basis)

    def delete(self, principal: Principal, job_id: str, reason: str = "") -> int:
        """Delete an ended job's files and rows; return the bytes freed. The
        energy ledger keeps the job's row (its totals outlive the artifacts)."""
        job = self.get(principal, job_id)
        freed = self.store.delete_job(job.job_id)
        self.channels.discard(job.job_id)
        log.info("job %s: deleted (%d bytes freed)%s", job.job_id, freed, f": {reason}" if reason else "")
        return freed

    def submit(self, principal: Principal, upload_dir: Path, shot: Shot | ShotOutline, sha256_hex: str,
               request_id: str, generation: GenerationSettings,
               scheduling: SchedulingSettings) -> tuple[JobRecord, bool]:
        """Admit a fully uploaded shot: a parsed ``Shot`` (validated here), or
        the ``ShotOutline`` of one already validated frame by frame on disk
        (``bridge.shot.stream_check``). On any refusal the upload is deleted."""
        try:
            self._check_request_id(request_id)
            if isinstance(shot, Shot):
                validate_shot(shot, self.config.limits.shot_limits)
            principal.check_project(shot.tags.project)
            self._check_generation(generation, shot.width, shot.height)
            backend = self._backend(generation)
            self.check_governance(shot.tags.project, generation)
            backend.check_inputs(shot, generation)
            self._check_scheduling(scheduling)
            decision = None
            work = backend.estimate_work(shot, generation)
            limit = self.config.limits.max_active_jobs_per_project
            if self.store.find_by_request(shot.tags.project, request_id) is None:
                self._check_active(shot.tags.project)
                self.check_free_disk()
                # planned before the job exists: a job that cannot be planned leaves nothing behind
                decision = self.scheduler.plan_job(
                    job_id="", backend=backend.id, work=work, job_class=scheduling.job_class,
                    deadline=scheduling.deadline, allowed_sites=scheduling.allowed_sites,
                    max_co2e_g=scheduling.max_co2e_g)
            job, created = self.store.create_job(
                upload_dir, project=shot.tags.project, shot=shot.tags.shot, version=shot.tags.version,
                request_id=request_id, shot_sha256=sha256_hex, backend=backend.id, frame_count=shot.frame_count,
                work_estimate=work, generation=generation, scheduling=scheduling,
                fps=(shot.fps.numerator, shot.fps.denominator), max_active=limit)
        except BaseException:
            shutil.rmtree(upload_dir, ignore_errors=True)
            raise
        if created:
            log.info("job %s: accepted %s/%s v%d, %d frames, backend %s", job.job_id, job.project, job.shot,
                     job.version, job.frame_count, job.backend)
            job = self._schedule(job, decision)   # no decision: the request id's job was deleted meanwhile
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
            self.executor.request_cancel(job_id, reason)   # the reason becomes its state_reason when it stops
            return self.store.get(job_id)
        try:
            job = self.store.transition(job_id, JobState.CANCELLED, reason or "cancelled by request",
                                        expect={JobState.QUEUED, JobState.SCHEDULED})
        except PreconditionError:
            # it started in between: stop the run instead
            self.executor.request_cancel(job_id, reason)
            return self.store.get(job_id)
        self.store.save_report(job_id, self.executor.report_for(job, JobState.CANCELLED))
        self.channels.notify(job_id)
        return job
