"""Run jobs on Ray, for more than one machine (DESIGN section 7).

Sites are Ray custom resources: every node of site ``gb`` is started with
``ray start ... --resources='{"site:gb": 1}'`` (one Ray cluster can hold
several sites; a cluster per site works the same with one executor per
address). A job is submitted as one Ray task that needs
``{"site:<name>": site_resource_amount}`` plus ``num_gpus`` (1 on GPU
sites) and ``num_cpus``; the default site amount is tiny, so the label only
says *where* and the GPUs decide how many jobs a node runs at once. The
site comes from the planner's decision stored with the job
(``job.decision["site"]``).

Streaming: the task is a Ray *streaming generator* (a generator function run
as a task). Inside it, the backend runs in a thread with a JobContext proxy
that encodes each frame to PNG on the worker (so the wire carries the
compressed frame) with the energy the worker's own meter saw for it, and
puts it on a local queue; the generator yields those items as they come.
The bridge iterates the generator and stores frames, previews, progress and
energy as they arrive, in the order produced. Why this and not an actor
with a ``ray.util.queue.Queue``: the generator gives ordered delivery and
back-pressure for free, adds no queue actor (one more process and a hop per
frame), frames travel through the object store like any task result, and
cancelling is one call: ``ray.cancel(generator)`` raises
``KeyboardInterrupt`` in the task, which sets the context's ``cancelled``
flag for the backend; if the task is still alive ``cancel_grace_s`` later it
is killed with ``force=True``.

Energy is measured on the node that ran the job (``meter_factory`` is
called in the worker; default :func:`bridge.energy.meters.best_meter`), per
frame and in total, and each figure keeps its measured/estimated label.

The executor keeps :class:`~bridge.scheduling.executor.LocalExecutor`'s
public interface (``start``, ``stop``, ``enqueue``, ``cancel_running``,
``is_running``, ``report_for``) and its state rules: it is a subclass
whose driver threads each follow one remote job. ``import ray`` happens only
inside methods, so the bridge imports this module without Ray installed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..backends.base import Backend
from ..energy.accounting import Site
from ..energy.meters import Meter, joules_to_wh
from ..errors import GreenlightError
from ..jobs.channels import ChannelRegistry, ProgressInfo
from ..jobs.images import add_png_text
from ..jobs.store import JobStore
from .executor import LocalExecutor, _Attempt

log = logging.getLogger(__name__)

SITE_RESOURCE_PREFIX = "site:"
_WORKER_BACKENDS: dict[str, Backend] = {}     # per worker process: loaded backends stay loaded


def site_resource(site: str) -> str:
    return f"{SITE_RESOURCE_PREFIX}{site}"


# ------------------------------------------------------------ worker side
class _RemoteContext:
    """The JobContext a backend sees on a Ray worker: everything it reports
    goes, in order, onto ``out`` for the streaming generator to yield."""

    def __init__(self, job_id: str, frame_count: int, frames_done: frozenset[int], out: queue.Queue, meter: Meter):
        self.job_id = job_id
        self._frame_count = frame_count
        self._frames_done = frames_done
        self._out = out
        self._meter = meter
        self._cancel = threading.Event()
        first = meter.read()
        self.start_joules = self.last_joules = first.joules
        self.last_reading = first

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def frames_done(self) -> frozenset[int]:
        return self._frames_done

    def energy_wh(self) -> float:
        self.last_reading = self._meter.read()
        return joules_to_wh(self.last_reading.joules - self.start_joules)

    def progress(self, step: int, total_steps: int, stage: str = "") -> None:
        self._out.put(("progress", step, total_steps, stage, self.energy_wh()))

    def preview(self, index: int, step: int, rgb) -> None:
        from ..jobs.images import encode_png
        png = encode_png(rgb, {"job_id": self.job_id, "frame": index, "step": step, "preview": 1})
        self._out.put(("preview", index, step, png))

    def frame(self, index: int, rgb, work: float = 1.0) -> None:
        from ..jobs.images import encode_png
        if not 0 <= index < self._frame_count:
            raise GreenlightError(f"backend produced frame {index}, outside 0..{self._frame_count - 1}")
        reading = self._meter.read()
        window_wh = joules_to_wh(reading.joules - self.last_joules)
        self.last_joules, self.last_reading = reading.joules, reading
        # the bridge charges and prices the frame and stamps those figures into the file
        png = encode_png(rgb, {"job_id": self.job_id, "frame": index})
        self._out.put(("frame", index, png, window_wh, float(work), reading.measured, reading.meter))


def _default_meter() -> Meter:
    from ..energy.meters import best_meter
    return best_meter().meter


_DONE = ("__done__",)


def run_job_remote(backend: Backend | None, backend_id: str, backend_factory: Callable[[], Backend] | None,
                   shot_bytes: bytes, settings, job_id: str, frame_count: int, frames_done: frozenset[int],
                   meter_factory: Callable[[], Meter] | None, cancel_grace_s: float):
    """The body of the Ray task (a generator): run the backend in a thread
    and yield what it reports; last, ``("end", wh, measured, meter, error)``."""
    from ..proto.greenlight.v1 import shot_pb2
    from ..shot.wire import shot_from_pb

    out: queue.Queue = queue.Queue(maxsize=256)
    meter = (meter_factory or _default_meter)()
    ctx = _RemoteContext(job_id, frame_count, frames_done, out, meter)
    result: dict[str, Any] = {"error": None}

    def target() -> None:
        try:
            b = backend
            if b is None:
                b = _WORKER_BACKENDS.get(backend_id)
                if b is None:
                    if backend_factory is None:
                        raise GreenlightError(f"backend {backend_id!r}: neither an instance nor a factory was sent")
                    b = _WORKER_BACKENDS[backend_id] = backend_factory()
            msg = shot_pb2.Shot()
            msg.ParseFromString(shot_bytes)
            b.run(shot_from_pb(msg), settings, ctx)
        except BaseException as exc:  # reported to the bridge, never a worker crash
            result["error"] = f"{type(exc).__name__}: {exc}"
            result["trace"] = traceback.format_exc()
        finally:
            out.put(_DONE)

    thread = threading.Thread(target=target, name=f"greenlight-job-{job_id}", daemon=True)
    thread.start()
    try:
        while True:
            try:
                item = out.get(timeout=0.25)
            except queue.Empty:
                continue
            if item is _DONE:
                break
            yield item
    finally:  # normal end, or KeyboardInterrupt / GeneratorExit from ray.cancel
        ctx._cancel.set()
        thread.join(cancel_grace_s)
    wh = ctx.energy_wh()
    yield ("end", wh, ctx.last_reading.measured, ctx.last_reading.meter, result["error"], result.get("trace", ""))


# ------------------------------------------------------------ bridge side
@dataclass
class _RayAttempt(_Attempt):
    """Bridge-side state of one remote run (``executor`` is the RayExecutor).
    The worker's meter figures arrive as laps (frames) and running totals
    (progress, end); ``take`` feeds each new joule to the attempt once."""

    ref: Any = None
    remote_seen_wh: float = 0.0
    cancel_sent: float | None = None
    force_sent: bool = False
    items: list[str] = field(default_factory=list)   # kinds received, in order (diagnostics)

    def take_lap(self, wh: float, measured: bool, meter: str) -> None:
        self.remote_seen_wh += wh
        self.measure(wh, measured, meter)

    def take_total(self, total_wh: float, measured: bool, meter: str) -> None:
        if total_wh > self.remote_seen_wh:
            self.take_lap(total_wh - self.remote_seen_wh, measured, meter)


class RayExecutor(LocalExecutor):
    """Submit each job as a Ray task at its planned site; see the module
    docstring. ``sites`` maps site names to their accounting figures (for
    the report; default: ``site`` for all). ``slots`` is the number of jobs
    followed at once (Ray queues the rest by resources)."""

    def __init__(self, store: JobStore, channels: ChannelRegistry, backends: dict[str, Backend], meter: Meter,
                 site: Site, *, sites: Mapping[str, Site] | None = None, slots: int = 8, num_gpus: float = 1.0,
                 num_cpus: float = 1.0, site_resource_amount: float = 0.001,
                 backend_factories: Mapping[str, Callable[[], Backend]] | None = None,
                 meter_factory: Callable[[], Meter] | None = None, address: str | None = None,
                 init_kwargs: Mapping[str, Any] | None = None, cancel_grace_s: float = 5.0,
                 poll_s: float = 0.2, ledger=None, signal=None, clock=None):
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        super().__init__(store, channels, backends, meter, site, devices=tuple(f"ray{i}" for i in range(slots)),
                         ledger=ledger, signal=signal, clock=clock)
        self.sites = dict(sites or {site.name: site})
        self.num_gpus = num_gpus
        self.num_cpus = num_cpus
        self.site_resource_amount = site_resource_amount
        self.backend_factories = dict(backend_factories or {})
        self.meter_factory = meter_factory
        self.address = address
        self.init_kwargs = dict(init_kwargs or {})
        self.cancel_grace_s = cancel_grace_s
        self.poll_s = poll_s
        self._owns_ray = False
        self._remote = None

    # ---------------------------------------------------------- lifecycle
    def start(self) -> None:
        import ray

        if not ray.is_initialized():
            ray.init(address=self.address, **self.init_kwargs)
            self._owns_ray = True
        self._remote = ray.remote(run_job_remote)
        super().start()

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel remote runs (they stay ``running`` in the store and are
        re-queued by the next start, like the local executor's)."""
        super().stop(timeout)
        if self._owns_ray:
            import ray
            ray.shutdown()
            self._owns_ray = False

    def cancel_running(self, job_id: str) -> bool:
        if not super().cancel_running(job_id):
            return False    # starting: its attempt is cancelled when registered, before the task is sent
        with self._lock:
            attempt = self._running.get(job_id)
        if isinstance(attempt, _RayAttempt):
            self._send_cancel(attempt)
        return True

    def _send_cancel(self, attempt: _RayAttempt) -> None:
        import ray

        if attempt.ref is None or attempt.force_sent:
            return
        now = time.monotonic()
        try:
            if attempt.cancel_sent is None:
                ray.cancel(attempt.ref)
                attempt.cancel_sent = now
            elif now - attempt.cancel_sent > self.cancel_grace_s:
                ray.cancel(attempt.ref, force=True)
                attempt.force_sent = True
        except Exception as exc:  # already finished, or Ray going down
            log.debug("job %s: cancel: %s", attempt.job_id, exc)

    def site_available(self, name: str) -> bool:
        import ray
        return ray.cluster_resources().get(site_resource(name), 0) > 0

    def task_options(self, site_name: str) -> dict:
        return {"resources": {site_resource(site_name): self.site_resource_amount},
                "num_gpus": self.num_gpus, "num_cpus": self.num_cpus, "max_retries": 0}

    # ------------------------------------------------------------- a run
    def site_for(self, job) -> Site:
        """The site the plan chose: frames there are priced with its figures."""
        name = job.decision.site if job.decision is not None else ""
        return self.sites.get(name, self.site)

    def site_named(self, name: str) -> Site:
        return self.sites.get(name, self.site)

    def _new_attempt(self, job, done: frozenset[int]) -> _Attempt:
        return _RayAttempt(job=job, executor=self, frames_done=done, site=self.site_for(job))

    def _run(self, job_id: str) -> None:
        attempt = self._start_attempt(job_id)
        if attempt is None:
            return
        assert isinstance(attempt, _RayAttempt)
        job = attempt.job
        # where the plan said: a site this executor has no figures for still runs (or fails) there
        site_name = job.decision.site if job.decision is not None and job.decision.site else attempt.site.name
        self.channels.notify(job_id, progress=ProgressInfo(0, 0, len(attempt.frames_done), 0.0, -1.0, job.energy_wh,
                                                            f"submitted to Ray at site {site_name}"))
        error: str | None = None
        try:
            if attempt.cancelled:
                raise GreenlightError("cancelled before it was sent to Ray")
            if not self.site_available(site_name):
                raise GreenlightError(
                    f"no Ray node offers resource {site_resource(site_name)!r}: start the site's nodes with "
                    f"ray start --resources='{{\"{site_resource(site_name)}\": 1}}'")
            backend = self.backends.get(job.backend)
            factory = self.backend_factories.get(job.backend)
            if backend is None and factory is None:
                raise GreenlightError(f"backend {job.backend!r} is not configured on this bridge")
            shot_bytes = self.store.read_shot_bytes(job_id)
            assert self._remote is not None, "RayExecutor.start() was not called"
            attempt.ref = self._remote.options(**self.task_options(site_name)).remote(
                None if factory is not None else backend, job.backend, factory, shot_bytes, job.generation,
                job_id, job.frame_count, attempt.frames_done, self.meter_factory, self.cancel_grace_s)
            log.info("job %s: submitted to Ray at site %s (attempt %d)", job_id, site_name, job.attempts)
            error = self._drain(attempt)
        except Exception as exc:
            if not attempt.cancelled:
                log.error("job %s: failed\n%s", job_id, traceback.format_exc())
                error = f"{type(exc).__name__}: {exc}"
        finally:
            with self._lock:
                self._running.pop(job_id, None)
        self._end_attempt(attempt, error)

    def _drain(self, attempt: _RayAttempt) -> str | None:
        """Follow the remote generator until it ends; returns the job's error."""
        import ray
        from ray.exceptions import RayError, TaskCancelledError

        gen = attempt.ref
        while True:
            if attempt.cancel_event.is_set():
                self._send_cancel(attempt)
            ready, _ = ray.wait([gen], timeout=self.poll_s)
            if not ready:
                continue
            try:
                ref = next(gen)
            except StopIteration:
                return None
            try:
                item = ray.get(ref)
            except TaskCancelledError:
                return None if attempt.cancelled else "the Ray task was cancelled outside the bridge"
            except RayError as exc:
                if attempt.cancelled:
                    return None
                return (f"the Ray task at site {attempt.site.name} failed: "
                        f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
            error = self._apply(attempt, item)
            if item[0] == "end":
                return error

    def _apply(self, attempt: _RayAttempt, item: Sequence[Any]) -> str | None:
        kind = item[0]
        attempt.items.append(kind)
        job_id = attempt.job_id
        if kind == "frame":
            _, index, png, wh, work, measured, meter = item
            attempt.take_lap(wh, measured, meter)
            attempt.check_index(index)
            attempt.record_frame(index, work, lambda meta: add_png_text(png, meta))
        elif kind == "progress":
            _, step, total, stage, wh = item
            attempt.take_total(wh, attempt.record.measured, attempt.record.meter)
            attempt.report_progress(step, total, stage)
        elif kind == "preview":
            _, index, step, png = item
            self.channels.notify(job_id, preview=(index, step, png))
        elif kind == "end":
            _, wh, measured, meter, error, trace = item
            attempt.take_total(wh, measured, meter)
            if error and not attempt.cancelled:
                log.error("job %s: failed on Ray site %s\n%s", job_id, attempt.site.name, trace)
                return error
        return None
