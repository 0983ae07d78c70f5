"""What the sidebar panel shows, without bpy: the backend list from the
bridge's GetCapabilities, the cost estimate from EstimateJob, and the text
of the cost line.

Network calls run only on daemon threads started by ``FETCHER`` (the
Refresh and Estimate operators, a change of the bridge address, the local
bridge reaching SERVING); their results land in caches, per bridge address
for capabilities and per scene for estimates. The panel's ``draw`` and the
backend enum's items callback only read those caches (STYLE practice 6).

    FETCHER.refresh_capabilities(bridge_settings)     # a thread; returns at once
    FETCHER.wait(5.0)                                 # tests: until every fetch ended
    backend_items(backend_choices(FETCHER.capabilities_for(address)), current="guides")

Blender's dynamic enums keep only pointers into the strings an items
callback returns, and store an int (the item's number), not the identifier:
``keep_alive`` holds every list handed out for the life of the module, and
``backend_number`` gives each backend id one number for the session, so a
stored choice never changes meaning when the list is reordered or shrinks.
"""

from __future__ import annotations

import logging
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from ._deps import client_settings, errors, request

log = logging.getLogger(__name__)

GUIDES = "guides"
GUIDES_DESCRIPTION = "Conditioning preview (depth, pose, motion): runs on every bridge, no model needed"
# A bridge's first GetCapabilities can take seconds (it checks its backends); headless uses the same bound.
FETCH_TIMEOUT_S = 15.0
# How many characters fit on one label line in the default sidebar width (~240 px at 1x UI
# scale, ~6 px a character): longer dynamic texts are wrapped to this.
LINE_CHARS = 36
# A batch decision is made against a carbon forecast: after this long, press Estimate again.
BATCH_ESTIMATE_MAX_AGE_S = 15 * 60
OLDER_BRIDGE = "The bridge cannot estimate (older bridge)"


# ------------------------------------------------------------------ backends
@dataclass(frozen=True)
class BackendChoice:
    id: str
    description: str = ""
    available: bool = True
    unavailable_reason: str = ""


GUIDES_CHOICE = BackendChoice(GUIDES, GUIDES_DESCRIPTION)


@dataclass(frozen=True)
class Capabilities:
    """One GetCapabilities answer (or why there is none) for one bridge address.
    ``backends`` is kept from the last answer when a later fetch fails."""

    address: str
    backends: tuple[BackendChoice, ...] = ()
    server_version: str = ""
    error: str = ""          # "" = fetched; else why the last fetch failed
    fetched_at: float = 0.0  # time.time() of the last answer (0 = never answered)

    @property
    def reached(self) -> bool:
        return not self.error


def capabilities_from_pb(address: str, msg) -> Capabilities:
    """A ``bridge_pb2.Capabilities`` as plain records."""
    backends = tuple(BackendChoice(b.id, b.description, b.available, b.unavailable_reason)
                     for b in msg.backends if b.id)
    return Capabilities(address, backends, msg.server_version, fetched_at=time.time())


def backend_choices(caps: Capabilities | None) -> tuple[BackendChoice, ...]:
    """The bridge's backends as it listed them, "guides" first and always
    present (also with no bridge reached)."""
    listed = caps.backends if caps is not None else ()
    guides = next((b for b in listed if b.id == GUIDES), GUIDES_CHOICE)
    return (guides, *(b for b in listed if b.id != GUIDES))


_NUMBERS: dict[str, int] = {GUIDES: 0}
_IDS: dict[int, str] = {0: GUIDES}
_LOCK = threading.Lock()


def backend_number(backend_id: str) -> int:
    """The enum item number of ``backend_id``: assigned on first sight, never reused this session."""
    with _LOCK:
        if backend_id not in _NUMBERS:
            n = len(_NUMBERS)
            _NUMBERS[backend_id], _IDS[n] = n, backend_id
        return _NUMBERS[backend_id]


