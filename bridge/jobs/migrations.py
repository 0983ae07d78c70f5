"""Ordered SQLite migrations on ``PRAGMA user_version``, for the job store
and the energy ledger: each step runs once, in its own transaction, and a
file written by a newer greenlight is refused rather than misread."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Sequence

from ..errors import PreconditionError

log = logging.getLogger(__name__)


def run_script(db: sqlite3.Connection, sql: str) -> None:
    # statement by statement: executescript() would COMMIT the migration's transaction
    for statement in sql.split(";"):
        if statement.strip():
            db.execute(statement)


def migrate(db: sqlite3.Connection, migrations: Sequence[tuple[int, Callable[[sqlite3.Connection], None]]],
            what: str) -> int:
    """Run the migrations newer than the file's ``user_version``, each in its
    own transaction; refuse a file from a newer greenlight. Returns the
    version the file had."""
    found = db.execute("PRAGMA user_version").fetchone()[0]
    newest = migrations[-1][0]
    if found > newest:
        raise PreconditionError(
            f"the {what} was written by a newer greenlight (schema {found}; this one knows up to {newest}): "
            "upgrade greenlight, or start with another data folder")
    for version, step in migrations:
        if version <= found:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            step(db)
            db.execute(f"PRAGMA user_version = {int(version)}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        log.info("%s: migrated to schema %d", what, version)
    return found
