"""The storyboard's assembly, engine-free: the animatic (every shot's frames
in order, one MP4, through the CLI's ``bridge.client.animatic.write_mp4``)
and an OpenTimelineIO timeline with one clip per shot
(``bridge.client.otio_export.version_clip`` over the shot's version folder:
its PNG sequence, and in ``metadata["greenlight"]`` the job, energy, carbon
and SCI of that shot), plus the shot list's facts under
``metadata["greenlight"]["storyboard"]``. No bpy here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from ._deps import bridge

TRACK_NAME = "animatic"


@dataclass(frozen=True)
class ShotResult:
    """One generated shot: where its version folder is and what the shot list said about it."""

    scene: int
    heading: str
    shot: object          # bridge.storyboard.shots.PlannedShot
    folder: Path          # out/frames/<project>/<shot>/vNNN, as BridgeClient.download wrote it
    blend: Path           # the .blend holding its camera
    camera: str
    frame_start: int      # Blender frames of its camera, inclusive
    frame_end: int
    generation: dict      # GenerationSettings.to_dict()-like: seed, prompt, backend


def shot_frames(folder: Path, frame_count: int) -> list[Path]:
    frame_name = bridge("client.client").frame_name
    return [folder / frame_name(i) for i in range(frame_count)]


def write_animatic(results: list[ShotResult], fps: Fraction, path: Path) -> tuple[Path, int]:
    """Every shot's frames, in order, into one MP4; returns (path, frames)."""
    otio_export = bridge("client.otio_export")
    frames: list[Path] = []
    for r in results:
        frames += shot_frames(r.folder, otio_export.read_version(r.folder).frame_count)
    bridge("client.animatic").write_mp4(frames, fps, path)
    return path, len(frames)


def storyboard_metadata(r: ShotResult) -> dict:
    s = r.shot
    return {"scene": r.scene, "heading": r.heading, "shot": s.id, "size": s.size.value, "move": s.move.value,
            "duration_s": s.duration_s, "characters": list(s.characters), "prompt": s.prompt, "line": s.line,
            "blend": str(r.blend), "camera": r.camera, "blender_frames": [r.frame_start, r.frame_end]}


def write_timeline(results: list[ShotResult], path: Path, *, title: str, animatic: Path | None = None) -> Path:
    """One video track, one clip per shot in order (``otio_export.version_clip``),
    written to ``path``; the timeline's metadata holds the totals."""
    otio_export = bridge("client.otio_export")
    otio = otio_export._otio()
    versions = [otio_export.read_version(r.folder) for r in results]
    rates = {v.fps for v in versions}
    if len(rates) != 1:
        raise bridge("errors").InvalidArgumentError(
            f"the shots came back at different frame rates {sorted(str(x) for x in rates)}; one timeline needs one")
    rate = float(versions[0].fps)
    timeline = otio.schema.Timeline(name=title or "storyboard", global_start_time=otio.opentime.RationalTime(0, rate))
    track = otio.schema.Track(name=TRACK_NAME, kind=otio.schema.TrackKind.Video)
    metas = []
    for r, v in zip(results, versions):
        clip = otio_export.version_clip(v, r.generation)
        clip.name = r.shot.id
        meta = dict(clip.metadata["greenlight"])
        meta["storyboard"] = storyboard_metadata(r)
        clip.metadata["greenlight"] = meta
        metas.append(meta)
        track.append(clip)
    timeline.tracks.append(track)
    timeline.metadata["greenlight"] = {
        "title": title,
        "shots": [r.shot.id for r in results],
        "frames": sum(v.frame_count for v in versions),
        "fps": [versions[0].fps.numerator, versions[0].fps.denominator],
        "energy_wh_total": math.fsum(m["energy_wh"] or 0.0 for m in metas),
        "facility_energy_wh_total": math.fsum(m["facility_energy_wh"] or 0.0 for m in metas),
        "co2e_g_location_total": math.fsum(m["co2e_g_location"] or 0.0 for m in metas),
        "animatic": str(animatic) if animatic is not None else None,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    otio.adapters.write_to_file(timeline, str(path))
    return path
