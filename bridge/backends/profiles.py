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

Each component may carry its licence (docs/governance.md)::

    [licenses.base]
    id = "CreativeML-OpenRAIL-M"   # SPDX id where one exists, else LicenseRef-...
    commercial = "yes"             # yes | no | unknown (unknown counts as no)
    url = "https://..."            # the licence text
    checked = "2026-12-01"         # when someone read it
    note = "..."                   # optional: where the facts come from

A component without a table has an unknown licence: not cleared for
commercial work.
"""

from __future__ import annotations

import datetime as _dt
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
COMMERCIAL = ("yes", "no", "unknown")
_LICENSE_KEYS = {"id", "commercial", "url", "checked", "note"}


@dataclass(frozen=True)
class License:
    """One component's licence as the profile states it; ``unknown`` when it says nothing."""

    id: str = "unknown"
    commercial: str = "unknown"    # yes | no | unknown
    url: str = ""
    checked: str = ""              # ISO date the licence was read
    note: str = ""

    @property
    def cleared(self) -> bool:
        """Commercial use allowed: only an explicit "yes" clears (unknown counts as no)."""
        return self.commercial == "yes"

    def label(self) -> str:
        return f"{self.id} (commercial: {self.commercial})"

    def to_dict(self) -> dict:
        return {"id": self.id, "commercial": self.commercial, "url": self.url, "checked": self.checked,
                **({"note": self.note} if self.note else {})}


UNKNOWN_LICENSE = License()


@dataclass(frozen=True)
class ModelProfile:
    name: str
    family: str
    components: dict[str, str]
    description: str = ""
    defaults: dict = field(default_factory=dict)
    path: Path | None = None
    licenses: dict[str, License] = field(default_factory=dict)

    def default(self, key: str, fallback):
        return self.defaults.get(key, fallback)

    def broken(self, why: str) -> PreconditionError:
        """The error for a profile file whose content is wrong: the client sees its name, the log its path."""
        log.warning("model profile %s is broken: %s", self.path, why)
        return PreconditionError(f"model profile {self.name!r} on this bridge is broken ({why}); "
                                 "the bridge's operator must fix its file")

    def license(self, component: str) -> License:
        """The component's licence; ``unknown`` when the profile gives none."""
        return self.licenses.get(component, UNKNOWN_LICENSE)

    def uncleared(self) -> list[tuple[str, License]]:
        """(component, licence) of every component not cleared for commercial use, in profile order."""
        return [(c, self.license(c)) for c in self.components if not self.license(c).cleared]

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
    licenses = _licenses(data.get("licenses", {}), components, broken)
    return ModelProfile(name=data.get("name", path.stem), family=family, components=components,
                        description=data.get("description", ""), defaults=defaults, path=path.resolve(),
                        licenses=licenses)


def _licenses(tables, components: dict[str, str], broken) -> dict[str, License]:
    """``[licenses.<component>]`` tables, each field checked; ``broken(why)`` makes the error."""
    if not isinstance(tables, dict):
        raise broken("[licenses] must hold one table per component, e.g. [licenses.base]")
    out = {}
    for component, table in tables.items():
        where = f"[licenses.{component}]"
        if component not in components:
            raise broken(f"{where} names no component of [components] (they are {sorted(components)})")
        if not isinstance(table, dict):
            raise broken(f"{where} must be a table with id, commercial, url and checked")
        unknown = set(table) - _LICENSE_KEYS
        if unknown:
            raise broken(f"{where} has unknown keys {sorted(unknown)}; valid: {sorted(_LICENSE_KEYS)}")
        missing = [k for k in ("id", "commercial", "url", "checked") if k not in table]
        if missing:
            raise broken(f"{where} lacks {missing}")
        values = {k: table[k] for k in _LICENSE_KEYS if k in table}
        if isinstance(values["checked"], _dt.date):    # TOML reads a bare 2026-12-01 as a date
            values["checked"] = values["checked"].isoformat()
        if not all(isinstance(v, str) for v in values.values()):
            raise broken(f"{where}: id, commercial, url, checked and note must be strings")
        if not values["id"].strip():
            raise broken(f"{where} id: give an SPDX id, a LicenseRef-... or \"unknown\"")
        if values["commercial"] not in COMMERCIAL:
            raise broken(f"{where} commercial: must be one of {COMMERCIAL}, got {values['commercial']!r}")
        try:
            _dt.date.fromisoformat(values["checked"])
        except ValueError:
            raise broken(f"{where} checked: must be a date YYYY-MM-DD, got {values['checked']!r}") from None
        out[str(component)] = License(**values)
    return out
