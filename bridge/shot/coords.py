"""THE Unreal <-> canonical conversion (STYLE practice 4): positions,
rotations, transforms and CineCamera lens values. numpy only.

Canonical space (DESIGN section 5): right-handed, Z-up, metres; a camera
looks down its local -Z with +Y up and +X right.

Unreal space: left-handed, Z-up, centimetres; X forward, Y right. A camera
(CameraComponent / CineCameraComponent) looks down its local +X with +Z up
and +Y right. A point converts as ``(x, y, z) cm <-> (x/100, -y/100, z/100) m``
(mirror Y, scale 0.01); every function here is that one mirror applied
consistently.

Rotations are ``FRotator`` values in degrees, named as Unreal names them:
``pitch`` (about +Y, positive = nose up), ``yaw`` (about +Z, positive = turn
from +X toward +Y), ``roll`` (about +X). Their matrix is Unreal's
``FRotationMatrix``: the rotated X, Y and Z axes are

    X = ( cp*cy,               cp*sy,               sp     )
    Y = ( sr*sp*cy - cr*sy,    sr*sp*sy + cr*cy,    -sr*cp )
    Z = ( -(cr*sp*cy + sr*sy), cy*sr - cr*sp*sy,    cr*cp  )

(s/c = sin/cos of p = pitch, y = yaw, r = roll), so yaw 90 turns X onto +Y
and pitch -90 points X straight down. Angles come back from matrices the
way ``FMatrix::Rotator`` computes them: pitch in [-90, 90], yaw and roll in
(-180, 180].

Lens: a CineCamera's horizontal field of view is set by the filmback width
and the focal length (``FOV = 2 atan(sensor_width / 2f)``), kept when the
render's aspect differs from the filmback's (the project default "Maintain
X-axis FOV"), which is ``CameraSample.sensor_fit = "HORIZONTAL"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidArgumentError
from .model import CameraSample

CM_PER_M = 100.0
# Mirror of the Y axis: Unreal <-> canonical (a reflection, det -1).
_MIRROR = np.diag([1.0, -1.0, 1.0])
_MIRROR4 = np.diag([1.0, -1.0, 1.0, 1.0])
_ASPECT_AXES = {"x": "HORIZONTAL", "y": "VERTICAL"}


@dataclass(frozen=True)
class Rotator:
    """An Unreal ``FRotator`` in degrees (left-handed; see the module docstring)."""

    pitch: float = 0.0
    yaw: float = 0.0
    roll: float = 0.0


@dataclass(frozen=True)
class UnrealTransform:
    """An Unreal ``FTransform``: location in cm, rotation, per-axis scale."""

    location_cm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rotation: Rotator = Rotator()
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)


# --------------------------------------------------------------- positions
def position_to_canonical(location_cm) -> np.ndarray:
    """Unreal cm [..., 3] -> canonical metres [..., 3]."""
    p = np.asarray(location_cm, dtype=np.float64)
    _check_last_dim(p, 3, "location_cm")
    return p * np.array([1.0, -1.0, 1.0]) / CM_PER_M


def position_to_unreal(position_m) -> np.ndarray:
    """Canonical metres [..., 3] -> Unreal cm [..., 3]."""
    p = np.asarray(position_m, dtype=np.float64)
    _check_last_dim(p, 3, "position_m")
    return p * np.array([1.0, -1.0, 1.0]) * CM_PER_M


def direction_to_canonical(vector) -> np.ndarray:
    """A unitless Unreal direction [..., 3] -> canonical (no scaling)."""
    v = np.asarray(vector, dtype=np.float64)
    _check_last_dim(v, 3, "vector")
    return v * np.array([1.0, -1.0, 1.0])


# --------------------------------------------------------------- rotations
def rotator_to_matrix(rotator: Rotator) -> np.ndarray:
    """3x3 matrix whose COLUMNS are the rotated Unreal X, Y, Z axes, in
    Unreal world coordinates (Unreal stores them as rows; this module uses
    column vectors throughout)."""
    p, y, r = (math.radians(a) for a in (rotator.pitch, rotator.yaw, rotator.roll))
    sp, cp, sy, cy, sr, cr = math.sin(p), math.cos(p), math.sin(y), math.cos(y), math.sin(r), math.cos(r)
    x_axis = (cp * cy, cp * sy, sp)
    y_axis = (sr * sp * cy - cr * sy, sr * sp * sy + cr * cy, -sr * cp)
    z_axis = (-(cr * sp * cy + sr * sy), cy * sr - cr * sp * sy, cr * cp)
    return np.array([x_axis, y_axis, z_axis]).T


def matrix_to_rotator(matrix) -> Rotator:
    """Inverse of ``rotator_to_matrix`` for a proper rotation (columns =
    Unreal X, Y, Z axes), computed as ``FMatrix::Rotator`` does."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (3, 3):
        raise InvalidArgumentError(f"rotation matrix must be 3x3, got shape {m.shape}")
    _check_rotation(m, "rotation matrix")
    x_axis, y_axis, z_axis = m[:, 0], m[:, 1], m[:, 2]
    pitch = math.atan2(x_axis[2], math.hypot(x_axis[0], x_axis[1]))
    yaw = math.atan2(x_axis[1], x_axis[0])
    # Y axis of the same pitch/yaw with zero roll; roll is the angle from it.
    sy, cy = math.sin(yaw), math.cos(yaw)
    y0 = np.array([-sy, cy, 0.0])
    roll = math.atan2(float(z_axis @ y0), float(y_axis @ y0))
    return Rotator(math.degrees(pitch), math.degrees(yaw), math.degrees(roll))


