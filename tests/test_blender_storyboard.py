"""From screenplay to animatic in real Blender (bpy): the blocked scenes keep
each move's subject in frame, ``greenlight storyboard`` runs end to end
against a real bridge (guides backend), a malformed script names its line,
and the "Block Shots from Script" operator adds the scenes to an open file.

Blender work runs in a child Python (``python -m tests.test_blender_storyboard
SCENARIO ARGS_JSON``; bpy state is global and a crash stays out of pytest);
the scenarios below print one JSON line that the tests check.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "bridge" / "storyboard" / "samples" / "sample.fountain"
_MARK = "GREENLIGHT-STORYBOARD-RESULT "
_ENV = dict(os.environ, GRPC_ENABLE_FORK_SUPPORT="0", PYTHONPATH=str(REPO))
FPS = 2          # the end-to-end run: 79 frames for the sample's 39.5 s
SCALE = "0.05"   # 64 x 36 passes


def _scenario(name: str, timeout: float = 120, **args) -> dict:
    proc = subprocess.run([sys.executable, "-m", "tests.test_blender_storyboard", name, json.dumps(args)], cwd=REPO,
                          env=_ENV, capture_output=True, text=True, timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith(_MARK):
            return json.loads(line[len(_MARK):])
    raise AssertionError(f"scenario {name} printed no result (rc {proc.returncode}):\n"
                         f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}")


def _cli(*args: str, timeout: float = 150) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bridge.cli", "storyboard", *args], cwd=REPO, env=_ENV,
                          capture_output=True, text=True, timeout=timeout)


def _dead_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


# ---------------------------------------------------------------- (a) every move keeps the head in frame
def test_every_camera_move_keeps_the_projected_head_in_frame_in_blender():
    from bridge.shot.moves import CameraMove

    r = _scenario("moves", sizes=["close-up", "medium"], fps=12, duration_s=2.0)
    assert sorted({(s["move"], s["size"]) for s in r["shots"]}) == sorted(
        (m.value, size) for m in CameraMove for size in ("close-up", "medium"))
    for s in r["shots"]:
        where = f"{s['size']} {s['move']}"
        assert s["frames"] == 24, where
        # real bpy: every vertex of the placeholder's head mesh, on every frame, inside the frame and in front
        assert 0.0 <= s["x_min"] and s["x_max"] <= 1.0, (where, s["x_min"], s["x_max"])
        assert 0.0 <= s["y_min"] and s["y_max"] <= 1.0, (where, s["y_min"], s["y_max"])
        assert s["z_min"] > 0.0, where
        # the keyed camera is the blocking's path, frame by frame
        assert s["matrix_error"] < 1e-4 and s["lens_error"] < 1e-4, where
        first, last = s["head_first"], s["head_last"]   # (x, y, height) of the head in the frame
        move = s["move"]
        if move == "static":
            assert s["camera_travel_m"] == 0.0 and s["turn_deg"] == 0.0 and first == last, where
        elif move in ("pan", "truck"):
            assert abs(last[0] - first[0]) > 0.02, where       # the head crosses the frame sideways
        elif move == "tilt":
            assert abs(last[1] - first[1]) > 0.01 and s["turn_deg"] > 3.0, where
        elif move in ("dolly-in", "zoom"):
            assert last[2] > first[2] * 1.1, where             # ends on the framing: the head grows
        elif move == "dolly-out":
            assert first[2] > last[2] * 1.1, where
        elif move in ("crane", "orbit"):                        # re-aimed at the subject while the camera travels
            assert s["camera_travel_m"] > 0.1 and abs(last[0] - first[0]) < 0.1, where
        assert math.isclose(s["head_top_m"], s["figure_height_m"], abs_tol=0.005), where   # scaled to its mark


# ---------------------------------------------------------------- (b) the command end to end
def test_storyboard_command_end_to_end_with_the_guides_backend(start_bridge, tmp_path):
    import opentimelineio as otio

    from bridge.client import BridgeClient
    from bridge.client.animatic import probe_frame_count
    from bridge.storyboard.shots import ShotList

    # One device: a batch job planned while another runs waits for the device, and is released when the
    # scheduler re-plans its held jobs; every half second here (the default is every 30 minutes).
    bridge = start_bridge(replan_every_s=0.5)
    out = tmp_path / "board"
    proc = _cli("--demo", "--out", str(out), "--address", bridge.address, "--fps", str(FPS), "--scale", SCALE,
                "--timeout", "90")
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])

    shots = ShotList.from_json((out / "shots.json").read_text())
    assert ShotList.from_csv((out / "shots.csv").read_text()) == shots
    ids = [s.id for s in shots.shots]
    n = len(ids)
    assert n == summary["shots"] == 11
    frames_per_shot = [max(1, round(s.duration_s * FPS)) for s in shots.shots]

    # N cameras, each bound to a marker at its shot's first frame, in the saved .blend files
    blends = sorted((out / "scenes").glob("S*.blend"))
    assert [b.name for b in blends] == ["S01.blend", "S02.blend", "S03.blend"]
    seen = _scenario("inspect_blends", blends=[str(b) for b in blends])
    markers = [m for scene in seen["scenes"] for m in scene["markers"]]
    assert [m["name"] for m in markers] == ids
    assert all(m["camera"] == m["name"] for m in markers)
    cams = {c["name"]: c for scene in seen["scenes"] for c in scene["cameras"]}
    assert sorted(cams) == sorted(ids)
    for scene, shots_of_scene in zip(seen["scenes"], shots.scenes):
        start = 1
        for m, s in zip(scene["markers"], shots_of_scene.shots):
            count = max(1, round(s.duration_s * FPS))
            assert m["frame"] == start, m
            assert cams[m["name"]]["keys"] == [start, start + count - 1], m   # keyed over its shot's frames
            start += count
        assert scene["frame_range"] == [1, start - 1]
        assert sorted(scene["characters"]) == sorted(shots_of_scene.characters)
        assert scene["walls"] == (0 if shots_of_scene.setting == "EXT" else 4) and scene["floor"]

    # N clips in the OTIO timeline, in order, with energy, carbon and SCI per shot from its report
    timeline = otio.adapters.read_from_file(str(out / "storyboard.otio"))
    (track,) = timeline.tracks
    clips = list(track.find_clips())
    assert [c.name for c in clips] == ids
    assert [c.source_range.duration.to_frames() for c in clips] == frames_per_shot
    for clip, s in zip(clips, shots.shots):
        meta = clip.metadata["greenlight"]
        report = json.loads((Path(meta["report"])).read_text())
        assert meta["shot"] == s.id and meta["storyboard"]["shot"] == s.id and meta["storyboard"]["move"] == s.move
        # the report's figure (OTIO's JSON keeps doubles to about 1e-16 relative)
        assert report["energy"]["energy_wh"] > 0 and math.isclose(meta["energy_wh"], report["energy"]["energy_wh"],
                                                                  rel_tol=1e-12)
        assert meta["co2e_g_location"] > 0 and meta["sci"] is not None and meta["sci_unit"]
        assert meta["frames"] == len(meta["per_frame"]) == max(1, round(s.duration_s * FPS))
    totals = timeline.metadata["greenlight"]
    assert math.isclose(totals["energy_wh_total"], math.fsum(c.metadata["greenlight"]["energy_wh"] for c in clips))

    # the animatic: every shot in order, as long as the shot list says
    assert probe_frame_count(out / "animatic.mp4") == sum(frames_per_shot) == summary["frames"]

    # every shot went to the bridge as a batch job with a deadline (as the bridge stored it), with its prompt
    with BridgeClient(bridge.address) as c:
        jobs = {j.tags.shot: bridge.manager.store.get(j.job_id) for j in c.jobs(project="storyboard")}
    assert sorted(jobs) == sorted(ids)
    for s in shots.shots:
        job = jobs[s.id]
        assert job.scheduling.job_class == "batch" and job.scheduling.deadline is not None, s.id
        assert job.generation.backend == "guides" and job.generation.prompt == s.prompt, s.id
    assert set(summary["stages"]) >= {"parse", "shot_list", "blocking", "extraction", "generation", "assembly"}


# ---------------------------------------------------------------- (c) bad input and exit codes
def test_malformed_script_exits_2_naming_the_line_and_an_unreachable_bridge_exits_3(tmp_path):
    bad = tmp_path / "bad.fountain"
    bad.write_text("Title: Broken\n\nMAYA walks in before any heading.\n\nINT. KITCHEN - NIGHT\n\nTom sits.\n")
    proc = _cli(str(bad), "--out", str(tmp_path / "out"), "--address", _dead_address())
    assert proc.returncode == 2, proc.stderr
    assert "bad.fountain, line 3" in proc.stderr, proc.stderr     # the script is read before the bridge is asked
    assert not (tmp_path / "out" / "scenes").exists()

    proc = _cli("--demo", "--out", str(tmp_path / "out2"), "--address", _dead_address())
    assert proc.returncode == 3, proc.stderr
    assert not (tmp_path / "out2" / "scenes").exists()   # nothing built before the bridge answered

    # an edited shot list that breaks a rule names its row, also before the bridge is asked
    import csv
    import io

    from bridge.storyboard.planner import plan_shots
    from bridge.storyboard.screenplay import load_screenplay

    rows = list(csv.DictReader(io.StringIO(plan_shots(load_screenplay(SAMPLE)).to_csv())))
    rows[2]["size"] = "extreme-wide"     # the third shot: row 4 of the file (the header is row 1)
    edited = io.StringIO()
    writer = csv.DictWriter(edited, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    (tmp_path / "shots.csv").write_text(edited.getvalue())
    proc = _cli("--demo", "--shot-list", str(tmp_path / "shots.csv"), "--out", str(tmp_path / "out3"),
                "--address", _dead_address())
    assert proc.returncode == 2, proc.stderr
    assert "shots.csv: CSV row 4" in proc.stderr and "extreme-wide" in proc.stderr, proc.stderr


# ---------------------------------------------------------------- (d) the operator
def test_block_shots_from_script_operator_adds_the_scenes_to_the_open_file(tmp_path):
    from bridge.storyboard.planner import plan_shots
    from bridge.storyboard.screenplay import load_screenplay

    bad = tmp_path / "bad.fountain"
    bad.write_text("INT. KITCHEN - NIGHT\n\nTom sits.\n\nEXT. - NIGHT\n\nWind.\n")
    r = _scenario("operator", script=str(SAMPLE), bad=str(bad))
    expected = plan_shots(load_screenplay(SAMPLE))
    assert r["before"] == ["Scene"]
    assert r["in_menu"] and r["drawn"] == ["greenlight.block_script"]   # File > Import > Screenplay as Blocked Shots
    assert r["result"] == ["FINISHED"]
    added = [s for s in r["scenes"] if s["name"] != "Scene"]
    assert [s["name"][:3] for s in added] == ["S01", "S02", "S03"]
    assert [[m["name"] for m in s["markers"]] for s in added] == [[x.id for x in sc.shots] for sc in expected.scenes]
    assert all(m["camera"] == m["name"] for s in added for m in s["markers"])
    assert [sorted(s["characters"]) for s in added] == [sorted(sc.characters) for sc in expected.scenes]
    original = next(s for s in r["scenes"] if s["name"] == "Scene")
    assert original["markers"] == [] and original["objects"] == r["original_objects"]   # left as it was
    assert r["bad_error"] and "bad.fountain, line 5" in r["bad_error"]
    assert r["scenes_after_bad"] == len(r["scenes"])   # a refused script adds nothing


def test_the_built_extension_blocks_with_its_vendored_storyboard_and_figures(tmp_path):
    from blender_addon import build

    staged = build.stage(tmp_path / "ext" / "greenlight")
    assert (staged / "_vendor" / "bridge" / "storyboard" / "samples" / "sample.fountain").is_file()
    figures = (staged / "_vendor" / "engine_renders" / "host.py").read_text()
    assert "from ... import compat\n" in figures and "from blender_addon" not in figures
    assert "screenplay-tools" in build.WHEELS and build.WHEELS["screenplay-tools"] == "0.0.10"
    r = _scenario("vendored", root=str(staged.parent), script=str(SAMPLE))
    assert r["vendored"] and r["figures"] == "greenlight._vendor.engine_renders.host"
    assert r["scenes"] == 3 and r["markers"] == 11
    assert r["outside_modules"] == []    # neither the installed bridge nor engine_renders was imported


# ================================================================ child side (bpy)
def _moves(sizes, fps, duration_s):
    import bpy
    import numpy as np

    from blender_addon import storyboard_scene
    from bridge.shot.moves import CameraMove, ShotSize
    from bridge.storyboard.blocking import plan_blocking
    from bridge.storyboard.shots import PlannedShot, SceneShots, ShotList

    from bpy_extras.object_utils import world_to_camera_view

    scenes = []
    for size in sizes:
        for move in CameraMove:
            n = len(scenes) + 1
            shot = PlannedShot(f"M{n:02d}", ShotSize(size), move, duration_s, ("MAYA",))
            scenes.append(SceneShots(n, "INT. ROOM - DAY", "INT", "ROOM", "DAY", 0, ("MAYA",), (shot,)))
    blocking = plan_blocking(ShotList(tuple(scenes)), fps=fps)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    out = []
    for b in blocking:
        sc = bpy.data.scenes.new(storyboard_scene.scene_name(b))
        with storyboard_scene.current_scene_in_blender(sc):
            (cam_info,) = storyboard_scene.build_scene_in_blender(sc, b)
            (shot,) = b.shots
            cam = bpy.data.objects[cam_info["camera"]]
            arm = next(o for o in sc.objects if o.type == "ARMATURE")
            head = next(c for c in arm.children if c.parent_bone == "spine.006")
            xs, ys, zs, centres, errors, lens_errors, positions, forwards = [], [], [], [], [], [], [], []
            for i, f in enumerate(range(cam_info["frame_start"], cam_info["frame_end"] + 1)):
                sc.frame_set(f)
                dg = bpy.context.evaluated_depsgraph_get()
                cam_ev, head_ev = cam.evaluated_get(dg), head.evaluated_get(dg)
                pts = [world_to_camera_view(sc, cam_ev, head_ev.matrix_world @ v.co) for v in head.data.vertices]
                px, py, pz = (np.array([p[k] for p in pts]) for k in range(3))
                xs += [px.min(), px.max()]
                ys += [py.min(), py.max()]
                zs.append(pz.min())
                centres.append([float(px.mean()), float(py.mean()), float(py.max() - py.min())])
                m = np.array(cam_ev.matrix_world)
                errors.append(float(np.abs(m - np.asarray(shot.camera[i].world_matrix)).max()))
                lens_errors.append(abs(cam_ev.data.lens - shot.camera[i].focal_length_mm))
                positions.append(m[:3, 3])
                forwards.append(-m[:3, 2])
            sc.frame_set(cam_info["frame_start"])
            dg = bpy.context.evaluated_depsgraph_get()
            top = max((head.evaluated_get(dg).matrix_world @ v.co).z for v in head.data.vertices)
        cos = float(np.clip(np.dot(forwards[0], forwards[-1]), -1, 1))
        out.append({"move": shot.move.value, "size": shot.size.value, "frames": len(centres),
                    "x_min": float(min(xs)), "x_max": float(max(xs)), "y_min": float(min(ys)),
                    "y_max": float(max(ys)), "z_min": float(min(zs)), "matrix_error": max(errors),
                    "lens_error": max(lens_errors), "head_first": centres[0], "head_last": centres[-1],
                    "camera_travel_m": float(np.linalg.norm(positions[-1] - positions[0])),
                    "turn_deg": math.degrees(math.acos(cos)),
                    "head_top_m": float(top), "figure_height_m": b.marks[0].height_m})
    return {"shots": out}


def _scene_facts(sc) -> dict:
    from blender_addon import compat

    cameras = []
    for obj in sc.objects:
        if obj.type != "CAMERA":
            continue
        frames = [k.co[0] for fc in compat.action_fcurves_in_blender(obj.animation_data.action)
                  for k in fc.keyframe_points]
        cameras.append({"name": obj.name, "keys": [round(min(frames)), round(max(frames))]})
    markers = sorted(({"name": m.name, "frame": m.frame, "camera": m.camera.name if m.camera else None}
                      for m in sc.timeline_markers), key=lambda m: m["frame"])
    return {"name": sc.name, "markers": markers, "cameras": cameras, "frame_range": [sc.frame_start, sc.frame_end],
            "characters": [o.get("greenlight_character") for o in sc.objects if o.type == "ARMATURE"],
            "walls": sum(1 for o in sc.objects if " Wall." in o.name),
            "floor": any(o.name.endswith(" Floor") for o in sc.objects),
            "objects": sorted(o.name for o in sc.objects)}


def _inspect_blends(blends):
    import bpy

    scenes = []
    for path in blends:
        bpy.ops.wm.open_mainfile(filepath=path)
        scenes += [_scene_facts(sc) for sc in bpy.data.scenes]
    return {"scenes": scenes}


def _operator(script, bad):
    import bpy

    import blender_addon

    bpy.ops.wm.read_factory_settings(use_empty=True)
    original = bpy.context.scene
    bpy.data.objects.new("Keep", None)
    original.collection.objects.link(bpy.data.objects["Keep"])
    before = [s.name for s in bpy.data.scenes]
    original_objects = sorted(o.name for o in original.objects)
    blender_addon.register()
    from blender_addon import ui

    drawn = []   # the File > Import entry, drawn into a recording layout
    in_menu = ui.menu_block_script in bpy.types.TOPBAR_MT_file_import._dyn_ui_initialize()
    ui.menu_block_script(type("Menu", (), {"layout": type("Layout", (), {
        "operator": lambda self, op, **kw: drawn.append(op)})()})(), bpy.context)
    result = bpy.ops.greenlight.block_script(filepath=script)
    scenes = [_scene_facts(sc) for sc in bpy.data.scenes]
    bad_error = ""
    try:
        bpy.ops.greenlight.block_script(filepath=bad)
    except RuntimeError as exc:   # an operator that reports an ERROR raises it to its Python caller
        bad_error = str(exc)
    return {"before": before, "result": sorted(result), "scenes": scenes, "original_objects": original_objects,
            "bad_error": bad_error, "scenes_after_bad": len(bpy.data.scenes), "in_menu": in_menu, "drawn": drawn}


def _vendored(root, script):
    import importlib

    import bpy

    sys.path.insert(0, root)
    scene_module = importlib.import_module("greenlight.storyboard_scene")
    deps = importlib.import_module("greenlight._deps")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scenes = scene_module.block_script_in_blender(script, fps=2.0, width=1280, height=720)
    outside = sorted(m for m in sys.modules if m.split(".")[0] in ("bridge", "engine_renders", "blender_addon"))
    return {"vendored": deps.VENDORED, "figures": scene_module.figures_module().__name__, "scenes": len(scenes),
            "markers": sum(len(sc.timeline_markers) for sc in scenes), "outside_modules": outside}


SCENARIOS = {"moves": _moves, "inspect_blends": _inspect_blends, "operator": _operator, "vendored": _vendored}

if __name__ == "__main__":
    result = SCENARIOS[sys.argv[1]](**json.loads(sys.argv[2]))
    print(_MARK + json.dumps(result), flush=True)
    from blender_addon import compat

    compat.end_process_in_blender(0)   # bpy 4.2/4.5 crash or hang in their exit destructors once classes registered
