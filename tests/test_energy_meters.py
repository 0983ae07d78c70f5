"""Meters: RAPL on a fake powercap tree, NVML on a fake function table,
the estimate meter, nested windows and the chooser.

The powercap tree is a FAKE: plain files in a temp dir laid out like
/sys/class/powercap (this machine has no RAPL). The NVML table is a FAKE:
a recording stand-in for the ``pynvml`` module with the few calls the meter
makes (this machine has no GPU). Both show our arithmetic and wiring, not
the hardware's behaviour.
"""

from __future__ import annotations

import math
import os
import time

import pytest

from bridge.energy.meters import (
    CompositeMeter,
    CpuTimeEstimateMeter,
    EstimateMeter,
    MeterError,
    Reading,
    Window,
    best_meter,
    cpu_power,
    gpu_power,
    window_energy,
)
from bridge.energy.nvml import NvmlMeter
from bridge.energy.rapl import RaplMeter, discover

MAX_RANGE = 262_143_328_850


# ------------------------------------------------------------ fake sysfs
def _zone(root, entry, name, energy_uj, max_range=MAX_RANGE):
    d = root / entry
    d.mkdir(parents=True)
    (d / "name").write_text(name + "\n")
    (d / "energy_uj").write_text(f"{energy_uj}\n")
    (d / "max_energy_range_uj").write_text(f"{max_range}\n")
    return d


def _set(zone_dir, energy_uj):
    (zone_dir / "energy_uj").write_text(f"{energy_uj}\n")


@pytest.fixture
def powercap(tmp_path):
    """FAKE powercap: two packages, core/uncore subzones, DRAM, psys and an
    MMIO duplicate of package-0."""
    root = tmp_path / "powercap"
    (root / "intel-rapl").mkdir(parents=True)          # the control type: no counter
    (root / "intel-rapl" / "enabled").write_text("1\n")
    zones = {
        "pkg0": _zone(root, "intel-rapl:0", "package-0", MAX_RANGE - 1_000_000),   # 1 J before the wrap
        "core0": _zone(root, "intel-rapl:0:0", "core", 5_000_000),
        "uncore0": _zone(root, "intel-rapl:0:1", "uncore", 7_000_000),
        "dram0": _zone(root, "intel-rapl:0:2", "dram", 10_000_000, max_range=65_712_999_613),
        "pkg1": _zone(root, "intel-rapl:1", "package-1", 20_000_000),
        "psys": _zone(root, "intel-rapl:2", "psys", 30_000_000),
        "mmio0": _zone(root, "intel-rapl-mmio:0", "package-0", 123),
    }
    return root, zones


def test_rapl_discovery_dedups_and_skips_contained_domains(powercap):
    root, _ = powercap
    chosen, notes = discover(root)
    assert [label for label, _ in chosen] == ["package-0", "package-0/dram", "package-1"]
    assert any("intel-rapl-mmio:0" in n and "duplicate of package-0" in n for n in notes)
    assert any("intel-rapl:0:0 (core)" in n for n in notes)
    assert any("intel-rapl:2 (psys)" in n and "includes the packages" in n for n in notes)


def test_rapl_sums_packages_and_dram_across_a_wrap(powercap):
    root, z = powercap
    meter = RaplMeter(root)
    assert meter.name == "rapl:package-0+package-0/dram+package-1"
    first = meter.read()
    assert first.joules == 0 and first.measured and first.meter == meter.name

    _set(z["pkg0"], 2_000_000)          # wrapped: 1 J to the top, then 2 J
    _set(z["dram0"], 10_500_000)        # +0.5 J
    _set(z["pkg1"], 23_000_000)         # +3 J
    _set(z["core0"], 999_999_999)       # inside the package: must not count
    _set(z["psys"], 999_999_999)        # includes the packages: must not count
    _set(z["mmio0"], 999_999_999)       # duplicate: must not count
    second = meter.read()
    assert second.joules == pytest.approx(1.0 + 2.0 + 0.5 + 3.0, abs=1e-9)
    assert "counter-wrap" in second.flags
    assert dict(second.parts) == pytest.approx({"package-0": 3.0, "package-0/dram": 0.5, "package-1": 3.0})

    _set(z["pkg0"], 4_000_000)          # +2 J, no wrap
    third = meter.read()
    assert third.joules - second.joules == pytest.approx(2.0)
    assert "counter-wrap" not in third.flags
    w = window_energy(first, third)
    assert w.measured and w.joules == pytest.approx(8.5) and w.method == "counter delta"


