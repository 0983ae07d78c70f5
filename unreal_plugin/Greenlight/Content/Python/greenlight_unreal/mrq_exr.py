"""Decode Movie Render Queue EXR passes into Greenlight's conventions.
Engine-free: numpy, plus the ``openexr`` package (imported lazily).

What MRQ writes (Deferred Rendering pass + the two default "additional post
process materials", 32-bit, EXR output with ``multilayer`` on): one file per
frame, ``{sequence_name}.{frame_number}.exr``, holding the beauty as
``R G B A`` and each material as a layer named ``FinalImage<material>``:
``FinalImageMovieRenderQueue_WorldDepth.{R,G,B,A}`` and
``FinalImageMovieRenderQueue_MotionVectors.{R,G,B,A}``. With multilayer off
each pass is its own file with plain ``R G B A`` channels. Layers are found
by the material name at the end of the layer name, so a renamed pass
(``FMoviePipelinePostProcessPass.Name``) or a camera-name prefix still
matches; two matches are refused as ambiguous.

Depth (``MovieRenderQueue_WorldDepth``): Unreal's SceneDepth, planar
view-space distance in cm, in R (G and B repeat it). Decoded to float32
metres; a pixel at or beyond ``DepthDecoding.background_cm`` (sky domes,
nothing hit), non-finite or <= 0 becomes +inf (``Shot.depth_background =
"inf"``).

Motion (``MovieRenderQueue_MotionVectors``): Epic documents it as "stored in
X and Y as 0..1 where 0.5, 0.5 is no motion", "normalized to the entire
screen" (their Nuke recipe: ``uv_offset -0.5``, ``scale = image width``).
The default ``MotionEncoding`` implements exactly that, with the direction
of Unreal's velocity buffer (``ScreenPos - PrevScreenPos``: how far the
surface moved since the PREVIOUS frame) and its clip-space Y axis (up):

    dx_px = (R - 0.5) * scale_x * width       (x right)
    dy_px = -(G - 0.5) * scale_y * height     (y down; y_up=True flips)

Everything in that formula is a field of ``MotionEncoding`` because Epic
states neither the sign of Y nor the direction explicitly: the Unreal
checklist in docs/unreal.md verifies them in the editor, and
``fit_motion_encoding`` measures them from a frame whose true flow is known
(a camera move over a static scene, via ``bridge.shot.camera``).

Greenlight wants FORWARD flow (where the pixel goes next frame). From
backward velocities B_t, forward flow at frame t solves F(p) = B_{t+1}(p +
F(p)) (the pixel that lands at p + F in frame t+1 came from p), iterated
from F = B_t with bilinear sampling; the last frame, having no successor,
assumes constant velocity (F = B_t).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEPTH_LAYER = "MovieRenderQueue_WorldDepth"
MOTION_LAYER = "MovieRenderQueue_MotionVectors"
DEPTH_MATERIAL = "/MovieRenderPipeline/Materials/MovieRenderQueue_WorldDepth.MovieRenderQueue_WorldDepth"
MOTION_MATERIAL = "/MovieRenderPipeline/Materials/MovieRenderQueue_MotionVectors.MovieRenderQueue_MotionVectors"
OPENEXR_PIN = "openexr==3.5.3"
DIRECTIONS = ("backward", "forward")


class PassDecodeError(ValueError):
    """An MRQ pass file is missing, unreadable or not in the expected layout."""


@dataclass(frozen=True)
class DepthDecoding:
    """``background_cm``: depth at or beyond this is background (+inf)."""

    background_cm: float = 1.0e7


@dataclass(frozen=True)
class MotionEncoding:
    """How the motion-vector layer encodes screen motion (see the module
    docstring). ``scale_x``/``scale_y``: one encoded unit is this many image
    widths/heights. ``y_up``: G grows as the surface moves up the screen.
    ``direction``: ``backward`` = motion since the previous frame (Unreal's
    velocity buffer), ``forward`` = motion to the next frame."""

    neutral: float = 0.5
    scale_x: float = 1.0
    scale_y: float = 1.0
    y_up: bool = True
    direction: str = "backward"

    def __post_init__(self):
        if self.direction not in DIRECTIONS:
            raise ValueError(f"MotionEncoding.direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if self.scale_x == 0 or self.scale_y == 0:
            raise ValueError(f"MotionEncoding scales must be non-zero, got {self.scale_x}, {self.scale_y}")


def _openexr():
    try:
        import OpenEXR
    except ImportError as exc:  # the plugin lists it in PythonRequirements
        raise PassDecodeError(
            f"reading EXR passes needs the OpenEXR Python package: pip install '{OPENEXR_PIN}' "
            "(in Unreal it is installed from the plugin's PythonRequirements)") from exc
    return OpenEXR


# --------------------------------------------------------------- reading
def read_channels(path: str | Path) -> dict[str, np.ndarray]:
    """Every channel of every part of an EXR, by name, as [H, W] arrays
    (row 0 = top of the image)."""
    path = Path(path)
    if not path.is_file():
        raise PassDecodeError(f"{path}: no such EXR (did the Movie Render Queue job write it?)")
    OpenEXR = _openexr()
    out: dict[str, np.ndarray] = {}
    try:
        with OpenEXR.File(str(path), separate_channels=True) as f:
            for part in f.parts:
                for name, channel in part.channels.items():
                    out[name] = np.array(channel.pixels)
    except PassDecodeError:
        raise
    except Exception as exc:  # OpenEXR raises bare RuntimeError/ValueError on corrupt files
        raise PassDecodeError(f"{path}: not a readable EXR ({exc})") from exc
    return out


def layer(channels: Mapping[str, np.ndarray], material: str, components: str = "RG") -> list[np.ndarray]:
    """The ``components`` of the layer whose name ends with ``material``;
    a single-pass file (plain ``R``, ``G``, ...) is accepted as that layer."""
    prefixes = sorted({name.rsplit(".", 1)[0] for name in channels if "." in name
                       and name.rsplit(".", 1)[0].endswith(material)})
    if len(prefixes) > 1:
        raise PassDecodeError(f"layer {material!r} is ambiguous: {prefixes}")
    if prefixes:
        names = [f"{prefixes[0]}.{c}" for c in components]
    elif all(c in channels for c in components) and not any("." in n for n in channels):
        names = list(components)
    else:
        layers = sorted({n.rsplit(".", 1)[0] for n in channels if "." in n})
        raise PassDecodeError(f"no {material!r} layer (layers present: {layers or 'none'}; channels: "
                              f"{sorted(channels)[:12]}); enable it in the Deferred Rendering pass")
    missing = [n for n in names if n not in channels]
    if missing:
        raise PassDecodeError(f"layer {material!r} lacks channels {missing}")
    return [np.asarray(channels[n], dtype=np.float64) for n in names]


# --------------------------------------------------------------- depth
def decode_depth(channels: Mapping[str, np.ndarray], decoding: DepthDecoding = DepthDecoding(),
                 material: str = DEPTH_LAYER) -> np.ndarray:
    """float32 [H, W] planar metres; background +inf."""
    (depth_cm,) = layer(channels, material, "R")
    background = ~np.isfinite(depth_cm) | (depth_cm <= 0) | (depth_cm >= decoding.background_cm)
    depth_m = np.where(background, np.inf, depth_cm / 100.0)
    return depth_m.astype(np.float32)


# --------------------------------------------------------------- motion
def decode_velocity(channels: Mapping[str, np.ndarray], encoding: MotionEncoding = MotionEncoding(),
                    material: str = MOTION_LAYER) -> np.ndarray:
    """float64 [H, W, 2] pixels (dx right, dy down) in the encoding's own
    direction (``encoding.direction``)."""
    r, g = layer(channels, material, "RG")
    h, w = r.shape
    dx = (r - encoding.neutral) * encoding.scale_x * w
    dy = (g - encoding.neutral) * encoding.scale_y * h
    if encoding.y_up:
        dy = -dy
    v = np.stack([dx, dy], axis=-1)
    if not np.all(np.isfinite(v)):
        raise PassDecodeError(f"layer {material!r} holds NaN or infinite motion values")
    return v


def encode_velocity(velocity_px: np.ndarray,
                    encoding: MotionEncoding = MotionEncoding()) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of ``decode_velocity``: (R, G) channel values. Used by tests
    and by calibration to build reference frames."""
    h, w = velocity_px.shape[:2]
    dy = -velocity_px[..., 1] if encoding.y_up else velocity_px[..., 1]
    r = velocity_px[..., 0] / (encoding.scale_x * w) + encoding.neutral
    g = dy / (encoding.scale_y * h) + encoding.neutral
    return r, g


