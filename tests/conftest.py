import os

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from bridge.backends import default_backends  # noqa: E402
from bridge.shot.synthetic import sample_shot  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


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
