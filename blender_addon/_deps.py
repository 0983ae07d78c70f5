"""Where the add-on finds the engine-free ``bridge`` modules.

The built extension carries them in ``_vendor/bridge`` (copied by
``build.py`` from the repository, never edited by hand); a source checkout
(tests, ``headless.py`` from the repo) uses the installed ``bridge`` package.
No bpy here.
"""

from __future__ import annotations

import importlib
from pathlib import Path

VENDORED = (Path(__file__).resolve().parent / "_vendor" / "bridge" / "__init__.py").is_file()
BRIDGE_PACKAGE = f"{__package__}._vendor.bridge" if VENDORED else "bridge"


def bridge(module: str):
    """``bridge("shot.camera")`` -> the vendored or installed module."""
    return importlib.import_module(f"{BRIDGE_PACKAGE}.{module}")


# numpy-only modules every part of the add-on uses; the gRPC client (grpcio)
# is imported on demand by ``client_module()`` (and by
# ``client_settings.make_client``) so pass extraction works without it.
errors = bridge("errors")
model = bridge("shot.model")
camera = bridge("shot.camera")
pose = bridge("shot.pose")
rigs = bridge("shot.rigs")
request = bridge("shot.request")
validation = bridge("shot.validation")
tags = bridge("shot.tags")
client_settings = bridge("client.settings")
jobs = bridge("jobs.model")          # JobState, JobEvent, JobReport: the job vocabulary


def client_module():
    return bridge("client")


def files_module():
    return bridge("shot.files")
