"""Headless: extract a .blend's shot, submit it, write frames + MP4 +
report, and optionally place the strip and save the file. For CI.

From Blender (the exit code is the process's; ``--python-exit-code 1``
covers a script that cannot even start):
    blender -b scene.blend --python-exit-code 1 --python-expr \\
        "import sys; from bl_ext.user_default.greenlight import headless; sys.exit(headless.main())" \\
        -- --address 127.0.0.1:50151 --out out
From Python with the bpy module (repository checkout): ``greenlight render scene.blend ...``, or
    python -c "from blender_addon.headless import render_and_submit; render_and_submit('scene.blend')"

Order: check the arguments, ask the bridge for its capabilities (seconds:
an unreachable bridge or a refused token fails before anything renders),
reserve the next free version folder ``out/project/shot/vNNN``, extract the
shot (the pass render), submit and stream. Runs the worker on a thread and
applies its updates on the calling (main) thread, exactly like the add-on's
timer; raises GreenlightError on failure (``BadSceneError`` when the scene
cannot make a shot).
"""

from __future__ import annotations

import argparse
import json
import queue
import re
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path

from ._deps import errors

# Exit codes of ``main``: bridge.errors' table (0 done, 1 job failed or
# cancelled, 2 bad input or refused, 3 bridge unreachable) plus two of the
# add-on's own.
EXIT_BAD_SCENE = 4    # the scene cannot make a shot: no camera, empty frame range, a rig that maps to nothing...
EXIT_INTERNAL = 5     # an unexpected exception (a bug): one line and the traceback on stderr
# A refused connection, a TLS mismatch or a refused token fail at once; this bounds a host that
# never answers (a bridge's first GetCapabilities can take seconds: it checks its backends).
HEALTH_TIMEOUT_S = 15.0
_VERSION_DIR = re.compile(r"v(\d+)")


class BadSceneError(errors.InvalidArgumentError):
    """The scene cannot make a shot (raised from the host's refusal, which is
    its ``__cause__``): exit code 4."""


def exit_code(exc: BaseException) -> int:
    """``bridge.errors.exit_code``, plus 4 for a scene that cannot make a shot."""
    return EXIT_BAD_SCENE if isinstance(exc, BadSceneError) else errors.exit_code(exc)


def check_bridge(bridge, timeout_s: float = HEALTH_TIMEOUT_S):
    """The bridge's capabilities within ``timeout_s``: BridgeUnavailableError
    when it cannot be reached (or does not answer), UnauthenticatedError when
    it refuses the token."""
    from .jobs import make_client

    try:
        with make_client(replace(bridge, timeout_s=timeout_s)) as client:
            return client.capabilities()
    except errors.GreenlightError as exc:
        if exc.code == "DEADLINE_EXCEEDED":
            raise errors.BridgeUnavailableError(
                f"the Greenlight bridge at {bridge.address} did not answer within {timeout_s:g} s "
                "(is `greenlight serve` running there?)") from exc
        raise


def check_limits(limits, frames: int, width: int, height: int) -> None:
    """What the bridge would refuse after the pass render, refused before it (0 = no limit)."""
    for name, value in (("max_frames", frames), ("max_width", width), ("max_height", height)):
        maximum = getattr(limits, name, 0)
        if maximum and value > maximum:
            raise errors.LimitExceededError(name, value, maximum)


def reserve_version_folder(bridge, project: str, shot: str, at_least: int = 1) -> tuple[int, Path]:
    """Create the folder of the next free version of ``project/shot`` (above
    every ``vNNN`` already there and at least ``at_least``) and return it;
    an existing version folder is never reused, even by a concurrent run."""
    base = bridge.frames_folder(project, shot, 1).parent
    taken = [int(m.group(1)) for p in (base.iterdir() if base.is_dir() else ())
             if (m := _VERSION_DIR.fullmatch(p.name))]
    version = max([at_least - 1, *taken]) + 1
    while True:
        folder = bridge.frames_folder(project, shot, version)
        try:
            folder.mkdir(parents=True)
            return version, folder
        except FileExistsError:
            version += 1


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()   # only an empty folder: a version that produced nothing gives its number back
    except OSError:
        pass


def _register_properties() -> None:
    """The add-on's scene properties (panel settings, job records), needed to
    read the panel and place strips when the add-on is not enabled (``bpy``
    module, repository checkout). Properties only: no operators, timers or
    handlers."""
    import bpy

    from . import props

    if not hasattr(bpy.types.Scene, "greenlight"):
        props.register()


