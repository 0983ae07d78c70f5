"""Jobs on a bridge: ``greenlight submit`` (``--watch``), ``jobs``,
``cancel``, ``run-now``, ``plan`` (a dry run, no bridge needed) and
``report`` (one job's, or a project's from the ledger)."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from ..errors import EXIT_BAD_INPUT, EXIT_OK, GreenlightError
from .common import client, client_opts, print_summary, report_json, watch_to_folder

USD_SUFFIXES = (".usd", ".usda", ".usdc", ".usdz")


def add_parsers(sub) -> None:
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


# ---------------------------------------------------------------- submit
def _generation(args):
    from ..shot.request import ControlSettings, GenerationSettings

    controls = []
    for kind in ("depth", "pose"):
        strength = getattr(args, f"{kind}_strength")
        if strength is not None:
            controls.append(ControlSettings(kind=kind, enabled=strength > 0, strength=strength))
    return GenerationSettings(backend=args.backend, prompt=args.prompt, negative_prompt=args.negative_prompt,
                              seed=args.seed, steps=args.steps, controls=tuple(controls))


def _scheduling(args):
    from ..shot.request import SchedulingSettings

    if args.deadline is None:
        return SchedulingSettings()
    deadline = datetime.fromisoformat(args.deadline)
    if deadline.tzinfo is None:
        deadline = deadline.astimezone()  # local time, as a person typed it
    return SchedulingSettings(job_class="batch", deadline=deadline.astimezone(UTC))


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
        from ..shot.usd_io import shot_from_usd

        shot = shot_from_usd(args.shot, resolution=_parse_resolution(args.resolution), camera_path=args.usd_camera)
        print(f"{args.shot}: USD camera, {shot.frame_count} frames from {shot.frame_start}; no depth, motion "
              "or pose passes: backends that need them refuse the job", file=sys.stderr)
        return shot
    if args.resolution or args.usd_camera:
        raise GreenlightError("--resolution and --usd-camera apply to a USD camera (.usd/.usda/.usdc/.usdz) only")
    from ..shot.files import load_shot

    return load_shot(args.shot)


def cmd_submit(args) -> int:
    shot = load_submit_shot(args)
    if args.project or args.shot_name or args.version:
        shot = shot.with_tags(**{k: v for k, v in (("project", args.project), ("shot", args.shot_name),
                                                    ("version", args.version)) if v})
    with client(args) as c:
        accepted = c.submit(shot, _generation(args), _scheduling(args), request_id=args.request_id)
        job = accepted.job
        print(f"job {job.job_id} {'(already submitted) ' if accepted.duplicate else ''}{job.state}: "
              f"{job.scheduling_reason}", flush=True)
        if not args.watch:
            return EXIT_OK
        out = Path(args.out) / job.project / job.shot / f"v{job.version:03d}"
        code = watch_to_folder(c, job.job_id, out, shot.fps.fraction)
        if code == EXIT_OK and args.otio:
            from ..client.otio_export import write_shot_otio

            otio_path = write_shot_otio(out.parent, generations={job.version: _generation(args).to_dict()})
            print(f"timeline:    {otio_path}")
        return code


# ---------------------------------------------------------------- jobs
def cmd_jobs(args) -> int:
    with client(args) as c:
        jobs = c.jobs(args.project or "", limit=args.limit)
    if args.json:
        print(json.dumps([j.to_dict() for j in jobs], indent=1))
        return EXIT_OK
    print(f"{'job':22} {'shot':24} {'state':10} {'frames':>9}  backend")
    for j in jobs:
        print(f"{j.job_id:22} {j.project + '/' + j.shot + f'/v{j.version:03d}':24} {j.state:10} "
              f"{j.frames_done:>4}/{j.frame_count:<4}  {j.backend}")
    return EXIT_OK


def cmd_cancel(args) -> int:
    with client(args) as c:
        job = c.cancel(args.job_id, args.reason)
    print(f"job {job.job_id}: {job.state} {job.state_reason}")
    return EXIT_OK


def cmd_run_now(args) -> int:
    with client(args) as c:
        job = c.run_now(args.job_id)
    print(f"job {job.job_id}: {job.state}: {job.scheduling_reason}")
    return EXIT_OK


# ---------------------------------------------------------------- plan
def cmd_plan(args) -> int:
    """Dry run: price every window at this bridge's site before submitting."""
    from datetime import timedelta

    from ..backends import default_backends
    from ..scheduling.carbon_planner import format_options
    from ..scheduling.scheduler import CarbonScheduler
    from ..server.config import build_signal, load_config

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
    print(format_options(decision.options, decision))
    return EXIT_OK


class _HistoryStore:
    """The bridge's store read-only for history (estimates), or an empty
    one when this machine runs no bridge."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self._tmp = None

    def __enter__(self):
        import tempfile

        from ..jobs.store import JobStore

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


# ---------------------------------------------------------------- report
def cmd_report(args) -> int:
    if args.project:
        return cmd_project_report(args)
    if not args.job_id:
        print("greenlight report: give a JOB id, or --project P for a project report", file=sys.stderr)
        return EXIT_BAD_INPUT
    with client(args) as c:
        report = c.report(args.job_id)
    if args.json:
        print(report_json(report))
    else:
        print_summary(report, Path("."), None)
    return EXIT_OK


def cmd_project_report(args) -> int:
    from ..energy.ledger import Ledger
    from ..energy.report import format_table, project_report, write_html

    path = Path(args.data_dir) / Ledger.FILE_NAME
    if not path.exists():
        print(f"greenlight report: no ledger at {path} (run on the bridge host, or pass --data-dir)",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    since = None
    if args.since:
        since = datetime.fromisoformat(args.since)
        since = since if since.tzinfo else since.replace(tzinfo=UTC)
    with Ledger(path) as ledger:
        report = project_report(ledger, args.project, since)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(format_table(report))
    if args.html:
        print(f"html:        {write_html(report, args.html)}")
    return EXIT_OK
