"""Malformed inputs: each gives one clear line naming the file and the problem.

From Python, an :class:`~deepchem_actinn.errors.ActinnError` (a ``ValueError``)
whose message starts with the offending path; from the command line, exit
status 2, a single ``deepchem-actinn: error: PATH: problem`` line on stderr,
no traceback and no output file (not even a partial one).
"""

import json
import os
import re
import shutil
import subprocess
import sys
import warnings

import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import sha256_file as _sha256
from conftest import write_counts, write_labelled_counts, write_labels

import deepchem_actinn as da
from deepchem_actinn import cli
from deepchem_actinn.data import CellDataset, StratifiedSplitter
from deepchem_actinn.errors import ActinnError, GeneOverlapError, InputError, ModelFileError
from deepchem_actinn.io import CountMatrixWarning, finish_matrix
from deepchem_actinn.model import MODEL_FILE, WEIGHTS_FILE, _metadata_digest
from deepchem_actinn.preprocessing import PreprocessingWarning

N_CELLS, N_GENES = 120, 200
GENES = [f"Gene{i}" for i in range(N_GENES)]
CELLS = [f"cell{i}" for i in range(N_CELLS)]


# ---------------------------------------------------------------------------
# Fixtures and helpers
# ---------------------------------------------------------------------------


# Not the session reference: the checks count these 120 cells, 200 genes and "type" labels.
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Good synthetic counts, labels and a small trained model on disk."""
    folder = tmp_path_factory.mktemp("good")
    X, types, counts, labels = write_labelled_counts(folder, N_CELLS, N_GENES, "type")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = da.train_reference(counts, labels, epochs=2)
    model_dir = model.save(folder / "model")
    return {"X": X, "types": types, "counts": counts, "labels": labels, "model": model_dir}


def cli_error(capsys, *argv):
    """Run the CLI in-process; return its single error line (asserting exit 2)."""
    capsys.readouterr()
    code = cli.main([os.fspath(a) for a in argv])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, (code, out, err)
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert lines[0].startswith("deepchem-actinn: error: "), err
    return lines[0]


def py_error(call, path, pattern, kind=ActinnError):
    """Call; assert a one-line ``kind`` error that starts with ``path`` and matches."""
    with pytest.raises(kind) as info:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            call()
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "\n" not in message
    assert message.startswith(os.fspath(path)), message
    assert re.search(pattern, message), message
    return message


def train_argv(counts, labels, model_dir, *extra):
    return [os.fspath(a) for a in ("train", "--train-set", counts, "--train-labels", labels,
                                   "--model-dir", model_dir, "--epochs", "1", "--quiet", *extra)]


def predict_argv(model_dir, counts, output, *extra):
    return [os.fspath(a) for a in ("predict", "--model-dir", model_dir, "--test-set", counts,
                                   "--output", output, *extra)]


def assert_nothing_written(folder, *names):
    """No output, and no hidden temporary file either, was left in ``folder``."""
    for name in names:
        assert not os.path.exists(os.path.join(folder, name))
    leftovers = [f for f in os.listdir(folder) if f.startswith(".")]
    assert leftovers == []


# ---------------------------------------------------------------------------
# Count matrices: the same file through read_counts and `train`
# ---------------------------------------------------------------------------


def _write_frame(path, frame, key="dge"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyTables warns about object columns
        frame.to_hdf(path, key=key)


def _matrix_case(name, path, data):
    """Write the bad matrix ``name`` at ``path``; return (path given, expected pattern)."""
    X = data["X"].astype(np.float64)
    if name == "empty file":
        open(path, "w").close()
        return path, r"empty"
    if name == "missing file":
        return path, r"not found"
    if name == "directory":
        os.mkdir(path)
        return path, r"folder holds no matrix\.mtx"
    if name == "not hdf5":
        with open(path, "w") as handle:
            handle.write("this is not a count matrix\n")
        return path, r"neither tab- nor comma-separated"
    if name == "random bytes":
        with open(path, "wb") as handle:
            handle.write(np.random.default_rng(0).bytes(2048))
        return path, r"not a recognised count-matrix format"
    if name == "hdf5 without dataframe":
        with h5py.File(path, "w") as handle:
            handle["x"] = np.ones((3, 3))
        return path, r"neither pandas HDF, 10x Genomics HDF5 nor \.h5ad \(top-level keys: x\)"
    if name == "empty hdf5":
        with h5py.File(path, "w"):
            pass
        return path, r"neither pandas HDF, 10x Genomics HDF5 nor \.h5ad \(top-level keys: none\)"
    if name == "two dataframes":
        write_counts(path, data["X"], GENES, CELLS, key="first")
        write_counts(path, data["X"], GENES, CELLS, key="second")
        return path, r"2 DataFrames.*--key"
    if name == "a series":
        _write_frame(path, pd.Series([1.0, 2.0], index=["a", "b"]))
        return path, r"Series, not a DataFrame"
    if name == "truncated hdf5":
        write_counts(path, data["X"], GENES, CELLS)
        size = os.path.getsize(path)
        with open(path, "r+b") as handle:
            handle.truncate(size // 3)
        return path, r"cannot read HDF5 file: .*truncated"
    if name == "no cells":
        _write_frame(path, pd.DataFrame(np.zeros((N_GENES, 0)), index=GENES))
        return path, r"no cells"
    if name == "non-numeric":
        frame = pd.DataFrame(X.T.astype(object), index=GENES, columns=CELLS)
        frame.iloc[3, 5] = "n/a"
        _write_frame(path, frame)
        return path, r"non-numeric"
    if name == "nan":
        X[5, 3] = np.nan
        write_counts(path, X, GENES, CELLS)
        return path, r"1 NaN"
    if name == "infinite":
        X[5, 3] = np.inf
        X[6, 3] = -np.inf
        write_counts(path, X, GENES, CELLS)
        return path, r"2 infinite"
    if name == "negative":
        X[:2, 0] = -1
        write_counts(path, X, GENES, CELLS)
        return path, r"2 negative.*raw counts"
    if name == "label file as counts":
        write_labels(path, {"cell0": "B", "cell1": "T"})
        return path, r"column 'B' is not numeric"
    raise AssertionError(name)


MATRIX_CASES = ["empty file", "missing file", "directory", "not hdf5", "random bytes",
                "hdf5 without dataframe", "empty hdf5", "two dataframes", "a series",
                "truncated hdf5", "no cells", "non-numeric", "nan", "infinite", "negative",
                "label file as counts"]


@pytest.mark.parametrize("case", MATRIX_CASES)
def test_bad_matrix_python(case, data, tmp_path):
    path, pattern = _matrix_case(case, os.fspath(tmp_path / "counts.h5"), data)
    py_error(lambda: da.read_counts(path), path, pattern, InputError)


@pytest.mark.parametrize("case", MATRIX_CASES)
def test_bad_matrix_cli(case, data, tmp_path, capsys):
    path, pattern = _matrix_case(case, os.fspath(tmp_path / "counts.h5"), data)
    out = tmp_path / "out"
    out.mkdir()
    line = cli_error(capsys, *train_argv(path, data["labels"], out / "model"))
    assert path in line and re.search(pattern, line), line
    assert_nothing_written(out, "model")
    # The same file as a query to annotate.
    line = cli_error(capsys, *predict_argv(data["model"], path, out / "pred.tsv"))
    assert path in line and re.search(pattern, line), line
    assert_nothing_written(out, "pred.tsv")


def test_wrong_key(data, tmp_path, capsys):
    path = write_counts(tmp_path / "counts.h5", data["X"], GENES, CELLS, key="counts")
    py_error(lambda: da.read_counts(path, key="dge"), path, r"no key 'dge'.*counts")
    line = cli_error(capsys, *train_argv(path, data["labels"], tmp_path / "m", "--key", "x"))
    assert re.search(r"no key 'x'", line) and path in line
    assert not (tmp_path / "m").exists()


def test_two_dataframes_with_key_is_fine(data, tmp_path):
    path = write_counts(tmp_path / "counts.h5", data["X"], GENES, CELLS, key="first")
    write_counts(path, data["X"][:10], GENES, CELLS[:10], key="second")
    assert da.read_counts(path, key="second").shape == (10, N_GENES)


# ---------------------------------------------------------------------------
# Values that are repaired or accepted with a warning
# ---------------------------------------------------------------------------


def test_non_integer_values_warn_and_proceed(data, tmp_path, capsys):
    """Log-normalised input: a warning says ACTINN expects raw counts, the run goes on."""
    path = write_counts(tmp_path / "log.h5", np.log1p(data["X"]), GENES, CELLS)
    with pytest.warns(CountMatrixWarning, match=r"non-integer.*raw counts.*continuing"):
        matrix = da.read_counts(path)
    assert matrix.shape == (N_CELLS, N_GENES)
    capsys.readouterr()
    code = cli.main(train_argv(path, data["labels"], tmp_path / "model"))
    err = capsys.readouterr().err
    assert code == 0, err
    warning = [line for line in err.splitlines() if "warning" in line]
    assert len(warning) == 1 and path in warning[0] and "raw counts" in warning[0]
    assert (tmp_path / "model" / MODEL_FILE).is_file()


def test_strict_counts_refuse_non_integer():
    from deepchem_actinn.io import check_counts
    with pytest.raises(InputError, match=r"^x.h5: matrix holds non-integer"):
        check_counts(np.array([[0.5, 1.0]]), "x.h5", allow_non_integer=False)


def test_zero_count_cells_are_dropped_from_training(data, tmp_path, capsys):
    X = data["X"].copy()
    X[:4] = 0
    path = write_counts(tmp_path / "counts.h5", X, GENES, CELLS)
    with pytest.warns(PreprocessingWarning, match=r"dropped 4 training cells with zero counts"):
        model = da.train_reference(path, data["labels"], epochs=1)
    assert model.featurizer.genes_ is not None
    capsys.readouterr()
    assert cli.main(train_argv(path, data["labels"], tmp_path / "model")) == 0
    err = capsys.readouterr().err
    assert re.search(r"warning: .*counts.h5: dropped 4 training cells with zero counts", err), err


def test_all_cells_zero(data, tmp_path, capsys):
    path = write_counts(tmp_path / "zeros.h5", np.zeros_like(data["X"]), GENES, CELLS)
    py_error(lambda: da.train_reference(path, data["labels"], epochs=1), path,
             r"every labelled training cell has zero counts", InputError)
    line = cli_error(capsys, *train_argv(path, data["labels"], tmp_path / "model"))
    assert path in line and "zero counts" in line
    assert not (tmp_path / "model").exists()
    line = cli_error(capsys, *predict_argv(data["model"], path, tmp_path / "pred.tsv"))
    assert path in line and "zero counts over the model's genes" in line
    assert not (tmp_path / "pred.tsv").exists()


def test_zero_count_query_cells_warn(data, tmp_path):
    X = data["X"].copy()
    X[:3] = 0
    path = write_counts(tmp_path / "query.h5", X, GENES, CELLS)
    with pytest.warns(PreprocessingWarning, match=r"3 of 120 cells have zero counts"):
        result = da.annotate(path, data["model"])
    assert len(result) == N_CELLS and np.isfinite(result.probabilities).all()


def test_gene_zero_in_every_training_cell_does_not_break_filtering(data, tmp_path):
    """The original ACTINN's NaN CV removes every gene and predicts a single type."""
    X = data["X"].copy()
    X[:, [0, 7, 150]] = 0
    path = write_counts(tmp_path / "counts.h5", X, GENES, CELLS)
    model = da.train_reference(path, data["labels"], epochs=25, learning_rate=1e-2,
                               batch_size=32)
    kept = set(model.featurizer.genes_)
    assert not kept & {"GENE0", "GENE7", "GENE150"}
    assert len(kept) > 150
    result = da.annotate(path, model)
    truth = np.array([f"type{t}" for t in data["types"]], dtype=object)
    assert len(set(result.labels)) == 3
    assert (result.labels == truth).mean() > 0.9


