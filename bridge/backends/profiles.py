"""Model profiles: which checkpoint each pipeline component comes from.

A profile is a small TOML file naming every component by a hub id or a local
folder (see ``profiles/animatediff-sd15.toml``). Clients name a profile
(``generation.model_profile``); they never give the bridge a path: a name is
a plain identifier (letters, digits, ``- _ .``; no separators, no leading
dot) looked up only in the server's folders, ``$GREENLIGHT_PROFILES``
(``os.pathsep``-separated) and then the shipped one. Errors name the profile
and the available names, never a server path (the log has the path).

The operator's own tools (``greenlight models check ./my.toml``) may open a
file by path with ``load_profile_file``; the bridge never does that for a
client.
"""

from __future__ import annotations

import logging
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidArgumentError, PreconditionError

log = logging.getLogger(__name__)

SHIPPED = Path(__file__).parent / "profiles"
FAMILIES = {"animatediff": ("base", "motion_adapter"), "wan-vace": ("base",)}
SCHEDULERS = ("ddim", "euler", "lcm")
PROFILE_ENV = "GREENLIGHT_PROFILES"
FIELD = "generation.model_profile"
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True)
class ModelProfile:
    name: str
    family: str
    components: dict[str, str]
    description: str = ""
    defaults: dict = field(default_factory=dict)
    path: Path | None = None

    def default(self, key: str, fallback):
        return self.defaults.get(key, fallback)

    def source(self, component: str) -> str | None:
        """Hub id or absolute folder for a component; relative folders are
        taken relative to the profile file."""
        value = self.components.get(component)
        if value is None:
            return None
        if self.path is not None and (value.startswith("./") or value.startswith("../")):
            return str((self.path.parent / value).resolve())
        return value


def search_dirs() -> list[Path]:
    """The server's profile folders, in lookup order: $GREENLIGHT_PROFILES, then the shipped one."""
    dirs = [Path(p) for p in os.environ.get(PROFILE_ENV, "").split(os.pathsep) if p]
    dirs.append(SHIPPED)
    return dirs


def is_profile_name(name: str) -> bool:
    """A plain identifier: letters, digits, ``- _ .``, no separators, no leading dot, at most 100 characters."""
    return bool(_NAME.fullmatch(name))


def available_profiles() -> list[str]:
    names: list[str] = []
    for d in search_dirs():
        if d.is_dir():
            names += [p.stem for p in sorted(d.glob("*.toml"))
                      if p.is_file() and is_profile_name(p.stem) and p.stem not in names]
    return names


def load_profile(name: str) -> ModelProfile:
    """The profile called ``name`` from the server's folders (what a client may ask for)."""
    if is_profile_name(name):
        for d in search_dirs():
            path = d / f"{name}.toml"
            if path.is_file():
                return _parse(path, name)
    # a well-formed name is echoed; anything else (a path, perhaps of a server file) is not
    shown = repr(name) if is_profile_name(name) else (
        "(not a name: a profile is named, never a path: letters, digits, '-', '_' and '.', not starting with '.')")
    raise InvalidArgumentError(f"unknown model profile {shown}; available: {available_profiles()}", field=FIELD)


def load_profile_file(name_or_path: str | Path) -> ModelProfile:
    """For the operator's own commands on this machine: a path to a ``.toml``
    file, or else a name as in ``load_profile``. Never for a client's input."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.is_file():
        return _parse(path, str(path))
    return load_profile(str(name_or_path))


def _parse(path: Path, label: str) -> ModelProfile:
    """``label`` names the profile in errors (the name a client gave: no path)."""
    def broken(why: str) -> PreconditionError:
        log.warning("model profile %s is broken: %s", path, why)
        return PreconditionError(f"model profile {label!r} on this bridge is broken ({why}); "
                                 "the bridge's operator must fix its file")

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise broken(f"cannot be read: {exc.strerror or type(exc).__name__}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise broken(f"not valid TOML: {exc}") from exc
    family = data.get("family", "")
    if family not in FAMILIES:
        raise broken(f"family must be one of {sorted(FAMILIES)}, got {family!r}")
    components = {str(k): str(v) for k, v in data.get("components", {}).items()}
    missing = [c for c in FAMILIES[family] if c not in components]
    if missing:
        raise broken(f"[components] lacks {missing}")
    defaults = dict(data.get("defaults", {}))
    if defaults.get("scheduler", "ddim") not in SCHEDULERS:
        raise broken(f"defaults.scheduler must be one of {SCHEDULERS}")
    return ModelProfile(name=data.get("name", path.stem), family=family, components=components,
                        description=data.get("description", ""), defaults=defaults, path=path.resolve())
