"""Carbon-aware scheduling through the real bridge: a batch job waits for the
greener window of a replayed trace, the plan survives a restart, a window
that passed while the bridge was down runs at once, run-now overrides, and
interactive jobs never touch the planned jobs."""

import time
from datetime import UTC, datetime, timedelta

import pytest

from bridge.client import BridgeClient, EventKind
from bridge.errors import InvalidArgumentError, PreconditionError
from bridge.jobs.model import JobState
from bridge.shot.request import SchedulingSettings

T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
DIP = T0 + timedelta(hours=3)          # 120 g/kWh for three hours, 400 elsewhere


class Clock:
    """A settable UTC clock for the scheduler (the rest of the bridge keeps real time)."""

    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def trace(tmp_path):
    path = tmp_path / "trace.csv"
    rows = ["Datetime (UTC),Country,Zone Name,Zone Id,Carbon Intensity gCO₂eq/kWh (direct)"]
    for h in range(-4, 40):
        t = T0 + timedelta(hours=h)
        rows.append(f"{t:%Y-%m-%d %H:%M:%S},World,World,WORLD,{120 if DIP <= t < DIP + timedelta(hours=3) else 400}")
    path.write_text("\n".join(rows) + "\n")
    return path


def _batch(hours=12):
    return SchedulingSettings(job_class="batch", deadline=T0 + timedelta(hours=hours))


def _wait_state(client, job_id, state, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.job(job_id)
        if job.state == state:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} is {job.state}, never {state}")


def test_batch_job_waits_for_the_greener_window_then_runs(start_bridge, small_shot, trace, tmp_path):
    clock = Clock(T0)
    bridge = start_bridge(carbon_signals=(f"csv:{trace}",), data_dir=tmp_path / "d")
    bridge.manager.scheduler.clock = clock
    with BridgeClient(bridge.address) as client:
        first = client.submit(small_shot).job               # interactive: runs now, builds history
        _wait_state(client, first.job_id, JobState.COMPLETED)
        job = client.submit(small_shot.with_tags(version=2), scheduling=_batch()).job
        assert job.state is JobState.SCHEDULED
        assert "waiting for a greener window" in job.scheduling_reason and "saves ~70%" in job.scheduling_reason
        assert job.decision is not None and job.decision.planned_start == DIP
        assert job.decision.planned_start.tzinfo is not None
        assert job.decision.expected_co2e_g == pytest.approx(job.decision.run_now_co2e_g * 120 / 400)
        time.sleep(1.0)
        assert client.job(job.job_id).state is JobState.SCHEDULED, "a planned job ran before its window"
        clock.now = DIP + timedelta(seconds=1)
        bridge.manager.scheduler.poke()
        _wait_state(client, job.job_id, JobState.COMPLETED)
        # the report carries the plan's facts the savings KPI needs
        facts = client.report(job.job_id).scheduling
        assert facts.job_class == "batch" and facts.shifted
        assert facts.run_now_co2e_g == pytest.approx(job.decision.run_now_co2e_g)
        assert facts.expected_co2e_g == pytest.approx(job.decision.expected_co2e_g)
        assert client.report(first.job_id).scheduling.job_class == "interactive"
        assert not client.report(first.job_id).scheduling.shifted


def test_plan_survives_restart_and_a_missed_window_runs_at_once(start_bridge, small_shot, trace, tmp_path):
    data = tmp_path / "d"
    bridge = start_bridge(carbon_signals=(f"csv:{trace}",), data_dir=data, clock=Clock(T0))
    with BridgeClient(bridge.address) as client:
        job = client.submit(small_shot, scheduling=_batch()).job
        assert job.state is JobState.SCHEDULED and "waiting" in job.scheduling_reason
    bridge.stop(grace=0)

    # back before the window: the plan is restored, the job keeps waiting
    bridge = start_bridge(carbon_signals=(f"csv:{trace}",), data_dir=data, clock=Clock(T0 + timedelta(minutes=30)))
    assert job.job_id in bridge.manager.scheduler.held()
    with BridgeClient(bridge.address) as client:
        time.sleep(0.5)
        restored = client.job(job.job_id)
        assert restored.state is JobState.SCHEDULED
        assert restored.decision is not None and restored.decision.planned_start == job.decision.planned_start
    bridge.stop(grace=0)

    # back after the window opened while it was down: it runs at once
    bridge = start_bridge(carbon_signals=(f"csv:{trace}",), data_dir=data, clock=Clock(DIP + timedelta(minutes=40)))
    with BridgeClient(bridge.address) as client:
        final = list(client.watch(job.job_id))[-1]
        assert final.kind is EventKind.COMPLETED