def test_rapl_unreadable_counter_says_why(powercap):
    root, z = powercap
    if os.geteuid() == 0:
        # root reads anything: emulate the permission error with a directory
        (z["pkg0"] / "energy_uj").unlink()
        (z["pkg0"] / "energy_uj").mkdir()
        with pytest.raises(MeterError, match="cannot read the RAPL counter"):
            RaplMeter(root)
    else:
        (z["pkg0"] / "energy_uj").chmod(0)
        with pytest.raises(MeterError, match="root-only"):
            RaplMeter(root)


def test_rapl_missing_tree(tmp_path):
    with pytest.raises(MeterError, match="does not exist"):
        RaplMeter(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MeterError, match="no RAPL package or DRAM zones"):
        RaplMeter(tmp_path / "empty")


# ------------------------------------------------------------- fake NVML
class FakeNvml:
    """FAKE of the ``pynvml`` function table (only what NvmlMeter calls).

    Each device is a dict: name, energy_mj (None = counter not supported),
    power_mw. Tests move the counters and the clock by hand.
    """

    NVML_ERROR_NOT_SUPPORTED = 3

    class NVMLError(Exception):
        def __init__(self, value):
            super().__init__(f"NVML error {value}")
            self.value = value

    def __init__(self, devices):
        self.devices = devices
        self.calls: list[str] = []
        self.shutdown = False

    def nvmlInit(self):
        self.calls.append("init")

    def nvmlShutdown(self):
        self.shutdown = True

    def nvmlDeviceGetCount(self):
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetName(self, h):
        return self.devices[h]["name"].encode()     # old bindings return bytes

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        self.calls.append(f"energy:{h}")
        if self.devices[h]["energy_mj"] is None:
            raise self.NVMLError(self.NVML_ERROR_NOT_SUPPORTED)
        return self.devices[h]["energy_mj"]

    def nvmlDeviceGetPowerUsage(self, h):
        self.calls.append(f"power:{h}")
        return self.devices[h]["power_mw"]


class Clock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


def test_nvml_counter_deltas_per_gpu():
    nv = FakeNvml([{"name": "NVIDIA H100 80GB HBM3", "energy_mj": 5_000_000, "power_mw": 300_000},
                   {"name": "NVIDIA H100 80GB HBM3", "energy_mj": 9_000_000, "power_mw": 100_000}])
    clock = Clock()
    meter = NvmlMeter(nvml=nv, clock=clock)
    assert meter.name == "nvml:0+1" and meter.min_window_s == pytest.approx(0.1)
    a = meter.read()
    assert a.joules == 0 and a.measured and a.watts == pytest.approx(400.0)
    nv.devices[0]["energy_mj"] += 30_000      # 30 J
    nv.devices[1]["energy_mj"] += 12_500      # 12.5 J
    clock.t += 1.0
    b = meter.read()
    assert dict(b.parts) == pytest.approx({"nvml:0": 30.0, "nvml:1": 12.5})
    w = window_energy(a, b, meter.min_window_s)
    assert w.joules == pytest.approx(42.5) and w.measured and w.method == "counter delta"
    meter.close()
    assert nv.shutdown


def test_nvml_short_window_is_power_times_time_and_flagged():
    nv = FakeNvml([{"name": "NVIDIA A100-SXM4-80GB", "energy_mj": 1_000, "power_mw": 250_000}])
    clock = Clock()
    meter = NvmlMeter(nvml=nv, clock=clock)
    with Window(meter) as outer:
        start = meter.read()
        clock.t += 0.040                      # 40 ms: the counter has not moved
        nv.devices[0]["power_mw"] = 350_000
        end = meter.read()
        short = window_energy(start, end, meter.min_window_s)
        clock.t += 0.5
        nv.devices[0]["energy_mj"] += 150_000
    assert "short-window" in short.flags and short.measured
    assert short.joules == pytest.approx(0.5 * (250 + 350) * 0.040)   # 12 J, not the counter's 0
    assert "shorter than the 100 ms counter update" in short.method
    assert outer.result.joules == pytest.approx(150.0) and outer.result.method == "counter delta"


