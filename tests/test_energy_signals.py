"""Carbon signals: static table, CSV trace replay (both Electricity Maps
header generations and the legacy style), and the HTTP clients against a
real loopback HTTP server serving the responses in tests/fixtures/energy
(no network), with timeouts and the fallback chain."""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest

from bridge.energy.signals import (
    LBS_PER_MWH_TO_G_PER_KWH,
    CarbonAwareSdk,
    CsvTrace,
    ElectricityMaps,
    FallbackChain,
    SignalError,
    StaticTable,
    UkCarbonIntensity,
    WattTime,
    describe,
)

UTC = UTC
FIX = Path(__file__).parent / "fixtures" / "energy"
NOW = datetime(2025, 3, 4, 10, 7, tzinfo=UTC)


def fixture(name: str) -> bytes:
    return (FIX / name).read_bytes()


# ------------------------------------------------------- loopback server
class Loopback:
    """A real HTTP server on 127.0.0.1:<os-chosen port>. ``routes`` maps a
    path to (status, body bytes, delay s); every request is recorded."""

    def __init__(self):
        self.routes: dict[str, tuple[int, bytes, float]] = {}
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                parts = urlsplit(self.path)
                outer.requests.append({"path": parts.path, "query": parse_qs(parts.query),
                                       "headers": {k.lower(): v for k, v in self.headers.items()}})
                status, body, delay = outer.routes.get(parts.path, (404, b'{"error": "no route"}', 0.0))
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def route(self, path: str, body: bytes | str, status: int = 200, delay: float = 0.0):
        self.routes[path] = (status, body.encode() if isinstance(body, str) else body, delay)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def http():
    server = Loopback()
    yield server
    server.close()


# ------------------------------------------------------------ static table
def test_static_table_answers_with_source_and_year():
    t = StaticTable()
    p = t.intensity("FR", NOW)
    assert p.g_per_kwh == 56 and "Ember" in p.source and "2023" in p.source and p.provider == "static"
    assert p.start <= NOW < p.end
    series = t.forecast("DE", NOW, NOW + timedelta(hours=6))
    assert len(series) == 1 and series[0].g_per_kwh == 381 and series[0].forecast
    assert series[0].start == NOW and series[0].end == NOW + timedelta(hours=6)
    assert t.lookup("world-average").g_per_kwh == 480
    with pytest.raises(SignalError, match="unknown grid region 'ZZ'"):
        t.intensity("ZZ")


# --------------------------------------------------------------- CSV trace
def test_csv_portal_v1_header_direct_and_lca():
    f = FIX / "electricitymaps_DE_2023_hourly_portal_v1.csv"
    direct = CsvTrace(f)
    p = direct.intensity("DE", datetime(2023, 1, 1, 2, 30, tzinfo=UTC))
    assert p.g_per_kwh == pytest.approx(385.2)
    assert "Carbon Intensity gCO₂eq/kWh (direct)" in p.source and "DE" in p.source
    assert p.start == datetime(2023, 1, 1, 2, tzinfo=UTC) and p.end == datetime(2023, 1, 1, 3, tzinfo=UTC)
    lca = CsvTrace(f, column="lca")
    assert lca.intensity("DE", datetime(2023, 1, 1, 2, 30, tzinfo=UTC)).g_per_kwh == pytest.approx(440.0)
    series = direct.forecast("DE", datetime(2023, 1, 1, 1, 30, tzinfo=UTC), datetime(2023, 1, 1, 4, tzinfo=UTC))
    assert [s.g_per_kwh for s in series] == pytest.approx([392.0, 385.2, 380.0])
    with pytest.raises(SignalError, match="trace covers"):
        direct.intensity("DE", datetime(2024, 1, 1, tzinfo=UTC))
    with pytest.raises(SignalError, match="no zone 'FR'"):
        direct.intensity("FR", datetime(2023, 1, 1, 2, tzinfo=UTC))


