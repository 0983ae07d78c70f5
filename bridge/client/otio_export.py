"""Shot versions as an OpenTimelineIO timeline, for editorial.

A *version folder* is what ``BridgeClient.download`` writes (and what
``greenlight submit --watch`` / ``greenlight demo`` leave under
``out/<project>/<shot>/vNNN/``): ``frame_00000.png ...`` plus ``report.json``
(and ``animatic.mp4`` when the CLI made one). Each version becomes one track
holding one clip whose media is the PNG sequence (an
``ImageSequenceReference``: ``frame_%05d.png`` from 0, at the shot's rate);
versions stack in ascending order so the newest is on top. What made the
frames and what they cost ride along in ``clip.metadata["greenlight"]``.

``opentimelineio`` is imported inside functions (``pip install
'greenlight[otio]'``) so ``bridge.client`` imports without it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from ..errors import GreenlightError, InvalidArgumentError
from ..jobs.model import JobReport, JobState
from .client import frame_name

FRAME_PREFIX = "frame_"
FRAME_SUFFIX = ".png"
FRAME_PADDING = 5
ANIMATIC_KEY = "animatic"      # the MP4, as an alternative media reference
_VERSION_DIR = re.compile(r"^v(\d+)$")
_INT64_MAX = 2 ** 63 - 1


def _otio():
    try:
        import opentimelineio as otio
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise GreenlightError("OpenTimelineIO export needs the opentimelineio package: "
                                   "pip install 'greenlight[otio]' (or pip install opentimelineio)") from exc
    return otio


@dataclass(frozen=True)
class ShotVersion:
    """One downloaded version: its folder, report and the frames on disk."""

    folder: Path
    report: JobReport
    frame_count: int
    fps: Fraction

    @property
    def project(self) -> str:
        return self.report.tags.project

    @property
    def shot(self) -> str:
        return self.report.tags.shot

    @property
    def version(self) -> int:
        return self.report.tags.version


def read_version(folder: str | Path) -> ShotVersion:
    """Read a version folder; refuse one whose job did not finish or whose
    frames are incomplete (the message says which file is missing)."""
    folder = Path(folder)
    report_path = folder / "report.json"
    if not report_path.is_file():
        raise InvalidArgumentError(f"{folder}: no report.json; not a finished version folder "
                                   "(written by `greenlight submit --watch` when a job completes)")
    try:
        data = json.loads(report_path.read_text())
    except json.JSONDecodeError as exc:
        raise InvalidArgumentError(f"{report_path}: not JSON ({exc})") from exc
    if not isinstance(data, dict) or "fps" not in data or "frames" not in data:
        raise InvalidArgumentError(f"{report_path}: needs 'fps' [numerator, denominator] and 'frames'")
    try:
        report = JobReport.from_dict(data)
        fps = Fraction(*report.fps)
        expected = int(report.frames)
    except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError) as exc:
        raise InvalidArgumentError(
            f"{report_path}: needs 'fps' [numerator, denominator] and 'frames' ({exc!r})") from exc
    if report.state is not JobState.COMPLETED:
        raise InvalidArgumentError(f"{report_path}: the job ended {report.state.value!r}; only completed "
                                   "versions go on the timeline")
    for index in range(expected):
        if not (folder / frame_name(index)).is_file():
            raise InvalidArgumentError(
                f"{folder}: {frame_name(index)} is missing ({expected} frames in the report); "
                "resume the download with `greenlight submit --watch` or BridgeClient.download")
    if expected == 0:
        raise InvalidArgumentError(f"{report_path}: the version has no frames")
    return ShotVersion(folder=folder.resolve(), report=report, frame_count=expected, fps=fps)


def find_versions(shot_folder: str | Path) -> list[Path]:
    """``vNNN`` folders holding a report.json under ``out/<project>/<shot>/``, by number."""
    shot_folder = Path(shot_folder)
    found = []
    for child in shot_folder.iterdir() if shot_folder.is_dir() else ():
        match = _VERSION_DIR.match(child.name)
        if match and (child / "report.json").is_file():
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]


def _int64_or_text(value):
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > _INT64_MAX:
        return str(value)  # OTIO metadata holds int64; a uint64 seed may not fit
    return value


_GENERATION_KEYS = ("seed", "prompt", "negative_prompt", "model_profile")


def version_metadata(version: ShotVersion, generation: dict | None = None) -> dict:
    """The ``greenlight`` metadata of one clip: job, generation, energy, carbon.

    ``generation`` (GenerationSettings.to_dict() or a subset) wins over the
    report's own ``generation`` entry, where the report has one.
    """
    r = version.report
    gen = {**r.generation, **(generation or {})}
    e = r.energy
    return {
        "job_id": r.job_id,
        "project": version.project,
        "shot": version.shot,
        "version": version.version,
        "backend": r.backend or gen.get("backend"),
        "seed": _int64_or_text(gen.get("seed")),
        "prompt": gen.get("prompt"),
        "negative_prompt": gen.get("negative_prompt"),
        "model_profile": gen.get("model_profile"),
        "frames": version.frame_count,
        "fps": [version.fps.numerator, version.fps.denominator],
        "energy_wh": e.energy_wh,
        "energy_method": "measured" if e.measured else "estimated",
        "meter": e.meter,
        "facility_energy_wh": r.facility_energy_wh,
        "pue": r.pue,
        "water_l": r.water_l,
        "co2e_g_location": e.co2e_g_location,
        "co2e_g_market": e.co2e_g_market,
        "intensity_g_per_kwh": r.intensity_g_per_kwh,
        "intensity_source": r.intensity_source,
        "site": r.site,
        "grid_region": r.grid_region,
        "sci": r.sci,
        "sci_unit": r.sci_unit,
        "temporal": r.temporal.to_dict(),
        "recipe_hash": r.recipe_hash,   # what made the frames (docs/governance.md; `greenlight replay`)
        "wall_s": r.wall_s,
        "report_schema": r.schema_version,
        # each frame's figures as fixed when it was made (the report's per_frame records)
        "per_frame": [{"index": f.index, "energy_wh": f.energy_wh, "co2e_g_location": f.co2e_g_location,
                       "co2e_g_market": f.co2e_g_market, "intensity_g_per_kwh": f.intensity_g_per_kwh,
                       "intensity_source": f.intensity_source, "site": f.site, "meter": f.meter,
                       "measured": f.measured, "attempt": f.attempt} for f in r.per_frame],
        "report": str(version.folder / "report.json"),
    }


def version_clip(version: ShotVersion, generation: dict | None = None):
    """One clip over the version's PNG sequence (and its MP4, when present)."""
    otio = _otio()
    rate = float(version.fps)
    available = otio.opentime.TimeRange(otio.opentime.RationalTime(0, rate),
                                        otio.opentime.RationalTime(version.frame_count, rate))
    sequence = otio.schema.ImageSequenceReference(
        target_url_base=version.folder.as_uri() + "/", name_prefix=FRAME_PREFIX, name_suffix=FRAME_SUFFIX,
        start_frame=0, frame_step=1, rate=rate, frame_zero_padding=FRAME_PADDING,
        missing_frame_policy=otio.schema.ImageSequenceReference.MissingFramePolicy.error,
        available_range=available)
    name = f"{version.shot} v{version.version:03d}"
    clip = otio.schema.Clip(name=name, source_range=available,
                            metadata={"greenlight": version_metadata(version, generation)})
    references = {otio.schema.Clip.DEFAULT_MEDIA_KEY: sequence}
    mp4 = version.folder / "animatic.mp4"
    if mp4.is_file():
        references[ANIMATIC_KEY] = otio.schema.ExternalReference(target_url=mp4.as_uri(), available_range=available)
    clip.set_media_references(references, otio.schema.Clip.DEFAULT_MEDIA_KEY)
    return clip


