"""The temporal-consistency figures of a finished job, for its report:
the engine's shot (depth and motion) against the frames the job stored."""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Callable, Iterator, Sequence

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

    adherence: list[float] = []

    def images() -> Iterator[np.ndarray]:
        from PIL import Image

        for i in range(shot.frame_count):
            with Image.open(io.BytesIO(read_frame(i))) as im:
                rgb = np.asarray(im.convert("RGB"))
            depth = shot.frames[i].depth_m
            if depth is not None:   # every frame has one (has_passes); measured on the frame already decoded
                adherence.append(control_adherence(depth, rgb))
            yield rgb

    try:
        s = score_shot(shot, images())
    except (OSError, ValueError) as exc:   # an unreadable frame file: say so, do not fail the report
        log.warning("temporal score not computed: %s", exc)
        return not_computed("a stored frame could not be read back")
    finite = [a for a in adherence if math.isfinite(a)]
    return TemporalConsistency(
        computed=True, method=s.method, gap1=_num(s.gap1), trajectory=_num(s.trajectory), window=s.window,
        valid_fraction=_num(s.valid_fraction), pairs=tuple(_num(p.error) for p in s.pairs),
        control_adherence=_num(math.fsum(finite) / len(finite)) if finite else None)


def _num(x: float) -> float | None:
    return None if x != x else round(float(x), 6)   # nan (no valid pixel) -> None
