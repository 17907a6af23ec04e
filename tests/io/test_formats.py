"""Count-matrix readers and writers: every format, chosen from content, sparse kept sparse.

Each test writes its own small files: the readers are checked against files
written by hand in each format's published layout (h5py, scipy, pandas,
anndata), and the writers by reading back what they wrote.
"""

import gzip
import os
import sys
import zipfile

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io
import scipy.sparse as sp
from conftest import write_10x

from deepchem_actinn import cli
from deepchem_actinn.errors import InputError, MissingDependencyError
from deepchem_actinn.io import (
    CountMatrix,
    CountMatrixWarning,
    detect_format,
    output_format,
    read_counts,
    write_counts,
)

N_CELLS, N_GENES = 12, 9
SYMBOLS = [f"Gene{i}" for i in range(N_GENES)]          # mixed case, as in mouse data
IDS = [f"ENSMUSG{i:011d}" for i in range(N_GENES)]
BARCODES = [f"AAAC{i:04d}-1" for i in range(N_CELLS)]


@pytest.fixture(scope="module")
def counts():
    """Cells x genes integer counts, mostly zero."""
    rng = np.random.default_rng(3)
    values = rng.poisson(0.4, size=(N_CELLS, N_GENES)).astype(np.int64)
    values[0, :] = 0  # an empty cell
    values[:, 2] = 0  # a gene never seen
    return values


def expected(values):
    return np.asarray(values, dtype=np.float32)


def dense(X):
    return X.toarray() if sp.issparse(X) else np.asarray(X)


# ---------------------------------------------------------------------------
# Hand-written files in each published layout
# ---------------------------------------------------------------------------


# 10x HDF5 (v3 and v2): conftest.write_10x, with these names.
TENX = {"genes": SYMBOLS, "cells": BARCODES, "gene_ids": IDS}


def write_mtx(folder, values, gz=True, v2=False, prefix=""):
    os.makedirs(folder, exist_ok=True)
    suffix = ".gz" if gz else ""
    opener = gzip.open if gz else open
    with opener(os.path.join(folder, f"{prefix}matrix.mtx{suffix}"), "wb") as handle:
        scipy.io.mmwrite(handle, sp.coo_matrix(values.T), field="integer")
    features = f"{prefix}genes.tsv{suffix}" if v2 else f"{prefix}features.tsv{suffix}"
    with opener(os.path.join(folder, features), "wt") as handle:
        for gene_id, name in zip(IDS, SYMBOLS, strict=True):
            handle.write(f"{gene_id}\t{name}\n" if v2 else f"{gene_id}\t{name}\tGene Expression\n")
    with opener(os.path.join(folder, f"{prefix}barcodes.tsv{suffix}"), "wt") as handle:
        handle.write("".join(f"{b}\n" for b in BARCODES))
    return str(folder)


def write_table(path, values, sep=",", cells_as_rows=False, compression=None):
    frame = pd.DataFrame(values.T, index=pd.Index(SYMBOLS, name="gene"), columns=BARCODES)
    if cells_as_rows:
        frame = frame.T
        frame.index.name = "cell"
    frame.to_csv(path, sep=sep, compression=compression)
    return str(path)


def write_h5ad(path, values):
    anndata = pytest.importorskip("anndata")
    normalised = values / np.maximum(values.sum(axis=1, keepdims=True), 1) * 100.0
    adata = anndata.AnnData(X=sp.csr_matrix(normalised.astype(np.float32)),
                            obs=pd.DataFrame(index=BARCODES),
                            var=pd.DataFrame({"symbol": SYMBOLS}, index=IDS))
    adata.layers["counts"] = sp.csr_matrix(values.astype(np.float32))
    adata.raw = anndata.AnnData(X=sp.csr_matrix(values.astype(np.float32)),
                                obs=adata.obs, var=pd.DataFrame(index=SYMBOLS))
    adata.write_h5ad(path)
    return str(path)


def check(matrix, values, genes=SYMBOLS, sparse=True):
    assert isinstance(matrix, CountMatrix)
    assert sp.issparse(matrix.X) == sparse
    assert matrix.X.dtype == np.float32
    np.testing.assert_array_equal(dense(matrix.X), expected(values))
    assert matrix.genes.tolist() == [g.upper() for g in genes]
    assert matrix.cells.tolist() == BARCODES


# ---------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------


def test_10x_v3(tmp_path, counts):
    path = write_10x(tmp_path / "filtered_feature_bc_matrix.h5", counts, **TENX)
    assert detect_format(path) == "10x-h5"
    check(read_counts(path), counts)
    check(read_counts(path, gene_ids=True), counts, genes=IDS)


