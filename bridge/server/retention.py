"""Retention: ended jobs older than their project's ``retention_days`` are
deleted (frames, uploaded shot, report, store rows); the energy ledger keeps
their rows, so a project's totals survive a purge.

``retention_days`` maps a project to days; ``"*"`` is the default for every
other project; a project with neither is kept until deleted. A job's age is
counted from when it ended (its last change in the store).

Two callers: the bridge, through ``RetentionSweeper`` (a thread that sweeps
every ``every_s``), and ``greenlight purge`` on a stopped bridge's folder.

Crypto-shredding (docs/governance.md): when a purge leaves a project with no
jobs at all, the project is removed from the bridge, and so are its
encryption keys (the store's keyring): every copy of its files, backups
included, becomes unreadable. Its next job gets a fresh key.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..errors import InvalidArgumentError
from ..jobs.store import JobRecord, JobStore
from .auth import Principal

log = logging.getLogger(__name__)
DAY_S = 86400.0


def check_retention(retention_days: Mapping[str, float]) -> dict[str, float]:
    """Days finite and >= 0 (0: deleted at the next sweep once ended), by project."""
    out = {}
    for project, days in retention_days.items():
        if isinstance(days, bool) or not isinstance(days, (int, float)) or not math.isfinite(days) or days < 0:
            raise InvalidArgumentError(f"retention_days[{project!r}]: must be a number of days >= 0, got {days!r}",
                                       field=f"retention_days.{project}")
        out[str(project)] = float(days)
    return out


def retention_for(retention_days: Mapping[str, float], project: str) -> float | None:
    """Days a project's ended jobs are kept; None = until deleted."""
    return retention_days.get(project, retention_days.get("*"))


@dataclass
class PurgeResult:
    deleted: list[tuple[JobRecord, int]] = field(default_factory=list)   # (job, bytes freed), oldest first
    dry_run: bool = False
    shredded: dict[str, list[str]] = field(default_factory=dict)   # project -> ids of the keys deleted

    @property
    def bytes_freed(self) -> int:
        return sum(n for _, n in self.deleted)


def select_expired(store: JobStore, *, now: float, project: str | None = None,
                   older_than_days: float | None = None,
                   retention_days: Mapping[str, float] | None = None) -> list[JobRecord]:
    """Ended jobs past ``older_than_days`` (every project's, or ``project``'s),
    or, without it, past their project's ``retention_days``."""
    if older_than_days is not None:
        if not math.isfinite(older_than_days) or older_than_days < 0:
            raise InvalidArgumentError(f"older_than_days: must be >= 0, got {older_than_days!r}")
        return store.ended_jobs(project, ended_before=now - older_than_days * DAY_S)
    days_by_project = check_retention(retention_days or {})
    expired = []
    for job in store.ended_jobs(project, ended_before=now):
        days = retention_for(days_by_project, job.project)
        if days is not None and job.updated < now - days * DAY_S:
            expired.append(job)
    return expired


def purge(store: JobStore, *, now: float | None = None, project: str | None = None,
          older_than_days: float | None = None, retention_days: Mapping[str, float] | None = None,
          dry_run: bool = False, on_delete: Callable[[JobRecord, int], None] | None = None) -> PurgeResult:
    """Delete the jobs ``select_expired`` picks (or only list them: ``dry_run``,
    with the bytes each would free)."""
    from ..jobs.store import folder_bytes

    now = time.time() if now is None else now
    result = PurgeResult(dry_run=dry_run)
    for job in select_expired(store, now=now, project=project, older_than_days=older_than_days,
                              retention_days=retention_days):
        if dry_run:
            result.deleted.append((job, folder_bytes(store.job_dir(job.job_id))))
            continue
        try:
            freed = store.delete_job(job.job_id)
        except Exception as exc:   # one job that cannot go never stops the others
            log.error("job %s: not purged: %s", job.job_id, exc)
            continue
        result.deleted.append((job, freed))
        if on_delete is not None:
            on_delete(job, freed)
    for project in sorted({job.project for job, _ in result.deleted} if not dry_run else ()):
        ids = shred_if_removed(store, project)
        if ids:
            result.shredded[project] = ids
    return result


def shred_if_removed(store: JobStore, project: str) -> list[str]:
    """Delete ``project``'s keys when it has no job left (crypto-shredding);
    the ids of the keys deleted. The store's lock keeps a new job of the
    project from being sealed with a key being deleted."""
    keyring = store.keyring
    if keyring is None:
        return []
    with store.locked():
        if store.job_count(project):
            return []
        try:
            ids = keyring.delete(project)
        except Exception as exc:   # the jobs are gone; say loudly that the key is not
            log.error("project %s: its jobs are purged but its keys could not be deleted: %s", project, exc)
            return []
    if ids:
        log.info("project %s: removed (no jobs left); its keys %s deleted", project, ", ".join(ids))
    return ids


class RetentionSweeper:
    """Applies the bridge's ``retention_days`` every ``every_s`` seconds
    (and once at start), on a daemon thread; each deletion is audited."""

    def __init__(self, manager, every_s: float = 3600.0, clock: Callable[[], float] = time.time):
        if not (math.isfinite(every_s) and every_s > 0):
            raise InvalidArgumentError(f"retention sweep interval: must be > 0 seconds, got {every_s!r}")
        self.manager = manager
        self.every_s = every_s
        self.clock = clock
        self.retention_days = check_retention(manager.config.retention_days)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="greenlight-retention", daemon=True)
        self.sweeps = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def sweep(self) -> PurgeResult:
        """One pass now; returns what was deleted."""
        if not self.retention_days:
            return PurgeResult()
        manager = self.manager

        def deleted(job: JobRecord, freed: int) -> None:
            manager.channels.discard(job.job_id)
            if manager.audit is not None:
                manager.audit.record("Retention", Principal(job.project, "retention"), job.job_id, "ok",
                                     bytes_freed=freed, days=retention_for(self.retention_days, job.project))

        result = purge(manager.store, now=self.clock(), retention_days=self.retention_days, on_delete=deleted)
        self.sweeps += 1
        if result.deleted:
            log.info("retention: %d ended jobs deleted, %d bytes freed", len(result.deleted), result.bytes_freed)
        return result

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sweep()
            except Exception:   # a failed sweep is retried at the next interval
                log.exception("retention sweep failed")
            self._stop.wait(self.every_s)
