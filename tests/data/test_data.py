"""CellDataset, ScRNALoader and the stratified splitter."""

import deepchem as dc
import numpy as np
import pandas as pd
import pytest
from conftest import write_counts, write_labels

from deepchem_actinn.data import CellDataset, ScRNALoader, StratifiedSplitter, encode_labels
from deepchem_actinn.errors import InputError
from deepchem_actinn.io import CountMatrixWarning

SAMPLE_1_TYPES = {"B cell": 477, "T cell": 312, "NK cell": 74, "Monocyte": 69,
                  "Granulocyte": 68}


@pytest.fixture(scope="module")
def sample_1(samples):
    return ScRNALoader().create_dataset(samples.sample_1_counts, samples.sample_1_labels)


def test_loader_builds_a_numpy_dataset(sample_1):
    ds = sample_1
    assert isinstance(ds, dc.data.NumpyDataset) and isinstance(ds, CellDataset)
    assert ds.X.shape == (1000, 1500) and ds.X.dtype == np.float32
    assert ds.y.shape == (1000, 1) and np.issubdtype(ds.y.dtype, np.integer)
    assert ds.w.shape == (1000, 1) and (ds.w == 1).all()
    assert ds.ids[0].startswith("tma_mfd_") and len(set(ds.ids)) == 1000
    assert ds.classes.tolist() == sorted(SAMPLE_1_TYPES)
    assert len(ds.genes) == 1500 and ds.genes[0] == ds.genes[0].upper()
    counts = dict(zip(*np.unique(ds.cell_types(), return_counts=True), strict=True))
    assert counts == SAMPLE_1_TYPES
    assert np.array_equal(ds.X, np.round(ds.X))  # raw counts, not yet normalised


def test_loader_joins_labels_by_id(tmp_path):
    counts = np.arange(12).reshape(4, 3) + 1
    path = write_counts(tmp_path / "x.h5", counts, ["a", "b", "c"], ["c1", "c2", "c3", "c4"])
    labels = {"c1": "T", "c2": "B", "c3": "T", "c4": "NK"}
    forward = ScRNALoader().create_dataset(path, write_labels(tmp_path / "f.tsv", labels))
    shuffled_labels = dict(reversed(list(labels.items())))
    shuffled = ScRNALoader().create_dataset(path, write_labels(tmp_path / "r.tsv",
                                                               shuffled_labels, header=True))
    for ds in (forward, shuffled):
        assert ds.ids.tolist() == ["c1", "c2", "c3", "c4"]
        assert ds.cell_types().tolist() == ["T", "B", "T", "NK"]
        assert ds.classes.tolist() == ["B", "NK", "T"]
        np.testing.assert_array_equal(ds.X, counts)
    series = ScRNALoader().create_dataset(path, pd.Series(labels))
    np.testing.assert_array_equal(series.y, forward.y)


def test_loader_without_labels_and_with_fixed_classes(tmp_path):
    path = write_counts(tmp_path / "x.h5", np.ones((3, 2)), ["a", "b"], ["c1", "c2", "c3"])
    unlabelled = ScRNALoader().create_dataset(path)
    assert unlabelled.X.shape == (3, 2) and unlabelled.ids.tolist() == ["c1", "c2", "c3"]
    labels = write_labels(tmp_path / "y.tsv", {"c1": "B", "c2": "T", "c3": "Platelet"})
    with pytest.warns(CountMatrixWarning, match="1 cells have types the model does not know"):
        fixed = ScRNALoader(classes=["B", "T", "NK"]).create_dataset(path, labels)
    assert fixed.classes.tolist() == ["B", "T", "NK"]
    assert fixed.y.ravel().tolist() == [0, 1, -1]
    assert fixed.w.ravel().tolist() == [1, 1, 0]


def test_encode_labels_is_sorted_and_deterministic():
    y, classes = encode_labels(["T", "B", "NK", "B"])
    assert classes.tolist() == ["B", "NK", "T"] and y.ravel().tolist() == [2, 0, 1, 0]
    y2, classes2 = encode_labels(["B", "NK", "B", "T"])
    assert classes2.tolist() == classes.tolist() and y2.ravel().tolist() == [0, 1, 0, 2]


def test_select_keeps_genes_and_classes(sample_1):
    part = sample_1.select([5, 2, 9])
    assert isinstance(part, CellDataset)
    assert part.ids.tolist() == sample_1.ids[[5, 2, 9]].tolist()
    assert part.genes.tolist() == sample_1.genes.tolist()
    assert part.classes.tolist() == sample_1.classes.tolist()


def _class_counts(y, index, k):
    return np.bincount(y[index], minlength=k)


