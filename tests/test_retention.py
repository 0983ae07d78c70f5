"""Delete, retention and purge (issue 13): only ended jobs go, other
projects' jobs are not found, frames, uploads and rows are removed, the
energy ledger keeps its totals; the bridge's sweeper applies retention_days
per project; ``greenlight purge`` works on a stopped bridge's folder and
refuses while a bridge holds it."""

import json
import threading
import time

import pytest

from bridge.cli import main
from bridge.client import BridgeClient
from bridge.energy.ledger import Ledger
from bridge.errors import InvalidArgumentError, NotFoundError, PreconditionError
from bridge.jobs.model import JobState
from bridge.jobs.store import JobStore, folder_bytes
from bridge.server.audit import AuditLog
from bridge.server.auth import Principal
from bridge.server.lock import acquire_data_lock
from bridge.server.retention import DAY_S, RetentionSweeper, check_retention, purge
from bridge.shot.request import GenerationSettings

ADMIN = Principal(None)
PACED = GenerationSettings(backend="paced")


def _done(client, shot, backend="paced", state=JobState.COMPLETED):
    job = client.submit(shot, GenerationSettings(backend=backend)).job
    deadline = time.monotonic() + 20
    while client.job(job.job_id).state != state:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return job.job_id


def _ledger_totals(data_dir, project):
    with Ledger.for_data_dir(data_dir) as ledger:
        return ledger.summary(project), len(ledger.jobs(project))


def test_delete_only_ended_jobs_of_ones_own_project(start_bridge, small_shot, paced, tmp_path):
    paced.frame_s = 0.3
    bridge = start_bridge(backends={"paced": paced}, data_dir=tmp_path / "d")
    manager, store = bridge.manager, bridge.manager.store
    with BridgeClient(bridge.address) as client:
        running = client.submit(small_shot, PACED).job.job_id
        with pytest.raises(PreconditionError, match="cancel it first"):
            manager.delete(ADMIN, running)
        client.cancel(running)
        deadline = time.monotonic() + 10
        while client.job(running).state != JobState.CANCELLED:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        paced.frame_s = 0.01
        done = _done(client, small_shot)
    with pytest.raises(NotFoundError):
        manager.delete(Principal("someone-else"), done)
    assert store.get(done).state is JobState.COMPLETED     # untouched by the refused delete
    totals_before = _ledger_totals(bridge.config.data_dir, small_shot.tags.project)
    expected = folder_bytes(store.job_dir(done))
    assert expected > 0
    freed = manager.delete(Principal(small_shot.tags.project), done, reason="cleanup")
    assert freed == expected and not store.job_dir(done).exists()
    with pytest.raises(NotFoundError):
        store.get(done)
    for table in ("frames", "attempts", "reports", "jobs"):
        assert store._db.execute(f"SELECT COUNT(*) FROM {table} WHERE job_id = ?", (done,)).fetchone()[0] == 0
    assert _ledger_totals(bridge.config.data_dir, small_shot.tags.project) == totals_before
    assert totals_before[1] == 2                            # the cancelled and the completed job
    assert manager.delete(ADMIN, running) > 0              # a cancelled job is ended too


def test_retention_sweeper_applies_days_per_project(start_bridge, small_shot, paced, tmp_path):
    from dataclasses import replace

    other_shot = replace(small_shot, tags=replace(small_shot.tags, project="keep"))
    paced.frame_s = 0.005
    bridge = start_bridge(backends={"paced": paced}, retention_days={small_shot.tags.project: 1, "*": 10})
    manager = bridge.manager
    manager.audit = AuditLog(tmp_path / "audit.jsonl")
    with BridgeClient(bridge.address) as client:
        old = _done(client, small_shot)
        kept = _done(client, other_shot)
    now = [time.time()]
    sweeper = RetentionSweeper(manager, every_s=0.05, clock=lambda: now[0])
    assert sweeper.sweep().deleted == []                      # nothing is a day old yet
    now[0] += 2 * DAY_S
    result = sweeper.sweep()
    assert [job.job_id for job, _ in result.deleted] == [old] and result.bytes_freed > 0
    assert manager.store.get(kept).state is JobState.COMPLETED             # its project keeps 10 days
    now[0] += 9 * DAY_S
    sweeper.start()
    deadline = time.monotonic() + 5
    while True:
        try:
            manager.store.get(kept)
        except NotFoundError:
            break
        assert time.monotonic() < deadline, "the sweeper thread never deleted the expired job"
        time.sleep(0.02)
    sweeper.stop()
    assert not sweeper._thread.is_alive()
    manager.audit.close()
    lines = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    swept = [e for e in lines if e["rpc"] == "Retention"]
    assert [(e["job"], e["project"], e["token_id"]) for e in swept] == [
        (old, small_shot.tags.project, "retention"), (kept, "keep", "retention")]
    assert all(e["detail"]["bytes_freed"] > 0 for e in swept)


