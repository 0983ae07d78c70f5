"""Energy metering overhead: what one per-frame window costs, against a tiny job.

What is measured, on this machine:

1. ``per_window_ms``: the cost of one per-frame window as the executor takes
   it (``Window.lap()``: one meter read, the window arithmetic, the
   short-window check), for the meter ``best_meter()`` picks here (the
   headline) and, side by side, for RAPL on a FAKE powercap tree in a temp
   dir (real file reads of sysfs-shaped files: representative of the read
   path, not of the kernel's RAPL MSR access) and NVML on a FAKE function
   table (Python overhead only: a real ``nvmlDeviceGetTotalEnergyConsumption``
   is a driver call this machine cannot make). Median over WINDOW_REPEATS
   batches of WINDOWS_PER_BATCH laps.
2. ``overhead_fraction``: per-frame window cost x frames / the tiny job's
   run time. The tiny job is FRAMES frames, each a CPU workload standing in
   for one frame of a tiny model on CPU (a chain of 384x384 float32 matrix
   products, ~10-20 ms here). Also reported: the same job timed with and
   without windows, interleaved, REPEATS times each (``measured_delta``):
   noisier, so the headline uses the direct cost.

Targets (issue #5): per window < 1 ms; < 0.5 % of a tiny-model job.
Runs with no arguments in well under a minute; prints a table and ends with
one JSON line (DESIGN section 9).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bridge.energy.meters import Window, best_meter  # noqa: E402
from bridge.energy.nvml import NvmlMeter  # noqa: E402
from bridge.energy.rapl import RaplMeter  # noqa: E402

WINDOWS_PER_BATCH = 2000
WINDOW_REPEATS = 7
FRAMES = 48
REPEATS = 5
TARGET_WINDOW_MS = 1.0
TARGET_FRACTION = 0.005


class FakeNvml:
    """FAKE NVML function table (see module docstring): counters advance per call."""

    NVML_ERROR_NOT_SUPPORTED = 3

    class NVMLError(Exception):
        value = 0

    def __init__(self):
        self.mj = 0

    def nvmlInit(self): ...
    def nvmlShutdown(self): ...
    def nvmlDeviceGetCount(self): return 1
    def nvmlDeviceGetHandleByIndex(self, i): return i
    def nvmlDeviceGetName(self, h): return "NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        self.mj += 7
        return self.mj

    def nvmlDeviceGetPowerUsage(self, h): return 300_000


def fake_powercap(root: Path) -> Path:
    """FAKE powercap tree: two packages and a DRAM zone."""
    for entry, name in (("intel-rapl:0", "package-0"), ("intel-rapl:0:2", "dram"), ("intel-rapl:1", "package-1")):
        d = root / entry
        d.mkdir(parents=True)
        (d / "name").write_text(name + "\n")
        (d / "energy_uj").write_text("123456789\n")
        (d / "max_energy_range_uj").write_text("262143328850\n")
    return root


def window_cost_ms(meter) -> float:
    w = Window(meter).open()
    for _ in range(200):
        w.lap()
    batches = []
    for _ in range(WINDOW_REPEATS):
        t0 = time.perf_counter()
        for _ in range(WINDOWS_PER_BATCH):
            w.lap()
        batches.append((time.perf_counter() - t0) / WINDOWS_PER_BATCH * 1000.0)
    return statistics.median(batches)


def tiny_frame(a: np.ndarray) -> float:
    x = a
    for _ in range(8):
        x = np.tanh(x @ a)
    return float(x[0, 0])


def tiny_job(meter=None) -> float:
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((384, 384)) / 20).astype(np.float32)
    t0 = time.perf_counter()
    w = Window(meter).open() if meter is not None else None
    for _ in range(FRAMES):
        tiny_frame(a)
        if w is not None:
            w.lap()
    return time.perf_counter() - t0


def main() -> int:
    choice = best_meter()
    rows = [("best_meter() here: " + type(choice.meter).__name__, window_cost_ms(choice.meter), choice.meter)]
    with tempfile.TemporaryDirectory(prefix="greenlight-powercap-") as tmp:
        rapl = RaplMeter(fake_powercap(Path(tmp)))
        rows.append(("RAPL on a FAKE powercap tree (3 zones)", window_cost_ms(rapl), rapl))
    nvml = NvmlMeter(nvml=FakeNvml(), sample_interval_s=0)
    rows.append(("NVML on a FAKE function table (1 GPU)", window_cost_ms(nvml), nvml))
    nvml.close()

    tiny_job()   # warm-up
    plain, metered = [], []
    for _ in range(REPEATS):
        plain.append(tiny_job(None))
        metered.append(tiny_job(choice.meter))
    job_s = statistics.median(plain)
    per_window_ms = rows[0][1]
    fraction = per_window_ms / 1000.0 * FRAMES / job_s
    measured_delta = (statistics.median(metered) - job_s) / job_s

    print(f"meter chosen here: {choice.reason}")
    print()
    print(f"{'meter':52} {'per window ms':>14} {'vs target':>10}")
    print("-" * 78)
    for label, ms, _ in rows:
        print(f"{label:52} {ms:14.5f} {'ok' if ms < TARGET_WINDOW_MS else 'OVER':>10}")
    print()
    print(f"tiny job: {FRAMES} frames, median {job_s * 1000:.1f} ms ({job_s / FRAMES * 1000:.2f} ms a frame) "
          f"over {REPEATS} runs")
    print(f"metering overhead (direct: window cost x frames / job time): {fraction * 100:.4f} % "
          f"(target < {TARGET_FRACTION * 100:.1f} %)")
    print(f"metering overhead (timed with vs without windows, noisy): {measured_delta * 100:+.3f} %")
    result = {
        "per_window_ms": round(per_window_ms, 6),
        "overhead_fraction": round(fraction, 8),
        "meter": type(choice.meter).__name__,
        "measured": choice.meter.read().measured,
        "rapl_fake_tree_per_window_ms": round(rows[1][1], 6),
        "nvml_fake_table_per_window_ms": round(rows[2][1], 6),
        "tiny_job_ms": round(job_s * 1000, 3),
        "frames": FRAMES,
        "measured_delta_fraction": round(measured_delta, 6),
        "target_per_window_ms": TARGET_WINDOW_MS,
        "target_overhead_fraction": TARGET_FRACTION,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
