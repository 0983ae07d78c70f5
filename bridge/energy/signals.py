"""Carbon signals: grid carbon intensity now and ahead, from pluggable providers.

Every provider has the same two calls (times are timezone-aware UTC; a
naive datetime is taken as UTC):

- ``intensity(region, at=None) -> IntensityPoint``: the intensity in force at
  ``at`` (now when ``None``);
- ``forecast(region, start, end) -> list[IntensityPoint]``: the series
  covering ``[start, end)``, ordered by time (the scheduler's input).

Providers: :class:`StaticTable` (shipped annual table), :class:`CsvTrace`
(Electricity Maps CSV export, both header generations), and HTTP clients
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
import bisect
import csv
import json
import logging
import math
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
_TIME_COLUMNS = ("datetime (utc)", "datetime", "zone_datetime", "timestamp")
_VALUE_COLUMNS = {
    "direct": ("carbon intensity gco2eq/kwh (direct)", "carbon_intensity_avg", "carbon_intensity_direct"),
    "lca": ("carbon intensity gco2eq/kwh (lca)", "carbon intensity gco2eq/kwh (life cycle)",
            "carbon_intensity_avg", "carbon_intensity_lca"),
}
_ZONE_COLUMNS = ("zone id", "zone_id", "zone_name", "zone name")


def _norm(header: str) -> str:
    return " ".join(header.replace("\ufeff", "").replace("₂", "2").strip().lower().split())


class CsvTrace:
    """Replay an Electricity Maps CSV export as a signal.

    Accepts the data-portal exports (``Datetime (UTC),Country,Zone Name,Zone
    Id,Carbon Intensity gCO₂eq/kWh (direct),Carbon Intensity gCO₂eq/kWh
    (LCA),...`` and the newer ``Zone id``/``(Life cycle)`` spelling) and the
    older ``datetime,timestamp,zone_name,carbon_intensity_avg,...`` files.
    ``column`` picks direct or life-cycle (``"lca"``) intensity where the
    file has both. The trace answers as its own forecast (perfect foresight:
    say so when comparing schedulers).
    """

    def __init__(self, path: str | Path, column: str = "direct", region: str | None = None):
        if column not in _VALUE_COLUMNS:
            raise ValueError(f"column must be one of {sorted(_VALUE_COLUMNS)}, got {column!r}")
        self.path = Path(path)
        self.name = f"csv:{self.path.name}"
        try:
            with self.path.open(newline="", encoding="utf-8-sig") as f:
                reader = csv.reader(f)
                header = next(reader, None)
                rows = list(reader)
        except (OSError, UnicodeDecodeError) as exc:
            raise SignalError(self.name, f"cannot read {self.path}: {exc}") from exc
        if not header:
            raise SignalError(self.name, f"{self.path} is empty")
        cols = {_norm(h): i for i, h in enumerate(header)}
        t_col = next((c for c in _TIME_COLUMNS if c in cols), None)
        v_col = next((c for c in _VALUE_COLUMNS[column] if c in cols), None)
        z_col = next((c for c in _ZONE_COLUMNS if c in cols), None)
        if t_col is None or v_col is None:
            raise SignalError(self.name, f"{self.path}: not an Electricity Maps export: need a time column "
                                         f"{_TIME_COLUMNS} and an intensity column {_VALUE_COLUMNS[column]}; "
                                         f"got {header}")
        self.column = header[cols[v_col]]
        by_zone: dict[str, list[tuple[datetime, float]]] = {}
        self.skipped = 0
        for row in rows:
            if not row or len(row) <= max(cols[t_col], cols[v_col]):
                continue
            raw = row[cols[v_col]].strip()
            if raw == "":
                self.skipped += 1          # a gap in the trace
                continue
            zone = row[cols[z_col]].strip().upper() if z_col is not None else ""
            by_zone.setdefault(zone, []).append(
                (parse_time(row[cols[t_col]], self.name), check_value(raw, self.name, f"row value {raw!r}")))
        if not by_zone:
            raise SignalError(self.name, f"{self.path}: no intensity values")
        self._series = {z: _with_ends(v, timedelta(hours=1)) for z, v in by_zone.items()}
        self._starts = {z: [s for s, _, _ in v] for z, v in self._series.items()}
        self.default_region = region.upper() if region else None

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

    def _point(self, zone: str, s: datetime, e: datetime, v: float, forecast: bool) -> IntensityPoint:
        label = zone or "unnamed zone"
        return IntensityPoint(s, e, v, f"{self.name}: {label}, column {self.column!r} (trace replay)",
                              forecast=forecast, provider=self.name)

    def intensity(self, region: str, at: datetime | None = None) -> IntensityPoint:
        zone = self._zone(region)
        at = utc(at) if at else now_utc()
        series, starts = self._series[zone], self._starts[zone]
        i = bisect.bisect_right(starts, at) - 1
        if i < 0 or at >= series[i][1]:
            raise SignalError(self.name, f"trace covers {series[0][0].isoformat()} .. "
                                         f"{series[-1][1].isoformat()}, not {at.isoformat()}")
        s, e, v = series[i]
        return self._point(zone, s, e, v, False)

    def forecast(self, region: str, start: datetime, end: datetime) -> list[IntensityPoint]:
        zone = self._zone(region)
        pts = [self._point(zone, s, e, v, True) for s, e, v in self._series[zone]]
        out = _overlapping(pts, start, end)
        if not out:
            raise SignalError(self.name, f"trace has no values between {utc(start).isoformat()} and "
                                         f"{utc(end).isoformat()}")
        return out


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
