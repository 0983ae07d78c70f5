"""Typed, frozen settings the operators snapshot from Blender properties
(STYLE practice 3): code below the operator never reads a bpy property.
No bpy here."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import local_bridge
from ._deps import client_settings, errors, request


@dataclass(frozen=True)
class ExtractSettings:
    """What to sample from the scene.

    ``frame_start``/``frame_end`` None = the scene's range (inclusive).
    ``width``/``height`` None = the render resolution times ``resolution_scale``.
    """

    camera: str | None = None
    frame_start: int | None = None
    frame_end: int | None = None
    width: int | None = None
    height: int | None = None
    resolution_scale: float = 0.25
    depth: bool = True
    motion: bool = True
    pose: bool = True
    project: str = "previz"
    shot: str = ""              # "" = the scene's name, made tag-safe
    version: int = 1
    scratch_dir: str | None = None   # where pass EXRs go (a temp dir when None)
    keep_scratch: bool = False


@dataclass(frozen=True)
class BridgeSettings(client_settings.BridgeSettings):
    """How to reach the bridge (the shared ``bridge.client.settings``
    fields, from the add-on preferences) and where its frames land."""

    cache_dir: str = ""           # frames land in cache_dir/project/shot/vNNN

    def frames_folder(self, project: str, shot: str, version: int) -> Path:
        if not self.cache_dir:
            raise errors.InvalidArgumentError(
                "Greenlight frame cache folder is not set: choose one in Preferences > Add-ons > Greenlight")
        return Path(self.cache_dir).expanduser() / project / shot / f"v{version:03d}"


@dataclass(frozen=True)
class JobSettings:
    generation: request.GenerationSettings = field(default_factory=request.GenerationSettings)
    scheduling: request.SchedulingSettings = field(default_factory=request.SchedulingSettings)


def is_local_address(address: str) -> bool:
    """True for loopback addresses (no online access needed)."""
    host = address.strip()
    if host.startswith("unix:"):
        return True
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_online_access(address: str, online_access: bool) -> None:
    """Blender's "Allow Online Access" switch covers non-local addresses."""
    if not online_access and not is_local_address(address):
        raise errors.PreconditionError(
            f"the bridge address {address!r} is not on this machine and Blender's online access is off: "
            "enable Preferences > System > Network > Allow Online Access, or run a local bridge "
            "(`greenlight serve`) and use 127.0.0.1:50151")


def with_local_bridge(settings: BridgeSettings, enabled: bool) -> BridgeSettings:
    """``settings`` aimed at the add-on's local bridge when "Use a local
    bridge" is on and one has been started: its loopback address and
    token, no TLS. Unchanged when the option is off or none was started."""
    lb = local_bridge.current()
    if not enabled or lb is None or not lb.address:
        return settings
    return replace(settings, address=lb.address, token=lb.token, tls=False, tls_root_cert="")


def check_local_bridge(enabled: bool) -> None:
    """Refuse to submit while "Use a local bridge" is on and it is not serving."""
    if not enabled:
        return
    lb = local_bridge.current()
    if lb is None:
        raise errors.PreconditionError("the local bridge is not running: press Start in "
                                       "Preferences > Add-ons > Greenlight (Local bridge)")
    lb.poll()
    if lb.state is not local_bridge.BridgeState.SERVING:
        raise errors.PreconditionError(f"the local bridge is {lb.state.value}: {lb.message}; "
                                       "press Start or Restart in Preferences > Add-ons > Greenlight")
