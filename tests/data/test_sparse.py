"""Sparse path: SparseCellDataset, the sparse first layer, equality with the dense path."""

import platform
import subprocess
import sys

import deepchem as dc
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from deepchem_actinn.data import (
    CellDataset,
    ScRNALoader,
    SparseCellDataset,
    StratifiedSplitter,
    featurize_sparse,
)
from deepchem_actinn.model import ACTINNModel, GeneLinear
from deepchem_actinn.model.network import sparse_linear, to_torch_csr
from deepchem_actinn.preprocessing import ScRNAFeaturizer
from deepchem_actinn.train import featurize, train_reference


@pytest.fixture(scope="module")
def raw(samples):
    dense = ScRNALoader().create_dataset(samples.sample_1_counts, samples.sample_1_labels)
    sparse = ScRNALoader(sparse=True).create_dataset(samples.sample_1_counts,
                                                     samples.sample_1_labels)
    return dense, sparse


def test_loader_gives_csr_with_same_content(raw):
    dense, sparse = raw
    assert isinstance(sparse, SparseCellDataset) and sp.isspmatrix_csr(sparse.X)
    assert np.array_equal(sparse.X.toarray(), dense.X)
    assert np.array_equal(sparse.y, dense.y) and np.array_equal(sparse.w, dense.w)
    assert sparse.ids.tolist() == dense.ids.tolist()
    assert sparse.genes.tolist() == dense.genes.tolist()
    assert sparse.classes.tolist() == dense.classes.tolist()
    assert sparse.get_shape() == dense.get_shape()
    assert len(sparse) == len(dense)


def test_dataset_interface(raw):
    dense, sparse = raw
    batches = list(sparse.iterbatches(batch_size=300, deterministic=True))
    assert [len(b[0]) for b in batches] == [300, 300, 300, 100]
    assert np.array_equal(np.vstack([b[0] for b in batches]), dense.X)
    assert np.array_equal(np.concatenate([b[3] for b in batches]), dense.ids)
    padded = list(sparse.iterbatches(batch_size=300, deterministic=True, pad_batches=True))
    assert len(padded[-1][0]) == 300
    x0, y0, w0, id0 = next(iter(sparse.itersamples()))
    assert np.array_equal(x0, dense.X[0]) and y0.tolist() == dense.y[0].tolist()
    assert id0 == dense.ids[0]
    mean, std, _, _ = sparse.get_statistics()
    assert np.allclose(mean, dense.X.mean(axis=0), rtol=1e-5)
    assert np.allclose(std, dense.X.std(axis=0), rtol=1e-4)
    assert sparse.to_dense().X.tolist() == dense.X.tolist()


@pytest.mark.parametrize("splitter", [StratifiedSplitter(), dc.splits.RandomSplitter(),
                                      dc.splits.IndexSplitter()])
def test_deepchem_splitters_keep_sparse_datasets(raw, splitter):
    dense, sparse = raw
    parts = splitter.train_valid_test_split(sparse, frac_train=0.8, frac_valid=0.1,
                                            frac_test=0.1, seed=1)
    dense_parts = splitter.train_valid_test_split(dense, frac_train=0.8, frac_valid=0.1,
                                                  frac_test=0.1, seed=1)
    assert sum(len(p) for p in parts) == len(sparse)
    for part, dense_part in zip(parts, dense_parts, strict=True):
        assert isinstance(part, SparseCellDataset) and sp.isspmatrix_csr(part.X)
        assert part.classes.tolist() == sparse.classes.tolist()
        assert part.ids.tolist() == dense_part.ids.tolist()
        assert np.array_equal(part.X.toarray(), dense_part.X)


