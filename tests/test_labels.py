"""Cell-type names: words pandas reads as missing are names; 'Unassigned' is no type (issue 14).

``NA``, ``nan``, ``None``, ``null``, ``N/A``... are ordinary cell types through
training, prediction, probability tables and evaluation. ``Unassigned`` is
the label of cells below ``--threshold``: a training type of that name is
refused with one line, and true labels of that name are not scored.
"""

import os

import numpy as np
import pandas as pd
import pytest
from conftest import one_line_error, synthetic_counts, write_counts, write_labels

import deepchem_actinn as da
from deepchem_actinn import cli
from deepchem_actinn.errors import InputError
from deepchem_actinn.evaluation import evaluation_report, read_predictions
from deepchem_actinn.io import CountMatrix
from deepchem_actinn.io import write_counts as write_matrix

#: Words pandas' readers turn into NaN by default.
MISSING_WORDS = ["NA", "nan", "None", "null", "N/A", "NaN", "<NA>", "#N/A"]


def labelled(folder, names, n_cells=160):
    """Counts whose cells belong to ``names`` in turn, and their label file."""
    counts, types = synthetic_counts(n_cells, 200, n_types=len(names))
    path = write_counts(folder / "counts.h5", counts)
    mapping = {f"cell{i}": names[t] for i, t in enumerate(types)}
    return counts, path, write_labels(folder / "labels.tsv", mapping), mapping


def test_missing_value_words_are_cell_types_everywhere(tmp_path, capsys):
    counts, path, labels, mapping = labelled(tmp_path, MISSING_WORDS)
    assert sorted(set(da.read_labels(labels))) == sorted(MISSING_WORDS)
    model = tmp_path / "model"
    assert cli.main(["train", "--train-set", path, "--train-labels", labels, "--model-dir",
                     os.fspath(model), "--epochs", "2", "--quiet"]) == 0
    calls, probabilities = tmp_path / "calls.tsv", tmp_path / "probabilities.tsv"
    assert cli.main(["predict", "--model-dir", os.fspath(model), "--test-set", path, "--output",
                     os.fspath(calls), "--probabilities", os.fspath(probabilities)]) == 0
    predictions = read_predictions(os.fspath(calls))
    assert set(predictions["cell_type"]) <= set(MISSING_WORDS)
    assert not predictions["cell_type"].isna().any()
    header = probabilities.read_text().splitlines()[0].split("\t")
    assert header == ["cell_id"] + sorted(MISSING_WORDS)

    capsys.readouterr()
    assert cli.main(["evaluate", "--predictions", os.fspath(calls), "--labels", labels]) == 0
    out = capsys.readouterr().out
    assert out.startswith("cells\t160\n")
    # Names compared as names: 'NA' called 'NA' is right, 'NA' called 'null' is wrong.
    truth = pd.Series(mapping).loc[predictions.index]
    expected = float((predictions["cell_type"] == truth).mean())
    assert f"accuracy\t{expected:.4f}\n" in out
    rows = {line.split()[0]: int(line.split()[-1])
            for line in out.split("cell_type", 1)[1].splitlines()[1:] if line}
    assert rows == dict.fromkeys(MISSING_WORDS, 20)  # support of each type

    result = da.annotate(path, os.fspath(model))
    adata = result.to_adata()
    assert set(adata.obs["actinn_label"].cat.categories) == set(MISSING_WORDS)
    assert not adata.obs["actinn_label"].isna().any()


def test_predictions_with_missing_value_words_and_empty_names(tmp_path):
    table = tmp_path / "calls.tsv"
    table.write_text("cell_id\tcell_type\tprobability\nNA\tnull\t0.9\nnan\tNone\t0.8\n")
    frame = read_predictions(os.fspath(table))
    assert frame.index.tolist() == ["NA", "nan"]
    assert frame["cell_type"].tolist() == ["null", "None"]
    table.write_text("cell_id\tcell_type\tprobability\na\t\t0.9\n")
    with pytest.raises(InputError, match="1 predictions have an empty cell_type"):
        read_predictions(os.fspath(table))


def test_unassigned_as_a_training_type_is_refused(tmp_path, capsys):
    counts, path, labels, mapping = labelled(tmp_path, ["B cell", "Unassigned", "T cell"], 90)
    model = tmp_path / "model"
    line = one_line_error(capsys, "train", "--train-set", path, "--train-labels", labels,
                          "--model-dir", model, "--quiet", alone=True)
    assert f"{labels}: a cell type is named 'Unassigned'" in line, line
    assert not model.exists()
    with pytest.raises(InputError) as info:
        da.train_reference(path, labels, epochs=1)
    assert str(info.value).startswith(f"{labels}: a cell type is named 'Unassigned'")
    with pytest.raises(InputError, match="a cell type is named 'Unassigned'"):
        da.train_reference(path, pd.Series(mapping), epochs=1)

    # Streamed training (train --out-of-core) refuses it too.
    tenx = tmp_path / "counts_10x.h5"
    write_matrix(CountMatrix(counts, [f"Gene{i}" for i in range(counts.shape[1])],
                             list(mapping)), os.fspath(tenx), "10x-h5")
    line = one_line_error(capsys, "train", "--train-set", tenx, "--train-labels", labels,
                          "--model-dir", model, "--out-of-core", tmp_path / "shards", "--quiet")
    assert f"{labels}: a cell type is named 'Unassigned'" in line, line
    assert not model.exists() and os.listdir(tmp_path / "shards") == []


def test_evaluate_leaves_out_cells_labelled_unassigned(tmp_path, capsys):
    calls = tmp_path / "calls.tsv"
    calls.write_text("cell_id\tcell_type\tprobability\nc1\tB\t0.9\nc2\tUnassigned\t0.3\n"
                     "c3\tT\t0.8\n")
    labels = write_labels(tmp_path / "labels.tsv", {"c1": "B", "c2": "Unassigned", "c3": "B"})
    capsys.readouterr()
    assert cli.main(["evaluate", "--predictions", os.fspath(calls), "--labels", labels]) == 0
    out, err = capsys.readouterr()
    assert "1 cells labelled 'Unassigned' have no cell type to score; left out" in err
    assert out.startswith("cells\t2\naccuracy\t0.5000\n")
    assert "coverage" not in out  # the abstention was the unscored cell's
    everything = write_labels(tmp_path / "none.tsv", dict.fromkeys(["c1", "c2", "c3"],
                                                                   "Unassigned"))
    line = one_line_error(capsys, "evaluate", "--predictions", calls, "--labels", everything)
    assert f"{everything}: every scored cell is labelled 'Unassigned'" in line
    assert np.isfinite(evaluation_report(["B", "T"], ["B", "B"])["macro_f1"])
