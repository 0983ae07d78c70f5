"""The ``greenlight`` command.

    greenlight serve                 run the bridge
    greenlight submit SHOT --watch   upload a .glshot, stream frames + MP4 + report
    greenlight jobs | cancel JOB | report JOB
    greenlight shot sample OUT | shot inspect FILE
    greenlight demo                  the whole loop on this machine, in one process

Exit codes: 0 done, 1 the job failed or was cancelled, 2 bad input or the
bridge refused the request, 3 the bridge could not be reached.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path

from .errors import BridgeUnavailableError, GreenlightError

# The MP4 writer runs ffmpeg as a subprocess while gRPC threads are alive;
# gRPC's fork handlers are for forked Python workers, which we never use.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

log = logging.getLogger("greenlight")


def _client(args):
    from .client import BridgeClient

    root = Path(args.tls_root_cert).read_bytes() if args.tls_root_cert else None
    return BridgeClient(args.address, token=args.token, tls_root_cert=root, tls=args.tls)


# ---------------------------------------------------------------- serve
def cmd_serve(args) -> int:
    import signal
    import threading

    from .server.app import create_server
    from .server.config import load_config

    tokens = {}
    for item in args.token_for or []:
        project, sep, token = item.partition("=")
        if not sep or not project or not token:
            raise GreenlightError(f"--token-for expects PROJECT=TOKEN, got {item!r}")
        tokens[token] = project
    config = load_config(args.config, data_dir=Path(args.data_dir) if args.data_dir else None,
                         host=args.host, port=args.port,
                         tls_cert=Path(args.tls_cert) if args.tls_cert else None,
                         tls_key=Path(args.tls_key) if args.tls_key else None,
                         tokens=tokens or None)
    bridge = create_server(config)
    print(f"greenlight bridge listening on {bridge.address} (data: {config.data_dir})", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    bridge.stop(grace=2.0)
    return 0


# ---------------------------------------------------------------- submit
def _generation(args):
    from .shot.request import ControlSettings, GenerationSettings

    controls = []
    for kind in ("depth", "pose"):
        strength = getattr(args, f"{kind}_strength")
        if strength is not None:
            controls.append(ControlSettings(kind=kind, enabled=strength > 0, strength=strength))
    return GenerationSettings(backend=args.backend, prompt=args.prompt, negative_prompt=args.negative_prompt,
                              seed=args.seed, steps=args.steps, controls=tuple(controls))


def _scheduling(args):
    from .shot.request import SchedulingSettings

    if args.deadline is None:
        return SchedulingSettings()
    deadline = datetime.fromisoformat(args.deadline)
    if deadline.tzinfo is None:
        deadline = deadline.astimezone()  # local time, as a person typed it
    return SchedulingSettings(job_class="batch", deadline=deadline.astimezone(timezone.utc))


USD_SUFFIXES = (".usd", ".usda", ".usdc", ".usdz")


def _parse_resolution(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise GreenlightError(f"--resolution expects WIDTHxHEIGHT, e.g. 512x288; got {text!r}")
    return int(width), int(height)


def load_submit_shot(args):
    """A .glshot, or a USD camera (camera only: depth, motion and pose absent)."""
    if Path(args.shot).suffix.lower() in USD_SUFFIXES:
        from .shot.usd_io import shot_from_usd

        shot = shot_from_usd(args.shot, resolution=_parse_resolution(args.resolution), camera_path=args.usd_camera)
        print(f"{args.shot}: USD camera, {shot.frame_count} frames from {shot.frame_start}; no depth, motion "
              "or pose passes: backends that need them refuse the job", file=sys.stderr)
        return shot
    if args.resolution or args.usd_camera:
        raise GreenlightError("--resolution and --usd-camera apply to a USD camera (.usd/.usda/.usdc/.usdz) only")
    from .shot.files import load_shot

    return load_shot(args.shot)


def cmd_submit(args) -> int:
    shot = load_submit_shot(args)
    if args.project or args.shot_name or args.version:
        shot = shot.with_tags(**{k: v for k, v in (("project", args.project), ("shot", args.shot_name),
                                                    ("version", args.version)) if v})
    with _client(args) as client:
        accepted = client.submit(shot, _generation(args), _scheduling(args), request_id=args.request_id)
        job = accepted.job
        print(f"job {job.job_id} {'(already submitted) ' if accepted.duplicate else ''}{job.state}: "
              f"{job.scheduling_reason}", flush=True)
        if not args.watch:
            return 0
        out = Path(args.out) / job.project / job.shot / f"v{job.version:03d}"
        code = watch_to_folder(client, job.job_id, out, shot.fps.fraction)
        if code == 0 and args.otio:
            from .client.otio_export import write_shot_otio

            otio_path = write_shot_otio(out.parent, generations={job.version: _generation(args).to_dict()})
            print(f"timeline:    {otio_path}")
        return code


def cmd_otio(args) -> int:
    from .client.otio_export import write_otio, write_shot_otio

    folder = Path(args.folder)
    if (folder / "report.json").is_file():  # one version folder
        path = write_otio([folder], args.out or folder / f"{folder.parent.name}_{folder.name}.otio")
    else:                                   # out/<project>/<shot>/ with vNNN folders
        path = write_shot_otio(folder, args.out)
    print(f"wrote {path}")
    return 0


def cmd_shot_usd(args) -> int:
    from .shot.files import load_shot
    from .shot.usd_io import export_camera_usd

    shot = load_shot(args.file)
    print(f"wrote {export_camera_usd(shot, args.out)} ({shot.frame_count} frames, camera only)")
    return 0


def watch_to_folder(client, job_id: str, out: Path, fps: Fraction, quiet: bool = False) -> int:
    """Stream a job's frames into ``out``, then write the MP4; returns the exit code."""
    from .client import EventKind
    from .client.animatic import write_mp4

    bar = ProgressLine(enabled=not quiet)
    final = client.download(job_id, out, on_event=bar.update)
    bar.close()
    if final.kind is not EventKind.COMPLETED:
        print(f"job {job_id} {final.kind.value}: {final.message}", file=sys.stderr)
        return 1
    frames = sorted(out.glob("frame_*.png"))
    mp4 = write_mp4(frames, fps, out / "animatic.mp4")
    print_summary(final.report, out, mp4)
    return 0


