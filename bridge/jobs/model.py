"""The job vocabulary, defined once (STYLE practices 8 and 17).

Engine-free and stdlib-only: the bridge, the client, the CLI and both
add-ons (vendored like ``bridge.shot``) use these types, so a state, a
frame's energy or a report means the same thing everywhere.

- ``JobState`` and its transitions (the one state machine):

      queued -> scheduled -> running -> completed | failed | cancelled
      queued | scheduled -> cancelled | failed
      running -> queued              only on recovery after a bridge restart
      scheduled -> queued            re-plan

  plus ``DETACHED``, which only a client uses: it lost contact with the
  bridge, the job may still be running there. The bridge never stores it.
- ``FrameRecord``: one final frame and its figures, fixed when the frame was
  produced (energy, meter, site, grid intensity and its source, gCO2e).
- ``Attempt``: one run of a job, with the energy not charged to any frame.
- ``JobReport`` (``schema_version``): built once when a job ends, from the
  stored frames and attempts; its totals are the sums of those records.
- ``JobEvent``: what a watcher sees, one kind and one typed payload.
- ``Decision`` / ``Option``: the scheduler's plan for a job.

Every ``from_dict`` takes what an older or newer writer stored: unknown keys
are dropped (and logged), missing keys take their defaults.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..errors import GreenlightError
from ..shot.dicts import from_mapping

log = logging.getLogger(__name__)

REPORT_SCHEMA_VERSION = 2   # 1: the untyped report of greenlight 0.1 (no schema_version, no attempts)


# ------------------------------------------------------------------ states
class JobState(enum.StrEnum):
    QUEUED = "queued"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DETACHED = "detached"      # client-side only: contact with the bridge was lost

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def active(self) -> bool:
        return self in ACTIVE

    @classmethod
    def parse(cls, value: str | JobState) -> JobState:
        """A state from storage or the wire; an unknown name (a newer
        bridge) reads as DETACHED rather than failing the caller."""
        try:
            return cls(value)
        except ValueError:
            log.warning("unknown job state %r; shown as %s", value, cls.DETACHED.value)
            return cls.DETACHED


TERMINAL = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})
ACTIVE = frozenset({JobState.QUEUED, JobState.SCHEDULED, JobState.RUNNING})
UNFINISHED = ACTIVE | {JobState.DETACHED}      # a client should (re-)attach to these

_ALLOWED = {
    JobState.QUEUED: {JobState.SCHEDULED, JobState.CANCELLED, JobState.FAILED},
    JobState.SCHEDULED: {JobState.RUNNING, JobState.QUEUED, JobState.CANCELLED, JobState.FAILED},
    JobState.RUNNING: {JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.QUEUED},
}


class IllegalTransition(RuntimeError):
    pass


def check_transition(old: JobState, new: JobState) -> None:
    if new not in _ALLOWED.get(old, set()):
        raise IllegalTransition(f"job state cannot go from {old.value} to {new.value}")


class AttemptOutcome(enum.StrEnum):
    RUNNING = "running"            # in progress, or the bridge died during it (see ``interrupted``)
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"    # the bridge stopped or was killed; the job was re-queued


# ------------------------------------------------------------------ dicts
def _opt_float(value) -> float | None:
    return None if value is None else float(value)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _time(value) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        dt = value
    else:
        dt = datetime.fromisoformat(str(value))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


# ------------------------------------------------------------------ frames
@dataclass(frozen=True)
class FrameRecord:
    """One final frame. Every figure is fixed when the frame is produced and
    never recomputed: the stream, the report, the ledger and OTIO read it.

    ``path`` is the file name in the job's frame folder on the bridge, or the
    local path once a client wrote it. ``energy_wh`` is IT energy;
    ``co2e_g_*`` are on facility energy (x PUE) at ``intensity_g_per_kwh``,
    the site's grid intensity at the moment the frame was made.
    """

    index: int
    path: str = ""
    attempt: int = 0
    meter: str = ""
    measured: bool = False
    energy_wh: float = 0.0
    work: float = 1.0
    site: str = ""
    pue: float = 1.0
    intensity_g_per_kwh: float = 0.0
    intensity_source: str = ""
    intensity_kind: str = "static"   # "realised" (a measured grid value), "forecast" or "static" (annual)
    co2e_g_location: float = 0.0
    co2e_g_market: float | None = None
    created: float = 0.0             # unix seconds

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FrameRecord:
        d = dict(data)
        d.setdefault("index", d.pop("idx", 0))
        rec = from_mapping(cls, d, "frame record")
        return dataclasses.replace(rec, co2e_g_market=_opt_float(rec.co2e_g_market))

    def with_path(self, path: str) -> FrameRecord:
        return dataclasses.replace(self, path=path)


@dataclass(frozen=True)
class Attempt:
    """One run of a job. ``frames_energy_wh`` is what its frames were
    charged; ``unattributed_wh`` is the rest of the energy the attempt used
    (after its last frame, or all of it when it made none: a failed or
    killed run emitted too). Both are priced when the attempt ends, or at
    its last checkpoint if the bridge was killed during it."""

    number: int
    site: str = ""
    meter: str = ""
    measured: bool = False
    started: float = 0.0             # unix seconds
    ended: float | None = None
    outcome: AttemptOutcome = AttemptOutcome.RUNNING
    reason: str = ""
    frames: int = 0
    frames_energy_wh: float = 0.0
    unattributed_wh: float = 0.0
    pue: float = 1.0
    intensity_g_per_kwh: float = 0.0
    intensity_source: str = ""
    intensity_kind: str = "static"
    embodied_co2e_g: float = 0.0     # this attempt's share of the device's manufacture (its reserved time)
    unattributed_co2e_g_location: float = 0.0
    unattributed_co2e_g_market: float | None = None

    @property
    def energy_wh(self) -> float:
        return math.fsum((self.frames_energy_wh, self.unattributed_wh))

    @property
    def wall_s(self) -> float:
        return max(0.0, (self.ended or self.started) - self.started)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["outcome"] = self.outcome.value
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Attempt:
        a = from_mapping(cls, data, "attempt")
        try:
            outcome = AttemptOutcome(a.outcome)
        except ValueError:
            outcome = AttemptOutcome.INTERRUPTED
        return dataclasses.replace(a, outcome=outcome, unattributed_co2e_g_market=_opt_float(
            a.unattributed_co2e_g_market))


# ------------------------------------------------------------------ report
@dataclass(frozen=True)
class Tags:
    project: str = ""
    shot: str = ""
    version: int = 0


@dataclass(frozen=True)
class EnergyTotal:
    """The job's IT energy and operational carbon: sums of its frames and
    attempts. ``measured`` only when every contributing figure was."""

    energy_wh: float = 0.0
    measured: bool = False
    meter: str = ""
    co2e_g_location: float = 0.0
    co2e_g_market: float | None = None


@dataclass(frozen=True)
class SchedulingFacts:
    """What the savings KPI needs from the plan."""

    job_class: str = "interactive"
    shifted: bool = False
    run_now_co2e_g: float | None = None
    expected_co2e_g: float | None = None
    site: str = ""
    # gCO2e saved vs had it run at submit: the same signal priced over the
    # window it would have had (0 for a job that ran when and where submitted)
    saved_g_vs_submit: float | None = None
    saved_basis: str = ""


@dataclass(frozen=True)
class TemporalConsistency:
    """Flicker of the output against the engine's motion (docs/temporal.md):
    mean |RGB difference| (0..1) along the engine flow, occluded pixels left out."""

    computed: bool = False
    reason: str = ""               # why not computed
    method: str = ""
    gap1: float | None = None      # consecutive frames
    trajectory: float | None = None   # along ``window``-frame trajectories
    window: int = 0
    valid_fraction: float | None = None
    pairs: tuple[float | None, ...] = ()   # gap-1 error of pair (i, i+1), by i
    control_adherence: float | None = None   # edge F1 vs the depth pass (not bought by blandness)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["pairs"] = list(self.pairs)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> TemporalConsistency:
        d = dict(data or {})
        d["pairs"] = tuple(d.get("pairs") or ())
        return from_mapping(cls, d, "report temporal")


@dataclass(frozen=True)
class SciFigure:
    sci: float | None = None
    sci_unit: str = ""
    functional_units: float = 0.0


@dataclass(frozen=True)
class JobReport:
    """A finished job's accounting (docs/energy.md). Totals are exact sums
    (``math.fsum``) of ``per_frame`` and ``attempts``; nothing in it is
    re-priced after the fact."""

    job_id: str
    schema_version: int = REPORT_SCHEMA_VERSION
    tags: Tags = Tags()
    backend: str = ""
    generation: dict = field(default_factory=dict)
    state: JobState = JobState.COMPLETED
    frames: int = 0
    fps: tuple[int, int] = (24, 1)
    wall_s: float = 0.0                 # all attempts
    energy: EnergyTotal = EnergyTotal()
    frames_energy_wh: float = 0.0       # sum of per_frame energy
    unattributed_wh: float = 0.0        # sum of the attempts' energy outside frames
    site: str = ""
    grid_region: str = ""
    pue: float = 1.0
    pue_source: str = ""
    facility_energy_wh: float = 0.0
    wue_l_per_kwh: float = 0.0
    wue_source: str = ""
    water_l: float = 0.0
    intensity_g_per_kwh: float = 0.0    # effective: location gCO2e / facility kWh
    intensity_source: str = ""
    priced_from: dict[str, float] = field(default_factory=dict)   # IT Wh priced by "realised" | "forecast" | "static"
    market_g_per_kwh: float | None = None
    market_source: str = ""
    embodied_co2e_g: float = 0.0
    embodied_source: str = ""
    reserved_s: float = 0.0
    resource_share: float = 1.0
    device_lifetime_years: float = 4.0
    sci: float | None = None
    sci_unit: str = ""
    sci_formula: str = ""
    functional_units: float = 0.0
    sci_alternatives: dict[str, SciFigure] = field(default_factory=dict)
    attribution: str = ""
    scheduling: SchedulingFacts = SchedulingFacts()
    temporal: TemporalConsistency = TemporalConsistency()
    recipe: dict = field(default_factory=dict)   # what made the frames (docs/governance.md)
    recipe_hash: str = ""
    attempts: tuple[Attempt, ...] = ()
    per_frame: tuple[FrameRecord, ...] = ()
    finished: float = 0.0               # unix seconds

    @property
    def animatic_s(self) -> float:
        num, den = self.fps
        return self.frames * den / num if num else 0.0

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["tags"] = dataclasses.asdict(self.tags)
        d["state"] = self.state.value
        d["fps"] = list(self.fps)
        d["energy"] = dataclasses.asdict(self.energy)
        d["scheduling"] = dataclasses.asdict(self.scheduling)
        d["temporal"] = self.temporal.to_dict()
        d["sci_alternatives"] = {k: dataclasses.asdict(v) for k, v in self.sci_alternatives.items()}
        d["attempts"] = [a.to_dict() for a in self.attempts]
        d["per_frame"] = [f.to_dict() for f in self.per_frame]
        d["generation"] = dict(self.generation)
        d["recipe"] = dict(self.recipe)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobReport:
        d = dict(data)
        d.setdefault("schema_version", 1)
        d["tags"] = from_mapping(Tags, d.get("tags"), "report tags")
        d["state"] = JobState.parse(d.get("state", JobState.COMPLETED.value))
        fps = d.get("fps") or (24, 1)
        d["fps"] = (int(fps[0]), int(fps[1]))
        d["energy"] = from_mapping(EnergyTotal, d.get("energy"), "report energy")
        d["scheduling"] = from_mapping(SchedulingFacts, d.get("scheduling"), "report scheduling")
        d["temporal"] = TemporalConsistency.from_dict(d.get("temporal"))
        d["sci_alternatives"] = {k: from_mapping(SciFigure, v, "report sci") for k, v in
                                 (d.get("sci_alternatives") or {}).items()}
        attempts = d.get("attempts")     # schema 1 stored a count here
        d["attempts"] = tuple(Attempt.from_dict(a) for a in attempts) if isinstance(attempts, list) else ()
        d["per_frame"] = tuple(FrameRecord.from_dict(f) for f in d.get("per_frame") or ())
        return from_mapping(cls, d, "job report")


# ------------------------------------------------------------------ scheduling
@dataclass(frozen=True)
class Option:
    """One (site, window) the planner priced."""

    site: str
    start: datetime
    end: datetime
    mean_g_per_kwh: float
    pue: float
    expected_co2e_g: float | None
    saving_pct: float                    # vs running now at the preferred site
    forecast: str                        # "forecast", "static", or "forecast, NN% filled"
    free: bool = True
    label: str = ""                      # "now", "best", "window"


@dataclass(frozen=True)
class Decision:
    """Where and when a job runs, and why: stored with the job, sent in
    JobStatus, read back after a restart (``options`` are not stored)."""

    job_id: str = ""
    job_class: str = "interactive"
    site: str = ""
    planned_start: datetime = datetime.fromtimestamp(0, UTC)
    planned_end: datetime | None = None
    expected_co2e_g: float | None = None
    run_now_site: str = ""
    run_now_co2e_g: float | None = None
    saving_pct: float = 0.0
    reason: str = ""
    mean_g_per_kwh: float = 0.0
    forecast: str = ""                   # how the chosen window was priced
    deadline: datetime | None = None
    must_start_by: datetime | None = None
    margin_s: float = 0.0
    duration_s: float = 0.0
    expected_wh: float | None = None
    options: tuple[Option, ...] = ()
    decided_at: datetime | None = None

    @property
    def waits(self) -> bool:
        """True when the job is planned to start later than it was decided."""
        return self.decided_at is not None and self.planned_start > self.decided_at

    @property
    def shifted(self) -> bool:
        """A batch job moved in time (it waits) or in place (another site than running now)."""
        return self.job_class == "batch" and (
            self.waits or (bool(self.run_now_site) and self.site != self.run_now_site))

    def to_dict(self) -> dict:
        return {
            "site": self.site, "planned_start": _iso(self.planned_start), "planned_end": _iso(self.planned_end),
            "expected_co2e_g": self.expected_co2e_g, "run_now_co2e_g": self.run_now_co2e_g,
            "run_now_site": self.run_now_site, "saving_pct": self.saving_pct, "reason": self.reason,
            "job_class": self.job_class, "mean_g_per_kwh": self.mean_g_per_kwh, "forecast": self.forecast,
            "deadline": _iso(self.deadline), "must_start_by": _iso(self.must_start_by),
            "margin_s": self.margin_s, "duration_s": self.duration_s, "expected_wh": self.expected_wh,
            "decided_at": _iso(self.decided_at),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], job_id: str = "") -> Decision:
        """Back from the store: tolerant of unknown and missing keys; a plan
        with no ``planned_start`` or ``site`` is not a plan (ValueError)."""
        d = {k: v for k, v in dict(data).items() if k != "shifted"}
        if not d.get("planned_start") or not d.get("site"):
            raise ValueError("a scheduling decision needs site and planned_start")
        for key in ("planned_start", "planned_end", "deadline", "must_start_by", "decided_at"):
            d[key] = _time(d.get(key))
        d["planned_end"] = d["planned_end"] or d["planned_start"]
        d.setdefault("run_now_site", d["site"])
        d.setdefault("job_class", "batch")
        for key in ("saving_pct", "mean_g_per_kwh", "margin_s", "duration_s"):
            d[key] = float(d.get(key) or 0.0)
        d["options"] = ()
        d["job_id"] = job_id
        return from_mapping(cls, d, "scheduling decision")


# ------------------------------------------------------------------ status and events
@dataclass(frozen=True)
class JobStatus:
    """A job as a client sees it (GetJob, ListJobs, the first watch event)."""

    job_id: str
    tags: Tags = Tags()
    state: JobState = JobState.QUEUED
    state_reason: str = ""
    backend: str = ""
    frame_count: int = 0
    frames_done: int = 0
    attempts: int = 0
    request_id: str = ""
    decision: Decision | None = None

    @property
    def project(self) -> str:
        return self.tags.project

    @property
    def shot(self) -> str:
        return self.tags.shot

    @property
    def version(self) -> int:
        return self.tags.version

    @property
    def site(self) -> str:
        return self.decision.site if self.decision else ""

    @property
    def scheduling_reason(self) -> str:
        return self.decision.reason if self.decision else ""

    def to_dict(self) -> dict:
        return {"job_id": self.job_id, "project": self.project, "shot": self.shot, "version": self.version,
                "state": self.state.value, "state_reason": self.state_reason, "backend": self.backend,
                "frame_count": self.frame_count, "frames_done": self.frames_done, "attempts": self.attempts,
                "request_id": self.request_id, "decision": self.decision.to_dict() if self.decision else None}


@dataclass(frozen=True)
class Progress:
    step: int = 0
    total_steps: int = 0
    frames_done: int = 0
    elapsed_s: float = 0.0
    eta_s: float = -1.0                 # < 0 unknown
    energy_wh_so_far: float = 0.0       # IT energy of the job so far, all attempts
    stage: str = ""


@dataclass(frozen=True)
class Preview:
    index: int
    step: int
    png: bytes = b""


@dataclass(frozen=True)
class ErrorInfo:
    """Why a job failed or could not be followed. ``error_class`` names the
    ``bridge.errors`` class (branch on it, or on ``code``, never on text)."""

    code: str = "UNKNOWN"
    error_class: str = "GreenlightError"
    message: str = ""
    details: Mapping[str, str] = field(default_factory=dict)   # the error's fields as text (``.limit``...)

    @classmethod
    def of(cls, exc: BaseException) -> ErrorInfo:
        details = exc.details() if isinstance(exc, GreenlightError) else {}
        return cls(code=str(getattr(exc, "code", "UNKNOWN")), error_class=type(exc).__name__, message=str(exc),
                   details=details)

    def to_exception(self) -> GreenlightError:
        """The same ``bridge.errors`` class with the same fields."""
        return GreenlightError.from_parts(self.error_class, self.message, dict(self.details), self.code)


class EventKind(enum.StrEnum):
    ACCEPTED = "accepted"      # client: the bridge took the submission (status payload)
    STATUS = "status"          # state change (status payload)
    PROGRESS = "progress"
    PREVIEW = "preview"
    FRAME = "frame"            # frame payload; image bytes alongside on the wire
    COMPLETED = "completed"    # report payload
    FAILED = "failed"          # error payload (the job failed on the bridge)
    CANCELLED = "cancelled"    # message: who or what cancelled it
    ERROR = "error"            # client: the job could not be submitted or followed (error payload)
    WARNING = "warning"        # client: something did not work, the job goes on (message)

    @property
    def terminal(self) -> bool:
        return self in (EventKind.COMPLETED, EventKind.FAILED, EventKind.CANCELLED, EventKind.ERROR)

    @property
    def state(self) -> JobState | None:
        """The job state this event ends in, for the terminal kinds."""
        return {EventKind.COMPLETED: JobState.COMPLETED, EventKind.FAILED: JobState.FAILED,
                EventKind.CANCELLED: JobState.CANCELLED, EventKind.ERROR: JobState.DETACHED}.get(self)


@dataclass(frozen=True)
class Totals:
    """What a client received so far: sums of the frame records (exact)."""

    frames: int = 0
    energy_wh: float = 0.0
    co2e_g_location: float = 0.0


@dataclass(frozen=True)
class JobEvent:
    """One thing that happened to a job: a kind and the payload that kind
    uses. ``key`` names the client-side worker (known before the job id)."""

    kind: EventKind
    job_id: str = ""
    key: str = ""
    status: JobStatus | None = None
    progress: Progress | None = None
    preview: Preview | None = None
    frame: FrameRecord | None = None
    image: bytes = b""                  # the frame's encoded file (dropped once written)
    report: JobReport | None = None
    error: ErrorInfo | None = None
    message: str = ""
    totals: Totals | None = None
    duplicate: bool = False             # ACCEPTED: the request id was already known

    @property
    def terminal(self) -> bool:
        return self.kind.terminal
