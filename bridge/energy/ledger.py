"""The per-project energy ledger: one row per finished job, in SQLite.

It lives in its own file (``<data_dir>/ledger.sqlite``), not in the job
store's database: the job store is the bridge's working state (queued,
running, frames) and is pruned and migrated with the jobs; the ledger is an
append-mostly record that outlives job artifacts, is read by reporting
tools while the bridge runs (WAL mode: readers never block the executor),
and can be copied or archived on its own. A job is keyed by its id, so
recording the same report twice (a retried finish) replaces the row.

What a row holds is the final report's accounting (energy measured or
estimated and by which meter, facility energy, water, gCO2e location- and
market-based, embodied, seconds of animatic) plus the scheduling facts the
savings KPI needs (job class, whether it was shifted, the gCO2e expected
had it run at submit time).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

from ..jobs.migrations import migrate, run_script
from ..jobs.model import JobReport, JobState

SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS ledger_jobs (
    job_id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    shot TEXT NOT NULL,
    version INTEGER NOT NULL,
    state TEXT NOT NULL,
    backend TEXT NOT NULL,
    finished REAL NOT NULL,              -- unix seconds
    site TEXT NOT NULL,
    grid_region TEXT NOT NULL,
    frames INTEGER NOT NULL,
    animatic_s REAL NOT NULL,            -- seconds of animatic delivered (frames / fps)
    wall_s REAL NOT NULL,
    energy_wh REAL NOT NULL,             -- IT energy
    measured INTEGER NOT NULL,           -- 1 measured, 0 estimated
    meter TEXT NOT NULL,
    facility_energy_wh REAL NOT NULL,
    water_l REAL NOT NULL,
    co2e_g_location REAL NOT NULL,
    co2e_g_market REAL,                  -- NULL: the site has no market-based factor
    embodied_co2e_g REAL NOT NULL,
    intensity_g_per_kwh REAL NOT NULL,
    intensity_source TEXT NOT NULL,
    job_class TEXT NOT NULL,             -- interactive | batch
    shifted INTEGER NOT NULL,            -- 1: a batch job moved in time or place
    run_now_co2e_g REAL,                 -- expected gCO2e had it run at submit time
    report TEXT NOT NULL                 -- the full report, JSON
);
CREATE INDEX IF NOT EXISTS ledger_jobs_project ON ledger_jobs (project, finished);
"""


def _migrate_v1(db: sqlite3.Connection) -> None:
    run_script(db, SCHEMA_V1)   # version 0 is the unversioned ledger of greenlight 0.1: the same table


def _migrate_v2(db: sqlite3.Connection) -> None:
    # attempts, and the energy no frame carried (a failed or killed run's), per job
    have = {r[1] for r in db.execute("PRAGMA table_info(ledger_jobs)")}
    for name, ddl in (("attempts", "INTEGER NOT NULL DEFAULT 1"), ("unattributed_wh", "REAL NOT NULL DEFAULT 0"),
                      ("report_schema", "INTEGER NOT NULL DEFAULT 1"), ("saved_g_vs_submit", "REAL")):
        if name not in have:
            db.execute(f"ALTER TABLE ledger_jobs ADD COLUMN {name} {ddl}")


MIGRATIONS = [(1, _migrate_v1), (2, _migrate_v2)]

COLUMNS = ("job_id", "project", "shot", "version", "state", "backend", "finished", "site", "grid_region",
           "frames", "animatic_s", "wall_s", "energy_wh", "measured", "meter", "facility_energy_wh", "water_l",
           "co2e_g_location", "co2e_g_market", "embodied_co2e_g", "intensity_g_per_kwh", "intensity_source",
           "job_class", "shifted", "run_now_co2e_g", "attempts", "unattributed_wh", "report_schema",
           "saved_g_vs_submit", "report")


