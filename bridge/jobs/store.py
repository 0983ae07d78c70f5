"""SQLite job store (WAL) and per-job artifact folders.

Durability rules: a job row exists only once its shot file is complete on
disk (written to ``incoming/``, then renamed into ``jobs/<id>/``); a frame row
exists only once its image file is complete. ``recover()`` runs at start-up:
it deletes half-written uploads and re-queues jobs that were running when the
bridge died, so nothing is silently lost.

Encryption at rest (docs/governance.md): with a ``keyring`` (set by the
bridge), a project that encrypts has its shot and frame files sealed on
write; every reader goes through ``read_shot_bytes`` / ``read_frame``, which
open them (files stored in the clear read as they are).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import LimitExceededError, NotFoundError, PreconditionError
from ..shot.request import GenerationSettings, SchedulingSettings
from .migrations import migrate, run_script
from .model import (
    ACTIVE,
    TERMINAL,
    Attempt,
    AttemptOutcome,
    Decision,
    FrameRecord,
    JobReport,
    JobState,
    check_transition,
)

if TYPE_CHECKING:
    from ..governance.encryption import Keyring

log = logging.getLogger(__name__)
SHOT_FILE = "shot.pb"

# Ordered migrations (PRAGMA user_version). A data folder written by any
# earlier greenlight opens: version 0 is every unversioned 0.1 layout (with or
# without the fps columns), brought to version 1 by adding what is missing.
SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    shot TEXT NOT NULL,
    version INTEGER NOT NULL,
    request_id TEXT NOT NULL,
    shot_sha256 TEXT NOT NULL,
    backend TEXT NOT NULL,
    state TEXT NOT NULL,
    state_reason TEXT NOT NULL DEFAULT '',
    frame_count INTEGER NOT NULL,
    fps_numerator INTEGER NOT NULL DEFAULT 24,
    fps_denominator INTEGER NOT NULL DEFAULT 1,
    work_estimate REAL NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    energy_wh REAL NOT NULL DEFAULT 0,
    generation TEXT NOT NULL,
    scheduling TEXT NOT NULL,
    decision TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL,
    updated REAL NOT NULL,
    UNIQUE (project, request_id)
);
CREATE INDEX IF NOT EXISTS jobs_by_project ON jobs (project, created);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state);
CREATE TABLE IF NOT EXISTS frames (
    job_id TEXT NOT NULL REFERENCES jobs (job_id),
    idx INTEGER NOT NULL,
    file TEXT NOT NULL,
    energy_wh REAL NOT NULL,
    work REAL NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (job_id, idx)
);
CREATE TABLE IF NOT EXISTS reports (
    job_id TEXT PRIMARY KEY REFERENCES jobs (job_id),
    json TEXT NOT NULL
);
"""
_V1_ADDED_COLUMNS = {   # columns later 0.1 commits added to a table that already existed
    "jobs": [("fps_numerator", "INTEGER NOT NULL DEFAULT 24"), ("fps_denominator", "INTEGER NOT NULL DEFAULT 1"),
             ("work_estimate", "REAL NOT NULL DEFAULT 0"), ("decision", "TEXT NOT NULL DEFAULT '{}'")],
}
# Version 2: a frame's figures are fixed when it is made (meter, site, intensity,
# gCO2e, attempt); attempts are records of their own. Frames stored before it
# keep their energy and say that their meter and intensity were not recorded.
_V2_FRAME_COLUMNS = [
    ("attempt", "INTEGER NOT NULL DEFAULT 0"),
    ("meter", "TEXT NOT NULL DEFAULT 'not recorded (stored before schema 2)'"),
    ("measured", "INTEGER NOT NULL DEFAULT 0"),
    ("site", "TEXT NOT NULL DEFAULT ''"),
    ("pue", "REAL NOT NULL DEFAULT 1"),
    ("intensity_g_per_kwh", "REAL NOT NULL DEFAULT 0"),
    ("intensity_source", "TEXT NOT NULL DEFAULT 'not recorded (stored before schema 2)'"),
    ("intensity_kind", "TEXT NOT NULL DEFAULT 'static'"),
    ("co2e_g_location", "REAL NOT NULL DEFAULT 0"),
    ("co2e_g_market", "REAL"),
]
SCHEMA_V2 = """
CREATE TABLE IF NOT EXISTS attempts (
    job_id TEXT NOT NULL REFERENCES jobs (job_id),
    number INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    record TEXT NOT NULL,            -- Attempt.to_dict() JSON
    PRIMARY KEY (job_id, number)
);
"""


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in db.execute(f"PRAGMA table_info({table})")}


