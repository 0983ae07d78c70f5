"""Carbon truth in the product, through a real bridge: the meter is chosen
automatically (NVML for the jobs' own GPUs first), every frame is priced with
its site's signal at the moment it was made, and "saved vs run at submit"
prices the same signal over the window the job would have had."""

import math
import time
from datetime import UTC, datetime, timedelta

import pytest

from bridge.client import BridgeClient, EventKind
from bridge.energy import nvml as nvml_module
from bridge.energy.meters import job_gpu_indices, meter_for
from bridge.errors import PreconditionError
from bridge.jobs.model import JobState
from bridge.shot.request import GenerationSettings, SchedulingSettings
from tests.helpers.backends import PacedBackend
from tests.test_energy_meters import FakeNvml


class CountingNvml(FakeNvml):
    """FAKE NVML (see tests/test_energy_meters.py) whose energy counters
    advance on every read: GPU 0 by 5 J, GPU 1 by 2 J."""

    STEP_MJ = {0: 5_000, 1: 2_000}

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        self.devices[h]["energy_mj"] += self.STEP_MJ[h]
        return super().nvmlDeviceGetTotalEnergyConsumption(h)


def test_job_gpu_indices_follow_the_device_and_cuda_visible_devices():
    assert job_gpu_indices({})[0] == [0]
    assert job_gpu_indices({"GREENLIGHT_DEVICE": "cuda:1"})[0] == [1]
    assert job_gpu_indices({"CUDA_VISIBLE_DEVICES": "3,1"})[0] == [3]
    assert job_gpu_indices({"CUDA_VISIBLE_DEVICES": "3,1", "GREENLIGHT_DEVICE": "cuda:1"})[0] == [1]
    assert job_gpu_indices({"CUDA_VISIBLE_DEVICES": "GPU-4b1e,GPU-77aa"})[0] is None   # UUIDs: all, said so
    indices, why = job_gpu_indices({"GREENLIGHT_DEVICE": "cpu"})
    assert indices == [] and "no GPU" in why


def test_meter_choice_is_explicit_when_insisted_on(tmp_path):
    assert meter_for("estimate").meter.name.startswith("cpu-time-model")
    with pytest.raises(Exception, match="powercap|RAPL|rapl"):
        meter_for("rapl", powercap_root=tmp_path / "none")
    nv = CountingNvml([{"name": "NVIDIA L4", "energy_mj": 0, "power_mw": 1}])
    with pytest.raises(Exception, match="GPU 2 is not there"):
        meter_for("nvml", nvml=nv, gpu_indices=[2])


def test_auto_meter_reads_nvml_for_the_jobs_own_gpu(start_bridge, small_shot, monkeypatch):
    nv = CountingNvml([{"name": "NVIDIA H100", "energy_mj": 0, "power_mw": 300_000},
                       {"name": "NVIDIA L4", "energy_mj": 0, "power_mw": 70_000}])
    monkeypatch.setattr(nvml_module, "load_nvml", lambda: nv)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")     # the backend's cuda:0 is the machine's GPU 1
    monkeypatch.delenv("GREENLIGHT_DEVICE", raising=False)
    bridge = start_bridge(meter="auto")
    with BridgeClient(bridge.address) as client:
        caps = client.capabilities()
        assert caps.meter.startswith("nvml:") and "measured" in caps.meter_reason
        assert "GPU 1" in caps.meter_reason and "GPU 0" not in caps.meter.replace("nvml:", "")
        job = client.submit(small_shot).job
        events = list(client.watch(job.job_id))
    assert events[-1].kind is EventKind.COMPLETED
    report = events[-1].report
    assert report.energy.measured and report.energy.meter == caps.meter
    assert all(f.measured and f.meter == caps.meter for f in report.per_frame)
    # only GPU 1 was read: GPU 0's counter never moved
    assert nv.devices[0]["energy_mj"] == 0 and nv.devices[1]["energy_mj"] > 0
    # and nothing was lost: the job's energy is what GPU 1's counter moved by during the job, at most
    assert 0 < report.energy.energy_wh <= nv.devices[1]["energy_mj"] / 3.6e6


def test_a_meter_that_cannot_be_had_stops_the_bridge_with_the_reason(start_bridge, monkeypatch):
    monkeypatch.setattr(nvml_module, "load_nvml", lambda: FakeNvml([]))
    with pytest.raises(PreconditionError, match="meter = 'nvml'.*no GPU"):
        start_bridge(meter="nvml")


def _per_second_trace(path, start: datetime, seconds: int):
    """A trace with a new value every second (realised history up to now)."""
    rows = ["Time,Carbon Intensity"]
    values = {}
    for s in range(seconds):
        t = start + timedelta(seconds=s)
        values[int(t.timestamp())] = v = 100.0 + (s * 37) % 400
        rows.append(f"{t:%Y-%m-%d %H:%M:%S},{v:g}")
    path.write_text("\n".join(rows) + "\n")
    return values


