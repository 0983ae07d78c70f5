"""The job state machine (DESIGN section 3, STYLE practice 8).

    queued -> scheduled -> running -> completed | failed | cancelled
    queued | scheduled -> cancelled | failed
    running -> queued              only on recovery after a bridge restart
    scheduled -> queued            re-plan

An illegal transition is a bug: ``check_transition`` raises.
"""

from __future__ import annotations

import enum


class JobState(str, enum.Enum):
    QUEUED = "queued"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})
ACTIVE = frozenset({JobState.QUEUED, JobState.SCHEDULED, JobState.RUNNING})

_ALLOWED = {
    JobState.QUEUED: {JobState.SCHEDULED, JobState.CANCELLED, JobState.FAILED},
    JobState.SCHEDULED: {JobState.RUNNING, JobState.QUEUED, JobState.CANCELLED, JobState.FAILED},
    JobState.RUNNING: {JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.QUEUED},
}


class IllegalTransition(RuntimeError):
    pass


def check_transition(old: JobState, new: JobState) -> None:
    if new not in _ALLOWED.get(old, set()):
        raise IllegalTransition(f"job state cannot go from {old.value} to {new.value}")
