"""LoRA weights named by a model profile, merged into the pipeline's
weights once per load (docs/cpu.md, "Few steps").

A profile names the LoRA like any other component, by hub id or local
folder, with its file and strength in ``[defaults]``::

    [components]
    lora = "wangfuyun/AnimateLCM"
    [defaults]
    lora_weight_name = "AnimateLCM_sd15_t2v_lora.safetensors"
    lora_scale = 0.8

diffusers reads the file (its own, kohya and PEFT key formats) through its
PEFT backend; the adapter is then fused into the UNet's and text encoder's
weights and the adapter layers removed, so denoising costs what it costs
without a LoRA. The cached components keep the fused weights: the next job
of the same profile loads nothing and fuses nothing.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

from ..errors import PreconditionError

log = logging.getLogger(__name__)
ADAPTER = "profile"


@dataclass(frozen=True)
class LoraWeights:
    """A LoRA file found on this machine and the strength it is merged with."""

    path: str
    scale: float


def require_peft() -> None:
    if importlib.util.find_spec("peft") is None:
        raise PreconditionError("this model profile names a LoRA, which diffusers loads through PEFT; "
                                "peft is not installed on the bridge (pip install 'greenlight[diffusion]')")


def fuse_lora(pipe, lora: LoraWeights) -> int:
    """Load ``lora`` into ``pipe`` (UNet and, where the file has them, text
    encoder weights), merge it at its scale and drop the adapter layers.
    Returns how many layers were merged."""
    require_peft()
    path = Path(lora.path)
    in_file = _file_layers(pipe, path)
    pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=ADAPTER)
    components = [c for c in ("unet", "text_encoder") if _has_adapter(getattr(pipe, c, None))]
    loaded = sum(len(_adapter_layers(getattr(pipe, c))) for c in components)
    if loaded < in_file:
        # diffusers only warns about keys that match nothing: half a LoRA is a wrong result, not a warning
        pipe.unload_lora_weights()
        raise PreconditionError(f"the model profile's LoRA has {in_file} layers but only {loaded} match this "
                                "model's UNet and text encoder (a LoRA for another model?)")
    pipe.fuse_lora(components=components, lora_scale=lora.scale, adapter_names=[ADAPTER])
    merged = sum(len(_adapter_layers(getattr(pipe, c), merged=True)) for c in components)
    pipe.unload_lora_weights()      # the merged weights stay; the adapter layers go
    log.info("LoRA %s fused at scale %g into %s: %d layers merged", path.name, lora.scale, "+".join(components),
             merged)
    return merged


_DOWN = (".lora_A.", ".lora.down.", ".lora_down.")    # diffusers/PEFT, old diffusers, kohya


def _file_layers(pipe, path: Path) -> int:
    """How many layers the file holds an adapter for (its down/A matrices), after diffusers' key conversion."""
    state = pipe.lora_state_dict(str(path.parent), weight_name=path.name)[0]
    return len({k.split(marker)[0] for k in state for marker in _DOWN if marker in k})


def _adapter_layers(model, merged: bool = False) -> list:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in model.modules() if isinstance(m, BaseTunerLayer) and (not merged or m.merged)]


def _has_adapter(model) -> bool:
    return model is not None and bool(_adapter_layers(model))
