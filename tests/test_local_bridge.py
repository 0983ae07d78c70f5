"""The managed local bridge (``blender_addon/local_bridge.py``) with a real
``greenlight serve`` process: start -> SERVING -> a job with the generated
token -> kill -9 -> crashed -> restart -> stop; the failures say what went
wrong and show the log. The last test runs it from the add-on in real
Blender (bpy, child process)."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from blender_addon import local_bridge
from blender_addon.local_bridge import BridgeState, LocalBridge, LocalBridgeError
from bridge.client import BridgeClient, EventKind
from bridge.errors import UnauthenticatedError
from tests.blender_scenes import run_scenario

REPO = Path(__file__).resolve().parents[1]
PYTHON = REPO / ".venv" / "bin" / "python"   # has greenlight (editable): nothing to install


def _bridge(tmp_path, **kw) -> LocalBridge:
    kw.setdefault("config", {"meter": "estimate"})
    kw.setdefault("start_timeout_s", 60)
    return LocalBridge(kw.pop("python", PYTHON), tmp_path / "data", tmp_path / "logs" / "bridge.log", **kw)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _poll_until(lb: LocalBridge, state: BridgeState, timeout_s: float = 10) -> BridgeState:
    deadline = time.monotonic() + timeout_s
    while lb.poll() is not state and time.monotonic() < deadline:
        time.sleep(0.05)
    return lb.state


def test_start_job_crash_restart_stop(tmp_path, small_shot):
    lb = _bridge(tmp_path)
    assert lb.state is BridgeState.STOPPED
    try:
        assert lb.start() is BridgeState.SERVING, lb.message
        host, port = lb.address.split(":")
        assert host == "127.0.0.1" and int(port) > 0
        assert lb.message == f"serving on {lb.address} (pid {lb.pid})"
        # the token: private files, never on the command line; the bridge's own file holds only its digest
        for name in (local_bridge.TOKEN_FILE, local_bridge.CONFIG_FILE, local_bridge.TOKENS_FILE):
            assert stat.S_IMODE((tmp_path / "data" / name).stat().st_mode) == 0o600
        assert (tmp_path / "data" / local_bridge.TOKEN_FILE).read_text().strip() == lb.token
        assert len(lb.token) >= 32
        for name in (local_bridge.CONFIG_FILE, local_bridge.TOKENS_FILE):
            assert lb.token not in (tmp_path / "data" / name).read_text()
        assert hashlib.sha256(lb.token.encode()).hexdigest() in (
            tmp_path / "data" / local_bridge.TOKENS_FILE).read_text()
        cmdline = Path(f"/proc/{lb.pid}/cmdline").read_bytes().decode()
        assert lb.token not in cmdline and "serve" in cmdline

        with BridgeClient(lb.address) as anonymous, pytest.raises(UnauthenticatedError):
            anonymous.capabilities()
        with BridgeClient(lb.address, token=lb.token) as client:
            job = client.submit(small_shot).job
            final = client.download(job.job_id, tmp_path / "frames")
        assert final is not None and final.kind is EventKind.COMPLETED, final
        assert len(list((tmp_path / "frames").glob("frame_*.png"))) == small_shot.frame_count

        # kill -9: poll() reports the crash with the exit code and the log
        first_pid, first_token = lb.pid, lb.token
        os.kill(first_pid, signal.SIGKILL)
        assert _poll_until(lb, BridgeState.CRASHED) is BridgeState.CRASHED
        assert lb.exit_code == -signal.SIGKILL
        assert "stopped unexpectedly (exit code -9)" in lb.message and str(lb.log_path) in lb.message
        assert any("listening on" in line for line in lb.log_tail(20))

        # restart: the same port and the same token, so job records and the workers watching them (which
        # hold the address and token they started with) re-attach to the jobs in the same data folder
        assert lb.restart() is BridgeState.SERVING, lb.message
        assert lb.address == f"{host}:{port}" and lb.pid != first_pid and lb.token == first_token
        assert (tmp_path / "data" / local_bridge.TOKEN_FILE).read_text().strip() == first_token
        with BridgeClient(f"{host}:{port}", token=first_token) as client:
            assert [j.job_id for j in client.jobs(job.project)] == [job.job_id]
            again = client.download(job.job_id, tmp_path / "frames-again")
        assert again is not None and again.kind is EventKind.COMPLETED, again
        assert len(list((tmp_path / "frames-again").glob("frame_*.png"))) == small_shot.frame_count
    finally:
        pid = lb.pid
        lb.stop()
    assert lb.state is BridgeState.STOPPED and not _alive(pid)
    assert not (tmp_path / "data" / local_bridge.TOKEN_FILE).exists()
    assert not (tmp_path / "data" / local_bridge.CONFIG_FILE).exists()
    assert not (tmp_path / "data" / local_bridge.TOKENS_FILE).exists()


def test_busy_port_is_a_clear_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        lb = _bridge(tmp_path, port=port)
        with pytest.raises(LocalBridgeError, match=f"port {port} on 127.0.0.1 is in use"):
            lb.start()
    assert lb.state is BridgeState.FAILED and lb.pid is None


def test_start_timeout_stops_the_process_and_says_so(tmp_path):
    lb = _bridge(tmp_path, start_timeout_s=2,
                 serve_command=[sys.executable, "-c", "print('not a bridge', flush=True); import time; time.sleep(60)"])
    t0 = time.monotonic()
    with pytest.raises(LocalBridgeError, match="did not report SERVING on 127.0.0.1:[0-9]+ within 2 s") as info:
        lb.start()
    assert time.monotonic() - t0 < 20
    assert lb.state is BridgeState.FAILED and lb.pid is None
    assert "not a bridge" in info.value.log_lines and "| not a bridge" in str(info.value)


def test_exit_while_starting_shows_the_last_log_line(tmp_path):
    lb = _bridge(tmp_path, serve_command=[sys.executable, "-c", "import sys; print('boom: bad config'); sys.exit(4)"])
    with pytest.raises(LocalBridgeError, match="exited with code 4 while starting; last log line: boom: bad config"):
        lb.start()
    assert lb.state is BridgeState.FAILED and lb.exit_code == 4


def test_missing_or_wrong_python_is_a_clear_error(tmp_path):
    with pytest.raises(LocalBridgeError, match="neither a Python interpreter nor a venv folder"):
        _bridge(tmp_path, python=tmp_path / "nope" / "python").start()
    with pytest.raises(LocalBridgeError, match="no Python environment for the local bridge.*Install Bridge"):
        _bridge(tmp_path, python=None, env_dir=tmp_path / "env").start()
    bare = tmp_path / "bare"   # a venv without greenlight (and without pip: fast)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    lb = _bridge(tmp_path, python=bare)       # a venv folder is accepted as well as an interpreter
    with pytest.raises(LocalBridgeError, match="has no Greenlight .*pip install greenlight"):
        lb.start()
    assert lb.state is BridgeState.FAILED


def _fake_greenlight_wheel(folder: Path) -> Path:
    """A tiny wheel named greenlight with a ``bridge.cli`` module: a real pip
    install of it runs offline in seconds (the real package pulls grpcio,
    numpy, pillow... from the index, minutes and the network)."""
    wheel = folder / "greenlight-0.0.0-py3-none-any.whl"
    dist = "greenlight-0.0.0.dist-info"
    files = {
        "bridge/__init__.py": "__version__ = '0.0.0'\n",
        "bridge/cli/__init__.py": "",
        f"{dist}/METADATA": "Metadata-Version: 2.1\nName: greenlight\nVersion: 0.0.0\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in files) + f"{dist}/RECORD,,\n"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, text in {**files, f"{dist}/RECORD": record}.items():
            z.writestr(name, text)
    return wheel


def test_ensure_env_creates_a_venv_and_pip_installs(tmp_path):
    wheel = _fake_greenlight_wheel(tmp_path)
    env = tmp_path / "env"
    lines: list[str] = []
    lb = _bridge(tmp_path, python="", env_dir=env, pip_target=["--no-index", str(wheel)], base_python=str(PYTHON))
    python = lb.ensure_env(progress=lines.append)
    assert python == local_bridge.venv_python(env) and python.is_file()
    assert lines[0].startswith("creating the venv: ")
    assert any("Successfully installed greenlight-0.0.0" in line for line in lines), lines
    assert lines[-1] == f"the bridge environment is ready: {python}"
    assert lb.find_python() == python                      # found again without a configured Python
    assert "Successfully installed greenlight-0.0.0" in "\n".join(lb.log_tail(50))   # pip's output is in the log

    failing = _bridge(tmp_path, python="", env_dir=env, pip_target=["--no-index", "greenlight-no-such-package"])
    with pytest.raises(LocalBridgeError, match=r"pip install --no-index greenlight-no-such-package failed "
                                               r"\(exit code 1\)") as info:
        failing.ensure_env()
    assert any("No matching distribution" in line for line in info.value.log_lines), info.value.log_lines


def test_extras_go_on_the_pip_target(tmp_path):
    seen = []
    lb = _bridge(tmp_path, python="", env_dir=tmp_path / "env", pip_target=["-e", "/src/greenlight"],
                 extras=("diffusion",))
    lb._run_step = lambda argv, what, say, lines: seen.append(argv)
    lb._check_greenlight = lambda python: None
    (tmp_path / "env" / "bin").mkdir(parents=True)
    (tmp_path / "env" / "bin" / "python").write_text("")
    lb.ensure_env()
    assert seen == [[str(tmp_path / "env" / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
                     "-e", "/src/greenlight[diffusion]"]]


def test_jobs_use_the_local_bridge_address_and_token(tmp_path):
    from blender_addon.settings import BridgeSettings, with_local_bridge

    prefs = BridgeSettings(address="render.example.com:443", tls=True, token="user-token", cache_dir="/c")
    lb = _bridge(tmp_path)
    lb.port, lb.token = 50999, "tok"
    local_bridge.set_current(lb)
    try:
        assert with_local_bridge(prefs, enabled=False) == prefs
        local = with_local_bridge(prefs, enabled=True)
        assert (local.address, local.token, local.tls, local.cache_dir) == ("127.0.0.1:50999", "tok", False, "/c")
    finally:
        local_bridge.set_current(None)
    assert with_local_bridge(prefs, enabled=True) == prefs   # none started: unchanged


def test_addon_starts_the_bridge_on_enable_and_stops_it_on_unregister(tmp_path):
    r = run_scenario("local_bridge", timeout=240, env={"TMPDIR": str(tmp_path)}, python=str(PYTHON))
    assert r["toggled_on"]["state"] == "serving", r
    assert r["after_disable"] == {"alive": False, "state": "stopped"}, "unregister stops the bridge"
    assert r["pref_kept"] is True
    assert r["enabled_again"]["state"] == "serving", r
    assert r["enabled_again"]["pid"] != r["toggled_on"]["pid"]
    assert r["jobs_settings"] == {"address": r["enabled_again"]["address"], "token_matches": True, "tls": False}
    assert r["crash"]["state"] == "serving" and r["crash"]["pid"] != r["enabled_again"]["pid"], r["crash"]
    status = r["crash"]["status"]
    assert "restarted once after: the local bridge stopped unexpectedly (exit code -9)" in status, status
    assert r["final"] == {"alive": False, "state": "stopped"}
    for key in ("toggled_on", "enabled_again", "crash"):   # nothing outlived Blender
        assert not _alive(r[key]["pid"]), key


def test_a_killed_dcc_leaves_no_orphaned_bridge(tmp_path):
    """Blender killed with SIGKILL cannot stop its bridge: the bridge follows
    it out by itself (``greenlight serve --exit-with PID``)."""
    child = tmp_path / "dcc.py"
    child.write_text(
        "import sys, time\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from pathlib import Path\n"
        "from blender_addon.local_bridge import LocalBridge\n"
        f"lb = LocalBridge({str(PYTHON)!r}, Path({str(tmp_path / 'data')!r}), Path({str(tmp_path / 'bridge.log')!r}),"
        " config={'meter': 'estimate'}, start_timeout_s=60)\n"
        "lb.start()\n"
        "print(lb.state.value, lb.pid, flush=True)\n"
        "time.sleep(600)\n")
    dcc = subprocess.Popen([sys.executable, str(child)], stdout=subprocess.PIPE, text=True)
    try:
        line = dcc.stdout.readline().split() if dcc.stdout else []
        assert line and line[0] == BridgeState.SERVING.value, line
        bridge_pid = int(line[1])
        assert _alive(bridge_pid)
        dcc.send_signal(signal.SIGKILL)
        dcc.wait(10)
        deadline = time.monotonic() + 15
        while _alive(bridge_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(bridge_pid), "the bridge outlived the DCC that started it"
        assert "ended; stopping the bridge" in (tmp_path / "bridge.log").read_text()
    finally:
        if dcc.poll() is None:
            dcc.kill()
