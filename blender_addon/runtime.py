"""The add-on's running jobs: worker threads, the update queue and the
main-thread drain that a ``bpy.app.timers`` callback runs (STYLE practice 6),
plus re-attaching unfinished jobs when a .blend is loaded, and the managed
local bridge (``local_bridge.LocalBridge``) with its own timer."""

from __future__ import annotations

import atexit
import logging
import queue
import tempfile
import threading
from dataclasses import replace
from pathlib import Path

import bpy

from . import host, local_bridge
from ._deps import errors, jobs
from .jobs import new_worker
from .settings import check_local_bridge, check_online_access, with_local_bridge

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
    use_local = use_local_bridge()
    check_local_bridge(use_local)
    bridge = with_local_bridge(bridge, use_local)
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
    bridge = with_local_bridge(bridge, use_local_bridge())
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
    bridge = with_local_bridge(host.prefs_in_blender(), use_local_bridge())
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


# ------------------------------------------------------------------ panel: capabilities and estimates
PANEL_INTERVAL_S = 0.25
_PANEL_SEEN = [0]


def tag_redraw() -> None:
    _redraw()


def _bridge_for_fetch(context=None):
    """The BridgeSettings the panel's fetches use (the local bridge when it is on), checked for online access."""
    settings = host.prefs_in_blender(context)
    check_local_bridge(use_local_bridge())
    check_online_access(settings.address, bpy.app.online_access)
    return settings


def refresh_capabilities(quiet: bool = False, context=None):
    """Ask the bridge in use for its backends on a thread (``panel_model.FETCHER``).
    A refusal before any network (online access off, the local bridge not
    serving) is recorded for the panel, and raised unless ``quiet``."""
    from . import panel_model

    try:
        settings = _bridge_for_fetch(context)
    except errors.GreenlightError as exc:
        panel_model.FETCHER.note_error(host.bridge_address_in_blender(context), str(exc).splitlines()[0])
        _redraw()
        if quiet:
            return None
        raise
    thread = panel_model.FETCHER.refresh_capabilities(settings)
    ensure_panel_timer()
    return thread


def request_estimate(scene, context=None):
    """Ask the bridge in use what the scene's shot would cost, on a thread."""
    from . import panel_model

    settings = _bridge_for_fetch(context)
    req = host.estimate_request_in_blender(scene, settings.address)
    thread = panel_model.FETCHER.request_estimate(settings, scene.name, req)
    ensure_panel_timer()
    return thread


def panel_tick() -> float | None:
    """Timer: redraw the panels when a fetch finished; stops when none runs."""
    from . import panel_model

    if panel_model.FETCHER.changes != _PANEL_SEEN[0]:
        _PANEL_SEEN[0] = panel_model.FETCHER.changes
        _redraw()
    if panel_model.FETCHER.busy():
        return PANEL_INTERVAL_S
    if panel_model.FETCHER.changes != _PANEL_SEEN[0]:
        return PANEL_INTERVAL_S   # one more round for a fetch that ended just now
    return None


def ensure_panel_timer() -> None:
    if not bpy.app.timers.is_registered(panel_tick):
        bpy.app.timers.register(panel_tick, first_interval=PANEL_INTERVAL_S, persistent=True)


# ------------------------------------------------------------------ local bridge
LOCAL: dict = {"bridge": None, "restarted": False, "crash": "",
               "install": None, "install_lines": [], "install_error": ""}
BRIDGE_INTERVAL_S = 1.0
_ATEXIT = []


def _prefs():
    from .props import ADDON_ID

    addon = bpy.context.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon is not None else None


def use_local_bridge() -> bool:
    p = _prefs()
    return bool(p is not None and getattr(p, "use_local_bridge", False))


def user_folder(name: str) -> Path:
    """A folder in the extension's user folder (a temp folder when not installed as an extension)."""
    from .props import ADDON_ID

    try:
        return Path(bpy.utils.extension_path_user(ADDON_ID, path=name, create=True))
    except (ValueError, AttributeError):
        path = Path(tempfile.gettempdir()) / "greenlight-local-bridge" / name
        path.mkdir(parents=True, exist_ok=True)
        return path


def local_bridge_from_prefs(p=None) -> local_bridge.LocalBridge:
    """The managed bridge for the current preferences (kept while they do not change)."""
    p = p if p is not None else _prefs()
    python = bpy.path.abspath(p.bridge_python) if p is not None and p.bridge_python else ""
    extras = ("diffusion",) if p is not None and p.bridge_diffusion else ()
    lb = LOCAL["bridge"]
    if lb is not None and lb.python_setting == python and lb.extras == extras:
        return lb
    if lb is not None:
        lb.stop()
    lb = local_bridge.LocalBridge(python, user_folder("bridge-data"), user_folder("logs") / "local-bridge.log",
                                  env_dir=user_folder("bridge-env"), extras=extras)
    LOCAL["bridge"] = lb
    local_bridge.set_current(lb)
    return lb


