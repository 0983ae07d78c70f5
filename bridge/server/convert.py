"""Domain records -> greenlight.v1 messages (server side)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from ..jobs.store import JobRecord
from ..proto.greenlight.v1 import bridge_pb2

STATE_TO_PB = {
    "queued": bridge_pb2.JOB_STATE_QUEUED,
    "scheduled": bridge_pb2.JOB_STATE_SCHEDULED,
    "running": bridge_pb2.JOB_STATE_RUNNING,
    "completed": bridge_pb2.JOB_STATE_COMPLETED,
    "failed": bridge_pb2.JOB_STATE_FAILED,
    "cancelled": bridge_pb2.JOB_STATE_CANCELLED,
}


def _ts(msg, seconds: float) -> None:
    msg.FromDatetime(datetime.fromtimestamp(seconds, tz=timezone.utc))


def job_status(job: JobRecord) -> bridge_pb2.JobStatus:
    msg = bridge_pb2.JobStatus(
        job_id=job.job_id, state=STATE_TO_PB[job.state.value], state_reason=job.state_reason,
        backend=job.backend, frame_count=job.frame_count, frames_done=job.frames_done,
        request_id=job.request_id, attempts=job.attempts,
    )
    msg.tags.project, msg.tags.shot, msg.tags.version = job.project, job.shot, job.version
    _ts(msg.created, job.created)
    _ts(msg.updated, job.updated)
    d = job.decision
    if d:
        msg.scheduling.site = d.get("site", "")
        msg.scheduling.planned_start.FromDatetime(datetime.fromisoformat(d["planned_start"]))
        msg.scheduling.expected_co2e_g = d.get("expected_co2e_g") or 0.0
        msg.scheduling.run_now_co2e_g = d.get("run_now_co2e_g") or 0.0
        msg.scheduling.reason = d.get("reason", "")
    return msg


def energy_pb(out: bridge_pb2.Energy, energy_wh: float, measured: bool, meter: str,
              co2e_g_location: float, co2e_g_market: float | None) -> None:
    out.energy_wh = energy_wh
    out.measured = measured
    out.meter = meter
    out.co2e_g_location = co2e_g_location
    if co2e_g_market is not None:
        out.co2e_g_market = co2e_g_market


def job_report(report: dict) -> bridge_pb2.JobReport:
    msg = bridge_pb2.JobReport(
        job_id=report["job_id"], backend=report["backend"], state=STATE_TO_PB[report["state"]],
        frames=report["frames"], wall_s=report["wall_s"], pue=report["pue"],
        facility_energy_wh=report["facility_energy_wh"], wue_l_per_kwh=report["wue_l_per_kwh"],
        water_l=report["water_l"], site=report["site"], grid_region=report["grid_region"],
        intensity_g_per_kwh=report["intensity_g_per_kwh"], intensity_source=report["intensity_source"],
        embodied_co2e_g=report["embodied_co2e_g"], sci=report["sci"] or 0.0, sci_unit=report["sci_unit"],
        functional_units=report["functional_units"], json=json.dumps(report),
    )
    tags = report["tags"]
    msg.tags.project, msg.tags.shot, msg.tags.version = tags["project"], tags["shot"], tags["version"]
    msg.fps.numerator, msg.fps.denominator = report["fps"]
    energy_pb(msg.energy, **report["energy"])
    return msg
