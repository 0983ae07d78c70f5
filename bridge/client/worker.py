"""Submit a shot and stream its frames on a worker thread, for the add-ons
(STYLE practice 6): the network runs here, the host applies ``Update``
values on its main thread (Blender: a ``bpy.app.timers`` drain; Unreal: a
Slate post-tick pump). Never touches a host API.

Update kinds: accepted, progress, frame, completed, failed, cancelled,
error (the job could not be submitted or followed), warning (e.g. a cancel
request that did not reach the bridge; the job goes on).
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import GreenlightError
from .client import BridgeClient, frame_name
from .events import EventKind, JobEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Update:
    """One thing the host's main thread should apply. ``key`` names the
    worker (known before the bridge assigns a job id)."""

    kind: str
    key: str = ""
    job_id: str = ""
    index: int = -1
    path: str = ""
    frames_done: int = 0
    frame_count: int = 0
    # frame: this frame's share; progress: the job so far; completed: the job total
    energy_wh: float = 0.0
    co2e_g: float = 0.0          # location-based, like energy_wh
    energy_wh_total: float = 0.0  # sum over the frames received so far
    co2e_g_total: float = 0.0
    message: str = ""
    info: dict = field(default_factory=dict)
    report: dict | None = None


class JobWorker(threading.Thread):
    """Submits ``shot`` (or re-attaches to ``job_id``) and downloads its
    frames into ``folder``, resuming after frames already there; every
    event becomes ``deliver(Update)`` (called on this thread: hand it to the
    host's queue)."""

    def __init__(self, connect: Callable[[], BridgeClient], folder: str | Path, deliver: Callable[[Update], None],
                 *, shot=None, generation=None, scheduling=None, job_id: str | None = None,
                 key: str | None = None, origin: str = "a DCC"):
        super().__init__(name=f"greenlight-job-{key or job_id or 'new'}", daemon=True)
        if (shot is None) == (job_id is None):
            raise ValueError("JobWorker: give a shot to submit or a job_id to re-attach, not both")
        self.connect = connect
        self.folder = Path(folder)
        self.deliver = deliver
        self.shot = shot
        self.generation = generation
        self.scheduling = scheduling
        self.job_id = job_id or ""
        self.key = key or uuid.uuid4().hex   # also the submit's idempotency key
        self.origin = origin
        self._cancel = threading.Event()
        self._energy_wh = 0.0
        self._co2e_g = 0.0
        self._frame_count = shot.frame_count if shot is not None else 0

    def _put(self, kind: str, **fields) -> None:
        self.deliver(Update(kind, key=self.key, job_id=self.job_id, **fields))

    # ------------------------------------------------------------ thread
    def run(self) -> None:
        try:
            with self.connect() as client:
                if not self.job_id:
                    self._submit(client)
                final = client.download(self.job_id, self.folder, on_event=self._on_event)
                if final is None:
                    self._put("error", message=f"job {self.job_id}: the stream ended without a final event")
        except GreenlightError as exc:
            self._put("error", message=str(exc))
        except Exception as exc:  # keep the traceback in the log; the host shows one line
            log.exception("job %s: worker failed", self.job_id or self.key)
            self._put("error", message=f"unexpected {type(exc).__name__}: {exc} (see the log)")

    def _submit(self, client: BridgeClient) -> None:
        kwargs = {k: v for k, v in (("generation", self.generation), ("scheduling", self.scheduling))
                  if v is not None}
        accepted = client.submit(self.shot, request_id=self.key, **kwargs)
        info = accepted.job
        self.job_id = info.job_id
        self._put("accepted", frame_count=info.frame_count, info={
            "backend": info.backend, "state": info.state, "site": info.site,
            "scheduling_reason": info.scheduling_reason, "expected_co2e_g": info.expected_co2e_g,
            "run_now_co2e_g": info.run_now_co2e_g, "planned_start": info.planned_start,
            "duplicate": accepted.duplicate})
        if self._cancel.is_set():
            client.cancel(self.job_id, f"cancelled from {self.origin}")

    def _on_event(self, event: JobEvent) -> None:
        if event.kind is EventKind.STATUS and event.status is not None:
            self._frame_count = event.status.frame_count or self._frame_count
            self._put("progress", frames_done=event.status.frames_done, frame_count=self._frame_count,
                      message=event.status.state, info={"scheduling_reason": event.status.scheduling_reason})
        elif event.kind is EventKind.PROGRESS:
            self._put("progress", frames_done=event.frames_done, frame_count=self._frame_count,
                      energy_wh=event.energy_wh_so_far, message=event.stage)
        elif event.kind is EventKind.FRAME:
            e = event.energy
            wh, g = (e.energy_wh, e.co2e_g_location) if e is not None else (0.0, 0.0)
            self._energy_wh += wh
            self._co2e_g += g
            self._put("frame", index=event.index, path=str(self.folder / frame_name(event.index)),
                      frame_count=self._frame_count, energy_wh=wh, co2e_g=g,
                      energy_wh_total=self._energy_wh, co2e_g_total=self._co2e_g)
        elif event.kind is EventKind.COMPLETED:
            report = event.report or {}
            energy = report.get("energy") or {}
            self._put("completed", report=report, path=str(self.folder),
                      frame_count=int(report.get("frames", self._frame_count)),
                      energy_wh=float(energy.get("energy_wh", self._energy_wh)),
                      co2e_g=float(energy.get("co2e_g_location", self._co2e_g)),
                      energy_wh_total=self._energy_wh, co2e_g_total=self._co2e_g,
                      info={"measured": bool(energy.get("measured", False)), "meter": str(energy.get("meter", "")),
                            "site": str(report.get("site", ""))})
        elif event.kind in (EventKind.FAILED, EventKind.CANCELLED):
            self._put(event.kind.value, message=event.message)

    # ------------------------------------------------------------ cancel
    def cancel(self) -> None:
        """Safe from any thread; returns at once (the RPC runs on its own thread)."""
        self._cancel.set()
        if self.job_id:   # else: cancelled as soon as the bridge accepts it
            threading.Thread(target=send_cancel, args=(self.connect, self.job_id, self.origin, self.deliver, self.key),
                             name="greenlight-cancel", daemon=True).start()


def send_run_now(connect: Callable[[], BridgeClient], job_id: str,
                 deliver: Callable[[Update], None] | None = None, key: str = "") -> None:
    """Ask the bridge to start a job that waits for a greener window now."""
    try:
        with connect() as client:
            info = client.run_now(job_id)
        if deliver is not None:
            deliver(Update("progress", key=key, job_id=job_id, frame_count=info.frame_count,
                           frames_done=info.frames_done, message=info.state,
                           info={"scheduling_reason": info.scheduling_reason}))
    except GreenlightError as exc:
        log.warning("run-now %s failed: %s", job_id, exc)
        if deliver is not None:
            deliver(Update("warning", key=key, job_id=job_id, message=f"run now {job_id}: {exc}"))


def send_cancel(connect: Callable[[], BridgeClient], job_id: str, origin: str = "a DCC",
                deliver: Callable[[Update], None] | None = None, key: str = "") -> None:
    """Ask the bridge to cancel ``job_id``; a failure becomes a warning Update."""
    try:
        with connect() as client:
            client.cancel(job_id, f"cancelled from {origin}")
    except GreenlightError as exc:
        log.warning("cancel %s failed: %s", job_id, exc)
        if deliver is not None:
            deliver(Update("warning", key=key, job_id=job_id, message=f"cancel {job_id}: {exc}"))