# --------------------------------------------------------------- cameras
def camera_to_canonical(location_cm, rotation: Rotator) -> np.ndarray:
    """Canonical camera-to-world 4x4 (metres; looks -Z, +Y up) of an Unreal
    camera at ``location_cm`` with ``rotation``.

    Scale is deliberately not an argument: Unreal builds a camera's view from
    its location and rotation only, so a scaled camera actor renders the
    same image. Pass the component's world location and rotation.
    """
    # annotated: numpy's stubs resolve ``@`` of two untyped-dtype arrays to its bool overload
    axes: np.ndarray = _MIRROR @ rotator_to_matrix(rotation)       # Unreal X, Y, Z in canonical coordinates
    forward, right, up = axes[:, 0], axes[:, 1], axes[:, 2]
    m = np.eye(4)
    m[:3, 0] = right
    m[:3, 1] = up
    m[:3, 2] = -forward
    m[:3, 3] = position_to_canonical(location_cm)
    return m


def camera_to_unreal(world_matrix) -> tuple[np.ndarray, Rotator]:
    """(location cm, rotation) of the Unreal camera equal to a canonical
    camera-to-world matrix. Refuses matrices with scale or shear."""
    m = _check_matrix(world_matrix, "camera world_matrix")
    rot = m[:3, :3]
    _check_rotation(rot, "camera world_matrix rotation (scale or shear is not a camera pose)")
    right, up, back = rot[:, 0], rot[:, 1], rot[:, 2]
    ue_axes = _MIRROR @ np.stack([-back, right, up], axis=1)
    return position_to_unreal(m[:3, 3]), matrix_to_rotator(ue_axes)


# --------------------------------------------------------------- objects
def transform_to_canonical(transform: UnrealTransform) -> np.ndarray:
    """Canonical 4x4 object-to-world matrix (metres) of an Unreal transform,
    scale included: for any local point ``p`` in cm,
    ``to_canonical(T(p)) == M @ to_canonical(p)``. Zero scale is refused."""
    scale = np.asarray(transform.scale, dtype=np.float64)
    _check_last_dim(scale, 3, "scale")
    if np.any(np.abs(scale) < 1e-12) or not np.all(np.isfinite(scale)):
        raise InvalidArgumentError(f"transform scale must be finite and non-zero on every axis, got {tuple(scale)}")
    linear = rotator_to_matrix(transform.rotation) @ np.diag(scale)
    m = np.eye(4)
    m[:3, :3] = _MIRROR @ linear @ _MIRROR
    m[:3, 3] = position_to_canonical(transform.location_cm)
    return m


def transform_to_unreal(matrix) -> UnrealTransform:
    """Inverse of ``transform_to_canonical``. A mirroring matrix (negative
    determinant) comes back with a negative X scale, as Unreal decomposes
    it. Shear cannot be expressed by an FTransform and is refused."""
    m = _check_matrix(matrix, "object matrix")
    linear = _MIRROR @ m[:3, :3] @ _MIRROR
    scale = np.linalg.norm(linear, axis=0)
    if np.any(scale < 1e-12):
        raise InvalidArgumentError(f"object matrix has zero scale on an axis (column norms {tuple(scale)})")
    if np.linalg.det(linear) < 0:
        scale[0] = -scale[0]
    rot = linear / scale
    if not np.allclose(rot.T @ rot, np.eye(3), atol=1e-6):
        raise InvalidArgumentError("object matrix has shear; an Unreal FTransform cannot represent it")
    return UnrealTransform(tuple(position_to_unreal(m[:3, 3])), matrix_to_rotator(rot), tuple(scale))


