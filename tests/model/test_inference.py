"""One inference path: every prediction goes through model.inference.predict_blocks (ACTINNModel
and a folder loaded for annotation alone), and dense and
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


# Not the session reference: a dense ACTINNModel on a featurised array of 90 cells (blocks
# of 32, 32, 26), fitted directly, with no featurizer or folder.
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


def test_a_folder_loaded_for_annotation_gives_the_models_calls(reference):
    from deepchem_actinn.model import Reference, load_reference

    light = load_reference(reference["model"], device="cpu")
    full = ACTINNModel.load(reference["model"], device="cpu")
    assert isinstance(light, Reference) and light.preset == full.preset == "transfer"
    assert light.classes.tolist() == full.classes.tolist()
    assert light.genes.tolist() == full.genes.tolist()
    assert light.settings == full.settings
    assert "Reference(preset='transfer'" in repr(light)
    from deepchem_actinn.io import read_counts

    X = full.featurizer.transform(read_counts(reference["counts"]))
    for a, b in zip(light.predict_blocks(X), full.predict_blocks(X), strict=True):
        for left, right in zip(a, b, strict=True):
            assert np.array_equal(left, right)
    by_path = annotate(reference["counts"], reference["model"])
    by_model = annotate(reference["counts"], full)
    assert by_path.labels.tolist() == by_model.labels.tolist()
    assert np.array_equal(by_path.probabilities, by_model.probabilities)


def test_predict_runs_without_deepchem(reference, tmp_path):
    """predict needs torch alone (load_reference): DeepChem's import is most of a start."""
    import subprocess
    import sys

    output = tmp_path / "calls.tsv"
    script = ("import sys\n"
              "from deepchem_actinn import cli\n"
              f"assert cli.main(['predict', '--model-dir', {str(reference['model'])!r}, "
              f"'--test-set', {str(reference['counts'])!r}, '--output', {str(output)!r}, "
              "'--device', 'cpu']) == 0\n"
              "print('deepchem loaded', 'deepchem' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("deepchem loaded False"), done.stdout
    calls = pd.read_csv(output, sep="\t", index_col=0)
    expected = annotate(reference["counts"], ACTINNModel.load(reference["model"]))
    assert calls["cell_type"].tolist() == [str(v) for v in expected.labels]
