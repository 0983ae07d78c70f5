"""Should the CPU tier ship an OpenVINO path? Torch bf16 against OpenVINO
on the part that dominates a job: one denoising pass of the motion UNet.

The AnimateDiff motion UNet in real SD 1.5 geometry (UNet ~860M + motion
module ~453M, random weights built here in float32) runs one forward pass
on 16 frames of 32x32 latents (a 256x256 clip), no CFG, as each LCM step
does (the ControlNets are left out on both sides alike), in:

  torch fp32    PyTorch eager, the model as built
  torch bf16    the CPU tier: bfloat16 weights, channels-last, inference_mode
  ov f32        ``openvino.convert_model`` of the same module, compiled for
                the CPU with INFERENCE_PRECISION_HINT f32
  ov bf16       the same, INFERENCE_PRECISION_HINT bf16 (OpenVINO's own
                bf16 kernels: AMX or AVX-512 BF16)

Each is warmed once, then timed (median of ``--repeats``); outputs are
compared with torch fp32 (relative L2 error) so a fast but wrong conversion
does not pass. OpenVINO ships only if ``ov bf16`` beats ``torch bf16``
(docs/cpu.md records the verdict). Needs ``pip install openvino`` beside
torch (not a dependency of the project); ``--quick`` uses the tiny model's
geometry (seconds). Peak memory for the real size: about 16 GB (the float32
model, its trace and OpenVINO's copy). Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._report import proc_kb  # noqa: E402


def build_motion_unet(quick: bool):
    from diffusers import MotionAdapter, UNet2DConditionModel, UNetMotionModel

    if quick:
        blocks = dict(block_out_channels=(8, 16), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                      up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
                      norm_num_groups=2, attention_head_dim=2, layers_per_block=1, sample_size=8)
        unet = UNet2DConditionModel(**blocks)
        adapter = MotionAdapter(block_out_channels=(8, 16), motion_layers_per_block=1, motion_norm_num_groups=2,
                                motion_num_attention_heads=2, motion_max_seq_length=32)
        return UNetMotionModel.from_unet2d(unet, adapter).eval(), 16
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768)   # SD 1.x blocks, CLIP ViT-L states
    adapter = MotionAdapter(block_out_channels=(320, 640, 1280, 1280), motion_layers_per_block=2,
                            motion_num_attention_heads=8, motion_norm_num_groups=32, motion_max_seq_length=32,
                            use_motion_mid_block=False)
    return UNetMotionModel.from_unet2d(unet, adapter).eval(), 768


class Wrapper:
    """A plain tensor-in, tensor-out forward for tracing (the diffusers module returns a dataclass)."""

    def __init__(self, model):
        import torch

        class _Fwd(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, sample, timestep, encoder_hidden_states):
                return self.inner(sample, timestep, encoder_hidden_states=encoder_hidden_states,
                                  return_dict=False)[0]

        self.module = _Fwd(model).eval()


def timed(fn, repeats: int) -> tuple[float, object]:
    out = fn()     # warm
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def rel_err(a, b) -> float:
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def peak_gb() -> float:
    return proc_kb("self", "VmHWM") / 2**20


def reset_peak() -> None:
    """Start VmHWM again from the current RSS (Linux: ``5`` to /proc/self/clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")


def bf16_conversion(args, ov, torch) -> None:
    """--bf16-convert: what converting the bf16 model itself costs (its own peak RSS, from a reset
    high-water mark), and the OpenVINO pass it gives against torch bf16 on the same module."""
    import gc

    from bridge.backends.devices import configure_cpu_threads

    threads = configure_cpu_threads()
    torch.manual_seed(0)
    model, ctx_dim = build_motion_unet(args.quick)
    model = model.to(torch.bfloat16)
    gc.collect()
    frames, latent = 16, (8 if args.quick else 32)
    sample = torch.randn(1, 4, frames, latent, latent, dtype=torch.bfloat16)
    timestep = torch.tensor([499])
    states = torch.randn(frames, 77, ctx_dim, dtype=torch.bfloat16)
    fwd = Wrapper(model).module
    with torch.inference_mode():
        t_torch, ref = timed(lambda: fwd(sample, timestep, states), args.repeats)
    ref = ref.float().numpy()
    reset_peak()
    base_gb = peak_gb()
    t0 = time.perf_counter()
    with torch.no_grad():
        ov_model = ov.convert_model(fwd, example_input=(sample, timestep, states))
    convert_s = time.perf_counter() - t0
    convert_peak = peak_gb()
    compiled = ov.Core().compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": "bf16",
                                                         "INFERENCE_NUM_THREADS": threads})
    request = compiled.create_infer_request()
    inputs = [sample.float().numpy(), timestep.numpy(), states.float().numpy()]
    t_ov, out = timed(lambda: request.infer(inputs)[0], args.repeats)
    print(f"bf16 module converted in {convert_s:.1f} s; RSS before {base_gb:.2f} GB, conversion peak "
          f"{convert_peak:.2f} GB (+{convert_peak - base_gb:.2f}); pass: torch bf16 {t_torch:.3f} s, OpenVINO "
          f"{t_ov:.3f} s ({t_ov / t_torch:.3f}x); rel err vs torch bf16 {rel_err(out, ref):.4f}")
    print(json.dumps({"mode": "bf16-convert", "quick": args.quick, "convert_s": round(convert_s, 1),
                      "rss_before_gb": round(base_gb, 2), "convert_peak_gb": round(convert_peak, 2),
                      "torch_bf16_s": round(t_torch, 4), "ov_bf16_s": round(t_ov, 4),
                      "ratio": round(t_ov / t_torch, 4), "err_vs_torch_bf16": round(rel_err(out, ref), 5)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny geometry (seconds)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bf16-convert", action="store_true",
                    help="convert the bf16 model instead and report the conversion's own peak RSS")
    args = ap.parse_args()
    try:
        import openvino as ov
    except ImportError:
        sys.exit("openvino is not installed: pip install openvino (beside torch==2.13.0), then rerun")
    import torch

    if args.bf16_convert:
        bf16_conversion(args, ov, torch)
        return
    from bridge.backends.devices import configure_cpu_threads, cpu_bf16_support

    threads = configure_cpu_threads()
    bf16_ok, bf16_why = cpu_bf16_support()
    torch.manual_seed(0)
    model, ctx_dim = build_motion_unet(args.quick)
    params = sum(p.numel() for p in model.parameters())
    frames, latent = 16, (8 if args.quick else 32)
    sample = torch.randn(1, 4, frames, latent, latent)
    timestep = torch.tensor([499])
    states = torch.randn(frames, 77, ctx_dim)    # the pipeline repeats the prompt embedding per frame
    fwd = Wrapper(model).module
    results: dict[str, dict] = {}

    with torch.inference_mode():
        t, ref = timed(lambda: fwd(sample, timestep, states), args.repeats)
        ref = ref.float().numpy()
        results["torch fp32"] = {"s": t, "err": 0.0}

    print(f"motion UNet {params / 1e6:.0f}M parameters, {frames} frames {latent}x{latent} latents; converting ...",
          flush=True)
    t0 = time.perf_counter()
    with torch.no_grad():
        ov_model = ov.convert_model(fwd, example_input=(sample, timestep, states))
    convert_s = time.perf_counter() - t0
    core = ov.Core()
    ov_devices = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    for name, hint in (("ov f32", "f32"), ("ov bf16", "bf16")):
        t0 = time.perf_counter()
        compiled = core.compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": hint,
                                                        "INFERENCE_NUM_THREADS": threads})
        compile_s = time.perf_counter() - t0
        request = compiled.create_infer_request()
        inputs = [sample.numpy(), timestep.numpy(), states.numpy()]
        t, out = timed(lambda request=request, inputs=inputs: request.infer(inputs)[0], args.repeats)
        results[name] = {"s": t, "err": rel_err(out, ref), "compile_s": compile_s}
        del compiled, request

    model_bf16 = model.to(torch.bfloat16).to(memory_format=torch.channels_last)
    fwd_bf16 = Wrapper(model_bf16).module
    with torch.inference_mode():
        t, out = timed(lambda: fwd_bf16(sample.to(torch.bfloat16), timestep, states.to(torch.bfloat16)),
                       args.repeats)
        results["torch bf16"] = {"s": t, "err": rel_err(out.float().numpy(), ref)}

    base = results["torch bf16"]["s"]
    print(f"\n{'quick (tiny geometry)' if args.quick else 'real SD 1.5 geometry'}; torch {torch.__version__}, "
          f"openvino {ov.__version__}; {threads} threads; bf16: {bf16_ok} ({bf16_why}); OpenVINO CPU "
          f"capabilities: {', '.join(ov_devices)}; convert {convert_s:.1f} s; median of {args.repeats}")
    print(f"{'path':12} {'s/pass':>9} {'vs torch bf16':>14} {'rel err vs fp32':>16}")
    for name in ("torch fp32", "torch bf16", "ov f32", "ov bf16"):
        r = results[name]
        print(f"{name:12} {r['s']:9.3f} {r['s'] / base:14.3f} {r['err']:16.4f}")
    wins = results["ov bf16"]["s"] < base
    print(f"verdict: OpenVINO bf16 {'beats' if wins else 'does not beat'} torch bf16 on this CPU "
          f"({results['ov bf16']['s']:.3f} s vs {base:.3f} s a pass): "
          f"{'worth an openvino extra' if wins else 'not shipped'}")
    print(json.dumps({"quick": args.quick, "params_m": round(params / 1e6), "frames": frames, "latent": latent,
                      "threads": threads, "convert_s": round(convert_s, 1), "peak_rss_gb": round(peak_gb(), 2),
                      **{k.replace(" ", "_") + "_s": round(v["s"], 4) for k, v in results.items()},
                      **{k.replace(" ", "_") + "_err": round(v["err"], 5) for k, v in results.items()},
                      "ov_beats_torch_bf16": wins, "openvino": ov.__version__, "torch": torch.__version__,
                      "load_avg_1m": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    main()
