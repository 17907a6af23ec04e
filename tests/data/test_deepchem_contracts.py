"""DeepChem's own contracts, where DeepChem users will try them (issue #13, item 4).

The featurizer's ``featurize``/``__call__``, ``ScRNALoader`` as a ``DataLoader``
(``DiskDataset`` output included), sparse datasets through k-fold splitters,
``merge``, ``to_dataframe`` and ``make_pytorch_dataset``, transformers that keep
gene and class names, ``predict_on_batch`` on sparse batches and checkpoints a
fresh model can annotate with.
"""

import json
import os
import subprocess
import sys
import warnings

import anndata
import deepchem as dc
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from conftest import synthetic_counts, write_counts, write_labels

import deepchem_actinn as da
from deepchem_actinn.data import (
    NAMES_FILE,
    CellDataset,
    ScRNALoader,
    SparseCellDataset,
    StratifiedSplitter,
    load_disk_dataset,
)
from deepchem_actinn.data import cells as data_module
from deepchem_actinn.errors import InputError, ModelFileError
from deepchem_actinn.io import CountMatrix, read_counts
from deepchem_actinn.model import ACTINNModel
from deepchem_actinn.preprocessing import ScRNAFeaturizer

N_CELLS, N_GENES = 60, 120
GENES = [f"Gene{i}" for i in range(N_GENES)]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A labelled reference (60 cells, 3 types) and an unlabelled query with other cell ids."""
    folder = tmp_path_factory.mktemp("contracts")
    counts, types = synthetic_counts(N_CELLS, N_GENES, seed=0)
    query, _ = synthetic_counts(30, N_GENES, seed=1)
    cells = [f"cell{i}" for i in range(N_CELLS)]
    return {
        "counts": counts, "types": types,
        "reference": write_counts(folder / "reference.h5", counts, GENES, cells),
        "labels": write_labels(folder / "labels.tsv",
                               {c: f"t{t}" for c, t in zip(cells, types, strict=True)}),
        "query_counts": query,
        "query": write_counts(folder / "query.h5", query, GENES,
                              [f"q{i}" for i in range(30)]),
    }


@pytest.fixture(scope="module")
def fitted(files):
    return ScRNAFeaturizer().fit(read_counts(files["reference"]))


@pytest.fixture(scope="module")
def sparse_cells(files):
    return ScRNALoader(sparse=True).create_dataset(files["reference"], files["labels"])


# ---------------------------------------------------------------------------
# 1. ScRNAFeaturizer through DeepChem's featurize API
# ---------------------------------------------------------------------------


def test_featurize_and_call_give_transform_for_every_input_kind(files, fitted):
    matrix = read_counts(files["query"])
    expected = fitted.transform(matrix)
    assert expected.dtype == np.float32 and expected.shape == (30, len(fitted.genes_))
    adata = anndata.AnnData(X=sp.csr_matrix(files["query_counts"].astype(np.float32)),
                            obs=pd.DataFrame(index=list(matrix.cells)),
                            var=pd.DataFrame(index=GENES))
    for result in (fitted.featurize(matrix), fitted.featurize(files["query"]),
                   fitted.featurize(adata), fitted(files["query"]),
                   fitted(files["query_counts"], genes=GENES),
                   fitted.featurize(sp.csr_matrix(files["query_counts"]), genes=GENES)):
        assert isinstance(result, np.ndarray) and result.dtype == np.float32
        np.testing.assert_array_equal(result, expected)
    # DeepChem featurizes a list of datapoints: here their cells, stacked.
    stacked = fitted.featurize([files["query"], matrix], log_every_n=1)
    np.testing.assert_array_equal(stacked, np.vstack([expected, expected]))


def test_deepchem_style_call_equals_transform(files, fitted):
    """What DeepChem code does with a loader's featurizer: ``featurizer.featurize(inputs)``."""
    loader = ScRNALoader(featurizer=fitted)
    features = loader.featurizer.featurize([files["query"]], log_every_n=1000)
    np.testing.assert_array_equal(features, fitted.transform(read_counts(files["query"])))


def test_unfitted_featurizer_says_to_fit_it_first(files):
    featurizer = ScRNAFeaturizer()
    for call in (lambda: featurizer.featurize(files["query"]),
                 lambda: featurizer(files["query_counts"], genes=GENES)):
        with pytest.raises(RuntimeError, match=r"not fitted: call fit\(\) first") as caught:
            call()
        assert "\n" not in str(caught.value)


