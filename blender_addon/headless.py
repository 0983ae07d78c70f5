"""Headless: extract a .blend's shot, submit it, write frames + MP4 +
report, and optionally place the strip and save the file. For CI.

From Blender:
    blender -b scene.blend \\
        --python-expr "from bl_ext.user_default.greenlight import headless; headless.main()" \\
        -- --address 127.0.0.1:50151 --out out
From Python with the bpy module (repository checkout):
    python -c "from blender_addon.headless import render_and_submit; render_and_submit('scene.blend')"

Runs the worker on a thread and applies its updates on the calling (main)
thread, exactly like the add-on's timer; raises GreenlightError on failure.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import time
from dataclasses import replace
from pathlib import Path


def render_and_submit(blend_path: str | None, camera: str | None = None, frame_range: tuple[int, int] | None = None,
                      address: str = "127.0.0.1:50151", out: str | Path = "out", *, scene: str | None = None,
                      project: str | None = None, shot: str | None = None, backend: str | None = None,
                      seed: int | None = None, resolution_scale: float | None = None, token: str = "",
                      tls: bool = False, place_strip: bool = True, save_blend: bool = False,
                      write_mp4: bool = True, timeout_s: float = 3600.0) -> dict:
    """Open ``blend_path`` (None = the file already open), extract the shot
    through ``camera`` (default: the scene camera) over ``frame_range``
    (default: the scene range), submit it to ``address`` and stream frames
    into ``out/project/shot/vNNN``. Returns a summary dict (job id, folder,
    frames, report). Generation settings default to the scene's Greenlight
    panel values when the add-on's properties exist there."""
    import bpy

    from . import host
    from ._deps import errors, jobs, request
    from .jobs import new_worker
    from .settings import BridgeSettings, ExtractSettings, JobSettings

    if blend_path:
        if not Path(blend_path).is_file():
            raise errors.InvalidArgumentError(f"{blend_path}: no such .blend file")
        bpy.ops.wm.open_mainfile(filepath=str(blend_path))
    sc = bpy.data.scenes.get(scene) if scene else bpy.context.scene
    if sc is None:
        raise errors.InvalidArgumentError(f"scene {scene!r} is not in {bpy.data.filepath or 'the open file'}")
    if hasattr(sc, "greenlight"):
        extract, job = host.settings_from_scene_in_blender(sc)
    else:
        extract, job = ExtractSettings(version=1), JobSettings()
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
    request.validate_generation(job.generation)
    bridge = BridgeSettings(address=address, tls=tls, token=token, cache_dir=str(out))
    shot_obj = host.shot_from_scene_in_blender(sc, extract)
    folder = bridge.frames_folder(shot_obj.tags.project, shot_obj.tags.shot, shot_obj.tags.version)
    updates: queue.Queue = queue.Queue()
    worker = new_worker(bridge, folder, updates, shot=shot_obj, job=job)
    meta = {"address": address, "project": shot_obj.tags.project, "shot": shot_obj.tags.shot,
            "version": shot_obj.tags.version, "backend": job.generation.backend, "seed": job.generation.seed,
            "folder": str(folder), "frame_start": shot_obj.frame_start, "frame_count": shot_obj.frame_count}
    worker.start()
    deadline = time.monotonic() + timeout_s
    final, error, job_id = None, None, ""
    Kind = jobs.EventKind
    while worker.is_alive() or not updates.empty():
        try:
            u = updates.get(timeout=0.1)
        except queue.Empty:
            if time.monotonic() > deadline:
                raise errors.GreenlightError(f"job {job_id or '?'}: no result within {timeout_s:.0f} s") from None
            continue
        job_id = u.job_id or job_id
        if u.kind is Kind.ERROR:
            error = u.error
        if u.kind in (Kind.COMPLETED, Kind.FAILED, Kind.CANCELLED):
            final = u
        if place_strip and hasattr(sc, "greenlight"):
            host.apply_event_in_blender(sc, meta, u)
    if final is None:
        if error is not None:
            raise error.to_exception()     # the class the client rebuilt: exit code by class, never by text
        raise errors.BackendError(f"job {job_id}: the worker ended without a result")
    if final.kind is not Kind.COMPLETED:
        raise errors.BackendError(f"job {job_id} {final.kind.value}: {final.message}")
    frames = sorted(folder.glob("frame_*.png"))
    mp4 = None
    if write_mp4 and frames:
        try:
            from ._deps import bridge as bridge_module
            mp4 = str(bridge_module("client.animatic").write_mp4(frames, shot_obj.fps.fraction,
                                                                 folder / "animatic.mp4"))
        except ImportError:  # imageio-ffmpeg is not in Blender's Python: frames + report only
            mp4 = None
    if save_blend and bpy.data.filepath:
        bpy.ops.wm.save_mainfile()
    return {"job_id": job_id, "folder": str(folder), "frames": len(frames), "mp4": mp4,
            "label": shot_obj.tags.label, "frame_start": shot_obj.frame_start, "report": final.report,
            "pass_methods": dict(shot_obj.pass_methods)}


def main(argv: list[str] | None = None) -> int:
    """CLI for ``blender -b file.blend --python-expr ... -- ARGS`` and ``greenlight render``."""
    if argv is None:
        argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    p = argparse.ArgumentParser(prog="greenlight render")
    p.add_argument("blend", nargs="?", help=".blend file (default: the file Blender opened)")
    p.add_argument("--shot", help="shot name (default: the scene's Greenlight panel value or scene name)")
    p.add_argument("--camera")
    p.add_argument("--scene")
    p.add_argument("--frames", help="START-END (default: the scene range)")
    p.add_argument("--address", default="127.0.0.1:50151")
    p.add_argument("--token", default="")
    p.add_argument("--tls", action="store_true")
    p.add_argument("--out", default="out")
    p.add_argument("--project")
    p.add_argument("--backend")
    p.add_argument("--seed", type=int)
    p.add_argument("--scale", type=float, help="fraction of the render resolution")
    p.add_argument("--save", action="store_true", help="save the .blend with the new strip")
    args = p.parse_args(argv)
    from ._deps import errors

    frame_range = None
    if args.frames:
        a, _, b = args.frames.partition("-")
        frame_range = (int(a), int(b))
    try:
        summary = render_and_submit(args.blend, camera=args.camera, frame_range=frame_range, address=args.address,
                                    out=args.out, scene=args.scene, project=args.project, shot=args.shot,
                                    backend=args.backend, seed=args.seed, resolution_scale=args.scale,
                                    token=args.token, tls=args.tls, save_blend=args.save)
    except errors.GreenlightError as exc:
        print(f"greenlight: {exc}", file=sys.stderr)
        return errors.exit_code(exc)     # by class: unreachable 3, job failed 1, refused 2
    print(json.dumps({k: v for k, v in summary.items() if k != "report"}))
    return errors.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
