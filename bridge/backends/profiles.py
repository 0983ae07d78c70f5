"""Model profiles: which checkpoint each pipeline component comes from.

A profile is a small TOML file naming every component by a hub id or a local
folder (see ``profiles/animatediff-sd15.toml``). Profiles are looked up by
name in the shipped folder and in ``$GREENLIGHT_PROFILES`` (a folder), or
given as a path to a TOML file.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidArgumentError

SHIPPED = Path(__file__).parent / "profiles"
FAMILIES = {"animatediff": ("base", "motion_adapter"), "wan-vace": ("base",)}
SCHEDULERS = ("ddim", "euler", "lcm")


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
    dirs = []
    if os.environ.get("GREENLIGHT_PROFILES"):
        dirs += [Path(p) for p in os.environ["GREENLIGHT_PROFILES"].split(os.pathsep) if p]
    dirs.append(SHIPPED)
    return dirs


def available_profiles() -> list[str]:
    names = []
    for d in search_dirs():
        if d.is_dir():
            names += [p.stem for p in sorted(d.glob("*.toml")) if p.stem not in names]
    return names


def load_profile(name_or_path: str) -> ModelProfile:
    path = Path(name_or_path)
    if not (path.suffix == ".toml" and path.is_file()):
        found = [d / f"{name_or_path}.toml" for d in search_dirs() if (d / f"{name_or_path}.toml").is_file()]
        if not found:
            raise InvalidArgumentError(
                f"model profile {name_or_path!r} not found; known profiles: {available_profiles()} "
                f"(or give a path to a .toml file; extra folders via GREENLIGHT_PROFILES)")
        path = found[0]
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgumentError(f"model profile {path}: {exc}") from exc
    family = data.get("family", "")
    if family not in FAMILIES:
        raise InvalidArgumentError(f"model profile {path}: family must be one of {sorted(FAMILIES)}, got {family!r}")
    components = {str(k): str(v) for k, v in data.get("components", {}).items()}
    missing = [c for c in FAMILIES[family] if c not in components]
    if missing:
        raise InvalidArgumentError(f"model profile {path}: [components] lacks {missing}")
    defaults = dict(data.get("defaults", {}))
    if defaults.get("scheduler", "ddim") not in SCHEDULERS:
        raise InvalidArgumentError(f"model profile {path}: defaults.scheduler must be one of {SCHEDULERS}")
    return ModelProfile(name=data.get("name", path.stem), family=family, components=components,
                        description=data.get("description", ""), defaults=defaults, path=path.resolve())