def test_duplicate_genes_and_cells_warn(data, tmp_path):
    genes = list(GENES)
    genes[1] = "GENE0"  # upper-cased duplicate of Gene0
    path = write_counts(tmp_path / "dups.h5", data["X"], genes, CELLS)
    with pytest.warns(CountMatrixWarning, match=r"dups.h5: 1 duplicate gene names.*kept the first"):
        matrix = da.read_counts(path)
    assert matrix.shape == (N_CELLS, N_GENES - 1)
    cells = list(CELLS)
    cells[2] = "cell1"  # pandas' fixed HDF format cannot even store this; other readers can
    with pytest.warns(CountMatrixWarning, match=r"x.h5: 1 duplicate cell ids \(e.g. cell1\)"):
        matrix = finish_matrix(data["X"], GENES, cells, "x.h5")
    assert matrix.cells[2] == "cell1-1"


# ---------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------


def _label_case(name, path, data):
    """Write the malformed label file ``name`` to ``path``; return the expected error."""
    if name == "binary":
        shutil.copy(data["counts"], path)
        return r"not UTF-8"
    pairs = [(c, f"type{t}") for c, t in zip(CELLS, data["types"], strict=True)]
    cases = {
        "empty": ("", r"empty"),
        "blank lines only": ("\n\n  \n", r"label file is empty"),
        "header only": ("cell_id\tcell_type\n", r"header but no labels"),
        "commas": ("".join(f"{c},{t}\n" for c, t in pairs),
                   r"line 1 is not 'cell_id<TAB>cell_type'.*commas"),
        "spaces": ("".join(f"{c} {t}\n" for c, t in pairs), r"line 1 .*spaces"),
        "duplicate ids": ("".join(f"{c}\t{t}\n" for c, t in pairs + [("cell3", "type0")]),
                          r"1 duplicate cell ids \(e.g. cell3\)"),
        "empty type": ("cell0\tB\ncell1\t\ncell2\tT\n",
                       r"line 2 has an empty cell id or cell type"),
    }
    text, pattern = cases[name]
    with open(path, "w") as handle:
        handle.write(text)
    return pattern


