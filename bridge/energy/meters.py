"""Energy meters behind one interface: a cumulative reading in joules.

A meter's ``read()`` returns a :class:`Reading` whose ``joules`` only grows.
Windows are differences of readings, so windows nest freely (a job window
holds per-frame windows, which hold per-step windows) and a window costs two
reads and a subtraction. Every reading says whether it was measured or
estimated and by which meter (DESIGN section 6): an estimate is never
reported as a measurement, and a mix of both counts as estimated.

Meters, best first (``best_meter()`` picks and says why):

- ``NvmlMeter`` (``bridge.energy.nvml``): per-GPU total-energy counters.
- ``RaplMeter`` (``bridge.energy.rapl``): CPU packages + DRAM via powercap.
- ``EstimateMeter``: a device power model (TDP / idle from ``devices.json``
  or config) x utilisation x time; ``CpuTimeEstimateMeter`` is its CPU form.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

# Reading, MeterError and Meter live in .reading, which nvml and rapl import
# instead of this module (best_meter imports them): no circle. Importable
# from here as before.
from .reading import Meter, MeterError, Reading

log = logging.getLogger(__name__)

# Cloud Carbon Footprint's average "max watts per vCPU" for AWS compute
# (methodology, 2021 coefficients): the draw of one fully busy hardware
# thread. Idle threads are not charged: a job is charged for what it caused.
DEFAULT_WATTS_PER_BUSY_CPU = 3.5

DEVICES_FILE = Path(__file__).with_name("devices.json")


def joules_to_wh(joules: float) -> float:
    return joules / 3600.0


# ------------------------------------------------------------------ windows
@dataclass(frozen=True)
class WindowEnergy:
    """The energy of one window between two readings."""

    joules: float
    seconds: float
    measured: bool
    meter: str
    method: str                  # how the figure was obtained, in words
    flags: tuple[str, ...] = ()

    @property
    def wh(self) -> float:
        return self.joules / 3600.0

    @property
    def energy_method(self) -> str:
        return "measured" if self.measured else "estimated"


def window_energy(start: Reading, end: Reading, min_window_s: float = 0.0) -> WindowEnergy:
    """Energy between two readings of one meter.

    Windows shorter than ``min_window_s`` (NVML's counter updates about every
    100 ms) are computed as mean power x time when both readings carry power,
    and flagged ``short-window``: a counter delta there would read 0 or a
    whole update period.
    """
    seconds = max(0.0, end.t - start.t) if start.t and end.t else 0.0
    flags = set(start.flags) | set(end.flags)
    measured = start.measured and end.measured
    if (min_window_s > 0 and 0 < seconds < min_window_s
            and start.watts is not None and end.watts is not None):
        joules = 0.5 * (start.watts + end.watts) * seconds
        method = (f"power x time: window {seconds * 1000:.1f} ms is shorter than the "
                  f"{min_window_s * 1000:.0f} ms counter update")
        flags.add("short-window")
    else:
        joules = end.joules - start.joules
        method = "counter delta" if measured else "power model"
    if joules < 0:
        raise MeterError(f"meter {end.meter}: reading went backwards by {-joules:.6g} J")
    return WindowEnergy(joules, seconds, measured, end.meter, method, tuple(sorted(flags)))


class Window:
    """A metering window; nest them freely.

    ``with Window(meter) as w: ...`` then ``w.result``; or ``lap()`` to close
    the current window and open the next at the same reading, so consecutive
    frame windows tile the job window with no gap and one read per frame.
    """

    def __init__(self, meter: Meter):
        self.meter = meter
        self.min_window_s = float(getattr(meter, "min_window_s", 0.0))
        self.start: Reading | None = None
        self.result: WindowEnergy | None = None

    def open(self, start: Reading | None = None) -> Window:
        """Start at a new reading, or at ``start`` (a reading already taken
        from this meter: the job window and the first frame window share it)."""
        self.start = start if start is not None else self.meter.read()
        self.result = None
        return self

    def lap(self) -> WindowEnergy:
        if self.start is None:
            raise MeterError("window was never opened")
        end = self.meter.read()
        self.result = window_energy(self.start, end, self.min_window_s)
        self.start = end
        return self.result

    def close(self) -> WindowEnergy:
        return self.lap()

    def __enter__(self) -> Window:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


# -------------------------------------------------------- device power table
@dataclass(frozen=True)
class DevicePower:
    """Power model of one device: P(u) = idle_w + (tdp_w - idle_w) x u."""

    model: str
    kind: str                  # "cpu" or "gpu"
    tdp_w: float
    idle_w: float
    source: str

    def __post_init__(self):
        if self.kind not in ("cpu", "gpu"):
            raise ValueError(f"device {self.model!r}: kind must be 'cpu' or 'gpu', got {self.kind!r}")
        if not self.tdp_w > 0:
            raise ValueError(f"device {self.model!r}: tdp_w must be > 0, got {self.tdp_w}")
        if not 0 <= self.idle_w <= self.tdp_w:
            raise ValueError(f"device {self.model!r}: idle_w must be in [0, tdp_w={self.tdp_w}], got {self.idle_w}")


def load_device_table(path: str | Path | None = None) -> dict:
    """The shipped power table (``devices.json``), or another file of that shape."""
    path = Path(path) if path else DEVICES_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise MeterError(f"device power table {path}: {exc}") from exc
    for entry in data.get("gpus", []):
        DevicePower(entry["model"], "gpu", entry["tdp_w"], entry["tdp_w"] * data["gpu_idle_fraction"], "")
    return data


def gpu_power(name: str, table: dict | None = None) -> DevicePower:
    """Look a GPU up by the name NVML or torch reports ("NVIDIA H100 80GB HBM3")."""
    table = table or load_device_table()
    words = set(re.split(r"[^a-z0-9]+", name.lower()))
    best = None
    for entry in table["gpus"]:
        if all(token.lower() in words for token in entry["match"]):
            if best is None or len(entry["match"]) > len(best["match"]):
                best = entry
    if best is None:
        known = sorted(e["model"] for e in table["gpus"])
        raise MeterError(f"no power figures for GPU {name!r}; add it to the device table or config "
                         f"(known: {', '.join(known)})")
    idle_fraction = best.get("idle_fraction", table["gpu_idle_fraction"])
    return DevicePower(best["model"], "gpu", float(best["tdp_w"]), float(best["tdp_w"]) * idle_fraction,
                       f"TDP: {best['source']}; idle: {table['gpu_idle_source']}")


def cpu_power(threads: int | None = None, table: dict | None = None,
              watts_per_busy_thread: float | None = None) -> DevicePower:
    """The CPU as ``threads`` x a per-thread model (Cloud Carbon Footprint)."""
    table = table or load_device_table()
    cpu = table["cpu_per_thread"]
    threads = threads or os.cpu_count() or 1
    max_w = float(watts_per_busy_thread if watts_per_busy_thread is not None else cpu["max_w"])
    min_w = min(float(cpu["min_w"]), max_w)
    source = cpu["source"] if watts_per_busy_thread is None else "config: watts_per_busy_cpu"
    return DevicePower(f"cpu x{threads} threads", "cpu", max_w * threads, min_w * threads, source)


# --------------------------------------------------------------- estimates
class EstimateMeter:
    """Estimate from a device power model; always ``measured=False``.

    Energy = tdp_w x busy device-seconds, plus idle_w x the non-busy seconds
    when the device is ``reserved`` for the bridge (a GPU the job holds).
    On a shared device (a workstation CPU) idle time is not charged: the
    bridge pays full power only for the share it keeps busy, which is the
    linear model P(u) = idle + (tdp - idle) u split in proportion to use.

    ``busy_seconds`` is a cumulative count of device-seconds at full
    utilisation (for the CPU: process CPU-seconds / hardware threads).
    """

    min_window_s = 0.0

    def __init__(self, device: DevicePower, busy_seconds: Callable[[], float], utilisation: str,
                 reserved: bool = False, clock: Callable[[], float] = time.monotonic):
        self.device = device
        self.busy_seconds = busy_seconds
        self.reserved = reserved
        self.clock = clock
        self._t0 = clock()
        self._busy0 = busy_seconds()
        self.name = (f"estimate: {device.model}, TDP {device.tdp_w:g} W, idle {device.idle_w:g} W "
                     f"x {utilisation} x time ({device.source})")

    def read(self) -> Reading:
        now = self.clock()
        busy = max(0.0, self.busy_seconds() - self._busy0)
        joules = self.device.tdp_w * busy
        if self.reserved:
            joules += self.device.idle_w * max(0.0, (now - self._t0) - busy)
        return Reading(joules, measured=False, meter=self.name, t=now)


class CpuTimeEstimateMeter:
    """Estimate: CPU-seconds used by this process x watts per busy CPU.

    ``process_time`` counts every thread of the bridge, so with two jobs on
    the CPU at once each window also sees the other's work; the executor runs
    one job per device, and the attribution rule (docs/energy.md) splits
    concurrent jobs by their work.
    """

    min_window_s = 0.0

    def __init__(self, watts_per_busy_cpu: float = DEFAULT_WATTS_PER_BUSY_CPU):
        if watts_per_busy_cpu <= 0:
            raise ValueError(f"watts_per_busy_cpu must be > 0, got {watts_per_busy_cpu}")
        self.watts = watts_per_busy_cpu
        self.name = (f"cpu-time-model ({watts_per_busy_cpu:g} W per busy CPU x process CPU-seconds; "
                     "Cloud Carbon Footprint AWS max W/vCPU, 2021)")

    def read(self) -> Reading:
        return Reading(time.process_time() * self.watts, measured=False, meter=self.name, t=time.monotonic())


class CompositeMeter:
    """The sum of several meters (GPUs + CPU packages). Measured only when
    every part is measured; the name lists each part and how it was known."""

    def __init__(self, meters: Sequence[Meter]):
        if not meters:
            raise ValueError("CompositeMeter needs at least one meter")
        self.meters = list(meters)
        self.min_window_s = max(float(getattr(m, "min_window_s", 0.0)) for m in self.meters)
        self.name = " + ".join(str(getattr(m, "name", type(m).__name__)) for m in self.meters)

    def read(self) -> Reading:
        readings = [m.read() for m in self.meters]
        measured = all(r.measured for r in readings)
        if measured:
            name = " + ".join(r.meter for r in readings)
        else:
            name = " + ".join(f"{r.meter} ({'measured' if r.measured else 'estimated'})" for r in readings)
        known = [r.watts for r in readings if r.watts is not None]
        watts = sum(known) if len(known) == len(readings) else None
        parts = tuple(p for r in readings for p in (r.parts or ((r.meter, r.joules),)))
        flags = tuple(sorted({f for r in readings for f in r.flags}))
        return Reading(sum(r.joules for r in readings), measured, name, t=readings[-1].t,
                       watts=watts, parts=parts, flags=flags)


# ---------------------------------------------------------------- chooser
@dataclass(frozen=True)
class MeterChoice:
    meter: Meter
    reason: str
    tried: tuple[tuple[str, str], ...] = field(default=())   # (candidate, outcome)


def job_gpu_indices(environ: Mapping[str, str] | None = None) -> tuple[list[int] | None, str]:
    """The NVML indices of the GPUs this bridge's jobs run on, and how that
    was decided. The backends run on ``$GREENLIGHT_DEVICE`` (default
    ``cuda:0``); CUDA numbers the devices listed in ``$CUDA_VISIBLE_DEVICES``
    from 0, NVML numbers all of them, so ``cuda:N`` is the N-th listed one.
    None means every GPU (only when the mapping cannot be known: UUIDs in
    CUDA_VISIBLE_DEVICES)."""
    env = os.environ if environ is None else environ
    device = env.get("GREENLIGHT_DEVICE", "") or "cuda:0"
    if not device.startswith("cuda"):
        return [], f"jobs run on {device!r}: no GPU of theirs to meter"
    _, _, n = device.partition(":")
    cuda_index = int(n) if n.isdigit() else 0
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is None or visible.strip() == "":
        return [cuda_index], f"jobs run on cuda:{cuda_index} (GPU {cuda_index})"
    listed = [v.strip() for v in visible.split(",") if v.strip()]
    if cuda_index >= len(listed):
        return [], f"cuda:{cuda_index} is not among CUDA_VISIBLE_DEVICES={visible!r}"
    if not listed[cuda_index].isdigit():
        return None, f"CUDA_VISIBLE_DEVICES={visible!r} names GPUs by UUID: metering every GPU"
    physical = int(listed[cuda_index])
    return [physical], f"jobs run on cuda:{cuda_index} = GPU {physical} (CUDA_VISIBLE_DEVICES={visible!r})"


def meter_for(kind: str = "auto", *, gpu_indices: Sequence[int] | None = (), nvml=None,
              powercap_root: str | Path = "/sys/class/powercap",
              watts_per_busy_cpu: float | None = None) -> MeterChoice:
    """The bridge's meter for the ``meter`` setting: "auto" (``best_meter``),
    or "nvml", "rapl", "estimate" (that one, or a clear error). An empty
    ``gpu_indices`` means the job's own GPUs (``job_gpu_indices``)."""
    from .nvml import NvmlMeter
    from .rapl import RaplMeter

    note = ""
    if gpu_indices is not None and not list(gpu_indices):
        gpu_indices, note = job_gpu_indices()
    indices = None if gpu_indices is None else list(gpu_indices)
    if kind == "auto":
        choice = best_meter(powercap_root=powercap_root, nvml=nvml, gpu_indices=indices,
                            use_nvml=indices != [], watts_per_busy_cpu=watts_per_busy_cpu)
        return replace(choice, reason=f"{choice.reason}; {note}" if note else choice.reason)
    if kind == "estimate":
        meter = CpuTimeEstimateMeter(watts_per_busy_cpu) if watts_per_busy_cpu else CpuTimeEstimateMeter()
        return MeterChoice(meter, f"estimated: {meter.name} (meter = \"estimate\" in the configuration)")
    if kind == "nvml":
        if indices == []:
            raise MeterError(f"meter = \"nvml\": {note}")
        gpu = NvmlMeter(nvml=nvml, indices=indices)
        return MeterChoice(gpu, f"measured: NVML energy counters ({gpu.describe()}); {note}".rstrip("; "))
    if kind == "rapl":
        cpu = RaplMeter(powercap_root)
        return MeterChoice(cpu, f"measured: RAPL ({cpu.describe()})")
    raise MeterError(f"meter must be auto, nvml, rapl or estimate, got {kind!r}")