def test_retention_values_are_checked():
    with pytest.raises(InvalidArgumentError, match=r"retention_days\['p'\]"):
        check_retention({"p": float("nan")})
    with pytest.raises(InvalidArgumentError):
        check_retention({"*": -1})
    assert check_retention({"p": 0, "*": 2.5}) == {"p": 0.0, "*": 2.5}


def test_purge_cli_on_a_stopped_bridge(start_bridge, small_shot, paced, tmp_path, capsys):
    data = tmp_path / "studio"
    paced.frame_s = 0.005
    bridge = start_bridge(backends={"paced": paced}, data_dir=data)
    with BridgeClient(bridge.address) as client:
        jobs = [_done(client, small_shot) for _ in range(2)]
    totals = _ledger_totals(data, small_shot.tags.project)
    bridge.stop(grace=0)

    with acquire_data_lock(data):      # as a running bridge holds it
        assert main(["purge", "--data-dir", str(data), "--older-than-days", "0"]) == 2
    assert "another greenlight bridge" in capsys.readouterr().err
    assert main(["purge", "--data-dir", str(data)]) == 2                     # says what to give
    assert "--older-than-days" in capsys.readouterr().err

    assert main(["purge", "--data-dir", str(data), "--older-than-days", "0", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert all(j in out for j in jobs) and "would delete 2 jobs" in out
    assert main(["purge", "--data-dir", str(data), "--older-than-days", "1"]) == 0   # none a day old
    assert "deleted 0 jobs" in capsys.readouterr().out
    assert main(["purge", "--data-dir", str(data), "--older-than-days", "0", "--project", "nobody"]) == 0
    assert main(["purge", "--data-dir", str(data), "--older-than-days", "0"]) == 0
    assert "deleted 2 jobs" in capsys.readouterr().out
    store = JobStore(data)
    assert store.list(limit=10) == [] and list(store.jobs_dir.iterdir()) == []
    store.close()
    assert _ledger_totals(data, small_shot.tags.project) == totals
    with acquire_data_lock(data):
        pass                            # purge released the lock


def test_purge_keeps_active_jobs_and_survives_concurrent_sweeps(tmp_path):
    from tests.test_jobs_store import _create

    store = JobStore(tmp_path)
    active, _ = _create(store, request_id="a")
    ended, _ = _create(store, request_id="b")
    store.transition(ended.job_id, JobState.CANCELLED, "test")
    results = []
    threads = [threading.Thread(target=lambda: results.append(purge(store, older_than_days=0, now=time.time() + 1)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sum(len(r.deleted) for r in results) == 1        # deleted once, never twice
    assert store.get(active.job_id).state is JobState.QUEUED


def test_the_bridge_itself_applies_retention(start_bridge, small_shot, paced):
    """retention_days in the config starts the sweeper with the bridge: a job
    past its project's retention disappears without anyone calling purge, and
    the audit log says so."""
    paced.frame_s = 0.005
    bridge = start_bridge(backends={"paced": paced}, retention_days={"*": 0}, retention_sweep_s=0.05)
    assert bridge.retention is not None
    with BridgeClient(bridge.address) as client:
        # a 0-day retention may delete the job between two polls, before this client sees it COMPLETED: watch
        # it until it is gone; the audit line below shows it was a finished job the sweeper removed
        job_id = client.submit(small_shot, PACED).job.job_id
        deadline = time.monotonic() + 20
        seen = set()
        while True:
            try:
                seen.add(client.job(job_id).state)
            except NotFoundError:
                break
            assert time.monotonic() < deadline, f"the bridge never applied retention_days (states seen: {seen})"
            time.sleep(0.02)
    bridge.stop(grace=0)
    assert not bridge.retention._thread.is_alive()
    lines = [json.loads(line) for line in (bridge.config.data_dir / "audit.jsonl").read_text().splitlines()]
    assert [e["job"] for e in lines if e["rpc"] == "Retention"] == [job_id]


def test_no_retention_configured_means_no_sweeper(start_bridge):
    assert start_bridge().retention is None
