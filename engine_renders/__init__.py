"""Sample shots built in code with Blender (``bpy``), rendered headless to
cached ``.glshot`` files for the demo and CI.

    from engine_renders import render_sample, demo_shot
    path = render_sample("corridor_pan", "out", width=256, height=144, frames=24)

Each shot is a module with ``build_scene_in_blender(frames, width, height)``
(see ``SAMPLES``). ``render_sample`` runs it in a fresh child Python with
``bpy`` (Blender's state is global, and a crash stays out of the caller),
extracts the passes with the Blender add-on's own
``blender_addon.host.shot_from_scene_in_blender`` and saves the shot into a
cache folder keyed by (name, size, frames, code hash), so a repeated run
reuses it. This module itself never imports bpy.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bridge.errors import GreenlightError

SAMPLES = {
    "dolly_character": "dolly-in on a posed, waving metarig figure in a room",
    "corridor_pan": "fast 120-degree pan across a pillared corridor (large motion)",
    "dialogue_ots": "two characters, over the shoulder (two poses per frame)",
    "crane_zoom": "crane up 5 m with a 24->50 mm focal-length zoom",
}
DEMO_SAMPLE = "dolly_character"
DEFAULT_WIDTH, DEFAULT_HEIGHT, DEFAULT_FRAMES = 512, 288, 48
# Two frames would squeeze each move into one step (the dolly's 6 m): points
# that pass behind the camera overflow the float16 motion pass and the
# add-on refuses the shot.
MIN_FRAMES = 3
CACHE_ENV = "GREENLIGHT_ENGINE_RENDERS_CACHE"
PROJECT = "samples"

_PACKAGE_DIR = Path(__file__).resolve().parent
_RESULT_MARK = "GREENLIGHT-ENGINE-RENDER "


class BlenderUnavailableError(GreenlightError):
    """The ``bpy`` module (Blender as a Python module) is not importable here."""


class RenderError(GreenlightError):
    """Blender failed to build or extract a sample shot."""


@dataclass(frozen=True)
class RenderResult:
    path: Path                 # the .glshot (in out_dir when one was given, else in the cache)
    cached: bool               # True when the cache already held it (no Blender run)
    key: str
    timings: dict = field(default_factory=dict)   # seconds: subprocess, import_bpy, build, extract, save
    info: dict = field(default_factory=dict)      # what the child reported (pass methods, rigs, bpy version)


def bpy_available() -> bool:
    return importlib.util.find_spec("bpy") is not None


def default_cache_dir() -> Path:
    """``$GREENLIGHT_ENGINE_RENDERS_CACHE``, else ``$XDG_CACHE_HOME/greenlight/engine_renders``
    (``~/.cache/...``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "greenlight" / "engine_renders"


def _code_files() -> list[Path]:
    """The sources a sample shot depends on: this package, the add-on's
    extraction code and the engine-free shot model/format."""
    files = sorted(_PACKAGE_DIR.glob("*.py"))
    for package in ("blender_addon", "bridge.shot"):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise RenderError(f"cannot find package {package!r} (needed to extract sample shots)")
        folder = Path(list(spec.submodule_search_locations)[0])
        files += sorted(p for p in folder.glob("*.py") if p.name not in ("ui.py", "ops.py", "props.py", "build.py"))
    errors_spec = importlib.util.find_spec("bridge.errors")
    if errors_spec is not None and errors_spec.origin:
        files.append(Path(errors_spec.origin))
    return files


@functools.lru_cache(maxsize=1)
def code_hash() -> str:
    """Hash of the code that makes a sample shot plus the bpy version, so a
    cached shot is never reused across a change that could alter it.
    Computed once per process: one run uses one key throughout."""
    h = hashlib.sha256()
    for path in _code_files():
        h.update(path.name.encode())
        h.update(path.read_bytes())
    try:
        from importlib.metadata import version

        h.update(f"bpy {version('bpy')}".encode())
    except Exception:  # noqa: BLE001 - bpy from a Blender install has no dist metadata
        h.update(b"bpy ?")
    return h.hexdigest()[:16]


def cache_key(name: str, width: int, height: int, frames: int) -> str:
    return f"{name}-{width}x{height}-{frames}f-{code_hash()}"


def _check(name: str, width: int, height: int, frames: int) -> None:
    if name not in SAMPLES:
        raise GreenlightError(f"unknown sample shot {name!r}; choose one of {', '.join(SAMPLES)}")
    if not (isinstance(width, int) and isinstance(height, int) and width >= 8 and height >= 8):
        raise GreenlightError(f"resolution must be integers >= 8, got {width}x{height}")
    if width > 4096 or height > 4096:
        raise GreenlightError(f"resolution {width}x{height} is above 4096 on a side: too big for a sample shot")
    if not (isinstance(frames, int) and MIN_FRAMES <= frames <= 1000):
        raise GreenlightError(f"frames must be an integer in {MIN_FRAMES}..1000, got {frames!r}")


def render(name: str, out_dir: str | Path | None = None, width: int = DEFAULT_WIDTH, height: int = DEFAULT_HEIGHT,
           frames: int = DEFAULT_FRAMES, *, cache_dir: str | Path | None = None, force: bool = False,
           save_blend: bool = False, timeout_s: float = 900.0) -> RenderResult:
    """Render sample ``name`` (or reuse the cached one) and return where it
    is, with timings. ``out_dir`` given: the .glshot is copied to
    ``out_dir/<name>.glshot`` (and the .blend beside it with ``save_blend``)."""
    _check(name, width, height, frames)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = cache_key(name, width, height, frames)
    shot_path = cache / f"{key}.glshot"
    blend_path = cache / f"{key}.blend"
    meta_path = cache / f"{key}.json"
    cached = shot_path.is_file() and meta_path.is_file() and (blend_path.is_file() or not save_blend) and not force
    if cached:
        meta = json.loads(meta_path.read_text())
        timings = {"cache_hit": 0.0}
    else:
        if not bpy_available():
            raise BlenderUnavailableError(
                f"sample shot {name!r} needs Blender's Python module to render: pip install 'greenlight[blender]' "
                "(bpy 5.0.1, Python 3.11)")
        cache.mkdir(parents=True, exist_ok=True)
        meta = _render_in_child(name, width, height, frames, cache, key, save_blend, timeout_s)
        timings = meta["timings"]
    path = shot_path
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{name}.glshot"
        if path.resolve() != shot_path.resolve():
            shutil.copyfile(shot_path, path)
        if save_blend:
            shutil.copyfile(blend_path, out / f"{name}.blend")
    return RenderResult(path=path, cached=cached, key=key, timings=timings, info=meta.get("info", {}))


def render_sample(name: str, out_dir: str | Path, width: int = DEFAULT_WIDTH, height: int = DEFAULT_HEIGHT,
                  frames: int = DEFAULT_FRAMES, *, cache_dir: str | Path | None = None, force: bool = False) -> Path:
    """Build sample shot ``name`` in a fresh headless Blender, extract its
    passes and return ``out_dir/<name>.glshot`` (from the cache when the
    same name, size, frame count and code were rendered before)."""
    return render(name, out_dir, width, height, frames, cache_dir=cache_dir, force=force).path


def demo_shot(out_dir: str | Path, width: int = DEFAULT_WIDTH, height: int = DEFAULT_HEIGHT,
              frames: int = DEFAULT_FRAMES, *, cache_dir: str | Path | None = None) -> Path:
    """Shot (a), the dolly-in on a posed figure, rendered through real
    Blender headless; raises BlenderUnavailableError when bpy is not
    importable (the demo then falls back to the synthetic shot)."""
    if not bpy_available():
        raise BlenderUnavailableError(
            "the demo's engine-rendered shot needs Blender's Python module (pip install 'greenlight[blender]'); "
            "falling back to the synthetic sample shot")
    return render_sample(DEMO_SAMPLE, out_dir, width=width, height=height, frames=frames, cache_dir=cache_dir)


@dataclass(frozen=True)
class DemoEntry:
    """What ``greenlight demo`` takes from this package, through the
    ``greenlight.commands`` entry point ``demo-shot`` (the core ``bridge``
    package never imports ``engine_renders``)."""

    description: str                            # of sample shot (a)
    render: Callable[..., Path]                 # demo_shot(out_dir, width=, height=, frames=)
    unavailable: type[GreenlightError]          # what render raises without bpy: use the synthetic shot


def demo_entry() -> DemoEntry:
    return DemoEntry(SAMPLES[DEMO_SAMPLE], demo_shot, BlenderUnavailableError)


def _render_in_child(name: str, width: int, height: int, frames: int, cache: Path, key: str, save_blend: bool,
                     timeout_s: float) -> dict:
    root = str(_PACKAGE_DIR.parent)
    env = dict(os.environ, GRPC_ENABLE_FORK_SUPPORT="0")
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=cache) as tmp:
        tmp = Path(tmp)
        args = {"name": name, "width": width, "height": height, "frames": frames,
                "shot": str(tmp / "shot.glshot"), "blend": str(tmp / "scene.blend") if save_blend else None,
                "scratch": str(tmp / "passes")}
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "-m", "engine_renders._child", json.dumps(args)], env=env,
                                  cwd=root, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise RenderError(f"sample shot {name!r}: Blender did not finish within {timeout_s:.0f} s") from exc
        wall = time.perf_counter() - t0
        result = None
        for line in proc.stdout.splitlines():
            if line.startswith(_RESULT_MARK):
                result = json.loads(line[len(_RESULT_MARK):])
        if proc.returncode != 0 or result is None or result.get("error"):
            detail = (result or {}).get("error") or (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise RenderError(f"sample shot {name!r} failed in Blender (exit {proc.returncode}): {detail}\n"
                              f"--- stderr (tail)\n{proc.stderr[-3000:]}")
        result["timings"]["subprocess"] = wall
        meta = {"name": name, "width": width, "height": height, "frames": frames, "key": key,
                "timings": result["timings"], "info": result["info"]}
        # Publish atomically: the .glshot last, so a reader never sees a half-written set.
        if save_blend:
            os.replace(tmp / "scene.blend", cache / f"{key}.blend")
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        os.replace(tmp / "meta.json", cache / f"{key}.json")
        os.replace(tmp / "shot.glshot", cache / f"{key}.glshot")
    return meta