def best_meter(*, powercap_root: str | Path = "/sys/class/powercap", nvml=None,
               use_nvml: bool = True, use_rapl: bool = True, gpu_indices: list[int] | None = None,
               watts_per_busy_cpu: float | None = None) -> MeterChoice:
    """NVML (+ RAPL for the CPU when readable) > RAPL > CPU estimate.

    ``nvml`` is an NVML function table (the ``pynvml`` module by default,
    imported lazily); tests pass a fake. ``gpu_indices``: the NVML devices
    to meter (None: all). The reason says what was picked, what it covers,
    and why each better candidate was not used.
    """
    from .nvml import NvmlMeter
    from .rapl import RaplMeter

    tried: list[tuple[str, str]] = []
    gpu = cpu = None
    if use_nvml:
        try:
            gpu = NvmlMeter(nvml=nvml, indices=gpu_indices)
            tried.append(("nvml", f"ok: {gpu.describe()}"))
        except MeterError as exc:
            tried.append(("nvml", f"unavailable: {exc}"))
    else:
        tried.append(("nvml", "disabled by configuration"))
    if use_rapl:
        try:
            cpu = RaplMeter(powercap_root)
            tried.append(("rapl", f"ok: {cpu.describe()}"))
        except MeterError as exc:
            tried.append(("rapl", f"unavailable: {exc}"))
    else:
        tried.append(("rapl", "disabled by configuration"))

    if gpu is not None and cpu is not None:
        meter: Meter = CompositeMeter([gpu, cpu])
        reason = "measured: NVML energy counters for the GPUs + RAPL for CPU packages and DRAM"
    elif gpu is not None:
        meter = gpu
        reason = ("measured: NVML energy counters for the GPUs; CPU energy is not included "
                  f"(RAPL {dict(tried)['rapl']})")
    elif cpu is not None:
        meter = cpu
        reason = f"measured: RAPL for CPU packages and DRAM (NVML {dict(tried)['nvml']})"
    else:
        meter = (CpuTimeEstimateMeter(watts_per_busy_cpu) if watts_per_busy_cpu
                 else CpuTimeEstimateMeter())
        reason = (f"estimated: {meter.name}; nothing on this machine can be measured "
                  f"(NVML {dict(tried)['nvml']}; RAPL {dict(tried)['rapl']})")
    log.info("energy meter: %s", reason)
    return MeterChoice(meter, reason, tuple(tried))