def backend_for_number(number: int) -> str | None:
    return _IDS.get(number)


EnumItem = tuple[str, str, str, str, int]
_ALIVE: dict[tuple[EnumItem, ...], list[EnumItem]] = {}


def keep_alive(items: list[EnumItem]) -> list[EnumItem]:
    """The same list object for the same items, referenced for the life of the
    module: Blender reads the strings of a dynamic enum's items after the
    callback returned, and misbehaves (or crashes) once Python freed them."""
    with _LOCK:
        return _ALIVE.setdefault(tuple(items), items)


def backend_items(choices: tuple[BackendChoice, ...], current: str = "") -> list[EnumItem]:
    """EnumProperty items ``(id, name, description, icon, number)``: available
    backends plainly, unavailable ones marked (their description says why),
    and ``current`` kept as an item when this bridge does not list it, so the
    stored choice stays valid while the list changes."""
    items: list[EnumItem] = []
    for b in choices:
        if b.available:
            items.append((b.id, b.id, b.description or f"Backend {b.id!r} on the bridge", "NONE",
                          backend_number(b.id)))
        else:
            reason = b.unavailable_reason or "the bridge says it cannot run here"
            items.append((b.id, f"{b.id} (unavailable)", f"Unavailable on this bridge: {reason}", "ERROR",
                          backend_number(b.id)))
    if current and all(b.id != current for b in choices):
        items.append((current, f"{current} (not listed)",
                      "This bridge does not list this backend (press Refresh, or pick another)", "QUESTION",
                      backend_number(current)))
    return keep_alive(items)


def check_backend(caps: Capabilities | None, backend: str) -> None:
    """Refuse a backend that the last capabilities answer for this bridge
    marks unavailable (with its reason), or that a reached bridge does not list.
    Nothing is refused when the bridge was never reached: it decides."""
    if caps is None:
        return
    listed = {b.id: b for b in caps.backends}
    choice = listed.get(backend)
    if choice is not None and not choice.available:
        raise errors.InvalidArgumentError(
            f"backend {backend!r} is not available on the bridge at {caps.address}: "
            f"{choice.unavailable_reason or 'it cannot run there'}; choose another backend "
            "(Generation > Backend) or install what it needs on the bridge", field="generation.backend")
    if choice is None and caps.reached and caps.backends:
        names = ", ".join(sorted(b.id for b in caps.backends if b.available))
        raise errors.InvalidArgumentError(
            f"backend {backend!r} is not on the bridge at {caps.address} (available: {names}): "
            "press Refresh and choose one from the list", field="generation.backend")


def capabilities_lines(caps: Capabilities | None) -> list[str]:
    """The Bridge section's status text."""
    if caps is None:
        return ["Not fetched yet: press Refresh"]
    if caps.error:
        lines = [f"Not reached: {caps.error}"]
        if caps.backends:
            lines.append("Showing the backends it listed before")
        return wrap(lines)
    available = sum(b.available for b in caps.backends)
    version = f" (bridge {caps.server_version})" if caps.server_version else ""
    return wrap([f"{len(caps.backends)} backends, {available} available{version}"])


# ------------------------------------------------------------------ estimates
@dataclass(frozen=True)
class EstimateKey:
    """What an estimate depends on. The prompts and the seed do not change the
    cost, so editing them does not make an estimate stale; the batch deadline
    is kept as hours from now (the absolute time moves every second)."""

    address: str
    project: str
    frame_count: int
    width: int
    height: int
    backend: str
    steps: int
    guidance_scale: float
    controls: tuple[tuple[str, bool, float], ...]
    output_width: int
    output_height: int
    model_profile: str
    job_class: str
    deadline_hours: float
    allowed_sites: tuple[str, ...]


@dataclass(frozen=True)
class EstimateRequest:
    key: EstimateKey
    generation: request.GenerationSettings
    scheduling: request.SchedulingSettings


