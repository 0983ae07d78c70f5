"""Flow-guided generation: temporal consistency vs time vs control adherence.

The tiny random-weight AnimateDiff + ControlNets (built in a temp folder,
loaded through the animatediff backend's own loader and pipeline builder),
the same seed per shot, temporal mode off vs "attention" vs
"attention+fusion" (bridge.temporal.attention.apply_flow_guidance, applied as
the backend will apply it). Shots: the synthetic dolly and, when Blender's
Python module is installed, the four engine-rendered sample shots
(engine_renders). Per shot and mode it prints the warping error
(bridge.temporal.score: gap1 and 8-frame trajectory), the error ratio
on/off, the denoising time ratio on/off (median of REPEATS, interleaved) and
control adherence (bridge.temporal.adherence, depth-edge F1) with its ratio
on/off. Targets (issue 16): error ratio <= 0.70, time ratio <= 1.15,
adherence within 5% of off. Ends with one JSON line (DESIGN section 9).

A random-weight model has learnt nothing about images: its "frames" are
noise shaped by the ControlNets, so what flow guidance can do for it is
limited to what attention mixing and fusion do to that noise; see the
printed notes and docs/temporal.md.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
os.environ["HF_HUB_OFFLINE"] = "1"

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._report import table  # noqa: E402

FRAMES, WIDTH, HEIGHT, STEPS, SEED, REPEATS = 16, 128, 64, 6, 5, 3
MODES = ("off", "attention", "attention+fusion")
STRENGTH = 1.0


def shots() -> list[tuple[str, object]]:
    from bridge.shot.files import load_shot
    from bridge.shot.synthetic import sample_shot

    out: list[tuple[str, object]] = [("synthetic_dolly", sample_shot(frames=FRAMES, width=WIDTH, height=HEIGHT))]
    try:
        import engine_renders
    except ImportError:
        return out
    if not engine_renders.bpy_available():
        print("note: bpy not installed; engine-rendered sample shots skipped (pip install 'greenlight[blender]')")
        return out
    with tempfile.TemporaryDirectory() as tmp:
        for name in engine_renders.SAMPLES:
            path = engine_renders.render_sample(name, tmp, width=WIDTH, height=HEIGHT, frames=FRAMES)
            out.append((name, load_shot(path)))
    return out


def run_mode(backend, profile: Path, shot, mode: str):
    """(denoise seconds, uint8 frames) for one mode, exactly as the backend's _run builds and calls."""
    import torch

    from bridge.backends.animatediff import decode_frame
    from bridge.backends.conditioning_video import control_videos
    from bridge.shot.request import GenerationSettings, TemporalSettings
    from bridge.temporal.attention import apply_flow_guidance

    settings = GenerationSettings(backend="animatediff", prompt="a red robot", seed=SEED, steps=STEPS,
                                  model_profile=profile.stem,
                                  temporal=TemporalSettings(mode, STRENGTH if mode != "off" else 0.0))
    plan = backend.plan(shot, settings)
    pipe = backend.build_pipeline(backend.components(plan, "cpu", torch.float32), plan)
    pipe.set_progress_bar_config(disable=True)
    videos = control_videos(shot, [c.kind for c in plan.controls])
    t0 = time.perf_counter()
    guidance = apply_flow_guidance(pipe, shot, settings.temporal, plan)   # its setup counts as guidance time
    try:
        with torch.inference_mode():
            latents = pipe(prompt=settings.prompt, num_frames=shot.frame_count, height=plan.height,
                           width=plan.width, num_inference_steps=plan.steps, guidance_scale=plan.guidance_scale,
                           conditioning_frames=videos,
                           controlnet_conditioning_scale=[c.strength for c in plan.controls],
                           generator=torch.Generator("cpu").manual_seed(SEED), output_type="latent",
                           callback_on_step_end=guidance.on_step_end).frames
    finally:
        guidance.remove()
    seconds = time.perf_counter() - t0
    frames = [decode_frame(pipe, latents, i) for i in range(shot.frame_count)]
    return seconds, frames


def main() -> None:
    import torch

    from bridge.backends.animatediff import AnimateDiffBackend
    from bridge.backends.tiny import build_tiny_animatediff
    from bridge.temporal.adherence import shot_adherence
    from bridge.temporal.score import score_shot

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        profile = build_tiny_animatediff(tmp)
        os.environ["GREENLIGHT_PROFILES"] = str(profile.parent)
        backend = AnimateDiffBackend()
        rows, summary = [], {m: {"err": [], "traj": [], "time": [], "adh": []} for m in MODES[1:]}
        for name, shot in shots():
            run_mode(backend, profile, shot, "off")            # warm-up (model load, first-call costs)
            times = {m: [] for m in MODES}
            frames = {}
            for _ in range(REPEATS):                           # interleaved so load changes hit every mode
                for m in MODES:
                    s, frames[m] = run_mode(backend, profile, shot, m)
                    times[m].append(s)
            res = {}
            for m in MODES:
                score = score_shot(shot, frames[m])
                res[m] = (score.gap1, score.trajectory, statistics.median(times[m]), shot_adherence(shot, frames[m]),
                          score.valid_fraction)
            off = res["off"]
            for m in MODES:
                gap1, traj, sec, adh, valid = res[m]
                ratio = gap1 / off[0] if off[0] else math.nan
                rows.append((name, m, f"{gap1:.4f}", f"{traj:.4f}", f"{ratio:.3f}", f"{traj / off[1]:.3f}",
                             f"{sec:.2f}", f"{sec / off[2]:.3f}", f"{adh:.3f}", f"{adh / off[3]:.3f}", f"{valid:.2f}"))
                if m != "off":
                    summary[m]["err"].append(ratio)
                    summary[m]["traj"].append(traj / off[1])
                    summary[m]["time"].append(sec / off[2])
                    summary[m]["adh"].append(adh / off[3])
    print(f"tiny random-weight AnimateDiff, {FRAMES} frames at {WIDTH}x{HEIGHT}, {STEPS} steps, seed {SEED}, "
          f"strength {STRENGTH}, median of {REPEATS} interleaved runs; load average {load:.2f}")
    print(table(rows, ("shot", "mode", "gap1", "trajectory", "gap1 on/off", "traj on/off", "denoise s",
                       "time on/off", "adherence", "adh on/off", "valid")))
    out: dict[str, object] = {"frames": FRAMES, "width": WIDTH, "height": HEIGHT, "steps": STEPS,
                              "shots": len(rows) // len(MODES), "load_average": round(load, 2)}
    for m, s in summary.items():
        key = "attention" if m == "attention" else "fusion"
        out[f"{key}_error_ratio"] = round(statistics.mean(s["err"]), 4)
        out[f"{key}_trajectory_ratio"] = round(statistics.mean(s["traj"]), 4)
        out[f"{key}_time_ratio"] = round(statistics.mean(s["time"]), 4)
        out[f"{key}_adherence_ratio"] = round(statistics.mean(s["adh"]), 4)
        out[f"{key}_meets_targets"] = bool(statistics.mean(s["err"]) <= 0.70 and statistics.mean(s["time"]) <= 1.15
                                           and abs(statistics.mean(s["adh"]) - 1) <= 0.05)
    print("targets: error ratio <= 0.70, time ratio <= 1.15, adherence ratio within 0.95..1.05")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