def test_bare_matrix_needs_genes(fitted, files):
    with pytest.raises(TypeError, match="pass genes="):
        fitted.featurize(files["query_counts"])
    with pytest.raises(TypeError, match="takes no key with genes="):
        fitted.featurize(files["query_counts"], genes=GENES, key="dge")


def test_preprocessing_does_not_import_deepchem():
    code = ("import sys, deepchem_actinn.preprocessing as p; "
            "assert hasattr(p.ScRNAFeaturizer, 'featurize'); print('deepchem' in sys.modules)")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=root)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------------
# 2. ScRNALoader as a dc.data.DataLoader
# ---------------------------------------------------------------------------


def test_loader_is_a_deepchem_data_loader(fitted):
    loader = ScRNALoader(featurizer=fitted)
    assert isinstance(loader, dc.data.DataLoader)
    assert loader.tasks == ["cell_type"] and loader.featurizer is fitted


def test_one_element_list_and_default_labels(files):
    single = ScRNALoader().create_dataset(files["reference"], files["labels"])
    listed = ScRNALoader(labels=files["labels"]).create_dataset([files["reference"]])
    np.testing.assert_array_equal(listed.X, single.X)
    np.testing.assert_array_equal(listed.y, single.y)
    assert listed.ids.tolist() == single.ids.tolist()


def test_several_files_with_the_same_genes_are_concatenated(files, tmp_path):
    counts = files["counts"]
    # The second file lists its genes in another order: columns follow the first file's.
    second = write_counts(tmp_path / "second.h5", counts[:20, ::-1], GENES[::-1],
                          [f"other{i}" for i in range(20)])
    labels = pd.Series({**{f"cell{i}": "A" for i in range(N_CELLS)},
                        **{f"other{i}": "B" for i in range(20)}})
    both = ScRNALoader(sparse=True).create_dataset([files["reference"], second], labels)
    assert both.X.shape == (80, N_GENES) and both.genes.tolist() == [g.upper() for g in GENES]
    np.testing.assert_array_equal(both.X.toarray(), np.vstack([counts, counts[:20]]))
    assert both.ids[-1] == "other19" and both.cell_types()[-1] == "B"


def test_several_files_with_other_genes_or_the_same_cells_are_refused(files, tmp_path):
    other = write_counts(tmp_path / "other.h5", files["counts"][:, :-1], GENES[:-1])
    with pytest.raises(InputError, match=r"other\.h5: its 119 genes are not the 120") as caught:
        ScRNALoader().create_dataset([files["reference"], other])
    assert "\n" not in str(caught.value)
    with pytest.raises(InputError, match="cell ids must be distinct across files"):
        ScRNALoader().create_dataset([files["reference"], files["reference"]])


def test_disk_dataset_written_shard_by_shard(files, tmp_path):
    in_memory = ScRNALoader().create_dataset(files["reference"], files["labels"])
    folder = os.fspath(tmp_path / "disk")
    disk = ScRNALoader().create_dataset(files["reference"], files["labels"], data_dir=folder,
                                        shard_size=25)
    assert isinstance(disk, dc.data.DiskDataset)
    assert [len(disk.get_shard(i)[0]) for i in range(disk.get_number_shards())] == [25, 25, 10]
    np.testing.assert_array_equal(disk.X, in_memory.X)
    np.testing.assert_array_equal(disk.y, in_memory.y)
    assert disk.ids.tolist() == in_memory.ids.tolist()
    assert list(disk.get_task_names()) == ["cell_type"]
    assert disk.genes.tolist() == in_memory.genes.tolist()
    assert disk.classes.tolist() == in_memory.classes.tolist()
    with open(os.path.join(folder, NAMES_FILE)) as handle:
        assert json.load(handle)["classes"] == ["t0", "t1", "t2"]
    # Nothing was pickled: every shard loads without allow_pickle.
    for name in os.listdir(folder):
        if name.endswith(".npy"):
            assert np.load(os.path.join(folder, name), allow_pickle=False).dtype != object
    reopened = load_disk_dataset(folder)
    assert reopened.genes.tolist() == disk.genes.tolist()
    assert reopened.classes.tolist() == disk.classes.tolist()
    np.testing.assert_array_equal(reopened.X, in_memory.X)


def test_disk_dataset_default_shard_size_and_deprecated_featurize(files, tmp_path):
    with pytest.warns(FutureWarning, match="create_dataset"):
        disk = ScRNALoader(labels=files["labels"]).featurize(
            files["reference"], data_dir=os.fspath(tmp_path / "d"))
    assert disk.get_number_shards() == 1 and len(disk) == N_CELLS


