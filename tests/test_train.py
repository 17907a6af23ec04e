"""One training pipeline: every option means the same in memory, out of core and distributed."""

import contextlib
import os
import socket
import warnings

import numpy as np
import pandas as pd
import pytest
import torch.distributed as dist
from conftest import synthetic_counts, write_labels

import deepchem_actinn.train as train_module
from deepchem_actinn import cli
from deepchem_actinn.distributed import main as distributed_main
from deepchem_actinn.distributed import train_distributed
from deepchem_actinn.errors import InputError
from deepchem_actinn.io import CountMatrix, write_counts
from deepchem_actinn.model import DEFAULT_PRESET, ACTINNModel
from deepchem_actinn.train import train_reference, train_streaming

#: The options every path takes (gene selection overrides: the Python paths only).
OPTIONS = {"preset": "robust", "epochs": 2, "batch_size": 32, "learning_rate": 3e-3,
           "seed": 7, "min_gene_overlap": 0.5}
SELECTION = {"low_percentile": 2.0, "high_percentile": 97.0, "exclude_genes": "GENE1[0-9]$"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """200 cells of 3 types as a 10x HDF5 file (streamed by out-of-core and distributed)."""
    folder = tmp_path_factory.mktemp("pipeline")
    counts, types = synthetic_counts(n_cells=200, n_genes=150)
    cells = [f"cell{i}" for i in range(len(types))]
    genes = [f"GENE{i}" for i in range(counts.shape[1])]
    path = os.fspath(folder / "cells.h5")
    write_counts(CountMatrix(counts.astype(np.float32), np.asarray(genes, dtype=object),
                             np.asarray(cells, dtype=object), "<memory>"), path, "10x-h5")
    labels = write_labels(folder / "labels.tsv",
                          {c: f"type{t}" for c, t in zip(cells, types, strict=True)})
    return {"counts": path, "labels": labels, "folder": folder}


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


@contextlib.contextmanager
def world_of_one(monkeypatch):
    """The environment ``torchrun`` sets, for one rank in this process."""
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", _free_port())
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield


def saved_settings(model):
    """What a saved model records of its training options."""
    return model.hyperparameters, model.featurizer.to_dict()


def test_python_paths_save_the_same_settings(reference, tmp_path, monkeypatch):
    options = {**OPTIONS, **SELECTION}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        in_memory = train_reference(reference["counts"], reference["labels"], device="cpu",
                                    **options)
        out_of_core = train_streaming(reference["counts"], reference["labels"],
                                      tmp_path / "shards", device="cpu", **options)
        with world_of_one(monkeypatch):
            dist.init_process_group("gloo")
            try:
                saved = train_distributed(reference["counts"], reference["labels"],
                                          os.fspath(tmp_path / "ddp"), device="cpu",
                                          work_dir=os.fspath(tmp_path / "work"), **options)
            finally:
                dist.destroy_process_group()
    distributed = ACTINNModel.load(saved)
    expected = saved_settings(in_memory)
    assert expected[0]["preset"] == "robust" and expected[0]["epochs"] == 2
    assert expected[0]["batch_size"] == 32 and expected[0]["learning_rate"] == 3e-3
    assert expected[0]["seed"] == 7 and expected[0]["low_percentile"] == 2.0
    assert expected[1]["min_gene_overlap"] == 0.5 and expected[1]["high_percentile"] == 97.0
    assert "GENE12" not in expected[1]["input_genes"]
    assert saved_settings(out_of_core) == expected
    assert saved_settings(distributed) == expected


def test_every_path_trains_the_same_number_of_steps(reference, tmp_path, monkeypatch):
    # One epoch of 4 steps asked for, raised by min_steps=10 to 3 epochs (12 steps) everywhere.
    options = {"epochs": 1, "min_steps": 10, "batch_size": 64, "preset": "transfer"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        in_memory = train_reference(reference["counts"], reference["labels"], device="cpu",
                                    **options)
        out_of_core = train_streaming(reference["counts"], reference["labels"],
                                      tmp_path / "shards", device="cpu", **options)
    assert in_memory.steps_per_epoch(200) == 4
    assert in_memory._global_step == 12
    assert out_of_core._global_step == 12


def test_balanced_class_weights_are_the_same_on_every_path(reference, tmp_path, monkeypatch):
    """class_weight="balanced" (the transfer mode's) weighs by the training cells per type,
    in memory, out of core and distributed alike (only in-memory training applied it)."""
    labels = pd.read_csv(reference["labels"], sep="\t", header=None, index_col=0).iloc[:, 0]
    counts = labels.value_counts().sort_index().to_numpy(dtype=float)
    expected = counts.sum() / (len(counts) * counts)
    assert not np.allclose(expected, 1.0)  # the types are unbalanced here
    options = {"epochs": 1, "class_weight": "balanced", "device": "cpu"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        in_memory = train_reference(reference["counts"], reference["labels"], **options)
        out_of_core = train_streaming(reference["counts"], reference["labels"],
                                      tmp_path / "shards", **options)
        built = []  # train_distributed builds its models with train.build_model
        original = train_module.build_model

        def keep(*args, **kwargs):
            built.append(original(*args, **kwargs))
            return built[-1]

        monkeypatch.setattr(train_module, "build_model", keep)
        with world_of_one(monkeypatch):
            dist.init_process_group("gloo")
            try:
                train_distributed(reference["counts"], reference["labels"],
                                  os.fspath(tmp_path / "ddp"),
                                  work_dir=os.fspath(tmp_path / "work"), **options)
            finally:
                dist.destroy_process_group()
    trained = built[0]  # the rank's training model (the second is the copy it saves)
    for model in (in_memory, out_of_core, trained):
        np.testing.assert_allclose(model._class_weights, expected)


def test_command_lines_save_the_same_settings(reference, tmp_path, monkeypatch):
    argv = ["--train-set", reference["counts"], "--train-labels", reference["labels"],
            "--preset", OPTIONS["preset"], "--epochs", str(OPTIONS["epochs"]),
            "--batch-size", str(OPTIONS["batch_size"]),
            "--learning-rate", str(OPTIONS["learning_rate"]), "--seed", str(OPTIONS["seed"]),
            "--min-overlap", str(OPTIONS["min_gene_overlap"]), "--device", "cpu"]
    assert cli.main(["train", *argv, "--model-dir", os.fspath(tmp_path / "memory"),
                     "--quiet"]) == 0
    assert cli.main(["train", *argv, "--model-dir", os.fspath(tmp_path / "streamed"),
                     "--out-of-core", os.fspath(tmp_path / "shards"), "--quiet"]) == 0
    with world_of_one(monkeypatch):
        assert distributed_main([*argv, "--model-dir", os.fspath(tmp_path / "ddp"),
                                 "--work-dir", os.fspath(tmp_path / "work")]) == 0
    expected = saved_settings(ACTINNModel.load(tmp_path / "memory"))
    assert expected[0]["preset"] == "robust" and expected[1]["min_gene_overlap"] == 0.5
    assert saved_settings(ACTINNModel.load(tmp_path / "streamed")) == expected
    assert saved_settings(ACTINNModel.load(tmp_path / "ddp")) == expected


def test_distributed_defaults_to_the_cli_preset(reference, tmp_path, monkeypatch):
    with world_of_one(monkeypatch):
        assert distributed_main(["--train-set", reference["counts"], "--train-labels",
                                 reference["labels"], "--model-dir", os.fspath(tmp_path / "m"),
                                 "--epochs", "1", "--device", "cpu"]) == 0
    assert ACTINNModel.load(tmp_path / "m").preset == DEFAULT_PRESET


def test_distributed_refuses_a_single_cell_type(reference, tmp_path, monkeypatch, capsys):
    one = write_labels(tmp_path / "one.tsv", {f"cell{i}": "B cell" for i in range(200)})
    with world_of_one(monkeypatch):
        assert distributed_main(["--train-set", reference["counts"], "--train-labels", one,
                                 "--model-dir", os.fspath(tmp_path / "m"), "--epochs", "1",
                                 "--device", "cpu"]) == 2
    assert "single cell type ('B cell')" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_every_path_drops_zero_count_cells_with_a_warning(reference, tmp_path):
    """The same warning in memory and out of core."""
    counts, types = synthetic_counts(n_cells=60, n_genes=80)
    counts[:3] = 0
    cells = np.asarray([f"c{i}" for i in range(60)], dtype=object)
    path = os.fspath(tmp_path / "zeros.h5")
    write_counts(CountMatrix(counts.astype(np.float32),
                             np.asarray([f"G{i}" for i in range(80)], dtype=object), cells,
                             "<memory>"), path, "10x-h5")
    labels = write_labels(tmp_path / "l.tsv", {c: f"t{t}" for c, t in
                                               zip(cells, types, strict=True)})
    with pytest.warns(UserWarning, match="dropped 3 training cells with zero counts"):
        train_reference(path, labels, epochs=1, device="cpu")
    with pytest.warns(UserWarning, match="dropped 3 training cells with zero counts"):
        train_streaming(path, labels, tmp_path / "s", epochs=1, device="cpu")
    with pytest.raises(InputError, match="single cell type"):
        train_streaming(path, write_labels(tmp_path / "one.tsv", {c: "x" for c in cells}),
                        tmp_path / "s2", epochs=1)
