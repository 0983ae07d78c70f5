"""What the diffusion backends share: profile/device/cache settings and the
capability report. Each model family keeps its own file (animatediff.py,
wan_vace.py) for everything else."""

from __future__ import annotations

import importlib.util
import sys

from ..errors import GreenlightError
from .base import Backend, BackendInfo, QualityPreset
from .devices import pick_device
from .loading import ComponentCache


def torch_available() -> tuple[bool, str]:
    """Checked without importing (torch takes seconds to import)."""
    for name in ("torch", "diffusers", "transformers"):
        if importlib.util.find_spec(name) is None:
            return False, f"{name} is not installed: pip install 'greenlight[diffusion]'"
    return True, ""


class DiffusionBackend(Backend):
    """Base of the torch backends; subclasses set ``id``, ``description``,
    ``default_profile`` and the limits."""

    description = ""
    default_profile = ""
    default_max_frames = 480
    default_max_size = 1024

    def __init__(self, profile: str | None = None, device: str | None = None,
                 cache: ComponentCache | None = None, max_frames: int | None = None, max_size: int | None = None):
        self.default_profile = profile or self.default_profile
        self.device_override = device
        self.cache = cache or ComponentCache()
        self._max_frames = max_frames or self.default_max_frames
        self._max_size = max_size or self.default_max_size
        self._devices: tuple[str, ...] | None = None
        self._presets: tuple[QualityPreset, ...] | None = None

    def warm(self) -> None:
        """Detect the device now (imports torch: seconds); the bridge calls
        this on a thread at startup so that no RPC waits for it."""
        self.info(detect=True)

    def info(self, detect: bool = False) -> BackendInfo:
        """What this backend offers. The device is detected once torch is
        imported (by ``warm`` at startup, or a job): until then ``devices``
        is empty rather than making a GetCapabilities call wait seconds."""
        ok, why = torch_available()
        if ok and self._devices is None and (detect or "torch" in sys.modules):
            try:
                self._devices = (pick_device(self.device_override).device,)
            except GreenlightError as exc:    # e.g. a bad $GREENLIGHT_CPU_DTYPE: unavailable, and why
                ok, why = False, str(exc)
        if self._presets is None:             # read once: info() is asked after every frame
            self._presets = self.quality_presets()
        return BackendInfo(
            id=self.id, description=self.description, conditions=("depth", "pose"),
            max_frames=self._max_frames, max_width=self._max_size, max_height=self._max_size,
            devices=self._devices or (), available=ok, unavailable_reason=why, quality_presets=self._presets)

    def quality_presets(self) -> tuple[QualityPreset, ...]:
        """The presets ``generation.quality`` may name (none by default: the output is final)."""
        return ()
