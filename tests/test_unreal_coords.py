"""The one Unreal <-> canonical conversion (bridge.shot.coords), engine-free."""

import math

import numpy as np
import pytest

from bridge.errors import InvalidArgumentError
from bridge.shot import coords
from bridge.shot.camera import focal_length_px, look_at, project
from bridge.shot.coords import Rotator, UnrealTransform

RNG = np.random.default_rng(8)


def _forward(m):
    return -m[:3, 2]


def _up(m):
    return m[:3, 1]


def test_positions_mirror_y_and_scale_to_metres():
    assert np.allclose(coords.position_to_canonical([100.0, 250.0, -30.0]), [1.0, -2.5, -0.3])
    assert np.allclose(coords.position_to_unreal([1.0, -2.5, -0.3]), [100.0, 250.0, -30.0])
    pts = RNG.normal(size=(50, 3)) * 1000
    assert np.allclose(coords.position_to_unreal(coords.position_to_canonical(pts)), pts, atol=1e-9)
    with pytest.raises(InvalidArgumentError, match="3 components"):
        coords.position_to_canonical([1.0, 2.0])


def test_rotator_matrix_matches_unreal_axes():
    # yaw 90: Unreal X (forward) turns onto +Y
    m = coords.rotator_to_matrix(Rotator(yaw=90))
    assert np.allclose(m[:, 0], [0, 1, 0], atol=1e-12)
    # pitch +30: nose up
    m = coords.rotator_to_matrix(Rotator(pitch=30))
    assert np.allclose(m[:, 0], [math.cos(math.radians(30)), 0, math.sin(math.radians(30))])
    assert np.isclose(np.linalg.det(coords.rotator_to_matrix(Rotator(10, 20, 30))), 1.0)


def test_known_camera_poses():
    # Unreal default camera (rotation 0) looks along Unreal +X = canonical +X, up +Z
    m = coords.camera_to_canonical([0, 0, 0], Rotator())
    assert np.allclose(_forward(m), [1, 0, 0]) and np.allclose(_up(m), [0, 0, 1])
    # yaw 90 looks along Unreal +Y, which is canonical -Y
    m = coords.camera_to_canonical([0, 0, 0], Rotator(yaw=90))
    assert np.allclose(_forward(m), [0, -1, 0], atol=1e-12)
    assert np.allclose(_up(m), [0, 0, 1], atol=1e-12)
    # pitch -90 looks straight down; its up vector is the old forward (+X)
    m = coords.camera_to_canonical([0, 0, 0], Rotator(pitch=-90))
    assert np.allclose(_forward(m), [0, 0, -1], atol=1e-12)
    assert np.allclose(_up(m), [1, 0, 0], atol=1e-12)
    # roll 90 about the view axis: camera up becomes Unreal +Y (canonical -Y),
    # camera right becomes Unreal -Z (canonical -Z)
    m = coords.camera_to_canonical([0, 0, 0], Rotator(roll=90))
    assert np.allclose(_forward(m), [1, 0, 0], atol=1e-12)
    assert np.allclose(_up(m), [0, -1, 0], atol=1e-12)
    assert np.allclose(m[:3, 0], [0, 0, -1], atol=1e-12)
    # location in cm -> metres with Y mirrored
    m = coords.camera_to_canonical([120, 340, 150], Rotator())
    assert np.allclose(m[:3, 3], [1.2, -3.4, 1.5])
    # every result is a right-handed rigid transform
    for _ in range(20):
        m = coords.camera_to_canonical(RNG.normal(size=3) * 500, Rotator(*RNG.uniform(-180, 180, 3)))
        assert np.allclose(m[:3, :3].T @ m[:3, :3], np.eye(3)) and np.isclose(np.linalg.det(m[:3, :3]), 1.0)


def test_camera_agrees_with_look_at():
    # An Unreal camera at (0, 0, 0) turned yaw -90 looks along Unreal -Y = canonical +Y
    m = coords.camera_to_canonical([0, 0, 0], Rotator(yaw=-90))
    assert np.allclose(m, look_at([0, 0, 0], [0, 1, 0]), atol=1e-12)


def test_camera_round_trips():
    for _ in range(200):
        loc = RNG.normal(size=3) * 1000
        rot = Rotator(RNG.uniform(-89, 89), RNG.uniform(-179, 179), RNG.uniform(-179, 179))
        m = coords.camera_to_canonical(loc, rot)
        loc2, rot2 = coords.camera_to_unreal(m)
        assert np.allclose(loc2, loc, atol=1e-9)
        assert np.allclose([rot2.pitch, rot2.yaw, rot2.roll], [rot.pitch, rot.yaw, rot.roll], atol=1e-9)
        assert np.allclose(coords.camera_to_canonical(loc2, rot2), m, atol=1e-9)


