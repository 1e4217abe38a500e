"""The import graph of agents/, envs/, world_model/ and interpret/: no cycles, and dependencies
point one way (DESIGN.md): interpret -> agents, envs; world_model -> agents, envs; agents -> envs.

Every ``import`` statement counts, at any depth: a function-local import only delays a cycle.
Modules are found by walking the package directories, so new sub-packages are covered.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("agents", "envs", "world_model", "interpret")
FORBIDDEN = {  # package -> the packages it must not import
    "agents": {"world_model", "interpret"},
    "envs": {"agents", "world_model", "interpret"},
    "world_model": {"interpret"},
    "interpret": set(),  # its World Models interpreters may read world_model
}


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under the packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Our modules that ``name`` imports (the innermost module each statement names)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    named = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            named += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . / .. (module)
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from a import b` imports the module a.b when there is one, else a's name b
            named += [
                f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names
            ]
    found = set()
    for target in named:
        while target and target not in modules:  # `import a.b.attr` -> a.b
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per back edge of a depth-first search (empty: the graph is acyclic)."""
    cycles, done, path = [], set(), []

    def visit(node: str) -> None:
        path.append(node)
        for nxt in sorted(graph[node]):
            if nxt in path:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in done:
                visit(nxt)
        path.pop()
        done.add(node)

    for node in sorted(graph):
        if node not in done:
            visit(node)
    return cycles


def _format(cycles: list[list[str]]) -> str:
    return "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_graph_counts_function_local_and_relative_imports(tmp_path):
    path = tmp_path / "mod.py"
    path.write_text(
        "def f():\n"
        "    from . import sibling\n"
        "    from ..other import name\n"
        "    import pkg.sub.sibling.attr\n"
        "    import numpy\n"
    )
    modules = dict.fromkeys(["pkg.sub.mod", "pkg.sub.sibling", "pkg.other"], path)
    assert _imports("pkg.sub.mod", path, modules) == {"pkg.sub.sibling", "pkg.other"}
    assert len(_graph()) > 40  # the packages were found


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert not cycles, _format(cycles)


def _top(module: str) -> str:
    return module.partition(".")[0]


def test_dependencies_point_one_way():
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in _graph().items()
        for target in targets
        if _top(target) in FORBIDDEN[_top(module)]
    )
    assert not wrong, (
        "imports against interpret -> agents, envs; world_model -> agents, envs; agents -> envs:\n"
        + "\n".join(wrong)
    )
