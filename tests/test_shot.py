"""bridge.shot: validation names the bad field, conversions are lossless,
camera maths matches analytic truth, and the package stays engine-free."""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from bridge.errors import InvalidArgumentError, LimitExceededError, ShotValidationError
from bridge.shot import CameraSample, Fps, Frame, Shot, ShotLimits, Tags, validate_shot
from bridge.shot.camera import focal_length_px, look_at, project, static_forward_flow, unproject_depth
from bridge.shot.files import load_shot, save_shot
from bridge.shot.wire import shot_from_pb, shot_to_pb


def _replace_frame(shot, i, **changes):
    frames = list(shot.frames)
    frames[i] = dataclasses.replace(frames[i], **changes)
    return dataclasses.replace(shot, frames=tuple(frames))


def test_sample_shot_is_valid_and_has_all_passes(small_shot):
    validate_shot(small_shot)
    assert small_shot.passes == ("depth", "motion", "pose")
    assert small_shot.frame_count == 6
    assert small_shot.duration_s == pytest.approx(6 / 24)


@pytest.mark.parametrize("change, field", [
    (lambda s: s.with_tags(project=""), "tags.project"),
    (lambda s: s.with_tags(shot="has space"), "tags.shot"),
    (lambda s: s.with_tags(version=0), "tags.version"),
    (lambda s: dataclasses.replace(s, fps=Fps(0, 1)), "fps"),
    (lambda s: dataclasses.replace(s, frames=()), "frames"),
    (lambda s: _replace_frame(s, 2, index=7), "frames[2].index"),
    (lambda s: _replace_frame(s, 1, depth_m=np.zeros((10, 10), np.float32)), "frames[1].depth_m"),
    (lambda s: _replace_frame(s, 1, depth_m=s.frames[1].depth_m.astype(np.float64)), "frames[1].depth_m"),
    (lambda s: _replace_frame(s, 3, motion_px=np.zeros((36, 64, 3), np.float16)), "frames[3].motion_px"),
    (lambda s: _replace_frame(s, 0, camera=dataclasses.replace(s.frames[0].camera, focal_length_mm=0.0)),
     "frames[0].camera.focal_length_mm"),
    (lambda s: _replace_frame(s, 0, camera=dataclasses.replace(s.frames[0].camera, clip_end_m=0.01)),
     "frames[0].camera.clip_end_m"),
    (lambda s: _replace_frame(s, 0, camera=dataclasses.replace(s.frames[0].camera, world_matrix=np.zeros((4, 4)))),
     "frames[0].camera.world_matrix"),
])
def test_validation_names_the_field(small_shot, change, field):
    with pytest.raises(ShotValidationError) as err:
        validate_shot(change(small_shot))
    assert err.value.field == field
    assert str(err.value).startswith(field + ":")


def test_nan_and_negative_depth_are_refused_with_counts(small_shot):
    depth = small_shot.frames[2].depth_m.copy()
    depth[0, :5] = np.nan
    with pytest.raises(ShotValidationError, match=r"frames\[2\].depth_m: 5 NaN"):
        validate_shot(_replace_frame(small_shot, 2, depth_m=depth))
    depth = small_shot.frames[2].depth_m.copy()
    depth[3, 3] = -1.5
    with pytest.raises(ShotValidationError, match=r"1 negative values \(min -1.5\)"):
        validate_shot(_replace_frame(small_shot, 2, depth_m=depth))


def test_inf_depth_refused_when_background_declared_zero(small_shot):
    depth = small_shot.frames[0].depth_m.copy()
    depth[0, 0] = np.inf
    shot = dataclasses.replace(_replace_frame(small_shot, 0, depth_m=depth), depth_background="zero")
    with pytest.raises(ShotValidationError, match="depth_background='zero'"):
        validate_shot(shot)


def test_pose_shape_and_visibility_checked(small_shot):
    pose = small_shot.frames[0].poses[0]
    bad = dataclasses.replace(pose, keypoints_px=pose.keypoints_px[:17])
    with pytest.raises(ShotValidationError, match=r"frames\[0\].poses\[0\].keypoints_px"):
        validate_shot(_replace_frame(small_shot, 0, poses=(bad,)))
    vis = pose.visibility.copy()
    vis[3] = 7
    with pytest.raises(ShotValidationError, match="visibility"):
        validate_shot(_replace_frame(small_shot, 0, poses=(dataclasses.replace(pose, visibility=vis),)))
    with pytest.raises(ShotValidationError, match="duplicate character"):
        validate_shot(_replace_frame(small_shot, 0, poses=(pose, pose)))


def test_limits_raise_resource_errors(small_shot):
    with pytest.raises(LimitExceededError, match="max_frames: 6 exceeds the bridge's limit of 5"):
        validate_shot(small_shot, ShotLimits(max_frames=5))
    with pytest.raises(LimitExceededError, match="max_width: 64"):
        validate_shot(small_shot, ShotLimits(max_width=32))


