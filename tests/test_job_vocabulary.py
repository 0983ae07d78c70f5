"""The job vocabulary is spelled once: no module outside ``bridge/jobs``
writes a job state as a string literal (use ``JobState``), and the add-ons
share the one model rather than keeping states of their own."""

import ast
from pathlib import Path

from bridge.jobs.model import JobState

REPO = Path(__file__).resolve().parents[1]
CHECKED = ("bridge", "blender_addon", "unreal_plugin", "engine_renders", "benchmarks", "docs")
STATES = {s.value for s in JobState}


def _literals(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in STATES:
            yield node.lineno, node.value


def test_no_job_state_is_spelled_as_a_string_outside_the_model():
    found = []
    for top in CHECKED:
        for path in sorted((REPO / top).rglob("*.py")):
            rel = path.relative_to(REPO)
            if rel.parts[:2] == ("bridge", "jobs") or rel.parts[:2] == ("bridge", "proto") or "_vendor" in rel.parts:
                continue
            found += [f"{rel}:{line}: {value!r}" for line, value in _literals(path)]
    assert not found, "job states spelled as strings (use bridge.jobs.model.JobState):\n" + "\n".join(found)


def test_the_checker_sees_a_literal():
    """The check above can fail: it finds a state literal when one is there."""
    probe = REPO / "tests" / "_probe_state_literal.py"
    probe.write_text("STATE = 'running'\n")
    try:
        assert list(_literals(probe)) == [(1, "running")]
    finally:
        probe.unlink()


def test_add_on_job_record_states_are_job_states():
    """The Blender record's state property holds JobState values, and the
    client-only state the add-ons show is part of the model."""
    assert JobState.DETACHED.value == "detached" and not JobState.DETACHED.terminal
    assert JobState.parse("from-a-newer-bridge") is JobState.DETACHED
