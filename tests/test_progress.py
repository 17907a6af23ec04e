"""Progress bars: epochs with loss (and validation accuracy) and an ETA, every pass of
--out-of-core, on stderr only when asked or when someone is watching."""

import io
import os
import re
import sys
import warnings

import numpy as np
import pytest
import tqdm.std
from conftest import synthetic_counts, write_labels

from deepchem_actinn import cli
from deepchem_actinn.io import CountMatrix, write_counts
from deepchem_actinn.progress import TrainingProgress, _tqdm, wanted
from deepchem_actinn.train import prepare, train_reference, train_streaming

#: 200 cells in batches of 32: 7 steps an epoch.
CELLS, BATCH, EPOCHS = 200, 32, 2
STEPS = EPOCHS * -(-CELLS // BATCH)
LOSS = re.compile(r"loss=(\d+\.\d{4})")


# Data only, no model: the tests train themselves, since training's progress is what they check.
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """200 cells of 3 types as a 10x HDF5 file (streamable) and their labels."""
    folder = tmp_path_factory.mktemp("progress")
    counts, types = synthetic_counts(n_cells=CELLS, n_genes=60)
    cells = np.asarray([f"cell{i}" for i in range(CELLS)], dtype=object)
    genes = np.asarray([f"GENE{i}" for i in range(counts.shape[1])], dtype=object)
    path = os.fspath(folder / "cells.h5")
    write_counts(CountMatrix(counts.astype(np.float32), genes, cells, "<memory>"), path, "10x-h5")
    labels = write_labels(folder / "labels.tsv",
                          {c: f"type{t}" for c, t in zip(cells, types, strict=True)})
    return {"counts": path, "labels": labels}


SETTINGS = {"epochs": EPOCHS, "batch_size": BATCH, "learning_rate": 1e-3, "device": "cpu"}


def quietly(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args, **kwargs)


def test_forced_on_shows_epochs_and_the_loss_on_stderr(data, capsys):
    model = quietly(train_reference, data["counts"], data["labels"], progress=True, **SETTINGS)
    out, err = capsys.readouterr()
    assert out == ""  # stdout may carry results: never a bar
    assert f"epoch {EPOCHS}/{EPOCHS}" in err and f"{STEPS}/{STEPS}" in err
    # The last epoch's mean of the batch losses DeepChem computed.
    _, count = model.batch_loss_totals()
    assert count == STEPS and float(LOSS.findall(err)[-1]) > 0


def test_validation_accuracy_is_shown_with_a_validation_split(data, capsys):
    training = quietly(prepare, data["counts"], data["labels"], validation_fraction=0.2,
                       **SETTINGS)
    quietly(training.fit, progress=True)
    err = capsys.readouterr().err
    shown = re.findall(r"valid_acc=(\d\.\d{4})", err)
    assert shown and float(shown[-1]) == pytest.approx(training.history.valid_accuracy[-1],
                                                       abs=1e-4)


@pytest.mark.parametrize("progress", [False, None])  # None: stderr is not a terminal here
def test_off_or_not_interactive_prints_nothing(data, tmp_path, capsys, progress):
    quietly(train_reference, data["counts"], data["labels"], progress=progress, **SETTINGS)
    quietly(train_streaming, data["counts"], data["labels"], tmp_path / "shards",
            progress=progress, **SETTINGS)
    assert capsys.readouterr() == ("", "")


def test_interactive_means_a_terminal_or_a_jupyter_kernel(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert wanted(True) and not wanted(False)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert not wanted(None)
    monkeypatch.setattr(sys, "stderr", None)  # pythonw: no stderr at all
    assert not wanted(None)
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert wanted(None)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.setitem(sys.modules, "ipykernel", sys)  # any module: a kernel is running
    assert wanted(None)
    monkeypatch.setenv("TQDM_DISABLE", "1")  # tqdm's switch turns the default off ...
    assert not wanted(None) and wanted(True)  # ... not an explicit request
    monkeypatch.delenv("TQDM_DISABLE")
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # importing it fails
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no tqdm.auto warning to install ipywidgets
        assert _tqdm() is tqdm.std.tqdm


def test_the_bar_shows_each_epochs_mean_loss_and_counts_on_after_a_resume(capsys):
    class Model:
        losses = [1.0, 1.0, 3.0, 5.0]  # two epochs of two steps: means 1 and 4
        seen = 0

        def batch_loss_totals(self):
            return float(sum(self.losses[:self.seen])), self.seen

    model = Model()
    bar = TrainingProgress(2, 2, first_step=4, progress=True)  # 2 epochs done before
    for step in range(4):
        model.seen += 1
        bar(model, 5 + step)
        if step == 1:
            assert "epoch 3/4" in str(bar.bar) and "loss=1.0000" in str(bar.bar)
    bar.close()
    err = capsys.readouterr().err
    assert "epoch 4/4" in err and LOSS.findall(err)[-1] == "4.0000" and "| 4/4 [" in err


def test_cli_train_shows_epochs_and_loss_unless_quiet(data, tmp_path, capsys):
    argv = ["train", "--train-set", data["counts"], "--train-labels", data["labels"],
            "--epochs", str(EPOCHS), "--batch-size", str(BATCH), "--device", "cpu"]
    assert quietly(cli.main, [*argv, "--model-dir", os.fspath(tmp_path / "a")]) == 0
    out, err = capsys.readouterr()
    assert f"epoch {EPOCHS}/{EPOCHS}" in err and LOSS.search(err) and f"{STEPS}/{STEPS}" in err
    assert "%|" not in out and "loss=" not in out and "model saved" in out
    assert quietly(cli.main, [*argv, "--model-dir", os.fspath(tmp_path / "b"), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert not re.search(r"epoch \d+/\d+", err) and "%|" not in err and "loss=" not in err


def test_cli_out_of_core_shows_a_bar_per_pass_with_totals(data, tmp_path, capsys):
    assert quietly(cli.main, ["train", "--train-set", data["counts"], "--train-labels",
                              data["labels"], "--model-dir", os.fspath(tmp_path / "m"),
                              "--out-of-core", os.fspath(tmp_path / "shards"), "--epochs",
                              str(EPOCHS), "--batch-size", str(BATCH), "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    lines = err.replace("\r", "\n").splitlines()
    for name in ("gene statistics", "featurizing"):  # pass 1, pass 2: every cell of the file
        assert any(line.startswith(f"{name}: 100%") and f"{CELLS}/{CELLS}" in line
                   for line in lines), err
    # Training: steps per epoch from the cells counted, so a total and an ETA.
    assert any(line.startswith(f"epoch {EPOCHS}/{EPOCHS}: 100%") and f"{STEPS}/{STEPS}" in line
               and LOSS.search(line) for line in lines), err
    assert "%|" not in out


def test_loss_totals_include_values_not_yet_checked():
    """On a GPU the divergence guard checks every 32 steps: the bar still sees every loss."""
    import torch

    from deepchem_actinn.model import _DivergenceGuard

    guard = _DivergenceGuard(lambda value: torch.tensor(value), every=3)
    guard(1.0), guard(2.0)
    assert guard.totals() == (3.0, 2) and len(guard.pending) == 2
    guard(3.0)
    guard.check(None, 3)  # three pending: checked and counted
    guard(4.0)
    assert guard.totals() == (10.0, 4) and len(guard.pending) == 1