def test_sparse_linear_matches_dense_values_and_gradients():
    rng = np.random.default_rng(0)
    X = sp.random(37, 50, density=0.1, format="csr", dtype=np.float32, random_state=rng)
    X = sp.csr_matrix(sp.diags((np.arange(37) != 5).astype(np.float32)) @ X)  # row 5 empty
    assert X[5].nnz == 0
    layer = GeneLinear(50, 7, torch.Generator().manual_seed(0))
    with torch.no_grad():
        layer.bias.uniform_(-1, 1)
    reference = torch.nn.Linear(50, 7)  # the same numbers in nn.Linear's layout
    with torch.no_grad():
        reference.weight.copy_(layer.weight.t())
        reference.bias.copy_(layer.bias)
    out_dense = reference(torch.as_tensor(X.toarray()))
    (out_dense ** 2).sum().backward()
    assert torch.allclose(layer(torch.as_tensor(X.toarray())), out_dense, atol=1e-5)
    grads = [reference.weight.grad.t(), reference.bias.grad]
    out_sparse = sparse_linear(to_torch_csr(X), layer.weight, layer.bias)
    (out_sparse ** 2).sum().backward()
    assert torch.allclose(out_sparse, out_dense, atol=1e-5)
    for grad, param in zip(grads, layer.parameters(), strict=True):
        assert torch.allclose(param.grad, grad, atol=1e-4)


@pytest.mark.parametrize("sparse_batches", [True, False])
def test_training_matches_dense_path(raw, sparse_batches):
    dense, sparse = raw
    featurizer = ScRNAFeaturizer().fit(sparse.to_count_matrix())
    dense_features = featurize(featurizer, dense)
    sparse_features = featurize_sparse(featurizer, sparse)
    sparse_features.sparse_batches = sparse_batches
    assert isinstance(featurize(featurizer, sparse), SparseCellDataset)
    assert np.allclose(sparse_features.X.toarray(), dense_features.X, atol=1e-6)
    probs = []
    for data in (dense_features, sparse_features):
        model = ACTINNModel(len(featurizer.genes_), dense.n_classes, classes=dense.classes,
                            featurizer=featurizer, seed=7, learning_rate=1e-3, device="cpu")
        model.fit(data, nb_epoch=4)
        probs.append(model.predict_proba(data))
        assert model.predict_proba(dense_features).shape == (len(dense), dense.n_classes)
    assert np.allclose(probs[0], probs[1], atol=1e-4)
    assert (probs[0].argmax(axis=1) == probs[1].argmax(axis=1)).all()
    assert (probs[1].argmax(axis=1) == dense.y.ravel()).mean() > 0.9


def test_input_dropout_gives_the_same_model_on_sparse_batches(raw):
    dense, sparse = raw
    featurizer = ScRNAFeaturizer().fit(sparse.to_count_matrix())
    probs = []
    for data in (featurize(featurizer, dense), featurize_sparse(featurizer, sparse)):
        model = ACTINNModel(len(featurizer.genes_), dense.n_classes, input_dropout=0.5,
                            learning_rate=1e-3, seed=3, device="cpu")
        model.fit(data, nb_epoch=2)
        probs.append(model.predict_proba(data))
    assert np.allclose(probs[0], probs[1], atol=1e-4)


def test_train_reference_sparse_saves_a_normal_model(samples, tmp_path):
    # ACTINN's preset: no input dropout, whose masks differ between dense and sparse
    # batches (test_input_dropout_gives_the_same_model_on_sparse_batches).
    kwargs = dict(epochs=3, learning_rate=1e-3, seed=2, device="cpu", preset="actinn")
    sparse_model = train_reference(samples.sample_1_counts, samples.sample_1_labels,
                                   sparse=True, **kwargs)
    dense_model = train_reference(samples.sample_1_counts, samples.sample_1_labels,
                                  sparse=False, **kwargs)
    assert sparse_model.genes.tolist() == dense_model.genes.tolist()
    loaded = ACTINNModel.load(sparse_model.save(tmp_path / "model"))
    cells = ScRNALoader(sparse=True).create_dataset(samples.sample_1_counts)
    features = featurize(loaded.featurizer, cells)
    dense_features = CellDataset(features.X.toarray(), genes=features.genes)
    assert np.allclose(loaded.predict_proba(features), dense_model.predict_proba(dense_features),
                       atol=1e-4)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_reuse_freed_memory_is_applied_once_on_glibc():
    code = ("from deepchem_actinn.tuning import reuse_freed_memory as r; "
            "print(r(), r())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == ["True", "True"]