LABEL_CASES = ["empty", "blank lines only", "header only", "commas", "spaces", "duplicate ids",
               "empty type", "binary"]


@pytest.mark.parametrize("case", LABEL_CASES)
def test_bad_label_file(case, data, tmp_path, capsys):
    path = os.fspath(tmp_path / "labels.tsv")
    pattern = _label_case(case, path, data)
    py_error(lambda: da.read_labels(path), path, pattern, InputError)
    line = cli_error(capsys, *train_argv(data["counts"], path, tmp_path / "model"))
    assert path in line and re.search(pattern, line), line
    assert not (tmp_path / "model").exists()
    # evaluate reads label files too
    predictions = tmp_path / "pred.tsv"
    pd.DataFrame({"cell_id": CELLS, "cell_type": "type0"}).to_csv(predictions, sep="\t",
                                                                  index=False)
    line = cli_error(capsys, "evaluate", "--predictions", predictions, "--labels", path)
    assert path in line and re.search(pattern, line), line


def test_labels_matching_no_cell(data, tmp_path, capsys):
    path = write_labels(tmp_path / "labels.tsv", {f"x{c}": "B" for c in CELLS})
    py_error(lambda: da.join_labels(da.read_counts(data["counts"]), da.read_labels(path),
                                    label_source=path),
             data["counts"], r"no cell id matches a label id in .*labels.tsv.*xcell0")
    line = cli_error(capsys, *train_argv(data["counts"], path, tmp_path / "model"))
    assert data["counts"] in line and "no cell id matches" in line
    assert not (tmp_path / "model").exists()


