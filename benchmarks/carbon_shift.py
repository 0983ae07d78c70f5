"""Carbon-aware time shifting on real 2020 grid traces (DESIGN sections 7, 9).

Replays the GB and FR carbon-intensity traces of 2020 from
``../shared/data/carbon-intensity/`` (real data, benchmark use only; never
copied into the project). Batch jobs of 0.5 h, 2 h and 4 h are submitted at
random times (fixed seed), each with 12 h of slack (deadline = submit + d +
12 h), drawing 1 kW while they run. Compared, in total gCO2e:

  (a) run at submit;
  (b) our planner with perfect forecasts (the trace itself);
  (c) our planner with a day-ahead forecast with 5% error (each trace
      interval x (1 + 0.05 N(0, 1)), fixed seed);
  (d) the oracle: the best start in hindsight, brute force over every minute
      from submit to deadline - d (it knows the exact duration, so it needs
      no safety margin; the planner keeps max(10 min, 20% of d) spare);
  (h) our planner with no forecast at all but the history forecaster's
      (:mod:`bridge.scheduling.history_forecast`): at each submit time it
      predicts [submit, deadline] from the trace's values realised before
      submit, nothing later (no peeking); where it cannot (the trace's first
      9 days) the chain falls back to the static table, as the bridge would.

Prints each one's reduction against (a) and (b), (c), (h) as a fraction of
(d)'s reduction, deadline misses (planned start + real duration after the
deadline, with real durations equal to and 1.2 x the estimate), the history
forecaster's realised and estimated RMSE, and the planning time for a 48 h
horizon x 5-min steps x 10 sites (p99).

Spatial shifting: two sites, GB and FR (PUE 1, one device each, the traces
on their common span), each job at home at one of them (half each) and free
to run at either (the planner's multi-site support: one PlanSite per site,
the home site preferred). Reports the reduction against running now at
home and the ratio to the two-site oracle (best site and start in
hindsight), with perfect forecasts and with history forecasts.

JSON keys beyond the old ones: ``history_vs_oracle_gb``/``_fr`` (mode (h)
per region), ``history_deadline_misses`` (every history-forecast plan,
single- and two-site), ``spatial_reduction_pct`` (two sites, history
forecasts: what a deployment without a forecast provider gets; the perfect
forecast figure is ``spatial_reduction_perfect_pct``),
``spatial_perfect_vs_oracle`` and ``spatial_history_vs_oracle``.

``--method NAME`` picks the history forecaster's method (default: its
default); ``--methods`` also runs mode (h) with every method it has and
prints their RMSE and planner/oracle per region (about 7 minutes more).

Ends with one JSON line (DESIGN section 9). Without the data folder it says
so and prints a JSON line with an ``error`` key (exit 0).
"""

from __future__ import annotations

import argparse
import bisect
import csv
import json
import logging
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

# The forecaster solves thousands of tiny least-squares systems: BLAS threads only contend for the 2 cores.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _report import table  # noqa: E402  benchmarks/_report.py (benchmarks/ is on sys.path)

from bridge.energy.signals import FallbackChain, IntensityPoint, SignalError, StaticTable  # noqa: E402
from bridge.scheduling.carbon_planner import PlanJob, PlanSite, default_margin, plan  # noqa: E402
from bridge.scheduling.forecast import StepForecast, build_step_forecast  # noqa: E402
from bridge.scheduling.history_forecast import (  # noqa: E402
    DEFAULT_METHOD,
    METHODS,
    HistoryForecaster,
    HistoryForecastSignal,
)

UTC = UTC
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "carbon-intensity"
REGIONS = {"gb": "gb_2020.csv", "fr": "fr_2020.csv"}
DURATIONS_H = (0.5, 2.0, 4.0)
SLACK = timedelta(hours=12)
JOBS_PER_DURATION = 1000         # per region
POWER_KW = 1.0
FORECAST_ERROR = 0.05
SEED = 20200101
TIMING_RUNS = 2000
SPATIAL_JOBS_PER_DURATION = 300  # per home site
STEP = timedelta(minutes=5)


