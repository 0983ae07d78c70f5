"""Generation backends behind one interface (``base.Backend``).

``default_backends()`` lists what this install offers; heavy backends import
their dependencies only when they run.
"""

from __future__ import annotations

from .base import Backend, BackendInfo, JobContext


def default_backends(extra: tuple[str, ...] = ()) -> dict[str, Backend]:
    """The built-in backends plus ``extra`` ones named "module:Class"."""
    from .animatediff import AnimateDiffBackend
    from .guides import GuidesBackend
    from .wan_vace import WanVaceBackend

    backends: list[Backend] = [GuidesBackend(), AnimateDiffBackend(), WanVaceBackend()]
    backends += [load_backend(spec) for spec in extra]
    return {b.id: b for b in backends}


def load_backend(spec: str) -> Backend:
    import importlib

    from ..errors import InvalidArgumentError

    module_name, sep, class_name = spec.partition(":")
    if not sep:
        raise InvalidArgumentError(f"extra_backends: {spec!r} must look like 'package.module:ClassName'")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise InvalidArgumentError(f"extra_backends: cannot load {spec!r}: {exc}") from exc
    backend = cls()
    if not isinstance(backend, Backend):
        raise InvalidArgumentError(f"extra_backends: {spec!r} is not a bridge.backends.Backend")
    return backend


__all__ = ["Backend", "BackendInfo", "JobContext", "default_backends"]