def estimate_request(address: str, project: str, frame_count: int, width: int, height: int,
                     generation: request.GenerationSettings, job_class: str = "interactive",
                     deadline_hours: float = 0.0, allowed_sites: tuple[str, ...] = (),
                     now: datetime | None = None) -> EstimateRequest:
    """The request for these inputs; a batch deadline is ``now + deadline_hours``."""
    if job_class == "batch":
        now = now or datetime.now(UTC)
        scheduling = request.SchedulingSettings(job_class="batch", deadline=now + timedelta(hours=deadline_hours),
                                                allowed_sites=tuple(allowed_sites))
    else:
        scheduling = request.SchedulingSettings(allowed_sites=tuple(allowed_sites))
        deadline_hours = 0.0
    g = generation
    key = EstimateKey(
        address=address, project=project, frame_count=frame_count, width=width, height=height, backend=g.backend,
        steps=g.steps, guidance_scale=g.guidance_scale,
        controls=tuple((c.kind, c.enabled, round(c.strength, 4)) for c in g.controls),
        output_width=g.output_width, output_height=g.output_height, model_profile=g.model_profile,
        job_class=scheduling.job_class, deadline_hours=round(deadline_hours, 4), allowed_sites=tuple(allowed_sites))
    return EstimateRequest(key, generation, scheduling)


@dataclass(frozen=True)
class CostEstimate:
    """A ``bridge_pb2.JobEstimate`` as a plain record (every figure an estimate)."""

    wall_s: float
    energy_wh: float
    co2e_g: float
    site: str = ""
    planned_start: datetime | None = None
    expected_co2e_g: float = 0.0
    run_now_co2e_g: float = 0.0
    reason: str = ""
    basis: str = ""


def cost_from_pb(msg) -> CostEstimate:
    s = msg.scheduling
    has = msg.HasField("scheduling")
    start = s.planned_start.ToDatetime(tzinfo=UTC) if has and s.HasField("planned_start") else None
    return CostEstimate(wall_s=msg.wall_s, energy_wh=msg.energy_wh, co2e_g=msg.co2e_g, site=s.site if has else "",
                        planned_start=start, expected_co2e_g=s.expected_co2e_g if has else 0.0,
                        run_now_co2e_g=s.run_now_co2e_g if has else 0.0, reason=s.reason if has else "",
                        basis=msg.basis)


@dataclass(frozen=True)
class EstimateResult:
    key: EstimateKey
    cost: CostEstimate | None = None
    error: str = ""             # why there is no estimate
    unsupported: bool = False   # the bridge has no EstimateJob (UNIMPLEMENTED): an older bridge
    made_at: float = 0.0        # time.time()


def is_stale(result: EstimateResult, current: EstimateKey | None, now: float | None = None) -> bool:
    """True when the inputs changed since ``result`` was made (``current`` None:
    they cannot be read, e.g. an empty frame range), or a batch estimate is old."""
    if current is None or result.key != current:
        return True
    now = time.time() if now is None else now
    return result.key.job_class == "batch" and now - result.made_at > BATCH_ESTIMATE_MAX_AGE_S


def format_duration(seconds: float) -> str:
    s = max(0.0, float(seconds))
    if s < 1:
        return "<1 s"
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        m, sec = divmod(round(s), 60)
        return f"{m} min {sec:02d} s"
    h, m = divmod(round(s / 60), 60)
    return f"{h} h {m:02d} min"


def format_energy(wh: float) -> str:
    wh = max(0.0, float(wh))
    if wh >= 1000:
        return f"{wh / 1000:.3g} kWh"
    if wh >= 1 or wh == 0:
        return f"{wh:.3g} Wh"
    return f"{wh * 1000:.3g} mWh"


def format_co2e(g: float) -> str:
    g = max(0.0, float(g))
    if g >= 1000:
        return f"{g / 1000:.3g} kgCO2e"
    if g >= 0.001 or g == 0:
        return f"{g:.3g} gCO2e"
    return f"{g * 1000:.3g} mgCO2e"