class ProgressLine:
    """One status line on stderr: frames, ETA, energy so far."""

    def __init__(self, enabled: bool = True, stream=sys.stderr):
        self.enabled = enabled and stream.isatty() or enabled == "always"
        self.stream = stream
        self.frames = 0
        self.total = 0
        self.eta = -1.0
        self.energy_wh = 0.0
        self.measured = False

    def update(self, event) -> None:
        from .client import EventKind

        if event.kind is EventKind.STATUS:
            self.total = event.status.frame_count
            self.frames = event.status.frames_done
        elif event.kind is EventKind.PROGRESS:
            self.eta, self.energy_wh = event.eta_s, event.energy_wh_so_far
        elif event.kind is EventKind.FRAME:
            self.frames += 1
            self.measured = event.energy.measured if event.energy else False
        if self.enabled:
            width = 30
            done = int(width * self.frames / self.total) if self.total else 0
            eta = f"ETA {self.eta:5.1f}s" if self.eta >= 0 else "ETA   ?  "
            method = "measured" if self.measured else "estimated"
            self.stream.write(f"\r[{'#' * done}{'-' * (width - done)}] {self.frames}/{self.total} frames  "
                              f"{eta}  {self.energy_wh * 1000:.3f} mWh ({method})")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")


def print_summary(report: dict, out: Path, mp4: Path | None) -> None:
    e = report["energy"]
    market = "n/a (no market factor for this site)" if e["co2e_g_market"] is None else f"{e['co2e_g_market']:.4g} g"
    sci = "n/a" if report["sci"] is None else f"{report['sci']:.4g} {report['sci_unit']}"
    print(f"frames:      {report['frames']} -> {out}")
    if mp4 is not None:
        print(f"animatic:    {mp4}")
    print(f"report:      {out / 'report.json'}")
    print(f"wall time:   {report['wall_s']:.2f} s (bridge)")
    print(f"energy:      {e['energy_wh'] * 1000:.4g} mWh IT, {'measured' if e['measured'] else 'estimated'} "
          f"by {e['meter']}; facility {report['facility_energy_wh'] * 1000:.4g} mWh at PUE {report['pue']:g}")
    print(f"carbon:      {e['co2e_g_location']:.4g} gCO2e location-based ({report['intensity_g_per_kwh']:g} g/kWh, "
          f"{report['intensity_source']}); market-based {market}")
    print(f"embodied:    {report['embodied_co2e_g']:.4g} gCO2e (device manufacture, share of its lifetime)")
    print(f"SCI:         {sci} = (operational location-based + embodied) / {report['functional_units']:.4g}")