def test_10x_v3_keeps_gene_expression_only(tmp_path, counts):
    # An antibody capture feature after the genes, 7 in every cell.
    path = write_10x(tmp_path / "x.h5", np.hstack([counts, np.full((N_CELLS, 1), 7)]),
                     SYMBOLS + ["CD3_TotalSeqB"], BARCODES, gene_ids=IDS + ["CD3"],
                     feature_types=["Gene Expression"] * N_GENES + ["Antibody Capture"])
    with pytest.warns(CountMatrixWarning, match="dropped 1 others"):
        matrix = read_counts(path)
    check(matrix, counts)


def test_10x_v2_and_genome_choice(tmp_path, counts):
    path = write_10x(tmp_path / "v2.h5", counts, **TENX, version=2)
    assert detect_format(path) == "10x-h5"
    check(read_counts(path), counts)
    check(read_counts(path, gene_ids=True), counts, genes=IDS)
    two = write_10x(tmp_path / "barnyard.h5", counts, **TENX, version=2,
                    genomes=("hg19", "mm10"))
    with pytest.raises(InputError, match="2 genomes.*--key"):
        read_counts(two)
    check(read_counts(two, key="mm10"), counts)
    with pytest.raises(InputError, match="no genome 'dm6'"):
        read_counts(two, key="dm6")


@pytest.mark.parametrize("gz,v2,prefix", [(True, False, ""), (False, True, ""),
                                          (True, False, "GSM1_")])
def test_matrix_market(tmp_path, counts, gz, v2, prefix):
    folder = write_mtx(tmp_path / "mtx", counts, gz=gz, v2=v2, prefix=prefix)
    assert detect_format(folder) == "mtx"
    check(read_counts(folder), counts)
    check(read_counts(folder, gene_ids=True), counts, genes=IDS)
    matrix_file = os.path.join(folder, f"{prefix}matrix.mtx{'.gz' if gz else ''}")
    assert detect_format(matrix_file) == "mtx"
    check(read_counts(matrix_file), counts)


def test_matrix_market_missing_barcodes(tmp_path, counts):
    folder = write_mtx(tmp_path / "mtx", counts)
    os.remove(os.path.join(folder, "barcodes.tsv.gz"))
    with pytest.raises(InputError, match="lacks barcodes"):
        read_counts(folder)


def test_matrix_market_nested_cellranger_hint(tmp_path, counts):
    write_mtx(tmp_path / "outs" / "filtered_feature_bc_matrix", counts)
    with pytest.raises(InputError, match="use .*filtered_feature_bc_matrix"):
        read_counts(tmp_path / "outs")


def test_csv_genes_by_cells(tmp_path, counts):
    path = write_table(tmp_path / "counts.csv", counts)
    assert detect_format(path) == "csv"
    check(read_counts(path), counts)  # mostly zero: kept sparse


def test_tsv_cells_by_genes(tmp_path, counts):
    path = write_table(tmp_path / "counts.tsv", counts, sep="\t", cells_as_rows=True)
    assert detect_format(path) == "tsv"
    check(read_counts(path, cells_as_rows=True), counts)
    wrong = read_counts(path)  # without the option the table is read transposed
    assert wrong.shape == (N_GENES, N_CELLS)


def test_gzipped_csv_detected_from_content(tmp_path, counts):
    path = write_table(tmp_path / "counts.data", counts, compression="gzip")
    assert detect_format(path) == "csv"
    check(read_counts(path), counts)


def test_dense_table_stays_dense(tmp_path):
    values = np.arange(1, 1 + N_CELLS * N_GENES).reshape(N_CELLS, N_GENES)
    path = write_table(tmp_path / "dense.csv", values)
    check(read_counts(path), values, sparse=False)


def test_csv_with_non_numeric_column(tmp_path, counts):
    path = tmp_path / "bad.csv"
    frame = pd.DataFrame(counts.T, index=SYMBOLS, columns=BARCODES)
    frame.insert(0, "description", "some gene")
    frame.to_csv(path)
    with pytest.raises(InputError, match="column 'description' is not numeric"):
        read_counts(path)


