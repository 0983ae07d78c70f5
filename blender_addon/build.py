"""Build the installable Blender extension zips.

    python -m blender_addon.build                          # dist/greenlight-0.1.0-<platform>.zip, one per platform
    python -m blender_addon.build --platforms linux-x64    # just that one (comma-separated or repeated)
    python -m blender_addon.build --no-wheels              # dist/greenlight-0.1.0-nowheels.zip (alias --offline)

Each platform zip (linux-x64, linux-arm64, macos-arm64, macos-x64,
windows-x64: the platforms Blender ships) bundles the client's wheels,
``WHEELS`` (grpcio, protobuf, googleapis-common-protos, the
typing_extensions grpcio requires, and screenplay-tools for the storyboard
operator), for CPython 3.11 (Blender 4.2-5.0) and
3.13 (Blender 5.1+, and Linux distribution builds on a system Python 3.13).
Its manifest lists only that platform's wheels and declares only that
platform; Blender installs, per extension, the ones that fit its Python. The
wheels come from ``pip download --only-binary=:all: --no-deps --platform TAG
--python-version X.Y`` into a cache folder (``dist/wheels-cache/``,
git-ignored): a wheel already there is never downloaded again (a second
build downloads nothing), and one that serves several targets (the
``py3-none-any`` wheels, protobuf's ``cp310-abi3`` wheel, a macOS
``universal2`` wheel) is stored, and bundled, once. numpy is never bundled
(Blender ships it). The wheel-less zip (``--no-wheels``) is for a Blender
whose Python already has the client's packages; without them, the add-on
enables with a notice naming what is missing and the zip to install
(``deps_check.py``).

The build copies (never hand-copies) the engine-free modules listed in
``bridge/vendoring.py`` (``bridge/__init__.py``, ``bridge/errors.py``,
``bridge/shot``, ``bridge/client``, ``bridge/proto``, the job model and
``bridge/storyboard``; the Unreal build uses the same list) into
``_vendor/bridge`` inside the extension; the one rewrite is the generated
stubs' absolute ``from bridge.proto.greenlight.v1 import`` into a relative
import so the vendored copy never collides with an installed
``greenlight``. The sample shots' figure builder (``engine_renders/host.py``,
for the "Block Shots from Script" operator) goes to
``_vendor/engine_renders/host.py`` with its import of the add-on's
``compat`` made relative. Packaging and
validation use Blender's own ``blender_ext.py`` (what ``blender --command
extension build / validate`` runs), taken from the ``bpy`` package when
installed; every zip is validated.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from blender_addon.deps_check import BUNDLED_PYTHONS, ZIP_PLATFORMS
from bridge.vendoring import vendor_bridge

ADDON = Path(__file__).resolve().parent
REPO = ADDON.parent
ADDON_EXCLUDE = {"build.py"}
WHEELS = {"grpcio": "1.85.1", "protobuf": "7.36.2", "typing_extensions": "4.15.0", "googleapis-common-protos": "1.76.0",
          # pure Python: Fountain/Final Draft parsing for "Block Shots from Script" (same pin as pyproject's
          # storyboard extra: bridge/storyboard/screenplay.py reads two of its private attributes)
          "screenplay-tools": "0.0.10"}
# The sample shots' scene helpers (the metarig figure builder) that "Block Shots from Script" uses, copied into
# ``_vendor/engine_renders``; their one import of the add-on becomes a relative one.
FIGURES = REPO / "engine_renders" / "host.py"
_FIGURES_IMPORT = "from blender_addon import compat\n"
PY_VERSIONS = tuple(f"{a}.{b}" for a, b in BUNDLED_PYTHONS)    # ("3.11", "3.13")
DEFAULT_CACHE = REPO / "dist" / "wheels-cache"
NO_WHEELS_SUFFIX = "nowheels"
# Blender platform -> pip --platform tags, best first.
PLATFORMS = {
    "linux-x64": ["manylinux_2_17_x86_64", "manylinux2014_x86_64"],
    "linux-arm64": ["manylinux_2_17_aarch64", "manylinux2014_aarch64"],
    "macos-arm64": ["macosx_11_0_universal2", "macosx_11_0_arm64", "macosx_10_9_universal2"],
    "macos-x64": ["macosx_11_0_universal2", "macosx_10_14_x86_64", "macosx_10_9_universal2"],
    "windows-x64": ["win_amd64"],
}
# Blender platform -> (wheel platform tag prefix, architecture suffixes): the rule Blender's installer applies.
_WHEEL_ARCH = {
    "linux-x64": ("manylinux", ("x86_64",)),
    "linux-arm64": ("manylinux", ("aarch64",)),
    "macos-arm64": ("macosx", ("arm64", "universal2")),
    "macos-x64": ("macosx", ("x86_64", "universal2")),
    "windows-x64": ("win", ("amd64",)),
}
assert tuple(PLATFORMS) == ZIP_PLATFORMS == tuple(_WHEEL_ARCH)


class BuildError(RuntimeError):
    pass


def blender_ext_script() -> Path | None:
    """Blender's extension command-line tool from the installed bpy package."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or spec.origin is None:
        return None
    hits = sorted(Path(spec.origin).parent.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    return hits[-1] if hits else None


def manifest_id_version(text: str | None = None) -> tuple[str, str]:
    text = (ADDON / "blender_manifest.toml").read_text() if text is None else text
    return (re.search(r'^id = "(.+)"', text, re.M).group(1), re.search(r'^version = "(.+)"', text, re.M).group(1))


def zip_name(platform: str | None) -> str:
    """``greenlight-0.1.0-linux-x64.zip``; ``None``: the wheel-less ``greenlight-0.1.0-nowheels.zip``."""
    ext_id, version = manifest_id_version()
    return f"{ext_id}-{version}-{platform or NO_WHEELS_SUFFIX}.zip"


# ---------------------------------------------------------------- wheels
def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def wheel_fits(filename: str, platform: str, python: str) -> bool:
    """Whether the wheel ``filename`` installs on ``platform`` (Blender's name) under CPython ``python``."""
    return _wheel_rank(filename, platform, python) is not None


def _wheel_rank(filename: str, platform: str, python: str) -> int | None:
    """0: built for this CPython, 1: stable ABI (abi3), 2: pure Python; None: does not fit."""
    parts = filename[:-4].split("-")
    if not filename.endswith(".whl") or not 5 <= len(parts) <= 6:
        return None
    pys, abis, plats = (set(p.split(".")) for p in parts[-3:])
    major, minor = (int(v) for v in python.split("."))
    cp = f"cp{major}{minor}"
    prefix, arches = _WHEEL_ARCH[platform]
    if "any" not in plats and not any(p.startswith(prefix) and p.endswith(tuple("_" + a for a in arches))
                                      for p in plats):
        return None
    if cp in pys and cp in abis:
        return 0
    if "abi3" in abis and any(re.fullmatch(rf"cp{major}(\d+)", p) and int(p[3:]) <= minor for p in pys):
        return 1
    if "none" in abis and pys & {f"py{major}", f"py{major}{minor}", cp}:
        return 2
    return None


def _cached(cache: Path, name: str, version: str, platform: str, python: str) -> Path | None:
    """The best wheel of ``name==version`` in ``cache`` for this target, if there is one."""
    ranked = []
    for path in cache.glob("*.whl"):
        parts = path.name.split("-")
        if _norm(parts[0]) != _norm(name) or parts[1] != version:
            continue
        rank = _wheel_rank(path.name, platform, python)
        if rank is not None:
            ranked.append((rank, path.name, path))
    return min(ranked)[2] if ranked else None


def _pip_download(dest: Path, platform: str, python: str, requirements: list[str]) -> None:
    args = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--no-deps",
            "--python-version", python, "--implementation", "cp", "-d", str(dest)]
    for tag in PLATFORMS[platform]:
        args += ["--platform", tag]
    proc = subprocess.run(args + requirements, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"pip download for {platform} / Python {python} failed:\n{proc.stderr[-2000:]}")


