"""``greenlight storyboard``: a screenplay (.fountain / .fdx) to a shot list,
one blocked .blend per scene, passes per shot, every shot generated on the
bridge as a batch job, then the animatic (MP4) and an OTIO timeline with
energy, carbon and SCI per shot (docs/storyboard.md).

The work is the Blender add-on's ``storyboard.main``, found through the
``greenlight.commands`` entry point ``storyboard``: the core package never
imports the add-on. Every client option (address, token, TLS, root
certificate) is handed on; exit codes are headless.main's (2 a malformed
script, naming its line; 3 the bridge unreachable; 1 a job failed).
"""

from __future__ import annotations

import sys

from ..errors import EXIT_BAD_INPUT
from .common import client_opts, load_command


def add_parsers(sub) -> None:
    sp = sub.add_parser("storyboard", help="screenplay -> blocked Blender scenes -> previz animatic + OTIO, "
                                           "with carbon per shot")
    client_opts(sp)
    sp.add_argument("script", nargs="?", help=".fountain or .fdx screenplay")
    sp.add_argument("--demo", action="store_true", help="the sample screenplay (3 scenes, 11 shots)")
    sp.add_argument("--out", default="storyboard", help="output folder (default: storyboard/)")
    sp.add_argument("--backend", help="generation backend (default: guides)")
    sp.add_argument("--project")
    sp.add_argument("--seed", type=int)
    sp.add_argument("--scale", type=float, help="pass resolution as a fraction of --width x --height (default 0.25)")
    sp.add_argument("--width", type=int, help="frame width the shots are blocked for (default 1280)")
    sp.add_argument("--height", type=int, help="frame height the shots are blocked for (default 720)")
    sp.add_argument("--fps", type=int, help="frames a second (default 24)")
    sp.add_argument("--shot-list", help="an edited shots.csv / shots.json to use instead of the rules")
    sp.add_argument("--planner", help="a shot planner plug-in (entry point group greenlight.shot_planners)")
    sp.add_argument("--priority", choices=("batch", "interactive"),
                    help="batch (default): the carbon-aware scheduler may move the jobs before the deadline")
    sp.add_argument("--deadline-hours", type=float, help="batch jobs: done within this many hours (default 8)")
    sp.add_argument("--timeout", type=float, help="seconds to wait for the jobs (default: the deadline + 10 min)")
    sp.set_defaults(func=cmd_storyboard)


def storyboard_argv(args) -> list[str]:
    """The ``storyboard.main`` arguments for parsed ``greenlight storyboard`` options."""
    argv = [args.script] if args.script else []
    argv += ["--address", args.address, "--out", args.out]
    for flag, value in (("--backend", args.backend), ("--project", args.project), ("--seed", args.seed),
                        ("--scale", args.scale), ("--width", args.width), ("--height", args.height),
                        ("--fps", args.fps), ("--shot-list", args.shot_list), ("--planner", args.planner),
                        ("--priority", args.priority), ("--deadline-hours", args.deadline_hours),
                        ("--timeout", args.timeout), ("--token", args.token or None),
                        ("--tls-root-cert", args.tls_root_cert or None)):
        if value is not None:
            argv += [flag, str(value)]
    if args.demo:
        argv.append("--demo")
    if args.tls:
        argv.append("--tls")
    return argv


def cmd_storyboard(args) -> int:
    import importlib.util

    if importlib.util.find_spec("bpy") is None:
        print("greenlight storyboard needs Blender's Python module: pip install 'greenlight[blender,storyboard,otio]'",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    storyboard_main = load_command("storyboard", "storyboard")   # blender_addon.storyboard:main
    # 0 done, 1 a job failed or was cancelled, 2 bad input (a malformed script names its line), 3 unreachable
    return storyboard_main(storyboard_argv(args))
