"""Blender's use of the shared job worker (``bridge.client.worker``): the
network runs on its thread, its ``Update`` values go into a
``queue.Queue`` that Blender's main thread drains (``runtime.drain`` from a
``bpy.app.timers`` callback, or ``headless`` in a loop) and applies with
host functions. No bpy here.
"""

from __future__ import annotations

import queue
from pathlib import Path

from ._deps import bridge, client_settings
from .settings import BridgeSettings, JobSettings

ORIGIN = "Blender"
make_client = client_settings.make_client   # BridgeSettings -> BridgeClient, shared with Unreal and the CLI


def new_worker(settings: BridgeSettings, folder: Path, updates: queue.Queue, *, shot=None,
               job: JobSettings | None = None, job_id: str | None = None, key: str | None = None):
    """A (not yet started) worker that submits ``shot`` or re-attaches to ``job_id``."""
    job = job or JobSettings()
    return bridge("client.worker").JobWorker(
        lambda: make_client(settings), folder, updates.put, shot=shot,
        generation=job.generation if shot is not None else None,
        scheduling=job.scheduling if shot is not None else None,
        job_id=job_id, key=key, origin=ORIGIN)


def cancel_job(settings: BridgeSettings, job_id: str, updates: queue.Queue | None = None, key: str = "") -> None:
    bridge("client.worker").send_cancel(lambda: make_client(settings), job_id, ORIGIN,
                                        updates.put if updates is not None else None, key)


def run_job_now(settings: BridgeSettings, job_id: str, updates: queue.Queue | None = None, key: str = "") -> None:
    bridge("client.worker").send_run_now(lambda: make_client(settings), job_id,
                                         updates.put if updates is not None else None, key)
