"""Ledger (a real SQLite file) and the project report: table and HTML whose
numbers match the ledger."""

from __future__ import annotations

import math
import re
import sqlite3
import threading
from html.parser import HTMLParser

import pytest

from bridge.energy.accounting import Site, embodied_g, operational_g
from bridge.energy.attribution import attribute
from bridge.energy.job_report import build_report, close_attempt, price
from bridge.energy.ledger import Ledger
from bridge.energy.report import format_table, project_report, write_html
from bridge.jobs.model import Attempt, AttemptOutcome, FrameRecord, JobReport, JobState, SchedulingFacts, Tags


def make_report(job_id, project, shot, version, energy_wh, *, state="completed", frames=48, fps=(24, 1),
                site=None, measured=False, meter="cpu-time-model", scheduling=None) -> JobReport:
    """A report as the executors build it: ``energy_wh`` over ``frames``
    frame records (priced at the site's static figure), one 10 s attempt."""
    site = site or Site()
    shares = attribute(energy_wh, [1.0] * frames)
    per_frame = []
    for i, wh in enumerate(shares):
        location, market, used = price(site, wh)
        intensity, source = used.g_per_kwh, used.source
        per_frame.append(FrameRecord(index=i, attempt=1, meter=meter, measured=measured, energy_wh=wh,
                                     site=site.name, pue=site.pue, intensity_g_per_kwh=intensity,
                                     intensity_source=source, co2e_g_location=location, co2e_g_market=market))
    outcome = AttemptOutcome.COMPLETED if state == "completed" else AttemptOutcome.FAILED
    attempt = close_attempt(Attempt(number=1, site=site.name, meter=meter, measured=measured, started=100.0,
                                    frames=frames, frames_energy_wh=math.fsum(shares)),
                            site, pending_wh=0.0, outcome=outcome, ended=110.0)
    return build_report(job_id=job_id, tags=Tags(project, shot, version), backend="guides", generation={},
                        state=JobState(state), fps=fps, frames=per_frame, attempts=[attempt], site=site,
                        scheduling=SchedulingFacts(**(scheduling or {})))


MARKET = Site(name="farm", grid_region="DE", pue=1.2, wue_l_per_kwh=0.5, market_g_per_kwh=50.0,
              market_source="supplier contract")


@pytest.fixture
def ledger(tmp_path):
    with Ledger.for_data_dir(tmp_path) as led:
        led.record(make_report("j1", "film", "sh010", 1, 2.0), finished=1000.0)
        led.record(make_report("j2", "film", "sh010", 1, 1.0, state="failed", frames=10), finished=1100.0)
        led.record(make_report("j3", "film", "sh010", 2, 3.0, site=MARKET, measured=True, meter="nvml:0",
                               scheduling={"job_class": "batch", "shifted": True, "run_now_co2e_g": 5.0}),
                   finished=2000.0)
        led.record(make_report("j4", "film", "sh020", 1, 4.0, frames=24, site=MARKET,
                               scheduling={"job_class": "batch", "shifted": False, "run_now_co2e_g": 1.0}),
                   finished=3000.0)
        led.record(make_report("x1", "other", "sh010", 1, 100.0), finished=1500.0)
        yield led


def test_ledger_is_a_real_sqlite_file_keyed_by_job(tmp_path, ledger):
    path = tmp_path / "ledger.sqlite"
    assert path.exists()
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT COUNT(*) FROM ledger_jobs").fetchone()[0] == 5
    ledger.record(make_report("j1", "film", "sh010", 1, 2.5), finished=1000.0)    # re-recorded: replaced
    assert raw.execute("SELECT COUNT(*), SUM(energy_wh) FROM ledger_jobs WHERE project='film'").fetchone() == \
        (4, pytest.approx(2.5 + 1.0 + 3.0 + 4.0))
    assert raw.execute("SELECT co2e_g_market FROM ledger_jobs WHERE job_id='j1'").fetchone()[0] is None
    raw.close()


