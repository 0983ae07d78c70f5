"""What the bridge costs on top of the diffusion pipeline.

The same tiny random-weight AnimateDiff model, shot and seed, run
(a) as a direct AnimateDiffControlNetPipeline call in this process (control
    images drawn from the passes, frames decoded to uint8), and
(b) submitted to a bridge in its own process over loopback gRPC, frames
    streamed back to this client as PNGs.
Both warm (model loaded once before timing), interleaved, median of N runs.
Prints (b)/(a) (target <= 1.05 on this machine) and the bridge process's
peak RSS. Ends with one JSON line (DESIGN section 9).
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FRAMES, SIZE, STEPS, REPEATS = 16, 128, 8, 3


def direct_runner(profile_path: Path, shot):
    import numpy as np
    import torch

    from bridge.backends.conditioning_video import control_videos
    from bridge.backends.tiny import direct_animatediff_pipeline

    pipe = direct_animatediff_pipeline(profile_path)

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
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    from bridge.backends.tiny import build_tiny_animatediff
    from bridge.client import BridgeClient, EventKind
    from bridge.shot.request import GenerationSettings
    from bridge.shot.synthetic import sample_shot

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        profile = build_tiny_animatediff(tmp / "tiny")
        os.environ["GREENLIGHT_PROFILES"] = str(profile.parent)   # the bridge (a child) finds it by name
        shot = sample_shot(frames=FRAMES, width=SIZE, height=SIZE)
        settings = GenerationSettings(backend="animatediff", prompt="a robot", seed=1, steps=STEPS,
                                      model_profile=profile.stem)
        direct = direct_runner(profile, shot)
        proc, address = start_bridge(tmp / "bridge")
        try:
            with BridgeClient(address, timeout_s=120) as client:
                def through_bridge():
                    job = client.submit(shot, settings).job
                    frames = 0
                    for event in client.watch(job.job_id):
                        frames += event.kind is EventKind.FRAME
                        if event.kind.terminal and event.kind is not EventKind.COMPLETED:
                            raise RuntimeError(f"bridge job {event.kind.value}: {event.message}")
                    if frames != FRAMES:
                        raise RuntimeError(f"got {frames} frames, expected {FRAMES}")

                direct()           # warm: first call pays one-off allocations
                through_bridge()   # warm: the bridge loads and caches the model
                direct_s, bridge_s = [], []
                for _ in range(REPEATS):
                    t = time.perf_counter()
                    direct()
                    direct_s.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    through_bridge()
                    bridge_s.append(time.perf_counter() - t)
            rss = peak_rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    d, b = statistics.median(direct_s), statistics.median(bridge_s)
    print(f"tiny AnimateDiff + 2 ControlNets, {FRAMES} frames {SIZE}x{SIZE}, {STEPS} steps, CPU, median of {REPEATS}")
    print(f"{'path':34} {'seconds':>9}")
    print(f"{'(a) direct diffusers call':34} {d:9.3f}")
    print(f"{'(b) bridge over loopback gRPC':34} {b:9.3f}")
    print(f"ratio (b)/(a): {b / d:.3f}   (target <= 1.05)")
    print(f"bridge peak RSS: {rss:.0f} MB")
    print(json.dumps({"direct_s": round(d, 4), "bridge_s": round(b, 4), "ratio": round(b / d, 4),
                      "peak_rss_mb": round(rss, 1), "frames": FRAMES, "size": SIZE, "steps": STEPS,
                      "target_ratio": 1.05}))


if __name__ == "__main__":
    main()
