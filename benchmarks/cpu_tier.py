"""The CPU tier at real size (docs/cpu.md): fp32 + full VAE against
bf16 + channels-last + the tiny decoder, side by side in one run.

Real-size random-weight components in SD 1.5 geometry (UNet ~860M,
two ControlNets ~361M each, motion adapter ~453M, CLIP ViT-L text encoder,
the SD VAE and a TAESD-geometry AutoencoderTiny) are built in code once,
saved in the hub layout to a cache folder with a profile, and loaded back
through the bridge's own profile loader by the ``animatediff`` backend
(nothing is downloaded). Each variant runs in its own process so its peak
RSS is its own: 16 frames at 256x256, 4 LCM steps, guidance 1 (no CFG),
depth + pose ControlNets.

  fp32     GREENLIGHT_CPU_DTYPE=float32, contiguous layout, quality "final" (full VAE)
  bf16     GREENLIGHT_CPU_DTYPE=bfloat16, channels-last, quality "draft" (TAESD decoder)

``--quick`` runs the same comparison on the tiny random model (8 frames at
64x64) in seconds: the CI-size check of this script. It is heavy without it
(~10 GB of weights on disk, minutes per variant): check ``free -g`` first.
Prints a table and ends with one JSON line (DESIGN section 9).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._report import free_gb, proc_kb  # noqa: E402

VARIANTS = {
    "fp32": {"dtype": "float32", "channels_last": False, "quality": "final"},
    "bf16": {"dtype": "bfloat16", "channels_last": True, "quality": "draft"},
}
TARGET_RSS_GB = 7.0
PROFILE = "realsize-cpu"


# ------------------------------------------------------------------ building (parent)
def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def build_realsize(root: Path) -> dict[str, int]:
    """Random SD 1.5-geometry components in the hub layout under ``root``, one at a time
    (built in fp32, saved, freed); returns parameter counts."""
    import torch
    from diffusers import (
        AutoencoderKL,
        AutoencoderTiny,
        ControlNetModel,
        LCMScheduler,
        MotionAdapter,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    from bridge.backends.tiny import _tokenizer

    torch.manual_seed(0)
    counts = {}
    base = root / "base"
    tokenizer, _ = _tokenizer(root / "_vocab")
    tokenizer.save_pretrained(base / "tokenizer")

    def save(name: str, model, folder: Path):
        counts[name] = _params(model)
        model.save_pretrained(folder)
        print(f"  built {name}: {counts[name] / 1e6:.0f}M parameters", flush=True)

    # CLIP ViT-L/14 text tower (SD 1.5's text encoder)
    save("text_encoder", CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768, bos_token_id=0, eos_token_id=1,
        pad_token_id=1)), base / "text_encoder")
    # UNet2DConditionModel's defaults are SD 1.x's blocks; SD 1.5 cross-attends to 768-d CLIP states
    save("unet", UNet2DConditionModel(sample_size=64, cross_attention_dim=768), base / "unet")
    save("vae", AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),  # pyright: ignore[reportArgumentType]
        down_block_types=("DownEncoderBlock2D",) * 4,  # pyright: ignore[reportArgumentType]
        up_block_types=("UpDecoderBlock2D",) * 4,  # pyright: ignore[reportArgumentType]
        layers_per_block=2, latent_channels=4, sample_size=512), base / "vae")
    LCMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear").save_pretrained(
        base / "scheduler")
    # AnimateDiff v1.5.3 motion module geometry
    save("motion_adapter", MotionAdapter(block_out_channels=(320, 640, 1280, 1280), motion_layers_per_block=2,
                                         motion_num_attention_heads=8, motion_norm_num_groups=32,
                                         motion_max_seq_length=32, use_motion_mid_block=False),
         root / "motion_adapter")
    for name in ("controlnet_depth", "controlnet_pose"):
        save(name, ControlNetModel(cross_attention_dim=768), root / name)
    save("vae_preview", AutoencoderTiny(), root / "vae_preview")      # TAESD geometry
    write_profile(root)
    (root / "counts.json").write_text(json.dumps(counts))
    return counts


def write_profile(root: Path) -> Path:
    """The profile of the real-size weights under ``root`` (rewritten on every run: cheap). The weights are
    random numbers made here, so no third party's licence applies: cleared, as the tiny model's are."""
    from datetime import date

    components = ("base", "motion_adapter", "controlnet_depth", "controlnet_pose", "vae_preview")
    licenses = "".join(
        f'\n[licenses.{c}]\nid = "LicenseRef-Greenlight-random-weights"\ncommercial = "yes"\nurl = ""\n'
        f'checked = "{date.today().isoformat()}"\nnote = "random weights generated by benchmarks/cpu_tier.py"\n'
        for c in components)
    path = root / f"{PROFILE}.toml"
    path.write_text(
        f'name = "{PROFILE}"\nfamily = "animatediff"\n'
        'description = "real-size random-weight SD 1.5 AnimateDiff + 2 ControlNets + TAESD (benchmark)"\n\n'
        '[components]\nbase = "./base"\nmotion_adapter = "./motion_adapter"\n'
        'controlnet_depth = "./controlnet_depth"\ncontrolnet_pose = "./controlnet_pose"\n'
        'vae_preview = "./vae_preview"\n\n'
        '[defaults]\nsteps = 4\nguidance_scale = 1.0\nscheduler = "lcm"\npreview_every_n_steps = 0\n\n'
        '[defaults.draft]\nsteps = 4\nguidance_scale = 1.0\nscheduler = "lcm"\n' + licenses)
    return path


# ------------------------------------------------------------------ one variant (child)
class TimingContext:
    """A JobContext that keeps the time of every event (frames are discarded after a checksum)."""

    job_id = "bench"
    cancelled = False
    frames_done = frozenset()

    def __init__(self):
        self.steps: list[float] = []
        self.frame_times: list[float] = []
        self.frames = 0
        self.checksum = 0

    def progress(self, step, total, stage=""):
        if stage == "denoising":
            self.steps.append(time.perf_counter())

    def preview(self, index, step, rgb):
        pass

    def frame(self, index, rgb, work=1.0):
        self.frame_times.append(time.perf_counter())
        self.frames += 1
        self.checksum += int(rgb.astype("int64").sum())


def run_variant(name: str, root: Path, frames: int, size: int, steps: int, jobs: int) -> dict:
    spec = VARIANTS[name]
    os.environ["GREENLIGHT_CPU_DTYPE"] = spec["dtype"]
    os.environ["GREENLIGHT_PROFILES"] = str(root)
    import bridge.backends.animatediff as animatediff
    import bridge.backends.loading as loading

    if not spec["channels_last"]:       # the fp32 baseline keeps PyTorch's default (contiguous) layout
        loading.CHANNELS_LAST = ()
        animatediff.to_channels_last = lambda m: m
    from bridge.backends.animatediff import AnimateDiffBackend
    from bridge.backends.devices import pick_device
    from bridge.shot.request import GenerationSettings
    from bridge.shot.synthetic import sample_shot

    profile_name = next(p.stem for p in root.glob("*.toml"))
    shot = sample_shot(frames=frames, width=size, height=size)
    settings = GenerationSettings(backend="animatediff", prompt="a robot walks through a hall", seed=1,
                                  steps=steps, guidance_scale=1.0, model_profile=profile_name,
                                  quality=spec["quality"])
    backend = AnimateDiffBackend(device="cpu")
    choice = pick_device("cpu")
    plan = backend.plan(shot, settings)
    t = time.perf_counter()
    backend.components(plan, "cpu", choice.dtype)
    load_s = time.perf_counter() - t
    load_peak_kb, after_load_kb = proc_kb("self", "VmHWM"), proc_kb("self", "VmRSS")
    runs = []
    for _ in range(jobs):
        ctx = TimingContext()
        t0 = time.perf_counter()
        backend.run(shot, settings, ctx)
        end = time.perf_counter()
        step_s = [b - a for a, b in zip([t0, *ctx.steps[:-1]], ctx.steps, strict=True)]
        runs.append({"total_s": end - t0, "step_s": step_s, "decode_s": end - ctx.steps[-1],
                     "frames": ctx.frames, "checksum": ctx.checksum})
    import resource

    return {"variant": name, "dtype": choice.dtype_name, "reason": choice.reason, "decoder": plan.decoder,
            "channels_last": spec["channels_last"], "load_s": load_s, "runs": runs,
            "load_peak_rss_gb": load_peak_kb / 2**20, "after_load_rss_gb": after_load_kb / 2**20,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


# ------------------------------------------------------------------ main (parent)
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the tiny model, 8 frames at 64x64 (seconds)")
    ap.add_argument("--cache", type=Path, default=None, help="where the real-size weights are kept (reused)")
    ap.add_argument("--keep-cache", action="store_true", help="keep the built weights for a later run")
    ap.add_argument("--jobs", type=int, default=1, help="jobs per variant process (the 2nd is warm)")
    ap.add_argument("--variant", choices=sorted(VARIANTS), help=argparse.SUPPRESS)   # child mode
    ap.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    frames, size, steps = (8, 64, 4) if args.quick else (16, 256, 4)
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.root, frames, size, steps, args.jobs)))
        return

    import torch

    from bridge.backends.devices import cpu_bf16_support, usable_cores

    avail = free_gb()
    need = 2 if args.quick else 20
    print(f"free memory: {avail:.1f} GB (this run needs about {need} GB at its peak, one variant at a time)")
    if avail < need:
        sys.exit(f"not enough free memory ({avail:.1f} GB < {need} GB); close something or use --quick")
    tmp = Path(tempfile.mkdtemp(prefix="greenlight-cpu-tier-"))
    if args.quick:
        from bridge.backends.tiny import build_tiny_animatediff

        root = build_tiny_animatediff(tmp / "tiny", tiny_decoder=True).parent
        counts = {}
    else:
        root = args.cache or tmp / "realsize"
        if (root / "counts.json").is_file():
            counts = json.loads((root / "counts.json").read_text())
            write_profile(root)
            print(f"reusing real-size weights in {root}")
        else:
            print(f"building real-size random weights in {root} (once) ...", flush=True)
            t = time.perf_counter()
            counts = build_realsize(root)
            print(f"  built in {time.perf_counter() - t:.0f} s", flush=True)
    results = {}
    try:
        for name in VARIANTS:
            print(f"running {name} ...", flush=True)
            out = subprocess.run([sys.executable, __file__, "--variant", name, "--root", str(root),
                                  "--jobs", str(args.jobs), *(["--quick"] if args.quick else [])],
                                 capture_output=True, text=True, cwd=REPO, timeout=3600,
                                 env=dict(os.environ, PYTHONPATH=str(REPO)))
            if out.returncode != 0:
                sys.exit(f"variant {name} failed:\n{out.stderr[-3000:]}")
            results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        if not args.keep_cache:
            shutil.rmtree(tmp, ignore_errors=True)
            if args.cache is None:
                shutil.rmtree(root, ignore_errors=True)

    from benchmarks._report import table

    bf16_ok, bf16_why = cpu_bf16_support()
    geometry = ("tiny random model (final: DDIM, draft: LCM)" if args.quick
                else "real-size random SD 1.5 geometry")
    print(f"\n{geometry}: AnimateDiff + 2 ControlNets, {frames} frames {size}x{size}, {steps} LCM steps, no CFG; "
          f"torch {torch.__version__}, {usable_cores()} cores; bf16 support: {bf16_ok} ({bf16_why})")
    if counts:
        print("parameters: " + ", ".join(f"{k} {v / 1e6:.0f}M" for k, v in counts.items()))
    rows = []
    for name, r in results.items():
        run = r["runs"][-1]
        rows.append((name, r["dtype"], "yes" if r["channels_last"] else "no", r["decoder"], f"{r['load_s']:.1f}",
                     f"{run['total_s']:.1f}", f"{sum(run['step_s']) / len(run['step_s']):.2f}",
                     f"{run['decode_s']:.2f}", f"{r['load_peak_rss_gb']:.2f}", f"{r['peak_rss_gb']:.2f}"))
    print(table(rows, ("variant", "dtype", "ch-last", "decoder", "load s", "job s", "s/step", "decode s",
                       "load peak GB", "peak RSS GB")))
    if args.jobs > 1:
        for name, r in results.items():
            print(f"{name}: job times {[round(x['total_s'], 2) for x in r['runs']]} (first cold, then warm)")
    a, b = results["fp32"], results["bf16"]
    ra, rb = a["runs"][-1], b["runs"][-1]
    speedup = ra["total_s"] / rb["total_s"]
    print(f"bf16 tier vs fp32: {speedup:.2f}x faster per job; peak RSS {b['peak_rss_gb']:.2f} GB "
          f"(target <= {TARGET_RSS_GB} GB)")
    summary = {
        "quick": args.quick, "frames": frames, "size": size, "steps": steps,
        "fp32_total_s": round(ra["total_s"], 2), "bf16_total_s": round(rb["total_s"], 2),
        "fp32_step_s": round(sum(ra["step_s"]) / len(ra["step_s"]), 3),
        "bf16_step_s": round(sum(rb["step_s"]) / len(rb["step_s"]), 3),
        "fp32_decode_s": round(ra["decode_s"], 3), "bf16_decode_s": round(rb["decode_s"], 3),
        "fp32_peak_rss_gb": round(a["peak_rss_gb"], 2), "bf16_peak_rss_gb": round(b["peak_rss_gb"], 2),
        "fp32_load_s": round(a["load_s"], 1), "bf16_load_s": round(b["load_s"], 1),
        "speedup": round(speedup, 3), "target_rss_gb": TARGET_RSS_GB, "bf16_dtype": b["dtype"],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
