"""Child-process entry: ``python -m engine_renders._child ARGS_JSON``.

Builds one sample scene with bpy, extracts it with the Blender add-on's
``shot_from_scene_in_blender`` (the same code the add-on's Generate button
and ``greenlight render`` run) and saves the .glshot (and the .blend when
asked). Prints one result line for the parent; never call it in-process.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback

_RESULT_MARK = "GREENLIGHT-ENGINE-RENDER "


def run(args: dict) -> dict:
    timings = {}
    t = time.perf_counter()
    import bpy

    from blender_addon import host as addon_host
    from blender_addon.settings import ExtractSettings
    from bridge.shot.files import save_shot

    timings["import_bpy"] = time.perf_counter() - t
    module = importlib.import_module(f"engine_renders.{args['name']}")
    t = time.perf_counter()
    scene = module.build_scene_in_blender(args["frames"], args["width"], args["height"])
    timings["build"] = time.perf_counter() - t
    if args.get("blend"):
        bpy.ops.wm.save_as_mainfile(filepath=args["blend"], check_existing=False)
    t = time.perf_counter()
    settings = ExtractSettings(width=args["width"], height=args["height"], project="samples", shot=args["name"],
                               version=1, scratch_dir=args.get("scratch"))
    shot = addon_host.shot_from_scene_in_blender(scene, settings)
    timings["extract"] = time.perf_counter() - t
    t = time.perf_counter()
    save_shot(shot, args["shot"])
    timings["save"] = time.perf_counter() - t
    rigs = {obj.name: obj.get("greenlight_rig_source", "") for obj in scene.objects if obj.type == "ARMATURE"}
    return {"timings": timings, "info": {
        "bpy": bpy.app.version_string, "frames": shot.frame_count, "size": [shot.width, shot.height],
        "pass_methods": dict(shot.pass_methods), "source": shot.source, "rigs": rigs,
        "description": getattr(module, "DESCRIPTION", "")}}


def main(argv: list[str]) -> int:
    args = json.loads(argv[0])
    try:
        result = run(args)
    except Exception as exc:  # noqa: BLE001 - reported to the parent with the traceback on stderr
        traceback.print_exc()
        result, code = {"error": f"{type(exc).__name__}: {exc}"}, 1
    else:
        code = 0
    sys.stdout.write(_RESULT_MARK + json.dumps(result) + "\n")
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    from blender_addon import compat

    compat.end_process_in_blender(main(sys.argv[1:]))   # bpy 4.2.23 segfaults at a plain exit after Rigify
