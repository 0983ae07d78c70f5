"""Build the installable Blender extension zip.

    python -m blender_addon.build                       # dist/greenlight-0.1.0.zip, no wheels
    python -m blender_addon.build --download-wheels     # + grpcio/protobuf/typing_extensions cp311 wheels
    python -m blender_addon.build --wheels-dir WHEELS   # + the wheels already in WHEELS
    python -m blender_addon.build --split-platforms     # one zip per platform (with wheels)

The build copies (never hand-copies) the engine-free modules listed in
``bridge/vendoring.py`` (``bridge/__init__.py``, ``bridge/errors.py``,
``bridge/shot``, ``bridge/client`` and ``bridge/proto``; the Unreal build
uses the same list) into ``_vendor/bridge`` inside the extension; the one
rewrite is the generated stubs' absolute ``from bridge.proto.greenlight.v1
import`` into a relative import so the vendored copy never collides with an
installed ``greenlight``. Wheels are listed in the manifest's ``wheels``
(Blender installs them per extension). Packaging and validation use
Blender's own ``blender_ext.py`` (what ``blender --command extension build /
validate`` runs), taken from the ``bpy`` package when installed.

Blender 4.2-5.0 run Python 3.11: the wheels are cp311. Blender 5.1+ runs
Python 3.13 and would need ``--python-version 3.13`` wheels and a manifest
with ``blender_version_min = "5.1.0"``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from bridge.vendoring import vendor_bridge

ADDON = Path(__file__).resolve().parent
REPO = ADDON.parent
ADDON_EXCLUDE = {"build.py"}
WHEELS = {"grpcio": "1.85.1", "protobuf": "7.36.2", "typing_extensions": "4.15.0", "googleapis-common-protos": "1.76.0"}
PY_VERSION = "3.11"
# Blender platform -> pip --platform tags, best first.
PLATFORMS = {
    "linux-x64": ["manylinux_2_17_x86_64", "manylinux2014_x86_64"],
    "linux-arm64": ["manylinux_2_17_aarch64", "manylinux2014_aarch64"],
    "macos-arm64": ["macosx_11_0_universal2", "macosx_11_0_arm64", "macosx_10_9_universal2"],
    "macos-x64": ["macosx_11_0_universal2", "macosx_10_14_x86_64", "macosx_10_9_universal2"],
    "windows-x64": ["win_amd64"],
}


class BuildError(RuntimeError):
    pass


def blender_ext_script() -> Path | None:
    """Blender's extension command-line tool from the installed bpy package."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or spec.origin is None:
        return None
    hits = sorted(Path(spec.origin).parent.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    return hits[-1] if hits else None


def stage(staging: Path, wheels: list[Path]) -> Path:
    """Lay out the extension source tree in ``staging``; returns it."""
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
    manifest = (staging / "blender_manifest.toml").read_text()
    if wheels:
        (staging / "wheels").mkdir()
        for w in wheels:
            shutil.copy2(w, staging / "wheels" / w.name)
        listed = ",\n".join(f'  "./wheels/{w.name}"' for w in sorted(wheels, key=lambda p: p.name))
        platforms = ", ".join(f'"{p}"' for p in platforms_of(wheels))
        manifest += f"\nwheels = [\n{listed},\n]\nplatforms = [{platforms}]\n"
        # TOML: top-level keys must come before the first table.
        manifest = _hoist_top_level(manifest)
    (staging / "blender_manifest.toml").write_text(manifest)
    return staging


def _hoist_top_level(text: str) -> str:
    """Move trailing ``wheels``/``platforms`` keys above the first [table]."""
    tail_at = text.index("\nwheels = [")
    head, tail = text[:tail_at], text[tail_at:]
    first_table = re.search(r"^\[", head, re.M)
    if first_table is None:
        return text
    return head[:first_table.start()] + tail.lstrip("\n") + "\n" + head[first_table.start():]


def platforms_of(wheels: list[Path]) -> list[str]:
    """The Blender platforms every platform-specific wheel set covers."""
    found = []
    for platform, tags in PLATFORMS.items():
        native = [w for w in wheels if not w.name.endswith("-none-any.whl")]
        names = {w.name.split("-")[0].lower() for w in native if any(t in w.name for t in tags)}
        needed = {w.name.split("-")[0].lower() for w in native}
        if needed and names == needed:
            found.append(platform)
    return found or list(PLATFORMS)


def download_wheels(dest: Path, platforms: list[str]) -> list[Path]:
    """``pip download`` the pinned cp311 wheels for each platform."""
    dest.mkdir(parents=True, exist_ok=True)
    for platform in platforms:
        args = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--no-deps",
                "--python-version", PY_VERSION, "--implementation", "cp", "-d", str(dest)]
        for tag in PLATFORMS[platform]:
            args += ["--platform", tag]
        args += [f"{name}=={version}" for name, version in WHEELS.items()]
        proc = subprocess.run(args, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildError(f"pip download for {platform} failed:\n{proc.stderr[-2000:]}")
    return sorted(dest.glob("*.whl"))


def package(staging: Path, out_dir: Path, split_platforms: bool = False) -> list[Path]:
    """Zip ``staging`` with Blender's own builder (falls back to zipfile)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    script = blender_ext_script()
    before = set(out_dir.glob("*.zip"))
    if script is None:
        manifest = (staging / "blender_manifest.toml").read_text()
        ext_id = re.search(r'^id = "(.+)"', manifest, re.M).group(1)
        version = re.search(r'^version = "(.+)"', manifest, re.M).group(1)
        path = out_dir / f"{ext_id}-{version}.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in sorted(staging.rglob("*")):
                if f.is_file():
                    zf.write(f, f.relative_to(staging).as_posix())
        return [path]
    args = [sys.executable, str(script), "build", "--source-dir", str(staging), "--output-dir", str(out_dir)]
    if split_platforms:
        args.append("--split-platforms")
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"blender_ext build failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    made = sorted(set(out_dir.glob("*.zip")) - before) or sorted(out_dir.glob("*.zip"))
    return made


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


def build(out_dir: Path, wheels_dir: Path | None = None, download: bool = False,
          platforms: list[str] | None = None, split_platforms: bool = False, check: bool = True) -> list[Path]:
    platforms = platforms or list(PLATFORMS)
    with tempfile.TemporaryDirectory(prefix="greenlight-ext-") as tmp:
        tmp = Path(tmp)
        wheels: list[Path] = []
        if download:
            wheels = download_wheels(wheels_dir or tmp / "wheels", platforms)
        elif wheels_dir is not None:
            wheels = sorted(Path(wheels_dir).glob("*.whl"))
            if not wheels:
                raise BuildError(f"no .whl files in {wheels_dir}")
        staging = stage(tmp / "greenlight", wheels)
        zips = package(staging, Path(out_dir), split_platforms=split_platforms and bool(wheels))
    if check:
        for z in zips:
            validate(z)
    return zips


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m blender_addon.build", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(REPO / "dist"), help="output folder (default: dist/)")
    p.add_argument("--wheels-dir", help="use (or, with --download-wheels, fill) this folder of wheels")
    p.add_argument("--download-wheels", action="store_true", help="pip download the pinned cp311 wheels")
    p.add_argument("--platform", action="append", choices=sorted(PLATFORMS), help="limit platforms (repeatable)")
    p.add_argument("--split-platforms", action="store_true", help="one zip per platform")
    p.add_argument("--no-validate", action="store_true")
    args = p.parse_args(argv)
    try:
        zips = build(Path(args.out), Path(args.wheels_dir) if args.wheels_dir else None, args.download_wheels,
                     args.platform, args.split_platforms, check=not args.no_validate)
    except BuildError as exc:
        print(f"build failed: {exc}", file=sys.stderr)
        return 1
    for z in zips:
        print(f"built {z} ({z.stat().st_size / 1e6:.2f} MB){'' if args.no_validate else ', valid'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