def test_h5ad_layers_and_gene_column(tmp_path, counts):
    path = write_h5ad(tmp_path / "pbmc.h5ad", counts)
    assert detect_format(path) == "h5ad"
    with pytest.warns(CountMatrixWarning) as record:
        normalised = read_counts(path)
    assert any("layer 'counts' holds counts" in str(w.message) for w in record)
    assert normalised.genes.tolist() == [i.upper() for i in IDS]
    assert not np.array_equal(dense(normalised.X), expected(counts))
    check(read_counts(path, layer="counts", gene_column="symbol"), counts)
    check(read_counts(path, layer="raw"), counts)  # raw.var_names are symbols
    with pytest.raises(InputError, match="no layer 'spliced'.*counts"):
        read_counts(path, layer="spliced")
    with pytest.raises(InputError, match="no var column 'gene_symbols'.*symbol"):
        read_counts(path, layer="counts", gene_column="gene_symbols")


def test_h5ad_scaled_x_names_the_layers(tmp_path, counts):
    anndata = pytest.importorskip("anndata")
    scaled = (counts - counts.mean(axis=0)).astype(np.float32)
    adata = anndata.AnnData(X=scaled, obs=pd.DataFrame(index=BARCODES),
                            var=pd.DataFrame(index=SYMBOLS))
    adata.layers["counts"] = counts.astype(np.float32)
    path = str(tmp_path / "scaled.h5ad")
    adata.write_h5ad(path)
    with pytest.raises(InputError, match=r"X holds negative values .*available: counts\)"):
        read_counts(path)
    check(read_counts(path, layer="counts"), counts, sparse=False)


def test_h5ad_without_anndata(tmp_path, counts, monkeypatch):
    path = write_h5ad(tmp_path / "x.h5ad", counts)
    monkeypatch.setitem(sys.modules, "anndata", None)  # import anndata -> ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install .anndata>=0.10.") as info:
        read_counts(path)
    assert isinstance(info.value, ImportError) and str(info.value).startswith(path)


def test_pandas_hdf_unchanged(tmp_path, counts):
    path = tmp_path / "tutorial.h5"
    pd.DataFrame(counts.T, index=SYMBOLS, columns=BARCODES).to_hdf(path, key="dge")
    assert detect_format(path) == "pandas-hdf"
    check(read_counts(path), counts, sparse=False)
    check(read_counts(path, format="pandas"), counts, sparse=False)


# ---------------------------------------------------------------------------
# Detection from content, and options that do not apply
# ---------------------------------------------------------------------------


def test_misleading_extensions(tmp_path, counts):
    csv_as_h5 = write_table(tmp_path / "counts.h5", counts)
    tenx_as_h5ad = write_10x(tmp_path / "counts.h5ad", counts, **TENX)
    h5ad_as_h5 = write_h5ad(tmp_path / "anndata.h5", counts)
    tsv_as_csv = write_table(tmp_path / "table.csv", counts, sep="\t")
    assert [detect_format(p) for p in (csv_as_h5, tenx_as_h5ad, h5ad_as_h5, tsv_as_csv)] == \
        ["csv", "10x-h5", "h5ad", "tsv"]
    check(read_counts(csv_as_h5), counts)
    check(read_counts(tenx_as_h5ad), counts)
    check(read_counts(h5ad_as_h5, layer="counts", gene_column="symbol"), counts)
    check(read_counts(tsv_as_csv), counts)


def test_unrecognised_files(tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as handle:
        handle["weights"] = np.zeros(3)
    with pytest.raises(InputError, match="neither pandas HDF, 10x .*keys: weights"):
        detect_format(other)
    loom = tmp_path / "x.loom"
    with h5py.File(loom, "w") as handle:
        handle["matrix"] = np.zeros((2, 2))
        handle.create_group("row_attrs")
    with pytest.raises(InputError, match="loom"):
        read_counts(loom)
    archive = tmp_path / "counts.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("a.csv", "x")
    with pytest.raises(InputError, match="zip archive"):
        read_counts(archive)
    semicolons = tmp_path / "x.csv"
    semicolons.write_text("gene;c1\nG1;1\n")
    with pytest.raises(InputError, match="semicolons"):
        read_counts(semicolons)
    with pytest.raises(InputError, match="unknown format 'loom'"):
        read_counts(semicolons, format="loom")
    with pytest.raises(InputError, match="file not found"):
        detect_format(tmp_path / "missing.h5")


def test_options_that_do_not_apply_are_refused(tmp_path, counts):
    path = write_table(tmp_path / "counts.csv", counts)
    with pytest.raises(InputError, match="option layer applies to h5ad input, but this is csv"):
        read_counts(path, layer="counts")
    with pytest.raises(InputError, match="gene_ids applies to 10x-h5 and mtx"):
        read_counts(path, gene_ids=True)
    tenx = write_10x(tmp_path / "x.h5", counts, **TENX)
    with pytest.raises(InputError, match="cells_as_rows"):
        read_counts(tenx, cells_as_rows=True)


# ---------------------------------------------------------------------------
# Writers and convert
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name,to,kind", [
    ("a.h5", None, "pandas-hdf"), ("b.h5", "10x", "10x-h5"), ("c", None, "mtx"),
    ("d.csv", None, "csv"), ("e.tsv.gz", None, "tsv"), ("f.h5ad", None, "h5ad"),
])
def test_writers_round_trip(tmp_path, counts, name, to, kind):
    source = CountMatrix(sp.csr_matrix(counts), SYMBOLS, BARCODES)
    path = str(tmp_path / name)
    assert output_format(path, to) == kind
    assert write_counts(source, path, to) == kind
    assert detect_format(path) == kind
    back = read_counts(path)
    np.testing.assert_array_equal(dense(back.X), expected(counts))
    assert back.genes.tolist() == [g.upper() for g in SYMBOLS]
    assert back.cells.tolist() == BARCODES
    leftovers = [n for n in os.listdir(tmp_path) if n.startswith(".")]
    assert leftovers == []  # temporary files renamed or removed


