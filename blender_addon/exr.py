"""A small reader for the uncompressed OpenEXR files the pass render writes.

Why not a dependency: Blender's Python cannot read one pass of a multilayer
EXR (``bpy.data.images`` exposes the first layer only) and the ``OpenEXR``
wheel would be one more platform wheel to bundle. The pass render writes
``exr_codec = 'NONE'`` scanline files, which are a header plus raw
little-endian rows, so ~100 lines of numpy read them exactly (and faster than
decompressing). Multi-part files (what Cycles writes for multilayer EXR, see
DESIGN section 10) and single-part files are both handled. Anything else
(tiled, deep, compressed) is refused with a clear error.

Engine-free: numpy only.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

_MAGIC = 20000630
_TILED, _LONG_NAMES, _DEEP, _MULTIPART = 0x200, 0x400, 0x800, 0x1000
_PIXEL_DTYPES = {0: np.dtype("<u4"), 1: np.dtype("<f2"), 2: np.dtype("<f4")}


class ExrError(ValueError):
    """The file is not an EXR this reader handles."""


def _cstr(buf: bytes, pos: int) -> tuple[str, int]:
    end = buf.index(b"\0", pos)
    return buf[pos:end].decode("utf-8"), end + 1


def _parse_channels(value: bytes) -> list[tuple[str, np.dtype, int, int]]:
    channels, pos = [], 0
    while value[pos] != 0:
        name, pos = _cstr(value, pos)
        ptype, _linear, xs, ys = struct.unpack_from("<iB3xii", value, pos)
        pos += 16
        if ptype not in _PIXEL_DTYPES:
            raise ExrError(f"channel {name!r}: unknown pixel type {ptype}")
        channels.append((name, _PIXEL_DTYPES[ptype], xs, ys))
    return channels


def _parse_header(buf: bytes, pos: int) -> tuple[dict, int]:
    header = {}
    while buf[pos] != 0:
        name, pos = _cstr(buf, pos)
        type_name, pos = _cstr(buf, pos)
        (size,) = struct.unpack_from("<i", buf, pos)
        pos += 4
        value = buf[pos:pos + size]
        pos += size
        if type_name == "chlist":
            header[name] = _parse_channels(value)
        elif type_name == "box2i":
            header[name] = struct.unpack("<4i", value)
        elif type_name == "compression":
            header[name] = value[0]
        elif type_name == "string":
            header[name] = value.decode("utf-8")
        elif type_name == "int":
            header[name] = struct.unpack("<i", value)[0]
        else:
            header[name] = value
    return header, pos + 1


def read_exr(path: str | Path) -> dict[str, np.ndarray]:
    """All channels of an uncompressed scanline EXR as ``{"Layer.Pass.Channel":
    [H, W]}`` arrays (row 0 is the top of the image), e.g.
    ``ViewLayer.Depth.Z`` and ``ViewLayer.Vector.X`` for a Cycles pass render."""
    path = Path(path)
    buf = path.read_bytes()
    if len(buf) < 8 or struct.unpack_from("<i", buf, 0)[0] != _MAGIC:
        raise ExrError(f"{path}: not an OpenEXR file")
    (flags,) = struct.unpack_from("<i", buf, 4)
    if flags & (_TILED | _DEEP):
        raise ExrError(f"{path}: tiled or deep EXR files are not supported (write scanline images)")
    multipart = bool(flags & _MULTIPART)
    pos = 8
    headers = []
    while True:
        header, pos = _parse_header(buf, pos)
        headers.append(header)
        if not multipart or buf[pos] == 0:
            break
    if multipart:
        pos += 1  # the empty header that ends the list
    parts = []
    for header in headers:
        if header.get("compression", 0) != 0:
            raise ExrError(f"{path}: part {header.get('name', '')!r} is compressed "
                           f"(code {header['compression']}); the pass render writes exr_codec='NONE'")
        xmin, ymin, xmax, ymax = header["dataWindow"]
        width, height = xmax - xmin + 1, ymax - ymin + 1
        count = header.get("chunkCount", height)
        offsets = np.frombuffer(buf, dtype="<u8", count=count, offset=pos)
        pos += 8 * count
        parts.append((header, width, height, offsets))
    out: dict[str, np.ndarray] = {}
    for part_no, (header, width, height, offsets) in enumerate(parts):
        channels = header["channels"]
        if any(xs != 1 or ys != 1 for _, _, xs, ys in channels):
            raise ExrError(f"{path}: sub-sampled channels are not supported")
        row_dtype = np.dtype([(name, dt, (width,)) for name, dt, _, _ in channels])
        rows = np.empty(height, dtype=row_dtype)
        ymin = header["dataWindow"][1]
        for offset in offsets:
            at = int(offset)
            if multipart:
                (part,) = struct.unpack_from("<i", buf, at)
                if part != part_no:
                    raise ExrError(f"{path}: chunk at {at} belongs to part {part}, expected {part_no}")
                at += 4
            y, size = struct.unpack_from("<ii", buf, at)
            if size != row_dtype.itemsize:
                raise ExrError(f"{path}: scanline {y} holds {size} bytes, expected {row_dtype.itemsize} "
                               "(only one uncompressed line per chunk is supported)")
            rows[y - ymin] = np.frombuffer(buf, dtype=row_dtype, count=1, offset=at + 8)[0]
        part_name = header.get("name", "") if multipart else ""
        for name, _, _, _ in channels:
            # Blender repeats the part name in the channel name; other writers may not.
            key = name if not part_name or name.startswith(part_name + ".") else f"{part_name}.{name}"
            out[key] = np.ascontiguousarray(rows[name])
    return out
