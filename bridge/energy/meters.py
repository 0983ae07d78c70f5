"""Energy meters behind one interface: a cumulative reading in joules.

Windows are differences of readings, so windows nest freely (a job window
holds per-frame windows). Every reading says whether it was measured or
estimated and by which meter (DESIGN section 6). NVML and RAPL meters come
with the energy accounting work; this module ships the estimate that works
everywhere.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

# Cloud Carbon Footprint's average "max watts per vCPU" for AWS compute
# (methodology, 2021 coefficients): the draw of one fully busy hardware
# thread. Idle power is not charged: a job is charged for what it caused.
DEFAULT_WATTS_PER_BUSY_CPU = 3.5


@dataclass(frozen=True)
class Reading:
    joules: float
    measured: bool
    meter: str


class Meter(Protocol):
    def read(self) -> Reading: ...


class CpuTimeEstimateMeter:
    """Estimate: CPU-seconds used by this process x watts per busy CPU.

    ``process_time`` counts every thread of the bridge, so with two jobs on
    the CPU at once each window also sees the other's work; the executor runs
    one job per device, which keeps the attribution honest here.
    """

    def __init__(self, watts_per_busy_cpu: float = DEFAULT_WATTS_PER_BUSY_CPU):
        if watts_per_busy_cpu <= 0:
            raise ValueError(f"watts_per_busy_cpu must be > 0, got {watts_per_busy_cpu}")
        self.watts = watts_per_busy_cpu
        self.name = f"cpu-time-model ({watts_per_busy_cpu:g} W per busy CPU)"

    def read(self) -> Reading:
        return Reading(time.process_time() * self.watts, measured=False, meter=self.name)


def joules_to_wh(joules: float) -> float:
    return joules / 3600.0