def _migrate_v1(db: sqlite3.Connection) -> None:
    run_script(db, SCHEMA_V1)
    for table, columns in _V1_ADDED_COLUMNS.items():
        have = _columns(db, table)
        for name, ddl in columns:
            if name not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {ddl}")


def _migrate_v2(db: sqlite3.Connection) -> None:
    have = _columns(db, "frames")
    for name, ddl in _V2_FRAME_COLUMNS:
        if name not in have:
            db.execute(f"ALTER TABLE frames ADD COLUMN {name} {ddl}")
    run_script(db, SCHEMA_V2)


MIGRATIONS: list[tuple[int, Callable[[sqlite3.Connection], None]]] = [(1, _migrate_v1), (2, _migrate_v2)]
SCHEMA_VERSION = MIGRATIONS[-1][0]


@dataclass
class JobRecord:
    """A job row as the bridge keeps it (clients see a ``JobStatus``)."""

    job_id: str
    project: str
    shot: str
    version: int
    request_id: str
    shot_sha256: str
    backend: str
    state: JobState
    state_reason: str
    frame_count: int
    fps: tuple[int, int]
    work_estimate: float
    frames_done: int
    attempts: int
    energy_wh: float                 # finished attempts (frames + unattributed)
    generation: GenerationSettings
    scheduling: SchedulingSettings
    decision: Decision | None = None
    created: float = 0.0
    updated: float = 0.0


