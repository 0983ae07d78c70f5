"""What to make of a shot (generation) and when/where to run it (scheduling).

Plain frozen dataclasses, JSON-able, shared by the add-ons, the CLI and the
bridge; protobuf conversion lives in ``bridge.shot.wire``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from ..errors import InvalidArgumentError, LimitExceededError
from .dicts import from_mapping

CONTROL_KINDS = ("depth", "pose", "motion")
JOB_CLASSES = ("interactive", "batch")
QUALITIES = ("draft", "final")   # generation.quality; "" = the backend's default (final)
TEMPORAL_MODES = ("off", "attention", "attention+fusion")


@dataclass(frozen=True)
class ControlSettings:
    kind: str
    enabled: bool = True
    strength: float = 1.0
    guidance_start: float = 0.0
    guidance_end: float = 1.0


@dataclass(frozen=True)
class TemporalSettings:
    """Flow-guided generation from the engine's motion pass (docs/temporal.md).
    ``strength`` 0 and ``step_end`` 0 mean the backend's defaults."""

    mode: str = "off"          # "off" | "attention" | "attention+fusion" ("" reads as "off")
    strength: float = 0.0      # 0..1
    step_start: float = 0.0    # fraction of the schedule where guidance starts
    step_end: float = 0.0      # fraction where it ends (> step_start), 0 = default

    @property
    def enabled(self) -> bool:
        return self.mode not in ("", "off")


@dataclass(frozen=True)
class GenerationSettings:
    backend: str = "guides"
    prompt: str = ""
    negative_prompt: str = ""
    seed: int = 0
    steps: int = 0                # 0 = backend default
    guidance_scale: float = 0.0   # 0 = backend default
    controls: tuple[ControlSettings, ...] = ()
    output_width: int = 0         # 0 = the shot's resolution
    output_height: int = 0
    preview_every_n_steps: int = 0
    model_profile: str = ""
    quality: str = ""             # "draft" | "final"; "" = final (GetCapabilities lists each backend's presets)
    temporal: TemporalSettings = TemporalSettings()

    def control(self, kind: str) -> ControlSettings | None:
        return next((c for c in self.controls if c.kind == kind), None)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> GenerationSettings:
        """Tolerant of other versions: unknown keys are dropped (logged),
        missing ones take their defaults."""
        data = dict(data)
        data["controls"] = tuple(from_mapping(ControlSettings, c, "generation control")
                                 for c in data.get("controls", ()))
        if "temporal" in data:
            data["temporal"] = from_mapping(TemporalSettings, data["temporal"], "generation temporal")
        return from_mapping(cls, data, "generation settings")


@dataclass(frozen=True)
class SchedulingSettings:
    job_class: str = "interactive"
    deadline: datetime | None = None   # timezone-aware UTC; required for batch
    allowed_sites: tuple[str, ...] = field(default_factory=tuple)
    max_co2e_g: float | None = None

    def to_dict(self) -> dict:
        return {
            "job_class": self.job_class,
            "deadline": self.deadline.isoformat() if self.deadline else None,
            "allowed_sites": list(self.allowed_sites),
            "max_co2e_g": self.max_co2e_g,
        }

    @classmethod
    def from_dict(cls, data: dict) -> SchedulingSettings:
        deadline = data.get("deadline")
        return cls(
            job_class=data.get("job_class", "interactive"),
            deadline=datetime.fromisoformat(deadline) if deadline else None,
            allowed_sites=tuple(data.get("allowed_sites", ())),
            max_co2e_g=data.get("max_co2e_g"),
        )


def _finite(value: float, field: str) -> None:
    if not math.isfinite(value):   # NaN slips through every range check: refuse it by name
        raise InvalidArgumentError(f"{field}: must be a finite number, got {value!r}", field=field)


def _check_limit(value: int, maximum: int | None, limit: str, field: str) -> None:
    if maximum is not None and value > maximum:   # the limit's name as advertised, then the field
        raise LimitExceededError(f"{limit} ({field})", value, maximum)


