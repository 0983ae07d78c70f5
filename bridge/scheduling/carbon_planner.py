"""The carbon-aware planner: where and when a job runs (DESIGN section 7).

Pure: no I/O, no clocks (``now`` is an argument), no grpc. The bridge
fetches forecasts (:mod:`bridge.energy.signals`), puts them on a grid
(:mod:`bridge.scheduling.forecast`) and hands them here with the sites'
already-planned work.

Rules
-----
- ``interactive`` jobs run now, at the first allowed site with a free
  device; no forecast is fetched or scanned (the figure shown is the value
  in force now, from a forecast already in hand, else the static one).
- ``batch`` jobs with expected duration ``d``, expected IT energy ``E`` and
  deadline ``D``: over every site and every start ``t`` with
  ``now <= t <= D - d - margin`` (``now``, every grid step after it, and the
  latest start itself), pick the one minimising
  ``E[kWh] x PUE x mean intensity over [t, t + d]``, among starts where the
  site has a free device for the whole window. Ties go to the earlier start,
  then to the earlier site in the list. Waiting for a window that saves
  less than ``min_saving_pct`` against the best start-now option is not
  worth the risk: the job then starts now.
- ``margin`` defaults to ``max(10 min, 20% of d)``: a job whose real duration
  is 1.2 x its estimate still finishes by its deadline.
- Never miss a deadline to save carbon: :func:`should_run_now` says when a
  planned job must start at once (its window passed while the bridge was
  down, or its grown duration estimate moved its latest start to now).

Errors are :class:`~bridge.errors.InvalidArgumentError` (bad input, with the
earliest feasible deadline where a deadline is too close) and
:class:`CapacityError` (a :class:`~bridge.errors.LimitExceededError`: no
site has a free device long enough before the deadline; the message says the
earliest deadline that would fit).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import numpy as np

from ..errors import GreenlightError, InvalidArgumentError, LimitExceededError
from ..jobs.model import Decision, Option
from .forecast import DEFAULT_STEP, StepForecast, ceil_to_step, from_s, to_s, utc, window_means_many

JOB_CLASSES = ("interactive", "batch")
MIN_MARGIN = timedelta(minutes=10)
MARGIN_FRACTION = 0.2
DEFAULT_MIN_SAVING_PCT = 1.0
_REL_TIE = 1e-9


# ------------------------------------------------------------------ errors
class CapacityError(LimitExceededError):
    """No site has a free device for the whole job before its deadline."""

    def __init__(self, message: str, earliest_feasible_deadline: datetime | None):
        GreenlightError.__init__(self, message)
        self.limit = "site capacity before the deadline"
        self.value = None
        self.maximum = None
        self.earliest_feasible_deadline = earliest_feasible_deadline


class CarbonBudgetError(LimitExceededError):
    """Even the greenest option exceeds the job's ``max_co2e_g``."""

    def __init__(self, best_g: float, max_g: float, site: str, start: datetime):
        GreenlightError.__init__(
            self, f"scheduling.max_co2e_g: the greenest option before the deadline ({site} from "
                  f"{start.isoformat(timespec='minutes')}) is expected to emit {best_g:.3g} gCO2e, over the "
                  f"job's cap of {max_g:.3g} g; raise the cap, extend the deadline or allow more sites")
        self.limit = "scheduling.max_co2e_g"
        self.value = best_g
        self.maximum = max_g


# ------------------------------------------------------------ deadline rule
def default_margin(duration: timedelta) -> timedelta:
    """``max(10 min, 20% of d)``."""
    return max(MIN_MARGIN, duration * MARGIN_FRACTION)


def must_start_by(deadline: datetime, duration: timedelta, margin: timedelta | None = None) -> datetime:
    """The latest start that still finishes ``margin`` before ``deadline``."""
    margin = default_margin(duration) if margin is None else margin
    return utc(deadline) - duration - margin


