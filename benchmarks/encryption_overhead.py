"""Encryption at rest: what it costs to stream frames (docs/governance.md).

One bridge over loopback, two projects side by side in the same run:
"clear" (files in the clear) and "secret" (``encrypt = true``: every frame
file sealed with AES-256-GCM under the project's key, opened by the store
on every read). A benchmark-only backend emits the same FRAMES full-HD
frames of uniform random noise for both (fixed seed: PNG cannot shrink
them, both jobs move the same bytes). Once both jobs have COMPLETED we time
``BridgeClient.watch(job_id)`` from the request to the terminal event,
alternating the two jobs, REPEATS times each after one untimed warm-up of
each, and report the medians. Every frame a watch receives is checked to be
a PNG (an unopened sealed file would fail here, not pass as fast).

Also: the store's own read of one frame (``read_frame``: file read, plus
AES-GCM open for "secret"), median over every frame, to show where the
difference comes from.

Headline: ``ratio`` = secret seconds / clear seconds (1.0 = no cost).
Target: ratio <= 1.05 (at most 5 % slower). Ends with one JSON line.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")  # before grpc is imported

import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bridge.backends.base import Backend, BackendInfo, JobContext
from bridge.client.client import BridgeClient
from bridge.jobs.model import EventKind, JobState
from bridge.server.app import create_server
from bridge.server.config import BridgeConfig, ProjectSettings
from bridge.shot.request import GenerationSettings
from bridge.shot.synthetic import sample_shot

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import table  # noqa: E402

FRAMES = 24
WIDTH, HEIGHT = 1920, 1080
SEED = 20261201
REPEATS = 7
TARGET_RATIO = 1.05
MB = 1e6
PNG = b"\x89PNG\r\n\x1a\n"


class NoiseFramesBackend(Backend):
    """Benchmark only: one full-HD frame of random noise per shot frame (the same on every run)."""

    id = "noise-frames"

    def info(self) -> BackendInfo:
        return BackendInfo(id=self.id, description="benchmark: incompressible noise frames", conditions=(),
                           max_frames=10_000, max_width=8192, max_height=8192, devices=("cpu",))

    def run(self, shot, settings, ctx: JobContext) -> None:
        rng = np.random.default_rng(SEED)
        for i in range(shot.frame_count):
            ctx.frame(i, rng.integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8))
            ctx.progress(i + 1, shot.frame_count, "noise")


def wait_completed(client: BridgeClient, job_id: str, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (job := client.job(job_id)).state is not JobState.COMPLETED:
        if job.state.terminal or time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id} is {job.state.value}: {job.state_reason}")
        time.sleep(0.1)


def watch(client: BridgeClient, job_id: str) -> tuple[float, int]:
    payload = frames = 0
    t0 = time.perf_counter()
    for event in client.watch(job_id):
        if event.kind is EventKind.FRAME:
            if event.image[:8] != PNG:
                raise RuntimeError(f"job {job_id}: frame {event.frame.index} is not a PNG: the store did not "
                                   "open it (is WatchJob reading through JobStore.read_frame?)")
            payload += len(event.image)
            frames += 1
        if event.kind.terminal:
            break
    elapsed = time.perf_counter() - t0
    if frames != FRAMES:
        raise RuntimeError(f"job {job_id}: {frames} frames streamed, expected {FRAMES}")
    return elapsed, payload


def store_reads(store, job_id: str) -> float:
    """Median seconds of one ``read_frame`` over the job's frames."""
    times = []
    for record in store.frames(job_id):
        t0 = time.perf_counter()
        store.read_frame(job_id, record)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="gl-encryption-"))
    try:
        key_file = tmp / "keys" / "keys.toml"      # outside the data folder; the bridge makes the key
        config = BridgeConfig(data_dir=tmp / "data", port=0, meter="estimate", key_file=key_file,
                              projects={"secret": ProjectSettings(encrypt=True)})
        bridge = create_server(config, backends={"noise-frames": NoiseFramesBackend()})
        try:
            shot = sample_shot(frames=FRAMES, width=64, height=36)
            gen = GenerationSettings(backend="noise-frames")
            with BridgeClient(bridge.address, timeout_s=120) as client:
                jobs = {}
                for project in ("clear", "secret"):
                    jobs[project] = client.submit(shot.with_tags(project=project), gen).job.job_id
                    wait_completed(client, jobs[project])
                store = bridge.manager.store
                sealed = store.frame_file(jobs["secret"], store.frames(jobs["secret"])[0]).read_bytes()
                if sealed[:8] == PNG:
                    raise RuntimeError("the secret project's frame files are not encrypted on disk")
                for project in ("clear", "secret"):   # warm-up
                    watch(client, jobs[project])
                runs: dict[str, list[float]] = {"clear": [], "secret": []}
                payload = 0
                for i in range(REPEATS):
                    order = ("clear", "secret") if i % 2 == 0 else ("secret", "clear")
                    for project in order:
                        seconds, payload = watch(client, jobs[project])
                        runs[project].append(seconds)
                reads = {project: store_reads(store, jobs[project]) for project in ("clear", "secret")}
        finally:
            bridge.stop(grace=0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    clear_s, secret_s = statistics.median(runs["clear"]), statistics.median(runs["secret"])
    ratio = secret_s / clear_s
    medians = {project: statistics.median(times) for project, times in runs.items()}
    rows = [(project, f"{medians[project]:.3f}", f"{payload / medians[project] / MB:.0f}",
             f"{reads[project] * 1e3:.2f}") for project in ("clear", "secret")]
    print(f"{FRAMES} noise frames {WIDTH}x{HEIGHT} ({payload / MB:.0f} MB of PNG) per watch, median of {REPEATS}, "
          "loopback, one process")
    print(table(rows, ("project", "watch s", "MB/s", "read_frame ms")))
    verdict = "meets" if ratio <= TARGET_RATIO else "misses"
    print(f"\nratio (encrypted / clear) = {ratio:.3f}: {verdict} the target <= {TARGET_RATIO} "
          f"({(ratio - 1) * 100:+.1f} %)")
    print(json.dumps({"clear_s": round(clear_s, 4), "encrypted_s": round(secret_s, 4), "ratio": round(ratio, 4),
                      "clear_mb_s": round(payload / clear_s / MB, 1),
                      "encrypted_mb_s": round(payload / secret_s / MB, 1),
                      "read_frame_ms_clear": round(reads["clear"] * 1e3, 3),
                      "read_frame_ms_encrypted": round(reads["secret"] * 1e3, 3), "frames": FRAMES}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
