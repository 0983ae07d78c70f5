"""Control images from shot passes: depth, pose, flow and the guides preview."""

from __future__ import annotations

import colorsys
import warnings

import numpy as np
import pytest

from bridge.backends.conditioning import depth_to_control, draw_pose, flow_to_color, guides_frame
from bridge.shot import coco
from bridge.shot.model import CharacterPose
from bridge.shot.synthetic import sample_shot

# --------------------------------------------------------------------- depth

def _two_planes(h=40, w=60, near=2.0, far=8.0, dtype=np.float32):
    depth = np.full((h, w), far, dtype)
    depth[:, : w // 2] = near
    return depth


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_depth_near_is_brighter_than_far(dtype):
    out = depth_to_control(_two_planes(dtype=dtype))
    assert out.shape == (40, 60, 3) and out.dtype == np.uint8
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 0], out[..., 2])
    assert out[:, :30].min() > out[:, 30:].max()
    assert out[:, :30].min() == 255  # full contrast between the two planes


def test_depth_gradient_is_monotonic_in_inverse_depth():
    depth = np.tile(np.linspace(1.0, 20.0, 100, dtype=np.float32), (5, 1))
    row = depth_to_control(depth)[2, :, 0].astype(int)
    assert np.all(np.diff(row) <= 0)
    assert row[0] == 255 and row[-1] == 0


@pytest.mark.parametrize("background_value, background", [
    (np.inf, "inf"), (1e10, "inf"), (0.0, "inf"), (0.0, "zero"), (np.nan, "inf"), (-1.0, "inf"),
])
def test_depth_background_is_black(background_value, background):
    depth = _two_planes()
    depth[:10] = background_value
    out = depth_to_control(depth, background=background)
    assert np.all(out[:10] == 0)
    # The remaining valid pixels keep their full contrast.
    assert out[10:, :30].min() == 255
    assert out[10:, :30].min() > out[10:, 30:].max()