def test_labels_cover_some_cells(data, tmp_path, capsys):
    """Unlabelled cells are left out; the warning says how many."""
    labelled = {c: f"type{t}" for c, t in list(zip(CELLS, data["types"], strict=True))[:90]}
    labelled["ghost"] = "type1"  # a label with no cell
    path = write_labels(tmp_path / "labels.tsv", labelled)
    with pytest.warns(CountMatrixWarning,
                      match=r"90 labelled cells; 30 cells without a label .* 1 labels without"):
        joined = da.join_labels(da.read_counts(data["counts"]), da.read_labels(path))
    assert joined.n_unlabelled_cells == 30 and len(joined.labels) == 90
    capsys.readouterr()
    assert cli.main(train_argv(data["counts"], path, tmp_path / "model")) == 0
    err = capsys.readouterr().err
    assert re.search(r"warning: .*labels.tsv: 90 labelled cells; 30 cells without a label", err)
    assert "deepchem-actinn: 90 cells" in err


def test_transposed_training_matrix(data, tmp_path, capsys):
    """A cells x genes matrix given where genes x cells is expected."""
    path = os.fspath(tmp_path / "transposed.h5")
    _write_frame(path, pd.DataFrame(data["X"], index=CELLS, columns=GENES))
    py_error(lambda: da.ScRNALoader().create_dataset(path, data["labels"]), path,
             r"match this matrix's gene names: the matrix looks transposed")
    line = cli_error(capsys, *train_argv(path, data["labels"], tmp_path / "model"))
    assert path in line and "looks transposed" in line


