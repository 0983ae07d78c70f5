"""COCO-18 keypoints in OpenPose order, the limbs between them and the
OpenPose colours used to draw them (shared by the guides preview and the
diffusion pose control image)."""

from __future__ import annotations

KEYPOINTS = (
    "nose", "neck",
    "r_shoulder", "r_elbow", "r_wrist",
    "l_shoulder", "l_elbow", "l_wrist",
    "r_hip", "r_knee", "r_ankle",
    "l_hip", "l_knee", "l_ankle",
    "r_eye", "l_eye", "r_ear", "l_ear",
)
INDEX = {name: i for i, name in enumerate(KEYPOINTS)}
COUNT = len(KEYPOINTS)

ABSENT, OCCLUDED, VISIBLE = 0, 1, 2

# The 17 limbs OpenPose draws for the COCO-18 body, as keypoint index pairs.
LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)

# One RGB colour per keypoint / limb in OpenPose's palette (hue steps of 20
# degrees from red); ControlNet OpenPose models were trained on these.
COLORS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0),
    (85, 255, 0), (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255),
    (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255), (170, 0, 255),
    (255, 0, 255), (255, 0, 170), (255, 0, 85),
)
