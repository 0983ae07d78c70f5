"""Frame streaming benchmark: how fast finished frames reach a client, and how
soon the first preview frame shows up after a submit.

Two measurements, both over loopback on this machine:

1. Throughput (``grpc_mb_s``, ``raw_mb_s``, ``ratio``). A benchmark-only
   backend, ``noise-frames``, emits N 1920x1080 RGB frames of uniform random
   noise (fixed seed, so PNG compression cannot shrink them and every run
   moves the same bytes). Once the job has COMPLETED (frame production is not
   part of the measurement) we time ``BridgeClient.watch(job_id)`` from the
   request to the terminal event and sum the PNG bytes of the FRAME events.
   Side by side, in the same run, a plain TCP server thread on 127.0.0.1
   sends the very same PNG files (read from the job's frame folder on each
   connection, as the bridge does) length-prefixed to a client socket that
   reads them all into memory, timed from connect to last byte. gRPC and raw
   are interleaved, THROUGHPUT_REPEATS (5) times each after one untimed
   warm-up of each; we report the median MB/s (MB = 1e6 bytes) and
   ratio = grpc / raw. Client and bridge share one process (and its GIL), as
   the raw client and server do.
   Target: gRPC streaming reaches at least 70 % of the raw socket copy
   (``ratio >= 0.7``).

2. First preview (``first_preview_s``). In a fresh bridge with the default
   ``guides`` backend, the time from calling ``client.submit(shot)`` on a
   48-frame 512x288 ``sample_shot`` (built once, outside the timing; a new
   request id each time) until the first FRAME event arrives from
   ``client.watch``: the guides frames are the instant preview. It includes
   the shot upload (~57 MB of passes) and server-side parse/validation.
   Median of PREVIEW_REPEATS (3) runs, each job drained before the next.
   Target: under 1 s.

Runs with no arguments in well under 3 minutes on 2 cores; prints a table
and ends with one JSON line of the headline figures (DESIGN section 9).
"""

from __future__ import annotations

import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")  # before grpc is imported

import json
import shutil
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bridge.backends import default_backends
from bridge.backends.base import Backend, BackendInfo, JobContext
from bridge.client.client import BridgeClient
from bridge.jobs.model import EventKind, JobState
from bridge.server.app import RunningBridge, create_server
from bridge.server.config import BridgeConfig
from bridge.shot.model import Shot
from bridge.shot.request import GenerationSettings
from bridge.shot.synthetic import sample_shot

NOISE_FRAMES = 48
NOISE_WIDTH, NOISE_HEIGHT = 1920, 1080
NOISE_SEED = 20240611
PREVIEW_FRAMES = 48
PREVIEW_WIDTH, PREVIEW_HEIGHT = 512, 288
THROUGHPUT_REPEATS = 5  # cheap (~1-2 s each); loopback on 2 cores is noisy
PREVIEW_REPEATS = 3
TARGET_RATIO = 0.7
TARGET_FIRST_PREVIEW_S = 1.0
MB = 1e6
_LEN = struct.Struct("!Q")


class NoiseFramesBackend(Backend):
    """Benchmark only: one full-HD frame of random noise per shot frame,
    ignoring the passes; the same pixels on every run (fixed seed)."""

    id = "noise-frames"

    def __init__(self, width: int = NOISE_WIDTH, height: int = NOISE_HEIGHT, seed: int = NOISE_SEED):
        self.width, self.height, self.seed = width, height, seed

    def info(self) -> BackendInfo:
        return BackendInfo(id=self.id, description="benchmark: incompressible noise frames",
                           conditions=(), max_frames=10_000, max_width=8192, max_height=8192, devices=("cpu",))

    def run(self, shot: Shot, settings: GenerationSettings, ctx: JobContext) -> None:
        rng = np.random.default_rng(self.seed)
        total = shot.frame_count
        for i, frame in enumerate(shot.frames):
            if ctx.cancelled:
                return
            rgb = rng.integers(0, 256, size=(self.height, self.width, 3), dtype=np.uint8)
            ctx.frame(frame.index, rgb, work=1.0)
            ctx.progress(i + 1, total, "noise")


# ---------------------------------------------------------------- helpers
def start_bridge(data_dir: Path, backends: dict[str, Backend] | None = None) -> RunningBridge:
    return create_server(BridgeConfig(data_dir=data_dir, port=0), backends=backends)


