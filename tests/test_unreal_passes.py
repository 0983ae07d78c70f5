"""Movie Render Queue EXR pass decoding (engine-free): EXRs written here in
MRQ's channel layout with the OpenEXR package, decoded by the plugin."""

import numpy as np
import pytest

from tests.fakes import unreal_scene

unreal_scene.install()
from bridge.shot.camera import static_forward_flow  # noqa: E402
from bridge.shot.coords import Rotator, camera_to_canonical, cine_camera_sample  # noqa: E402
from greenlight_unreal import mrq_exr  # noqa: E402
from greenlight_unreal.mrq_exr import MotionEncoding, PassDecodeError  # noqa: E402

W, H = 48, 27


def test_depth_cm_to_metres_with_background(tmp_path):
    depth_cm = np.full((H, W), 737.0, np.float32)
    depth_cm[0, :5] = 6.5e7           # sky dome far away
    depth_cm[1, 0] = np.inf
    depth_cm[1, 1] = 0.0
    path = tmp_path / "SEQ.0001.exr"
    unreal_scene.write_mrq_exr(path, depth_cm, (np.full((H, W), 0.5), np.full((H, W), 0.5)))
    channels = mrq_exr.read_channels(path)
    assert "FinalImageMovieRenderQueue_WorldDepth.R" in channels and "R" in channels
    depth = mrq_exr.decode_depth(channels)
    assert depth.dtype == np.float32 and depth.shape == (H, W)
    assert np.allclose(depth[5:], 7.37)
    assert np.isinf(depth[0, :5]).all() and np.isinf(depth[1, :2]).all()
    assert np.isfinite(depth[0, 5:]).all()
    # a lower background threshold turns the wall into background too
    assert np.isinf(mrq_exr.decode_depth(channels, mrq_exr.DepthDecoding(background_cm=500.0))).all()


def test_motion_decoding_follows_the_documented_encoding(tmp_path):
    # R = 0.5 + dx/W (screen-normalised), G = 0.5 - dy/H (y up): 0.5 is no motion
    r = np.full((H, W), 0.5 + 3.0 / W)
    g = np.full((H, W), 0.5 - 2.0 / H)
    path = tmp_path / "SEQ.0001.exr"
    unreal_scene.write_mrq_exr(path, np.full((H, W), 100.0), (r, g))
    v = mrq_exr.decode_velocity(mrq_exr.read_channels(path))
    assert np.allclose(v[..., 0], 3.0, atol=1e-4) and np.allclose(v[..., 1], 2.0, atol=1e-4)
    # configurable: y down and a 2x scale
    enc = MotionEncoding(scale_x=2.0, scale_y=2.0, y_up=False)
    v2 = mrq_exr.decode_velocity(mrq_exr.read_channels(path), enc)
    assert np.allclose(v2[..., 0], 6.0, atol=1e-4) and np.allclose(v2[..., 1], -4.0, atol=1e-4)
    with pytest.raises(ValueError, match="direction"):
        MotionEncoding(direction="sideways")


def test_backward_velocities_become_forward_flow_matching_camera_maths(tmp_path):
    # A camera trucking right past a tilted plane: true flows from bridge.shot.camera.
    cams = [cine_camera_sample(camera_to_canonical([0.0, 6.0 * i, 150.0], Rotator(yaw=4.0 * i)), 30.0, 36.0, 20.25)
            for i in range(4)]
    yy, xx = np.mgrid[0:H, 0:W]
    depths = [(6.0 + 0.04 * xx + 0.02 * yy + 0.1 * i).astype(np.float32) for i in range(4)]
    # Unreal's backward velocity at frame t: where each pixel was at t-1, i.e. minus the flow t -> t-1.
    backward = [-static_forward_flow(cams[t], cams[t - 1], depths[t]) if t else
                static_forward_flow(cams[0], cams[1], depths[0]) for t in range(4)]
    enc = MotionEncoding()
    for t in range(4):
        unreal_scene.write_mrq_exr(mrq_exr.pass_file(tmp_path, "SEQ", 100 + t), depths[t] * 100.0,
                                   mrq_exr.encode_velocity(backward[t], enc))
    got_depths, flows = mrq_exr.load_passes(tmp_path, "SEQ", [100, 101, 102, 103], motion=enc)
    assert np.allclose(got_depths[2], depths[2], atol=1e-5)
    for t in range(3):
        truth = static_forward_flow(cams[t], cams[t + 1], depths[t])
        inner = (slice(3, -3), slice(3, -3))     # pixels whose successor stays on screen
        err = np.abs(flows[t].astype(np.float64) - truth)[inner]
        assert flows[t].dtype == np.float16 and err.max() < 0.1, (t, err.max())
        assert np.abs(truth).max() > 2.0      # the test moves pixels by more than a rounding error


def test_fit_motion_encoding_recovers_scale_and_y_axis(tmp_path):
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(H, W, 2)) * 3
    enc = MotionEncoding(scale_x=0.5, scale_y=0.5, y_up=False)
    path = tmp_path / "f.exr"
    unreal_scene.write_mrq_exr(path, np.full((H, W), 100.0), mrq_exr.encode_velocity(truth, enc))
    fitted = mrq_exr.fit_motion_encoding(mrq_exr.read_channels(path), truth)
    assert np.isclose(fitted.scale_x, 0.5, rtol=1e-4) and np.isclose(fitted.scale_y, 0.5, rtol=1e-4)
    assert fitted.y_up is False


def test_single_pass_files_and_errors(tmp_path):
    import OpenEXR

    path = tmp_path / "SEQ.MovieRenderQueue_WorldDepth.0001.exr"
    plane = np.full((H, W), 250.0, np.float32)
    with OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage},
                      {"R": plane, "G": plane, "B": plane}) as f:
        f.write(str(path))
    assert np.allclose(mrq_exr.decode_depth(mrq_exr.read_channels(path)), 2.5)
    multi = tmp_path / "m.exr"
    unreal_scene.write_mrq_exr(multi, plane, (plane * 0 + 0.5, plane * 0 + 0.5))
    with pytest.raises(PassDecodeError, match="no 'MovieRenderQueue_Normals' layer"):
        mrq_exr.layer(mrq_exr.read_channels(multi), "MovieRenderQueue_Normals")
    with pytest.raises(PassDecodeError, match="no such EXR"):
        mrq_exr.read_channels(tmp_path / "missing.exr")
    (tmp_path / "bad.exr").write_bytes(b"not an exr")
    with pytest.raises(PassDecodeError, match="not a readable EXR"):
        mrq_exr.read_channels(tmp_path / "bad.exr")
