"""Wiring: build the bridge (data-folder lock, store, executor, servicer,
health, optional reflection and metrics) and serve it. ``create_server`` is
the one factory; tests bind port 0.

The gRPC server is ``grpc.aio``: it runs on its own event-loop thread, so an
open stream (a stalled upload, a watcher of a queued job) costs a suspended
coroutine, not a thread. Blocking work runs in one bounded thread pool
(``config.max_workers``). ``create_server`` and ``RunningBridge`` stay
synchronous for the CLI, the tests and the Blender add-on's managed bridge.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Coroutine
from concurrent import futures
from dataclasses import replace
from typing import Any, TypeVar

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from ..backends import default_backends
from ..backends.base import Backend
from ..energy.ledger import Ledger
from ..energy.meters import Meter, MeterError, meter_for
from ..errors import PreconditionError
from ..jobs.channels import ChannelRegistry
from ..jobs.store import JobStore
from ..proto.greenlight.v1 import bridge_pb2, bridge_pb2_grpc
from ..scheduling.executor import LocalExecutor
from ..scheduling.scheduler import CarbonScheduler
from .audit import AuditLog
from .auth import check_exposure, server_credentials
from .config import BridgeConfig, build_signal
from .lock import DataLock, acquire_data_lock
from .manager import JobManager
from .retention import RetentionSweeper
from .service import BridgeServicer

log = logging.getLogger(__name__)
SERVICE_NAME = bridge_pb2.DESCRIPTOR.services_by_name["Bridge"].full_name
HEALTH_NAME = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
# Room for protobuf framing around a full-size chunk.
_FRAMING = 64 * 1024
_T = TypeVar("_T")


class _LoopThread:
    """An asyncio event loop on its own daemon thread; ``call`` runs a
    coroutine there and waits for its result."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._serve, name="greenlight-grpc-loop", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro: Coroutine[Any, Any, _T], timeout: float | None = None) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()


class RunningBridge:
    """A started bridge: ``address``, ``port``, ``config`` (with the bound
    port), ``manager``, ``health``; ``stop(grace)`` and ``wait()``."""

    def __init__(self, server: grpc.aio.Server, port: int, config: BridgeConfig, manager: JobManager,
                 health: HealthServicer, servicer: BridgeServicer, loop: _LoopThread,
                 pool: futures.ThreadPoolExecutor, lock: DataLock, metrics=None,
                 retention: RetentionSweeper | None = None):
        self.server = server
        self.retention = retention
        self.port = port
        self.config = config
        self.manager = manager
        self.health = health
        self.servicer = servicer
        self.metrics = metrics
        self._loop = loop
        self._pool = pool
        self._lock = lock
        self._stop_lock = threading.Lock()
        self._stopped = threading.Event()

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.port}"

    @property
    def open_streams(self) -> int:
        """SubmitShot and WatchJob streams open now."""
        return self.servicer.streams.total

    def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        self._loop.call(_set_health(self.health, status), timeout=10)

    def stop(self, grace: float | None = 2.0) -> None:
        """Stop serving (in-flight calls get ``grace`` seconds), then the
        executor and the store; frees the data folder. Safe to call twice."""
        with self._stop_lock:
            if self._stopped.is_set():
                return
            try:
                self._loop.call(_shutdown(self.server, self.health, grace), timeout=(grace or 0) + 30)
            finally:
                try:
                    self._pool.shutdown(wait=True)   # blocking work of the calls just ended
                    if self.retention is not None:
                        self.retention.stop()
                    self.manager.stop()
                    self.manager.store.close()
                    if self.manager.executor.ledger is not None:
                        self.manager.executor.ledger.close()
                    if self.metrics is not None:
                        self.metrics.close()
                    if self.manager.audit is not None:
                        self.manager.audit.close()
                finally:
                    self._loop.close()
                    self._lock.release()
                    self._stopped.set()

    def wait(self) -> None:
        """Block until the bridge is stopped."""
        self._stopped.wait()


async def _set_health(health: HealthServicer, status) -> None:
    for name in ("", SERVICE_NAME):
        await health.set(name, status)


async def _shutdown(server: grpc.aio.Server, health: HealthServicer, grace: float | None) -> None:
    await health.enter_graceful_shutdown()
    await server.stop(grace)


async def _start(config: BridgeConfig, servicer: BridgeServicer) -> tuple[grpc.aio.Server, int, HealthServicer]:
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", config.limits.max_chunk_bytes + _FRAMING),
        ("grpc.max_send_message_length", -1),
        # a second bridge on a busy port must fail to bind, not share it
        ("grpc.so_reuseport", 0),
    ])
    bridge_pb2_grpc.add_BridgeServicer_to_server(servicer, server)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    if config.reflection:
        reflection.enable_server_reflection((SERVICE_NAME, HEALTH_NAME, reflection.SERVICE_NAME), server)
    creds = server_credentials(config)
    try:
        port = server.add_secure_port(config.address, creds) if creds is not None else \
            server.add_insecure_port(config.address)
    except RuntimeError:
        port = 0
    if port == 0:
        raise PreconditionError(f"could not listen on {config.address}: the address is in use (another "
                                "greenlight bridge?) or not on this machine; stop the other one or choose "
                                "another --port / --host")
    await _set_health(health, health_pb2.HealthCheckResponse.NOT_SERVING)
    await server.start()
    return server, port, health


