"""Attribution, sites and accounting (PUE, WUE, LB/MB, embodied, SCI)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from bridge.energy.accounting import YEAR_S, Site, account, embodied_g, functional_unit, operational_g, sci
from bridge.energy.attribution import RULE, RULE_EQUAL, RunningAttribution, attribute, rule_for, split_device_energy
from bridge.energy.job_report import build_report, close_attempt, price
from bridge.energy.sites import load_sites, site_from_config
from bridge.errors import InvalidArgumentError
from bridge.jobs.model import Attempt, AttemptOutcome, FrameRecord, JobState, Tags


# ------------------------------------------------------------ attribution
@pytest.mark.parametrize("total, works", [
    (1.0, [1, 1, 1]),
    (0.1, [3, 1, 7, 2, 2, 5, 1]),
    (123.456789, [0.3] * 97),
    (2 / 3, [1e-9, 1e9, 3.3]),
    (0.0, [1, 2]),
])
def test_attribute_sums_exactly_and_follows_work(total, works):
    shares = attribute(total, works)
    assert math.fsum(shares) == total
    assert len(shares) == len(works)
    wsum = math.fsum(works)
    for s, w in zip(shares, works):
        assert s == pytest.approx(total * w / wsum, rel=1e-9, abs=1e-15)


def test_attribute_exact_sum_randomised():
    import random

    rng = random.Random(5)
    for _ in range(3000):
        n = rng.randint(1, 200)
        total = rng.random() * rng.choice([1e-6, 1.0, 1e3, 1e6])
        works = [rng.random() * rng.choice([0.0, 1.0, 1e-6, 1e6]) for _ in range(n)]
        shares = attribute(total, works)
        assert math.fsum(shares) == total and min(shares) >= 0


def test_per_frame_carbon_matches_job_accounting():
    site = Site(name="dc", grid_region="SE", pue=1.2, market_g_per_kwh=10.0, market_source="contract")
    shares = attribute(6.0, [1, 2, 3])
    per_frame = [operational_g(site, s) for s in shares]
    acc = account(site, 6.0, 1.0, 3, "gCO2e per frame")
    assert math.fsum(lb for lb, _ in per_frame) == pytest.approx(acc["co2e_g_location"])
    assert math.fsum(mb for _, mb in per_frame) == pytest.approx(acc["co2e_g_market"])
    assert operational_g(Site(), 1.0)[1] is None


def test_report_totals_are_the_exact_sums_of_frames_and_attempts():
    """The job report adds up what was fixed per frame and per attempt
    (``math.fsum``): nothing is re-attributed or re-priced at the end."""
    site = Site(name="dc", grid_region="SE", pue=1.2, market_g_per_kwh=10.0, market_source="contract")
    run = RunningAttribution(3)
    frames = []
    for i, (wh, work) in enumerate(((2.5, 1.0), (1.0, 2.0), (2.0, 3.0))):
        run.add(wh)
        share = run.charge(work)
        location, market, used = price(site, share)
        intensity, source = used.g_per_kwh, used.source
        frames.append(FrameRecord(index=i, attempt=1, meter="nvml:0", measured=True, energy_wh=share, work=work,
                                  site="dc", pue=site.pue, intensity_g_per_kwh=intensity, intensity_source=source,
                                  co2e_g_location=location, co2e_g_market=market))
    run.add(0.5)                                      # after the last frame: stays with the attempt
    attempt = close_attempt(Attempt(number=1, site="dc", meter="nvml:0", measured=True, started=0.0, frames=3,
                                    frames_energy_wh=math.fsum(f.energy_wh for f in frames)),
                            site, pending_wh=run.pending_wh, outcome=AttemptOutcome.COMPLETED, ended=10.0)
    assert attempt.unattributed_wh == pytest.approx(0.5)
    report = build_report(job_id="j", tags=Tags("p", "s", 1), backend="b", generation={},
                          state=JobState.COMPLETED, fps=(24, 1), frames=frames, attempts=[attempt], site=site)
    assert report.per_frame == tuple(frames) and report.attempts == (attempt,)
    assert report.frames_energy_wh == math.fsum(f.energy_wh for f in frames)
    assert report.unattributed_wh == attempt.unattributed_wh
    assert report.energy.energy_wh == math.fsum([*(f.energy_wh for f in frames), attempt.unattributed_wh])
    assert report.energy.co2e_g_location == math.fsum(
        [*(f.co2e_g_location for f in frames), attempt.unattributed_co2e_g_location])
    assert report.energy.co2e_g_market == math.fsum(
        [*(f.co2e_g_market for f in frames), attempt.unattributed_co2e_g_market])
    assert report.energy.measured and report.energy.meter == "nvml:0"
    # and the same as accounting the whole job at once, up to rounding
    acc = account(site, 6.0, 10.0, 3 / 24, "gCO2e per second of animatic")
    assert report.energy.energy_wh == pytest.approx(6.0)
    assert report.energy.co2e_g_location == pytest.approx(acc["co2e_g_location"])
    assert report.energy.co2e_g_market == pytest.approx(acc["co2e_g_market"])
    assert report.facility_energy_wh == pytest.approx(acc["facility_energy_wh"])
    assert report.embodied_co2e_g == pytest.approx(acc["embodied_co2e_g"])
    assert report.sci == pytest.approx(acc["sci"])
    # one estimated contribution makes the total estimated; an unknown market figure makes it unknown
    est = build_report(job_id="j", tags=Tags(), backend="b", generation={}, state=JobState.COMPLETED, fps=(24, 1),
                       frames=[*frames[:2], dataclasses.replace(frames[2], measured=False, co2e_g_market=None)],
                       attempts=[attempt], site=site)
    assert not est.energy.measured and est.energy.co2e_g_market is None
    # no frames: the energy stays with the attempt, and is still counted
    failed = build_report(job_id="j", tags=Tags(), backend="b", generation={}, state=JobState.FAILED, fps=(24, 1),
                          frames=[], attempts=[close_attempt(Attempt(number=1, started=0.0, meter="m"), site,
                                                             pending_wh=1.5, outcome=AttemptOutcome.FAILED,
                                                             ended=1.0)], site=site)
    assert failed.energy.energy_wh == 1.5 == failed.unattributed_wh and failed.frames == 0 and failed.sci is None


def test_running_attribution_charges_each_frame_when_it_is_made():
    """A frame takes pending * w / (w + (left - 1) * mean_w): energy spent
    before the first frame spreads over every frame still to come; the last
    frame takes what is left; charged + pending is what was measured."""
    run = RunningAttribution(4)
    run.add(8.0)                                    # a shared loop before any frame is decoded
    shares = [run.charge(1.0) for _ in range(4)]
    assert shares == pytest.approx([2.0] * 4) and run.pending_wh == 0.0 and math.fsum(shares) == pytest.approx(8.0)

    import random

    rng = random.Random(3)
    for _ in range(200):
        n = rng.randint(1, 30)
        run = RunningAttribution(n)
        pending, works, charged, measured = 0.0, [], [], []
        for left in range(n, 0, -1):
            e = rng.random() * rng.choice([0.0, 1e-6, 1.0, 1e3])
            w = rng.random() * rng.choice([0.0, 1.0, 10.0])
            run.add(e)
            measured.append(e)
            pending += e
            works.append(w)
            mean = math.fsum(works) / len(works)
            weight = w + (left - 1) * mean
            expect = pending if left == 1 else (pending / left if weight == 0 else pending * w / weight)
            got = run.charge(w)
            assert got == pytest.approx(expect, rel=1e-9, abs=1e-12) and got >= 0
            pending -= got
            charged.append(got)
        assert run.pending_wh == 0.0 and run.frames_left == 0     # the last frame took what was left
        assert math.fsum(charged) == pytest.approx(math.fsum(measured), rel=1e-9, abs=1e-12)
    # energy after the last frame stays pending (the attempt's unattributed energy)
    run = RunningAttribution(1)
    run.add(1.0)
    assert run.charge() == 1.0
    run.add(0.25)
    assert run.pending_wh == 0.25
    with pytest.raises(ValueError, match="energy_wh"):
        run.add(-1.0)
    with pytest.raises(ValueError, match="work"):
        RunningAttribution(2).charge(float("nan"))


def test_attribute_equal_split_when_no_work_reported():
    shares = attribute(0.9, [0, 0, 0])
    assert shares == pytest.approx([0.3, 0.3, 0.3]) and math.fsum(shares) == 0.9
    assert rule_for([0, 0, 0]) == RULE_EQUAL and rule_for([0, 1]) == RULE


def test_attribute_refuses_bad_input():
    assert attribute(5.0, []) == []
    with pytest.raises(ValueError, match=r"works\[1\]"):
        attribute(1.0, [1, -1])
    with pytest.raises(ValueError, match="total_wh"):
        attribute(float("nan"), [1])


def test_shared_device_idle_not_charged_and_concurrent_jobs_split_by_work():
    intervals = [
        (2.0, {"a": 1.0}),                 # only a ran
        (3.0, {"a": 1.0, "b": 2.0}),       # both: 1 : 2
        (0.5, {}),                         # device idle between jobs
        (1.0, {"b": 4.0, "a": 0.0}),       # a present but idle: b pays
        (0.4, {"b": 0.0}),                 # b holds the device doing nothing: still b's
    ]
    per_job, idle = split_device_energy(intervals)
    assert per_job["a"] == pytest.approx(2.0 + 1.0)
    assert per_job["b"] == pytest.approx(2.0 + 1.0 + 0.4)
    assert idle == pytest.approx(0.5)
    assert math.fsum(per_job.values()) + idle == pytest.approx(sum(e for e, _ in intervals))


# ------------------------------------------------------------------ sites
def test_shipped_sites_have_documented_pue_and_sources():
    sites = load_sites()
    expected = {"gcp-europe-west4": 1.09, "aws-eu-central-1": 1.15, "azure-swedencentral": 1.17,
                "ovh-gravelines": 1.26, "colo-average": 1.56, "local": 1.0}
    for name, pue in expected.items():
        s = sites[name]
        assert s.pue == pue
        assert s.pue_source and s.wue_source and s.embodied_source and s.intensity_source
    assert "Google" in sites["gcp-europe-west4"].pue_source and "2024" in sites["gcp-europe-west4"].pue_source
    assert "Uptime Institute" in sites["colo-average"].pue_source
    assert sites["aws-eu-central-1"].intensity_g_per_kwh == 381        # DE, Ember 2023
    assert "Ember" in sites["aws-eu-central-1"].intensity_source


@pytest.mark.parametrize("values, message", [
    ({"pue": 0.95}, "pue must be >= 1"),
    ({"wue_l_per_kwh": -0.1}, "wue_l_per_kwh must be >= 0"),
    ({"grid_region": "XX"}, "unknown grid region 'XX'"),
    ({"market_g_per_kwh": 100.0}, "market_source is empty"),
    ({"market_g_per_kwh": -1.0, "market_source": "x"}, "market_g_per_kwh must be >= 0"),
    ({"device_lifetime_years": 0}, "device_lifetime_years must be >= "),
    ({"pue": "1.2"}, "pue must be a number"),
    ({"intensity_g_per_kwh": 100.0}, "intensity_source is empty"),
])
def test_site_validation_errors_name_the_field(values, message):
    with pytest.raises(InvalidArgumentError, match=message):
        Site(name="bad", **values)


def test_sites_file_errors_name_file_site_and_field(tmp_path):
    f = tmp_path / "sites.toml"
    f.write_text('[sites.render-farm]\nprofile = "aws"\ngrid_region = "DE"\npue = 0.8\n')
    with pytest.raises(InvalidArgumentError, match=r"sites.toml: site 'render-farm': pue must be >= 1"):
        load_sites(f)
    f.write_text('[sites.render-farm]\nprofile = "nope"\ngrid_region = "DE"\n')
    with pytest.raises(InvalidArgumentError, match="unknown profile 'nope'"):
        load_sites(f)
    f.write_text('[sites.render-farm]\ngrid_region = "DE"\npeu = 1.2\n')
    with pytest.raises(InvalidArgumentError, match=r"unknown keys \['peu'\]"):
        load_sites(f)


def test_user_sites_override_and_config_use(tmp_path):
    f = tmp_path / "sites.toml"
    f.write_text('[sites.studio]\nprofile = "workstation"\ngrid_region = "FR"\n'
                 'market_g_per_kwh = 20.0\nmarket_source = "supplier contract 2025"\n')
    sites = load_sites(f)
    assert sites["studio"].intensity_g_per_kwh == 56 and sites["studio"].pue == 1.0
    assert "aws-eu-central-1" in sites                     # shipped ones still there
    s = site_from_config({"use": "aws-eu-central-1", "grid_region": "SE"})
    assert s.name == "aws-eu-central-1" and s.pue == 1.15 and s.intensity_g_per_kwh == 41
    with pytest.raises(InvalidArgumentError, match="not a known site"):
        site_from_config({"use": "moon-base"})


def test_subnational_zone_falls_back_to_country_and_says_so():
    s = Site(name="x", grid_region="US-CAL-CISO")
    assert s.intensity_g_per_kwh == 369
    assert "national figure used for zone US-CAL-CISO" in s.intensity_source
    assert "not re-checked" in s.intensity_source


# ------------------------------------------------------------- accounting
def test_facility_energy_water_and_carbon_side_by_side():
    site = Site(name="dc", grid_region="DE", pue=1.5, wue_l_per_kwh=2.0,
                market_g_per_kwh=100.0, market_source="supplier mix 2024",
                embodied_kg_per_device=0.0, embodied_source="n/a for this test")
    acc = account(site, energy_wh=1000.0, reserved_s=3600, functional_units=10, unit="gCO2e per frame")
    assert acc["facility_energy_wh"] == pytest.approx(1500.0)
    assert acc["water_l"] == pytest.approx(2.0)                 # IT energy x WUE: 1 kWh x 2 L/kWh
    assert acc["water_l"] != pytest.approx(1.5 * 2.0)           # never PUE-scaled
    assert acc["co2e_g_location"] == pytest.approx(1.5 * 381)
    assert acc["co2e_g_market"] == pytest.approx(1.5 * 100)
    assert acc["market_source"] == "supplier mix 2024"


def test_sci_uses_location_based_only():
    clean = Site(name="a", grid_region="DE", market_g_per_kwh=0.0, market_source="100% REC claim")
    dirty = Site(name="b", grid_region="DE", market_g_per_kwh=900.0, market_source="coal contract")
    a = account(clean, 500.0, 60, 2, "u")
    b = account(dirty, 500.0, 60, 2, "u")
    assert a["sci"] == b["sci"]                                    # market factor never enters SCI
    assert a["sci"] == pytest.approx((a["co2e_g_location"] + a["embodied_co2e_g"]) / 2)
    assert a["co2e_g_market"] == 0.0 and b["co2e_g_market"] > 0


def test_no_market_factor_is_none_not_zero():
    acc = account(Site(), 10.0, 1, 1, "u")
    assert acc["co2e_g_market"] is None
    assert acc["market_source"] == "no market-based factor configured for this site"


def test_embodied_time_and_resource_share():
    site = Site(name="x", embodied_kg_per_device=2000.0, device_lifetime_years=4.0, embodied_source="test")
    full = embodied_g(site, reserved_s=3600)
    assert full == pytest.approx(2_000_000 * 3600 / (4 * YEAR_S))
    assert embodied_g(site, 3600, resource_share=0.25) == pytest.approx(full / 4)
    acc = account(site, 0.0, 3600, 1, "u", resource_share=0.5)
    assert acc["embodied_co2e_g"] == pytest.approx(full / 2) and acc["resource_share"] == 0.5


def test_sci_spec_time_share_example_exactly():
    """Green Software Foundation, Software Carbon Intensity specification
    v1.1.0 (ISO/IEC 21031:2024), SPEC.md, "Embodied emissions": a device with
    1000 kg embodied carbon and a four-year lifespan reserved for one hour:
    "1000 * 1/(4*365*24) or around 28 g"
    (github.com/Green-Software-Foundation/sci/blob/dev/SPEC.md)."""
    site = Site(name="spec", embodied_kg_per_device=1000.0, device_lifetime_years=4.0,
                embodied_source="SCI spec example")
    m = embodied_g(site, reserved_s=3600.0)
    assert m == pytest.approx(1000 * 1000 * 1 / (4 * 365 * 24), rel=1e-12)
    assert int(m) == 28


def test_sci_case_study_eshoppen_app_server():
    """Green Software Foundation SCI repository, case-studies/eshoppen.md,
    "App server for Web application": E = 0.0656 kWh, I = 951 gCO2e/kWh,
    M = 1205.52 kgCO2e x (1/35040) x (2/16), R = one 1-hour run.
    The case study prints M = 4.305 g and SCI = 66.6906 g; exact arithmetic
    gives M = 4.30051 g (1205.52 / 35040 / 8 kg) and SCI = 66.68611 g: the
    study rounded M once too early. We assert the exact figures and that the
    study's own total follows from its rounded M."""
    site = Site(name="azure-p2v2", intensity_g_per_kwh=951.0, intensity_source="SCI data project (case study)",
                embodied_kg_per_device=1205.52, device_lifetime_years=4.0, embodied_source="CCF (case study)")
    m = embodied_g(site, reserved_s=3600.0, resource_share=2 / 16)
    assert m == pytest.approx(1205.52 * 1000 / 35040 * 2 / 16, rel=1e-12)
    assert m == pytest.approx(4.30051, abs=1e-5)
    acc = account(site, energy_wh=65.6, reserved_s=3600.0, functional_units=1, unit="gCO2e per 1-hour run",
                  resource_share=2 / 16)
    assert acc["sci"] == pytest.approx(0.0656 * 951 + m, rel=1e-12)
    assert acc["sci"] == pytest.approx(66.68611, abs=1e-5)
    assert sci(0.0656, 951, 4.305, 1) == pytest.approx(66.6906, abs=1e-9)