def run_now_reason(now: datetime, planned_start: datetime | None, deadline: datetime | None,
                   d_estimate: timedelta, margin: timedelta | None = None) -> str | None:
    """Why a planned job must start at once, or ``None`` while it may wait."""
    now = utc(now)
    if planned_start is None or deadline is None:
        return "not planned for later: runs now"
    planned_start, deadline = utc(planned_start), utc(deadline)
    if now >= deadline:
        return (f"deadline {_when(deadline, now)} already passed (the bridge was down): runs now, "
                f"late")
    latest = must_start_by(deadline, d_estimate, margin)
    if now >= latest and latest < planned_start:
        return (f"the duration estimate grew to {_dur(d_estimate)}: it must start by "
                f"{_when(latest, now)} to meet its deadline {_when(deadline, now)}; runs now")
    if now >= latest:
        return (f"latest safe start {_when(latest, now)} reached (deadline {_when(deadline, now)}): runs now")
    if now >= planned_start:
        if now - planned_start > timedelta(minutes=1):
            return f"its planned window {_when(planned_start, now)} passed while the bridge was down: runs now"
        return f"its planned start {_when(planned_start, now)} has come"
    return None


def should_run_now(now: datetime, planned_start: datetime | None, deadline: datetime | None,
                   d_estimate: timedelta, margin: timedelta | None = None) -> bool:
    """True when a planned, not yet started job must start at once: its
    planned start came (or passed while the bridge was down), or
    ``now`` is past ``must_start_by(deadline, d_estimate, margin)`` because
    the duration estimate grew. Call it at start-up and whenever an estimate
    changes; the answer never trades a deadline for carbon."""
    return run_now_reason(now, planned_start, deadline, d_estimate, margin) is not None


# ------------------------------------------------------------------ inputs
@dataclass(frozen=True, eq=False)
class PlanSite:
    """A place the planner may put a job.

    ``forecast`` is the grid's intensity from :func:`build_step_forecast`
    (its ``real`` flag says whether it is a forecast or a static figure put
    on a grid); ``None`` means no forecast: the planner uses
    ``static_g_per_kwh`` and says so. ``busy`` holds the intervals already
    planned or running there, one device each; ``capacity`` is the number of
    devices (one job per device at a time). ``forecast_note`` is appended to
    reasons (e.g. why a provider fell back)."""

    name: str
    region: str = ""
    pue: float = 1.0
    capacity: int = 1
    forecast: StepForecast | None = None
    static_g_per_kwh: float | None = None
    static_source: str = ""
    busy: Sequence[tuple[datetime | float, datetime | float]] = ()
    forecast_note: str = ""
    _busy_s: np.ndarray = field(init=False, repr=False)   # [k, 2], sorted by start
    _occupancy: _Occupancy = field(init=False, repr=False)

    def __post_init__(self):
        where = f"site {self.name!r}"
        if not self.name:
            raise InvalidArgumentError("site: a name is required")
        if not (isinstance(self.pue, (int, float)) and math.isfinite(self.pue) and self.pue >= 1.0):
            raise InvalidArgumentError(f"{where}: PUE must be a number >= 1.0, got {self.pue!r}")
        if not (isinstance(self.capacity, int) and self.capacity >= 1):
            raise InvalidArgumentError(
                f"{where}: capacity must be a whole number of devices >= 1, got {self.capacity!r}")
        if self.forecast is None and self.static_g_per_kwh is None:
            raise InvalidArgumentError(f"{where}: neither a forecast nor a static intensity figure")
        if self.static_g_per_kwh is not None and not (
                math.isfinite(self.static_g_per_kwh) and self.static_g_per_kwh >= 0):
            raise InvalidArgumentError(f"{where}: static intensity must be >= 0 g/kWh, got {self.static_g_per_kwh!r}")
        rows = [(_secs(s), _secs(e)) for s, e in self.busy]
        arr = np.array(rows, dtype=np.float64).reshape(-1, 2)
        if arr.size and np.any(arr[:, 1] <= arr[:, 0]):
            raise InvalidArgumentError(f"{where}: a busy interval ends before it starts")
        arr = arr[np.argsort(arr[:, 0], kind="stable")] if arr.size else arr
        arr.setflags(write=False)
        object.__setattr__(self, "_busy_s", arr)
        object.__setattr__(self, "_occupancy", _Occupancy(arr))

    @property
    def forecast_real(self) -> bool:
        return self.forecast is not None and self.forecast.real

    @property
    def static_figure(self) -> float:
        if self.static_g_per_kwh is not None:
            return self.static_g_per_kwh
        if self.forecast is None:
            raise InvalidArgumentError(f"site {self.name!r}: neither a forecast nor a static intensity to plan with")
        return self.forecast.fallback_g_per_kwh

    def with_busy(self, *intervals: tuple[datetime | float, datetime | float]) -> PlanSite:
        return replace(self, busy=tuple(self.busy) + tuple(intervals))

    def busy_at(self, t_s: float) -> int:
        b = self._busy_s
        return int(np.count_nonzero((b[:, 0] <= t_s) & (b[:, 1] > t_s))) if b.size else 0

    def first_free(self, t_s: float) -> float:
        """The first time at or after ``t_s`` with a device free (``t_s`` itself when one is)."""
        if self.busy_at(t_s) < self.capacity:
            return t_s
        for end in np.sort(self._busy_s[:, 1]):
            if end > t_s and self.busy_at(float(end)) < self.capacity:
                return float(end)
        return t_s      # not reached: every busy interval ends

    def intensity_now(self, t_s: float) -> float:
        return self.forecast.at(t_s) if self.forecast is not None else self.static_figure


