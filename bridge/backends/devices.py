"""Device and precision choice, memory settings, and OOM detection for the
torch backends. Imports torch lazily: the bridge starts without it.

The CPU tier (docs/cpu.md): on a CPU, bfloat16 where the CPU has matrix or
vector bf16 instructions (AMX-BF16 or AVX-512 BF16: read from /proc/cpuinfo
flags, else asked of torch), float32 otherwise; ``$GREENLIGHT_CPU_DTYPE``
(float32 | bfloat16) overrides. Torch's thread count is set once, from the
cores this process may run on (its CPU affinity, not the machine's count).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace

from ..errors import InvalidArgumentError, PreconditionError

log = logging.getLogger(__name__)
GIB = 1024 ** 3
CPU_DTYPE_ENV = "GREENLIGHT_CPU_DTYPE"
CPU_DTYPES = ("float32", "bfloat16")
BF16_FLAGS = ("amx_bf16", "avx512_bf16")     # /proc/cpuinfo names, best first
COMPILE_ENV = "GREENLIGHT_TORCH_COMPILE"
COMPILE_MODES = ("off", "unet")
COMPILE_BACKEND = "inductor"                  # torch.compile's default code generator


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


def cpu_bf16_support(cpuinfo: str | None = None) -> tuple[bool, str]:
    """(whether bf16 runs fast here, why). ``cpuinfo``: the text of
    /proc/cpuinfo (read when None); where there is none (macOS, Windows),
    torch's own CPU capability checks answer."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            cpuinfo = ""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            flags.update(value.split())
    if flags:
        found = [f for f in BF16_FLAGS if f in flags]
        if found:
            return True, f"the CPU has {' and '.join(f.upper().replace('_', '-', 1) for f in found)}"
        return False, "the CPU has neither AMX-BF16 nor AVX-512 BF16 (/proc/cpuinfo flags)"
    try:
        import torch

        cpu = torch.cpu
        amx = bool(getattr(cpu, "_is_amx_tile_supported", lambda: False)())
        avx = bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)())
    except Exception as exc:     # an old or odd torch: bf16 unknown, so not chosen
        return False, f"no CPU flags to read and torch could not tell ({type(exc).__name__})"
    if amx or avx:
        return True, f"torch reports {'AMX' if amx else 'AVX-512 BF16'} on this CPU"
    return False, "torch reports neither AMX nor AVX-512 BF16 on this CPU"


def cpu_dtype(cpuinfo: str | None = None, env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(dtype name, why) for the CPU tier: $GREENLIGHT_CPU_DTYPE when set,
    else bfloat16 where the CPU supports it, else float32."""
    wanted = (os.environ if env is None else env).get(CPU_DTYPE_ENV, "").strip().lower()
    if wanted:
        if wanted not in CPU_DTYPES:
            raise PreconditionError(f"${CPU_DTYPE_ENV} on the bridge must be one of {CPU_DTYPES} (or unset for "
                                    f"automatic), got {wanted!r}; the bridge's operator must fix it")
        return wanted, f"${CPU_DTYPE_ENV}={wanted}"
    ok, why = cpu_bf16_support(cpuinfo)
    return ("bfloat16", f"bf16: {why}") if ok else ("float32", f"fp32: {why}")


def torch_compile_mode(env: Mapping[str, str] | None = None) -> str:
    """``$GREENLIGHT_TORCH_COMPILE``: "off" (the default) or "unet" (the
    denoising model is compiled once per load with torch.compile; the first
    job of a profile pays the compile, later ones reuse it: docs/cpu.md has
    what it measured to cost and save)."""
    wanted = (os.environ if env is None else env).get(COMPILE_ENV, "").strip().lower() or "off"
    if wanted not in COMPILE_MODES:
        raise PreconditionError(f"${COMPILE_ENV} on the bridge must be one of {COMPILE_MODES} (or unset: off), "
                                f"got {wanted!r}; the bridge's operator must fix it")
    return wanted


def compile_model(model):
    """``torch.compile`` of ``model`` with the bridge's code generator (the
    module's parameters stay shared with the original)."""
    import torch

    log.info("compiling %s with torch.compile (backend %s): the first job pays for it",
             type(model).__name__, COMPILE_BACKEND)
    return torch.compile(model, backend=COMPILE_BACKEND)


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):    # no affinity API (macOS, Windows)
        return max(1, os.cpu_count() or 1)


_threads_lock = threading.Lock()
_threads_set: int | None = None


def configure_cpu_threads(cores: int | None = None) -> int:
    """Set torch's intra-op threads to the usable cores, once per process
    (later calls return the first figure). $OMP_NUM_THREADS, when the
    operator set it, wins: torch already read it."""
    global _threads_set
    with _threads_lock:
        if _threads_set is not None:
            return _threads_set
        import torch

        if os.environ.get("OMP_NUM_THREADS"):
            threads = int(torch.get_num_threads())
        else:
            threads = cores or usable_cores()
            torch.set_num_threads(threads)
        _threads_set = threads
        log.info("torch uses %d CPU threads", threads)
        return threads


def pick_device(override: str | None = None, cpuinfo: str | None = None) -> DeviceChoice:
    """CUDA > MPS > CPU unless ``override`` (or $GREENLIGHT_DEVICE) names one.
    fp16 on CUDA and MPS; on a CPU the CPU tier's dtype (``cpu_dtype``)."""
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
        dtype, why = cpu_dtype(cpuinfo)
        reason = f"{reason}; {why}"
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
    release_freed_heap()


def release_freed_heap() -> bool:
    """Hand heap memory that Python and torch have freed back to the OS
    (glibc's ``malloc_trim``). Weights dropped while loading (the 2-D UNet
    once the motion UNet is built from it) are otherwise kept by the
    allocator and counted in the bridge's RSS. False where there is no glibc."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        trim = getattr(libc, "malloc_trim", None)
    except OSError:
        return False
    if trim is None:
        return False
    trim(0)
    return True
