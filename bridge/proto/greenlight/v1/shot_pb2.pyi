from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SensorFit(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SENSOR_FIT_UNSPECIFIED: _ClassVar[SensorFit]
    SENSOR_FIT_AUTO: _ClassVar[SensorFit]
    SENSOR_FIT_HORIZONTAL: _ClassVar[SensorFit]
    SENSOR_FIT_VERTICAL: _ClassVar[SensorFit]

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    DTYPE_FLOAT32: _ClassVar[DType]
    DTYPE_FLOAT16: _ClassVar[DType]
    DTYPE_UINT8: _ClassVar[DType]
    DTYPE_UINT16: _ClassVar[DType]

class DepthBackground(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEPTH_BACKGROUND_UNSPECIFIED: _ClassVar[DepthBackground]
    DEPTH_BACKGROUND_INF: _ClassVar[DepthBackground]
    DEPTH_BACKGROUND_ZERO: _ClassVar[DepthBackground]
SENSOR_FIT_UNSPECIFIED: SensorFit
SENSOR_FIT_AUTO: SensorFit
SENSOR_FIT_HORIZONTAL: SensorFit
SENSOR_FIT_VERTICAL: SensorFit
DTYPE_UNSPECIFIED: DType
DTYPE_FLOAT32: DType
DTYPE_FLOAT16: DType
DTYPE_UINT8: DType
DTYPE_UINT16: DType
DEPTH_BACKGROUND_UNSPECIFIED: DepthBackground
DEPTH_BACKGROUND_INF: DepthBackground
DEPTH_BACKGROUND_ZERO: DepthBackground

class Tags(_message.Message):
    __slots__ = ("project", "shot", "version")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    SHOT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    project: str
    shot: str
    version: int
    def __init__(self, project: _Optional[str] = ..., shot: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class Rational(_message.Message):
    __slots__ = ("numerator", "denominator")
    NUMERATOR_FIELD_NUMBER: _ClassVar[int]
    DENOMINATOR_FIELD_NUMBER: _ClassVar[int]
    numerator: int
    denominator: int
    def __init__(self, numerator: _Optional[int] = ..., denominator: _Optional[int] = ...) -> None: ...

class Resolution(_message.Message):
    __slots__ = ("width", "height")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class CameraSample(_message.Message):
    __slots__ = ("world_matrix", "focal_length_mm", "sensor_width_mm", "sensor_height_mm", "sensor_fit", "clip_start_m", "clip_end_m", "focus_distance_m")
    WORLD_MATRIX_FIELD_NUMBER: _ClassVar[int]
    FOCAL_LENGTH_MM_FIELD_NUMBER: _ClassVar[int]
    SENSOR_WIDTH_MM_FIELD_NUMBER: _ClassVar[int]
    SENSOR_HEIGHT_MM_FIELD_NUMBER: _ClassVar[int]
    SENSOR_FIT_FIELD_NUMBER: _ClassVar[int]
    CLIP_START_M_FIELD_NUMBER: _ClassVar[int]
    CLIP_END_M_FIELD_NUMBER: _ClassVar[int]
    FOCUS_DISTANCE_M_FIELD_NUMBER: _ClassVar[int]
    world_matrix: _containers.RepeatedScalarFieldContainer[float]
    focal_length_mm: float
    sensor_width_mm: float
    sensor_height_mm: float
    sensor_fit: SensorFit
    clip_start_m: float
    clip_end_m: float
    focus_distance_m: float
    def __init__(self, world_matrix: _Optional[_Iterable[float]] = ..., focal_length_mm: _Optional[float] = ..., sensor_width_mm: _Optional[float] = ..., sensor_height_mm: _Optional[float] = ..., sensor_fit: _Optional[_Union[SensorFit, str]] = ..., clip_start_m: _Optional[float] = ..., clip_end_m: _Optional[float] = ..., focus_distance_m: _Optional[float] = ...) -> None: ...

class Array(_message.Message):
    __slots__ = ("dtype", "shape", "data")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    dtype: DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, dtype: _Optional[_Union[DType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class CharacterPose(_message.Message):
    __slots__ = ("name", "keypoints_px", "visibility")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KEYPOINTS_PX_FIELD_NUMBER: _ClassVar[int]
    VISIBILITY_FIELD_NUMBER: _ClassVar[int]
    name: str
    keypoints_px: Array
    visibility: Array
    def __init__(self, name: _Optional[str] = ..., keypoints_px: _Optional[_Union[Array, _Mapping]] = ..., visibility: _Optional[_Union[Array, _Mapping]] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("index", "camera", "depth_m", "motion_px", "poses", "normals", "mask")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    CAMERA_FIELD_NUMBER: _ClassVar[int]
    DEPTH_M_FIELD_NUMBER: _ClassVar[int]
    MOTION_PX_FIELD_NUMBER: _ClassVar[int]
    POSES_FIELD_NUMBER: _ClassVar[int]
    NORMALS_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    index: int
    camera: CameraSample
    depth_m: Array
    motion_px: Array
    poses: _containers.RepeatedCompositeFieldContainer[CharacterPose]
    normals: Array
    mask: Array
    def __init__(self, index: _Optional[int] = ..., camera: _Optional[_Union[CameraSample, _Mapping]] = ..., depth_m: _Optional[_Union[Array, _Mapping]] = ..., motion_px: _Optional[_Union[Array, _Mapping]] = ..., poses: _Optional[_Iterable[_Union[CharacterPose, _Mapping]]] = ..., normals: _Optional[_Union[Array, _Mapping]] = ..., mask: _Optional[_Union[Array, _Mapping]] = ...) -> None: ...

class Shot(_message.Message):
    __slots__ = ("tags", "fps", "resolution", "frame_start", "depth_background", "frames", "pass_methods", "source")
    class PassMethodsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TAGS_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    FRAME_START_FIELD_NUMBER: _ClassVar[int]
    DEPTH_BACKGROUND_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    PASS_METHODS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    tags: Tags
    fps: Rational
    resolution: Resolution
    frame_start: int
    depth_background: DepthBackground
    frames: _containers.RepeatedCompositeFieldContainer[Frame]
    pass_methods: _containers.ScalarMap[str, str]
    source: str
    def __init__(self, tags: _Optional[_Union[Tags, _Mapping]] = ..., fps: _Optional[_Union[Rational, _Mapping]] = ..., resolution: _Optional[_Union[Resolution, _Mapping]] = ..., frame_start: _Optional[int] = ..., depth_background: _Optional[_Union[DepthBackground, str]] = ..., frames: _Optional[_Iterable[_Union[Frame, _Mapping]]] = ..., pass_methods: _Optional[_Mapping[str, str]] = ..., source: _Optional[str] = ...) -> None: ...