def bridge_status() -> str:
    lb = LOCAL["bridge"]
    if LOCAL["install"] is not None and LOCAL["install"].is_alive():
        return "Local bridge: installing..."
    if lb is None:
        return f"Local bridge: {LOCAL['install_error'] or 'not started'}"
    crash = f" (restarted once after: {LOCAL['crash']})" if LOCAL["crash"] else ""
    return f"Local bridge: {lb.state.value}: {lb.message}{crash}"


def start_local_bridge(wait: bool = False) -> local_bridge.LocalBridge:
    """Start (non-blocking by default: the timer sees it reach SERVING)."""
    lb = local_bridge_from_prefs()
    LOCAL["restarted"], LOCAL["crash"] = False, ""
    try:
        lb.start(wait=wait)
    finally:
        _ensure_bridge_timer()
        set_status(bridge_status())
    if lb.state is local_bridge.BridgeState.SERVING:
        refresh_capabilities(quiet=True)   # else the timer does when it gets there
    return lb


def stop_local_bridge() -> None:
    lb = LOCAL["bridge"]
    if lb is not None:
        lb.stop()
        set_status(bridge_status())


def restart_local_bridge(wait: bool = False) -> local_bridge.LocalBridge:
    stop_local_bridge()
    return start_local_bridge(wait=wait)


def install_local_bridge() -> None:
    """``ensure_env`` on a thread (pip takes minutes); the timer reports it
    and starts the bridge when it is done and "Use a local bridge" is on."""
    if LOCAL["install"] is not None and LOCAL["install"].is_alive():
        return
    lb = local_bridge_from_prefs()
    lines = LOCAL["install_lines"] = []
    LOCAL["install_error"] = ""

    def run():
        try:
            lb.ensure_env(progress=lambda line: lines.append(line))
            lines.append("installed")
        except errors.GreenlightError as exc:
            LOCAL["install_error"] = str(exc).splitlines()[0]
            lines.append(str(exc))

    LOCAL["install"] = threading.Thread(target=run, name="greenlight-install-bridge", daemon=True)
    LOCAL["install"].start()
    _ensure_bridge_timer()


def local_bridge_tick() -> float | None:
    """Timer: advance the bridge's state; restart a crashed bridge once."""
    lb = LOCAL["bridge"]
    install = LOCAL["install"]
    if install is not None and not install.is_alive():
        LOCAL["install"] = None
        if not LOCAL["install_error"] and use_local_bridge() and lb is not None:
            _try(lambda: lb.start(wait=False))
    if lb is None:
        return None if LOCAL["install"] is None else BRIDGE_INTERVAL_S
    before = lb.state
    state = lb.poll()
    if state is local_bridge.BridgeState.CRASHED and not LOCAL["restarted"]:
        LOCAL["restarted"] = True
        log.warning("%s; restarting it once. Last log lines:\n%s", lb.message, "\n".join(lb.log_tail(20)))
        LOCAL["crash"] = lb.message
        _try(lambda: lb.restart(wait=False))
        set_status(bridge_status())
    elif state is not before:
        if state in (local_bridge.BridgeState.FAILED, local_bridge.BridgeState.CRASHED):
            log.error("%s. Last log lines:\n%s", lb.message, "\n".join(lb.log_tail(20)))
        set_status(bridge_status())
        if state is local_bridge.BridgeState.SERVING:
            refresh_capabilities(quiet=True)   # its backends, for the panel's list
    _redraw_prefs()
    if lb.state in (local_bridge.BridgeState.STOPPED, local_bridge.BridgeState.FAILED,
                    local_bridge.BridgeState.CRASHED) and LOCAL["install"] is None:
        return None
    return BRIDGE_INTERVAL_S


def _try(fn) -> None:
    try:
        fn()
    except errors.GreenlightError as exc:
        log.error("local bridge: %s", exc)


def _ensure_bridge_timer() -> None:
    if not bpy.app.timers.is_registered(local_bridge_tick):
        bpy.app.timers.register(local_bridge_tick, first_interval=BRIDGE_INTERVAL_S, persistent=True)


def _redraw_prefs() -> None:
    wm = bpy.context.window_manager
    for window in (wm.windows if wm is not None else ()):
        for area in window.screen.areas:
            if area.type in ("PREFERENCES", "VIEW_3D", "SEQUENCE_EDITOR"):
                area.tag_redraw()


def _stop_at_exit() -> None:
    lb = LOCAL["bridge"]
    if lb is not None:
        lb.stop()


def register() -> None:
    bpy.app.handlers.load_post.append(reattach_on_load)
    if not _ATEXIT:   # Blender runs atexit handlers on quit; unregister is not called then
        atexit.register(_stop_at_exit)
        _ATEXIT.append(True)
    if use_local_bridge():
        _try(start_local_bridge)


def unregister() -> None:
    if bpy.app.timers.is_registered(panel_tick):
        bpy.app.timers.unregister(panel_tick)
    if bpy.app.timers.is_registered(local_bridge_tick):
        bpy.app.timers.unregister(local_bridge_tick)
    _stop_at_exit()
    LOCAL["bridge"] = None
    local_bridge.set_current(None)
    if reattach_on_load in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(reattach_on_load)
    if bpy.app.timers.is_registered(drain):
        bpy.app.timers.unregister(drain)
    WORKERS.clear()  # worker threads are daemons: they end with their streams or the process
    META.clear()