def test_single_cell_type(data, tmp_path, capsys):
    path = write_labels(tmp_path / "one.tsv", {c: "B cell" for c in CELLS})
    line = cli_error(capsys, *train_argv(data["counts"], path, tmp_path / "model"))
    assert path in line and "single cell type ('B cell')" in line
    py_error(lambda: da.train_reference(data["counts"], path, epochs=1), path,
             r"single cell type \('B cell'\)")


def test_stratified_split_with_a_one_cell_type():
    y = np.array([0] * 10 + [1] * 10 + [2]).reshape(-1, 1)
    dataset = CellDataset(np.ones((21, 2)), y, classes=["B", "T", "NK"])
    with pytest.raises(InputError, match=r"cell type 'NK' has a single cell"):
        StratifiedSplitter().split(dataset, 0.8, 0.1, 0.1, seed=0)
    # A train-only split does not need two cells per type.
    train, valid, test = StratifiedSplitter().split(dataset, 1.0, 0.0, 0.0)
    assert len(train) == 21 and len(valid) == len(test) == 0


# ---------------------------------------------------------------------------
# Queries that do not fit the model
# ---------------------------------------------------------------------------


def test_transposed_query(data, tmp_path, capsys):
    path = os.fspath(tmp_path / "transposed.h5")
    _write_frame(path, pd.DataFrame(data["X"], index=CELLS, columns=GENES))
    py_error(lambda: da.annotate(path, data["model"]), path,
             r"too few genes shared.*matrix looks transposed", GeneOverlapError)
    line = cli_error(capsys, *predict_argv(data["model"], path, tmp_path / "pred.tsv"))
    assert path in line and "looks transposed" in line
    assert_nothing_written(tmp_path, "pred.tsv")


@pytest.mark.parametrize("n_shared, hint", [(0, ""), (8, ""), (0, "Ensembl ids")])
def test_too_little_gene_overlap(n_shared, hint, data, tmp_path, capsys):
    other = ([f"ENSMUSG{i:011d}" for i in range(N_GENES)] if hint
             else [f"Other{i}" for i in range(N_GENES)])
    genes = GENES[:n_shared] + other[n_shared:]
    path = write_counts(tmp_path / "query.h5", data["X"], genes, CELLS)
    message = py_error(lambda: da.annotate(path, data["model"]), path,
                       r"too few genes shared with the model: \d+ of \d+ model genes",
                       GeneOverlapError)
    assert hint in message
    line = cli_error(capsys, *predict_argv(data["model"], path, tmp_path / "pred.tsv"))
    assert path in line and "too few genes shared" in line
    assert_nothing_written(tmp_path, "pred.tsv")


def test_partial_gene_overlap_warns(data, tmp_path):
    genes = GENES[:60] + [f"Other{i}" for i in range(60, N_GENES)]
    path = write_counts(tmp_path / "query.h5", data["X"], genes, CELLS)
    with pytest.warns(PreprocessingWarning, match=r"model genes found in the query.*--query"):
        result = da.annotate(path, data["model"])
    assert len(result) == N_CELLS


# ---------------------------------------------------------------------------
# Model directories
# ---------------------------------------------------------------------------


def _edit_json(folder, change, resign=False):
    path = os.path.join(folder, MODEL_FILE)
    with open(path) as handle:
        meta = json.load(handle)
    change(meta)
    if resign:  # as if edited by someone who also recomputed the digest
        meta["metadata_sha256"] = _metadata_digest(meta)
    with open(path, "w") as handle:
        json.dump(meta, handle)


