"""Recipes: what made a job's frames, precisely enough to make them again
(docs/governance.md).

A recipe is plain JSON::

    {"schema": 1, "backend": "animatediff",
     "profile": {"name", "family", "defaults",
                 "components": {name: {"source", "revision", "content_sha256", "license"}}},
     "libraries": {"torch": "2.13.0", "diffusers": ...},    # only what the backend uses
     "device": {"class": "cpu", "name": "cpu", "dtype": "float32"},
     "seed": 7, "generation": {every GenerationSettings field},
     "inputs": {"shot_sha256": ..., "digest": "per pass kind over all frames",
                "passes": {"camera": hex, "depth": hex, "motion": hex, "pose": hex, ...}}}

Pass digests: one SHA-256 per pass kind over all frames, in frame order;
for each frame it hashes the frame index, the array's dtype and shape and
its C-order bytes (a frame without that pass hashes a marker). "camera"
covers each frame's world matrix and lens; "pose" each character's name,
keypoints and visibility. So one changed depth value changes "depth" and
nothing else.

``recipe_hash`` is a short, stable hash of the canonical JSON (sorted keys,
no spaces). The builders here are pure; the ``*_facts`` helpers read the
environment (library versions without importing them, the device the
backend picks, the weights on disk through a ``HashCache``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ..shot.model import Shot

log = logging.getLogger(__name__)
SCHEMA = 1
HASH_CHARS = 16
PASS_DIGEST = "sha256 per pass kind over all frames"
CACHE_NAME = "weights-sha256.json"
TORCH_LIBRARIES = ("torch", "diffusers", "transformers", "huggingface_hub")
ALWAYS_LIBRARIES = ("numpy", "pillow")


# ------------------------------------------------------------------ pure
def canonical_json(recipe: Mapping[str, Any]) -> str:
    return json.dumps(recipe, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def recipe_hash(recipe: Mapping[str, Any]) -> str:
    """16 hex digits of the SHA-256 of the canonical JSON; "" for no recipe."""
    if not recipe:
        return ""
    return hashlib.sha256(canonical_json(recipe).encode()).hexdigest()[:HASH_CHARS]


def _array(h, index: int, arr) -> None:
    h.update(f"{index}\0".encode())
    if arr is None:
        h.update(b"absent\0")
        return
    a = np.ascontiguousarray(arr)
    h.update(f"{a.dtype.str}\0{a.shape}\0".encode())
    h.update(a.tobytes())


def pass_digests(shot: Shot) -> dict[str, str]:
    """SHA-256 hex per pass kind (camera, depth, motion, normals, mask, pose) over all frames."""
    kinds = {"camera": hashlib.sha256(), "depth": hashlib.sha256(), "motion": hashlib.sha256(),
             "normals": hashlib.sha256(), "mask": hashlib.sha256(), "pose": hashlib.sha256()}
    present = {"camera"}
    for i, frame in enumerate(shot.frames):
        cam = frame.camera
        _array(kinds["camera"], i, np.asarray(cam.world_matrix, dtype=np.float64))
        kinds["camera"].update(repr((float(cam.focal_length_mm), float(cam.sensor_width_mm),
                                     float(cam.sensor_height_mm), cam.sensor_fit, float(cam.clip_start_m),
                                     float(cam.clip_end_m), float(cam.focus_distance_m))).encode())
        for kind, attr in (("depth", "depth_m"), ("motion", "motion_px"), ("normals", "normals"), ("mask", "mask")):
            arr = getattr(frame, attr)
            present.update([kind] if arr is not None else [])
            _array(kinds[kind], i, arr)
        h = kinds["pose"]
        h.update(f"{i}\0{len(frame.poses)}\0".encode())
        for pose in frame.poses:
            present.add("pose")
            h.update(pose.name.encode() + b"\0")
            _array(h, i, pose.keypoints_px)
            _array(h, i, pose.visibility)
    return {kind: h.hexdigest() for kind, h in kinds.items() if kind in present}


def build_recipe(*, backend: str, generation: Mapping[str, Any], inputs: Mapping[str, Any],
                 profile: Mapping[str, Any] | None = None, libraries: Mapping[str, str] | None = None,
                 device: Mapping[str, Any] | None = None) -> dict:
    """The recipe (see the module doc) from facts already gathered."""
    gen = dict(generation)
    recipe: dict[str, Any] = {"schema": SCHEMA, "backend": backend, "seed": gen.get("seed", 0), "generation": gen,
                              "inputs": dict(inputs)}
    if profile is not None:
        recipe["profile"] = dict(profile)
    recipe["libraries"] = dict(libraries or {})
    recipe["device"] = dict(device or {})
    return json.loads(canonical_json(recipe))   # plain JSON types only (tuples -> lists), as stored


def inputs_facts(shot: Shot, shot_sha256: str) -> dict:
    return {"shot_sha256": shot_sha256, "digest": PASS_DIGEST, "passes": pass_digests(shot)}


def compare(stored: Mapping[str, Any], now: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths where two recipes differ (``a.b: was -> now``), sorted."""
    out = []
    for key in sorted(set(stored) | set(now)):
        a, b = stored.get(key), now.get(key)
        path = f"{prefix}{key}"
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += compare(a, b, path + ".")
        elif a != b:
            out.append(f"{path}: {_short(a)} -> {_short(b)}")
    return out


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:77] + "..."


