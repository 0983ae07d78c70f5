"""The assembled plugin folder: descriptor, vendored modules, Python 3.11 syntax."""

import json
import py_compile
import subprocess
import sys

import pytest

from unreal_plugin import build as plugin_build

REPO = plugin_build.REPO


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    return plugin_build.build(tmp_path_factory.mktemp("unreal") / "out")


def test_uplugin_descriptor(plugin):
    d = json.loads((plugin / "Greenlight.uplugin").read_text())
    for key in plugin_build.REQUIRED_KEYS:
        assert key in d, key
    assert d["FileVersion"] == 3 and d["CanContainContent"] is True
    assert d["EngineVersion"].startswith("5.4")
    names = {p["Name"] for p in d["Plugins"] if p["Enabled"]}
    assert {"PythonScriptPlugin", "MovieRenderPipeline", "ImgMedia", "SequencerScripting"} <= names
    (block,) = d["PythonRequirements"]
    assert block["Platform"] == "All"
    reqs = {line.split("==")[0]: line for line in block["Requirements"]}
    for name, version in plugin_build.PINS.items():
        assert reqs[name].startswith(f"{name}=={version} --hash=sha256:")
    assert reqs["numpy"].count("--hash=sha256:") >= 3          # one wheel per platform at least


def test_pins_match_the_project():
    """The plugin's pins are what the project tests with on Unreal's Python (3.11): its numpy pin satisfies
    the project's numpy requirement for 3.11 and, on a 3.11 test run, is the numpy installed here."""
    import tomllib

    from packaging.requirements import Requirement

    text = (REPO / "pyproject.toml").read_text()
    assert 'grpcio>=' in text and plugin_build.PINS["grpcio"] in text
    import google.protobuf
    import numpy

    deps = [Requirement(d) for d in tomllib.loads(text)["project"]["dependencies"]]
    (numpy_311,) = [r for r in deps if r.name == "numpy" and r.marker and r.marker.evaluate(
        {"python_version": "3.11", "python_full_version": "3.11.0"})]
    assert numpy_311.specifier.contains(plugin_build.PINS["numpy"])
    if sys.version_info[:2] == (3, 11):
        assert numpy.__version__ == plugin_build.PINS["numpy"]
    assert google.protobuf.__version__.split(".")[1:] == plugin_build.PINS["protobuf"].split(".")[1:]


def test_vendored_modules_are_copies_of_the_repository(plugin):
    site = plugin / plugin_build.SITE_PACKAGES / "bridge"
    for rel in ("__init__.py", "errors.py", "shot/coords.py", "shot/model.py", "client/client.py",
                "proto/greenlight/v1/bridge_pb2.py"):
        assert (site / rel).read_bytes() == (REPO / "bridge" / rel).read_bytes(), rel
    assert not (site / "proto" / "codegen.py").exists()
    assert not (site / "server").exists() and not (site / "backends").exists()
    assert not list(plugin.rglob("__pycache__"))
    py = plugin / "Content" / "Python"
    for rel in ("init_unreal.py", "greenlight_unreal/host.py", "greenlight_unreal/manny_coco18.json",
                "greenlight_unreal/headless.py"):
        assert (py / rel).is_file(), rel
    manifest = json.loads((plugin / "greenlight_build.json").read_text())["files"]
    assert "Content/Python/Lib/site-packages/bridge/shot/coords.py" in manifest


def test_every_plugin_python_file_compiles_under_3_11(plugin, tmp_path):
    """Unreal 5.4+ embeds Python 3.11: every file must compile there (on a 3.13 run, with a 3.11 found
    the way the Blender matrix finds one; none found is a failure, not a skip)."""
    files = sorted(plugin.rglob("*.py"))
    assert len(files) > 20
    if sys.version_info[:2] == (3, 11):
        for f in files:
            py_compile.compile(str(f), cfile=str(tmp_path / "x.pyc"), doraise=True)
        return
    from tests.blender_matrix import python_for

    py311 = python_for("3.11")
    assert py311, "no Python 3.11 found (PATH, pyenv, uv, $GREENLIGHT_PYTHON_3_11) to compile Unreal's files with"
    script = ("import py_compile, sys\nfor f in sys.argv[2:]:\n"
              "    py_compile.compile(f, cfile=sys.argv[1], doraise=True)\nprint(len(sys.argv) - 2)")
    out = subprocess.run([py311, "-c", script, str(tmp_path / "x.pyc"), *map(str, files)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == str(len(files))


def test_vendored_bridge_imports_without_the_repository(plugin):
    # A clean interpreter with only the plugin's site-packages + Content/Python:
    # the engine-free modules import, and nothing pulls in torch/bpy/unreal.
    code = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]];"
        "import bridge, bridge.shot.coords, bridge.client, greenlight_unreal.shot_builder, greenlight_unreal.worker;"
        "assert bridge.__file__.startswith(sys.argv[1]), bridge.__file__;"
        "bad = {'torch', 'bpy', 'unreal'} & set(sys.modules); assert not bad, bad; print('ok')")
    proc = subprocess.run([sys.executable, "-S", "-c", code, str(plugin / plugin_build.SITE_PACKAGES),
                           str(plugin / "Content" / "Python")], capture_output=True, text=True,
                          env={"PYTHONPATH": ":".join(p for p in sys.path if "site-packages" in p)})
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_build_cli_and_bad_lock(tmp_path):
    assert plugin_build.main([str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "Greenlight" / "Greenlight.uplugin").is_file()
    bad = tmp_path / "bad.lock"
    bad.write_text("grpcio>=1\n")
    with pytest.raises(plugin_build.BuildError, match="exact pin and hashes"):
        plugin_build.build(tmp_path / "x", lock=bad)
