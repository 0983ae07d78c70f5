"""Which bone of a character rig is which COCO-18 keypoint.

Engine-free tables shared by the Blender add-on and (later) the Unreal
plugin: shipped mappings for Blender's human metarig, a generated Rigify rig
(``DEF-``/``ORG-`` bones) and Mixamo (``mixamorig:*``, any numbered prefix),
plus user mappings written as JSON. A keypoint sits at a bone's head unless
the mapping says ``tail``.

User mapping JSON: ``{"r_wrist": "hand_R", "nose": ["Head", "tail"], ...}``
(keypoint names from ``bridge.shot.coco.KEYPOINTS``; a value is a bone name,
or ``[bone, "head" | "tail"]``). A mapping must cover the 13 body keypoints
(``REQUIRED``); face keypoints are optional and absent when unmapped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..errors import InvalidArgumentError
from . import coco

ENDS = ("head", "tail")

# Body keypoints every mapping must resolve; face keypoints may be missing
# (the basic metarig and most Mixamo characters have no face bones).
REQUIRED = (
    "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
    "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle",
)


class RigMappingError(InvalidArgumentError):
    """An armature matches no mapping, or a user mapping is malformed."""


@dataclass(frozen=True)
class JointRef:
    bone: str
    end: str = "head"


@dataclass(frozen=True)
class RigMapping:
    """Candidate bones per keypoint, best first."""

    name: str
    joints: Mapping[str, tuple[JointRef, ...]]
    # Match bones by the part after the last ':' too (Mixamo imports are
    # often renamed "mixamorig1:", "mixamorig2:", ...).
    match_suffix_after_colon: bool = False


@dataclass(frozen=True)
class ResolvedRig:
    """One armature's mapping: ``joints[i]`` is the JointRef of COCO keypoint
    ``i`` or None when the rig has no such bone (the keypoint is absent)."""

    mapping: str
    joints: tuple[JointRef | None, ...]

    @property
    def present(self) -> tuple[bool, ...]:
        return tuple(j is not None for j in self.joints)


def _metarig_joints(prefixes: tuple[str, ...]) -> dict[str, tuple[JointRef, ...]]:
    base = {
        "nose": ("nose.002", "head"),   # the tip: head of nose.002 is the chain's front-most point
        "neck": ("spine.004", "head"),
        "r_shoulder": ("upper_arm.R", "head"), "r_elbow": ("forearm.R", "head"), "r_wrist": ("hand.R", "head"),
        "l_shoulder": ("upper_arm.L", "head"), "l_elbow": ("forearm.L", "head"), "l_wrist": ("hand.L", "head"),
        "r_hip": ("thigh.R", "head"), "r_knee": ("shin.R", "head"), "r_ankle": ("foot.R", "head"),
        "l_hip": ("thigh.L", "head"), "l_knee": ("shin.L", "head"), "l_ankle": ("foot.L", "head"),
        "r_eye": ("eye.R", "tail"), "l_eye": ("eye.L", "tail"),   # tail = front of the eyeball
        "r_ear": ("ear.R", "head"), "l_ear": ("ear.L", "head"),
    }
    return {kp: tuple(JointRef(p + bone, end) for p in prefixes) for kp, (bone, end) in base.items()}


METARIG = RigMapping("metarig", _metarig_joints(("",)))
RIGIFY = RigMapping("rigify", _metarig_joints(("ORG-", "DEF-")))
MIXAMO = RigMapping("mixamo", {
    kp: tuple(JointRef("mixamorig:" + b, end) for b, end in refs)
    for kp, refs in {
        # Mixamo has no nose or ear bones: those keypoints are absent.
        "neck": (("Neck", "head"),),
        "r_shoulder": (("RightArm", "head"),), "r_elbow": (("RightForeArm", "head"),),
        "r_wrist": (("RightHand", "head"),),
        "l_shoulder": (("LeftArm", "head"),), "l_elbow": (("LeftForeArm", "head"),),
        "l_wrist": (("LeftHand", "head"),),
        "r_hip": (("RightUpLeg", "head"),), "r_knee": (("RightLeg", "head"),), "r_ankle": (("RightFoot", "head"),),
        "l_hip": (("LeftUpLeg", "head"),), "l_knee": (("LeftLeg", "head"),), "l_ankle": (("LeftFoot", "head"),),
        "r_eye": (("RightEye", "head"),), "l_eye": (("LeftEye", "head"),),
    }.items()
}, match_suffix_after_colon=True)

# Tried in this order; the first that resolves every REQUIRED keypoint wins.
BUILTIN = (RIGIFY, MIXAMO, METARIG)


def parse_user_mapping(data: str | Mapping, name: str = "custom") -> RigMapping:
    """A user mapping from JSON text or a dict (see the module docstring)."""
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise RigMappingError(f"rig mapping {name!r}: not valid JSON ({exc})") from None
    if not isinstance(data, Mapping):
        raise RigMappingError(f"rig mapping {name!r}: expected a JSON object of keypoint -> bone, "
                              f"got {type(data).__name__}")
    joints = {}
    for kp, value in data.items():
        if kp not in coco.INDEX:
            raise RigMappingError(f"rig mapping {name!r}: unknown keypoint {kp!r}; "
                                  f"use one of {', '.join(coco.KEYPOINTS)}")
        if isinstance(value, str):
            bone, end = value, "head"
        elif isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, str) for v in value):
            bone, end = value
        else:
            raise RigMappingError(f"rig mapping {name!r}: {kp!r} must be a bone name or [bone, 'head'|'tail'], "
                                  f"got {value!r}")
        if end not in ENDS:
            raise RigMappingError(f"rig mapping {name!r}: {kp!r} end must be 'head' or 'tail', got {end!r}")
        if not bone:
            raise RigMappingError(f"rig mapping {name!r}: {kp!r} has an empty bone name")
        joints[kp] = (JointRef(bone, end),)
    return RigMapping(name, joints)


def resolve(mapping: RigMapping, bone_names: Iterable[str]) -> tuple[ResolvedRig | None, list[str]]:
    """Resolve ``mapping`` against a rig's bones. Returns (rig, missing) where
    rig is None when a REQUIRED keypoint has no bone; ``missing`` lists the
    required keypoints not found."""
    names = set(bone_names)
    by_suffix: dict[str, str] = {}
    if mapping.match_suffix_after_colon:
        for n in sorted(names):
            by_suffix.setdefault(n.rsplit(":", 1)[-1], n)
    joints: list[JointRef | None] = []
    for kp in coco.KEYPOINTS:
        found = None
        for ref in mapping.joints.get(kp, ()):
            if ref.bone in names:
                found = ref
                break
            if mapping.match_suffix_after_colon:
                actual = by_suffix.get(ref.bone.rsplit(":", 1)[-1])
                if actual is not None:
                    found = JointRef(actual, ref.end)
                    break
        joints.append(found)
    missing = [kp for kp in REQUIRED if joints[coco.INDEX[kp]] is None]
    if missing:
        return None, missing
    return ResolvedRig(mapping.name, tuple(joints)), []


def detect(armature: str, bone_names: Iterable[str], user_mapping: str | Mapping | None = None) -> ResolvedRig:
    """The rig of armature ``armature``: the user mapping if given (it must
    resolve), else the first shipped mapping that resolves. Raises
    RigMappingError naming the armature and how to fix it."""
    names = list(bone_names)
    if user_mapping:
        rig, missing = resolve(parse_user_mapping(user_mapping, name=f"{armature} (user)"), names)
        if rig is None:
            raise RigMappingError(
                f"armature {armature!r}: its COCO-18 mapping leaves required keypoints unmapped or names "
                f"bones the rig does not have: {', '.join(missing)}")
        return rig
    best_missing = None
    for mapping in BUILTIN:
        rig, missing = resolve(mapping, names)
        if rig is not None:
            return rig
        if best_missing is None or len(missing) < len(best_missing[1]):
            best_missing = (mapping.name, missing)
    if best_missing is None:   # BUILTIN is empty: nothing was tried
        raise RigMappingError(f"armature {armature!r}: no shipped COCO-18 rig mappings to try; map it with the "
                              "Greenlight rig mapping (JSON keypoint -> bone)")
    raise RigMappingError(
        f"armature {armature!r} ({len(names)} bones) matches no COCO-18 mapping (tried "
        f"{', '.join(m.name for m in BUILTIN)}; closest, {best_missing[0]}, lacks bones for "
        f"{', '.join(best_missing[1])}). Map it with the Greenlight rig mapping (JSON keypoint -> bone), "
        "or exclude it from pose extraction")