def render_and_submit(blend_path: str | None, camera: str | None = None, frame_range: tuple[int, int] | None = None,
                      address: str = "127.0.0.1:50151", out: str | Path = "out", *, scene: str | None = None,
                      project: str | None = None, shot: str | None = None, backend: str | None = None,
                      seed: int | None = None, resolution_scale: float | None = None, token: str = "",
                      tls: bool = False, tls_root_cert: str = "", place_strip: bool = True, save_blend: bool = False,
                      write_mp4: bool = True, timeout_s: float = 3600.0,
                      health_timeout_s: float = HEALTH_TIMEOUT_S) -> dict:
    """Open ``blend_path`` (None = the file already open), extract the shot
    through ``camera`` (default: the scene camera) over ``frame_range``
    (default: the scene range), submit it to ``address`` and stream frames
    into a new ``out/project/shot/vNNN``. ``place_strip`` puts them on the
    VSE (as the add-on does), ``save_blend`` saves the file afterwards.
    Returns a summary dict (job id, version, folder, frames, report).
    Generation settings default to the scene's Greenlight panel values."""
    import bpy

    from . import convert, host
    from ._deps import request
    from .settings import BridgeSettings

    if blend_path:
        if not Path(blend_path).is_file():
            raise errors.InvalidArgumentError(f"{blend_path}: no such .blend file")
        bpy.ops.wm.open_mainfile(filepath=str(blend_path))
    if save_blend and not bpy.data.filepath:
        raise errors.InvalidArgumentError("--save: the open scene has no .blend file to save to")
    if tls_root_cert and not Path(tls_root_cert).is_file():
        raise errors.InvalidArgumentError(f"--tls-root-cert {tls_root_cert}: no such file", field="tls_root_cert")
    sc = bpy.data.scenes.get(scene) if scene else bpy.context.scene
    if sc is None:
        raise BadSceneError(f"scene {scene!r} is not in {bpy.data.filepath or 'the open file'}")
    _register_properties()
    extract, job = host.settings_from_scene_in_blender(sc)
    changes = {"camera": camera}
    if frame_range is not None:
        changes.update(frame_start=int(frame_range[0]), frame_end=int(frame_range[1]))
    for key, value in (("project", project), ("shot", shot), ("resolution_scale", resolution_scale)):
        if value is not None:
            changes[key] = value
    extract = replace(extract, **changes)
    gen = job.generation
    job = replace(job, generation=replace(gen, backend=backend or gen.backend,
                                          seed=gen.seed if seed is None else int(seed)))
    # Arguments first (exit 2), then the bridge (3 / 2), then the scene (4): all before the pass render.
    request.validate_generation(job.generation)
    project_tag = convert.tag(extract.project, "project")
    shot_tag = convert.tag(extract.shot or sc.name, "shot")
    r = sc.render
    width, height = convert.pass_resolution(r.resolution_x, r.resolution_y, r.resolution_percentage,
                                            extract.resolution_scale, extract.width, extract.height)
    bridge = BridgeSettings(address=address, tls=tls, tls_root_cert=tls_root_cert or "", token=token,
                            cache_dir=str(out))
    caps = check_bridge(bridge, health_timeout_s)
    try:
        start, end = convert.frame_range(sc.frame_start, sc.frame_end, extract.frame_start, extract.frame_end)
    except errors.InvalidArgumentError as exc:
        raise BadSceneError(str(exc), field=exc.field) from exc
    check_limits(caps.limits, end - start + 1, width, height)

    # A new version every run: above the file's job records for this shot and every vNNN under ``out``.
    version, folder = reserve_version_folder(bridge, project_tag, shot_tag, host.next_version_in_blender(sc, shot_tag))
    try:
        return _extract_and_stream(sc, bridge, folder, replace(extract, project=project_tag, shot=shot_tag,
                                                               version=version), job,
                                   place_strip=place_strip, save_blend=save_blend, write_mp4=write_mp4,
                                   timeout_s=timeout_s)
    finally:
        _remove_if_empty(folder)


