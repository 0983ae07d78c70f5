"""Submit a shot and stream its frames on a worker thread (STYLE practice 6).

The worker owns the gRPC client and writes frame files; it never touches
bpy. What happened goes into a ``queue.Queue`` as ``Update`` values, which
Blender's main thread drains (``runtime.drain`` from a ``bpy.app.timers``
callback, or ``headless`` in a loop) and applies with host functions.
No bpy here.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ._deps import client_module, errors
from .settings import BridgeSettings, JobSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Update:
    """One thing the main thread should apply. ``key`` names the worker
    (known before the bridge assigns a job id)."""

    key: str
    kind: str            # accepted | frame | progress | completed | failed | cancelled | error
    job_id: str = ""
    index: int = -1
    path: str = ""
    frames_done: int = 0
    frame_count: int = 0
    energy_wh: float = 0.0
    co2e_g: float = 0.0
    message: str = ""
    info: dict = field(default_factory=dict)
    report: dict | None = None


def make_client(bridge: BridgeSettings):
    return client_module().BridgeClient(bridge.address, token=bridge.token or None, tls=bridge.tls,
                                        timeout_s=bridge.timeout_s)


class JobWorker(threading.Thread):
    """Submits ``shot`` (or re-attaches to ``job_id``) and downloads its
    frames into ``folder``, resuming after frames already there."""

    def __init__(self, bridge: BridgeSettings, folder: Path, updates: queue.Queue, *, shot=None,
                 job: JobSettings | None = None, job_id: str | None = None, key: str | None = None):
        super().__init__(name=f"greenlight-job-{key or job_id or 'new'}", daemon=True)
        if (shot is None) == (job_id is None):
            raise ValueError("JobWorker: give a shot to submit or a job_id to re-attach, not both")
        self.bridge = bridge
        self.folder = Path(folder)
        self.updates = updates
        self.shot = shot
        self.job = job or JobSettings()
        self.job_id = job_id
        self.key = key or uuid.uuid4().hex
        self._cancel_requested = threading.Event()

    def run(self) -> None:
        try:
            with make_client(self.bridge) as client:
                if self.job_id is None:
                    accepted = client.submit(self.shot, self.job.generation, self.job.scheduling, request_id=self.key)
                    info = accepted.job
                    self.job_id = info.job_id
                    self._put("accepted", info={
                        "backend": info.backend, "state": info.state, "frame_count": info.frame_count,
                        "site": info.site, "scheduling_reason": info.scheduling_reason,
                        "expected_co2e_g": info.expected_co2e_g, "duplicate": accepted.duplicate})
                    if self._cancel_requested.is_set():
                        client.cancel(self.job_id, "cancelled from Blender")
                final = client.download(self.job_id, self.folder, on_event=self._on_event)
                if final is None:
                    self._put("error", message=f"job {self.job_id}: the stream ended without a final event")
        except errors.GreenlightError as exc:
            self._put("error", message=str(exc))
        except Exception as exc:  # keep the traceback in the log; the UI gets one line
            log.exception("job %s: worker failed", self.job_id or self.key)
            self._put("error", message=f"unexpected {type(exc).__name__}: {exc} (see the console)")

    def cancel(self) -> None:
        """Ask the bridge to cancel, on a short-lived thread (never blocks the UI)."""
        self._cancel_requested.set()
        if self.job_id is None:
            return  # cancelled as soon as the bridge accepts it
        threading.Thread(target=cancel_job, args=(self.bridge, self.job_id, self.updates, self.key),
                         daemon=True).start()

    def _on_event(self, event) -> None:
        kind = event.kind.value
        if kind == "frame":
            name = client_module().frame_name(event.index)
            e = event.energy
            self._put("frame", index=event.index, path=str(self.folder / name),
                      energy_wh=e.energy_wh if e else 0.0, co2e_g=e.co2e_g_location if e else 0.0)
        elif kind == "status" and event.status is not None:
            self._put("progress", frames_done=event.status.frames_done, frame_count=event.status.frame_count,
                      message=event.status.state)
        elif kind == "progress":
            self._put("progress", frames_done=event.frames_done, message=event.stage)
        elif kind == "completed":
            self._put("completed", report=event.report)
        elif kind in ("failed", "cancelled"):
            self._put(kind, message=event.message)

    def _put(self, kind: str, **fields) -> None:
        self.updates.put(Update(key=self.key, kind=kind, job_id=self.job_id or "", **fields))


def cancel_job(bridge: BridgeSettings, job_id: str, updates: queue.Queue | None = None, key: str = "") -> None:
    try:
        with make_client(bridge) as client:
            client.cancel(job_id, "cancelled from Blender")
    except errors.GreenlightError as exc:
        if updates is not None:
            updates.put(Update(key=key, kind="error", job_id=job_id, message=f"cancel {job_id}: {exc}"))