def load(path: Path, noise: float = 0.0, rng: np.random.Generator | None = None) -> list[IntensityPoint]:
    with path.open(newline="") as fh:
        rows = [(datetime.fromisoformat(r["Time"]).replace(tzinfo=UTC), float(r["Carbon Intensity"]))
                for r in csv.DictReader(fh) if r.get("Carbon Intensity")]
    rows.sort()
    out = []
    for k, (t, v) in enumerate(rows):
        end = rows[k + 1][0] if k + 1 < len(rows) else t + timedelta(minutes=30)
        if noise:
            v = max(0.0, v * (1.0 + noise * rng.standard_normal()))
        out.append(IntensityPoint(t, end, v, f"{path.name}" + (" + 5% noise" if noise else ""),
                                  forecast=bool(noise), provider="trace"))
    return out


class TraceSignal:
    """The trace as a carbon signal, like :class:`~bridge.energy.signals.CsvTrace`
    (kept in memory: the replay asks it thousands of times): ``intensity`` is
    the realised value; ``forecast`` answers with the trace itself, which is
    where the history forecaster reads the history before a submit time."""

    name = "trace"

    def __init__(self, points: dict[str, list[IntensityPoint]]):
        self.points = {r.upper(): p for r, p in points.items()}
        self.starts = {r: [q.start for q in p] for r, p in self.points.items()}
        self.ends = {r: [q.end for q in p] for r, p in self.points.items()}

    def _region(self, region: str) -> str:
        if region.upper() not in self.points:
            raise SignalError(self.name, f"no trace for {region!r}")
        return region.upper()

    def intensity(self, region: str, at: datetime | None = None) -> IntensityPoint:
        r = self._region(region)
        at = at or datetime.now(UTC)
        i = bisect.bisect_right(self.starts[r], at) - 1
        if i < 0 or at >= self.ends[r][i]:
            raise SignalError(self.name, f"trace does not cover {at.isoformat()}")
        return self.points[r][i]

    def forecast(self, region: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        r = self._region(region)
        lo, hi = bisect.bisect_right(self.ends[r], start), bisect.bisect_left(self.starts[r], end)
        if hi <= lo:
            raise SignalError(self.name, f"trace has no values between {start.isoformat()} and {end.isoformat()}")
        return self.points[r][lo:hi]


class HistoryMode:
    """Forecasts the planner sees in mode (h): the history forecaster over
    the trace, falling back to the static table, as a bridge configured
    with ``FallbackChain([HistoryForecastSignal(trace), StaticTable()])``."""

    def __init__(self, trace: TraceSignal, method: str = DEFAULT_METHOD):
        self.hist = HistoryForecastSignal(trace, HistoryForecaster(method))
        self.chain = FallbackChain([self.hist, StaticTable()])
        self.static = {r: StaticTable().lookup(r).g_per_kwh for r in trace.points}
        self.fallbacks = 0
        self.sq_err = {r: 0.0 for r in trace.points}     # realised, per 30-min cell
        self.sq_est = {r: 0.0 for r in trace.points}     # the forecaster's own estimate
        self.cells = {r: 0 for r in trace.points}

    def site_forecast(self, region: str, submit: datetime, deadline: datetime, truth: StepForecast):
        r = region.upper()
        pts = self.chain.forecast(r, submit, deadline)
        fc = build_step_forecast(pts, submit, deadline, fallback_g_per_kwh=self.static[r],
                                 fallback_source="static table", step=STEP)
        if pts[0].provider == "static":
            self.fallbacks += 1
            return fc
        hf = self.hist.last(r)
        assert hf is not None
        starts = hf.start_s + hf.step_s * np.arange(hf.values.size)
        real = truth.window_mean(starts, hf.step_s)
        self.sq_err[r] += float(np.sum((hf.values - real) ** 2))
        self.sq_est[r] += float(np.sum(hf.rmse ** 2))
        self.cells[r] += hf.values.size
        return fc

    def rmse(self, region: str) -> tuple[float, float]:
        r = region.upper()
        n = max(self.cells[r], 1)
        return (self.sq_err[r] / n) ** 0.5, (self.sq_est[r] / n) ** 0.5


def ratio(red: float, oracle: float) -> float:
    return red / oracle if oracle > 0 else float("nan")


Sums = dict[tuple[str, float], dict[str, float]]    # (region, duration h) -> strategy -> gCO2e


def run_history(jobs: list[dict], truth: dict, mode: HistoryMode, misses: dict) -> Sums:
    """Mode (h) for every job: planner on history forecasts, priced on the truth."""
    sums: Sums = {}
    for job in jobs:
        region, d, submit, deadline, kwh = job["region"], job["d"], job["submit"], job["deadline"], job["kwh"]
        fc = mode.site_forecast(region, submit, deadline, truth[region])
        site = PlanSite(region, region.upper(), 1.0, 1, fc)
        dec = plan(PlanJob("bench-h", d, kwh * 1000.0, deadline=deadline), [site], submit)
        st = dec.planned_start
        misses["exact"] += st + d > deadline
        misses["x1.2"] += st + d * 1.2 > deadline
        cost = kwh * float(truth[region].window_mean([st.timestamp()], d.total_seconds())[0])
        sums.setdefault((region, job["d_h"]), {"h": 0.0})["h"] += cost
    return sums


def spatial(pts: dict[str, list[IntensityPoint]], trace: TraceSignal, method: str) -> dict:
    """Two sites (GB, FR) on their common span; each job is at home at one
    of them and free to run at either."""
    a = max(p[0].start for p in pts.values())
    b = min(p[-1].end for p in pts.values())
    grids = {r: build_step_forecast(p, a, b, fallback_g_per_kwh=float(np.mean([q.g_per_kwh for q in p])),
                                    fallback_source="trace mean", step=STEP) for r, p in pts.items()}
    names = list(REGIONS)
    rng = np.random.default_rng(SEED + 2)
    hmode = HistoryMode(trace, method)
    lo, hi = (a + timedelta(days=1)).timestamp(), (b - timedelta(days=1)).timestamp()
    rows, tot = [], {k: 0.0 for k in ("a", "b", "h", "d")}
    misses = {"b": 0, "h": 0}
    moved = {"b": 0, "h": 0}
    n_jobs = 0
    for home in names:
        other = [n for n in names if n != home]
        for d_h in DURATIONS_H:
            d = timedelta(hours=d_h)
            d_s, kwh = d.total_seconds(), POWER_KW * d_h
            sums = {k: 0.0 for k in tot}
            for _ in range(SPATIAL_JOBS_PER_DURATION):
                submit = datetime.fromtimestamp(float(rng.integers(int(lo / 60), int(hi / 60)) * 60), UTC)
                deadline = submit + d + SLACK
                job = PlanJob("bench-s", d, kwh * 1000.0, deadline=deadline, allowed_sites=(home, *other))
                sums["a"] += kwh * float(grids[home].window_mean([submit.timestamp()], d_s)[0])
                for key in ("b", "h"):
                    sites = [PlanSite(r, r.upper(), 1.0, 1, grids[r] if key == "b" else
                                      hmode.site_forecast(r, submit, deadline, grids[r])) for r in names]
                    dec = plan(job, sites, submit)
                    st = dec.planned_start
                    misses[key] += (st + d > deadline) + (st + d * 1.2 > deadline)
                    moved[key] += dec.site != home
                    sums[key] += kwh * float(grids[dec.site].window_mean([st.timestamp()], d_s)[0])
                starts = submit.timestamp() + 60.0 * np.arange(int((deadline - d - submit).total_seconds() // 60) + 1)
                sums["d"] += kwh * min(float(grids[r].window_mean(starts, d_s).min()) for r in names)
                n_jobs += 1
            for k in tot:
                tot[k] += sums[k]
            red = {k: (sums["a"] - sums[k]) / sums["a"] * 100 for k in ("b", "h", "d")}
            rows.append((home, f"{d_h:g} h", SPATIAL_JOBS_PER_DURATION, f"{sums['a'] / 1000:.1f}",
                         f"{red['b']:.1f}%", f"{red['h']:.1f}%", f"{red['d']:.1f}%",
                         f"{ratio(red['b'], red['d']):.3f}", f"{ratio(red['h'], red['d']):.3f}"))
    red = {k: (tot["a"] - tot[k]) / tot["a"] * 100 for k in ("b", "h", "d")}
    return {"rows": rows, "tot": tot, "red": red, "misses": misses, "moved": moved, "jobs": n_jobs,
            "fallbacks": hmode.fallbacks, "span": (a, b)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", action="store_true",
                    help="also run mode (h) with every history-forecast method and print their figures")
    ap.add_argument("--method", default=DEFAULT_METHOD, choices=sorted(METHODS),
                    help=f"history-forecast method for mode (h) and the two-site run (default {DEFAULT_METHOD})")
    args = ap.parse_args(argv)
    if not all((DATA / f).is_file() for f in REGIONS.values()):
        msg = f"carbon-intensity traces not found in {DATA} (need {', '.join(REGIONS.values())}); nothing measured"
        print(msg)
        print(json.dumps({"error": msg}))
        return 0
    # the fallback chain logs every provider that failed (here: the history forecaster in the first 9 days)
    logging.getLogger("bridge.energy.signals").setLevel(logging.ERROR)
    t_begin = time.perf_counter()
    rng = np.random.default_rng(SEED)
    step = STEP
    truth, noisy, spans, raw = {}, {}, {}, {}
    for region, fname in REGIONS.items():
        pts = load(DATA / fname)
        raw[region] = pts
        fpts = load(DATA / fname, FORECAST_ERROR, rng)
        a, b = pts[0].start, pts[-1].end
        spans[region] = (a, b)
        truth[region] = build_step_forecast(pts, a, b, fallback_g_per_kwh=float(np.mean([p.g_per_kwh for p in pts])),
                                            fallback_source="trace mean", step=step)
        noisy[region] = build_step_forecast(fpts, a, b, fallback_g_per_kwh=truth[region].fallback_g_per_kwh,
                                            fallback_source="trace mean", step=step)
    trace = TraceSignal(raw)

    totals = {k: 0.0 for k in ("a", "b", "c", "d", "d_margin")}
    by_key: Sums = {}
    jobs: list[dict] = []
    misses = {"exact": 0, "x1.2": 0}
    planned = 0
    for region in REGIONS:
        a, b = spans[region]
        lo = (a + timedelta(days=1)).timestamp()
        hi = (b - timedelta(days=1)).timestamp()
        t_true = truth[region]
        for d_h in DURATIONS_H:
            d = timedelta(hours=d_h)
            d_s = d.total_seconds()
            kwh = POWER_KW * d_h
            sums = {k: 0.0 for k in totals}
            for _ in range(JOBS_PER_DURATION):
                submit = datetime.fromtimestamp(float(rng.integers(int(lo / 60), int(hi / 60)) * 60), UTC)
                deadline = submit + d + SLACK
                jobs.append({"region": region, "d_h": d_h, "d": d, "submit": submit, "deadline": deadline, "kwh": kwh})
                def cost(t0, kwh=kwh, t_true=t_true, d_s=d_s):
                    return kwh * float(t_true.window_mean([t0], d_s)[0])
                sums["a"] += cost(submit.timestamp())
                for key, fc in (("b", t_true), ("c", noisy[region])):
                    site = PlanSite(region, region.upper(), 1.0, 1, fc)
                    dec = plan(PlanJob("bench", d, kwh * 1000.0, deadline=deadline), [site], submit)
                    planned += 1
                    st = dec.planned_start
                    assert st >= submit
                    misses["exact"] += st + d > deadline
                    misses["x1.2"] += st + d * 1.2 > deadline
                    sums[key] += cost(st.timestamp())
                # oracle: every minute from submit to deadline - d, in hindsight
                starts = submit.timestamp() + 60.0 * np.arange(int((deadline - d - submit).total_seconds() // 60) + 1)
                means = t_true.window_mean(starts, d_s)
                sums["d"] += kwh * float(means.min())
                n_margin = int((deadline - d - default_margin(d) - submit).total_seconds() // 60) + 1
                sums["d_margin"] += kwh * float(means[:n_margin].min())
            for k in totals:
                totals[k] += sums[k]
            by_key[(region, d_h)] = sums
    replay_s = time.perf_counter() - t_begin

    # (h) history forecasts: the same jobs, the planner sees only predictions from data before each submit.
    t_hist = time.perf_counter()
    hist_misses = {"exact": 0, "x1.2": 0}
    hmode = HistoryMode(trace, args.method)
    hsums = run_history(jobs, truth, hmode, hist_misses)
    hist_s = time.perf_counter() - t_hist
    per_row = []
    region_tot: dict[str, dict[str, float]] = {r: {k: 0.0 for k in ("a", "b", "c", "d", "h")} for r in REGIONS}
    for region in REGIONS:
        for d_h in DURATIONS_H:
            key = (region, d_h)
            sums = {**by_key[key], "h": hsums[key]["h"]}
            for k in region_tot[region]:
                region_tot[region][k] += sums[k]
            red = {k: (sums["a"] - sums[k]) / sums["a"] * 100 for k in ("b", "c", "d", "h")}
            per_row.append((region, f"{d_h:g} h", JOBS_PER_DURATION, f"{sums['a'] / 1000:.1f}",
                            f"{red['b']:.1f}%", f"{red['c']:.1f}%", f"{red['h']:.1f}%", f"{red['d']:.1f}%",
                            f"{ratio(red['b'], red['d']):.3f}", f"{ratio(red['c'], red['d']):.3f}",
                            f"{ratio(red['h'], red['d']):.3f}"))
    totals["h"] = sum(v["h"] for v in hsums.values())
    hist_vs = {}
    for region, t in region_tot.items():
        rr = {k: (t["a"] - t[k]) / t["a"] * 100 for k in ("d", "h")}
        hist_vs[region] = ratio(rr["h"], rr["d"])

    # --methods: every history-forecast method on the same jobs
    method_rows = []
    if args.methods:
        for name in METHODS:
            m_misses = {"exact": 0, "x1.2": 0}
            m_mode = HistoryMode(trace, name)
            m_sums = run_history(jobs, truth, m_mode, m_misses)
            row: list[str] = [name]
            for region in REGIONS:
                t = region_tot[region]
                h = sum(m_sums[(region, d_h)]["h"] for d_h in DURATIONS_H)
                real, est = m_mode.rmse(region)
                row += [f"{real:.1f} / {est:.1f}",
                        f"{ratio((t['a'] - h) / t['a'], (t['a'] - t['d']) / t['a']):.3f}"]
            row.append(str(m_misses["exact"] + m_misses["x1.2"]))
            method_rows.append(tuple(row))

    # Two sites: spatial shifting.
    t_sp = time.perf_counter()
    sp = spatial(raw, trace, args.method)
    spatial_s = time.perf_counter() - t_sp

    # Planning time: 48 h horizon x 5-min steps x 10 sites, from real trace slices.
    tr = np.random.default_rng(SEED + 1)
    now = datetime(2020, 6, 1, 9, 2, tzinfo=UTC)
    sites = []
    for k in range(10):
        region = ("gb", "fr")[k % 2]
        src = truth[region]
        off = int(tr.integers(0, src.n - 2 * 576))
        vals = src.values[off:off + 576]
        pts = [IntensityPoint(now + i * step, now + (i + 1) * step, float(v), "slice", forecast=True)
               for i, v in enumerate(vals)]
        f = build_step_forecast(pts, now, now + timedelta(hours=48), fallback_g_per_kwh=200.0)
        busy = [(now + timedelta(minutes=int(m)), now + timedelta(minutes=int(m) + 120))
                for m in tr.integers(0, 48 * 60, 20)]
        sites.append(PlanSite(f"site{k}", region.upper(), 1.1 + 0.02 * k, 4, f, busy=busy))
    job = PlanJob("timing", timedelta(hours=2), 2000.0, deadline=now + timedelta(hours=48))
    dec = plan(job, sites, now)
    assert dec.planned_start + job.duration <= job.deadline
    times = []
    for _ in range(TIMING_RUNS):
        t = time.perf_counter()
        plan(job, sites, now)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    p50, p99 = statistics.median(times), times[int(0.99 * len(times)) - 1]
    ijob = PlanJob("i", timedelta(minutes=10), 20.0, job_class="interactive")
    itimes = []
    for _ in range(TIMING_RUNS):
        t = time.perf_counter()
        plan(ijob, sites, now)
        itimes.append((time.perf_counter() - t) * 1000)
    itimes.sort()
    ip99 = itimes[int(0.99 * len(itimes)) - 1]
    btimes = []
    raw_pts = [[IntensityPoint(now + i * step, now + (i + 1) * step, float(v), "slice", forecast=True)
                for i, v in enumerate(s.forecast.values)] for s in sites]
    for _ in range(50):
        t = time.perf_counter()
        for r in raw_pts:
            build_step_forecast(r, now, now + timedelta(hours=48), fallback_g_per_kwh=200.0)
        btimes.append((time.perf_counter() - t) * 1000)
    btimes.sort()

    red = {k: (totals["a"] - totals[k]) / totals["a"] * 100 for k in ("b", "c", "d", "d_margin", "h")}
    print(f"Carbon-aware shifting on real 2020 traces ({DATA}): {planned // 2} jobs, slack 12 h, "
          f"{POWER_KW:g} kW, forecast error {FORECAST_ERROR:.0%}, history forecast {args.method!r}\n")
    print(table(per_row, ("region", "d", "jobs", "run now kg", "(b) perfect", "(c) day-ahead", "(h) history",
                          "(d) oracle", "(b)/(d)", "(c)/(d)", "(h)/(d)")))
    print()
    print(table([
        ("(a) run at submit", f"{totals['a'] / 1000:.1f}", "-", "-"),
        ("(b) planner, perfect forecast", f"{totals['b'] / 1000:.1f}", f"{red['b']:.1f}%",
         f"{red['b'] / red['d']:.3f}"),
        ("(c) planner, day-ahead 5% error", f"{totals['c'] / 1000:.1f}", f"{red['c']:.1f}%",
         f"{red['c'] / red['d']:.3f}"),
        (f"(h) planner, history forecast ({args.method})", f"{totals['h'] / 1000:.1f}", f"{red['h']:.1f}%",
         f"{red['h'] / red['d']:.3f}"),
        ("(d) oracle, full slack", f"{totals['d'] / 1000:.1f}", f"{red['d']:.1f}%", "1.000"),
        ("    oracle within the margin", f"{totals['d_margin'] / 1000:.1f}", f"{red['d_margin']:.1f}%",
         f"{red['d_margin'] / red['d']:.3f}"),
    ], ("strategy", "kgCO2e", "vs (a)", "of oracle")))
    print()
    print(f"deadline misses: {misses['exact']} with exact durations, {misses['x1.2']} with real durations "
          f"1.2 x the estimate ({planned} planned runs); history forecasts: {hist_misses['exact']} and "
          f"{hist_misses['x1.2']} ({len(jobs)} planned runs)")
    print("history forecast over [submit, deadline], per 30-min cell: "
          + "; ".join(f"{r} RMSE {hmode.rmse(r)[0]:.1f} g/kWh realised, {hmode.rmse(r)[1]:.1f} estimated"
                      for r in REGIONS)
          + f"; {hmode.fallbacks} submits fell back to the static table (under 9 days of history); "
            f"{1000 * hist_s / max(len(jobs), 1):.1f} ms per forecast + plan")
    if method_rows:
        print()
        print("history-forecast methods, mode (h) on the same jobs (RMSE realised / estimated, g/kWh):")
        print(table(method_rows, ("method", "gb RMSE", "gb (h)/(d)", "fr RMSE", "fr (h)/(d)", "misses")))
    print()
    a0, b0 = sp["span"]
    print(f"Two sites, gb and fr ({a0:%Y-%m-%d} .. {b0:%Y-%m-%d}, PUE 1, one device each): {sp['jobs']} jobs, "
          f"half at home at each, free to run at either; vs running now at home")
    print(table(sp["rows"], ("home", "d", "jobs", "run now kg", "perfect", "history", "oracle",
                             "perfect/oracle", "history/oracle")))
    sr = sp["red"]
    print(f"total: perfect {sr['b']:.1f}% ({ratio(sr['b'], sr['d']):.3f} of oracle), history {sr['h']:.1f}% "
          f"({ratio(sr['h'], sr['d']):.3f}), oracle {sr['d']:.1f}%; moved to the other site: perfect "
          f"{sp['moved']['b']}, history {sp['moved']['h']}; deadline misses (exact + 1.2 x): perfect "
          f"{sp['misses']['b']}, history {sp['misses']['h']}; {sp['fallbacks']} site forecasts fell back to static")
    print()
    print(f"planning, 48 h x 5-min steps x 10 sites, 20 planned jobs per site: p50 {p50:.2f} ms, p99 {p99:.2f} ms "
          f"(target < 10 ms); interactive p99 {ip99:.3f} ms; building 10 forecast grids from points p50 "
          f"{statistics.median(btimes):.1f} ms")
    print(f"replay took {replay_s:.1f} s, history mode {hist_s:.1f} s, two sites {spatial_s:.1f} s, "
          f"total {time.perf_counter() - t_begin:.1f} s")
    print(json.dumps({
        "reduction_run_now_pct": round(red["c"], 2),
        "reduction_perfect_pct": round(red["b"], 2),
        "reduction_oracle_pct": round(red["d"], 2),
        "perfect_vs_oracle": round(red["b"] / red["d"], 4),
        "forecast_vs_oracle": round(red["c"] / red["d"], 4),
        "deadline_misses": misses["exact"] + misses["x1.2"],
        "plan_p99_ms": round(p99, 3),
        "plan_p50_ms": round(p50, 3),
        "interactive_p99_ms": round(ip99, 4),
        "jobs": planned // 2,
        "reduction_history_pct": round(red["h"], 2),
        "history_vs_oracle": round(red["h"] / red["d"], 4),
        "history_vs_oracle_gb": round(hist_vs["gb"], 4),
        "history_vs_oracle_fr": round(hist_vs["fr"], 4),
        "history_deadline_misses": hist_misses["exact"] + hist_misses["x1.2"] + sp["misses"]["h"],
        "history_rmse_gb": round(hmode.rmse("gb")[0], 2),
        "history_rmse_fr": round(hmode.rmse("fr")[0], 2),
        "spatial_reduction_pct": round(sr["h"], 2),
        "spatial_reduction_perfect_pct": round(sr["b"], 2),
        "spatial_reduction_oracle_pct": round(sr["d"], 2),
        "spatial_perfect_vs_oracle": round(ratio(sr["b"], sr["d"]), 4),
        "spatial_history_vs_oracle": round(ratio(sr["h"], sr["d"]), 4),
        "spatial_deadline_misses": sp["misses"]["b"],
        "spatial_jobs": sp["jobs"],
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