# ---------------------------------------------------------------- jobs
def cmd_jobs(args) -> int:
    with _client(args) as client:
        jobs = client.jobs(args.project or "", limit=args.limit)
    if args.json:
        print(json.dumps([j.__dict__ for j in jobs], indent=1))
        return 0
    print(f"{'job':22} {'shot':24} {'state':10} {'frames':>9}  backend")
    for j in jobs:
        print(f"{j.job_id:22} {j.project + '/' + j.shot + f'/v{j.version:03d}':24} {j.state:10} "
              f"{j.frames_done:>4}/{j.frame_count:<4}  {j.backend}")
    return 0


def cmd_cancel(args) -> int:
    with _client(args) as client:
        job = client.cancel(args.job_id, args.reason)
    print(f"job {job.job_id}: {job.state} {job.state_reason}")
    return 0


def cmd_run_now(args) -> int:
    with _client(args) as client:
        job = client.run_now(args.job_id)
    print(f"job {job.job_id}: {job.state}: {job.scheduling_reason}")
    return 0


def cmd_plan(args) -> int:
    """Dry run: price every window at this bridge's site before submitting."""
    from datetime import timedelta

    from .backends import default_backends
    from .scheduling.scheduler import CarbonScheduler
    from .server.config import build_signal, load_config

    config = load_config(args.config, data_dir=Path(args.data_dir) if args.data_dir else None)
    scheduling = _scheduling(args)
    if scheduling.job_class != "batch":
        raise GreenlightError("plan: --deadline is required (interactive jobs always run now)")
    shot = load_submit_shot(args)
    generation = _generation(args)
    backends = default_backends(config.extra_backends)
    if generation.backend not in backends:
        raise GreenlightError(f"plan: unknown backend {generation.backend!r}; available: {sorted(backends)}")
    work = backends[generation.backend].estimate_work(shot, generation)
    duration = None
    if args.duration:
        try:
            duration = timedelta(hours=float(args.duration.rstrip("h")))
        except ValueError:
            raise GreenlightError(f"--duration expects hours like 2h or 0.5, got {args.duration!r}") from None
    with _HistoryStore(config.data_dir) as store:
        scheduler = CarbonScheduler(store, lambda job_id: None, config.sites, build_signal(config.carbon_signals))
        decision = scheduler.plan_job(job_id="(dry run)", backend=generation.backend, work=work, job_class="batch",
                                      deadline=scheduling.deadline, options=True, duration=duration,
                                      energy_wh=args.energy_wh)
    print(decision.options_table())
    return 0


