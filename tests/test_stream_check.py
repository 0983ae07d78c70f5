"""A stored upload is checked one frame at a time: the same verdicts as
parsing it whole, in memory bounded by a frame, not by the file."""

import io
import tracemalloc
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.errors import GreenlightError, InvalidArgumentError, LimitExceededError, ShotValidationError
from bridge.shot.model import ShotOutline
from bridge.shot.stream_check import scan_shot, scan_shot_file
from bridge.shot.synthetic import sample_shot
from bridge.shot.validation import ShotLimits, validate_shot
from bridge.shot.wire import shot_to_pb

SHOT = sample_shot(frames=6, width=64, height=36)
DATA = shot_to_pb(SHOT).SerializeToString()


def test_the_outline_is_what_the_whole_shot_says(tmp_path):
    path = tmp_path / "shot.pb"
    path.write_bytes(DATA)
    outline = scan_shot_file(path, ShotLimits())
    assert outline == ShotOutline.of(SHOT)
    assert outline.passes == ("depth", "motion", "pose") and outline.frame_count == 6


def test_a_bad_frame_is_refused_with_the_same_field_as_a_whole_parse():
    frames = list(SHOT.frames)
    depth = np.array(frames[3].depth_m)
    depth[2, 5] = np.nan
    frames[3] = replace(frames[3], depth_m=depth)
    bad = replace(SHOT, frames=tuple(frames))
    with pytest.raises(ShotValidationError) as whole:
        validate_shot(bad)
    with pytest.raises(ShotValidationError) as scanned:
        scan_shot(io.BytesIO(shot_to_pb(bad).SerializeToString()))
    assert scanned.value.field == whole.value.field == "frames[3].depth_m"


def test_too_many_frames_is_refused_without_reading_the_rest():
    long = sample_shot(frames=12, width=16, height=9)
    data = shot_to_pb(long).SerializeToString()
    fh = io.BytesIO(data)
    with pytest.raises(LimitExceededError) as exc:
        scan_shot(fh, ShotLimits(max_frames=4))
    assert exc.value.limit == "max_frames"
    assert fh.tell() < len(data) * 0.6        # stopped at the fifth frame


def test_memory_is_bounded_by_a_frame_not_the_file(tmp_path):
    big = sample_shot(frames=24, width=320, height=180)
    path = tmp_path / "big.pb"
    path.write_bytes(shot_to_pb(big).SerializeToString())
    size = path.stat().st_size
    frame_bytes = size / big.frame_count
    tracemalloc.start()
    try:
        scan_shot_file(path)
        _, scan_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        path.read_bytes()       # what parsing the whole file starts with
        _, whole_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert whole_peak >= size
    assert scan_peak < 4 * frame_bytes < size / 5


def test_not_a_shot():
    for data in (b"\xff\xff\xff", b"\x32\x80\x80\x80\x80\x10", b"\x0a\x05ab"):
        with pytest.raises(InvalidArgumentError, match="not a valid greenlight.v1.Shot"):
            scan_shot(io.BytesIO(data))
    with pytest.raises(ShotValidationError, match="no frames"):
        scan_shot(io.BytesIO(shot_to_pb(replace(SHOT, frames=())).SerializeToString()))


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(0, len(DATA) - 1), flip=st.integers(0, len(DATA) - 1), bit=st.integers(0, 7))
def test_truncated_or_flipped_uploads_get_a_greenlight_error(cut, flip, bit):
    truncated = DATA[:cut]
    flipped = bytearray(DATA)
    flipped[flip] ^= 1 << bit
    for data in (truncated, bytes(flipped)):
        try:
            scan_shot(io.BytesIO(data), ShotLimits())
        except GreenlightError:
            pass