class JobStore:
    """Thread-safe; one connection guarded by a lock (SQLite serialises
    writers anyway, and the bridge's write rate is a few rows per frame)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.jobs_dir = self.root / "jobs"
        self.incoming_dir = self.root / "incoming"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.incoming_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        # set by the bridge: per-project encryption at rest (None: files in the clear)
        self.keyring: Keyring | None = None
        # set by the bridge: completes a report before it is saved (the recipe); never raises
        self.report_hook: Callable[[str, JobReport], JobReport] | None = None
        self._projects: dict[str, str] = {}     # job id -> project (a job never changes project)
        self._db = sqlite3.connect(self.root / "bridge.sqlite3", check_same_thread=False,
                                   isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit survives the process being killed (the bridge's
        # failure mode); only an OS crash / power cut can lose the last commits
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self._lock:
            self.schema_found = migrate(self._db, MIGRATIONS, "job store")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ----------------------------------------------------------- paths
    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id

    def shot_path(self, job_id: str) -> Path:
        """Where the uploaded shot lies (sealed when its project encrypts: read it with ``read_shot_bytes``)."""
        return self.job_dir(job_id) / SHOT_FILE

    def frame_path(self, job_id: str, index: int) -> Path:
        return self.job_dir(job_id) / "frames" / f"frame_{index:05d}.png"

    def new_upload_dir(self) -> Path:
        path = self.incoming_dir / uuid.uuid4().hex
        path.mkdir()
        return path

    # ----------------------------------------------------------- writes
    def create_job(self, upload_dir: Path, *, project: str, shot: str, version: int, request_id: str,
                   shot_sha256: str, backend: str, frame_count: int, work_estimate: float,
                   generation: GenerationSettings, scheduling: SchedulingSettings,
                   fps: tuple[int, int] = (24, 1), max_active: int | None = None) -> tuple[JobRecord, bool]:
        """Move a complete upload into place and insert its job.

        Returns (job, created). When ``request_id`` is already known for the
        project, the upload is discarded and the existing job returned; a
        different shot under the same request id is refused. ``max_active``:
        the project's active-job limit, counted and the job inserted in one
        transaction (concurrent submits never pass it together).
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                existing = self.find_by_request(project, request_id)
                if existing is None:
                    if max_active is not None:
                        active = self.count_active(project)
                        if active >= max_active:
                            raise LimitExceededError(f"max_active_jobs_per_project (project {project!r})",
                                                     active + 1, max_active)
                    job_id = uuid.uuid4().hex[:20]
                    self._seal_file(upload_dir / SHOT_FILE, project, job_id)
                    now = time.time()
                    self._db.execute(
                        "INSERT INTO jobs (job_id, project, shot, version, request_id, shot_sha256, backend, state,"
                        " frame_count, fps_numerator, fps_denominator, work_estimate, generation, scheduling,"
                        " created, updated) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        (job_id, project, shot, version, request_id, shot_sha256, backend, JobState.QUEUED.value,
                         frame_count, fps[0], fps[1], work_estimate, json.dumps(generation.to_dict()),
                         json.dumps(scheduling.to_dict()), now, now),
                    )
                    # the row commits only once the files are in place (a folder without a row is swept at start)
                    os.replace(upload_dir, self.job_dir(job_id))
                    self._db.execute("COMMIT")
                    return self.get(job_id), True
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        shutil.rmtree(upload_dir, ignore_errors=True)
        if existing.shot_sha256 != shot_sha256:
            raise PreconditionError(
                f"request_id {request_id!r} was already used in project {project!r} for a different shot "
                f"(job {existing.job_id}); use a new request_id for a new submission")
        return existing, False

    def delete_job(self, job_id: str) -> int:
        """Remove an ended job: its folder (shot, frames, report) and its rows.
        Returns the bytes of files removed. The energy ledger is another file
        and keeps the job's row."""
        with self._lock:
            job = self.get(job_id)
            if not job.state.terminal:
                raise PreconditionError(f"job {job_id} is {job.state.value}; only an ended job can be deleted "
                                        "(cancel it first)")
            with self._db:
                self._db.execute("BEGIN")
                for table in ("frames", "attempts", "reports", "jobs"):
                    self._db.execute(f"DELETE FROM {table} WHERE job_id = ?", (job_id,))
            self._projects.pop(job_id, None)
            folder = self.job_dir(job_id)
            freed = folder_bytes(folder)
            shutil.rmtree(folder, ignore_errors=True)
        return freed

    def ended_jobs(self, project: str | None = None, ended_before: float | None = None) -> list[JobRecord]:
        """Ended jobs (completed, failed, cancelled), oldest first; ``ended_before``:
        unix seconds their last change precedes (a job's end is its last change)."""
        where = [f"j.state IN ({','.join('?' * len(TERMINAL))})"]
        args: list[str | float] = [s.value for s in TERMINAL]
        if project is not None:
            where.append("j.project = ?")
            args.append(project)
        if ended_before is not None:
            where.append("j.updated < ?")
            args.append(ended_before)
        with self._lock:
            rows = self._db.execute(_SELECT + " WHERE " + " AND ".join(where) + " ORDER BY j.updated, j.rowid",
                                    args).fetchall()
        return [_record(r) for r in rows]

    def transition(self, job_id: str, new: JobState, reason: str = "", *, expect: set[JobState] | None = None,
                   decision: Decision | None = None, count_attempt: bool = False) -> JobRecord:
        with self._lock:
            job = self.get(job_id)
            if expect is not None and job.state not in expect:
                raise PreconditionError(
                    f"job {job_id} is {job.state.value}; expected one of {sorted(s.value for s in expect)}")
            check_transition(job.state, new)
            sets = ["state = ?", "state_reason = ?", "updated = ?"]
            args: list = [new.value, reason, time.time()]
            if decision is not None:
                sets.append("decision = ?")
                args.append(json.dumps(decision.to_dict()))
            if count_attempt:
                sets.append("attempts = attempts + 1")
            self._db.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE job_id = ?", (*args, job_id))
            return self.get(job_id)

    # attempts: opened when a run starts, checkpointed with every frame (and
    # on progress), closed when it ends; a killed bridge leaves the last checkpoint
    def save_attempt(self, job_id: str, attempt: Attempt) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO attempts (job_id, number, outcome, record) VALUES (?,?,?,?)",
                             (job_id, attempt.number, attempt.outcome.value, json.dumps(attempt.to_dict())))

    def end_attempt(self, job_id: str, attempt: Attempt) -> None:
        """Close an attempt and add its energy to the job's, in one transaction."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.execute("INSERT OR REPLACE INTO attempts (job_id, number, outcome, record) VALUES (?,?,?,?)",
                             (job_id, attempt.number, attempt.outcome.value, json.dumps(attempt.to_dict())))
            self._db.execute("UPDATE jobs SET energy_wh = energy_wh + ?, updated = ? WHERE job_id = ?",
                             (attempt.energy_wh, time.time(), job_id))

    def add_frame(self, job_id: str, record: FrameRecord, data: bytes, attempt: Attempt | None = None) -> bool:
        """Store a finished frame with its fixed figures (and the attempt's
        checkpoint, in the same transaction); False, nothing written, if the
        frame exists."""
        path = self.frame_path(job_id, record.index)
        with self._lock:
            if self._db.execute("SELECT 1 FROM frames WHERE job_id = ? AND idx = ?",
                                (job_id, record.index)).fetchone():
                return False
        path.parent.mkdir(exist_ok=True)
        data = self._seal(job_id, path.name, data)
        tmp = path.with_suffix(".partial")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except BaseException:   # a full disk: give back what the partial file took
            tmp.unlink(missing_ok=True)
            raise
        r = record
        with self._lock, self._db:   # one transaction: the frame row, the attempt checkpoint, the job's timestamp
            self._db.execute("BEGIN")
            self._db.execute(
                f"INSERT OR IGNORE INTO frames ({', '.join(_FRAME_COLUMNS)})"
                f" VALUES ({', '.join('?' * len(_FRAME_COLUMNS))})",
                (job_id, r.index, path.name, r.energy_wh, r.work, r.created or time.time(), r.attempt, r.meter,
                 int(r.measured), r.site, r.pue, r.intensity_g_per_kwh, r.intensity_source, r.intensity_kind,
                 r.co2e_g_location, r.co2e_g_market))
            if attempt is not None:
                self._db.execute("INSERT OR REPLACE INTO attempts (job_id, number, outcome, record) VALUES (?,?,?,?)",
                                 (job_id, attempt.number, attempt.outcome.value, json.dumps(attempt.to_dict())))
            self._db.execute("UPDATE jobs SET updated = ? WHERE job_id = ?", (time.time(), job_id))
        return True

    def save_report(self, job_id: str, report: JobReport) -> JobReport:
        """Store the job's report, completed by ``report_hook`` (its recipe); returns it as saved."""
        if self.report_hook is not None:
            report = self.report_hook(job_id, report)
        text = json.dumps(report.to_dict(), indent=1, allow_nan=False)
        tmp = self.job_dir(job_id) / "report.json.partial"
        try:
            tmp.write_text(text)
            os.replace(tmp, self.job_dir(job_id) / "report.json")
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO reports (job_id, json) VALUES (?, ?)", (job_id, text))
        return report

    # ----------------------------------------------------------- reads
    def get(self, job_id: str) -> JobRecord:
        with self._lock:
            row = self._db.execute(_SELECT + " WHERE j.job_id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"job {job_id!r} not found", resource_type="job", resource_name=job_id)
        return _record(row)

    def find_by_request(self, project: str, request_id: str) -> JobRecord | None:
        with self._lock:
            row = self._db.execute(_SELECT + " WHERE j.project = ? AND j.request_id = ?",
                                   (project, request_id)).fetchone()
        return _record(row) if row else None

    def list(self, project: str | None = None, states: set[JobState] | None = None,
             limit: int = 100) -> list[JobRecord]:
        where, args = [], []
        if project is not None:
            where.append("j.project = ?")
            args.append(project)
        if states:
            where.append(f"j.state IN ({','.join('?' * len(states))})")
            args.extend(s.value for s in states)
        sql = (_SELECT + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY j.created DESC, j.rowid DESC LIMIT ?")
        with self._lock:
            rows = self._db.execute(sql, (*args, limit)).fetchall()
        return [_record(r) for r in rows]

    def energy_per_work(self, backend: str, last: int = 20) -> float | None:
        """Mean Wh per unit of estimated work over recent completed jobs."""
        with self._lock:
            rows = self._db.execute(
                "SELECT energy_wh, work_estimate FROM jobs WHERE backend = ? AND state = ? AND work_estimate > 0"
                " ORDER BY updated DESC LIMIT ?", (backend, JobState.COMPLETED.value, last)).fetchall()
        if not rows:
            return None
        return sum(r[0] for r in rows) / sum(r[1] for r in rows)

    def seconds_per_work(self, backend: str, last: int = 20) -> float | None:
        """Mean run seconds per unit of estimated work over recent completed jobs."""
        with self._lock:
            rows = self._db.execute(
                "SELECT r.json, j.work_estimate FROM reports r JOIN jobs j ON j.job_id = r.job_id"
                " WHERE j.backend = ? AND j.state = ? AND j.work_estimate > 0 ORDER BY j.updated DESC LIMIT ?",
                (backend, JobState.COMPLETED.value, last)).fetchall()
        if not rows:
            return None
        return sum(float(json.loads(r[0]).get("wall_s", 0.0)) for r in rows) / sum(r[1] for r in rows)

    def set_decision(self, job_id: str, decision: Decision) -> None:
        """Replace a job's scheduling decision (a re-plan) without a state change."""
        with self._lock:
            self._db.execute("UPDATE jobs SET decision = ?, state_reason = ?, updated = ? WHERE job_id = ?",
                             (json.dumps(decision.to_dict()), decision.reason, time.time(), job_id))

    def counts(self) -> tuple[dict[JobState, int], int]:
        """(jobs by state, frames stored): two COUNT queries, for the metrics endpoint."""
        with self._lock:
            by_state = {JobState.parse(state): n for state, n in
                        self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state")}
            frames = self._db.execute("SELECT COUNT(*) FROM frames").fetchone()[0]
        return by_state, int(frames)

    def count_active(self, project: str) -> int:
        with self._lock:
            return self._db.execute(
                f"SELECT COUNT(*) FROM jobs WHERE project = ? AND state IN ({','.join('?' * len(ACTIVE))})",
                (project, *(s.value for s in ACTIVE))).fetchone()[0]

    def frames(self, job_id: str, from_index: int = 0) -> list[FrameRecord]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(_FRAME_COLUMNS)} FROM frames WHERE job_id = ? AND idx >= ? ORDER BY idx",
                (job_id, from_index)).fetchall()
        return [_frame(r) for r in rows]

    def frame_file(self, job_id: str, record: FrameRecord) -> Path:
        """Where a frame lies (sealed when its project encrypts: read it with ``read_frame``)."""
        return self.job_dir(job_id) / "frames" / record.path

    def read_frame(self, job_id: str, record: FrameRecord) -> bytes:
        """A stored frame's PNG bytes, opened when sealed: every reader of frame files comes here."""
        data = self.frame_file(job_id, record).read_bytes()
        return self._open(job_id, record.path, data, f"frame {record.index}")

    def read_shot_bytes(self, job_id: str) -> bytes:
        """The uploaded shot's serialized bytes, opened when sealed: every reader of shot.pb comes here."""
        return self._open(job_id, SHOT_FILE, self.shot_path(job_id).read_bytes(), "uploaded shot")

    # ----------------------------------------------------------- encryption at rest
    def _project_of(self, job_id: str) -> str:
        project = self._projects.get(job_id)
        if project is None:
            project = self.get(job_id).project
            if len(self._projects) > 100_000:
                self._projects.clear()
            self._projects[job_id] = project
        return project

    def _seal(self, job_id: str, name: str, data: bytes) -> bytes:
        if self.keyring is None:
            return data
        return self.keyring.seal(self._project_of(job_id), job_id, name, data)

    def _open(self, job_id: str, name: str, data: bytes, what: str) -> bytes:
        from ..governance.encryption import is_sealed

        if not is_sealed(data):
            return data
        if self.keyring is None:
            raise PreconditionError(f"job {job_id}: its {what} is encrypted and this bridge has no keys "
                                    "configured (key_file or GREENLIGHT_KEYS)")
        return self.keyring.open(self._project_of(job_id), job_id, name, data, what)

    def _seal_file(self, path: Path, project: str, job_id: str) -> None:
        """Seal an upload's shot in place before it becomes a job's (its project encrypts)."""
        if self.keyring is None or not self.keyring.encrypts(project) or not path.is_file():
            return
        sealed = self.keyring.seal(project, job_id, path.name, path.read_bytes())
        _replace_bytes(path, sealed)

    def reseal_project(self, project: str) -> tuple[int, int]:
        """Re-encrypt every shot and frame file of ``project`` with its current
        key (``greenlight keys rotate``; files stored in the clear get sealed).
        Returns (files, bytes). For a stopped bridge's folder."""
        if self.keyring is None:
            raise PreconditionError("no keys configured: nothing to re-encrypt with")
        with self._lock:
            rows = self._db.execute("SELECT job_id FROM jobs WHERE project = ?", (project,)).fetchall()
        from ..governance.encryption import seal

        files = total = 0
        for (job_id,) in rows:
            paths = [self.shot_path(job_id)]
            paths += [self.frame_file(job_id, f) for f in self.frames(job_id)]
            for path in paths:
                if not path.is_file():
                    continue
                plain = self._open(job_id, path.name, path.read_bytes(), path.name)
                key = self.keyring.current(project)
                _replace_bytes(path, seal(key, plain, project, job_id, path.name))
                files += 1
                total += len(plain)
        return files, total

    def job_count(self, project: str) -> int:
        """Jobs of ``project`` in the store, in any state."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM jobs WHERE project = ?", (project,)).fetchone()[0]

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's lock: no job is created meanwhile (a key shredded for an empty project)."""
        with self._lock:
            yield

    def attempts(self, job_id: str) -> list[Attempt]:
        with self._lock:
            rows = self._db.execute("SELECT record FROM attempts WHERE job_id = ? ORDER BY number",
                                    (job_id,)).fetchall()
        return [Attempt.from_dict(json.loads(r[0])) for r in rows]

    def report(self, job_id: str) -> JobReport | None:
        with self._lock:
            row = self._db.execute("SELECT json FROM reports WHERE job_id = ?", (job_id,)).fetchone()
        return JobReport.from_dict(json.loads(row["json"])) if row else None

    # ----------------------------------------------------------- recovery
    def recover(self) -> list[JobRecord]:
        """After a (possibly hard) stop: drop half-written uploads and job
        folders without a row, re-queue running jobs. Returns the jobs that
        should run (queued and scheduled), oldest first."""
        shutil.rmtree(self.incoming_dir, ignore_errors=True)
        self.incoming_dir.mkdir()
        with self._lock:
            known = {r[0] for r in self._db.execute("SELECT job_id FROM jobs")}
        for path in self.jobs_dir.iterdir():
            if path.name not in known:
                shutil.rmtree(path, ignore_errors=True)
        with self._lock:
            open_attempts = [(r[0], Attempt.from_dict(json.loads(r[1]))) for r in self._db.execute(
                "SELECT job_id, record FROM attempts WHERE outcome = ?", (AttemptOutcome.RUNNING.value,))]
        for job_id, attempt in open_attempts:   # their energy up to the last checkpoint was emitted: it counts
            self.end_attempt(job_id, replace(attempt, outcome=AttemptOutcome.INTERRUPTED,
                                             reason="the bridge stopped during this attempt",
                                             ended=attempt.ended or attempt.started))
        for job in self.list(states={JobState.RUNNING}, limit=1_000_000):
            self.transition(job.job_id, JobState.QUEUED,
                            f"re-queued after a bridge restart interrupted attempt {job.attempts}")
        pending = self.list(states={JobState.QUEUED, JobState.SCHEDULED}, limit=1_000_000)
        return sorted(pending, key=lambda j: j.created)


def _replace_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".partial")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` (0 when it is gone)."""
    total = 0
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


_FRAME_COLUMNS = ("job_id", "idx", "file", "energy_wh", "work", "created", "attempt", "meter", "measured", "site",
                  "pue", "intensity_g_per_kwh", "intensity_source", "intensity_kind", "co2e_g_location",
                  "co2e_g_market")


def _frame(row: sqlite3.Row) -> FrameRecord:
    return FrameRecord(
        index=row["idx"], path=row["file"], attempt=row["attempt"], meter=row["meter"], measured=bool(row["measured"]),
        energy_wh=row["energy_wh"], work=row["work"], site=row["site"], pue=row["pue"],
        intensity_g_per_kwh=row["intensity_g_per_kwh"], intensity_source=row["intensity_source"],
        intensity_kind=row["intensity_kind"],
        co2e_g_location=row["co2e_g_location"], co2e_g_market=row["co2e_g_market"], created=row["created"])


def _decision(text: str, job_id: str) -> Decision | None:
    try:
        data = json.loads(text or "{}")
        return Decision.from_dict(data, job_id) if data else None
    except (TypeError, ValueError) as exc:   # a plan we cannot read: the job keeps running without it
        log.warning("job %s: stored scheduling decision unreadable (%s)", job_id, exc)
        return None


_SELECT = ("SELECT j.*, (SELECT COUNT(*) FROM frames f WHERE f.job_id = j.job_id) AS frames_done "
           "FROM jobs j")


def _record(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        job_id=row["job_id"], project=row["project"], shot=row["shot"], version=row["version"],
        request_id=row["request_id"], shot_sha256=row["shot_sha256"], backend=row["backend"],
        state=JobState.parse(row["state"]), state_reason=row["state_reason"], frame_count=row["frame_count"],
        fps=(row["fps_numerator"], row["fps_denominator"]),
        work_estimate=row["work_estimate"],
        frames_done=row["frames_done"], attempts=row["attempts"], energy_wh=row["energy_wh"],
        generation=GenerationSettings.from_dict(json.loads(row["generation"])),
        scheduling=SchedulingSettings.from_dict(json.loads(row["scheduling"])),
        decision=_decision(row["decision"], row["job_id"]), created=row["created"], updated=row["updated"],
    )