@dataclass(frozen=True)
class PlanJob:
    """What the planner needs to know about a job."""

    job_id: str
    duration: timedelta                  # expected run time d
    energy_wh: float | None              # expected IT energy; None: no estimate yet
    job_class: str = "batch"
    deadline: datetime | None = None     # required for batch
    allowed_sites: tuple[str, ...] = ()  # in order of preference; empty: every site, in config order
    margin: timedelta | None = None      # None: default_margin(duration)
    max_co2e_g: float | None = None

    @property
    def safety_margin(self) -> timedelta:
        return default_margin(self.duration) if self.margin is None else self.margin


# ----------------------------------------------------------------- outputs
def format_options(options: Sequence[Option], decision: Decision | None = None) -> str:
    head = ("site", "start (UTC)", "end (UTC)", "g/kWh", "PUE", "gCO2e", "vs now", "priced from", "")
    rows: list[tuple[str, ...]] = [head]
    for o in options:
        chosen = (decision is not None and o.site == decision.site and o.start == decision.planned_start)
        note = "chosen" if chosen else ("no free device" if not o.free else o.label)
        rows.append((o.site, o.start.strftime("%a %d %H:%M"), o.end.strftime("%a %d %H:%M"),
                     f"{o.mean_g_per_kwh:.0f}", f"{o.pue:.2f}",
                     "n/a" if o.expected_co2e_g is None else f"{o.expected_co2e_g:.3g}",
                     f"{-o.saving_pct:+.0f}%", o.forecast, note))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths).rstrip())
    if decision is not None:
        lines.append("")
        lines.append(decision.reason)
    return "\n".join(lines)


# ------------------------------------------------------------------ helpers
def _secs(x: datetime | float) -> float:
    return to_s(x) if isinstance(x, datetime) else float(x)


def _dur(d: timedelta) -> str:
    m = int(round(d.total_seconds() / 60))
    return f"{m // 60} h {m % 60:02d} min" if m >= 60 else f"{m} min"


def _when(t: datetime, now: datetime) -> str:
    t = utc(t)
    if t.date() == utc(now).date():
        return t.strftime("%H:%M UTC")
    return t.strftime("%a %d %b %H:%M UTC")


def _deadline_hint(t: datetime) -> str:
    return (t + timedelta(seconds=59)).replace(second=0, microsecond=0).isoformat(timespec="minutes")