def test_load_disk_dataset_refuses_pickles(files, tmp_path):
    folder = tmp_path / "disk"
    ScRNALoader().create_dataset(files["reference"], files["labels"], data_dir=os.fspath(folder))
    np.save(folder / "shard-0-ids.npy", np.array(["a", None], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="shard-0-ids.npy holds Python objects: refused"):
        load_disk_dataset(folder)
    (folder / "metadata.joblib").write_bytes(b"\x80\x04")
    with pytest.raises(InputError, match="metadata.joblib, a pickle: refused"):
        load_disk_dataset(folder)
    with pytest.raises(InputError, match=f"no {NAMES_FILE}"):
        load_disk_dataset(tmp_path)


def test_loader_fits_an_unfitted_featurizer_on_the_reference_then_featurizes_queries(files):
    featurizer = ScRNAFeaturizer()
    loader = ScRNALoader(featurizer=featurizer, sparse=True)
    reference = loader.create_dataset(files["reference"], files["labels"])
    assert featurizer.genes_ is not None
    expected = ScRNAFeaturizer().fit(read_counts(files["reference"]))
    assert featurizer.genes_.tolist() == expected.genes_.tolist()
    assert reference.genes.tolist() == featurizer.genes_.tolist()
    np.testing.assert_allclose(reference.X.toarray(),
                               expected.transform(read_counts(files["reference"])), rtol=1e-6)
    genes = featurizer.genes_.copy()
    query = loader.create_dataset(files["query"])  # the fitted featurizer is only applied
    assert featurizer.genes_.tolist() == genes.tolist()
    np.testing.assert_allclose(query.X.toarray(), featurizer.transform(
        read_counts(files["query"])), rtol=1e-6)


def test_model_trains_on_a_loader_disk_dataset_with_unknown_types(files, fitted, tmp_path):
    with pytest.warns(UserWarning, match="types the model does not know"):
        disk = ScRNALoader(classes=["t0", "t1"], featurizer=fitted).create_dataset(
            files["reference"], files["labels"], data_dir=os.fspath(tmp_path / "d"),
            shard_size=16)
    assert (disk.y == -1).sum() == 20 and (disk.w[disk.y == -1] == 0).all()
    model = ACTINNModel(len(fitted.genes_), 2, batch_size=16, learning_rate=1e-2)
    loss = model.fit(disk, nb_epoch=2, checkpoint_interval=0)
    assert np.isfinite(loss)
    assert model.predict_proba(disk).shape == (N_CELLS, 2)


# ---------------------------------------------------------------------------
# 3. Sparse datasets through DeepChem's APIs
# ---------------------------------------------------------------------------


def _dense_rows(dataset, ids):
    order = {c: i for i, c in enumerate(dataset.ids)}
    return dataset.X.toarray()[[order[c] for c in ids]]


def test_deepchem_random_k_fold_on_a_sparse_dataset(sparse_cells):
    folds = dc.splits.RandomSplitter().k_fold_split(sparse_cells, 3)
    assert len(folds) == 3
    cv_ids = np.concatenate([cv.ids for _, cv in folds])
    assert sorted(cv_ids) == sorted(sparse_cells.ids)
    for train, cv in folds:
        assert len(train) + len(cv) == N_CELLS
        assert not set(train.ids) & set(cv.ids)
        np.testing.assert_array_equal(cv.X, _dense_rows(sparse_cells, cv.ids))


def test_stratified_k_fold_keeps_sparse_datasets_and_types(sparse_cells):
    folds = StratifiedSplitter().k_fold_split(sparse_cells, 3, seed=0)
    assert sorted(np.concatenate([cv.ids for _, cv in folds])) == sorted(sparse_cells.ids)
    for train, cv in folds:
        for part in (train, cv):
            assert isinstance(part, SparseCellDataset) and sp.issparse(part.X)
            assert part.genes.tolist() == sparse_cells.genes.tolist()
            assert part.classes.tolist() == sparse_cells.classes.tolist()
        # 20 cells of each type dealt over 3 folds: 6 or 7 of each in every fold.
        assert len(cv) == 20 and sorted(np.bincount(cv.y.ravel()).tolist()) == [6, 7, 7]
        assert np.array_equal(cv.X.toarray(), _dense_rows(sparse_cells, cv.ids))
    dense_folds = StratifiedSplitter().k_fold_split(sparse_cells.to_dense(), 3, seed=0)
    assert all(isinstance(cv, CellDataset) and cv.ids.tolist() == s.ids.tolist()
               for (_, cv), (_, s) in zip(dense_folds, folds, strict=True))


def test_stratified_k_fold_refusals(sparse_cells):
    with pytest.raises(ValueError, match="k must be between 2 and the number of cells"):
        StratifiedSplitter().k_fold_split(sparse_cells, 1)
    lonely = SparseCellDataset(np.eye(3), np.array([[0], [0], [1]]), classes=["A", "B"])
    with pytest.raises(InputError, match="cell type 'B' has a single cell"):
        StratifiedSplitter().k_fold_split(lonely, 2)


def test_densifying_beyond_the_limit_is_refused_in_one_line(sparse_cells, monkeypatch):
    np.testing.assert_array_equal(np.asarray(sparse_cells.X), sparse_cells.X.toarray())
    monkeypatch.setattr(data_module, "DENSE_VALUES_LIMIT", 100)
    with pytest.raises(ValueError, match=r"densifying 60 cells x 120 genes would take") as caught:
        dc.splits.RandomSplitter().k_fold_split(sparse_cells, 3)
    assert "\n" not in str(caught.value) and "keep them sparse" in str(caught.value)
    assert len(StratifiedSplitter().k_fold_split(sparse_cells, 3)) == 3  # never densifies


def test_merge(sparse_cells):
    dense = sparse_cells.to_dense()
    merged = SparseCellDataset.merge([sparse_cells.select([0, 1]), dense.select([2])])
    assert isinstance(merged, SparseCellDataset) and merged.ids.tolist() == ["cell0", "cell1",
                                                                              "cell2"]
    np.testing.assert_array_equal(merged.X.toarray(), dense.X[:3])
    assert merged.genes.tolist() == dense.genes.tolist()
    assert merged.y.ravel().tolist() == dense.y.ravel()[:3].tolist()
    # Unlabelled cells among labelled ones: y -1, weight 0.
    unlabelled = SparseCellDataset(dense.X[:2], ids=["u1", "u2"], genes=dense.genes,
                                   classes=dense.classes)
    mixed = SparseCellDataset.merge([sparse_cells.select([0]), unlabelled])
    assert mixed.y.ravel().tolist()[1:] == [-1, -1] and mixed.w.ravel().tolist()[1:] == [0, 0]
    with pytest.raises(ValueError, match="dataset 1 has other genes than dataset 0"):
        SparseCellDataset.merge([sparse_cells, SparseCellDataset(np.eye(2))])
    # DeepChem's own merge of CellDatasets keeps working (a NumpyDataset); CellDataset.merge
    # keeps the names.
    numpy_merged = dc.data.NumpyDataset.merge([dense, dense.select([0])])
    assert type(numpy_merged) is dc.data.NumpyDataset and len(numpy_merged) == N_CELLS + 1
    np.testing.assert_array_equal(numpy_merged.X[-1], dense.X[0])
    cells = CellDataset.merge([dense, dense.select([0])])
    assert isinstance(cells, CellDataset) and cells.classes.tolist() == dense.classes.tolist()
    assert cells.ids.tolist()[-1] == "cell0"
    # DeepChem's DiskDataset.merge takes a sparse dataset too (dense shards).
    on_disk = dc.data.DiskDataset.merge([sparse_cells.select([0, 1])])
    np.testing.assert_array_equal(on_disk.X, dense.X[:2])


def test_to_dataframe(sparse_cells):
    frame = sparse_cells.to_dataframe()
    genes = sparse_cells.genes.tolist()
    assert frame.columns.tolist() == genes + ["y", "w", "ids"]
    assert isinstance(frame[genes[0]].dtype, pd.SparseDtype)
    np.testing.assert_array_equal(frame[genes].sparse.to_dense().to_numpy(),
                                  sparse_cells.X.toarray())
    reference = sparse_cells.to_dense().to_dataframe()  # NumpyDataset's: X1..Xn, y, w, ids
    for column in ("y", "w", "ids"):
        assert frame[column].tolist() == reference[column].tolist()


@pytest.mark.parametrize("batch_size", [None, 7])
@pytest.mark.parametrize("deterministic", [False, True])
def test_make_pytorch_dataset_yields_what_numpy_dataset_does(sparse_cells, batch_size,
                                                               deterministic):
    ours = list(sparse_cells.make_pytorch_dataset(epochs=2, deterministic=deterministic,
                                                  batch_size=batch_size))
    theirs = list(sparse_cells.to_dense().make_pytorch_dataset(
        epochs=2, deterministic=deterministic, batch_size=batch_size))
    assert len(ours) == len(theirs) == (2 * N_CELLS if batch_size is None else 2 * 9)
    for mine, expected in zip(ours, theirs, strict=True):
        assert isinstance(mine[0], np.ndarray) and mine[0].shape == expected[0].shape
        np.testing.assert_array_equal(mine[0], expected[0])
        np.testing.assert_array_equal(mine[1], expected[1])
        np.testing.assert_array_equal(mine[2], expected[2])
        assert np.asarray(mine[3]).tolist() == np.asarray(expected[3]).tolist()


def test_make_pytorch_dataset_feeds_a_torch_data_loader(sparse_cells):
    loader = torch.utils.data.DataLoader(
        sparse_cells.make_pytorch_dataset(deterministic=True, batch_size=16), batch_size=None)
    X = torch.cat([batch[0] for batch in loader])
    np.testing.assert_array_equal(X.numpy(), sparse_cells.X.toarray())


# ---------------------------------------------------------------------------
# 4. Transformers keep genes and classes
# ---------------------------------------------------------------------------


def test_transformers_keep_genes_and_classes(sparse_cells):
    dense = sparse_cells.to_dense()
    for ds in (dense, sparse_cells):
        normalizer = dc.trans.NormalizationTransformer(transform_X=True, dataset=ds)
        out = ds.transform(normalizer)
        assert type(out) is type(ds)
        assert out.genes.tolist() == ds.genes.tolist()
        assert out.classes.tolist() == ds.classes.tolist()
        assert out.y.tolist() == ds.y.tolist() and out.ids.tolist() == ds.ids.tolist()
        expected = dc.data.NumpyDataset(dense.X, dense.y).transform(
            dc.trans.NormalizationTransformer(transform_X=True,
                                              dataset=dc.data.NumpyDataset(dense.X, dense.y)))
        X = out.X.toarray() if sp.issparse(out.X) else out.X
        np.testing.assert_allclose(X, expected.X, rtol=1e-4, atol=1e-5)
    unbalanced = dense.select(np.r_[np.flatnonzero(dense.y == 0), [1]])
    balanced = unbalanced.transform(dc.trans.BalancingTransformer(dataset=unbalanced))
    assert isinstance(balanced, CellDataset) and balanced.y.tolist() == unbalanced.y.tolist()
    assert balanced.w[-1, 0] > balanced.w[0, 0]  # the rare type weighs more


def test_transforming_unlabelled_cells_keeps_them_unlabelled(sparse_cells):
    unlabelled = SparseCellDataset(sparse_cells.X, ids=sparse_cells.ids, genes=sparse_cells.genes)
    for ds in (unlabelled, unlabelled.to_dense()):
        out = ds.transform(dc.trans.NormalizationTransformer(transform_X=True, dataset=ds))
        assert out.y.dtype.kind == "f" and (out.w == 0).all()  # NumpyDataset's unlabelled form


def test_label_transformers_are_refused(sparse_cells):
    for ds in (sparse_cells.to_dense(), sparse_cells):
        with pytest.raises(ValueError, match=r"\.y holds class indices"):
            ds.transform(dc.trans.NormalizationTransformer(transform_y=True, dataset=ds))


# ---------------------------------------------------------------------------
# 5. predict_on_batch on sparse batches; 6. checkpoints that annotate
# ---------------------------------------------------------------------------


# Not the session reference: DeepChem's own fit() must leave checkpoint1.pt in model_dir.
@pytest.fixture(scope="module")
def trained(files, tmp_path_factory):
    """An ACTINN-preset model with its featurizer and classes, checkpointed in model_dir."""
    folder = os.fspath(tmp_path_factory.mktemp("checkpoints"))
    loader = ScRNALoader(featurizer=ScRNAFeaturizer(), sparse=True)
    reference = loader.create_dataset(files["reference"], files["labels"])
    model = ACTINNModel(reference.X.shape[1], reference.n_classes, classes=reference.classes,
                        featurizer=loader.featurizer, model_dir=folder, batch_size=16,
                        learning_rate=1e-2)
    model.fit(reference, nb_epoch=5)  # DeepChem checkpoints at the end of fit
    return model, folder


def test_predict_on_batch_takes_sparse_and_dense_batches(trained, sparse_cells):
    model, _ = trained
    batch = model.featurizer.transform(sparse_cells.to_count_matrix(), sparse_output=True)
    from_sparse = model.predict_on_batch(sp.csr_matrix(batch[:10]))
    from_dense = model.predict_on_batch(batch[:10].toarray())
    assert from_sparse.shape == (10, 1, 3)
    np.testing.assert_array_equal(from_sparse, from_dense)
    np.testing.assert_allclose(from_dense[:, 0], model.predict_proba(batch[:10]), atol=1e-6)


def test_checkpoint_carries_featurizer_and_classes(trained, files):
    model, folder = trained
    path = os.path.join(folder, "checkpoint1.pt")
    data = torch.load(path, weights_only=True)
    assert json.loads(data["featurizer"]) == model.featurizer.to_dict()
    assert json.loads(data["classes"]) == ["t0", "t1", "t2"]
    fresh = ACTINNModel(model.n_genes, model.n_classes, model_dir=folder)
    assert fresh.featurizer is None and fresh.classes.tolist() == ["0", "1", "2"]
    fresh.restore()
    assert fresh.featurizer.to_dict() == model.featurizer.to_dict()
    assert fresh.classes.tolist() == ["t0", "t1", "t2"]
    expected, result = da.annotate(files["query"], model), da.annotate(files["query"], fresh)
    assert result.labels.tolist() == expected.labels.tolist()
    np.testing.assert_allclose(result.probabilities, expected.probabilities, atol=1e-6)
    # A model that has the same featurizer and classes restores as before.
    same = ACTINNModel(model.n_genes, model.n_classes, classes=model.classes,
                       featurizer=model.featurizer, model_dir=folder)
    same.restore()
    assert same.classes.tolist() == ["t0", "t1", "t2"]


def _tampered(folder, target, name, change):
    """A copy of the latest checkpoint of ``folder`` in ``target``, its ``name`` changed."""
    data = torch.load(os.path.join(folder, "checkpoint1.pt"), weights_only=True)
    data[name] = change(data[name])
    target.mkdir()
    torch.save(data, target / "checkpoint1.pt")
    return os.fspath(target)


def test_checkpoint_featurizer_and_classes_are_checked(trained, tmp_path):
    model, folder = trained

    def duplicate_gene(text):
        state = json.loads(text)
        state["genes"][1] = state["genes"][0]
        return json.dumps(state)

    cases = [
        ("featurizer", duplicate_gene, r"checkpoint: featurizer\.genes: holds .* twice"),
        ("featurizer", lambda text: text[:-5], r"featurizer JSON is not valid JSON"),
        ("featurizer", lambda text: json.dumps({**json.loads(text), "extra": 1}),
         r"checkpoint: featurizer: unknown field 'extra'"),
        ("classes", lambda text: json.dumps(["t0", "t1"]),
         r"checkpoint does not fit this model \(class list does not match n_classes\)"),
        ("classes", lambda text: 5, r"checkpoint: classes: must be JSON text"),
    ]
    for index, (name, change, message) in enumerate(cases):
        target = _tampered(folder, tmp_path / f"case{index}", name, change)
        fresh = ACTINNModel(model.n_genes, model.n_classes, model_dir=target)
        with pytest.raises(ModelFileError, match=message) as caught:
            fresh.restore()
        assert "\n" not in str(caught.value)
        assert fresh.featurizer is None and fresh.get_global_step() == 0  # nothing changed


def test_checkpoint_of_other_classes_or_genes_is_refused(trained):
    model, folder = trained
    other = ACTINNModel(model.n_genes, model.n_classes, classes=["a", "b", "c"],
                        model_dir=folder)
    with pytest.raises(ModelFileError, match="other class names"):
        other.restore()
    state = model.featurizer.to_dict()
    state["genes"] = state["genes"][::-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reordered = ScRNAFeaturizer.from_dict(state)
    mismatched = ACTINNModel(model.n_genes, model.n_classes, featurizer=reordered,
                             model_dir=folder)
    with pytest.raises(ModelFileError, match="trained on other genes"):
        mismatched.restore()


def test_count_matrix_is_accepted_by_the_loader(files):
    matrix = CountMatrix(files["counts"], GENES, [f"cell{i}" for i in range(N_CELLS)])
    ds = ScRNALoader().create_dataset([matrix], files["labels"])
    np.testing.assert_array_equal(ds.X, files["counts"])
