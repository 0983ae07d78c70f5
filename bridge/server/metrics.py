"""The bridge's Prometheus text endpoint (``prometheus-client``).

What it exposes:

- RPCs, counted and timed by the servicer as they end
  (``observe_rpc``): ``greenlight_rpc_handled_total{method,code}`` and the
  histogram ``greenlight_rpc_duration_seconds{method}``;
- open streams by kind, kept by the servicer (``stream_delta``):
  ``greenlight_open_streams{kind="submit"|"watch"}``;
- read at scrape time, never kept in two places: jobs by state and frames
  stored (the job store), the executor's queue, and per-project totals from
  the energy ledger (ended jobs; the ledger keeps them after a purge);
- the server process itself (``process_*``: memory, CPU, open files).

Each ``Metrics`` has its own registry, never the global default one, so
several bridges in one process (tests) do not clash. ``serve`` listens on
loopback unless told otherwise; the endpoint has no authentication.
"""

from __future__ import annotations

import ipaddress
import logging
import sqlite3
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import start_wsgi_server
from prometheus_client.registry import Collector

from ..errors import PreconditionError
from ..jobs.model import JobState

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from ..energy.ledger import Ledger
    from .manager import JobManager

log = logging.getLogger(__name__)

STREAM_KINDS = ("submit", "watch")
# Unary calls take milliseconds; a WatchJob lasts as long as its job (minutes).
RPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
               900.0, 3600.0)
SERVER_STATES = tuple(s for s in JobState if s is not JobState.DETACHED)   # DETACHED is the client's own


class Metrics:
    """``Metrics(manager)``; the servicer calls ``observe_rpc`` and
    ``stream_delta``; ``serve(host, port)`` starts the HTTP endpoint."""

    def __init__(self, manager: JobManager):
        self.manager = manager
        self.registry = CollectorRegistry()
        self.rpc_handled = Counter("greenlight_rpc_handled", "RPCs ended, by method and gRPC status code",
                                   ["method", "code"], registry=self.registry)
        self.rpc_seconds = Histogram("greenlight_rpc_duration_seconds",
                                     "RPC time from the call to its status (streams: their whole life)",
                                     ["method"], buckets=RPC_BUCKETS, registry=self.registry)
        self.open_streams = Gauge("greenlight_open_streams", "open SubmitShot (submit) and WatchJob (watch) streams",
                                  ["kind"], registry=self.registry)
        for kind in STREAM_KINDS:   # both series exist from the start, at 0
            self.open_streams.labels(kind=kind)
        self.registry.register(_StoreCollector(manager))
        ProcessCollector(registry=self.registry)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ recording
    def observe_rpc(self, method: str, code: str, seconds: float) -> None:
        """One RPC ended: ``method`` as in the proto ("GetJob"), ``code`` the
        gRPC status name ("OK", "NOT_FOUND")."""
        self.rpc_handled.labels(method=method, code=code).inc()
        self.rpc_seconds.labels(method=method).observe(max(0.0, seconds))

    def stream_delta(self, kind: str, delta: int) -> None:
        """A stream of ``kind`` ("submit" or "watch") opened (+1) or closed (-1)."""
        if kind not in STREAM_KINDS:
            raise ValueError(f"stream kind must be one of {STREAM_KINDS}, got {kind!r}")
        self.open_streams.labels(kind=kind).inc(delta)

    # ------------------------------------------------------------ endpoint
    @property
    def port(self) -> int | None:
        """The endpoint's bound port while it serves, else None."""
        return int(self._server.server_port) if self._server is not None else None

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Start the endpoint (any path answers) on ``host``; port 0 = any
        free port. Returns the bound port."""
        if self._server is not None:
            raise RuntimeError("the metrics endpoint is already serving")
        if not _is_loopback(host):
            log.warning("metrics endpoint on %s: it has no authentication; anyone who can reach it sees job counts "
                        "and per-project energy totals", host)
        try:
            self._server, self._thread = start_wsgi_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise PreconditionError(f"metrics_port: cannot listen on {host}:{port} ({exc.strerror or exc}); "
                                    "choose a free port, or 0 for any") from None
        bound = int(self._server.server_port)
        log.info("metrics on http://%s:%d/metrics", host, bound)
        return bound

    def close(self) -> None:
        """Stop the endpoint (the metrics themselves stay readable)."""
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(5.0)


class _StoreCollector(Collector):
    """Jobs by state, queue length, frames and ledger totals, read when
    scraped (SQL COUNT and SUM)."""

    def __init__(self, manager: JobManager):
        self.manager = manager

    def describe(self) -> list[Metric]:
        return []   # nothing read at registration: the store may be empty or still recovering

    def collect(self) -> Iterator[Metric]:
        manager = self.manager
        try:
            by_state, frames = manager.store.counts()
            queue_length = len(manager.executor.queued())
            ledger_rows = _ledger_totals(manager.executor.ledger)
        except sqlite3.Error as exc:   # a closed or locked database: the scrape shows the rest
            log.warning("metrics: job store or ledger unreadable (%s)", exc)
            return
        jobs = GaugeMetricFamily("greenlight_jobs", "jobs in the job store, by state", labels=["state"])
        for state in SERVER_STATES:
            jobs.add_metric([state.value], by_state.get(state, 0))
        yield jobs
        yield GaugeMetricFamily("greenlight_queue_length", "jobs waiting for the executor (to run now, not started)",
                                value=queue_length)
        yield GaugeMetricFamily("greenlight_frames", "finished frames in the job store (jobs not yet purged)",
                                value=frames)
        families = {
            "jobs": CounterMetricFamily("greenlight_ledger_jobs", "ended jobs in the energy ledger, by project",
                                        labels=["project"]),
            "energy_wh": CounterMetricFamily("greenlight_energy_wh", "IT energy of ended jobs (Wh), by project",
                                             labels=["project"]),
            "facility_energy_wh": CounterMetricFamily("greenlight_facility_energy_wh",
                                                      "facility energy (IT x PUE) of ended jobs (Wh), by project",
                                                      labels=["project"]),
            "water_l": CounterMetricFamily("greenlight_water_liters", "water of ended jobs (L), by project",
                                           labels=["project"]),
        }
        co2e = CounterMetricFamily("greenlight_co2e_grams", "operational gCO2e of ended jobs, by project and basis "
                                   "(market only where every job's site has a market-based factor)",
                                   labels=["project", "basis"])
        for project, totals in ledger_rows.items():
            for key, family in families.items():
                family.add_metric([project], totals[key])
            co2e.add_metric([project, "location"], totals["co2e_g_location"])
            if totals["market_missing"] == 0:
                co2e.add_metric([project, "market"], totals["co2e_g_market"])
        yield from families.values()
        yield co2e


def _ledger_totals(ledger: Ledger | None) -> dict[str, dict[str, float]]:
    """Per project: the ledger's sums (its ``summary`` rows, added up)."""
    if ledger is None:
        return {}
    totals: dict[str, dict[str, float]] = {}
    for project in ledger.projects():
        t: dict[str, float] = dict.fromkeys(("jobs", "energy_wh", "facility_energy_wh", "water_l", "co2e_g_location",
                           "co2e_g_market", "market_missing"), 0.0)
        for row in ledger.summary(project):
            for key in t:
                t[key] += float(row[key] or 0.0)
        totals[project] = t
    return totals


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
