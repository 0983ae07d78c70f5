"""Who pays for which joule: the attribution rule, as pure functions.

The rule (docs/energy.md, "Attribution"):

1. A job is charged the energy measured over its own window on its device.
2. Frames share the job's energy in proportion to the work the backend
   reported for each (``JobContext.frame(index, rgb, work=...)``); the
   shares sum to the job total exactly (``math.fsum``). When no frame
   reported any work, frames share equally, and the report says so.
3. A shared device's idle time between jobs is charged to no job.
4. Jobs running at once on one device split each interval's energy by the
   work each did in that interval; a job present but idle in an interval
   where another worked gets nothing for it; when every present job was
   idle, they split it equally (they held the device).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

RULE = ("job energy split over frames in proportion to the work the backend reported for each frame "
        "(shares sum to the job total); idle time of a shared device between jobs is charged to no job; "
        "jobs sharing a device split each interval's energy by the work each did in it")
RULE_EQUAL = "no frame reported any work: job energy split equally over frames (shares sum to the job total)"


def _check(value: float, what: str) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a finite number >= 0, got {value!r}")
    return value


def _exact_sum(shares: list[float], total: float) -> list[float]:
    """Nudge the largest share until the shares sum to ``total`` exactly."""
    if not shares:
        return shares
    big = max(range(len(shares)), key=shares.__getitem__)
    shares[big] += total - math.fsum(shares)        # coarse: lands within an ulp or two
    # fine: one ulp at a time, largest share first; a smaller share has a
    # finer ulp and breaks a round-half-even tie the largest one cannot
    for i in sorted(range(len(shares)), key=shares.__getitem__, reverse=True)[:4]:
        for _ in range(16):
            residual = total - math.fsum(shares)
            if residual == 0:
                return shares
            stepped = math.nextafter(shares[i], math.inf if residual > 0 else -math.inf)
            if stepped < 0:
                break
            shares[i] = stepped
    return shares


def attribute(total_wh: float, works: Sequence[float]) -> list[float]:
    """Split ``total_wh`` over items in proportion to ``works``.

    Returns one share per item; ``math.fsum(shares) == total_wh``. All works
    zero means equal shares (see :data:`RULE_EQUAL`). No items returns ``[]``
    (the caller keeps the energy at job level: nothing to attribute it to).
    """
    total = _check(total_wh, "total_wh")
    ws = [_check(w, f"works[{i}]") for i, w in enumerate(works)]
    if not ws:
        return []
    wsum = math.fsum(ws)
    if wsum == 0:
        shares = [total / len(ws)] * len(ws)
    else:
        shares = [total * w / wsum for w in ws]
    return _exact_sum(shares, total)


def rule_for(works: Sequence[float]) -> str:
    """The sentence to put in a report for this attribution."""
    return RULE if any(float(w) > 0 for w in works) else RULE_EQUAL


def split_device_energy(intervals: Sequence[tuple[float, Mapping[str, float]]]) -> tuple[dict[str, float], float]:
    """Share one device's energy between the jobs that used it.

    ``intervals``: (energy_wh of the device in the interval, {job_id: work
    done in it}) for consecutive intervals; a job listed with work 0 was
    running but idle. Returns ({job_id: Wh}, Wh charged to no job).
    The per-job Wh plus the unattributed Wh sum to the device total.
    """
    per_job: dict[str, list[float]] = {}
    idle: list[float] = []
    for n, (energy_wh, works) in enumerate(intervals):
        energy = _check(energy_wh, f"intervals[{n}] energy_wh")
        if not works:
            idle.append(energy)
            continue
        jobs = list(works)
        for job, share in zip(jobs, attribute(energy, [works[j] for j in jobs])):
            per_job.setdefault(job, []).append(share)
    return {job: math.fsum(parts) for job, parts in per_job.items()}, math.fsum(idle)
