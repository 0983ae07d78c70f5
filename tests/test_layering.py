"""Dependency direction (STYLE practices 1 and 14, DESIGN section 2), read
from the source with ``ast``, nothing imported:

- the core ``bridge`` package never imports the add-ons, the sample-shot
  renderer or an engine (``blender_addon``, ``engine_renders``, ``bpy``,
  ``unreal``), at module level or inside a function; the CLI reaches the
  first two through the ``greenlight.commands`` entry points;
- no two modules under ``bridge/`` import each other, directly or round a
  longer circle.

The import graph has an edge for every ``import x`` / ``from x import y``
anywhere in a module (functions included), relative imports resolved;
``from pkg import name`` points at ``pkg.name`` when that is a module and at
``pkg`` otherwise. Importing a submodule also runs its package's
``__init__``, but that implicit step is not an edge: a package that
re-exports its submodules would otherwise always be a circle.
"""

from __future__ import annotations

import ast
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

BRIDGE = REPO / "bridge"
FORBIDDEN = ("blender_addon", "engine_renders", "bpy", "unreal")
COMMANDS_GROUP = "greenlight.commands"


def _module_name(path: Path, root: Path = REPO) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def bridge_modules(root: Path = REPO) -> dict[str, Path]:
    return {_module_name(p, root): p for p in sorted((root / "bridge").rglob("*.py")) if "__pycache__" not in p.parts}


def _imports(path: Path, root: Path = REPO) -> list[tuple[int, str, str | None]]:
    """(line, module, name or None) for every import in the file; relative
    imports resolved against the module's package."""
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            found += [(node.lineno, module, alias.name) for alias in node.names]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and (getattr(node.func, "attr", None) == "import_module"
                   or getattr(node.func, "id", None) in ("import_module", "__import__"))):
            found.append((node.lineno, node.args[0].value, None))   # importlib.import_module("x.y")
    return found


def import_graph(modules: dict[str, Path], root: Path = REPO) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for _, target, name in _imports(path, root):
            if name is not None and f"{target}.{name}" in modules:
                target = f"{target}.{name}"
            if target in modules and target != module:
                graph[module].add(target)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest circle (closed: first == last) through the first module
    of each strongly connected component of more than one module (Tarjan)."""
    return [_shortest_circle(graph, c) for c in strongly_connected(graph)]


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(components)


def _shortest_circle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    start, members = component[0], set(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & members):
            if w == start:
                return paths[v] + [start]
            if w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    raise AssertionError(f"{component} is not a cycle")


def test_bridge_never_imports_the_add_ons_the_renderer_or_an_engine():
    bad = []
    for path in bridge_modules().values():
        for line, target, name in _imports(path):
            full = f"{target}.{name}" if name else target
            if full.split(".")[0] in FORBIDDEN:
                bad.append(f"{path.relative_to(REPO)}:{line} imports {full}")
    assert not bad, "the core bridge package must not import " + ", ".join(FORBIDDEN) + ":\n" + "\n".join(bad)


def test_no_import_cycles_inside_bridge():
    graph = import_graph(bridge_modules())
    found = [f"{' -> '.join(_shortest_circle(graph, c))}  (circle among {', '.join(c)})"
             for c in strongly_connected(graph)]
    assert not found, "import cycles under bridge/:\n" + "\n".join(found)


def test_no_module_is_shadowed_by_a_package_of_the_same_name():
    # bridge/cli.py became the package bridge/cli/: a cli.py written again would be silently ignored
    shadowed = [str(p.relative_to(REPO)) for p in BRIDGE.rglob("*.py")
                if (p.with_suffix("") / "__init__.py").is_file()]
    assert not shadowed, f"{shadowed}: a package of the same name is imported instead; move the code into it"


def test_the_graph_resolves_imports_and_the_finder_reports_circles(tmp_path):
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}) == [["a", "b", "c", "a"]]
    pkg = tmp_path / "bridge" / "p"
    pkg.mkdir(parents=True)
    (tmp_path / "bridge" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("from .x import X\n")                          # a name: edge to the module
    (pkg / "x.py").write_text("def f():\n    from . import y\n")                  # in a function, a module
    (pkg / "y.py").write_text("from .. import p\nimport importlib\nimportlib.import_module('bpy')\n")
    modules = bridge_modules(tmp_path)
    assert import_graph(modules, tmp_path) == {
        "bridge": set(), "bridge.p": {"bridge.p.x"}, "bridge.p.x": {"bridge.p.y"}, "bridge.p.y": {"bridge.p"}}
    assert find_cycles(import_graph(modules, tmp_path)) == [["bridge.p", "bridge.p.x", "bridge.p.y", "bridge.p"]]
    assert (3, "bpy", None) in _imports(modules["bridge.p.y"], tmp_path)


def test_command_entry_points_are_declared_and_installed():
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"][COMMANDS_GROUP]
    assert set(declared) == {"render", "demo-shot", "storyboard"}
    installed = {ep.name: ep.value for ep in entry_points(group=COMMANDS_GROUP)}
    if installed != declared:
        pytest.fail(f"installed {COMMANDS_GROUP} entry points {installed} differ from pyproject.toml's {declared}: "
                    "reinstall with pip install -e '.[dev]'")
    for ep in entry_points(group=COMMANDS_GROUP):
        assert callable(ep.load()), ep


def test_a_missing_entry_point_names_the_install_command(monkeypatch, tmp_path, capsys):
    import argparse
    import importlib.metadata

    from bridge.cli import demo, main

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kw: [])
    assert main(["render", str(tmp_path / "scene.blend")]) == 2
    err = capsys.readouterr().err
    assert "greenlight.commands entry point 'render'" in err and "pip install -e '.[blender]'" in err
    # the demo says so too, then falls back to the synthetic shot
    args = argparse.Namespace(synthetic=False, frames=3, width=16, height=16)
    shot = demo._demo_shot(args, tmp_path)
    out = capsys.readouterr().out
    assert "entry point 'demo-shot'" in out and "building the synthetic sample shot" in out
    assert shot.frame_count == 3
