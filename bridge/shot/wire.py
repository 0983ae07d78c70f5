"""Lossless conversion between the shot model and greenlight.v1 messages.

Needs protobuf (not grpc). Arrays travel as raw little-endian bytes with
dtype and shape, so a round trip is bit-exact.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidArgumentError, ShotValidationError
from ..proto.greenlight.v1 import shot_pb2
from .model import CameraSample, CharacterPose, Fps, Frame, Shot, Tags

_DTYPE_TO_PB = {
    np.dtype("float32"): shot_pb2.DTYPE_FLOAT32,
    np.dtype("float16"): shot_pb2.DTYPE_FLOAT16,
    np.dtype("uint8"): shot_pb2.DTYPE_UINT8,
    np.dtype("uint16"): shot_pb2.DTYPE_UINT16,
}
_PB_TO_DTYPE = {v: k for k, v in _DTYPE_TO_PB.items()}
_FIT_TO_PB = {
    "AUTO": shot_pb2.SENSOR_FIT_AUTO,
    "HORIZONTAL": shot_pb2.SENSOR_FIT_HORIZONTAL,
    "VERTICAL": shot_pb2.SENSOR_FIT_VERTICAL,
}
_PB_TO_FIT = {v: k for k, v in _FIT_TO_PB.items()}
_PB_TO_FIT[shot_pb2.SENSOR_FIT_UNSPECIFIED] = "AUTO"
_BG_TO_PB = {"inf": shot_pb2.DEPTH_BACKGROUND_INF, "zero": shot_pb2.DEPTH_BACKGROUND_ZERO}
_PB_TO_BG = {v: k for k, v in _BG_TO_PB.items()}
_PB_TO_BG[shot_pb2.DEPTH_BACKGROUND_UNSPECIFIED] = "inf"


def array_to_pb(arr: np.ndarray, out: shot_pb2.Array) -> None:
    arr = np.asarray(arr)
    if arr.dtype not in _DTYPE_TO_PB:
        raise ShotValidationError("array",
                                  f"dtype {arr.dtype.name} cannot travel; use float32, float16, uint8 or uint16")
    out.dtype = _DTYPE_TO_PB[arr.dtype]
    out.shape[:] = arr.shape
    out.data = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()


def array_from_pb(msg: shot_pb2.Array, field: str) -> np.ndarray:
    if msg.dtype not in _PB_TO_DTYPE:
        raise ShotValidationError(field, f"unknown dtype {msg.dtype}")
    dtype = _PB_TO_DTYPE[msg.dtype].newbyteorder("<")
    shape = tuple(msg.shape)
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(msg.data) != expected:
        raise ShotValidationError(
            field, f"holds {len(msg.data)} bytes but dtype {dtype.name} and shape {shape} need {expected}")
    return np.frombuffer(msg.data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=True)


def _present(frame_pb, name: str) -> bool:
    return frame_pb.HasField(name)


def shot_to_pb(shot: Shot) -> shot_pb2.Shot:
    msg = shot_pb2.Shot()
    msg.tags.project, msg.tags.shot, msg.tags.version = shot.tags.project, shot.tags.shot, shot.tags.version
    msg.fps.numerator, msg.fps.denominator = shot.fps.numerator, shot.fps.denominator
    msg.resolution.width, msg.resolution.height = shot.width, shot.height
    msg.frame_start = shot.frame_start
    msg.depth_background = _BG_TO_PB.get(shot.depth_background, shot_pb2.DEPTH_BACKGROUND_UNSPECIFIED)
    msg.pass_methods.update(dict(shot.pass_methods))
    msg.source = shot.source
    for frame in shot.frames:
        f = msg.frames.add()
        f.index = frame.index
        cam = frame.camera
        f.camera.world_matrix[:] = np.asarray(cam.world_matrix, dtype=np.float64).reshape(-1).tolist()
        f.camera.focal_length_mm = cam.focal_length_mm
        f.camera.sensor_width_mm = cam.sensor_width_mm
        f.camera.sensor_height_mm = cam.sensor_height_mm
        f.camera.sensor_fit = _FIT_TO_PB.get(cam.sensor_fit, shot_pb2.SENSOR_FIT_UNSPECIFIED)
        f.camera.clip_start_m = cam.clip_start_m
        f.camera.clip_end_m = cam.clip_end_m
        f.camera.focus_distance_m = cam.focus_distance_m
        for name in Frame.ARRAY_FIELDS:
            arr = getattr(frame, name)
            if arr is not None:
                array_to_pb(arr, getattr(f, name))
        for pose in frame.poses:
            p = f.poses.add()
            p.name = pose.name
            array_to_pb(pose.keypoints_px, p.keypoints_px)
            array_to_pb(pose.visibility, p.visibility)
    return msg


def shot_from_pb(msg: shot_pb2.Shot) -> Shot:
    """Build a Shot from its message; array sizes are checked here, the rest
    by ``validate_shot``."""
    frames = tuple(frame_from_pb(f, i) for i, f in enumerate(msg.frames))
    return shot_fields_from_pb(msg, frames)


def shot_fields_from_pb(msg: shot_pb2.Shot, frames: tuple[Frame, ...]) -> Shot:
    """The shot's own fields from ``msg``, with ``frames`` (built separately)."""
    return Shot(
        tags=Tags(msg.tags.project, msg.tags.shot, msg.tags.version),
        fps=Fps(msg.fps.numerator, msg.fps.denominator),
        width=msg.resolution.width,
        height=msg.resolution.height,
        frames=frames,
        frame_start=msg.frame_start,
        depth_background=_PB_TO_BG.get(msg.depth_background, f"unknown({msg.depth_background})"),
        pass_methods=dict(msg.pass_methods),
        source=msg.source,
    )


