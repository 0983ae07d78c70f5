"""What the bridge costs on top of the diffusion pipeline.

The same tiny random-weight AnimateDiff model, shot and seed, run
(a) as a direct AnimateDiffControlNetPipeline call in this process (control
    images drawn from the passes, frames decoded to uint8), its convolution
    models channels-last as the bridge's CPU tier has them (and, for the
    layout's own effect, (a0) the same call in PyTorch's default layout), and
(b) submitted to a bridge in its own process over loopback gRPC, frames
    streamed back to this client as PNGs,
and, to say where the difference goes,
(c) the animatediff backend called in this process with a context that
    drops its frames (the backend's own share: frame-by-frame decode,
    step previews, progress), and
(d) PNG encoding of the frames alone (what the bridge's frame writer does
    off the torch thread), and
(e) the temporal-consistency score of the frames (what every report carries;
    the bridge computes it while the job runs).
All warm (model loaded once before timing), interleaved, median of N runs.
Both sides run float32 (GREENLIGHT_CPU_DTYPE=float32: like with like; the
CPU tier would pick bf16 on a bf16-capable CPU) with the same torch thread
count. Prints (b)/(a) (target <= 1.05 on this machine) and the bridge
process's peak RSS. Ends with one JSON line (DESIGN section 9).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["GREENLIGHT_CPU_DTYPE"] = "float32"     # the direct pipeline is float32: so is the bridge (a child)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FRAMES, SIZE, STEPS, REPEATS = 16, 128, 8, 5


class NullContext:
    """A JobContext that keeps nothing: the backend's own cost, without the bridge."""

    job_id = "bench"
    cancelled = False
    frames_done = frozenset()

    def __init__(self):
        self.frames = 0

    def progress(self, step, total, stage=""):
        pass

    def preview(self, index, step, rgb):
        pass

    def frame(self, index, rgb, work=1.0):
        self.frames += 1


def direct_runner(profile_path: Path, shot, channels_last: bool):
    import numpy as np
    import torch

    from bridge.backends.conditioning_video import control_videos
    from bridge.backends.tiny import direct_animatediff_pipeline

    pipe = direct_animatediff_pipeline(profile_path)
    if channels_last:     # the layout the bridge's CPU tier uses, so (b)/(a) is the bridge's own cost
        for module in (pipe.unet, pipe.vae, *pipe.controlnet.nets):
            module.to(memory_format=torch.channels_last)

    def run():
        with torch.inference_mode():
            frames = pipe(prompt="a robot", num_frames=FRAMES, height=SIZE, width=SIZE, num_inference_steps=STEPS,
                          guidance_scale=7.5, conditioning_frames=control_videos(shot, ["depth", "pose"]),
                          generator=torch.Generator("cpu").manual_seed(1), output_type="np").frames[0]
        return (frames * 255).round().astype(np.uint8)

    return run


