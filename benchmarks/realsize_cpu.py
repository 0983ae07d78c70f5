"""Real-size previz on this CPU, through a real bridge and directly in
diffusers, side by side in one run (docs/cpu.md).

Real-size random-weight components in SD 1.5 geometry (UNet ~860M, two
ControlNets ~361M each, motion adapter ~453M, CLIP ViT-L, SD VAE, TAESD)
are built once (benchmarks/cpu_tier.py's builder) and saved in the hub
layout to a cache folder with a profile. Then, both warm (one 1-step job
each first: model loading is not timed), interleaved:

  bridge   ``greenlight serve`` in its own process loads them through its
           profile loader (CPU tier: bf16 where the CPU has AVX-512 BF16 or
           AMX, channels-last, TAESD for the "draft" preset); this process
           submits the shot over loopback gRPC and times submit -> last
           frame received (upload, denoising, decode, PNG, streaming);
  direct   a plain AnimateDiffControlNetPipeline from the same folders in
           this process, same dtype, layout, decoder, scheduler, seed and
           threads: pipe(...) -> uint8 frames.

16 frames at 256x256, 4 LCM steps, guidance 1 (no CFG), depth + pose
ControlNets, the animatediff backend (not the guides). Prints total
seconds, seconds per frame, each process's peak RSS, the bridge/direct
ratio, dtype and decoder; ends with one JSON line (DESIGN section 9).
Targets on this machine: total <= 35 s through the bridge, peak RSS
<= 7 GB, bridge/direct <= 1.05.

``--quick`` runs the same comparison on the tiny random model (8 frames at
64x64) in seconds. Without it the run is heavy (~10 GB of weights on disk,
~15 GB of memory with both sides loaded, minutes per job): ``--cache DIR
--keep-cache`` keeps the weights for the next run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
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

from benchmarks._report import free_gb, proc_kb  # noqa: E402

TARGETS = {"bridge_total_s": 35.0, "peak_rss_gb": 7.0, "ratio": 1.05}


class RssSampler:
    """The bridge process's RSS every 0.2 s, kept per phase ("load + 1-step job", "timed jobs"): says
    whether the peak comes while loading or while denoising."""

    def __init__(self, pid: int):
        import threading

        self.pid, self.phase, self.peaks = pid, "start", {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(0.2):
            try:
                kb = proc_kb(self.pid, "VmRSS")
            except OSError:
                return
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), kb)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join(timeout=2)
        return {k: round(v / 2**20, 2) for k, v in self.peaks.items()}


def start_bridge(data_dir: Path, profiles: Path, compile_unet: bool = False):
    env = dict(os.environ, PYTHONPATH=str(REPO), GREENLIGHT_PROFILES=str(profiles),
               GREENLIGHT_TORCH_COMPILE="unet" if compile_unet else "off")
    proc = subprocess.Popen([sys.executable, "-m", "bridge.cli", "serve", "--data-dir", str(data_dir), "--port", "0"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if "listening on" not in line:
        raise RuntimeError(f"bridge did not start: {line!r}")
    return proc, line.split("listening on ")[1].split()[0]


def build_weights(args, tmp: Path) -> tuple[Path, dict]:
    """The profile file of the model to run, and parameter counts (real size only)."""
    if args.quick:
        from bridge.backends.tiny import build_tiny_animatediff

        return build_tiny_animatediff(tmp / "tiny", tiny_decoder=True), {}
    root = args.cache or tmp / "realsize"
    if not (root / "counts.json").is_file():
        print(f"building real-size random weights in {root} (once; a child process, so this one's peak "
              "RSS stays its own) ...", flush=True)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                        "from benchmarks.cpu_tier import build_realsize; build_realsize(Path(sys.argv[1]))",
                        str(root)], cwd=REPO, check=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
        print(f"  built in {time.perf_counter() - t:.0f} s", flush=True)
    else:
        print(f"reusing real-size weights in {root}")
    from benchmarks.cpu_tier import write_profile

    return write_profile(root), json.loads((root / "counts.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the tiny model, 8 frames at 64x64 (seconds)")
    ap.add_argument("--cache", type=Path, default=None, help="where the real-size weights are kept (reused)")
    ap.add_argument("--keep-cache", action="store_true", help="keep the built weights for a later run")
    ap.add_argument("--repeats", type=int, default=1, help="timed jobs per side, interleaved (median)")
    ap.add_argument("--compile", action="store_true",
                    help="the bridge compiles its motion UNet (GREENLIGHT_TORCH_COMPILE=unet); the direct call "
                         "stays eager, so the ratio is what compiling saves per warm job, and the first job "
                         "says what it costs")
    args = ap.parse_args()
    frames, size, steps = (8, 64, 4) if args.quick else (16, 256, 4)
    need = 2 if args.quick else 16
    avail = free_gb()
    print(f"free memory: {avail:.1f} GB (this run needs about {need} GB with both sides loaded)")
    if avail < need:
        sys.exit(f"not enough free memory ({avail:.1f} GB < {need} GB); close something or use --quick")

    import numpy as np
    import torch

    from bridge.backends.conditioning_video import control_videos
    from bridge.backends.devices import configure_cpu_threads, pick_device
    from bridge.backends.tiny import direct_animatediff_pipeline
    from bridge.client import BridgeClient, EventKind
    from bridge.shot.request import GenerationSettings
    from bridge.shot.synthetic import sample_shot

    tmp = Path(tempfile.mkdtemp(prefix="greenlight-realsize-"))
    proc = None
    try:
        profile, counts = build_weights(args, tmp)
        os.environ["GREENLIGHT_PROFILES"] = str(profile.parent)
        choice = pick_device("cpu")         # the rule the bridge applies to itself (same machine, same env)
        threads = configure_cpu_threads()
        shot = sample_shot(frames=frames, width=size, height=size)
        settings = GenerationSettings(backend="animatediff", prompt="a robot walks through a hall", seed=1,
                                      steps=steps, guidance_scale=1.0, quality="draft",
                                      model_profile=profile.stem, preview_every_n_steps=0)
        warm = dataclasses.replace(settings, steps=1)

        # direct: the same folders, dtype, layout, decoder (TAESD, as "draft" picks) and scheduler
        t = time.perf_counter()
        pipe = direct_animatediff_pipeline(profile, dtype=choice.dtype, tiny_decoder=True, scheduler="lcm",
                                           channels_last=True)
        direct_load_s = time.perf_counter() - t
        videos = control_videos(shot, ["depth", "pose"])

        def direct(n_steps: int) -> float:
            t0 = time.perf_counter()
            with torch.inference_mode():
                out = pipe(prompt=settings.prompt, num_frames=frames, height=size, width=size,
                           num_inference_steps=n_steps, guidance_scale=1.0, conditioning_frames=videos,
                           generator=torch.Generator("cpu").manual_seed(1), output_type="np").frames[0]
            u8 = (out * 255).round().astype(np.uint8)
            if len(u8) != frames:
                raise RuntimeError(f"direct call gave {len(u8)} frames")
            return time.perf_counter() - t0

        proc, address = start_bridge(tmp / "bridge", profile.parent, compile_unet=args.compile)
        sampler = RssSampler(proc.pid)
        with BridgeClient(address, timeout_s=600) as client:
            def through_bridge(gen: GenerationSettings) -> float:
                t0 = time.perf_counter()
                job = client.submit(shot, gen).job
                got = 0
                for event in client.watch(job.job_id):
                    if event.kind is EventKind.FRAME:
                        got += 1
                    if event.kind.terminal and event.kind is not EventKind.COMPLETED:
                        raise RuntimeError(f"bridge job {event.kind.value}: {event.message}")
                if got != frames:
                    raise RuntimeError(f"bridge gave {got} frames, expected {frames}")
                return time.perf_counter() - t0

            print("warming up (1-step jobs; the bridge loads the model) ...", flush=True)
            sampler.phase = "load + 1-step job"
            t = time.perf_counter()
            through_bridge(warm)
            bridge_first_s = time.perf_counter() - t
            sampler.phase = "idle (direct warm-up)"
            direct(1)
            direct_s, bridge_s = [], []
            for r in range(args.repeats):
                print(f"timed run {r + 1}/{args.repeats} ...", flush=True)
                sampler.phase = "idle (direct run)"
                direct_s.append(direct(steps))
                sampler.phase = "timed jobs"
                bridge_s.append(through_bridge(settings))
            info = {b.id: b for b in client.capabilities().backends}.get("animatediff")
        bridge_peak_gb = proc_kb(proc.pid, "VmHWM") / 2**20
        phases = sampler.stop()
        direct_peak_gb = proc_kb("self", "VmHWM") / 2**20
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        if not args.keep_cache:
            shutil.rmtree(tmp, ignore_errors=True)
            if args.cache is not None and not args.keep_cache:
                shutil.rmtree(args.cache, ignore_errors=True)

    from benchmarks._report import table

    d, b = statistics.median(direct_s), statistics.median(bridge_s)
    geometry = "tiny random model" if args.quick else "real-size random SD 1.5 geometry"
    print(f"\n{geometry}: AnimateDiff + 2 ControlNets, {frames} frames {size}x{size}, {steps} LCM steps, no CFG, "
          f"quality draft (decoder TAESD); {choice.dtype_name} ({choice.reason}); channels-last; {threads} torch "
          f"threads; torch {torch.__version__}; median of {args.repeats}")
    if counts:
        print("parameters: " + ", ".join(f"{k} {v / 1e6:.0f}M" for k, v in counts.items()))
    if info is not None:
        print(f"bridge capabilities: devices {list(info.devices)}")
    label = "bridge (gRPC, real serve process)" + (", compiled UNet" if args.compile else "")
    rows = [(label, f"{b:.2f}", f"{b / frames:.3f}", f"{bridge_peak_gb:.2f}",
             f"{b / d:.3f}"),
            ("direct diffusers call", f"{d:.2f}", f"{d / frames:.3f}", f"{direct_peak_gb:.2f}", "1.000")]
    print(table(rows, ("path", "total s", "s/frame", "peak RSS GB", "/ direct")))
    print(f"bridge's first (1-step) job incl. model load: {bridge_first_s:.1f} s; direct load {direct_load_s:.1f} s")
    print("bridge RSS peaks by phase (GB, sampled every 0.2 s): " + ", ".join(f"{k} {v}" for k, v in phases.items()))
    ok = {"bridge_total_s": b <= TARGETS["bridge_total_s"], "peak_rss_gb": bridge_peak_gb <= TARGETS["peak_rss_gb"],
          "ratio": b / d <= TARGETS["ratio"]}
    print("targets: " + ", ".join(f"{k} <= {TARGETS[k]}: {'met' if v else 'missed'}" for k, v in ok.items()))
    print(json.dumps({
        "quick": args.quick, "compile": args.compile, "frames": frames, "size": size, "steps": steps,
        "dtype": choice.dtype_name,
        "decoder": "tiny", "channels_last": True, "torch_threads": threads, "repeats": args.repeats,
        "bridge_total_s": round(b, 3), "direct_total_s": round(d, 3), "bridge_s_per_frame": round(b / frames, 4),
        "direct_s_per_frame": round(d / frames, 4), "ratio": round(b / d, 4),
        "bridge_peak_rss_gb": round(bridge_peak_gb, 2), "direct_peak_rss_gb": round(direct_peak_gb, 2),
        "bridge_first_job_s": round(bridge_first_s, 2), "bridge_rss_gb_by_phase": phases, "targets": TARGETS,
        "targets_met": ok, "load_avg_1m": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    main()
