"""Load benchmark: does the bridge stay responsive with many open streams?

A real bridge runs in its own process (``python -m bridge.cli serve`` on a
free loopback port, a temp data folder, the CPU-time energy estimate, and
the test suite's ``paced`` backend loaded through ``extra_backends`` so that
frames come at a steady pace: one every ``--frame-s`` seconds). After one
warm-up job and an idle baseline, for each N in ``--watchers`` (8, 32, 128):

1. one paced job of F = seconds / frame_s frames is submitted (64x36);
2. ``--uploads`` (64) stalled uploads are opened: SubmitShot with a complete,
   valid header (project, frame count, resolution, shot bytes, SHA-256 of a
   real shot, a paced generation request), then silence;
3. N watchers open WatchJob on the job from frame 0 and read to its end;
4. while they are open, one dedicated thread with its own channel calls
   health Check and GetCapabilities back to back (20 ms apart, each with a
   ``--probe-timeout`` deadline: a call past it counts as that long);
5. a sampler reads the server's /proc/PID/status (VmRSS, VmHWM, Threads)
   and /proc/PID/stat (CPU) every 50 ms.

The streams are closed when every watcher has its final event, or at the
phase deadline (F x frame_s + grace); then the job must end and the stalled
uploads' temp folders must be gone. Each watcher checks it got every frame
index exactly once: ``lost_frames`` counts indices missing from watchers
that received the final event (the server skipped a frame), and
``undelivered_frames`` those missing from watchers still waiting at the
deadline (``unfinished_watchers``: the server never served them in time).

Client side: one asyncio loop (grpc.aio) holds every watcher and upload,
spread over channels of 16 streams; the probe is a separate thread with a
blocking channel of its own, so a busy loop delays it by little more than
the GIL switch interval (5 ms). The client's own CPU use is printed: near
100 % of a core it would be the bottleneck.

Targets (issue 13): health/GetCapabilities p99 < 100 ms with 128 watchers
+ 64 stalled uploads, 0 frames lost or duplicated (and every watcher
served), server RSS growth <= RSS_BOUND_KB_PER_STREAM (256 KiB) per open
stream over idle.

``lost_frames``, ``duplicated_frames`` and ``unfinished_watchers`` in the
JSON line are summed over every N; the latency, first-frame and RSS figures
are the largest N's (per-N figures under ``runs``).

``--server-src DIR`` runs the bridge from another source tree (for example
``git archive <commit> | tar -x -C DIR``) for before/after figures on the
same machine; the client side is always this checkout's.

Runs with no arguments in about a minute on 2 cores (up to ~2 minutes
against a bridge that stalls: each N then runs to its deadline);
``--quick`` (4 s per N) in 20-40 s. Prints a table and ends with one JSON
line (DESIGN section 9).
"""

from __future__ import annotations

import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")  # before grpc is imported

import argparse
import asyncio
import hashlib
import json
import math
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import grpc  # noqa: E402
import grpc.aio  # noqa: E402
from _report import table  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from bridge.jobs.model import JobState  # noqa: E402
from bridge.proto.greenlight.v1 import bridge_pb2, bridge_pb2_grpc, shot_pb2  # noqa: E402
from bridge.shot.request import GenerationSettings, SchedulingSettings  # noqa: E402
from bridge.shot.synthetic import sample_shot  # noqa: E402
from bridge.shot.wire import generation_to_pb, scheduling_to_pb, shot_to_pb  # noqa: E402

# the JobEvent kinds that end a watch (the oneof's last three fields: completed, failed, cancelled)
FINAL_EVENTS = tuple(f.name for f in bridge_pb2.JobEvent.DESCRIPTOR.oneofs_by_name["kind"].fields)[-3:]
COMPLETED_EVENT = FINAL_EVENTS[0]

TARGET_P99_MS = 100.0
RSS_BOUND_KB_PER_STREAM = 256.0
STREAMS_PER_CHANNEL = 16
PROBE_GAP_S = 0.02
SAMPLE_EVERY_S = 0.05
WIDTH, HEIGHT = 64, 36
PROJECT = "demo"
PACED = "tests.helpers.backends:PacedBackend"
_CHANNEL_OPTIONS = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", -1)]