def _validate_job(job: PlanJob) -> None:
    if job.job_class not in JOB_CLASSES:
        raise InvalidArgumentError(f"scheduling.job_class: must be one of {list(JOB_CLASSES)}, got {job.job_class!r}")
    if not job.duration > timedelta(0):
        raise InvalidArgumentError(f"job {job.job_id}: expected duration must be > 0, got {job.duration}")
    if job.energy_wh is not None and not (math.isfinite(job.energy_wh) and job.energy_wh >= 0):
        raise InvalidArgumentError(f"job {job.job_id}: expected energy must be >= 0 Wh, got {job.energy_wh!r}")
    if job.margin is not None and job.margin < timedelta(0):
        raise InvalidArgumentError(f"job {job.job_id}: safety margin must be >= 0, got {job.margin}")
    if job.max_co2e_g is not None and not job.max_co2e_g > 0:
        raise InvalidArgumentError(f"scheduling.max_co2e_g: must be > 0 when set, got {job.max_co2e_g!r}")


def _resolve_sites(job: PlanJob, sites: Sequence[PlanSite]) -> list[PlanSite]:
    if not sites:
        raise InvalidArgumentError("no sites configured: the planner needs at least one")
    by_name = {s.name: s for s in sites}
    if len(by_name) != len(sites):
        raise InvalidArgumentError(f"sites: duplicate names in {[s.name for s in sites]}")
    if not job.allowed_sites:
        return list(sites)
    unknown = [n for n in job.allowed_sites if n not in by_name]
    if unknown:
        raise InvalidArgumentError(f"scheduling.allowed_sites: unknown site(s) {unknown}; known: {list(by_name)}")
    return [by_name[n] for n in dict.fromkeys(job.allowed_sites)]


class _Occupancy:
    """Busy intervals (sorted by start) prepared for window queries: the
    count in force at each interval start and a sparse table over it for
    range maxima, built once per site."""

    def __init__(self, busy_s: np.ndarray):
        self.s = np.ascontiguousarray(busy_s[:, 0]) if busy_s.size else np.zeros(0)
        self.e = np.sort(busy_s[:, 1]) if busy_s.size else np.zeros(0)
        n = self.s.size
        self.table = np.zeros((0, 0), dtype=np.int64)
        if n:
            at_each = self.count(self.s)            # in force just as interval j starts
            levels = [at_each]
            w = 1
            while 2 * w <= n:
                prev = levels[-1]
                levels.append(np.maximum(prev[:-w], prev[w:]))
                w *= 2
            self.table = np.zeros((len(levels), n), dtype=np.int64)
            for i, lv in enumerate(levels):
                self.table[i, :lv.size] = lv

    def count(self, x: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.s, x, "right") - np.searchsorted(self.e, x, "right")

    def peak(self, starts_s: np.ndarray, duration_s: float) -> np.ndarray:
        n = self.s.size
        if n == 0:
            return np.zeros(starts_s.shape, dtype=np.int64)
        at_start = self.count(starts_s)
        lo = np.searchsorted(self.s, starts_s, "right")                 # s_j > t
        hi = np.searchsorted(self.s, starts_s + duration_s, "left")     # s_j < t + d
        length = hi - lo
        ok = length > 0
        if not ok.any():
            return at_start
        k = np.zeros(length.shape, dtype=np.int64)
        k[ok] = np.log2(length[ok]).astype(np.int64)
        a = self.table[k, np.minimum(lo, n - 1)]
        b = self.table[k, np.clip(hi - (1 << k), 0, n - 1)]
        return np.where(ok, np.maximum(at_start, np.maximum(a, b)), at_start)


def peak_use(busy_s: np.ndarray, starts_s: np.ndarray, duration_s: float) -> np.ndarray:
    """For each window ``[t, t + d)``: the most busy intervals in force at
    once during it (exact: the count only rises at an interval's start).
    ``busy_s`` is ``[k, 2]`` seconds, sorted by start."""
    return _Occupancy(np.asarray(busy_s, dtype=np.float64).reshape(-1, 2)).peak(
        np.asarray(starts_s, dtype=np.float64), duration_s)


