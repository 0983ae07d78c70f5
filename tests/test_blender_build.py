"""The extension build: Blender's own validator accepts the zip, the zip
vendors the bridge modules, and Blender installs and enables it."""

from __future__ import annotations

import re
import zipfile

from tests.blender_scenes import run_scenario


def test_built_zip_validates_installs_and_runs_on_its_vendored_bridge(tmp_path):
    from blender_addon import build

    zips = build.build(tmp_path / "dist")  # validates with Blender's blender_ext.py; raises if invalid
    assert [z.name for z in zips] == ["greenlight-0.1.0.zip"]
    assert build.validate(zips[0])["messages"]
    with zipfile.ZipFile(zips[0]) as zf:
        names = set(zf.namelist())
        for must in ("blender_manifest.toml", "__init__.py", "host.py", "headless.py", "_vendor/bridge/errors.py",
                     "_vendor/bridge/shot/rigs.py", "_vendor/bridge/client/client.py",
                     "_vendor/bridge/proto/greenlight/v1/bridge_pb2_grpc.py"):
            assert must in names, must
        assert "build.py" not in names and "_vendor/bridge/proto/codegen.py" not in names
        assert not any("__pycache__" in n for n in names)
        for n in names:
            if n.startswith("_vendor/") and n.endswith(".py"):
                code = zf.read(n).decode()
                assert not re.search(r"^\s*(from bridge[. ]|import bridge\b)", code, re.M), \
                    f"{n} still imports the installed bridge"
    r = run_scenario("install", zip=str(zips[0]), env={"BLENDER_USER_RESOURCES": str(tmp_path / "user")})
    assert r["result"] == ["FINISHED"] and r["addon"] == "bl_ext.user_default.greenlight"
    assert r["vendored"] is True
    assert r["errors_module"] == "bl_ext.user_default.greenlight._vendor.bridge.errors"
    assert r["stub_module"] == "bl_ext.user_default.greenlight._vendor.bridge.proto.greenlight.v1.bridge_pb2"
    assert r["registered"] and r["unregistered"]


def test_manifest_lists_wheels_before_the_first_table(tmp_path):
    from blender_addon import build

    text = build._hoist_top_level('id = "x"\n\n[permissions]\nnetwork = "n"\n\nwheels = [\n  "./wheels/a.whl",\n]\n'
                                  'platforms = ["linux-x64"]\n')
    assert text.index("wheels = [") < text.index("[permissions]")
    assert text.index("platforms =") < text.index("[permissions]")
