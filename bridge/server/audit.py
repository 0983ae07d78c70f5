"""The append-only audit log: one JSON line per decision a caller made
happen (submit, cancel with its reason, download, run-now, delete,
retention), with who asked (project and token id, never the token) and how
it ended.

Lines are written whole, flushed and fsynced one by one, so a killed bridge
leaves at most its last line unwritten. The log never holds tokens or
prompts (details under such names are dropped), and a disk error is logged,
never raised into the RPC that was being recorded.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from .auth import Principal

log = logging.getLogger(__name__)
FILE_NAME = "audit.jsonl"
MAX_DETAIL_CHARS = 500          # a reason is a sentence, not a document
_SECRET_WORDS = ("token", "prompt", "secret", "password", "authorization")


def _safe_detail(detail: dict) -> dict:
    out = {}
    for key, value in detail.items():
        if key != "token_id" and any(word in key.lower() for word in _SECRET_WORDS):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            value = repr(value)
        elif not isinstance(value, (bool, int, float)) and value is not None:
            value = str(value)[:MAX_DETAIL_CHARS]
        out[key] = value
    return out


class AuditLog:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._fh: IO[bytes] | None = None
        self.failures = 0           # records that could not be written (logged each time)

    @classmethod
    def for_data_dir(cls, data_dir: str | Path) -> AuditLog:
        return cls(Path(data_dir) / FILE_NAME)

    def record(self, rpc: str, principal: Principal | None, job_id: str = "", outcome: str = "ok",
               **detail) -> None:
        """Append one line: time (UTC, ISO 8601), project, token_id, rpc, job,
        outcome (e.g. "ok" or a status code name) and ``detail``."""
        entry = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "project": (principal.project if principal is not None else None) or "*",
            "token_id": principal.token_id if principal is not None else "",
            "rpc": rpc, "job": job_id, "outcome": outcome, "detail": _safe_detail(detail),
        }
        try:
            line = (json.dumps(entry, ensure_ascii=False, allow_nan=False) + "\n").encode()
        except (TypeError, ValueError) as exc:   # cannot happen with _safe_detail; never fail the caller
            log.error("audit: record for %s %s not encodable: %s", rpc, job_id, exc)
            return
        with self._lock:
            try:
                if self._fh is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._fh = open(self.path, "ab")   # noqa: SIM115 (kept open for the bridge's life)
                self._fh.write(line)
                self._fh.flush()
                os.fsync(self._fh.fileno())
            except OSError as exc:
                self.failures += 1
                log.error("audit: could not write to %s (%s); record lost: %s %s %s", self.path, exc, rpc,
                          job_id, outcome)
                self._close_locked()   # reopened at the next record

    def _close_locked(self) -> None:
        if self._fh is not None:
            try:
                self._fh.close()
            except OSError:
                pass
            self._fh = None

    def close(self) -> None:
        with self._lock:
            self._close_locked()