def wait_completed(client: BridgeClient, job_id: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.job(job_id)
        if job.state is JobState.COMPLETED:
            return
        if job.state.terminal:
            raise RuntimeError(f"job {job_id} ended {job.state.value}: {job.state_reason}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {job.state.value} after {timeout_s:.0f} s")
        time.sleep(0.1)


def grpc_transfer(client: BridgeClient, job_id: str) -> tuple[float, int, int]:
    """(seconds, PNG bytes, frames) for one watch of a completed job."""
    payload = frames = 0
    t0 = time.perf_counter()
    for event in client.watch(job_id):
        if event.kind is EventKind.FRAME:
            payload += len(event.image)
            frames += 1
        if event.kind.terminal:
            break
    return time.perf_counter() - t0, payload, frames


class RawServer:
    """Accepts connections on 127.0.0.1; to each sends every file in ``paths``
    (read from disk for that connection) as an 8-byte length then the bytes,
    then closes."""

    def __init__(self, paths: list[Path]):
        self.paths = paths
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="raw-tcp", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            with conn:
                for path in self.paths:
                    data = path.read_bytes()
                    conn.sendall(_LEN.pack(len(data)))
                    conn.sendall(data)

    def close(self) -> None:
        self.sock.close()
        self._thread.join(2.0)


def _recv_exact(sock: socket.socket, n: int) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise ConnectionError(f"raw: connection closed after {got} of {n} bytes")
        got += k
    return buf


def raw_transfer(port: int, count: int) -> tuple[float, int, int]:
    """(seconds, payload bytes, frames): connect, read ``count`` framed files into memory."""
    received = []
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        for _ in range(count):
            (n,) = _LEN.unpack(_recv_exact(sock, _LEN.size))
            received.append(_recv_exact(sock, n))
    elapsed = time.perf_counter() - t0
    return elapsed, sum(len(b) for b in received), len(received)


# ---------------------------------------------------------------- measurements
def measure_throughput(tmp: Path) -> dict:
    backends = {"noise-frames": NoiseFramesBackend(), **default_backends()}
    bridge = start_bridge(tmp / "throughput", backends)
    raw = None
    try:
        with BridgeClient(bridge.address) as client:
            shot = sample_shot(frames=NOISE_FRAMES, width=64, height=36)
            t0 = time.perf_counter()
            job_id = client.submit(shot, GenerationSettings(backend="noise-frames")).job.job_id
            wait_completed(client, job_id)
            produce_s = time.perf_counter() - t0
            records = bridge.manager.store.frames(job_id)
            if len(records) != NOISE_FRAMES:
                raise RuntimeError(f"expected {NOISE_FRAMES} stored frames, got {len(records)}")
            paths = [bridge.manager.store.frame_file(job_id, r) for r in records]
            sizes = [p.stat().st_size for p in paths]
            total_bytes = sum(sizes)
            raw = RawServer(paths)

            grpc_runs, raw_runs = [], []
            for rep in range(THROUGHPUT_REPEATS + 1):  # rep 0 = untimed warm-up of each
                g_s, g_bytes, g_frames = grpc_transfer(client, job_id)
                r_s, r_bytes, r_frames = raw_transfer(raw.port, len(paths))
                if (g_bytes, g_frames) != (total_bytes, NOISE_FRAMES):
                    raise RuntimeError(f"gRPC got {g_frames} frames / {g_bytes} B, expected "
                                       f"{NOISE_FRAMES} / {total_bytes}")
                if (r_bytes, r_frames) != (total_bytes, NOISE_FRAMES):
                    raise RuntimeError(f"raw got {r_frames} frames / {r_bytes} B, expected "
                                       f"{NOISE_FRAMES} / {total_bytes}")
                if rep > 0:
                    grpc_runs.append(g_bytes / MB / g_s)
                    raw_runs.append(r_bytes / MB / r_s)
        grpc_mb_s = statistics.median(grpc_runs)
        raw_mb_s = statistics.median(raw_runs)
        return {
            "frames": NOISE_FRAMES,
            "frame_bytes_mean": total_bytes / len(sizes),
            "total_bytes": total_bytes,
            "produce_s": produce_s,
            "grpc_runs_mb_s": grpc_runs,
            "raw_runs_mb_s": raw_runs,
            "grpc_mb_s": grpc_mb_s,
            "raw_mb_s": raw_mb_s,
            "ratio": grpc_mb_s / raw_mb_s,
        }
    finally:
        if raw is not None:
            raw.close()
        bridge.stop()


def measure_first_preview(tmp: Path) -> dict:
    shot = sample_shot(frames=PREVIEW_FRAMES, width=PREVIEW_WIDTH, height=PREVIEW_HEIGHT)
    bridge = start_bridge(tmp / "preview")  # fresh bridge, default backends (guides)
    try:
        runs, submits, jobs_s = [], [], []
        with BridgeClient(bridge.address) as client:
            for _ in range(PREVIEW_REPEATS):
                t0 = time.perf_counter()
                job_id = client.submit(shot).job.job_id
                t_submit = time.perf_counter() - t0
                first = None
                for event in client.watch(job_id):
                    if first is None and event.kind is EventKind.FRAME:
                        first = time.perf_counter() - t0
                    if event.kind.terminal:
                        if event.kind is not EventKind.COMPLETED:
                            raise RuntimeError(f"preview job {job_id} ended {event.kind.value}: {event.message}")
                        break
                # the whole job is drained before the next run so it never queues behind this one
                jobs_s.append(time.perf_counter() - t0)
                if first is None:
                    raise RuntimeError(f"preview job {job_id} completed without a FRAME event")
                runs.append(first)
                submits.append(t_submit)
        return {
            "first_preview_runs_s": runs,
            "submit_runs_s": submits,
            "job_runs_s": jobs_s,
            "first_preview_s": statistics.median(runs),
        }
    finally:
        bridge.stop()


def main() -> int:
    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="greenlight-bench-stream-"))
    try:
        t_start = time.perf_counter()
        thr = measure_throughput(tmp)
        pre = measure_first_preview(tmp)
        total_s = time.perf_counter() - t_start
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    fmt = lambda xs, f="{:.1f}": ", ".join(f.format(x) for x in xs)  # noqa: E731
    print(f"stream_frames: {thr['frames']} noise frames {NOISE_WIDTH}x{NOISE_HEIGHT}, "
          f"mean PNG {thr['frame_bytes_mean'] / MB:.2f} MB, {thr['total_bytes'] / MB:.0f} MB a transfer "
          f"(produced in {thr['produce_s']:.1f} s, not timed)")
    print()
    print(f"{'measurement':<34}{'median':>10}  {'target':>10}  runs")
    print("-" * 80)
    print(f"{'gRPC WatchJob (MB/s)':<34}{thr['grpc_mb_s']:>10.1f}  {'':>10}  {fmt(thr['grpc_runs_mb_s'])}")
    print(f"{'raw TCP socket (MB/s)':<34}{thr['raw_mb_s']:>10.1f}  {'':>10}  {fmt(thr['raw_runs_mb_s'])}")
    ok_ratio = "ok" if thr["ratio"] >= TARGET_RATIO else "MISS"
    print(f"{'ratio gRPC/raw':<34}{thr['ratio']:>10.3f}  {'>= ' + str(TARGET_RATIO):>10}  {ok_ratio}")
    ok_prev = "ok" if pre["first_preview_s"] < TARGET_FIRST_PREVIEW_S else "MISS"
    print(f"{'first preview frame (s)':<34}{pre['first_preview_s']:>10.3f}  "
          f"{'< ' + str(TARGET_FIRST_PREVIEW_S):>10}  {fmt(pre['first_preview_runs_s'], '{:.3f}')}  {ok_prev}")
    print(f"{'  of which submit() (s)':<34}{statistics.median(pre['submit_runs_s']):>10.3f}  "
          f"{'':>10}  {fmt(pre['submit_runs_s'], '{:.3f}')}")
    print(f"{'  whole 48-frame guides job (s)':<34}{statistics.median(pre['job_runs_s']):>10.3f}  "
          f"{'':>10}  {fmt(pre['job_runs_s'], '{:.3f}')}")
    print(f"(total {total_s:.1f} s; 1-min load average {load_before:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after, on {os.cpu_count()} CPUs: other load skews these figures)")

    result = {
        "grpc_mb_s": round(thr["grpc_mb_s"], 2),
        "raw_mb_s": round(thr["raw_mb_s"], 2),
        "ratio": round(thr["ratio"], 4),
        "first_preview_s": round(pre["first_preview_s"], 4),
        "frames": thr["frames"],
        "frame_bytes_mean": round(thr["frame_bytes_mean"], 1),
        "target_ratio": TARGET_RATIO,
        "target_first_preview_s": TARGET_FIRST_PREVIEW_S,
        "grpc_runs_mb_s": [round(x, 2) for x in thr["grpc_runs_mb_s"]],
        "raw_runs_mb_s": [round(x, 2) for x in thr["raw_runs_mb_s"]],
        "first_preview_runs_s": [round(x, 4) for x in pre["first_preview_runs_s"]],
        "submit_s": round(statistics.median(pre["submit_runs_s"]), 4),
        "load_avg_1m": round(load_before, 2),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
