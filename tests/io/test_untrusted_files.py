"""Untrusted counts files: no code runs, every reading path validates, no bomb goes off.

Counts files come from strangers. A pandas HDF file can carry pickles that
pandas/PyTables would run; a 10x or ``.h5ad`` file can carry a broken sparse
structure (out-of-range or negative indices, a decreasing ``indptr``); any
format can claim dimensions it does not hold. Each case here must end in
one line naming the file, exit status 2 from the command line, no output
left behind, and (for pickles) no payload run: the payload below creates a
marker file when unpickled, and the marker must never appear.
"""

import builtins
import os
import subprocess
import sys
import warnings

import anndata
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import tables
from conftest import REFERENCE_CELLS, REFERENCE_GENES, write_counts

import deepchem_actinn as da
from deepchem_actinn import cli
from deepchem_actinn.errors import InputError
from deepchem_actinn.io import ChunkedCounts, check_counts, read_counts, read_pandas_hdf
from deepchem_actinn.io.pandas_hdf import literal_pickle
from deepchem_actinn.io.writers import write_10x_h5
from deepchem_actinn.sample_data import sample_files, tutorial_files

N_CELLS, N_GENES = REFERENCE_CELLS, REFERENCE_GENES
ONE_LINE = "deepchem-actinn: error: "


class Payload:
    """Unpickling calls ``open(marker, "w")``: the marker file appears if any code ran."""

    def __init__(self, marker):
        self.marker = os.fspath(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


@pytest.fixture(scope="module")
def good(reference):
    """Synthetic counts (also as the array ``X``, with their ``genes`` and ``cells``), labels and
    a model trained on them: the session's reference, only ever read here."""
    return reference


def run_cli(*argv):
    """The real command in a fresh process: (exit status, stderr lines)."""
    done = subprocess.run([sys.executable, "-m", "deepchem_actinn.cli", *map(os.fspath, argv)],
                          capture_output=True, text=True, timeout=300)
    return done.returncode, done.stderr.strip().splitlines()


def cli_line(capsys, *argv):
    """The CLI in-process: assert exit 2 and one error line (no traceback); return it."""
    capsys.readouterr()
    code = cli.main([os.fspath(a) for a in argv])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith(ONE_LINE)]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, (code, err)
    return errors[0]


def one_line_error(call, path, pattern):
    with pytest.raises(InputError, match=pattern) as info:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            call()
    message = str(info.value)
    assert "\n" not in message and message.startswith(os.fspath(path)), message
    return message


# ---------------------------------------------------------------------------
# 1. pandas HDF files never unpickle
# ---------------------------------------------------------------------------


def _frame(good):
    return pd.DataFrame(good["X"].T, index=good["genes"], columns=good["cells"])


def _malicious(case, path, marker, good):
    """Write a pandas HDF file that runs Payload(marker) when pandas reads it."""
    frame = _frame(good)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas warns about object columns
        if case == "object values":
            values = frame.astype(object)
            values.iloc[0, 0] = Payload(marker)
            values.to_hdf(path, key="dge")
        elif case == "object cell ids":
            frame.columns = [Payload(marker)] + good["cells"][1:]
            frame.to_hdf(path, key="dge")
        else:
            table = case.startswith("table")
            frame.to_hdf(path, key="dge", format="table" if table else "fixed")
            with tables.open_file(path, "a") as handle:  # PyTables pickles the object
                node = {"attribute on dge": lambda: handle.root.dge,
                        "attribute on root": lambda: handle.root,
                        "table attribute": lambda: handle.root.dge.table}[case]()
                node._v_attrs.evil = Payload(marker)
    return os.fspath(path)


MALICIOUS = ["object values", "object cell ids", "attribute on dge", "attribute on root",
             "table attribute"]
REFUSED = r"pickle.*never loaded.*to_hdf\(path, key='dge'"


