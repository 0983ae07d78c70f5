"""A tiny, randomly initialised AnimateDiff + ControlNet model, saved in the
hub folder layout with a profile that points at it.

It exercises the real loading code (``from_pretrained`` on local folders)
with no download: tests, benchmarks and the offline demo use it. Its output
is noise shaped by the controls, not a picture: random weights.
"""

# diffusers re-exports its public classes from a lazy __init__ (``from .models import X`` under TYPE_CHECKING,
# no __all__), so pyright reports the documented ``from diffusers import X`` as a private import.
# pyright: reportPrivateImportUsage=false

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any, cast

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


def build_tiny_decoder(folder: str | Path, seed: int = 0, channels: int = 8) -> Path:
    """A random-weight AutoencoderTiny (TAESD's layout: 8x upsampling, 4
    latent channels) saved to ``folder``; ``channels=64`` is TAESD's real size."""
    import torch
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    AutoencoderTiny(encoder_block_out_channels=(channels,) * 4, decoder_block_out_channels=(channels,) * 4,
                    latent_channels=4).save_pretrained(folder)
    return Path(folder)


def build_tiny_animatediff(root: str | Path, seed: int = 0, size: str = "tiny", tiny_decoder: bool = False) -> Path:
    """Write base/, motion_adapter/, controlnet_depth/, controlnet_pose/ and
    ``tiny.toml`` under ``root``; return the profile path. ``tiny_decoder``
    adds a random AutoencoderTiny as ``vae_preview`` and a ``[defaults.draft]``
    preset (2 LCM steps, guidance 1).

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
    # shared UNet / ControlNet kwargs of mixed types (typed Any so ** does not pass their union to every parameter)
    blocks: dict[str, Any] = dict(
        block_out_channels=(8, 16), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        cross_attention_dim=16, norm_num_groups=2, attention_head_dim=2, layers_per_block=1)
    UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4,
                         up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), **blocks).save_pretrained(base / "unet")
    # AutoencoderKL annotates its per-block tuples as tuple[int] / tuple[str] (one element); they take one per block
    AutoencoderKL(block_out_channels=(8, 8, 8, 8),  # pyright: ignore[reportArgumentType]
                  down_block_types=("DownEncoderBlock2D",) * 4,  # pyright: ignore[reportArgumentType]
                  up_block_types=("UpDecoderBlock2D",) * 4,  # pyright: ignore[reportArgumentType]
                  layers_per_block=1, in_channels=3, out_channels=3,
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
    extra_components, extra_defaults = "", ""
    if tiny_decoder:
        build_tiny_decoder(root / "vae_preview", seed=seed)
        extra_components = 'vae_preview = "./vae_preview"\n'
        extra_defaults = '\n[defaults.draft]\nsteps = 2\nguidance_scale = 1.0\nscheduler = "lcm"\n'
    # the weights are random numbers made here: no third party's licence applies to them
    licenses = "".join(
        f'\n[licenses.{c}]\nid = "LicenseRef-Greenlight-random-weights"\ncommercial = "yes"\nurl = ""\n'
        f'checked = "{date.today().isoformat()}"\nnote = "random weights generated by bridge.backends.tiny"\n'
        for c in ("base", "motion_adapter", "controlnet_depth", "controlnet_pose", *(("vae_preview",) * tiny_decoder)))
    profile = root / "tiny.toml"
    profile.write_text(
        '# Tiny random-weight AnimateDiff for offline tests and demos: its output is noise.\n'
        'name = "tiny"\nfamily = "animatediff"\n'
        'description = "tiny random-weight AnimateDiff + ControlNets (output is noise)"\n\n'
        '[components]\nbase = "./base"\nmotion_adapter = "./motion_adapter"\n'
        'controlnet_depth = "./controlnet_depth"\ncontrolnet_pose = "./controlnet_pose"\n' + extra_components + '\n'
        '[defaults]\nsteps = 4\nguidance_scale = 7.5\nscheduler = "ddim"\ncontext_length = 16\n'
        'context_stride = 4\npreview_every_n_steps = 2\n' + extra_defaults + licenses)
    return profile


def build_tiny_wan_vace(root: str | Path, seed: int = 0) -> Path:
    """A tiny random-weight Wan2.1-VACE in the diffusers layout under
    ``root/base`` plus ``tiny-wan.toml``; the T5 tokenizer is a unigram
    model built in memory (no sentencepiece training data needed)."""
    import torch
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanVACETransformer3DModel
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

    root = Path(root)
    base = root / "base"
    torch.manual_seed(seed)
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(c, -1.0) for c in LETTERS + "\u2581"]
    tok = Tokenizer(models.Unigram(pieces, unk_id=2))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                            model_max_length=512).save_pretrained(base / "tokenizer")
    UMT5EncoderModel(UMT5Config(d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4, vocab_size=len(pieces),
                                relative_attention_num_buckets=8)).save_pretrained(base / "text_encoder")
    AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                     temperal_downsample=[False, True, True]).save_pretrained(base / "vae")
    transformer = WanVACETransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
        text_dim=32, freq_dim=256, ffn_dim=32, num_layers=3, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32, vace_layers=[0, 2], vace_in_channels=96)
    # like ControlNet, VACE's control projections start at zero; random weights make the control count
    with torch.no_grad():
        for name, param in transformer.named_parameters():
            if "vace_blocks" in name and "proj_out" in name:
                param.normal_(0.0, 0.3)
    transformer.save_pretrained(base / "transformer")
    FlowMatchEulerDiscreteScheduler(shift=7.0).save_pretrained(base / "scheduler")
    profile = root / "tiny-wan.toml"
    profile.write_text(
        '# Tiny random-weight Wan2.1-VACE for offline tests: its output is noise.\n'
        'name = "tiny-wan"\nfamily = "wan-vace"\n\n[components]\nbase = "./base"\n\n'
        '[defaults]\nsteps = 3\nguidance_scale = 5.0\npreview_every_n_steps = 2\n')
    return profile

def build_tiny_lora(unet_folder: str | Path, folder: str | Path, seed: int = 0, rank: int = 2,
                    text_encoder_folder: str | Path | None = None) -> Path:
    """A random LoRA (PEFT, ``init_lora_weights=False`` so it changes the
    weights) on the attention projections of the UNet in ``unet_folder``
    (and the CLIP text encoder's, given its folder), saved with diffusers'
    ``save_lora_weights`` as ``pytorch_lora_weights.safetensors`` under
    ``folder``. Returns the weights file."""
    import torch
    from diffusers import AnimateDiffControlNetPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_pretrained(unet_folder)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False,
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    layers: dict[str, Any] = {"unet_lora_layers": get_peft_model_state_dict(unet)}
    if text_encoder_folder is not None:
        from peft import inject_adapter_in_model
        from transformers import CLIPTextModel

        # peft's own injection: transformers' add_adapter asks for a newer peft than the one diffusers needs
        text_encoder = inject_adapter_in_model(
            LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False,
                       target_modules=["q_proj", "k_proj", "v_proj", "out_proj"]),
            CLIPTextModel.from_pretrained(text_encoder_folder))
        layers["text_encoder_lora_layers"] = get_peft_model_state_dict(text_encoder)
    AnimateDiffControlNetPipeline.save_lora_weights(folder, **layers)
    return Path(folder) / "pytorch_lora_weights.safetensors"


def direct_animatediff_pipeline(profile_path: str | Path, dtype=None, tiny_decoder: bool = False,
                                 scheduler: str = "ddim", channels_last: bool = False):
    """A model in this module's folder layout (the tiny one, or the real-size
    random one of benchmarks/cpu_tier.py) as a plain diffusers
    AnimateDiffControlNetPipeline, loaded straight from its folders without
    Greenlight's loader: the reference that tests and benchmarks compare the
    bridge against. ``dtype`` (e.g. torch.bfloat16) is passed to every
    ``from_pretrained``; ``tiny_decoder`` decodes with ``vae_preview/``;
    ``scheduler`` "ddim" or "lcm" over the base scheduler config."""
    import torch
    from diffusers import (
        AnimateDiffControlNetPipeline,
        AutoencoderKL,
        AutoencoderTiny,
        ControlNetModel,
        DDIMScheduler,
        LCMScheduler,
        MotionAdapter,
        UNet2DConditionModel,
    )
    from diffusers.models.controlnets import MultiControlNetModel
    from transformers import CLIPTextModel, CLIPTokenizer

    root = Path(profile_path).parent
    typed: dict[str, Any] = {"torch_dtype": dtype} if dtype is not None else {}
    vae = (AutoencoderTiny.from_pretrained(root / "vae_preview", **typed) if tiny_decoder
           else AutoencoderKL.from_pretrained(root / "base", subfolder="vae", **typed))
    # load_config is annotated as returning (config, unused kwargs); without return_unused_kwargs it is the dict
    config = cast("dict[str, Any]", DDIMScheduler.load_config(root / "base", subfolder="scheduler"))
    pipe = AnimateDiffControlNetPipeline(
        vae=vae,  # pyright: ignore[reportArgumentType]  (annotated AutoencoderKL; AutoencoderTiny decodes alike)
        text_encoder=CLIPTextModel.from_pretrained(root / "base", subfolder="text_encoder",
                                                   **({"dtype": dtype} if dtype is not None else {})),
        tokenizer=CLIPTokenizer.from_pretrained(root / "base", subfolder="tokenizer"),
        unet=UNet2DConditionModel.from_pretrained(root / "base", subfolder="unet", **typed),
        motion_adapter=MotionAdapter.from_pretrained(root / "motion_adapter", **typed),
        controlnet=MultiControlNetModel([ControlNetModel.from_pretrained(root / "controlnet_depth", **typed),
                                         ControlNetModel.from_pretrained(root / "controlnet_pose", **typed)]),
        # annotated as the KarrasDiffusionSchedulers enum (it means a scheduler of one of those classes); it
        # takes any scheduler instance
        scheduler=(LCMScheduler if scheduler == "lcm" else DDIMScheduler).from_config(  # pyright: ignore[reportArgumentType]
            config),
    )
    if dtype is not None:
        pipe.unet.to(dtype=dtype)    # the pipeline builds its motion UNet in float32 from the 2-D one
    if channels_last:
        for module in (pipe.unet, pipe.vae, *pipe.controlnet.nets):
            module.to(memory_format=torch.channels_last)
    pipe.set_progress_bar_config(disable=True)
    return pipe
