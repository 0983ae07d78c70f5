"""Scheduling decisions. Interactive jobs run now at the local site; the
carbon-aware batch planner (time and site shifting) plugs in here."""

from __future__ import annotations

from datetime import datetime, timezone

from ..energy.accounting import Site
from ..shot.request import SchedulingSettings


def decide(scheduling: SchedulingSettings, site: Site, expected_wh: float | None,
           now: datetime | None = None) -> dict:
    """The decision as stored with the job and sent in JobAccepted."""
    now = now or datetime.now(timezone.utc)
    facility_kwh = None if expected_wh is None else expected_wh * site.pue / 1000.0
    co2e = None if facility_kwh is None else facility_kwh * site.intensity_g_per_kwh
    if scheduling.job_class == "interactive":
        reason = f"interactive: runs now at {site.name}"
    else:
        reason = (f"batch: runs now at {site.name}; this bridge has no carbon forecast to shift it "
                  f"before its deadline {scheduling.deadline.isoformat(timespec='minutes')}")
    if co2e is None:
        reason += " (no energy history for this backend yet: no gCO2e estimate)"
    return {
        "site": site.name,
        "planned_start": now.isoformat(),
        "expected_co2e_g": co2e,
        "run_now_co2e_g": co2e,
        "reason": reason,
    }
