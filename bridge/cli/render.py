"""``greenlight render``: extract a .blend's shot with Blender headless,
submit it and write frames + MP4 + report into a new version folder.

The work is the Blender add-on's ``headless.main``, found through the
``greenlight.commands`` entry point ``render``: the core package never
imports the add-on. Every client option (address, token, TLS, root
certificate) is handed on; exit codes are headless.main's.
"""

from __future__ import annotations

import sys

from ..errors import EXIT_BAD_INPUT
from .common import client_opts, load_command


def add_parsers(sub) -> None:
    sp = sub.add_parser("render", help="extract a .blend's shot with Blender, submit, write frames + MP4 + report")
    client_opts(sp)
    sp.add_argument("blend")
    sp.add_argument("--shot", help="shot tag (default: the scene's Greenlight panel value or the scene name)")
    sp.add_argument("--scene", help="scene to extract (default: the file's active scene)")
    sp.add_argument("--camera", help="camera object (default: the scene camera)")
    sp.add_argument("--frames", help="START-END (default: the scene range)")
    sp.add_argument("--project")
    sp.add_argument("--backend")
    sp.add_argument("--seed", type=int)
    sp.add_argument("--scale", type=float, help="pass resolution as a fraction of the render resolution")
    sp.add_argument("--out", default="out", help="frames go to OUT/project/shot/vNNN, a new version each run")
    sp.add_argument("--save", action="store_true", help="place the frames on the VSE and save the .blend")
    sp.set_defaults(func=cmd_render)


def headless_argv(args) -> list[str]:
    """The ``headless.main`` arguments for parsed ``greenlight render`` options."""
    argv = [args.blend, "--address", args.address, "--out", args.out]
    for flag, value in (("--shot", args.shot), ("--scene", args.scene), ("--camera", args.camera),
                        ("--frames", args.frames), ("--project", args.project), ("--backend", args.backend),
                        ("--seed", args.seed), ("--token", args.token or None),
                        ("--tls-root-cert", args.tls_root_cert or None), ("--scale", args.scale)):
        if value is not None:
            argv += [flag, str(value)]
    if args.tls:
        argv.append("--tls")
    if args.save:
        argv.append("--save")
    return argv


def cmd_render(args) -> int:
    import importlib.util

    if importlib.util.find_spec("bpy") is None:
        print("greenlight render needs Blender's Python module: pip install 'greenlight[blender]' "
              "(or run blender -b scene.blend --python-expr ... with the add-on installed)", file=sys.stderr)
        return EXIT_BAD_INPUT
    headless_main = load_command("render", "render")   # blender_addon.headless:main
    # 0 done, 1 failed/cancelled, 2 bad input or refused, 3 unreachable, 4 bad scene, 5 a bug
    return headless_main(headless_argv(args))
