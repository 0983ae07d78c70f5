"""The interface every generation backend implements.

A backend declares what it accepts (``info``), refuses bad input before any
work (``check_inputs``), and runs a job through a ``JobContext`` that it
reports to: progress per step, optional previews, and final frames in any
order, each with the work it took (used to attribute energy). It checks
``ctx.cancelled`` between steps and returns early when set.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..errors import InvalidArgumentError
from ..shot.model import Shot, ShotOutline
from ..shot.request import GenerationSettings


@dataclass(frozen=True)
class QualityPreset:
    """What ``generation.quality`` may name for a backend: "draft" or "final"."""

    name: str
    description: str
    relative_cost: float     # expected work relative to "final" (final = 1)


@dataclass(frozen=True)
class BackendInfo:
    id: str
    description: str
    conditions: tuple[str, ...]
    max_frames: int
    max_width: int
    max_height: int
    devices: tuple[str, ...]
    available: bool = True
    unavailable_reason: str = ""
    # True when a re-run after a restart can skip frames already stored.
    can_resume: bool = False
    # "draft"/"final" where the backend has both; empty: its output is final, there is no draft
    quality_presets: tuple[QualityPreset, ...] = ()


class JobContext(Protocol):
    @property
    def job_id(self) -> str: ...

    @property
    def cancelled(self) -> bool: ...

    @property
    def frames_done(self) -> frozenset[int]:
        """Frames stored by an earlier attempt (resume after a restart)."""
        ...

    def progress(self, step: int, total_steps: int, stage: str = "") -> None: ...

    def preview(self, index: int, step: int, rgb: np.ndarray) -> None: ...

    def frame(self, index: int, rgb: np.ndarray, work: float = 1.0) -> None:
        """A final frame, uint8 [H, W, 3]. ``work`` is the relative effort it
        took (e.g. decode cost) for energy attribution. The bridge may encode
        it after this returns: do not modify ``rgb`` afterwards."""


class Backend(abc.ABC):
    """One model family. Subclasses set ``id`` and implement the three methods."""

    id: str = ""
    # whether generation.temporal (flow-guided generation) means anything to this backend
    supports_flow_guidance: bool = False

    @abc.abstractmethod
    def info(self) -> BackendInfo: ...

    def warm(self) -> None:
        """Do slow, one-off detection work now (the bridge calls it on a
        thread at startup); the default has none."""
        self.info()

    def check_inputs(self, shot: Shot | ShotOutline, settings: GenerationSettings) -> None:
        """Raise InvalidArgumentError / LimitExceededError; default checks the
        declared limits and that the passes the enabled controls need exist."""
        info = self.info()
        if not info.available:
            raise InvalidArgumentError(
                f"generation.backend: {self.id!r} is not available here: {info.unavailable_reason}")
        width = settings.output_width or shot.width
        height = settings.output_height or shot.height
        if shot.frame_count > info.max_frames:
            raise InvalidArgumentError(
                f"frames: backend {self.id!r} takes at most {info.max_frames} frames, got {shot.frame_count}")
        if width > info.max_width or height > info.max_height:
            raise InvalidArgumentError(
                f"resolution: backend {self.id!r} takes at most {info.max_width}x{info.max_height}, "
                f"got {width}x{height}")
        names = [p.name for p in info.quality_presets]
        if settings.quality and settings.quality not in (names or ["final"]):
            raise InvalidArgumentError(
                f"generation.quality: backend {self.id!r} has no {settings.quality!r} preset; "
                f"it offers {names or ['final']} (see GetCapabilities)", field="generation.quality")
        if settings.temporal.enabled and not self.supports_flow_guidance:
            raise InvalidArgumentError(
                f"generation.temporal.mode: backend {self.id!r} has no flow-guided generation; use 'animatediff' "
                f"or set mode 'off'", field="generation.temporal.mode")

    @abc.abstractmethod
    def run(self, shot: Shot, settings: GenerationSettings, ctx: JobContext) -> None: ...

    def estimate_work(self, shot: Shot | ShotOutline, settings: GenerationSettings) -> float:
        """Relative cost before running (frames x pixels by default)."""
        return shot.frame_count * (settings.output_width or shot.width) * (settings.output_height or shot.height)