@pytest.mark.parametrize("fractions", [(0.8, 0.1, 0.1), (0.8, 0.0, 0.2)])
def test_stratified_splitter_keeps_proportions_on_real_data(sample_1, fractions):
    y = sample_1.y.ravel()
    k = sample_1.n_classes
    totals = np.bincount(y, minlength=k)
    parts = StratifiedSplitter().split(sample_1, *fractions, seed=0)
    for index in parts:
        assert index.dtype == np.int64
    train, valid, test = parts
    assert len(np.intersect1d(train, test)) == 0 and len(np.intersect1d(train, valid)) == 0
    assert len(train) + len(valid) + len(test) == len(y)
    for index, fraction in zip(parts, fractions, strict=True):
        # Every type within one cell of its exact share, in every part.
        assert np.abs(_class_counts(y, index, k) - fraction * totals).max() < 1.0
    # Per-type rounding may move a cell or two between parts overall.
    for index, fraction in zip(parts, fractions, strict=True):
        assert abs(len(index) - fraction * len(y)) <= 2
    assert fractions[1] > 0 or len(valid) == 0
    # DeepChem's own entry point works with it and keeps the metadata.
    frac = dict(zip(("frac_train", "frac_valid", "frac_test"), fractions, strict=True))
    tr, va, te = StratifiedSplitter().train_valid_test_split(sample_1, seed=0, **frac)
    assert isinstance(tr, CellDataset) and tr.classes.tolist() == sample_1.classes.tolist()
    assert tr.ids.tolist() == sample_1.ids[train].tolist()
    assert len(te) == len(test)


def test_stratified_splitter_is_seeded():
    ds = dc.data.NumpyDataset(np.zeros((90, 1)), np.repeat([0, 1, 2], 30).reshape(-1, 1))
    a = StratifiedSplitter().split(ds, 0.8, 0.1, 0.1, seed=3)
    b = StratifiedSplitter().split(ds, 0.8, 0.1, 0.1, seed=3)
    c = StratifiedSplitter().split(ds, 0.8, 0.1, 0.1, seed=4)
    assert all(np.array_equal(x, z) for x, z in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])


def test_stratified_splitter_small_classes():
    # A type with two cells gets one training and one test cell.
    y = np.array([0] * 20 + [1] * 2).reshape(-1, 1)
    ds = dc.data.NumpyDataset(np.zeros((22, 1)), y)
    train, valid, test = StratifiedSplitter().split(ds, 0.8, 0.1, 0.1, seed=0)
    assert (y[train] == 1).sum() == 1 and (y[test] == 1).sum() == 1
    single = CellDataset(np.zeros((5, 1)), np.array([0, 0, 0, 0, 1]), classes=["B", "Rare"])
    with pytest.raises(InputError, match="'Rare' has a single cell"):
        StratifiedSplitter().split(single, 0.8, 0.0, 0.2, seed=0)
    with pytest.raises(ValueError, match="sum to 1"):
        StratifiedSplitter().split(ds, 0.8, 0.1, 0.2)


@pytest.mark.skipif(not dc.__version__.startswith("2.8"),
                    reason="documents DeepChem 2.8's splitters, the reason we ship our own")
def test_deepchem_splitters_do_not_stratify_cell_types(sample_1):
    """Why StratifiedSplitter exists (DeepChem 2.8)."""
    y = sample_1.y.ravel()
    k = sample_1.n_classes
    totals = np.bincount(y, minlength=k)
    # RandomStratifiedSplitter balances only y == 0 vs y != 0 ...
    worst = 0.0
    for seed in range(3):
        parts = dc.splits.RandomStratifiedSplitter().split(sample_1, 0.8, 0.1, 0.1, seed=seed)
        for index, fraction in zip(parts, (0.8, 0.1, 0.1), strict=True):
            counts = _class_counts(y, np.asarray(index, dtype=np.int64), k)
            assert abs(counts[0] - fraction * totals[0]) < 1.0  # class 0 is balanced
            worst = max(worst, np.abs(counts - fraction * totals).max())
    assert worst >= 2.0  # ... so the other types drift by whole cells
    # SingletaskStratifiedSplitter returns float indices.
    train, _, _ = dc.splits.SingletaskStratifiedSplitter().split(sample_1, 0.8, 0.1, 0.1, seed=0)
    assert not np.issubdtype(np.asarray(train).dtype, np.integer)


def test_dataset_reprs_are_one_line():
    """Shape and classes, not DeepChem's every id: readable for 100,000 cells."""
    import scipy.sparse as sp

    from deepchem_actinn.data import SparseCellDataset

    n = 5000
    X = np.zeros((n, 3), np.float32)
    y = (np.arange(n) % 6).reshape(-1, 1)
    classes = [f"type {t}" for t in range(6)]
    dense = CellDataset(X, y, ids=[f"c{i}" for i in range(n)], genes=["A", "B", "C"],
                        classes=classes)
    text = repr(dense)
    assert text == str(dense) and "\n" not in text and len(text) < 200
    assert text.startswith("<CellDataset: 5,000 cells x 3 genes, 6 classes (type 0, type 1")
    assert "..." in text and "c4999" not in text and text.endswith("dense>")
    sparse = SparseCellDataset(sp.csr_matrix(X), y, genes=["A", "B", "C"], classes=classes[:2],
                               ids=None)
    assert repr(sparse.select([0, 1])) == \
        "<SparseCellDataset: 2 cells x 3 genes, 2 classes (type 0, type 1), sparse>"
    assert "no classes" in repr(CellDataset(X[:2]))
