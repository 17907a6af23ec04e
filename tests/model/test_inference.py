"""One inference path: every prediction goes through ACTINNModel.predict_blocks, and dense and
sparse copies of the same cells get identical numbers from it."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import synthetic_counts

from deepchem_actinn.annotation import annotate
from deepchem_actinn.data import CellDataset, SparseCellDataset
from deepchem_actinn.history import score
from deepchem_actinn.model import ACTINNModel
from deepchem_actinn.train import train_reference


@pytest.fixture(scope="module")
def trained():
    counts, types = synthetic_counts(n_cells=90, n_genes=60)
    X = np.log2(counts.astype(np.float32) + 1)
    X[X < 1.5] = 0  # mostly zeros, as featurised single-cell data
    y = types.reshape(-1, 1)
    model = ACTINNModel(60, 3, epochs=3, batch_size=16, learning_rate=1e-2, device="cpu")
    model.fit(CellDataset(X, y))
    return model, X, y


def test_dense_and_sparse_inputs_give_identical_numbers(trained):
    model, X, y = trained
    dense = list(model.predict_blocks(X, rows=32))
    sparse = list(model.predict_blocks(sp.csr_matrix(X), rows=32))
    assert [len(b[0]) for b in dense] == [32, 32, 26]
    for a, b in zip(dense, sparse, strict=True):
        for left, right in zip(a, b, strict=True):
            assert np.array_equal(left, right)
    dense_set, sparse_set = CellDataset(X, y), SparseCellDataset(sp.csr_matrix(X), y)
    assert np.array_equal(model.predict_proba(dense_set), model.predict_proba(sparse_set))
    assert np.array_equal(model.predict_labels(dense_set), model.predict_labels(sparse_set))
    assert score(model, dense_set) == score(model, sparse_set)
    assert model.fit_temperature(dense_set) == model.fit_temperature(sparse_set)
    assert model.model.training  # put back in training mode after each block


def test_every_caller_goes_through_predict_blocks(trained, monkeypatch):
    model, X, y = trained
    calls = []
    original = ACTINNModel.predict_blocks

    def spy(self, data, rows=None):
        calls.append(type(data).__name__)
        return original(self, data, rows)

    monkeypatch.setattr(ACTINNModel, "predict_blocks", spy)
    dataset = CellDataset(X, y)
    model.predict_proba(dataset)
    score(model, dataset)
    model.fit_temperature(dataset)
    assert len(calls) == 3
    counts, types = synthetic_counts(n_cells=40, n_genes=50)
    frame = pd.DataFrame(counts.T, index=[f"G{i}" for i in range(50)],
                         columns=[f"c{i}" for i in range(40)])
    labels = pd.Series([f"t{t}" for t in types], index=frame.columns)
    reference = train_reference(frame, labels, epochs=1, device="cpu")
    calls.clear()
    annotate(frame, reference)
    assert len(calls) == 1
