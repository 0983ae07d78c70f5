"""Load pipeline components named by a model profile, through the same
``from_pretrained`` path for hub ids and local folders, and cache the
loaded components between jobs.

Nothing falls back silently: a component that is not there raises
``ModelMissingError`` naming the component, its source and how to get it.
"""

# diffusers re-exports its public classes from a lazy __init__ (``from .models import X`` under TYPE_CHECKING,
# no __all__), so pyright reports the documented ``from diffusers import X`` as a private import.
# pyright: reportPrivateImportUsage=false

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from ..errors import PreconditionError
from .profiles import ModelProfile

log = logging.getLogger(__name__)


class ModelMissingError(PreconditionError):
    """Clients see hub ids but never a server path: a local folder is named
    only in the bridge's log (``self.source`` keeps it for the operator's tools)."""

    def __init__(self, profile: ModelProfile, component: str, source: str, why: str):
        shown = source
        if _is_local(source):
            log.warning("model component %r of profile %r: %s (%s)", component, profile.name, source, why)
            shown, why = "a local folder on the bridge (named in its log)", "not found or not loadable there"
        super().__init__(
            f"model component {component!r} of profile {profile.name!r} is not available: {shown} ({why}). "
            f"Fetch it with `greenlight models pull {profile.name}` where the Hugging Face hub is reachable "
            f"(then copy ~/.cache/huggingface to this machine), or point the profile's [components] "
            f"{component} at a local folder.")
        self.component = component
        self.source = source


# The scheduler class is whatever the checkpoint's scheduler_config.json names.
SCHEDULER_FROM_CONFIG = "diffusers:<scheduler_config>"
# A LoRA is a weights file, not a model: it is found (local folder or hub cache) here and merged into the
# UNet and text encoder by the backend (lora.py). Its file name: [defaults] lora_weight_name.
LORA = "lora:<weights file>"
DEFAULT_LORA_FILE = "pytorch_lora_weights.safetensors"   # what diffusers' save_lora_weights writes


@dataclass(frozen=True)
class ComponentSpec:
    """How one pipeline component is loaded: class, profile key, subfolder,
    and a file whose presence shows it is there."""

    name: str
    loader: str          # "module:Class"
    profile_key: str
    subfolder: str | None
    marker: str          # relative to the component folder
    optional: bool = False


ANIMATEDIFF_COMPONENTS = (
    ComponentSpec("tokenizer", "transformers:CLIPTokenizer", "base", "tokenizer", "tokenizer_config.json"),
    ComponentSpec("text_encoder", "transformers:CLIPTextModel", "base", "text_encoder", "config.json"),
    ComponentSpec("unet", "diffusers:UNet2DConditionModel", "base", "unet", "config.json"),
    ComponentSpec("vae", "diffusers:AutoencoderKL", "base", "vae", "config.json"),
    ComponentSpec("scheduler", SCHEDULER_FROM_CONFIG, "base", "scheduler", "scheduler_config.json"),
    ComponentSpec("motion_adapter", "diffusers:MotionAdapter", "motion_adapter", None, "config.json"),
    ComponentSpec("controlnet_depth", "diffusers:ControlNetModel", "controlnet_depth", None, "config.json", True),
    ComponentSpec("controlnet_pose", "diffusers:ControlNetModel", "controlnet_pose", None, "config.json", True),
    # the tiny decoder (TAESD geometry, e.g. madebyollin/taesd): step previews always, final frames in "draft".
    # A profile names it [components] vae_preview (or vae_tiny, the same role).
    ComponentSpec("vae_preview", "diffusers:AutoencoderTiny", "vae_preview", None, "config.json", True),
    # a few-step LoRA (LCM, AnimateLCM, Hyper-SD) merged into the weights once per load (lora.py);
    # the marker is the profile's [defaults] lora_weight_name
    ComponentSpec("lora", LORA, "lora", None, DEFAULT_LORA_FILE, True),
)
TINY_DECODER_KEYS = ("vae_preview", "vae_tiny")
# conv-heavy 2-D components of the animatediff family laid out channels-last on a CPU (oneDNN's preferred
# layout for its convolutions; benchmarks/bridge_overhead.py measures it); Wan's 3-D VAE has no such layout
CHANNELS_LAST = ("unet", "vae", "vae_preview", "controlnet_depth", "controlnet_pose")

