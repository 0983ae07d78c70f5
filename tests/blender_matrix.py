"""Run the Blender tests on every supported official ``bpy`` (DESIGN section 8).

    .venv/bin/python tests/blender_matrix.py                  # all versions
    .venv/bin/python tests/blender_matrix.py --only 4.2.23    # one (repeatable)
    .venv/bin/python tests/blender_matrix.py -- -x -k passes  # extra pytest arguments after --

For each version in ``MATRIX``: the repository's ``.venv`` when it already
holds that ``bpy`` on the right Python, else a cached venv
``.venvs/bpy-X.Y.Z/`` (git-ignored) with ``bpy==X.Y.Z`` and ``-e
.[blender-tests]`` (pytest and the core dependencies; no torch). A cached
venv is reused while its stamp (bpy, Python, the dependency lists in
pyproject.toml) matches, rebuilt otherwise. Then the Blender test files run
there, the tests marked ``diffusion`` deselected (``-m "not diffusion"``):
they need torch, which the main run covers on Python 3.11. One summary line per version; the exit
status is non-zero when any version fails or cannot be set up (a missing
Python 3.13 included: install one, or point ``GREENLIGHT_PYTHON_3_13`` at
it).

Bounded in time: ``--install-timeout`` per venv build (the first one
downloads ~350 MB of bpy), ``--test-timeout`` per version, ``--budget`` for
the whole run. Not a test module (pytest collects ``test_*.py`` only).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENVS = REPO / ".venvs"
MAIN_VENV = REPO / ".venv"
# bpy wheel -> the Python it is built for (the only one it installs on).
MATRIX = {
    "4.2.23": "3.11",   # oldest LTS
    "4.5.15": "3.11",   # newest LTS on Python 3.11
    "5.0.1": "3.11",    # newest release for Python 3.11
    "5.2.3": "3.13",    # 5.1+ are cp313 only
}
EXTRA = "blender-tests"
TEST_FILES = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "tests").glob("test_blender_*.py")) + [
    "tests/test_engine_renders_e2e.py"]
PYTEST_ARGS = ["-q", "-p", "no:cacheprovider", "-m", "not diffusion", "--timeout", "300"]
STAMP = "greenlight-matrix.json"


def python_for(version: str) -> str | None:
    """An interpreter for Python ``version`` ("3.13"): $GREENLIGHT_PYTHON_3_13,
    this one, pythonX.Y on PATH, then pyenv's and uv's installs. Each
    candidate is run once to check it (pyenv shims exist on PATH for
    versions that are not active)."""
    candidates = [os.environ.get("GREENLIGHT_PYTHON_" + version.replace(".", "_"))]
    if "{}.{}".format(*sys.version_info[:2]) == version:
        candidates.append(sys.executable)
    candidates.append(shutil.which(f"python{version}"))
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python{version}"), reverse=True)
    uv_pythons = Path.home() / ".local" / "share" / "uv" / "python"
    candidates += sorted(glob.glob(f"{uv_pythons}/cpython-{version}.*/bin/python{version}"), reverse=True)
    for exe in filter(None, candidates):
        try:
            out = subprocess.run([exe, "-c", "import sys, venv; print('%d.%d' % sys.version_info[:2])"],
                                 capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.strip() == version:
            return exe
    return None


def requirements_key() -> str:
    """What a cached venv's contents depend on, from pyproject.toml."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    key = {"requires-python": project.get("requires-python"), "dependencies": project.get("dependencies"),
           EXTRA: project.get("optional-dependencies", {}).get(EXTRA)}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def installed_bpy(venv: Path) -> str | None:
    """The bpy version installed in ``venv`` (read from its dist-info; no import)."""
    hits = glob.glob(str(venv / "lib" / "python3.*" / "site-packages" / "bpy-*.dist-info"))
    return Path(hits[0]).name[len("bpy-"):-len(".dist-info")] if len(hits) == 1 else None


def python_version_of(python: Path) -> str | None:
    try:
        out = subprocess.run([str(python), "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def ready_venv(bpy: str, py: str, install_timeout: float, log) -> tuple[Path, str]:
    """(python of a venv holding bpy==``bpy`` on Python ``py``, how it was found);
    raises RuntimeError when none can be set up."""
    if installed_bpy(MAIN_VENV) == bpy and (python_version_of(venv_python(MAIN_VENV)) or "").startswith(py + "."):
        return venv_python(MAIN_VENV), ".venv"
    venv = VENVS / f"bpy-{bpy}"
    stamp_path = venv / STAMP
    want = {"bpy": bpy, "python": py, "requirements": requirements_key()}
    if stamp_path.is_file() and venv_python(venv).exists():
        try:
            have = json.loads(stamp_path.read_text())
        except ValueError:
            have = {}
        if {k: have.get(k) for k in want} == want and installed_bpy(venv) == bpy:
            return venv_python(venv), f"cached {venv.relative_to(REPO)}"
    interpreter = python_for(py)
    if interpreter is None:
        raise RuntimeError(f"no Python {py} found (bpy {bpy} is built for {py} only): install it, or set "
                           f"GREENLIGHT_PYTHON_{py.replace('.', '_')} to its path")
    if venv.exists():
        shutil.rmtree(venv)
    venv.parent.mkdir(exist_ok=True)
    deadline = time.monotonic() + install_timeout
    steps = [[interpreter, "-m", "venv", str(venv)],
             [str(venv_python(venv)), "-m", "pip", "install", "-q", f"bpy=={bpy}", "-e", f".[{EXTRA}]"]]
    for cmd in steps:
        left = deadline - time.monotonic()
        try:
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=max(left, 1))
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"setting up {venv.name} took over {install_timeout:.0f}s: "
                               f"{' '.join(cmd[:4])} ...") from None
        log.write(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}\n")
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:5])} ... failed (rc {proc.returncode}): {proc.stderr.strip()[-800:]}")
    if installed_bpy(venv) != bpy:
        raise RuntimeError(f"{venv.name}: pip did not install bpy {bpy} (found {installed_bpy(venv)})")
    stamp_path.write_text(json.dumps(want, indent=1) + "\n")
    return venv_python(venv), f"built {venv.relative_to(REPO)}"


