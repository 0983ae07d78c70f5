"""Fairness between projects (issue 13): the run queue takes projects in
turn (interactive before batch, a batch job at its latest safe start before
both), and a long resumable job yields between frames to another project's
waiting interactive job, then resumes from its stored frames."""

import time
from dataclasses import replace

from bridge.client import BridgeClient
from bridge.jobs.model import AttemptOutcome, JobState
from bridge.scheduling.executor import BATCH, INTERACTIVE, FairQueue
from bridge.shot.request import GenerationSettings
from bridge.shot.synthetic import sample_shot
from tests.helpers.backends import PacedBackend

PACED = GenerationSettings(backend="paced")


def _drain(q):
    out = []
    while len(q):
        out.append(q.get(timeout=1))
    return out


def test_projects_take_turns_interactive_first():
    q = FairQueue()
    for job in ("a1", "a2", "a3"):
        q.put(job, "a")
    q.put("b1", "b")
    q.put("a-batch", "a", BATCH)
    q.put("c1", "c")
    q.put("b2", "b")
    assert _drain(q) == ["a1", "b1", "c1", "a2", "b2", "a3", "a-batch"]


def test_a_project_that_just_ran_waits_behind_one_that_came_meanwhile():
    q = FairQueue()
    q.put("a1", "a")
    assert q.get(timeout=1) == "a1"      # a1 runs
    q.put("a2", "a")
    q.put("a3", "a")
    q.put("b1", "b")                     # came while a1 ran
    assert _drain(q) == ["b1", "a2", "a3"]


def test_batch_at_its_latest_start_goes_first_and_yielded_jobs_keep_their_place():
    q = FairQueue()
    q.put("i1", "a")
    q.put("late", "b", BATCH, urgent_at=time.time() - 1)
    q.put("early", "b", BATCH, urgent_at=time.time() + 3600)
    assert q.get(timeout=1) == "late"
    q.put("a2", "a")
    q.put("a-yielded", "a", INTERACTIVE, front=True)
    assert _drain(q) == ["a-yielded", "i1", "a2", "early"]
    assert q.get(timeout=0.05) is None and len(q) == 0
    q.put_stop()
    q.put("x", "a")
    assert q.get(timeout=1) is None      # a stop goes before any job


def _shot(project, frames):
    shot = sample_shot(frames=frames, width=32, height=18)
    return replace(shot, tags=replace(shot.tags, project=project))


def _wait(client, job_id, state, timeout=30.0):
    deadline = time.monotonic() + timeout
    while (job := client.job(job_id)).state != state:
        assert time.monotonic() < deadline, f"job {job_id} is {job.state}, never {state}"
        time.sleep(0.02)
    return job


def test_round_robin_order_through_the_bridge(start_bridge):
    backend = PacedBackend(frame_s=0.05)
    bridge = start_bridge(backends={"paced": backend})
    bridge.manager.executor.time_slice_s = None      # order only, no yielding
    with BridgeClient(bridge.address) as client:
        a = [client.submit(_shot("a", 4), PACED).job.job_id for _ in range(3)]
        b = client.submit(_shot("b", 4), PACED).job.job_id
        for job_id in (*a, b):
            _wait(client, job_id, JobState.COMPLETED)
    order = [job_id for job_id, _ in backend.runs]
    assert order.index(b) < order.index(a[2]), order      # b never waits for all of a's jobs
    assert order.index(b) <= 2


def test_long_job_yields_to_another_projects_interactive_job(start_bridge):
    backend = PacedBackend(frame_s=0.05)
    bridge = start_bridge(backends={"paced": backend})
    bridge.manager.executor.time_slice_s = 0.3
    store = bridge.manager.store
    with BridgeClient(bridge.address) as client:
        long = client.submit(_shot("long", 60), PACED).job.job_id          # ~3 s alone
        deadline = time.monotonic() + 10
        while client.job(long).frames_done < 3:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        t0 = time.monotonic()
        short = client.submit(_shot("short", 3), PACED).job.job_id
        _wait(client, short, JobState.COMPLETED)
        short_wait_s = time.monotonic() - t0
        assert client.job(long).state != JobState.COMPLETED        # it did not wait for the long job's end
        done = _wait(client, long, JobState.COMPLETED)
    assert short_wait_s < 2.0, short_wait_s
    assert done.frames_done == 60 and len(store.frames(long)) == 60
    attempts = store.attempts(long)
    assert attempts[0].outcome is AttemptOutcome.INTERRUPTED and f"yielded to job {short}" in attempts[0].reason
    assert attempts[-1].outcome is AttemptOutcome.COMPLETED
    runs = [done_before for job_id, done_before in backend.runs if job_id == long]
    assert len(runs) >= 2 and len(runs[1]) >= 3                 # resumed from its stored frames
    assert sum(a.frames for a in attempts) == 60                 # no frame made twice
    report = store.report(long)
    assert report is not None and report.frames == 60


def test_a_lone_project_never_yields(start_bridge):
    backend = PacedBackend(frame_s=0.02)
    bridge = start_bridge(backends={"paced": backend})
    bridge.manager.executor.time_slice_s = 0.05
    with BridgeClient(bridge.address) as client:
        jobs = [client.submit(_shot("solo", 12), PACED).job.job_id for _ in range(2)]
        for job_id in jobs:
            _wait(client, job_id, JobState.COMPLETED)
    store = bridge.manager.store
    assert all(len(store.attempts(j)) == 1 for j in jobs)     # same project waiting: no yield