def wheels_for(platform: str, cache: Path = DEFAULT_CACHE) -> list[Path]:
    """The pinned ``WHEELS`` for ``platform`` and every ``PY_VERSIONS`` (sorted, each file once), downloaded
    into ``cache`` when not already there."""
    cache.mkdir(parents=True, exist_ok=True)
    chosen: set[Path] = set()
    for python in PY_VERSIONS:
        need = [f"{n}=={v}" for n, v in WHEELS.items() if _cached(cache, n, v, platform, python) is None]
        if need:
            with tempfile.TemporaryDirectory(prefix=".download-", dir=cache) as tmp:
                _pip_download(Path(tmp), platform, python, need)
                for w in Path(tmp).glob("*.whl"):
                    os.replace(w, cache / w.name)
        for name, version in WHEELS.items():
            hit = _cached(cache, name, version, platform, python)
            if hit is None:
                raise BuildError(f"no {name}=={version} wheel for {platform} / CPython {python} "
                                 f"(pip download gave none; tags {PLATFORMS[platform]})")
            chosen.add(hit)
    return sorted(chosen, key=lambda p: p.name)


# ---------------------------------------------------------------- staging, packaging, validation
def stage(staging: Path, wheels: list[Path] = (), platform: str | None = None) -> Path:
    """Lay out the extension source tree in ``staging`` (with ``wheels`` listed in the manifest and
    ``platforms = [platform]`` when given); returns it."""
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    for path in sorted(ADDON.iterdir()):
        if path.name in ADDON_EXCLUDE or path.name.startswith((".", "__pycache__")) or path.name in ("dist", "_vendor"):
            continue
        if path.is_file() and path.suffix in (".py", ".toml", ".md"):
            shutil.copy2(path, staging / path.name)
    vendor = staging / "_vendor"
    (vendor / "bridge").mkdir(parents=True)
    (vendor / "__init__.py").write_text('"""Modules copied from the Greenlight repository by build.py."""\n')
    vendor_bridge(vendor / "bridge", relative_stub_imports=True)
    vendor_figures(vendor / "engine_renders")
    manifest = (staging / "blender_manifest.toml").read_text()
    block = []
    if wheels:
        (staging / "wheels").mkdir()
        for w in wheels:
            shutil.copy2(w, staging / "wheels" / w.name)
        listed = "".join(f'  "./wheels/{w.name}",\n' for w in sorted(wheels, key=lambda p: p.name))
        block.append(f"wheels = [\n{listed}]")
    if platform:
        block.append(f'platforms = ["{platform}"]')
    if block:
        manifest = _with_top_level(_without_top_level(manifest, ("wheels", "platforms")), "\n".join(block) + "\n")
    (staging / "blender_manifest.toml").write_text(manifest)
    return staging