WAN_VACE_COMPONENTS = (
    ComponentSpec("tokenizer", "transformers:AutoTokenizer", "base", "tokenizer", "tokenizer_config.json"),
    ComponentSpec("text_encoder", "transformers:UMT5EncoderModel", "base", "text_encoder", "config.json"),
    ComponentSpec("vae", "diffusers:AutoencoderKLWan", "base", "vae", "config.json"),
    ComponentSpec("transformer", "diffusers:WanVACETransformer3DModel", "base", "transformer", "config.json"),
    ComponentSpec("scheduler", SCHEDULER_FROM_CONFIG, "base", "scheduler", "scheduler_config.json"),
)
SPECS = {"animatediff": ANIMATEDIFF_COMPONENTS, "wan-vace": WAN_VACE_COMPONENTS}


def _source_for(profile: ModelProfile, spec: ComponentSpec) -> tuple[str | None, str | None]:
    """(source, subfolder); a dedicated ``vae`` entry overrides base/vae."""
    if spec.name == "vae" and profile.source("vae"):
        return profile.source("vae"), None
    if spec.name == "vae_preview":
        return next((profile.source(k) for k in TINY_DECODER_KEYS if profile.source(k)), None), None
    return profile.source(spec.profile_key), spec.subfolder


def _marker(profile: ModelProfile, spec: ComponentSpec) -> str:
    if spec.loader == LORA:
        return str(profile.default("lora_weight_name", DEFAULT_LORA_FILE))
    return spec.marker


def has_component(profile: ModelProfile, name: str) -> bool:
    """Whether the profile names a source for component ``name`` (optional ones may be absent)."""
    spec = next((s for s in SPECS[profile.family] if s.name == name), None)
    return spec is not None and _source_for(profile, spec)[0] is not None


def _is_local(source: str) -> bool:
    return os.path.isabs(source) or source.startswith(".") or Path(source).exists()


def _load_failure(source: str, exc: Exception) -> str:
    """What a failed load says to a client: the error's kind, not its text (which may hold cache paths)."""
    log.warning("loading %s failed: %s: %s", source, type(exc).__name__, exc)
    return f"{type(exc).__name__} while loading it; the bridge's log has the details"


def missing_components(profile: ModelProfile, needed: set[str] | None = None):
    """Components that cannot be loaded from disk (local folder or hub
    cache), as (name, source, why). Checks files only; loads nothing."""
    specs = SPECS[profile.family]
    missing = []
    for spec in specs:
        if needed is not None and spec.name not in needed:
            continue
        source, subfolder = _source_for(profile, spec)
        if source is None:
            if not spec.optional:
                missing.append((spec.name, "(not named)", f"the profile names no {spec.profile_key}"))
            continue
        marker = _marker(profile, spec)
        rel = f"{subfolder}/{marker}" if subfolder else marker
        if _is_local(source):
            if not (Path(source) / rel).is_file():
                missing.append((spec.name, source, f"{rel} not found in that folder"))
            continue
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            missing.append((spec.name, source,
                            "huggingface_hub is not installed (pip install 'greenlight[diffusion]')"))
            continue
        cached = try_to_load_from_cache(source, rel)
        if not isinstance(cached, str):
            offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
            missing.append((spec.name, source, f"{rel} is not in the Hugging Face cache"
                            + (" and HF_HUB_OFFLINE=1" if offline else "")))
    return missing


def require_components(profile: ModelProfile, needed: set[str]) -> None:
    missing = missing_components(profile, needed=needed)
    if missing:
        name, source, why = missing[0]
        raise ModelMissingError(profile, name, source, why)


def _load_class(dotted: str):
    import importlib

    module, _, cls = dotted.partition(":")
    return getattr(importlib.import_module(module), cls)


def load_component(profile: ModelProfile, spec: ComponentSpec, dtype=None):
    source, subfolder = _source_for(profile, spec)
    if source is None:
        raise ModelMissingError(profile, spec.name, "(not named)", f"the profile names no {spec.profile_key}")
    kwargs = {}
    if subfolder:
        kwargs["subfolder"] = subfolder
    if spec.loader == LORA:
        return _find_lora(profile, spec, source)
    if spec.loader == SCHEDULER_FROM_CONFIG:
        import diffusers

        try:
            # load_config is annotated as returning (config, unused kwargs); without return_unused_kwargs
            # it returns the config dict alone
            config = cast("dict[str, Any]", diffusers.DDIMScheduler.load_config(source, **kwargs))
        except (OSError, ValueError) as exc:
            raise ModelMissingError(profile, spec.name, source, _load_failure(source, exc)) from exc
        return getattr(diffusers, config["_class_name"]).from_config(config)
    cls = _load_class(spec.loader)
    if dtype is not None and spec.name not in ("tokenizer", "scheduler"):
        # straight into the target dtype, tensor by tensor (no float32 copy of the model first):
        # diffusers takes torch_dtype + low_cpu_mem_usage, transformers 5 calls it dtype and loads lazily
        if spec.loader.startswith("diffusers:"):
            kwargs["torch_dtype"] = dtype
            kwargs["low_cpu_mem_usage"] = True
        else:
            kwargs["dtype"] = dtype
    if not _is_local(source) and os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        kwargs["local_files_only"] = True
    try:
        return cls.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:   # hub/cache misses surface as OSError subclasses
        raise ModelMissingError(profile, spec.name, source, _load_failure(source, exc)) from exc