@pytest.mark.parametrize("case", MALICIOUS)
def test_malicious_pandas_hdf_runs_no_code(case, good, tmp_path):
    marker = tmp_path / "marker"
    path = _malicious(case, tmp_path / "evil.h5", marker, good)
    # The file is armed: pandas itself runs the payload.
    try:
        pd.read_hdf(path)
    except Exception:
        pass
    assert marker.exists()
    marker.unlink()
    one_line_error(lambda: read_counts(path), path, REFUSED)
    one_line_error(lambda: da.annotate(path, good["model"]), path, REFUSED)
    one_line_error(lambda: da.train_reference(path, good["labels"], epochs=1), path, REFUSED)
    assert not marker.exists()


@pytest.mark.parametrize("case", MALICIOUS)
def test_malicious_pandas_hdf_through_every_command(case, good, tmp_path, capsys):
    marker = tmp_path / "marker"
    path = _malicious(case, tmp_path / "evil.h5", marker, good)
    out = tmp_path / "out"
    out.mkdir()
    commands = [
        ["train", "--train-set", path, "--train-labels", good["labels"], "--model-dir",
         out / "m", "--epochs", "1", "--quiet"],
        ["train", "--train-set", good["counts"], "--train-labels", good["labels"],
         "--model-dir", out / "m", "--query", path, "--epochs", "1", "--quiet"],
        ["predict", "--model-dir", good["model"], "--test-set", path, "--output",
         out / "pred.tsv"],
        ["convert", "--input", path, "--output", out / "copy.h5ad"],
    ]
    for argv in commands:
        line = cli_line(capsys, *argv)
        assert f"{ONE_LINE}{path}: " in line and "pickle" in line, line
    assert not marker.exists()
    assert os.listdir(out) == []


@pytest.mark.parametrize("command", ["train", "train --query", "predict", "convert"])
def test_malicious_pandas_hdf_in_a_fresh_process(command, good, tmp_path):
    case = MALICIOUS[["train", "train --query", "predict", "convert"].index(command)]
    marker = tmp_path / "marker"
    path = _malicious(case, tmp_path / "evil.h5", marker, good)
    out = tmp_path / "out"
    out.mkdir()
    argv = {
        "train": ["train", "--train-set", path, "--train-labels", good["labels"],
                  "--model-dir", out / "m", "--quiet"],
        "train --query": ["train", "--train-set", good["counts"], "--train-labels",
                          good["labels"], "--model-dir", out / "m", "--query", path, "--quiet"],
        "predict": ["predict", "--model-dir", good["model"], "--test-set", path, "--output",
                    out / "pred.tsv"],
        "convert": ["convert", "--input", path, "--output", out / "copy.h5"],
    }[command]
    code, lines = run_cli(*argv)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"{ONE_LINE}{path}: ") and "pickle" in lines[0], lines
    assert not marker.exists() and os.listdir(out) == []


def test_literal_pickles_decode_and_code_pickles_are_refused():
    # PyTables' own protocol-0 pickles of pandas' metadata are plain data...
    assert literal_pickle(b"(lp0\n(I1\n(lp1\nVc1\np2\naI2\natp3\na.") == [(1, ["c1", 2])]
    assert literal_pickle(b"(I0\ntp0\n.") == (0,)
    # ...anything that imports or calls is not evaluated.
    import pickle

    from deepchem_actinn.io.pandas_hdf import _NotLiteral
    with pytest.raises(_NotLiteral):
        literal_pickle(pickle.dumps(Payload("never"), 0))


# -- the layouts pandas writes still read as pandas reads them -------------------------


def _same_as_pandas(path, key=None):
    expected = pd.read_hdf(path, key=key)  # trusted files written here
    got = read_pandas_hdf(path, key)
    assert got.shape == expected.shape
    assert got.to_numpy().dtype == expected.to_numpy().dtype
    np.testing.assert_array_equal(got.to_numpy(), expected.to_numpy())
    assert [str(v) for v in got.index] == [str(v) for v in expected.index]
    assert [str(v) for v in got.columns] == [str(v) for v in expected.columns]


def test_bundled_pandas_files_read_as_pandas_reads_them():
    for files in (tutorial_files(), sample_files()):
        for path in files:
            if str(path).endswith(".h5"):
                _same_as_pandas(path)


