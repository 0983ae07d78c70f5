"""COCO-18 rig mappings (engine-free: bridge.shot.rigs)."""

from __future__ import annotations

import pytest

from bridge.shot import coco, rigs

BODY_METARIG = ["spine.004", "upper_arm.R", "forearm.R", "hand.R", "upper_arm.L", "forearm.L", "hand.L",
                "thigh.R", "shin.R", "foot.R", "thigh.L", "shin.L", "foot.L"]
MIXAMO = ["Neck", "RightArm", "RightForeArm", "RightHand", "LeftArm", "LeftForeArm", "LeftHand",
          "RightUpLeg", "RightLeg", "RightFoot", "LeftUpLeg", "LeftLeg", "LeftFoot", "Hips", "Head", "LeftEye"]


def test_rigify_generated_rig_prefers_org_bones_and_maps_the_face():
    bones = ["root", "torso"] + [f"DEF-{b}" for b in BODY_METARIG] + [f"ORG-{b}" for b in BODY_METARIG] \
        + ["ORG-nose.002", "ORG-eye.R", "ORG-eye.L", "DEF-ear.R", "DEF-ear.L"]
    rig = rigs.detect("hero_rig", bones)
    assert rig.mapping == "rigify"
    assert rig.joints[coco.INDEX["r_wrist"]] == rigs.JointRef("ORG-hand.R", "head")
    assert rig.joints[coco.INDEX["r_eye"]] == rigs.JointRef("ORG-eye.R", "tail")
    assert rig.joints[coco.INDEX["l_ear"]] == rigs.JointRef("DEF-ear.L", "head")
    assert all(rig.present)


def test_mixamo_with_a_numbered_prefix_and_no_face_bones():
    rig = rigs.detect("Ch01", [f"mixamorig7:{b}" for b in MIXAMO])
    assert rig.mapping == "mixamo"
    assert rig.joints[coco.INDEX["l_knee"]] == rigs.JointRef("mixamorig7:LeftLeg", "head")
    assert rig.joints[coco.INDEX["l_eye"]] == rigs.JointRef("mixamorig7:LeftEye", "head")
    absent = [coco.KEYPOINTS[i] for i, p in enumerate(rig.present) if not p]
    assert absent == ["nose", "r_eye", "r_ear", "l_ear"]


def test_user_mapping_overrides_and_is_checked():
    custom = {kp: f"b_{kp}" for kp in rigs.REQUIRED} | {"nose": ["b_head", "tail"]}
    bones = [f"b_{kp}" for kp in rigs.REQUIRED] + ["b_head"]
    rig = rigs.detect("Robot", bones, user_mapping=__import__("json").dumps(custom))
    assert rig.mapping == "Robot (user)"
    assert rig.joints[coco.INDEX["nose"]] == rigs.JointRef("b_head", "tail")
    with pytest.raises(rigs.RigMappingError, match="unknown keypoint 'elbow'"):
        rigs.detect("Robot", bones, user_mapping={"elbow": "b_x"})
    with pytest.raises(rigs.RigMappingError, match="r_wrist"):
        rigs.detect("Robot", [b for b in bones if b != "b_r_wrist"],
                    user_mapping={kp: f"b_{kp}" for kp in rigs.REQUIRED})
    with pytest.raises(rigs.RigMappingError, match="not valid JSON"):
        rigs.detect("Robot", bones, user_mapping="{neck: Neck}")


def test_an_unknown_rig_names_the_closest_mapping_and_the_fix():
    with pytest.raises(rigs.RigMappingError) as err:
        rigs.detect("Crane", ["boom", "jib"])
    assert "armature 'Crane' (2 bones) matches no COCO-18 mapping" in str(err.value)


def test_motion_beyond_float16_range_stays_float32_not_inf():
    import numpy as np

    from blender_addon.convert import motion_from_pass

    small = motion_from_pass(np.full((2, 3), 1.5, np.float32), np.full((2, 3), -2.0, np.float32))
    assert small.dtype == np.float16 and small[0, 0].tolist() == [-1.5, -2.0]
    huge = motion_from_pass(np.full((2, 3), 1e6, np.float32), np.zeros((2, 3), np.float32))
    assert huge.dtype == np.float32 and np.isfinite(huge).all() and huge[0, 0, 0] == -1e6