def _find_lora(profile: ModelProfile, spec: ComponentSpec, source: str):
    """The LoRA's weights file on this machine (a local folder, or the hub cache / a download), and its scale."""
    from .lora import LoraWeights

    name = _marker(profile, spec)
    scale = profile.default("lora_scale", 1.0)
    if not isinstance(scale, int | float) or isinstance(scale, bool) or not 0 < scale <= 4:
        raise profile.broken(f"defaults.lora_scale must be a number in (0, 4], got {scale!r}")
    if _is_local(source):
        path = Path(source) / name
        if not path.is_file():
            raise ModelMissingError(profile, spec.name, source, f"{name} not found in that folder")
        return LoraWeights(str(path), float(scale))
    from huggingface_hub import hf_hub_download

    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    try:
        return LoraWeights(hf_hub_download(source, name, local_files_only=offline), float(scale))
    except (OSError, ValueError) as exc:   # EntryNotFound / LocalEntryNotFound are OSError subclasses
        raise ModelMissingError(profile, spec.name, source, _load_failure(source, exc)) from exc


def pull(profile: ModelProfile) -> list[str]:
    """Download every hub component of a profile into the HF cache."""
    from huggingface_hub import snapshot_download

    done = []
    for spec in SPECS[profile.family]:
        source, subfolder = _source_for(profile, spec)
        if source is None or _is_local(source):
            continue
        # configs, tokenizer files and the full-precision safetensors only: hub
        # repos also carry .bin, .ckpt and fp16 copies of the same weights
        files = ["*.json", "*.txt", "*.model", "diffusion_pytorch_model*.safetensors", "model*.safetensors"]
        if spec.loader == LORA:
            files = [_marker(profile, spec)]
        patterns = [f"{subfolder}/{f}" for f in files] if subfolder else files
        snapshot_download(source, allow_patterns=patterns)
        done.append(f"{spec.name}: {source}" + (f"/{subfolder}" if subfolder else ""))
    return done


def to_channels_last(module):
    """A model's 4-D weights in channels-last layout (values unchanged)."""
    import torch

    return module.to(memory_format=torch.channels_last)


class ComponentCache:
    """Loaded components per (profile, device, dtype), least recently used
    evicted first. Loading is the slow part of a job; keeping the last
    profile resident makes the next job start at once."""

    def __init__(self, max_entries: int = 1):
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple, dict] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0

    def get(self, profile: ModelProfile, device: str, dtype, needed: set[str] | None = None) -> dict:
        key = (str(profile.path or profile.name), tuple(sorted(profile.components.items())), device, str(dtype))
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                entry = self._entries[key]
                if needed is None or needed <= set(entry):
                    return entry
            else:
                entry = {}
                self.loads += 1     # a profile's first load (later calls may add components to it)
            while len(self._entries) >= self.max_entries and key not in self._entries:
                old, _ = self._entries.popitem(last=False)
                log.info("evicting cached pipeline %s", old[0])
            for spec in SPECS[profile.family]:
                if spec.name in entry or (needed is not None and spec.name not in needed):
                    continue
                if needed is None and spec.optional and _source_for(profile, spec)[0] is None:
                    continue
                component: Any = load_component(profile, spec, dtype)
                if hasattr(component, "to") and spec.name not in ("tokenizer", "scheduler", "lora"):
                    component = component.to(device)
                    if device == "cpu" and profile.family == "animatediff" and spec.name in CHANNELS_LAST:
                        component = to_channels_last(component)
                    component.eval() if hasattr(component, "eval") else None
                entry[spec.name] = component
            self._entries[key] = entry
            return entry

    def evict_all(self) -> None:
        with self._lock:
            self._entries.clear()
        from .devices import free_device_memory

        free_device_memory()
