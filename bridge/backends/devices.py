"""Device and precision choice, memory settings, and OOM detection for the
torch backends. Imports torch lazily: the bridge starts without it."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from ..errors import InvalidArgumentError

GIB = 1024 ** 3


@dataclass(frozen=True)
class MemorySettings:
    vae_slicing: bool = False
    vae_tiling: bool = False
    attention_slicing: bool = False
    model_cpu_offload: bool = False

    def lower(self) -> MemorySettings:
        """The next, lower-memory step used after an out-of-memory error."""
        return replace(self, vae_slicing=True, vae_tiling=True, attention_slicing=True,
                       model_cpu_offload=True)


@dataclass(frozen=True)
class DeviceChoice:
    device: str          # "cuda:0", "mps", "cpu"
    dtype_name: str      # "float16", "bfloat16", "float32"
    free_bytes: int | None
    reason: str

    @property
    def dtype(self):
        import torch

        return getattr(torch, self.dtype_name)


def pick_device(override: str | None = None) -> DeviceChoice:
    """CUDA > MPS > CPU unless ``override`` (or $GREENLIGHT_DEVICE) names one.
    fp16 on CUDA (bf16 where supported and fp16 is not preferred), fp16 on
    MPS, fp32 on CPU."""
    import torch

    override = override or os.environ.get("GREENLIGHT_DEVICE") or None
    if override:
        if override.startswith("cuda") and not torch.cuda.is_available():
            raise InvalidArgumentError(f"device {override!r} requested but CUDA is not available here")
        if override == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise InvalidArgumentError("device 'mps' requested but MPS is not available here")
        if not override.startswith(("cuda", "mps", "cpu")):
            raise InvalidArgumentError(f"device must be cuda[:N], mps or cpu, got {override!r}")
        device, reason = override, "requested"
    elif torch.cuda.is_available():
        device, reason = "cuda:0", "CUDA available"
    elif hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        device, reason = "mps", "Apple MPS available"
    else:
        device, reason = "cpu", "no GPU"
    free = None
    if device.startswith("cuda"):
        free, _total = torch.cuda.mem_get_info(torch.device(device))
        dtype = "float16"
    elif device == "mps":
        dtype = "float16"
    else:
        dtype = "float32"
    return DeviceChoice(device, dtype, free, reason)


def default_memory_settings(choice: DeviceChoice) -> MemorySettings:
    """Sensible defaults from free device memory (SD1.5 AnimateDiff + two
    ControlNets in fp16 needs ~6-8 GiB at 512x512x16 without offload)."""
    if choice.free_bytes is None:   # CPU / MPS: memory is shared, keep decode small
        return MemorySettings(vae_slicing=True)
    if choice.free_bytes < 6 * GIB:
        return MemorySettings(vae_slicing=True, vae_tiling=True, attention_slicing=True, model_cpu_offload=True)
    if choice.free_bytes < 12 * GIB:
        return MemorySettings(vae_slicing=True, attention_slicing=True)
    return MemorySettings(vae_slicing=True)


def is_out_of_memory(exc: BaseException) -> bool:
    try:
        import torch

        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return True
    except ImportError:
        return False
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def free_device_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