def versions_timeline(folders, generations: dict[int, dict] | None = None, name: str | None = None):
    """A timeline with one video track per version (ascending: newest on top).

    ``folders``: version folders (``.../v001``) of ONE shot. ``generations``
    maps a version number to its generation settings where the reports lack
    them.
    """
    otio = _otio()
    versions = [read_version(f) for f in folders]
    if not versions:
        raise InvalidArgumentError("no version folders given")
    shots = {(v.project, v.shot) for v in versions}
    if len(shots) > 1:
        raise InvalidArgumentError(f"versions of different shots {sorted(shots)}; one timeline holds one shot")
    rates = {v.fps for v in versions}
    if len(rates) > 1:
        raise InvalidArgumentError(f"versions at different frame rates {sorted(str(r) for r in rates)}; "
                                   "one timeline needs one rate")
    versions.sort(key=lambda v: v.version)
    seen = [v.version for v in versions]
    if len(set(seen)) != len(seen):
        raise InvalidArgumentError(f"version numbers repeat: {seen}")
    project, shot = versions[0].project, versions[0].shot
    rate = float(versions[0].fps)
    timeline = otio.schema.Timeline(name=name or f"{project}/{shot}",
                                    global_start_time=otio.opentime.RationalTime(0, rate))
    for v in versions:
        track = otio.schema.Track(name=f"v{v.version:03d}", kind=otio.schema.TrackKind.Video)
        track.append(version_clip(v, (generations or {}).get(v.version)))
        timeline.tracks.append(track)
    totals = [version_metadata(v) for v in versions]
    timeline.metadata["greenlight"] = {
        "project": project,
        "shot": shot,
        "versions": seen,
        "fps": [versions[0].fps.numerator, versions[0].fps.denominator],
        "energy_wh_total": sum(m["energy_wh"] or 0.0 for m in totals),
        "co2e_g_location_total": sum(m["co2e_g_location"] or 0.0 for m in totals),
    }
    return timeline


