"""Dataclasses from stored or received dicts, tolerant of other versions:
unknown keys are dropped (and logged), missing keys take their defaults."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


def from_mapping(cls: type[T], data: Mapping[str, Any] | None, what: str = "") -> T:
    """Build dataclass ``cls`` from ``data`` (see the module docstring)."""
    data = dict(data or {})
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        log.warning("%s: ignoring unknown keys %s (written by another version?)", what or cls.__name__, unknown)
    return cls(**{k: v for k, v in data.items() if k in names})
