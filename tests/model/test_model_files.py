"""Safe model files and resumable training.

Loading never unpickles: a model directory or checkpoint carrying a pickle
payload is refused before anything runs, even when its checksums were
forged. A run resumed from a checkpoint continues the learning-rate
schedule and the batch shuffling exactly where they stopped.
"""

import json
import os
import pickle
import re
import shutil

import deepchem as dc
import numpy as np
import pytest
import torch
from conftest import sha256_file as _sha256
from conftest import synthetic_counts
from deepchem.models.torch_models.torch_model import TorchModel

import deepchem_actinn as da
from deepchem_actinn import cli
from deepchem_actinn.errors import ModelFileError
from deepchem_actinn.model import MODEL_FILE, WEIGHTS_FILE, ACTINNModel, _metadata_digest
from deepchem_actinn.train import Training


class Payload:
    """Unpickling this creates ``marker``: proof that code ran."""

    def __init__(self, marker):
        self.marker = os.fspath(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def saved(reference):
    return reference  # the session's trained reference (conftest)


def forge(folder):
    """Update both checksums, as an attacker who knows the format would."""
    path = os.path.join(folder, MODEL_FILE)
    with open(path) as handle:
        meta = json.load(handle)
    meta["weights_sha256"] = _sha256(os.path.join(folder, WEIGHTS_FILE))
    meta["metadata_sha256"] = _metadata_digest(meta)
    with open(path, "w") as handle:
        json.dump(meta, handle)


def test_payload_works_when_unpickled(tmp_path):
    """The payload is real: plain unpickling does run it."""
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_pickle_payload_in_weights_is_refused(writer, saved, tmp_path, capsys):
    folder = shutil.copytree(saved["model"], tmp_path / "model")
    marker = tmp_path / "pwned"
    weights = os.path.join(folder, WEIGHTS_FILE)
    payload = {"hidden.0.weight": Payload(marker)}
    if writer == "pickle":
        with open(weights, "wb") as handle:
            pickle.dump(payload, handle)
    else:
        torch.save(payload, weights)
    forge(folder)
    refused = r"weights.pt (holds Python objects|is not a PyTorch archive).*could run code"
    with pytest.raises(ModelFileError, match=refused):
        ACTINNModel.load(folder)
    assert not marker.exists()
    with pytest.raises(ModelFileError):
        da.annotate(saved["counts"], folder)
    capsys.readouterr()
    code = cli.main(["predict", "--model-dir", os.fspath(folder), "--test-set", saved["counts"],
                     "--output", os.fspath(tmp_path / "pred.tsv")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and re.search(refused, err[0])
    assert not marker.exists()
    assert not (tmp_path / "pred.tsv").exists()


def test_stray_pickles_in_a_model_directory_are_ignored(saved, tmp_path):
    folder = shutil.copytree(saved["model"], tmp_path / "model")
    marker = tmp_path / "pwned"
    for name in ("model.pkl", "featurizer.pkl", "checkpoint1.pt"):
        with open(os.path.join(folder, name), "wb") as handle:
            pickle.dump(Payload(marker), handle)
    model = ACTINNModel.load(folder)
    result = da.annotate(saved["counts"], model)
    assert len(result) == 60
    assert not marker.exists()


def test_pickle_payload_in_a_checkpoint_is_refused(saved, tmp_path):
    marker = tmp_path / "pwned"
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    torch.save({"model_state_dict": Payload(marker)}, checkpoints / "checkpoint1.pt")
    model = ACTINNModel.load(saved["model"])
    with pytest.raises(ModelFileError, match=r"checkpoint holds Python objects"):
        model.restore(model_dir=os.fspath(checkpoints))
    assert not marker.exists()


def test_pickle_payload_in_a_checkpoint_is_refused_by_train_resume(saved, tmp_path, capsys):
    marker = tmp_path / "pwned"
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    torch.save({"model_state_dict": Payload(marker), "global_step": 1},
               checkpoints / "checkpoint1.pt")
    labels = os.path.join(os.path.dirname(saved["counts"]), "labels.tsv")
    capsys.readouterr()
    code = cli.main(["train", "--train-set", saved["counts"], "--train-labels", labels,
                     "--model-dir", os.fspath(tmp_path / "model"), "--quiet",
                     "--checkpoint-dir", os.fspath(checkpoints), "--resume"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "checkpoint holds Python objects" in err[-1]
    assert sum("error" in line for line in err) == 1
    assert not marker.exists() and not (tmp_path / "model").exists()


def test_restore_errors_are_model_file_errors(saved, tmp_path):
    model = ACTINNModel.load(saved["model"])
    with pytest.raises(ModelFileError, match=r"checkpoint directory not found"):
        model.restore(model_dir=os.fspath(tmp_path / "none"))
    with pytest.raises(ModelFileError, match=r"no checkpoint found"):
        model.restore(model_dir=os.fspath(tmp_path))
    other = ACTINNModel(n_genes=5, n_classes=2, model_dir=os.fspath(tmp_path / "other"))
    other.fit(dc.data.NumpyDataset(np.ones((4, 5), np.float32), np.array([[0], [1], [0], [1]])),
              nb_epoch=1, checkpoint_interval=1)
    with pytest.raises(ModelFileError, match=r"checkpoint does not fit this model"):
        model.restore(model_dir=os.fspath(tmp_path / "other"))


# ---------------------------------------------------------------------------
# Resume
# ---------------------------------------------------------------------------

SETTINGS = dict(n_genes=40, n_classes=3, batch_size=16, decay_steps=3, learning_rate=1e-2, seed=3)


@pytest.fixture(scope="module")
def dataset():
    X, types = synthetic_counts(100, 40, seed=1)
    X = np.log2(X / X.sum(1, keepdims=True) * 1e4 + 1).astype(np.float32)
    return dc.data.NumpyDataset(X, types.reshape(-1, 1))


def expected_rate(step):
    return 1e-2 * 0.95 ** (step // 3)


def test_learning_rate_after_restore(dataset, tmp_path):
    model = ACTINNModel(model_dir=os.fspath(tmp_path), **SETTINGS)
    model.fit(dataset, nb_epoch=3, checkpoint_interval=5)  # 7 steps per epoch
    assert model.get_global_step() == 21
    assert model.current_learning_rate() == pytest.approx(expected_rate(21))
    fresh = ACTINNModel(model_dir=os.fspath(tmp_path), **SETTINGS)
    assert fresh.current_learning_rate() == pytest.approx(1e-2)
    fresh.restore()  # latest checkpoint: the one fit() writes at its end
    assert fresh.get_global_step() == 21
    assert fresh.current_learning_rate() == pytest.approx(expected_rate(21))
    # An older checkpoint puts the schedule at its own step.
    older = ACTINNModel(model_dir=os.fspath(tmp_path), **SETTINGS)
    older.restore(checkpoint=os.path.join(tmp_path, "checkpoint2.pt"))
    step = older.get_global_step()
    assert 0 < step < 21
    assert older.current_learning_rate() == pytest.approx(expected_rate(step))
    # Training on continues the decay from there, not from step 0.
    fresh.fit(dataset, nb_epoch=1, checkpoint_interval=0)
    assert fresh.get_global_step() == 28
    assert fresh.current_learning_rate() == pytest.approx(expected_rate(28))


def test_resumed_run_matches_an_unbroken_one(dataset, tmp_path):
    unbroken = ACTINNModel(**SETTINGS)
    unbroken.fit(dataset, nb_epoch=6, checkpoint_interval=0)
    first = ACTINNModel(model_dir=os.fspath(tmp_path), **SETTINGS)
    first.fit(dataset, nb_epoch=3, checkpoint_interval=100)
    resumed = ACTINNModel(model_dir=os.fspath(tmp_path), **SETTINGS)
    resumed.fit(dataset, nb_epoch=3, restore=True, checkpoint_interval=0)
    assert resumed.get_global_step() == unbroken.get_global_step() == 42
    assert resumed.current_learning_rate() == pytest.approx(unbroken.current_learning_rate())
    for name, tensor in unbroken.model.state_dict().items():
        assert torch.allclose(tensor, resumed.model.state_dict()[name], atol=1e-6), name
    accuracy = [float((m.predict_proba(dataset).argmax(1) == dataset.y.ravel()).mean())
                for m in (unbroken, resumed)]
    assert accuracy[0] == accuracy[1] > 0.9


def test_resume_from_a_deepchem_checkpoint_without_shuffle_state(dataset, tmp_path):
    """Older checkpoints (DeepChem's own format) still resume, at the right step."""
    first = ACTINNModel(model_dir=os.fspath(tmp_path), **SETTINGS)
    first.fit(dataset, nb_epoch=3, checkpoint_interval=0)
    TorchModel.save_checkpoint(first, model_dir=os.fspath(tmp_path))
    data = torch.load(tmp_path / "checkpoint1.pt", weights_only=True)
    assert "shuffle_rng_state" not in data
    resumed = ACTINNModel(model_dir=os.fspath(tmp_path), **SETTINGS)
    resumed.fit(dataset, nb_epoch=3, restore=True, checkpoint_interval=0)
    assert resumed.get_global_step() == 42
    assert resumed.current_learning_rate() == pytest.approx(expected_rate(42))
    accuracy = float((resumed.predict_proba(dataset).argmax(1) == dataset.y.ravel()).mean())
    assert accuracy > 0.9


def test_cli_resume_after_an_interrupted_run(saved, tmp_path, capsys, monkeypatch):
    """`train --checkpoint-dir C` stopped midway, then `--resume`: the unbroken run's model."""
    labels = os.path.join(os.path.dirname(saved["counts"]), "labels.tsv")
    common = ["train", "--train-set", saved["counts"], "--train-labels", labels, "--epochs", "4",
              "--batch-size", "16", "--learning-rate", "1e-3", "--quiet"]  # 4 steps per epoch
    assert cli.main(common + ["--model-dir", os.fspath(tmp_path / "unbroken")]) == 0

    def stop_at_step_10(model, step):
        if model.get_global_step() >= 10:
            raise KeyboardInterrupt

    unpatched = Training.fit

    def fit(training, callbacks=[], progress=None):  # what cmd_train calls, interrupted
        return unpatched(training, [stop_at_step_10], progress)

    checkpoints = os.fspath(tmp_path / "checkpoints")
    with monkeypatch.context() as patch:
        patch.setattr(Training, "fit", fit)
        code = cli.main(common + ["--model-dir", os.fspath(tmp_path / "broken"),
                                  "--checkpoint-dir", checkpoints])
    assert code == 130 and not (tmp_path / "broken").exists()
    assert sorted(os.listdir(checkpoints)) == ["checkpoint1.pt", "checkpoint2.pt"]
    capsys.readouterr()
    assert cli.main(common + ["--model-dir", os.fspath(tmp_path / "resumed"),
                              "--checkpoint-dir", checkpoints, "--resume"]) == 0
    assert "resumed from step 8 (epoch 2); 2 epochs left" in capsys.readouterr().err
    unbroken = ACTINNModel.load(tmp_path / "unbroken")
    resumed = ACTINNModel.load(tmp_path / "resumed")
    assert resumed.get_global_step() == unbroken.get_global_step() == 16
    for name, tensor in unbroken.model.state_dict().items():
        assert torch.allclose(tensor, resumed.model.state_dict()[name], atol=1e-6), name


def test_cli_resume_needs_checkpoints(saved, tmp_path, capsys):
    labels = os.path.join(os.path.dirname(saved["counts"]), "labels.tsv")
    common = ["train", "--train-set", saved["counts"], "--train-labels", labels, "--quiet",
              "--model-dir", os.fspath(tmp_path / "m"), "--resume"]
    for extra, message in (([], "--resume needs --checkpoint-dir"),
                           (["--checkpoint-dir", os.fspath(tmp_path)], "no checkpoint found")):
        capsys.readouterr()
        assert cli.main(common + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0]
    assert os.listdir(tmp_path) == []


def test_a_file_from_before_an_option_loads_with_the_option_off(saved, tmp_path):
    folder = shutil.copytree(saved["model"], tmp_path / "model")
    path = os.path.join(folder, MODEL_FILE)
    with open(path) as handle:
        meta = json.load(handle)
    assert meta["hyperparameters"].pop("gene_dropout") == 0.5  # the transfer preset's
    with open(path, "w") as handle:
        json.dump(meta, handle)
    forge(folder)
    old = ACTINNModel.load(folder)
    assert old.settings["gene_dropout"] == 0.0 and old.model.gene_dropout == 0.0
    now = ACTINNModel.load(saved["model"])
    np.testing.assert_array_equal(da.annotate(saved["counts"], old).labels,
                                  da.annotate(saved["counts"], now).labels)
