"""The on-disk shot format (``.glshot``): a zip holding ``shot.json`` (tags,
timing, cameras, poses: readable with ``unzip -p shot.glshot shot.json``) and
one ``.npy`` per dense pass. Lossless: float values survive bit-exact."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from ..errors import InvalidArgumentError, ShotValidationError
from .model import CameraSample, CharacterPose, Fps, Frame, Shot, Tags

FORMAT = "greenlight.shot"
FORMAT_VERSION = 1
SUFFIX = ".glshot"


def shot_to_dict(shot: Shot) -> dict:
    """Everything but the dense arrays, as plain JSON-able data."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tags": {"project": shot.tags.project, "shot": shot.tags.shot, "version": shot.tags.version},
        "fps": [shot.fps.numerator, shot.fps.denominator],
        "resolution": [shot.width, shot.height],
        "frame_start": shot.frame_start,
        "depth_background": shot.depth_background,
        "pass_methods": dict(shot.pass_methods),
        "source": shot.source,
        "frames": [
            {
                "index": f.index,
                "camera": {
                    "world_matrix": np.asarray(f.camera.world_matrix, dtype=np.float64).tolist(),
                    "focal_length_mm": f.camera.focal_length_mm,
                    "sensor_width_mm": f.camera.sensor_width_mm,
                    "sensor_height_mm": f.camera.sensor_height_mm,
                    "sensor_fit": f.camera.sensor_fit,
                    "clip_start_m": f.camera.clip_start_m,
                    "clip_end_m": f.camera.clip_end_m,
                    "focus_distance_m": f.camera.focus_distance_m,
                },
                "arrays": {
                    name: _array_entry(f.index, name) for name in Frame.ARRAY_FIELDS
                    if getattr(f, name) is not None
                },
                "poses": [
                    {"name": p.name, "keypoints_px": p.keypoints_px.astype(np.float64).tolist(),
                     "visibility": p.visibility.astype(int).tolist()}
                    for p in f.poses
                ],
            }
            for f in shot.frames
        ],
    }


def _array_entry(index: int, name: str) -> str:
    return f"frames/{index:05d}/{name}.npy"


def save_shot(shot: Shot, path: str | Path) -> Path:
    path = Path(path)
    meta = shot_to_dict(shot)
    tmp = path.with_name(path.name + ".partial")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("shot.json", json.dumps(meta, indent=1, allow_nan=False))
        for f in shot.frames:
            for name in Frame.ARRAY_FIELDS:
                arr = getattr(f, name)
                if arr is not None:
                    buf = io.BytesIO()
                    np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
                    zf.writestr(_array_entry(f.index, name), buf.getvalue())
    tmp.replace(path)
    return path


def load_shot(path: str | Path) -> Shot:
    path = Path(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidArgumentError(f"{path}: not a Greenlight shot file ({exc})") from exc
    with zf:
        try:
            meta = json.loads(zf.read("shot.json"))
        except KeyError as exc:
            raise InvalidArgumentError(f"{path}: no shot.json inside; not a {SUFFIX} file") from exc
        if meta.get("format") != FORMAT:
            raise InvalidArgumentError(f"{path}: format is {meta.get('format')!r}, expected {FORMAT!r}")
        if meta.get("format_version", 0) > FORMAT_VERSION:
            raise InvalidArgumentError(
                f"{path}: format_version {meta['format_version']} is newer than this Greenlight "
                f"reads ({FORMAT_VERSION}); upgrade Greenlight")
        return _shot_from_dict(meta, lambda entry: _read_array(zf, entry))


def _read_array(zf: zipfile.ZipFile, entry: str) -> np.ndarray:
    try:
        with zf.open(entry) as fh:
            return np.lib.format.read_array(io.BytesIO(fh.read()), allow_pickle=False)
    except KeyError as exc:
        raise ShotValidationError(entry, "listed in shot.json but missing from the file") from exc


def _shot_from_dict(meta: dict, read_array) -> Shot:
    try:
        frames = []
        for fm in meta["frames"]:
            cam = fm["camera"]
            arrays = {name: read_array(entry) for name, entry in fm.get("arrays", {}).items()}
            unknown = set(arrays) - set(Frame.ARRAY_FIELDS)
            if unknown:
                raise ShotValidationError(f"frames[{fm['index']}].arrays", f"unknown passes {sorted(unknown)}")
            frames.append(Frame(
                index=fm["index"],
                camera=CameraSample(
                    world_matrix=np.array(cam["world_matrix"], dtype=np.float64),
                    focal_length_mm=cam["focal_length_mm"],
                    sensor_width_mm=cam["sensor_width_mm"],
                    sensor_height_mm=cam["sensor_height_mm"],
                    sensor_fit=cam["sensor_fit"],
                    clip_start_m=cam["clip_start_m"],
                    clip_end_m=cam["clip_end_m"],
                    focus_distance_m=cam["focus_distance_m"],
                ),
                poses=tuple(
                    CharacterPose(p["name"], np.array(p["keypoints_px"], dtype=np.float32),
                                  np.array(p["visibility"], dtype=np.uint8))
                    for p in fm.get("poses", [])
                ),
                **arrays,
            ))
        return Shot(
            tags=Tags(**meta["tags"]),
            fps=Fps(*meta["fps"]),
            width=meta["resolution"][0],
            height=meta["resolution"][1],
            frames=tuple(frames),
            frame_start=meta.get("frame_start", 1),
            depth_background=meta.get("depth_background", "inf"),
            pass_methods=meta.get("pass_methods", {}),
            source=meta.get("source", ""),
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ShotValidationError):
            raise
        raise InvalidArgumentError(f"shot.json is malformed: {exc!r}") from exc