def _flip_bytes(folder):
    path = os.path.join(folder, WEIGHTS_FILE)
    with open(path, "r+b") as handle:
        handle.seek(os.path.getsize(path) // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))


def _truncate_weights_and_resign(folder):
    path = os.path.join(folder, WEIGHTS_FILE)
    with open(path, "r+b") as handle:
        handle.truncate(os.path.getsize(path) // 2)
    _edit_json(folder, lambda m: m.__setitem__("weights_sha256", _sha256(path)), resign=True)


def _drop_class(meta):
    meta["classes"].pop()


def _drop_class_and_count(meta):
    meta["classes"].pop()
    meta["n_classes"] -= 1


MODEL_CASES = {
    "no json": (lambda f: os.remove(os.path.join(f, MODEL_FILE)), r"no actinn_model.json"),
    "no weights": (lambda f: os.remove(os.path.join(f, WEIGHTS_FILE)), r"missing weights.pt"),
    "empty folder": (lambda f: [os.remove(os.path.join(f, n)) for n in os.listdir(f)],
                     r"not a deepchem_actinn model directory"),
    "flipped byte": (_flip_bytes, r"weights.pt does not match the checksum"),
    "truncated weights, checksum updated": (_truncate_weights_and_resign,
                                            r"cannot read weights.pt \(damaged"),
    "invalid json": (lambda f: open(os.path.join(f, MODEL_FILE), "a").write("}{"),
                     r"not valid JSON"),
    "json not a model": (lambda f: open(os.path.join(f, MODEL_FILE), "w").write("[1, 2]"),
                         r"not a deepchem_actinn model description"),
    "edited classes": (lambda f: _edit_json(f, _drop_class), r"changed after the model was saved"),
    "edited genes": (lambda f: _edit_json(f, lambda m: m["featurizer"]["genes"].reverse()),
                     r"changed after the model was saved"),
    "class list length, digest updated": (
        lambda f: _edit_json(f, _drop_class, resign=True), r"class list does not match n_classes"),
    "class list and n_classes, digest updated": (
        lambda f: _edit_json(f, _drop_class_and_count, resign=True),
        r"weights.pt does not fit the network"),
    "gene list length, digest updated": (
        lambda f: _edit_json(f, lambda m: m["featurizer"]["genes"].pop(), resign=True),
        r"gene list does not match n_genes"),
    "gene renamed, digest updated": (
        lambda f: _edit_json(f, lambda m: m["featurizer"]["genes"].__setitem__(0, "NEW"),
                             resign=True),
        r"featurizer genes are not a subset"),
    "hidden sizes, digest updated": (
        lambda f: _edit_json(f, lambda m: m["hyperparameters"].__setitem__("hidden_sizes",
                                                                          [10, 5]), resign=True),
        r"does not fit the network"),
    "learning rate not a number, digest updated": (
        lambda f: _edit_json(f, lambda m: m["hyperparameters"].__setitem__("learning_rate",
                                                                          "fast"), resign=True),
        r"hyperparameters.learning_rate: must be a finite number.*'fast'"),
    "format version 99": (lambda f: _edit_json(f, lambda m: m.__setitem__("format_version", 99)),
                          r"format version 99 is not supported.*upgrade"),
    "format version missing": (lambda f: _edit_json(f, lambda m: m.pop("format_version")),
                               r"lacks its format_version"),
}


@pytest.mark.parametrize("case", list(MODEL_CASES))
def test_damaged_model_directory(case, data, tmp_path, capsys):
    damage, pattern = MODEL_CASES[case]
    folder = os.fspath(tmp_path / "model")
    shutil.copytree(data["model"], folder)
    damage(folder)
    py_error(lambda: da.ACTINNModel.load(folder), folder, pattern, ModelFileError)
    out = tmp_path / "out"
    out.mkdir()
    line = cli_error(capsys, *predict_argv(folder, data["counts"], out / "pred.tsv"))
    assert folder in line and re.search(pattern, line), line
    assert_nothing_written(out, "pred.tsv")


def test_missing_model_directory(data, tmp_path, capsys):
    folder = os.fspath(tmp_path / "nowhere")
    py_error(lambda: da.ACTINNModel.load(folder), folder, r"model directory not found",
             ModelFileError)
    line = cli_error(capsys, *predict_argv(folder, data["counts"], tmp_path / "pred.tsv"))
    assert folder in line and "not found" in line
    assert not (tmp_path / "pred.tsv").exists()


def test_intact_model_still_loads(data):
    """The digest check accepts an untouched model (and a reformatted JSON file)."""
    model = da.ACTINNModel.load(data["model"])
    assert len(model.classes) == 3
    path = os.path.join(data["model"], MODEL_FILE)
    with open(path) as handle:
        meta = json.load(handle)
    assert meta["metadata_sha256"] == _metadata_digest(meta)


# ---------------------------------------------------------------------------
# Output paths
# ---------------------------------------------------------------------------


def test_output_in_missing_folder(data, tmp_path, capsys):
    target = tmp_path / "no" / "such" / "pred.tsv"
    line = cli_error(capsys, *predict_argv(data["model"], data["counts"], target))
    assert str(target) in line and "does not exist" in line
    assert not (tmp_path / "no").exists()


def test_output_is_a_directory(data, tmp_path, capsys):
    line = cli_error(capsys, *predict_argv(data["model"], data["counts"], tmp_path))
    assert str(tmp_path) in line and "is a directory" in line
    assert os.listdir(tmp_path) == []


def test_output_is_the_test_set(data, tmp_path, capsys):
    query = shutil.copy(data["counts"], tmp_path / "query.h5")
    before = _sha256(query)
    line = cli_error(capsys, *predict_argv(data["model"], query, query))
    assert str(query) in line and "same file as" in line
    line = cli_error(capsys, *predict_argv(data["model"], query, tmp_path / "p.tsv",
                                           "--probabilities", query))
    assert "same file as" in line
    assert _sha256(query) == before
    assert sorted(os.listdir(tmp_path)) == ["query.h5"]


def test_output_is_a_model_file(data, tmp_path, capsys):
    weights = os.path.join(data["model"], WEIGHTS_FILE)
    before = _sha256(weights)
    line = cli_error(capsys, *predict_argv(data["model"], data["counts"], weights))
    assert weights in line and "same file as" in line
    assert _sha256(weights) == before


def test_probabilities_same_as_output(data, tmp_path, capsys):
    out = tmp_path / "pred.tsv"
    line = cli_error(capsys, *predict_argv(data["model"], data["counts"], out,
                                           "--probabilities", out))
    assert str(out) in line and "same file as" in line
    assert os.listdir(tmp_path) == []


def test_predictions_file_in_a_read_only_place(data, tmp_path, capsys):
    """A path under an existing *file* (root can write anywhere else)."""
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    line = cli_error(capsys, *predict_argv(data["model"], data["counts"], blocker / "p.tsv"))
    assert "does not exist" in line or "not a directory" in line.lower()


def test_model_dir_conflicts(data, tmp_path, capsys):
    counts = shutil.copy(data["counts"], tmp_path / "counts.h5")
    line = cli_error(capsys, *train_argv(counts, data["labels"], counts))
    assert "model directory is also an input file" in line
    # a folder holding other files (the user's data, say) is never replaced
    line = cli_error(capsys, *train_argv(counts, data["labels"], tmp_path))
    assert str(tmp_path) in line and "not empty and holds no model" in line
    line = cli_error(capsys, *train_argv(counts, data["labels"], tmp_path / "counts.h5" / "m"))
    assert "is a file" in line
    assert sorted(os.listdir(tmp_path)) == ["counts.h5"]


def test_evaluate_bad_predictions(data, tmp_path, capsys):
    path = tmp_path / "pred.tsv"
    path.write_text("a,b\n1,2\n")
    line = cli_error(capsys, "evaluate", "--predictions", path, "--labels", data["labels"])
    assert str(path) in line and "cell_id and cell_type" in line
    line = cli_error(capsys, "evaluate", "--predictions", tmp_path / "none.tsv",
                     "--labels", data["labels"])
    assert "not found" in line


# ---------------------------------------------------------------------------
# The real command, in a subprocess
# ---------------------------------------------------------------------------


def _run_cli(*argv):
    return subprocess.run([sys.executable, "-m", "deepchem_actinn.cli", *map(os.fspath, argv)],
                          capture_output=True, text=True, timeout=300)


def test_subprocess_errors_are_one_line(data, tmp_path):
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    result = _run_cli(*train_argv(empty, data["labels"], tmp_path / "model"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"deepchem-actinn: error: {empty}: file is empty"
    assert result.stdout == ""
    assert not (tmp_path / "model").exists()

    folder = tmp_path / "model_copy"
    shutil.copytree(data["model"], folder)
    _flip_bytes(folder)
    result = _run_cli(*predict_argv(folder, data["counts"], tmp_path / "pred.tsv"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith(f"deepchem-actinn: error: {folder}: ")
    assert "checksum" in lines[0]
    assert sorted(os.listdir(tmp_path)) == ["empty.h5", "model_copy"]
