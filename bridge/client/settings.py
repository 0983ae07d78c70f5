"""How to reach the bridge: one frozen settings object and the one function
that turns it into a client, shared by the Blender add-on, the Unreal plugin
and the ``greenlight`` command (STYLE practices 3 and 14).

No grpc at import: ``make_client`` imports the gRPC client when it is
called, so the add-ons' engine-free modules load without grpcio.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .defaults import DEFAULT_ADDRESS

if TYPE_CHECKING:
    from .client import BridgeClient


@dataclass(frozen=True)
class BridgeSettings:
    """Where the bridge is and how to talk to it.

    ``tls_root_cert``: a PEM file of the CA that signed the bridge's
    certificate ("" = the system roots; giving one turns TLS on).
    ``token``: the bearer token ("" = none). ``timeout_s`` is every RPC's
    deadline; ``reconnect_s`` how long a broken event stream keeps retrying.
    """

    address: str = DEFAULT_ADDRESS
    tls: bool = False
    tls_root_cert: str = ""
    token: str = ""
    timeout_s: float = 30.0
    reconnect_s: float = 60.0


def make_client(settings: BridgeSettings) -> BridgeClient:
    """A connected ``BridgeClient`` for ``settings`` (use it in ``with``)."""
    from .client import BridgeClient  # grpc: imported on use

    root = Path(settings.tls_root_cert).read_bytes() if settings.tls_root_cert else None
    return BridgeClient(settings.address, token=settings.token or None, tls_root_cert=root, tls=settings.tls,
                        timeout_s=settings.timeout_s, reconnect_s=settings.reconnect_s)
