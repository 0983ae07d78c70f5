"""greenlight.v1 messages -> the job model (``bridge.jobs.model``), client
side. The server's ``bridge.server.convert`` writes the same types, so a
frame record reads back field for field as it was stored."""

from __future__ import annotations

import json
from datetime import UTC

from ..jobs.model import (
    Decision,
    ErrorInfo,
    EventKind,
    FrameRecord,
    JobEvent,
    JobReport,
    JobState,
    JobStatus,
    Preview,
    Progress,
    Tags,
)
from ..proto.greenlight.v1 import bridge_pb2

__all__ = ["EventKind", "JobEvent", "event_from_pb", "status_from_pb", "frame_from_pb", "report_from_pb"]

_PB_TO_STATE = {
    bridge_pb2.JOB_STATE_QUEUED: JobState.QUEUED,
    bridge_pb2.JOB_STATE_SCHEDULED: JobState.SCHEDULED,
    bridge_pb2.JOB_STATE_RUNNING: JobState.RUNNING,
    bridge_pb2.JOB_STATE_COMPLETED: JobState.COMPLETED,
    bridge_pb2.JOB_STATE_FAILED: JobState.FAILED,
    bridge_pb2.JOB_STATE_CANCELLED: JobState.CANCELLED,
}


def status_from_pb(msg: bridge_pb2.JobStatus) -> JobStatus:
    decision = None
    if msg.HasField("scheduling"):
        s = msg.scheduling
        decision = Decision(job_id=msg.job_id, site=s.site, planned_start=s.planned_start.ToDatetime(tzinfo=UTC),
                            expected_co2e_g=s.expected_co2e_g,
            run_now_co2e_g=s.run_now_co2e_g, run_now_site=s.site, reason=s.reason)
    return JobStatus(
        job_id=msg.job_id, tags=Tags(msg.tags.project, msg.tags.shot, msg.tags.version),
        state=_PB_TO_STATE.get(msg.state, JobState.DETACHED), state_reason=msg.state_reason, backend=msg.backend,
        frame_count=msg.frame_count, frames_done=msg.frames_done, attempts=msg.attempts,
        request_id=msg.request_id, decision=decision)


def frame_from_pb(msg: bridge_pb2.FrameResult) -> FrameRecord:
    e = msg.energy
    return FrameRecord(index=msg.index, attempt=e.attempt, meter=e.meter, measured=e.measured,
                       energy_wh=e.energy_wh, work=e.work, site=e.site, pue=e.pue or 1.0,
                       intensity_g_per_kwh=e.intensity_g_per_kwh, intensity_source=e.intensity_source,
                       intensity_kind=e.intensity_kind or "static",
                       co2e_g_location=e.co2e_g_location,
                       co2e_g_market=e.co2e_g_market if e.HasField("co2e_g_market") else None)


def report_from_pb(msg: bridge_pb2.JobReport) -> JobReport:
    return JobReport.from_dict(json.loads(msg.json))


def event_from_pb(msg: bridge_pb2.JobEvent) -> JobEvent:
    name = msg.WhichOneof("kind")
    try:
        kind = EventKind(name)     # the oneof's field names are the event kinds
    except ValueError:
        raise ValueError(f"unknown job event kind {name!r} (newer bridge?)") from None
    job_id = msg.job_id
    if kind is EventKind.STATUS:
        return JobEvent(kind, job_id, status=status_from_pb(msg.status))
    if kind is EventKind.PROGRESS:
        p = msg.progress
        return JobEvent(kind, job_id, progress=Progress(
            step=p.step, total_steps=p.total_steps, frames_done=p.frames_done, elapsed_s=p.elapsed_s,
            eta_s=p.eta_s, energy_wh_so_far=p.energy_wh_so_far, stage=p.stage))
    if kind is EventKind.PREVIEW:
        return JobEvent(kind, job_id, preview=Preview(msg.preview.index, msg.preview.step, msg.preview.image.data))
    if kind is EventKind.FRAME:
        return JobEvent(kind, job_id, frame=frame_from_pb(msg.frame), image=msg.frame.image.data)
    if kind is EventKind.COMPLETED:
        return JobEvent(kind, job_id, report=report_from_pb(msg.completed.report))
    if kind is EventKind.FAILED:
        return JobEvent(kind, job_id, message=msg.failed.message,
                        error=ErrorInfo(code=msg.failed.code or "INTERNAL", error_class="BackendError",
                                        message=msg.failed.message))
    if kind is EventKind.CANCELLED:
        return JobEvent(kind, job_id, message=msg.cancelled.reason)
    raise ValueError(f"job event kind {name!r} is not a bridge event")
