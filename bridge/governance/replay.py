"""Replay: run a job's recipe again from its stored shot and compare every
frame with the stored one, pixel for pixel (docs/governance.md).

Frames are compared as decoded pixels (the PNG files also hold the energy
figures of the run that made them, which a replay does not repeat). Where a
frame differs, the replay gives the largest per-channel difference (0-255)
and the likely cause: what differs between the recipe and this machine now
(device, dtype, library versions, weights) or in the stored shot (its pass
digests).
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass, field

import numpy as np

from ..backends.base import Backend
from ..errors import NotFoundError, PreconditionError
from ..jobs.store import JobStore
from .recipe import HashCache, compare, inputs_facts, recipe_for, recipe_hash


@dataclass(frozen=True)
class FrameCheck:
    index: int
    identical: bool
    max_diff: int = 0        # largest |stored - replayed| over pixels and channels, 0..255
    note: str = ""


@dataclass
class ReplayResult:
    job_id: str
    recipe_hash: str                       # as stored in the report
    replay_hash: str                       # the recipe as it stands on this machine now
    input_changes: list[str] = field(default_factory=list)       # inputs.* that differ from the recipe
    environment_changes: list[str] = field(default_factory=list)  # libraries, device, weights that differ
    frames: list[FrameCheck] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return bool(self.frames) and all(f.identical for f in self.frames) and not self.input_changes

    def cause(self) -> str:
        """The likely reason frames differ, for people."""
        if self.input_changes:
            return "the stored shot differs from the one the recipe recorded: " + "; ".join(self.input_changes)
        if self.environment_changes:
            return "this machine differs from the recipe: " + "; ".join(self.environment_changes)
        return "nothing in the recipe differs: the backend is not deterministic here (e.g. GPU kernels)"


class _Collector:
    """The JobContext a replay runs the backend with: keeps frames in memory, stores nothing."""

    def __init__(self, job_id: str, frame_count: int):
        self._job_id = job_id
        self.frame_count = frame_count
        self.frames: dict[int, np.ndarray] = {}
        self._cancel = threading.Event()

    @property
    def job_id(self) -> str:
        return self._job_id

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def frames_done(self) -> frozenset[int]:
        return frozenset()

    def progress(self, step: int, total_steps: int, stage: str = "") -> None:
        pass

    def preview(self, index: int, step: int, rgb: np.ndarray) -> None:
        pass

    def frame(self, index: int, rgb: np.ndarray, work: float = 1.0) -> None:
        self.frames[index] = np.array(rgb, copy=True)


def decode_png(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB") if img.mode not in ("RGB", "RGBA") else img)


def replay(store: JobStore, job_id: str, backends: dict[str, Backend], cache: HashCache | None = None) -> ReplayResult:
    """Run ``job_id``'s recipe again from the stored shot here; compare every stored frame."""
    from ..proto.greenlight.v1 import shot_pb2
    from ..shot.wire import shot_from_pb

    job = store.get(job_id)
    report = store.report(job_id)
    if report is None or not report.recipe:
        raise PreconditionError(f"job {job_id} has no recipe (it has not ended, or it ended before recipes "
                                "were recorded); nothing to replay")
    backend = backends.get(job.backend)
    if backend is None:
        raise NotFoundError(f"job {job_id} ran on backend {job.backend!r}, which this install does not have "
                            f"(it has {sorted(backends)})", resource_type="backend", resource_name=job.backend)
    data = store.read_shot_bytes(job_id)
    msg = shot_pb2.Shot()
    msg.ParseFromString(data)
    shot = shot_from_pb(msg)
    import hashlib

    stored = report.recipe
    inputs_now = inputs_facts(shot, hashlib.sha256(data).hexdigest())
    now = recipe_for(backend, job.generation, shot, inputs_now["shot_sha256"], cache or HashCache(None))
    result = ReplayResult(job_id=job_id, recipe_hash=report.recipe_hash or recipe_hash(stored),
                          replay_hash=recipe_hash(now))
    result.input_changes = compare(stored.get("inputs", {}), now["inputs"], "inputs.")
    result.environment_changes = [c for c in compare(stored, now) if not c.startswith("inputs.")]
    ctx = _Collector(job_id, shot.frame_count)
    backend.run(shot, job.generation, ctx)
    for record in store.frames(job_id):
        replayed = ctx.frames.get(record.index)
        if replayed is None:
            result.frames.append(FrameCheck(record.index, False, 255, "the replay did not produce this frame"))
            continue
        original = decode_png(store.read_frame(job_id, record))
        if original.shape != replayed.shape:
            result.frames.append(FrameCheck(record.index, False, 255,
                                            f"size differs: stored {original.shape}, replayed {replayed.shape}"))
            continue
        diff = int(np.max(np.abs(original.astype(np.int16) - replayed.astype(np.int16)))) if original.size else 0
        result.frames.append(FrameCheck(record.index, diff == 0, diff))
    return result
