import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from bridge.proto.greenlight.v1 import shot_pb2 as _shot_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobClass(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_CLASS_UNSPECIFIED: _ClassVar[JobClass]
    JOB_CLASS_INTERACTIVE: _ClassVar[JobClass]
    JOB_CLASS_BATCH: _ClassVar[JobClass]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_SCHEDULED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_COMPLETED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]

class ImageEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IMAGE_ENCODING_UNSPECIFIED: _ClassVar[ImageEncoding]
    IMAGE_ENCODING_PNG: _ClassVar[ImageEncoding]
    IMAGE_ENCODING_EXR: _ClassVar[ImageEncoding]
JOB_CLASS_UNSPECIFIED: JobClass
JOB_CLASS_INTERACTIVE: JobClass
JOB_CLASS_BATCH: JobClass
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_SCHEDULED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_COMPLETED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState
IMAGE_ENCODING_UNSPECIFIED: ImageEncoding
IMAGE_ENCODING_PNG: ImageEncoding
IMAGE_ENCODING_EXR: ImageEncoding

class ControlSettings(_message.Message):
    __slots__ = ("kind", "enabled", "strength", "guidance_start", "guidance_end")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    STRENGTH_FIELD_NUMBER: _ClassVar[int]
    GUIDANCE_START_FIELD_NUMBER: _ClassVar[int]
    GUIDANCE_END_FIELD_NUMBER: _ClassVar[int]
    kind: str
    enabled: bool
    strength: float
    guidance_start: float
    guidance_end: float
    def __init__(self, kind: _Optional[str] = ..., enabled: _Optional[bool] = ..., strength: _Optional[float] = ..., guidance_start: _Optional[float] = ..., guidance_end: _Optional[float] = ...) -> None: ...

class GenerationRequest(_message.Message):
    __slots__ = ("backend", "prompt", "negative_prompt", "seed", "steps", "guidance_scale", "controls", "output_resolution", "preview_every_n_steps", "model_profile", "quality", "temporal")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    GUIDANCE_SCALE_FIELD_NUMBER: _ClassVar[int]
    CONTROLS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_EVERY_N_STEPS_FIELD_NUMBER: _ClassVar[int]
    MODEL_PROFILE_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    TEMPORAL_FIELD_NUMBER: _ClassVar[int]
    backend: str
    prompt: str
    negative_prompt: str
    seed: int
    steps: int
    guidance_scale: float
    controls: _containers.RepeatedCompositeFieldContainer[ControlSettings]
    output_resolution: _shot_pb2.Resolution
    preview_every_n_steps: int
    model_profile: str
    quality: str
    temporal: TemporalSettings
    def __init__(self, backend: _Optional[str] = ..., prompt: _Optional[str] = ..., negative_prompt: _Optional[str] = ..., seed: _Optional[int] = ..., steps: _Optional[int] = ..., guidance_scale: _Optional[float] = ..., controls: _Optional[_Iterable[_Union[ControlSettings, _Mapping]]] = ..., output_resolution: _Optional[_Union[_shot_pb2.Resolution, _Mapping]] = ..., preview_every_n_steps: _Optional[int] = ..., model_profile: _Optional[str] = ..., quality: _Optional[str] = ..., temporal: _Optional[_Union[TemporalSettings, _Mapping]] = ...) -> None: ...

class TemporalSettings(_message.Message):
    __slots__ = ("mode", "strength", "step_start", "step_end")
    MODE_FIELD_NUMBER: _ClassVar[int]
    STRENGTH_FIELD_NUMBER: _ClassVar[int]
    STEP_START_FIELD_NUMBER: _ClassVar[int]
    STEP_END_FIELD_NUMBER: _ClassVar[int]
    mode: str
    strength: float
    step_start: float
    step_end: float
    def __init__(self, mode: _Optional[str] = ..., strength: _Optional[float] = ..., step_start: _Optional[float] = ..., step_end: _Optional[float] = ...) -> None: ...

