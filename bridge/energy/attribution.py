"""Who pays for which joule: the attribution rule, as pure functions.

The rule (docs/energy.md, "Attribution"):

1. A job is charged the energy measured over its own window on its device.
2. Each frame is charged when it is produced (``RunningAttribution``): the
   energy measured since the attempt began and not yet charged is shared
   between this frame and the frames still to come, in proportion to the
   work the backend reports (``JobContext.frame(index, rgb, work=...)``).
   The figure is stored with the frame and never recomputed. Energy left
   when the attempt ends stays with the attempt ("unattributed"); the job
   total is the exact sum (``math.fsum``) of frames and attempts.
3. A shared device's idle time between jobs is charged to no job.
4. Jobs running at once on one device split each interval's energy by the
   work each did in that interval; a job present but idle in an interval
   where another worked gets nothing for it; when every present job was
   idle, they split it equally (they held the device).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

RULE = ("each frame is charged when it is produced: the energy measured since the attempt began and not yet "
        "charged, shared with the frames still to come by the work the backend reported; energy after an "
        "attempt's last frame (or of an attempt with no frame) stays with the attempt; the job total is the sum "
        "of both; idle time of a shared device between jobs is charged to no job")
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


class RunningAttribution:
    """Charge each frame its energy *when it is produced*, so the figure can
    be stored with the frame and never recomputed (DESIGN section 6).

    The meter's energy since the attempt started accumulates in a pending
    pool (``add``). A frame produced now takes the share of the pool that
    its work would get if every frame still to come did the mean work seen
    so far: ``pool * w / (w + (left - 1) * mean_w)``. Energy spent before
    the first frame (loading, a shared denoising loop) is thereby spread
    over all frames still to come instead of landing on whichever frame
    happens to be decoded first; the last frame takes what is left, so the
    charged frames plus what stays pending always sum to the measured total.
    What is still pending when the attempt ends (after its last frame, or
    all of it when it made none) is the attempt's unattributed energy.
    """

    def __init__(self, frames_left: int):
        self.frames_left = max(0, int(frames_left))
        self.pending_wh = 0.0
        self._works: list[float] = []

    def add(self, energy_wh: float) -> None:
        self.pending_wh += _check(energy_wh, "energy_wh")

    def charge(self, work: float = 1.0) -> float:
        """The share of a frame just produced, taken out of the pool."""
        work = _check(work, "work")
        self._works.append(work)
        if self.frames_left <= 1:
            share = self.pending_wh
        else:
            mean = math.fsum(self._works) / len(self._works)
            weight = work + (self.frames_left - 1) * mean
            share = self.pending_wh / self.frames_left if weight == 0 else self.pending_wh * work / weight
        share = min(max(share, 0.0), self.pending_wh)
        self.pending_wh -= share
        self.frames_left = max(0, self.frames_left - 1)
        return share