def test_ledger_row_is_the_report_as_built(ledger):
    rep = make_report("j3", "film", "sh010", 2, 3.0, site=MARKET, measured=True, meter="nvml:0",
                      scheduling={"job_class": "batch", "shifted": True, "run_now_co2e_g": 5.0})
    # the fixture's report: frames and one attempt, totals the exact sums of them
    assert rep.energy.energy_wh == math.fsum([*(f.energy_wh for f in rep.per_frame),
                                              *(a.unattributed_wh for a in rep.attempts)]) == 3.0
    assert rep.energy.co2e_g_location == math.fsum(f.co2e_g_location for f in rep.per_frame)
    location, market = operational_g(MARKET, 3.0)
    assert rep.energy.co2e_g_location == pytest.approx(location)
    assert rep.energy.co2e_g_market == pytest.approx(market)
    assert rep.embodied_co2e_g == pytest.approx(embodied_g(MARKET, 10.0))
    assert rep.energy.measured and rep.energy.meter == "nvml:0"
    # the ledger stores the report's figures, re-priced nowhere, and gives the report back
    row = next(j for j in ledger.jobs("film") if j["job_id"] == "j3")
    assert row["energy_wh"] == rep.energy.energy_wh and row["co2e_g_location"] == rep.energy.co2e_g_location
    assert row["co2e_g_market"] == rep.energy.co2e_g_market and row["water_l"] == rep.water_l
    assert row["embodied_co2e_g"] == rep.embodied_co2e_g and row["facility_energy_wh"] == rep.facility_energy_wh
    assert row["job_class"] == "batch" and row["shifted"] == 1 and row["run_now_co2e_g"] == 5.0
    assert row["attempts"] == 1 and row["unattributed_wh"] == 0.0 and row["report_schema"] == rep.schema_version
    back = ledger.report("j3")
    assert isinstance(back, JobReport)
    assert back.to_dict() == {**rep.to_dict(), "finished": back.finished}


def test_summary_sums_by_shot_and_version(ledger):
    rows = {(r["shot"], r["version"]): r for r in ledger.summary("film")}
    assert set(rows) == {("sh010", 1), ("sh010", 2), ("sh020", 1)}
    v1 = rows[("sh010", 1)]
    assert v1["jobs"] == 2 and v1["jobs_completed"] == 1
    assert v1["energy_wh"] == pytest.approx(3.0)           # the failed run's energy counts
    assert v1["animatic_s"] == pytest.approx(2.0)          # only the completed run's 48 frames at 24 fps
    assert v1["market_missing"] == 2
    assert ledger.summary("film", since=1500.0)[0]["shot"] == "sh010" and len(ledger.summary("film", 1500.0)) == 2
    assert ledger.projects() == ["film", "other"]


def test_project_report_totals_and_kpis(ledger):
    rep = project_report(ledger, "film")
    t = rep["totals"]
    jobs = ledger.jobs("film")
    assert t["jobs"] == 4 and t["jobs_completed"] == 3 and t["jobs_failed"] == 1 and t["jobs_cancelled"] == 0
    assert t["energy_wh"] == pytest.approx(10.0)
    assert t["co2e_g_location"] == pytest.approx(math.fsum(j["co2e_g_location"] for j in jobs))
    assert t["co2e_g_market"] == pytest.approx(sum(j["co2e_g_market"] for j in jobs if j["co2e_g_market"] is not None))
    assert t["market_missing_jobs"] == 2
    assert t["water_l"] == pytest.approx((3.0 + 4.0) / 1000 * 0.5)       # IT x WUE, not PUE-scaled
    assert t["animatic_s"] == pytest.approx(2.0 + 2.0 + 1.0)
    assert t["kwh_per_animatic_s"] == pytest.approx(0.010 / 5.0)
    assert t["gco2e_per_animatic_s"] == pytest.approx((t["co2e_g_location"] + t["embodied_co2e_g"]) / 5.0)
    assert t["shot_versions"] == 3 and t["gco2e_per_shot_version"] == pytest.approx(
        (t["co2e_g_location"] + t["embodied_co2e_g"]) / 3)
    assert t["batch_jobs"] == 2 and t["batch_shifted"] == 1 and t["share_batch_shifted"] == 0.5
    j3, j4 = [j for j in jobs if j["job_id"] in ("j3", "j4")]
    assert t["saved_g_vs_submit"] == pytest.approx((5.0 - j3["co2e_g_location"]) + (1.0 - j4["co2e_g_location"]))
    assert t["measured_fraction"] == pytest.approx(0.3)
    assert project_report(ledger, "film", since=2500.0)["totals"]["jobs"] == 1


def test_terminal_table(ledger):
    text = format_table(project_report(ledger, "film"))
    assert "project film: 4 jobs (3 completed, 1 failed, 0 cancelled), 3 shot versions" in text
    assert re.search(r"sh010\s+1\s+2\s+3\s", text)
    assert "no factor for 2 of 4 jobs" in text and "n/a" in text
    assert "nvml:0 (measured)" in text and "cpu-time-model (estimated)" in text


