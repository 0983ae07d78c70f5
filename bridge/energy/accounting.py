"""Turn a job's IT energy into facility energy, water, gCO2e and SCI.

- Facility energy = IT energy x PUE.
- Water = IT energy x WUE (WUE is defined on IT energy; never PUE-scaled).
- Operational carbon, location-based (grid intensity of the region) and
  market-based (supplier / contract factor) side by side, both on facility
  energy. The market figure is ``None`` when the site has no factor.
- Embodied M = device embodied x (time reserved / lifetime) x resource share.
- SCI (ISO/IEC 21031:2024) = (E x I + M) / R with E the facility energy in
  kWh, I the *location-based* intensity (market-based measures are excluded
  by the specification) and R the declared functional unit.

Lifetimes are in 365-day years, the SCI specification's convention (its
example amortises 4 years as 4 x 365 x 24 hours).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import InvalidArgumentError

YEAR_S = 365 * 24 * 3600
WORLD_AVERAGE_G_PER_KWH = 480.0   # Ember Global Electricity Review 2024: world, 2023

FUNCTIONAL_UNITS = {
    "second": "gCO2e per second of animatic",
    "frame": "gCO2e per frame",
    "shot_version": "gCO2e per shot version",
}


@dataclass(frozen=True)
class Site:
    """A place jobs run: grid region, PUE, WUE, market factor, embodied figures.

    ``intensity_g_per_kwh`` left as ``None`` is looked up in the static
    annual table for ``grid_region`` (an unknown region is an error, never a
    silent world average). Defaults are the shipped ``local`` site.
    """

    name: str = "local"
    grid_region: str = "WORLD"
    intensity_g_per_kwh: float | None = None
    intensity_source: str = ""
    market_g_per_kwh: float | None = None     # supplier / contract factor, if known
    market_source: str = ""
    pue: float = 1.0
    pue_source: str = "workstation or office room: no data-centre facility overhead counted"
    wue_l_per_kwh: float = 0.0
    wue_source: str = "no on-site cooling water at a workstation"
    embodied_kg_per_device: float = 1000.0
    embodied_source: str = ("stand-in: Cloud Carbon Footprint base embodied figure for a minimal server "
                            "(Dell R740 LCA), 1,000 kgCO2e; replace with your device's product carbon footprint")
    device_lifetime_years: float = 4.0

    def __post_init__(self):
        where = f"site {self.name!r}"

        def number(field: str, value, minimum: float, why: str, allow_none: bool = False):
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InvalidArgumentError(f"{where}: {field} must be a number, got {value!r}")
            if value < minimum:
                raise InvalidArgumentError(f"{where}: {field} must be >= {minimum:g} ({why}), got {value!r}")

        if not self.name:
            raise InvalidArgumentError("site: name must not be empty")
        number("pue", self.pue, 1.0, "facility energy cannot be less than IT energy")
        number("wue_l_per_kwh", self.wue_l_per_kwh, 0.0, "litres of water per kWh cannot be negative")
        number("market_g_per_kwh", self.market_g_per_kwh, 0.0, "an emission factor cannot be negative",
               allow_none=True)
        number("embodied_kg_per_device", self.embodied_kg_per_device, 0.0, "emissions cannot be negative")
        number("device_lifetime_years", self.device_lifetime_years, 1e-9, "a device lives a positive time")
        if self.market_g_per_kwh is not None and not self.market_source:
            raise InvalidArgumentError(f"{where}: market_g_per_kwh is set but market_source is empty; "
                                       "say where the supplier or contract factor comes from")
        if self.intensity_g_per_kwh is None:
            from .signals import SignalError, StaticTable

            try:
                point = StaticTable().lookup(self.grid_region)
            except SignalError as exc:
                raise InvalidArgumentError(f"{where}: {exc}; or set intensity_g_per_kwh and "
                                           "intensity_source for this site") from exc
            object.__setattr__(self, "intensity_g_per_kwh", point.g_per_kwh)
            object.__setattr__(self, "intensity_source", point.source)
        else:
            number("intensity_g_per_kwh", self.intensity_g_per_kwh, 0.0, "an intensity cannot be negative")
            if not self.intensity_source:
                raise InvalidArgumentError(f"{where}: intensity_g_per_kwh is set but intensity_source is empty")


def site_intensity(site: Site) -> float:
    """The site's location-based intensity: ``Site.__post_init__`` fills a
    ``None`` in from the static table, so it is only missing if that was bypassed."""
    if site.intensity_g_per_kwh is None:
        raise ValueError(f"site {site.name!r}: intensity_g_per_kwh was never resolved (Site.__post_init__ skipped)")
    return site.intensity_g_per_kwh


def functional_unit(kind: str, frames: int, fps: tuple[int, int]) -> tuple[float, str]:
    """R for a report: ("second" | "frame" | "shot_version") -> (value, unit)."""
    if kind not in FUNCTIONAL_UNITS:
        raise InvalidArgumentError(f"functional unit {kind!r}: expected one of {sorted(FUNCTIONAL_UNITS)}")
    if kind == "second":
        num, den = fps
        if num <= 0 or den <= 0:
            raise InvalidArgumentError(f"fps {num}/{den}: numerator and denominator must be > 0")
        value = frames * den / num
    elif kind == "frame":
        value = float(frames)
    else:
        value = 1.0
    return value, FUNCTIONAL_UNITS[kind]


def embodied_g(site: Site, reserved_s: float, resource_share: float = 1.0) -> float:
    """M = TE x (time reserved / expected lifespan) x resource share, in grams."""
    if reserved_s < 0:
        raise ValueError(f"reserved_s must be >= 0, got {reserved_s}")
    if not 0 <= resource_share <= 1:
        raise ValueError(f"resource_share must be in [0, 1], got {resource_share}")
    return site.embodied_kg_per_device * 1000.0 * (reserved_s / (site.device_lifetime_years * YEAR_S)) * resource_share


def sci(energy_kwh: float, intensity_g_per_kwh: float, embodied: float, functional_units: float) -> float | None:
    """(E x I + M) / R; ``None`` when R is 0 (nothing was produced)."""
    if functional_units <= 0:
        return None
    return (energy_kwh * intensity_g_per_kwh + embodied) / functional_units


def operational_g(site: Site, energy_wh: float, intensity_g_per_kwh: float | None = None) -> tuple[float, float | None]:
    """(location-based, market-based or None) gCO2e of ``energy_wh`` of IT
    energy at ``site``: the per-frame figures of a frame event."""
    facility_kwh = energy_wh * site.pue / 1000.0
    intensity = site_intensity(site) if intensity_g_per_kwh is None else intensity_g_per_kwh
    market = None if site.market_g_per_kwh is None else facility_kwh * site.market_g_per_kwh
    return facility_kwh * intensity, market


def account(site: Site, energy_wh: float, reserved_s: float, functional_units: float, unit: str, *,
            intensity_g_per_kwh: float | None = None, intensity_source: str | None = None,
            resource_share: float = 1.0) -> dict:
    """The accounting block of a report. ``intensity_*`` override the site's
    static figure with a time-resolved signal (the source must be named)."""
    if not math.isfinite(energy_wh) or energy_wh < 0:
        raise ValueError(f"energy_wh must be a finite number >= 0, got {energy_wh!r}")
    if intensity_g_per_kwh is None:
        intensity, source = site_intensity(site), site.intensity_source
    else:
        if not intensity_source:
            raise ValueError("an intensity override needs its source")
        intensity, source = float(intensity_g_per_kwh), intensity_source
    facility_wh = energy_wh * site.pue
    facility_kwh = facility_wh / 1000.0
    location_g = facility_kwh * intensity
    market_g = None if site.market_g_per_kwh is None else facility_kwh * site.market_g_per_kwh
    m = embodied_g(site, reserved_s, resource_share)
    return {
        "site": site.name,
        "grid_region": site.grid_region,
        "it_energy_wh": energy_wh,
        "pue": site.pue,
        "pue_source": site.pue_source,
        "facility_energy_wh": facility_wh,
        "wue_l_per_kwh": site.wue_l_per_kwh,
        "wue_source": site.wue_source,
        "water_l": energy_wh / 1000.0 * site.wue_l_per_kwh,   # IT energy x WUE, not PUE-scaled
        "intensity_g_per_kwh": intensity,
        "intensity_source": source,
        "market_g_per_kwh": site.market_g_per_kwh,
        "market_source": site.market_source or "no market-based factor configured for this site",
        "co2e_g_location": location_g,
        "co2e_g_market": market_g,
        "embodied_co2e_g": m,
        "embodied_source": site.embodied_source,
        "reserved_s": reserved_s,
        "resource_share": resource_share,
        "device_lifetime_years": site.device_lifetime_years,
        "sci": sci(facility_kwh, intensity, m, functional_units),
        "sci_unit": unit,
        "sci_formula": "(E x I_location + M) / R; E = IT energy x PUE; market-based factors excluded",
        "functional_units": functional_units,
    }
