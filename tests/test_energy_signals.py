"""Carbon signals: static table, CSV trace replay (both Electricity Maps
header generations and the legacy style), and the HTTP clients against a
real loopback HTTP server serving the responses in tests/fixtures/energy
(no network), with timeouts and the fallback chain."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

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
    # the gap hour (02:00) is covered by the previous value until the next row
    assert t.intensity("FR", datetime(2024, 6, 1, 2, 10, tzinfo=UTC)).g_per_kwh == pytest.approx(40.8)
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