class _HistoryStore:
    """The bridge's store read-only for history (estimates), or an empty
    one when this machine runs no bridge."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self._tmp = None

    def __enter__(self):
        import tempfile

        from .jobs.store import JobStore

        if (self.data_dir / "bridge.sqlite3").exists():
            self.store = JobStore(self.data_dir)
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="greenlight-plan-")
            self.store = JobStore(self._tmp.name)
        return self.store

    def __exit__(self, *exc):
        self.store.close()
        if self._tmp is not None:
            self._tmp.cleanup()


def cmd_report(args) -> int:
    if args.project:
        return cmd_project_report(args)
    if not args.job_id:
        print("greenlight report: give a JOB id, or --project P for a project report", file=sys.stderr)
        return 2
    with _client(args) as client:
        report = client.report(args.job_id)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print_summary(report, Path("."), None)
    return 0


def cmd_project_report(args) -> int:
    from .energy.ledger import Ledger
    from .energy.report import format_table, project_report, write_html

    path = Path(args.data_dir) / Ledger.FILE_NAME
    if not path.exists():
        print(f"greenlight report: no ledger at {path} (run on the bridge host, or pass --data-dir)",
              file=sys.stderr)
        return 2
    since = None
    if args.since:
        since = datetime.fromisoformat(args.since)
        since = since if since.tzinfo else since.replace(tzinfo=timezone.utc)
    with Ledger(path) as ledger:
        report = project_report(ledger, args.project, since)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(format_table(report))
    if args.html:
        print(f"html:        {write_html(report, args.html)}")
    return 0


# ---------------------------------------------------------------- shots
def cmd_shot_sample(args) -> int:
    from .shot.files import save_shot
    from .shot.synthetic import sample_shot

    shot = sample_shot(frames=args.frames, width=args.width, height=args.height)
    print(f"wrote {save_shot(shot, args.out)} ({shot.frame_count} frames, {shot.width}x{shot.height})")
    return 0


def cmd_shot_inspect(args) -> int:
    from .shot import validate_shot
    from .shot.files import load_shot

    shot = load_shot(args.file)
    validate_shot(shot)
    print(f"{shot.tags.project}/{shot.tags.shot} v{shot.tags.version}: {shot.frame_count} frames at "
          f"{shot.fps.numerator}/{shot.fps.denominator} fps ({shot.duration_s:.2f} s), {shot.width}x{shot.height}")
    print(f"passes: {', '.join(shot.passes) or 'none'}; methods: {dict(shot.pass_methods)}; source: {shot.source or '?'}")
    first, last = shot.frames[0].camera, shot.frames[-1].camera
    print(f"camera: {first.focal_length_mm:g} mm -> {last.focal_length_mm:g} mm, moves "
          f"{float(((last.position_m - first.position_m) ** 2).sum() ** 0.5):.3f} m")
    print("valid: yes")
    return 0


# ---------------------------------------------------------------- render
def cmd_render(args) -> int:
    import importlib.util

    if importlib.util.find_spec("bpy") is None:
        print("greenlight render needs Blender's Python module: pip install 'greenlight[blender]' "
              "(or run blender -b scene.blend --python-expr ... with the add-on installed)", file=sys.stderr)
        return 2
    from blender_addon.headless import main as headless_main

    argv = [args.blend, "--address", args.address, "--out", args.out]
    for flag, value in (("--shot", args.shot), ("--camera", args.camera), ("--frames", args.frames),
                        ("--project", args.project), ("--backend", args.backend), ("--token", args.token),
                        ("--scale", args.scale)):
        if value is not None:
            argv += [flag, str(value)]
    if args.tls:
        argv.append("--tls")
    return headless_main(argv)   # 0 done, 1 failed/cancelled, 2 bad input, 3 unreachable


# ---------------------------------------------------------------- models
def cmd_models_list(args) -> int:
    from .backends.loading import missing_components
    from .backends.profiles import available_profiles, load_profile

    for name in available_profiles():
        profile = load_profile(name)
        missing = missing_components(profile)
        state = "ready" if not missing else f"missing {', '.join(m[0] for m in missing)}"
        print(f"{name:24} {profile.family:12} {state}")
        if args.verbose:
            for component, source in profile.components.items():
                print(f"    {component:18} {source}")
    return 0


def cmd_models_check(args) -> int:
    from .backends.loading import missing_components
    from .backends.profiles import load_profile

    profile = load_profile(args.profile)
    missing = missing_components(profile)
    for name, source, why in missing:
        print(f"missing {name}: {source} ({why})", file=sys.stderr)
    if missing:
        print(f"fetch them with: greenlight models pull {profile.name}", file=sys.stderr)
        return 2
    print(f"{profile.name}: every component is on disk")
    return 0


def cmd_models_pull(args) -> int:
    from .backends.loading import pull
    from .backends.profiles import load_profile

    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        raise GreenlightError("HF_HUB_OFFLINE is set: unset it to download (on a machine with hub access)")
    for line in pull(load_profile(args.profile)):
        print(f"fetched {line}")
    return 0


def cmd_models_tiny(args) -> int:
    from .backends.tiny import build_tiny_animatediff

    path = build_tiny_animatediff(args.out)
    print(f"wrote {path} (random weights: output is noise; for offline tests and demos)")
    return 0


# ---------------------------------------------------------------- demo
def cmd_demo(args) -> int:
    import tempfile

    from .client import BridgeClient
    from .server.app import create_server
    from .server.config import BridgeConfig

    t0 = time.monotonic()
    out = Path(args.out)
    shot = _demo_shot(args, out)
    with tempfile.TemporaryDirectory(prefix="greenlight-demo-") as data_dir:
        generation, note = _demo_generation(args, Path(data_dir))
        bridge = create_server(BridgeConfig(data_dir=Path(data_dir) / "bridge", port=0))
        try:
            print(f"embedded bridge on {bridge.address}; {note}", flush=True)
            with BridgeClient(bridge.address) as client:
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
    from .shot.files import load_shot
    from .shot.synthetic import sample_shot

    try:
        import engine_renders
    except ImportError:
        engine_renders = None
    if engine_renders is not None and not args.synthetic:
        t = time.monotonic()
        print(f"sample shot (a): {engine_renders.SAMPLES[engine_renders.DEMO_SAMPLE]}, extracted with Blender "
              f"headless ({args.frames} frames, {args.width}x{args.height})", flush=True)
        try:
            path = engine_renders.demo_shot(out, width=args.width, height=args.height, frames=args.frames)
        except engine_renders.BlenderUnavailableError as exc:
            print(f"note: {exc}", flush=True)
        else:
            print(f"shot:        {path} ({time.monotonic() - t:.1f} s)", flush=True)
            return load_shot(path)
    print(f"building the synthetic sample shot in code: a camera dolly past a posed figure "
          f"({args.frames} frames, {args.width}x{args.height})", flush=True)
    return sample_shot(frames=args.frames, width=args.width, height=args.height)


def _demo_generation(args, scratch: Path):
    """The best backend this machine can run, and a line saying which and why."""
    from .backends.loading import missing_components
    from .backends.profiles import load_profile
    from .shot.request import GenerationSettings

    prompt = "a robot waving in a concrete hall, cinematic previz"
    if args.diffusion == "tiny":
        from .backends.tiny import build_tiny_animatediff

        profile = build_tiny_animatediff(scratch / "tiny-model")
        return (GenerationSettings(backend="animatediff", prompt=prompt, seed=1, model_profile=str(profile)),
                "backend: animatediff on the TINY RANDOM-WEIGHT model (real pipeline, loader and streaming; "
                "the frames are noise shaped by the controls, not a picture)")
    if args.diffusion:
        return (GenerationSettings(backend="animatediff", prompt=prompt, seed=1, model_profile=args.diffusion),
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


# ---------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="greenlight", description=__doc__.split("\n\n")[0])
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    def client_opts(sp):
        sp.add_argument("--address", default=os.environ.get("GREENLIGHT_ADDRESS", "127.0.0.1:50151"))
        sp.add_argument("--token", default=os.environ.get("GREENLIGHT_TOKEN"), help="bearer token (or GREENLIGHT_TOKEN)")
        sp.add_argument("--tls", action="store_true", help="use TLS with the system roots")
        sp.add_argument("--tls-root-cert", help="PEM file of the CA that signed the bridge's certificate")

    sp = sub.add_parser("serve", help="run the bridge")
    sp.add_argument("--config", help="TOML config file")
    sp.add_argument("--host")
    sp.add_argument("--port", type=int)
    sp.add_argument("--data-dir")
    sp.add_argument("--tls-cert")
    sp.add_argument("--tls-key")
    sp.add_argument("--token-for", action="append", metavar="PROJECT=TOKEN",
                    help="require tokens; this one may see PROJECT ('*' = all); repeatable")
    sp.set_defaults(func=cmd_serve)

    sp = sub.add_parser("submit", help="submit a .glshot file or a USD camera (.usd/.usda/.usdc/.usdz)")
    client_opts(sp)
    sp.add_argument("shot")
    sp.add_argument("--watch", action="store_true", help="stream frames, then write the MP4 and report")
    sp.add_argument("--otio", action="store_true",
                    help="with --watch: also write <out>/<project>/<shot>/<shot>.otio over every version")
    sp.add_argument("--resolution", metavar="WxH",
                    help="USD camera: image size (default: the one recorded by Greenlight's USD export)")
    sp.add_argument("--usd-camera", metavar="PRIM", help="USD camera: prim path when the stage has several")
    sp.add_argument("--out", default="out")
    sp.add_argument("--backend", default="guides")
    sp.add_argument("--prompt", default="")
    sp.add_argument("--negative-prompt", default="")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--steps", type=int, default=0)
    sp.add_argument("--depth-strength", type=float)
    sp.add_argument("--pose-strength", type=float)
    sp.add_argument("--deadline", help="ISO time; makes it a batch job")
    sp.add_argument("--request-id", help="idempotency key (default: random)")
    sp.add_argument("--project")
    sp.add_argument("--shot-name")
    sp.add_argument("--version", type=int)
    sp.set_defaults(func=cmd_submit)

    sp = sub.add_parser("jobs", help="list a project's jobs")
    client_opts(sp)
    sp.add_argument("--project")
    sp.add_argument("--limit", type=int, default=50)
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_jobs)

    sp = sub.add_parser("cancel", help="cancel a job")
    client_opts(sp)
    sp.add_argument("job_id")
    sp.add_argument("--reason", default="")
    sp.set_defaults(func=cmd_cancel)

    sp = sub.add_parser("run-now", help="start a job that waits for a greener window now")
    client_opts(sp)
    sp.add_argument("job_id")
    sp.set_defaults(func=cmd_run_now)

    sp = sub.add_parser("plan", help="dry run: expected gCO2e per site and window before submitting a batch job")
    sp.add_argument("shot", help=".glshot or USD camera")
    sp.add_argument("--deadline", required=True, help="ISO time (local time unless it has an offset)")
    sp.add_argument("--backend", default="guides")
    sp.add_argument("--steps", type=int, default=0)
    sp.add_argument("--duration", help="expected run time, e.g. 2h (default: from this bridge's history)")
    sp.add_argument("--energy-wh", type=float, help="expected IT energy (default: from history)")
    sp.add_argument("--config", help="the bridge's TOML config (site, carbon_signals)")
    sp.add_argument("--data-dir", help="the bridge's data folder (run history for estimates)")
    for name in ("prompt", "negative_prompt"):
        sp.set_defaults(**{name: ""})
    sp.set_defaults(seed=0, depth_strength=None, pose_strength=None, resolution=None, usd_camera=None,
                    func=cmd_plan)

    sp = sub.add_parser("report", help="a finished job's energy report, or a project's (--project)")
    client_opts(sp)
    sp.add_argument("job_id", nargs="?")
    sp.add_argument("--project", help="project report from the bridge's energy ledger")
    sp.add_argument("--since", help="ISO date/time (UTC if no zone): only jobs finished since")
    sp.add_argument("--html", help="also write an HTML report with charts to this file")
    sp.add_argument("--data-dir", default=os.environ.get("GREENLIGHT_DATA_DIR", "greenlight-data"),
                    help="the bridge's data folder (holds ledger.sqlite)")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_report)

    sp = sub.add_parser("shot", help="shot files")
    shot_sub = sp.add_subparsers(dest="shot_command", required=True)
    ssp = shot_sub.add_parser("sample", help="write the synthetic sample shot")
    ssp.add_argument("out")
    ssp.add_argument("--frames", type=int, default=48)
    ssp.add_argument("--width", type=int, default=512)
    ssp.add_argument("--height", type=int, default=288)
    ssp.set_defaults(func=cmd_shot_sample)
    ssp = shot_sub.add_parser("inspect", help="validate and summarise a shot file")
    ssp.add_argument("file")
    ssp.set_defaults(func=cmd_shot_inspect)
    ssp = shot_sub.add_parser("usd", help="write a shot file's camera as USD (Z-up, cm, mm lens)")
    ssp.add_argument("file")
    ssp.add_argument("out", help=".usda (text) or .usdc/.usd (binary)")
    ssp.set_defaults(func=cmd_shot_usd)

    sp = sub.add_parser("otio", help="OpenTimelineIO timeline of a shot's versions, for editorial")
    sp.add_argument("folder", help="out/<project>/<shot>/ (every vNNN) or one vNNN folder")
    sp.add_argument("--out", help="timeline file (default: <folder>/<shot>.otio)")
    sp.set_defaults(func=cmd_otio)

    sp = sub.add_parser("render", help="extract a .blend's shot with Blender, submit, write frames + MP4 + report")
    client_opts(sp)
    sp.add_argument("blend")
    sp.add_argument("--shot", help="shot tag (default: the scene name)")
    sp.add_argument("--camera", help="camera object (default: the scene camera)")
    sp.add_argument("--frames", help="START-END (default: the scene range)")
    sp.add_argument("--project")
    sp.add_argument("--backend")
    sp.add_argument("--scale", type=float, help="pass resolution as a fraction of the render resolution")
    sp.add_argument("--out", default="out")
    sp.set_defaults(func=cmd_render)

    sp = sub.add_parser("models", help="model profiles for the diffusion backends")
    models_sub = sp.add_subparsers(dest="models_command", required=True)
    msp = models_sub.add_parser("list", help="profiles and whether their weights are on disk")
    msp.set_defaults(func=cmd_models_list)
    msp = models_sub.add_parser("check", help="exit 0 when every component of PROFILE is on disk")
    msp.add_argument("profile")
    msp.set_defaults(func=cmd_models_check)
    msp = models_sub.add_parser("pull", help="download PROFILE's components into the Hugging Face cache")
    msp.add_argument("profile")
    msp.set_defaults(func=cmd_models_pull)
    msp = models_sub.add_parser("tiny", help="write a tiny random-weight AnimateDiff profile (offline testing)")
    msp.add_argument("out")
    msp.set_defaults(func=cmd_models_tiny)

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
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except BridgeUnavailableError as exc:
        print(f"greenlight: {exc}", file=sys.stderr)
        return 3
    except GreenlightError as exc:
        print(f"greenlight: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