# --------------------------------------------------------------- lens
def cine_camera_sample(world_matrix, focal_length_mm: float, sensor_width_mm: float, sensor_height_mm: float,
                       focus_distance_cm: float = 0.0, aspect_axis: str = "x", near_clip_cm: float = 10.0,
                       far_clip_cm: float = 1.0e6) -> CameraSample:
    """A ``CameraSample`` from CineCamera values in Unreal units (filmback
    and focal length mm, focus distance and clip planes cm).

    ``aspect_axis``: ``"x"`` keeps the horizontal field of view when the
    render aspect differs from the filmback (Unreal's default), ``"y"`` the
    vertical one. Unreal's near plane is global (``r.SetNearClipPlane``,
    10 cm by default) and its far plane infinite: pass what the project uses.
    """
    if aspect_axis not in _ASPECT_AXES:
        raise InvalidArgumentError(f"aspect_axis must be one of {sorted(_ASPECT_AXES)}, got {aspect_axis!r}")
    for name, value in (("focal_length_mm", focal_length_mm), ("sensor_width_mm", sensor_width_mm),
                        ("sensor_height_mm", sensor_height_mm), ("near_clip_cm", near_clip_cm)):
        if not (math.isfinite(value) and value > 0):
            raise InvalidArgumentError(f"{name} must be > 0, got {value}")
    if not (math.isfinite(focus_distance_cm) and focus_distance_cm >= 0):
        raise InvalidArgumentError(f"focus_distance_cm must be >= 0, got {focus_distance_cm}")
    if not far_clip_cm > near_clip_cm:
        raise InvalidArgumentError(f"far_clip_cm ({far_clip_cm}) must be > near_clip_cm ({near_clip_cm})")
    return CameraSample(
        world_matrix=np.asarray(world_matrix, dtype=np.float64),
        focal_length_mm=float(focal_length_mm),
        sensor_width_mm=float(sensor_width_mm),
        sensor_height_mm=float(sensor_height_mm),
        sensor_fit=_ASPECT_AXES[aspect_axis],
        clip_start_m=near_clip_cm / CM_PER_M,
        clip_end_m=far_clip_cm / CM_PER_M,
        focus_distance_m=focus_distance_cm / CM_PER_M,
    )


def horizontal_fov_deg(focal_length_mm: float, sensor_width_mm: float) -> float:
    """Unreal's CineCamera horizontal field of view, degrees."""
    return math.degrees(2.0 * math.atan(sensor_width_mm / (2.0 * focal_length_mm)))


def filmback_aspect_mismatch(sensor_width_mm: float, sensor_height_mm: float, width: int, height: int) -> float:
    """Relative difference between the filmback and render aspect ratios
    (0 when they match); above ~0.5 % one axis is cropped or letterboxed."""
    return abs((sensor_width_mm / sensor_height_mm) / (width / height) - 1.0)


# --------------------------------------------------------------- checks
def _check_last_dim(a: np.ndarray, n: int, what: str) -> None:
    if a.ndim == 0 or a.shape[-1] != n:
        raise InvalidArgumentError(f"{what} must have {n} components in its last axis, got shape {a.shape}")


def _check_matrix(matrix, what: str) -> np.ndarray:
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (4, 4):
        raise InvalidArgumentError(f"{what} must be 4x4, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise InvalidArgumentError(f"{what} contains NaN or infinite values")
    if not np.allclose(m[3], (0.0, 0.0, 0.0, 1.0), atol=1e-9):
        raise InvalidArgumentError(f"{what} last row must be (0, 0, 0, 1), got {tuple(m[3])}")
    return m


def _check_rotation(r: np.ndarray, what: str) -> None:
    if not np.allclose(r.T @ r, np.eye(3), atol=1e-6) or np.linalg.det(r) < 0:
        raise InvalidArgumentError(f"{what} must be a proper rotation (orthonormal, det +1)")