def frame_from_pb(f: shot_pb2.Frame, i: int) -> Frame:
    """Frame ``i`` of a shot from its message."""
    where = f"frames[{i}]"
    cam = f.camera
    if len(cam.world_matrix) != 16:
        raise ShotValidationError(f"{where}.camera.world_matrix",
                                  f"must hold 16 numbers (4x4 row-major), got {len(cam.world_matrix)}")
    camera = CameraSample(
        world_matrix=np.array(cam.world_matrix, dtype=np.float64).reshape(4, 4),
        focal_length_mm=cam.focal_length_mm,
        sensor_width_mm=cam.sensor_width_mm,
        sensor_height_mm=cam.sensor_height_mm,
        sensor_fit=_PB_TO_FIT.get(cam.sensor_fit, f"unknown({cam.sensor_fit})"),
        clip_start_m=cam.clip_start_m,
        clip_end_m=cam.clip_end_m,
        focus_distance_m=cam.focus_distance_m,
    )
    arrays = {
        name: array_from_pb(getattr(f, name), f"{where}.{name}") if _present(f, name) else None
        for name in Frame.ARRAY_FIELDS
    }
    poses = tuple(
        CharacterPose(
            name=p.name,
            keypoints_px=array_from_pb(p.keypoints_px, f"{where}.poses[{j}].keypoints_px"),
            visibility=array_from_pb(p.visibility, f"{where}.poses[{j}].visibility"),
        )
        for j, p in enumerate(f.poses)
    )
    return Frame(index=f.index, camera=camera, poses=poses, **arrays)


# ------------------------------------------------------------------ requests
# bridge_pb2 needs only protobuf; imported here so ``shot_pb2`` users don't pay.
from datetime import UTC  # noqa: E402

from ..proto.greenlight.v1 import bridge_pb2  # noqa: E402
from .request import ControlSettings, GenerationSettings, SchedulingSettings, TemporalSettings  # noqa: E402

