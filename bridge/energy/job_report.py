"""A job's report as a pure function of what was stored while it ran.

``price`` fixes a frame's or an attempt's carbon when it is produced;
``build_report`` only adds those stored records up (``math.fsum``), so the
live stream, a re-watch, the report, the ledger and OTIO show the same
figures, equal and not within a tolerance. Both executors call these.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from ..jobs.model import Attempt, EnergyTotal, FrameRecord, JobReport, JobState, SchedulingFacts, SciFigure, Tags
from .accounting import Site, embodied_g, functional_unit, site_intensity
from .attribution import RULE

SCI_FORMULA = "(E x I_location + M) / R; E = IT energy x PUE; market-based factors excluded"


@dataclass(frozen=True)
class Intensity:
    """A grid intensity at one moment and where it came from."""

    g_per_kwh: float
    source: str
    kind: str = "static"        # "realised", "forecast" or "static" (the site's annual figure)


def static_intensity(site: Site, note: str = "") -> Intensity:
    return Intensity(site_intensity(site), site.intensity_source + (f" ({note})" if note else ""), "static")


def price(site: Site, energy_wh: float, intensity: Intensity | None = None) -> tuple[float, float | None, Intensity]:
    """(gCO2e location-based, market-based or None, the intensity used) of
    ``energy_wh`` of IT energy at ``site``, on facility energy (x PUE).
    Without an intensity the site's static figure is used and named."""
    intensity = intensity or static_intensity(site)
    facility_kwh = energy_wh * site.pue / 1000.0
    market = None if site.market_g_per_kwh is None else facility_kwh * site.market_g_per_kwh
    return facility_kwh * intensity.g_per_kwh, market, intensity


def _names(values: Sequence[str]) -> str:
    return "; ".join(dict.fromkeys(v for v in values if v))


def build_report(*, job_id: str, tags: Tags, backend: str, generation: dict, state: JobState,
                 fps: tuple[int, int], frames: Sequence[FrameRecord], attempts: Sequence[Attempt], site: Site,
                 scheduling: SchedulingFacts = SchedulingFacts(), finished: float | None = None) -> JobReport:
    """The report of a job that ended in ``state``. ``site`` gives the
    facility figures (PUE, WUE, embodied) of where the job ran; frames and
    attempts carry their own prices, fixed when they were made."""
    frames = sorted(frames, key=lambda f: f.index)
    attempts = sorted(attempts, key=lambda a: a.number)
    frames_wh = math.fsum(f.energy_wh for f in frames)
    unattributed_wh = math.fsum(a.unattributed_wh for a in attempts)
    energy_wh = math.fsum([*(f.energy_wh for f in frames), *(a.unattributed_wh for a in attempts)])
    location = math.fsum([*(f.co2e_g_location for f in frames), *(a.unattributed_co2e_g_location for a in attempts)])
    markets = [*(f.co2e_g_market for f in frames),
               *(a.unattributed_co2e_g_market for a in attempts if a.unattributed_wh > 0)]
    market = None if not markets or any(m is None for m in markets) else math.fsum(m for m in markets if m is not None)
    facility_wh = math.fsum([*(f.energy_wh * f.pue for f in frames), *(a.unattributed_wh * a.pue for a in attempts)])
    contributing = [*((f.measured, f.meter) for f in frames),
                    *((a.measured, a.meter) for a in attempts if a.unattributed_wh > 0)]
    measured = bool(contributing) and all(m for m, _ in contributing)
    meter = _names([name for _, name in contributing])
    sources = _names([*(f.intensity_source for f in frames),
                      *(a.intensity_source for a in attempts if a.unattributed_wh > 0)])
    intensity = location / (facility_wh / 1000.0) if facility_wh > 0 else site_intensity(site)
    reserved_s = math.fsum(a.wall_s for a in attempts)
    embodied = math.fsum(a.embodied_co2e_g for a in attempts)
    priced_from: dict[str, float] = {}
    for kind, wh in [*((f.intensity_kind, f.energy_wh) for f in frames),
                     *((a.intensity_kind, a.unattributed_wh) for a in attempts if a.unattributed_wh > 0)]:
        priced_from[kind] = priced_from.get(kind, 0.0) + wh
    n = len(frames)

    def sci_for(kind: str) -> SciFigure:
        r, unit = functional_unit(kind, n, fps)
        return SciFigure(sci=(location + embodied) / r if r > 0 and n else None, sci_unit=unit, functional_units=r)

    main = sci_for("second")
    if not n:
        attribution = "no frames produced: the energy stays with the attempts that used it"
    else:
        attribution = RULE
    return JobReport(
        job_id=job_id, tags=tags, backend=backend, generation=dict(generation), state=state, frames=n,
        fps=(int(fps[0]), int(fps[1])), wall_s=reserved_s,
        energy=EnergyTotal(energy_wh=energy_wh, measured=measured, meter=meter, co2e_g_location=location,
                           co2e_g_market=market),
        frames_energy_wh=frames_wh, unattributed_wh=unattributed_wh,
        site=site.name, grid_region=site.grid_region, pue=site.pue, pue_source=site.pue_source,
        facility_energy_wh=facility_wh, wue_l_per_kwh=site.wue_l_per_kwh, wue_source=site.wue_source,
        water_l=energy_wh / 1000.0 * site.wue_l_per_kwh,     # IT energy x WUE, not PUE-scaled
        intensity_g_per_kwh=intensity, intensity_source=sources or site.intensity_source, priced_from=priced_from,
        market_g_per_kwh=site.market_g_per_kwh,
        market_source=site.market_source or "no market-based factor configured for this site",
        embodied_co2e_g=embodied, embodied_source=site.embodied_source, reserved_s=reserved_s,
        resource_share=1.0, device_lifetime_years=site.device_lifetime_years,
        sci=main.sci, sci_unit=main.sci_unit, sci_formula=SCI_FORMULA, functional_units=main.functional_units,
        sci_alternatives={k: sci_for(k) for k in ("frame", "shot_version")}, attribution=attribution,
        scheduling=scheduling, attempts=tuple(attempts), per_frame=tuple(frames),
        finished=time.time() if finished is None else finished)