@pytest.mark.parametrize("layout", [
    "fixed str ids", "fixed int ids", "fixed mixed dtypes", "fixed float32",
    "fixed axis names ending with a dot", "table",
    "table mixed dtypes", "table int ids", "table data column", "table compressed"])
def test_pandas_layouts_read_without_pandas(layout, tmp_path):
    rng = np.random.default_rng(0)
    values = rng.poisson(2.0, size=(7, 5))
    frame = pd.DataFrame(values, index=[f"Gene{i}" for i in range(7)],
                         columns=[f"c{i}" for i in range(5)])
    if "int ids" in layout:
        frame.columns = [100 + i for i in range(5)]
    if "mixed" in layout:
        frame = frame.astype({"c1": np.float64, "c3": np.int32})
    if "float32" in layout:
        frame = frame.astype(np.float32)
    if "axis names" in layout:  # stored as plain strings that only look like pickles
        frame.index.name, frame.columns.name = "cells.", "R."
    options = {"format": "table"} if layout.startswith("table") else {}
    if "data column" in layout:
        options["data_columns"] = ["c2"]
    if "compressed" in layout:
        options.update(complevel=5, complib="zlib")
    path = tmp_path / "counts.h5"
    frame.to_hdf(path, key="dge", **options)
    _same_as_pandas(path)
    matrix = read_counts(path)
    np.testing.assert_array_equal(matrix.X, values.T.astype(np.float32))  # cells x genes
    assert matrix.cells.tolist() == [str(c) for c in frame.columns]


def test_compression_h5py_cannot_read_is_named(good, tmp_path):
    path = tmp_path / "blosc.h5"
    _frame(good).to_hdf(path, key="dge", complevel=5, complib="blosc")
    one_line_error(lambda: read_counts(path), path, r"'blosc' filter.*complib='zlib'")


def test_documented_resave_gives_a_file_that_reads(good, tmp_path):
    """The re-save line the error gives turns object labels into fixed-width strings."""
    frame = _frame(good)
    frame.columns = pd.Index(list(range(N_CELLS)), dtype=object)  # object-typed ids
    path = tmp_path / "resaved.h5"
    pd.DataFrame(frame.to_numpy(dtype="float64"), index=frame.index.astype(str),
                 columns=frame.columns.astype(str)).to_hdf(path, key="dge", mode="w")
    with h5py.File(path) as handle:
        assert handle["dge/axis0"].dtype.kind == "S"
    assert read_counts(path).cells.tolist() == [str(i) for i in range(N_CELLS)]


# ---------------------------------------------------------------------------
# 2. Every reading path checks the sparse structure
# ---------------------------------------------------------------------------


def _tamper(case, path):
    """Break the 10x file at ``path`` (written whole and good) as ``case`` says."""
    with h5py.File(path, "r+") as handle:
        group = handle["matrix"]
        indices = group["indices"][()]
        indptr = group["indptr"][()]
        n_genes = int(group["shape"][0])
        if case in ("index = n_genes", "index 10^9", "negative index"):
            indices[len(indices) // 2] = {"index = n_genes": n_genes, "index 10^9": 10 ** 9,
                                          "negative index": -3}[case]
        elif case == "decreasing indptr":
            indptr[5] = indptr[7] + 1
        elif case == "indptr not from 0":
            indptr[0] = 1
        elif case == "fewer indices than values":
            indices = indices[:-2]
        elif case == "indptr of 10^12 entries":
            group["shape"][1] = 10 ** 9  # (int32) a matching claim of cells
            del group["indptr"]
            group.create_dataset("indptr", shape=(10 ** 12,), dtype=np.int64, chunks=(1024,))
            return
        elif case == "shape of three numbers":
            del group["shape"]
            group["shape"] = np.array([n_genes, N_CELLS, 1], np.int32)
            return
        del group["indices"], group["indptr"]
        group["indices"] = indices
        group["indptr"] = indptr


BROKEN = ["index = n_genes", "index 10^9", "negative index", "decreasing indptr",
          "indptr not from 0", "fewer indices than values", "indptr of 10^12 entries",
          "shape of three numbers"]
