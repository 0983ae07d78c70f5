"""Does this Blender's Python have what the add-on needs? (no bpy at import)

``missing()`` imports each module in ``REQUIRED`` and returns a
:class:`Missing` record for each distribution that fails; ``messages()``
turns them into one line each saying what is missing and which Greenlight
zip bundles it, e.g. ``grpcio is missing: install
greenlight-0.1.0-linux-x64.zip, which bundles it, or pip install grpcio into
Blender's Python``. The add-on's ``register()`` runs the check before it
registers the operators that need these modules; when something is missing it
calls ``register_notice()`` instead, the one bpy part here (bpy is imported
inside it): add-on preferences and a sidebar panel showing those lines.

The platform zips (``build.py``) bundle ``BUNDLED`` for ``BUNDLED_PYTHONS``
on ``ZIP_PLATFORMS``; numpy is never bundled (official Blender builds ship
it; a Linux distribution build may not).
"""

from __future__ import annotations

import importlib
import platform as _platform
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

# module to import -> the distribution (pip name) that provides it
REQUIRED = (
    ("numpy", "numpy"),
    ("grpc", "grpcio"),
    ("google.protobuf", "protobuf"),
    ("google.rpc.status_pb2", "googleapis-common-protos"),   # bridge/client/status.py
)
# top-level module -> distribution, for a dependency of a required module (grpcio imports typing_extensions)
DISTRIBUTION_OF = {"numpy": "numpy", "grpc": "grpcio", "google.protobuf": "protobuf",
                   "google.rpc": "googleapis-common-protos", "typing_extensions": "typing_extensions"}
BUNDLED = ("grpcio", "protobuf", "googleapis-common-protos", "typing_extensions")
BUNDLED_PYTHONS = ((3, 11), (3, 13))    # Blender 4.2-5.0; Blender 5.1+ and distribution builds
ZIP_PLATFORMS = ("linux-x64", "linux-arm64", "macos-arm64", "macos-x64", "windows-x64")
_MANIFEST = Path(__file__).resolve().parent / "blender_manifest.toml"


@dataclass(frozen=True)
class Missing:
    distribution: str     # "grpcio"
    module: str           # the module that failed to import: "grpc"
    error: str            # "ModuleNotFoundError: No module named 'grpc'"
    absent: bool = True   # False: found but it does not load (a wheel for another Python, a broken binary)
    needed_by: str = ""   # "grpcio" when typing_extensions is what grpcio could not import


def missing(required=REQUIRED) -> list[Missing]:
    """Import each required module; one record per distribution that fails."""
    out: dict[str, Missing] = {}
    for module, dist in required:
        try:
            importlib.import_module(module)
        except Exception as exc:  # ImportError, or a binary that raises on load (OSError, ...)
            record = _record(module, dist, exc)
            out.setdefault(record.distribution, record)
    return list(out.values())


def _record(module: str, dist: str, exc: Exception) -> Missing:
    error = f"{type(exc).__name__}: {exc}"
    name = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    if not name:
        return Missing(dist, module, error, absent=False)
    if module == name or module.startswith(name + "."):
        return Missing(dist, module, error)          # the module itself (or its package) is not there
    for top, other in DISTRIBUTION_OF.items():       # a dependency of it is missing
        if (name == top or name.startswith(top + ".")) and other != dist:
            return Missing(other, name, error, needed_by=dist)
    return Missing(dist, module, error, absent=False)


def this_platform() -> str:
    """Blender's platform name for this machine (as ``blender_ext.py`` spells it): ``linux-x64``, ..."""
    system = _platform.system().lower()
    machine = _platform.machine().lower()
    system = {"darwin": "macos"}.get(system, system)
    machine = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "aarch32": "arm32"}.get(machine, machine)
    return f"{system}-{machine}"


def manifest_text() -> str:
    try:
        return _MANIFEST.read_text(encoding="utf-8")
    except OSError:
        return ""


def zip_name(platform: str, manifest: str | None = None) -> str:
    """``greenlight-0.1.0-linux-x64.zip``: the zip ``build.py`` makes for ``platform``."""
    manifest = manifest_text() if manifest is None else manifest
    ext_id = re.search(r'^id = "(.+)"', manifest, re.M)
    version = re.search(r'^version = "(.+)"', manifest, re.M)
    return f"{ext_id.group(1) if ext_id else 'greenlight'}-{version.group(1) if version else ''}-{platform}.zip"


