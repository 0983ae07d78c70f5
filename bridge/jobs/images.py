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
    from PIL.PngImagePlugin import PngImageFile

    with Image.open(io.BytesIO(data)) as img:
        if not isinstance(img, PngImageFile):   # only PNG has text chunks (``.text``)
            raise ValueError(f"not a PNG image: {img.format}")
        return {k[len(PREFIX):]: v for k, v in img.text.items() if k.startswith(PREFIX)}


def add_png_text(data: bytes, metadata: dict[str, object]) -> bytes:
    """``data`` with Greenlight text chunks added before IEND, pixels
    untouched (no re-encode): how the bridge stamps a frame's fixed figures
    into a PNG a remote worker encoded."""
    import struct
    import zlib

    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[-12:-8] != b"\x00\x00\x00\x00" or data[-8:-4] != b"IEND":
        raise ValueError("not a complete PNG file")
    chunks = []
    for key, value in metadata.items():
        body = (PREFIX + key).encode("latin-1") + b"\x00" + str(value).encode("latin-1", "replace")
        chunks.append(struct.pack(">I", len(body)) + b"tEXt" + body
                      + struct.pack(">I", zlib.crc32(b"tEXt" + body) & 0xFFFFFFFF))
    return data[:-12] + b"".join(chunks) + data[-12:]