_CLASS_TO_PB = {"interactive": bridge_pb2.JOB_CLASS_INTERACTIVE, "batch": bridge_pb2.JOB_CLASS_BATCH}
_PB_TO_CLASS = {v: k for k, v in _CLASS_TO_PB.items()}
_PB_TO_CLASS[bridge_pb2.JOB_CLASS_UNSPECIFIED] = "interactive"


def generation_to_pb(gen: GenerationSettings) -> bridge_pb2.GenerationRequest:
    msg = bridge_pb2.GenerationRequest(
        backend=gen.backend, prompt=gen.prompt, negative_prompt=gen.negative_prompt,
        seed=gen.seed, steps=gen.steps, guidance_scale=gen.guidance_scale,
        preview_every_n_steps=gen.preview_every_n_steps, model_profile=gen.model_profile,
        quality=gen.quality,
    )
    if gen.output_width or gen.output_height:
        msg.output_resolution.width = gen.output_width
        msg.output_resolution.height = gen.output_height
    for c in gen.controls:
        msg.controls.add(kind=c.kind, enabled=c.enabled, strength=c.strength,
                         guidance_start=c.guidance_start, guidance_end=c.guidance_end)
    if gen.temporal != TemporalSettings():
        t = gen.temporal
        msg.temporal.CopyFrom(bridge_pb2.TemporalSettings(mode=t.mode, strength=t.strength,
                                                          step_start=t.step_start, step_end=t.step_end))
    return msg


def generation_from_pb(msg: bridge_pb2.GenerationRequest) -> GenerationSettings:
    return GenerationSettings(
        backend=msg.backend, prompt=msg.prompt, negative_prompt=msg.negative_prompt,
        seed=msg.seed, steps=msg.steps, guidance_scale=msg.guidance_scale,
        controls=tuple(ControlSettings(c.kind, c.enabled, c.strength, c.guidance_start, c.guidance_end)
                       for c in msg.controls),
        output_width=msg.output_resolution.width, output_height=msg.output_resolution.height,
        preview_every_n_steps=msg.preview_every_n_steps, model_profile=msg.model_profile,
        quality=msg.quality,
        temporal=_temporal_from_pb(msg),
    )


def _temporal_from_pb(msg: bridge_pb2.GenerationRequest) -> TemporalSettings:
    if not msg.HasField("temporal"):
        return TemporalSettings()
    t = msg.temporal   # float fields: values travel as float32 (0.7 comes back as 0.699999988...)
    return TemporalSettings(mode=t.mode or "off", strength=t.strength, step_start=t.step_start, step_end=t.step_end)


def scheduling_to_pb(sched: SchedulingSettings) -> bridge_pb2.SchedulingRequest:
    msg = bridge_pb2.SchedulingRequest(job_class=_CLASS_TO_PB[sched.job_class],
                                       allowed_sites=list(sched.allowed_sites))
    if sched.deadline is not None:
        msg.deadline.FromDatetime(sched.deadline.astimezone(UTC))
    if sched.max_co2e_g is not None:
        msg.max_co2e_g = sched.max_co2e_g
    return msg


def scheduling_from_pb(msg: bridge_pb2.SchedulingRequest) -> SchedulingSettings:
    deadline = None
    if msg.HasField("deadline"):
        try:
            deadline = msg.deadline.ToDatetime(tzinfo=UTC)
        except (ValueError, OverflowError, OSError):
            raise InvalidArgumentError(
                f"scheduling.deadline: {msg.deadline.seconds} s, {msg.deadline.nanos} ns is not a valid time "
                "(years 1-9999 UTC, nanos 0-999999999)", field="scheduling.deadline") from None
    return SchedulingSettings(
        job_class=_PB_TO_CLASS.get(msg.job_class, f"unknown({msg.job_class})"),
        deadline=deadline,
        allowed_sites=tuple(msg.allowed_sites),
        max_co2e_g=msg.max_co2e_g if msg.HasField("max_co2e_g") else None,
    )
