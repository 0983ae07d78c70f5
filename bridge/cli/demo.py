"""``greenlight demo``: the whole loop on this machine, in one process (an
embedded bridge on a free port, a sample shot, the best backend here).

Sample shot (a) comes from ``engine_renders`` (real Blender headless),
found through the ``greenlight.commands`` entry point ``demo-shot``; without
it, or without Blender, the demo uses the synthetic shot built in code.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import GreenlightError
from .common import load_command, watch_to_folder


def add_parsers(sub) -> None:
    sp = sub.add_parser("demo", help="the whole loop on this machine")
    sp.add_argument("--out", default="out")
    sp.add_argument("--frames", type=int, default=48)
    sp.add_argument("--width", type=int, default=512)
    sp.add_argument("--height", type=int, default=288)
    sp.add_argument("--quiet", action="store_true")
    sp.add_argument("--synthetic", action="store_true",
                    help="use the synthetic shot instead of rendering sample shot (a) with Blender")
    sp.add_argument("--diffusion", metavar="PROFILE",
                    help="run the animatediff backend with this profile; 'tiny' builds a random-weight one")
    sp.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    import tempfile

    from ..client.settings import BridgeSettings, make_client
    from ..server.app import create_server
    from ..server.config import BridgeConfig

    t0 = time.monotonic()
    out = Path(args.out)
    shot = _demo_shot(args, out)
    with tempfile.TemporaryDirectory(prefix="greenlight-demo-") as data_dir:
        generation, note = _demo_generation(args, Path(data_dir))
        bridge = create_server(BridgeConfig(data_dir=Path(data_dir) / "bridge", port=0))
        try:
            print(f"embedded bridge on {bridge.address}; {note}", flush=True)
            with make_client(BridgeSettings(address=bridge.address)) as client:
                job = client.submit(shot, generation).job
                folder = out / job.shot / f"v{job.version:03d}"
                code = watch_to_folder(client, job.job_id, folder, shot.fps.fraction, quiet=args.quiet)
        finally:
            bridge.stop()
    print(f"total:       {time.monotonic() - t0:.2f} s")
    return code


def _demo_shot(args, out: Path):
    """Shot (a) of ``engine_renders`` through real Blender headless (cached
    after the first run), or the synthetic shot where bpy is missing."""
    from ..shot.files import load_shot
    from ..shot.synthetic import sample_shot

    demo = None
    if not args.synthetic:
        try:
            demo = load_command("demo-shot", "demo")()   # engine_renders:demo_entry
        except GreenlightError as exc:
            print(f"note: {exc}", flush=True)
    if demo is not None:
        t = time.monotonic()
        print(f"sample shot (a): {demo.description}, extracted with Blender "
              f"headless ({args.frames} frames, {args.width}x{args.height})", flush=True)
        try:
            path = demo.render(out, width=args.width, height=args.height, frames=args.frames)
        except demo.unavailable as exc:
            print(f"note: {exc}", flush=True)
        else:
            print(f"shot:        {path} ({time.monotonic() - t:.1f} s)", flush=True)
            return load_shot(path)
    print(f"building the synthetic sample shot in code: a camera dolly past a posed figure "
          f"({args.frames} frames, {args.width}x{args.height})", flush=True)
    return sample_shot(frames=args.frames, width=args.width, height=args.height)


def _serve_profile(path: Path) -> str:
    """Jobs name profiles, never paths: a profile file given to the demo is put on
    GREENLIGHT_PROFILES for its in-process bridge, and named by its stem."""
    import os

    if path.suffix != ".toml" or not path.is_file():
        return str(path)   # a name
    os.environ["GREENLIGHT_PROFILES"] = os.pathsep.join(
        p for p in (str(path.resolve().parent), os.environ.get("GREENLIGHT_PROFILES", "")) if p)
    return path.stem


def _demo_generation(args, scratch: Path):
    """The best backend this machine can run, and a line saying which and why."""
    from ..backends.loading import missing_components
    from ..backends.profiles import load_profile
    from ..shot.request import GenerationSettings

    prompt = "a robot waving in a concrete hall, cinematic previz"
    if args.diffusion == "tiny":
        from ..backends.tiny import build_tiny_animatediff

        profile = build_tiny_animatediff(scratch / "tiny-model")
        return (GenerationSettings(backend="animatediff", prompt=prompt, seed=1, model_profile=_serve_profile(profile)),
                "backend: animatediff on the TINY RANDOM-WEIGHT model (real pipeline, loader and streaming; "
                "the frames are noise shaped by the controls, not a picture)")
    if args.diffusion:
        return (GenerationSettings(backend="animatediff", prompt=prompt, seed=1,
                                   model_profile=_serve_profile(Path(args.diffusion))),
                f"backend: animatediff with profile {args.diffusion}")
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available() and not missing_components(load_profile("animatediff-sd15")):
            return (GenerationSettings(backend="animatediff", prompt=prompt, seed=1),
                    "backend: animatediff (CUDA GPU and animatediff-sd15 weights found)")
    return (GenerationSettings(backend="guides"),
            "backend: guides (no GPU with diffusion weights here: frames are the conditioning preview; "
            "--diffusion tiny runs the real diffusion pipeline on a tiny random-weight model)")