def bundles_wheels(manifest: str | None = None) -> bool:
    """Whether this installed copy is a platform zip (its manifest lists wheels)."""
    manifest = manifest_text() if manifest is None else manifest
    return re.search(r"^wheels = \[", manifest, re.M) is not None


def _versions(pythons) -> str:
    names = [f"{a}.{b}" for a, b in pythons]
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def message(m: Missing, platform: str | None = None, python: tuple[int, int] | None = None,
            manifest: str | None = None) -> str:
    """One line: what is missing and what to install."""
    platform = platform or this_platform()
    python = tuple(python or sys.version_info[:2])
    manifest = manifest_text() if manifest is None else manifest
    dist = m.distribution
    what = f"{dist} is missing" if m.absent else f"{dist} does not load ({m.error})"
    if m.needed_by:
        what += f" ({m.needed_by} needs it)"
    pip = f"pip install {dist} into Blender's Python"
    if dist not in BUNDLED:
        return (f"{what}: no Greenlight zip bundles {dist} (official Blender builds include it): "
                f"install your distribution's {dist} package for Blender's Python, or {pip}")
    if python not in BUNDLED_PYTHONS:
        return (f"{what}: the Greenlight zips bundle it for Python {_versions(BUNDLED_PYTHONS)} only and this "
                f"Blender runs Python {python[0]}.{python[1]}: {pip}")
    if platform not in ZIP_PLATFORMS:
        return f"{what}: no Greenlight zip bundles it for {platform}: {pip}"
    zip_file = zip_name(platform, manifest)
    if bundles_wheels(manifest):
        return f"{what} although this extension bundles it: reinstall {zip_file}, or {pip}"
    return f"{what}: install {zip_file}, which bundles it, or {pip}"


def messages(found: list[Missing], **kw) -> list[str]:
    return [message(m, **kw) for m in found]


def pip_command(found: list[Missing]) -> str:
    """The command that installs what is missing into this Python (``sys.executable`` is Blender's Python)."""
    return f'"{sys.executable}" -m pip install {" ".join(m.distribution for m in found)}'


# ---------------------------------------------------------------- the notice (bpy, only when something is missing)
_NOTICE: dict = {"classes": [], "lines": [], "command": ""}
TITLE = "Greenlight cannot run in this Blender:"


def draw_notice(layout, lines: list[str], command: str = "", width: int = 72) -> None:
    """Draw ``lines`` and the pip ``command`` (wrapped: Blender labels do not wrap) on any layout with
    ``box``/``label``."""
    box = layout.box()
    box.alert = True
    box.label(text=TITLE, icon="ERROR")
    for line in [*lines, *([f"From a terminal: {command}"] if command else [])]:
        for i, part in enumerate(textwrap.wrap(line, width) or [""]):
            box.label(text=part if i == 0 else "    " + part)


def notice_registered() -> bool:
    return bool(_NOTICE["classes"])


def register_notice(lines: list[str], package: str, command: str = "") -> None:
    """Register add-on preferences and sidebar panels (3D viewport, Sequencer) that show ``lines`` (and the
    pip ``command``)."""
    import bpy

    _NOTICE["lines"], _NOTICE["command"] = list(lines), command

    def draw(self, context):
        draw_notice(self.layout, _NOTICE["lines"], _NOTICE["command"])

    prefs = type("GreenlightMissingPreferences", (bpy.types.AddonPreferences,), {"bl_idname": package, "draw": draw})
    panels = [type(f"GREENLIGHT_PT_deps_{key}", (bpy.types.Panel,), {
        "bl_label": "Greenlight Previz", "bl_space_type": space, "bl_region_type": "UI",
        "bl_category": "Greenlight", "draw": draw}) for key, space in (("view3d", "VIEW_3D"),
                                                                      ("sequencer", "SEQUENCE_EDITOR"))]
    for cls in (prefs, *panels):
        bpy.utils.register_class(cls)
        _NOTICE["classes"].append(cls)


def unregister_notice() -> None:
    import bpy

    while _NOTICE["classes"]:
        bpy.utils.unregister_class(_NOTICE["classes"].pop())
    _NOTICE["lines"], _NOTICE["command"] = [], ""