class SchedulingRequest(_message.Message):
    __slots__ = ("job_class", "deadline", "allowed_sites", "max_co2e_g")
    JOB_CLASS_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_SITES_FIELD_NUMBER: _ClassVar[int]
    MAX_CO2E_G_FIELD_NUMBER: _ClassVar[int]
    job_class: JobClass
    deadline: _timestamp_pb2.Timestamp
    allowed_sites: _containers.RepeatedScalarFieldContainer[str]
    max_co2e_g: float
    def __init__(self, job_class: _Optional[_Union[JobClass, str]] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., allowed_sites: _Optional[_Iterable[str]] = ..., max_co2e_g: _Optional[float] = ...) -> None: ...

class SubmitHeader(_message.Message):
    __slots__ = ("request_id", "generation", "scheduling", "shot_bytes", "shot_sha256", "project", "frame_count", "resolution")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    SCHEDULING_FIELD_NUMBER: _ClassVar[int]
    SHOT_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHOT_SHA256_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    FRAME_COUNT_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    generation: GenerationRequest
    scheduling: SchedulingRequest
    shot_bytes: int
    shot_sha256: bytes
    project: str
    frame_count: int
    resolution: _shot_pb2.Resolution
    def __init__(self, request_id: _Optional[str] = ..., generation: _Optional[_Union[GenerationRequest, _Mapping]] = ..., scheduling: _Optional[_Union[SchedulingRequest, _Mapping]] = ..., shot_bytes: _Optional[int] = ..., shot_sha256: _Optional[bytes] = ..., project: _Optional[str] = ..., frame_count: _Optional[int] = ..., resolution: _Optional[_Union[_shot_pb2.Resolution, _Mapping]] = ...) -> None: ...