def test_every_frame_is_priced_at_its_own_moment(start_bridge, small_shot, tmp_path):
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    values = _per_second_trace(tmp_path / "trace.csv", start, 240)
    bridge = start_bridge(backends={"paced": PacedBackend(frame_s=0.45)},
                          carbon_signals=(f"csv:{tmp_path / 'trace.csv'}#Carbon Intensity",))
    with BridgeClient(bridge.address) as client:
        job = client.submit(small_shot, GenerationSettings(backend="paced")).job
        events = list(client.watch(job.job_id))
    report = events[-1].report
    assert report.state is JobState.COMPLETED
    seen = set()
    for f in report.per_frame:
        assert f.intensity_g_per_kwh == values[math.floor(f.created)], f
        assert "trace.csv" in f.intensity_source and f.intensity_kind in ("realised", "forecast")
        assert f.co2e_g_location == f.energy_wh * f.pue / 1000.0 * f.intensity_g_per_kwh
        seen.add(f.intensity_g_per_kwh)
    assert len(seen) >= 2, "the frames spanned several seconds of the trace: their prices differ"
    # the job total is the sum of its frames (and what its attempt used outside them)
    assert report.energy.co2e_g_location == math.fsum(
        [*(f.co2e_g_location for f in report.per_frame), *(a.unattributed_co2e_g_location for a in report.attempts)])
    assert sum(report.priced_from.values()) == pytest.approx(report.energy.energy_wh, rel=1e-12)
    assert "static" not in report.priced_from


def test_without_a_signal_frames_say_they_were_priced_at_the_static_figure(start_bridge, small_shot):
    bridge = start_bridge()
    with BridgeClient(bridge.address) as client:
        job = client.submit(small_shot).job
        report = list(client.watch(job.job_id))[-1].report
    assert {f.intensity_kind for f in report.per_frame} == {"static"}
    assert set(report.priced_from) == {"static"}


def test_an_unshifted_job_saves_exactly_nothing(start_bridge, small_shot, tmp_path):
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    _per_second_trace(tmp_path / "trace.csv", start, 240)
    bridge = start_bridge(carbon_signals=(f"csv:{tmp_path / 'trace.csv'}",))
    with BridgeClient(bridge.address) as client:
        job = client.submit(small_shot).job
        report = list(client.watch(job.job_id))[-1].report
    assert not report.scheduling.shifted
    assert report.scheduling.saved_g_vs_submit == 0.0


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


def test_a_shifted_job_saves_what_the_same_signal_says_it_would_have_cost_at_submit(start_bridge, small_shot,
                                                                                    tmp_path):
    t0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    dip = t0 + timedelta(hours=3)
    rows = ["Time,Carbon Intensity"]
    for h in range(-4, 40):
        t = t0 + timedelta(hours=h)
        rows.append(f"{t:%Y-%m-%d %H:%M:%S},{120 if dip <= t < dip + timedelta(hours=3) else 400}")
    (tmp_path / "trace.csv").write_text("\n".join(rows) + "\n")
    clock = Clock(t0)
    bridge = start_bridge(carbon_signals=(f"csv:{tmp_path / 'trace.csv'}",), clock=clock)
    with BridgeClient(bridge.address) as client:
        first = client.submit(small_shot).job                     # history for the estimates
        list(client.watch(first.job_id))
        job = client.submit(small_shot.with_tags(version=2), scheduling=SchedulingSettings(
            job_class="batch", deadline=t0 + timedelta(hours=12))).job
        assert job.state is JobState.SCHEDULED and job.decision.planned_start == dip
        clock.now = dip + timedelta(seconds=1)
        bridge.manager.scheduler.poke()
        deadline = time.monotonic() + 20
        while client.job(job.job_id).state is not JobState.COMPLETED and time.monotonic() < deadline:
            time.sleep(0.05)
        report = client.report(job.job_id)
    assert report.scheduling.shifted
    assert {f.intensity_g_per_kwh for f in report.per_frame} == {120.0}     # priced when it ran
    parts = [*((f.energy_wh, f.pue) for f in report.per_frame),
             *((a.unattributed_wh, a.pue) for a in report.attempts if a.unattributed_wh > 0)]
    had_it_run_at_submit = math.fsum(wh * pue / 1000.0 * 400.0 for wh, pue in parts)
    assert report.scheduling.saved_g_vs_submit == had_it_run_at_submit - math.fsum(
        [*(f.co2e_g_location for f in report.per_frame),
         *(a.unattributed_co2e_g_location for a in report.attempts if a.unattributed_wh > 0)])
    assert report.scheduling.saved_g_vs_submit > 0 and "realised" in report.scheduling.saved_basis


class DownSignal:
    """A carbon signal whose provider is down: counts how often it is asked."""

    name = "down"

    def __init__(self):
        self.calls = 0

    def intensity(self, region, at=None):
        from bridge.energy.signals import SignalError

        self.calls += 1
        raise SignalError(self.name, "provider timed out")

    def forecast(self, region, start, end):
        return self.intensity(region)


def test_a_signal_outage_prices_at_the_static_figure_without_asking_at_every_frame(start_bridge, small_shot):
    bridge = start_bridge()
    down = bridge.manager.executor.signal = DownSignal()
    with BridgeClient(bridge.address) as client:
        job = client.submit(small_shot).job
        report = list(client.watch(job.job_id))[-1].report
    assert report.state is JobState.COMPLETED and down.calls == 1     # not once per frame
    assert {f.intensity_kind for f in report.per_frame} == {"static"}
    assert all("signal unavailable: provider timed out" in f.intensity_source for f in report.per_frame)
