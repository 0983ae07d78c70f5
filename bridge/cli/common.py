"""What several ``greenlight`` commands share: exit codes, the client
options and the client they build, streaming a job into a folder, the job
report as text or JSON, and the entry points to code outside ``bridge``."""

from __future__ import annotations

import json
import os
import sys
from fractions import Fraction
from pathlib import Path

from ..errors import EXIT_JOB_FAILED, EXIT_OK, GreenlightError
from ..jobs.model import JobReport

# Exit codes (the module docstring of bridge.cli says the same).
# exit codes: one table for every entry point (bridge.errors.exit_code)

# Commands that need code the core package must not import (the Blender
# add-on, the sample-shot renderer) find it through these entry points,
# declared in pyproject.toml.
COMMANDS_GROUP = "greenlight.commands"
INSTALL_HINT = "pip install -e '.[blender]' (from the repository; or pip install 'greenlight[blender]')"


# ---------------------------------------------------------------- client
def client_opts(sp) -> None:
    """The options every command that talks to a bridge takes."""
    sp.add_argument("--address", default=os.environ.get("GREENLIGHT_ADDRESS", "127.0.0.1:50151"))
    sp.add_argument("--token", default=os.environ.get("GREENLIGHT_TOKEN"), help="bearer token (or GREENLIGHT_TOKEN)")
    sp.add_argument("--tls", action="store_true", help="use TLS with the system roots")
    sp.add_argument("--tls-root-cert", help="PEM file of the CA that signed the bridge's certificate")


def bridge_settings(args):
    from ..client.settings import BridgeSettings

    return BridgeSettings(address=args.address, tls=args.tls, tls_root_cert=args.tls_root_cert or "",
                          token=args.token or "")


def client(args):
    """A ``BridgeClient`` from the client options (``with client(args) as c:``)."""
    from ..client.settings import make_client

    return make_client(bridge_settings(args))


# ---------------------------------------------------------------- plugins
def load_command(name: str, command: str):
    """The object entry point ``name`` of ``greenlight.commands`` names, or
    a GreenlightError (exit 2) that says what to install."""
    from importlib.metadata import entry_points

    found = entry_points(group=COMMANDS_GROUP, name=name)
    if not found:
        raise GreenlightError(f"greenlight {command} needs the {COMMANDS_GROUP} entry point {name!r}, which is not "
                              f"installed: {INSTALL_HINT}")
    (ep, *_) = found
    try:
        return ep.load()
    except ImportError as exc:
        raise GreenlightError(f"greenlight {command}: cannot load {ep.value} ({exc}): {INSTALL_HINT}") from exc


# ---------------------------------------------------------------- streaming
def watch_to_folder(client, job_id: str, out: Path, fps: Fraction, quiet: bool = False) -> int:
    """Stream a job's frames into ``out``, then write the MP4; returns the exit code."""
    from ..client import EventKind
    from ..client.animatic import write_mp4

    bar = ProgressLine(enabled=not quiet)
    final = client.download(job_id, out, on_event=bar.update)
    bar.close()
    if final.kind is not EventKind.COMPLETED:
        print(f"job {job_id} {final.kind.value}: {final.message}", file=sys.stderr)
        return EXIT_JOB_FAILED
    frames = sorted(out.glob("frame_*.png"))
    mp4 = write_mp4(frames, fps, out / "animatic.mp4")
    print_summary(final.report, out, mp4)
    return EXIT_OK


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
        from ..client import EventKind

        if event.kind is EventKind.STATUS:
            self.total = event.status.frame_count
            self.frames = event.status.frames_done
        elif event.kind is EventKind.PROGRESS and event.progress is not None:
            self.eta, self.energy_wh = event.progress.eta_s, event.progress.energy_wh_so_far
        elif event.kind is EventKind.FRAME and event.frame is not None:
            self.frames += 1
            self.measured = event.frame.measured
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


# ---------------------------------------------------------------- job report
# The only two functions that read a job's report (``greenlight submit
# --watch``, ``demo`` and ``report JOB`` all come through them).
def print_summary(report: JobReport, out: Path, mp4: Path | None) -> None:
    e = report.energy
    market = "n/a (no market factor for this site)" if e.co2e_g_market is None else f"{e.co2e_g_market:.4g} g"
    sci = "n/a" if report.sci is None else f"{report.sci:.4g} {report.sci_unit}"
    print(f"frames:      {report.frames} -> {out}")
    if mp4 is not None:
        print(f"animatic:    {mp4}")
    print(f"report:      {out / 'report.json'}")
    print(f"wall time:   {report.wall_s:.2f} s (bridge, {len(report.attempts)} attempt(s))")
    print(f"energy:      {e.energy_wh * 1000:.4g} mWh IT, {'measured' if e.measured else 'estimated'} "
          f"by {e.meter}; facility {report.facility_energy_wh * 1000:.4g} mWh at PUE {report.pue:g}")
    print(f"carbon:      {e.co2e_g_location:.4g} gCO2e location-based ({report.intensity_g_per_kwh:g} g/kWh, "
          f"{report.intensity_source}); market-based {market}")
    print(f"embodied:    {report.embodied_co2e_g:.4g} gCO2e (device manufacture, share of its lifetime)")
    print(f"SCI:         {sci} = (operational location-based + embodied) / {report.functional_units:.4g}")


def report_json(report: JobReport) -> str:
    return json.dumps(report.to_dict(), indent=1, allow_nan=False)