class _Grab(HTMLParser):
    def __init__(self):
        super().__init__()
        self.kpis, self.bars, self._kpi = {}, [], None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "td" and "data-kpi" in a:
            self._kpi = a["data-kpi"]
        if tag == "rect" and "data-value" in a:
            self.bars.append((a["data-series"], a["data-label"], float(a["data-value"])))

    def handle_data(self, data):
        if self._kpi:
            self.kpis[self._kpi] = data
            self._kpi = None


def test_html_numbers_match_the_ledger(tmp_path, ledger):
    rep = project_report(ledger, "film")
    path = write_html(rep, tmp_path / "out" / "film.html")
    page = path.read_text()
    assert page.startswith("<!doctype html>") and page.count("<svg") == 3
    grab = _Grab()
    grab.feed(page)
    assert float(grab.kpis["energy_wh"]) == pytest.approx(math.fsum(j["energy_wh"] for j in ledger.jobs("film")))
    assert float(grab.kpis["co2e_g_location"]) == rep["totals"]["co2e_g_location"]
    assert float(grab.kpis["gco2e_per_animatic_s"]) == rep["totals"]["gco2e_per_animatic_s"]
    energy_bars = {label: v for series, label, v in grab.bars if series == "energy"}
    sql = {f"{r['shot']} v{r['version']:03d}": r for r in ledger.summary("film")}
    assert energy_bars == pytest.approx({k: r["energy_wh"] for k, r in sql.items()})
    lb = {label: v for series, label, v in grab.bars if series == "location-based"}
    mb = {label: v for series, label, v in grab.bars if series == "market-based"}
    assert lb == pytest.approx({k: r["co2e_g_location"] for k, r in sql.items()})
    assert "sh010 v001" not in mb and mb["sh020 v001"] == pytest.approx(sql["sh020 v001"]["co2e_g_market"])


def test_ledger_concurrent_writers(tmp_path):
    led = Ledger.for_data_dir(tmp_path)
    errors = []

    def write(n):
        try:
            for i in range(25):
                led.record(make_report(f"t{n}-{i}", "p", "s", 1, 0.5), finished=float(i))
        except Exception as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert project_report(led, "p")["totals"]["energy_wh"] == pytest.approx(4 * 25 * 0.5)
    led.close()


def test_project_savings_use_each_reports_counterfactual(tmp_path):
    """The saving the report priced from the same signal wins over the plan's
    run-now estimate; an unshifted batch job adds exactly nothing."""
    with Ledger.for_data_dir(tmp_path) as led:
        led.record(make_report("b1", "film", "sh1", 1, 1.0, scheduling={
            "job_class": "batch", "shifted": True, "run_now_co2e_g": 999.0, "saved_g_vs_submit": 12.5}))
        led.record(make_report("b2", "film", "sh1", 2, 1.0, scheduling={
            "job_class": "batch", "shifted": False, "run_now_co2e_g": 999.0, "saved_g_vs_submit": 0.0}))
        totals = project_report(led, "film")["totals"]
    assert totals["saved_g_vs_submit"] == 12.5 and totals["saved_jobs_known"] == 2


def test_project_report_carries_each_versions_temporal_score(tmp_path):
    """The latest completed job of a version gives its temporal figures; the
    HTML report draws one per-pair plot per version that has them."""
    import dataclasses

    from bridge.jobs.model import TemporalConsistency

    def scored(job_id, version, pairs):
        rep = make_report(job_id, "film", "sh010", version, 1.0, frames=len(pairs) + 1)
        return dataclasses.replace(rep, temporal=TemporalConsistency(
            computed=True, method="masked-warp-l1", gap1=sum(pairs) / len(pairs), trajectory=0.2, window=8,
            valid_fraction=0.9, pairs=tuple(pairs)))

    with Ledger.for_data_dir(tmp_path) as led:
        led.record(scored("a", 1, [0.5, 0.5]), finished=1.0)
        led.record(scored("b", 1, [0.1, 0.2, 0.3]), finished=2.0)          # the later job of v1 wins
        led.record(make_report("c", "film", "sh010", 2, 1.0), finished=3.0)  # no score: not computed
        rep = project_report(led, "film")
    by_version = {v["version"]: v for v in rep["versions"]}
    assert by_version[1]["temporal_gap1"] == pytest.approx(0.2) and by_version[1]["temporal_pairs"] == [0.1, 0.2, 0.3]
    assert by_version[2]["temporal_gap1"] is None and by_version[2]["temporal_pairs"] == []
    page = write_html(rep, tmp_path / "r.html").read_text()
    assert page.count("data-points=") == 1 and 'data-points="3"' in page
    assert "Temporal consistency, sh010 v001" in page
