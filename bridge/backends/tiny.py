"""A tiny, randomly initialised AnimateDiff + ControlNet model, saved in the
hub folder layout with a profile that points at it.

It exercises the real loading code (``from_pretrained`` on local folders)
with no download: tests, benchmarks and the offline demo use it. Its output
is noise shaped by the controls, not a picture: random weights.
"""

from __future__ import annotations

import json
from pathlib import Path

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2}
    for c in LETTERS:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77), len(vocab)


def build_tiny_animatediff(root: str | Path, seed: int = 0, size: str = "tiny") -> Path:
    """Write base/, motion_adapter/, controlnet_depth/, controlnet_pose/ and
    ``tiny.toml`` under ``root``; return the profile path.

    ``size="tiny"`` trains nothing and runs a 16-frame 64x64 clip in about a
    second on a CPU. The VAE and ControlNet keep SD's 8x downsampling so the
    pipeline sees the same latent geometry as the real model.
    """
    import torch
    from diffusers import AutoencoderKL, ControlNetModel, DDIMScheduler, MotionAdapter, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    if size != "tiny":
        raise ValueError(f"unknown size {size!r}")
    root = Path(root)
    torch.manual_seed(seed)
    base = root / "base"
    tokenizer, vocab_size = _tokenizer(root / "_vocab")
    tokenizer.save_pretrained(base / "tokenizer")
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=16, intermediate_size=37,
        num_attention_heads=4, num_hidden_layers=2, vocab_size=vocab_size, projection_dim=16))
    text_encoder.save_pretrained(base / "text_encoder")
    blocks = dict(block_out_channels=(8, 16), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                  cross_attention_dim=16, norm_num_groups=2, attention_head_dim=2, layers_per_block=1)
    UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4,
                         up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), **blocks).save_pretrained(base / "unet")
    AutoencoderKL(block_out_channels=(8, 8, 8, 8), layers_per_block=1, in_channels=3, out_channels=3,
                  down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                  latent_channels=4, norm_num_groups=2).save_pretrained(base / "vae")
    DDIMScheduler(beta_schedule="linear", clip_sample=False).save_pretrained(base / "scheduler")
    MotionAdapter(block_out_channels=(8, 16), motion_layers_per_block=1, motion_norm_num_groups=2,
                  motion_num_attention_heads=2, motion_max_seq_length=32).save_pretrained(root / "motion_adapter")
    for name in ("controlnet_depth", "controlnet_pose"):
        controlnet = ControlNetModel(in_channels=4, conditioning_embedding_out_channels=(8, 8, 8, 8), **blocks)
        # ControlNet starts training from zero convolutions, so a freshly
        # initialised one adds nothing; random weights here make the controls
        # visibly steer the tiny model, as trained ones steer a real one.
        with torch.no_grad():
            for module in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block,
                           controlnet.controlnet_cond_embedding.conv_out]:
                module.weight.normal_(0.0, 0.3)
        controlnet.save_pretrained(root / name)
    profile = root / "tiny.toml"
    profile.write_text(
        '# Tiny random-weight AnimateDiff for offline tests and demos: its output is noise.\n'
        'name = "tiny"\nfamily = "animatediff"\n'
        'description = "tiny random-weight AnimateDiff + ControlNets (output is noise)"\n\n'
        '[components]\nbase = "./base"\nmotion_adapter = "./motion_adapter"\n'
        'controlnet_depth = "./controlnet_depth"\ncontrolnet_pose = "./controlnet_pose"\n\n'
        '[defaults]\nsteps = 4\nguidance_scale = 7.5\nscheduler = "ddim"\ncontext_length = 16\n'
        'context_stride = 4\npreview_every_n_steps = 2\n')
    return profile
