"""Numeric options and devices, many cell types, outputs written together (issue 14).

Every numeric option out of range is one error line with exit 2 and nothing
written, and the Python API refuses the same values; thousands of cell types
never need a cells x types matrix; a full disk names the file and leaves
every previous output as it was, with no temporaries.
"""

import errno
import os
import tracemalloc

import matplotlib.figure
import numpy as np
import pandas as pd
import pytest
import scipy.io
import torch
from conftest import one_line_error, write_counts, write_labels
from sklearn.metrics import f1_score, precision_recall_fscore_support

import deepchem_actinn as da
import deepchem_actinn.model.inference as inference_module
from deepchem_actinn import cli
from deepchem_actinn.atomic import atomic_file, atomic_files
from deepchem_actinn.errors import OutputError
from deepchem_actinn.evaluation import evaluation_report
from deepchem_actinn.model import ActinnClassifier, ACTINNModel
from deepchem_actinn.validation import OptionError

# ---------------------------------------------------------------------------
# Numeric options and devices
# ---------------------------------------------------------------------------

TRAIN = ["train", "--train-set", "counts.h5", "--train-labels", "labels.tsv", "--model-dir", "m"]
PREDICT = ["predict", "--model-dir", "m", "--test-set", "counts.h5", "--output", "calls.tsv"]
INTEGER = "must be an integer >= 1"
SEED = "must be an integer in [0, 4294967295]"
RATE = "must be a finite number > 0"