DAMAGED = r"damaged sparse matrix|declares \d+ values|not two numbers"


def _broken_10x(case, good, tmp_path):
    path = os.fspath(tmp_path / "broken.h5")
    write_10x_h5(good["X"], good["genes"], good["cells"], path)
    _tamper(case, path)
    return path


@pytest.mark.parametrize("case", BROKEN)
def test_broken_10x_is_refused_by_every_reader(case, good, tmp_path, capsys):
    path = _broken_10x(case, good, tmp_path)
    one_line_error(lambda: read_counts(path), path, DAMAGED)
    # The chunked reader of --chunk-cells / --out-of-core, and a rank of a distributed run.
    one_line_error(lambda: [X for _, X, _ in ChunkedCounts(path).chunks(16)], path, DAMAGED)
    one_line_error(lambda: [X for _, X, _ in ChunkedCounts(path, part=(1, 2)).chunks(7)],
                   path, DAMAGED)
    out = tmp_path / "out"
    out.mkdir()
    for argv in (["predict", "--model-dir", good["model"], "--test-set", path, "--output",
                  out / "pred.tsv", "--chunk-cells", "16"],
                 ["predict", "--model-dir", good["model"], "--test-set", path, "--output",
                  out / "pred.tsv"],
                 ["train", "--train-set", path, "--train-labels", good["labels"], "--model-dir",
                  out / "m", "--out-of-core", out / "shards", "--quiet"]):
        line = cli_line(capsys, *argv)
        assert f"{ONE_LINE}{path}: " in line, line
    assert sorted(os.listdir(out)) in ([], ["shards"])
    assert not (out / "shards").exists() or os.listdir(out / "shards") == []


def test_huge_index_in_a_fresh_process_is_one_line_not_a_crash(good, tmp_path):
    """The case that used to segfault ``predict --chunk-cells``."""
    path = _broken_10x("index 10^9", good, tmp_path)
    code, lines = run_cli("predict", "--model-dir", good["model"], "--test-set", path,
                          "--output", tmp_path / "pred.tsv", "--chunk-cells", "16")
    assert code == 2 and len(lines) == 1 and "index 1000000000 is out of range" in lines[0]
    assert not (tmp_path / "pred.tsv").exists()


@pytest.mark.parametrize("layout", ["csr", "csc"])
@pytest.mark.parametrize("case", ["index out of range", "decreasing indptr"])
def test_broken_h5ad_is_refused(layout, case, good, tmp_path, capsys):
    path = os.fspath(tmp_path / "broken.h5ad")
    X = sp.csr_matrix(good["X"].astype(np.float32))
    anndata.AnnData(X=X if layout == "csr" else sp.csc_matrix(X),
                    obs=pd.DataFrame(index=good["cells"]),
                    var=pd.DataFrame(index=good["genes"])).write_h5ad(path)
    with h5py.File(path, "r+") as handle:
        name = "indices" if case == "index out of range" else "indptr"
        values = handle["X"][name][()]
        if name == "indices":
            values[3] = N_GENES if layout == "csr" else N_CELLS
        else:
            values[4] = values[6] + 1
        handle["X"][name][...] = values
    one_line_error(lambda: read_counts(path), path, DAMAGED)
    if layout == "csr":  # the streamed readers take CSR only
        one_line_error(lambda: [X for _, X, _ in ChunkedCounts(path).chunks(16)], path,
                       DAMAGED)
        line = cli_line(capsys, "predict", "--model-dir", good["model"], "--test-set", path,
                        "--output", tmp_path / "pred.tsv", "--chunk-cells", "16")
        assert f"{ONE_LINE}{path}: damaged sparse matrix" in line
    assert not (tmp_path / "pred.tsv").exists()


def test_good_files_still_read_the_same_on_every_path(good, tmp_path):
    path = os.fspath(tmp_path / "good.h5")
    write_10x_h5(good["X"], good["genes"], good["cells"], path)
    whole = read_counts(path)
    parts = [X for _, X, _ in ChunkedCounts(path).chunks(16)]
    assert (sp.vstack(parts) != sp.csr_matrix(whole.X)).nnz == 0
    np.testing.assert_array_equal(whole.X.toarray(), good["X"])


