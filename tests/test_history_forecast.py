"""The history forecaster (bridge/scheduling/history_forecast.py) on traces
generated here (a daily sine, a weekend dip, noise), never on the shared
real traces: it never reads a value at or after the submit time, recovers a
known periodic pattern, estimates its own error close to the error it then
makes, refuses too little (or stale) history with the amounts in the
message so a FallbackChain moves on, and marks what it made."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from bridge.energy.signals import CsvTrace, FallbackChain, IntensityPoint, SignalError, StaticTable
from bridge.scheduling.carbon_planner import PlanJob, PlanSite, plan
from bridge.scheduling.forecast import build_step_forecast
from bridge.scheduling.history_forecast import (
    METHODS,
    HistoryForecaster,
    HistoryForecastSignal,
    history_forecast_note,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)          # a Monday
STEP = timedelta(minutes=30)
SIGMA = 3.0                                    # g/kWh of white noise on the pattern
ZONE = "FR"                                    # the static table knows it: the fallback test needs that


def pattern(t: datetime) -> float:
    """200 g/kWh, +-60 over the day (peak 15:00, trough 03:00 UTC), 40 lower at weekends."""
    hours = (t - T0).total_seconds() / 3600
    weekend = int(hours // 24) % 7 >= 5
    return 200.0 + 60.0 * math.sin(2 * math.pi * (hours % 24 - 9) / 24) - (40.0 if weekend else 0.0)


def synthetic(days: float, *, sigma: float = SIGMA, rho: float = 0.0, seed: int = 1,
              start: datetime = T0) -> list[tuple[datetime, float]]:
    """(start, value) per 30 min: the pattern plus noise; ``rho`` makes the
    noise an AR(1) process (persistent anomalies, like a windy day)."""
    rng = np.random.default_rng(seed)
    e, rows = 0.0, []
    for k in range(int(days * 48)):
        t = start + k * STEP
        e = rho * e + math.sqrt(1 - rho * rho) * rng.standard_normal()
        rows.append((t, pattern(t) + sigma * e))
    return rows


def as_points(rows: list[tuple[datetime, float]], step: timedelta = STEP) -> list[IntensityPoint]:
    return [IntensityPoint(t, t + step, v, "synthetic", forecast=True, provider="test") for t, v in rows]


def write_csv(path, rows: list[tuple[datetime, float]]):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["Datetime (UTC),Zone Id,Carbon Intensity gCO₂eq/kWh (direct)"]
    lines += [f"{t:%Y-%m-%d %H:%M:%S},{ZONE},{v!r}" for t, v in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class EverythingSignal:
    """Answers every forecast call with the whole trace, future included,
    and records the windows asked for: the wrapper must not rely on the
    wrapped signal to hide the future."""

    name = "everything"

    def __init__(self, rows):
        self.points = as_points(rows)
        self.asked: list[tuple[datetime, datetime]] = []

    def intensity(self, region, at=None):
        return next(p for p in self.points if p.start <= at < p.end)

    def forecast(self, region, start, end):
        self.asked.append((start, end))
        return list(self.points)


def _key(points):
    return [(p.start, p.end, p.g_per_kwh, p.source, p.forecast) for p in points]


# ------------------------------------------------------------- no peeking
def test_changing_every_value_after_submit_leaves_the_forecast_unchanged(tmp_path):
    rows = synthetic(40)
    submit = T0 + timedelta(days=30, hours=7, minutes=13)    # inside a 30-min interval: not realised yet either
    end = submit + timedelta(hours=16)
    changed = [(t, v if t + STEP <= submit else v * 7 + 900) for t, v in rows]
    assert sum(a != b for (_, a), (_, b) in zip(rows, changed)) == len(rows) - 30 * 48 - 14

    # through CsvTrace (its forecast() answers with the history)
    a = HistoryForecastSignal(CsvTrace(write_csv(tmp_path / "a" / "trace.csv", rows)))
    b = HistoryForecastSignal(CsvTrace(write_csv(tmp_path / "b" / "trace.csv", changed)))
    fa, fb = a.forecast(ZONE, submit, end), b.forecast(ZONE, submit, end)
    assert fa and _key(fa) == _key(fb)

    # through a signal that hands over the future too
    sa, sb = EverythingSignal(rows), EverythingSignal(changed)
    ea = HistoryForecastSignal(sa).forecast(ZONE, submit, end)
    eb = HistoryForecastSignal(sb).forecast(ZONE, submit, end)
    assert [p.g_per_kwh for p in ea] == [p.g_per_kwh for p in eb] == [p.g_per_kwh for p in fa]
    assert all(e <= submit for _, e in sa.asked)             # it only ever asks for history

    # the forecaster itself, given every point
    f = HistoryForecaster()
    pa = f.predict(as_points(rows), submit, end)
    pb = HistoryForecaster().predict(as_points(changed), submit, end)
    assert np.array_equal(pa.values, pb.values) and np.array_equal(pa.rmse, pb.rmse)
    assert pa.history_end == T0 + timedelta(days=30, hours=7)

    # and the test can tell: one value before submit changed does move it
    nudged = list(rows)
    t, v = nudged[30 * 48 + 13]                                # 06:30-07:00, the last realised interval
    nudged[30 * 48 + 13] = (t, v + 50)
    pc = HistoryForecaster().predict(as_points(nudged), submit, end)
    assert not np.array_equal(pa.values, pc.values)


# ------------------------------------------------- accuracy on a known trace
def test_a_periodic_trace_is_predicted_within_the_noise():
    """Daily sine + weekend dip + white noise (sigma 3 g/kWh) on 200 +- 60.

    Tolerance: the pattern is fully predictable from its own history, so
    the only error left is the noise carried in by the terms the forecast
    is built from (yesterday, last week, the profiles each carry sigma or
    sigma/sqrt(k) of it): about one sigma. We allow 2 sigma (6 g/kWh RMSE,
    1/20 of the daily swing) against the noise-free pattern, at every
    submit, weekends and the Monday after them included; the flat last
    value is off by over 7 times that bound. The trough of each forecast must fall
    within an hour of the pattern's (03:00, or Sunday night's end before a
    Monday)."""
    pts = as_points(synthetic(60))
    f = HistoryForecaster()
    flat = []
    for day in range(30, 58, 3):
        submit = T0 + timedelta(days=day, hours=7, minutes=13)
        fc = f.predict(pts, submit, submit + timedelta(hours=24))
        assert fc.values.size == 49                          # the current cell and 24 h after it
        cells = [datetime.fromtimestamp(fc.start_s + j * fc.step_s, UTC) for j in range(fc.values.size)]
        truth = np.array([pattern(c) for c in cells])
        rmse = float(np.sqrt(np.mean((fc.values - truth) ** 2)))
        assert rmse <= 2 * SIGMA, (submit, rmse)
        trough, true_trough = cells[int(np.argmin(fc.values))], cells[int(np.argmin(truth))]
        assert abs(trough - true_trough) <= timedelta(hours=1), (submit, trough, true_trough)
        # the error estimate is about the noise, not the swing
        assert SIGMA * 0.8 <= fc.rmse_g_per_kwh <= 3 * SIGMA
        flat.append(float(np.sqrt(np.mean((pts[int((fc.start_s - T0.timestamp()) // 1800) - 1].g_per_kwh
                                           - truth) ** 2))))
    assert min(flat) > 7 * 2 * SIGMA


def test_every_method_forecasts_the_whole_window():
    pts = as_points(synthetic(30))
    submit = T0 + timedelta(days=25, hours=20)
    for name in METHODS:
        fc = HistoryForecaster(name).predict(pts, submit, submit + timedelta(hours=30))
        assert fc.method == name
        assert fc.values.size == 60 and np.all(np.isfinite(fc.values)) and np.all(fc.values >= 0)
        assert np.all(np.isfinite(fc.rmse)) and np.all(fc.rmse > 0)


def test_finer_history_is_averaged_onto_the_grid():
    """15-min points whose pairs average to the 30-min values give the same
    forecast as the 30-min trace (the time-weighted mean per cell)."""
    rows = synthetic(20)
    quarters = []
    for t, v in rows:
        quarters += [(t, v - 5.0), (t + timedelta(minutes=15), v + 5.0)]
    submit = T0 + timedelta(days=15, hours=3)
    a = HistoryForecaster().predict(as_points(rows), submit, submit + timedelta(hours=12))
    b = HistoryForecaster().predict(as_points(quarters, timedelta(minutes=15)), submit, submit + timedelta(hours=12))
    assert np.allclose(a.values, b.values, atol=1e-6)


# ------------------------------------------------------ the error estimate
def test_error_estimate_is_close_to_the_error_on_the_days_after():
    """Persistent noise (AR(1), rho 0.97 per 30 min, sigma 15 g/kWh: windy
    spells of a day or so), so the error grows with the lead. At 18 submit
    times the forecaster's RMSE estimate (measured on the 7 days before
    each submit, out of sample) is compared with the RMSE it then makes on
    the 24 h after (data it never saw). Tolerance: both are RMSEs of errors
    correlated over ~16 h, from ~7 and ~18 days of them, so each has a
    sampling error of 10-15%; we allow a ratio within 0.75..1.33 overall,
    and the short leads must be estimated (and be) better than the long."""
    rows = synthetic(70, sigma=15.0, rho=0.97, seed=3)
    pts = as_points(rows)
    values = np.array([v for _, v in rows])
    f = HistoryForecaster()
    sq_real, sq_est, short_real, long_real, short_est, long_est = [], [], [], [], [], []
    for day in range(30, 66, 2):
        submit = T0 + timedelta(days=day, hours=5)
        fc = f.predict(pts, submit, submit + timedelta(hours=24))
        k0 = int((fc.start_s - T0.timestamp()) // 1800)
        err = fc.values - values[k0:k0 + fc.values.size]
        sq_real.append(np.mean(err ** 2))
        sq_est.append(np.mean(fc.rmse ** 2))
        short_real.append(np.mean(err[:6] ** 2))
        long_real.append(np.mean(err[24:] ** 2))
        short_est.append(np.mean(fc.rmse[:6] ** 2))
        long_est.append(np.mean(fc.rmse[24:] ** 2))
    real, est = math.sqrt(np.mean(sq_real)), math.sqrt(np.mean(sq_est))
    assert 0.75 <= est / real <= 1.33, (est, real)
    assert np.mean(short_est) < np.mean(long_est) and np.mean(short_real) < np.mean(long_real)
    assert 0.6 <= math.sqrt(np.mean(short_est) / np.mean(short_real)) <= 1.6


# -------------------------------------------------------------- bad input
def test_too_little_history_says_how_much_is_needed_and_falls_back(tmp_path):
    rows = synthetic(5)
    hist = HistoryForecastSignal(CsvTrace(write_csv(tmp_path / "trace.csv", rows)))
    submit = T0 + timedelta(days=5)
    with pytest.raises(SignalError) as err:
        hist.forecast(ZONE, submit, submit + timedelta(hours=12))
    msg = str(err.value)
    assert err.value.provider == "history:csv:trace.csv"
    assert "needs at least 9 days of realised intensity before 2024-01-06T00:00Z" in msg
    assert "7 for the same-time-last-week term + 2 to fit the weights" in msg
    assert "got 5.0 days (2024-01-01T00:00Z .. 2024-01-06T00:00Z)" in msg

    chain = FallbackChain([hist, StaticTable()])
    pts = chain.forecast(ZONE, submit, submit + timedelta(hours=12))
    assert [p.provider for p in pts] == ["static"]
    assert "history:csv:trace.csv" in pts[0].fallback[0] and "needs at least 9 days" in pts[0].fallback[0]


def test_stale_history_and_empty_windows_are_refused(tmp_path):
    hist = HistoryForecastSignal(CsvTrace(write_csv(tmp_path / "trace.csv", synthetic(20))))
    late = T0 + timedelta(days=23)
    with pytest.raises(SignalError, match=r"latest realised value ends 2024-01-21T00:00Z, 72\.0 h before "
                                          r"2024-01-24T00:00Z; it needs data within the last 24 h"):
        hist.forecast(ZONE, late, late + timedelta(hours=6))
    t = T0 + timedelta(days=15)
    with pytest.raises(SignalError, match="empty window"):
        hist.forecast(ZONE, t, t)
    with pytest.raises(SignalError, match="no history from csv:trace.csv before"):
        hist.forecast(ZONE, T0, T0 + timedelta(hours=6))        # nothing before the trace starts


def test_bad_history_values_are_an_error():
    pts = as_points(synthetic(12))
    pts[100] = IntensityPoint(pts[100].start, pts[100].end, float("nan"), "synthetic")
    with pytest.raises(SignalError, match="intensity must be a finite number >= 0 g/kWh, got nan"):
        HistoryForecaster().predict(pts, T0 + timedelta(days=11), T0 + timedelta(days=11, hours=6))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="method must be one of"):
        HistoryForecaster("crystal-ball")
    with pytest.raises(ValueError, match="divide a day"):
        HistoryForecaster(step=timedelta(minutes=7))
    with pytest.raises(ValueError, match="fit_days > holdout_days"):
        HistoryForecaster(fit_days=5, holdout_days=7)


# ---------------------------------------------------- what the points say
def test_points_are_forecasts_and_say_what_made_them(tmp_path):
    csv = CsvTrace(write_csv(tmp_path / "trace.csv", synthetic(40)))
    hist = HistoryForecastSignal(csv)
    assert hist.name == "history:csv:trace.csv" and hist.last_rmse_g_per_kwh is None
    submit = T0 + timedelta(days=35, hours=10, minutes=7)
    end = submit + timedelta(hours=14, minutes=2)
    pts = hist.forecast(ZONE, submit, end)
    assert all(p.forecast and p.provider == "history:csv:trace.csv" and p.kind == "average" for p in pts)
    assert pts[0].start == submit and pts[-1].end == end
    assert all(a.end == b.start for a, b in zip(pts, pts[1:]))
    assert pts[1].start == T0 + timedelta(days=35, hours=10, minutes=30)     # then the 30-min grid
    src = pts[0].source
    assert len({p.source for p in pts}) == 1
    m = re.fullmatch(r"history forecast \(ensemble, fitted on ([\d.]+) days before 2024-02-05T10:07Z, "
                     r"RMSE ([\d.]+) g/kWh\) from csv:trace\.csv: FR, column "
                     r"'Carbon Intensity gCO₂eq/kWh \(direct\)' \(trace replay\)", src)
    assert m, src
    assert 20 <= float(m.group(1)) <= 56
    fc = hist.last(ZONE)
    assert fc is not None and hist.last_rmse_g_per_kwh == fc.rmse_g_per_kwh
    assert float(m.group(2)) == pytest.approx(fc.rmse_g_per_kwh, rel=1e-2)
    assert fc.rmse.size == fc.values.size and fc.rmse_over(submit, submit + timedelta(hours=1)) > 0
    assert "ensemble" in history_forecast_note(fc) and "RMSE" in history_forecast_note(fc)
    # intensity is the wrapped signal's realised value
    at = T0 + timedelta(days=20, hours=3, minutes=5)
    assert hist.intensity(ZONE, at) == csv.intensity(ZONE, at)


def test_the_planner_waits_for_the_trough_the_history_predicts(tmp_path):
    """A 2 h batch job submitted at the daily peak with 14 h of slack: on
    the history forecast alone the planner waits for the night trough."""
    hist = HistoryForecastSignal(CsvTrace(write_csv(tmp_path / "trace.csv", synthetic(40))))
    submit = T0 + timedelta(days=30, hours=14)                  # a Wednesday, 14:00
    d = timedelta(hours=2)
    deadline = submit + d + timedelta(hours=14)
    pts = hist.forecast(ZONE, submit, deadline)
    fc = build_step_forecast(pts, submit, deadline, fallback_g_per_kwh=56.0)
    dec = plan(PlanJob("j", d, 2000.0, deadline=deadline), [PlanSite("home", ZONE, 1.0, 1, fc)], submit)
    start = dec.planned_start
    assert T0 + timedelta(days=31, hours=1) <= start <= T0 + timedelta(days=31, hours=3), start
    assert dec.saving_pct > 40


def test_history_is_a_configured_signal_and_falls_back_when_it_cannot_forecast(tmp_path):
    """``carbon_signals = ["history:csv:PATH"]``: the bridge's chain forecasts
    from the trace's past only; with too little history it says why and the
    static table answers."""
    from bridge.server.config import build_signal

    path = write_csv(tmp_path / "trace.csv", synthetic(40))
    chain = build_signal((f"history:csv:{path}",))
    submit = T0 + timedelta(days=30, hours=2)
    pts = chain.forecast(ZONE, submit, submit + timedelta(hours=6))
    assert pts and all(p.forecast and p.provider.startswith("history:") for p in pts)
    early = chain.forecast(ZONE, T0 + timedelta(days=2), T0 + timedelta(days=2, hours=6))
    assert early[0].provider == "static" and "needs at least" in "; ".join(early[0].fallback)
    with pytest.raises(Exception, match="history:SPEC"):
        build_signal(("history:",))
