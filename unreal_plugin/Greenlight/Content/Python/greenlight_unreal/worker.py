"""Network off the game thread, editor changes on it (STYLE practice 6).

The shared ``bridge.client.worker.JobWorker`` (a thread) submits the shot
and downloads frames; it never calls ``unreal``. Everything it learns goes to a
``GameThreadPump``: a ``queue.Queue`` of callables drained by a Slate
post-tick callback (``host.register_tick_in_unreal``), so every ``unreal``
call happens on the game thread. The pump bounds the time it spends per
tick and the queue applies results in order.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from pathlib import Path

from bridge.client.settings import make_client  # shared with Blender and the CLI; grpc imported on use

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


def new_worker(bridge: BridgeSettings, shot, folder: Path, pump: GameThreadPump, on_update: Callable,
               generation=None, scheduling=None, request_id: str | None = None):
    """The shared ``bridge.client.worker.JobWorker`` (not started): every
    ``JobEvent`` reaches ``on_update`` through ``pump``, on the game thread."""
    from bridge.client.worker import JobWorker

    return JobWorker(lambda: make_client(bridge), folder, lambda update: pump.call_soon(on_update, update),
                     shot=shot, generation=generation, scheduling=scheduling, key=request_id, origin="Unreal")
