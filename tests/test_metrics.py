"""The Prometheus endpoint of a real bridge: scraped over HTTP on loopback
and parsed with prometheus_client's own parser, its figures are the job
store's and the ledger's."""

from __future__ import annotations

import math
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge.backends import default_backends
from bridge.client import BridgeClient, EventKind
from bridge.errors import NotFoundError, PreconditionError
from bridge.jobs.model import JobState
from bridge.server.metrics import Metrics
from bridge.shot.request import GenerationSettings
from tests.helpers.backends import PacedBackend


def _scrape(port: int) -> dict[tuple[str, frozenset], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        assert reply.status == 200
        text = reply.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _value(samples, name: str, **labels) -> float:
    return samples[(name, frozenset(labels.items()))]


def _scrape_until(port: int, ok, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        samples = _scrape(port)
        if ok(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


@pytest.fixture
def metrics_for():
    made: list[Metrics] = []

    def make(bridge) -> Metrics:
        made.append(Metrics(bridge.manager))
        return made[-1]

    yield make
    for m in made:
        m.close()


def test_scrape_shows_jobs_frames_and_ledger_energy(start_bridge, metrics_for, small_shot):
    bridge = start_bridge()
    metrics = metrics_for(bridge)
    port = metrics.serve()
    before = _scrape(port)
    assert all(_value(before, "greenlight_jobs", state=s.value) == 0 for s in JobState if s is not JobState.DETACHED)
    assert _value(before, "greenlight_frames") == 0
    assert not any(name == "greenlight_energy_wh_total" for name, _ in before)   # no ended job, no project yet

    with BridgeClient(bridge.address) as client:
        job_id = client.submit(small_shot).job.job_id   # the guides backend (the default)
        final = None
        for event in client.watch(job_id):
            if event.kind.terminal:
                final = event
                break
    assert final is not None and final.kind is EventKind.COMPLETED

    samples = _scrape(port)
    assert _value(samples, "greenlight_jobs", state=JobState.COMPLETED.value) == 1
    assert sum(_value(samples, "greenlight_jobs", state=s.value) for s in JobState if s is not JobState.DETACHED) == 1
    assert _value(samples, "greenlight_frames") == small_shot.frame_count == 6
    assert _value(samples, "greenlight_queue_length") == 0
    # the ledger's totals for the project, and the job's own report
    ledger = bridge.manager.executor.ledger
    summary = ledger.summary("demo")
    energy = math.fsum(r["energy_wh"] for r in summary)
    assert energy > 0
    assert _value(samples, "greenlight_energy_wh_total", project="demo") == pytest.approx(energy, rel=1e-12)
    assert _value(samples, "greenlight_energy_wh_total", project="demo") == pytest.approx(
        final.report.energy.energy_wh, rel=1e-9)
    assert _value(samples, "greenlight_ledger_jobs_total", project="demo") == 1
    assert _value(samples, "greenlight_co2e_grams_total", project="demo", basis="location") == pytest.approx(
        math.fsum(r["co2e_g_location"] for r in summary), rel=1e-12)
    assert _value(samples, "greenlight_facility_energy_wh_total", project="demo") >= energy
    assert _value(samples, "process_resident_memory_bytes") > 0   # the server process itself


def test_queue_length_and_running_jobs_while_the_executor_is_busy(start_bridge, metrics_for, small_shot):
    bridge = start_bridge(backends={**default_backends(), "paced": PacedBackend(frame_s=0.3)})
    port = metrics_for(bridge).serve()
    paced = GenerationSettings(backend="paced")
    with BridgeClient(bridge.address) as client:
        first = client.submit(small_shot, paced, request_id="first").job.job_id
        second = client.submit(small_shot, paced, request_id="second").job.job_id   # waits: one device
        samples = _scrape_until(port, lambda s: _value(s, "greenlight_jobs", state=JobState.RUNNING.value) == 1
                                and _value(s, "greenlight_queue_length") == 1)
        client.cancel(second)
        client.cancel(first)
    assert _value(samples, "greenlight_jobs", state=JobState.RUNNING.value) == 1
    assert _value(samples, "greenlight_jobs", state=JobState.SCHEDULED.value) == 1
    assert _value(samples, "greenlight_queue_length") == 1


def test_rpc_and_stream_figures_appear_after_they_are_recorded(start_bridge, metrics_for):
    bridge = start_bridge()
    metrics = metrics_for(bridge)
    port = metrics.serve()
    assert _value(_scrape(port), "greenlight_open_streams", kind="watch") == 0
    metrics.observe_rpc("GetJob", "OK", 0.02)
    metrics.observe_rpc("GetJob", "OK", 0.004)
    metrics.observe_rpc("GetJob", "NOT_FOUND", 0.3)
    for _ in range(3):
        metrics.stream_delta("watch", +1)
    metrics.stream_delta("watch", -1)
    metrics.stream_delta("submit", +1)
    with pytest.raises(ValueError, match="stream kind must be one of"):
        metrics.stream_delta("upload", +1)

    samples = _scrape(port)
    assert _value(samples, "greenlight_rpc_handled_total", method="GetJob", code="OK") == 2
    assert _value(samples, "greenlight_rpc_handled_total", method="GetJob", code="NOT_FOUND") == 1
    assert _value(samples, "greenlight_rpc_duration_seconds_count", method="GetJob") == 3
    assert _value(samples, "greenlight_rpc_duration_seconds_sum", method="GetJob") == pytest.approx(0.324)
    assert _value(samples, "greenlight_rpc_duration_seconds_bucket", method="GetJob", le="0.005") == 1
    assert _value(samples, "greenlight_rpc_duration_seconds_bucket", method="GetJob", le="0.025") == 2
    assert _value(samples, "greenlight_rpc_duration_seconds_bucket", method="GetJob", le="+Inf") == 3
    assert _value(samples, "greenlight_open_streams", kind="watch") == 2
    assert _value(samples, "greenlight_open_streams", kind="submit") == 1

    # a second Metrics on the same bridge has its own registry: no clash, its own counts
    other = metrics_for(bridge)
    other_port = other.serve()
    assert ("greenlight_rpc_handled_total", frozenset({"method": "GetJob", "code": "OK"}.items())) \
        not in _scrape(other_port)


def _listening_hosts(port: int) -> set[str]:
    """Local addresses the OS has a listening TCP socket on for ``port`` (Linux /proc/net)."""
    hosts = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                addr, _, hex_port = local.partition(":")
                if state == "0A" and int(hex_port, 16) == port:   # 0A = LISTEN
                    assert len(addr) == width
                    hosts.add(addr)
    return hosts


def test_endpoint_binds_loopback_only_by_default_and_close_stops_it(start_bridge, metrics_for):
    metrics = metrics_for(start_bridge())
    port = metrics.serve()
    assert port > 0 and metrics.port == port
    assert _listening_hosts(port) == {"0100007F"}   # 127.0.0.1, little-endian hex; nothing on 0.0.0.0 or ::
    with pytest.raises(RuntimeError, match="already serving"):
        metrics.serve()
    with pytest.raises(PreconditionError, match=rf"metrics_port: cannot listen on 127.0.0.1:{port} .*choose a free"):
        metrics_for(start_bridge()).serve("127.0.0.1", port)   # the port is taken
    metrics.close()
    assert metrics.port is None
    assert _listening_hosts(port) == set()
    with pytest.raises(urllib.error.URLError):
        _scrape(port)


def test_a_bridge_with_metrics_port_counts_its_own_rpcs_and_streams(start_bridge, small_shot):
    bridge = start_bridge(backends={**default_backends(), "paced": PacedBackend(frame_s=0.3)}, metrics_port=0)
    port = bridge.metrics.port
    assert port is not None and _listening_hosts(port) == {"0100007F"}   # metrics_host defaults to loopback
    with BridgeClient(bridge.address) as client:
        job_id = client.submit(small_shot, GenerationSettings(backend="paced")).job.job_id
        client.job(job_id)
        with pytest.raises(NotFoundError):
            client.job("no-such-job")
        events = client.watch(job_id)
        next(events)   # the first event: the stream is open
        open_now = _scrape_until(port, lambda s: _value(s, "greenlight_open_streams", kind="watch") == 1)
        client.cancel(job_id)
        assert any(e.kind.terminal for e in events)
    closed = _scrape_until(port, lambda s: _value(s, "greenlight_open_streams", kind="watch") == 0)
    assert _value(open_now, "greenlight_open_streams", kind="watch") == 1
    assert _value(closed, "greenlight_open_streams", kind="watch") == 0
    assert _value(closed, "greenlight_rpc_handled_total", method="GetJob", code="OK") >= 1
    assert _value(closed, "greenlight_rpc_handled_total", method="GetJob", code="NOT_FOUND") == 1
    assert _value(closed, "greenlight_rpc_handled_total", method="SubmitShot", code="OK") == 1
    assert _value(closed, "greenlight_rpc_duration_seconds_count", method="WatchJob") == 1
    assert _value(closed, "greenlight_jobs", state=JobState.CANCELLED.value) == 1