def test_run_now_overrides_the_plan(start_bridge, small_shot, trace, tmp_path):
    bridge = start_bridge(carbon_signals=(f"csv:{trace}",), clock=Clock(T0))
    with BridgeClient(bridge.address) as client:
        job = client.submit(small_shot, scheduling=_batch()).job
        assert job.state is JobState.SCHEDULED
        started = client.run_now(job.job_id)
        assert "started now by request" in started.scheduling_reason
        _wait_state(client, job.job_id, JobState.COMPLETED)
        with pytest.raises(PreconditionError, match="only a scheduled job can be started now"):
            client.run_now(job.job_id)


def test_deadline_too_close_is_refused_with_the_earliest_feasible(start_bridge, small_shot, trace):
    bridge = start_bridge(carbon_signals=(f"csv:{trace}",), clock=Clock(T0))
    with BridgeClient(bridge.address) as client:
        with pytest.raises(InvalidArgumentError, match="earliest feasible deadline"):
            client.submit(small_shot, scheduling=SchedulingSettings(
                job_class="batch", deadline=T0 + timedelta(minutes=5)))
        assert client.jobs("demo") == []        # nothing left behind


def test_provider_outage_falls_back_to_the_static_figure(start_bridge, small_shot, trace, tmp_path):
    bad = tmp_path / "broken.csv"
    bad.write_text("Datetime (UTC),Carbon Intensity gCO₂eq/kWh (direct)\n2020-01-01 00:00:00,120\n")
    bridge = start_bridge(carbon_signals=(f"csv:{bad}",), clock=Clock(T0))
    with BridgeClient(bridge.address) as client:
        job = client.submit(small_shot, scheduling=_batch()).job
        # the trace has nothing for these days: the static table answers, and the plan says so
        assert "runs now" in job.scheduling_reason
        assert "from static after: csv:broken.csv: trace has no values" in job.scheduling_reason
        _wait_state(client, job.job_id, JobState.COMPLETED)


def test_interactive_path_does_not_scan_planned_jobs(start_bridge, small_shot, trace, monkeypatch):
    bridge = start_bridge(carbon_signals=(f"csv:{trace}",), clock=Clock(T0))
    store = bridge.manager.store
    with BridgeClient(bridge.address) as client:
        for v in range(1, 6):
            client.submit(small_shot.with_tags(version=v), scheduling=_batch())
    calls = []
    original = store.list
    monkeypatch.setattr(store, "list", lambda *a, **k: calls.append(k) or original(*a, **k))
    bridge.manager.scheduler.plan_job(job_id="", backend="guides", work=1.0, job_class="interactive", deadline=None)
    assert calls == [], "the interactive path read the planned jobs"


