"""Control videos for the diffusion backends, drawn from engine passes (not
estimated from images): depth -> normalised inverse depth, pose -> OpenPose
skeletons. One PIL image per frame, at the pass resolution; the pipelines
resize them to the output resolution."""

from __future__ import annotations

import numpy as np

from ..shot.model import Frame, Shot
from .conditioning import depth_to_control, draw_pose


def _depth(frame: Frame) -> np.ndarray:
    if frame.depth_m is None:
        raise ValueError(f"frame {frame.index} has no depth pass: cannot draw its depth control")
    return frame.depth_m


def control_frames(shot: Shot, kind: str) -> list:
    """uint8 [H, W, 3] arrays for one control kind."""
    if kind == "depth":
        return [depth_to_control(_depth(f), background=shot.depth_background) for f in shot.frames]
    if kind == "pose":
        return [draw_pose(f.poses, shot.width, shot.height) for f in shot.frames]
    raise ValueError(f"no control video for {kind!r}")


def control_videos(shot: Shot, kinds: list[str]) -> list[list]:
    """``[[PIL.Image per frame] per kind]``: the layout MultiControlNet expects."""
    from PIL import Image

    return [[Image.fromarray(a) for a in control_frames(shot, kind)] for kind in kinds]
