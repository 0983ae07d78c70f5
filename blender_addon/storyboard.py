"""``greenlight storyboard SCRIPT --out DIR``: from a screenplay to an
animatic, with engine ground truth behind every frame and a carbon figure
per shot.

    greenlight storyboard script.fountain --out board/     # or .fdx; --demo for the sample script
    python -c "from blender_addon import storyboard; raise SystemExit(storyboard.main(['--demo', '--out', 'b']))"

Stages, in order (each timed; ``summary["stages"]``):

1. **parse**: the script (``bridge.storyboard.screenplay``): a malformed
   one exits 2 with its line named.
2. **shot list**: the rules (or ``--planner``), or an edited ``--shot-list``
   CSV/JSON; written to ``DIR/shots.csv`` and ``DIR/shots.json``.
3. **blocking**: ``plan_blocking`` (``DIR/blocking.json``), then, after the
   bridge has answered, one ``.blend`` per scene built with real bpy
   (``storyboard_scene``) and saved as ``DIR/scenes/S01.blend``...
   **bridge** (its own stage, before any scene is built): the health check
   and capabilities (unreachable: exit 3), the backend and the bridge's
   limits for every shot (exit 2).
4. **extraction**: each shot's passes through its own camera and frame
   range, with the add-on's extraction (``host.shot_from_scene_in_blender``,
   as ``greenlight render`` does).
5. **generation**: each shot is handed to a worker the moment it is
   extracted (submit and download on its thread, as the add-on does), as a
   batch job with a deadline (``--deadline-hours``), so the carbon-aware
   scheduler may move it; this stage is the wait, after the last
   extraction, until every job has ended. Frames land in
   ``DIR/frames/<project>/<shot>/vNNN``. A failed or cancelled job exits 1
   (the other jobs are cancelled).
6. **assembly**: ``DIR/animatic.mp4`` (every shot in order) and
   ``DIR/storyboard.otio`` (one clip per shot with its energy, carbon and
   SCI), then ``DIR/storyboard.json`` (this summary).

Exit codes: headless's (0 done, 1 a job failed or was cancelled, 2 bad
input or refused, 3 the bridge unreachable, 5 a bug).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ._deps import bridge, errors

STAGES = ("parse", "shot_list", "blocking", "bridge", "extraction", "generation", "assembly")
DEFAULT_WIDTH, DEFAULT_HEIGHT = 1280, 720
DEFAULT_PROJECT = "storyboard"
WAIT_MARGIN_S = 600.0     # past the deadline before the command gives up on a job


def sample_script() -> Path:
    """The project's sample screenplay (``--demo``)."""
    return Path(bridge("storyboard").__file__).resolve().parent / "samples" / "sample.fountain"


