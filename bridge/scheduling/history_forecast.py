"""Forecast grid carbon intensity from realised history alone (DESIGN section 7).

Signals that give no forecast (the static table, a CSV history, providers'
"now" endpoints) leave the planner with nothing, or with a perfect replay
that no real deployment has. :class:`HistoryForecaster` predicts intensity
over ``[submit, submit + horizon]`` from the values realised strictly before
``submit``; :class:`HistoryForecastSignal` wraps any
:class:`~bridge.energy.signals.CarbonSignal` with it.

Method (``"ensemble"``, the default)
------------------------------------
History is put on a 30-minute grid (time-weighted means of the points that
ended by the submit time; a cell under half covered is a gap, filled
linearly). Three forecasters each predict every cell of the horizon:

- ``blend``: per lead-time bucket (0-1, 1-3, 3-6, 6-12, 12-24, 24-48, 48-96,
  96-168 h), a least-squares blend with an intercept (a tiny ridge keeps the
  collinear terms stable) of twelve terms known at the issue time (see
  :data:`TERMS`): the last values and the recent level (exponentially
  weighted, half-life 3 h), the last day's mean, the same time of day
  yesterday, two days and a week ago, the 7-day profile at the target and
  at the current time of day (with the level they carry today's anomaly:
  windy now, windy for a while). Fitted over the last 56 days of targets.
- ``profile``: the mean of the 14 latest days at the target's time of day.
- ``analogues``: the 30 past days (within the same 56+ days, starting
  within an hour of the current time of day) whose last 24 h had the most
  similar shape relative to their mean; what followed them, scaled to the
  current day's mean.

Their forecasts are averaged with weights per lead bucket, the inverse of
each one's mean squared error on the latest 7 days. That error is measured
out of sample: the blend is first fitted on the targets before those 7
days, then all three predict from 24 issue times spread over them and are
compared with what was realised; the same held-out pairs give the
ensemble's RMSE per lead bucket (the error estimate every forecast
carries). Then the blend is refitted on all 56 days to predict. Every
term, target and analogue is strictly before the submit time.

Measured with ``benchmarks/carbon_shift.py --methods``: the benchmark's
6000 jobs (0.5, 2 and 4 h, 12 h slack, 1000 submits per length and region
over the GB and FR 2020 traces), the planner seeing only the history
forecast from data before each submit (2% of submits, in the trace's first
9 days, fall back to the static figure). RMSE per 30-min cell over
[submit, deadline], realised / estimated by the forecaster itself;
planner/oracle as the benchmark defines it (the reduction against running
at submit, as a share of the hindsight oracle's; perfect forecasts reach
0.963):

===========  ==================  ==========  ==================  ==========
method       GB RMSE (g/kWh)     GB/oracle   FR RMSE (g/kWh)     FR/oracle
===========  ==================  ==========  ==================  ==========
persistence  53.9 / 54.1         0.000       8.5 / 8.6           0.000
yesterday    59.6 / 59.6         0.572       11.7 / 11.6         0.375
last-week    75.2 / 75.1         0.593       16.7 / 16.1         0.358
profile      61.4 / 60.1         0.677       14.5 / 14.1         0.507
blend-3      46.0 / 46.4         0.633       8.5 / 8.8           0.400
blend        37.4 / 38.2         0.695       7.6 / 7.9           0.515
analogues    43.1 / 42.5         0.686       8.6 / 8.7           0.478
ensemble     38.5 / 37.0         0.729       7.7 / 7.5           0.564
===========  ==================  ==========  ==================  ==========

``ensemble`` plans best on both grids, so it is the default; ``blend`` has
the lowest RMSE but the planner needs the *order* of the windows over the
next hours, and the three parts err differently there. ``persistence`` is
flat, so the planner never waits on it (0.000); ``blend-3`` (recent level,
yesterday, last week: the simplest fitted blend) is worse than the plain
14-day profile for planning. The error estimates match the realised errors
within 4%. Not reached: 0.80 of the oracle. History alone does not hold
enough of the day-to-day shape: even a profile that peeks at the future (the
mean of the 3 days before and after each target at its time of day) gets
only 0.78 (GB) and 0.66 (FR), while forecasts of the truth with 10%
correlated error get 0.87-0.92 (GB) and 0.77-0.85 (FR) (measured on every
third benchmark job). The planner's ``min_saving_pct`` raised with the
error (3% or 5% instead of 1%) plans worse, not better (0.752 -> 0.737 ->
0.711 GB, 0.580 -> 0.572 -> 0.506 FR, every third job from 25 January): the
forecast is a conditional mean, so its argmin is already the best bet.

Errors: too little history (under 9 days: a week for the same-time-last-week
term and 2 days to fit the weights), or history that stopped more than a day
before the submit time, raise :class:`~bridge.energy.signals.SignalError`
saying what was needed and what there was; in a
:class:`~bridge.energy.signals.FallbackChain` the next provider then answers.

Pure: numpy, the standard library and the signal types; no clocks, no I/O.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import numpy as np

from ..energy.signals import CarbonSignal, IntensityPoint, SignalError

DAY_S = 86_400.0
WEEK_DAYS = 7
DEFAULT_STEP = timedelta(minutes=30)
LEAD_BUCKETS_H = (0.0, 1.0, 3.0, 6.0, 12.0, 24.0, 48.0, 96.0, 168.0)
ANALOGUES = 30              # past days averaged by the analogue forecast
ANALOGUE_TOD_CELLS = 2      # analogues start within this many cells of the issue time of day
HOLDOUT_ISSUES = 24         # issue times the error is measured at (spread over the held-out days)

# The regression's terms, each known at the issue time t for a target cell tau (lead h = tau - t).
TERMS = {
    "last": "the last realised value",
    "level": "an exponentially weighted mean of the values before t (half-life 3 h)",
    "last_2h": "the value 2 h before the last one",
    "last_6h": "the value 6 h before the last one",
    "day_mean": "the mean of the 24 h before t",
    "yesterday": "the value at tau's time of day on the latest realised day",
    "two_days": "the same a day earlier",
    "last_week": "the value at the same time a week earlier",
    "profile": "the mean of the 7 latest realised days at tau's time of day",
    "profile_now": "that 7-day profile at the last value's time of day",
    "yesterday_now": "the value a day before the last one",
    "profile_6h": "the 7-day profile 6 h before the last value's time of day",
}
ALL_TERMS = tuple(TERMS)


@dataclass(frozen=True)
class Method:
    """A forecasting rule: the mean of its ``parts``, each weighted per lead
    bucket by the inverse of its mean squared error on the held-out days.
    A part is ``"regression"`` (the ``terms`` blended with least-squares
    weights and an intercept, per lead bucket), ``"profile"`` (the 14-day
    mean at the target time of day), ``"analogues"`` (what followed the most
    similar past days) or ``"term:<name>"`` (one term as is)."""

    name: str
    parts: tuple[str, ...]
    terms: tuple[str, ...] = ()
    description: str = ""

    @property
    def fitted(self) -> bool:
        return "regression" in self.parts


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("persistence", ("term:last",), description="the last realised value, flat"),
    Method("yesterday", ("term:yesterday",), description="the same time on the latest realised day"),
    Method("last-week", ("term:last_week",), description="the same time a week earlier"),
    Method("profile", ("profile",), description="the 14-day mean at the same time of day"),
    Method("blend-3", ("regression",), ("level", "yesterday", "last_week"),
           "least-squares blend of the recent level, yesterday and last week"),
    Method("blend", ("regression",), ALL_TERMS, "least-squares blend of recent values, past days and profiles"),
    Method("analogues", ("analogues",), description="what followed the 30 past days most like the last 24 h"),
    Method("ensemble", ("regression", "profile", "analogues"), ALL_TERMS,
           "the blend, the 14-day profile and the analogues, weighted by their held-out errors"),
)}
DEFAULT_METHOD = "ensemble"


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _ts(dt: datetime) -> float:
    return (dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)).timestamp()


def _iso(dt: datetime) -> str:
    return _utc(dt).strftime("%Y-%m-%dT%H:%MZ")


def _days(seconds: float) -> str:
    return f"{seconds / DAY_S:.1f} days"


# ------------------------------------------------------------------ output
@dataclass(frozen=True, eq=False)
class HistoryForecast:
    """Predicted intensity on a grid: ``values[j]`` holds on
    ``[start_s + j*step_s, start_s + (j+1)*step_s)`` (``start_s`` is the
    issue time floored to the grid), ``rmse[j]`` is the expected error of
    that cell (its lead bucket's out-of-sample RMSE, g/kWh)."""

    issued_at: datetime
    start_s: float
    step_s: float
    values: np.ndarray
    rmse: np.ndarray
    method: str
    fitted_days: float            # days of targets the weights were fitted on
    history_days: float           # days of realised data seen (cells with a value)
    history_end: datetime         # end of the latest realised point used
    source: str                   # what the history came from
    kind: str = "average"
    weights: tuple[tuple[float, ...], ...] = ()   # per fitted bucket: intercept, then one per feature
    rmse_by_bucket: tuple[tuple[float, float, float], ...] = ()   # (lead from h, lead to h, RMSE)

    @property
    def end_s(self) -> float:
        return self.start_s + self.values.size * self.step_s

    @property
    def end(self) -> datetime:
        return datetime.fromtimestamp(self.end_s, UTC)

    @property
    def rmse_g_per_kwh(self) -> float:
        """The expected error over the whole horizon (root mean square of
        the per-cell estimates)."""
        return float(np.sqrt(np.mean(self.rmse ** 2))) if self.rmse.size else float("nan")

    def rmse_over(self, start: datetime, end: datetime) -> float:
        """The expected per-cell error over ``[start, end)`` (root mean
        square, time-weighted); NaN outside the horizon."""
        a, b = _utc(start).timestamp(), _utc(end).timestamp()
        edges = self.start_s + self.step_s * np.arange(self.values.size + 1)
        w = np.clip(np.minimum(edges[1:], b) - np.maximum(edges[:-1], a), 0.0, None)
        return float(np.sqrt(np.sum(w * self.rmse ** 2) / w.sum())) if w.sum() > 0 else float("nan")

    def label(self) -> str:
        return (f"history forecast ({self.method}, fitted on {self.fitted_days:.1f} days before "
                f"{_iso(self.issued_at)}, RMSE {self.rmse_g_per_kwh:.3g} g/kWh) from {self.source}")

    def points(self, start: datetime, end: datetime, provider: str = "history") -> list[IntensityPoint]:
        """The cells overlapping ``[start, end)`` as forecast points (the
        first and last clipped to the window), all with one source."""
        a, b = _utc(start), _utc(end)
        label = self.label()
        out = []
        for j, v in enumerate(self.values):
            s = datetime.fromtimestamp(self.start_s + j * self.step_s, UTC)
            e = datetime.fromtimestamp(self.start_s + (j + 1) * self.step_s, UTC)
            s, e = max(s, a), min(e, b)
            if e > s:
                out.append(IntensityPoint(s, e, float(v), label, kind=self.kind, forecast=True, provider=provider))
        return out


# --------------------------------------------------------------- forecaster
@dataclass(frozen=True)
class _Series:
    y: np.ndarray          # cell values, gaps filled (leading cells may be NaN)
    level: np.ndarray      # EWMA including each cell
    profile: np.ndarray    # mean of the cell and the 6 cells one day apart before it
    profile14: np.ndarray  # the same over 14 days
    day_mean: np.ndarray   # mean of the day ending with the cell
    first: int             # first cell with a value
    valid_days: float
    end_s: float           # end of the latest realised point


def _take(arr: np.ndarray, k: np.ndarray) -> np.ndarray:
    inside = (k >= 0) & (k < arr.size)
    return np.where(inside, arr[np.clip(k, 0, max(arr.size - 1, 0))], np.nan)


class HistoryForecaster:
    """Predict intensity after ``issued_at`` from points realised before it.

    ``method``: a key of :data:`METHODS`. ``step``: the grid (must divide a
    day). ``fit_days``: the days of targets the regression is fitted on
    (and the span the analogues are looked for in); the latest
    ``holdout_days`` of them measure the error first. ``max_horizon``: the
    longest lead forecast. ``min_fit_days``: the fewest days of targets to
    fit on (with the week the terms need, the history required is
    ``7 + min_fit_days`` days). ``max_staleness``: the longest gap allowed
    between the latest realised value and ``issued_at``.
    """

    def __init__(self, method: str = DEFAULT_METHOD, *, step: timedelta = DEFAULT_STEP, fit_days: float = 56.0,
                 holdout_days: float = 7.0, level_halflife: timedelta = timedelta(hours=3),
                 max_horizon: timedelta = timedelta(days=7), min_fit_days: float = 2.0,
                 max_staleness: timedelta = timedelta(days=1), max_rows: int = 3000, ridge: float = 1e-4,
                 cache_size: int = 32):
        if method not in METHODS:
            raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
        step_s = step.total_seconds()
        if not (step_s >= 60 and (DAY_S / step_s).is_integer()):
            raise ValueError(f"step must be at least a minute and divide a day evenly, got {step}")
        if not (fit_days > holdout_days > 0 and min_fit_days > 0):
            raise ValueError(f"need fit_days > holdout_days > 0 and min_fit_days > 0, got {fit_days}, "
                             f"{holdout_days}, {min_fit_days}")
        if not max_horizon > step:
            raise ValueError(f"max_horizon must be longer than a step, got {max_horizon}")
        self.method = METHODS[method]
        self.step_s = step_s
        self.cpd = int(DAY_S / step_s)                 # cells per day
        self.fit_days = float(fit_days)
        self.holdout_days = float(holdout_days)
        self.halflife_cells = level_halflife.total_seconds() / step_s
        self.max_horizon = max_horizon
        self.min_fit_days = float(min_fit_days)
        self.max_staleness = max_staleness
        self.max_rows = int(max_rows)
        self.ridge = float(ridge)
        self._cache: OrderedDict[tuple, HistoryForecast] = OrderedDict()
        self._cache_size = int(cache_size)
        self._lock = threading.Lock()

    # ------------------------------------------------------------ amounts
    @property
    def min_history_days(self) -> float:
        return WEEK_DAYS + self.min_fit_days

    def lookback(self, horizon: timedelta | None = None) -> timedelta:
        """How much history before the issue time :meth:`predict` can use
        for a horizon (default the longest): the fitting window, the longest
        lead, and the week (plus a day) the terms reach back."""
        h = min(horizon or self.max_horizon, self.max_horizon)
        return timedelta(days=self.fit_days + WEEK_DAYS + 1) + h + timedelta(seconds=self.step_s)

    # ----------------------------------------------------------- history
    def _grid(self, points: Sequence[IntensityPoint], t0: float, lo_s: float, n: int,
              provider: str) -> tuple[np.ndarray, float]:
        """Cells ``[lo_s + k*step, ...)`` for ``k < n``: the time-weighted mean
        of the points that ended by ``t0`` (NaN where under half a cell is
        covered), and the end of the latest of those points. Points that had
        not ended by ``t0`` are dropped before their values are read."""
        step = self.step_s
        hi_s = lo_s + n * step
        out = np.full(n, np.nan)
        if not points:
            return out, -math.inf
        ps = np.array([_ts(p.start) for p in points])
        pe = np.array([_ts(p.end) for p in points])
        realised = np.flatnonzero((pe <= t0) & (pe > ps))
        pv = np.array([float(points[k].g_per_kwh) for k in realised.tolist()])
        ps, pe = ps[realised], pe[realised]
        bad = ~(np.isfinite(pv) & (pv >= 0))
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise SignalError(provider, f"history point at {_iso(datetime.fromtimestamp(ps[k], UTC))}: intensity "
                                        f"must be a finite number >= 0 g/kWh, got {float(pv[k])!r}")
        latest = float(pe.max()) if pe.size else -math.inf
        sa, ea = np.maximum(ps, lo_s), np.minimum(pe, hi_s)
        inside = ea > sa
        sa, ea, va = sa[inside], ea[inside], pv[inside]
        if not sa.size:
            return out, latest
        # The integral of the (summed) step functions is piecewise linear: its
        # slope changes by +v at a point's start and -v at its end.
        times = np.concatenate([sa, ea])
        order = np.argsort(times, kind="stable")
        times = times[order]
        slope_v = np.cumsum(np.concatenate([va, -va])[order])
        slope_c = np.cumsum(np.concatenate([np.ones_like(va), -np.ones_like(va)])[order])
        dt = np.diff(times)
        f_v = np.concatenate([[0.0], np.cumsum(slope_v[:-1] * dt)])
        f_c = np.concatenate([[0.0], np.cumsum(slope_c[:-1] * dt)])
        edges = lo_s + step * np.arange(n + 1)
        k = np.searchsorted(times, edges, "right") - 1
        kk = np.clip(k, 0, None)
        i_v = np.where(k >= 0, f_v[kk] + slope_v[kk] * (edges - times[kk]), 0.0)
        i_c = np.where(k >= 0, f_c[kk] + slope_c[kk] * (edges - times[kk]), 0.0)
        cov = np.diff(i_c)
        ok = cov >= 0.5 * step
        out[ok] = np.diff(i_v)[ok] / cov[ok]
        return out, latest

    def _profile(self, y: np.ndarray, days: int) -> np.ndarray:
        prof = np.full(y.size, np.nan)
        span = (days - 1) * self.cpd
        if y.size > span:
            prof[span:] = np.mean([y[span - q * self.cpd: y.size - q * self.cpd] for q in range(days)], axis=0)
        return prof

    def _series(self, raw: np.ndarray, latest: float) -> _Series:
        y = raw.copy()
        valid = np.flatnonzero(np.isfinite(y))
        valid_days = valid.size * self.step_s / DAY_S
        first = int(valid[0]) if valid.size else y.size
        if valid.size:
            y[first:] = np.interp(np.arange(first, y.size), valid, raw[valid])   # inner gaps linear, trailing flat
        # EWMA (truncated kernel, weights renormalised where history starts)
        alpha = 1.0 - 0.5 ** (1.0 / max(self.halflife_cells, 1e-6))
        k = max(1, int(math.ceil(12 * max(self.halflife_cells, 1.0))))
        w = alpha * (1 - alpha) ** np.arange(k)
        ok = np.isfinite(y)
        num = np.convolve(np.where(ok, y, 0.0), w)[:y.size]
        den = np.convolve(ok.astype(float), w)[:y.size]
        level = np.where(den >= 0.5 * w.sum(), num / np.where(den > 0, den, 1.0), np.nan)
        c = np.concatenate([[0.0], np.cumsum(np.nan_to_num(y))])
        day_mean = np.full(y.size, np.nan)
        if y.size >= self.cpd:
            day_mean[self.cpd - 1:] = (c[self.cpd:] - c[:-self.cpd]) / self.cpd
        day_mean[np.arange(y.size) < first + self.cpd - 1] = np.nan
        return _Series(y, level, self._profile(y, WEEK_DAYS), self._profile(y, 2 * WEEK_DAYS), day_mean, first,
                       valid_days, latest)

    # ------------------------------------------------------------- parts
    def _terms(self, ser: _Series, i: np.ndarray, j: np.ndarray, names: Sequence[str]) -> np.ndarray:
        """``[pairs, terms]`` for issue cells ``i`` (the first cell not known)
        and leads ``j`` (target cell ``i + j``); NaN where the history does
        not reach. Every cell read is below ``i``."""
        cpd, cpw = self.cpd, WEEK_DAYS * self.cpd
        c2h, c6h = int(round(7200 / self.step_s)), int(round(21600 / self.step_s))
        day_back = i + j - cpd * (j // cpd + 1)
        cols = {
            "last": lambda: _take(ser.y, i - 1),
            "level": lambda: _take(ser.level, i - 1),
            "last_2h": lambda: _take(ser.y, i - 1 - c2h),
            "last_6h": lambda: _take(ser.y, i - 1 - c6h),
            "day_mean": lambda: _take(ser.day_mean, i - 1),
            "yesterday": lambda: _take(ser.y, day_back),
            "two_days": lambda: _take(ser.y, day_back - cpd),
            "last_week": lambda: _take(ser.y, i + j - cpw * (j // cpw + 1)),
            "profile": lambda: _take(ser.profile, day_back),
            "profile_now": lambda: _take(ser.profile, i - 1 - cpd),
            "yesterday_now": lambda: _take(ser.y, i - 1 - cpd),
            "profile_6h": lambda: _take(ser.profile, i - 1 - cpd - c6h),
        }
        return np.stack([cols[f]() for f in names], axis=1)

    def _analogues(self, ser: _Series, issues: np.ndarray, n_lead: int) -> np.ndarray:
        """``[issues, n_lead]``: for each issue cell ``i``, the last day's mean
        times what followed the ``ANALOGUES`` past days whose last 24 h had
        the most similar shape (relative to their mean), among days starting
        within ``ANALOGUE_TOD_CELLS`` of ``i``'s time of day. Only cells below
        ``i`` are read (an analogue's future too); NaN where none is known."""
        cpd, y = self.cpd, ser.y
        issues = np.asarray(issues, dtype=np.int64)
        out = np.full((issues.size, n_lead), np.nan)
        lo = ser.first + cpd
        n_days = int((issues.max() - lo) // cpd) if issues.size else 0
        if n_days < 1:
            return out
        offs = np.arange(-ANALOGUE_TOD_CELLS, ANALOGUE_TOD_CELLS + 1)
        cands = (issues[:, None, None] - cpd * np.arange(1, n_days + 1)[None, :, None] + offs).reshape(issues.size, -1)
        # an analogue needs its own day of history and (up to) a day of future known before the issue time
        leads = np.where(issues >= y.size, n_lead, np.minimum(n_lead, y.size - issues))   # the leads asked for
        need = np.minimum(leads, cpd)[:, None]
        ok = (cands >= lo) & (cands + np.maximum(need, 1) <= issues[:, None]) & (issues[:, None] - cpd >= lo)
        safe = np.where(ok, cands, lo)
        back = np.arange(-cpd, 0)
        past = y[safe[:, :, None] + back]                               # [issues, cands, day]
        pat = y[np.clip(issues[:, None] - cpd, 0, None) + np.arange(cpd)]  # the last day before each issue
        s0 = pat.mean(axis=1)
        scale = np.maximum(past.mean(axis=2), 1e-9)
        dist = np.sum((past / scale[:, :, None] - (pat / np.maximum(s0, 1e-9)[:, None])[:, None, :]) ** 2, axis=2)
        dist = np.where(ok, dist, np.inf)
        k = min(ANALOGUES, dist.shape[1])
        best = np.argpartition(dist, k - 1, axis=1)[:, :k]
        chosen_ok = np.take_along_axis(ok, best, axis=1)
        chosen = np.take_along_axis(safe, best, axis=1)
        chosen_scale = np.take_along_axis(scale, best, axis=1)
        fut_idx = chosen[:, :, None] + np.arange(n_lead)
        known = chosen_ok[:, :, None] & (fut_idx < issues[:, None, None])
        fut = np.where(known, y[np.clip(fut_idx, 0, y.size - 1)], 0.0) / chosen_scale[:, :, None]
        count = known.sum(axis=1)
        mean = fut.sum(axis=1) / np.maximum(count, 1)
        good = (count > 0) & (s0 > 0)[:, None]
        out[good] = (s0[:, None] * mean)[good]
        return out

    def _parts(self, ser: _Series, i: np.ndarray, j: np.ndarray, coefs: np.ndarray | None) -> np.ndarray:
        """``[parts, pairs]``: each part's prediction for each (issue, lead)
        pair; ``coefs``: ``[buckets, 1 + terms]`` (NaN rows where not fitted)."""
        parts = []
        for part in self.method.parts:
            if part == "regression":
                if coefs is None:
                    parts.append(np.full(i.size, np.nan))
                    continue
                c = coefs[self._bucket(j)]
                x = self._terms(ser, i, j, self.method.terms)
                parts.append(c[:, 0] + np.sum(x * c[:, 1:], axis=1))
            elif part == "profile":
                parts.append(_take(ser.profile14, i + j - self.cpd * (j // self.cpd + 1)))
            elif part == "analogues":
                issues, row = np.unique(i, return_inverse=True)
                paths = self._analogues(ser, issues, int(j.max()) + 1 if j.size else 1)
                parts.append(paths[row, j])
            else:
                parts.append(self._terms(ser, i, j, (part.removeprefix("term:"),))[:, 0])
        return np.stack(parts) if parts else np.full((1, i.size), np.nan)

    def _blend_parts(self, parts: np.ndarray, j: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """The weighted mean of the parts (``weights``: ``[parts, buckets]``),
        renormalised over the parts that have a value; never below 0."""
        w = weights[:, self._bucket(j)] * np.isfinite(parts)
        total = np.sum(w * np.nan_to_num(parts), axis=0)
        norm = np.sum(w, axis=0)
        out = np.where(norm > 0, total / np.where(norm > 0, norm, 1.0), np.nan)
        return np.where(np.isfinite(out), np.clip(out, 0.0, None), np.nan)

    def _part_weights(self, parts: np.ndarray, truth: np.ndarray, j: np.ndarray) -> np.ndarray:
        """``[parts, buckets]``: each part weighted by the inverse of its
        mean squared error on the held-out pairs of that lead bucket (a
        bucket with no pairs takes the previous bucket's weights)."""
        n_b = len(LEAD_BUCKETS_H) - 1
        w = np.ones((parts.shape[0], n_b))
        if parts.shape[0] == 1:
            return w
        sq = (parts - truth) ** 2
        b_of = self._bucket(j)
        for b in range(n_b):
            sel = b_of == b
            mse = np.array([np.nanmean(row[sel]) if np.isfinite(row[sel]).any() else np.nan for row in sq])
            if np.isfinite(mse).any():
                w[:, b] = np.where(np.isfinite(mse), 1.0 / np.maximum(mse, 1e-12), 0.0)
            elif b > 0:
                w[:, b] = w[:, b - 1]
        return w

    def _bucket(self, j: np.ndarray) -> np.ndarray:
        edges = np.array(LEAD_BUCKETS_H) * 3600.0 / self.step_s
        return np.clip(np.searchsorted(edges, j, "right") - 1, 0, len(LEAD_BUCKETS_H) - 2)

    # ------------------------------------------------------------ fitting
    def _rows(self, ser: _Series, t_lo: int, t_hi: int, j_lo: int, j_hi: int) -> tuple[np.ndarray, np.ndarray]:
        """Training pairs: targets ``t`` in ``[t_lo, t_hi)``, leads in
        ``[j_lo, j_hi)``, evenly subsampled to ``max_rows``: ``(t, j)``."""
        nt, nj = max(0, t_hi - t_lo), max(0, j_hi - j_lo)
        total = nt * nj
        if total == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        # a non-integer stride when subsampling: no lock-step with the day
        flat = (np.arange(total) if total <= self.max_rows
                else (np.arange(self.max_rows) * (total / self.max_rows)).astype(np.int64))
        return t_lo + flat // nj, j_lo + flat % nj

    def _fit(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Intercept + weights by ridge-stabilised least squares (the
        intercept is not shrunk)."""
        mx, my = x.mean(axis=0), y.mean()
        xc = x - mx
        a = xc.T @ xc
        lam = self.ridge * (np.trace(a) / a.shape[0] if a.size else 0.0) + 1e-12
        w = np.linalg.solve(a + lam * np.eye(a.shape[0]), xc.T @ (y - my))
        return np.concatenate([[my - mx @ w], w])

    def _fit_buckets(self, ser: _Series, t_lo: int, split: int, n_lead: int) -> tuple[np.ndarray, np.ndarray]:
        """Per lead bucket up to ``n_lead``: the regression fitted on the
        targets in ``[t_lo, split)`` (to measure the error on the later ones)
        and on all of ``[t_lo, n)`` (to predict). ``[buckets, 1 + terms]``
        each, NaN rows where there were too few rows."""
        n_b = len(LEAD_BUCKETS_H) - 1
        old = np.full((n_b, 1 + len(self.method.terms)), np.nan)
        full = old.copy()
        min_rows = 10 * (len(self.method.terms) + 1)
        last = int(self._bucket(np.array([max(n_lead - 1, 0)]))[0])
        pairs = []
        for b in range(last + 1):
            j_lo = int(round(LEAD_BUCKETS_H[b] * 3600 / self.step_s))
            j_hi = max(int(round(LEAD_BUCKETS_H[b + 1] * 3600 / self.step_s)), j_lo + 1)
            t, j = self._rows(ser, t_lo, ser.y.size, j_lo, j_hi)
            pairs.append((t, j, np.full(t.size, b)))
        t, j, bucket = (np.concatenate(c) for c in zip(*pairs))
        x = self._terms(ser, t - j, j, self.method.terms)      # every term read before its issue time t - j
        y = ser.y[t]
        ok = np.isfinite(y) & np.all(np.isfinite(x), axis=1)
        for b in range(last + 1):
            sel = ok & (bucket == b)
            if np.count_nonzero(sel) < min_rows:
                break                   # longer leads have fewer rows still
            full[b] = self._fit(x[sel], y[sel])
            early = sel & (t < split)
            if np.count_nonzero(early) >= min_rows:
                old[b] = self._fit(x[early], y[early])
        return old, full

    # ----------------------------------------------------------- predict
    def predict(self, points: Sequence[IntensityPoint], issued_at: datetime, end: datetime, *,
                source: str | None = None, provider: str = "history") -> HistoryForecast:
        """Forecast ``[issued_at, end)`` (capped at ``max_horizon``) from the
        ``points`` that ended by ``issued_at``; any other point is dropped
        unread. Raises :class:`SignalError` (``provider``) when the history
        is too short or stale."""
        issued_at = _utc(issued_at)
        t0 = issued_at.timestamp()
        t_end = min(_utc(end).timestamp(), t0 + self.max_horizon.total_seconds())
        if t_end <= t0:
            raise SignalError(provider, f"history forecast: empty window {_iso(issued_at)} .. {_iso(end)}")
        step = self.step_s
        k0 = math.floor(t0 / step)          # the first cell not fully realised
        e0 = k0 * step
        n_lead = int(math.ceil((t_end - e0) / step - 1e-9))
        n_hist = int(math.ceil(self.lookback(timedelta(seconds=t_end - t0)).total_seconds() / step))
        lo_s = e0 - n_hist * step
        raw, latest = self._grid(points, t0, lo_s, n_hist, provider)
        ser = self._series(raw, latest)
        need = self.min_history_days
        if ser.valid_days < need:
            got = f"got {_days(ser.valid_days * DAY_S)}"
            if math.isfinite(latest):
                first = lo_s + ser.first * step
                got += f" ({_iso(datetime.fromtimestamp(first, UTC))} .. {_iso(datetime.fromtimestamp(latest, UTC))})"
            raise SignalError(provider, f"history forecast needs at least {need:g} days of realised intensity "
                                        f"before {_iso(issued_at)} ({WEEK_DAYS} for the same-time-last-week term "
                                        f"+ {self.min_fit_days:g} to fit the weights), {got}")
        if t0 - latest > self.max_staleness.total_seconds():
            raise SignalError(provider, f"history forecast: the latest realised value ends "
                                        f"{_iso(datetime.fromtimestamp(latest, UTC))}, "
                                        f"{(t0 - latest) / 3600:.1f} h before {_iso(issued_at)}; it needs data "
                                        f"within the last {self.max_staleness.total_seconds() / 3600:g} h")
        src = source or "history"
        key = (k0, n_lead, src, self.method.name,
               hashlib.blake2b(np.nan_to_num(raw, nan=-1.0).tobytes(), digest_size=16).digest())
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        fc = self._predict(ser, issued_at, e0, n_lead, src, provider)
        with self._lock:
            self._cache[key] = fc
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return fc

    def _predict(self, ser: _Series, issued_at: datetime, e0: float, n_lead: int, source: str,
                 provider: str) -> HistoryForecast:
        n, cpd = ser.y.size, self.cpd
        # targets with every term known: a week (+1 cell) of history before their issue time
        t_first = max(ser.first + WEEK_DAYS * cpd + 1, n - int(round(self.fit_days * cpd)))
        avail = n - t_first
        hold = min(int(round(self.holdout_days * cpd)), max(1, avail // 4))
        split = n - hold
        # 1. the error, out of sample: fit on the older targets, predict from issue times after them
        coefs_old, coefs = self._fit_buckets(ser, t_first, split, n_lead) if self.method.fitted else (None, None)
        issues = np.unique(np.linspace(split, n - 1, min(HOLDOUT_ISSUES, hold)).astype(np.int64))
        ii = np.repeat(issues, n_lead)
        jj = np.tile(np.arange(n_lead), issues.size)
        keep = ii + jj < n                  # targets realised before the submit time
        ii, jj = ii[keep], jj[keep]
        truth = ser.y[ii + jj]
        parts_ho = self._parts(ser, ii, jj, coefs_old)
        mix = self._part_weights(parts_ho, truth, jj)
        err = self._blend_parts(parts_ho, jj, mix) - truth
        # 2. the forecast: fitted on every target, predicted from the submit time
        lead = np.arange(n_lead)
        values = self._blend_parts(self._parts(ser, np.full(n_lead, n), lead, coefs), lead, mix)
        done = int(np.argmin(np.isfinite(values))) if not np.all(np.isfinite(values)) else n_lead
        if done == 0:
            raise SignalError(provider, f"history forecast: too little history before {_iso(issued_at)} to "
                                        f"predict even the next {self.step_s / 60:g} minutes "
                                        f"({ser.valid_days:.1f} days)")
        # per-bucket RMSE; a bucket with no realised pair (the longest leads) takes the last one measured
        rmse = np.full(n_lead, np.nan)
        by_bucket: list[tuple[float, float, float]] = []
        b_of = self._bucket(jj)
        last_r = float("nan")
        for b in np.unique(self._bucket(lead[:done])):
            sel = (b_of == b) & np.isfinite(err)
            r = float(np.sqrt(np.mean(err[sel] ** 2))) if sel.any() else last_r
            if not math.isfinite(r):
                r = float(np.sqrt(np.nanmean(err ** 2))) if np.isfinite(err).any() else float("nan")
            last_r = r
            rmse[:done][self._bucket(lead[:done]) == b] = r
            by_bucket.append((LEAD_BUCKETS_H[b], LEAD_BUCKETS_H[b + 1], r))
        weights = () if coefs is None else tuple(tuple(float(v) for v in row)
                                                 for row in coefs if np.isfinite(row).all())
        days = avail / cpd if self.method.fitted else (n - ser.first) / cpd
        return HistoryForecast(issued_at, e0, self.step_s, values[:done], rmse[:done], self.method.name,
                               days, ser.valid_days, datetime.fromtimestamp(ser.end_s, UTC), source,
                               weights=weights, rmse_by_bucket=tuple(by_bucket))


# ------------------------------------------------------------------ signal
@dataclass
class _Last:
    forecast: HistoryForecast | None = None
    by_region: dict[str, HistoryForecast] = field(default_factory=dict)


class HistoryForecastSignal:
    """A :class:`~bridge.energy.signals.CarbonSignal` whose forecast is
    predicted from the wrapped signal's realised history.

    ``forecast(region, start, end)`` asks the wrapped signal for
    ``[start - lookback, start)`` (a :class:`~bridge.energy.signals.CsvTrace`
    answers with its history), keeps only the points that ended by
    ``start`` and returns the prediction over ``[start, end)`` (capped at
    the forecaster's horizon) as points with ``forecast=True`` and a source
    naming the method, the fitting window, the RMSE and the wrapped source.
    ``intensity`` is the wrapped signal's realised value. The latest
    forecast per region (with its per-lead error) is in :meth:`last` and
    ``last_rmse_g_per_kwh``."""

    def __init__(self, signal: CarbonSignal, forecaster: HistoryForecaster | None = None):
        self.signal = signal
        self.forecaster = forecaster or HistoryForecaster()
        self.name = f"history:{signal.name}"
        self._last = _Last()

    @property
    def last_rmse_g_per_kwh(self) -> float | None:
        """The error estimate of the latest forecast (any region)."""
        f = self._last.forecast
        return None if f is None else f.rmse_g_per_kwh

    def last(self, region: str) -> HistoryForecast | None:
        return self._last.by_region.get(region.upper())

    def intensity(self, region: str, at: datetime | None = None) -> IntensityPoint:
        return self.signal.intensity(region, at)

    def history(self, region: str, before: datetime, span: timedelta) -> list[IntensityPoint]:
        """The wrapped signal's points that ended by ``before``, from
        ``before - span`` on."""
        before = _utc(before)
        try:
            pts = self.signal.forecast(region, before - span, before)
        except SignalError as exc:
            raise SignalError(self.name, f"no history from {self.signal.name} before {_iso(before)}: {exc}") from exc
        return [p for p in pts if _utc(p.end) <= before]

    def predict(self, region: str, start: datetime, end: datetime) -> HistoryForecast:
        start, end = _utc(start), _utc(end)
        pts = self.history(region, start, self.forecaster.lookback(end - start))
        src = Counter(p.source for p in pts).most_common(1)[0][0] if pts else self.signal.name
        try:
            fc = self.forecaster.predict(pts, start, end, source=src, provider=self.name)
        except SignalError as exc:
            raise SignalError(self.name, f"{region}: {exc} from {self.signal.name}") from exc
        if pts:
            kind = Counter(p.kind for p in pts).most_common(1)[0][0]
            if kind != fc.kind:
                fc = replace(fc, kind=kind)
        self._last.forecast = fc
        self._last.by_region[region.upper()] = fc
        return fc

    def forecast(self, region: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        return self.predict(region, start, end).points(start, end, provider=self.name)


def history_forecast_note(fc: HistoryForecast) -> str:
    """One line for a plan's reason: what made the forecast and how good it is."""
    return (f"forecast predicted from history ({fc.method}, RMSE {fc.rmse_g_per_kwh:.3g} g/kWh "
            f"over {(fc.end_s - fc.start_s) / 3600:.0f} h, fitted on {fc.fitted_days:.1f} days)")
