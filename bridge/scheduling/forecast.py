"""Carbon forecasts as step functions on a regular time grid, and exact
time-weighted window means over them (DESIGN section 7).

Providers answer with lists of :class:`~bridge.energy.signals.IntensityPoint`
that may be unsorted, overlap, leave gaps and mix step sizes (a 30-min
national forecast next to 5-min marginal values). :func:`build_step_forecast`
turns such a list into a :class:`StepForecast`: one value per grid cell
(default 5 minutes) over ``[start, end)``, each the exact time-weighted mean
of the points covering that cell. Where two points overlap, one wins:
measured values over forecasts, then the finer point (shorter interval),
then the later one in the list (a newer answer overrides an older one).
Uncovered time takes a declared fallback value (the site's static figure),
and the forecast says, per cell and overall, which share was filled.

:meth:`StepForecast.window_mean` is the scheduler's inner loop: the mean
intensity over ``[t, t + d]`` for many candidate starts ``t`` at once, from
prefix sums of the step function (O(1) per candidate, vectorised with numpy;
``d`` need not be a multiple of the step and ``t`` need not be on the grid).
Outside the grid the forecast continues at its fallback value, so a window
running past the provider's horizon is still priced, and
:meth:`StepForecast.window_filled_share` says how much of it was guessed.

Times are timezone-aware UTC datetimes at the edges of this module and float
seconds since the epoch inside (``*_s`` names).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InvalidArgumentError

if TYPE_CHECKING:  # the signal module is only needed for the type
    from ..energy.signals import IntensityPoint

UTC = UTC
DEFAULT_STEP = timedelta(minutes=5)


def utc(dt: datetime) -> datetime:
    """A naive datetime is taken as UTC; an aware one is converted."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def to_s(dt: datetime) -> float:
    return utc(dt).timestamp()


def from_s(seconds: float) -> datetime:
    return datetime.fromtimestamp(float(seconds), UTC)


def floor_to_step(seconds: float, step_s: float) -> float:
    return math.floor(seconds / step_s) * step_s


def ceil_to_step(seconds: float, step_s: float) -> float:
    return math.ceil(seconds / step_s) * step_s