def validate_generation(gen: GenerationSettings, *, max_steps: int | None = None, max_prompt_chars: int | None = None,
                        max_output_width: int | None = None,
                        max_output_height: int | None = None) -> GenerationSettings:
    """Raise InvalidArgumentError (a bad value, by field) or LimitExceededError
    (a value over one of the bridge's ``[limits]``, given here; None = not checked)."""
    _finite(gen.guidance_scale, "generation.guidance_scale")
    for i, c in enumerate(gen.controls):
        for name in ("strength", "guidance_start", "guidance_end"):
            _finite(getattr(c, name), f"generation.controls[{i}].{name}")
    if not gen.backend:
        raise InvalidArgumentError("generation.backend: is required (see GetCapabilities for the list)")
    if gen.seed < 0 or gen.seed >= 2**64:
        raise InvalidArgumentError(f"generation.seed: must be in [0, 2^64), got {gen.seed}")
    if gen.steps < 0 or gen.steps > 1000:
        raise InvalidArgumentError(f"generation.steps: must be 0 (default) to 1000, got {gen.steps}")
    if gen.guidance_scale < 0 or gen.guidance_scale > 50:
        raise InvalidArgumentError(f"generation.guidance_scale: must be 0 (default) to 50, got {gen.guidance_scale}")
    for name in ("output_width", "output_height", "preview_every_n_steps"):
        if getattr(gen, name) < 0:
            raise InvalidArgumentError(f"generation.{name}: must be >= 0, got {getattr(gen, name)}",
                                       field=f"generation.{name}")
    _check_limit(gen.steps, max_steps, "max_steps", "generation.steps")
    _check_limit(len(gen.prompt), max_prompt_chars, "max_prompt_chars", "generation.prompt")
    _check_limit(len(gen.negative_prompt), max_prompt_chars, "max_prompt_chars", "generation.negative_prompt")
    _check_limit(gen.output_width, max_output_width, "max_output_width", "generation.output_resolution.width")
    _check_limit(gen.output_height, max_output_height, "max_output_height", "generation.output_resolution.height")
    if (gen.output_width == 0) != (gen.output_height == 0):
        raise InvalidArgumentError(
            f"generation.output_resolution: set both width and height or neither, "
            f"got {gen.output_width}x{gen.output_height}")
    if gen.quality not in ("", *QUALITIES):
        raise InvalidArgumentError(f"generation.quality: must be one of {QUALITIES} or empty (final), "
                                   f"got {gen.quality!r}", field="generation.quality")
    validate_temporal(gen.temporal)
    seen = set()
    for i, c in enumerate(gen.controls):
        where = f"generation.controls[{i}]"
        if c.kind not in CONTROL_KINDS:
            raise InvalidArgumentError(f"{where}.kind: must be one of {CONTROL_KINDS}, got {c.kind!r}")
        if c.kind in seen:
            raise InvalidArgumentError(f"{where}.kind: {c.kind!r} is given twice")
        seen.add(c.kind)
        if not (0 <= c.strength <= 10):
            raise InvalidArgumentError(f"{where}.strength: must be in [0, 10], got {c.strength}")
        if not (0 <= c.guidance_start < c.guidance_end <= 1):
            raise InvalidArgumentError(
                f"{where}: need 0 <= guidance_start < guidance_end <= 1, got {c.guidance_start}..{c.guidance_end}")
    return gen


def validate_temporal(temporal: TemporalSettings, where: str = "generation.temporal") -> TemporalSettings:
    """Raise InvalidArgumentError naming the field of a bad temporal setting."""
    for name in ("strength", "step_start", "step_end"):
        _finite(getattr(temporal, name), f"{where}.{name}")
    if temporal.mode not in ("", *TEMPORAL_MODES):
        raise InvalidArgumentError(f"{where}.mode: must be one of {TEMPORAL_MODES}, got {temporal.mode!r}",
                                   field=f"{where}.mode")
    for name in ("strength", "step_start", "step_end"):
        if not (0 <= getattr(temporal, name) <= 1):
            raise InvalidArgumentError(f"{where}.{name}: must be in [0, 1], got {getattr(temporal, name)}",
                                       field=f"{where}.{name}")
    if temporal.step_end and temporal.step_end <= temporal.step_start:
        raise InvalidArgumentError(
            f"{where}.step_end: must be > step_start (or 0 for the default), "
            f"got {temporal.step_start}..{temporal.step_end}", field=f"{where}.step_end")
    return temporal


def validate_scheduling(sched: SchedulingSettings, now: datetime | None = None) -> SchedulingSettings:
    if sched.job_class not in JOB_CLASSES:
        raise InvalidArgumentError(f"scheduling.job_class: must be one of {JOB_CLASSES}, got {sched.job_class!r}")
    if sched.job_class == "batch":
        if sched.deadline is None:
            raise InvalidArgumentError("scheduling.deadline: is required for batch jobs")
        now = now or datetime.now(UTC)
        if sched.deadline <= now:
            raise InvalidArgumentError(
                f"scheduling.deadline: {sched.deadline.isoformat()} is in the past "
                f"(now {now.isoformat(timespec='seconds')})")
    if sched.max_co2e_g is not None:
        _finite(sched.max_co2e_g, "scheduling.max_co2e_g")
    if sched.max_co2e_g is not None and sched.max_co2e_g <= 0:
        raise InvalidArgumentError(f"scheduling.max_co2e_g: must be > 0, got {sched.max_co2e_g}")
    return sched