# ---------------------------------------------------------------- the server process
class Server:
    """``python -m bridge.cli serve`` in its own process, its /proc figures."""

    def __init__(self, tmp: Path, frame_s: float, source: Path = REPO):
        self.data_dir = tmp / "data"
        config = tmp / "bridge.toml"
        config.write_text(f'meter = "estimate"\nextra_backends = ["{PACED}"]\n')
        self.log_path = tmp / "server.log"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(source), os.environ.get("PYTHONPATH", "")]),
                   GREENLIGHT_TEST_FRAME_S=str(frame_s), GRPC_ENABLE_FORK_SUPPORT="0")
        self._log = open(self.log_path, "w")   # closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bridge.cli", "serve", "--config", str(config), "--data-dir", str(self.data_dir),
             "--host", "127.0.0.1", "--port", "0"],
            cwd=source, env=env, stdout=subprocess.PIPE, stderr=self._log, text=True)
        self.pid = self.proc.pid
        lines: queue.Queue[str] = queue.Queue()

        def read_stdout() -> None:
            for line in self.proc.stdout or ():
                lines.put(line)

        threading.Thread(target=read_stdout, name="server-stdout", daemon=True).start()
        deadline = time.monotonic() + 60
        self.address = ""
        while not self.address:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                line = ""
            if "listening on " in line:
                self.address = line.split("listening on ")[1].split()[0]
            elif self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the bridge did not start; its log ends:\n{self.log_tail()}")

    def status(self) -> dict[str, int]:
        """VmRSS and VmHWM (kB) and Threads from /proc/PID/status."""
        out = {}
        with open(f"/proc/{self.pid}/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM", "Threads"):
                    out[key] = int(value.split()[0])
        return out

    def cpu_s(self) -> float:
        with open(f"/proc/{self.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")   # utime + stime

    def incoming(self) -> list[str]:
        folder = self.data_dir / "incoming"
        return sorted(p.name for p in folder.iterdir()) if folder.exists() else []

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


class Sampler:
    """The server's RSS, threads and CPU every SAMPLE_EVERY_S, in a thread."""

    def __init__(self, server: Server):
        self.server = server
        self.rss_kb: list[int] = []
        self.threads: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self.t0, self.cpu0 = time.perf_counter(), self.server.cpu_s()
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            s = self.server.status()
            self.rss_kb.append(s["VmRSS"])
            self.threads.append(s["Threads"])
            self._stop.wait(SAMPLE_EVERY_S)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        self.wall_s = time.perf_counter() - self.t0
        self.cpu_pct = 100.0 * (self.server.cpu_s() - self.cpu0) / self.wall_s


# ---------------------------------------------------------------- the probe
class Probe:
    """Health Check and GetCapabilities, alternately, on one dedicated
    blocking channel in its own thread, until stopped."""

    def __init__(self, address: str, timeout_s: float):
        self.timeout_s = timeout_s
        self.channel = grpc.insecure_channel(address, options=_CHANNEL_OPTIONS)
        grpc.channel_ready_future(self.channel).result(timeout=10)
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self.bridge = bridge_pb2_grpc.BridgeStub(self.channel)
        self.samples: dict[str, list[float]] = {"health": [], "capabilities": []}
        self.timeouts = {"health": 0, "capabilities": 0}
        self.errors: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def call(self, kind: str) -> None:
        t0 = time.perf_counter()
        try:
            if kind == "health":
                self.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=self.timeout_s)
            else:
                self.bridge.GetCapabilities(bridge_pb2.GetCapabilitiesRequest(), timeout=self.timeout_s)
            self.samples[kind].append(time.perf_counter() - t0)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
            if code is grpc.StatusCode.DEADLINE_EXCEEDED:
                self.timeouts[kind] += 1
                self.samples[kind].append(self.timeout_s)    # at least this long
            else:
                self.errors[f"{kind}:{code.name}"] = self.errors.get(f"{kind}:{code.name}", 0) + 1

    def start(self) -> Probe:
        for kind in self.samples:
            self.samples[kind].clear()
            self.timeouts[kind] = 0
        self.errors.clear()
        self._stop.clear()

        def run():
            while not self._stop.is_set():
                self.call("health")
                self.call("capabilities")
                self._stop.wait(PROBE_GAP_S)

        self._thread = threading.Thread(target=run, name="probe", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout_s * 2 + 5)

    def close(self) -> None:
        self.channel.close()


