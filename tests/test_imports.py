"""The module graph: every module imports, no import cycle, no library module imports the CLI."""

import ast
import importlib
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "deepchem_actinn"
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
#: Entry points: nothing in the library may import them.
ENTRY_POINTS = {"cli"}


def _imported(node: ast.AST) -> set:
    """Package modules an import statement names (``from deepchem_actinn import x`` included)."""
    names = set()
    if isinstance(node, ast.Import):
        names = {a.name for a in node.names}
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        names = {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    found = set()
    for name in names:
        parts = name.split(".")
        if parts[0] == "deepchem_actinn" and len(parts) > 1 and parts[1] in MODULES:
            found.add(parts[1])
    return found


def _module_level(tree: ast.Module) -> list:
    """Import statements run when the module is imported (not those in functions or
    ``if TYPE_CHECKING:``)."""
    found, stack = [], list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If):
            if "TYPE_CHECKING" not in ast.unparse(node.test):
                stack += node.body + node.orelse
        elif isinstance(node, ast.Try):
            stack += node.body + node.orelse + node.finalbody
            for handler in node.handlers:
                stack += handler.body
    return found


def graph(module_level: bool) -> dict:
    edges = {}
    for name in MODULES:
        tree = ast.parse((PACKAGE / f"{name}.py").read_text())
        nodes = _module_level(tree) if module_level else [
            n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
        edges[name] = set().union(*(_imported(n) for n in nodes)) - {name}
    return edges


def cycle(edges: dict) -> list:
    """One import cycle of ``edges`` as a path, or ``[]``."""
    state: dict = {}

    def visit(node: str, path: list) -> list:
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
            if nxt not in state:
                found = visit(nxt, path + [nxt])
                if found:
                    return found
        state[node] = "done"
        return []

    for start in sorted(edges):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return []


@pytest.mark.parametrize("name", MODULES)
def test_every_module_imports(name):
    importlib.import_module(f"deepchem_actinn.{name}")


def test_no_import_cycle_at_module_level():
    assert cycle(graph(module_level=True)) == []


def test_no_import_cycle_through_lazy_imports_either():
    assert cycle(graph(module_level=False)) == []


def test_no_library_module_imports_an_entry_point():
    edges = graph(module_level=False)  # lazy imports inside functions too
    offenders = {m: sorted(e & ENTRY_POINTS) for m, e in edges.items()
                 if e & ENTRY_POINTS and m not in ENTRY_POINTS}
    assert offenders == {}


def test_cycle_finder_finds_a_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) == []


def test_annotate_is_the_function_with_its_signature():
    import inspect
    import pydoc

    import deepchem_actinn as da
    import deepchem_actinn.annotation  # noqa: F401  (binding the module shadows nothing)
    from deepchem_actinn import AnnotationResult, annotate, train_reference

    assert inspect.isfunction(da.annotate) and da.annotate is annotate
    assert list(inspect.signature(da.annotate).parameters)[:4] == ["data", "model", "threshold",
                                                                   "key"]
    assert "Call cell types with a trained reference" in pydoc.render_doc(da.annotate)
    assert list(inspect.signature(train_reference).parameters)[:2] == ["counts", "labels"]
    assert AnnotationResult.__module__ == "deepchem_actinn.annotation"


def test_using_the_package_prints_nothing_of_deepchems_import(tmp_path):
    """DeepChem's ~17 import-time lines and torch's per-step warning stay out of the user's way,
    while the package's own warnings still reach them."""
    import subprocess
    import sys

    script = (
        "import numpy as np\n"
        "import deepchem_actinn as da\n"
        "X = np.random.default_rng(0).normal(size=(32, 5)).astype(np.float32)\n"
        "y = (X[:, 0] > 0).astype(int).reshape(-1, 1)\n"
        "from deepchem_actinn.data import CellDataset\n"
        "model = da.ACTINNModel(5, 2, batch_size=8)\n"
        "model.fit(CellDataset(X, y), nb_epoch=30)\n"
        "import deepchem\n"  # the user's own import afterwards: DeepChem is loaded already
        "print('trained', deepchem.__name__)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == "trained deepchem\n"
    assert done.stderr == "", done.stderr[-2000:]