def test_csv_portal_v2_header_with_a_gap():
    t = CsvTrace(FIX / "electricitymaps_FR_2024_hourly_portal_v2.csv", column="lca")
    assert t.column == "Carbon intensity gCO₂eq/kWh (Life cycle)" and t.skipped == 1
    assert t.intensity("FR", datetime(2024, 6, 1, 1, 10, tzinfo=UTC)).g_per_kwh == pytest.approx(40.8)
    # the missing hour (02:00, one step) is covered by the previous value until the next row, and says so
    carried = t.intensity("FR", datetime(2024, 6, 1, 2, 10, tzinfo=UTC))
    assert carried.g_per_kwh == pytest.approx(40.8) and carried.end == datetime(2024, 6, 1, 3, tzinfo=UTC)
    assert "carried over a 1 h gap" in carried.source
    assert t.intensity("FR", datetime(2024, 6, 1, 3, 10, tzinfo=UTC)).g_per_kwh == pytest.approx(39.5)


def test_csv_legacy_carbon_intensity_avg():
    t = CsvTrace(FIX / "electricitymap_legacy_GB.csv")
    assert t.zones == ["GB"]
    assert t.intensity("GB", datetime(2020, 1, 1, 1, 59, tzinfo=UTC)).g_per_kwh == pytest.approx(249.8)
    assert "carbon_intensity_avg" in t.intensity("GB", datetime(2020, 1, 1, 0, tzinfo=UTC)).source


def test_csv_not_an_export(tmp_path):
    f = tmp_path / "x.csv"
    f.write_text("when,how_much\n2024-01-01,3\n")
    with pytest.raises(SignalError, match="not an Electricity Maps export"):
        CsvTrace(f)
    f.write_text("datetime,carbon_intensity_avg\n2024-01-01T00:00Z,banana\n")
    with pytest.raises(SignalError, match="not a number"):
        CsvTrace(f)


# ------------------------------------------- CSV trace: formats, gaps, errors
T_2020 = datetime(2020, 3, 1, tzinfo=UTC)
HALF_HOUR = timedelta(minutes=30)


