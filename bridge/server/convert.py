"""Job model -> greenlight.v1 messages (server side). The client's
``bridge.client.events`` reads them back into the same types."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from ..jobs.model import Decision, EnergyTotal, FrameRecord, JobReport, JobState
from ..jobs.store import JobRecord
from ..proto.greenlight.v1 import bridge_pb2

STATE_TO_PB = {
    JobState.QUEUED: bridge_pb2.JOB_STATE_QUEUED,
    JobState.SCHEDULED: bridge_pb2.JOB_STATE_SCHEDULED,
    JobState.RUNNING: bridge_pb2.JOB_STATE_RUNNING,
    JobState.COMPLETED: bridge_pb2.JOB_STATE_COMPLETED,
    JobState.FAILED: bridge_pb2.JOB_STATE_FAILED,
    JobState.CANCELLED: bridge_pb2.JOB_STATE_CANCELLED,
}


def _ts(msg, seconds: float) -> None:
    msg.FromDatetime(datetime.fromtimestamp(seconds, tz=UTC))


def job_status(job: JobRecord) -> bridge_pb2.JobStatus:
    msg = bridge_pb2.JobStatus(
        job_id=job.job_id, state=STATE_TO_PB[job.state], state_reason=job.state_reason,
        backend=job.backend, frame_count=job.frame_count, frames_done=job.frames_done,
        request_id=job.request_id, attempts=job.attempts,
    )
    msg.tags.project, msg.tags.shot, msg.tags.version = job.project, job.shot, job.version
    _ts(msg.created, job.created)
    _ts(msg.updated, job.updated)
    if job.decision is not None:
        decision_pb(msg.scheduling, job.decision)
    return msg


def decision_pb(out: bridge_pb2.SchedulingDecision, d: Decision) -> None:
    """A scheduling decision (JobStatus.scheduling, JobEstimate.scheduling)."""
    out.site = d.site
    out.planned_start.FromDatetime(d.planned_start)
    out.expected_co2e_g = d.expected_co2e_g or 0.0
    out.run_now_co2e_g = d.run_now_co2e_g or 0.0
    out.reason = d.reason


def _energy(out: bridge_pb2.Energy, energy_wh: float, measured: bool, meter: str, co2e_g_location: float,
            co2e_g_market: float | None) -> None:
    out.energy_wh, out.measured, out.meter, out.co2e_g_location = energy_wh, measured, meter, co2e_g_location
    if co2e_g_market is not None:
        out.co2e_g_market = co2e_g_market


def energy_total_pb(out: bridge_pb2.Energy, total: EnergyTotal) -> None:
    _energy(out, total.energy_wh, total.measured, total.meter, total.co2e_g_location, total.co2e_g_market)


def frame_energy_pb(out: bridge_pb2.Energy, f: FrameRecord) -> None:
    """A stored frame record, as it was fixed: nothing is recomputed here."""
    _energy(out, f.energy_wh, f.measured, f.meter, f.co2e_g_location, f.co2e_g_market)
    out.site, out.intensity_g_per_kwh, out.intensity_source = f.site, f.intensity_g_per_kwh, f.intensity_source
    out.attempt, out.pue, out.work, out.intensity_kind = f.attempt, f.pue, f.work, f.intensity_kind


def job_report(report: JobReport) -> bridge_pb2.JobReport:
    msg = bridge_pb2.JobReport(
        job_id=report.job_id, backend=report.backend, state=STATE_TO_PB[report.state],
        frames=report.frames, wall_s=report.wall_s, pue=report.pue,
        facility_energy_wh=report.facility_energy_wh, wue_l_per_kwh=report.wue_l_per_kwh,
        water_l=report.water_l, site=report.site, grid_region=report.grid_region,
        intensity_g_per_kwh=report.intensity_g_per_kwh, intensity_source=report.intensity_source,
        embodied_co2e_g=report.embodied_co2e_g, sci=report.sci or 0.0, sci_unit=report.sci_unit,
        functional_units=report.functional_units, json=json.dumps(report.to_dict(), allow_nan=False),
        recipe_hash=report.recipe_hash,
    )
    t = report.temporal
    msg.temporal.computed, msg.temporal.reason, msg.temporal.method = t.computed, t.reason, t.method
    msg.temporal.gap1, msg.temporal.trajectory = t.gap1 or 0.0, t.trajectory or 0.0
    msg.temporal.window, msg.temporal.valid_fraction = t.window, t.valid_fraction or 0.0
    msg.temporal.control_adherence = -1.0 if t.control_adherence is None else t.control_adherence
    msg.tags.project, msg.tags.shot, msg.tags.version = report.tags.project, report.tags.shot, report.tags.version
    msg.fps.numerator, msg.fps.denominator = report.fps
    energy_total_pb(msg.energy, report.energy)
    return msg