def vendor_figures(dst: Path) -> None:
    """``engine_renders/host.py`` as ``dst/host.py`` (package ``_vendor.engine_renders``), importing the
    extension's own ``compat``."""
    text = FIGURES.read_text()
    if text.count(_FIGURES_IMPORT) != 1:
        raise BuildError(f"{FIGURES}: expected one {_FIGURES_IMPORT.strip()!r} line to make relative")
    dst.mkdir(parents=True)
    (dst / "__init__.py").write_text('"""engine_renders/host.py, copied by build.py (the storyboard\'s figures)."""\n')
    (dst / "host.py").write_text(text.replace(_FIGURES_IMPORT, "from ... import compat\n"))


def _without_top_level(text: str, keys: tuple[str, ...]) -> str:
    """Drop top-level ``key = [...]`` entries (one line or several) for ``keys``."""
    for key in keys:
        text = re.sub(rf"^{key} = \[[^\]]*\]\n?", "", text, flags=re.M)
    return text


def _with_top_level(text: str, block: str) -> str:
    """Insert top-level keys above the first [table] (TOML: top-level keys come first)."""
    first_table = re.search(r"^\[", text, re.M)
    if first_table is None:
        return text.rstrip("\n") + "\n" + block
    return text[:first_table.start()] + block + "\n" + text[first_table.start():]


def _hoist_top_level(text: str) -> str:
    """Move trailing ``wheels``/``platforms`` keys above the first [table]."""
    tail_at = text.index("\nwheels = [")
    head, tail = text[:tail_at], text[tail_at:]
    return _with_top_level(head.rstrip("\n") + "\n", tail.strip("\n") + "\n")


