"""One bridge per data folder: the OS lock in bridge/server/lock.py, taken by
``greenlight serve`` before it touches the folder. Real processes: a second
``serve`` on a live bridge's folder exits non-zero naming the folder and the
other bridge's pid; a bridge killed with SIGKILL leaves a lock file that does
not block the next one (the kernel released its lock)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bridge.errors import PreconditionError
from bridge.server.lock import LOCK_NAME, acquire_data_lock

REPO = Path(__file__).resolve().parent.parent
TIMEOUT_S = 30


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), GRPC_ENABLE_FORK_SUPPORT="0")
    env.pop("GREENLIGHT_TOKENS", None)
    return env


def _holder(data_dir: Path) -> subprocess.Popen:
    """A process that takes the lock, says so, and waits to be killed."""
    code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from bridge.server.lock import acquire_data_lock
        lock = acquire_data_lock(Path({str(data_dir)!r}), "127.0.0.1:1")
        print("locked", flush=True)
        sys.stdin.read()   # until the test closes stdin or kills us
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=_env(), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()   # the child prints or dies: readline returns either way
    assert line.strip() == "locked", proc.stderr.read() if proc.stderr else line
    return proc


def test_lock_is_exclusive_and_released(tmp_path):
    lock = acquire_data_lock(tmp_path / "data", "127.0.0.1:50151")
    text = (tmp_path / "data" / LOCK_NAME).read_text()
    assert text == f"pid {os.getpid()}\naddress 127.0.0.1:50151\n"
    with pytest.raises(PreconditionError) as err:   # a second open of the file, even in this process, is refused
        acquire_data_lock(tmp_path / "data")
    assert str(err.value) == (f"another greenlight bridge (pid {os.getpid()}) is using {tmp_path / 'data'}; "
                              "stop it or use another --data-dir")
    lock.set_address("127.0.0.1:6000")     # known after binding port 0
    assert "address 127.0.0.1:6000" in (tmp_path / "data" / LOCK_NAME).read_text()
    lock.release()
    lock.release()                          # twice is harmless
    assert not lock.held
    with acquire_data_lock(tmp_path / "data") as again:
        assert again.held
    assert (tmp_path / "data" / LOCK_NAME).exists()   # never deleted: only the kernel's lock decides


def test_a_live_holder_blocks_and_a_sigkilled_one_does_not(tmp_path):
    data = tmp_path / "data"
    proc = _holder(data)
    try:
        with pytest.raises(PreconditionError, match=rf"another greenlight bridge \(pid {proc.pid}\) is using "):
            acquire_data_lock(data)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(TIMEOUT_S) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(TIMEOUT_S)
    # the killed holder's file is still there, with its pid: it does not block
    assert f"pid {proc.pid}" in (data / LOCK_NAME).read_text()
    with acquire_data_lock(data, "127.0.0.1:2") as lock:
        assert lock.held and (data / LOCK_NAME).read_text().startswith(f"pid {os.getpid()}\n")


def _serve(data_dir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bridge.cli", "serve", "--data-dir", str(data_dir),
                             "--port", "0", *extra], cwd=REPO, env=_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_second_serve_on_one_folder_exits_with_a_clear_message(tmp_path):
    data = tmp_path / "data"
    first = _serve(data)
    try:
        assert first.stdout is not None
        line = first.stdout.readline()
        assert "listening on" in line, first.stderr.read() if first.stderr else line
        second = _serve(data)
        try:
            out, err = second.communicate(timeout=TIMEOUT_S)
        finally:
            if second.poll() is None:
                second.kill()
                second.wait(TIMEOUT_S)
        assert second.returncode != 0
        assert "listening on" not in out
        assert (f"another greenlight bridge (pid {first.pid}) is using {data}; stop it or use another --data-dir"
                in err), err
        assert first.poll() is None   # the first one is untouched and still serving
        # the lock file names the first bridge and the address it really listens on (not port 0)
        address = line.split("listening on ")[1].split()[0]
        assert (data / LOCK_NAME).read_text() == f"pid {first.pid}\naddress {address}\n"
        first.send_signal(signal.SIGTERM)   # drains and stops
        assert first.wait(TIMEOUT_S) == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(TIMEOUT_S)
    # stopped cleanly: the next bridge takes the folder
    with acquire_data_lock(data) as lock:
        assert lock.held