def earliest_free_start(site: PlanSite, now_s: float, duration_s: float) -> float:
    """The first ``t >= now`` with a free device at ``site`` for ``[t, t + d)``
    (free time only begins at ``now`` or when an interval ends)."""
    b = site._busy_s
    cands = np.unique(np.concatenate([[now_s], b[:, 1][b[:, 1] > now_s]])) if b.size else np.array([now_s])
    ok = site._occupancy.peak(cands, duration_s) < site.capacity
    return float(cands[np.argmax(ok)])      # the last candidate (after every interval) is always free


def _forecast_label(site: PlanSite, filled: float) -> str:
    if site.forecast is None or not site.forecast.real:
        return "static"
    if filled > 0.005:
        return f"forecast, {filled:.0%} static"
    return "forecast"


# ------------------------------------------------------------------ planner
def plan(job: PlanJob, sites: Sequence[PlanSite], now: datetime, *, options: bool = False,
         windows_per_site: int = 3, min_saving_pct: float = DEFAULT_MIN_SAVING_PCT) -> Decision:
    """Choose (site, start) for one job; see the module docstring.

    ``options`` also prices, per site, running now and the
    ``windows_per_site`` greenest non-overlapping windows (the dry-run
    table). ``sites`` carry their planned work in ``busy``; the job's own
    earlier plan must not be among it (see :func:`replan`)."""
    _validate_job(job)
    now = utc(now)
    now_s = now.timestamp()
    chosen_sites = _resolve_sites(job, sites)
    if job.job_class == "interactive":
        return _plan_interactive(job, chosen_sites, now, now_s)
    return _plan_batch(job, chosen_sites, now, now_s, options, windows_per_site, min_saving_pct)


def _plan_interactive(job: PlanJob, sites: list[PlanSite], now: datetime, now_s: float) -> Decision:
    d_s = job.duration.total_seconds()
    site = next((s for s in sites if s.busy_at(now_s) < s.capacity), None)
    if site is None:
        site = sites[0]
        reason = f"interactive: every device is busy; queued at {site.name}, runs as soon as one frees up"
    else:
        reason = f"interactive: runs now at {site.name}"
    g = site.intensity_now(now_s)
    co2 = None if job.energy_wh is None else job.energy_wh / 1000.0 * site.pue * g
    if co2 is None:
        reason += " (no energy history for this backend yet: no gCO2e estimate)"
    label = "forecast" if site.forecast_real else "static"
    return Decision(job.job_id, "interactive", site.name, now, now + job.duration, co2, site.name, co2, 0.0,
                    reason, g, label, deadline=job.deadline, must_start_by=None, margin_s=0.0, duration_s=d_s,
                    expected_wh=job.energy_wh, decided_at=now)


def _candidate_starts(sites: list[PlanSite], now_s: float, latest_s: float) -> np.ndarray:
    steps = [s.forecast.step_s for s in sites if s.forecast is not None and s.forecast.real]
    step_s = min(steps) if steps else DEFAULT_STEP.total_seconds()
    first = ceil_to_step(now_s, step_s)
    if first <= now_s:
        first += step_s
    grid = np.arange(first, latest_s, step_s) if first < latest_s else np.zeros(0)
    return np.concatenate([[now_s], grid, [latest_s]]) if latest_s > now_s else np.array([now_s])


