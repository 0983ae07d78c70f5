"""Pass extraction with real Blender (bpy, in a child process) against
analytic ground truth: planar depth, forward motion, projected rig joints."""

from __future__ import annotations

import math

import numpy as np

from bridge.shot import coco
from bridge.shot.camera import pixel_rays, static_forward_flow
from bridge.shot.model import CameraSample
from tests.blender_scenes import FIGURE_BONES, run_scenario


def _camera(out, i, info):
    return CameraSample(np.load(out / f"camera_{i}.npy"), **info["frames"][i]["camera"])


def test_depth_of_planes_is_planar_metres_within_1mm(tmp_path):
    r = run_scenario("plane", out=tmp_path, width=64, height=36, distance=7.37)
    assert (r["width"], r["height"]) == (64, 36)
    assert r["scenes"] == 1, "the temporary pass-render scene must be removed"
    assert r["pass_methods"]["depth"] == "cycles-1spp-depth-pass"
    depth = np.load(tmp_path / "depth_0.npy")
    assert depth.dtype == np.float32 and depth.shape == (36, 64)
    # Bottom-left quarter: the facing plane; top-left quarter: background.
    assert np.abs(depth[18:, :32] - 7.37).max() < 1e-3
    assert np.isinf(depth[:18, :32]).all() and (depth[:18, :32] > 0).all()
    # Right half: the tilted plane through (0, 0, -5), normal (tan 30, 0, 1).
    cam = _camera(tmp_path, 0, r)
    np.testing.assert_allclose(cam.world_matrix, np.eye(4), atol=1e-6)  # the camera's 2x scale is removed
    n = np.array([math.tan(math.radians(30)), 0.0, 1.0])
    expected = (n @ np.array([0.0, 0.0, -5.0])) / (pixel_rays(cam, 64, 36) @ n)
    assert np.abs(depth[:, 33:] - expected[:, 33:]).max() < 1e-3


def test_motion_vectors_match_analytic_flow_within_0_1_px(tmp_path):
    r = run_scenario("motion", out=tmp_path, width=128, height=72, dx=0.2)
    assert r["frame_start"] == 1 and len(r["frames"]) == 3
    for i in range(2):
        cam0, cam1 = _camera(tmp_path, i, r), _camera(tmp_path, i + 1, r)
        depth = np.load(tmp_path / f"depth_{i}.npy")
        motion = np.load(tmp_path / f"motion_{i}.npy")
        assert motion.dtype == np.float16 and motion.shape == (72, 128, 2)
        expected = static_forward_flow(cam0, cam1, depth)
        assert np.abs(expected).max() > 5, "the scene must actually move"
        assert np.abs(motion.astype(np.float64) - expected).max() < 0.1
        # Camera moves +x: the image moves left (dx < 0); it rises in z: image moves down (dy > 0).
        assert motion[36, 64, 0] < 0 and motion[36, 64, 1] > 0


def test_motion_follows_a_zoom_in_a_scene_that_is_not_the_context_one(tmp_path):
    """Cycles 4.2 leaves a focal-length change out of the Vector pass (added
    back from the camera samples), and every version evaluates the motion
    around the context scene's frame (stepped along): on every Blender the
    motion is the analytic flow of the zooming, dollying camera."""
    r = run_scenario("zoom", out=tmp_path, width=96, height=54)
    assert r["context"] != "Zoom" and r["context_frame"] == 1, "the context scene is left as it was"
    assert r["follows_zoom"] is (not r["version"].startswith("4.2")), r["version"]   # DESIGN section 10
    # the probe render left nothing behind: the two scenes, a camera and two planes, two actions at most
    assert r["data"]["scenes"] == 2 and r["data"]["objects"] == 3 and r["data"]["cameras"] == 1
    assert r["data"]["meshes"] == 2 and r["data"]["actions"] <= 2
    lens = [f["camera"]["focal_length_mm"] for f in r["frames"]]
    np.testing.assert_allclose(lens, [30.0, 35.0, 40.0], rtol=1e-5)
    for i in range(3):   # the last frame's motion looks at frame 4 (lens 45 mm)
        cam0 = _camera(tmp_path, i, r)
        if i < 2:
            cam1 = _camera(tmp_path, i + 1, r)
        else:
            world = np.load(tmp_path / "camera_2.npy")
            world[:3, 3] += (0.2, 0.0, 0.1)
            cam1 = CameraSample(world, **(r["frames"][2]["camera"] | {"focal_length_mm": 45.0}))
        depth = np.load(tmp_path / f"depth_{i}.npy")
        motion = np.load(tmp_path / f"motion_{i}.npy").astype(np.float64)
        expected = static_forward_flow(cam0, cam1, depth)
        valid = np.isfinite(depth)
        assert np.abs(expected[valid]).max() > 3, "the zoom must actually move the image"
        assert np.abs(motion - expected)[valid].max() < 0.1, i


