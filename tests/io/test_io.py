"""Readers: pandas HDF count matrices, label TSVs, joining by cell id, bad inputs."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import write_counts, write_labels

from deepchem_actinn.errors import InputError
from deepchem_actinn.io import (
    CountMatrix,
    CountMatrixWarning,
    check_counts,
    finish_matrix,
    join_labels,
    read_counts,
    read_labels,
)

COUNTS = np.array([[5, 0, 1, 2], [0, 3, 2, 0], [1, 1, 0, 7]])  # 3 cells x 4 genes
GENES = ["Cd19", "Cd3e", "Ms4a1", "Nkg7"]
CELLS = ["c1", "c2", "c3"]


# -- count matrices ------------------------------------------------------------------


def test_read_counts_key_dge_transposes_and_uppercases(tmp_path):
    path = write_counts(tmp_path / "x.h5", COUNTS, GENES, CELLS)
    matrix = read_counts(path)
    assert matrix.shape == (3, 4)
    assert matrix.genes.tolist() == ["CD19", "CD3E", "MS4A1", "NKG7"]
    assert matrix.cells.tolist() == CELLS
    assert matrix.X.dtype == np.float32
    np.testing.assert_array_equal(matrix.X, COUNTS)
    assert matrix.source == path


def test_read_counts_only_key_or_explicit_key(tmp_path):
    only = write_counts(tmp_path / "only.h5", COUNTS, GENES, CELLS, key="counts")
    np.testing.assert_array_equal(read_counts(only).X, COUNTS)
    two = tmp_path / "two.h5"
    write_counts(two, COUNTS, GENES, CELLS, key="a")
    write_counts(two, COUNTS * 2, GENES, CELLS, key="b")
    with pytest.raises(InputError, match="holds 2 DataFrames"):
        read_counts(two)
    np.testing.assert_array_equal(read_counts(two, key="b").X, COUNTS * 2)
    with pytest.raises(InputError, match="no key 'c'"):
        read_counts(two, key="c")
    # With a 'dge' key among others, 'dge' wins.
    write_counts(two, COUNTS * 3, GENES, CELLS, key="dge")
    np.testing.assert_array_equal(read_counts(two).X, COUNTS * 3)


@pytest.mark.parametrize("content, problem", [
    (None, "file not found"),
    (b"", "file is empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00binary", "not a recognised count-matrix format"),
])
def test_unreadable_count_files(tmp_path, content, problem):
    path = tmp_path / "bad.h5"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError) as info:
        read_counts(path)
    assert str(info.value).startswith(f"{path}: {problem}")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("value, problem", [
    (-1.0, "negative values"), (np.nan, "NaN values"), (np.inf, "infinite values")])
def test_bad_count_values_are_refused(value, problem):
    X = COUNTS.astype(float)
    X[1, 2] = value
    with pytest.raises(InputError, match=problem):
        check_counts(X, "x.h5")
    with pytest.raises(InputError, match=problem):
        check_counts(sp.csr_matrix(X), "x.h5")


def test_non_integer_counts_warn_and_empty_matrix_is_refused():
    with pytest.warns(CountMatrixWarning, match="non-integer"):
        check_counts(np.array([[0.5, 1.0]]), "x.h5")
    with pytest.raises(InputError, match="no cells"):
        check_counts(np.zeros((0, 3)), "x.h5")
    with pytest.raises(InputError, match="non-numeric"):
        check_counts(np.array([["a", "b"]], dtype=object), "x.h5")


def test_duplicate_gene_names_after_uppercasing(tmp_path):
    genes = ["Cd19", "CD19", "Nkg7", "nkg7"]
    path = write_counts(tmp_path / "x.h5", COUNTS, genes, CELLS)
    with pytest.warns(CountMatrixWarning, match="2 duplicate gene names after upper-casing"):
        matrix = read_counts(path)
    assert matrix.genes.tolist() == ["CD19", "NKG7"]
    np.testing.assert_array_equal(matrix.X, COUNTS[:, [0, 2]])  # the first of each is kept
    assert any("duplicate gene names" in note for note in matrix.notes)


def test_duplicate_cell_ids_are_renamed_and_reported():
    # pandas cannot write repeated columns to HDF; every reader ends in finish_matrix.
    with pytest.warns(CountMatrixWarning, match="1 duplicate cell ids"):
        matrix = finish_matrix(COUNTS, GENES, ["c1", "c1", "c2"], "x.h5")
    assert matrix.cells.tolist() == ["c1", "c1-1", "c2"]
    assert any("duplicate cell ids" in note for note in matrix.notes)


def test_count_matrix_shape_mismatch():
    with pytest.raises(InputError, match="does not match"):
        CountMatrix(np.ones((2, 3)), ["a", "b"], ["c1", "c2"], source="m")


def test_finish_matrix_keeps_sparse():
    matrix = finish_matrix(sp.csr_matrix(COUNTS), GENES, CELLS, "s")
    assert sp.issparse(matrix.X) and matrix.X.dtype == np.float32
    np.testing.assert_array_equal(matrix.library_sizes(), COUNTS.sum(axis=1))


# -- labels --------------------------------------------------------------------------------


def test_read_labels_without_and_with_header(tmp_path):
    mapping = {"c1": "B cell", "c2": "T cell", "c3": "B cell"}
    plain = read_labels(write_labels(tmp_path / "plain.tsv", mapping))
    header = read_labels(write_labels(tmp_path / "header.tsv", mapping, header=True))
    assert plain.to_dict() == mapping and header.to_dict() == mapping
    # A first line that is a real cell is not mistaken for a header.
    assert read_labels(write_labels(tmp_path / "first.tsv", {"cell0": "T"})).to_dict() == \
        {"cell0": "T"}
    (tmp_path / "other.tsv").write_text("barcode\tlabel\r\nc1\tB\r\n\r\n")
    assert read_labels(tmp_path / "other.tsv").to_dict() == {"c1": "B"}


@pytest.mark.parametrize("text, problem", [
    ("", "file is empty"),
    ("\n\n", "label file is empty"),
    ("c1,B\nc2,T\n", "looks separated by commas"),
    ("c1\tB\nc1\tT\n", "1 duplicate cell ids"),
    ("cell_id\tcell_type\n", "header but no labels"),
    ("c1\t\n", "empty cell id or cell type"),
])
def test_bad_label_files(tmp_path, text, problem):
    path = tmp_path / "labels.tsv"
    path.write_text(text)
    with pytest.raises(InputError, match=problem) as info:
        read_labels(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_join_by_id_not_by_position(tmp_path):
    matrix = read_counts(write_counts(tmp_path / "x.h5", COUNTS, GENES, CELLS))
    labels = pd.Series({"c3": "T", "c1": "B", "c2": "NK"})
    joined = join_labels(matrix, labels)
    assert joined.matrix.cells.tolist() == CELLS
    assert joined.labels.tolist() == ["B", "NK", "T"]
    shuffled = labels.iloc[[1, 2, 0]]
    assert join_labels(matrix, shuffled).labels.tolist() == ["B", "NK", "T"]
    assert joined.n_unlabelled_cells == 0 and joined.n_labels_without_cell == 0


def test_unlabelled_cells_and_orphan_labels_are_reported(tmp_path):
    matrix = read_counts(write_counts(tmp_path / "x.h5", COUNTS, GENES, CELLS))
    labels = pd.Series({"c3": "T", "c1": "B", "ghost1": "B", "ghost2": "T"})
    with pytest.warns(CountMatrixWarning) as record:
        joined = join_labels(matrix, labels, label_source="y.tsv")
    message = str(record[0].message)
    assert "2 labelled cells" in message
    assert "1 cells without a label (e.g. c2)" in message
    assert "2 labels without a cell (e.g. ghost1, ghost2)" in message
    assert joined.matrix.cells.tolist() == ["c1", "c3"]
    np.testing.assert_array_equal(joined.matrix.X, COUNTS[[0, 2]])
    assert (joined.n_unlabelled_cells, joined.n_labels_without_cell) == (1, 2)
    assert joined.unlabelled_examples == ["c2"]


def test_transposed_input_is_refused(tmp_path):
    # Written cells x genes: the reader takes the cells for genes.
    path = tmp_path / "transposed.h5"
    pd.DataFrame(COUNTS, index=CELLS, columns=GENES).to_hdf(path, key="dge")
    matrix = read_counts(path)
    labels = read_labels(write_labels(tmp_path / "y.tsv", {"c1": "B", "c2": "T", "c3": "B"}))
    with pytest.raises(InputError, match="looks transposed") as info:
        join_labels(matrix, labels, label_source="y.tsv")
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_no_match_at_all_is_an_error(tmp_path):
    matrix = read_counts(write_counts(tmp_path / "x.h5", COUNTS, GENES, CELLS))
    with pytest.raises(InputError, match="no cell id matches a label id"):
        join_labels(matrix, pd.Series({"zz": "B"}))
    with pytest.raises(InputError, match="only 1 of 3 cells have a label"):
        join_labels(matrix, pd.Series({"c1": "B"}), min_fraction=0.5)


def test_real_sample_labels_join(samples):
    matrix = read_counts(samples.sample_2_counts)
    with pytest.warns(CountMatrixWarning, match="754 cells without a label"):
        joined = join_labels(matrix, read_labels(samples.sample_2_labels))
    assert joined.matrix.shape == (246, 1200)
    assert sorted(set(joined.labels)) == ["B cell", "Granulocyte", "Monocyte", "NK cell",
                                          "T cell"]
