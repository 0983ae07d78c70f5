"""Frames folder -> MP4 animatic (H.264 through the ffmpeg binary that
imageio-ffmpeg ships). Imports PIL/imageio-ffmpeg only when called."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


def write_mp4(frame_paths: list[Path], fps: Fraction, path: str | Path, quality: int = 7) -> Path:
    """Encode PNG frames (all one size) into ``path``; odd sizes are padded
    to even (yuv420p needs it). ``fps`` is exact (24000/1001 stays NTSC)."""
    import imageio_ffmpeg
    from PIL import Image

    if not frame_paths:
        raise ValueError("write_mp4: no frames")
    path = Path(path)
    with Image.open(frame_paths[0]) as first:
        width, height = first.size
    out_w, out_h = width + width % 2, height + height % 2
    # imageio-ffmpeg is unannotated: pyright infers ``fps: int`` from its default (16), but it takes a float
    writer = imageio_ffmpeg.write_frames(
        str(path), (out_w, out_h), codec="libx264", quality=quality, pix_fmt_out="yuv420p", macro_block_size=1,
        fps=float(fps),  # pyright: ignore[reportArgumentType]
        output_params=["-r", f"{fps.numerator}/{fps.denominator}"])
    writer.send(None)
    try:
        for frame_path in frame_paths:
            with Image.open(frame_path) as img:
                rgb = np.asarray(img.convert("RGB"))
            if rgb.shape[:2] != (height, width):
                raise ValueError(f"{frame_path}: size {rgb.shape[1]}x{rgb.shape[0]} "
                                 f"differs from the first frame's {width}x{height}")
            if (out_h, out_w) != (height, width):
                rgb = np.pad(rgb, ((0, out_h - height), (0, out_w - width), (0, 0)), mode="edge")
            writer.send(np.ascontiguousarray(rgb))
    finally:
        writer.close()
    return path


def probe_frame_count(path: str | Path) -> int:
    """Frames in a video file, counted by decoding it (used by tests and the demo check)."""
    import imageio_ffmpeg

    frames = imageio_ffmpeg.count_frames_and_secs(str(path))[0]
    if frames is None:
        raise RuntimeError(f"{path}: ffmpeg reported no frame count")
    return frames