def test_zoom_correction_scales_the_flow_about_the_image_centre():
    from blender_addon.convert import motion_with_zoom

    flow = np.zeros((4, 6, 2), np.float16)
    flow[..., 0] = 1.0
    depth = np.full((4, 6), 5.0, np.float32)
    depth[0, 0] = np.inf
    out = motion_with_zoom(flow, depth, 1.5)
    assert out.dtype == np.float16
    # pixel (row 3, col 5): centre (5.5, 3.5) is (2.5, 1.5) from the image centre (3, 2)
    assert out[3, 5].tolist() == [0.5 * 2.5 + 1.5 * 1.0, 0.5 * 1.5]
    assert out[0, 0].tolist() == [1.0, 0.0], "background keeps the pass's vector"


def _figure_world(location, rot_z_deg):
    heads = {name: np.array(head, dtype=float) for name, (head, _, _) in FIGURE_BONES.items()}
    heads["hand.R"] = heads["forearm.R"] + np.array([0, 0, 0.3])  # the posed forearm points up
    c, s = math.cos(math.radians(rot_z_deg)), math.sin(math.radians(rot_z_deg))
    rz = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    return {name: rz @ p + np.asarray(location) for name, p in heads.items()}


def test_armature_keypoints_within_half_pixel_with_visibility(tmp_path):
    location, rot = [0.1, 0.5, 0.0], -20.0
    card = [[-0.15, -1, 0.4], [0.08, -1, 0.4], [0.08, -1, 0.7], [-0.15, -1, 0.7]]
    r = run_scenario("pose", out=tmp_path, width=128, height=72, location=location, rot_z_deg=rot, card=card)
    assert r["pass_methods"]["pose"] == "rig-joints-projected:metarig"
    (pose,) = r["frames"][0]["poses"]
    assert pose["name"] == "Figure"
    kp = np.array(pose["keypoints_px"])
    vis = np.array(pose["visibility"])

    world = _figure_world(location, rot)
    bone_of = {"neck": "spine.004", "r_shoulder": "upper_arm.R", "r_elbow": "forearm.R", "r_wrist": "hand.R",
               "l_shoulder": "upper_arm.L", "l_elbow": "forearm.L", "l_wrist": "hand.L",
               "r_hip": "thigh.R", "r_knee": "shin.R", "r_ankle": "foot.R",
               "l_hip": "thigh.L", "l_knee": "shin.L", "l_ankle": "foot.L"}
    f = 50.0 / 36.0 * 128  # camera at (0, -6, 1) looking +Y, 50 mm on a 36 mm sensor
    expected_vis = np.zeros(coco.COUNT, int)
    for name, bone in bone_of.items():
        x, y, z = world[bone]
        px = np.array([64 + f * x / (y + 6), 36 - f * (z - 1) / (y + 6)])
        i = coco.INDEX[name]
        inside = 0 <= px[0] < 128 and 0 <= px[1] < 72
        expected_vis[i] = coco.VISIBLE if inside else coco.ABSENT
        if inside:
            assert np.abs(kp[i] - px).max() < 0.5, (name, kp[i], px)
    expected_vis[coco.INDEX["r_knee"]] = coco.OCCLUDED   # behind the card
    assert expected_vis[coco.INDEX["l_wrist"]] == coco.ABSENT  # out of frame (the scene is built so)
    assert vis.tolist() == expected_vis.tolist()
    # Face keypoints are unmapped on this rig: absent, at (0, 0).
    for name in ("nose", "r_eye", "l_eye", "r_ear", "l_ear"):
        assert vis[coco.INDEX[name]] == coco.ABSENT and kp[coco.INDEX[name]].tolist() == [0, 0]
    # Blender's shipped Human metarig is recognised, face included.
    mapping, present = r["detected"][r["metarig_name"]]
    assert mapping == "metarig" and all(present)


def test_bad_input_gives_clear_errors_and_leaves_the_file_unchanged(tmp_path):
    r = run_scenario("bad_input")
    expect = {
        "no_camera": "has no active camera",
        "zero_length": "frame range 5..4 is empty",
        "ortho": "is orthographic",
        "shift": "lens shift",
        "unmapped": "armature 'Crane'",
    }
    for case, text in expect.items():
        assert r[case]["error"] is not None and text in r[case]["error"], (case, r[case])
        assert r[case]["unchanged"], f"{case}: the file changed on failure"
    assert "greenlight_ignore" in r["unmapped"]["error"]
    assert r["ok_after_ignore"] == {"error": None, "unchanged": True}