def test_nvml_counter_reset_is_flagged_not_negative():
    nv = FakeNvml([{"name": "NVIDIA L4", "energy_mj": 50_000, "power_mw": 30_000}])
    meter = NvmlMeter(nvml=nv, clock=Clock())
    a = meter.read()
    nv.devices[0]["energy_mj"] = 2_000       # driver reloaded
    b = meter.read()
    assert b.joules == pytest.approx(2.0) and "counter-reset" in b.flags
    assert window_energy(a, b).joules >= 0


def test_nvml_falls_back_to_integrating_power_samples():
    nv = FakeNvml([{"name": "Tesla T4", "energy_mj": None, "power_mw": 60_000}])
    clock = Clock()
    meter = NvmlMeter(nvml=nv, clock=clock, sample_interval_s=0)   # no thread: samples by hand
    assert "power integrated" in meter.name and meter.min_window_s == 0
    assert "integrating power samples" in meter.describe()
    a = meter.read()
    for watts in (60, 70, 70, 40):             # one sample every 0.25 s
        clock.t += 0.25
        nv.devices[0]["power_mw"] = watts * 1000
        meter.sample()
    clock.t += 0.5
    b = meter.read()                           # power still 40 W
    expected = 0.25 * (60 + 60) / 2 + 0.25 * (60 + 70) / 2 + 0.25 * 70 + 0.25 * (70 + 40) / 2 + 0.5 * 40
    assert b.joules - a.joules == pytest.approx(expected)
    assert b.measured and "power-integrated" in b.flags


def test_nvml_sampler_thread_integrates_between_reads():
    nv = FakeNvml([{"name": "Tesla T4", "energy_mj": None, "power_mw": 50_000}])
    meter = NvmlMeter(nvml=nv, sample_interval_s=0.01)
    try:
        a = meter.read()
        time.sleep(0.2)
        b = meter.read()
        samples = sum(1 for c in nv.calls if c == "power:0")
        assert samples >= 5                      # the thread sampled between the reads
        assert (b.joules - a.joules) == pytest.approx(50.0 * (b.t - a.t), rel=1e-6)
    finally:
        meter.close()


def test_nvml_unavailable_reasons():
    class Broken(FakeNvml):
        def nvmlInit(self):
            raise self.NVMLError(9)   # e.g. driver not loaded

    with pytest.raises(MeterError, match="NVML did not start"):
        NvmlMeter(nvml=Broken([]))
    with pytest.raises(MeterError, match="sees no GPU"):
        NvmlMeter(nvml=FakeNvml([]))


# ---------------------------------------------------------------- windows
class StepMeter:
    """FAKE meter: joules advance only when told."""

    def __init__(self, measured=True, name="step"):
        self.j = 0.0
        self.t = 1.0
        self.measured = measured
        self.name = name

    def read(self):
        return Reading(self.j, self.measured, self.name, t=self.t)


def test_windows_nest_and_laps_tile_the_job_window():
    m = StepMeter()
    job = Window(m).open()
    frames = Window(m).open()
    laps = []
    for joules in (1.0, 2.5, 0.25):
        with Window(m) as step:
            m.j += joules
            m.t += 1
        assert step.result.joules == pytest.approx(joules)
        laps.append(frames.lap())
    total = job.close()
    assert [w.joules for w in laps] == pytest.approx([1.0, 2.5, 0.25])
    assert math.fsum(w.joules for w in laps) == pytest.approx(total.joules) == pytest.approx(3.75)


def test_window_rejects_a_meter_going_backwards():
    m = StepMeter()
    w = Window(m).open()
    m.j -= 1
    with pytest.raises(MeterError, match="went backwards"):
        w.close()


def test_composite_is_estimated_if_any_part_is():
    gpu, cpu = StepMeter(True, "nvml:0"), StepMeter(False, "estimate: cpu")
    both = CompositeMeter([gpu, cpu])
    gpu.j, cpu.j = 10.0, 2.0
    r = both.read()
    assert r.joules == 12.0 and r.measured is False
    assert "nvml:0 (measured)" in r.meter and "estimate: cpu (estimated)" in r.meter
    assert CompositeMeter([gpu, StepMeter(True, "rapl:package-0")]).read().measured is True


