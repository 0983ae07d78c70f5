"""USD camera export/import (usd-core), checked three ways: our own round
trip (float64 exact to 1e-9), the stage read with plain pxr (units and
metadata other tools see), and real Blender's USD importer in a subprocess
(an independent reader)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from pxr import Gf, Usd, UsdGeom  # noqa: E402

from bridge.errors import InvalidArgumentError
from bridge.shot import validate_shot
from bridge.shot.camera import focal_length_px, look_at
from bridge.shot.model import CameraSample, Fps, Frame, Shot, Tags
from bridge.shot.usd_io import export_camera_usd, import_camera_usd, shot_from_usd  # noqa: E402

CAMERA_FIELDS = ("focal_length_mm", "sensor_width_mm", "sensor_height_mm", "clip_start_m", "clip_end_m",
                 "focus_distance_m")


def _crane_shot(n=7, fit="AUTO", width=512, height=288, fps=Fps(24000, 1001), frame_start=1001) -> Shot:
    """A crane-up with a zoom, a roll and changing clip/focus: nothing constant."""
    frames = []
    for i in range(n):
        m = look_at((3.0 + 0.37 * i, -6.1 + 0.113 * i, 1.7 + 0.45 * i), (0.2, 0.1, 1.2 - 0.05 * i))
        roll = np.deg2rad(3.0 * i)
        r = np.eye(4)
        r[:2, :2] = [[np.cos(roll), -np.sin(roll)], [np.sin(roll), np.cos(roll)]]
        cam = CameraSample(m @ r, focal_length_mm=24.0 + 3.7 * i, sensor_width_mm=36.0, sensor_height_mm=24.0,
                           sensor_fit=fit, clip_start_m=0.1 + 0.013 * i, clip_end_m=250.0 + 1.5 * i,
                           focus_distance_m=4.2 + 0.11 * i)
        frames.append(Frame(index=i, camera=cam))
    return Shot(tags=Tags("spaceship", "sh-010.crane", 3), fps=fps, width=width, height=height,
                frames=tuple(frames), frame_start=frame_start, source="synthetic")


def _assert_cameras_close(got: list[CameraSample], shot: Shot, tol: float) -> None:
    assert len(got) == shot.frame_count
    for sample, frame in zip(got, shot.frames):
        want = frame.camera
        np.testing.assert_allclose(sample.world_matrix, want.world_matrix, rtol=0, atol=tol)
        for name in CAMERA_FIELDS:
            assert getattr(sample, name) == pytest.approx(getattr(want, name), abs=tol, rel=0), name
        assert sample.sensor_fit == want.sensor_fit


@pytest.mark.parametrize("fit,width,height", [("AUTO", 512, 288), ("AUTO", 288, 512), ("VERTICAL", 640, 360),
                                              ("HORIZONTAL", 300, 400)])
def test_round_trip_is_exact(tmp_path, fit, width, height):
    shot = _crane_shot(fit=fit, width=width, height=height)
    for suffix in (".usda", ".usdc"):
        path = export_camera_usd(shot, tmp_path / f"cam{suffix}")
        samples, fps, frame_start = import_camera_usd(path)
        _assert_cameras_close(samples, shot, 1e-9)
        assert (fps, frame_start) == (Fps(24000, 1001), 1001)


def test_shot_from_usd_is_a_camera_only_shot(tmp_path):
    shot = _crane_shot()
    back = validate_shot(shot_from_usd(export_camera_usd(shot, tmp_path / "cam.usda")))
    assert (back.tags, back.fps, back.width, back.height, back.frame_start, back.source) == (
        shot.tags, shot.fps, shot.width, shot.height, shot.frame_start, shot.source)
    assert back.passes == () and all(f.depth_m is None and f.motion_px is None and not f.poses for f in back.frames)
    _assert_cameras_close([f.camera for f in back.frames], shot, 1e-9)
    # tags given by the caller win over the recorded ones
    assert shot_from_usd(tmp_path / "cam.usda", tags=Tags("p", "s", 9)).tags == Tags("p", "s", 9)


def test_stage_units_and_timing_as_other_tools_read_them(tmp_path):
    shot = _crane_shot(fit="VERTICAL", width=640, height=360)
    stage = Usd.Stage.Open(str(export_camera_usd(shot, tmp_path / "cam.usda")))
    assert UsdGeom.GetStageUpAxis(stage) == UsdGeom.Tokens.z
    assert UsdGeom.GetStageMetersPerUnit(stage) == 0.01
    assert stage.GetTimeCodesPerSecond() == stage.GetFramesPerSecond() == 24000 / 1001
    assert (stage.GetStartTimeCode(), stage.GetEndTimeCode()) == (1001, 1007)
    meta = stage.GetRootLayer().customLayerData["greenlight"]
    assert (meta["fpsNumerator"], meta["fpsDenominator"]) == (24000, 1001)
    cams = [p for p in stage.Traverse() if p.IsA(UsdGeom.Camera)]
    assert len(cams) == 1 and stage.GetDefaultPrim().GetPath() == cams[0].GetParent().GetPath()
    cam = UsdGeom.Camera(cams[0])
    for frame in shot.frames:
        t = Usd.TimeCode(1001 + frame.index)
        c = frame.camera
        # tenths of a centimetre are millimetres: schema values are the mm figures (float32)
        assert cam.GetFocalLengthAttr().Get(t) == pytest.approx(c.focal_length_mm, rel=1e-6)
        # VERTICAL fit: the sensor height spans the image height; width follows the 16:9 aspect
        assert cam.GetVerticalApertureAttr().Get(t) == pytest.approx(24.0, rel=1e-6)
        assert cam.GetHorizontalApertureAttr().Get(t) == pytest.approx(24.0 * 640 / 360, rel=1e-6)
        near, far = cam.GetClippingRangeAttr().Get(t)
        assert near == pytest.approx(c.clip_start_m * 100, rel=1e-6)
        assert far == pytest.approx(c.clip_end_m * 100, rel=1e-6)
        assert cam.GetFocusDistanceAttr().Get(t) == pytest.approx(c.focus_distance_m * 100, rel=1e-6)
        m = np.array(cam.ComputeLocalToWorldTransform(t)).reshape(4, 4)  # row vectors: translation in row 3
        np.testing.assert_allclose(m[3, :3], c.world_matrix[:3, 3] * 100, atol=1e-9)
        np.testing.assert_allclose(m[:3, :3].T, c.world_matrix[:3, :3], atol=1e-12)
        # GfCamera's field of view equals the one our pinhole maths renders with
        gf = cam.GetCamera(t)
        fov_h = gf.GetFieldOfView(Gf.Camera.FOVHorizontal)
        f_px = focal_length_px(c, 640, 360)
        assert fov_h == pytest.approx(np.rad2deg(2 * np.arctan(640 / 2 / f_px)), rel=1e-5)


def _foreign_stage(path, up="Y", mpu=1.0, projection="perspective", offset=0.0, cameras=1):
    """A stage as another DCC might write it: metres, Y-up, camera under a moved parent."""
    stage = Usd.Stage.CreateNew(str(path))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y if up == "Y" else UsdGeom.Tokens.z)
    UsdGeom.SetStageMetersPerUnit(stage, mpu)
    stage.SetTimeCodesPerSecond(25)
    stage.SetFramesPerSecond(25)
    rig = UsdGeom.Xform.Define(stage, "/rig")
    rig.AddTranslateOp().Set(Gf.Vec3d(0.5, 0.0, 0.0))
    for k in range(cameras):
        cam = UsdGeom.Camera.Define(stage, f"/rig/cam{k}")
        op = cam.AddTranslateOp()
        for t in (10, 11, 12):
            op.Set(Gf.Vec3d(1.0, 2.0, 3.0 + 0.5 * (t - 10)), t)
        cam.CreateFocalLengthAttr(0.5)       # tenths of a metre: 50 mm
        cam.CreateHorizontalApertureAttr(0.36)
        cam.CreateVerticalApertureAttr(0.24)
        cam.CreateClippingRangeAttr(Gf.Vec2f(0.2, 300.0))
        cam.CreateProjectionAttr(projection)
        cam.CreateHorizontalApertureOffsetAttr(offset)
    stage.GetRootLayer().Save()
    return path


def test_foreign_y_up_metre_stage(tmp_path):
    path = _foreign_stage(tmp_path / "foreign.usda")
    samples, fps, frame_start = import_camera_usd(path, resolution=(600, 400))
    assert (fps, frame_start, len(samples)) == (Fps(25), 10, 3)
    for i, s in enumerate(samples):
        # Y-up (1.5, 2, 3 + 0.5 i) is Z-up (1.5, -(3 + 0.5 i), 2)
        np.testing.assert_allclose(s.position_m, (1.5, -(3.0 + 0.5 * i), 2.0), atol=1e-12)
        # a Y-up camera with identity rotation looks down -Z_yup = +Y in Z-up, with +Z up
        np.testing.assert_allclose(s.world_matrix[:3, 2], (0, -1, 0), atol=1e-12)
        np.testing.assert_allclose(s.world_matrix[:3, 1], (0, 0, 1), atol=1e-12)
        assert s.focal_length_mm == pytest.approx(50.0, rel=1e-6)
        assert (s.sensor_width_mm, s.sensor_height_mm) == (pytest.approx(36.0, rel=1e-6), pytest.approx(24.0, rel=1e-6))
        assert s.sensor_fit == "HORIZONTAL"  # 3:2 aperture on a 3:2 image
        assert (s.clip_start_m, s.clip_end_m) == (pytest.approx(0.2, rel=1e-6), pytest.approx(300.0, rel=1e-6))
    # a wider image than the aperture: the vertical aperture spans the height (expandAperture)
    wide, _, _ = import_camera_usd(path, resolution=(1920, 800))
    assert wide[0].sensor_fit == "VERTICAL"
    assert focal_length_px(wide[0], 1920, 800) == pytest.approx(50.0 / 24.0 * 800, rel=1e-6)
    # a foreign file has no recorded resolution: shot_from_usd asks for one
    with pytest.raises(InvalidArgumentError, match="--resolution"):
        shot_from_usd(path)
    shot = validate_shot(shot_from_usd(path, resolution=(600, 400)))
    assert (shot.tags.project, shot.tags.shot, shot.frame_count) == ("usd", "foreign", 3)


def test_metre_z_up_stage_scales_focal_length(tmp_path):
    samples, _, _ = import_camera_usd(_foreign_stage(tmp_path / "m.usda", up="Z", mpu=1.0), resolution=(600, 400))
    np.testing.assert_allclose(samples[0].position_m, (1.5, 2.0, 3.0), atol=1e-12)
    assert samples[0].focal_length_mm == pytest.approx(50.0, rel=1e-6)
    mm, _, _ = import_camera_usd(_foreign_stage(tmp_path / "mm.usda", up="Z", mpu=0.001), resolution=(600, 400))
    np.testing.assert_allclose(mm[0].position_m, (0.0015, 0.002, 0.003), atol=1e-15)
    assert mm[0].focal_length_mm == pytest.approx(0.05, rel=1e-6)  # 0.5 tenths of a millimetre


@pytest.mark.parametrize("kwargs,message", [
    (dict(projection="orthographic"), "orthographic"),
    (dict(offset=0.01), "lens shift"),
    (dict(cameras=2), "2 cameras"),
])
def test_refused_with_a_reason(tmp_path, kwargs, message):
    path = _foreign_stage(tmp_path / "bad.usda", **kwargs)
    with pytest.raises(InvalidArgumentError, match=message):
        import_camera_usd(path, resolution=(600, 400))


def test_refused_files(tmp_path):
    with pytest.raises(InvalidArgumentError, match="no such file"):
        import_camera_usd(tmp_path / "missing.usda")
    empty = tmp_path / "empty.usda"
    empty_stage = Usd.Stage.CreateNew(str(empty))
    empty_stage.GetRootLayer().Save()
    with pytest.raises(InvalidArgumentError, match="no UsdGeom.Camera"):
        import_camera_usd(empty)
    with pytest.raises(InvalidArgumentError, match=".usda, .usdc or .usd"):
        export_camera_usd(_crane_shot(), tmp_path / "cam.abc")


def test_edited_schema_attribute_wins_over_stale_greenlight_copy(tmp_path):
    shot = _crane_shot()
    path = export_camera_usd(shot, tmp_path / "cam.usda")
    stage = Usd.Stage.Open(str(path))
    cam = UsdGeom.Camera(stage.GetPrimAtPath("/sh_010_crane/camera"))
    cam.GetFocalLengthAttr().Set(85.0, Usd.TimeCode(1003))  # someone re-lensed frame 2 in another DCC
    stage.GetRootLayer().Save()
    samples, _, _ = import_camera_usd(path)
    assert samples[2].focal_length_mm == 85.0
    assert samples[3].focal_length_mm == shot.frames[3].camera.focal_length_mm  # untouched: exact copy used


def test_bridge_shot_imports_without_pxr(tmp_path):
    """bridge.shot (usd_io included) imports with pxr blocked; only use needs it."""
    code = textwrap.dedent(f"""
        import sys
        sys.modules["pxr"] = None
        import bridge.shot, bridge.shot.usd_io as u
        from bridge.shot.synthetic import sample_shot
        from bridge.errors import GreenlightError
        try:
            u.export_camera_usd(sample_shot(frames=2, width=32, height=18), {str(tmp_path / 'x.usda')!r})
        except GreenlightError as exc:
            print("refused:", exc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "refused:" in out.stdout and "pip install" in out.stdout


BLENDER_READ = """
import json, sys
import bpy

usd_path, out_path = sys.argv[1:3]
bpy.ops.wm.read_factory_settings(use_empty=True)
# defaults spelled out: stage units -> metres via a scale on the imported root
result = bpy.ops.wm.usd_import(filepath=usd_path, scale=1.0, apply_unit_conversion_scale=True,
                               set_frame_range=True, import_cameras=True)
scene = bpy.context.scene
cams = [o for o in scene.objects if o.type == "CAMERA"]
frames = []
for f in range(scene.frame_start, scene.frame_end + 1):
    scene.frame_set(f)
    cam = cams[0]
    frames.append({"frame": f, "matrix_world": [list(r) for r in cam.matrix_world],
                   "lens": cam.data.lens, "sensor_width": cam.data.sensor_width,
                   "sensor_height": cam.data.sensor_height, "sensor_fit": cam.data.sensor_fit,
                   "clip_start": cam.data.clip_start, "clip_end": cam.data.clip_end})
json.dump({"result": sorted(result), "cameras": len(cams), "frames": frames,
           "render": [scene.render.resolution_x, scene.render.resolution_y]}, open(out_path, "w"))
"""


def test_blender_usd_import_matches_the_shot(tmp_path):
    shot = _crane_shot(fit="VERTICAL", width=640, height=360, fps=Fps(24), frame_start=101)
    usd = export_camera_usd(shot, tmp_path / "cam.usda")
    script = tmp_path / "read.py"
    script.write_text(BLENDER_READ)
    out = tmp_path / "blender.json"
    proc = subprocess.run([sys.executable, str(script), str(usd), str(out)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(out.read_text())
    assert got["result"] == ["FINISHED"] and got["cameras"] == 1
    assert [f["frame"] for f in got["frames"]] == list(range(101, 101 + shot.frame_count))
    for frame, seen in zip(shot.frames, got["frames"]):
        want = frame.camera
        m = np.array(seen["matrix_world"])
        # Blender converts centimetres to metres by scaling the imported root by
        # metersPerUnit: translation arrives in metres, the axes carry that scale
        scale = np.linalg.norm(m[:3, :3], axis=0)
        np.testing.assert_allclose(scale, 0.01, rtol=1e-5)
        world = m.copy()
        world[:3, :3] /= scale
        np.testing.assert_allclose(world, want.world_matrix, atol=1e-4)
        assert seen["lens"] == pytest.approx(want.focal_length_mm, abs=1e-4)
        # Blender's fit from the apertures gives the same pixel focal length as ours
        fit_mm = seen["sensor_width"] if seen["sensor_fit"] == "HORIZONTAL" else seen["sensor_height"]
        fit_px = shot.width if seen["sensor_fit"] == "HORIZONTAL" else shot.height
        assert seen["lens"] / fit_mm * fit_px == pytest.approx(focal_length_px(want, shot.width, shot.height),
                                                               rel=1e-5)
        assert (seen["clip_start"], seen["clip_end"]) == (pytest.approx(want.clip_start_m, rel=1e-5),
                                                          pytest.approx(want.clip_end_m, rel=1e-5))
