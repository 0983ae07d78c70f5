"""Carbon signals: grid carbon intensity now and ahead, from pluggable providers.

Every provider has the same two calls (times are timezone-aware UTC; a
naive datetime is taken as UTC):

- ``intensity(region, at=None) -> IntensityPoint``: the intensity in force at
  ``at`` (now when ``None``);
- ``forecast(region, start, end) -> list[IntensityPoint]``: the series
  covering ``[start, end)``, ordered by time (the scheduler's input).

Providers: :class:`StaticTable` (shipped annual table), :class:`CsvTrace`
(Electricity Maps CSV exports, both header generations, and plain
``Time,Carbon Intensity`` traces; parsed once, gaps reported), and HTTP clients
(stdlib ``urllib``, a timeout on every call) for Electricity Maps v3,
WattTime v3, the UK carbon-intensity API and the Carbon Aware SDK Web API.
:class:`FallbackChain` tries providers in order and records in the answer
which one answered and why the others did not. A provider outage never
blocks a job: end a chain with :class:`StaticTable`.

Errors: every provider failure is a :class:`SignalError` naming the
provider and what went wrong (HTTP status, timeout, garbage in the body).
"""

from __future__ import annotations

import base64
import csv
import json
import logging
import math
import re
import socket
import statistics
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlencode
from urllib.request import Request, urlopen

import numpy as np

log = logging.getLogger(__name__)

UTC = UTC
LBS_PER_MWH_TO_G_PER_KWH = 0.45359237     # 1 lb = 453.59237 g; 1 MWh = 1000 kWh
STATIC_TABLE_FILE = Path(__file__).with_name("grid_intensity.toml")
DEFAULT_TIMEOUT_S = 5.0


class SignalError(Exception):
    """A provider could not answer; ``provider`` names it."""

    def __init__(self, provider: str, message: str):
        super().__init__(message)
        self.provider = provider


@dataclass(frozen=True)
class IntensityPoint:
    start: datetime                 # UTC, inclusive
    end: datetime                   # UTC, exclusive
    g_per_kwh: float
    source: str                     # provider + what exactly (zone, column, year, ...)
    kind: str = "average"           # "average" (grid mix) or "marginal"
    forecast: bool = False
    provider: str = ""
    fallback: tuple[str, ...] = ()  # why providers tried before this one did not answer


class CarbonSignal(Protocol):
    name: str

    def intensity(self, region: str, at: datetime | None = None) -> IntensityPoint: ...

    def forecast(self, region: str, start: datetime, end: datetime) -> list[IntensityPoint]: ...


# ----------------------------------------------------------------- helpers
def utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def now_utc() -> datetime:
    return datetime.now(UTC)


def parse_time(value: Any, provider: str) -> datetime:
    try:
        if isinstance(value, (int, float)):
            return datetime.fromtimestamp(float(value), UTC)
        text = str(value).strip()
        if text.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(text), UTC)
        return utc(datetime.fromisoformat(text))
    except (TypeError, ValueError, OverflowError) as exc:
        raise SignalError(provider, f"bad timestamp {value!r}") from exc