def test_non_integer_values_round_trip_bit_exactly(tmp_path):
    rng = np.random.default_rng(0)
    values = (rng.random((N_CELLS, N_GENES)) * 10).astype(np.float32)
    source = CountMatrix(values, SYMBOLS, BARCODES)
    for name in ("x.h5", "x.csv", "mtx", "x10.h5"):
        path = str(tmp_path / name)
        write_counts(source, path, "10x" if name == "x10.h5" else None)
        with pytest.warns(CountMatrixWarning, match="non-integer"):
            back = read_counts(path)
        np.testing.assert_array_equal(dense(back.X), values)


def test_convert_keeps_names_and_gene_ids(tmp_path, counts):
    tenx = write_10x(tmp_path / "in.h5", counts, **TENX)
    assert cli.main(["convert", "--input", tenx, "--output", str(tmp_path / "out")]) == 0
    features = pd.read_csv(tmp_path / "out" / "features.tsv.gz", sep="\t", header=None)
    assert features[0].tolist() == IDS and features[1].tolist() == SYMBOLS  # case kept
    check(read_counts(tmp_path / "out", gene_ids=True), counts, genes=IDS)


def test_convert_cli_every_format(tmp_path, counts, capsys):
    source = write_table(tmp_path / "cells.tsv", counts, sep="\t", cells_as_rows=True)
    reference = read_counts(source, cells_as_rows=True)
    outputs = {"pandas.h5": [], "tenx.h5": ["--to", "10x-h5"], "mtx_out": [],
               "table.csv": [], "anndata.h5ad": []}
    for name, extra in outputs.items():
        target = str(tmp_path / name)
        assert cli.main(["convert", "--input", source, "--output", target, "--cells-as-rows",
                         *extra]) == 0
        back = read_counts(target)
        np.testing.assert_array_equal(dense(back.X), dense(reference.X))
        assert back.cells.tolist() == reference.cells.tolist()
    assert "12 cells x 9 genes (tsv)" in capsys.readouterr().out


def test_convert_refuses_and_writes_nothing(tmp_path, counts, capsys):
    source = write_table(tmp_path / "in.csv", counts)
    assert cli.main(["convert", "--input", source, "--output", source]) == 2
    assert "output is the input" in capsys.readouterr().err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("keep me")
    assert cli.main(["convert", "--input", source, "--output", str(busy)]) == 2
    assert "holds other files" in capsys.readouterr().err
    assert os.listdir(busy) == ["notes.txt"]
    bad = tmp_path / "bad.csv"
    bad.write_text("gene,c1,c2\nG1,1,-3\n")
    assert cli.main(["convert", "--input", str(bad), "--output", str(tmp_path / "o.h5ad")]) == 2
    assert "negative values" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "o.h5ad")
    assert cli.main(["convert", "--input", source, "--output", str(tmp_path / "x.parquet")]) == 2
    assert "--to" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["bad.csv", "busy", "in.csv"]


def test_convert_replaces_previous_mtx_output(tmp_path, counts):
    source = write_table(tmp_path / "in.csv", counts)
    target = str(tmp_path / "out")
    assert cli.main(["convert", "--input", source, "--output", target]) == 0
    assert cli.main(["convert", "--input", source, "--output", target]) == 0
    check(read_counts(target), counts)
    assert sorted(os.listdir(tmp_path)) == ["in.csv", "out"]
