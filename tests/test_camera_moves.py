"""The camera-move vocabulary (bridge.shot.moves) and the blocking built on
it (bridge.storyboard.blocking), checked with the engine-free camera model
(bridge.shot.camera.project): every move x size keeps the subject's head in
frame on every frame, sizes frame the body band they promise, moves move by
their amount with their ease, and the framing gate refuses a cropping shot."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from bridge.errors import InvalidArgumentError
from bridge.shot.camera import project
from bridge.shot.moves import (
    DEFAULT_AMOUNTS,
    FRAMINGS,
    CameraMove,
    Ease,
    Figure,
    FramingError,
    ShotSize,
    camera_path,
    frame_shot,
    shot_camera,
)
from bridge.storyboard.blocking import POSES, blocking_from_json, blocking_to_json, plan_blocking
from bridge.storyboard.planner import rule_shots
from bridge.storyboard.screenplay import load_screenplay

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "bridge" / "storyboard" / "samples" / "sample.fountain"
W, H = 1280, 720
MAYA = Figure("MAYA", (-0.8, 0.0, 0.0), 0.0, 1.68)          # faces +X
TOM = Figure("TOM", (0.8, 0.0, 0.0), math.pi, 1.82)         # faces -X, toward her
FRAMES = 48


def _sphere(centre, radius, n=40) -> np.ndarray:
    """n points spread over a sphere (Fibonacci lattice): the whole head, not just four extremes."""
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = math.pi * (1 + 5 ** 0.5) * i
    pts = np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], axis=1)
    return np.asarray(centre) + radius * pts


def _inside(cam, pts) -> bool:
    px, depth = project(cam, W, H, pts)
    return bool(np.all(depth > cam.clip_start_m) and np.all(px >= 0) and np.all(px[:, 0] <= W)
                and np.all(px[:, 1] <= H))


def _setup(size):
    if size is ShotSize.OVER_THE_SHOULDER:
        return [MAYA], TOM
    if size in (ShotSize.WIDE, ShotSize.MEDIUM):
        return [MAYA, TOM], None
    return [MAYA], None


@pytest.mark.parametrize("move", list(CameraMove))
@pytest.mark.parametrize("size", list(ShotSize))
def test_every_move_and_size_keeps_the_subject_in_frame_on_every_frame(size, move):
    figures, over = _setup(size)
    path = shot_camera(f"{size}-{move}", size, move, figures, FRAMES, over=over, width=W, height=H)
    assert len(path) == FRAMES
    framed = frame_shot(size, figures, over=over, width=W, height=H)
    for i, cam in enumerate(path):
        if size is ShotSize.INSERT:   # an insert frames a prop in the hands, not a head (docs/storyboard.md)
            assert _inside(cam, _sphere(framed.prop_m, 0.05)), f"frame {i}: the prop left the frame"
            continue
        shown = figures if size in (ShotSize.WIDE, ShotSize.MEDIUM) else figures[:1]
        for fig in shown:
            assert _inside(cam, _sphere(fig.head_centre_m, fig.head_radius_m)), f"frame {i}: {fig.name}'s head"
    if move is not CameraMove.STATIC:   # and the move really moves
        first, last = path[0], path[-1]
        changed = (not np.allclose(first.world_matrix, last.world_matrix)
                   or first.focal_length_mm != last.focal_length_mm)
        assert changed, f"{move} produced a still camera"


@pytest.mark.parametrize("size", [ShotSize.WIDE, ShotSize.MEDIUM, ShotSize.CLOSE_UP])
def test_sizes_frame_their_band_at_the_documented_fill(size):
    framed = frame_shot(size, [MAYA], width=W, height=H)
    lo, hi = FRAMINGS[size].band
    px, depth = project(framed.camera, W, H, np.array([MAYA.point(hi), MAYA.point(lo)]))
    top, bottom = px[:, 1]
    assert depth.min() > 0
    assert bottom - top == pytest.approx(FRAMINGS[size].fill * H, abs=0.5)
    assert (top + bottom) / 2 == pytest.approx(H / 2, abs=0.5)
    assert px[:, 0] == pytest.approx([W / 2, W / 2], abs=0.5)


def test_medium_shot_frames_mid_torso_to_above_the_head():
    framed = frame_shot(ShotSize.MEDIUM, [TOM], width=W, height=H)
    px, _ = project(framed.camera, W, H, np.array([TOM.point(1.0), TOM.point(0.6), TOM.point(0.3)]))
    head_top, mid_torso, knees = px[:, 1]
    assert 0 < head_top < 0.15 * H            # headroom above the head
    assert mid_torso == pytest.approx(0.9 * H, abs=1)
    assert knees > H                          # below the frame: a medium, not a wide


def test_dolly_zoom_and_ease_behave_as_documented():
    framed = frame_shot(ShotSize.CLOSE_UP, [MAYA], width=W, height=H)
    d = framed.distance_m
    dolly_in = camera_path(framed, CameraMove.DOLLY_IN, 25)
    assert np.allclose(dolly_in[-1].world_matrix, framed.camera.world_matrix)    # ends on the framing
    start_dist = np.linalg.norm(dolly_in[0].position_m - framed.target_m)
    assert start_dist == pytest.approx(d * (1 + DEFAULT_AMOUNTS[CameraMove.DOLLY_IN]))
    dolly_out = camera_path(framed, CameraMove.DOLLY_OUT, 25, amount=0.4)
    assert np.allclose(dolly_out[0].world_matrix, framed.camera.world_matrix)    # starts on it
    assert np.linalg.norm(dolly_out[-1].position_m - framed.target_m) == pytest.approx(d + 0.4)
    zoom = camera_path(framed, CameraMove.ZOOM, 25, amount=2.0)
    assert (zoom[0].focal_length_mm, zoom[-1].focal_length_mm) == pytest.approx((25.0, 50.0))
    # ease in-out: slow at both ends, fastest in the middle; linear: even steps
    steps = np.diff([np.linalg.norm(c.position_m - framed.target_m) for c in dolly_in])
    assert abs(steps[0]) < abs(steps[12]) / 5 and abs(steps[-1]) < abs(steps[12]) / 5
    linear = camera_path(framed, CameraMove.DOLLY_IN, 25, ease=Ease.LINEAR)
    lin_steps = np.diff([np.linalg.norm(c.position_m - framed.target_m) for c in linear])
    assert np.allclose(lin_steps, lin_steps[0])


def test_pan_sweeps_its_amount_and_speed_sets_the_amount():
    framed = frame_shot(ShotSize.WIDE, [MAYA], width=W, height=H)
    pan = camera_path(framed, CameraMove.PAN, 48, amount=12.0)

    def yaw(c):
        fwd = -np.asarray(c.world_matrix)[:3, 2]
        return math.degrees(math.atan2(fwd[1], fwd[0]))

    assert yaw(pan[-1]) - yaw(pan[0]) == pytest.approx(12.0)
    assert np.allclose(pan[0].position_m, pan[-1].position_m)       # a pan turns, it does not travel
    by_speed = camera_path(framed, CameraMove.PAN, 48, speed=6.0, fps=24.0)   # 6 deg/s for 2 s
    assert yaw(by_speed[-1]) - yaw(by_speed[0]) == pytest.approx(12.0)
    with pytest.raises(InvalidArgumentError, match="an amount or a speed, not both"):
        camera_path(framed, CameraMove.PAN, 48, amount=1.0, speed=1.0)


def test_the_framing_gate_refuses_a_shot_that_would_crop_the_subject():
    with pytest.raises(FramingError) as err:
        shot_camera("S09_040", ShotSize.CLOSE_UP, CameraMove.PAN, [MAYA], 48, amount=90.0, width=W, height=H)
    msg = str(err.value)
    assert msg.startswith("shot S09_040 (close-up, pan): would crop MAYA's head on frame 0")
    assert "frames affected" in msg and "smaller move amount" in msg
    assert (err.value.shot, err.value.part, err.value.frame) == ("S09_040", "MAYA's head", 0)
    # a wide that trucks its pair out of frame crops the feet or a head too
    with pytest.raises(FramingError, match=r"shot W1 \(wide, truck\): would crop (MAYA|TOM)'s"):
        shot_camera("W1", ShotSize.WIDE, CameraMove.TRUCK, [MAYA, TOM], 24, amount=12.0, width=W, height=H)
    # a zoom that starts tighter than the framing crops the band it promises
    with pytest.raises(FramingError, match="medium, zoom"):
        shot_camera("M1", ShotSize.MEDIUM, CameraMove.ZOOM, [MAYA], 24, amount=0.5, width=W, height=H)
    # a move that says the subject may leave the frame (a reveal) is let through
    path = shot_camera("S09_040", ShotSize.CLOSE_UP, CameraMove.PAN, [MAYA], 48, amount=90.0,
                       subject_may_leave=True, width=W, height=H)
    assert len(path) == 48


def test_framings_that_cannot_be_built_are_refused_by_name():
    with pytest.raises(FramingError, match="S1: an over-the-shoulder shot needs a second character"):
        shot_camera("S1", ShotSize.OVER_THE_SHOULDER, CameraMove.STATIC, [MAYA], 4)
    with pytest.raises(FramingError, match="S2: a close-up shot needs at least one character"):
        shot_camera("S2", ShotSize.CLOSE_UP, CameraMove.STATIC, [], 4)
    far = Figure("TOM", (60.0, 0.0, 0.0), math.pi)
    with pytest.raises(FramingError, match=r"S3: framing this over-the-shoulder shot needs a \d+ mm lens"):
        shot_camera("S3", ShotSize.OVER_THE_SHOULDER, CameraMove.STATIC, [MAYA], 4, over=far)


# ---- blocking the sample ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sample_list():
    return rule_shots(load_screenplay(SAMPLE))


@pytest.fixture(scope="module")
def blocked(sample_list):
    return plan_blocking(sample_list)


def test_blocking_sets_marks_and_frames(blocked, sample_list):
    assert [b.number for b in blocked] == [1, 2, 3]
    pier, kitchen, cliff = blocked
    assert pier.set.interior is False and pier.set.walls == ()
    assert kitchen.set.interior is True and {w.name for w in kitchen.set.walls} == {"back", "front", "left", "right"}
    (x0, y0), (x1, y1) = kitchen.set.floor_min_m, kitchen.set.floor_max_m
    for shot in kitchen.shots:   # every camera inside the room, every mark too
        for cam in shot.camera:
            x, y, _ = cam.position_m
            assert x0 < x < x1 and y0 < y < y1
    maya, tom = kitchen.marks
    assert (maya.character, tom.character) == ("MAYA", "TOM")
    face_maya = np.array([math.cos(maya.facing_rad), math.sin(maya.facing_rad)])
    assert face_maya @ (np.array(tom.position_m[:2]) - np.array(maya.position_m[:2])) > 0   # they face each other
    for scene, planned in zip(blocked, sample_list.scenes):
        start = 0
        for shot, p in zip(scene.shots, planned.shots):
            assert shot.shot_id == p.id and shot.frame_start == start
            assert shot.frame_count == round(p.duration_s * scene.fps) == len(shot.camera)
            start += shot.frame_count
            assert set(shot.poses.values()) <= set(POSES) and set(shot.poses) == set(planned.characters)


def test_blocking_poses_follow_the_verb_table(blocked):
    poses = {s.shot_id: dict(s.poses) for scene in blocked for s in scene.shots}
    assert poses["S01_010"] == {"MAYA": "walking"}                 # "walks the length of the pier"
    assert poses["S01_020"] == {"MAYA": "standing"}                # walking lasts one shot
    assert poses["S02_010"]["TOM"] == "sitting"                    # "TOM (60s) sits at the table"
    assert poses["S02_020"] == {"MAYA": "walking", "TOM": "sitting"}   # "Maya enters": sitting persists
    assert poses["S02_030"] == {"MAYA": "talking", "TOM": "sitting"}
    assert poses["S02_060"]["TOM"] == "sitting"                    # a seated speaker stays seated
    assert poses["S03_030"] == {"MAYA": "talking"}


def test_blocked_cameras_keep_every_head_in_frame(blocked, sample_list):
    planned = {p.id: p for p in sample_list.shots}
    for scene in blocked:
        marks = {m.character: m for m in scene.marks}
        for shot in scene.shots:
            p = planned[shot.shot_id]
            if p.size is ShotSize.INSERT:
                continue
            shown = p.characters if p.size in (ShotSize.WIDE, ShotSize.MEDIUM) else p.characters[:1]
            for name in shown:
                m = marks[name]
                h = m.height_m * (0.72 if shot.poses[name] == "sitting" else 1.0)
                fig = Figure(name, m.position_m, m.facing_rad, h)
                for cam in shot.camera:
                    assert _inside(cam, _sphere(fig.head_centre_m, fig.head_radius_m)), (shot.shot_id, name)


def test_blocking_json_round_trip_and_an_edited_bad_move_is_refused(blocked, sample_list):
    assert blocking_from_json(blocking_to_json(blocked)) == blocked
    from dataclasses import replace
    scenes = list(sample_list.scenes)
    cu = next(i for i, s in enumerate(scenes[2].shots) if s.size is ShotSize.CLOSE_UP)
    shots = list(scenes[2].shots)
    shots[cu] = replace(shots[cu], move=CameraMove.TILT, move_amount=70.0)
    scenes[2] = replace(scenes[2], shots=tuple(shots))
    with pytest.raises(FramingError, match=r"shot S03_030 \(close-up, tilt\): would crop MAYA's head"):
        plan_blocking(replace(sample_list, scenes=tuple(scenes)))
