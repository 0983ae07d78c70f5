"""The temporal-consistency figures of a finished job, for its report:
the engine's shot (depth and motion) against the frames the job stored."""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from ..jobs.model import TemporalConsistency
from ..shot.model import Shot
from .adherence import control_adherence
from .score import METHOD, has_passes, score_shot

log = logging.getLogger(__name__)


def not_computed(reason: str) -> TemporalConsistency:
    return TemporalConsistency(computed=False, reason=reason, method=METHOD)


def consistency(shot: Shot, read_frame: Callable[[int], bytes], indices: Sequence[int]) -> TemporalConsistency:
    """Score the job's stored frames (``read_frame(index)`` gives a frame's
    encoded bytes) against ``shot``. Never raises for a property of the
    data: a shot without depth or motion, missing frames or an unreadable
    image give ``computed=False`` and the reason."""
    if not has_passes(shot):
        return not_computed("the shot has no depth and motion pass on every frame")
    if sorted(indices) != list(range(shot.frame_count)):
        return not_computed(f"{len(indices)} of {shot.frame_count} frames were produced")

    def images() -> Iterator[np.ndarray]:
        from PIL import Image

        for i in range(shot.frame_count):
            with Image.open(io.BytesIO(read_frame(i))) as im:
                yield np.asarray(im.convert("RGB"))

    try:
        return consistency_of(shot, images())
    except (OSError, ValueError) as exc:   # an unreadable frame file: say so, do not fail the report
        log.warning("temporal score not computed: %s", exc)
        return not_computed("a stored frame could not be read back")


def consistency_of(shot: Shot, frames: Iterable[np.ndarray]) -> TemporalConsistency:
    """The score of ``frames`` (uint8 RGB, frame 0 to the last, in order) against ``shot``, which has depth
    and motion on every frame; control adherence is measured on the same frames."""
    adherence: list[float] = []

    def measured() -> Iterator[np.ndarray]:
        for i, rgb in enumerate(frames):
            depth = shot.frames[i].depth_m
            if depth is not None:   # every frame has one (has_passes)
                adherence.append(control_adherence(depth, rgb))
            yield rgb

    s = score_shot(shot, measured())
    finite = [a for a in adherence if math.isfinite(a)]
    return TemporalConsistency(
        computed=True, method=s.method, gap1=_num(s.gap1), trajectory=_num(s.trajectory), window=s.window,
        valid_fraction=_num(s.valid_fraction), pairs=tuple(_num(p.error) for p in s.pairs),
        control_adherence=_num(math.fsum(finite) / len(finite)) if finite else None)


class LiveConsistency:
    """The score computed while a job runs, on a thread of its own fed with
    each frame as the backend produces it (the same arrays the frame writer
    stores losslessly, so the figures equal ``consistency`` on the stored
    frames), instead of after the last frame. Only for an attempt that makes
    every frame from 0 in order: anything else (a resumed job, frames out of
    order) abandons it and the report scores the stored frames as before.
    At most ``depth`` frames wait for it; a slower scorer holds the backend
    back rather than piling frames up in memory."""

    def __init__(self, shot: Shot, depth: int = 8, name: str = "greenlight-temporal"):
        import queue
        import threading

        self.shot = shot
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=depth)
        self._next = 0
        self._abandoned = False
        self._result: TemporalConsistency | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _frames(self) -> Iterator[np.ndarray]:
        while (rgb := self._queue.get()) is not None:
            yield rgb

    def _run(self) -> None:
        try:
            result = consistency_of(self.shot, self._frames())
        except Exception as exc:   # a report figure: the stored frames are scored instead
            log.info("live temporal score not used (%s: %s); the report scores the stored frames",
                     type(exc).__name__, exc)
            self._abandoned = True
            import queue

            while True:     # free a feeder blocked on a full queue; feed() puts nothing more
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    return
        self._result = result

    def feed(self, index: int, rgb: np.ndarray) -> None:
        if self._abandoned:
            return
        if index != self._next:
            self.abandon()
            return
        self._next += 1
        self._queue.put(rgb)
        if self._next == self.shot.frame_count:
            self._queue.put(None)

    def abandon(self) -> None:
        """Stop scoring (the thread ends; ``finish`` gives None)."""
        if not self._abandoned:
            self._abandoned = True
            if self._next < self.shot.frame_count:
                self._queue.put(None)

    def finish(self, timeout: float = 60.0) -> TemporalConsistency | None:
        """The score once every frame was fed, else None (score the stored frames instead)."""
        if self._next < self.shot.frame_count:
            self.abandon()
        self._thread.join(timeout)
        if self._abandoned or self._thread.is_alive():
            return None
        return self._result


def _num(x: float) -> float | None:
    return None if x != x else round(float(x), 6)   # nan (no valid pixel) -> None
