"""A shot's camera as USD (``usd-core``), both ways.

The exported stage is Z-up with ``metersPerUnit = 0.01`` (centimetres).
UsdGeomCamera measures focal length and apertures in *tenths of a scene
unit*, so on a centimetre stage they read directly as millimetres; clipping
range and focus distance are plain scene units (centimetres here). USD
cameras look down local -Z with +Y up, as canonical shot space does, so the
only conversion of the transform is metres -> centimetres on translation.

Time: one time code per engine frame (``frame_start + index``);
``timeCodesPerSecond`` and ``framesPerSecond`` are the shot fps as a float and
the exact fraction sits in the layer's ``customLayerData["greenlight"]``.

The schema attributes are ``float`` (32-bit). So that a round trip is exact,
the camera also carries float64 copies in the ``greenlight:`` namespace plus
the sensor size and fit (USD has no sensor-fit notion: the exported apertures
are the film back *at the shot aspect*). The importer uses a ``greenlight:``
value only where it agrees with the schema attribute to float precision, so a
file edited in another DCC is read from its schema attributes.

``pxr`` is imported inside functions: ``bridge.shot`` stays numpy-only at
import time (``pip install 'greenlight[usd]'`` adds it).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import GreenlightError, InvalidArgumentError
from .model import CameraSample, Fps, Frame, Shot, Tags
from .tags import safe_tag

log = logging.getLogger(__name__)

STAGE_METERS_PER_UNIT = 0.01       # centimetres: tenths of a unit are millimetres
CAMERA_NAME = "camera"
USD_SUFFIXES = (".usd", ".usda", ".usdc", ".usdz")
_NS = "greenlight:"
_FLOAT_RTOL = 2e-6                 # float32 has ~7 significant digits


def _pxr():
    try:
        from pxr import Gf, Sdf, Tf, Usd, UsdGeom
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise GreenlightError(
            "USD support needs the usd-core package: pip install 'greenlight[usd]' "
            "(or pip install usd-core)") from exc
    return Gf, Sdf, Tf, Usd, UsdGeom


# ------------------------------------------------------------------ helpers
def _effective_apertures_mm(cam: CameraSample, width: int, height: int) -> tuple[float, float]:
    """Film back (horizontal, vertical) in mm at the image aspect, following
    the sensor-fit rules of ``bridge.shot.camera.focal_length_px``."""
    fit = cam.sensor_fit
    if fit == "AUTO":
        fit = "HORIZONTAL" if width >= height else "VERTICAL_FROM_WIDTH"
    if fit == "HORIZONTAL":
        return cam.sensor_width_mm, cam.sensor_width_mm * height / width
    if fit == "VERTICAL_FROM_WIDTH":
        return cam.sensor_width_mm * width / height, cam.sensor_width_mm
    return cam.sensor_height_mm * width / height, cam.sensor_height_mm


def _to_gf(m_cam_to_world_m: np.ndarray, scale_to_units: float):
    """Canonical column-vector matrix (metres) -> GfMatrix4d (row vectors,
    scene units): scale the translation, then transpose."""
    Gf = _pxr()[0]
    m = np.array(m_cam_to_world_m, dtype=np.float64)
    m[:3, 3] *= scale_to_units
    return Gf.Matrix4d(*m.T.ravel().tolist())


def _from_gf(gf_matrix, units_to_m: float) -> np.ndarray:
    m = np.array(gf_matrix, dtype=np.float64).reshape(4, 4).T
    m[:3, 3] *= units_to_m
    return m


def _agrees(exact: float, schema: float) -> bool:
    return abs(exact - schema) <= _FLOAT_RTOL * max(abs(exact), abs(schema), 1e-30)


# ------------------------------------------------------------------ export
def export_camera_usd(shot: Shot, path: str | Path) -> Path:
    """Write the shot's camera path as a USD stage (.usda text, .usdc/.usd crate).

    Stage: upAxis Z, metersPerUnit 0.01, time codes = engine frames
    ``frame_start .. frame_start + n - 1``, timeCodesPerSecond =
    framesPerSecond = fps. Camera at ``/<shot>/camera`` (the default prim is
    ``/<shot>``) with a time-sampled ``xformOp:transform`` (camera-to-world),
    focalLength, horizontal/verticalAperture, clippingRange, focusDistance.
    """
    Gf, Sdf, Tf, Usd, UsdGeom = _pxr()
    path = Path(path)
    if path.suffix.lower() not in USD_SUFFIXES[:3]:
        raise InvalidArgumentError(f"{path}: a USD camera is written as .usda, .usdc or .usd, not {path.suffix!r}")
    if not shot.frames:
        raise InvalidArgumentError("the shot has no frames: nothing to export")
    to_units = 1.0 / STAGE_METERS_PER_UNIT           # metres -> centimetres
    mm_to_tenths = 1.0 / (100.0 * STAGE_METERS_PER_UNIT)  # mm -> tenths of a unit (1.0 here)

    stage = Usd.Stage.CreateNew(str(path))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.z)
    UsdGeom.SetStageMetersPerUnit(stage, STAGE_METERS_PER_UNIT)
    fps = shot.fps.value
    stage.SetTimeCodesPerSecond(fps)
    stage.SetFramesPerSecond(fps)
    first = shot.frame_start
    stage.SetStartTimeCode(first)
    stage.SetEndTimeCode(first + shot.frame_count - 1)
    stage.GetRootLayer().customLayerData = {"greenlight": {
        "format": "greenlight.usd-camera",
        "formatVersion": 1,
        "fpsNumerator": int(shot.fps.numerator),
        "fpsDenominator": int(shot.fps.denominator),
        "frameStart": int(first),
        "frameCount": int(shot.frame_count),
        "width": int(shot.width),
        "height": int(shot.height),
        "project": shot.tags.project,
        "shot": shot.tags.shot,
        "version": int(shot.tags.version),
        "source": shot.source,
    }}

    root = UsdGeom.Xform.Define(stage, Sdf.Path("/" + Tf.MakeValidIdentifier(shot.tags.shot or "shot")))
    stage.SetDefaultPrim(root.GetPrim())
    cam = UsdGeom.Camera.Define(stage, root.GetPath().AppendChild(CAMERA_NAME))
    cam.CreateProjectionAttr(UsdGeom.Tokens.perspective)
    cam.CreateHorizontalApertureOffsetAttr(0.0)
    cam.CreateVerticalApertureOffsetAttr(0.0)
    xform = cam.AddTransformOp()
    prim = cam.GetPrim()
    attrs = {
        "focal": cam.CreateFocalLengthAttr(),
        "hap": cam.CreateHorizontalApertureAttr(),
        "vap": cam.CreateVerticalApertureAttr(),
        "clip": cam.CreateClippingRangeAttr(),
        "focus": cam.CreateFocusDistanceAttr(),
    }
    D = Sdf.ValueTypeNames.Double
    exact = {name: prim.CreateAttribute(_NS + name, D, custom=True) for name in (
        "focalLengthMm", "sensorWidthMm", "sensorHeightMm", "clipStartM", "clipEndM", "focusDistanceM")}
    fit_attr = prim.CreateAttribute(_NS + "sensorFit", Sdf.ValueTypeNames.Token, custom=True)
    for attr in exact.values():
        attr.SetDocumentation("Greenlight: the float64 value (unit in the name) for an exact round trip; "
                              "other tools read the UsdGeomCamera attribute")
    fit_attr.SetDocumentation("Greenlight: sensor fit (AUTO, HORIZONTAL, VERTICAL) of sensorWidthMm/HeightMm; "
                              "the apertures are already the film back at the shot aspect")

    for frame in shot.frames:
        c = frame.camera
        t = Usd.TimeCode(first + frame.index)
        hap_mm, vap_mm = _effective_apertures_mm(c, shot.width, shot.height)
        xform.Set(_to_gf(c.world_matrix, to_units), t)
        attrs["focal"].Set(c.focal_length_mm * mm_to_tenths, t)
        attrs["hap"].Set(hap_mm * mm_to_tenths, t)
        attrs["vap"].Set(vap_mm * mm_to_tenths, t)
        attrs["clip"].Set(Gf.Vec2f(c.clip_start_m * to_units, c.clip_end_m * to_units), t)
        attrs["focus"].Set(c.focus_distance_m * to_units, t)
        for name, value in (("focalLengthMm", c.focal_length_mm), ("sensorWidthMm", c.sensor_width_mm),
                            ("sensorHeightMm", c.sensor_height_mm), ("clipStartM", c.clip_start_m),
                            ("clipEndM", c.clip_end_m), ("focusDistanceM", c.focus_distance_m)):
            exact[name].Set(float(value), t)
        fit_attr.Set(c.sensor_fit, t)
    stage.GetRootLayer().Save()
    return path


# ------------------------------------------------------------------ import
def _find_camera(stage, path: Path, camera_path: str | None):
    UsdGeom = _pxr()[4]
    if camera_path:
        prim = stage.GetPrimAtPath(camera_path)
        if not prim or not prim.IsA(UsdGeom.Camera):
            raise InvalidArgumentError(f"{path}: no UsdGeom.Camera at {camera_path!r}")
        return UsdGeom.Camera(prim)
    cams = [p for p in stage.Traverse() if p.IsA(UsdGeom.Camera)]
    if not cams:
        raise InvalidArgumentError(f"{path}: the stage has no UsdGeom.Camera prim")
    if len(cams) > 1:
        ours = [p for p in cams if p.HasAttribute(_NS + "focalLengthMm")]
        if len(ours) == 1:
            return UsdGeom.Camera(ours[0])
        raise InvalidArgumentError(
            f"{path}: {len(cams)} cameras ({', '.join(str(p.GetPath()) for p in cams)}); "
            "name one with camera_path (CLI: --usd-camera PATH)")
    return UsdGeom.Camera(cams[0])


def _frame_times(stage, cam, meta: dict) -> tuple[list[float], int]:
    """Time codes of each frame and the engine frame number of the first."""
    tcps = stage.GetTimeCodesPerSecond()
    fps = stage.GetFramesPerSecond()
    step = tcps / fps if fps > 0 else 1.0
    if "frameStart" in meta and "frameCount" in meta:
        start, count = int(meta["frameStart"]), int(meta["frameCount"])
        return [start + i * step for i in range(count)], start
    if stage.HasAuthoredTimeCodeRange():
        start, end = stage.GetStartTimeCode(), stage.GetEndTimeCode()
    else:
        times = set()
        for attr in [cam.GetPrim().GetAttribute(n) for n in cam.GetXformOpOrderAttr().Get() or []] + [
                cam.GetFocalLengthAttr()]:
            times.update(attr.GetTimeSamples() if attr else [])
        if not times:  # nothing animated: one frame at the default time
            return [_pxr()[3].TimeCode.Default()], 1
        start, end = min(times), max(times)
    count = int(round((end - start) / step)) + 1
    return [start + i * step for i in range(count)], int(round(start / step))


def _stage_fps(stage, meta: dict) -> Fps:
    if "fpsNumerator" in meta and "fpsDenominator" in meta:
        return Fps(int(meta["fpsNumerator"]), int(meta["fpsDenominator"]))
    value = stage.GetFramesPerSecond()
    if not value > 0:
        raise InvalidArgumentError(f"framesPerSecond must be > 0, got {value}")
    return Fps.parse(repr(float(value)))


def import_camera_usd(path: str | Path, camera_path: str | None = None,
                      resolution: tuple[int, int] | None = None) -> tuple[list[CameraSample], Fps, int]:
    """Read a USD camera back as canonical samples, one per frame.

    Returns ``(samples, fps, frame_start)``. Any ``metersPerUnit`` is
    converted to metres; a Y-up stage is rotated to Z-up (+90 degrees about
    X, as Blender does). Refused: orthographic cameras and aperture offsets
    (Greenlight's camera model has no lens shift). ``resolution`` (width,
    height) decides the sensor fit of a camera without Greenlight attributes
    (default: the stage's recorded resolution, else the aperture aspect).
    """
    samples, fps, frame_start, _ = _read_camera(path, camera_path, resolution)
    return samples, fps, frame_start


def _read_camera(path, camera_path, resolution):
    Usd, UsdGeom = _pxr()[3:]
    path = Path(path)
    if not path.exists():
        raise InvalidArgumentError(f"{path}: no such file")
    try:
        stage = Usd.Stage.Open(str(path))
    except Exception as exc:  # pxr raises Tf.ErrorException
        raise InvalidArgumentError(f"{path}: not a USD stage USD can open ({exc})") from exc
    meta = dict(stage.GetRootLayer().customLayerData.get("greenlight", {}))
    mpu = UsdGeom.GetStageMetersPerUnit(stage)
    if not (np.isfinite(mpu) and mpu > 0):
        raise InvalidArgumentError(f"{path}: metersPerUnit must be > 0, got {mpu}")
    up = UsdGeom.GetStageUpAxis(stage)
    if up == UsdGeom.Tokens.z:
        up_fix = np.eye(4)
    elif up == UsdGeom.Tokens.y:
        up_fix = np.array([[1.0, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])
    else:
        raise InvalidArgumentError(f"{path}: upAxis {up!r} is neither Y nor Z")
    cam = _find_camera(stage, path, camera_path)
    prim = cam.GetPrim()
    width, height = resolution or (int(meta.get("width", 0)), int(meta.get("height", 0)))
    times, frame_start = _frame_times(stage, cam, meta)
    tenths_to_mm = 100.0 * mpu

    def exact(name, t, schema_value):
        attr = prim.GetAttribute(_NS + name)
        value = attr.Get(t) if attr and attr.HasValue() else None
        if value is not None and _agrees(value, schema_value):
            return float(value)
        return float(schema_value)

    samples = []
    for t in times:
        tc = t if isinstance(t, Usd.TimeCode) else Usd.TimeCode(t)
        where = f"{path} at time {t}"
        if cam.GetProjectionAttr().Get(tc) != UsdGeom.Tokens.perspective:
            raise InvalidArgumentError(f"{where}: the camera is orthographic; Greenlight needs a perspective camera")
        for offset in (cam.GetHorizontalApertureOffsetAttr(), cam.GetVerticalApertureOffsetAttr()):
            if abs(offset.Get(tc) or 0.0) > 1e-9:
                raise InvalidArgumentError(
                    f"{where}: {offset.GetName()} is {offset.Get(tc)}; lens shift is not supported (set it to 0)")
        world = up_fix @ _from_gf(cam.ComputeLocalToWorldTransform(tc), mpu)
        focal = exact("focalLengthMm", tc, cam.GetFocalLengthAttr().Get(tc) * tenths_to_mm)
        hap = cam.GetHorizontalApertureAttr().Get(tc) * tenths_to_mm
        vap = cam.GetVerticalApertureAttr().Get(tc) * tenths_to_mm
        clip = cam.GetClippingRangeAttr().Get(tc)
        clip_start = exact("clipStartM", tc, clip[0] * mpu)
        clip_end = exact("clipEndM", tc, clip[1] * mpu)
        focus = exact("focusDistanceM", tc, (cam.GetFocusDistanceAttr().Get(tc) or 0.0) * mpu)
        fit_attr = prim.GetAttribute(_NS + "sensorFit")
        fit = str(fit_attr.Get(tc)) if fit_attr and fit_attr.HasValue() else ""
        sensor = None
        if fit and width and height:
            sw = prim.GetAttribute(_NS + "sensorWidthMm").Get(tc)
            sh = prim.GetAttribute(_NS + "sensorHeightMm").Get(tc)
            candidate = CameraSample(np.eye(4), focal, sw, sh, fit)
            # trust the sensor attributes only while they still explain the apertures
            ehap, evap = _effective_apertures_mm(candidate, width, height)
            if _agrees(ehap, hap) and _agrees(evap, vap):
                sensor = (sw, sh, fit)
        if sensor is None:
            # expandAperture conform: the aperture that is too small for the
            # image aspect is expanded, so the other one spans its image side
            aspect = width / height if width and height else hap / vap
            sensor = (hap, vap, "HORIZONTAL" if hap / vap >= aspect - 1e-9 else "VERTICAL")
        samples.append(CameraSample(
            world_matrix=world, focal_length_mm=focal, sensor_width_mm=float(sensor[0]),
            sensor_height_mm=float(sensor[1]), sensor_fit=sensor[2], clip_start_m=clip_start,
            clip_end_m=clip_end, focus_distance_m=focus))
    return samples, _stage_fps(stage, meta), frame_start, meta


def shot_from_usd(path: str | Path, tags: Tags | None = None, resolution: tuple[int, int] | None = None,
                  camera_path: str | None = None) -> Shot:
    """A camera-only Shot from a USD camera: depth, motion and pose absent.

    ``tags`` default to the ones recorded by :func:`export_camera_usd`, else
    project "usd" and the file's stem. ``resolution`` (width, height)
    defaults to the recorded one; a foreign file without it needs one.
    """
    path = Path(path)
    samples, fps, frame_start, meta = _read_camera(path, camera_path, resolution)
    if resolution is None:
        if not meta.get("width") or not meta.get("height"):
            raise InvalidArgumentError(
                f"{path}: the stage does not record an image resolution; pass one (CLI: --resolution 512x288)")
        resolution = (int(meta["width"]), int(meta["height"]))
    if tags is None:
        tags = Tags(project=str(meta.get("project") or "usd"),
                    shot=str(meta.get("shot") or _tag_from_stem(path.stem)),
                    version=int(meta.get("version", 1)))
    return Shot(
        tags=tags, fps=fps, width=int(resolution[0]), height=int(resolution[1]),
        frames=tuple(Frame(index=i, camera=s) for i, s in enumerate(samples)),
        frame_start=frame_start, source=str(meta.get("source") or f"usd:{path.name}"),
    )


def _tag_from_stem(stem: str) -> str:
    return safe_tag(stem, "shot")