def test_functional_units():
    assert functional_unit("second", 48, (24, 1)) == (2.0, "gCO2e per second of animatic")
    v, unit = functional_unit("second", 24, (24000, 1001))
    assert v == pytest.approx(1.001) and unit.endswith("second of animatic")
    assert functional_unit("frame", 48, (24, 1)) == (48.0, "gCO2e per frame")
    assert functional_unit("shot_version", 48, (24, 1)) == (1.0, "gCO2e per shot version")
    with pytest.raises(InvalidArgumentError, match="functional unit 'minute'"):
        functional_unit("minute", 1, (24, 1))
    assert account(Site(), 1.0, 1.0, 0, "u")["sci"] is None


def test_account_keeps_the_keys_the_bridge_reads():
    acc = account(Site(), 1.0, 1.0, 1.0, "gCO2e per second of animatic")
    for key in ("site", "grid_region", "pue", "facility_energy_wh", "wue_l_per_kwh", "water_l",
                "intensity_g_per_kwh", "intensity_source", "co2e_g_location", "co2e_g_market",
                "embodied_co2e_g", "sci", "sci_unit", "functional_units"):
        assert key in acc
    assert acc["embodied_co2e_g"] > 0                  # the default site is not silently zero
    override = account(Site(), 1.0, 1.0, 1.0, "u", intensity_g_per_kwh=100.0, intensity_source="trace")
    assert override["co2e_g_location"] == pytest.approx(0.1) and override["intensity_source"] == "trace"
    with pytest.raises(ValueError, match="needs its source"):
        account(Site(), 1.0, 1.0, 1.0, "u", intensity_g_per_kwh=100.0)
