"""Check a stored, serialized ``greenlight.v1.Shot`` one frame at a time.

The bridge admits an upload from its file on disk: the top-level fields of
the Shot message are walked in the protobuf wire format, every ``frames``
entry is parsed and validated on its own and then dropped, so memory is
bounded by one frame, not by the file (a 1 GB upload costs what its largest
frame costs). The result is a ``ShotOutline``; the executor parses the
whole shot when the job runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from google.protobuf.message import DecodeError

from ..errors import InvalidArgumentError, ShotValidationError
from ..proto.greenlight.v1 import shot_pb2
from .model import Shot, ShotOutline
from .validation import ShotLimits, validate_frame, validate_shot_fields
from .wire import frame_from_pb, shot_fields_from_pb

FRAMES_FIELD = shot_pb2.Shot.DESCRIPTOR.fields_by_name["frames"].number
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
NOT_A_SHOT = ("SubmitShot: the data is not a valid greenlight.v1.Shot (it does not parse as one); "
              "upload a serialized Shot")


def scan_shot_file(path: str | Path, limits: ShotLimits | None = None) -> ShotOutline:
    """Validate the Shot stored at ``path`` frame by frame; raise
    InvalidArgumentError (not a Shot), ShotValidationError or
    LimitExceededError naming the field, as ``validate_shot`` does."""
    with open(path, "rb") as fh:
        return scan_shot(fh, limits)


def scan_shot(fh: BinaryIO, limits: ShotLimits | None = None) -> ShotOutline:
    shell = bytearray()          # every top-level field but the frames, re-encoded as read
    seen = _Passes()
    shot = None
    count = 0
    while True:
        tag = _read_tag(fh)
        if tag is None:
            break
        number, wire = tag >> 3, tag & 7
        if number == FRAMES_FIELD and wire == _LEN:
            data = _read_exact(fh, _read_varint(fh))   # one frame in memory at a time
            if shot is None:     # the shot's own fields come first in every writer we know; read them once
                shot = _shell(bytes(shell))
                validate_shot_fields(shot, 1, limits)
            count += 1
            if limits is not None and count > limits.max_frames:
                validate_shot_fields(shot, count, limits)   # raises max_frames, before reading further
            frame = _frame(data, count - 1)
            validate_frame(shot, frame, count - 1)
            seen.add(frame)
            continue
        shell += _encode_varint(tag)
        shell += _read_field(fh, wire)
    if shot is None:
        shot = _shell(bytes(shell))
    else:
        late = _shell(bytes(shell))  # fields after the frames (allowed by protobuf): take the final values
        if (late.tags, late.fps, late.width, late.height, late.depth_background) != \
                (shot.tags, shot.fps, shot.width, shot.height, shot.depth_background):
            raise ShotValidationError("frames", "the shot's tags, fps, resolution or depth_background change "
                                                "after its frames; write them before the frames")
        shot = late
    validate_shot_fields(shot, count, limits)
    return ShotOutline(tags=shot.tags, fps=shot.fps, width=shot.width, height=shot.height, frame_count=count,
                       passes=seen.passes(count), frame_start=shot.frame_start,
                       depth_background=shot.depth_background, pass_methods=dict(shot.pass_methods),
                       source=shot.source)


class _Passes:
    """Which passes every frame has (depth, motion, normals, mask) and whether any has a pose."""

    def __init__(self):
        self.counts = {"depth": 0, "motion": 0, "normals": 0, "mask": 0}
        self.pose = False

    def add(self, frame) -> None:
        for name, attr in (("depth", "depth_m"), ("motion", "motion_px"), ("normals", "normals"), ("mask", "mask")):
            if getattr(frame, attr) is not None:
                self.counts[name] += 1
        self.pose = self.pose or bool(frame.poses)

    def passes(self, count: int) -> tuple[str, ...]:
        names = [n for n, c in self.counts.items() if count and c == count]
        return tuple(names + (["pose"] if self.pose else []))


def _shell(data: bytes) -> Shot:
    msg = shot_pb2.Shot()
    try:
        msg.ParseFromString(data)
    except DecodeError:
        raise InvalidArgumentError(NOT_A_SHOT) from None
    return shot_fields_from_pb(msg, ())


def _frame(data: bytes, i: int):
    msg = shot_pb2.Frame()
    try:
        msg.ParseFromString(data)
    except DecodeError:
        raise InvalidArgumentError(NOT_A_SHOT) from None
    return frame_from_pb(msg, i)


def _read_exact(fh: BinaryIO, n: int) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise InvalidArgumentError(NOT_A_SHOT)
    return data


def _read_tag(fh: BinaryIO) -> int | None:
    """The next field's tag, or None at the end of the message."""
    b = fh.read(1)
    if not b:
        return None
    return _read_varint(fh, b[0])


def _read_varint(fh: BinaryIO, first: int | None = None) -> int:
    result = shift = 0
    while True:
        if first is not None:
            byte, first = first, None
        else:
            b = fh.read(1)
            if not b:
                raise InvalidArgumentError(NOT_A_SHOT)
            byte = b[0]
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise InvalidArgumentError(NOT_A_SHOT)


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_field(fh: BinaryIO, wire: int) -> bytes:
    """One field's payload as encoded (after its tag)."""
    if wire == _VARINT:
        return _encode_varint(_read_varint(fh))
    if wire == _I64:
        return _read_exact(fh, 8)
    if wire == _I32:
        return _read_exact(fh, 4)
    if wire == _LEN:
        n = _read_varint(fh)
        if n > 64 * 1024 * 1024:   # the shot's own fields are small; a huge one is not a Shot we wrote
            raise InvalidArgumentError(NOT_A_SHOT)
        return _encode_varint(n) + _read_exact(fh, n)
    raise InvalidArgumentError(NOT_A_SHOT)