# ---------------------------------------------------------------------------
# 3. Resource bombs: claims checked before anything is allocated
# ---------------------------------------------------------------------------


def _mtx_folder(folder, size_line, body="1 1 1\n", gz=False):
    import gzip

    folder.mkdir()
    opener = gzip.open if gz else open
    with opener(folder / ("matrix.mtx.gz" if gz else "matrix.mtx"), "wt") as handle:
        handle.write(f"%%MatrixMarket matrix coordinate integer general\n%\n{size_line}\n{body}")
    (folder / "features.tsv").write_text("".join(f"ENSG{i}\tGene{i}\tGene Expression\n"
                                                 for i in range(4)))
    (folder / "barcodes.tsv").write_text("".join(f"cell{i}\n" for i in range(3)))
    return os.fspath(folder)


def test_matrix_market_claiming_10_12_entries_in_a_fresh_process(tmp_path):
    folder = _mtx_folder(tmp_path / "mtx", "4 3 1000000000000")
    code, lines = run_cli("convert", "--input", folder, "--output", tmp_path / "out.h5")
    assert code == 2, (code, lines)  # not -6 (SIGABRT)
    assert len(lines) == 1 and "claims 1000000000000 entries" in lines[0], lines
    assert not (tmp_path / "out.h5").exists()


@pytest.mark.parametrize("size_line, gz, pattern", [
    ("4 3 1000000000000", True, "claims 1000000000000 entries"),
    ("4 3 13", False, "claims 13 entries in a 4 x 3 matrix"),
    ("4 3 9", False, "Truncated|cannot read"),
    ("4 3", False, "size line"),
    ("400 300 2", False, "matrix is 400 x 300 but features.tsv lists 4 genes"),
])
def test_matrix_market_headers_are_checked(size_line, gz, pattern, tmp_path):
    folder = _mtx_folder(tmp_path / "mtx", size_line, gz=gz)
    one_line_error(lambda: read_counts(folder), folder, pattern)  # the folder or its file


def test_wide_text_header_is_refused_before_parsing(tmp_path, capsys, monkeypatch):
    from deepchem_actinn.io import checks as validation

    path = tmp_path / "wide.csv"
    columns = validation.MAX_TEXT_COLUMNS + 1
    with open(path, "w") as handle:
        handle.write("gene," + ",".join("c" for _ in range(columns)) + "\nG1,"
                     + ",".join("1" for _ in range(columns)) + "\n")
    one_line_error(lambda: read_counts(path), path, f"header line has {columns + 1} columns")
    line = cli_line(capsys, "convert", "--input", path, "--output", tmp_path / "x.h5")
    assert "header line has" in line and not (tmp_path / "x.h5").exists()
    # A first line longer than the bound is refused without reading it whole.
    monkeypatch.setattr(validation, "MAX_HEADER_BYTES", 1 << 16)
    long = tmp_path / "long.tsv"
    long.write_text("gene\t" + "x" * (1 << 17) + "\nG1\t1\n")
    one_line_error(lambda: read_counts(long), long, "first line is longer than")


