"""Sites configuration: the shipped ``sites.toml`` plus the user's own.

A sites file has ``[profiles.NAME]`` tables (shared figures, e.g. a cloud
provider's fleet PUE) and ``[sites.NAME]`` tables (a place: ``profile``,
``grid_region``, and any field of :class:`~bridge.energy.accounting.Site`
to override). User files are merged over the shipped one, site by site.
Errors name the file, the site and the field, at start-up.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path

from ..errors import InvalidArgumentError
from .accounting import Site

SITES_FILE = Path(__file__).with_name("sites.toml")
_SITE_FIELDS = {f.name for f in fields(Site)}


def _read(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidArgumentError(f"sites file {path}: {exc}") from exc


def build_site(name: str, values: Mapping, profiles: Mapping[str, Mapping], origin: str = "config") -> Site:
    """One Site from a ``[sites.NAME]`` table (``profile`` resolved)."""
    values = dict(values)
    profile_name = values.pop("profile", None)
    merged: dict = {}
    if profile_name is not None:
        if profile_name not in profiles:
            raise InvalidArgumentError(f"{origin}: site {name!r}: unknown profile {profile_name!r}; "
                                       f"known: {sorted(profiles)}")
        merged.update(profiles[profile_name])
    merged.update(values)
    merged.setdefault("name", name)
    unknown = set(merged) - _SITE_FIELDS
    if unknown:
        raise InvalidArgumentError(f"{origin}: site {name!r}: unknown keys {sorted(unknown)}; "
                                   f"valid: {sorted(_SITE_FIELDS | {'profile'})}")
    try:
        return Site(**merged)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"{origin}: {exc}") from exc


def load_sites(*paths: str | Path, include_shipped: bool = True) -> dict[str, Site]:
    """All sites, shipped first, each later file overriding by site name."""
    profiles: dict[str, dict] = {}
    raw_sites: dict[str, tuple[dict, str]] = {}
    files = ([SITES_FILE] if include_shipped else []) + [Path(p) for p in paths]
    for path in files:
        data = _read(path)
        unknown = set(data) - {"profiles", "sites"}
        if unknown:
            raise InvalidArgumentError(f"sites file {path}: unknown tables {sorted(unknown)}; "
                                       "valid: ['profiles', 'sites']")
        for pname, pvalues in data.get("profiles", {}).items():
            profiles[pname] = {**profiles.get(pname, {}), **pvalues}
        for sname, svalues in data.get("sites", {}).items():
            raw_sites[sname] = (dict(svalues), str(path))
    return {name: build_site(name, values, profiles, origin) for name, (values, origin) in raw_sites.items()}


def site_from_config(values: Mapping, sites_file: str | Path | None = None) -> Site:
    """What ``bridge.server.config`` should call for its ``[site]`` table.

    ``[site] use = "aws-eu-central-1"`` picks a shipped (or ``sites_file``)
    site and may override fields; ``[site] profile = "google"`` +
    ``grid_region`` builds one from a profile; otherwise the table is a
    plain :class:`Site`.
    """
    values = dict(values)
    use = values.pop("use", None)
    shipped = _read(SITES_FILE)
    profiles = dict(shipped.get("profiles", {}))
    base: dict = {}
    if sites_file is not None:
        extra = _read(Path(sites_file))
        for pname, pvalues in extra.get("profiles", {}).items():
            profiles[pname] = {**profiles.get(pname, {}), **pvalues}
    if use is not None:
        known = dict(shipped.get("sites", {}))
        if sites_file is not None:
            known.update(_read(Path(sites_file)).get("sites", {}))
        if use not in known:
            raise InvalidArgumentError(f"config [site]: use = {use!r} is not a known site; known: {sorted(known)}")
        base = dict(known[use])
        base.setdefault("name", use)
    return build_site(values.get("name", base.get("name", "local")), {**base, **values}, profiles, "config [site]")
