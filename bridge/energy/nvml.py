"""NVIDIA GPUs through NVML (the ``nvidia-ml-py`` package, imported lazily).

Per GPU, best first:

1. ``nvmlDeviceGetTotalEnergyConsumption``: millijoules since the driver
   loaded (Volta and newer). The meter sums counter deltas. The counter
   refreshes about every 100 ms, so :func:`~bridge.energy.meters.window_energy`
   computes windows shorter than ``min_window_s`` as power x time, flagged.
2. Where the counter is not supported: ``nvmlDeviceGetPowerUsage``
   (milliwatts) sampled every ``sample_interval_s`` by a background thread
   and at every read, integrated with the trapezoid rule; flagged
   ``power-integrated`` (still measured: the samples are the board's sensor).

A counter that goes backwards (driver reload) restarts from its new value
and is flagged ``counter-reset``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .reading import MeterError, Reading

log = logging.getLogger(__name__)

COUNTER_UPDATE_S = 0.1     # NVML's energy counter refresh period (about 100 ms)
PIP_HINT = "pip install 'nvidia-ml-py>=12.535'"


def load_nvml():
    """The real NVML binding, imported only when a meter is built."""
    try:
        import pynvml  # provided by the nvidia-ml-py distribution
    except ImportError as exc:
        raise MeterError(f"nvidia-ml-py is not installed ({PIP_HINT})") from exc
    return pynvml


@dataclass
class _Gpu:
    index: int
    name: str
    handle: object
    mode: str                  # "counter" or "power"
    last_mj: int = 0
    total_j: float = 0.0
    last_t: float = 0.0
    last_w: float = 0.0


class NvmlMeter:
    """Measured GPU energy since the meter was created, summed over GPUs."""

    def __init__(self, nvml=None, indices: list[int] | None = None, sample_interval_s: float = 0.05,
                 clock: Callable[[], float] = time.monotonic):
        self.nvml = nvml if nvml is not None else load_nvml()
        self.clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        n = self.nvml
        try:
            n.nvmlInit()
            count = n.nvmlDeviceGetCount()
        except Exception as exc:  # NVMLError_DriverNotLoaded, LibraryNotFound, ...
            raise MeterError(f"NVML did not start: {exc}") from exc
        if count == 0:
            raise MeterError("NVML sees no GPU")
        missing = [i for i in (indices or ()) if not 0 <= i < count]
        if missing:
            raise MeterError(f"GPU {missing[0]} is not there: NVML sees {count} GPU(s), indices 0..{count - 1}")
        self.gpus: list[_Gpu] = []
        self.notes: list[str] = []
        now = clock()
        for i in (indices if indices is not None else range(count)):
            handle = n.nvmlDeviceGetHandleByIndex(i)
            name = n.nvmlDeviceGetName(handle)
            name = name.decode() if isinstance(name, bytes) else str(name)
            try:
                gpu = _Gpu(i, name, handle, "counter", last_mj=int(n.nvmlDeviceGetTotalEnergyConsumption(handle)))
            except n.NVMLError as exc:
                if not self._not_supported(exc):
                    raise MeterError(f"GPU {i} ({name}): energy counter: {exc}") from exc
                try:
                    watts = n.nvmlDeviceGetPowerUsage(handle) / 1000.0
                except n.NVMLError as exc2:
                    self.notes.append(f"GPU {i} ({name}): no energy counter and no power reading ({exc2}); not metered")
                    continue
                gpu = _Gpu(i, name, handle, "power", last_t=now, last_w=watts)
                self.notes.append(f"GPU {i} ({name}): no energy counter; integrating power samples")
            self.gpus.append(gpu)
        if not self.gpus:
            raise MeterError("; ".join(self.notes) or "no GPU could be metered")
        self.min_window_s = COUNTER_UPDATE_S if any(g.mode == "counter" for g in self.gpus) else 0.0
        self.name = "nvml:" + "+".join(
            f"{g.index}" + (" (power integrated)" if g.mode == "power" else "") for g in self.gpus)
        if sample_interval_s > 0 and any(g.mode == "power" for g in self.gpus):
            self._thread = threading.Thread(target=self._sampler, args=(sample_interval_s,),
                                            name="greenlight-nvml-sampler", daemon=True)
            self._thread.start()

    def _not_supported(self, exc) -> bool:
        return getattr(exc, "value", None) == getattr(self.nvml, "NVML_ERROR_NOT_SUPPORTED", 3)

    def describe(self) -> str:
        gpus = ", ".join(f"GPU {g.index} {g.name} ({g.mode})" for g in self.gpus)
        return gpus + (f"; {'; '.join(self.notes)}" if self.notes else "")

    # -------------------------------------------------------------- sampling
    def _sample_power(self, gpu: _Gpu, now: float) -> float:
        watts = self.nvml.nvmlDeviceGetPowerUsage(gpu.handle) / 1000.0
        gpu.total_j += 0.5 * (gpu.last_w + watts) * max(0.0, now - gpu.last_t)
        gpu.last_t, gpu.last_w = now, watts
        return watts

    def sample(self) -> None:
        """Integrate one power sample for GPUs without a counter (the sampler
        thread calls this; tests call it with a fake clock)."""
        with self._lock:
            now = self.clock()
            for g in self.gpus:
                if g.mode == "power":
                    self._sample_power(g, now)

    def _sampler(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.sample()
            except Exception:  # a sensor hiccup must not kill the thread
                log.exception("NVML power sample failed")

    def read(self) -> Reading:
        n = self.nvml
        flags = set()
        watts_total: float | None = 0.0
        with self._lock:
            now = self.clock()
            for g in self.gpus:
                if g.mode == "counter":
                    mj = int(n.nvmlDeviceGetTotalEnergyConsumption(g.handle))
                    if mj >= g.last_mj:
                        g.total_j += (mj - g.last_mj) / 1000.0
                    else:  # driver reloaded: the counter restarted from zero
                        g.total_j += mj / 1000.0
                        flags.add("counter-reset")
                    g.last_mj = mj
                    if watts_total is not None:
                        try:
                            watts_total += n.nvmlDeviceGetPowerUsage(g.handle) / 1000.0
                        except n.NVMLError:
                            watts_total = None
                else:
                    w = self._sample_power(g, now)
                    flags.add("power-integrated")
                    if watts_total is not None:
                        watts_total += w
            parts = tuple((f"nvml:{g.index}", g.total_j) for g in self.gpus)
        return Reading(sum(j for _, j in parts), measured=True, meter=self.name, t=now,
                       watts=watts_total, parts=parts, flags=tuple(sorted(flags)))

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)
        try:
            self.nvml.nvmlShutdown()
        except Exception:
            pass