@dataclass(frozen=True, eq=False)
class StepForecast:
    """Intensity (gCO2e/kWh) as a step function: ``values[i]`` holds on
    ``[start_s + i*step_s, start_s + (i+1)*step_s)``; before and after the
    grid it holds ``fallback_g_per_kwh``."""

    start_s: float
    step_s: float
    values: np.ndarray                  # float64 [n], g/kWh per cell
    filled: np.ndarray                  # float64 [n], share of each cell that is fallback (0..1)
    fallback_g_per_kwh: float
    fallback_source: str = "declared fallback"
    sources: tuple[str, ...] = ()       # what the real values came from
    real: bool = True                   # False: the whole thing is a static figure, not a forecast
    _cum: np.ndarray = field(init=False, repr=False)        # integral of values at cell edges [n+1]
    _cum_fill: np.ndarray = field(init=False, repr=False)   # integral of filled at cell edges [n+1]

    def __post_init__(self):
        values = np.ascontiguousarray(self.values, dtype=np.float64)
        filled = np.ascontiguousarray(self.filled, dtype=np.float64)
        if values.ndim != 1 or filled.shape != values.shape:
            raise ValueError(f"values and filled must be 1-D of one length, got {values.shape} and {filled.shape}")
        if not self.step_s > 0:
            raise ValueError(f"step must be > 0 s, got {self.step_s}")
        if not (math.isfinite(self.fallback_g_per_kwh) and self.fallback_g_per_kwh >= 0):
            raise InvalidArgumentError(f"fallback intensity must be a finite number >= 0 g/kWh, "
                                       f"got {self.fallback_g_per_kwh!r}")
        cum = np.zeros(values.size + 1)
        np.cumsum(values * self.step_s, out=cum[1:])
        cum_fill = np.zeros(values.size + 1)
        np.cumsum(filled * self.step_s, out=cum_fill[1:])
        for name, arr in (("values", values), ("filled", filled), ("_cum", cum), ("_cum_fill", cum_fill)):
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    # ------------------------------------------------------------ shape
    @property
    def n(self) -> int:
        return int(self.values.size)

    @property
    def end_s(self) -> float:
        return self.start_s + self.n * self.step_s

    @property
    def start(self) -> datetime:
        return from_s(self.start_s)

    @property
    def end(self) -> datetime:
        return from_s(self.end_s)

    @property
    def step(self) -> timedelta:
        return timedelta(seconds=self.step_s)

    @property
    def grid_s(self) -> np.ndarray:
        """Start of every cell, seconds since the epoch."""
        return self.start_s + self.step_s * np.arange(self.n)

    @property
    def filled_share(self) -> float:
        """Share of ``[start, end)`` that holds the fallback value."""
        return float(self._cum_fill[-1] / (self.n * self.step_s)) if self.n else 1.0

    # --------------------------------------------------------- integrals
    def _integral(self, cum: np.ndarray, per_cell: np.ndarray, outside: float, x_s) -> np.ndarray:
        """Integral of a step function from ``start_s`` to ``x`` (negative
        before the grid), continued at ``outside`` beyond both ends."""
        x = np.asarray(x_s, dtype=np.float64)
        rel = x.reshape(-1) - self.start_s
        if self.n == 0:
            return (rel * outside).reshape(x.shape)
        k = (rel // self.step_s).astype(np.int64)
        np.clip(k, 0, self.n - 1, out=k)
        out = cum[k] + (rel - k * self.step_s) * per_cell[k]
        span = self.n * self.step_s
        if rel.size and (rel.min() < 0 or rel.max() > span):     # rare: outside the grid
            out = np.where(rel < 0, rel * outside, out)
            out = np.where(rel > span, cum[-1] + (rel - span) * outside, out)
        return out.reshape(x.shape)

    def integral(self, x_s) -> np.ndarray:
        """g/kWh x seconds from the grid start to each ``x`` (seconds since epoch)."""
        return self._integral(self._cum, self.values, self.fallback_g_per_kwh, x_s)

    def window_mean(self, starts_s, duration_s: float) -> np.ndarray:
        """Exact time-weighted mean intensity over ``[t, t + d]`` for each ``t``."""
        if not duration_s > 0:
            raise InvalidArgumentError(f"window duration must be > 0 s, got {duration_s}")
        t = np.asarray(starts_s, dtype=np.float64)
        both = self.integral(np.concatenate([t.ravel(), t.ravel() + duration_s]))
        return ((both[t.size:] - both[:t.size]) / duration_s).reshape(t.shape)

    def window_filled_share(self, starts_s, duration_s: float) -> np.ndarray:
        """Share of each window ``[t, t + d]`` priced with the fallback value
        (gaps inside the grid and any time outside it)."""
        if not duration_s > 0:
            raise InvalidArgumentError(f"window duration must be > 0 s, got {duration_s}")
        t = np.asarray(starts_s, dtype=np.float64)
        a = self._integral(self._cum_fill, self.filled, 1.0, t)
        b = self._integral(self._cum_fill, self.filled, 1.0, t + duration_s)
        return np.clip((b - a) / duration_s, 0.0, 1.0)

    def window_means(self, duration: timedelta | float) -> tuple[np.ndarray, np.ndarray]:
        """Every grid start ``t`` whose window ``[t, t + d]`` lies inside the
        grid, and the mean over it: ``(starts_s, means)``."""
        d = duration.total_seconds() if isinstance(duration, timedelta) else float(duration)
        starts = self.grid_s
        starts = starts[starts + d <= self.end_s + 1e-9]
        return starts, self.window_mean(starts, d)

    def at(self, t: datetime | float) -> float:
        """The value in force at ``t``."""
        x = to_s(t) if isinstance(t, datetime) else float(t)
        rel = x - self.start_s
        if rel < 0 or rel >= self.n * self.step_s:
            return self.fallback_g_per_kwh
        return float(self.values[int(rel // self.step_s)])

    # ------------------------------------------------------- constructors
    @classmethod
    def constant(cls, start: datetime, end: datetime, g_per_kwh: float, source: str,
                 step: timedelta = DEFAULT_STEP, real: bool = False) -> StepForecast:
        """A flat forecast (a static annual figure): ``real`` False, and the
        value is its own fallback, so nothing counts as filled."""
        step_s = step.total_seconds()
        s = floor_to_step(to_s(start), step_s)
        n = max(0, int(round((ceil_to_step(to_s(end), step_s) - s) / step_s)))
        return cls(s, step_s, np.full(n, float(g_per_kwh)), np.zeros(n), float(g_per_kwh),
                   fallback_source=source, sources=(source,), real=real)


def build_step_forecast(points: Sequence[IntensityPoint], start: datetime, end: datetime, *,
                        fallback_g_per_kwh: float, fallback_source: str = "declared fallback",
                        step: timedelta = DEFAULT_STEP, align: bool = True) -> StepForecast:
    """Put ``points`` on a regular grid over ``[start, end)``.

    With ``align`` the grid is aligned to multiples of ``step`` since the
    epoch (``start`` floored, ``end`` ceiled), so forecasts of different
    sites share cell edges and hour/half-hour boundaries fall on them.
    Each cell's value is the exact time-weighted mean of what covers it
    (the winning point per instant, see the module docstring), and the
    fallback value where nothing does.
    """
    step_s = step.total_seconds()
    if not step_s > 0:
        raise InvalidArgumentError(f"forecast step must be > 0, got {step}")
    t0, t1 = to_s(start), to_s(end)
    if align:
        t0, t1 = floor_to_step(t0, step_s), ceil_to_step(t1, step_s)
    else:
        t1 = t0 + math.ceil((t1 - t0) / step_s - 1e-9) * step_s
    if t1 <= t0:
        raise InvalidArgumentError(f"forecast window is empty: start {utc(start).isoformat()} is not before "
                                   f"end {utc(end).isoformat()}")
    if not (math.isfinite(fallback_g_per_kwh) and fallback_g_per_kwh >= 0):
        raise InvalidArgumentError(f"fallback intensity must be a finite number >= 0 g/kWh, got {fallback_g_per_kwh!r}")
    n = int(round((t1 - t0) / step_s))
    edges = t0 + step_s * np.arange(n + 1)

    # Points as arrays, clipped to the grid; drop empty ones.
    ps, pe, pv, rank = [], [], [], []
    sources: dict[str, None] = {}
    for i, p in enumerate(points):
        v = float(p.g_per_kwh)
        if not (math.isfinite(v) and v >= 0):
            raise InvalidArgumentError(f"forecast point {i} ({utc(p.start).isoformat()}): intensity must be a "
                                       f"finite number >= 0 g/kWh, got {p.g_per_kwh!r}")
        s, e = to_s(p.start), to_s(p.end)
        if e <= s or e <= t0 or s >= t1:
            continue
        ps.append(max(s, t0))
        pe.append(min(e, t1))
        pv.append(v)
        # measured over forecast, then finer (by the unclipped length), then later in the list
        rank.append((not p.forecast, -(e - s), i))
        sources.setdefault(p.source, None)
    if not ps:
        return StepForecast(t0, step_s, np.full(n, float(fallback_g_per_kwh)), np.ones(n),
                            float(fallback_g_per_kwh), fallback_source, (), real=False)
    ps_a, pe_a, pv_a = np.array(ps), np.array(pe), np.array(pv)

    # Elementary pieces: between consecutive breakpoints exactly one point
    # (or none) is in force. Paint points in ascending priority.
    bounds = np.unique(np.concatenate([edges, ps_a, pe_a]))
    piece_val = np.full(bounds.size - 1, float(fallback_g_per_kwh))
    piece_fill = np.ones(bounds.size - 1)
    priority = sorted(range(len(ps)), key=lambda j: rank[j])
    lo = np.searchsorted(bounds, ps_a)
    hi = np.searchsorted(bounds, pe_a)
    for j in priority:
        piece_val[lo[j]:hi[j]] = pv_a[j]
        piece_fill[lo[j]:hi[j]] = 0.0

    # Cell means: integrate the pieces, read the integral at cell edges.
    widths = np.diff(bounds)
    cum_v = np.concatenate([[0.0], np.cumsum(piece_val * widths)])
    cum_f = np.concatenate([[0.0], np.cumsum(piece_fill * widths)])
    at_edges = np.searchsorted(bounds, edges)   # every edge is a bound
    values = np.diff(cum_v[at_edges]) / step_s
    filled = np.clip(np.diff(cum_f[at_edges]) / step_s, 0.0, 1.0)
    return StepForecast(t0, step_s, values, filled, float(fallback_g_per_kwh), fallback_source,
                        tuple(sources), real=True)


def window_means_many(forecasts: Sequence[StepForecast], starts_s, duration_s: float) -> np.ndarray:
    """``[len(forecasts), len(starts)]``: :meth:`StepForecast.window_mean` of
    each forecast, computed in one gather for forecasts that share a grid
    (same origin, step and length) and whose windows all lie inside it."""
    t = np.asarray(starts_s, dtype=np.float64).reshape(-1)
    out = np.empty((len(forecasts), t.size))
    if not duration_s > 0:
        raise InvalidArgumentError(f"window duration must be > 0 s, got {duration_s}")
    groups: dict[tuple[float, float, int], list[int]] = {}
    for i, f in enumerate(forecasts):
        groups.setdefault((f.start_s, f.step_s, f.n), []).append(i)
    both = np.concatenate([t, t + duration_s])
    for (start_s, step_s, n), idx in groups.items():
        rel = both - start_s
        if len(idx) == 1 or n == 0 or rel.min() < 0 or rel.max() > n * step_s:
            for i in idx:
                out[i] = forecasts[i].window_mean(t, duration_s)
            continue
        k = (rel // step_s).astype(np.int64)
        np.clip(k, 0, n - 1, out=k)
        frac = rel - k * step_s
        cum = np.stack([forecasts[i]._cum for i in idx])
        vals = np.stack([forecasts[i].values for i in idx])
        integ = cum[:, k] + frac * vals[:, k]
        out[idx] = (integ[:, t.size:] - integ[:, :t.size]) / duration_s
    return out