def test_camera_refuses_scaled_matrices():
    m = coords.camera_to_canonical([0, 0, 0], Rotator(yaw=30))
    m[:3, :3] *= 2.0
    with pytest.raises(InvalidArgumentError, match="proper rotation"):
        coords.camera_to_unreal(m)


def test_object_transform_round_trips_with_scale():
    for _ in range(200):
        t = UnrealTransform(tuple(RNG.normal(size=3) * 500),
                            Rotator(RNG.uniform(-89, 89), RNG.uniform(-179, 179), RNG.uniform(-179, 179)),
                            tuple(RNG.uniform(0.2, 3.0, 3)))
        m = coords.transform_to_canonical(t)
        t2 = coords.transform_to_unreal(m)
        assert np.allclose(t2.location_cm, t.location_cm, atol=1e-9)
        assert np.allclose(t2.scale, t.scale, atol=1e-9)
        assert np.allclose(coords.transform_to_canonical(t2), m, atol=1e-9)
        # the defining property: converting after transforming == transforming after converting
        p_local = RNG.normal(size=3) * 50
        ue_world = coords.rotator_to_matrix(t.rotation) @ (np.array(t.scale) * p_local) + np.array(t.location_cm)
        assert np.allclose(coords.position_to_canonical(ue_world),
                           (m @ np.r_[coords.position_to_canonical(p_local), 1.0])[:3], atol=1e-9)


def test_object_transform_mirror_and_bad_scale():
    t = UnrealTransform((1, 2, 3), Rotator(10, 20, 30), (-2.0, 1.0, 1.0))
    t2 = coords.transform_to_unreal(coords.transform_to_canonical(t))
    assert np.allclose(t2.scale, (-2.0, 1.0, 1.0))
    with pytest.raises(InvalidArgumentError, match="non-zero"):
        coords.transform_to_canonical(UnrealTransform(scale=(1.0, 0.0, 1.0)))
    shear = np.eye(4)
    shear[0, 1] = 0.5
    with pytest.raises(InvalidArgumentError, match="shear"):
        coords.transform_to_unreal(shear)


def test_projection_matches_hand_computed_pinhole():
    # Unreal camera at (0, 0, 150) cm looking along +X (rotation 0), 35 mm on a 36 x 24 filmback.
    m = coords.camera_to_canonical([0.0, 0.0, 150.0], Rotator())
    cam = coords.cine_camera_sample(m, 35.0, 36.0, 24.0, focus_distance_cm=500.0)
    assert cam.sensor_fit == "HORIZONTAL" and cam.focus_distance_m == 5.0 and cam.clip_start_m == 0.1
    width, height = 1920, 1080
    f_px = 35.0 / 36.0 * 1920
    assert np.isclose(focal_length_px(cam, width, height), f_px)
    # A point 500 cm ahead, 50 cm to the right (Unreal +Y), 30 cm up.
    # Pinhole by hand in Unreal terms: depth = 500, x = cx + f*right/depth, y = cy - f*up/depth.
    point_ue = np.array([500.0, 50.0, 180.0])
    px, depth = project(cam, width, height, coords.position_to_canonical(point_ue)[None])
    assert np.isclose(depth[0], 5.0)
    assert np.allclose(px[0], [960 + f_px * 50 / 500, 540 - f_px * 30 / 500])
    # field of view matches Unreal's CineCamera formula
    assert np.isclose(coords.horizontal_fov_deg(35.0, 36.0), math.degrees(2 * math.atan(18 / 35)))
    assert coords.filmback_aspect_mismatch(36.0, 24.0, 1920, 1080) > 0.1
    assert coords.filmback_aspect_mismatch(36.0, 20.25, 1920, 1080) < 1e-9


def test_lens_values_are_checked():
    m = np.eye(4)
    with pytest.raises(InvalidArgumentError, match="focal_length_mm"):
        coords.cine_camera_sample(m, 0.0, 36.0, 24.0)
    with pytest.raises(InvalidArgumentError, match="aspect_axis"):
        coords.cine_camera_sample(m, 35.0, 36.0, 24.0, aspect_axis="z")
    assert coords.cine_camera_sample(m, 35.0, 36.0, 24.0, aspect_axis="y").sensor_fit == "VERTICAL"
