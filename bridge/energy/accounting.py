"""Turn a job's IT energy into facility energy, water, gCO2e and SCI.

Facility energy = IT x PUE; water = IT x WUE (WUE is defined on IT energy);
carbon location-based and market-based side by side; SCI (ISO/IEC
21031:2024) = (E x I + M) / R with E the facility energy in kWh, I the
location-based intensity and R the declared functional unit.
"""

from __future__ import annotations

from dataclasses import dataclass

# Ember, Global Electricity Review 2024: world average grid intensity, 2023.
WORLD_AVERAGE_G_PER_KWH = 480.0


@dataclass(frozen=True)
class Site:
    name: str = "local"
    grid_region: str = "world-average"
    intensity_g_per_kwh: float = WORLD_AVERAGE_G_PER_KWH
    intensity_source: str = "static: Ember Global Electricity Review 2024 (world, 2023)"
    market_g_per_kwh: float | None = None     # supplier / contract factor, if known
    pue: float = 1.0                          # a workstation has no facility overhead
    wue_l_per_kwh: float = 0.0
    embodied_kg_per_device: float = 0.0
    device_lifetime_years: float = 4.0


def account(site: Site, energy_wh: float, reserved_s: float, functional_units: float, unit: str) -> dict:
    facility_wh = energy_wh * site.pue
    location_g = facility_wh / 1000.0 * site.intensity_g_per_kwh
    market_g = None if site.market_g_per_kwh is None else facility_wh / 1000.0 * site.market_g_per_kwh
    lifetime_s = site.device_lifetime_years * 365.25 * 24 * 3600
    embodied_g = site.embodied_kg_per_device * 1000.0 * reserved_s / lifetime_s
    sci = (location_g + embodied_g) / functional_units if functional_units > 0 else None
    return {
        "site": site.name,
        "grid_region": site.grid_region,
        "pue": site.pue,
        "facility_energy_wh": facility_wh,
        "wue_l_per_kwh": site.wue_l_per_kwh,
        "water_l": energy_wh / 1000.0 * site.wue_l_per_kwh,
        "intensity_g_per_kwh": site.intensity_g_per_kwh,
        "intensity_source": site.intensity_source,
        "co2e_g_location": location_g,
        "co2e_g_market": market_g,
        "embodied_co2e_g": embodied_g,
        "sci": sci,
        "sci_unit": unit,
        "functional_units": functional_units,
    }
