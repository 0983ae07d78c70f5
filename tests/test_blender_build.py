"""The extension builds: one zip per Blender platform bundling the client's
cp311 and cp313 wheels (downloaded for real from PyPI into a cache that a
second build reuses), and the wheel-less zip; Blender's own validator accepts
each; installed with enable into a temporary user folder, the platform zip
registers on its bundled wheels and vendored bridge; and with a client module
missing, the add-on registers only a notice that names what is missing and
the zip to install (``blender_addon.deps_check``)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
import zipfile

import pytest

from blender_addon import build, deps_check
from blender_addon.deps_check import Missing
from tests.blender_scenes import run_scenario
from tests.conftest import REPO

HOST = deps_check.this_platform()
PLATFORM = HOST if HOST in build.PLATFORMS else "linux-x64"   # the install tests need the host's zip
VERSION = build.manifest_id_version()[1]
PLATFORM_ZIP = f"greenlight-{VERSION}-{PLATFORM}.zip"
NOWHEELS_ZIP = f"greenlight-{VERSION}-nowheels.zip"


@pytest.fixture(scope="module")
def platform_build(tmp_path_factory):
    """``--platforms PLATFORM`` with an empty wheel cache: the wheels come from PyPI."""
    root = tmp_path_factory.mktemp("platform-build")
    cache = root / "wheels-cache"
    zips = build.build(root / "dist", platforms=[PLATFORM], cache_dir=cache)  # validates every zip; raises if not
    return {"zips": zips, "cache": cache, "root": root}


@pytest.fixture(scope="module")
def nowheels_zip(tmp_path_factory):
    out = tmp_path_factory.mktemp("nowheels") / "dist"
    assert build.main(["--no-wheels", "--out", str(out)]) == 0
    return out / NOWHEELS_ZIP


def _manifest(zip_path) -> dict:
    with zipfile.ZipFile(zip_path) as zf:
        return tomllib.loads(zf.read("blender_manifest.toml").decode())


def _blender_ext():
    """Blender's own blender_ext.py as a module: its wheel-name parsers cross-check the build's."""
    spec = importlib.util.spec_from_file_location("blender_ext_cli", build.blender_ext_script())
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_vendored_tree(zip_path):
    with zipfile.ZipFile(zip_path) as zf:
        names = set(zf.namelist())
        for must in ("blender_manifest.toml", "__init__.py", "deps_check.py", "host.py", "headless.py",
                     "_vendor/bridge/errors.py", "_vendor/bridge/shot/rigs.py", "_vendor/bridge/client/client.py",
                     "_vendor/bridge/proto/greenlight/v1/bridge_pb2_grpc.py"):
            assert must in names, must
        assert "build.py" not in names and "_vendor/bridge/proto/codegen.py" not in names
        assert not any("__pycache__" in n for n in names)
        for n in names:
            if n.startswith("_vendor/") and n.endswith(".py"):
                code = zf.read(n).decode()
                assert not re.search(r"^\s*(from bridge[. ]|import bridge\b)", code, re.M), \
                    f"{n} still imports the installed bridge"
    return names


# ---------------------------------------------------------------- the builds
def test_platform_zip_bundles_cp311_and_cp313_wheels_for_its_platform_only(platform_build):
    zips = platform_build["zips"]
    assert [z.name for z in zips] == [PLATFORM_ZIP]
    zip_path = zips[0]
    assert not any(m[0] in ("ERROR", "FATAL_ERROR") for m in build.validate(zip_path)["messages"])
    manifest = _manifest(zip_path)
    assert manifest["platforms"] == [PLATFORM]
    wheels = [w.rsplit("/", 1)[-1] for w in manifest["wheels"]]
    assert len(wheels) == len(set(wheels))
    by_dist: dict[str, list[str]] = {}
    for w in wheels:
        by_dist.setdefault(w.split("-")[0].lower(), []).append(w)
    assert set(by_dist) == {re.sub(r"[-.]", "_", n).lower() for n in build.WHEELS}
    for dist, version in build.WHEELS.items():
        assert all(w.split("-")[1] == version for w in by_dist[re.sub(r"[-.]", "_", dist).lower()])
    # grpcio: one wheel per Python; the pure and abi3 wheels (protobuf) serve both and go once
    assert sorted(w.split("-")[2] for w in by_dist["grpcio"]) == ["cp311", "cp313"]
    assert len(by_dist["protobuf"]) == len(by_dist["googleapis_common_protos"]) == 1
    assert by_dist["googleapis_common_protos"][0].endswith("-py3-none-any.whl")
    ext = _blender_ext()
    macos = PLATFORM.startswith("macos")   # a macOS universal2 wheel serves both macOS platforms
    others = [p for p in build.PLATFORMS if p != PLATFORM and not (macos and p.startswith("macos"))]
    for w in wheels:
        assert ext.blender_platform_compatible_with_wheel_platform_from_filepath(PLATFORM, w), w
        if not w.endswith("-none-any.whl"):   # a native wheel of this platform only
            assert not any(ext.blender_platform_compatible_with_wheel_platform_from_filepath(p, w) for p in others), w
    assert [ext.python_versions_from_wheel(w) for w in sorted(by_dist["grpcio"])] == [{(3, 11)}, {(3, 13)}]
    for python in build.PY_VERSIONS:   # every distribution has a wheel that installs under each Python
        for dist in by_dist.values():
            assert any(build.wheel_fits(w, PLATFORM, python) for w in dist), (python, dist)
    names = _check_vendored_tree(zip_path)
    for w in wheels:
        assert f"wheels/{w}" in names, w
    assert sorted(n for n in names if n.startswith("wheels/")) == sorted(f"wheels/{w}" for w in wheels)
    # the cache keeps each file once: what the zip bundles, nothing per Python for the shared wheels
    assert sorted(p.name for p in platform_build["cache"].glob("*.whl")) == sorted(wheels)


def test_second_build_downloads_nothing(platform_build, monkeypatch):
    def no_download(*args, **kw):
        raise AssertionError(f"downloaded again: {args}")

    monkeypatch.setattr(build, "_pip_download", no_download)
    out = platform_build["root"] / "again"
    assert build.main(["--platforms", PLATFORM, "--out", str(out), "--wheels-cache", str(platform_build["cache"])]) == 0
    assert _manifest(out / PLATFORM_ZIP)["wheels"] == _manifest(platform_build["zips"][0])["wheels"]


def test_wheel_less_zip_still_builds_and_validates(nowheels_zip):
    assert nowheels_zip.is_file()
    assert not any(m[0] in ("ERROR", "FATAL_ERROR") for m in build.validate(nowheels_zip)["messages"])
    manifest = _manifest(nowheels_zip)
    assert "wheels" not in manifest and "platforms" not in manifest
    assert not any(n.startswith("wheels/") for n in _check_vendored_tree(nowheels_zip))


def test_wheel_tags_and_manifest_layout():
    for name, fits in [("grpcio-1.85.1-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl", {"3.11"}),
                       ("protobuf-7.36.2-cp310-abi3-manylinux2014_x86_64.whl", {"3.11", "3.13"}),
                       ("googleapis_common_protos-1.76.0-py3-none-any.whl", {"3.11", "3.13"}),
                       ("grpcio-1.85.1-cp313-cp313-manylinux2014_aarch64.manylinux_2_17_aarch64.whl", set())]:
        assert {py for py in ("3.11", "3.13") if build.wheel_fits(name, "linux-x64", py)} == fits, name
    universal = "grpcio-1.85.1-cp313-cp313-macosx_11_0_universal2.whl"
    assert build.wheel_fits(universal, "macos-arm64", "3.13") and build.wheel_fits(universal, "macos-x64", "3.13")
    assert not build.wheel_fits(universal, "linux-x64", "3.13") and not build.wheel_fits(universal, "macos-x64", "3.11")
    text = build._hoist_top_level('id = "x"\n\n[permissions]\nnetwork = "n"\n\nwheels = [\n  "./wheels/a.whl",\n]\n'
                                  'platforms = ["linux-x64"]\n')
    assert text.index("wheels = [") < text.index("[permissions]")
    assert text.index("platforms =") < text.index("[permissions]")
    assert tomllib.loads(text)["permissions"] == {"network": "n"}
    with pytest.raises(build.BuildError, match="unknown platform"):
        build.build(REPO / "dist" / "never", platforms=["linux-riscv64"])


# ---------------------------------------------------------------- the dependency check (no bpy)
def _check_in_child(prelude: str) -> list[str]:
    code = (f"import sys\n{prelude}\n"
            "from blender_addon import deps_check\n"
            "for line in deps_check.messages(deps_check.missing()): print(line)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_dependency_check_reports_a_blocked_module():
    assert _check_in_child("") == []
    zip_name = f"greenlight-{VERSION}-{HOST}.zip"
    assert _check_in_child("sys.modules['grpc'] = None") == [
        f"grpcio is missing: install {zip_name}, which bundles it, or pip install grpcio into Blender's Python"]
    assert _check_in_child("sys.modules['typing_extensions'] = None") == [
        f"typing_extensions is missing (grpcio needs it): install {zip_name}, which bundles it, "
        "or pip install typing_extensions into Blender's Python"]
    # an import hook: google.protobuf (so also google.rpc, which needs it) cannot be found
    hook = ("import importlib.abc\n"
            "class Block(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'google.protobuf' or name.startswith('google.protobuf.'):\n"
            "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
            "sys.meta_path.insert(0, Block())")
    assert _check_in_child(hook) == [
        f"protobuf is missing: install {zip_name}, which bundles it, or pip install protobuf into Blender's Python"]
    assert _check_in_child("sys.modules['numpy'] = None") == [
        "numpy is missing: no Greenlight zip bundles numpy (official Blender builds include it): install your "
        "distribution's numpy package for Blender's Python, or pip install numpy into Blender's Python"]


def test_dependency_messages_for_each_case():
    grpc = Missing("grpcio", "grpc", "ModuleNotFoundError: No module named 'grpc'")
    source = 'id = "greenlight"\nversion = "0.1.0"\n'
    bundled = source + 'wheels = [\n  "./wheels/grpcio-1.85.1-cp311-cp311-win_amd64.whl",\n]\n'
    assert deps_check.message(grpc, "windows-x64", (3, 11), source) == (
        "grpcio is missing: install greenlight-0.1.0-windows-x64.zip, which bundles it, "
        "or pip install grpcio into Blender's Python")
    assert deps_check.message(grpc, "linux-x64", (3, 12), source) == (
        "grpcio is missing: the Greenlight zips bundle it for Python 3.11 and 3.13 only and this Blender runs "
        "Python 3.12: pip install grpcio into Blender's Python")
    assert deps_check.message(grpc, "linux-riscv64", (3, 13), source) == (
        "grpcio is missing: no Greenlight zip bundles it for linux-riscv64: pip install grpcio into Blender's Python")
    assert deps_check.message(grpc, "windows-x64", (3, 11), bundled) == (
        "grpcio is missing although this extension bundles it: reinstall greenlight-0.1.0-windows-x64.zip, "
        "or pip install grpcio into Blender's Python")
    broken = Missing("grpcio", "grpc", "ImportError: cannot import name 'cygrpc'", absent=False)
    assert deps_check.message(broken, "macos-arm64", (3, 13), source).startswith(
        "grpcio does not load (ImportError: cannot import name 'cygrpc'): install greenlight-0.1.0-macos-arm64.zip")
    assert deps_check.pip_command([grpc]) == f'"{sys.executable}" -m pip install grpcio'
    # an import error that names another module than the one checked
    rec = deps_check._record("google.rpc.status_pb2", "googleapis-common-protos",
                             ModuleNotFoundError("No module named 'google.protobuf'", name="google.protobuf"))
    assert (rec.distribution, rec.needed_by, rec.absent) == ("protobuf", "googleapis-common-protos", True)


def test_notice_draws_every_line_wrapped():
    class Layout:
        def __init__(self):
            self.labels, self.alert = [], False

        def box(self):
            return self

        def label(self, text="", icon="NONE"):
            self.labels.append(text)

    layout = Layout()
    manifest = 'id = "greenlight"\nversion = "0.1.0"\n'
    line = deps_check.message(Missing("grpcio", "grpc", ""), "linux-x64", (3, 11), manifest)
    deps_check.draw_notice(layout, [line], '"/opt/blender/python/bin/python3.11" -m pip install grpcio')
    assert layout.alert and layout.labels[0] == deps_check.TITLE
    assert all(len(t) <= 76 for t in layout.labels) and len(layout.labels) > 3
    assert " ".join(t.strip() for t in layout.labels[1:]) == (
        f'{line} From a terminal: "/opt/blender/python/bin/python3.11" -m pip install grpcio')


# ---------------------------------------------------------------- bpy: enable the add-on, install the zips
def test_enabling_the_add_on_without_grpc_registers_only_the_notice():
    r = run_scenario("deps_enable", block=["grpc"])
    blocked = r["blocked"]
    assert not blocked["op_generate"] and not blocked["panel_3d"]
    assert blocked["notice_3d"] and blocked["notice_vse"] and blocked["prefs"] == "GreenlightMissingPreferences"
    assert blocked["notice"] == [f"grpcio is missing: install greenlight-{VERSION}-{HOST}.zip, which bundles it, "
                                 "or pip install grpcio into Blender's Python"]
    assert blocked["command"].endswith(" -m pip install grpcio")
    assert not r["blocked_disabled"]["notice_3d"] and r["blocked_disabled"]["prefs"] is None
    # grpc importable again: enabling again registers the operators and panels, no notice
    assert r["unblocked"]["op_generate"] and r["unblocked"]["panel_3d"] and not r["unblocked"]["notice_3d"]
    assert r["unblocked"]["prefs"] == "GreenlightPreferences" and r["unblocked"]["notice"] == []
    assert not r["unblocked_disabled"]["op_generate"]


def test_platform_zip_installs_with_enable_and_runs_on_its_bundled_wheels(platform_build, tmp_path):
    assert PLATFORM == HOST, f"{HOST} is not a platform Blender ships: the zip cannot install here"
    user = tmp_path / "user"
    # the client's modules may not come from this venv's site-packages: only from the zip's wheels
    r = run_scenario("deps_install", zip=str(platform_build["zips"][0]), block="site",
                     env={"BLENDER_USER_RESOURCES": str(user)})
    assert r["result"] == ["FINISHED"] and r["addon"] == "bl_ext.user_default.greenlight"
    enabled = r["enabled"]
    assert enabled["op_generate"] and enabled["panel_3d"] and not enabled["notice_3d"] and enabled["notice"] == []
    assert enabled["prefs"] == "GreenlightPreferences" and r["missing_after"] == []
    site = str(user / "extensions" / ".local")
    for module in ("grpc", "google.protobuf", "google.rpc.status_pb2", "typing_extensions", "grpc._cython.cygrpc"):
        assert r["files"][module] and r["files"][module].startswith(site), (module, r["files"][module])
    major, minor = r["python"]
    # Blender installed the grpcio wheel of its own Python only
    assert [n for n in r["site_files"] if n.endswith((".so", ".pyd"))] == [
        n for n in r["site_files"] if f"cp{major}{minor}" in n or f"cpython-{major}{minor}" in n]
    assert any(f"{major}{minor}" in n for n in r["site_files"])
    assert r["protobuf_impl"] == "upb"   # the abi3 binary wheel, not the pure-Python fallback
    assert r["stub_module"] == "bl_ext.user_default.greenlight._vendor.bridge.proto.greenlight.v1.bridge_pb2"
    assert not r["disabled"]["op_generate"] and not r["disabled"]["panel_3d"]


def test_wheel_less_zip_installs_and_names_the_zip_to_install_when_grpc_is_missing(nowheels_zip, tmp_path):
    # this venv has the client's packages: the wheel-less zip runs on them
    r = run_scenario("deps_install", zip=str(nowheels_zip), env={"BLENDER_USER_RESOURCES": str(tmp_path / "a")})
    assert r["result"] == ["FINISHED"] and r["addon"] == "bl_ext.user_default.greenlight"
    assert r["enabled"]["op_generate"] and r["enabled"]["notice"] == []
    assert r["stub_module"] == "bl_ext.user_default.greenlight._vendor.bridge.proto.greenlight.v1.bridge_pb2"
    assert r["disabled"] == {**r["disabled"], "op_generate": False, "panel_3d": False}
    # a Blender whose Python lacks them (some Linux distribution builds): the add-on enables with the notice
    r = run_scenario("deps_install", zip=str(nowheels_zip), block="site",
                     env={"BLENDER_USER_RESOURCES": str(tmp_path / "b")})
    assert r["result"] == ["FINISHED"] and r["addon"] == "bl_ext.user_default.greenlight"
    enabled = r["enabled"]
    assert not enabled["op_generate"] and not enabled["panel_3d"]
    assert enabled["notice_3d"] and enabled["notice_vse"] and enabled["prefs"] == "GreenlightMissingPreferences"
    assert enabled["notice"] == [
        f"{dist} is missing: install {PLATFORM_ZIP}, which bundles it, or pip install {dist} into Blender's Python"
        for dist in ("grpcio", "protobuf", "googleapis-common-protos")]
    assert r["missing_after"] == ["grpcio", "protobuf", "googleapis-common-protos"]
    assert enabled["command"].endswith(" -m pip install grpcio protobuf googleapis-common-protos")
    assert not r["disabled"]["notice_3d"] and r["disabled"]["prefs"] is None
