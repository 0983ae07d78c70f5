"""UE5 Manny/Quinn -> COCO-18: the shipped editable mapping, face points from
head-bone offsets, projection through bridge.shot.pose (engine-free)."""

import json

import numpy as np
import pytest

from tests.fakes import unreal_scene

unreal_scene.install()
from bridge.shot import coco  # noqa: E402
from bridge.shot.coords import Rotator, UnrealTransform, camera_to_canonical, cine_camera_sample  # noqa: E402
from bridge.shot.pose import pose_from_joints  # noqa: E402
from greenlight_unreal import skeleton  # noqa: E402


def _bones(frame=0):
    return {name: UnrealTransform(loc, Rotator(*rot), scale)
            for name, (loc, rot, scale) in unreal_scene.manny_bones(frame).items()}


def test_shipped_mapping_resolves_on_manny_bones():
    mapping = skeleton.load_mapping()
    rig = skeleton.resolve(mapping, unreal_scene.MANNY_BONES, "Manny")
    assert rig.present.all()                 # body from bones, face from head offsets
    assert rig.joints[coco.INDEX["l_wrist"]].bone == "hand_l"
    assert rig.joints[coco.INDEX["r_knee"]].bone == "calf_r"
    assert rig.joints[coco.INDEX["nose"]].bone == "head" and rig.joints[coco.INDEX["nose"]].offset_cm != (0, 0, 0)
    assert set(rig.bones) <= set(unreal_scene.MANNY_BONES)
    # MetaHuman facial bones win when present
    rig2 = skeleton.resolve(mapping, unreal_scene.MANNY_BONES + ("FACIAL_L_Eye",))
    assert rig2.joints[coco.INDEX["l_eye"]] == skeleton.Candidate("FACIAL_L_Eye")


def test_missing_bones_and_bad_files_are_named(tmp_path):
    mapping = skeleton.load_mapping()
    with pytest.raises(skeleton.SkeletonMappingError, match=r"'Bob'.*l_wrist \(hand_l\)"):
        skeleton.resolve(mapping, [b for b in unreal_scene.MANNY_BONES if b != "hand_l"], "Bob")
    data = json.loads(skeleton.DEFAULT_MAPPING.read_text())
    data["keypoints"]["l_toe"] = [{"bone": "ball_l"}]
    with pytest.raises(skeleton.SkeletonMappingError, match="unknown keypoint 'l_toe'"):
        skeleton.parse_mapping(data)
    bad = tmp_path / "m.json"
    bad.write_text("{not json")
    with pytest.raises(skeleton.SkeletonMappingError, match="not valid JSON"):
        skeleton.load_mapping(bad)


def test_user_edit_changes_a_keypoint(tmp_path):
    data = json.loads(skeleton.DEFAULT_MAPPING.read_text())
    data["keypoints"]["neck"] = [{"bone": "neck_02"}]
    path = tmp_path / "custom.json"
    path.write_text(json.dumps(data))
    rig = skeleton.resolve(skeleton.load_mapping(path), unreal_scene.MANNY_BONES)
    joints, _ = skeleton.joints_canonical(rig, _bones())
    assert np.allclose(joints[coco.INDEX["neck"]], [3.0, 0.0, 1.55])   # neck_02 at (300, 0, 155) cm


def test_joints_convert_to_canonical_and_face_offsets_follow_the_head():
    rig = skeleton.resolve(skeleton.load_mapping(), unreal_scene.MANNY_BONES)
    joints, present = skeleton.joints_canonical(rig, _bones())
    assert present.all()
    # hand_l at Unreal (300, 70, 135) cm -> canonical (3.0, -0.7, 1.35) m
    assert np.allclose(joints[coco.INDEX["l_wrist"]], [3.0, -0.7, 1.35])
    # nose offset (up 6, forward 12) from the head at (300, 0, 160), face toward -X
    assert np.allclose(joints[coco.INDEX["nose"]], [2.88, 0.0, 1.66])
    # the right eye sits on the character's right: Unreal -Y = canonical +Y
    assert joints[coco.INDEX["r_eye"]][1] > 0 > joints[coco.INDEX["l_eye"]][1]
    # scale scales the offset
    bones = _bones()
    head = bones["head"]
    bones["head"] = UnrealTransform(head.location_cm, head.rotation, (2.0, 2.0, 2.0))
    joints2, _ = skeleton.joints_canonical(rig, bones)
    assert np.allclose(joints2[coco.INDEX["nose"]], [2.76, 0.0, 1.72])


def test_projection_puts_the_right_hand_on_image_left():
    rig = skeleton.resolve(skeleton.load_mapping(), unreal_scene.MANNY_BONES)
    joints, present = skeleton.joints_canonical(rig, _bones())
    cam = cine_camera_sample(camera_to_canonical([-300.0, 0.0, 100.0], Rotator()), 35.0, 36.0, 20.25)
    pose = pose_from_joints("Manny", cam, 640, 360, joints, present)
    assert (pose.visibility == coco.VISIBLE).all()
    kp = pose.keypoints_px
    f = 35.0 / 36.0 * 640
    # hand_r at Unreal (300, -70, 135), camera at (-300, 0, 100): 600 cm ahead, 70 cm to the
    # camera's left, 35 cm above -> by hand:
    assert np.allclose(kp[coco.INDEX["r_wrist"]], [320 - f * 70 / 600, 180 - f * 35 / 600], atol=1e-3)
    assert kp[coco.INDEX["r_wrist"]][0] < kp[coco.INDEX["neck"]][0] < kp[coco.INDEX["l_wrist"]][0]
    assert kp[coco.INDEX["nose"]][1] < kp[coco.INDEX["neck"]][1] < kp[coco.INDEX["r_hip"]][1]
