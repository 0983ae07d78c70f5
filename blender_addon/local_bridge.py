"""A managed local bridge: find (or create) a Python environment with
Greenlight in it, run ``greenlight serve`` on a free loopback port with a
fresh token, watch that it stays up, stop it. No bpy here: the add-on's
``runtime`` drives it from a ``bpy.app.timers`` callback, tests drive it
directly.

    lb = LocalBridge(python=".venv/bin/python", data_dir=d, log_path=d / "local-bridge.log")
    lb.start()              # SERVING, or a LocalBridgeError with the log tail
    lb.address, lb.token    # what the jobs use
    lb.poll()               # CRASHED (exit code, log tail) if the process died
    lb.stop()

The token never goes on the command line (other users of the machine can
read it there): ``greenlight serve`` gets its SHA-256 digest from a generated
tokens file (``tokens_file`` in the generated TOML config; the bridge keeps
tokens hashed). Those files, like the token file beside them, are readable
only by the user (0600).
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ._deps import errors

HEALTH_METHOD = "/grpc.health.v1.Health/Check"
_SERVING = b"\x08\x01"           # HealthCheckResponse{status: SERVING}, protobuf wire form
TOKEN_FILE = "local-bridge.token"
CONFIG_FILE = "local-bridge.toml"
TOKENS_FILE = "local-bridge-tokens.toml"   # the bridge's tokens file: the token's digest, never the token
PORT_FILE = "local-bridge.port"   # the last port, tried first so job records keep their address
DEFAULT_PIP_TARGET = ("greenlight",)


class BridgeState(enum.StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    SERVING = "serving"
    FAILED = "start-failed"   # could not start (no Python, port busy, timeout, exited while starting)
    CRASHED = "crashed"     # was serving, then the process died


class LocalBridgeError(errors.PreconditionError):
    """The local bridge could not be set up, started or kept running;
    ``log_lines`` holds the last lines of its log (or of pip's output)."""

    def __init__(self, message: str, log_lines: Sequence[str] = ()):
        self.log_lines = list(log_lines)
        tail = "\n".join(f"  | {line}" for line in self.log_lines)
        super().__init__(f"{message}\n{tail}" if tail else message)
        self.summary = message


def venv_python(env_dir: str | Path) -> Path:
    """The interpreter inside a venv folder (bin/python, or Scripts\\python.exe on Windows)."""
    env_dir = Path(env_dir)
    for rel in ("bin/python3", "bin/python", "Scripts/python.exe"):
        if (env_dir / rel).is_file():
            return env_dir / rel
    return env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by this user only (0600), also over an existing file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, 0o600)


def _toml_str(value: str) -> str:
    return json.dumps(value)   # a JSON string is a valid TOML basic string


def health_serving(address: str, timeout_s: float = 1.0) -> bool:
    """True when the bridge at ``address`` answers the standard gRPC health
    check with SERVING (no grpc-health package needed: the request and
    answer are encoded by hand)."""
    import grpc  # imported on use: the add-on's other engine-free modules load without it

    channel = grpc.insecure_channel(address)
    try:
        check = channel.unary_unary(HEALTH_METHOD, request_serializer=None, response_deserializer=None)
        return check(b"", timeout=timeout_s) == _SERVING
    except grpc.RpcError:
        return False
    finally:
        channel.close()


