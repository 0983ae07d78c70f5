"""Regenerate the committed stubs from protos/: ``python -m bridge.proto.codegen``.

The generated modules import each other as ``greenlight.v1``; we rewrite that
to ``bridge.proto.greenlight.v1`` so the stubs live inside the package (and
inside the add-ons that vendor it) without touching ``sys.path``. Needs the
``grpcio-tools`` package (the ``dev`` extra).
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_ROOT.parents[1]
PROTO_ROOT = REPO_ROOT / "protos"
PROTO_FILES = ("greenlight/v1/shot.proto", "greenlight/v1/bridge.proto")
# Files protoc writes that we keep; shot.proto has no service, so its empty
# *_grpc.py is dropped.
GENERATED = (
    "greenlight/v1/shot_pb2.py",
    "greenlight/v1/shot_pb2.pyi",
    "greenlight/v1/bridge_pb2.py",
    "greenlight/v1/bridge_pb2.pyi",
    "greenlight/v1/bridge_pb2_grpc.py",
)
_IMPORT = re.compile(r"^from greenlight\.v1 import", re.MULTILINE)


def generate(out_dir: Path) -> list[Path]:
    """Write the stubs under ``out_dir`` (laid out like bridge/proto/); return them."""
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *PROTO_FILES,
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed: {' '.join(args)}")
        written = []
        for rel in GENERATED:
            text = (Path(tmp) / rel).read_text()
            text = _IMPORT.sub("from bridge.proto.greenlight.v1 import", text)
            target = out_dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            written.append(target)
    for pkg in (out_dir / "greenlight", out_dir / "greenlight" / "v1"):
        init = pkg / "__init__.py"
        if not init.exists():
            init.write_text("")
    return written


if __name__ == "__main__":
    for path in generate(PACKAGE_ROOT):
        print(path.relative_to(REPO_ROOT))
    sys.exit(0)
