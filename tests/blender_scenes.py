"""Blender test scenes built in code, run in a child Python with ``bpy``.

The tests call ``run_scenario(name, **args)``: it starts
``python -m tests.blender_scenes NAME ARGS_JSON`` (a fresh Blender per
scenario, so bpy's global state and any crash stay out of the pytest
process), and returns the JSON the scenario printed. Scenarios save arrays as
``.npy`` under ``args["out"]`` and the tests compare them with analytic
ground truth computed on the pytest side.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_MARK = "GREENLIGHT-SCENARIO-RESULT "


def run_scenario(name: str, timeout: float = 150, env: dict | None = None, **args) -> dict:
    env = dict(os.environ, GRPC_ENABLE_FORK_SUPPORT="0", PYTHONPATH=str(REPO), **(env or {}))
    proc = subprocess.run([sys.executable, "-m", "tests.blender_scenes", name, json.dumps(args, default=str)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith(_MARK):
            return json.loads(line[len(_MARK):])
    raise AssertionError(f"scenario {name} printed no result (rc {proc.returncode}):\n"
                         f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}")


# ---------------------------------------------------------------- scene building (child process only)
def new_scene(width=128, height=72, fps=24):
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.render.resolution_percentage = 100
    scene.render.fps = fps
    return scene


def add_camera(scene, location=(0, 0, 0), rotation=(0, 0, 0), lens=50.0, name="Cam"):
    import bpy

    data = bpy.data.cameras.new(name)
    data.lens = lens
    data.sensor_width = 36.0
    obj = bpy.data.objects.new(name, data)
    scene.collection.objects.link(obj)
    obj.location = location
    obj.rotation_euler = rotation
    scene.camera = obj
    return obj


def add_quad(scene, corners, name="Quad"):
    import bpy

    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata([tuple(c) for c in corners], [], [(0, 1, 2, 3)])
    obj = bpy.data.objects.new(name, mesh)
    scene.collection.objects.link(obj)
    return obj


def key_linear(obj, frames_values, path="location"):
    for frame, value in frames_values:
        setattr(obj, path, value)
        obj.keyframe_insert(path, frame=frame)
    _linear(obj)


def _linear(obj):
    from blender_addon import compat

    for fc in compat.action_fcurves_in_blender(obj.animation_data.action):
        for k in fc.keyframe_points:
            k.interpolation = "LINEAR"


# Bones of the test figure (metarig names), armature space, metres: head, tail, parent.
FIGURE_BONES = {
    "spine": ((0, 0, 1.0), (0, 0, 1.3), None),
    "spine.004": ((0, 0, 1.45), (0, 0, 1.6), "spine"),
    "upper_arm.R": ((-0.2, 0, 1.45), (-0.45, 0, 1.45), "spine"),
    "forearm.R": ((-0.45, 0, 1.45), (-0.75, 0, 1.45), "upper_arm.R"),
    "hand.R": ((-0.75, 0, 1.45), (-0.85, 0, 1.45), "forearm.R"),
    "upper_arm.L": ((0.2, 0, 1.45), (1.2, 0, 1.45), "spine"),
    "forearm.L": ((1.2, 0, 1.45), (2.4, 0, 1.45), "upper_arm.L"),
    "hand.L": ((2.4, 0, 1.45), (2.5, 0, 1.45), "forearm.L"),
    "thigh.R": ((-0.1, 0, 0.95), (-0.1, 0, 0.55), "spine"),
    "shin.R": ((-0.1, 0, 0.55), (-0.1, 0, 0.1), "thigh.R"),
    "foot.R": ((-0.1, 0, 0.1), (-0.1, -0.15, 0.0), "shin.R"),
    "thigh.L": ((0.1, 0, 0.95), (0.1, 0, 0.55), "spine"),
    "shin.L": ((0.1, 0, 0.55), (0.1, 0, 0.1), "thigh.L"),
    "foot.L": ((0.1, 0, 0.1), (0.1, -0.15, 0.0), "shin.L"),
}


def add_figure(scene, name="Figure", location=(0, 0, 0), rot_z_deg=0.0, bones=FIGURE_BONES):
    from engine_renders.host import armature_from_bones_in_blender

    obj = armature_from_bones_in_blender(scene, name, bones)
    obj.location = location
    obj.rotation_euler = (0, 0, math.radians(rot_z_deg))
    return obj


# ---------------------------------------------------------------- scenarios (child process only)
def _settings(**kw):
    from blender_addon.settings import ExtractSettings

    return ExtractSettings(**kw)


def _save_shot(shot, out: Path) -> dict:
    import numpy as np

    out.mkdir(parents=True, exist_ok=True)
    frames = []
    for f in shot.frames:
        if f.depth_m is not None:
            np.save(out / f"depth_{f.index}.npy", f.depth_m)
        if f.motion_px is not None:
            np.save(out / f"motion_{f.index}.npy", f.motion_px)
        np.save(out / f"camera_{f.index}.npy", np.asarray(f.camera.world_matrix))
        frames.append({
            "camera": {k: getattr(f.camera, k) for k in ("focal_length_mm", "sensor_width_mm", "sensor_height_mm",
                                                           "sensor_fit", "clip_start_m", "clip_end_m",
                                                           "focus_distance_m")},
            "poses": [{"name": p.name, "keypoints_px": p.keypoints_px.tolist(), "visibility": p.visibility.tolist()}
                      for p in f.poses],
        })
    return {"width": shot.width, "height": shot.height, "frame_start": shot.frame_start,
            "fps": [shot.fps.numerator, shot.fps.denominator], "pass_methods": dict(shot.pass_methods),
            "tags": [shot.tags.project, shot.tags.shot, shot.tags.version], "frames": frames}


def scenario_plane(args):
    """A camera (scaled 2x: scale must not matter) at the origin looking down
    -Z; a facing plane at 7.37 m covers the bottom-left quarter of the view
    (the top-left quarter is background), a plane
    tilted 30 degrees about Y covers the right half."""
    import bpy

    from blender_addon import host

    scene = new_scene(args["width"], args["height"])
    cam = add_camera(scene)
    cam.scale = (2, 2, 2)
    d = args["distance"]
    add_quad(scene, [(-20, -20, -d), (0, -20, -d), (0, 0, -d), (-20, 0, -d)], "Facing")  # bottom-left quarter
    t = math.tan(math.radians(30))
    z = lambda x: -5.0 - x * t  # noqa: E731  tilted plane through (0, 0, -5)
    add_quad(scene, [(0.001, -20, z(0.001)), (20, -20, z(20)), (20, 20, z(20)), (0.001, 20, z(0.001))], "Tilted")
    scene.frame_start = scene.frame_end = 1
    shot = host.shot_from_scene_in_blender(scene, _settings(resolution_scale=1.0, pose=False))
    return _save_shot(shot, Path(args["out"])) | {"scenes": len(bpy.data.scenes)}


def scenario_motion(args):
    """Camera dollies +x and pans a little over 3 frames past two planes."""
    from blender_addon import host

    scene = new_scene(args["width"], args["height"])
    cam = add_camera(scene)
    key_linear(cam, [(1, (0, 0, 0)), (2, (args["dx"], 0.05, 0.02)), (3, (2 * args["dx"], 0.1, 0.04))])
    key_linear(cam, [(1, (0, 0, 0)), (3, (0, math.radians(2.0), 0))], path="rotation_euler")
    add_quad(scene, [(-30, -30, -8), (30, -30, -8), (30, 30, -8), (-30, 30, -8)], "Back")
    add_quad(scene, [(-1, -1, -4), (1.5, -1, -3.5), (1.5, 1, -3.5), (-1, 1, -4)], "Front")
    scene.frame_start, scene.frame_end = 1, 3
    shot = host.shot_from_scene_in_blender(scene, _settings(resolution_scale=1.0, pose=False))
    return _save_shot(shot, Path(args["out"]))


def scenario_zoom(args):
    """The camera zooms (lens keyed) while it dollies, in a scene that is not
    the context scene: both change how Cycles' Vector pass must be read
    (compat.vector_pass_follows_zoom_in_blender, host.render_passes_in_blender)."""
    import bpy

    from blender_addon import compat, host

    context = new_scene(args["width"], args["height"])
    scene = bpy.data.scenes.new("Zoom")
    r = scene.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = args["width"], args["height"], 100
    cam = add_camera(scene)
    key_linear(cam, [(1, (0, 0, 0)), (4, (0.6, 0.0, 0.3))])
    key_linear(cam.data, [(1, 30.0), (4, 45.0)], path="lens")
    add_quad(scene, [(-30, -30, -8), (30, -30, -8), (30, 30, -8), (-30, 30, -8)], "Back")
    add_quad(scene, [(-1, -1, -4), (1.5, -1, -3.5), (1.5, 1, -3.5), (-1, 1, -4)], "Front")
    scene.frame_start, scene.frame_end = 1, 3
    shot = host.shot_from_scene_in_blender(scene, _settings(resolution_scale=1.0, pose=False))
    return _save_shot(shot, Path(args["out"])) | {
        "context": bpy.context.scene.name, "context_frame": context.frame_current,
        "follows_zoom": compat._PROBED.get("zoom"), "version": bpy.app.version_string,
        "data": {kind: len(getattr(bpy.data, kind)) for kind in ("scenes", "objects", "cameras", "meshes", "actions")}}


def scenario_pose(args):
    """The test figure, moved and turned; a card in front of its right knee;
    its left arm reaches out of frame. Also the shipped Human metarig is
    detected with its face keypoints."""
    import bpy

    from blender_addon import host

    import addon_utils  # importable once bpy is

    scene = new_scene(args["width"], args["height"])
    add_camera(scene, location=(0, -6, 1), rotation=(math.pi / 2, 0, 0))
    fig = add_figure(scene, location=tuple(args["location"]), rot_z_deg=args["rot_z_deg"])
    # Pose: the right forearm points straight up (armature space), so the
    # wrist lands 0.3 m above the elbow.
    from mathutils import Matrix
    pb = fig.pose.bones["forearm.R"]
    m = Matrix(((1, 0, 0, -0.45), (0, 0, -1, 0), (0, 1, 0, 1.45), (0, 0, 0, 1)))
    pb.matrix = m
    bpy.context.view_layer.update()
    add_quad(scene, args["card"], "Card")
    scene.frame_start = scene.frame_end = 1
    shot = host.shot_from_scene_in_blender(scene, _settings(resolution_scale=1.0))
    result = _save_shot(shot, Path(args["out"]))
    addon_utils.enable("rigify", default_set=True)
    bpy.ops.object.armature_human_metarig_add()
    meta = bpy.context.object
    rig = host.characters_in_blender(scene)
    result["detected"] = {obj.name: [r.mapping, list(r.present)] for obj, r in rig}
    result["metarig_name"] = meta.name
    return result


def scenario_bad_input(args):
    """Each bad input raises a GreenlightError with a clear message and
    leaves the file unchanged (compared through a fingerprint)."""
    import bpy

    from blender_addon import compat, host
    from blender_addon._deps import errors

    def fingerprint():
        s = bpy.context.scene
        return json.dumps({
            "scenes": sorted(x.name for x in bpy.data.scenes), "objects": sorted(o.name for o in bpy.data.objects),
            "frame": s.frame_current, "engine": s.render.engine, "res": [s.render.resolution_x, s.render.resolution_y],
            "passes": [s.view_layers[0].use_pass_z, s.view_layers[0].use_pass_vector],
            "images": len(bpy.data.images),
            "strips": len(compat.all_strips_in_blender(s.sequence_editor)) if s.sequence_editor else 0,
            "filepath": s.render.filepath, "format": s.render.image_settings.file_format,
        })

    def attempt(label, settings=None):
        before = fingerprint()
        try:
            host.shot_from_scene_in_blender(bpy.context.scene, settings or _settings())
        except errors.GreenlightError as exc:
            out[label] = {"error": str(exc), "type": type(exc).__name__, "unchanged": fingerprint() == before}
        else:
            after = fingerprint()
            out[label] = {"error": None, "unchanged": after == before}

    out = {}
    scene = new_scene(64, 36)
    scene.frame_start, scene.frame_end, scene.frame_current = 1, 4, 3
    add_quad(scene, [(-9, -9, -5), (9, -9, -5), (9, 9, -5), (-9, 9, -5)])
    attempt("no_camera")
    cam = add_camera(scene)
    scene.frame_current = 3
    attempt("zero_length", _settings(frame_start=5, frame_end=4))
    cam.data.type = "ORTHO"
    attempt("ortho")
    cam.data.type = "PERSP"
    cam.data.shift_x = 0.1
    attempt("shift")
    cam.data.shift_x = 0.0
    # An armature with bones no mapping knows (after a failed render-free check).
    add_figure(scene, name="Crane", bones={"boom": ((0, 0, 0), (0, 0, 1), None), "jib": ((0, 0, 1), (1, 0, 1), "boom")})
    attempt("unmapped")
    bpy.data.objects["Crane"]["greenlight_ignore"] = 1
    attempt("ok_after_ignore", _settings(frame_start=1, frame_end=2))
    return out




def _enable_addon():
    import bpy  # noqa: F401

    import addon_utils  # importable once bpy is

    mod = addon_utils.enable("blender_addon", default_set=True, handle_error=_raise)
    assert mod is not None, "addon_utils.enable returned None"
    return mod


def _raise(exc):
    raise exc


def _registered():
    import bpy

    return {
        "panel_3d": hasattr(bpy.types, "GREENLIGHT_PT_view3d"),
        "panel_vse": hasattr(bpy.types, "GREENLIGHT_PT_sequencer"),
        "op_generate": hasattr(bpy.types, "GREENLIGHT_OT_generate"),
        "scene_prop": hasattr(bpy.types.Scene, "greenlight"),
        "load_handlers": sum(getattr(h, "__name__", "") == "reattach_on_load" for h in bpy.app.handlers.load_post),
        "prefs": "blender_addon" in bpy.context.preferences.addons,
    }


def scenario_register(args):
    import bpy

    import addon_utils

    bpy.ops.wm.read_factory_settings(use_empty=True)
    out = {"before": _registered()}
    for round_ in range(2):
        _enable_addon()
        out[f"enabled_{round_}"] = _registered()
        scene = bpy.context.scene
        out[f"defaults_{round_}"] = {"backend": scene.greenlight.backend,
                                     "scale": round(scene.greenlight.resolution_scale, 3),
                                     "address": bpy.context.preferences.addons["blender_addon"].preferences.address}
        addon_utils.disable("blender_addon", default_set=True, handle_error=_raise)
        out[f"disabled_{round_}"] = _registered()
    return out


def _dolly_scene(frames=12, first=101, render=(256, 144)):
    import bpy

    scene = new_scene(*render)
    scene.frame_start, scene.frame_end = first, first + frames - 1
    cam = add_camera(scene, location=(0, -6, 1.2), rotation=(math.pi / 2, 0, 0))
    key_linear(cam, [(first, (-1, -6, 1.2)), (first + frames - 1, (1, -6, 1.2))])
    add_quad(scene, [(-20, 3, -1), (20, 3, -1), (20, 3, 10), (-20, 3, 10)], "Wall")
    add_quad(scene, [(-20, -20, 0), (20, -20, 0), (20, 20, 0), (-20, 20, 0)], "Floor")
    fig = add_figure(scene)
    fig.location = (0, 0, 0)
    bpy.context.view_layer.update()
    return scene


def _strip_report(scene):
    se = scene.sequence_editor
    strips = []
    from blender_addon import compat

    for s in (compat.all_strips_in_blender(se) if se else ()):
        strips.append({
            "name": s.name, "type": s.type, "channel": s.channel, "channel_name": se.channels[s.channel].name,
            "start": s.frame_final_start, "end": s.frame_final_end, "duration": s.frame_final_duration,
            "elements": len(s.elements), "directory": s.directory,
            "props": {k: s[k] for k in s.keys() if k.startswith("greenlight_")},
        })
    jobs = [{k: getattr(j, k) for k in ("job_id", "state", "message", "project", "shot", "version", "backend", "seed",
                                        "frame_start", "frame_count", "frames_done", "energy_wh", "co2e_g", "sci",
                                        "sci_unit", "folder")} for j in scene.greenlight.jobs]
    return {"strips": strips, "jobs": jobs}


def _pump(runtime, timeout_s=90):
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        more = runtime.drain()
        if more is None:
            return True
        time.sleep(0.05)
    return False


def scenario_e2e(args):
    """Generate through the operator against a real bridge; pump the same
    drain function the timer runs (bpy-as-a-module has no event loop)."""
    import bpy

    scene = _dolly_scene(frames=args.get("frames", 12))  # factory settings first: they reset add-ons
    _enable_addon()
    from blender_addon import runtime

    prefs = bpy.context.preferences.addons["blender_addon"].preferences
    prefs.address = args["address"]
    prefs.cache_dir = args["cache"]
    g = scene.greenlight
    g.project, g.shot, g.seed, g.resolution_scale = "spaceship", "sh010", 1234, 0.25
    out = {}
    results = []
    for _ in range(args.get("runs", 1)):
        result = bpy.ops.greenlight.generate()
        results.append(sorted(result))
        out["finished_in_time"] = _pump(runtime)
    out["operator"] = results
    out["status"] = bpy.context.window_manager.greenlight_status
    out.update(_strip_report(scene))
    if args.get("save"):
        bpy.ops.wm.save_as_mainfile(filepath=args["save"])
    return out


def scenario_unreachable(args):
    """An unreachable bridge: the operator starts, the worker reports a clear
    error, and the file gains no job record and no strip."""
    import bpy

    scene = _dolly_scene(frames=3)
    _enable_addon()
    from blender_addon import runtime

    prefs = bpy.context.preferences.addons["blender_addon"].preferences
    prefs.address = args["address"]
    prefs.cache_dir = args["cache"]
    result = bpy.ops.greenlight.generate()
    finished = _pump(runtime, timeout_s=60)
    out = {"operator": sorted(result), "finished_in_time": finished,
           "status": bpy.context.window_manager.greenlight_status, "scenes": len(bpy.data.scenes)}
    out.update(_strip_report(scene))
    # A non-local address with online access off is refused before anything runs.
    prefs.address = "greenlight.example.com:50151"
    try:
        bpy.ops.greenlight.generate()
        out["offline_error"] = None
    except RuntimeError as exc:  # operator reports of type ERROR raise in background mode
        out["offline_error"] = str(exc)
    out["online_access"] = bpy.app.online_access
    return out


def scenario_install(args):
    """Install the built zip the way a user does (Get Extensions > Install
    from Disk) into an isolated user folder, enable it, and check that it
    runs on its vendored ``bridge`` copy."""
    import sys

    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    result = bpy.ops.extensions.package_install_files(filepath=args["zip"], repo="user_default",
                                                      enable_on_install=True)
    import addon_utils

    name = next((m for m in bpy.context.preferences.addons.keys() if m.endswith(".greenlight")), None)
    out = {"result": sorted(result), "addon": name}
    if name:
        deps = sys.modules[name + "._deps"]
        out["vendored"] = deps.VENDORED
        out["errors_module"] = deps.errors.__name__
        out["stub_module"] = deps.client_module().client.bridge_pb2.__name__
        out["registered"] = hasattr(bpy.types, "GREENLIGHT_PT_view3d")
        addon_utils.disable(name, default_set=True, handle_error=_raise)
        out["unregistered"] = not hasattr(bpy.types, "GREENLIGHT_PT_view3d")
    return out


def scenario_headless(args):
    """Save a scene to a .blend, then run the headless entry point on it."""
    import bpy

    _dolly_scene(frames=args["frames"])
    blend = Path(args["blend"])
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    from blender_addon import headless

    code = None
    if args.get("cli"):
        code = headless.main([str(blend), "--address", args["address"], "--out", args["out"], "--shot", "cli"])
        return {"exit_code": code}
    summary = headless.render_and_submit(str(blend), frame_range=tuple(args["range"]), address=args["address"],
                                         out=args["out"], shot="hl010", project="ci")
    report = summary.pop("report")     # a JobReport (bridge.jobs.model)
    summary["report_frames"] = report.frames
    summary["report_state"] = report.state.value
    summary["report_energy_wh"] = report.energy.energy_wh
    summary["report_parts_wh"] = [*(f.energy_wh for f in report.per_frame),
                                  *(a.unattributed_wh for a in report.attempts)]
    summary["report_per_frame"] = [f.index for f in report.per_frame]
    summary["report_json"] = report.to_dict()
    return summary


SCENARIOS = {name[len("scenario_"):]: fn for name, fn in globals().items() if name.startswith("scenario_")}


def main(argv):
    name, args = argv[0], json.loads(argv[1]) if len(argv) > 1 else {}
    result = SCENARIOS[name](args)
    sys.stdout.write(_MARK + json.dumps(result) + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------- headless CI (test_blender_headless, test_cli)
def scenario_save_scene(args):
    """Save the dolly scene to ``args["blend"]``; ``camera: false`` leaves it
    without an active camera, ``unmapped_rig`` adds an armature no mapping fits."""
    import bpy

    scene = _dolly_scene(frames=args.get("frames", 4))
    if not args.get("camera", True):
        scene.camera = None
    if args.get("unmapped_rig"):
        add_figure(scene, name="Crane", bones={"boom": ((0, 0, 0), (0, 0, 1), None),
                                               "jib": ((0, 0, 1), (1, 0, 1), "boom")})
    bpy.ops.wm.save_as_mainfile(filepath=str(args["blend"]))
    return {"blend": str(args["blend"]), "scene": scene.name, "frame_start": scene.frame_start,
            "frame_end": scene.frame_end}


def scenario_blend_strips(args):
    """Reopen a saved .blend and list its VSE strips and Greenlight job records."""
    import bpy

    bpy.ops.wm.open_mainfile(filepath=str(args["blend"]))
    from blender_addon import props

    if not hasattr(bpy.types.Scene, "greenlight"):
        props.register()
    scene = bpy.context.scene
    out = _strip_report(scene)
    from blender_addon import compat

    se = scene.sequence_editor
    for strip, s in zip(out["strips"], compat.all_strips_in_blender(se) if se else ()):
        strip["files"] = [e.filename for e in s.elements]
    return out


def scenario_headless_codes(args):
    """Save ``args["blends"]`` (name -> save_scene args), then run
    ``headless.main(argv)`` for each case in order: its exit code, the first
    line of its stderr, whether a traceback followed, how many times it got as
    far as extracting (the pass render) and how long it took. A case with
    ``bug`` has the extraction raise ZeroDivisionError (an unexpected error)."""
    import contextlib
    import io
    import time

    for blend_args in args["blends"].values():
        scenario_save_scene(blend_args)
    from blender_addon import headless, host

    original = host.shot_from_scene_in_blender
    out = {}
    for case in args["cases"]:
        calls = []

        def extract(*a, _bug=case.get("bug"), _calls=calls, **k):
            _calls.append(1)
            return 1 / 0 if _bug else original(*a, **k)

        host.shot_from_scene_in_blender = extract
        err = io.StringIO()
        t0 = time.monotonic()
        with contextlib.redirect_stderr(err):
            code = headless.main(case["argv"])
        text = err.getvalue()
        out[case["name"]] = {"code": code, "seconds": time.monotonic() - t0, "extracted": len(calls),
                             "error": next((ln for ln in text.splitlines() if ln.startswith("greenlight:")), ""),
                             "traceback": "Traceback (most recent call last)" in text}
    host.shot_from_scene_in_blender = original
    return out


SCENARIOS.update(save_scene=scenario_save_scene, blend_strips=scenario_blend_strips,
                 headless_codes=scenario_headless_codes)


# ---------------------------------------------------------------- local bridge (test_local_bridge)
def _bridge_pump(runtime, state, timeout_s=60):
    import time

    deadline = time.monotonic() + timeout_s
    lb = runtime.LOCAL["bridge"]
    while time.monotonic() < deadline:
        runtime.local_bridge_tick()   # what the bpy.app.timers callback runs (bpy as a module has no event loop)
        lb = runtime.LOCAL["bridge"]
        if lb is not None and lb.state.value == state:
            break
        time.sleep(0.1)
    return {"state": lb.state.value if lb else None, "pid": lb.pid if lb else None,
            "address": lb.address if lb else "", "message": lb.message if lb else ""}


def _pid_alive(pid):
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def scenario_local_bridge(args):
    """"Use a local bridge" in real Blender: turning it on starts the bridge,
    disabling the add-on (unregister) stops it, enabling the add-on with the
    preference set starts it again, the jobs' settings point at it, a crash
    is restarted once by the timer, and the last disable leaves no process."""
    import signal

    import bpy

    import addon_utils

    bpy.ops.wm.read_factory_settings(use_empty=True)
    _enable_addon()
    from blender_addon import host, runtime
    from blender_addon.settings import with_local_bridge

    prefs = bpy.context.preferences.addons["blender_addon"].preferences
    prefs.bridge_python = args["python"]
    prefs.use_local_bridge = True          # the update callback starts it (without blocking)
    out = {"toggled_on": _bridge_pump(runtime, "serving")}
    addon_utils.disable("blender_addon", default_set=False, handle_error=_raise)
    out["after_disable"] = {"alive": _pid_alive(out["toggled_on"]["pid"]),
                            "state": runtime.LOCAL["bridge"].state.value if runtime.LOCAL["bridge"] else "stopped"}
    _enable_addon()
    prefs = bpy.context.preferences.addons["blender_addon"].preferences
    out["pref_kept"] = prefs.use_local_bridge
    out["enabled_again"] = _bridge_pump(runtime, "serving")
    lb = runtime.LOCAL["bridge"]
    jobs = with_local_bridge(host.prefs_in_blender(), runtime.use_local_bridge())
    out["jobs_settings"] = {"address": jobs.address, "token_matches": bool(lb.token) and jobs.token == lb.token,
                            "tls": jobs.tls}
    os.kill(lb.pid, signal.SIGKILL)
    import time

    deadline = time.monotonic() + 10
    while lb.pid == out["enabled_again"]["pid"] and time.monotonic() < deadline:
        runtime.local_bridge_tick()
        time.sleep(0.05)
    out["crash"] = _bridge_pump(runtime, "serving")
    out["crash"]["status"] = bpy.context.window_manager.greenlight_status
    pid = lb.pid
    addon_utils.disable("blender_addon", default_set=True, handle_error=_raise)
    out["final"] = {"alive": _pid_alive(pid), "state": lb.state.value}
    return out


SCENARIOS.update(local_bridge=scenario_local_bridge)


# ---------------------------------------------------------------- dependency check, platform zips (test_blender_build)
class _ImportBlock:
    """A meta-path finder for the tests: the modules ``names`` (and their submodules) cannot be imported from
    ``blocked_dirs`` (from anywhere when None), as if this Python did not have them there."""

    def __init__(self, names, blocked_dirs=None):
        self.names = tuple(names)
        self.blocked_dirs = None if blocked_dirs is None else tuple(os.path.realpath(d) for d in blocked_dirs)

    def _blocked(self, path):
        real = os.path.realpath(path)
        return any(real == d or real.startswith(d + os.sep) for d in self.blocked_dirs)

    def find_spec(self, fullname, path=None, target=None):
        import importlib.machinery

        if not any(fullname == n or fullname.startswith(n + ".") for n in self.names):
            return None
        if self.blocked_dirs is not None:
            search = [p for p in (sys.path if path is None else path) if isinstance(p, str) and not self._blocked(p)]
            spec = importlib.machinery.PathFinder.find_spec(fullname, search, target)
            if spec is not None:
                return spec
        raise ModuleNotFoundError(f"No module named {fullname!r} (blocked by the test)", name=fullname)


_CLIENT_MODULES = ("grpc", "google.protobuf", "google.rpc", "typing_extensions")


def _block_imports(block):
    """``"site"``: the client's modules only from outside today's site-packages (so from the wheels an
    extension installs); a list: these modules from nowhere."""
    if not block:
        return None
    if block == "site":
        finder = _ImportBlock(_CLIENT_MODULES, [p for p in sys.path if "site-packages" in p or "dist-packages" in p])
    else:
        finder = _ImportBlock(block)
    sys.meta_path.insert(0, finder)
    return finder


def _module_files():
    out = {}
    for name in ("numpy", *_CLIENT_MODULES, "google.rpc.status_pb2", "grpc._cython.cygrpc"):
        mod = sys.modules.get(name)
        out[name] = getattr(mod, "__file__", None) if mod is not None else None
    return out


def _addon_state(name):
    import bpy

    check = sys.modules[name + ".deps_check"]
    addon = bpy.context.preferences.addons.get(name)
    return {
        "op_generate": hasattr(bpy.types, "GREENLIGHT_OT_generate"),
        "panel_3d": hasattr(bpy.types, "GREENLIGHT_PT_view3d"),
        "notice_3d": hasattr(bpy.types, "GREENLIGHT_PT_deps_view3d"),
        "notice_vse": hasattr(bpy.types, "GREENLIGHT_PT_deps_sequencer"),
        "prefs": type(addon.preferences).__name__ if addon is not None and addon.preferences is not None else None,
        "notice": list(check._NOTICE["lines"]),
        "command": check._NOTICE["command"],
    }


def scenario_deps_install(args):
    """Install a built zip with enable (Get Extensions > Install from Disk) into an isolated user folder, with
    the client's modules blocked as ``args["block"]`` says; report what registered and where they came from."""
    finder = _block_imports(args.get("block"))
    import bpy

    import addon_utils

    bpy.ops.wm.read_factory_settings(use_empty=True)
    result = bpy.ops.extensions.package_install_files(filepath=args["zip"], repo="user_default",
                                                      enable_on_install=True)
    name = next((m for m in bpy.context.preferences.addons.keys() if m.endswith(".greenlight")), None)
    out = {"result": sorted(result), "addon": name, "python": list(sys.version_info[:2]),
           "user": bpy.utils.resource_path("USER")}
    if not name:
        return out
    out["enabled"] = _addon_state(name)
    out["files"] = _module_files()
    out["missing_after"] = [m.distribution for m in sys.modules[name + ".deps_check"].missing()]
    if "google.protobuf" in sys.modules:
        from google.protobuf.internal import api_implementation

        out["protobuf_impl"] = api_implementation.Type()
    site = Path(bpy.utils.user_resource("EXTENSIONS", path=".local"))
    out["site_files"] = sorted(p.name for p in site.rglob("cygrpc*")) if site.is_dir() else []
    if out["enabled"]["op_generate"]:
        out["stub_module"] = sys.modules[name + "._deps"].client_module().client.bridge_pb2.__name__
    addon_utils.disable(name, default_set=True, handle_error=_raise)
    out["disabled"] = _addon_state(name)
    if finder is not None:
        sys.meta_path.remove(finder)
    return out


def scenario_deps_enable(args):
    """Enable the source add-on with ``args["block"]`` unimportable: it registers only the notice; then
    without the block, enabling again registers everything."""
    finder = _block_imports(args["block"])
    import bpy

    import addon_utils

    bpy.ops.wm.read_factory_settings(use_empty=True)
    out = {}
    _enable_addon()
    out["blocked"] = _addon_state("blender_addon")
    addon_utils.disable("blender_addon", default_set=True, handle_error=_raise)
    out["blocked_disabled"] = _addon_state("blender_addon")
    sys.meta_path.remove(finder)
    _enable_addon()
    out["unblocked"] = _addon_state("blender_addon")
    addon_utils.disable("blender_addon", default_set=True, handle_error=_raise)
    out["unblocked_disabled"] = _addon_state("blender_addon")
    return out


SCENARIOS.update(deps_install=scenario_deps_install, deps_enable=scenario_deps_enable)


if __name__ == "__main__":
    main(sys.argv[1:])
    from blender_addon import compat

    compat.end_process_in_blender(0)   # a plain exit segfaults on bpy 4.2.23 after an add-on registered classes