def _start_text(start: datetime, now: datetime) -> str:
    local = start.astimezone()
    wait_s = (start - now).total_seconds()
    if wait_s < 60:
        return "now"
    day = "" if local.date() == now.astimezone().date() else local.strftime("%a ")
    return f"{day}{local:%H:%M} (in {format_duration(wait_s)})"


@dataclass(frozen=True)
class CostLine:
    text: str
    icon: str = "NONE"
    alert: bool = False
    dim: bool = False


def cost_lines(result: EstimateResult | None, current: EstimateKey | None, now: float | None = None) -> list[CostLine]:
    """The cost section's lines: the estimate for this shot and settings
    (labelled as one), the scheduler's decision for a batch job, and a stale
    marker when the settings changed since it was made. Each line fits
    ``LINE_CHARS``."""
    now = time.time() if now is None else now
    if result is None:
        return [CostLine("No estimate yet: press Estimate", "INFO")]
    stale = is_stale(result, current, now)
    out: list[CostLine] = []
    if stale:
        out.append(CostLine("Stale: settings changed since", "ERROR", alert=True))
        out.append(CostLine("then: press Estimate again", "BLANK1", alert=True))
    if result.unsupported:
        out.append(CostLine(OLDER_BRIDGE, "INFO", dim=stale))
        return _wrapped(out)
    if result.cost is None:
        out.append(CostLine(f"No estimate: {result.error}", "ERROR", alert=True))
        return _wrapped(out)
    c = result.cost
    out.append(CostLine(f"Estimate: {format_duration(c.wall_s)} wall time", "TIME", dim=stale))
    if c.energy_wh > 0 or c.co2e_g > 0:
        out.append(CostLine(f"{format_energy(c.energy_wh)}, {format_co2e(c.co2e_g)}", "BLANK1", dim=stale))
    else:   # the bridge sends 0 when it has no energy history for the backend yet (the basis says so)
        out.append(CostLine("Wh and gCO2e: not known yet", "BLANK1", dim=stale))
    if result.key.job_class == "batch":
        when = _start_text(c.planned_start, datetime.fromtimestamp(now, UTC)) if c.planned_start else "?"
        out.append(CostLine(f"Batch at {c.site or '?'}, starts {when}", "SORTTIME", dim=stale))
        saving = c.run_now_co2e_g - c.expected_co2e_g
        if c.run_now_co2e_g > 0 and saving > 0:
            pct = 100.0 * saving / c.run_now_co2e_g
            out.append(CostLine(f"Saves {format_co2e(saving)} ({pct:.0f}%) vs now", "BLANK1", dim=stale))
        else:
            out.append(CostLine("No saving vs running now", "BLANK1", dim=stale))
    elif c.site:
        out.append(CostLine(f"Runs now at {c.site}", "BLANK1", dim=stale))
    if c.basis:
        out.append(CostLine(f"Basis: {c.basis}", "BLANK1", dim=True))
    return _wrapped(out)


def _wrapped(lines: list[CostLine]) -> list[CostLine]:
    out = []
    for line in lines:
        for i, part in enumerate(wrap([line.text])):
            out.append(replace(line, text=part, icon=line.icon if i == 0 else "BLANK1"))
    return out


def wrap(lines: list[str], width: int = LINE_CHARS) -> list[str]:
    """Blender labels do not wrap: split each line at ``width`` characters."""
    out: list[str] = []
    for line in lines:
        parts = textwrap.wrap(line, width - 2, subsequent_indent="  ", break_long_words=True) or [""]
        out += parts
    return out


