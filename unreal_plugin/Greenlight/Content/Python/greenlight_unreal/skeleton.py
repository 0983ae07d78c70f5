"""Unreal skeleton bones -> COCO-18 joints in canonical space. Engine-free.

The mapping is an editable JSON file shipped beside this module
(``manny_coco18.json``, the UE5 Manny/Quinn skeleton); users point the
plugin at their own copy for other rigs. Bone world transforms come from
``host`` as plain ``UnrealTransform`` values (evaluated by Sequencer, so
retargeting, control rigs and attachments are already applied) and are
converted with ``bridge.shot.coords`` only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bridge.errors import InvalidArgumentError
from bridge.shot import coco, coords
from bridge.shot.coords import UnrealTransform

FORMAT = "greenlight.unreal.coco18"
DEFAULT_MAPPING = Path(__file__).with_name("manny_coco18.json")
# Body keypoints every mapping must resolve; face keypoints may be absent.
# the body keypoints a mapping must provide: one list for every rig, in bridge.shot.rigs
from bridge.shot.rigs import REQUIRED  # noqa: E402


class SkeletonMappingError(InvalidArgumentError):
    """A mapping file is malformed, or a skeleton lacks required bones."""


@dataclass(frozen=True)
class Candidate:
    bone: str
    offset_cm: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Mapping18:
    name: str
    candidates: Mapping[str, tuple[Candidate, ...]]


@dataclass(frozen=True)
class ResolvedSkeleton:
    """``joints[i]``: the Candidate used for COCO keypoint ``i``, or None."""

    mapping: str
    joints: tuple[Candidate | None, ...]

    @property
    def present(self) -> np.ndarray:
        return np.array([j is not None for j in self.joints])

    @property
    def bones(self) -> tuple[str, ...]:
        """Bones whose transforms the host must read each frame."""
        return tuple(sorted({j.bone for j in self.joints if j is not None}))


def load_mapping(path: str | Path | None = None) -> Mapping18:
    path = Path(path) if path else DEFAULT_MAPPING
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SkeletonMappingError(f"skeleton mapping {path}: cannot read it ({exc})") from None
    except json.JSONDecodeError as exc:
        raise SkeletonMappingError(f"skeleton mapping {path}: not valid JSON ({exc})") from None
    return parse_mapping(data, name=path.stem)


def parse_mapping(data, name: str = "custom") -> Mapping18:
    where = f"skeleton mapping {name!r}"
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SkeletonMappingError(f"{where}: expected a JSON object with \"format\": \"{FORMAT}\"")
    keypoints = data.get("keypoints")
    if not isinstance(keypoints, dict):
        raise SkeletonMappingError(f"{where}: \"keypoints\" must be an object of keypoint -> candidates")
    out = {}
    for kp, cands in keypoints.items():
        if kp not in coco.INDEX:
            raise SkeletonMappingError(f"{where}: unknown keypoint {kp!r}; use one of {', '.join(coco.KEYPOINTS)}")
        if not isinstance(cands, list) or not cands:
            raise SkeletonMappingError(f"{where}: {kp!r} must be a non-empty list of candidates")
        parsed = []
        for c in cands:
            if not isinstance(c, dict) or not isinstance(c.get("bone"), str) or not c["bone"]:
                raise SkeletonMappingError(f"{where}: {kp!r} candidate {c!r} needs a \"bone\" name")
            offset = c.get("offset_cm", (0.0, 0.0, 0.0))
            if (not isinstance(offset, (list, tuple)) or len(offset) != 3
                    or not all(isinstance(v, (int, float)) and np.isfinite(v) for v in offset)):
                raise SkeletonMappingError(f"{where}: {kp!r} offset_cm must be three numbers, got {offset!r}")
            unknown = set(c) - {"bone", "offset_cm"}
            if unknown:
                raise SkeletonMappingError(f"{where}: {kp!r} candidate has unknown keys {sorted(unknown)}")
            parsed.append(Candidate(c["bone"], tuple(float(v) for v in offset)))
        out[kp] = tuple(parsed)
    missing = [kp for kp in REQUIRED if kp not in out]
    if missing:
        raise SkeletonMappingError(f"{where}: required keypoints not mapped: {', '.join(missing)}")
    return Mapping18(name, out)


def resolve(mapping: Mapping18, bone_names: Iterable[str], character: str = "character") -> ResolvedSkeleton:
    """Pick, per keypoint, the first candidate whose bone the skeleton has."""
    names = set(bone_names)
    joints = []
    for kp in coco.KEYPOINTS:
        joints.append(next((c for c in mapping.candidates.get(kp, ()) if c.bone in names), None))
    missing = [kp for kp in REQUIRED if joints[coco.INDEX[kp]] is None]
    if missing:
        wanted = ", ".join(f"{kp} ({'/'.join(c.bone for c in mapping.candidates[kp])})" for kp in missing)
        raise SkeletonMappingError(
            f"{character!r} ({len(names)} bones) lacks bones the {mapping.name!r} mapping needs: {wanted}. "
            "Edit a copy of the mapping JSON and set it in the Greenlight settings, or leave this character out")
    return ResolvedSkeleton(mapping.name, tuple(joints))


def joints_canonical(skeleton: ResolvedSkeleton, bones: Mapping[str, UnrealTransform]) -> tuple[np.ndarray, np.ndarray]:
    """([18, 3] canonical metres, [18] present) from bone WORLD transforms."""
    joints = np.zeros((coco.COUNT, 3))
    present = skeleton.present.copy()
    for i, cand in enumerate(skeleton.joints):
        if cand is None:
            continue
        t = bones.get(cand.bone)
        if t is None:
            present[i] = False
            continue
        local = np.asarray(cand.offset_cm) * np.asarray(t.scale)
        world_cm = coords.rotator_to_matrix(t.rotation) @ local + np.asarray(t.location_cm, dtype=np.float64)
        joints[i] = coords.position_to_canonical(world_cm)
    return joints, present