def _plan_batch(job: PlanJob, sites: list[PlanSite], now: datetime, now_s: float, want_options: bool,
                windows_per_site: int, min_saving_pct: float) -> Decision:
    if job.deadline is None:
        raise InvalidArgumentError("scheduling.deadline: batch jobs need a deadline")
    deadline = utc(job.deadline)
    d, margin = job.duration, job.safety_margin
    d_s, margin_s = d.total_seconds(), margin.total_seconds()
    latest = must_start_by(deadline, d, margin)
    if latest < now:
        earliest = now + d + margin
        if deadline <= now:
            what = f"is in the past ({deadline.isoformat(timespec='minutes')}, now {now.isoformat(timespec='minutes')})"
        else:
            what = (f"{deadline.isoformat(timespec='minutes')} leaves {_dur(deadline - now)}, less than the job's "
                    f"expected {_dur(d)} plus a safety margin of {_dur(margin)}")
        raise InvalidArgumentError(f"scheduling.deadline: {what}; the earliest feasible deadline is "
                                   f"{_deadline_hint(earliest)}")
    latest_s = latest.timestamp()
    starts = _candidate_starts(sites, now_s, latest_s)
    e_kwh = 1.0 if job.energy_wh is None else job.energy_wh / 1000.0

    # Price every (site, start): a [sites, starts] matrix, inf where no device is free.
    n_sites = len(sites)
    means = np.empty((n_sites, starts.size))
    free = np.empty((n_sites, starts.size), dtype=bool)
    with_fc = [i for i, s in enumerate(sites) if s.forecast is not None]
    if with_fc:
        means[with_fc] = window_means_many([f for i in with_fc if (f := sites[i].forecast) is not None], starts, d_s)
    horizon_end = latest_s + d_s
    for i, s in enumerate(sites):
        if s.forecast is None:
            means[i] = s.static_g_per_kwh
        occ = s._occupancy
        if occ.s.size == 0 or occ.s[0] >= horizon_end or occ.e[-1] <= now_s:
            free[i] = True          # nothing planned there in this horizon
        else:
            free[i] = occ.peak(starts, d_s) < s.capacity
    pue = np.array([s.pue for s in sites])[:, None]
    score = e_kwh * pue * means
    masked = np.where(free, score, np.inf)
    best = masked.min()
    if not np.isfinite(best):
        _raise_capacity(job, sites, now, now_s, d_s, margin, deadline)

    # Ties (flat or static forecasts): earliest start first, then site order.
    tie = masked <= best * (1 + _REL_TIE) + 1e-12
    j = int(np.argmax(tie.any(axis=0)))
    i = int(np.argmax(tie[:, j]))
    now_col = masked[:, 0]
    if j > 0 and np.isfinite(now_col).any():
        i_now = int(np.argmin(now_col))
        best_now = float(now_col[i_now])
        gain_pct = (best_now - best) / best_now * 100.0 if best_now > 0 else 0.0
        if gain_pct < min_saving_pct:
            i, j = i_now, 0          # the wait is not worth its risk
    site = sites[i]
    start_s = float(starts[j])
    start = from_s(start_s) if j > 0 else now
    mean = float(means[i, j])
    filled = (float(site.forecast.window_filled_share(start_s, d_s)) if site.forecast is not None and site.forecast.real
              else 1.0)
    pref = sites[0]
    expected = None if job.energy_wh is None else float(score[i, j])
    run_now = None if job.energy_wh is None else float(score[0, 0])
    ref_now = float(score[0, 0])
    saving = (ref_now - float(score[i, j])) / ref_now * 100.0 if ref_now > 0 else 0.0
    if job.max_co2e_g is not None and expected is not None and expected > job.max_co2e_g:
        raise CarbonBudgetError(expected, job.max_co2e_g, site.name, start)

    reason = _batch_reason(job, site, pref, start, now, saving, latest, deadline, margin, filled, sites)
    opts: tuple[Option, ...] = ()
    if want_options:
        opts = _options(sites, starts, means, free, score, ref_now, job, d, windows_per_site, now)
    return Decision(job.job_id, "batch", site.name, start, start + d, expected, pref.name, run_now, saving, reason,
                    mean, _forecast_label(site, filled), deadline=deadline, must_start_by=latest, margin_s=margin_s,
                    duration_s=d_s, expected_wh=job.energy_wh, options=opts, decided_at=now)