class LocalBridge:
    """A ``greenlight serve`` process this program owns.

    ``python``: an interpreter, or a venv folder, that has Greenlight
    installed; None/"" = the venv in ``env_dir`` (made by ``ensure_env``).
    ``data_dir``: the bridge's job store plus the token and config files.
    ``log_path``: the process's stdout/stderr (rotated at ``log_max_bytes``,
    ``log_backups`` old files kept). ``pip_target``: what ``ensure_env``
    installs (``["greenlight"]``, or ``["-e", "/path/to/checkout"]``, or a
    wheel path); ``extras`` such as ``("diffusion",)`` are added to its last
    item. ``port`` None = the last port if free, else a free one.
    ``serve_command``: the argv that runs ``greenlight serve`` (default
    ``[python, "-m", "bridge.cli", "-v", "serve"]``); the config options are
    appended to it.
    """

    def __init__(self, python: str | Path | None, data_dir: str | Path, log_path: str | Path, *,
                 env_dir: str | Path | None = None, pip_target: Sequence[str] = DEFAULT_PIP_TARGET,
                 extras: Sequence[str] = (), base_python: str | None = None, host: str = "127.0.0.1",
                 port: int | None = None, start_timeout_s: float = 60.0, stop_grace_s: float = 5.0,
                 serve_command: Sequence[str] | None = None, config: dict[str, object] | None = None,
                 log_max_bytes: int = 2 * 1024 * 1024, log_backups: int = 2):
        self.python_setting = str(python or "")
        self.data_dir = Path(data_dir)
        self.log_path = Path(log_path)
        self.env_dir = Path(env_dir) if env_dir else None
        self.pip_target = [pip_target] if isinstance(pip_target, str) else list(pip_target)
        self.extras = tuple(extras)
        self.base_python = base_python or sys.executable
        self.host = host
        self.port_setting = port
        self.start_timeout_s = start_timeout_s
        self.stop_grace_s = stop_grace_s
        self.serve_command = list(serve_command) if serve_command else None
        self.config = dict(config or {})
        self.log_max_bytes = log_max_bytes
        self.log_backups = log_backups
        self.port: int | None = None
        self.token = ""
        self.exit_code: int | None = None
        self._state = BridgeState.STOPPED
        self._message = "not started"
        self._proc: subprocess.Popen | None = None
        self._log = None
        self._deadline = 0.0

    # ------------------------------------------------------------ what the UI shows
    @property
    def state(self) -> BridgeState:
        return self._state

    @property
    def message(self) -> str:
        return self._message

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}" if self.port else ""

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def log_tail(self, n: int = 20) -> list[str]:
        """The last ``n`` lines of the bridge's log (of this run and before)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 64 * 1024))
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return []
        return lines[-n:] if n > 0 else []

    # ------------------------------------------------------------ environment
    def find_python(self) -> Path:
        """The interpreter to run the bridge with, checked to have Greenlight;
        a LocalBridgeError that says what to do otherwise."""
        if self.python_setting:
            given = Path(self.python_setting).expanduser()
            python = venv_python(given) if given.is_dir() else given
            if not python.is_file():
                raise LocalBridgeError(f"Bridge Python {self.python_setting!r} is neither a Python interpreter nor "
                                       "a venv folder: choose the python of an environment where "
                                       "`pip install greenlight` ran, or leave it empty to use the add-on's own")
        elif self.env_dir is not None and venv_python(self.env_dir).is_file():
            python = venv_python(self.env_dir)
        else:
            where = f" in {self.env_dir}" if self.env_dir else ""
            raise LocalBridgeError("no Python environment for the local bridge: set Bridge Python to an interpreter "
                                   f"that has Greenlight, or press Install Bridge (creates a venv{where} and "
                                   "installs greenlight)")
        self._check_greenlight(python)
        return python

    def _check_greenlight(self, python: Path) -> None:
        # not from the current folder (a checkout's bridge/ would pass for the installed package)
        code = ("import importlib.util as u, sys; sys.path[:] = [p for p in sys.path if p not in ('', '.')]; "
                "sys.exit(0 if u.find_spec('bridge.cli') else 3)")
        try:
            proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60,
                                  env=self._child_env())
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise LocalBridgeError(f"cannot run Bridge Python {python}: {exc}") from None
        if proc.returncode != 0:
            raise LocalBridgeError(
                f"{python} has no Greenlight (`import bridge.cli` fails): run `{python} -m pip install greenlight` "
                "or press Install Bridge", (proc.stdout + proc.stderr).splitlines()[-10:])

    def ensure_env(self, progress: Callable[[str], None] | None = None) -> Path:
        """Make sure there is an environment with Greenlight and return its
        interpreter: a configured one is only checked; otherwise the venv in
        ``env_dir`` is created (``python -m venv``) and ``pip install``
        runs in it. Each output line goes to ``progress`` and the log."""
        say = progress or (lambda line: None)
        if self.python_setting:
            python = self.find_python()
            say(f"using the configured Bridge Python {python}")
            return python
        if self.env_dir is None:
            raise LocalBridgeError("no Bridge Python is set and no folder was given for the add-on's own environment")
        python = venv_python(self.env_dir)
        lines: list[str] = []
        if not python.is_file():
            self._run_step([self.base_python, "-m", "venv", str(self.env_dir)], "creating the venv", say, lines)
            python = venv_python(self.env_dir)
            if not python.is_file():
                raise LocalBridgeError(f"`python -m venv {self.env_dir}` made no interpreter at {python}", lines[-20:])
        target = list(self.pip_target)
        if self.extras and target:
            target[-1] = f"{target[-1]}[{','.join(self.extras)}]"
        self._run_step([str(python), "-m", "pip", "install", "--disable-pip-version-check", *target],
                       f"pip install {' '.join(target)}", say, lines)
        self._check_greenlight(python)
        say(f"the bridge environment is ready: {python}")
        return python

    def _run_step(self, argv: list[str], what: str, say, lines: list[str]) -> None:
        say(f"{what}: {' '.join(argv)}")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {what}: {' '.join(argv)}\n")
            try:
                proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        stdin=subprocess.DEVNULL, env=self._child_env())
            except OSError as exc:
                raise LocalBridgeError(f"{what} failed: cannot run {argv[0]}: {exc}") from None
            assert proc.stdout is not None
            for line in proc.stdout:
                line = line.rstrip("\n")
                lines.append(line)
                log.write(line + "\n")
                say(line)
            code = proc.wait()
        if code != 0:
            raise LocalBridgeError(f"{what} failed (exit code {code}); the full output is in {self.log_path}",
                                   lines[-20:])

    # ------------------------------------------------------------ process
    def start(self, wait: bool = True) -> BridgeState:
        """Start ``greenlight serve``; with ``wait`` block until SERVING (or
        raise LocalBridgeError), else return STARTING and let ``poll`` finish."""
        if self._proc is not None and self._proc.poll() is None:
            return self.wait_until_serving() if wait else self._state
        self.exit_code = None
        self._set(BridgeState.STARTING, "starting")
        try:
            python = self.find_python()
            port = self._choose_port()
            # a restart keeps the token: workers watching jobs hold it, and re-attach with it after a crash
            self.token = self.token or secrets.token_urlsafe(32)
            self.data_dir.mkdir(parents=True, exist_ok=True)
            _write_private(self.data_dir / TOKEN_FILE, self.token + "\n")
            digest = hashlib.sha256(self.token.encode("utf-8")).hexdigest()
            _write_private(self.data_dir / TOKENS_FILE, f'[tokens]\n"{digest}" = "*"\n')
            config = self.data_dir / CONFIG_FILE
            _write_private(config, self._config_toml(port))
            # --exit-with: the bridge follows Blender out even when Blender is killed (no orphaned server)
            argv = [*(self.serve_command or [str(python), "-m", "bridge.cli", "-v", "serve"]), "--config", str(config),
                    "--exit-with", str(os.getpid())]
            self._open_log(argv)
            try:
                self._proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL, cwd=self.data_dir, env=self._child_env(),
                                              **_detached())
            except OSError as exc:
                raise LocalBridgeError(f"cannot run {argv[0]}: {exc}") from None
        except LocalBridgeError as exc:
            self._set(BridgeState.FAILED, exc.summary)
            raise
        self.port = port
        (self.data_dir / PORT_FILE).write_text(f"{port}\n")
        self._deadline = time.monotonic() + self.start_timeout_s
        return self.wait_until_serving() if wait else self._state

    def wait_until_serving(self, timeout_s: float | None = None) -> BridgeState:
        if timeout_s is not None:
            self._deadline = time.monotonic() + timeout_s
        while self.poll() is BridgeState.STARTING:
            time.sleep(0.2)
        if self._state is not BridgeState.SERVING:
            raise LocalBridgeError(self._message, self.log_tail(20))
        return self._state

    def poll(self) -> BridgeState:
        """Look at the process once: STARTING becomes SERVING (health check),
        or FAILED (exited or timed out); SERVING becomes CRASHED when the
        process has died (``exit_code``, the message names the last log line)."""
        proc = self._proc
        if proc is None or self._state not in (BridgeState.STARTING, BridgeState.SERVING):
            return self._state
        code = proc.poll()
        if code is not None:
            self.exit_code = code
            self._close_log()
            self._proc = None
            last = next((line for line in reversed(self.log_tail(20)) if line.strip()), "")
            where = f"; last log line: {last}" if last else ""
            if self._state is BridgeState.STARTING:
                self._set(BridgeState.FAILED, f"the local bridge exited with code {code} while starting{where} "
                                              f"(log: {self.log_path})")
            else:
                self._set(BridgeState.CRASHED, f"the local bridge stopped unexpectedly (exit code {code}){where} "
                                               f"(log: {self.log_path})")
            return self._state
        if self._state is BridgeState.STARTING:
            if health_serving(self.address, timeout_s=0.5):
                self._set(BridgeState.SERVING, f"serving on {self.address} (pid {proc.pid})")
            elif time.monotonic() > self._deadline:
                self._terminate()
                self._set(BridgeState.FAILED, f"the local bridge did not report SERVING on {self.address} within "
                                              f"{self.start_timeout_s:g} s; stopped it (log: {self.log_path})")
        return self._state

    def restart(self, wait: bool = True) -> BridgeState:
        """Stop the process and start it again on the same port with the same token (job records and
        running workers keep their address and credentials)."""
        self._terminate()
        return self.start(wait=wait)

    def stop(self) -> None:
        """Terminate the process, kill it after ``stop_grace_s``; forget the token."""
        self._terminate()
        for name in (TOKEN_FILE, CONFIG_FILE, TOKENS_FILE):
            with contextlib.suppress(OSError):
                (self.data_dir / name).unlink()
        self.token = ""
        self._set(BridgeState.STOPPED, "stopped")

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(self.stop_grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc is not None:
            self.exit_code = proc.returncode
        self._close_log()

    # ------------------------------------------------------------ helpers
    def _set(self, state: BridgeState, message: str) -> None:
        self._state, self._message = state, message

    def _choose_port(self) -> int:
        if self.port_setting:
            if not port_is_free(self.host, self.port_setting):
                raise LocalBridgeError(f"port {self.port_setting} on {self.host} is in use (another bridge or "
                                       "program): stop it, or choose another port (or none: a free one is picked)")
            return self.port_setting
        with contextlib.suppress(OSError, ValueError):
            last = int((self.data_dir / PORT_FILE).read_text().strip())
            if last > 0 and port_is_free(self.host, last):
                return last
        return free_port(self.host)

    def _config_toml(self, port: int) -> str:
        lines = [f"data_dir = {_toml_str(str(self.data_dir))}", f"host = {_toml_str(self.host)}", f"port = {port}",
                 f"tokens_file = {_toml_str(str(self.data_dir / TOKENS_FILE))}"]
        for key, value in self.config.items():
            lines.append(f"{key} = {json.dumps(value)}")
        return "\n".join([*lines, ""])

    def _open_log(self, argv: list[str]) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            if self.log_path.stat().st_size > self.log_max_bytes:
                for i in range(self.log_backups, 0, -1):
                    older = self.log_path.with_name(f"{self.log_path.name}.{i}")
                    newer = self.log_path.with_name(f"{self.log_path.name}.{i - 1}") if i > 1 else self.log_path
                    if newer.exists():
                        os.replace(newer, older)
        self._log = open(self.log_path, "ab")
        self._log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode())
        self._log.flush()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    @staticmethod
    def _child_env() -> dict[str, str]:
        env = dict(os.environ, PYTHONUNBUFFERED="1", GRPC_ENABLE_FORK_SUPPORT="0")
        # Blender's (or our own) Python settings must not leak into another interpreter.
        for key in ("PYTHONHOME", "PYTHONPATH", "PYTHONEXECUTABLE", "__PYVENV_LAUNCHER__"):
            env.pop(key, None)
        return env


def _detached() -> dict:
    """Popen options: the bridge gets its own process group, so a Ctrl+C in
    Blender's console does not reach it (we stop it ourselves)."""
    if os.name == "nt":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW}
    return {"start_new_session": True}


# The add-on's one managed bridge (set by ``runtime``; read by
# ``settings.with_local_bridge`` when the jobs' BridgeSettings are built).
_CURRENT: list[LocalBridge] = []


def current() -> LocalBridge | None:
    return _CURRENT[0] if _CURRENT else None


def set_current(bridge: LocalBridge | None) -> None:
    _CURRENT[:] = [bridge] if bridge is not None else []