class Ledger:
    FILE_NAME = "ledger.sqlite"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=10.0)
        self._db.row_factory = sqlite3.Row
        self._db.isolation_level = None
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            migrate(self._db, MIGRATIONS, what=f"energy ledger {self.path}")

    @classmethod
    def for_data_dir(cls, data_dir: str | Path) -> Ledger:
        return cls(Path(data_dir) / cls.FILE_NAME)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def record(self, report: JobReport, *, finished: float | None = None) -> None:
        """Store a job's final report: its figures as the report has them
        (the sums of its stored frames and attempts), nothing re-priced."""
        e, sched = report.energy, report.scheduling
        row = {
            "job_id": report.job_id, "project": report.tags.project, "shot": report.tags.shot,
            "version": int(report.tags.version), "state": report.state.value, "backend": report.backend,
            "finished": float(finished if finished is not None else (report.finished or time.time())),
            "site": report.site, "grid_region": report.grid_region, "frames": report.frames,
            "animatic_s": report.animatic_s, "wall_s": report.wall_s, "energy_wh": e.energy_wh,
            "measured": 1 if e.measured else 0, "meter": e.meter, "facility_energy_wh": report.facility_energy_wh,
            "water_l": report.water_l, "co2e_g_location": e.co2e_g_location, "co2e_g_market": e.co2e_g_market,
            "embodied_co2e_g": report.embodied_co2e_g, "intensity_g_per_kwh": report.intensity_g_per_kwh,
            "intensity_source": report.intensity_source, "job_class": sched.job_class,
            "shifted": 1 if sched.shifted else 0, "run_now_co2e_g": sched.run_now_co2e_g,
            "attempts": len(report.attempts), "unattributed_wh": report.unattributed_wh,
            "report_schema": report.schema_version, "saved_g_vs_submit": sched.saved_g_vs_submit,
            "report": json.dumps(report.to_dict(), allow_nan=False),
        }
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.execute(f"INSERT OR REPLACE INTO ledger_jobs ({', '.join(COLUMNS)}) "
                             f"VALUES ({', '.join('?' * len(COLUMNS))})", [row[c] for c in COLUMNS])

    def report(self, job_id: str) -> JobReport | None:
        """The full report a row was made from."""
        with self._lock:
            row = self._db.execute("SELECT report FROM ledger_jobs WHERE job_id = ?", (job_id,)).fetchone()
        return JobReport.from_dict(json.loads(row[0])) if row else None

    def jobs(self, project: str, since: float | None = None) -> list[dict]:
        q = "SELECT * FROM ledger_jobs WHERE project = ?"
        args: list = [project]
        if since is not None:
            q += " AND finished >= ?"
            args.append(since)
        with self._lock:
            rows = self._db.execute(q + " ORDER BY finished, job_id", args).fetchall()
        return [{k: r[k] for k in r.keys() if k != "report"} for r in rows]

    def summary(self, project: str, since: float | None = None) -> list[dict]:
        """Sums by shot and version (SQL does the adding: the report module
        checks its own totals against these)."""
        q = """
            SELECT shot, version, COUNT(*) AS jobs,
                   SUM(state = :done) AS jobs_completed,
                   SUM(energy_wh) AS energy_wh, SUM(facility_energy_wh) AS facility_energy_wh,
                   SUM(water_l) AS water_l, SUM(co2e_g_location) AS co2e_g_location,
                   SUM(co2e_g_market) AS co2e_g_market, SUM(co2e_g_market IS NULL) AS market_missing,
                   SUM(embodied_co2e_g) AS embodied_co2e_g,
                   SUM(CASE WHEN state = :done THEN animatic_s ELSE 0 END) AS animatic_s,
                   SUM(CASE WHEN measured = 1 THEN energy_wh ELSE 0 END) AS measured_wh
            FROM ledger_jobs WHERE project = :project"""
        args: dict = {"project": project, "done": JobState.COMPLETED.value}
        if since is not None:
            q += " AND finished >= :since"
            args["since"] = since
        q += " GROUP BY shot, version ORDER BY shot, version"
        with self._lock:
            return [dict(r) for r in self._db.execute(q, args).fetchall()]

    def temporal(self, project: str, since: float | None = None) -> dict[tuple[str, int], dict]:
        """Per (shot, version): the temporal-consistency figures of its latest
        completed job (its report's ``temporal``; see docs/temporal.md)."""
        q = "SELECT shot, version, report FROM ledger_jobs WHERE project = ? AND state = ?"
        args: list = [project, JobState.COMPLETED.value]
        if since is not None:
            q += " AND finished >= ?"
            args.append(since)
        with self._lock:
            rows = self._db.execute(q + " ORDER BY finished, job_id", args).fetchall()
        out = {}
        for row in rows:   # later rows replace earlier ones: the latest job wins
            out[(row["shot"], int(row["version"]))] = dict(json.loads(row["report"]).get("temporal") or {})
        return out

    def projects(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT DISTINCT project FROM ledger_jobs ORDER BY project")]
