"""Shared fixtures, and the one collection rule for interpreters without torch.

Tests marked ``diffusion`` need the diffusion extra (torch + diffusers). The
dev extra installs it on Python 3.11 only: torch 2.13.0's CPU wheel is
cp311, and on 3.13 pip would take PyPI's default torch, a multi-GB CUDA
build. Where torch or diffusers cannot be imported, those tests are
deselected (not skipped) and the run says how many, at the top and at the
end. On Python 3.11 a missing torch is a broken install and the run stops,
unless ``-m "not diffusion"`` asks for the torch-free set on purpose (the
Blender matrix's venvs). See README, "Two commands".
"""

import importlib.util
import os
import sys

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from bridge.backends import default_backends  # noqa: E402
from bridge.shot.synthetic import sample_shot  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DIFFUSION_MODULES = ("torch", "diffusers")
MISSING = [m for m in DIFFUSION_MODULES if importlib.util.find_spec(m) is None]
_deselected: list[str] = []


def pytest_configure(config):
    config.addinivalue_line("markers", "diffusion: needs torch + diffusers (the diffusion extra); deselected "
                            "where they are not installed (Python 3.13), see tests/conftest.py")
    asked_without = "not diffusion" in (config.option.markexpr or "")
    if MISSING and sys.version_info[:2] == (3, 11) and not asked_without:
        raise pytest.UsageError(
            f"{' and '.join(MISSING)} not installed, but on Python 3.11 the dev extra installs them: a broken "
            "install (rerun: .venv/bin/pip install -e '.[dev]'), or pass -m 'not diffusion' to run without them")


def pytest_collection_modifyitems(config, items):
    if not MISSING:
        return
    keep = [item for item in items if item.get_closest_marker("diffusion") is None]
    dropped = [item for item in items if item.get_closest_marker("diffusion") is not None]
    if dropped:
        _deselected.extend(item.nodeid for item in dropped)
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def _why() -> str:
    return (f"{' and '.join(MISSING)} not importable on Python {sys.version_info[0]}.{sys.version_info[1]} "
            "(the dev extra installs the diffusion extra on 3.11 only)")


def pytest_report_header(config):
    if MISSING:
        return f"greenlight: tests marked 'diffusion' are deselected: {_why()}"
    return None


def pytest_terminal_summary(terminalreporter):
    if _deselected:
        modules = sorted({n.split("::")[0] for n in _deselected})
        terminalreporter.write_line(
            f"greenlight: {len(_deselected)} diffusion tests deselected ({_why()}), from {', '.join(modules)}; "
            "they run on Python 3.11", yellow=True)


@pytest.fixture(scope="session")
def small_shot():
    """6 frames at 64x36: the synthetic dolly, fast to build and upload."""
    return sample_shot(frames=6, width=64, height=36)


@pytest.fixture
def start_bridge(tmp_path):
    """Start real bridges on OS-chosen loopback ports; all stopped at the end.

    ``tokens={"plain-token": "project"}`` is given in the clear for
    convenience and hashed here (the bridge keeps only digests)."""
    from bridge.server.app import create_server
    from bridge.server.auth import hash_tokens
    from bridge.server.config import BridgeConfig

    started = []

    def start(backends=None, data_dir=None, clock=None, **config):
        if backends is None:
            backends = default_backends()
        # the CPU-time estimate unless a test asks for another: figures that do not depend on this machine
        config.setdefault("meter", "estimate")
        if "tokens" in config:
            config["tokens"] = hash_tokens(config["tokens"])
        cfg = BridgeConfig(data_dir=data_dir or tmp_path / f"bridge{len(started)}", port=0, **config)
        bridge = create_server(cfg, backends=backends, clock=clock)
        started.append(bridge)
        return bridge

    yield start
    for bridge in started:
        try:
            bridge.stop(grace=0)
        except Exception:
            pass


@pytest.fixture
def paced():
    from tests.helpers.backends import PacedBackend

    return PacedBackend(frame_s=0.05)
