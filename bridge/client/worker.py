"""Submit a shot and stream its frames on a worker thread, for the add-ons
(STYLE practice 6): the network runs here, the host applies the
``JobEvent`` values it delivers on its main thread (Blender: a
``bpy.app.timers`` drain; Unreal: a Slate post-tick pump). Never touches a
host API.

Events (``bridge.jobs.model.EventKind``): ACCEPTED (status), STATUS,
PROGRESS, FRAME (the stored frame record with its local path, and running
``totals``), COMPLETED (report), FAILED, CANCELLED, ERROR (the job could not
be submitted or followed: ``error`` names the ``bridge.errors`` class) and
WARNING (e.g. a cancel request that did not reach the bridge; the job goes
on). ``key`` names the worker before the bridge assigns a job id.
"""

from __future__ import annotations

import logging
import math
import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ..errors import GreenlightError
from ..jobs.model import ErrorInfo, EventKind, JobEvent, Totals
from .client import BridgeClient

log = logging.getLogger(__name__)


class JobWorker(threading.Thread):
    """Submits ``shot`` (or re-attaches to ``job_id``) and downloads its
    frames into ``folder``, resuming after frames already there; every
    event becomes ``deliver(JobEvent)`` (called on this thread: hand it to
    the host's queue)."""

    def __init__(self, connect: Callable[[], BridgeClient], folder: str | Path,
                 deliver: Callable[[JobEvent], None],
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
        self._energy: list[float] = []
        self._co2e: list[float] = []

    def _put(self, kind: EventKind, **fields) -> None:
        self.deliver(JobEvent(kind, job_id=self.job_id, key=self.key, **fields))

    def _error(self, exc: BaseException, message: str = "") -> None:
        info = ErrorInfo.of(exc)
        self._put(EventKind.ERROR, error=replace(info, message=message or info.message),
                  message=message or info.message)

    # ------------------------------------------------------------ thread
    def run(self) -> None:
        try:
            with self.connect() as client:
                if not self.job_id:
                    self._submit(client)
                final = client.download(self.job_id, self.folder, on_event=self._on_event)
                if final is None:
                    self._error(GreenlightError(f"job {self.job_id}: the stream ended without a final event"))
        except GreenlightError as exc:
            self._error(exc)
        except Exception as exc:  # keep the traceback in the log; the host shows one line
            log.exception("job %s: worker failed", self.job_id or self.key)
            self._error(exc, f"unexpected {type(exc).__name__}: {exc} (see the log)")

    def _submit(self, client: BridgeClient) -> None:
        kwargs = {k: v for k, v in (("generation", self.generation), ("scheduling", self.scheduling))
                  if v is not None}
        if self.shot is None:
            raise GreenlightError("JobWorker: nothing to submit (this worker re-attaches to a job)")
        accepted = client.submit(self.shot, request_id=self.key, **kwargs)
        self.job_id = accepted.job.job_id
        self._put(EventKind.ACCEPTED, status=accepted.job, duplicate=accepted.duplicate)
        if self._cancel.is_set():
            client.cancel(self.job_id, f"cancelled from {self.origin}")

    def _on_event(self, event: JobEvent) -> None:
        if event.kind is EventKind.FRAME and event.frame is not None:
            self._energy.append(event.frame.energy_wh)
            self._co2e.append(event.frame.co2e_g_location)
            self._put(EventKind.FRAME, frame=event.frame, totals=self._totals())   # image bytes stay on disk
        elif event.kind is EventKind.COMPLETED:
            self._put(EventKind.COMPLETED, report=event.report, totals=self._totals())
        elif event.kind is not EventKind.PREVIEW:
            self.deliver(replace(event, key=self.key, job_id=event.job_id or self.job_id))

    def _totals(self) -> Totals:
        return Totals(frames=len(self._energy), energy_wh=math.fsum(self._energy),
                      co2e_g_location=math.fsum(self._co2e))

    # ------------------------------------------------------------ cancel
    def cancel(self) -> None:
        """Safe from any thread; returns at once (the RPC runs on its own thread)."""
        self._cancel.set()
        if self.job_id:   # else: cancelled as soon as the bridge accepts it
            threading.Thread(target=send_cancel, args=(self.connect, self.job_id, self.origin, self.deliver, self.key),
                             name="greenlight-cancel", daemon=True).start()


def send_run_now(connect: Callable[[], BridgeClient], job_id: str,
                 deliver: Callable[[JobEvent], None] | None = None, key: str = "") -> None:
    """Ask the bridge to start a job that waits for a greener window now."""
    try:
        with connect() as client:
            status = client.run_now(job_id)
        if deliver is not None:
            deliver(JobEvent(EventKind.STATUS, job_id=job_id, key=key, status=status))
    except GreenlightError as exc:
        log.warning("run-now %s failed: %s", job_id, exc)
        if deliver is not None:
            deliver(JobEvent(EventKind.WARNING, job_id=job_id, key=key, error=ErrorInfo.of(exc),
                             message=f"run now {job_id}: {exc}"))


def send_cancel(connect: Callable[[], BridgeClient], job_id: str, origin: str = "a DCC",
                deliver: Callable[[JobEvent], None] | None = None, key: str = "") -> None:
    """Ask the bridge to cancel ``job_id``; a failure becomes a WARNING event."""
    try:
        with connect() as client:
            client.cancel(job_id, f"cancelled from {origin}")
    except GreenlightError as exc:
        log.warning("cancel %s failed: %s", job_id, exc)
        if deliver is not None:
            deliver(JobEvent(EventKind.WARNING, job_id=job_id, key=key, error=ErrorInfo.of(exc),
                             message=f"cancel {job_id}: {exc}"))