def _batch_reason(job: PlanJob, site: PlanSite, pref: PlanSite, start: datetime, now: datetime, saving: float,
                  latest: datetime, deadline: datetime, margin: timedelta, filled: float,
                  sites: list[PlanSite]) -> str:
    moved = site.name != pref.name
    free_s = site.first_free(_secs(now))
    if start > now and abs(_secs(start) - free_s) < 1.0 and free_s > _secs(now):
        # the wait is for a device, not for the grid: the earliest start with one free was chosen
        reason = (f"waiting for a free device at {site.name} until {_when(start, now)} "
                  f"(all {site.capacity} busy now)")
    elif start > now:
        reason = f"waiting for a greener window until {_when(start, now)} at {site.name} (saves ~{saving:.0f}%)"
    elif moved:
        reason = f"runs now at {site.name} instead of {pref.name} (saves ~{saving:.0f}%)"
    else:
        reason = (f"runs now at {site.name}: no greener window before its latest safe start "
                  f"{_when(latest, now)} (deadline {_when(deadline, now)} minus a {_dur(margin)} margin)")
    if start > now:
        reason += f"; must start by {_when(latest, now)} to finish {_dur(margin)} before its deadline"
    notes = []
    for s in sites:
        if s.forecast is None or not s.forecast.real:
            notes.append(f"no forecast for {s.name}" + (f" ({s.region})" if s.region else "")
                         + f": used its static figure {s.static_figure:.0f} g/kWh"
                         + (f" ({s.static_source})" if s.static_source else ""))
    if site.forecast is not None and site.forecast.real and filled > 0.005:
        notes.append(f"the forecast for {site.name} covers {1 - filled:.0%} of the chosen window; the rest is "
                     f"priced at its static figure {site.forecast.fallback_g_per_kwh:.0f} g/kWh")
    for s in sites:
        if s.forecast_note:
            notes.append(f"{s.name}: {s.forecast_note}")
    if job.energy_wh is None:
        notes.append("no energy history for this backend yet: saving from intensity only, no gCO2e estimate")
    return reason + ("; " + "; ".join(notes) if notes else "")


def _options(sites, starts, means, free, score, ref_now, job, d, per_site, now) -> tuple[Option, ...]:
    out: list[Option] = []
    d_s = d.total_seconds()
    for i, s in enumerate(sites):
        picks = [0]
        order = np.argsort(score[i], kind="stable")
        taken: list[float] = [float(starts[0])]
        for j in order:
            if len(picks) > per_site:
                break
            if not free[i, j]:
                continue
            t = float(starts[j])
            if all(abs(t - u) >= d_s for u in taken):
                picks.append(int(j))
                taken.append(t)
        for _rank, j in enumerate(sorted(set(picks))):
            t = now if j == 0 else from_s(float(starts[j]))
            fill = (float(s.forecast.window_filled_share(float(starts[j]), d_s))
                    if s.forecast is not None and s.forecast.real else 1.0)
            sv = (ref_now - float(score[i, j])) / ref_now * 100.0 if ref_now > 0 else 0.0
            out.append(Option(s.name, t, t + d, float(means[i, j]), s.pue,
                              None if job.energy_wh is None else float(score[i, j]), sv,
                              _forecast_label(s, fill), bool(free[i, j]), "now" if j == 0 else "window"))
    return tuple(out)


def _raise_capacity(job: PlanJob, sites: list[PlanSite], now: datetime, now_s: float, d_s: float,
                    margin: timedelta, deadline: datetime) -> None:
    first = min((earliest_free_start(s, now_s, d_s), s.name) for s in sites)
    start = from_s(first[0])
    earliest = start + timedelta(seconds=d_s) + margin
    names = ", ".join(f"{s.name} ({s.capacity} device{'s' if s.capacity != 1 else ''})" for s in sites)
    raise CapacityError(
        f"job {job.job_id}: no free device for {_dur(timedelta(seconds=d_s))} before its deadline "
        f"{deadline.isoformat(timespec='minutes')} at {names}: the sites are fully planned; the earliest "
        f"feasible deadline is {_deadline_hint(earliest)} (a device at {first[1]} frees up at "
        f"{start.isoformat(timespec='minutes')})", earliest)