class SubmitChunk(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: SubmitHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[SubmitHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id", "from_frame", "include_previews")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_FRAME_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PREVIEWS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    from_frame: int
    include_previews: bool
    def __init__(self, job_id: _Optional[str] = ..., from_frame: _Optional[int] = ..., include_previews: _Optional[bool] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id", "reason")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    reason: str
    def __init__(self, job_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RunJobNowRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetReportRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetCapabilitiesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeleteJobRequest(_message.Message):
    __slots__ = ("job_id", "reason")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    reason: str
    def __init__(self, job_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class DeleteJobResponse(_message.Message):
    __slots__ = ("job_id", "bytes_freed")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    BYTES_FREED_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    bytes_freed: int
    def __init__(self, job_id: _Optional[str] = ..., bytes_freed: _Optional[int] = ...) -> None: ...

class EstimateJobRequest(_message.Message):
    __slots__ = ("project", "frame_count", "resolution", "generation", "scheduling")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    FRAME_COUNT_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    SCHEDULING_FIELD_NUMBER: _ClassVar[int]
    project: str
    frame_count: int
    resolution: _shot_pb2.Resolution
    generation: GenerationRequest
    scheduling: SchedulingRequest
    def __init__(self, project: _Optional[str] = ..., frame_count: _Optional[int] = ..., resolution: _Optional[_Union[_shot_pb2.Resolution, _Mapping]] = ..., generation: _Optional[_Union[GenerationRequest, _Mapping]] = ..., scheduling: _Optional[_Union[SchedulingRequest, _Mapping]] = ...) -> None: ...

class JobEstimate(_message.Message):
    __slots__ = ("wall_s", "energy_wh", "co2e_g", "scheduling", "basis")
    WALL_S_FIELD_NUMBER: _ClassVar[int]
    ENERGY_WH_FIELD_NUMBER: _ClassVar[int]
    CO2E_G_FIELD_NUMBER: _ClassVar[int]
    SCHEDULING_FIELD_NUMBER: _ClassVar[int]
    BASIS_FIELD_NUMBER: _ClassVar[int]
    wall_s: float
    energy_wh: float
    co2e_g: float
    scheduling: SchedulingDecision
    basis: str
    def __init__(self, wall_s: _Optional[float] = ..., energy_wh: _Optional[float] = ..., co2e_g: _Optional[float] = ..., scheduling: _Optional[_Union[SchedulingDecision, _Mapping]] = ..., basis: _Optional[str] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("project", "limit")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    project: str
    limit: int
    def __init__(self, project: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class SchedulingDecision(_message.Message):
    __slots__ = ("site", "planned_start", "expected_co2e_g", "run_now_co2e_g", "reason")
    SITE_FIELD_NUMBER: _ClassVar[int]
    PLANNED_START_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_CO2E_G_FIELD_NUMBER: _ClassVar[int]
    RUN_NOW_CO2E_G_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    site: str
    planned_start: _timestamp_pb2.Timestamp
    expected_co2e_g: float
    run_now_co2e_g: float
    reason: str
    def __init__(self, site: _Optional[str] = ..., planned_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expected_co2e_g: _Optional[float] = ..., run_now_co2e_g: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class JobStatus(_message.Message):
    __slots__ = ("job_id", "tags", "state", "state_reason", "backend", "frame_count", "frames_done", "created", "updated", "scheduling", "request_id", "attempts")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_REASON_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    FRAME_COUNT_FIELD_NUMBER: _ClassVar[int]
    FRAMES_DONE_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    SCHEDULING_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    tags: _shot_pb2.Tags
    state: JobState
    state_reason: str
    backend: str
    frame_count: int
    frames_done: int
    created: _timestamp_pb2.Timestamp
    updated: _timestamp_pb2.Timestamp
    scheduling: SchedulingDecision
    request_id: str
    attempts: int
    def __init__(self, job_id: _Optional[str] = ..., tags: _Optional[_Union[_shot_pb2.Tags, _Mapping]] = ..., state: _Optional[_Union[JobState, str]] = ..., state_reason: _Optional[str] = ..., backend: _Optional[str] = ..., frame_count: _Optional[int] = ..., frames_done: _Optional[int] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., scheduling: _Optional[_Union[SchedulingDecision, _Mapping]] = ..., request_id: _Optional[str] = ..., attempts: _Optional[int] = ...) -> None: ...

class JobAccepted(_message.Message):
    __slots__ = ("job", "duplicate")
    JOB_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    job: JobStatus
    duplicate: bool
    def __init__(self, job: _Optional[_Union[JobStatus, _Mapping]] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[JobStatus]
    def __init__(self, jobs: _Optional[_Iterable[_Union[JobStatus, _Mapping]]] = ...) -> None: ...

class Energy(_message.Message):
    __slots__ = ("energy_wh", "measured", "meter", "co2e_g_location", "co2e_g_market", "site", "intensity_g_per_kwh", "intensity_source", "attempt", "pue", "work", "intensity_kind")
    ENERGY_WH_FIELD_NUMBER: _ClassVar[int]
    MEASURED_FIELD_NUMBER: _ClassVar[int]
    METER_FIELD_NUMBER: _ClassVar[int]
    CO2E_G_LOCATION_FIELD_NUMBER: _ClassVar[int]
    CO2E_G_MARKET_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    INTENSITY_G_PER_KWH_FIELD_NUMBER: _ClassVar[int]
    INTENSITY_SOURCE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    PUE_FIELD_NUMBER: _ClassVar[int]
    WORK_FIELD_NUMBER: _ClassVar[int]
    INTENSITY_KIND_FIELD_NUMBER: _ClassVar[int]
    energy_wh: float
    measured: bool
    meter: str
    co2e_g_location: float
    co2e_g_market: float
    site: str
    intensity_g_per_kwh: float
    intensity_source: str
    attempt: int
    pue: float
    work: float
    intensity_kind: str
    def __init__(self, energy_wh: _Optional[float] = ..., measured: _Optional[bool] = ..., meter: _Optional[str] = ..., co2e_g_location: _Optional[float] = ..., co2e_g_market: _Optional[float] = ..., site: _Optional[str] = ..., intensity_g_per_kwh: _Optional[float] = ..., intensity_source: _Optional[str] = ..., attempt: _Optional[int] = ..., pue: _Optional[float] = ..., work: _Optional[float] = ..., intensity_kind: _Optional[str] = ...) -> None: ...

class Image(_message.Message):
    __slots__ = ("encoding", "width", "height", "data")
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    encoding: ImageEncoding
    width: int
    height: int
    data: bytes
    def __init__(self, encoding: _Optional[_Union[ImageEncoding, str]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("step", "total_steps", "frames_done", "elapsed_s", "eta_s", "energy_wh_so_far", "stage")
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_DONE_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_S_FIELD_NUMBER: _ClassVar[int]
    ETA_S_FIELD_NUMBER: _ClassVar[int]
    ENERGY_WH_SO_FAR_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    step: int
    total_steps: int
    frames_done: int
    elapsed_s: float
    eta_s: float
    energy_wh_so_far: float
    stage: str
    def __init__(self, step: _Optional[int] = ..., total_steps: _Optional[int] = ..., frames_done: _Optional[int] = ..., elapsed_s: _Optional[float] = ..., eta_s: _Optional[float] = ..., energy_wh_so_far: _Optional[float] = ..., stage: _Optional[str] = ...) -> None: ...

class PreviewFrame(_message.Message):
    __slots__ = ("index", "step", "image")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    index: int
    step: int
    image: Image
    def __init__(self, index: _Optional[int] = ..., step: _Optional[int] = ..., image: _Optional[_Union[Image, _Mapping]] = ...) -> None: ...

class FrameResult(_message.Message):
    __slots__ = ("index", "image", "energy")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    ENERGY_FIELD_NUMBER: _ClassVar[int]
    index: int
    image: Image
    energy: Energy
    def __init__(self, index: _Optional[int] = ..., image: _Optional[_Union[Image, _Mapping]] = ..., energy: _Optional[_Union[Energy, _Mapping]] = ...) -> None: ...

class JobReport(_message.Message):
    __slots__ = ("job_id", "tags", "backend", "state", "frames", "fps", "wall_s", "energy", "pue", "facility_energy_wh", "wue_l_per_kwh", "water_l", "site", "grid_region", "intensity_g_per_kwh", "intensity_source", "embodied_co2e_g", "sci", "sci_unit", "functional_units", "json", "temporal", "recipe_hash")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    WALL_S_FIELD_NUMBER: _ClassVar[int]
    ENERGY_FIELD_NUMBER: _ClassVar[int]
    PUE_FIELD_NUMBER: _ClassVar[int]
    FACILITY_ENERGY_WH_FIELD_NUMBER: _ClassVar[int]
    WUE_L_PER_KWH_FIELD_NUMBER: _ClassVar[int]
    WATER_L_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    GRID_REGION_FIELD_NUMBER: _ClassVar[int]
    INTENSITY_G_PER_KWH_FIELD_NUMBER: _ClassVar[int]
    INTENSITY_SOURCE_FIELD_NUMBER: _ClassVar[int]
    EMBODIED_CO2E_G_FIELD_NUMBER: _ClassVar[int]
    SCI_FIELD_NUMBER: _ClassVar[int]
    SCI_UNIT_FIELD_NUMBER: _ClassVar[int]
    FUNCTIONAL_UNITS_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    TEMPORAL_FIELD_NUMBER: _ClassVar[int]
    RECIPE_HASH_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    tags: _shot_pb2.Tags
    backend: str
    state: JobState
    frames: int
    fps: _shot_pb2.Rational
    wall_s: float
    energy: Energy
    pue: float
    facility_energy_wh: float
    wue_l_per_kwh: float
    water_l: float
    site: str
    grid_region: str
    intensity_g_per_kwh: float
    intensity_source: str
    embodied_co2e_g: float
    sci: float
    sci_unit: str
    functional_units: float
    json: str
    temporal: TemporalConsistency
    recipe_hash: str
    def __init__(self, job_id: _Optional[str] = ..., tags: _Optional[_Union[_shot_pb2.Tags, _Mapping]] = ..., backend: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., frames: _Optional[int] = ..., fps: _Optional[_Union[_shot_pb2.Rational, _Mapping]] = ..., wall_s: _Optional[float] = ..., energy: _Optional[_Union[Energy, _Mapping]] = ..., pue: _Optional[float] = ..., facility_energy_wh: _Optional[float] = ..., wue_l_per_kwh: _Optional[float] = ..., water_l: _Optional[float] = ..., site: _Optional[str] = ..., grid_region: _Optional[str] = ..., intensity_g_per_kwh: _Optional[float] = ..., intensity_source: _Optional[str] = ..., embodied_co2e_g: _Optional[float] = ..., sci: _Optional[float] = ..., sci_unit: _Optional[str] = ..., functional_units: _Optional[float] = ..., json: _Optional[str] = ..., temporal: _Optional[_Union[TemporalConsistency, _Mapping]] = ..., recipe_hash: _Optional[str] = ...) -> None: ...

class TemporalConsistency(_message.Message):
    __slots__ = ("computed", "reason", "method", "gap1", "trajectory", "window", "valid_fraction", "control_adherence")
    COMPUTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    GAP1_FIELD_NUMBER: _ClassVar[int]
    TRAJECTORY_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    VALID_FRACTION_FIELD_NUMBER: _ClassVar[int]
    CONTROL_ADHERENCE_FIELD_NUMBER: _ClassVar[int]
    computed: bool
    reason: str
    method: str
    gap1: float
    trajectory: float
    window: int
    valid_fraction: float
    control_adherence: float
    def __init__(self, computed: _Optional[bool] = ..., reason: _Optional[str] = ..., method: _Optional[str] = ..., gap1: _Optional[float] = ..., trajectory: _Optional[float] = ..., window: _Optional[int] = ..., valid_fraction: _Optional[float] = ..., control_adherence: _Optional[float] = ...) -> None: ...

class JobCompleted(_message.Message):
    __slots__ = ("report",)
    REPORT_FIELD_NUMBER: _ClassVar[int]
    report: JobReport
    def __init__(self, report: _Optional[_Union[JobReport, _Mapping]] = ...) -> None: ...

class JobFailed(_message.Message):
    __slots__ = ("message", "code")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    message: str
    code: str
    def __init__(self, message: _Optional[str] = ..., code: _Optional[str] = ...) -> None: ...

class JobCancelled(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("job_id", "time", "status", "progress", "preview", "frame", "completed", "failed", "cancelled")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    time: _timestamp_pb2.Timestamp
    status: JobStatus
    progress: Progress
    preview: PreviewFrame
    frame: FrameResult
    completed: JobCompleted
    failed: JobFailed
    cancelled: JobCancelled
    def __init__(self, job_id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[_Union[JobStatus, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., preview: _Optional[_Union[PreviewFrame, _Mapping]] = ..., frame: _Optional[_Union[FrameResult, _Mapping]] = ..., completed: _Optional[_Union[JobCompleted, _Mapping]] = ..., failed: _Optional[_Union[JobFailed, _Mapping]] = ..., cancelled: _Optional[_Union[JobCancelled, _Mapping]] = ...) -> None: ...

class BackendInfo(_message.Message):
    __slots__ = ("id", "description", "conditions", "max_frames", "max_width", "max_height", "devices", "available", "unavailable_reason", "quality_presets")
    ID_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_FRAMES_FIELD_NUMBER: _ClassVar[int]
    MAX_WIDTH_FIELD_NUMBER: _ClassVar[int]
    MAX_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_REASON_FIELD_NUMBER: _ClassVar[int]
    QUALITY_PRESETS_FIELD_NUMBER: _ClassVar[int]
    id: str
    description: str
    conditions: _containers.RepeatedScalarFieldContainer[str]
    max_frames: int
    max_width: int
    max_height: int
    devices: _containers.RepeatedScalarFieldContainer[str]
    available: bool
    unavailable_reason: str
    quality_presets: _containers.RepeatedCompositeFieldContainer[QualityPreset]
    def __init__(self, id: _Optional[str] = ..., description: _Optional[str] = ..., conditions: _Optional[_Iterable[str]] = ..., max_frames: _Optional[int] = ..., max_width: _Optional[int] = ..., max_height: _Optional[int] = ..., devices: _Optional[_Iterable[str]] = ..., available: _Optional[bool] = ..., unavailable_reason: _Optional[str] = ..., quality_presets: _Optional[_Iterable[_Union[QualityPreset, _Mapping]]] = ...) -> None: ...

class QualityPreset(_message.Message):
    __slots__ = ("name", "description", "relative_cost")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    RELATIVE_COST_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    relative_cost: float
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., relative_cost: _Optional[float] = ...) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_frames", "max_width", "max_height", "max_upload_bytes", "max_active_jobs_per_project", "max_chunk_bytes", "max_steps", "max_prompt_chars", "max_output_width", "max_output_height", "max_streams_per_client", "max_streams_per_project", "upload_idle_timeout_s", "min_free_disk_bytes")
    MAX_FRAMES_FIELD_NUMBER: _ClassVar[int]
    MAX_WIDTH_FIELD_NUMBER: _ClassVar[int]
    MAX_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    MAX_UPLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_ACTIVE_JOBS_PER_PROJECT_FIELD_NUMBER: _ClassVar[int]
    MAX_CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    MAX_PROMPT_CHARS_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_WIDTH_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    MAX_STREAMS_PER_CLIENT_FIELD_NUMBER: _ClassVar[int]
    MAX_STREAMS_PER_PROJECT_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_IDLE_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    MIN_FREE_DISK_BYTES_FIELD_NUMBER: _ClassVar[int]
    max_frames: int
    max_width: int
    max_height: int
    max_upload_bytes: int
    max_active_jobs_per_project: int
    max_chunk_bytes: int
    max_steps: int
    max_prompt_chars: int
    max_output_width: int
    max_output_height: int
    max_streams_per_client: int
    max_streams_per_project: int
    upload_idle_timeout_s: float
    min_free_disk_bytes: int
    def __init__(self, max_frames: _Optional[int] = ..., max_width: _Optional[int] = ..., max_height: _Optional[int] = ..., max_upload_bytes: _Optional[int] = ..., max_active_jobs_per_project: _Optional[int] = ..., max_chunk_bytes: _Optional[int] = ..., max_steps: _Optional[int] = ..., max_prompt_chars: _Optional[int] = ..., max_output_width: _Optional[int] = ..., max_output_height: _Optional[int] = ..., max_streams_per_client: _Optional[int] = ..., max_streams_per_project: _Optional[int] = ..., upload_idle_timeout_s: _Optional[float] = ..., min_free_disk_bytes: _Optional[int] = ...) -> None: ...

class SiteInfo(_message.Message):
    __slots__ = ("name", "grid_region", "pue", "wue_l_per_kwh")
    NAME_FIELD_NUMBER: _ClassVar[int]
    GRID_REGION_FIELD_NUMBER: _ClassVar[int]
    PUE_FIELD_NUMBER: _ClassVar[int]
    WUE_L_PER_KWH_FIELD_NUMBER: _ClassVar[int]
    name: str
    grid_region: str
    pue: float
    wue_l_per_kwh: float
    def __init__(self, name: _Optional[str] = ..., grid_region: _Optional[str] = ..., pue: _Optional[float] = ..., wue_l_per_kwh: _Optional[float] = ...) -> None: ...

class Capabilities(_message.Message):
    __slots__ = ("protocol_version", "server_version", "backends", "limits", "sites", "auth_required", "meter", "meter_reason")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    BACKENDS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    SITES_FIELD_NUMBER: _ClassVar[int]
    AUTH_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    METER_FIELD_NUMBER: _ClassVar[int]
    METER_REASON_FIELD_NUMBER: _ClassVar[int]
    protocol_version: str
    server_version: str
    backends: _containers.RepeatedCompositeFieldContainer[BackendInfo]
    limits: Limits
    sites: _containers.RepeatedCompositeFieldContainer[SiteInfo]
    auth_required: bool
    meter: str
    meter_reason: str
    def __init__(self, protocol_version: _Optional[str] = ..., server_version: _Optional[str] = ..., backends: _Optional[_Iterable[_Union[BackendInfo, _Mapping]]] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., sites: _Optional[_Iterable[_Union[SiteInfo, _Mapping]]] = ..., auth_required: _Optional[bool] = ..., meter: _Optional[str] = ..., meter_reason: _Optional[str] = ...) -> None: ...