@dataclass
class Stages:
    """Wall time per stage on the calling thread (a stage may be entered several times)."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    started: float = field(default_factory=time.perf_counter)

    @contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - t0

    def summary(self) -> dict:
        total = time.perf_counter() - self.started
        overhead = total - self.seconds["extraction"] - self.seconds["generation"]
        return {**{k: round(v, 4) for k, v in self.seconds.items()}, "total": round(total, 4),
                "other": round(total - sum(self.seconds.values()), 4),
                "non_generation_extraction_fraction": round(overhead / total, 4) if total > 0 else 0.0}


def _shot_list(script, shot_list: str | None, planner: str | None):
    shots = bridge("storyboard.shots")
    if not shot_list:
        return bridge("storyboard.planner").plan_shots(script, planner=planner)
    path = Path(shot_list)
    if not path.is_file():
        raise errors.InvalidArgumentError(f"--shot-list {shot_list}: no such file", field="shot_list")
    text = path.read_text(encoding="utf-8")
    try:
        return shots.ShotList.from_json(text) if path.suffix.lower() == ".json" else shots.ShotList.from_csv(text)
    except errors.InvalidArgumentError as exc:
        raise type(exc)(f"{path}: {exc}", field=exc.field) from None


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _check_backend(caps, backend: str) -> None:
    known = {b.id: b for b in caps.backends}
    if backend not in known:
        have = ", ".join(sorted(known)) or "none"
        raise errors.InvalidArgumentError(f"--backend {backend!r}: this bridge has {have}", field="backend")
    b = known[backend]
    if hasattr(b, "available") and not b.available:
        reason = getattr(b, "unavailable_reason", "") or "the bridge cannot run it"
        raise errors.PreconditionError(f"--backend {backend!r} is unavailable on this bridge: {reason}")


def run_storyboard(script: str | Path | None, out: str | Path, *, address: str = "127.0.0.1:50151", token: str = "",
                   tls: bool = False, tls_root_cert: str = "", backend: str = "guides", project: str = DEFAULT_PROJECT,
                   seed: int = 0, scale: float = 0.25, fps: int = 24, width: int = DEFAULT_WIDTH,
                   height: int = DEFAULT_HEIGHT, shot_list: str | None = None, planner: str | None = None,
                   priority: str = "batch", deadline_hours: float = 8.0, timeout_s: float | None = None,
                   health_timeout_s: float | None = None, log=print) -> dict:
    """The whole path (see the module docstring); returns the summary that
    ``DIR/storyboard.json`` holds. ``script`` None: the sample script."""
    import bpy

    from . import convert, headless, host, storyboard_scene, storyboard_timeline
    from ._deps import request
    from .jobs import new_worker
    from .settings import BridgeSettings, ExtractSettings, JobSettings

    stages = Stages()
    out = Path(out).resolve()
    script = Path(script) if script else sample_script()
    if not script.is_file():
        raise errors.InvalidArgumentError(f"{script}: no such screenplay file", field="script")
    if tls_root_cert and not Path(tls_root_cert).is_file():
        raise errors.InvalidArgumentError(f"--tls-root-cert {tls_root_cert}: no such file", field="tls_root_cert")
    if priority not in ("batch", "interactive"):
        raise errors.InvalidArgumentError(f"--priority {priority!r}: batch or interactive", field="priority")
    if not (0 < deadline_hours <= 24 * 14):
        raise errors.InvalidArgumentError(f"--deadline-hours {deadline_hours:g}: must be above 0 and at most 336",
                                          field="deadline_hours")
    if not (isinstance(fps, int) and 1 <= fps <= 120):
        raise errors.InvalidArgumentError(f"--fps {fps!r}: a whole number of frames a second, 1 to 120", field="fps")
    pass_w, pass_h = convert.pass_resolution(width, height, 100, scale, None, None)
    project_tag = convert.tag(project, "project")
    base_generation = request.validate_generation(request.GenerationSettings(backend=backend, seed=int(seed)))

    # 1-3: parse, shot list, blocking plan: every refusal here exits 2 before the bridge is asked
    with stages("parse"):
        screenplay = bridge("storyboard.screenplay").load_screenplay(script)
    with stages("shot_list"):
        shots = _shot_list(screenplay, shot_list, planner)
        _write(out / "shots.csv", shots.to_csv())
        _write(out / "shots.json", shots.to_json())
    blocking_module = bridge("storyboard.blocking")
    with stages("blocking"):
        blocking = blocking_module.plan_blocking(shots, fps=float(fps), width=width, height=height)
        _write(out / "blocking.json", blocking_module.blocking_to_json(blocking))
    planned = {s.id: (scene, s) for scene in shots.scenes for s in scene.shots}
    log(f"{script.name}: {len(shots.scenes)} scenes, {len(planned)} shots, "
        f"{sum(b.frame_count for b in blocking)} frames at {fps} fps")

    # the bridge, before anything renders: unreachable 3, refused token 2, over its limits 2
    frames_dir = out / "frames"
    settings = BridgeSettings(address=address, tls=tls, tls_root_cert=tls_root_cert or "", token=token,
                              cache_dir=str(frames_dir))
    with stages("bridge"):
        caps = headless.check_bridge(settings, health_timeout_s or headless.HEALTH_TIMEOUT_S)
    _check_backend(caps, backend)
    for b in blocking:
        for s in b.shots:
            headless.check_limits(caps.limits, s.frame_count, pass_w, pass_h)
    max_prompt = getattr(caps.limits, "max_prompt_chars", 0) or None
    for s in shots.shots:
        request.validate_generation(replace(base_generation, prompt=s.prompt), max_prompt_chars=max_prompt)
    deadline = datetime.now(UTC) + timedelta(hours=deadline_hours)
    scheduling = (request.SchedulingSettings(job_class="batch", deadline=deadline) if priority == "batch"
                  else request.SchedulingSettings())
    wait_s = timeout_s if timeout_s is not None else deadline_hours * 3600 + WAIT_MARGIN_S

    updates: queue.Queue = queue.Queue()
    workers: dict[str, object] = {}        # worker key -> JobWorker
    results: dict[str, storyboard_timeline.ShotResult] = {}
    by_key: dict[str, str] = {}            # worker key -> shot id
    finals: dict[str, object] = {}         # shot id -> final JobEvent
    failure: list[BaseException] = []
    Kind = bridge("jobs.model").EventKind

    def drain(block_s: float) -> None:
        try:
            u = updates.get(timeout=block_s) if block_s > 0 else updates.get_nowait()
        except queue.Empty:
            return
        while True:
            shot_id = by_key.get(u.key, "?")
            if u.kind is Kind.ACCEPTED and u.status is not None:
                d = u.status.decision
                held = d is not None and d.planned_start > datetime.now(UTC) + timedelta(seconds=1)
                log(f"{shot_id}: job {u.job_id} {u.status.state.value}"
                    + (f" ({u.status.scheduling_reason})" if u.status.scheduling_reason else "")
                    + (f"; held until {d.planned_start:%H:%M} UTC: `greenlight run-now {u.job_id}` starts it now"
                       if held else ""))
            elif u.kind in (Kind.COMPLETED, Kind.FAILED, Kind.CANCELLED):
                finals[shot_id] = u
                if u.kind is not Kind.COMPLETED and not failure:
                    failure.append(errors.BackendError(f"shot {shot_id}: job {u.job_id} {u.kind.value}: {u.message}"))
            elif u.kind is Kind.ERROR and u.error is not None:
                finals[shot_id] = u
                if not failure:
                    exc = u.error.to_exception()
                    failure.append(exc if isinstance(exc, errors.GreenlightError)
                                   else RuntimeError(f"shot {shot_id}: {u.error.message}"))
            try:
                u = updates.get_nowait()
            except queue.Empty:
                return

    def cancel_all() -> None:
        for key, w in workers.items():
            if by_key[key] not in finals and w.is_alive():
                w.cancel()

    blends = []
    fps_fraction = None
    try:
        for b in blocking:
            # 3 (cont.): this scene as its own .blend
            with stages("blocking"):
                bpy.ops.wm.read_factory_settings(use_empty=True)
                sc = bpy.context.scene
                sc.name = storyboard_scene.scene_name(b)
                cameras = storyboard_scene.build_scene_in_blender(sc, b)
                blend = out / "scenes" / f"S{b.number:02d}.blend"
                blend.parent.mkdir(parents=True, exist_ok=True)
                bpy.ops.wm.save_as_mainfile(filepath=str(blend), check_existing=False)
                blends.append(blend)
            for cam in cameras:
                if failure:
                    raise failure[0]
                scene_shots, planned_shot = planned[cam["shot"]]
                shot_tag = convert.tag(cam["shot"], "shot")
                version, folder = headless.reserve_version_folder(settings, project_tag, shot_tag)
                with stages("extraction"):
                    sc.frame_set(cam["frame_start"])   # visibility and poses of this shot
                    extract = ExtractSettings(camera=cam["camera"], frame_start=cam["frame_start"],
                                              frame_end=cam["frame_end"], width=pass_w, height=pass_h,
                                              project=project_tag, shot=shot_tag, version=version)
                    try:
                        shot_obj = host.shot_from_scene_in_blender(sc, extract)
                    except errors.InvalidArgumentError as exc:
                        raise headless.BadSceneError(f"shot {cam['shot']}: {exc}", field=exc.field) from exc
                fps_fraction = fps_fraction or shot_obj.fps.fraction
                gen = replace(base_generation, prompt=planned_shot.prompt)
                worker = new_worker(settings, folder, updates, shot=shot_obj,
                                    job=JobSettings(generation=gen, scheduling=scheduling))
                workers[worker.key] = worker
                by_key[worker.key] = cam["shot"]
                results[cam["shot"]] = storyboard_timeline.ShotResult(
                    scene=scene_shots.number, heading=scene_shots.heading, shot=planned_shot, folder=folder,
                    blend=blend, camera=cam["camera"], frame_start=cam["frame_start"], frame_end=cam["frame_end"],
                    generation={"backend": backend, "seed": gen.seed, "prompt": gen.prompt})
                worker.start()
                del shot_obj   # the worker holds it until it is uploaded
                drain(0)
        with stages("generation"):
            give_up = time.monotonic() + wait_s
            while len(finals) < len(workers) and not failure:
                if time.monotonic() > give_up:
                    raise errors.BackendError(f"{len(workers) - len(finals)} of {len(workers)} jobs gave no result "
                                              f"within {wait_s:.0f} s (cancelled)")
                drain(0.1)
        if failure:
            raise failure[0]
    except BaseException:
        cancel_all()
        raise

    # 6: assembly
    order = [s.id for s in shots.shots]
    with stages("assembly"):
        ordered = [results[i] for i in order]
        for r in ordered:
            final = finals[r.shot.id]
            missing = [p.name for p in storyboard_timeline.shot_frames(r.folder, final.report.frames)
                       if not p.is_file()]
            if missing:
                raise errors.BackendError(f"shot {r.shot.id}: {len(missing)} of its frames are not in {r.folder}")
        animatic, frames = storyboard_timeline.write_animatic(ordered, fps_fraction, out / "animatic.mp4")
        timeline = storyboard_timeline.write_timeline(ordered, out / "storyboard.otio", title=screenplay.title or
                                                      script.stem, animatic=animatic)
    per_shot = []
    for r in ordered:
        rep = finals[r.shot.id].report
        per_shot.append({"shot": r.shot.id, "scene": r.scene, "size": r.shot.size.value, "move": r.shot.move.value,
                         "duration_s": r.shot.duration_s, "frames": rep.frames, "job_id": rep.job_id,
                         "folder": str(r.folder), "blend": str(r.blend), "camera": r.camera,
                         "energy_wh": rep.energy.energy_wh, "measured": rep.energy.measured,
                         "co2e_g_location": rep.energy.co2e_g_location, "sci": rep.sci, "sci_unit": rep.sci_unit,
                         "wall_s": rep.wall_s, "site": rep.site})
    summary = {
        "schema": "greenlight.storyboard/1", "script": str(script), "title": screenplay.title, "out": str(out),
        "scenes": len(shots.scenes), "shots": len(per_shot), "frames": frames,
        "fps": [fps_fraction.numerator, fps_fraction.denominator], "resolution": [pass_w, pass_h],
        "backend": backend, "priority": priority, "blends": [str(b) for b in blends], "animatic": str(animatic),
        "timeline": str(timeline), "shot_list": str(out / "shots.csv"), "blocking": str(out / "blocking.json"),
        "energy_wh": sum(s["energy_wh"] for s in per_shot),
        "co2e_g_location": sum(s["co2e_g_location"] for s in per_shot),
        "generation_busy_s": sum(s["wall_s"] for s in per_shot), "per_shot": per_shot,
    }
    summary["stages"] = stages.summary()
    _write(out / "storyboard.json", json.dumps(summary, indent=1, allow_nan=False) + "\n")
    return summary


def print_table(summary: dict, stream=sys.stdout) -> None:
    print(f"{'shot':<10} {'size':<18} {'move':<10} {'frames':>6} {'energy mWh':>11} {'gCO2e':>10} {'SCI':>10}",
          file=stream)
    for s in summary["per_shot"]:
        sci = "n/a" if s["sci"] is None else f"{s['sci']:.3g}"
        print(f"{s['shot']:<10} {s['size']:<18} {s['move']:<10} {s['frames']:>6} {s['energy_wh'] * 1000:>11.4g} "
              f"{s['co2e_g_location']:>10.3g} {sci:>10}", file=stream)
    print(f"{'total':<40} {summary['frames']:>6} {summary['energy_wh'] * 1000:>11.4g} "
          f"{summary['co2e_g_location']:>10.3g}", file=stream)
    print(f"animatic:  {summary['animatic']}", file=stream)
    print(f"timeline:  {summary['timeline']}", file=stream)
    print(f"scenes:    {', '.join(summary['blends'])}", file=stream)
    st = summary["stages"]
    print("stages (s): " + ", ".join(f"{k} {st[k]:.2f}" for k in STAGES) + f", total {st['total']:.2f}", file=stream)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="greenlight storyboard",
                                description="screenplay -> shot list -> blocked .blend scenes -> passes -> "
                                            "generation on the bridge -> animatic MP4 + OTIO timeline")
    p.add_argument("script", nargs="?", help=".fountain or .fdx screenplay")
    p.add_argument("--demo", action="store_true", help="use the sample screenplay (3 scenes, 11 shots)")
    p.add_argument("--out", default="storyboard", help="output folder (default: storyboard/)")
    p.add_argument("--address", default=os.environ.get("GREENLIGHT_ADDRESS", "127.0.0.1:50151"))
    p.add_argument("--token", default=os.environ.get("GREENLIGHT_TOKEN", ""), help="bearer token (or GREENLIGHT_TOKEN)")
    p.add_argument("--tls", action="store_true", help="use TLS with the system roots")
    p.add_argument("--tls-root-cert", default="", help="PEM file of the CA that signed the bridge's certificate")
    p.add_argument("--backend", default="guides", help="generation backend (default: guides)")
    p.add_argument("--project", default=DEFAULT_PROJECT)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", type=float, default=0.25, help="pass resolution as a fraction of --width x --height")
    p.add_argument("--width", type=int, default=DEFAULT_WIDTH, help="frame width the shots are blocked for")
    p.add_argument("--height", type=int, default=DEFAULT_HEIGHT, help="frame height the shots are blocked for")
    p.add_argument("--fps", type=int, default=24)
    p.add_argument("--shot-list", help="an edited shots.csv / shots.json to use instead of the rules")
    p.add_argument("--planner", help="a shot planner plug-in (entry point group greenlight.shot_planners)")
    p.add_argument("--priority", choices=("batch", "interactive"), default="batch",
                   help="batch (default): the carbon-aware scheduler may move the jobs before the deadline")
    p.add_argument("--deadline-hours", type=float, default=8.0, help="batch jobs: done within this many hours")
    p.add_argument("--timeout", type=float, help="seconds to wait for the jobs (default: the deadline + 10 min)")
    return p


def main(argv: list[str] | None = None) -> int:
    """``greenlight storyboard`` (and ``blender -b --python-expr ... -- ARGS``); returns the exit code."""
    if argv is None:
        argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    args = build_parser().parse_args(argv)
    if bool(args.script) == bool(args.demo):
        print("greenlight: give a script (.fountain or .fdx) or --demo, not both", file=sys.stderr)
        return errors.EXIT_BAD_INPUT
    from .headless import EXIT_INTERNAL, exit_code

    try:
        summary = run_storyboard(None if args.demo else args.script, args.out, address=args.address,
                                 token=args.token or "", tls=args.tls, tls_root_cert=args.tls_root_cert or "",
                                 backend=args.backend, project=args.project, seed=args.seed, scale=args.scale,
                                 fps=args.fps, width=args.width, height=args.height, shot_list=args.shot_list,
                                 planner=args.planner, priority=args.priority, deadline_hours=args.deadline_hours,
                                 timeout_s=args.timeout, log=lambda line: print(line, file=sys.stderr))
    except errors.GreenlightError as exc:
        print(f"greenlight: {exc}", file=sys.stderr)
        return exit_code(exc)     # by class: job failed 1, bad input/refused 2, unreachable 3
    except Exception as exc:      # a bug: one line, the traceback, never exit 0
        print(f"greenlight: unexpected {type(exc).__name__}: {exc} (a bug; traceback follows)", file=sys.stderr)
        traceback.print_exc()
        return EXIT_INTERNAL
    print_table(summary, sys.stderr)
    print(json.dumps({k: summary[k] for k in ("out", "shots", "frames", "animatic", "timeline", "energy_wh",
                                              "co2e_g_location", "stages")}))
    return errors.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
