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
