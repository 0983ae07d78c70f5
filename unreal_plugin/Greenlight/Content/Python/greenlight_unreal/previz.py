"""One previz run, step by step, driven from the game thread.

    0. settings (typed, frozen)           4. build + validate the Shot (engine-free)
    1. read the sequence (host)           5. submit + watch on a worker thread
    2. render passes with MRQ (host)      6. frames back as a media track (host)
    3. decode the EXR passes (engine-free)

Steps 2 and 5 are asynchronous: their results arrive on the game thread
through the ``GameThreadPump`` (Slate post-tick callback). Only ``host``
touches the editor; ``cancel()`` works in every step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bridge.errors import GreenlightError
from bridge.jobs.model import EventKind, JobState

from . import host, mrq_exr, skeleton
from .settings import PrevizSettings, tag_safe
from .shot_builder import SequenceSample, build_shot
from .worker import GameThreadPump, new_worker

log = logging.getLogger(__name__)
# the run's own stages, then the job states it ends in
STAGES = ("idle", "reading", "rendering", "decoding", "generating", "importing",
          JobState.COMPLETED.value, JobState.FAILED.value, JobState.CANCELLED.value)
TERMINAL = (JobState.COMPLETED.value, JobState.FAILED.value, JobState.CANCELLED.value)


@dataclass
class Result:
    state: str = "idle"
    message: str = ""
    job_id: str = ""
    version: int = 0
    frames_folder: str = ""
    imported: dict | None = None
    energy_wh: float = 0.0
    co2e_g: float = 0.0
    warnings: tuple[str, ...] = ()


class PrevizRun:
    """``PrevizRun(settings).start()``; ``on_done(run)`` is called once, on
    the game thread, when the run completes, fails or is cancelled."""

    def __init__(self, settings: PrevizSettings, sequence=None, on_done: Callable[[PrevizRun], None] | None = None,
                 interactive: bool = True):
        self.settings = settings
        self.sequence = sequence
        self.on_done = on_done
        self.interactive = interactive
        self.result = Result()
        self.pump = GameThreadPump(host.register_tick_in_unreal, host.unregister_tick_in_unreal)
        self.sample: SequenceSample | None = None
        self.shot = None
        self.worker = None   # bridge.client.worker.JobWorker
        self._executor = None
        self._progress = None
        self._shot_tag = ""
        self._passes_dir = Path()
        self._frames_dir = Path()

    @property
    def state(self) -> str:
        return self.result.state

    @property
    def done(self) -> bool:
        return self.result.state in TERMINAL

    def _stage(self, state: str, message: str = "") -> None:
        self.result.state = state
        host.log_in_unreal(f"{self._shot_tag or 'previz'}: {state}{' - ' + message if message else ''}")

    # ------------------------------------------------------------ 1-2
    def start(self) -> PrevizRun:
        s = self.settings
        try:
            self.pump.start()
            seq = self.sequence if self.sequence is not None else host.current_sequence_in_unreal()
            self.sequence = seq
            self._shot_tag = tag_safe(s.shot or seq.get_name())
            version = s.version or host.next_version_in_unreal(s.content_path, self._shot_tag)
            self.result.version = version
            root = Path(s.work_folder) if s.work_folder else host.saved_dir_in_unreal() / "Greenlight"
            work = root / self._shot_tag / f"v{version:03d}"
            self._passes_dir = host.ensure_folder_in_unreal(work / "passes")
            self._frames_dir = host.ensure_folder_in_unreal(work / "frames")
            self.result.frames_folder = str(self._frames_dir)

            self._stage("reading")
            mapping = skeleton.load_mapping(s.mapping_path or None) if "pose" in s.passes else None
            bones = tuple(sorted({c.bone for cands in mapping.candidates.values() for c in cands})) if mapping else ()
            self._mapping = mapping
            self.sample = host.read_sequence_in_unreal(seq, s, bones_needed=bones, on_frame=self._reading_progress)
            self._end_progress()

            if {"depth", "motion", "pose"} & set(s.passes):
                self._stage("rendering", f"Movie Render Queue -> {self._passes_dir}")
                self._executor = host.render_passes_in_unreal(seq, self._passes_dir, s, self._on_rendered)
            else:
                self._on_rendered(True)
        except InterruptedError:
            self._finish(JobState.CANCELLED, "cancelled while reading the sequence")
        except (GreenlightError, LookupError, ValueError) as exc:
            self._finish(JobState.FAILED, str(exc))
        return self

    def _reading_progress(self, i: int, n: int) -> bool:
        if not self.interactive:
            return False
        if self._progress is None:
            self._progress = host.begin_progress_in_unreal(n, "Greenlight: reading the sequence")
        return host.step_progress_in_unreal(self._progress, 1, f"Frame {i + 1}/{n}")

    def _end_progress(self) -> None:
        if self._progress is not None:
            host.end_progress_in_unreal(self._progress)
            self._progress = None

    # ------------------------------------------------------------ 3-5
    def _on_rendered(self, success: bool) -> None:
        self._executor = None
        if self.done:
            return
        if not success:
            self._finish(JobState.FAILED,
                         "the Movie Render Queue job failed (see the Output Log, category LogMovieRenderPipeline)")
            return
        s = self.settings
        try:
            self._stage("decoding")
            want_depth = "depth" in s.passes
            depths, flows = (None, None)
            if {"depth", "motion"} & set(s.passes):
                depths, flows = mrq_exr.load_passes(
                    self._passes_dir, self.sample.name, list(self.sample.frame_numbers),
                    depth=s.depth if want_depth or "pose" in s.passes else None,
                    motion=s.motion if "motion" in s.passes else None)
            self.shot, warnings = build_shot(self.sample, s, self.result.version, depths=depths if want_depth else None,
                                             flows=flows, mapping=self._mapping)
            self.result.warnings = tuple(warnings)
            for w in warnings:
                host.log_in_unreal(w, "warning")
        except (GreenlightError, mrq_exr.PassDecodeError, ValueError) as exc:
            self._finish(JobState.FAILED, str(exc))
            return
        self._stage("generating", f"{self.shot.frame_count} frames to {s.bridge.address}")
        if self.interactive:
            self._progress = host.begin_progress_in_unreal(self.shot.frame_count, "Greenlight: generating previz")
        self.worker = new_worker(s.bridge, self.shot, self._frames_dir, self.pump, self._on_update,
                                 generation=s.generation, scheduling=s.scheduling)
        self.worker.start()

    def _on_update(self, u) -> None:
        if self.done:
            return
        if u.job_id:
            self.result.job_id = u.job_id
        if u.kind is EventKind.ACCEPTED and u.status is not None:
            d = u.status.decision
            host.log_in_unreal(f"job {u.job_id} accepted ({u.status.backend}, site {u.status.site}, "
                               f"expected {(d.expected_co2e_g or 0.0) if d else 0.0:.3g} gCO2e)")
        elif u.kind is EventKind.FRAME and u.frame is not None:
            if u.totals is not None:
                self.result.energy_wh, self.result.co2e_g = u.totals.energy_wh, u.totals.co2e_g_location
            if self._progress is not None and host.step_progress_in_unreal(
                    self._progress, 1, f"Frame {u.frame.index + 1}/{self.shot.frame_count}"):
                self.cancel()
        elif u.kind is EventKind.COMPLETED and u.report is not None:
            self.result.energy_wh, self.result.co2e_g = u.report.energy.energy_wh, u.report.energy.co2e_g_location
            self._import(u)
        elif u.kind is EventKind.CANCELLED:
            self._finish(JobState.CANCELLED, u.message or "cancelled on the bridge")
        elif u.kind in (EventKind.FAILED, EventKind.ERROR):
            self._finish(JobState.FAILED, u.message)
        elif u.kind is EventKind.WARNING:
            host.log_in_unreal(f"Greenlight: {u.message}")

    # ------------------------------------------------------------ 6
    def _import(self, u) -> None:
        self._end_progress()
        self._stage("importing")
        report = u.report
        meta = {
            "job_id": u.job_id, "version": str(self.result.version), "shot": self.shot.tags.shot,
            "project": self.shot.tags.project, "frames": str(report.frames),
            "energy_wh": repr(report.energy.energy_wh), "co2e_g": repr(report.energy.co2e_g_location),
            "energy_measured": str(report.energy.measured).lower(), "meter": report.energy.meter,
            "site": report.site, "bridge": self.settings.bridge.address,
            "temporal_gap1": repr(report.temporal.gap1) if report.temporal.computed else "",
            "temporal_trajectory": repr(report.temporal.trajectory) if report.temporal.computed else "",
            "temporal_reason": report.temporal.reason,
        }
        try:
            self.result.imported = host.import_frames_in_unreal(
                self.sequence, self._frames_dir, self.shot.tags.shot, self.result.version, self.sample.start_frame,
                self.sample.end_frame, self.sample.display_rate, meta, self.settings.content_path)
        except Exception as exc:   # the frames are on disk; say where
            log.exception("Greenlight import failed")
            self._finish(JobState.FAILED, f"frames are in {self._frames_dir} but the import failed: {exc}")
            return
        self._finish(JobState.COMPLETED, f"{report.frames} frames, {report.energy.energy_wh:.3g} Wh, "
                                         f"{report.energy.co2e_g_location:.3g} gCO2e "
                                  f"-> {self.result.imported['asset']}")

    # ------------------------------------------------------------ cancel / finish
    def cancel(self) -> None:
        if self.done:
            return
        if self._executor is not None:
            host.cancel_render_in_unreal(self._executor)
            self._executor = None
        if self.worker is not None:
            self.worker.cancel()     # the bridge answers with a CANCELLED event
            return
        self._finish(JobState.CANCELLED, "cancelled before it reached the bridge")

    def _finish(self, state: JobState, message: str) -> None:
        if self.done:
            return
        self._end_progress()
        self.result.message = message
        self._stage(state.value, message)
        self.pump.stop()
        if state is JobState.FAILED and self.interactive:
            host.show_message_in_unreal("Greenlight", message)
        if self.on_done is not None:
            self.on_done(self)


_ACTIVE: PrevizRun | None = None


def start_from_menu(settings: PrevizSettings | None = None) -> PrevizRun | None:
    """The menu/toolbar command: one run at a time."""
    global _ACTIVE
    if _ACTIVE is not None and not _ACTIVE.done:
        host.show_message_in_unreal("Greenlight", f"a previz run is already {_ACTIVE.state}; cancel it first")
        return None
    _ACTIVE = PrevizRun(settings or PrevizSettings()).start()
    return _ACTIVE


def cancel_from_menu() -> None:
    if _ACTIVE is not None:
        _ACTIVE.cancel()
