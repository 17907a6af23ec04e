"""The module graph: every module imports, no import cycle, no library module imports the CLI.

Modules are named by their path in the package: ``train``, ``io`` (the
package's ``__init__``), ``io.counts``... Importing ``pkg.sub`` from outside
``pkg`` runs ``pkg/__init__`` first, so it counts as importing both; inside a
package, modules import their siblings, never their own package (whose
``__init__`` imports them: a cycle).
"""

import ast
import importlib
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "deepchem_actinn"


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


FILES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))
         if _module_name(p)}  # the package's own __init__ is the root, not a module here
MODULES = sorted(FILES)
#: Entry points: nothing in the library may import them.
ENTRY_POINTS = {"cli"}


def _targets(node: ast.AST) -> list:
    """The package modules (relative names) an import statement names, deepest first."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        # ``from pkg import sub`` imports the module pkg.sub; ``from pkg import name`` pkg
        names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}".split(".", 1)[-1]
                 in FILES else node.module for a in node.names]
    else:
        return []
    return [name.split(".", 1)[1] for name in names
            if name.startswith("deepchem_actinn.") and name.split(".", 1)[1] in FILES]


def _imported(node: ast.AST, importer: str) -> set:
    """Package modules an import statement runs: the module named and the ``__init__`` of
    each package above it that the importer is not inside."""
    found = set()
    for module in _targets(node):
        found.add(module)
        parts = module.split(".")
        for depth in range(1, len(parts)):
            package = ".".join(parts[:depth])
            if not (importer == package or importer.startswith(package + ".")):
                found.add(package)
    return found


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _module_level(tree: ast.Module) -> list:
    """Import statements run when the module is imported (not those in functions or
    ``if TYPE_CHECKING:``)."""
    found, stack = [], list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If):
            if not _is_type_checking(node):
                stack += node.body + node.orelse
        elif isinstance(node, ast.Try):
            stack += node.body + node.orelse + node.finalbody
            for handler in node.handlers:
                stack += handler.body
        elif isinstance(node, ast.With):
            stack += node.body
    return found


def _anywhere(tree: ast.Module) -> list:
    """Every import statement that can run, in functions too (not ``if TYPE_CHECKING:``)."""
    found, stack = [], [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif not _is_type_checking(node):
            stack += list(ast.iter_child_nodes(node))
    return found


def graph(module_level: bool) -> dict:
    edges = {}
    for name, path in FILES.items():
        tree = ast.parse(path.read_text())
        nodes = _module_level(tree) if module_level else _anywhere(tree)
        edges[name] = set().union(*(_imported(n, name) for n in nodes)) - {name}
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


#: Names each module offered before the package was split into io/, model/ and data/:
#: every one is still importable from there (CellDatasetMixin moved to ``data``).
FORMER_NAMES = {
    "io": "ANNDATA_HINT CountMatrix CountMatrixWarning FORMATS FORMAT_OPTIONS GZIP_SIGNATURE "
          "HDF5_SIGNATURE LabelJoin Matrix Names PathLike StoredCounts as_count_matrix "
          "check_counts check_format_options detect_format finish_matrix from_anndata gene_list "
          "join_labels labels_source load_10x_h5 load_counts load_h5ad load_mtx load_text "
          "normalize_format obs_labels read_anndata read_counts read_labelled read_labels "
          "read_pandas_hdf string_dataset take_columns take_rows tenx_v2_genome training_labels "
          "transposed_hint",
    "model": "ACTINNModel ACTINN_DEFAULTS ActinnClassifier DEFAULT_PRESET GENE_SELECTION_DEFAULTS "
             "GeneLinear MODEL_FILE MODEL_FORMAT MODEL_FORMAT_VERSION PREDICT_BATCH PREDICT_VALUES "
             "PRESETS PredictionBlock RAW_COUNT_ROW_SUM TRAINING_OPTIONS WEIGHTS_FILE WeightL2Adam "
             "describe_preset featurizer_for gene_means gene_product predict_rows preset_settings "
             "read_model_metadata refuse_unknown_keywords sparse_linear to_torch_csr "
             "_metadata_digest _DivergenceGuard _balanced_weights",
    "data": "Batch CellDataset CellDatasetMixin DENSE_VALUES_LIMIT Inputs LabelSource NAMES_FILE "
            "SHARD_SIZE ScRNALoader SparseCellDataset StratifiedSplitter encode_labels "
            "featurize_sparse load_disk_dataset",
    "streaming": "CHUNK_CELLS ChunkedCounts MANIFEST_FILE SHARD_CELLS SHARD_FILE "
                 "ShardedCellDataset StreamStatistics chunk_transform fit_featurizer_streaming "
                 "fit_on_shards "
                 "rank_rows shard_generator write_shards",
    "sparse": "SparseCellDataset featurize_sparse sparse_linear to_torch_csr",
    "writers": "MTX_FILES output_format write_10x_h5 write_counts write_h5ad write_mtx "
               "write_pandas_hdf write_text",
    "model_file": "HYPERPARAMETERS FEATURIZER METADATA MODEL_FILE WEIGHTS_FILE MODEL_FORMAT "
                  "MODEL_FORMAT_VERSION SchemaError checkpoint_names declared_parameters "
                  "load_weights network_parameters parse_metadata read_model_snapshot "
                  "validate_metadata _metadata_digest",
}


@pytest.mark.parametrize("former", sorted(FORMER_NAMES))
def test_former_import_paths_still_work(former):
    module = importlib.import_module(f"deepchem_actinn.{former}")
    missing = [name for name in FORMER_NAMES[former].split() if not hasattr(module, name)]
    assert missing == []


def test_aliases_name_the_objects_of_the_new_homes():
    from deepchem_actinn import data, io, model, model_file, sparse, streaming, writers
    from deepchem_actinn.model import file_format, network

    assert streaming.ChunkedCounts is io.ChunkedCounts
    assert streaming.ShardedCellDataset is data.ShardedCellDataset
    assert sparse.SparseCellDataset is data.SparseCellDataset
    assert sparse.sparse_linear is network.sparse_linear
    assert writers.write_counts is io.write_counts
    assert model_file.validate_metadata is file_format.validate_metadata
    assert model.ACTINNModel.__module__ == "deepchem_actinn.model.actinn_model"


def test_presets_and_model_file_names_load_neither_torch_nor_deepchem():
    """The CLI reads PRESETS (and MODEL_FILE) before any work: the model package is lazy."""
    script = ("import sys\n"
              "from deepchem_actinn.model import PRESETS\n"
              "print('torch' in sys.modules, 'deepchem' in sys.modules)\n"
              "from deepchem_actinn.model import MODEL_FILE\n"
              "print('deepchem' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, cwd=PACKAGE.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "False", "False"]


def test_the_graph_sees_packages_and_their_modules():
    edges = graph(module_level=True)
    assert {"io", "io.counts", "model", "model.actinn_model", "data", "data.shards"} <= set(edges)
    assert "io.chunked" in edges["io"]  # the package imports its modules
    assert "io" not in edges["io.chunked"]  # its modules import their siblings, not it
    assert {"model", "model.file_format"} <= edges["data.loader"]  # from outside: both run
