"""The ``guides`` backend: the conditioning itself as a preview animatic.

Depth shaded as inverse depth, the pose skeleton in OpenPose colours and the
motion as a flow colour-wheel inset, one frame per input frame. It is the
instant preview every job can show before diffusion and the CPU-only
fallback; it needs no model and runs anywhere.
"""

from __future__ import annotations

import numpy as np

from ..shot.model import Shot
from ..shot.request import GenerationSettings
from .base import Backend, BackendInfo, JobContext


class GuidesBackend(Backend):
    id = "guides"

    def __init__(self, max_frames: int = 10_000, max_size: int = 8192):
        self._max_frames = max_frames
        self._max_size = max_size

    def info(self) -> BackendInfo:
        return BackendInfo(
            id=self.id,
            description="Preview animatic of the engine passes: inverse depth, OpenPose skeleton, flow inset",
            conditions=("depth", "pose", "motion"),
            max_frames=self._max_frames, max_width=self._max_size, max_height=self._max_size,
            devices=("cpu",), can_resume=True,
        )

    def run(self, shot: Shot, settings: GenerationSettings, ctx: JobContext) -> None:
        from PIL import Image

        from .conditioning import guides_frame

        out_size = (settings.output_width or shot.width, settings.output_height or shot.height)
        total = shot.frame_count
        done = ctx.frames_done
        for i, frame in enumerate(shot.frames):
            if ctx.cancelled:
                return
            if frame.index in done:
                continue
            rgb = guides_frame(frame, shot.width, shot.height, background=shot.depth_background)
            if out_size != (shot.width, shot.height):
                rgb = np.asarray(Image.fromarray(rgb).resize(out_size, Image.Resampling.BILINEAR))
            ctx.frame(frame.index, rgb, work=1.0)
            ctx.progress(i + 1, total, "rendering guides")