@pytest.mark.parametrize("fmt", ["pandas-hdf", "10x", "h5ad"])
def test_datasets_declaring_more_than_the_file_holds(fmt, good, tmp_path):
    path = os.fspath(tmp_path / "bomb.h5")
    if fmt == "pandas-hdf":
        write_counts(path, good["X"], good["genes"], good["cells"])
        with h5py.File(path, "r+") as handle:
            # 10^5 genes x 10^5 cells claimed; nothing stored.
            for name, size in (("axis0", 10 ** 5), ("axis1", 10 ** 5), ("block0_items", 10 ** 5)):
                attrs = dict(handle["dge"][name].attrs)
                del handle["dge"][name]
                handle["dge"].create_dataset(name, shape=(size,), dtype="S8", chunks=(1024,))
                handle["dge"][name].attrs.update(attrs)
            attrs = dict(handle["dge/block0_values"].attrs)
            del handle["dge/block0_values"]
            handle["dge"].create_dataset("block0_values", shape=(10 ** 5, 10 ** 5),
                                         dtype=np.float64, chunks=(64, 64))
            handle["dge/block0_values"].attrs.update(attrs)
    elif fmt == "10x":
        write_10x_h5(good["X"], good["genes"], good["cells"], path)
        with h5py.File(path, "r+") as handle:
            del handle["matrix/data"]
            handle["matrix"].create_dataset("data", shape=(10 ** 11,), dtype=np.int32,
                                            chunks=(4096,))
    else:
        path = os.fspath(tmp_path / "bomb.h5ad")
        anndata.AnnData(X=sp.csr_matrix(good["X"].astype(np.float32)),
                        obs=pd.DataFrame(index=good["cells"]),
                        var=pd.DataFrame(index=good["genes"])).write_h5ad(path)
        with h5py.File(path, "r+") as handle:
            del handle["X/data"]
            handle["X"].create_dataset("data", shape=(10 ** 11,), dtype=np.float32,
                                       chunks=(4096,))
    one_line_error(lambda: read_counts(path), path, r"declares \d+ values .* stores only")


def test_arrays_larger_than_memory_are_refused_before_reading(good, tmp_path, monkeypatch):
    from deepchem_actinn.io import checks as validation

    path = os.fspath(tmp_path / "good.h5")
    write_10x_h5(good["X"], good["genes"], good["cells"], path)
    monkeypatch.setattr(validation, "memory_limit", lambda: 100)
    one_line_error(lambda: read_counts(path), path, r"would need .* more than the .* memory")
    one_line_error(lambda: ChunkedCounts(path), path, r"would need .* more than the .* memory")


# ---------------------------------------------------------------------------
# 4. Counts beyond float32
# ---------------------------------------------------------------------------


def test_counts_beyond_float32_are_refused(good, tmp_path, capsys):
    X = good["X"].astype(np.float64)
    X[3, 4] = 1e39
    with pytest.raises(InputError, match="1 values beyond the float32 range"):
        check_counts(sp.csr_matrix(X), "x.h5")
    path = write_counts(tmp_path / "huge.h5", X, good["genes"], good["cells"])
    line = cli_line(capsys, "predict", "--model-dir", good["model"], "--test-set", path,
                    "--output", tmp_path / "pred.tsv")
    assert f"{path}: matrix holds 1 values beyond the float32 range (e.g. 1e+39)" in line
    tenx = os.fspath(tmp_path / "huge_10x.h5")
    write_10x_h5(good["X"], good["genes"], good["cells"], tenx)
    with h5py.File(tenx, "r+") as handle:  # the writer stores integers: put a float64 in
        data = handle["matrix/data"][()].astype(np.float64)
        data[-1] = 1e39
        del handle["matrix/data"]
        handle["matrix/data"] = data
    line = cli_line(capsys, "predict", "--model-dir", good["model"], "--test-set", tenx,
                    "--output", tmp_path / "pred.tsv", "--chunk-cells", "16")
    assert "beyond the float32 range" in line
    assert not (tmp_path / "pred.tsv").exists()
    np.testing.assert_array_equal(check_counts(np.array([[3.0e38, 1.0]]), "x.h5"),
                                  np.array([[3.0e38, 1.0]], np.float32))


def test_h5ad_with_text_values_is_one_line(good, tmp_path):
    """An .h5ad whose X holds strings: refused by name, not a conversion traceback."""
    path = tmp_path / "text.h5ad"
    anndata.AnnData(X=np.ones((2, 2), np.float32)).write_h5ad(path)
    with h5py.File(path, "a") as handle:
        del handle["X"]
        handle["X"] = np.array([[b"a", b"b"], [b"c", b"d"]])
    with pytest.raises(InputError, match=r"text\.h5ad: X holds non-numeric values"):
        read_counts(path)
    code, lines = run_cli("predict", "--model-dir", good["model"], "--test-set", path,
                          "--output", tmp_path / "pred.tsv")
    assert code == 2 and len(lines) == 1 and "X holds non-numeric values" in lines[0]
    assert not (tmp_path / "pred.tsv").exists()