# ------------------------------------------------------------------ fetching
class Fetcher:
    """Runs GetCapabilities and EstimateJob on daemon threads and keeps the
    answers: ``capabilities[address]`` and ``estimates[scene]``. ``changes``
    counts finished fetches (the panel's timer redraws when it moves)."""

    def __init__(self, make_client: Callable = client_settings.make_client, timeout_s: float = FETCH_TIMEOUT_S):
        self.make_client = make_client
        self.timeout_s = timeout_s
        self.capabilities: dict[str, Capabilities] = {}
        self.estimates: dict[str, EstimateResult] = {}
        self.changes = 0
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def capabilities_for(self, address: str) -> Capabilities | None:
        return self.capabilities.get(address)

    def estimate_for(self, scene: str) -> EstimateResult | None:
        return self.estimates.get(scene)

    def note_error(self, address: str, message: str) -> None:
        """Record why a bridge was not asked (e.g. online access is off), keeping its last backends."""
        self._store_caps(address, None, message)

    def refresh_capabilities(self, settings) -> threading.Thread:
        """Ask the bridge ``settings`` (a ``BridgeSettings``) for its backends, on a thread."""
        return self._start(f"greenlight-capabilities {settings.address}", self._fetch_capabilities, settings)

    def request_estimate(self, settings, scene: str, req: EstimateRequest) -> threading.Thread:
        """Ask the bridge for the cost of ``req``, on a thread; the answer goes to ``estimates[scene]``."""
        return self._start(f"greenlight-estimate {scene}", self._fetch_estimate, settings, scene, req)

    def busy(self) -> bool:
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            return bool(self._threads)

    def wait(self, timeout_s: float) -> bool:
        """Block until every fetch started so far ended (False on timeout)."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in threads)

    def clear(self) -> None:
        self.capabilities.clear()
        self.estimates.clear()

    # ------------------------------------------------------------ threads
    def _start(self, name: str, target, *args) -> threading.Thread:
        thread = threading.Thread(target=self._run, args=(target, *args), name=name, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()
        return thread

    def _run(self, target, *args) -> None:
        try:
            target(*args)
        finally:
            with self._lock:
                self.changes += 1

    def _client(self, settings):
        return self.make_client(replace(settings, timeout_s=min(settings.timeout_s, self.timeout_s)))

    def _fetch_capabilities(self, settings) -> None:
        try:
            with self._client(settings) as client:
                msg = client.capabilities()
        except errors.GreenlightError as exc:
            self._store_caps(settings.address, None, _first_line(exc))
            return
        except OSError as exc:   # e.g. the TLS root certificate file cannot be read
            self._store_caps(settings.address, None, f"cannot connect: {exc.strerror or exc}")
            return
        except Exception:
            log.exception("GetCapabilities from %s", settings.address)
            self._store_caps(settings.address, None, "unexpected error (see the system console)")
            return
        self._store_caps(settings.address, capabilities_from_pb(settings.address, msg), "")

    def _store_caps(self, address: str, caps: Capabilities | None, error: str) -> None:
        with self._lock:
            if caps is None:
                old = self.capabilities.get(address)
                caps = Capabilities(address, old.backends if old else (), old.server_version if old else "",
                                    error=error, fetched_at=old.fetched_at if old else 0.0)
            self.capabilities[address] = caps

    def _fetch_estimate(self, settings, scene: str, req: EstimateRequest) -> None:
        k = req.key
        result: EstimateResult
        try:
            with self._client(settings) as client:
                msg = client.estimate(k.project, k.frame_count, k.width, k.height, req.generation, req.scheduling)
            result = EstimateResult(k, cost_from_pb(msg), made_at=time.time())
        except errors.GreenlightError as exc:
            if exc.code == "UNIMPLEMENTED":
                result = EstimateResult(k, unsupported=True, made_at=time.time())
            else:
                result = EstimateResult(k, error=_first_line(exc), made_at=time.time())
        except OSError as exc:
            result = EstimateResult(k, error=f"cannot connect: {exc.strerror or exc}", made_at=time.time())
        except Exception:
            log.exception("EstimateJob at %s", settings.address)
            result = EstimateResult(k, error="unexpected error (see the system console)", made_at=time.time())
        with self._lock:
            self.estimates[scene] = result


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


FETCHER = Fetcher()