def pytest_summary(output: str) -> str:
    """pytest's last line ("30 passed, 4 deselected in 25.1s"), without the = rule."""
    for line in reversed(output.strip().splitlines()):
        if line.startswith("TIMEOUT"):
            return line
        if re.search(r"\b(passed|failed|error|errors|no tests ran|deselected|skipped)\b", line):
            return line.strip("= ").strip()
    return "no pytest summary"


def run_version(bpy: str, py: str, args, pytest_extra: list[str], deadline: float) -> tuple[bool, str]:
    VENVS.mkdir(exist_ok=True)
    (VENVS / "logs").mkdir(exist_ok=True)
    log_path = VENVS / "logs" / f"bpy-{bpy}.log"
    t0 = time.monotonic()
    with log_path.open("w") as log:
        try:
            python, origin = ready_venv(bpy, py, min(args.install_timeout, max(deadline - t0, 1)), log)
        except RuntimeError as exc:
            return False, f"SETUP FAILED {exc}"
        t_setup = time.monotonic() - t0
        left = deadline - time.monotonic()
        if left < 30:
            return False, f"NOT RUN: the matrix budget ({args.budget:.0f}s) is spent"
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH")}
        env["PATH"] = f"{python.parent}{os.pathsep}{env.get('PATH', '')}"
        cmd = [str(python), "-m", "pytest", *TEST_FILES, *PYTEST_ARGS, *pytest_extra]
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        t1 = time.monotonic()
        limit = min(args.test_timeout, left)
        # pytest's output goes straight to the log (kept when the run is cut short); its own session,
        # so a timeout ends the Blender children too, not only pytest.
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            ok = proc.wait(timeout=limit) == 0
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            log.write(f"\nTIMEOUT: the tests of bpy {bpy} ran over {limit:.0f}s\n")
            ok = False
    output = log_path.read_text(errors="replace")
    output = output[output.rfind("$ ", 0, output.find(" -m pytest ")):]
    detail = f"{pytest_summary(output)}; tests {time.monotonic() - t1:.0f}s, venv {origin} {t_setup:.0f}s"
    if not ok:
        tail = "\n".join("    " + ln for ln in output.strip().splitlines()[-25:])
        detail += f"; log {log_path.relative_to(REPO)}\n{tail}"
    return ok, detail


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    pytest_extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(prog="tests/blender_matrix.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", action="append", choices=sorted(MATRIX), help="run this bpy version (repeatable)")
    p.add_argument("--install-timeout", type=float, default=900, help="seconds to build one venv (default 900)")
    p.add_argument("--test-timeout", type=float, default=600, help="seconds for one version's tests (default 600)")
    p.add_argument("--budget", type=float, default=2400, help="seconds for the whole matrix (default 2400)")
    args = p.parse_args(argv)
    versions = [v for v in MATRIX if not args.only or v in args.only]
    deadline = time.monotonic() + args.budget
    t0 = time.monotonic()
    results = []
    n_passed = n_failed = 0
    for bpy in versions:
        ok, detail = run_version(bpy, MATRIX[bpy], args, pytest_extra, deadline)
        line = f"blender-matrix: bpy {bpy} (Python {MATRIX[bpy]}): {'PASS' if ok else 'FAIL'} {detail}"
        print(line, flush=True)
        results.append(ok)
        summary = detail.split(";", 1)[0]
        n_passed += sum(int(n) for n in re.findall(r"(\d+) passed", summary))
        n_failed += sum(int(n) for n in re.findall(r"(\d+) (?:failed|errors?)\b", summary))
        if not ok and not re.search(r"\d+ (?:failed|errors?)\b", summary):
            n_failed += 1     # a version that could not be set up or ran over its time counts as a failure
    failed = results.count(False)
    print(f"blender-matrix: {len(results) - failed}/{len(results)} versions passed in {time.monotonic() - t0:.0f}s",
          flush=True)
    # the plain closing line CI reads, over every version's tests
    print(f"blender-matrix: {n_passed} passed, {n_failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
