"""What the CLI and both add-ons take from the engine-free package instead
of keeping their own: ``bridge.client.settings`` (BridgeSettings,
make_client) and ``bridge.shot.tags.safe_tag``."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bridge.cli import main
from bridge.client.settings import BridgeSettings, make_client
from bridge.shot.tags import safe_tag
from tests.conftest import REPO
from tests.test_auth_tls import _self_signed

UNREAL_PYTHON = REPO / "unreal_plugin" / "Greenlight" / "Content" / "Python"


def test_both_add_ons_use_the_shared_settings_and_client_without_grpc():
    # grpc blocked: the settings and the add-ons' engine-free modules still import
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); sys.modules['grpc'] = None\n"
        "import bridge.client.settings as shared\n"
        "import blender_addon.jobs, blender_addon.settings, blender_addon.convert\n"
        "import greenlight_unreal.settings, greenlight_unreal.worker\n"
        "assert issubclass(blender_addon.settings.BridgeSettings, shared.BridgeSettings)\n"
        "assert greenlight_unreal.settings.BridgeSettings is shared.BridgeSettings\n"
        "assert blender_addon.jobs.make_client is shared.make_client is greenlight_unreal.worker.make_client\n"
        "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", code, str(UNREAL_PYTHON)], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_make_client_reads_the_root_certificate(start_bridge, small_shot, tmp_path, capsys):
    cert, key, _ = _self_signed(tmp_path)
    bridge = start_bridge(tls_cert=cert, tls_key=key, host="localhost")
    address = f"localhost:{bridge.port}"
    with make_client(BridgeSettings(address=address, tls_root_cert=str(cert), timeout_s=10)) as client:
        job = client.submit(small_shot).job
    # the CLI builds its client the same way
    assert main(["jobs", "--project", job.project, "--address", address, "--tls-root-cert", str(cert)]) == 0
    assert job.job_id in capsys.readouterr().out


@pytest.mark.parametrize("text, default, tag", [
    ("My Shot 1", "", "My_Shot_1"),
    ("  sh010 / take 2 ", "", "sh010_take_2"),
    ("..._x_...", "", "x"),
    ("???", "", ""),               # Blender refuses this one (convert.tag)
    ("???", "shot", "shot"),       # Unreal and USD fall back
    ("café", "shot", "caf"),       # ASCII only: the bridge's validation accepts nothing else
    ("a" * 70 + "b", "", "a" * 64),
])
def test_safe_tag(text, default, tag):
    assert safe_tag(text, default) == tag


def test_every_sanitiser_is_the_shared_one():
    from blender_addon import convert
    from bridge.errors import InvalidArgumentError
    from bridge.shot.usd_io import _tag_from_stem

    assert convert.tag(" Scene.001 ", "shot") == "Scene.001" and _tag_from_stem("cam  A_") == "cam_A"
    with pytest.raises(InvalidArgumentError, match="no letters or digits"):
        convert.tag("???", "shot")
