"""Frame files: PNG with Greenlight metadata in text chunks (job id, frame
index, energy), so a frame keeps its provenance wherever it is copied."""

from __future__ import annotations

import io

import numpy as np

PREFIX = "greenlight:"


def encode_png(rgb: np.ndarray, metadata: dict[str, object], compress_level: int = 1) -> bytes:
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] not in (3, 4):
        raise ValueError(f"frame must be uint8 [H, W, 3|4], got {rgb.dtype} {rgb.shape}")
    info = PngInfo()
    for key, value in metadata.items():
        info.add_text(PREFIX + key, str(value))
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", pnginfo=info, compress_level=compress_level)
    return buf.getvalue()


def read_png_metadata(data: bytes) -> dict[str, str]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return {k[len(PREFIX):]: v for k, v in img.text.items() if k.startswith(PREFIX)}