# ----------------------------------------------------------- several jobs
def plan_many(jobs: Iterable[PlanJob], sites: Sequence[PlanSite], now: datetime, **kw) -> dict[str, Decision]:
    """Plan jobs one after another, earliest deadline first, each taking its
    device for its window; raises :class:`CapacityError` for the first one
    that cannot fit (the ones before it still fit)."""
    sites = list(sites)
    out: dict[str, Decision] = {}
    for job in sorted(jobs, key=lambda j: (j.job_class != "interactive", j.deadline or utc(now))):
        dec = plan(job, sites, now, **kw)
        out[job.job_id] = dec
        sites = _occupy(sites, dec)
    return out


def _occupy(sites: list[PlanSite], dec: Decision) -> list[PlanSite]:
    end = dec.planned_end or dec.planned_start
    return [s.with_busy((dec.planned_start, end)) if s.name == dec.site else s for s in sites]


def replan(pending: Sequence[tuple[PlanJob, Decision | None]], sites: Sequence[PlanSite], now: datetime,
           **kw) -> dict[str, Decision]:
    """Re-run the choice for planned jobs that have not started, e.g. when
    forecasts update or after a restart.

    ``pending``: each job with its current decision (``None`` if it has
    none). ``sites.busy`` must hold only running work (and anything else not
    being re-planned): the pending jobs' old windows are dropped and placed
    again. Jobs that :func:`should_run_now` get a run-now decision first;
    the rest are planned earliest deadline first. A job that no longer fits
    before its deadline is not dropped (it was accepted): it gets the
    earliest free start, with a reason saying it will be late."""
    now = utc(now)
    sites = list(sites)
    out: dict[str, Decision] = {}
    urgent, rest = [], []
    for job, old in pending:
        why = None
        if job.job_class == "interactive":
            why = "interactive: runs now"
        elif old is not None:
            why = run_now_reason(now, old.planned_start, job.deadline, job.duration, job.margin)
        elif job.deadline is not None and now >= must_start_by(job.deadline, job.duration, job.margin):
            why = run_now_reason(now, now, job.deadline, job.duration, job.margin)
        (urgent if why else rest).append((job, old, why))
    known = [s.name for s in sites]
    for job, old, why in urgent:
        order = list(job.allowed_sites or known)
        if old is not None and old.site in known:      # keep its site when a device is free there
            order = [old.site] + [n for n in order if n != old.site]
        interactive = replace(job, job_class="interactive", allowed_sites=tuple(order))
        dec = plan(interactive, sites, now)
        dec = replace(dec, job_class=job.job_class, reason=why + f" at {dec.site}", deadline=job.deadline,
                      must_start_by=(must_start_by(job.deadline, job.duration, job.margin) if job.deadline else None),
                      margin_s=job.safety_margin.total_seconds() if job.deadline else 0.0)
        out[job.job_id] = dec
        sites = _occupy(sites, dec)
    for job, _old, _ in sorted(rest, key=lambda r: r[0].deadline):
        try:
            dec = plan(job, sites, now, **kw)
        except CapacityError:
            start_s, name = min((earliest_free_start(s, now.timestamp(), job.duration.total_seconds()), s.name)
                                for s in _resolve_sites(job, sites))
            start = from_s(start_s)
            late = start + job.duration - utc(job.deadline)
            base = plan(replace(job, job_class="interactive", allowed_sites=(name,)), sites, now)
            dec = replace(base, job_class="batch", planned_start=start, planned_end=start + job.duration,
                          deadline=utc(job.deadline), must_start_by=start,
                          margin_s=job.safety_margin.total_seconds(),
                          reason=(f"cannot fit before its deadline any more (every allowed device is planned): "
                                  f"runs at the earliest free device, {name} from {_when(start, now)}, "
                                  f"about {_dur(max(late, timedelta(0)))} late"))
        out[job.job_id] = dec
        sites = _occupy(sites, dec)
    return out