def close_attempt(attempt: Attempt, site: Site, *, pending_wh: float, outcome, ended: float, reason: str = "",
                  intensity: Intensity | None = None) -> Attempt:
    """The attempt with its unattributed energy priced and its embodied
    share for the time it reserved the device (at its end, or at a
    checkpoint when ``outcome`` is still RUNNING)."""
    location, market, used = price(site, pending_wh, intensity)
    return replace(attempt, outcome=outcome, reason=reason or attempt.reason, ended=ended,
                   unattributed_wh=pending_wh, pue=site.pue, intensity_g_per_kwh=used.g_per_kwh,
                   intensity_source=used.source, intensity_kind=used.kind,
                   embodied_co2e_g=embodied_g(site, max(0.0, ended - attempt.started)),
                   unattributed_co2e_g_location=location, unattributed_co2e_g_market=market)


def saved_vs_submit(frames: Sequence[FrameRecord], attempts: Sequence[Attempt], delay_s: float, moved: bool,
                    price_at: Callable[[float], Intensity]) -> tuple[float, str]:
    """gCO2e saved against running at submit: every frame's and attempt's
    energy priced again at ``price_at(t - delay_s)`` (the same signal, at the
    moment it would have been used had the job not waited and not moved),
    minus what it was priced at. A job that did neither saved exactly 0.
    Returns (grams, basis: which kinds of figure the counterfactual used)."""
    if delay_s <= 0 and not moved:
        return 0.0, "ran when and where it was submitted"
    actual, counter, kinds = [], [], set()
    items = [*((f.created, f.energy_wh, f.pue, f.co2e_g_location) for f in frames),
             *(((a.ended or a.started), a.unattributed_wh, a.pue, a.unattributed_co2e_g_location)
               for a in attempts if a.unattributed_wh > 0)]
    for t, wh, pue, priced in items:
        cf = price_at(t - delay_s)
        kinds.add(cf.kind)
        counter.append(wh * pue / 1000.0 * cf.g_per_kwh)
        actual.append(priced)
    return math.fsum(counter) - math.fsum(actual), "counterfactual priced from " + ", ".join(sorted(kinds))
