"""What every meter returns and raises, and the one method a meter has.

Kept apart from ``meters`` so that the device meters (``nvml``, ``rapl``)
and ``meters.best_meter``, which builds them, import in one direction only.
``bridge.energy.meters`` re-exports all three names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class MeterError(RuntimeError):
    """A meter cannot be opened or read (no device, no permission, no library)."""


@dataclass(frozen=True)
class Reading:
    """A cumulative reading. ``joules`` never decreases for one meter."""

    joules: float
    measured: bool
    meter: str
    t: float = 0.0                               # time.monotonic() of the read, s; 0 = unknown
    watts: float | None = None                   # instantaneous power at the read, if known
    parts: tuple[tuple[str, float], ...] = ()    # cumulative joules per device / domain
    flags: tuple[str, ...] = ()                  # e.g. "counter-reset", "power-integrated"


class Meter(Protocol):
    """What the executor needs. Meters may also define ``min_window_s``: windows
    shorter than it are computed as power x time (see
    :func:`bridge.energy.meters.window_energy`)."""

    def read(self) -> Reading: ...