# -------------------------------------------------------------- estimates
def test_estimate_meter_shared_device_charges_busy_time_only():
    clock = Clock(0.0)
    busy = {"s": 0.0}
    dev = cpu_power(threads=4)            # 4 x 3.5 W max, 4 x 0.74 W idle
    m = EstimateMeter(dev, lambda: busy["s"], "process CPU-seconds / threads", clock=clock)
    a = m.read()
    clock.t += 10.0
    busy["s"] += 2.0                       # 2 s of the whole device busy within 10 s
    b = m.read()
    assert b.measured is False and a.measured is False
    assert b.joules - a.joules == pytest.approx(14.0 * 2.0)      # idle time not charged
    assert "estimate:" in m.name and "TDP 14 W" in m.name and "Cloud Carbon Footprint" in m.name


def test_estimate_meter_reserved_gpu_charges_idle_too():
    clock = Clock(0.0)
    busy = {"s": 0.0}
    dev = gpu_power("NVIDIA H100 80GB HBM3")
    m = EstimateMeter(dev, lambda: busy["s"], "utilisation 100% assumed", reserved=True, clock=clock)
    clock.t += 10.0
    busy["s"] += 4.0
    assert m.read().joules == pytest.approx(700 * 4 + 70 * 6)
    assert "idle: assumption" in m.name


def test_gpu_table_matches_whole_words_and_refuses_unknown():
    assert gpu_power("NVIDIA L40S").tdp_w == 350          # not the L4 entry
    assert gpu_power("NVIDIA L4").tdp_w == 72
    assert gpu_power("NVIDIA A100-PCIE-40GB").tdp_w == 250
    assert gpu_power("NVIDIA H100 PCIe").tdp_w == 350
    with pytest.raises(MeterError, match="no power figures for GPU 'Voodoo 2'"):
        gpu_power("Voodoo 2")


def test_cpu_time_meter_is_never_measured():
    m = CpuTimeEstimateMeter()
    a = m.read()
    sum(i * i for i in range(200_000))
    b = m.read()
    assert a.measured is False and b.measured is False and "cpu-time-model" in b.meter
    assert b.joules > a.joules


# ----------------------------------------------------------------- chooser
def test_best_meter_prefers_nvml_plus_rapl(powercap):
    root, _ = powercap
    nv = FakeNvml([{"name": "NVIDIA H200", "energy_mj": 1, "power_mw": 1}])
    choice = best_meter(powercap_root=root, nvml=nv)
    assert isinstance(choice.meter, CompositeMeter)
    assert choice.reason.startswith("measured: NVML") and "RAPL" in choice.reason
    assert choice.meter.read().measured is True


def test_best_meter_rapl_when_no_gpu(powercap):
    root, _ = powercap
    choice = best_meter(powercap_root=root, nvml=FakeNvml([]))
    assert isinstance(choice.meter, RaplMeter)
    assert "NVML unavailable: NVML sees no GPU" in choice.reason


def test_best_meter_estimate_here_says_why(tmp_path):
    choice = best_meter(powercap_root=tmp_path / "none", nvml=FakeNvml([]))
    assert isinstance(choice.meter, CpuTimeEstimateMeter)
    assert choice.reason.startswith("estimated:")
    assert "NVML unavailable" in choice.reason and "RAPL unavailable" in choice.reason
    assert choice.meter.read().measured is False
    assert dict(choice.tried)["rapl"].startswith("unavailable")


def test_best_meter_without_nvidia_ml_py_installed(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pynvml(name, *a, **kw):
        if name == "pynvml":
            raise ImportError("no pynvml")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_pynvml)
    choice = best_meter(powercap_root=tmp_path)
    assert "pip install 'nvidia-ml-py" in dict(choice.tried)["nvml"]


def test_energy_package_imports_without_torch_bpy_grpc_or_nvml():
    import subprocess
    import sys

    code = ("import sys\n"
            "for m in ('torch', 'bpy', 'grpc', 'pynvml', 'matplotlib'): sys.modules[m] = None\n"
            "import bridge.energy.meters, bridge.energy.nvml, bridge.energy.rapl, bridge.energy.signals\n"
            "import bridge.energy.accounting, bridge.energy.attribution, bridge.energy.sites\n"
            "import bridge.energy.ledger, bridge.energy.report\n"
            "print(bridge.energy.meters.best_meter(powercap_root='/nonexistent').reason)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("estimated:") and "nvidia-ml-py is not installed" in out.stdout