def _previous_generations(path: Path, versions: list[ShotVersion]) -> dict[int, dict]:
    """Seed/prompt recorded by an earlier export of the same jobs at ``path``:
    reports do not carry them, so re-exporting must not lose them."""
    otio = _otio()
    if not path.is_file():
        return {}
    try:
        old = otio.adapters.read_from_file(str(path))
    except Exception:  # not ours or unreadable: nothing to keep
        return {}
    by_job = {}
    for clip in old.find_clips():
        meta = clip.metadata.get("greenlight") or {}
        kept = {k: meta[k] for k in _GENERATION_KEYS if k in meta and meta[k] is not None}
        if meta.get("job_id") and kept:
            by_job[meta["job_id"]] = kept
    return {v.version: by_job[v.report.job_id] for v in versions
            if v.report.job_id in by_job and not v.report.generation}


def write_otio(folders, path: str | Path, generations: dict[int, dict] | None = None,
               name: str | None = None) -> Path:
    """Write ``versions_timeline(folders)`` to ``path`` (``.otio``, or any
    suffix an installed OTIO adapter writes). Rewriting a timeline keeps the
    seed and prompt an earlier export recorded for the same job."""
    otio = _otio()
    path = Path(path)
    previous = _previous_generations(path, [read_version(f) for f in folders])
    merged = {v: {**previous.get(v, {}), **(generations or {}).get(v, {})}
              for v in set(previous) | set(generations or {})}
    timeline = versions_timeline(folders, generations=merged, name=name)
    path.parent.mkdir(parents=True, exist_ok=True)
    otio.adapters.write_to_file(timeline, str(path))
    return path


def write_shot_otio(shot_folder: str | Path, path: str | Path | None = None,
                    generations: dict[int, dict] | None = None) -> Path:
    """Every finished version under ``out/<project>/<shot>/`` into
    ``<shot_folder>/<shot>.otio`` (or ``path``)."""
    shot_folder = Path(shot_folder)
    folders = find_versions(shot_folder)
    if not folders:
        raise InvalidArgumentError(f"{shot_folder}: no vNNN folders with a report.json (expected "
                                   "out/<project>/<shot>/v001/ as written by `greenlight submit --watch`)")
    return write_otio(folders, path or shot_folder / f"{shot_folder.name}.otio", generations=generations)