def write_trace(path: Path, rows, header: str = "Time,Carbon Intensity") -> Path:
    """``rows``: (datetime, value) pairs, or raw lines (str)."""
    lines = [header]
    for r in rows:
        lines.append(r if isinstance(r, str) else f"{r[0]:%Y-%m-%d %H:%M:%S},{r[1]}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def half_hours(n: int, skip=(), start: datetime = T_2020):
    """``n`` half-hourly rows of value 100 + k, leaving out the indices in ``skip``."""
    return [(start + k * HALF_HOUR, 100 + k) for k in range(n) if k not in skip]


def test_csv_time_carbon_intensity_format(tmp_path):
    f = write_trace(tmp_path / "gb.csv", half_hours(6))
    for t in (CsvTrace(f), CsvTrace(f, column="Carbon Intensity"), CsvTrace(f, column="carbon intensity")):
        assert t.column == "Carbon Intensity"
        p = t.intensity("GB", T_2020 + timedelta(minutes=45))
        assert p.g_per_kwh == 101 and p.start == T_2020 + HALF_HOUR and p.end == T_2020 + 2 * HALF_HOUR
        assert p.source == "csv:gb.csv: unnamed zone, column 'Carbon Intensity' (trace replay)"
        assert p.provider == "csv:gb.csv" and not p.forecast and p.kind == "average" and p.fallback == ()
        series = t.forecast("GB", T_2020 + timedelta(minutes=40), T_2020 + timedelta(minutes=100))
        assert [s.g_per_kwh for s in series] == [101, 102, 103] and all(s.forecast for s in series)
    st = CsvTrace(f).status()
    assert st["rows"] == 6 and st["step_s"] == 1800 and st["gaps"] == 0 and st["first_gap_start"] is None
    assert st["first"] == T_2020.isoformat() and st["last"] == (T_2020 + 5 * HALF_HOUR).isoformat()
    assert st["end"] == (T_2020 + 6 * HALF_HOUR).isoformat() and st["unit"].startswith("gCO2e/kWh")
    with pytest.raises(SignalError, match="trace covers"):
        CsvTrace(f).intensity("GB", T_2020 + 6 * HALF_HOUR)          # the end is exclusive


def test_csv_column_choice_by_header_name_and_its_error(tmp_path):
    f = FIX / "electricitymaps_DE_2023_hourly_portal_v1.csv"
    at = datetime(2023, 1, 1, 2, 30, tzinfo=UTC)
    for name in ("Carbon Intensity gCO₂eq/kWh (LCA)", "carbon intensity gco2eq/kwh (lca)", "lca"):
        assert CsvTrace(f, column=name).intensity("DE", at).g_per_kwh == pytest.approx(440.0)
    assert CsvTrace(f, column="Carbon Intensity gCO₂eq/kWh (direct)").intensity("DE", at).g_per_kwh == 385.2
    with pytest.raises(SignalError, match=r"line 1: no column 'wind'; the file has columns 'Datetime \(UTC\)'.*"
                                          r"'Carbon Intensity gCO₂eq/kWh \(LCA\)'"):
        CsvTrace(f, column="wind")
    plain = write_trace(tmp_path / "plain.csv", half_hours(3))
    with pytest.raises(SignalError, match=r"line 1: .*no direct intensity column .*"
                                          r"the file has columns 'Time', 'Carbon Intensity'"):
        CsvTrace(plain, column="direct")                 # a plain trace has no direct column: say so, never guess


def test_csv_accepts_the_g_per_kwh_spellings(tmp_path):
    for unit in ("g/kWh", "gCO2/kWh", "gCO2e/kWh", "gCO₂eq/kWh", "gCO2eq/kWh"):
        f = write_trace(tmp_path / "u.csv", half_hours(2), header=f"Time,Carbon Intensity ({unit})")
        t = CsvTrace(f)
        assert t.intensity("X", T_2020).g_per_kwh == 100 and t.column == f"Carbon Intensity ({unit})"


def test_csv_gap_is_flagged_refused_inside_and_left_out_of_forecasts(tmp_path):
    f = write_trace(tmp_path / "gap.csv", half_hours(12, skip={4, 5, 6}))   # 02:00-03:30 missing
    t = CsvTrace(f)
    st = t.status()
    assert st["rows"] == 9 and st["gaps"] == 1 and st["carried"] == 0 and st["gap_s"] == 5400
    # row 3 (01:30) holds for one step, to 02:00 ... then nothing until row 7 at 03:30
    assert st["first_gap_start"] == (T_2020 + 4 * HALF_HOUR).isoformat()
    assert st["first_gap_end"] == (T_2020 + 7 * HALF_HOUR).isoformat()
    before = t.intensity("GB", T_2020 + timedelta(minutes=119))
    assert before.g_per_kwh == 103 and before.end == T_2020 + 4 * HALF_HOUR and "carried" not in before.source
    for minutes in (120, 150, 209):
        with pytest.raises(SignalError, match=r"gap from 2020-03-01T02:00:00\+00:00 to 2020-03-01T03:30:00\+00:00 "
                                              r"\(1 h 30 min with no rows\)"):
            t.intensity("GB", T_2020 + timedelta(minutes=minutes))
    assert t.intensity("GB", T_2020 + timedelta(minutes=210)).g_per_kwh == 107
    series = t.forecast("GB", T_2020 + timedelta(hours=1), T_2020 + timedelta(hours=5))
    assert [s.g_per_kwh for s in series] == [102, 103, 107, 108, 109]      # no invented points in the gap
    assert series[1].end == T_2020 + 4 * HALF_HOUR and series[2].start == T_2020 + 7 * HALF_HOUR
    with pytest.raises(SignalError, match=r"no values between .* \(inside a gap from 2020-03-01T02:00"):
        t.forecast("GB", T_2020 + timedelta(minutes=130), T_2020 + timedelta(minutes=200))

    # the scheduler's grid prices the gap at its fallback and counts it as filled
    from bridge.scheduling.forecast import build_step_forecast

    grid = build_step_forecast(series, T_2020 + timedelta(hours=1), T_2020 + timedelta(hours=5),
                               fallback_g_per_kwh=500.0)
    assert grid.filled_share == pytest.approx(1.5 / 4)
    assert grid.at(T_2020 + timedelta(minutes=150)) == 500.0 and grid.at(T_2020 + timedelta(minutes=90)) == 103

    # through a fallback chain the static table answers inside the gap, and says why
    p = FallbackChain([t, StaticTable()]).intensity("GB", T_2020 + timedelta(minutes=150))
    assert p.provider == "static" and "gap from 2020-03-01T02:00:00+00:00" in describe(p)


def test_csv_one_step_hole_is_carried_and_named_in_the_source(tmp_path):
    f = write_trace(tmp_path / "hole.csv", half_hours(6, skip={2}))          # 01:00 missing
    t = CsvTrace(f)
    p = t.intensity("GB", T_2020 + timedelta(minutes=70))
    assert p.g_per_kwh == 101 and p.start == T_2020 + HALF_HOUR and p.end == T_2020 + 3 * HALF_HOUR
    assert p.source == "csv:hole.csv: unnamed zone, column 'Carbon Intensity' (trace replay; carried over a 30 min gap)"
    assert t.status()["carried"] == 1 and t.status()["gaps"] == 0
    assert "carried" not in t.intensity("GB", T_2020).source
    # a blank value is a missing row too: the portal v2 fixture's 02:00 hour is carried and said so
    v2 = CsvTrace(FIX / "electricitymaps_FR_2024_hourly_portal_v2.csv", column="lca")
    assert "carried over a 1 h gap" in v2.intensity("FR", datetime(2024, 6, 1, 2, 10, tzinfo=UTC)).source
    assert v2.status()["skipped"] == 1 and v2.status()["carried"] == 1


def test_csv_is_parsed_once(tmp_path):
    f = write_trace(tmp_path / "once.csv", half_hours(48))
    t = CsvTrace(f)
    f.unlink()                                          # nothing reads the file after construction
    assert len(t.forecast("GB", T_2020, T_2020 + timedelta(hours=24))) == 48
    assert t.intensity("GB", T_2020 + timedelta(hours=3)).g_per_kwh == 106


def test_csv_several_zones_status(tmp_path):
    header = "Datetime (UTC),Zone Id,Carbon Intensity gCO₂eq/kWh (direct)"
    rows = []
    for k in range(6):
        t = T_2020 + timedelta(hours=k)
        rows.append(f"{t:%Y-%m-%d %H:%M:%S},GB,{200 + k}")
        if k not in (2, 3, 4):
            rows.append(f"{t:%Y-%m-%d %H:%M:%S},FR,{50 + k}")
    tr = CsvTrace(write_trace(tmp_path / "zones.csv", rows, header))
    assert tr.zones == ["FR", "GB"]
    assert tr.status("GB")["gaps"] == 0 and tr.status("FR")["gaps"] == 1 and tr.status("FR")["rows"] == 3
    both = tr.status()
    assert both["rows"] == 9 and both["gaps"] == 1 and both["step_s"] == 3600 and set(both["zones"]) == {"FR", "GB"}
    assert both["first_gap_start"] == (T_2020 + timedelta(hours=2)).isoformat()
    assert tr.intensity("GB", T_2020 + timedelta(hours=3)).g_per_kwh == 203
    with pytest.raises(SignalError, match="gap from .* for zone FR"):
        tr.intensity("FR", T_2020 + timedelta(hours=3))


BAD_CSV = [
    ("duplicate", "Time,Carbon Intensity\n2020-03-01 00:00:00,1\n2020-03-01 00:00:00,2\n", 3,
     r"duplicate timestamp 2020-03-01T00:00:00\+00:00 \(also on line 2\)"),
    ("backwards", "Time,Carbon Intensity\n2020-03-01 00:00:00,1\n2020-03-01 01:00:00,2\n2020-03-01 00:30:00,3\n", 4,
     "time goes backwards: 2020-03-01T00:30:00.* on line 3"),
    ("negative", "Time,Carbon Intensity\n2020-03-01 00:00:00,1\n2020-03-01 00:30:00,-4\n", 3, "'-4' .* is negative"),
    ("text", "Time,Carbon Intensity\n2020-03-01 00:00:00,1\n\n2020-03-01 00:30:00,n/a\n", 4, "'n/a' .*not a number"),
    ("nan", "Time,Carbon Intensity\n2020-03-01 00:00:00,nan\n", 2, "not a finite number"),
    ("lb_mwh", "Time,Carbon Intensity lb/MWh\n2020-03-01 00:00:00,900\n", 1, "in 'lb/mwh'.*nothing is converted"),
    ("kg_kwh", "Time,Carbon Intensity (kg/kWh)\n2020-03-01 00:00:00,0.2\n", 1, "in 'kg/kwh'"),
    ("empty", "", 1, "the file is empty"),
    ("no_time", "When,Carbon Intensity\n2020-03-01 00:00:00,1\n", 1,
     "no time column .*the file has columns 'When', 'Carbon Intensity'"),
    ("bad_time", "Time,Carbon Intensity\n2020-03-01 00:00:00,1\nyesterday,2\n", 3, "bad timestamp 'yesterday'"),
    ("cut_off", "Time,Carbon Intensity\n2020-03-01 00:00:00,1\n2020-03-01 00:30\n", 3, "1 fields.*cut-off"),
]


@pytest.mark.parametrize("name, text, line, message", BAD_CSV, ids=[b[0] for b in BAD_CSV])
def test_csv_bad_input_names_the_file_and_line(tmp_path, name, text, line, message):
    f = tmp_path / f"{name}.csv"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(SignalError, match=rf"{re.escape(str(f))}: line {line}: .*{message}"):
        CsvTrace(f)


def test_csv_header_only_has_no_values(tmp_path):
    f = write_trace(tmp_path / "h.csv", [])
    with pytest.raises(SignalError, match="no intensity values"):
        CsvTrace(f)


def _brute_force(rows: list[tuple[datetime, float]], step: timedelta) -> list[tuple[datetime, datetime, float, bool]]:
    """The rule written plainly: a row holds until the next one if at most one
    step is missing in between (then it is carried), else for one step."""
    out = []
    for k, (s, v) in enumerate(rows):
        nxt = rows[k + 1][0] if k + 1 < len(rows) else None
        if nxt is not None and nxt - s <= 2 * step:
            out.append((s, nxt, v, nxt - s > step))
        else:
            out.append((s, s + step, v, False))
    return out


def test_csv_lookup_equals_a_brute_force_scan_on_random_traces(tmp_path):
    rng = np.random.default_rng(20200301)
    for trial in range(6):
        step = timedelta(minutes=int(rng.choice([5, 15, 30, 60])))
        rows, t = [], T_2020 + timedelta(seconds=int(rng.integers(0, 3600)))
        while len(rows) < 400:
            if rng.random() > 0.12:
                rows.append((t, round(float(rng.uniform(0, 900)), 3)))
            t += step * (1 if rng.random() > 0.03 else int(rng.integers(2, 8)))   # holes of several steps
        f = write_trace(tmp_path / f"r{trial}.csv", rows)
        trace = CsvTrace(f)
        truth = _brute_force(rows, step)
        assert trace.status()["step_s"] == step.total_seconds()
        assert trace.status()["gaps"] == sum(1 for k, (s, e, _, _) in enumerate(truth[:-1]) if e < truth[k + 1][0])
        lo, hi = truth[0][0] - 2 * step, truth[-1][1] + 2 * step
        span = (hi - lo).total_seconds()
        edges = [p[0] for p in truth] + [p[1] for p in truth]
        times = [lo + timedelta(seconds=float(x)) for x in rng.uniform(0, span, 1500)] + edges
        for at in times:
            hit = [p for p in truth if p[0] <= at < p[1]]
            if not hit:
                with pytest.raises(SignalError, match="trace covers|gap from"):
                    trace.intensity("X", at)
                continue
            s, e, v, carried = hit[0]
            p = trace.intensity("X", at)
            assert (p.start, p.end, p.g_per_kwh, "carried over" in p.source) == (s, e, v, carried)
        for _ in range(300):
            a = lo + timedelta(seconds=float(rng.uniform(0, span)))
            b = a + timedelta(seconds=float(rng.uniform(1, 40 * step.total_seconds())))
            want = [(s, e, v) for s, e, v, _ in truth if e > a and s < b]
            if not want:
                with pytest.raises(SignalError, match="no values between"):
                    trace.forecast("X", a, b)
                continue
            got = trace.forecast("X", a, b)
            assert [(p.start, p.end, p.g_per_kwh) for p in got] == want and all(p.forecast for p in got)


def test_csv_day_forecast_on_a_year_long_trace_comes_from_the_parsed_index(tmp_path):
    """37k rows (a year and more at 15 min): a day's forecast is a slice of
    what was parsed once (the file is gone before the calls). How fast is
    benchmarks/csv_signal.py's job, not a test's."""
    start = datetime(2020, 1, 1, tzinfo=UTC)
    step = timedelta(minutes=15)
    f = tmp_path / "year.csv"
    f.write_text("Time,Carbon Intensity\n" + "".join(f"{start + k * step:%Y-%m-%d %H:%M:%S},{100 + k % 97}\n"
                                                     for k in range(37_000)))
    t = CsvTrace(f)
    f.unlink()
    assert t.status()["rows"] == 37_000
    for k in range(50):
        a = start + timedelta(hours=7 * k + 0.3)
        pts = t.forecast("GB", a, a + timedelta(hours=24))
        assert len(pts) == 97 and pts[0].start <= a < pts[0].end


# ---------------------------------------------------------- HTTP clients
def test_electricity_maps_latest_past_and_forecast(http):
    http.route("/v3/carbon-intensity/latest", fixture("electricitymaps_latest_DE.json"))
    http.route("/v3/carbon-intensity/past", fixture("electricitymaps_past_DE.json"))
    http.route("/v3/carbon-intensity/forecast", fixture("electricitymaps_forecast_DE.json"))
    em = ElectricityMaps("secret-token", base_url=http.url + "/v3", clock=lambda: NOW)
    p = em.intensity("DE")
    assert p.g_per_kwh == 302 and "zone DE lifecycle" in p.source and "estimated" in p.source
    assert http.requests[-1]["headers"]["auth-token"] == "secret-token"
    assert http.requests[-1]["query"] == {"zone": ["DE"]}
    past = em.intensity("DE", datetime(2025, 2, 1, 6, 20, tzinfo=UTC))
    assert past.g_per_kwh == 411 and http.requests[-1]["path"].endswith("/past")
    assert http.requests[-1]["query"]["datetime"] == ["2025-02-01T06:20:00Z"]
    series = em.forecast("DE", datetime(2025, 3, 4, 12, tzinfo=UTC), datetime(2025, 3, 4, 15, tzinfo=UTC))
    assert [s.g_per_kwh for s in series] == [295, 280, 260]
    assert all(s.forecast for s in series) and series[0].end - series[0].start == timedelta(hours=1)


def test_electricity_maps_error_does_not_leak_the_token(http):
    http.route("/v3/carbon-intensity/latest", '{"message": "Invalid auth-token"}', status=401)
    em = ElectricityMaps("secret-token", base_url=http.url + "/v3", clock=lambda: NOW)
    with pytest.raises(SignalError, match="HTTP 401") as err:
        em.intensity("DE")
    assert "secret-token" not in str(err.value)


def test_watttime_login_forecast_and_unit_conversion(http):
    http.route("/login", fixture("watttime_login.json"))
    http.route("/v3/forecast", fixture("watttime_forecast_CAISO_NORTH.json"))
    http.route("/v3/historical", fixture("watttime_historical_CAISO_NORTH.json"))
    wt = WattTime("user", "pw", base_url=http.url, clock=lambda: NOW)
    now = wt.intensity("CAISO_NORTH")
    assert now.g_per_kwh == pytest.approx(1000.0 * 0.45359237)
    assert LBS_PER_MWH_TO_G_PER_KWH == 0.45359237
    assert now.kind == "marginal" and "lbs_co2_per_mwh converted" in now.source
    login, forecast = http.requests[0], http.requests[1]
    assert login["path"] == "/login" and login["headers"]["authorization"].startswith("Basic ")
    assert forecast["headers"]["authorization"] == "Bearer eyJ-fake-watttime-token"
    assert forecast["query"]["signal_type"] == ["co2_moer"]
    series = wt.forecast("CAISO_NORTH", datetime(2025, 3, 4, 10, 10, tzinfo=UTC),
                         datetime(2025, 3, 4, 10, 25, tzinfo=UTC))
    assert [round(s.g_per_kwh, 6) for s in series] == [round(v * 0.45359237, 6) for v in (985.5, 970.0, 960.0)]
    assert sum(1 for r in http.requests if r["path"] == "/login") == 1        # token reused
    past = wt.intensity("CAISO_NORTH", datetime(2025, 2, 1, 6, 7, tzinfo=UTC))
    assert past.g_per_kwh == pytest.approx(810.0 * 0.45359237)


def test_watttime_refuses_unknown_units(http):
    data = json.loads(fixture("watttime_forecast_CAISO_NORTH.json"))
    data["meta"]["units"] = "furlongs"
    http.route("/login", fixture("watttime_login.json"))
    http.route("/v3/forecast", json.dumps(data))
    with pytest.raises(SignalError, match="unknown units 'furlongs'"):
        WattTime("u", "p", base_url=http.url, clock=lambda: NOW).intensity("CAISO_NORTH")


def test_uk_carbon_intensity_actual_then_forecast(http):
    http.route("/intensity", fixture("uk_intensity_current.json"))
    http.route("/intensity/2025-03-04T10:00Z/2025-03-04T10:30Z", fixture("uk_intensity_range.json"))
    http.route("/intensity/2025-03-04T10:30Z/2025-03-04T12:00Z", fixture("uk_intensity_range.json"))
    uk = UkCarbonIntensity(base_url=http.url, clock=lambda: NOW)
    now = uk.intensity("GB")
    assert now.g_per_kwh == 150 and "actual" in now.source and not now.forecast
    at = uk.intensity("GB", datetime(2025, 3, 4, 10, 12, tzinfo=UTC))
    assert at.g_per_kwh == 150
    series = uk.forecast("GB", datetime(2025, 3, 4, 10, 30, tzinfo=UTC), datetime(2025, 3, 4, 12, tzinfo=UTC))
    assert [s.g_per_kwh for s in series] == [148, 148, 144]          # forecast values, not actuals
    assert all(s.forecast for s in series)
    with pytest.raises(SignalError, match="Great Britain only"):
        uk.intensity("DE")


def test_carbon_aware_sdk_bylocation_and_forecast(http):
    http.route("/emissions/bylocation", fixture("casdk_bylocation_westus.json"))
    http.route("/emissions/forecasts/current", fixture("casdk_forecast_westus.json"))
    sdk = CarbonAwareSdk(http.url, clock=lambda: NOW)
    p = sdk.intensity("westus", datetime(2025, 3, 4, 9, 57, tzinfo=UTC))
    assert p.g_per_kwh == pytest.approx(240.25)
    assert http.requests[-1]["query"]["location"] == ["westus"]
    series = sdk.forecast("westus", datetime(2025, 3, 4, 10, 30, tzinfo=UTC), datetime(2025, 3, 4, 10, 45, tzinfo=UTC))
    assert [s.g_per_kwh for s in series] == [205.0, 203.0, 201.5]
    assert series[0].end - series[0].start == timedelta(minutes=5)


@pytest.mark.parametrize("body, message", [
    ("<html>502 Bad Gateway</html>", "not JSON"),
    ('{"zone": "DE", "datetime": "2025-03-04T10:00:00Z"}', "missing 'carbonIntensity'"),
    ('{"zone": "DE", "carbonIntensity": -5, "datetime": "2025-03-04T10:00:00Z"}', "out of range"),
    ('{"zone": "DE", "carbonIntensity": "NaN", "datetime": "2025-03-04T10:00:00Z"}', "out of range"),
    ('{"zone": "DE", "carbonIntensity": 300, "datetime": "yesterday"}', "bad timestamp"),
])
def test_garbage_answers_are_errors_not_zero(http, body, message):
    http.route("/v3/carbon-intensity/latest", body)
    em = ElectricityMaps("t", base_url=http.url + "/v3", clock=lambda: NOW)
    with pytest.raises(SignalError, match=message):
        em.intensity("DE")


# ---------------------------------------------------------------- fallback
def test_fallback_chain_records_who_answered_and_why_others_failed(http):
    http.route("/slow/carbon-intensity/latest", fixture("electricitymaps_latest_DE.json"), delay=1.0)
    http.route("/v3/forecast", "oops", status=503)
    http.route("/login", fixture("watttime_login.json"))
    slow = ElectricityMaps("t", base_url=http.url + "/slow", timeout_s=0.2, clock=lambda: NOW)
    broken = WattTime("u", "p", base_url=http.url, timeout_s=1.0, clock=lambda: NOW,
                      regions={"DE": "DE"})
    chain = FallbackChain([slow, broken, StaticTable()])
    t0 = time.monotonic()
    p = chain.intensity("DE", NOW)
    assert time.monotonic() - t0 < 1.0                      # the slow provider was cut off at its timeout
    assert p.provider == "static" and p.g_per_kwh == 381
    assert len(p.fallback) == 2
    assert p.fallback[0].startswith("electricitymaps: no answer") and "within 0.2 s" in p.fallback[0]
    assert p.fallback[1].startswith("watttime: HTTP 503")
    line = describe(p)
    assert "static: Ember" in line and "fallback: electricitymaps" in line
    series = chain.forecast("DE", NOW, NOW + timedelta(hours=2))
    assert series[0].provider == "static" and len(series[0].fallback) == 2


def test_fallback_chain_first_provider_answers_without_notes(http):
    http.route("/v3/carbon-intensity/latest", fixture("electricitymaps_latest_DE.json"))
    chain = FallbackChain([ElectricityMaps("t", base_url=http.url + "/v3", clock=lambda: NOW), StaticTable()])
    p = chain.intensity("DE", NOW)
    assert p.provider == "electricitymaps" and p.fallback == () and describe(p) == p.source


def test_fallback_chain_all_failed_and_provider_bug():
    class Buggy:
        name = "buggy"

        def intensity(self, region, at=None):
            raise KeyError("surprise")

        def forecast(self, region, start, end):
            raise KeyError("surprise")

    chain = FallbackChain([Buggy(), StaticTable()])
    assert chain.intensity("SE").fallback == ("buggy: unexpected KeyError: 'surprise'",)
    with pytest.raises(SignalError, match="every provider failed.*buggy.*static: unknown grid region"):
        FallbackChain([Buggy(), StaticTable()]).intensity("XX")


def test_unreachable_port_is_an_error_quickly():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                                    # nothing listens there now
    with pytest.raises(SignalError, match="cannot reach"):
        UkCarbonIntensity(base_url=f"http://127.0.0.1:{port}", timeout_s=1.0).intensity("GB")