def _two_zone_trace(tmp_path):
    path = tmp_path / "zones.csv"
    rows = ["Datetime (UTC),Country,Zone Name,Zone Id,Carbon Intensity gCO₂eq/kWh (direct)"]
    for h in range(-4, 40):
        t = T0 + timedelta(hours=h)
        rows.append(f"{t:%Y-%m-%d %H:%M:%S},GB,Great Britain,GB,300")
        rows.append(f"{t:%Y-%m-%d %H:%M:%S},FR,France,FR,{40 if DIP <= t < DIP + timedelta(hours=2) else 90}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_batch_jobs_go_to_the_greener_site_within_capacity(tmp_path):
    """The scheduler over two sites (the bridge runs remote sites on Ray; the
    plan itself is engine-free): the cleaner grid wins, and a full site
    pushes the next job to another window, never onto a busy device."""
    from bridge.energy.accounting import Site
    from bridge.jobs.store import JobStore
    from bridge.scheduling.scheduler import CarbonScheduler
    from bridge.server.config import build_signal

    store = JobStore(tmp_path / "d")
    released = []
    sites = [(Site(name="london", grid_region="GB"), 1), (Site(name="paris", grid_region="FR"), 1)]
    scheduler = CarbonScheduler(store, released.append, sites, build_signal((f"csv:{_two_zone_trace(tmp_path)}",)),
                                clock=Clock(T0))
    first = scheduler.plan_job(job_id="a", backend="guides", work=1.0, job_class="batch",
                               deadline=T0 + timedelta(hours=12), duration=timedelta(hours=1), energy_wh=1000)
    assert first.site == "paris" and first.planned_start == DIP
    assert first.expected_co2e_g == pytest.approx(40.0) and first.run_now_co2e_g == pytest.approx(300.0)
    # the interactive path prefers the first site and never waits
    now = scheduler.plan_job(job_id="i", backend="guides", work=1.0, job_class="interactive", deadline=None)
    assert now.site == "london" and now.planned_start == T0

    # promise paris's device for that window: the next job takes the rest of the dip, not the same slot
    from bridge.shot.request import GenerationSettings, SchedulingSettings

    upload = store.new_upload_dir()
    (upload / "shot.pb").write_bytes(b"x")
    job, _ = store.create_job(upload, project="p", shot="s", version=1, request_id="r", shot_sha256="00",
                              backend="guides", frame_count=1, work_estimate=1.0,
                              generation=GenerationSettings(), scheduling=SchedulingSettings())
    store.transition(job.job_id, JobState.SCHEDULED, decision=first)
    assert store.get(job.job_id).decision.planned_start == DIP
    second = scheduler.plan_job(job_id="b", backend="guides", work=1.0, job_class="batch",
                                deadline=T0 + timedelta(hours=12), duration=timedelta(hours=1), energy_wh=1000)
    assert second.site == "paris" and second.planned_start == DIP + timedelta(hours=1)


def test_remote_sites_need_the_ray_executor(tmp_path):
    from bridge.server.config import load_config

    cfg = tmp_path / "b.toml"
    cfg.write_text('[site]\nuse = "local"\n\n[[remote_sites]]\nuse = "ovh-gravelines"\ndevices = 2\n')
    with pytest.raises(InvalidArgumentError, match='remote_sites\\]\\] need executor = "ray"'):
        load_config(cfg)
    cfg.write_text('executor = "ray"\n[site]\nuse = "local"\ndevices = 4\n\n'
                   '[[remote_sites]]\nuse = "ovh-gravelines"\ndevices = 2\n')
    config = load_config(cfg)
    assert [(s.name, s.grid_region, n) for s, n in config.sites] == [("local", "WORLD", 4),
                                                                      ("ovh-gravelines", "FR", 2)]
    assert config.sites[1][0].pue == pytest.approx(1.26)


def test_a_batch_job_planned_behind_a_busy_device_starts_when_the_device_frees(start_bridge, small_shot, paced):
    """With no run history a job is assumed to take 10 minutes, so a batch
    job submitted while another runs is planned after it. When the running
    job ends early, the held job is re-planned at once (not at the next
    replan_every_s, 30 minutes by default) and starts."""
    from dataclasses import replace

    from bridge.shot.request import GenerationSettings

    paced.frame_s = 0.1
    bridge = start_bridge(backends={"paced": paced})     # default replan_every_s: 1800 s
    batch = SchedulingSettings(job_class="batch", deadline=datetime.now(UTC) + timedelta(hours=8))
    with BridgeClient(bridge.address) as client:
        first = client.submit(small_shot, GenerationSettings(backend="paced")).job
        deadline = time.monotonic() + 10
        while client.job(first.job_id).state is not JobState.RUNNING:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        second_shot = replace(small_shot, tags=replace(small_shot.tags, shot="sh020"))
        second = client.submit(second_shot, GenerationSettings(backend="paced"), scheduling=batch).job
        held = client.job(second.job_id)
        assert held.state is JobState.SCHEDULED and held.decision is not None
        assert held.decision.planned_start > datetime.now(UTC) + timedelta(minutes=1)   # behind the busy device
        deadline = time.monotonic() + 20
        while client.job(second.job_id).state is not JobState.COMPLETED:
            assert time.monotonic() < deadline, f"still {client.job(second.job_id).state} behind a free device"
            time.sleep(0.05)
        assert client.job(first.job_id).state is JobState.COMPLETED