# ------------------------------------------------------------------ the environment
def library_versions(uses_torch: bool) -> dict[str, str]:
    """Installed versions, read from package metadata (nothing is imported)."""
    names = ALWAYS_LIBRARIES + (TORCH_LIBRARIES if uses_torch else ())
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def device_facts(backend) -> dict:
    """The device and dtype the backend runs on: a diffusion backend's pick
    (``pick_device``), else the first device its info lists."""
    override = getattr(backend, "device_override", None)
    if hasattr(backend, "cache") and hasattr(backend, "default_profile"):   # a torch (DiffusionBackend) backend
        from ..backends.devices import pick_device

        choice = pick_device(override)
        facts = {"class": choice.device.split(":")[0], "name": choice.device,
                 "dtype": str(choice.dtype).removeprefix("torch.")}
        if choice.device.startswith("cuda"):
            import torch

            facts["name"] = torch.cuda.get_device_name(torch.device(choice.device))
        return facts
    devices = backend.info().devices
    name = devices[0] if devices else "cpu"
    return {"class": name.split(":")[0], "name": name, "dtype": "uint8"}


class HashCache:
    """SHA-256 of weight files, computed once: keyed by path, size and
    mtime (ns), kept as JSON in the data folder (``weights-sha256.json``)."""

    def __init__(self, path: Path | None):
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict[str, dict] = {}
        self.hashed = 0      # files actually read (a test counts them)
        if path is not None and path.is_file():
            try:
                self._entries = json.loads(path.read_text())
            except (OSError, ValueError):
                log.warning("weight hash cache %s unreadable; starting afresh", path)

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> HashCache:
        return cls(Path(data_dir) / CACHE_NAME)

    def file_sha256(self, path: Path) -> str:
        st = path.stat()
        key = str(path.resolve())
        with self._lock:
            hit = self._entries.get(key)
        if hit and hit.get("size") == st.st_size and hit.get("mtime_ns") == st.st_mtime_ns:
            return hit["sha256"]
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
        digest = h.hexdigest()
        with self._lock:
            self.hashed += 1
            self._entries[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
        return digest

    def folder_sha256(self, folder: Path) -> str:
        """One digest over every file under ``folder`` (relative path + file digest, sorted)."""
        lines = []
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            lines.append(f"{path.relative_to(folder).as_posix()}\0{self.file_sha256(path)}\n")
        self.save()
        return hashlib.sha256("".join(lines).encode()).hexdigest()

    def save(self) -> None:
        if self.path is None:
            return
        with self._lock:
            text = json.dumps(self._entries, indent=0, sort_keys=True)
        tmp = self.path.with_suffix(".partial")
        try:
            tmp.write_text(text)
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("weight hash cache %s not saved: %s", self.path, exc)


def hub_revision(repo_id: str) -> str:
    """The commit of ``repo_id`` in this machine's Hugging Face cache ("" when not there)."""
    try:
        from huggingface_hub import constants
    except ImportError:
        return ""
    ref = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "refs" / "main"
    try:
        return ref.read_text().strip()
    except OSError:
        return ""


def profile_facts(profile, cache: HashCache) -> dict:
    """The profile with each component's source, its hub revision or the
    content hash of its local folder, and its licence."""
    from .licenses import license_map

    licenses = license_map(profile)
    components = {}
    for name in profile.components:
        source = profile.source(name) or ""
        entry: dict[str, Any] = {"source": source, "license": licenses[name]}
        if source and Path(source).is_dir():
            entry["content_sha256"] = cache.folder_sha256(Path(source))
        else:
            entry["revision"] = hub_revision(source) or "not in the local Hugging Face cache"
        components[name] = entry
    return {"name": profile.name, "family": profile.family, "defaults": dict(profile.defaults),
            "components": components}


def recipe_for(backend, generation, shot: Shot, shot_sha256: str, cache: HashCache) -> dict:
    """Gather every fact of a job run by ``backend`` here and build its recipe."""
    uses_torch = hasattr(backend, "cache") and hasattr(backend, "default_profile")
    profile = None
    name = generation.model_profile or getattr(backend, "default_profile", "")
    if name:
        from ..backends.profiles import load_profile

        profile = profile_facts(load_profile(name), cache)
    return build_recipe(backend=backend.id, generation=generation.to_dict(), inputs=inputs_facts(shot, shot_sha256),
                        profile=profile, libraries=library_versions(uses_torch), device=device_facts(backend))