# ---------------------------------------------------------------- streams
@dataclass
class Watcher:
    frame_count: int
    opened: float = 0.0
    first_event_s: float | None = None
    first_frame_s: float | None = None
    indices: list[int] = field(default_factory=list)
    final: str = ""          # completed / failed / cancelled, or "" while none came
    error: str = ""          # a gRPC status code name when the stream failed

    async def run(self, stub: bridge_pb2_grpc.BridgeStub, job_id: str) -> None:
        self.opened = time.perf_counter()
        call = stub.WatchJob(bridge_pb2.WatchJobRequest(job_id=job_id))
        try:
            async for msg in call:
                now = time.perf_counter() - self.opened
                if self.first_event_s is None:
                    self.first_event_s = now
                kind = msg.WhichOneof("kind")
                if kind == "frame":
                    if self.first_frame_s is None:
                        self.first_frame_s = now
                    self.indices.append(msg.frame.index)
                elif kind in FINAL_EVENTS:
                    self.final = kind
                    return
        except grpc.aio.AioRpcError as exc:
            self.error = exc.code().name
        finally:
            call.cancel()

    @property
    def missing(self) -> int:
        return len(set(range(self.frame_count)) - set(self.indices))

    @property
    def duplicated(self) -> int:
        return len(self.indices) - len(set(self.indices))

    @property
    def unexpected(self) -> int:
        return sum(1 for i in set(self.indices) if not 0 <= i < self.frame_count)


def stalled_header(frames: int = 4) -> bridge_pb2.SubmitChunk:
    """A header that passes every header check (a real shot's size and
    SHA-256, its project, frame count and resolution, a paced request)."""
    shot = sample_shot(frames=frames, width=WIDTH, height=HEIGHT, project_name=PROJECT)
    data = shot_to_pb(shot).SerializeToString()
    return bridge_pb2.SubmitChunk(header=bridge_pb2.SubmitHeader(
        request_id=uuid.uuid4().hex, generation=generation_to_pb(GenerationSettings(backend="paced")),
        scheduling=scheduling_to_pb(SchedulingSettings()), shot_bytes=len(data),
        shot_sha256=hashlib.sha256(data).digest(), project=PROJECT, frame_count=shot.frame_count,
        resolution=shot_pb2.Resolution(width=WIDTH, height=HEIGHT)))


async def stalled_upload(stub: bridge_pb2_grpc.BridgeStub, header: bridge_pb2.SubmitChunk, opened: asyncio.Event,
                         release: asyncio.Event) -> str:
    """Send the header, then nothing until ``release``. Returns "" when the
    upload was still open then, else the status the server ended it with."""
    call = stub.SubmitShot()
    try:
        await call.write(header)
    except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as exc:
        opened.set()
        return exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else "ENDED"
    opened.set()
    ended = asyncio.ensure_future(call.code())       # resolves when the call ends, whoever ends it
    released = asyncio.ensure_future(release.wait())
    await asyncio.wait({ended, released}, return_when=asyncio.FIRST_COMPLETED)
    outcome = ended.result().name if ended.done() else ""
    call.cancel()
    released.cancel()
    await asyncio.gather(ended, released, return_exceptions=True)
    return outcome


def channels_for(address: str, streams: int) -> list[grpc.aio.Channel]:
    return [grpc.aio.insecure_channel(address, options=_CHANNEL_OPTIONS)
            for _ in range(max(1, math.ceil(streams / STREAMS_PER_CHANNEL)))]


async def open_streams(address: str, job_id: str, watchers: list[Watcher], uploads: int, deadline_s: float,
                       probe: Probe) -> dict:
    """Open the stalled uploads, then the watchers; probe while they are
    open; close everything at the end or the deadline."""
    up_channels, w_channels = channels_for(address, uploads), channels_for(address, len(watchers))
    try:
        release = asyncio.Event()
        header = stalled_header()
        opened = [asyncio.Event() for _ in range(uploads)]
        upload_tasks = []
        for i in range(uploads):
            chunk = bridge_pb2.SubmitChunk()
            chunk.CopyFrom(header)
            chunk.header.request_id = uuid.uuid4().hex
            stub = bridge_pb2_grpc.BridgeStub(up_channels[i % len(up_channels)])
            upload_tasks.append(asyncio.ensure_future(stalled_upload(stub, chunk, opened[i], release)))
        if opened:
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in opened)), 10)
        t0 = time.perf_counter()
        probe.start()
        watch_tasks = [asyncio.ensure_future(w.run(bridge_pb2_grpc.BridgeStub(w_channels[i % len(w_channels)]),
                                                   job_id)) for i, w in enumerate(watchers)]
        if watch_tasks:
            _, pending = await asyncio.wait(watch_tasks, timeout=deadline_s)
        else:
            await asyncio.sleep(deadline_s)
            pending = set()
        open_s = time.perf_counter() - t0
        await asyncio.to_thread(probe.stop)
        for task in pending:
            task.cancel()
        await asyncio.gather(*watch_tasks, return_exceptions=True)
        release.set()
        outcomes = await asyncio.gather(*upload_tasks)
        return {"open_s": open_s, "uploads_ended_by_server": {c: outcomes.count(c) for c in set(outcomes) if c}}
    finally:
        for ch in up_channels + w_channels:
            await ch.close()