def test_wire_round_trip_is_bit_exact(small_shot):
    depth = small_shot.frames[1].depth_m.copy()
    depth[0, 0] = np.inf
    depth[1, 1] = np.float32(1.0000001)
    shot = _replace_frame(small_shot, 1, depth_m=depth, mask=np.arange(64 * 36, dtype=np.uint8).reshape(36, 64))
    data = shot_to_pb(shot).SerializeToString()
    from bridge.proto.greenlight.v1 import shot_pb2

    msg = shot_pb2.Shot()
    msg.ParseFromString(data)
    back = shot_from_pb(msg)
    assert back == shot
    assert back.frames[1].depth_m.tobytes() == depth.tobytes()
    assert back.frames[1].motion_px.dtype == np.float16
    assert back.frames[0].normals is None
    assert back.frames[1].mask is not None and back.frames[0].mask is None
    # and a change is noticed by the equality used above
    assert _replace_frame(back, 4, depth_m=back.frames[4].depth_m + 1) != shot


def test_wire_rejects_array_with_wrong_byte_count(small_shot):
    msg = shot_to_pb(small_shot)
    msg.frames[2].depth_m.data = msg.frames[2].depth_m.data[:-4]
    with pytest.raises(ShotValidationError, match=r"frames\[2\].depth_m: holds \d+ bytes but dtype float32"):
        shot_from_pb(msg)


def test_file_round_trip_and_errors(small_shot, tmp_path):
    path = save_shot(small_shot, tmp_path / "a.glshot")
    assert load_shot(path) == small_shot
    (tmp_path / "junk.glshot").write_bytes(b"not a zip")
    with pytest.raises(InvalidArgumentError, match="not a Greenlight shot file"):
        load_shot(tmp_path / "junk.glshot")


def test_fps_parse_keeps_ntsc_exact():
    assert Fps.parse("23.976") == Fps(24000, 1001)
    assert Fps.parse("30000/1001").value == pytest.approx(29.97002997)
    assert Fps.parse("25") == Fps(25, 1)


def test_projection_matches_pinhole_and_sensor_fit():
    cam = CameraSample(world_matrix=look_at((0, -10, 0), (0, 0, 0)), focal_length_mm=50, sensor_width_mm=36,
                       sensor_height_mm=24)
    assert focal_length_px(cam, 1920, 1080) == pytest.approx(50 / 36 * 1920)
    # portrait with AUTO: the sensor width spans the larger (vertical) side
    assert focal_length_px(cam, 1080, 1920) == pytest.approx(50 / 36 * 1920)
    vertical = dataclasses.replace(cam, sensor_fit="VERTICAL")
    assert focal_length_px(vertical, 1920, 1080) == pytest.approx(50 / 24 * 1080)
    # a point 1 m right and 0.5 m up at 10 m lands f*x/z right and f*y/z up of the centre
    px, depth = project(cam, 1920, 1080, np.array([[1.0, 0.0, 0.5]]))
    f = 50 / 36 * 1920
    assert depth[0] == pytest.approx(10.0)
    assert px[0, 0] == pytest.approx(960 + f * 0.1)
    assert px[0, 1] == pytest.approx(540 - f * 0.05)


def test_unproject_inverts_project():
    cam = CameraSample(world_matrix=look_at((1, -4, 2), (0, 0, 1)), focal_length_mm=35)
    depth = np.full((9, 16), 5.0)
    pts = unproject_depth(cam, depth).reshape(-1, 3)
    px, d = project(cam, 16, 9, pts)
    xs, ys = np.meshgrid(np.arange(16) + 0.5, np.arange(9) + 0.5)
    assert np.allclose(d, 5.0)
    assert np.allclose(px[:, 0], xs.ravel()) and np.allclose(px[:, 1], ys.ravel())


def test_static_flow_of_a_truck_past_a_plane_is_f_dx_over_depth():
    # camera at y=-7.37 looking +y at a wall; it moves +0.213 m in x
    cam0 = CameraSample(world_matrix=look_at((0, -7.37, 0), (0, 0, 0)), focal_length_mm=35)
    cam1 = dataclasses.replace(cam0, world_matrix=look_at((0.213, -7.37, 0), (0.213, 0, 0)))
    depth = np.full((36, 64), 7.37)
    flow = static_forward_flow(cam0, cam1, depth)
    f = focal_length_px(cam0, 64, 36)
    # the scene moves left in the image as the camera moves right
    assert np.allclose(flow[..., 0], -f * 0.213 / 7.37, atol=1e-6)
    assert np.allclose(flow[..., 1], 0.0, atol=1e-6)


def test_shot_package_imports_without_engine_or_heavy_modules():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'bpy', 'grpc', 'unreal', 'diffusers'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import bridge.shot, bridge.shot.wire, bridge.shot.files, bridge.shot.synthetic\n"
        "s = bridge.shot.synthetic.sample_shot(frames=2, width=32, height=18)\n"
        "bridge.shot.validate_shot(s)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_frames_must_be_in_order_even_when_shapes_are_fine():
    cam = CameraSample(world_matrix=np.eye(4), focal_length_mm=35)
    shot = Shot(Tags("p", "s", 1), Fps(24), 4, 2, frames=(Frame(1, cam), Frame(0, cam)))
    with pytest.raises(ShotValidationError, match=r"frames\[0\].index: expected 0"):
        validate_shot(shot)