@pytest.mark.parametrize("command, option, value, expected", [
    (TRAIN, "--seed", "-1", f"{SEED}, got -1"),
    (TRAIN, "--seed", "4294967296", f"{SEED}, got 4294967296"),
    (TRAIN, "--seed", "1.5", f"{SEED}, got '1.5'"),
    (TRAIN, "--learning-rate", "nan", f"{RATE}, got nan"),
    (TRAIN, "--learning-rate", "-1", f"{RATE}, got -1.0"),
    (TRAIN, "--learning-rate", "0", f"{RATE}, got 0.0"),
    (TRAIN, "--learning-rate", "inf", f"{RATE}, got inf"),
    (TRAIN, "--learning-rate", "fast", f"{RATE}, got 'fast'"),
    (TRAIN, "--epochs", "0", f"{INTEGER}, got 0"),
    (TRAIN, "--epochs", "2147483648", f"{INTEGER} and <= 2147483647, got 2147483648"),
    (TRAIN, "--epochs", "1e3", f"{INTEGER}, got '1e3'"),
    (TRAIN, "--batch-size", "0", f"{INTEGER}, got 0"),
    (TRAIN, "--batch-size", "-128", f"{INTEGER}, got -128"),
    (TRAIN, "--min-overlap", "1.5", "must be in [0, 1], got 1.5"),
    (TRAIN, "--min-overlap", "nan", "must be in [0, 1], got nan"),
    (TRAIN, "--validation-fraction", "0", "must be in (0, 1), got 0.0"),
    (TRAIN, "--validation-fraction", "1", "must be in (0, 1), got 1.0"),
    (TRAIN, "--validation-fraction", "nan", "must be in (0, 1), got nan"),
    (PREDICT, "--threshold", "1.5", "must be in [0, 1], got 1.5"),
    (PREDICT, "--threshold", "-0.1", "must be in [0, 1], got -0.1"),
    (PREDICT, "--threshold", "nan", "must be in [0, 1], got nan"),
    (PREDICT, "--chunk-cells", "0", f"{INTEGER}, got 0"),
    (PREDICT, "--chunk-cells", "-5", f"{INTEGER}, got -5"),
    (TRAIN, "--device", "gpu", "'gpu' is not a device: use auto, cpu, cuda, cuda:N or mps"),
    (PREDICT, "--device", "meta", "'meta' is not supported"),
])
def test_numeric_option_out_of_range_is_one_line(command, option, value, expected, tmp_path,
                                                 monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    line = one_line_error(capsys, *command, option, value, alone=True)
    assert f"argument {option}: {expected}" in line, line
    assert os.listdir(tmp_path) == []  # refused before reading or writing anything


def test_cuda_without_a_gpu_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for command, device in ((TRAIN, "cuda"), (PREDICT, "cuda:1")):
        line = one_line_error(capsys, *command, "--device", device, alone=True)
        assert f"argument --device: '{device}': no CUDA GPU is available" in line, line
    with pytest.raises(OptionError, match="^device 'cuda': no CUDA GPU is available"):
        ACTINNModel(5, 2, device="cuda")
    assert os.listdir(tmp_path) == []


def test_usage_errors_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    line = one_line_error(capsys, "train", "--train-set", "counts.h5", alone=True)
    # --train-labels is optional (an .h5ad's obs can hold the labels): checked after parsing.
    assert "the following arguments are required: --model-dir" in line
    assert "invalid choice: 'fast'" in one_line_error(capsys, *TRAIN, "--preset", "fast")


@pytest.mark.parametrize("name, value", [
    ("learning_rate", float("nan")), ("learning_rate", -1.0), ("learning_rate", 0.0),
    ("learning_rate", float("inf")), ("batch_size", 0), ("batch_size", 16.5), ("epochs", 0),
    ("epochs", True), ("seed", -1), ("decay_steps", 0), ("decay_rate", 0.0), ("l2", -0.1),
    ("input_dropout", 1.0), ("hidden_sizes", (100, 0, 25)), ("label_smoothing", 1.0),
    ("min_steps", -1), ("n_classes", 0), ("learning_rate", "1e-3"),
])
def test_model_arguments_are_range_checked(name, value):
    arguments = {"n_genes": 5, "n_classes": 2, name: value}
    with pytest.raises(OptionError) as info:
        ACTINNModel(**arguments)
    message = str(info.value)
    assert isinstance(info.value, ValueError) and "\n" not in message
    assert message.startswith(f"{name} must be "), message


def test_model_accepts_numpy_and_integral_values():
    model = ACTINNModel(np.int64(5), 2, batch_size=np.int64(16), decay_steps=1000.0,
                        seed=np.uint32(7), learning_rate=np.float32(1e-3), l2=0)
    assert model.batch_size == 16 and model.seed == 7


def test_python_api_refuses_the_same_values(reference):
    with pytest.raises(OptionError, match="^seed must be an integer"):
        da.train_reference(reference["counts"], reference["labels"], seed=-1, epochs=1)
    for bad in (float("nan"), 1.5):
        with pytest.raises(OptionError, match="^threshold must be in"):
            da.annotate(reference["counts"], reference["model"], threshold=bad)
    with pytest.raises(OptionError, match="^chunk_cells must be an integer >= 1"):
        da.annotate(reference["counts"], reference["model"], chunk_cells=0)


# ---------------------------------------------------------------------------
# Thousands of cell types
# ---------------------------------------------------------------------------


def test_annotate_can_keep_only_the_top_calls(reference):
    full = da.annotate(reference["counts"], reference["model"], threshold=0.5)
    top = da.annotate(reference["counts"], reference["model"], threshold=0.5, probabilities=False)
    assert top.probabilities is None
    assert (top.labels == full.labels).all() and (top.predicted == full.predicted).all()
    np.testing.assert_array_equal(top.probability, full.probability)
    pd.testing.assert_frame_equal(top.to_dataframe(), full.to_dataframe())
    with pytest.raises(ValueError, match="kept no probabilities"):
        top.to_dataframe(probabilities=True)
    adata = top.to_adata()
    assert "actinn_probabilities" not in adata.obsm
    assert adata.obs["actinn_label"].tolist() == full.labels.tolist()


def test_many_types_never_need_a_cells_by_types_matrix(tmp_path, monkeypatch, capsys):
    """One type per cell: train, predict and evaluate in blocks (issue 14, item 7)."""
    n = 3000
    rng = np.random.default_rng(0)
    counts = rng.poisson(1.0, size=(n, 60))
    counts[:, 0] += 1
    path = write_counts(tmp_path / "many.h5", counts)
    labels = write_labels(tmp_path / "many.tsv", {f"cell{i}": f"type{i}" for i in range(n)})
    query = write_counts(tmp_path / "query.h5", counts[:300], cells=[f"cell{i}" for i in
                                                                    range(300)])
    budget = 1 << 18  # probabilities a block: 87 cells at 3000 types, not 3000 x 3000
    monkeypatch.setattr(inference_module, "PREDICT_VALUES", budget)
    blocks = []
    forward = ActinnClassifier.forward

    def spy(self, x):
        out = forward(self, x)
        if not self.training:  # prediction, not a training batch
            blocks.append(out[0].shape[0] * out[0].shape[-1])
        return out

    monkeypatch.setattr(ActinnClassifier, "forward", spy)
    whole = n * n * 4  # bytes of a float32 cells x types matrix

    def peak_bytes(*argv):
        tracemalloc.start()
        try:
            code = cli.main([os.fspath(a) for a in argv])
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert code == 0, capsys.readouterr().err
        return peak

    model = tmp_path / "model"
    train = ("train", "--train-set", path, "--train-labels", labels, "--model-dir", model,
             "--epochs", "1", "--batch-size", "128", "--quiet")
    peak_bytes(*train)  # once first: a process's first run makes one-time allocations
    blocks.clear()
    assert peak_bytes(*train) < whole / 3
    assert "training accuracy" in capsys.readouterr().out
    assert len(blocks) > 1 and max(blocks) <= budget  # the accuracy line, block by block
    blocks.clear()
    calls = tmp_path / "calls.tsv"
    assert peak_bytes("predict", "--model-dir", model, "--test-set", path, "--output",
                      calls) < whole / 3
    assert len(blocks) > 1 and max(blocks) <= budget
    assert len(pd.read_csv(calls, sep="\t")) == n

    # --probabilities: the whole table, written block by block.
    blocks.clear()
    probabilities = tmp_path / "probabilities.tsv"
    assert cli.main(["predict", "--model-dir", os.fspath(model), "--test-set", query, "--output",
                     os.fspath(tmp_path / "query_calls.tsv"), "--probabilities",
                     os.fspath(probabilities)]) == 0
    assert len(blocks) == 4 and max(blocks) <= budget
    table = pd.read_csv(probabilities, sep="\t", index_col=0)
    called = pd.read_csv(tmp_path / "query_calls.tsv", sep="\t", index_col=0)
    assert table.shape == (300, n) and table.index.equals(called.index)
    np.testing.assert_allclose(table.sum(axis=1), 1.0, atol=1e-3)
    assert (table.columns[table.to_numpy().argmax(axis=1)] == called["cell_type"]).all()

    # evaluate: per-type counts, no types x types matrix (72 MB at float64); no plots.
    capsys.readouterr()
    assert peak_bytes("evaluate", "--predictions", calls, "--labels", labels) < whole / 3
    out = capsys.readouterr().out
    assert out.startswith(f"cells\t{n}\n") and out.count("\ntype") == n
    line = one_line_error(capsys, "evaluate", "--predictions", calls, "--labels", labels,
                          "--plots", tmp_path / "plots")
    assert "figures show at most 150 cell types and these calls hold" in line
    assert not (tmp_path / "plots").exists()


def test_evaluation_report_matches_scikit_learn():
    rng = np.random.default_rng(1)
    types = [f"t{i}" for i in range(40)]
    truth = rng.choice(types[:30], size=2000)
    predicted = np.where(rng.random(2000) < 0.5, truth, rng.choice(types + ["Unassigned"],
                                                                    size=2000))
    report = evaluation_report(predicted, truth)
    classes = sorted(set(truth))
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=classes, zero_division=0)
    table = report["per_class"]
    assert table.index.tolist() == classes
    np.testing.assert_allclose(table["precision"], precision, rtol=0, atol=1e-12)
    np.testing.assert_allclose(table["recall"], recall, rtol=0, atol=1e-12)
    np.testing.assert_allclose(table["f1"], f1, rtol=0, atol=1e-12)
    assert table["support"].tolist() == support.tolist()
    assert report["macro_f1"] == pytest.approx(
        f1_score(truth, predicted, labels=classes, average="macro", zero_division=0), abs=1e-12)


