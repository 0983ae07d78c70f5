"""Headless previz for a GPU CI runner:

    UnrealEditor-Cmd MyProject.uproject -RenderOffscreen -Unattended -NoSplash -stdout \
      -ExecutePythonScript="<plugin>/Content/Python/greenlight_unreal/headless.py \
        --sequence /Game/Shots/SEQ_010 --bridge 127.0.0.1:50151 --report out/previz.json"

Unreal runs the script once the editor is up, then keeps ticking; the run
renders passes with Movie Render Queue (PIE executor), submits, imports
the frames as a media track, writes ``--report`` (JSON: state, job id,
energy, warnings) and quits the editor. CI reads the report's ``state``
(Unreal's exit code does not carry it).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from bridge.jobs.model import JobState
from greenlight_unreal import host
from greenlight_unreal.mrq_exr import MotionEncoding
from greenlight_unreal.previz import PrevizRun
from greenlight_unreal.settings import PASSES, BridgeSettings, PrevizSettings


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="headless.py", description="Greenlight previz from a Level Sequence, headless")
    p.add_argument("--sequence", required=True, help="Level Sequence asset path, e.g. /Game/Shots/SEQ_010")
    p.add_argument("--bridge", default="127.0.0.1:50151", help="bridge address host:port")
    p.add_argument("--token", default="", help="bridge bearer token")
    p.add_argument("--project", default="unreal")
    p.add_argument("--shot", default="", help="shot tag (default: the sequence name)")
    p.add_argument("--version", type=int, default=0, help="0 = next free version")
    p.add_argument("--resolution", default="512x288", help="WIDTHxHEIGHT of the pass render")
    p.add_argument("--passes", default=",".join(PASSES), help=f"comma list of {PASSES}")
    p.add_argument("--mapping", default="", help="COCO-18 skeleton mapping JSON (default: UE5 Manny)")
    p.add_argument("--motion-scale", default="1,1", help="MotionEncoding scale_x,scale_y")
    p.add_argument("--motion-y-down", action="store_true", help="the motion layer's G grows downwards")
    p.add_argument("--work-folder", default="", help="where passes and frames go (default Saved/Greenlight)")
    p.add_argument("--report", default="", help="write the result here as JSON")
    p.add_argument("--no-quit", action="store_true", help="leave the editor running afterwards")
    return p.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> PrevizSettings:
    width, height = (int(v) for v in args.resolution.lower().split("x"))
    sx, sy = (float(v) for v in args.motion_scale.split(","))
    return PrevizSettings(
        project=args.project, shot=args.shot, version=args.version, width=width, height=height,
        passes=tuple(p for p in args.passes.split(",") if p), mapping_path=args.mapping,
        motion=MotionEncoding(scale_x=sx, scale_y=sy, y_up=not args.motion_y_down),
        work_folder=args.work_folder, bridge=BridgeSettings(address=args.bridge, token=args.token))


def main(argv: list[str] | None = None) -> PrevizRun:
    if argv is None:
        argv = sys.argv[1:]
        if len(argv) == 1 and " " in argv[0]:    # some launchers pass the arguments as one string
            argv = shlex.split(argv[0])
    args = parse_args(argv)
    settings = settings_from_args(args)
    sequence = host.load_sequence_in_unreal(args.sequence)

    def done(run: PrevizRun) -> None:
        r = run.result
        if r.state == JobState.COMPLETED.value:
            host.save_asset_in_unreal(sequence)     # keep the new media track
        payload = {"state": r.state, "message": r.message, "job_id": r.job_id, "version": r.version,
                   "frames_folder": r.frames_folder, "imported": r.imported, "energy_wh": r.energy_wh,
                   "co2e_g": r.co2e_g, "warnings": list(r.warnings), "sequence": args.sequence}
        if args.report:
            Path(args.report).parent.mkdir(parents=True, exist_ok=True)
            Path(args.report).write_text(json.dumps(payload, indent=1, default=list))
        host.log_in_unreal(f"headless run {r.state}: {r.message}",
                           "info" if r.state == JobState.COMPLETED.value else "error")
        if not args.no_quit:
            host.quit_editor_in_unreal()

    return PrevizRun(settings, sequence=sequence, on_done=done, interactive=False).start()


if __name__ == "__main__":
    main()
