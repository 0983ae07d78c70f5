"""Job events as small immutable values the add-ons and CLI consume
(STYLE practice 7): a kind plus the fields that kind uses."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass

from ..proto.greenlight.v1 import bridge_pb2

_PB_TO_STATE = {
    bridge_pb2.JOB_STATE_QUEUED: "queued",
    bridge_pb2.JOB_STATE_SCHEDULED: "scheduled",
    bridge_pb2.JOB_STATE_RUNNING: "running",
    bridge_pb2.JOB_STATE_COMPLETED: "completed",
    bridge_pb2.JOB_STATE_FAILED: "failed",
    bridge_pb2.JOB_STATE_CANCELLED: "cancelled",
}


class EventKind(str, enum.Enum):
    STATUS = "status"
    PROGRESS = "progress"
    PREVIEW = "preview"
    FRAME = "frame"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (EventKind.COMPLETED, EventKind.FAILED, EventKind.CANCELLED)


@dataclass(frozen=True)
class JobInfo:
    job_id: str
    project: str
    shot: str
    version: int
    state: str
    state_reason: str
    backend: str
    frame_count: int
    frames_done: int
    attempts: int
    request_id: str
    site: str
    planned_start: str
    expected_co2e_g: float
    run_now_co2e_g: float
    scheduling_reason: str

    @classmethod
    def from_pb(cls, msg: bridge_pb2.JobStatus) -> "JobInfo":
        s = msg.scheduling
        return cls(
            job_id=msg.job_id, project=msg.tags.project, shot=msg.tags.shot, version=msg.tags.version,
            state=_PB_TO_STATE.get(msg.state, "unknown"), state_reason=msg.state_reason, backend=msg.backend,
            frame_count=msg.frame_count, frames_done=msg.frames_done, attempts=msg.attempts,
            request_id=msg.request_id, site=s.site,
            planned_start=s.planned_start.ToDatetime().isoformat() if msg.HasField("scheduling") else "",
            expected_co2e_g=s.expected_co2e_g, run_now_co2e_g=s.run_now_co2e_g, scheduling_reason=s.reason,
        )


@dataclass(frozen=True)
class FrameEnergy:
    energy_wh: float
    measured: bool
    meter: str
    co2e_g_location: float
    co2e_g_market: float | None

    @classmethod
    def from_pb(cls, msg: bridge_pb2.Energy) -> "FrameEnergy":
        return cls(msg.energy_wh, msg.measured, msg.meter, msg.co2e_g_location,
                   msg.co2e_g_market if msg.HasField("co2e_g_market") else None)


@dataclass(frozen=True)
class JobEvent:
    kind: EventKind
    job_id: str
    status: JobInfo | None = None
    step: int = 0
    total_steps: int = 0
    frames_done: int = 0
    elapsed_s: float = 0.0
    eta_s: float = -1.0
    energy_wh_so_far: float = 0.0
    stage: str = ""
    index: int = -1
    png: bytes = b""
    energy: FrameEnergy | None = None
    report: dict | None = None
    message: str = ""

    @classmethod
    def from_pb(cls, msg: bridge_pb2.JobEvent) -> "JobEvent":
        kind = msg.WhichOneof("kind")
        if kind == "status":
            return cls(EventKind.STATUS, msg.job_id, status=JobInfo.from_pb(msg.status))
        if kind == "progress":
            p = msg.progress
            return cls(EventKind.PROGRESS, msg.job_id, step=p.step, total_steps=p.total_steps,
                       frames_done=p.frames_done, elapsed_s=p.elapsed_s, eta_s=p.eta_s,
                       energy_wh_so_far=p.energy_wh_so_far, stage=p.stage)
        if kind == "preview":
            return cls(EventKind.PREVIEW, msg.job_id, index=msg.preview.index, step=msg.preview.step,
                       png=msg.preview.image.data)
        if kind == "frame":
            return cls(EventKind.FRAME, msg.job_id, index=msg.frame.index, png=msg.frame.image.data,
                       energy=FrameEnergy.from_pb(msg.frame.energy))
        if kind == "completed":
            return cls(EventKind.COMPLETED, msg.job_id, report=json.loads(msg.completed.report.json))
        if kind == "failed":
            return cls(EventKind.FAILED, msg.job_id, message=msg.failed.message)
        if kind == "cancelled":
            return cls(EventKind.CANCELLED, msg.job_id, message=msg.cancelled.reason)
        raise ValueError(f"unknown job event kind {kind!r} (newer bridge?)")