# ---------------------------------------------------------------- phases
def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def submit_job(address: str, frames: int) -> str:
    from bridge.client.client import BridgeClient

    shot = sample_shot(frames=frames, width=WIDTH, height=HEIGHT, project_name=PROJECT)
    with BridgeClient(address, timeout_s=30) as client:
        return client.submit(shot, GenerationSettings(backend="paced")).job.job_id


def wait_job_end(address: str, job_id: str, timeout_s: float) -> tuple[str, int]:
    """(final state, frames stored) once the job has ended, or its state at the timeout."""
    from bridge.client.client import BridgeClient

    deadline = time.monotonic() + timeout_s
    with BridgeClient(address, timeout_s=5) as client:
        while True:
            job = client.job(job_id)
            if job.state.terminal or time.monotonic() > deadline:
                return job.state.value, job.frames_done
            time.sleep(0.1)


def wait_calm(probe: Probe, timeout_s: float = 15.0) -> None:
    """Until one health check answers in under 50 ms (the last phase's streams are gone)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        t0 = time.perf_counter()
        try:
            probe.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
            if time.perf_counter() - t0 < 0.05:
                return
        except grpc.RpcError:
            pass
        time.sleep(0.1)


def run_phase(server: Server, probe: Probe, watchers: int, uploads: int, frames: int, frame_s: float,
              grace_s: float) -> dict:
    job_id = submit_job(server.address, frames)
    ws = [Watcher(frames) for _ in range(watchers)]
    deadline_s = frames * frame_s + grace_s
    client_cpu0 = time.process_time()
    with Sampler(server) as sampler:
        streams = asyncio.run(open_streams(server.address, job_id, ws, uploads, deadline_s, probe))
    client_cpu_pct = 100.0 * (time.process_time() - client_cpu0) / sampler.wall_s
    state, stored = wait_job_end(server.address, job_id, 30)
    deadline = time.monotonic() + 10
    while server.incoming() and time.monotonic() < deadline:   # the stalled uploads' temp folders go
        time.sleep(0.1)
    wait_calm(probe)
    finished = [w for w in ws if w.final]
    unfinished = [w for w in ws if not w.final and not w.error]
    errors: dict[str, int] = {}
    for w in ws:
        if w.error:
            errors[w.error] = errors.get(w.error, 0) + 1
    health, caps = probe.samples["health"], probe.samples["capabilities"]
    first_frames = [w.first_frame_s for w in ws if w.first_frame_s is not None]
    first_events = [w.first_event_s for w in ws if w.first_event_s is not None]
    after = server.status()
    return {
        "watchers": watchers, "uploads": uploads, "streams": watchers + uploads, "frames": frames,
        "open_s": streams["open_s"],
        "health_p50_ms": _ms(percentile(health, 50)), "health_p99_ms": _ms(percentile(health, 99)),
        "capabilities_p50_ms": _ms(percentile(caps, 50)), "capabilities_p99_ms": _ms(percentile(caps, 99)),
        "probe_p99_ms": _ms(percentile(health + caps, 99)), "probe_calls": len(health) + len(caps),
        "probe_timeouts": sum(probe.timeouts.values()), "probe_errors": dict(probe.errors),
        "first_event_p50_s": percentile(first_events, 50), "first_event_p99_s": percentile(first_events, 99),
        "first_frame_p50_s": percentile(first_frames, 50), "first_frame_p99_s": percentile(first_frames, 99),
        "watchers_without_frame": watchers - len(first_frames),
        "finished_watchers": len(finished),
        "final_events": {k: sum(w.final == k for w in ws) for k in FINAL_EVENTS},
        "lost_frames": sum(w.missing for w in finished),
        "duplicated_frames": sum(w.duplicated for w in ws),
        "unexpected_frames": sum(w.unexpected for w in ws),
        "unfinished_watchers": len(unfinished), "undelivered_frames": sum(w.missing for w in unfinished),
        "watch_errors": errors, "uploads_ended_by_server": streams["uploads_ended_by_server"],
        "job_state": state, "job_frames_stored": stored, "upload_dirs_left": len(server.incoming()),
        "rss_peak_kb": max(sampler.rss_kb), "rss_after_kb": after["VmRSS"],
        "threads_peak": max(sampler.threads), "threads_after": after["Threads"],
        "server_cpu_pct": sampler.cpu_pct, "client_cpu_pct": client_cpu_pct,
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def warm_up(server: Server, probe: Probe, idle_s: float) -> dict:
    """One short job watched to its end and one GetCapabilities (code paths
    loaded: the first GetCapabilities may import torch to list devices), then
    the idle figures."""
    t0 = time.perf_counter()
    probe.bridge.GetCapabilities(bridge_pb2.GetCapabilitiesRequest(), timeout=120)
    first_capabilities_s = time.perf_counter() - t0
    job_id = submit_job(server.address, 3)
    warm = asyncio.run(_watch_once(server.address, job_id, 3))
    if warm.final != COMPLETED_EVENT or warm.missing:
        raise RuntimeError(f"warm-up job {job_id}: final event {warm.final or warm.error or 'none'}, "
                           f"{warm.missing} frames missing")
    wait_job_end(server.address, job_id, 30)
    with Sampler(server) as sampler:
        probe.start()
        time.sleep(idle_s)
        probe.stop()
    health, caps = probe.samples["health"], probe.samples["capabilities"]
    return {"first_capabilities_s": first_capabilities_s, "rss_kb": min(sampler.rss_kb),
            "threads": max(sampler.threads), "server_cpu_pct": sampler.cpu_pct,
            "health_p50_ms": _ms(percentile(health, 50)), "health_p99_ms": _ms(percentile(health, 99)),
            "capabilities_p50_ms": _ms(percentile(caps, 50)), "capabilities_p99_ms": _ms(percentile(caps, 99)),
            "probe_p99_ms": _ms(percentile(health + caps, 99)), "probe_timeouts": sum(probe.timeouts.values())}


async def _watch_once(address: str, job_id: str, frames: int) -> Watcher:
    channel = grpc.aio.insecure_channel(address, options=_CHANNEL_OPTIONS)
    try:
        w = Watcher(frames)
        await asyncio.wait_for(w.run(bridge_pb2_grpc.BridgeStub(channel), job_id), 30)
        return w
    finally:
        await channel.close()


# ---------------------------------------------------------------- report
def _fmt(x, spec: str = ".1f", at_least: float | None = None) -> str:
    """``at_least``: a value there is a probe timeout, shown as a lower bound."""
    if x is None:
        return "-"
    return (">=" if at_least is not None and x >= at_least else "") + format(x, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI size: 4 s per N, shorter grace")
    parser.add_argument("--watchers", default="8,32,128", help="comma-separated N (default 8,32,128)")
    parser.add_argument("--uploads", type=int, default=64, help="stalled uploads open beside the watchers")
    parser.add_argument("--seconds", type=float, help="frames are produced this long per N (12; --quick 4)")
    parser.add_argument("--frame-s", type=float, help="seconds per paced frame (0.25; --quick 0.2)")
    parser.add_argument("--probe-timeout", type=float, default=2.0, help="deadline of each probe call (s)")
    parser.add_argument("--server-src", type=Path, default=REPO,
                        help="run the bridge from this source tree (e.g. `git archive` of another commit, for "
                             "before/after figures); default: this checkout")
    args = parser.parse_args(argv)
    seconds = args.seconds or (4.0 if args.quick else 12.0)
    frame_s = args.frame_s or (0.2 if args.quick else 0.25)
    grace_s = 6.0 if args.quick else 15.0
    frames = max(2, round(seconds / frame_s))
    ns = [int(n) for n in args.watchers.split(",") if n.strip()]
    load_before = os.getloadavg()[0]

    tmp = Path(tempfile.mkdtemp(prefix="greenlight-bench-load-"))
    server = probe = None
    runs: list[dict] = []
    try:
        t_start = time.perf_counter()
        server = Server(tmp, frame_s, args.server_src.resolve())
        probe = Probe(server.address, args.probe_timeout)
        idle = warm_up(server, probe, 1.0 if args.quick else 2.0)
        for n in ns:
            print(f"... {n} watchers + {args.uploads} stalled uploads, {frames} frames at {frame_s} s",
                  file=sys.stderr, flush=True)
            runs.append(run_phase(server, probe, n, args.uploads, frames, frame_s, grace_s))
        hwm_kb = server.status()["VmHWM"]
        total_s = time.perf_counter() - t_start
    except BaseException:
        if server is not None:
            print(f"server log (last lines):\n{server.log_tail()}", file=sys.stderr)
        raise
    finally:
        if probe is not None:
            probe.close()
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    for r in runs:
        r["rss_growth_kb"] = r["rss_peak_kb"] - idle["rss_kb"]
        r["rss_kb_per_stream"] = r["rss_growth_kb"] / r["streams"] if r["streams"] else 0.0
    print(f"load: a bridge in its own process; N watchers of one {frames}-frame paced job ({frame_s} s a frame, "
          f"{WIDTH}x{HEIGHT}) + {args.uploads} stalled uploads; health + GetCapabilities probed on one channel")
    print()
    head = ("streams", "health p50/p99 ms", "caps p50/p99 ms", "timeouts", "1st frame p50/p99 s", "lost", "dup",
            "unfinished", "threads", "RSS MB", "KB/stream", "server CPU", "client CPU")
    rows = [("idle", f"{_fmt(idle['health_p50_ms'])}/{_fmt(idle['health_p99_ms'])}",
             f"{_fmt(idle['capabilities_p50_ms'])}/{_fmt(idle['capabilities_p99_ms'])}", idle["probe_timeouts"],
             "-", "-", "-", "-", idle["threads"], _fmt(idle["rss_kb"] / 1024), "-",
             f"{idle['server_cpu_pct']:.0f}%", "-")]
    cap = args.probe_timeout * 1000
    for r in runs:
        rows.append((f"{r['watchers']}w+{r['uploads']}u",
                     f"{_fmt(r['health_p50_ms'], at_least=cap)}/{_fmt(r['health_p99_ms'], at_least=cap)}",
                     f"{_fmt(r['capabilities_p50_ms'], at_least=cap)}/{_fmt(r['capabilities_p99_ms'], at_least=cap)}",
                     r["probe_timeouts"],
                     f"{_fmt(r['first_frame_p50_s'], '.3f')}/{_fmt(r['first_frame_p99_s'], '.3f')}",
                     r["lost_frames"], r["duplicated_frames"], r["unfinished_watchers"], r["threads_peak"],
                     _fmt(r["rss_peak_kb"] / 1024), _fmt(r["rss_kb_per_stream"], ".0f"),
                     f"{r['server_cpu_pct']:.0f}%", f"{r['client_cpu_pct']:.0f}%"))
    print(table(rows, head))
    print()
    for r in runs:
        notes = []
        if r["watch_errors"]:
            notes.append(f"watch errors {r['watch_errors']}")
        if r["uploads_ended_by_server"]:
            notes.append(f"uploads ended by the server {r['uploads_ended_by_server']}")
        if r["probe_errors"]:
            notes.append(f"probe errors {r['probe_errors']}")
        if r["undelivered_frames"]:
            notes.append(f"{r['undelivered_frames']} frames undelivered at the deadline")
        if r["job_state"] != JobState.COMPLETED.value or r["job_frames_stored"] != r["frames"]:
            notes.append(f"job {r['job_state']} with {r['job_frames_stored']}/{r['frames']} frames")
        if r["upload_dirs_left"]:
            notes.append(f"{r['upload_dirs_left']} upload temp folders left")
        print(f"{r['watchers']}w+{r['uploads']}u: streams open {r['open_s']:.1f} s, {r['probe_calls']} probe calls, "
              f"first event p99 {_fmt(r['first_event_p99_s'], '.3f')} s, after: {r['threads_after']} threads, "
              f"RSS {r['rss_after_kb'] / 1024:.1f} MB" + ("; " + "; ".join(notes) if notes else ""))

    target = max(runs, key=lambda r: r["streams"]) if runs else None
    slope = None
    if len(runs) >= 2:
        lo, hi = min(runs, key=lambda r: r["streams"]), max(runs, key=lambda r: r["streams"])
        if hi["streams"] > lo["streams"]:
            slope = (hi["rss_peak_kb"] - lo["rss_peak_kb"]) / (hi["streams"] - lo["streams"])
    lost = sum(r["lost_frames"] for r in runs)
    dup = sum(r["duplicated_frames"] for r in runs)
    unfinished = sum(r["unfinished_watchers"] + sum(r["watch_errors"].values()) for r in runs)
    p99 = max(target["health_p99_ms"] or math.inf, target["capabilities_p99_ms"] or math.inf) if target else None
    per_stream = target["rss_kb_per_stream"] if target else None
    checks = {
        "p99_ok": p99 is not None and p99 < TARGET_P99_MS,
        "frames_ok": lost == 0 and dup == 0 and unfinished == 0,
        "rss_ok": per_stream is not None and per_stream <= RSS_BOUND_KB_PER_STREAM,
    }
    print(f"target ({target['watchers'] if target else '-'} watchers + {args.uploads} uploads): "
          f"probe p99 {_fmt(p99, at_least=cap)} ms (< {TARGET_P99_MS:.0f}) {'ok' if checks['p99_ok'] else 'MISS'}; "
          f"lost {lost}, duplicated {dup}, watchers not served {unfinished} (all 0) "
          f"{'ok' if checks['frames_ok'] else 'MISS'}; RSS growth {_fmt(per_stream, '.0f')} KB a stream "
          f"(<= {RSS_BOUND_KB_PER_STREAM:.0f}) {'ok' if checks['rss_ok'] else 'MISS'}; "
          f"marginal {_fmt(slope, '.0f')} KB a stream between the smallest and largest N")
    print(f"first GetCapabilities (warm-up, untimed above) {idle['first_capabilities_s'] * 1000:.0f} ms; "
          f"idle baseline taken after it")
    print(f"(total {total_s:.1f} s; 1-min load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after, "
          f"on {os.cpu_count()} CPUs: other load skews these figures)")

    def rnd(x, nd=4):
        return None if x is None or (isinstance(x, float) and math.isinf(x)) else round(x, nd)

    result = {
        "clients": target["streams"] if target else 0,
        "watchers": target["watchers"] if target else 0,
        "stalled_uploads": args.uploads,
        "lost_frames": lost,
        "duplicated_frames": dup,
        "unfinished_watchers": unfinished,
        "p99_first_event_s": rnd(target["first_event_p99_s"]) if target else None,
        "p50_first_frame_s": rnd(target["first_frame_p50_s"]) if target else None,
        "p99_first_frame_s": rnd(target["first_frame_p99_s"]) if target else None,
        "p99_health_ms": rnd(target["health_p99_ms"], 2) if target else None,
        "p99_capabilities_ms": rnd(target["capabilities_p99_ms"], 2) if target else None,
        "p50_health_ms": rnd(target["health_p50_ms"], 2) if target else None,
        "probe_timeouts": target["probe_timeouts"] if target else 0,
        "idle_rss_mb": round(idle["rss_kb"] / 1024, 1),
        "peak_rss_mb": round(hwm_kb / 1024, 1),
        "rss_growth_mb": round(target["rss_growth_kb"] / 1024, 1) if target else None,
        "rss_kb_per_stream": rnd(per_stream, 1),
        "rss_marginal_kb_per_stream": rnd(slope, 1),
        "threads_idle": idle["threads"],
        "threads_peak": max(r["threads_peak"] for r in runs) if runs else idle["threads"],
        "idle_p99_health_ms": rnd(idle["health_p99_ms"], 2),
        "first_capabilities_ms": round(idle["first_capabilities_s"] * 1000, 1),
        "targets": {"p99_ms": TARGET_P99_MS, "lost_frames": 0, "duplicated_frames": 0, "unfinished_watchers": 0,
                    "rss_kb_per_stream": RSS_BOUND_KB_PER_STREAM},
        **checks,
        "quick": args.quick,
        "frames": frames,
        "frame_s": frame_s,
        "runs": [{k: (rnd(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in runs],
        "load_avg_1m": round(load_before, 2),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