@pytest.mark.parametrize("value", [np.inf, 0.0, 1e10, np.nan])
@pytest.mark.parametrize("background", ["inf", "zero"])
def test_depth_all_background_is_black_without_warnings(value, background):
    depth = np.full((12, 16), value, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            out = depth_to_control(depth, background=background)
    assert out.shape == (12, 16, 3) and out.dtype == np.uint8
    assert not out.any()


def test_depth_single_near_outlier_does_not_collapse_contrast():
    depth = _two_planes()
    depth[5, 50] = 0.01  # one stray pixel 1 cm from the lens
    out = depth_to_control(depth)
    assert out[5, 50, 0] == 255
    near = out[:, :30, 0]
    far = np.delete(out[:, 30:, 0].ravel(), 5 * 30 + 20)
    # A plain min/max would put the near plane at ~1 % brightness.
    assert near.min() >= 200
    assert int(near.min()) - int(far.max()) >= 150


def test_depth_constant_plane_is_white_and_rejects_bad_input():
    out = depth_to_control(np.full((4, 5), 3.0, np.float32))
    assert np.all(out == 255)
    with pytest.raises(ValueError):
        depth_to_control(np.ones((2, 3, 4)))
    with pytest.raises(ValueError):
        depth_to_control(np.ones((2, 3)), background="nan")


# ---------------------------------------------------------------------- pose

W, H = 200, 160


def _pose(points: dict[int, tuple[float, float, int]]) -> CharacterPose:
    kp = np.zeros((coco.COUNT, 2), np.float32)
    vis = np.zeros(coco.COUNT, np.uint8)
    for k, (x, y, v) in points.items():
        kp[k] = (x, y)
        vis[k] = v
    return CharacterPose("t", kp, vis)


def _px(img, x, y):
    return tuple(int(c) for c in img[int(y), int(x)])


def test_pose_visible_joint_has_its_colour_and_absent_stays_black():
    nose, neck, r_sh = coco.INDEX["nose"], coco.INDEX["neck"], coco.INDEX["r_shoulder"]
    pose = _pose({neck: (100.5, 60.5, coco.VISIBLE), r_sh: (60.5, 60.5, coco.VISIBLE)})
    # The nose is absent but has coordinates: it must not be drawn there.
    pose.keypoints_px[nose] = (100.5, 20.5)
    img = draw_pose([pose], W, H)
    assert img.shape == (H, W, 3) and img.dtype == np.uint8
    assert _px(img, 100, 60) == coco.COLORS[neck]
    assert _px(img, 60, 60) == coco.COLORS[r_sh]
    assert _px(img, 100, 20) == (0, 0, 0)
    # Nothing is drawn between the neck and the absent nose (limb 12: 1 -> 0).
    assert _px(img, 100, 40) == (0, 0, 0)


def test_pose_limb_between_visible_joints_is_dimmed_limb_colour():
    neck, r_sh = coco.INDEX["neck"], coco.INDEX["r_shoulder"]
    img = draw_pose([_pose({neck: (140.5, 80.5, 2), r_sh: (40.5, 80.5, 2)})], W, H)
    limb = coco.LIMBS.index((1, 2))
    mid = _px(img, 90, 80)
    assert mid != (0, 0, 0)
    expected = tuple(round(c * 0.6) for c in coco.COLORS[limb])
    assert all(abs(a - b) <= 2 for a, b in zip(mid, expected))
    # Away from the skeleton the image stays black.
    assert _px(img, 90, 120) == (0, 0, 0)


def test_pose_limb_needs_both_ends():
    neck, r_sh = coco.INDEX["neck"], coco.INDEX["r_shoulder"]
    img = draw_pose([_pose({neck: (140.5, 80.5, 2), r_sh: (40.5, 80.5, 1)})], W, H)
    assert _px(img, 90, 80) == (0, 0, 0)
    assert _px(img, 40, 80) == (0, 0, 0)
    img = draw_pose([_pose({neck: (140.5, 80.5, 2), r_sh: (40.5, 80.5, 1)})], W, H,
                    include_occluded=True)
    assert _px(img, 90, 80) != (0, 0, 0)


def test_pose_occluded_joint_only_with_include_occluded():
    k = coco.INDEX["l_knee"]
    pose = _pose({k: (50.5, 100.5, coco.OCCLUDED)})
    assert not draw_pose([pose], W, H).any()
    img = draw_pose([pose], W, H, include_occluded=True)
    assert _px(img, 50, 100) == coco.COLORS[k]


def test_pose_canvas_is_copied_not_modified():
    canvas = np.full((H, W, 3), 40, np.uint8)
    before = canvas.copy()
    neck = coco.INDEX["neck"]
    img = draw_pose([_pose({neck: (30.5, 30.5, 2)})], W, H, canvas=canvas)
    assert np.array_equal(canvas, before)
    assert _px(img, 30, 30) == coco.COLORS[neck]
    assert _px(img, 150, 150) == (40, 40, 40)
    assert img is not canvas


def test_pose_thickness_scales_with_image_size():
    neck = coco.INDEX["neck"]
    small = draw_pose([_pose({neck: (50.0, 50.0, 2)})], 100, 100)
    big = draw_pose([_pose({neck: (500.0, 500.0, 2)})], 1000, 1000)
    assert (big.any(axis=2)).sum() > 4 * (small.any(axis=2)).sum()
    thick = draw_pose([_pose({neck: (50.0, 50.0, 2)})], 100, 100, thickness=10)
    assert (thick.any(axis=2)).sum() > (small.any(axis=2)).sum()


def test_pose_draws_every_pose():
    a = _pose({0: (20.5, 20.5, 2)})
    b = _pose({0: (180.5, 140.5, 2)})
    img = draw_pose([a, b], W, H)
    assert _px(img, 20, 20) == coco.COLORS[0] and _px(img, 180, 140) == coco.COLORS[0]


# ---------------------------------------------------------------------- flow

def _hue(rgb) -> float:
    return colorsys.rgb_to_hsv(*(c / 255.0 for c in rgb))[0]


def _hue_distance(a: float, b: float) -> float:
    d = abs(a - b) % 1.0
    return min(d, 1.0 - d)


def _uniform_flow(dx, dy, h=4, w=4, dtype=np.float32):
    flow = np.zeros((h, w, 2), dtype)
    flow[..., 0], flow[..., 1] = dx, dy
    return flow


def test_flow_directions_have_distinct_hues():
    right = flow_to_color(_uniform_flow(3, 0))[0, 0]
    left = flow_to_color(_uniform_flow(-3, 0))[0, 0]
    up = flow_to_color(_uniform_flow(0, -3))[0, 0]
    down = flow_to_color(_uniform_flow(0, 3))[0, 0]
    hues = [_hue(c) for c in (right, left, up, down)]
    for i in range(4):
        for j in range(i + 1, 4):
            assert _hue_distance(hues[i], hues[j]) > 0.08, (i, j, hues)
    # Middlebury convention: rightward is red, leftward is cyan-blue.
    assert right[0] == 255 and right[1] < 40
    assert left[0] < 40 and left[2] > 200
    assert _hue_distance(hues[0], hues[1]) > 0.35


def test_flow_zero_is_white_and_magnitude_increases_saturation():
    assert np.all(flow_to_color(np.zeros((5, 6, 2), np.float16)) == 255)
    flow = np.zeros((1, 4, 2), np.float32)
    flow[0, :, 0] = [0.0, 1.0, 2.0, 4.0]
    out = flow_to_color(flow)
    sats = [colorsys.rgb_to_hsv(*(c / 255.0 for c in px))[1] for px in out[0]]
    assert out[0, 0].tolist() == [255, 255, 255]
    assert sats[0] < sats[1] < sats[2] < sats[3]
    assert sats[3] > 0.95  # the largest magnitude is fully saturated
    # An explicit max_magnitude keeps small flow pale.
    pale = flow_to_color(flow, max_magnitude=100.0)
    assert colorsys.rgb_to_hsv(*(pale[0, 3] / 255.0))[1] < 0.1


def test_flow_non_finite_is_zero_and_shape_checked():
    flow = _uniform_flow(2, 1, dtype=np.float16)
    flow[0, 0] = (np.nan, np.inf)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = flow_to_color(flow)
    assert out.shape == (4, 4, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[1, 1].tolist() != [255, 255, 255]
    with pytest.raises(ValueError):
        flow_to_color(np.zeros((4, 4, 3)))


def test_flow_hue_is_continuous_around_the_wheel():
    # Sampled all the way round, including the step from just below
    # rightward back to exactly rightward (where the reference code has a seam).
    angles = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    flow = np.stack([np.cos(angles), np.sin(angles)], -1)[None].astype(np.float32)
    out = flow_to_color(flow).astype(int)[0]
    assert np.abs(out - np.roll(out, 1, axis=0)).max() <= 20


# -------------------------------------------------------------------- guides

@pytest.fixture(scope="module")
def shot():
    return sample_shot(frames=3, width=128, height=72)


def test_guides_frame_shape_and_layers(shot):
    frame = shot.frames[1]
    out = guides_frame(frame, shot.width, shot.height)
    assert out.shape == (72, 128, 3) and out.dtype == np.uint8
    base = depth_to_control(frame.depth_m)
    iw, ih = 128 // 4, 72 // 4
    inset = out[72 - ih:, 128 - iw:]
    # The inset replaces the base in the corner, framed by a white border.
    assert not np.array_equal(inset, base[72 - ih:, 128 - iw:])
    assert np.all(inset[0] == 255) and np.all(inset[:, 0] == 255)
    assert np.all(inset[-1] == 255) and np.all(inset[:, -1] == 255)
    inner = inset[1:-1, 1:-1].astype(int)
    # The flow image is coloured (not greyscale like the depth base).
    assert (inner.max(axis=2) - inner.min(axis=2)).max() > 40
    # Outside the inset and the skeleton, the base is the depth control image.
    rest = np.ones((72, 128), bool)
    rest[72 - ih:, 128 - iw:] = False
    skeleton = np.any(out != base, axis=2) & rest
    assert skeleton.any()  # the pose is drawn over the depth
    assert skeleton.sum() < 0.25 * rest.sum()
    grey = out[rest & ~skeleton]
    assert np.array_equal(grey[:, 0], grey[:, 1])


def test_guides_frame_draws_skeleton_colours(shot):
    frame = shot.frames[1]
    out = guides_frame(frame, shot.width, shot.height)
    pose = frame.poses[0]
    k = coco.INDEX["neck"]
    assert pose.visibility[k] == coco.VISIBLE
    x, y = pose.keypoints_px[k]
    assert _px(out, x, y) == coco.COLORS[k]


def test_guides_frame_without_depth_or_motion_is_grey(shot):
    from dataclasses import replace
    frame = replace(shot.frames[0], depth_m=None, motion_px=None, poses=())
    out = guides_frame(frame, shot.width, shot.height)
    assert out.shape == (72, 128, 3)
    assert np.all(out == 128)