def check_value(value: Any, provider: str, what: str = "intensity") -> float:
    if isinstance(value, bool):
        raise SignalError(provider, f"{what} is not a number: {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise SignalError(provider, f"{what} is not a number: {value!r}") from None
    if not math.isfinite(v) or v < 0:
        raise SignalError(provider, f"{what} out of range: {value!r}")
    return v


def _iso(dt: datetime) -> str:
    return utc(dt).strftime("%Y-%m-%dT%H:%M:%SZ")


def _overlapping(points: Sequence[IntensityPoint], start: datetime, end: datetime) -> list[IntensityPoint]:
    start, end = utc(start), utc(end)
    return [p for p in points if p.end > start and p.start < end]


def _with_ends(starts_values: list[tuple[datetime, float]],
               default_step: timedelta) -> list[tuple[datetime, datetime, float]]:
    """Give each (start, value) the next start as its end; the last one the
    median step (or ``default_step``)."""
    starts_values = sorted(starts_values)
    steps = [b[0] - a[0] for a, b in zip(starts_values, starts_values[1:]) if b[0] > a[0]]
    # median works on any ordered values with + and / (timedelta has both); typeshed allows numbers only
    step = statistics.median(steps) if steps else default_step  # pyright: ignore[reportArgumentType]
    out = []
    for i, (s, v) in enumerate(starts_values):
        e = starts_values[i + 1][0] if i + 1 < len(starts_values) else s + step
        out.append((s, e, v))
    return out


# ------------------------------------------------------------ static table
class StaticTable:
    """Annual average per country from the shipped table (source and year in
    every answer). Sub-national zones fall back to their country, said so."""

    name = "static"

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else STATIC_TABLE_FILE
        try:
            data = tomllib.loads(self.path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SignalError(self.name, f"intensity table {self.path}: {exc}") from exc
        self.meta = data["meta"]
        self.aliases = {k.upper(): v.upper() for k, v in data.get("aliases", {}).items()}
        self.regions = {k.upper(): v for k, v in data["regions"].items()}
        for code, entry in self.regions.items():
            check_value(entry["g_per_kwh"], self.name, f"{self.path}: {code}.g_per_kwh")

    def lookup(self, region: str) -> IntensityPoint:
        code = self.aliases.get(region.upper(), region.upper())
        note = ""
        if code not in self.regions and "-" in code:
            country = code.split("-", 1)[0]
            if country in self.regions:
                note = f"; national figure used for zone {region}"
                code = country
        if code not in self.regions:
            raise SignalError(self.name, f"unknown grid region {region!r}: not in the static table "
                                         f"{self.path.name} (known: {', '.join(sorted(self.regions))})")
        entry = self.regions[code]
        year = int(self.meta["year"])
        checked = "" if entry.get("checked", False) else "; figure not re-checked against the source for this release"
        source = (f"static: {self.meta['source']}, {entry.get('name', code)} {year} annual average"
                  f"{note}{checked}")
        return IntensityPoint(datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC),
                              float(entry["g_per_kwh"]), source, kind=self.meta.get("kind", "average"),
                              provider=self.name)

    def intensity(self, region: str, at: datetime | None = None) -> IntensityPoint:
        at = utc(at) if at else now_utc()
        p = self.lookup(region)
        hour = at.replace(minute=0, second=0, microsecond=0)
        return replace(p, start=hour, end=hour + timedelta(hours=1))

    def forecast(self, region: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        p = self.lookup(region)
        return [replace(p, start=utc(start), end=utc(end), forecast=True)]


# --------------------------------------------------------------- CSV trace
_TIME_COLUMNS = ("datetime (utc)", "datetime", "zone_datetime", "time (utc)", "time", "timestamp")
_VALUE_COLUMNS = {
    "direct": ("carbon intensity gco2eq/kwh (direct)", "carbon_intensity_avg", "carbon_intensity_direct"),
    "lca": ("carbon intensity gco2eq/kwh (lca)", "carbon intensity gco2eq/kwh (life cycle)",
            "carbon_intensity_avg", "carbon_intensity_lca"),
}
# a lone intensity column (``Time,Carbon Intensity``), its unit stripped: the default when there is no direct one
_PLAIN_VALUE_COLUMNS = ("carbon intensity", "carbon_intensity", "intensity")
_ZONE_COLUMNS = ("zone id", "zone_id", "zone_name", "zone name")
_G_PER_KWH_UNITS = {"g/kwh", "gco2/kwh", "gco2e/kwh", "gco2eq/kwh"}       # as _norm spells them
_UNIT_RE = re.compile(r"([a-z0-9_]*)\s*/\s*([a-z0-9]+)")
_DEFAULT_STEP_S = 3600.0        # a one-row trace: an hour, as Electricity Maps exports are hourly
_EPS_S = 1e-6                   # timestamps come from text: compare seconds with this slack


def _norm(header: str) -> str:
    return " ".join(header.replace("\ufeff", "").replace("₂", "2").strip().lower().split())


def _unit_of(header: str) -> str | None:
    """The unit a header names (``gco2eq/kwh``, ``lb/mwh``) or None."""
    m = _UNIT_RE.search(_norm(header))
    return f"{m.group(1).strip('_')}/{m.group(2)}" if m else None


def _bare(header: str) -> str:
    """A header without its unit and brackets: ``Carbon Intensity (gCO2e/kWh)`` -> ``carbon intensity``."""
    text = _UNIT_RE.sub(" ", _norm(header))
    return " ".join(text.replace("(", " ").replace(")", " ").replace("[", " ").replace("]", " ").split())


def _span(seconds: float) -> str:
    """``1800`` -> ``30 min``, ``5400`` -> ``1 h 30 min``."""
    s = int(round(seconds))
    d, r = divmod(s, 86400)
    h, r = divmod(r, 3600)
    m, sec = divmod(r, 60)
    return " ".join(f"{v} {u}" for v, u in ((d, "d"), (h, "h"), (m, "min"), (sec, "s")) if v) or f"{seconds:g} s"


def _step_of(times: list[float]) -> float:
    """A trace's step: its most common row spacing (the smaller on a tie), so
    holes, however many, do not stretch it; an hour for a single row."""
    if len(times) < 2:
        return _DEFAULT_STEP_S
    spacings, counts = np.unique(np.round(np.diff(np.asarray(times)), 3), return_counts=True)
    return float(spacings[int(np.argmax(counts))])


def _iso_s(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


@dataclass(frozen=True, eq=False)
class _Series:
    """One zone of a trace, parsed once: row ``i`` holds ``values[i]`` on
    ``[starts[i], ends[i])`` (seconds since the epoch, both strictly
    increasing, ``ends[i] <= starts[i + 1]``); ``ends[i] < starts[i + 1]``
    exactly where a gap follows row ``i``."""

    starts: np.ndarray              # float64 [n]
    ends: np.ndarray                # float64 [n]
    step_s: float                   # most common spacing of the rows
    start_dt: list[datetime]        # the same times as datetimes (exact, for the answers)
    end_dt: list[datetime]
    values: list[float]
    sources: list[str]              # per row: the trace's source, plus a note where the value was carried
    gaps: list[tuple[float, float]]  # (start, end) s of each hole longer than one step
    carried: int                    # rows whose value was carried over a hole of up to one step
    skipped: int                    # rows with an empty value

    def gap_at(self, t: float) -> tuple[float, float] | None:
        i = int(np.searchsorted(self.starts, t, "right")) - 1
        if 0 <= i < self.starts.size - 1 and t >= self.ends[i]:
            return float(self.ends[i]), float(self.starts[i + 1])
        return None


class CsvTrace:
    """Replay a carbon-intensity CSV trace as a signal.

    Accepts the Electricity Maps data-portal exports (``Datetime (UTC),
    Country,Zone Name,Zone Id,Carbon Intensity gCO₂eq/kWh (direct),Carbon
    Intensity gCO₂eq/kWh (LCA),...`` and the newer ``Zone id``/``(Life
    cycle)`` spelling), the older ``datetime,timestamp,zone_name,
    carbon_intensity_avg,...`` files, and plain ``Time,Carbon Intensity``
    traces (UTC ``YYYY-MM-DD HH:MM:SS``, gCO2e/kWh). ``column`` picks the
    value column: ``"direct"`` or ``"lca"`` (life cycle) where an export
    has both, or any header name as written in the file; the default is the
    direct column, else the file's only carbon-intensity column. The trace
    answers as its own forecast (perfect foresight: say so when comparing
    schedulers).

    The file is parsed once, here, into arrays; lookups are binary searches.
    Row ``i`` holds until the next row, at most one step (the most common row
    spacing) past its own hole: a hole of up to one step carries the value
    and says so in the answer's ``source``; a longer one is a gap, reported
    by :meth:`status`, refused by :meth:`intensity` and left out of
    :meth:`forecast`. Bad input (times out of order or repeated, negative or
    non-numeric values, a unit other than g/kWh, no time column, an empty
    file) is a :class:`SignalError` naming the file and line; nothing is
    repaired.
    """

    def __init__(self, path: str | Path, column: str | None = None, region: str | None = None):
        self.path = Path(path)
        self.name = f"csv:{self.path.name}"
        try:
            with self.path.open(newline="", encoding="utf-8-sig") as f:
                self._parse(csv.reader(f), column)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise SignalError(self.name, f"cannot read {self.path}: {exc}") from exc
        self.default_region = region.upper() if region else None

    # ------------------------------------------------------------ parsing
    def _bad(self, line: int, message: str) -> SignalError:
        return SignalError(self.name, f"{self.path}: line {line}: {message}")

    def _pick_value_column(self, header: list[str], cols: dict[str, int], column: str | None) -> int:
        listed = ", ".join(repr(h.strip()) for h in header)
        if column is None or column in _VALUE_COLUMNS:
            names = _VALUE_COLUMNS[column or "direct"]
            hit = next((cols[c] for c in names if c in cols), None)
            if hit is None and column is None:
                plain = [i for i, h in enumerate(header) if _bare(h) in _PLAIN_VALUE_COLUMNS]
                hit = plain[0] if len(plain) == 1 else None
            if hit is None:
                want = f"{column} intensity column" if column else "intensity column"
                raise self._bad(1, f"not an Electricity Maps export: no {want} (one of {names}"
                                   f"{'' if column else ' or a single ' + repr('Carbon Intensity')}); "
                                   f"the file has columns {listed}")
            return hit
        hit = cols.get(_norm(column))
        if hit is None:
            raise self._bad(1, f"no column {column!r}; the file has columns {listed} "
                               f"(or say {' / '.join(repr(k) for k in _VALUE_COLUMNS)})")
        return hit

    def _parse(self, reader, column: str | None) -> None:
        header = next(reader, None)
        if not header or not any(h.strip() for h in header):
            raise self._bad(1, "the file is empty (no header)")
        cols: dict[str, int] = {}
        for i, h in enumerate(header):
            cols.setdefault(_norm(h), i)
        t_name = next((c for c in _TIME_COLUMNS if c in cols), None)
        if t_name is None:
            raise self._bad(1, f"not an Electricity Maps export: no time column (one of {_TIME_COLUMNS}); "
                               f"the file has columns {', '.join(repr(h.strip()) for h in header)}")
        t_col = cols[t_name]
        v_col = self._pick_value_column(header, cols, column)
        self.column = header[v_col].strip()
        unit = _unit_of(self.column)
        if unit is not None and unit not in _G_PER_KWH_UNITS:
            raise self._bad(1, f"column {self.column!r} is in {unit!r}; only g/kWh (gCO2/kWh, gCO2e/kWh, "
                               f"gCO₂eq/kWh) is read, nothing is converted")
        self.unit = unit or "gCO2e/kWh (the header names no unit)"
        z_col = next((cols[c] for c in _ZONE_COLUMNS if c in cols), None)
        need = max(c for c in (t_col, v_col, z_col) if c is not None)

        rows: dict[str, tuple[list[float], list[datetime], list[float]]] = {}
        last: dict[str, tuple[float, int]] = {}
        skipped: dict[str, int] = {}
        spacing: dict[str, list[float]] = {}       # every row's time, empty values too: the step
        line = reader.line_num
        for row in reader:
            first_line, line = line + 1, reader.line_num
            if not any(c.strip() for c in row):
                continue                            # a blank line
            if len(row) <= need:
                raise self._bad(first_line, f"{len(row)} fields, the header has {len(header)} "
                                            f"(a cut-off row?)")
            zone = row[z_col].strip().upper() if z_col is not None else ""
            raw_t = row[t_col].strip()
            if not raw_t:
                raise self._bad(first_line, f"no time in column {header[t_col].strip()!r}")
            try:
                dt = datetime.fromisoformat(raw_t)             # the usual case, fast
                dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
            except ValueError:
                try:
                    dt = parse_time(raw_t, self.name)          # epoch seconds
                except SignalError:
                    raise self._bad(first_line, f"bad timestamp {raw_t!r} in column "
                                                f"{header[t_col].strip()!r}") from None
            t = dt.timestamp()
            if zone in last:
                prev_t, prev_line = last[zone]
                if abs(t - prev_t) <= _EPS_S:
                    raise self._bad(first_line, f"duplicate timestamp {dt.isoformat()} (also on line {prev_line})"
                                                + (f" for zone {zone}" if zone else ""))
                if t < prev_t:
                    where = f" for zone {zone}" if zone else ""
                    raise self._bad(first_line, f"time goes backwards: {dt.isoformat()} after {_iso_s(prev_t)} "
                                                f"on line {prev_line}{where}; rows must be in time order")
            last[zone] = (t, first_line)
            spacing.setdefault(zone, []).append(t)
            raw = row[v_col].strip()
            if raw == "":
                skipped[zone] = skipped.get(zone, 0) + 1   # a missing value: a hole in the trace
                continue
            try:
                v = float(raw)
            except ValueError:
                raise self._bad(first_line, f"intensity {raw!r} in column {self.column!r} is not a number") from None
            if not math.isfinite(v):
                raise self._bad(first_line, f"intensity {raw!r} in column {self.column!r} is not a finite number")
            if v < 0:
                raise self._bad(first_line, f"intensity {raw!r} in column {self.column!r} is negative")
            ts, dts, vs = rows.setdefault(zone, ([], [], []))
            ts.append(t)
            dts.append(dt)
            vs.append(v)
        self.skipped = sum(skipped.values())
        if not rows:
            raise SignalError(self.name, f"{self.path}: no intensity values in column {self.column!r}")
        self._series = {z: self._build(z, ts, dts, vs, skipped.get(z, 0), _step_of(spacing[z]))
                        for z, (ts, dts, vs) in rows.items()}

    def _build(self, zone: str, ts: list[float], dts: list[datetime], vs: list[float], skipped: int,
               step_s: float) -> _Series:
        starts = np.asarray(ts, dtype=np.float64)
        n = starts.size
        diffs = np.diff(starts)
        step = timedelta(seconds=step_s)
        ends = starts + step_s
        base = f"{self.name}: {zone or 'unnamed zone'}, column {self.column!r} (trace replay)"
        sources = [base] * n
        end_dt = [d + step for d in dts]
        # the next row's start is the end, unless more than one step is missing in between (a gap)
        follow = diffs <= 2 * step_s + _EPS_S
        hole = follow & (diffs > step_s + _EPS_S)
        ends[:-1] = np.where(follow, starts[1:], ends[:-1])
        for i in np.flatnonzero(follow).tolist():
            end_dt[i] = dts[i + 1]
        missing = (diffs - step_s).tolist()
        for i in np.flatnonzero(hole).tolist():
            sources[i] = f"{base[:-1]}; carried over a {_span(missing[i])} gap)"
        gaps = [(float(ends[i]), float(starts[i + 1])) for i in np.flatnonzero(~follow).tolist()]
        carried = int(np.count_nonzero(hole))
        starts.setflags(write=False)
        ends.setflags(write=False)
        return _Series(starts, ends, step_s, dts, end_dt, vs, sources, gaps, carried, skipped)

    # ------------------------------------------------------------ lookups
    @property
    def zones(self) -> list[str]:
        return sorted(z for z in self._series if z)

    def _zone(self, region: str) -> str:
        region = (region or self.default_region or "").upper()
        if region in self._series:
            return region
        if len(self._series) == 1:
            only = next(iter(self._series))
            if only == "" or not region:
                return only
        raise SignalError(self.name, f"trace has no zone {region!r} (zones: {self.zones or ['unnamed']})")

    def _point(self, ser: _Series, i: int, forecast: bool) -> IntensityPoint:
        return IntensityPoint(ser.start_dt[i], ser.end_dt[i], ser.values[i], ser.sources[i],
                              forecast=forecast, provider=self.name)

    def _zone_status(self, zone: str) -> dict[str, Any]:
        ser = self._series[zone]
        first_gap = ser.gaps[0] if ser.gaps else None
        return {
            "path": str(self.path), "zone": zone or None, "column": self.column, "unit": self.unit,
            "rows": int(ser.starts.size), "step_s": ser.step_s,
            "first": ser.start_dt[0].isoformat(), "last": ser.start_dt[-1].isoformat(),
            "end": ser.end_dt[-1].isoformat(),
            "gaps": len(ser.gaps), "gap_s": float(sum(b - a for a, b in ser.gaps)),
            "first_gap_start": _iso_s(first_gap[0]) if first_gap else None,
            "first_gap_end": _iso_s(first_gap[1]) if first_gap else None,
            "carried": ser.carried, "skipped": ser.skipped,
        }

    def status(self, region: str | None = None) -> dict[str, Any]:
        """What the trace holds: ``rows``, ``step_s``, ``first``/``last`` row
        time and ``end`` of coverage (ISO UTC), ``gaps`` (count, and
        ``gap_s`` in all), ``first_gap_start``/``first_gap_end`` (None when
        there is no gap), ``carried`` (holes of up to one step bridged by the
        previous value), ``skipped`` (rows with an empty value), plus path,
        zone, column and unit. For a file with several zones and no
        ``region``, the totals over all zones with each zone's own under
        ``zones``."""
        if region is not None or len(self._series) == 1:
            return self._zone_status(self._zone(region or ""))
        per = {z: self._zone_status(z) for z in sorted(self._series)}
        with_gap = [s for s in per.values() if s["first_gap_start"]]
        first_gap = min(with_gap, key=lambda s: s["first_gap_start"]) if with_gap else None
        steps = {s["step_s"] for s in per.values()}
        return {
            "path": str(self.path), "zone": None, "column": self.column, "unit": self.unit,
            "rows": sum(s["rows"] for s in per.values()), "step_s": steps.pop() if len(steps) == 1 else None,
            "first": min(s["first"] for s in per.values()), "last": max(s["last"] for s in per.values()),
            "end": max(s["end"] for s in per.values()),
            "gaps": sum(s["gaps"] for s in per.values()), "gap_s": sum(s["gap_s"] for s in per.values()),
            "first_gap_start": first_gap["first_gap_start"] if first_gap else None,
            "first_gap_end": first_gap["first_gap_end"] if first_gap else None,
            "carried": sum(s["carried"] for s in per.values()), "skipped": self.skipped,
            "zones": per,
        }

    def intensity(self, region: str, at: datetime | None = None) -> IntensityPoint:
        zone = self._zone(region)
        at = utc(at) if at else now_utc()
        ser = self._series[zone]
        t = at.timestamp()
        i = int(np.searchsorted(ser.starts, t, "right")) - 1
        if i < 0 or t >= ser.ends[-1]:
            raise SignalError(self.name, f"trace covers {ser.start_dt[0].isoformat()} .. "
                                         f"{ser.end_dt[-1].isoformat()}, not {at.isoformat()}")
        if t >= ser.ends[i]:
            a, b = float(ser.ends[i]), float(ser.starts[i + 1])
            raise SignalError(self.name, f"trace has a gap from {_iso_s(a)} to {_iso_s(b)} ({_span(b - a)} with no "
                                         f"rows{' for zone ' + zone if zone else ''}), so no value at "
                                         f"{at.isoformat()}; a value is carried for at most one step "
                                         f"({_span(ser.step_s)})")
        return self._point(ser, i, False)

    def forecast(self, region: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        zone = self._zone(region)
        ser = self._series[zone]
        t0, t1 = utc(start).timestamp(), utc(end).timestamp()
        lo = int(np.searchsorted(ser.ends, t0, "right"))       # first row ending after start
        hi = int(np.searchsorted(ser.starts, t1, "left"))      # rows starting before end
        if lo >= hi:
            gap = ser.gap_at(t0)
            inside = f" (inside a gap from {_iso_s(gap[0])} to {_iso_s(gap[1])})" if gap and t1 <= gap[1] else ""
            raise SignalError(self.name, f"trace has no values between {utc(start).isoformat()} and "
                                         f"{utc(end).isoformat()}{inside}")
        return [self._point(ser, i, True) for i in range(lo, hi)]


# -------------------------------------------------------------------- HTTP
class HttpSignal:
    """Shared HTTP plumbing: GET + JSON, a timeout, errors as SignalError.
    Messages never include credentials (headers) or the query string."""

    name = "http"

    def __init__(self, base_url: str, timeout_s: float = DEFAULT_TIMEOUT_S,
                 regions: dict[str, str] | None = None, clock: Callable[[], datetime] = now_utc):
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.regions = {k.upper(): v for k, v in (regions or {}).items()}
        self.clock = clock

    def provider_region(self, region: str) -> str:
        return self.regions.get(region.upper(), region)

    def _get(self, path: str, params: dict | None = None, headers: dict | None = None) -> Any:
        url = f"{self.base_url}{path}"
        full = url + ("?" + urlencode(params) if params else "")
        req = Request(full, headers={"Accept": "application/json", "User-Agent": "greenlight", **(headers or {})})
        try:
            with urlopen(req, timeout=self.timeout_s) as resp:
                body = resp.read()
        except HTTPError as exc:
            detail = exc.read()[:200].decode("utf-8", "replace").strip()
            raise SignalError(self.name, f"HTTP {exc.code} from {url}" + (f": {detail}" if detail else "")) from exc
        except TimeoutError as exc:
            raise SignalError(self.name, f"no answer from {url} within {self.timeout_s:g} s") from exc
        except URLError as exc:
            if isinstance(exc.reason, (socket.timeout, TimeoutError)):
                raise SignalError(self.name, f"no answer from {url} within {self.timeout_s:g} s") from exc
            raise SignalError(self.name, f"cannot reach {url}: {exc.reason}") from exc
        except OSError as exc:
            raise SignalError(self.name, f"cannot reach {url}: {exc}") from exc
        try:
            return json.loads(body)
        except ValueError as exc:
            raise SignalError(self.name, f"{url} answered with something that is not JSON: {body[:80]!r}") from exc

    def _field(self, obj: Any, key: str, where: str) -> Any:
        if not isinstance(obj, dict) or key not in obj:
            raise SignalError(self.name, f"{where}: missing {key!r} in the answer")
        return obj[key]


class ElectricityMaps(HttpSignal):
    """Electricity Maps API v3 (``auth-token`` header). Zones are Electricity
    Maps zone ids ("DE", "US-CAL-CISO")."""

    name = "electricitymaps"

    def __init__(self, token: str, base_url: str = "https://api.electricitymap.org/v3", **kw):
        super().__init__(base_url, **kw)
        self._headers = {"auth-token": token}

    def _point(self, obj: dict, zone: str, forecast: bool, step: timedelta = timedelta(hours=1)) -> IntensityPoint:
        s = parse_time(self._field(obj, "datetime", zone), self.name)
        v = check_value(self._field(obj, "carbonIntensity", zone), self.name, f"zone {zone} carbonIntensity")
        factor = obj.get("emissionFactorType", "")
        est = ", estimated by Electricity Maps" if obj.get("isEstimated") else ""
        return IntensityPoint(s, s + step, v, f"electricitymaps v3: zone {zone}{' ' + factor if factor else ''}{est}",
                              forecast=forecast, provider=self.name)

    def intensity(self, region: str, at: datetime | None = None) -> IntensityPoint:
        zone = self.provider_region(region)
        now = self.clock()
        if at is None or abs(utc(at) - now) < timedelta(hours=1):
            data = self._get("/carbon-intensity/latest", {"zone": zone}, self._headers)
        else:
            data = self._get("/carbon-intensity/past", {"zone": zone, "datetime": _iso(at)}, self._headers)
        return self._point(data, zone, False)

    def forecast(self, region: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        zone = self.provider_region(region)
        data = self._get("/carbon-intensity/forecast", {"zone": zone}, self._headers)
        items = self._field(data, "forecast", f"zone {zone}")
        if not isinstance(items, list) or not items:
            raise SignalError(self.name, f"zone {zone}: empty forecast")
        raw = [self._point(o, zone, True) for o in items]
        timed = _with_ends([(p.start, p.g_per_kwh) for p in raw], timedelta(hours=1))
        pts = [replace(raw[0], start=s, end=e, g_per_kwh=v) for s, e, v in timed]
        out = _overlapping(pts, start, end)
        if not out:
            raise SignalError(self.name, f"zone {zone}: forecast does not cover {_iso(start)} .. {_iso(end)}")
        return out


class WattTime(HttpSignal):
    """WattTime API v3: log in with HTTP basic auth for a bearer token (kept
    25 minutes), then ``/v3/forecast`` (whose first point is the current
    value) and ``/v3/historical``. MOER values in lbs/MWh are converted to
    g/kWh (x 0.45359237). Regions are WattTime region ids ("CAISO_NORTH")."""

    name = "watttime"
    TOKEN_TTL_S = 25 * 60

    def __init__(self, username: str, password: str, base_url: str = "https://api.watttime.org",
                 signal_type: str = "co2_moer", **kw):
        super().__init__(base_url, **kw)
        self._basic = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self.signal_type = signal_type
        self._token: str | None = None
        self._token_at = 0.0

    def _auth(self, refresh: bool = False) -> dict:
        if refresh or self._token is None or time.monotonic() - self._token_at > self.TOKEN_TTL_S:
            data = self._get("/login", headers={"Authorization": self._basic})
            token = self._field(data, "token", "login")
            if not isinstance(token, str) or not token:
                raise SignalError(self.name, "login answered without a token")
            self._token, self._token_at = token, time.monotonic()
        return {"Authorization": f"Bearer {self._token}"}

    def _authed_get(self, path: str, params: dict) -> Any:
        try:
            return self._get(path, params, self._auth())
        except SignalError as exc:
            if "HTTP 401" not in str(exc):
                raise
            return self._get(path, params, self._auth(refresh=True))  # token expired early

    def _series(self, data: Any, region: str, forecast: bool) -> list[IntensityPoint]:
        meta = self._field(data, "meta", region)
        units = str(meta.get("units", "")).lower()
        if units == "lbs_co2_per_mwh":
            factor = LBS_PER_MWH_TO_G_PER_KWH
        elif units in ("g_co2_per_kwh", "kg_co2_per_mwh"):
            factor = 1.0
        else:
            raise SignalError(self.name, f"region {region}: unknown units {units!r}")
        items = self._field(data, "data", region)
        if not isinstance(items, list) or not items:
            raise SignalError(self.name, f"region {region}: no data points")
        period = timedelta(seconds=float(meta.get("data_point_period_seconds", 300)))
        kind = "marginal" if "moer" in self.signal_type else "average"
        out = []
        for o in items:
            s = parse_time(self._field(o, "point_time", region), self.name)
            v = check_value(self._field(o, "value", region), self.name, f"region {region} value") * factor
            out.append(IntensityPoint(s, s + period, v, f"watttime v3: {region} {self.signal_type} "
                                      f"({units} converted to g/kWh)" if factor != 1.0 else
                                      f"watttime v3: {region} {self.signal_type}",
                                      kind=kind, forecast=forecast, provider=self.name))
        return sorted(out, key=lambda p: p.start)

    def intensity(self, region: str, at: datetime | None = None) -> IntensityPoint:
        r = self.provider_region(region)
        now = self.clock()
        at = utc(at) if at else now
        if abs(at - now) < timedelta(minutes=10):
            pts = self._series(self._authed_get("/v3/forecast", {"region": r, "signal_type": self.signal_type}),
                               r, False)
            return replace(pts[0], forecast=False)
        pts = self._series(self._authed_get("/v3/historical", {
            "region": r, "signal_type": self.signal_type,
            "start": _iso(at - timedelta(minutes=5)), "end": _iso(at + timedelta(minutes=5))}), r, False)
        for p in pts:
            if p.start <= at < p.end:
                return p
        return min(pts, key=lambda p: abs(p.start - at))

    def forecast(self, region: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        r = self.provider_region(region)
        pts = self._series(self._authed_get("/v3/forecast", {
            "region": r, "signal_type": self.signal_type,
            "horizon_hours": max(1, math.ceil((utc(end) - self.clock()).total_seconds() / 3600))}), r, True)
        out = _overlapping(pts, start, end)
        if not out:
            raise SignalError(self.name, f"region {r}: forecast does not cover {_iso(start)} .. {_iso(end)}")
        return out


class UkCarbonIntensity(HttpSignal):
    """The GB national carbon-intensity API (no key): half-hour periods with
    ``forecast`` and, once known, ``actual`` gCO2/kWh."""

    name = "carbonintensity.org.uk"
    REGIONS = {"GB", "UK", "GB-NATIONAL"}

    def __init__(self, base_url: str = "https://api.carbonintensity.org.uk", **kw):
        super().__init__(base_url, **kw)

    @staticmethod
    def _fmt(dt: datetime) -> str:
        return utc(dt).strftime("%Y-%m-%dT%H:%MZ")

    def _check_region(self, region: str) -> None:
        if region.upper() not in self.REGIONS:
            raise SignalError(self.name, f"covers Great Britain only (region 'GB'), not {region!r}")

    def _periods(self, data: Any, forecast: bool) -> list[IntensityPoint]:
        items = self._field(data, "data", "GB")
        if not isinstance(items, list) or not items:
            raise SignalError(self.name, "no periods in the answer")
        out = []
        for o in items:
            s = parse_time(self._field(o, "from", "GB"), self.name)
            e = parse_time(self._field(o, "to", "GB"), self.name)
            inten = self._field(o, "intensity", "GB")
            actual = inten.get("actual") if isinstance(inten, dict) else None
            use_actual = actual is not None and not forecast
            v = check_value(actual if use_actual else self._field(inten, "forecast", "GB"), self.name)
            what = "actual" if use_actual else "forecast"
            out.append(IntensityPoint(s, e, v, f"carbonintensity.org.uk: GB national, {what}",
                                      forecast=not use_actual, provider=self.name))
        return sorted(out, key=lambda p: p.start)

    def intensity(self, region: str, at: datetime | None = None) -> IntensityPoint:
        self._check_region(region)
        if at is None:
            return self._periods(self._get("/intensity"), False)[0]
        at = utc(at)
        frm = at.replace(minute=30 if at.minute >= 30 else 0, second=0, microsecond=0)
        pts = self._periods(self._get(f"/intensity/{quote(self._fmt(frm), safe=':')}"
                                      f"/{quote(self._fmt(frm + timedelta(minutes=30)), safe=':')}"),
                            False)
        for p in pts:
            if p.start <= at < p.end:
                return p
        raise SignalError(self.name, f"no period covering {at.isoformat()} in the answer")

    def forecast(self, region: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        self._check_region(region)
        pts = self._periods(self._get(f"/intensity/{quote(self._fmt(start), safe=':')}"
                                      f"/{quote(self._fmt(end), safe=':')}"), True)
        out = _overlapping(pts, start, end)
        if not out:
            raise SignalError(self.name, f"no periods between {_iso(start)} and {_iso(end)}")
        return out


class CarbonAwareSdk(HttpSignal):
    """A Carbon Aware SDK Web API deployment (``/emissions/bylocation``,
    ``/emissions/forecasts/current``). Locations are its location names
    ("westus", "northeurope"); values are g/kWh as configured there."""

    name = "carbon-aware-sdk"

    def intensity(self, region: str, at: datetime | None = None) -> IntensityPoint:
        loc = self.provider_region(region)
        at = utc(at) if at else self.clock()
        data = self._get("/emissions/bylocation", {"location": loc, "time": _iso(at - timedelta(hours=1)),
                                                   "toTime": _iso(at + timedelta(minutes=1))})
        if not isinstance(data, list) or not data:
            raise SignalError(self.name, f"location {loc}: no emissions data around {at.isoformat()}")
        pts = []
        for o in data:
            s = parse_time(self._field(o, "time", loc), self.name)
            v = check_value(self._field(o, "rating", loc), self.name, f"location {loc} rating")
            pts.append((s, v))
        timed = _with_ends(pts, timedelta(minutes=5))
        before = [t for t in timed if t[0] <= at] or timed[:1]
        s, e, v = before[-1]
        return IntensityPoint(s, max(e, s + timedelta(seconds=1)), v, f"carbon-aware-sdk: {loc} emissions",
                              provider=self.name)

    def forecast(self, region: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        loc = self.provider_region(region)
        data = self._get("/emissions/forecasts/current", {"location": loc, "dataStartAt": _iso(start),
                                                          "dataEndAt": _iso(end)})
        if not isinstance(data, list) or not data:
            raise SignalError(self.name, f"location {loc}: no forecast")
        items = self._field(data[0], "forecastData", loc)
        if not isinstance(items, list) or not items:
            raise SignalError(self.name, f"location {loc}: empty forecastData")
        out = []
        for o in items:
            s = parse_time(self._field(o, "timestamp", loc), self.name)
            minutes = check_value(o.get("duration", 5), self.name, "duration")
            v = check_value(self._field(o, "value", loc), self.name, f"location {loc} value")
            out.append(IntensityPoint(s, s + timedelta(minutes=minutes), v, f"carbon-aware-sdk: {loc} forecast",
                                      forecast=True, provider=self.name))
        out = _overlapping(sorted(out, key=lambda p: p.start), start, end)
        if not out:
            raise SignalError(self.name, f"location {loc}: forecast does not cover {_iso(start)} .. {_iso(end)}")
        return out


# ---------------------------------------------------------------- fallback
class FallbackChain:
    """Ask providers in order; the first answer wins and carries, in
    ``fallback``, why each earlier provider did not answer. Raises
    :class:`SignalError` only when every provider failed."""

    name = "fallback"

    def __init__(self, providers: Sequence[CarbonSignal]):
        if not providers:
            raise ValueError("FallbackChain needs at least one provider")
        self.providers = list(providers)

    def _try(self, call: Callable[[CarbonSignal], Any], what: str):
        failures: list[str] = []
        for p in self.providers:
            try:
                return call(p), tuple(failures)
            except SignalError as exc:
                failures.append(f"{p.name}: {exc}")
                log.warning("carbon signal %s failed for %s: %s; trying the next", p.name, what, exc)
            except Exception as exc:  # a provider bug must not block a job either
                failures.append(f"{p.name}: unexpected {type(exc).__name__}: {exc}")
                log.exception("carbon signal %s crashed for %s", p.name, what)
        raise SignalError(self.name, f"every provider failed for {what}: " + "; ".join(failures))

    def intensity(self, region: str, at: datetime | None = None) -> IntensityPoint:
        point, failures = self._try(lambda p: p.intensity(region, at), f"intensity({region})")
        return replace(point, fallback=failures)

    def forecast(self, region: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        points, failures = self._try(lambda p: p.forecast(region, start, end), f"forecast({region})")
        return [replace(p, fallback=failures) for p in points]


def describe(point: IntensityPoint) -> str:
    """One line for a report: the source, and any fallback that led to it."""
    if not point.fallback:
        return point.source
    return f"{point.source} (fallback: {'; '.join(point.fallback)})"
