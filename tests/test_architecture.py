"""The import graph keeps the shape the runtime's docstring promises: imports run one way,
front end → automata and interpreter → decoding → backends; nothing in the runtime
imports the standard library; the automata need neither torch nor the decoding loop; the
front doors use only public names. Every import counts, lazy ones inside functions too."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"lmq": "lmq", "grammar": "lmq.grammar", "runtime": "lmq.runtime",
           "stdlib": "lmq.stdlib"}


def modules() -> dict[str, Path]:
    found = {}
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            name = ".".join((package, *parts)).removesuffix(".__init__")
            found[name] = path
    return found


def imports(path: Path, name: str) -> set[str]:
    """Every module ``path`` imports (``from a import b`` counts ``a`` and ``a.b``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


GRAPH = {name: imports(path, name) for name, path in modules().items()}
LAYERS = ("lmq.runtime.automata", "lmq.runtime.interpreter", "lmq.runtime.decoding",
          "lmq.runtime.backends", "lmq.stdlib")


def layer(module: str) -> str | None:
    """The subpackage ``module`` belongs to; ``lmq.runtime`` for the runtime's own top
    modules (run, engine, specialists, scoring)."""
    for name in LAYERS:
        if module == name or module.startswith(name + "."):
            return name
    if module.startswith("lmq.runtime."):
        return "lmq.runtime"
    return None


def edges() -> set[tuple[str, str]]:
    out = set()
    for module, targets in GRAPH.items():
        source = layer(module)
        for target in targets:
            other = layer(target)
            if source and other and source != other and target in GRAPH:
                out.add((source, other))
    return out


def test_the_graph_is_read():
    assert len(GRAPH) > 60 and "lmq.runtime.decoding.loop" in GRAPH


def test_nothing_in_the_runtime_imports_the_stdlib():
    offenders = [m for m, targets in GRAPH.items() if m.startswith("lmq.runtime")
                 and any(t.startswith("lmq.stdlib") for t in targets)]
    assert offenders == []


def test_the_automata_need_no_torch_and_no_decoding():
    for module, targets in GRAPH.items():
        if layer(module) == "lmq.runtime.automata":
            bad = {t for t in targets if t.split(".")[0] in ("torch", "transformers")
                   or (layer(t) not in (None, "lmq.runtime.automata"))}
            assert not bad, (module, bad)


@pytest.mark.parametrize("source, target", [
    ("lmq.runtime.interpreter", "lmq.runtime.decoding"),
    ("lmq.runtime.decoding", "lmq.runtime.backends"),
    ("lmq.runtime.decoding", "lmq.runtime.automata"),
    ("lmq.stdlib", "lmq.runtime.decoding"),
])
def test_allowed_directions_are_used(source, target):
    assert (source, target) in edges()


def test_no_cycle_between_packages():
    graph = edges()
    names = {n for edge in graph for n in edge}
    for a, b in itertools.permutations(names, 2):
        assert not ((a, b) in graph and reachable(graph, b, a)), f"{a} <-> {b}"


def reachable(graph: set[tuple[str, str]], start: str, goal: str) -> bool:
    seen, todo = {start}, [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        for a, b in graph:
            if a == node and b not in seen:
                seen.add(b)
                todo.append(b)
    return False


def test_the_backends_see_no_decoding_and_no_interpreter():
    for module, targets in GRAPH.items():
        if layer(module) == "lmq.runtime.backends":
            bad = {t for t in targets if layer(t) in ("lmq.runtime.decoding",
                                                      "lmq.runtime.interpreter")}
            assert not bad, (module, bad)


def test_the_front_doors_use_public_names_only():
    """The CLI and the notebook magic call the Python API as a user would."""
    for module in ("lmq.cli", "lmq.cli_inputs", "lmq.magic"):
        tree = ast.parse(modules()[module].read_text(encoding="utf-8"))
        private = sorted({node.attr for node in ast.walk(tree)
                          if isinstance(node, ast.Attribute) and node.attr.startswith("_")
                          and not node.attr.startswith("__")})
        assert private == [], (module, private)
