"""The job state machine and the SQLite store's durability rules."""

import sqlite3
from dataclasses import replace

import pytest

from bridge.errors import PreconditionError
from bridge.jobs.model import FrameRecord, IllegalTransition, JobState, check_transition
from bridge.jobs.store import JobStore
from bridge.shot.request import GenerationSettings, SchedulingSettings


def test_state_machine_allows_only_the_documented_moves():
    S = JobState
    for old, new in [(S.QUEUED, S.SCHEDULED), (S.SCHEDULED, S.RUNNING), (S.RUNNING, S.COMPLETED),
                     (S.RUNNING, S.FAILED), (S.RUNNING, S.CANCELLED), (S.QUEUED, S.CANCELLED),
                     (S.RUNNING, S.QUEUED)]:
        check_transition(old, new)
    for old, new in [(S.COMPLETED, S.RUNNING), (S.QUEUED, S.RUNNING), (S.CANCELLED, S.QUEUED),
                     (S.FAILED, S.COMPLETED), (S.QUEUED, S.COMPLETED)]:
        with pytest.raises(IllegalTransition, match=f"from {old.value} to {new.value}"):
            check_transition(old, new)


def _create(store, request_id="r1", sha="aa"):
    upload = store.new_upload_dir()
    (upload / "shot.pb").write_bytes(b"shot")
    return store.create_job(upload, project="p", shot="s", version=1, request_id=request_id, shot_sha256=sha,
                            backend="guides", frame_count=3, work_estimate=3.0,
                            generation=GenerationSettings(seed=7), scheduling=SchedulingSettings())


def test_store_persists_jobs_frames_and_settings(tmp_path):
    store = JobStore(tmp_path)
    job, created = _create(store)
    assert created and job.state is JobState.QUEUED and job.generation.seed == 7
    assert store.shot_path(job.job_id).read_bytes() == b"shot"
    record = FrameRecord(index=1, attempt=1, meter="m", measured=True, energy_wh=0.5, site="local",
                         intensity_g_per_kwh=300.0, intensity_source="trace", co2e_g_location=0.15, created=5.0)
    assert store.add_frame(job.job_id, record, b"png1")
    assert not store.add_frame(job.job_id, replace(record, energy_wh=0.9), b"other")   # no duplicate frame
    assert store.frame_path(job.job_id, 1).read_bytes() == b"png1"
    store.close()
    reopened = JobStore(tmp_path)
    again = reopened.get(job.job_id)
    assert again.frames_done == 1 and again.generation == GenerationSettings(seed=7)
    assert reopened.frames(job.job_id) == [replace(record, path="frame_00001.png")]   # every figure as stored
    assert reopened._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_idempotent_create_and_conflicting_reuse(tmp_path):
    store = JobStore(tmp_path)
    job, created = _create(store)
    same, created_again = _create(store)
    assert created and not created_again and same.job_id == job.job_id
    with pytest.raises(PreconditionError, match="already used"):
        _create(store, sha="bb")
    assert list(store.incoming_dir.iterdir()) == []
    assert len(list(store.jobs_dir.iterdir())) == 1


def test_recover_requeues_running_and_cleans_half_writes(tmp_path):
    store = JobStore(tmp_path)
    job, _ = _create(store)
    store.transition(job.job_id, JobState.SCHEDULED)
    store.transition(job.job_id, JobState.RUNNING, count_attempt=True)
    done, _ = _create(store, request_id="r2")
    for state in (JobState.SCHEDULED, JobState.RUNNING, JobState.COMPLETED):
        store.transition(done.job_id, state)
    half = store.new_upload_dir()
    (half / "shot.pb").write_bytes(b"half")
    orphan = store.jobs_dir / "orphan"
    orphan.mkdir()
    store.close()

    store = JobStore(tmp_path)
    pending = store.recover()
    assert [j.job_id for j in pending] == [job.job_id]
    assert pending[0].state is JobState.QUEUED and "re-queued after a bridge restart" in pending[0].state_reason
    assert store.get(done.job_id).state is JobState.COMPLETED
    assert list(store.incoming_dir.iterdir()) == [] and not orphan.exists()


def test_transition_checks_expected_state(tmp_path):
    store = JobStore(tmp_path)
    job, _ = _create(store)
    with pytest.raises(PreconditionError, match="is queued; expected one of \\['scheduled'\\]"):
        store.transition(job.job_id, JobState.RUNNING, expect={JobState.SCHEDULED})


def test_schema_is_plain_sqlite(tmp_path):
    store = JobStore(tmp_path)
    _create(store)
    store.close()
    with sqlite3.connect(tmp_path / "bridge.sqlite3") as db:
        assert db.execute("SELECT project, shot, state FROM jobs").fetchall() == [("p", "s", "queued")]


def test_active_limit_is_counted_and_inserted_in_one_transaction(tmp_path):
    import threading

    from bridge.errors import LimitExceededError

    store = JobStore(tmp_path)
    barrier = threading.Barrier(32)
    outcomes = []

    def create(i):
        upload = store.new_upload_dir()
        (upload / "shot.pb").write_bytes(b"shot")
        barrier.wait(10)
        try:
            job, _ = store.create_job(upload, project="p", shot="s", version=1, request_id=f"r{i}", shot_sha256="aa",
                                      backend="guides", frame_count=3, work_estimate=3.0,
                                      generation=GenerationSettings(), scheduling=SchedulingSettings(),
                                      max_active=16)
            outcomes.append(job.job_id)
        except LimitExceededError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sum(isinstance(o, str) for o in outcomes) == 16 and len(outcomes) == 32
    assert store.count_active("p") == 16 and len(list(store.jobs_dir.iterdir())) == 16
    # the refused uploads are the caller's to delete; a retry of an admitted request id is never refused
    first = next(o for o in outcomes if isinstance(o, str))
    again, created = _create(store, request_id=store.get(first).request_id)
    assert not created and again.job_id == first
    with pytest.raises(LimitExceededError, match="max_active_jobs_per_project"):
        upload = store.new_upload_dir()
        store.create_job(upload, project="p", shot="s", version=1, request_id="late", shot_sha256="aa",
                         backend="guides", frame_count=3, work_estimate=3.0, generation=GenerationSettings(),
                         scheduling=SchedulingSettings(), max_active=16)
    assert store.find_by_request("p", "late") is None


def test_delete_job_removes_files_and_rows_of_an_ended_job_only(tmp_path):
    store = JobStore(tmp_path)
    job, _ = _create(store)
    record = FrameRecord(index=0, attempt=1, meter="m", energy_wh=0.5)
    store.add_frame(job.job_id, record, b"x" * 100)
    with pytest.raises(PreconditionError, match="cancel it first"):
        store.delete_job(job.job_id)
    store.transition(job.job_id, JobState.CANCELLED, "test")
    assert [j.job_id for j in store.ended_jobs()] == [job.job_id]
    assert store.ended_jobs(ended_before=0) == [] and store.ended_jobs(project="q") == []
    assert store.delete_job(job.job_id) == 100 + len(b"shot")
    assert not store.job_dir(job.job_id).exists() and store.list() == [] and store.frames(job.job_id) == []
