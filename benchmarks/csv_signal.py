"""CSV carbon-intensity trace lookups on a real year-long trace (DESIGN sections 6, 9).

Loads the GB 2020 trace from ``../shared/data/carbon-intensity/gb_2020.csv``
(real data, benchmark use only; never copied into the project) with
:class:`bridge.energy.signals.CsvTrace`, and a ~37k-row trace made of that
file followed by itself shifted by its own span (written to a temporary
folder, removed afterwards). For each it times construction (parse once),
``forecast()`` over a 24 h window at random starts and ``intensity()`` at
random times (medians of many calls, fixed seed), and prints the trace's
``status()``. Target: a day's forecast under 1 ms.

Ends with one JSON line (DESIGN section 9): ``forecast_call_ms``,
``intensity_call_us``, ``load_s``, ``rows`` for the 37k-row trace. Without the
data folder it says so and prints a JSON line with a ``skipped`` key (exit 0).
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _report import table  # benchmarks/_report.py (scripts run with benchmarks/ on sys.path)

from bridge.energy.signals import CsvTrace  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "carbon-intensity"
SOURCE = DATA / "gb_2020.csv"
TARGET_ROWS = 37_000
FORECAST_CALLS = 3000
INTENSITY_CALLS = 30_000
LOADS = 5
WINDOW = timedelta(hours=24)
SEED = 20200101


def doubled(source: Path, dest: Path, rows: int) -> Path:
    """``source`` then itself shifted by its span (first row to one step past
    the last), cut at ``rows`` rows: a longer trace with the same shape."""
    with source.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        body = [r for r in reader if r]
    times = [datetime.fromisoformat(r[0]) for r in body]
    shift = times[-1] - times[0] + (times[-1] - times[-2])
    out = [",".join(header)] + [",".join(r) for r in body]
    for t, r in zip(times, body):
        if len(out) > rows:
            break
        out.append(f"{t + shift:%Y-%m-%d %H:%M:%S},{r[1]}")
    dest.write_text("\n".join(out) + "\n", encoding="utf-8")
    return dest


def measure(path: Path, rng: np.random.Generator) -> dict:
    loads = []
    for _ in range(LOADS):
        t0 = time.perf_counter()
        trace = CsvTrace(path)
        loads.append(time.perf_counter() - t0)
    st = trace.status()
    first = datetime.fromisoformat(st["first"]).astimezone(UTC)
    end = datetime.fromisoformat(st["end"]).astimezone(UTC)
    span_s = (end - first - WINDOW).total_seconds()

    starts = [first + timedelta(seconds=float(x)) for x in rng.uniform(0, span_s, FORECAST_CALLS)]
    f_times, points = [], 0
    for a in starts:
        b = a + WINDOW
        t0 = time.perf_counter()
        pts = trace.forecast("GB", a, b)
        f_times.append(time.perf_counter() - t0)
        points += len(pts)

    ats = [first + timedelta(seconds=float(x)) for x in rng.uniform(0, (end - first).total_seconds() - 1,
                                                                     INTENSITY_CALLS)]
    i_times = []
    for at in ats:
        t0 = time.perf_counter()
        trace.intensity("GB", at)
        i_times.append(time.perf_counter() - t0)
    f_sorted = sorted(f_times)
    return {
        "rows": st["rows"], "step_s": st["step_s"], "gaps": st["gaps"], "carried": st["carried"],
        "first": st["first"], "end": st["end"],
        "load_s": statistics.median(loads),
        "forecast_call_ms": statistics.median(f_times) * 1e3,
        "forecast_p99_ms": f_sorted[int(0.99 * (len(f_sorted) - 1))] * 1e3,
        "forecast_points": points / len(starts),
        "intensity_call_us": statistics.median(i_times) * 1e6,
    }


def main() -> int:
    if not SOURCE.is_file():
        msg = f"carbon-intensity trace not found: {SOURCE} (benchmark data folder absent); nothing measured"
        print(msg)
        print(json.dumps({"skipped": msg}))
        return 0
    rng = np.random.default_rng(SEED)
    results = {}
    with tempfile.TemporaryDirectory(prefix="greenlight-csv-bench-") as tmp:
        big = doubled(SOURCE, Path(tmp) / "gb_2020_twice.csv", TARGET_ROWS)
        for label, path in (("gb_2020.csv", SOURCE), (f"gb_2020.csv x2 (first {TARGET_ROWS:,} rows)", big)):
            results[label] = measure(path, rng)
    print(f"CsvTrace on the real GB 2020 trace ({DATA}): {FORECAST_CALLS} forecast() calls over "
          f"{WINDOW.total_seconds() / 3600:g} h, "
          f"{INTENSITY_CALLS} intensity() calls at random times, {LOADS} loads each (medians)")
    print()
    print(table([(label, f"{r['rows']:,}", f"{r['step_s']:g}", r["gaps"], f"{r['load_s'] * 1e3:.0f}",
                  f"{r['forecast_call_ms']:.3f}", f"{r['forecast_p99_ms']:.3f}", f"{r['forecast_points']:.0f}",
                  f"{r['intensity_call_us']:.1f}") for label, r in results.items()],
                ("trace", "rows", "step s", "gaps", "load ms", "forecast ms", "p99 ms", "points", "intensity us")))
    big_r = list(results.values())[-1]
    ok = big_r["forecast_call_ms"] < 1.0
    print()
    print(f"coverage {big_r['first']} .. {big_r['end']}; day forecast {big_r['forecast_call_ms']:.3f} ms "
          f"(target < 1 ms: {'met' if ok else 'NOT met'})")
    print(json.dumps({
        "forecast_call_ms": round(big_r["forecast_call_ms"], 4),
        "forecast_p99_ms": round(big_r["forecast_p99_ms"], 4),
        "intensity_call_us": round(big_r["intensity_call_us"], 2),
        "load_s": round(big_r["load_s"], 4),
        "rows": big_r["rows"],
        "forecast_points": round(big_r["forecast_points"], 1),
        "gb_rows": results["gb_2020.csv"]["rows"],
        "gb_forecast_call_ms": round(results["gb_2020.csv"]["forecast_call_ms"], 4),
        "gb_load_s": round(results["gb_2020.csv"]["load_s"], 4),
        "target_met": ok,
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
