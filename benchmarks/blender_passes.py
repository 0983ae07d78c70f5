"""Per-frame cost of the Blender pass extraction vs a 1-sample Cycles render.

A 48-frame dolly (camera, wall, floor, an armature figure and 50 cubes) at
512x288. "extract" is ``host.shot_from_scene_in_blender`` end to end: camera
and joint sampling, the Depth+Vector Cycles pass render, EXR read-back,
pose projection and validation. "render" is a plain 1-sample Cycles render
of the same frames at the same size to PNG (denoising off), the cheapest
render a user would otherwise make. Runs bpy in this process (no torch here).

Last line: one JSON object with extract_s_per_frame, render_s_per_frame, ratio.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FRAMES, WIDTH, HEIGHT = 48, 512, 288


def build_scene():
    import bpy

    from tests.blender_scenes import add_camera, add_figure, add_quad, key_linear, new_scene

    scene = new_scene(WIDTH, HEIGHT)
    scene.frame_start, scene.frame_end = 1, FRAMES
    cam = add_camera(scene, location=(-2, -6, 1.4), rotation=(math.radians(85), 0, 0), lens=35)
    key_linear(cam, [(1, (-2, -6, 1.4)), (FRAMES, (2, -6, 1.4))])
    add_quad(scene, [(-20, 4, -1), (20, 4, -1), (20, 4, 10), (-20, 4, 10)], "Wall")
    add_quad(scene, [(-20, -20, 0), (20, -20, 0), (20, 20, 0), (-20, 20, 0)], "Floor")
    add_figure(scene)
    mesh = bpy.data.meshes.new("Cube")
    s = 0.15
    verts = [(x, y, z) for x in (-s, s) for y in (-s, s) for z in (-s, s)]
    faces = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    mesh.from_pydata(verts, [], faces)
    for i in range(50):
        obj = bpy.data.objects.new(f"Cube{i}", mesh)
        obj.location = (-3 + (i % 10) * 0.66, 1 + (i // 10) * 0.5, 0.2 + (i % 3) * 0.4)
        scene.collection.objects.link(obj)
    return scene


class _Capture:
    """Keeps host's "extracted ..." log line (sample vs pass-render split)."""

    def __init__(self):
        import logging

        self.lines = []
        handler = logging.Handler()
        handler.emit = lambda record: self.lines.append(record.getMessage())
        log = logging.getLogger("blender_addon.host")
        log.addHandler(handler)
        log.setLevel(logging.INFO)


CAPTURE = _Capture()


def time_extract(scene):
    from blender_addon import host
    from blender_addon.settings import ExtractSettings

    t0 = time.perf_counter()
    shot = host.shot_from_scene_in_blender(scene, ExtractSettings(width=WIDTH, height=HEIGHT))
    total = time.perf_counter() - t0
    assert shot.frame_count == FRAMES and "pose" in shot.passes
    return total, shot


def time_render(scene, folder: Path):
    import bpy

    r = scene.render
    r.engine = "CYCLES"
    scene.cycles.samples = 1
    scene.cycles.use_denoising = False
    r.image_settings.file_format = "PNG"
    t0 = time.perf_counter()
    for f in range(1, FRAMES + 1):
        scene.frame_set(f)
        r.filepath = str(folder / f"render_{f:04d}.png")
        bpy.ops.render.render(write_still=True)
    return time.perf_counter() - t0


def main():
    import bpy

    scene = build_scene()
    with tempfile.TemporaryDirectory() as tmp:
        time_extract(scene)                    # warm-up (kernel load, BVH code paths)
        extract_s, shot = time_extract(scene)
        render_s = time_render(scene, Path(tmp))
    per_extract, per_render = extract_s / FRAMES, render_s / FRAMES
    print(f"Blender {bpy.app.version_string}, {FRAMES} frames at {WIDTH}x{HEIGHT}")
    print(f"{'what':42} {'total s':>9} {'s/frame':>9}")
    print(f"{'extract (camera+pose+depth+motion+checks)':42} {extract_s:9.2f} {per_extract:9.3f}")
    print(f"{'Cycles 1-sample render to PNG':42} {render_s:9.2f} {per_render:9.3f}")
    print(f"breakdown of the timed extraction: {CAPTURE.lines[-1]}")
    print(f"ratio extract/render: {per_extract / per_render:.2f}; passes: {shot.passes}; "
          f"methods: {dict(shot.pass_methods)}")
    print(json.dumps({"extract_s_per_frame": round(per_extract, 4), "render_s_per_frame": round(per_render, 4),
                      "ratio": round(per_extract / per_render, 3), "frames": FRAMES,
                      "width": WIDTH, "height": HEIGHT}))


if __name__ == "__main__":
    main()
