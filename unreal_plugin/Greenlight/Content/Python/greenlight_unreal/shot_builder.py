"""Plain samples read from a Level Sequence -> a validated ``bridge.shot.Shot``.

Engine-free. ``host.read_sequence_in_unreal`` fills ``SequenceSample`` with
plain numbers in Unreal units; every conversion to canonical space goes
through ``bridge.shot.coords`` (never re-derived here).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from bridge.shot import coords, validate_shot
from bridge.shot.coords import Rotator, UnrealTransform
from bridge.shot.model import Fps, Frame, Shot, Tags
from bridge.shot.pose import pose_from_joints

from . import skeleton
from .settings import PrevizSettings, tag_safe

ASPECT_TOLERANCE = 0.005


@dataclass(frozen=True)
class CameraState:
    """One CineCamera at one frame, as Sequencer evaluated it (world space)."""

    actor: str
    location_cm: tuple[float, float, float]
    rotation: tuple[float, float, float]          # pitch, yaw, roll degrees
    focal_length_mm: float
    sensor_width_mm: float
    sensor_height_mm: float
    focus_distance_cm: float = 0.0


@dataclass(frozen=True)
class CharacterState:
    """One skeletal mesh at one frame: bone name -> world transform."""

    name: str
    bones: Mapping[str, UnrealTransform]


@dataclass(frozen=True)
class SequenceSample:
    """Everything read from the sequence; frames are display-rate frame
    numbers ``start_frame .. end_frame - 1`` (Unreal's exclusive end)."""

    name: str
    path: str
    display_rate: tuple[int, int]
    start_frame: int
    end_frame: int
    cameras: tuple[CameraState, ...]
    characters: tuple[tuple[CharacterState, ...], ...] = ()
    skeleton_bones: Mapping[str, tuple[str, ...]] = field(default_factory=dict)   # character -> all bone names

    @property
    def frame_numbers(self) -> range:
        return range(self.start_frame, self.end_frame)


def camera_sample(state: CameraState, settings: PrevizSettings):
    matrix = coords.camera_to_canonical(state.location_cm, Rotator(*state.rotation))
    return coords.cine_camera_sample(
        matrix, state.focal_length_mm, state.sensor_width_mm, state.sensor_height_mm,
        focus_distance_cm=state.focus_distance_cm, aspect_axis=settings.aspect_axis,
        near_clip_cm=settings.near_clip_cm, far_clip_cm=settings.far_clip_cm)


def build_shot(sample: SequenceSample, settings: PrevizSettings, version: int,
               depths: Sequence[np.ndarray] | None = None, flows: Sequence[np.ndarray] | None = None,
               mapping: skeleton.Mapping18 | None = None) -> tuple[Shot, list[str]]:
    """The Shot for ``sample`` plus warnings a person should see (filmback
    aspect mismatch, characters left out). Raises ``GreenlightError``
    subclasses on bad input (validated like the bridge will)."""
    n = sample.end_frame - sample.start_frame
    if n <= 0:
        raise ValueError(f"sequence {sample.name!r}: empty playback range {sample.start_frame}..{sample.end_frame}")
    if len(sample.cameras) != n:
        raise ValueError(f"sequence {sample.name!r}: {len(sample.cameras)} camera samples for {n} frames")
    for what, arrays in (("depth", depths), ("motion", flows)):
        if arrays is not None and len(arrays) != n:
            raise ValueError(f"sequence {sample.name!r}: {len(arrays)} {what} frames for {n} frames")
    warnings: list[str] = []
    w, h = settings.width, settings.height
    mismatched = {(c.actor, c.sensor_width_mm, c.sensor_height_mm) for c in sample.cameras
                  if coords.filmback_aspect_mismatch(c.sensor_width_mm, c.sensor_height_mm, w, h) > ASPECT_TOLERANCE}
    for actor, sw, sh in sorted(mismatched):
        warnings.append(f"camera {actor!r}: filmback {sw:g}x{sh:g} mm is not the render's {w}x{h} aspect; "
                        f"Greenlight keeps the {'horizontal' if settings.aspect_axis == 'x' else 'vertical'} "
                        "field of view as Unreal does, the other axis is cropped")

    resolved: dict[str, skeleton.ResolvedSkeleton] = {}
    if "pose" in settings.passes and sample.characters:
        mapping = mapping or skeleton.load_mapping(settings.mapping_path or None)
        for name, bone_names in sorted(sample.skeleton_bones.items()):
            try:
                resolved[name] = skeleton.resolve(mapping, bone_names, character=name)
            except skeleton.SkeletonMappingError as exc:
                warnings.append(f"pose: {exc}")

    frames = []
    for i in range(n):
        cam = camera_sample(sample.cameras[i], settings)
        depth = None if depths is None else np.asarray(depths[i], dtype=np.float32)
        poses = []
        if resolved and i < len(sample.characters):
            for character in sample.characters[i]:
                rig = resolved.get(character.name)
                if rig is None:
                    continue
                joints, present = skeleton.joints_canonical(rig, character.bones)
                poses.append(pose_from_joints(tag_safe(character.name), cam, w, h, joints, present, depth_m=depth))
        frames.append(Frame(index=i, camera=cam, depth_m=depth,
                            motion_px=None if flows is None else np.asarray(flows[i], dtype=np.float16),
                            poses=tuple(poses)))

    methods = {}
    if depths is not None:
        methods["depth"] = "unreal-mrq:MovieRenderQueue_WorldDepth(cm->m, planar)"
    if flows is not None:
        methods["motion"] = ("unreal-mrq:MovieRenderQueue_MotionVectors"
                             f"({settings.motion.direction}->forward, scale {settings.motion.scale_x:g}/"
                             f"{settings.motion.scale_y:g}, y_up={settings.motion.y_up})")
    if resolved:
        methods["pose"] = "unreal-bones:" + ",".join(sorted({r.mapping for r in resolved.values()}))
    shot = Shot(
        tags=Tags(project=tag_safe(settings.project), shot=tag_safe(settings.shot or sample.name), version=version),
        fps=Fps(*sample.display_rate), width=w, height=h, frames=tuple(frames),
        frame_start=sample.start_frame, depth_background="inf", pass_methods=methods,
        source=f"unreal:{sample.path}")
    return validate_shot(shot), warnings
