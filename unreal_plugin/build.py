"""Assemble the installable Unreal plugin folder.

    python -m unreal_plugin.build OUT             # OUT/Greenlight, ready to copy into <Project>/Plugins/
    python -m unreal_plugin.build --lock          # refresh unreal_plugin/requirements.lock (needs PyPI)

What the build does:

1. copies ``unreal_plugin/Greenlight`` (the .uplugin and Content/Python);
2. vendors the engine-free Greenlight modules listed in
   ``bridge/vendoring.py`` (``bridge/__init__.py``, ``errors.py``, ``shot``,
   ``client``, ``proto``; the Blender build uses the same list; never by
   hand) into ``Content/Python/Lib/site-packages/bridge``, which Unreal
   adds to ``sys.path`` for every enabled plugin;
3. writes the compiled dependencies (grpcio, protobuf, numpy, openexr,
   typing_extensions) into the .uplugin's ``PythonRequirements`` block from
   ``requirements.lock``: exact versions with the sha256 of every cp311
   wheel for Win64, macOS and Linux, so Unreal's pip installer (UE 5.4+,
   Python 3.11) can run with "Pip Strict Hash Checking" on.

Why ``PythonRequirements`` rather than per-platform wheels unpacked under
``Content/Python/<Platform>/Lib/site-packages``: grpcio and numpy are
native and large (tens of MB per platform); Unreal installs the one wheel
its platform needs into the project's pip environment, shared with other
plugins, and studios behind a firewall point it at their own index with the
"Override Index URL" project setting. The lock keeps that reproducible.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bridge.vendoring import copy_tree, vendor_bridge

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SOURCE = HERE / "Greenlight"
LOCK = HERE / "requirements.lock"
SITE_PACKAGES = Path("Content/Python/Lib/site-packages")
PINS = {"grpcio": "1.85.1", "protobuf": "7.36.2", "numpy": "1.26.4", "openexr": "3.5.3",
        "typing_extensions": "4.15.0", "googleapis_common_protos": "1.76.0"}   # the last: typed errors
PY_VERSION = "3.11"
# Unreal platform (Mac split by CPU) -> pip --platform tags, best first.
PLATFORMS = {
    "Win64": ["win_amd64"],
    "Mac-arm64": ["macosx_11_0_arm64", "macosx_10_9_universal2", "macosx_11_0_universal2"],
    "Mac-x64": ["macosx_10_9_x86_64", "macosx_10_14_x86_64", "macosx_11_0_x86_64", "macosx_10_9_universal2"],
    "Linux": ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"],
}
REQUIRED_KEYS = ("FileVersion", "FriendlyName", "VersionName", "EngineVersion", "CanContainContent", "Plugins",
                 "PythonRequirements")


class BuildError(RuntimeError):
    pass


def read_lock(path: Path = LOCK) -> list[str]:
    """Requirement lines (``name==version --hash=sha256:...``), comments dropped."""
    if not path.is_file():
        raise BuildError(f"{path} is missing: run `python -m unreal_plugin.build --lock`")
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    for ln in lines:
        if "==" not in ln or "--hash=sha256:" not in ln:
            raise BuildError(f"{path}: every line needs an exact pin and hashes, got {ln[:80]!r}")
    names = {ln.split("==")[0].lower() for ln in lines}
    missing = {n.lower() for n in PINS} - names
    if missing:
        raise BuildError(f"{path}: no entry for {sorted(missing)}; run --lock again")
    return lines


def build(out_dir: str | Path, lock: Path = LOCK) -> Path:
    """Write ``out_dir/Greenlight``; returns its path."""
    requirements = read_lock(lock)
    plugin = Path(out_dir) / "Greenlight"
    if plugin.exists():
        shutil.rmtree(plugin)
    copy_tree(SOURCE, plugin)
    vendor_bridge(plugin / SITE_PACKAGES / "bridge")
    descriptor_path = plugin / "Greenlight.uplugin"
    descriptor = json.loads(descriptor_path.read_text())
    descriptor["PythonRequirements"] = [{"Platform": "All", "Requirements": requirements}]
    missing = [k for k in REQUIRED_KEYS if k not in descriptor]
    if missing:
        raise BuildError(f"Greenlight.uplugin lacks {missing}")
    descriptor_path.write_text(json.dumps(descriptor, indent="\t") + "\n")
    manifest = {str(p.relative_to(plugin).as_posix()): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(plugin.rglob("*")) if p.is_file()}
    (plugin / "greenlight_build.json").write_text(json.dumps({"files": manifest}, indent=1) + "\n")
    return plugin


def lock(path: Path = LOCK) -> Path:
    """Resolve each pin's wheel for every platform with pip (metadata only,
    nothing installed) and write name==version with all sha256 hashes."""
    hashes: dict[str, set[str]] = {name: set() for name in PINS}
    with tempfile.TemporaryDirectory() as tmp:
        for platform, tags in PLATFORMS.items():
            report = Path(tmp) / f"{platform}.json"
            args = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
                    "--report", str(report), "--only-binary=:all:", "--no-deps", "--python-version", PY_VERSION,
                    "--implementation", "cp", "--target", str(Path(tmp) / "t")]
            for tag in tags:
                args += ["--platform", tag]
            args += [f"{n}=={v}" for n, v in PINS.items()]
            proc = subprocess.run(args, capture_output=True, text=True)
            if proc.returncode != 0:
                raise BuildError(f"pip could not resolve wheels for {platform}:\n{proc.stderr[-2000:]}")
            for item in json.loads(report.read_text())["install"]:
                name = item["metadata"]["name"].lower().replace("-", "_")
                key = next(k for k in PINS if k.lower() == name or k.lower().replace("_", "-") == name)
                hashes[key].add(item["download_info"]["archive_info"]["hashes"]["sha256"])
    lines = ["# Generated by `python -m unreal_plugin.build --lock`: cp311 wheels for "
             + ", ".join(PLATFORMS) + "; edit PINS in build.py, not this file."]
    for name, version in PINS.items():
        lines.append(f"{name}=={version} " + " ".join(f"--hash=sha256:{h}" for h in sorted(hashes[name])))
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m unreal_plugin.build", description=__doc__.split("\n\n")[0])
    p.add_argument("out", nargs="?", default=str(REPO / "dist" / "unreal"), help="output folder (default dist/unreal)")
    p.add_argument("--lock", action="store_true", help="refresh requirements.lock from PyPI and exit")
    args = p.parse_args(argv)
    try:
        if args.lock:
            print(f"wrote {lock()}")
            return 0
        plugin = build(args.out)
    except BuildError as exc:
        print(f"build failed: {exc}", file=sys.stderr)
        return 1
    print(f"built {plugin}: copy it to <Project>/Plugins/Greenlight")
    return 0


if __name__ == "__main__":
    sys.exit(main())
