"""The add-on's running jobs: worker threads, the update queue and the
main-thread drain that a ``bpy.app.timers`` callback runs (STYLE practice 6),
plus re-attaching unfinished jobs when a .blend is loaded."""

from __future__ import annotations

import logging
import queue
from dataclasses import replace
from pathlib import Path

import bpy

from . import host
from ._deps import jobs
from .jobs import new_worker
from .settings import check_online_access

log = logging.getLogger(__name__)

UPDATES: queue.Queue = queue.Queue()
WORKERS: dict = {}      # key -> bridge.client.worker.JobWorker
META: dict[str, dict] = {}              # key -> job record fields known at submit, plus "scene"
INTERVAL_S = 0.2


def set_status(text: str) -> None:
    wm = bpy.context.window_manager
    if wm is not None and hasattr(wm, "greenlight_status"):
        wm.greenlight_status = text


def drain() -> float | None:
    """Apply every queued update; the timer keeps running while workers do."""
    while True:
        try:
            event = UPDATES.get_nowait()
        except queue.Empty:
            break
        meta = META.get(event.key, {})
        scene = bpy.data.scenes.get(meta.get("scene", ""))
        Kind = jobs.EventKind
        if event.kind in (Kind.ERROR, Kind.WARNING):
            log.log(logging.ERROR if event.kind is Kind.ERROR else logging.WARNING, "job %s: %s",
                    event.job_id or event.key, event.message)
            set_status(f"Greenlight: {event.message}")
        elif event.kind is Kind.ACCEPTED:
            set_status(f"Greenlight: {meta.get('shot')}/v{meta.get('version', 0):03d} accepted as job {event.job_id}")
        elif event.kind is Kind.FRAME and event.frame is not None:
            set_status(f"Greenlight: job {event.job_id}: frame {event.frame.index + 1}/{meta.get('frame_count', '?')}")
        elif event.kind in (Kind.COMPLETED, Kind.FAILED, Kind.CANCELLED):
            set_status(f"Greenlight: job {event.job_id} {event.kind.value} {event.message}".rstrip())
        if scene is not None:
            host.apply_event_in_blender(scene, meta, event)
    _redraw()
    for key in [k for k, w in WORKERS.items() if not w.is_alive()]:
        WORKERS.pop(key)
    if WORKERS or not UPDATES.empty():
        return INTERVAL_S
    return None


def _redraw() -> None:
    wm = bpy.context.window_manager
    for window in (wm.windows if wm is not None else ()):
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "SEQUENCE_EDITOR"):
                area.tag_redraw()


def ensure_timer() -> None:
    if not bpy.app.timers.is_registered(drain):
        bpy.app.timers.register(drain, first_interval=INTERVAL_S, persistent=True)


def start_job(scene, shot, job, bridge):
    """Submit an extracted shot on a worker thread."""
    check_online_access(bridge.address, bpy.app.online_access)
    tags = shot.tags
    folder = bridge.frames_folder(tags.project, tags.shot, tags.version)
    worker = new_worker(bridge, folder, UPDATES, shot=shot, job=job)
    META[worker.key] = {
        "scene": scene.name, "address": bridge.address, "project": tags.project, "shot": tags.shot,
        "version": tags.version, "backend": job.generation.backend, "seed": job.generation.seed,
        "folder": str(folder), "frame_start": shot.frame_start, "frame_count": shot.frame_count,
    }
    WORKERS[worker.key] = worker
    worker.start()
    ensure_timer()
    return worker


def attach_job(scene, rec, bridge):
    """Watch (or re-download) job ``rec`` again; frames already in its folder are kept."""
    check_online_access(bridge.address, bpy.app.online_access)
    worker = new_worker(bridge, Path(rec.folder), UPDATES, job_id=rec.job_id)
    META[worker.key] = {"scene": scene.name}
    WORKERS[worker.key] = worker
    worker.start()
    ensure_timer()
    return worker


def worker_for(job_id: str):
    return next((w for w in WORKERS.values() if w.job_id == job_id and w.is_alive()), None)


@bpy.app.handlers.persistent
def reattach_on_load(_filepath="") -> None:
    """After a .blend loads: watch its unfinished jobs again."""
    bridge = host.prefs_in_blender()
    for scene in bpy.data.scenes:
        if not hasattr(scene, "greenlight"):
            continue
        for rec in scene.greenlight.jobs:
            if jobs.JobState.parse(rec.state) in jobs.UNFINISHED and worker_for(rec.job_id) is None:
                try:
                    attach_job(scene, rec, replace(bridge, address=rec.address or bridge.address))
                except Exception as exc:  # never break file loading
                    log.error("re-attach %s: %s", rec.job_id, exc)
                    rec.message = f"could not re-attach: {exc}"


def register() -> None:
    bpy.app.handlers.load_post.append(reattach_on_load)


def unregister() -> None:
    if reattach_on_load in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(reattach_on_load)
    if bpy.app.timers.is_registered(drain):
        bpy.app.timers.unregister(drain)
    WORKERS.clear()  # worker threads are daemons: they end with their streams or the process
    META.clear()
