"""In-memory live state of running jobs, for watchers to wait on.

Durable facts (state, frames, reports) live in the store; a channel only
carries what is ephemeral (latest progress, recent previews) and wakes
watchers when anything about the job changed: threads through ``wait``,
asyncio tasks (the gRPC servicer) through ``wait_async``, which costs no
thread while it waits.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressInfo:
    step: int
    total_steps: int
    frames_done: int
    elapsed_s: float
    eta_s: float
    energy_wh_so_far: float
    stage: str


@dataclass(frozen=True)
class PreviewInfo:
    seq: int
    index: int
    step: int
    png: bytes


class JobChannel:
    def __init__(self, max_previews: int = 8):
        self._cond = threading.Condition()
        self.seq = 0
        self.progress: ProgressInfo | None = None
        self.previews: collections.deque[PreviewInfo] = collections.deque(maxlen=max_previews)
        # asyncio waiters: (their loop, a future set from that loop's thread)
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = set()

    def notify(self, progress: ProgressInfo | None = None, preview: tuple[int, int, bytes] | None = None) -> None:
        with self._cond:
            self.seq += 1
            if progress is not None:
                self.progress = progress
            if preview is not None:
                self.previews.append(PreviewInfo(self.seq, *preview))
            self._cond.notify_all()
            waiters = list(self._waiters)
        for loop, future in waiters:
            try:
                loop.call_soon_threadsafe(_wake, future)
            except RuntimeError:   # that loop is closed: its waiter is gone with it
                pass

    def wait(self, seen_seq: int, timeout: float) -> int:
        """Block until ``seq`` moves past ``seen_seq`` or the timeout; return seq."""
        with self._cond:
            self._cond.wait_for(lambda: self.seq != seen_seq, timeout=timeout)
            return self.seq

    async def wait_async(self, seen_seq: int, timeout: float) -> int:
        """``wait`` for asyncio: suspend (no thread held) until ``seq`` moves
        past ``seen_seq`` or the timeout; return seq."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        waiter = (loop, future)
        with self._cond:
            if self.seq != seen_seq:
                return self.seq
            self._waiters.add(waiter)
        try:
            await asyncio.wait((future,), timeout=timeout)
        finally:
            with self._cond:
                self._waiters.discard(waiter)
            future.cancel()
        return self.seq


def _wake(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


class ChannelRegistry:
    def __init__(self):
        self._lock = threading.Lock()
        self._channels: dict[str, JobChannel] = {}

    def get(self, job_id: str) -> JobChannel:
        with self._lock:
            channel = self._channels.get(job_id)
            if channel is None:
                channel = self._channels[job_id] = JobChannel()
            return channel

    def notify(self, job_id: str, **kwargs) -> None:
        self.get(job_id).notify(**kwargs)

    def discard(self, job_id: str) -> None:
        with self._lock:
            self._channels.pop(job_id, None)