def start_bridge(data_dir: Path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "bridge.cli", "serve", "--data-dir", str(data_dir), "--port", "0"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    if "listening on" not in line:
        raise RuntimeError(f"bridge did not start: {line!r}")
    return proc, line.split("listening on ")[1].split()[0]


def peak_rss_mb(pid: int) -> float:
    from benchmarks._report import proc_kb

    return proc_kb(pid, "VmHWM") / 1024


def main() -> None:
    import numpy as np

    from bridge.backends.animatediff import AnimateDiffBackend
    from bridge.backends.devices import configure_cpu_threads
    from bridge.backends.tiny import build_tiny_animatediff
    from bridge.client import BridgeClient, EventKind
    from bridge.jobs.images import encode_png
    from bridge.shot.request import GenerationSettings
    from bridge.shot.synthetic import sample_shot

    threads = configure_cpu_threads()    # what the bridge sets for itself

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # with the tiny decoder as vae_preview: step previews decode with it, final frames (and the direct
        # call) with the full VAE
        profile = build_tiny_animatediff(tmp / "tiny", tiny_decoder=True)
        os.environ["GREENLIGHT_PROFILES"] = str(profile.parent)   # the bridge (a child) finds it by name
        shot = sample_shot(frames=FRAMES, width=SIZE, height=SIZE)
        settings = GenerationSettings(backend="animatediff", prompt="a robot", seed=1, steps=STEPS,
                                      model_profile=profile.stem)
        direct = direct_runner(profile, shot, channels_last=True)
        direct_default = direct_runner(profile, shot, channels_last=False)
        backend = AnimateDiffBackend(device="cpu")

        def in_process():
            ctx = NullContext()
            backend.run(shot, settings, ctx)
            if ctx.frames != FRAMES:
                raise RuntimeError(f"backend gave {ctx.frames} frames, expected {FRAMES}")

        proc, address = start_bridge(tmp / "bridge")
        try:
            with BridgeClient(address, timeout_s=120) as client:
                phases: dict[str, list[float]] = {"submit": [], "to first step": [], "after last frame": []}

                def through_bridge():
                    t0 = time.perf_counter()
                    job = client.submit(shot, settings).job
                    t_accepted = time.perf_counter()
                    frames, first_step, last_frame = 0, None, t_accepted
                    for event in client.watch(job.job_id):
                        now = time.perf_counter()
                        if first_step is None and event.kind is EventKind.PROGRESS and event.progress.step >= 1:
                            first_step = now
                        if event.kind is EventKind.FRAME:
                            frames += 1
                            last_frame = now
                        if event.kind.terminal and event.kind is not EventKind.COMPLETED:
                            raise RuntimeError(f"bridge job {event.kind.value}: {event.message}")
                    if frames != FRAMES:
                        raise RuntimeError(f"got {frames} frames, expected {FRAMES}")
                    phases["submit"].append(t_accepted - t0)
                    phases["to first step"].append((first_step or t_accepted) - t_accepted)
                    phases["after last frame"].append(time.perf_counter() - last_frame)

                frames_u8 = direct()   # warm: first call pays one-off allocations
                direct_default()
                in_process()
                through_bridge()   # warm: the bridge loads and caches the model
                direct_s, bridge_s, backend_s, default_s = [], [], [], []
                for _ in range(REPEATS):
                    t = time.perf_counter()
                    direct_default()
                    default_s.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    direct()
                    direct_s.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    through_bridge()
                    bridge_s.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    in_process()
                    backend_s.append(time.perf_counter() - t)
                t = time.perf_counter()
                for i, rgb in enumerate(frames_u8):
                    encode_png(np.ascontiguousarray(rgb), {"job_id": "bench", "frame": i})
                png_ms = (time.perf_counter() - t) / len(frames_u8) * 1000
                # (e) the temporal-consistency score every report carries (computed while the job runs)
                from bridge.temporal.report import consistency_of

                score_s = []
                for _ in range(3):
                    t = time.perf_counter()
                    consistency_of(shot, [np.ascontiguousarray(f) for f in frames_u8])
                    score_s.append(time.perf_counter() - t)
            rss = peak_rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    d, b, c = statistics.median(direct_s), statistics.median(bridge_s), statistics.median(backend_s)
    d0 = statistics.median(default_s)
    print(f"tiny AnimateDiff + 2 ControlNets, {FRAMES} frames {SIZE}x{SIZE}, {STEPS} steps, CPU float32, "
          f"{threads} torch threads, median of {REPEATS}")
    print(f"{'path':44} {'seconds':>9} {'/ direct':>9}")
    print(f"{'(a) direct diffusers call (channels-last)':44} {d:9.3f} {1:9.3f}")
    print(f"{'(a0) direct call, default layout':44} {d0:9.3f} {d0 / d:9.3f}")
    print(f"{'(b) bridge over loopback gRPC':44} {b:9.3f} {b / d:9.3f}")
    print(f"{'(c) backend in-process, frames dropped':44} {c:9.3f} {c / d:9.3f}")
    print(f"{'(d) PNG encode, all frames':44} {png_ms * FRAMES / 1000:9.3f} {png_ms * FRAMES / 1000 / d:9.3f}")
    sc = statistics.median(score_s)
    print(f"{'(e) temporal score, all frames':44} {sc:9.3f} {sc / d:9.3f}")
    print(f"ratio (b)/(a): {b / d:.3f}   (target <= 1.05); backend alone (c)/(a): {c / d:.3f}; "
          f"bridge machinery (b)-(c): {b - c:+.3f} s")
    print("bridge phases (client's view, median s): " + ", ".join(
        f"{k} {statistics.median(v[-REPEATS:]):.3f}" for k, v in phases.items()))
    print(f"bridge peak RSS: {rss:.0f} MB")
    print(json.dumps({"direct_s": round(d, 4), "bridge_s": round(b, 4), "ratio": round(b / d, 4),
                      "backend_s": round(c, 4), "backend_ratio": round(c / d, 4),
                      "direct_default_layout_s": round(d0, 4), "png_ms_per_frame": round(png_ms, 3),
                      "temporal_score_s": round(sc, 4),
                      "peak_rss_mb": round(rss, 1), "frames": FRAMES, "size": SIZE, "steps": STEPS,
                      "torch_threads": threads, "target_ratio": 1.05}))


if __name__ == "__main__":
    main()