# ---------------------------------------------------------------------------
# Outputs written together; full disks
# ---------------------------------------------------------------------------


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_probabilities_on_a_full_disk_keep_both_previous_outputs(reference, tmp_path,
                                                                 monkeypatch, capsys):
    calls, probabilities = tmp_path / "calls.tsv", tmp_path / "probs.tsv"
    calls.write_text("old calls\n")
    probabilities.write_text("old probabilities\n")
    to_csv = pd.DataFrame.to_csv

    def fill_the_disk(self, path, *args, **kwargs):
        if os.path.basename(os.fspath(path)).startswith(".probs.tsv."):
            to_csv(self.iloc[:1], path, *args, **kwargs)  # a part is written, then no space
            disk_full()
        return to_csv(self, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_csv", fill_the_disk)
    line = one_line_error(capsys, "predict", "--model-dir", reference["model"], "--test-set",
                          reference["counts"], "--output", calls, "--probabilities", probabilities)
    assert line.endswith(f"{probabilities}: cannot write: No space left on device; "
                         "nothing was replaced"), line
    assert calls.read_text() == "old calls\n"
    assert probabilities.read_text() == "old probabilities\n"
    assert sorted(os.listdir(tmp_path)) == ["calls.tsv", "probs.tsv"]  # no temporaries


def test_a_failed_rename_puts_the_outputs_written_before_it_back(tmp_path, monkeypatch):
    first, second, new = tmp_path / "a.tsv", tmp_path / "b.tsv", tmp_path / "new.tsv"
    first.write_text("old a")
    second.write_text("old b")
    replace = os.replace

    def refuse_second(source, target):
        if os.fspath(target) == os.fspath(second):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(target))
        return replace(source, target)

    monkeypatch.setattr(os, "replace", refuse_second)
    for group in ([first, second], [new, second]):
        with pytest.raises(PermissionError):
            with atomic_files(group) as temporaries:
                for temporary in temporaries:
                    with open(temporary, "w") as handle:
                        handle.write("new")
        assert first.read_text() == "old a" and second.read_text() == "old b"
        assert sorted(os.listdir(tmp_path)) == ["a.tsv", "b.tsv"]  # `new` is not left half-done
    monkeypatch.setattr(os, "replace", replace)
    with atomic_files([first, second, new]) as temporaries:
        for temporary in temporaries:
            with open(temporary, "w") as handle:
                handle.write("new")
    assert [p.read_text() for p in (first, second, new)] == ["new"] * 3
    assert sorted(os.listdir(tmp_path)) == ["a.tsv", "b.tsv", "new.tsv"]


