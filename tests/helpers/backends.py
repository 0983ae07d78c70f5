"""Backends used by tests: real Backend implementations with controllable
pace, so tests can act while a job is running. Not fakes of a product
result: their frames are flat colours derived from the frame index."""

from __future__ import annotations

import os
import time

import numpy as np

from bridge.backends.base import Backend, BackendInfo


class PacedBackend(Backend):
    """Emits one flat-colour frame per shot frame, sleeping between frames.

    Pace from GREENLIGHT_TEST_FRAME_S (seconds per frame, default 0.1), so a
    bridge started in a subprocess can be slowed down too."""

    id = "paced"
    can_resume = True

    def __init__(self, frame_s: float | None = None, fail_at: int | None = None):
        self.frame_s = float(os.environ.get("GREENLIGHT_TEST_FRAME_S", "0.1")) if frame_s is None else frame_s
        self.fail_at = fail_at
        self.runs: list[tuple[str, frozenset[int]]] = []

    def info(self) -> BackendInfo:
        return BackendInfo(id=self.id, description="test: paced flat frames", conditions=(),
                           max_frames=10_000, max_width=4096, max_height=4096, devices=("cpu",),
                           can_resume=self.can_resume)

    def run(self, shot, settings, ctx) -> None:
        self.runs.append((ctx.job_id, ctx.frames_done))
        if os.environ.get("GREENLIGHT_TEST_RUN_LOG"):  # for bridges in a subprocess
            with open(os.environ["GREENLIGHT_TEST_RUN_LOG"], "a") as fh:
                fh.write(f"{ctx.job_id} {len(ctx.frames_done)}\n")
        for i in range(shot.frame_count):
            if ctx.cancelled:
                return
            if i in ctx.frames_done:
                continue
            if self.fail_at is not None and i == self.fail_at:
                raise RuntimeError(f"paced backend told to fail at frame {i}")
            time.sleep(self.frame_s)
            rgb = np.full((shot.height, shot.width, 3), (i * 37) % 256, dtype=np.uint8)
            ctx.frame(i, rgb)
            ctx.progress(i + 1, shot.frame_count, "paced")
