"""A sample shot computed in code: a camera dollies past a posed figure
standing in front of a wall. Depth is ray-cast analytically (floor, wall and
the figure's body as spheres along its bones), motion is the exact
reprojection of that depth into the next camera, pose is the projected
joints with depth-tested visibility. Used by ``greenlight demo`` and tests
when no engine render is at hand; engine renders replace it."""

from __future__ import annotations

import numpy as np

from . import coco
from .camera import focal_length_px, look_at, pixel_rays, project, static_forward_flow
from .model import CameraSample, Fps, Frame, Shot, Tags
from .pose import pose_from_joints

WALL_Y_M = 4.0

# A figure at the origin facing -Y (towards the camera), right arm raised.
FIGURE_JOINTS_M = np.array([
    (0.00, -0.10, 1.62),  # nose
    (0.00, 0.00, 1.45),   # neck
    (-0.20, 0.00, 1.42),  # r_shoulder
    (-0.42, -0.02, 1.58),  # r_elbow
    (-0.55, -0.06, 1.82),  # r_wrist
    (0.20, 0.00, 1.42),   # l_shoulder
    (0.27, 0.00, 1.16),   # l_elbow
    (0.31, -0.05, 0.92),  # l_wrist
    (-0.10, 0.00, 0.95),  # r_hip
    (-0.12, -0.02, 0.52),  # r_knee
    (-0.13, 0.00, 0.08),  # r_ankle
    (0.10, 0.00, 0.95),   # l_hip
    (0.16, -0.06, 0.53),  # l_knee
    (0.19, 0.00, 0.08),   # l_ankle
    (-0.035, -0.09, 1.66),  # r_eye
    (0.035, -0.09, 1.66),  # l_eye
    (-0.08, -0.02, 1.63),  # r_ear
    (0.08, -0.02, 1.63),  # l_ear
])


def _body_spheres(joints: np.ndarray) -> np.ndarray:
    """[K, 4] spheres (centre xyz, radius) approximating the figure's body."""
    j = {name: joints[i] for i, name in enumerate(coco.KEYPOINTS)}
    spheres = [(*(j["nose"] + (0, 0.08, 0)), 0.12)]
    mid_hip = (j["r_hip"] + j["l_hip"]) / 2
    bones = [
        (j["neck"], mid_hip, 0.17, 6),
        (j["r_shoulder"], j["l_shoulder"], 0.08, 4),
        (j["r_shoulder"], j["r_elbow"], 0.06, 4), (j["r_elbow"], j["r_wrist"], 0.05, 4),
        (j["l_shoulder"], j["l_elbow"], 0.06, 4), (j["l_elbow"], j["l_wrist"], 0.05, 4),
        (j["r_hip"], j["r_knee"], 0.08, 5), (j["r_knee"], j["r_ankle"], 0.06, 5),
        (j["l_hip"], j["l_knee"], 0.08, 5), (j["l_knee"], j["l_ankle"], 0.06, 5),
    ]
    for a, b, radius, n in bones:
        for t in np.linspace(0.0, 1.0, n):
            spheres.append((*(a + t * (b - a)), radius))
    return np.array(spheres)


def _raycast_depth(camera: CameraSample, width: int, height: int, spheres: np.ndarray) -> np.ndarray:
    """Planar depth [H, W] (metres, +inf background) of floor, wall and spheres."""
    m = np.asarray(camera.world_matrix)
    origin = m[:3, 3]
    dirs = pixel_rays(camera, width, height) @ m[:3, :3].T  # t along these = planar depth
    depth = np.full((height, width), np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        for axis, plane in ((2, 0.0), (1, WALL_Y_M)):
            t = (plane - origin[axis]) / dirs[..., axis]
            depth = np.where((t > 0) & (t < depth), t, depth)
    f = focal_length_px(camera, width, height)
    centres_px, centre_depth = project(camera, width, height, spheres[:, :3])
    for (cx, cy), d, sphere in zip(centres_px, centre_depth, spheres):
        if d <= sphere[3]:
            continue
        r_px = f * sphere[3] / (d - sphere[3]) + 2
        x0, x1 = int(max(cx - r_px, 0)), int(min(cx + r_px + 1, width))
        y0, y1 = int(max(cy - r_px, 0)), int(min(cy + r_px + 1, height))
        if x0 >= x1 or y0 >= y1:
            continue
        dd = dirs[y0:y1, x0:x1]
        oc = origin - sphere[:3]
        a = np.einsum("...i,...i", dd, dd)
        b = 2.0 * dd @ oc
        c = oc @ oc - sphere[3] ** 2
        disc = b * b - 4 * a * c
        hit = disc >= 0
        t = np.where(hit, (-b - np.sqrt(np.where(hit, disc, 0))) / (2 * a), np.inf)
        t = np.where(t > 0, t, np.inf)
        depth[y0:y1, x0:x1] = np.minimum(depth[y0:y1, x0:x1], t)
    return depth


def sample_shot(
    frames: int = 48,
    width: int = 512,
    height: int = 288,
    fps: Fps = Fps(24),
    project_name: str = "demo",
    shot_name: str = "dolly",
    version: int = 1,
) -> Shot:
    """The dolly shot: camera at 1.6 m moves 4 m left to right, 5 m from the figure."""
    spheres = _body_spheres(FIGURE_JOINTS_M)
    cameras = []
    for i in range(frames):
        s = i / max(frames - 1, 1)
        eye = (-2.0 + 4.0 * s, -5.0, 1.6)
        target = (0.3 * (s - 0.5), 0.0, 1.1)
        cameras.append(CameraSample(
            world_matrix=look_at(eye, target), focal_length_mm=35.0, sensor_width_mm=36.0,
            sensor_height_mm=24.0, clip_start_m=0.1, clip_end_m=100.0,
            focus_distance_m=float(np.linalg.norm(np.subtract(eye, (0, 0, 1.1))))))
    depths = [_raycast_depth(cam, width, height, spheres) for cam in cameras]
    out = []
    for i, cam in enumerate(cameras):
        if i + 1 < frames:
            motion = static_forward_flow(cam, cameras[i + 1], depths[i])
        else:
            motion = np.zeros((height, width, 2))
        pose = pose_from_joints("figure", cam, width, height, FIGURE_JOINTS_M, depth_m=depths[i],
                                occlusion_tolerance_m=0.25)
        out.append(Frame(index=i, camera=cam, depth_m=depths[i].astype(np.float32),
                         motion_px=motion.astype(np.float16), poses=(pose,)))
    return Shot(
        tags=Tags(project_name, shot_name, version), fps=fps, width=width, height=height,
        frames=tuple(out), frame_start=1, depth_background="inf",
        pass_methods={"depth": "analytic-raycast", "motion": "static-reprojection",
                      "pose": "projected-joints"},
        source="synthetic",
    )