def test_hdf5_worded_disk_full_is_one_line(tmp_path):
    target = tmp_path / "counts.h5"
    target.write_bytes(b"previous")
    with pytest.raises(OutputError) as info:
        with atomic_file(os.fspath(target)):
            raise RuntimeError("HDF5 error: file write failed: errno = 28, error message = "
                               "'No space left on device'")
    assert str(info.value) == (f"{target}: cannot write: No space left on device; "
                               "nothing was replaced")
    assert target.read_bytes() == b"previous" and os.listdir(tmp_path) == ["counts.h5"]


def test_convert_on_a_full_disk(reference, tmp_path, monkeypatch, capsys):
    table = tmp_path / "out.csv"
    table.write_text("previous")
    to_csv = pd.DataFrame.to_csv

    def half_then_full(self, path, *args, **kwargs):
        to_csv(self.iloc[:2], path, *args, **kwargs)
        disk_full()

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_full)
    line = one_line_error(capsys, "convert", "--input", reference["counts"], "--output", table)
    assert line.endswith(f"{table}: cannot write: No space left on device; nothing was replaced")
    assert table.read_text() == "previous" and os.listdir(tmp_path) == ["out.csv"]

    folder = tmp_path / "mtx"
    folder.mkdir()
    (folder / "barcodes.tsv.gz").write_bytes(b"previous")
    monkeypatch.setattr(scipy.io, "mmwrite", disk_full)
    line = one_line_error(capsys, "convert", "--input", reference["counts"], "--output", folder)
    assert line.endswith(f"{folder}: cannot write: No space left on device; "
                         "nothing was replaced")
    assert os.listdir(folder) == ["barcodes.tsv.gz"]
    assert (folder / "barcodes.tsv.gz").read_bytes() == b"previous"
    assert sorted(os.listdir(tmp_path)) == ["mtx", "out.csv"]


def test_evaluate_plots_on_a_full_disk(reference, tmp_path, monkeypatch, capsys):
    calls = tmp_path / "calls.tsv"
    assert cli.main(["predict", "--model-dir", reference["model"], "--test-set",
                     reference["counts"], "--output", os.fspath(calls)]) == 0
    savefig = matplotlib.figure.Figure.savefig

    def second_figure_fills_the_disk(self, path, *args, **kwargs):
        if os.path.basename(os.fspath(path)).startswith(".f1_per_class.png."):
            disk_full()
        return savefig(self, path, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", second_figure_fills_the_disk)
    new, existing = tmp_path / "plots", tmp_path / "old_plots"
    existing.mkdir()
    (existing / "confusion_matrix.png").write_bytes(b"previous")
    for folder in (new, existing):
        line = one_line_error(capsys, "evaluate", "--predictions", calls, "--labels",
                              reference["labels"], "--plots", folder)
        assert line.endswith(f"{folder / 'f1_per_class.png'}: cannot write: No space left on "
                             "device; nothing was replaced"), line
    assert not new.exists()  # not even an empty folder
    assert os.listdir(existing) == ["confusion_matrix.png"]
    assert (existing / "confusion_matrix.png").read_bytes() == b"previous"