def _bilinear(field: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sample ``field`` [H, W, C] at pixel-centre coordinates (x, y), clamped."""
    h, w = field.shape[:2]
    fx = np.clip(x - 0.5, 0.0, w - 1.0)
    fy = np.clip(y - 0.5, 0.0, h - 1.0)
    x0 = np.floor(fx).astype(int)
    y0 = np.floor(fy).astype(int)
    x1 = np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    ax = (fx - x0)[..., None]
    ay = (fy - y0)[..., None]
    top = field[y0, x0] * (1 - ax) + field[y0, x1] * ax
    bottom = field[y1, x0] * (1 - ax) + field[y1, x1] * ax
    return top * (1 - ay) + bottom * ay


def forward_flows(velocities: Sequence[np.ndarray], encoding: MotionEncoding = MotionEncoding(),
                  iterations: int = 6) -> list[np.ndarray]:
    """Forward flow (float16 [H, W, 2] pixels, dx right, dy down, to the next
    frame) for every frame, from decoded velocities in ``encoding.direction``."""
    if encoding.direction == "forward":
        return [np.asarray(v, dtype=np.float16) for v in velocities]
    flows = []
    for t, v in enumerate(velocities):
        if t + 1 == len(velocities):
            flows.append(np.asarray(v, dtype=np.float16))   # constant velocity at the end
            continue
        nxt = velocities[t + 1]
        h, w = nxt.shape[:2]
        xs, ys = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
        flow = np.asarray(v, dtype=np.float64).copy()
        for _ in range(iterations):
            flow = _bilinear(nxt, xs + flow[..., 0], ys + flow[..., 1])
        flows.append(flow.astype(np.float16))
    return flows


def fit_motion_encoding(channels: Mapping[str, np.ndarray], true_velocity_px: np.ndarray,
                        valid: np.ndarray | None = None, material: str = MOTION_LAYER,
                        neutral: float = 0.5, direction: str = "backward") -> MotionEncoding:
    """Measure ``scale_x``/``scale_y``/``y_up`` from a frame whose true
    velocity (pixels, dx right, dy down, in ``direction``) is known, e.g. a
    camera move over a static scene computed with
    ``bridge.shot.camera.static_forward_flow``. Least squares per axis."""
    r, g = layer(channels, material, "RG")
    h, w = r.shape
    mask = np.ones((h, w), bool) if valid is None else np.asarray(valid, bool)
    ex = (r - neutral)[mask] * w
    ey = (g - neutral)[mask] * h
    tx = true_velocity_px[..., 0][mask]
    ty = true_velocity_px[..., 1][mask]
    if float(ex @ ex) < 1e-12 or float(ey @ ey) < 1e-12:
        raise PassDecodeError("the reference frame has no motion on one axis; move the camera diagonally")
    sx = float(ex @ tx) / float(ex @ ex)
    sy = float(ey @ ty) / float(ey @ ey)
    # dy = -(G - 0.5) * scale_y * h when y_up, so a negative fit means y_up with |s|.
    return MotionEncoding(neutral=neutral, scale_x=sx, scale_y=abs(sy), y_up=sy < 0, direction=direction)


# --------------------------------------------------------------- files
def pass_file(folder: str | Path, sequence_name: str, frame_number: int, pad: int = 4) -> Path:
    """The EXR MRQ writes for one frame with the file name format
    ``{sequence_name}.{frame_number}`` (what ``host`` configures)."""
    return Path(folder) / f"{sequence_name}.{frame_number:0{pad}d}.exr"


def load_passes(folder: str | Path, sequence_name: str, frame_numbers: Sequence[int],
                depth: DepthDecoding | None = DepthDecoding(), motion: MotionEncoding | None = MotionEncoding(),
                pad: int = 4, on_frame=None) -> tuple[list[np.ndarray] | None, list[np.ndarray] | None]:
    """(depth_m per frame, forward flow per frame) for the given frames of
    a multilayer MRQ render; a pass set to None is skipped. ``on_frame(i)``
    is called after each file (progress / cancel hook)."""
    depths, velocities = [], []
    for i, number in enumerate(frame_numbers):
        channels = read_channels(pass_file(folder, sequence_name, number, pad))
        if depth is not None:
            depths.append(decode_depth(channels, depth))
        if motion is not None:
            velocities.append(decode_velocity(channels, motion))
        if on_frame is not None:
            on_frame(i)
    flows = forward_flows(velocities, motion) if motion is not None else None
    return (depths if depth is not None else None), flows
