"""Greenlight bridge: shot model, gRPC service, jobs, energy and backends."""

__version__ = "0.1.0"
