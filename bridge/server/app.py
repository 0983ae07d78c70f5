"""Wiring: build the bridge (store, executor, servicer, health, reflection)
and serve it. ``create_server`` is the one factory; tests bind port 0."""

from __future__ import annotations

import logging
from concurrent import futures
from dataclasses import dataclass, replace

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ..backends import default_backends
from ..backends.base import Backend
from ..energy.ledger import Ledger
from ..energy.meters import Meter, MeterError, meter_for
from ..errors import InvalidArgumentError, PreconditionError
from ..jobs.channels import ChannelRegistry
from ..jobs.store import JobStore
from ..proto.greenlight.v1 import bridge_pb2, bridge_pb2_grpc
from ..scheduling.executor import LocalExecutor
from ..scheduling.scheduler import CarbonScheduler
from .config import BridgeConfig, build_signal
from .manager import JobManager
from .service import BridgeServicer

log = logging.getLogger(__name__)
SERVICE_NAME = bridge_pb2.DESCRIPTOR.services_by_name["Bridge"].full_name
# Room for protobuf framing around a full-size chunk.
_FRAMING = 64 * 1024


@dataclass
class RunningBridge:
    server: grpc.Server
    port: int
    config: BridgeConfig
    manager: JobManager
    health: health.HealthServicer

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.port}"

    def stop(self, grace: float | None = 2.0) -> None:
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        self.manager.stop()
        self.manager.store.close()
        if self.manager.executor.ledger is not None:
            self.manager.executor.ledger.close()

    def wait(self) -> None:
        self.server.wait_for_termination()


def create_server(config: BridgeConfig, backends: dict[str, Backend] | None = None,
                  meter: Meter | None = None, clock=None) -> RunningBridge:
    """``clock`` (a function returning an aware UTC datetime) is for tests
    that move time; the default is the system clock."""
    if (config.tls_cert is None) != (config.tls_key is None):
        raise InvalidArgumentError("TLS needs both tls_cert and tls_key")
    if not config.tokens and config.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s without tokens: anyone who can reach it can submit jobs", config.host)
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
    store = JobStore(config.data_dir)
    channels = ChannelRegistry()
    ledger = Ledger.for_data_dir(config.data_dir)
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
    scheduler = CarbonScheduler(store, executor.enqueue, config.sites, signal,
                                replan_every_s=config.replan_every_s,
                                **({"clock": clock} if clock is not None else {}))
    manager = JobManager(config, store, channels, backends, executor, scheduler)

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=config.max_workers, thread_name_prefix="greenlight-rpc"),
        options=[
            ("grpc.max_receive_message_length", config.limits.max_chunk_bytes + _FRAMING),
            ("grpc.max_send_message_length", -1),
        ],
    )
    bridge_pb2_grpc.add_BridgeServicer_to_server(BridgeServicer(manager), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server)

    if config.tls_cert is not None:
        assert config.tls_key is not None   # both or neither: checked at the top
        creds = grpc.ssl_server_credentials([(config.tls_key.read_bytes(), config.tls_cert.read_bytes())])
        port = server.add_secure_port(config.address, creds)
    else:
        port = server.add_insecure_port(config.address)
    if port == 0:
        raise InvalidArgumentError(f"could not bind {config.address} (in use?)")
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    server.start()
    manager.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("bridge serving on %s (data in %s)", f"{config.host}:{port}", config.data_dir)
    return RunningBridge(server, port, replace(config, port=port), manager, health_servicer)
