"""What both add-on builds copy out of ``bridge`` (and how), in one place.

``blender_addon/build.py`` vendors into the extension's ``_vendor/bridge``,
``unreal_plugin/build.py`` into the plugin's ``Lib/site-packages/bridge``.
Only engine-free modules go: the shot model, the client, the generated
stubs, the error types, the job model (``jobs/model.py``) and the
storyboard (screenplay parsing, shot lists, blocking; it needs the
``screenplay-tools`` wheel, which the Blender build bundles); never the
server, the job store, scheduling, energy or backends. This module is not
vendored itself.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

BRIDGE = Path(__file__).resolve().parent
VENDORED = ("__init__.py", "errors.py", "shot", "client", "proto",
            "jobs/__init__.py", "jobs/model.py",     # the job vocabulary, not the store
            "storyboard")                            # screenplay -> shot list -> blocking (Blender's operator)
SKIP = frozenset({"codegen.py"})   # proto/codegen.py needs grpc_tools; not for an editor
_STUB_IMPORT = re.compile(r"^from bridge\.proto\.greenlight\.v1 import ", re.M)


def copy_tree(src: Path, dst: Path, skip: frozenset[str] | set[str] = SKIP) -> None:
    """Copy the files under ``src`` to ``dst`` (metadata kept), leaving out
    ``__pycache__``, ``.pyc`` and names in ``skip``."""
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if path.is_dir() or "__pycache__" in rel.parts or path.suffix == ".pyc" or path.name in skip:
            continue
        out = dst / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, out)


def vendor_bridge(dst: Path, relative_stub_imports: bool = False) -> None:
    """Copy ``VENDORED`` into ``dst`` (the vendored ``bridge`` package).

    ``relative_stub_imports``: rewrite the generated stubs' absolute ``from
    bridge.proto.greenlight.v1 import`` into ``from . import``, for a copy
    that is not importable as ``bridge`` (Blender's ``_vendor.bridge``, which
    must never reach an installed ``greenlight``). Unreal puts the copy on
    ``sys.path`` as ``bridge`` itself and keeps the stubs as they are.
    """
    dst.mkdir(parents=True, exist_ok=True)
    for name in VENDORED:   # a folder, or a file (may be nested: "jobs/model.py")
        src = BRIDGE / name
        if src.is_dir():
            copy_tree(src, dst / name)
        else:
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name)
    if relative_stub_imports:
        for stub in (dst / "proto").rglob("*_pb2*.py*"):
            stub.write_text(_STUB_IMPORT.sub("from . import ", stub.read_text()))