def _extract_and_stream(sc, bridge, folder: Path, extract, job, *, place_strip: bool, save_blend: bool,
                        write_mp4: bool, timeout_s: float) -> dict:
    import bpy

    from . import host
    from ._deps import client_module, jobs
    from .jobs import new_worker

    try:
        shot_obj = host.shot_from_scene_in_blender(sc, extract)
    except errors.InvalidArgumentError as exc:   # no camera, empty range, an unmapped rig, a bad camera...
        raise BadSceneError(str(exc), field=exc.field) from exc
    updates: queue.Queue = queue.Queue()
    worker = new_worker(bridge, folder, updates, shot=shot_obj, job=job)
    meta = {"address": bridge.address, "project": shot_obj.tags.project, "shot": shot_obj.tags.shot,
            "version": shot_obj.tags.version, "backend": job.generation.backend, "seed": job.generation.seed,
            "folder": str(folder), "frame_start": shot_obj.frame_start, "frame_count": shot_obj.frame_count}
    deadline = time.monotonic() + timeout_s
    final, error, job_id = None, None, ""
    Kind = jobs.EventKind
    worker.start()
    try:
        while worker.is_alive() or not updates.empty():
            try:
                u = updates.get(timeout=0.1)
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise errors.BackendError(f"job {job_id or '?'}: no result within {timeout_s:.0f} s "
                                              "(cancelled)") from None
                continue
            job_id = u.job_id or job_id
            if u.kind is Kind.ERROR:
                error = u.error
            if u.kind in (Kind.COMPLETED, Kind.FAILED, Kind.CANCELLED):
                final = u
            if place_strip:
                host.apply_event_in_blender(sc, meta, u)
    except BaseException:
        if worker.is_alive():
            worker.cancel()     # a timeout or Ctrl+C: the bridge stops the job
        raise
    if final is None:
        if error is None:
            raise errors.BackendError(f"job {job_id}: the worker ended without a result")
        if error.code == "UNKNOWN" and error.error_class != "GreenlightError":
            raise RuntimeError(error.message)   # a bug in the worker (its traceback is in the log)
        raise error.to_exception()     # the class the client rebuilt: exit code by class, never by text
    if final.kind is not Kind.COMPLETED:
        raise errors.BackendError(f"job {job_id} {final.kind.value}: {final.message}")
    report = final.report
    # This job's frames only, by the report's indices: never whatever else the folder holds.
    frame_name = client_module().frame_name
    frames = [folder / frame_name(f.index) for f in sorted(report.per_frame, key=lambda f: f.index)]
    missing = [p.name for p in frames if not p.is_file()]
    if missing:
        raise errors.BackendError(f"job {job_id}: {len(missing)} of its {len(frames)} frames are not in {folder} "
                                  f"({', '.join(missing[:3])}...)")
    mp4 = None
    if write_mp4 and frames:
        try:
            from ._deps import bridge as bridge_module
            mp4 = str(bridge_module("client.animatic").write_mp4(frames, shot_obj.fps.fraction,
                                                                 folder / "animatic.mp4"))
        except ImportError:  # imageio-ffmpeg is not in Blender's Python: frames + report only
            mp4 = None
    if save_blend:
        bpy.ops.wm.save_mainfile()
    return {"job_id": job_id, "version": shot_obj.tags.version, "folder": str(folder), "frames": len(frames),
            "mp4": mp4, "label": shot_obj.tags.label, "frame_start": shot_obj.frame_start, "report": report,
            "pass_methods": dict(shot_obj.pass_methods), "saved": bool(save_blend)}


def _frames(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    a, _, b = text.partition("-")
    try:
        return int(a), int(b or a)
    except ValueError:
        raise errors.InvalidArgumentError(f"--frames {text!r}: expected START-END (or one FRAME), e.g. 1-48",
                                          field="frames") from None


def main(argv: list[str] | None = None) -> int:
    """CLI for ``blender -b file.blend --python-expr ... -- ARGS`` and
    ``greenlight render``; returns the exit code (``sys.exit(main())``)."""
    import os

    if argv is None:
        argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    p = argparse.ArgumentParser(prog="greenlight render")
    p.add_argument("blend", nargs="?", help=".blend file (default: the file Blender opened)")
    p.add_argument("--shot", help="shot name (default: the scene's Greenlight panel value or scene name)")
    p.add_argument("--camera")
    p.add_argument("--scene")
    p.add_argument("--frames", help="START-END (default: the scene range)")
    p.add_argument("--address", default=os.environ.get("GREENLIGHT_ADDRESS", "127.0.0.1:50151"))
    p.add_argument("--token", default=os.environ.get("GREENLIGHT_TOKEN", ""), help="bearer token (or GREENLIGHT_TOKEN)")
    p.add_argument("--tls", action="store_true", help="use TLS with the system roots")
    p.add_argument("--tls-root-cert", default="", help="PEM file of the CA that signed the bridge's certificate")
    p.add_argument("--out", default="out", help="frames go to OUT/project/shot/vNNN (a new version each run)")
    p.add_argument("--project")
    p.add_argument("--backend")
    p.add_argument("--seed", type=int)
    p.add_argument("--scale", type=float, help="fraction of the render resolution")
    p.add_argument("--save", action="store_true", help="place the strip on the VSE and save the .blend")
    args = p.parse_args(argv)

    try:
        summary = render_and_submit(args.blend, camera=args.camera, frame_range=_frames(args.frames),
                                    address=args.address, out=args.out, scene=args.scene, project=args.project,
                                    shot=args.shot, backend=args.backend, seed=args.seed,
                                    resolution_scale=args.scale, token=args.token or "", tls=args.tls,
                                    tls_root_cert=args.tls_root_cert or "", place_strip=args.save,
                                    save_blend=args.save)
    except errors.GreenlightError as exc:
        print(f"greenlight: {exc}", file=sys.stderr)
        return exit_code(exc)     # by class: job failed 1, bad input/refused 2, unreachable 3, bad scene 4
    except Exception as exc:      # a bug: say so in one line, keep the traceback, never exit 0
        print(f"greenlight: unexpected {type(exc).__name__}: {exc} (a bug; traceback follows)", file=sys.stderr)
        traceback.print_exc()
        return EXIT_INTERNAL
    print(json.dumps({k: v for k, v in summary.items() if k != "report"}))
    return errors.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