def package(staging: Path, out_file: Path) -> Path:
    """Zip ``staging`` into ``out_file`` with Blender's own builder (falls back to zipfile)."""
    out_file.parent.mkdir(parents=True, exist_ok=True)
    script = blender_ext_script()
    if script is None:
        with zipfile.ZipFile(out_file, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in sorted(staging.rglob("*")):
                if f.is_file():
                    zf.write(f, f.relative_to(staging).as_posix())
        return out_file
    proc = subprocess.run([sys.executable, str(script), "build", "--source-dir", str(staging),
                           "--output-filepath", str(out_file)], capture_output=True, text=True)
    if proc.returncode != 0 or not out_file.is_file():
        raise BuildError(f"blender_ext build failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return out_file


def validate(zip_path: Path) -> dict:
    """Blender's extension validator on a built zip; raises BuildError when it fails."""
    script = blender_ext_script()
    if script is None:
        raise BuildError("Blender's blender_ext.py was not found: install the bpy package (the [blender] extra) "
                         "or validate with `blender --command extension validate ZIP`")
    proc = subprocess.run([sys.executable, str(script), "validate", "--output-type", "JSON", str(zip_path)],
                          capture_output=True, text=True)
    messages = [json.loads(line) for line in proc.stdout.splitlines() if line.strip().startswith("[")]
    if proc.returncode != 0 or any(m[0] in ("FATAL_ERROR", "ERROR") for m in messages):
        raise BuildError(f"{zip_path.name} failed Blender's validator: {proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    return {"messages": messages}


def build(out_dir: Path, platforms: list[str] | None = None, wheels: bool = True, cache_dir: Path | None = None,
          check: bool = True) -> list[Path]:
    """One zip per platform in ``platforms`` (default: all) with its wheels, or, with ``wheels=False``, the one
    wheel-less zip. Every zip is validated (``check``)."""
    out_dir = Path(out_dir)
    targets = [None] if not wheels else list(platforms or PLATFORMS)
    unknown = [p for p in targets if p is not None and p not in PLATFORMS]
    if unknown:
        raise BuildError(f"unknown platform {', '.join(unknown)} (known: {', '.join(PLATFORMS)})")
    zips = []
    with tempfile.TemporaryDirectory(prefix="greenlight-ext-") as tmp:
        for platform in targets:
            files = wheels_for(platform, Path(cache_dir or DEFAULT_CACHE)) if platform else []
            staging = stage(Path(tmp) / (platform or NO_WHEELS_SUFFIX) / "greenlight", files, platform)
            zips.append(package(staging, out_dir / zip_name(platform)))
    if check:
        for z in zips:
            validate(z)
    return zips


def zip_wheels(zip_path: Path) -> list[str]:
    """The wheels a built zip's manifest lists (file names)."""
    import tomllib

    with zipfile.ZipFile(zip_path) as zf:
        manifest = tomllib.loads(zf.read("blender_manifest.toml").decode())
    return [w.rsplit("/", 1)[-1] for w in manifest.get("wheels", [])]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m blender_addon.build", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(REPO / "dist"), help="output folder (default: dist/)")
    p.add_argument("--platforms", "--platform", action="append", metavar="PLATFORM[,PLATFORM]",
                   help=f"build only these ({', '.join(PLATFORMS)}); comma-separated or repeated")
    p.add_argument("--no-wheels", "--offline", dest="no_wheels", action="store_true",
                   help=f"the one wheel-less zip (*-{NO_WHEELS_SUFFIX}.zip), no download")
    p.add_argument("--wheels-cache", default=str(DEFAULT_CACHE),
                   help="downloaded wheels are kept here (default: dist/wheels-cache/)")
    p.add_argument("--no-validate", action="store_true")
    args = p.parse_args(argv)
    platforms = [x for arg in args.platforms or () for x in arg.split(",") if x] or None
    try:
        zips = build(Path(args.out), platforms, wheels=not args.no_wheels, cache_dir=Path(args.wheels_cache),
                     check=not args.no_validate)
    except BuildError as exc:
        print(f"build failed: {exc}", file=sys.stderr)
        return 1
    for z in zips:
        wheels = zip_wheels(z)
        print(f"built {z} ({z.stat().st_size / 1e6:.2f} MB, {len(wheels)} wheels)"
              f"{'' if args.no_validate else ', valid'}")
        for w in wheels:
            print(f"    {w}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