def _warm_backends(backends: dict[str, Backend]) -> None:
    for backend in backends.values():
        try:
            backend.warm()
        except Exception:   # info() is asked again by every GetCapabilities; it reports its own failures there
            log.exception("backend %s: capabilities could not be read at startup", backend.id)


def create_server(config: BridgeConfig, backends: dict[str, Backend] | None = None,
                  meter: Meter | None = None, clock=None) -> RunningBridge:
    """``clock`` (a function returning an aware UTC datetime) is for tests
    that move time; the default is the system clock."""
    check_exposure(config)
    backends = default_backends(config.extra_backends) if backends is None else backends
    if meter is None:   # the configured choice ("auto" by default): NVML for the jobs' GPUs > RAPL > estimate
        try:
            choice = meter_for(config.meter, gpu_indices=config.meter_gpus,
                               watts_per_busy_cpu=config.watts_per_busy_cpu)
        except MeterError as exc:
            raise PreconditionError(f"meter = {config.meter!r}: {exc}") from exc
        meter, meter_reason = choice.meter, choice.reason
    else:
        meter_reason = f"given by the caller: {getattr(meter, 'name', type(meter).__name__)}"
    log.info("energy meter: %s", meter_reason)

    with contextlib.ExitStack() as undo:   # on any failure below, everything started so far is undone
        lock = acquire_data_lock(config.data_dir, config.address)   # before the store opens (and recovers)
        undo.callback(lock.release)
        store = JobStore(config.data_dir)
        undo.callback(store.close)
        channels = ChannelRegistry()
        ledger = Ledger.for_data_dir(config.data_dir)
        undo.callback(ledger.close)
        # one signal chain: the scheduler plans with it, the executor prices every frame with it
        signal = build_signal(config.carbon_signals)
        if config.executor == "ray":
            from ..scheduling.ray_executor import RayExecutor

            executor = RayExecutor(store, channels, backends, meter, config.site, ledger=ledger,
                                   address=config.ray_address, sites={site.name: site for site, _ in config.sites},
                                   slots=sum(n for _, n in config.sites), signal=signal, clock=clock)
        else:
            executor = LocalExecutor(store, channels, backends, meter, config.site, ledger=ledger, signal=signal,
                                     clock=clock)
        executor.meter_reason = meter_reason
        executor.time_slice_s = config.time_slice_s
        scheduler = CarbonScheduler(store, executor.enqueue, config.sites, signal,
                                    replan_every_s=config.replan_every_s,
                                    **({"clock": clock} if clock is not None else {}))
        executor.on_job_end = scheduler.job_ended   # a free device: held batch jobs are re-planned now
        audit = AuditLog.for_data_dir(config.data_dir) if config.audit_log else None
        if audit is not None:
            undo.callback(audit.close)
        manager = JobManager(config, store, channels, backends, executor, scheduler, audit=audit)

        metrics = None
        if config.metrics_port is not None:
            from .metrics import Metrics

            metrics = Metrics(manager)
            undo.callback(metrics.close)
            metrics.serve(config.metrics_host, config.metrics_port)

        pool = futures.ThreadPoolExecutor(max_workers=config.max_workers, thread_name_prefix="greenlight-rpc")
        undo.callback(pool.shutdown, wait=False, cancel_futures=True)
        loop = _LoopThread()
        undo.callback(loop.close)
        servicer = BridgeServicer(manager, pool, metrics=metrics)
        server, port, health = loop.call(_start(config, servicer), timeout=30)
        undo.callback(lambda: loop.call(server.stop(0), timeout=10))
        undo.callback(manager.stop)
        manager.start()
        # device detection imports torch (seconds): do it now, off the RPC path, not in the first GetCapabilities
        threading.Thread(target=_warm_backends, args=(backends,), name="greenlight-warm-backends", daemon=True).start()
        retention = None
        if config.retention_days:   # ended jobs past their project's retention are deleted (and audited)
            retention = RetentionSweeper(manager, every_s=config.retention_sweep_s)
            retention.start()
            undo.callback(retention.stop)
        loop.call(_set_health(health, health_pb2.HealthCheckResponse.SERVING), timeout=10)
        config = replace(config, port=port)
        lock.set_address(config.address)
        undo.pop_all()
    log.info("bridge serving on %s (data in %s)", config.address, config.data_dir)
    return RunningBridge(server, port, config, manager, health, servicer, loop, pool, lock, metrics, retention)

