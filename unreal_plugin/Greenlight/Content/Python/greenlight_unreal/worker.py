"""Network off the game thread, editor changes on it (STYLE practice 6).

``JobWorker`` (a thread) submits the shot and downloads frames with
``bridge.client``; it never calls ``unreal``. Everything it learns goes to a
``GameThreadPump``: a ``queue.Queue`` of callables drained by a Slate
post-tick callback (``host.register_tick_in_unreal``), so every ``unreal``
call happens on the game thread. The pump bounds the time it spends per
tick and the queue applies results in order.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from bridge.errors import GreenlightError

from .settings import BridgeSettings

log = logging.getLogger(__name__)


class GameThreadPump:
    """Runs queued callables on the game thread, from a tick callback.

    ``register(callback) -> handle`` / ``unregister(handle)`` are
    ``host.register_tick_in_unreal`` / ``host.unregister_tick_in_unreal`` in
    the editor; tests pass the fake ``unreal`` module's versions.
    """

    def __init__(self, register: Callable, unregister: Callable, budget_s: float = 0.01):
        self._register = register
        self._unregister = unregister
        self._queue: queue.Queue = queue.Queue()
        self._handle = None
        self.budget_s = budget_s

    @property
    def running(self) -> bool:
        return self._handle is not None

    def start(self) -> None:
        if self._handle is None:
            self._handle = self._register(self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._unregister(self._handle)
            self._handle = None

    def call_soon(self, fn: Callable, *args) -> None:
        """Thread-safe: run ``fn(*args)`` on the game thread at the next tick."""
        self._queue.put((fn, args))

    def _tick(self, delta_s: float = 0.0) -> None:
        deadline = time.monotonic() + self.budget_s
        while True:
            try:
                fn, args = self._queue.get_nowait()
            except queue.Empty:
                return
            try:
                fn(*args)
            except Exception:   # a failing update must not kill the tick callback
                log.exception("Greenlight: update %r failed on the game thread", getattr(fn, "__name__", fn))
            if time.monotonic() > deadline:
                return


@dataclass(frozen=True)
class Update:
    """One thing the game thread should apply (``kind`` below)."""

    kind: str            # accepted | progress | frame | completed | failed | cancelled | error
    job_id: str = ""
    index: int = -1
    path: str = ""
    frames_done: int = 0
    frame_count: int = 0
    energy_wh: float = 0.0
    co2e_g: float = 0.0
    message: str = ""
    report: dict | None = None
    info: dict = field(default_factory=dict)


def make_client(bridge: BridgeSettings):
    from bridge.client import BridgeClient   # grpc: imported on use, so engine-free modules load without it

    return BridgeClient(bridge.address, token=bridge.token or None, tls=bridge.tls, timeout_s=bridge.timeout_s)


class JobWorker(threading.Thread):
    """Submit ``shot`` and download its frames into ``folder``; every event
    becomes ``on_update(Update)`` called through ``pump`` on the game thread."""

    def __init__(self, bridge: BridgeSettings, shot, folder: Path, pump: GameThreadPump,
                 on_update: Callable[[Update], None], generation=None, scheduling=None,
                 request_id: str | None = None):
        super().__init__(name=f"greenlight-{shot.tags.label}", daemon=True)
        self.bridge = bridge
        self.shot = shot
        self.folder = Path(folder)
        self.pump = pump
        self.on_update = on_update
        self.generation = generation
        self.scheduling = scheduling
        self.request_id = request_id or uuid.uuid4().hex
        self.job_id = ""
        self._cancel = threading.Event()
        self._energy_wh = 0.0
        self._co2e_g = 0.0

    def _put(self, update: Update) -> None:
        self.pump.call_soon(self.on_update, update)

    def cancel(self) -> None:
        """Safe from any thread; returns at once (the RPC runs on its own thread)."""
        self._cancel.set()
        if self.job_id:
            threading.Thread(target=self._send_cancel, name="greenlight-cancel", daemon=True).start()

    def _send_cancel(self) -> None:
        try:
            with make_client(self.bridge) as client:
                client.cancel(self.job_id, "cancelled from Unreal")
        except GreenlightError as exc:
            log.warning("Greenlight %s: cancel failed: %s", self.job_id, exc)

    def run(self) -> None:
        from bridge.client import EventKind

        try:
            with make_client(self.bridge) as client:
                kwargs = {}
                if self.generation is not None:
                    kwargs["generation"] = self.generation
                if self.scheduling is not None:
                    kwargs["scheduling"] = self.scheduling
                accepted = client.submit(self.shot, request_id=self.request_id, **kwargs)
                info = accepted.job
                self.job_id = info.job_id
                self._put(Update("accepted", job_id=info.job_id, frame_count=info.frame_count, info={
                    "backend": info.backend, "site": info.site, "state": info.state,
                    "expected_co2e_g": info.expected_co2e_g, "scheduling_reason": info.scheduling_reason,
                    "duplicate": accepted.duplicate}))
                if self._cancel.is_set():
                    client.cancel(self.job_id, "cancelled from Unreal")

                def on_event(event):
                    if event.kind is EventKind.PROGRESS:
                        self._put(Update("progress", job_id=event.job_id, frames_done=event.frames_done,
                                         frame_count=self.shot.frame_count, energy_wh=event.energy_wh_so_far,
                                         message=event.stage))
                    elif event.kind is EventKind.FRAME:
                        e = event.energy
                        if e is not None:
                            self._energy_wh += e.energy_wh
                            self._co2e_g += e.co2e_g_location
                        from bridge.client import frame_name
                        self._put(Update("frame", job_id=event.job_id, index=event.index,
                                         path=str(self.folder / frame_name(event.index)),
                                         energy_wh=self._energy_wh, co2e_g=self._co2e_g))

                final = client.download(self.job_id, self.folder, on_event=on_event)
                if final is None:
                    self._put(Update("error", job_id=self.job_id, message="the job stream ended without a result"))
                elif final.kind is EventKind.COMPLETED:
                    report = final.report or {}
                    energy = report.get("energy") or {}
                    self._put(Update("completed", job_id=self.job_id, report=report, path=str(self.folder),
                                     frame_count=int(report.get("frames", self.shot.frame_count)),
                                     energy_wh=float(energy.get("energy_wh", self._energy_wh)),
                                     co2e_g=float(energy.get("co2e_g_location", self._co2e_g)),
                                     info={"measured": bool(energy.get("measured", False)),
                                           "meter": str(energy.get("meter", "")),
                                           "site": str(report.get("site", ""))}))
                elif final.kind is EventKind.CANCELLED:
                    self._put(Update("cancelled", job_id=self.job_id, message=final.message))
                else:
                    self._put(Update("failed", job_id=self.job_id, message=final.message))
        except GreenlightError as exc:
            self._put(Update("error", job_id=self.job_id, message=str(exc)))
        except Exception as exc:    # keep the traceback in the log; tell the user in one line
            log.exception("Greenlight job worker crashed")
            self._put(Update("error", job_id=self.job_id, message=f"unexpected error: {exc!r} (see the Output Log)"))

