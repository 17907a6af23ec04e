"""Figures (confusion matrix, per-class F1, training curve) and the per-epoch recorder.

Readability is checked on the rendered figures: with 25 long class names no
two tick labels overlap and no text falls outside the figure.
"""

import math
import os
import sys
import warnings
from itertools import pairwise

import numpy as np
import pytest
import torch
from conftest import synthetic_counts, write_counts, write_labels

from deepchem_actinn import cli
from deepchem_actinn.data import CellDataset
from deepchem_actinn.errors import MissingDependencyError
from deepchem_actinn.history import TrainingHistory, score
from deepchem_actinn.model import ACTINNModel

pytest.importorskip("matplotlib")
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402

from deepchem_actinn.plots import (  # noqa: E402
    confusion_figure,
    f1_figure,
    save_figure,
    training_curve_figure,
)

NAMES = ["B cell", "T cell", "natural killer cell", "classical monocyte",
         "non-classical monocyte", "myeloid dendritic cell", "plasmacytoid dendritic cell",
         "megakaryocyte", "erythrocyte", "hematopoietic stem cell",
         "CD4-positive, alpha-beta memory T cell", "CD8-positive, alpha-beta cytotoxic T cell",
         "regulatory T cell", "gamma-delta T cell", "mast cell", "basophil", "neutrophil",
         "eosinophil", "plasma cell", "naive B cell", "memory B cell", "type II pneumocyte",
         "endothelial cell of hepatic sinusoid", "Kupffer cell", "pancreatic A cell"]


def calls(n_classes, n_cells=1500, seed=0):
    rng = np.random.default_rng(seed)
    names = np.array(NAMES[:n_classes], dtype=object)
    truth = rng.choice(names, size=n_cells)
    predicted = truth.copy()
    wrong = rng.random(n_cells) < 0.3
    predicted[wrong] = rng.choice(names, size=int(wrong.sum()))
    predicted[rng.random(n_cells) < 0.05] = "Unassigned"
    return truth, predicted


def render(fig):
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _drawn_texts(fig):
    """Every text matplotlib draws: titles, labels, legends, annotations, visible ticks."""
    texts = list(fig.texts)
    for ax in fig.axes:
        texts += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label]
        texts += list(ax.texts)
        legend = ax.get_legend()
        if legend is not None:
            texts += list(legend.get_texts())
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            texts += [tick.label1 for tick in axis.get_major_ticks()
                      if low - 1e-9 <= tick.get_loc() <= high + 1e-9]
    return [t for t in texts if t.get_visible() and t.get_text()]


def assert_text_readable(fig, ax):
    """Tick labels do not overlap each other and all text lies inside the figure."""
    renderer = render(fig)
    figure_box = fig.bbox
    for text in _drawn_texts(fig):
        box = text.get_window_extent(renderer)
        assert box.x0 >= figure_box.x0 - 1 and box.x1 <= figure_box.x1 + 1, text.get_text()
        assert box.y0 >= figure_box.y0 - 1 and box.y1 <= figure_box.y1 + 1, text.get_text()
    y_boxes = sorted((t.get_window_extent(renderer) for t in ax.get_yticklabels()
                      if t.get_text()), key=lambda b: b.y0)
    for lower, upper in pairwise(y_boxes):
        assert lower.y1 <= upper.y0 + 0.5, "y tick labels overlap"
    x_labels = [t for t in ax.get_xticklabels() if t.get_text()]
    if len(x_labels) > 1 and x_labels[0].get_rotation() % 180:
        # Rotated labels are parallel strips: the gap between neighbouring
        # baselines (tick spacing x sin(angle)) must exceed the text height.
        angle = math.radians(x_labels[0].get_rotation())
        positions = sorted(ax.transData.transform((t.get_position()[0], 0))[0]
                           for t in x_labels)
        spacing = min(b - a for a, b in pairwise(positions))
        height = x_labels[0].get_fontsize() * fig.dpi / 72
        assert spacing * math.sin(angle) >= height, "x tick labels overlap"
    else:
        x_boxes = sorted((t.get_window_extent(renderer) for t in x_labels), key=lambda b: b.x0)
        for left, right in pairwise(x_boxes):
            assert left.x1 <= right.x0 + 0.5, "x tick labels overlap"


def test_confusion_figure_25_classes_readable():
    truth, predicted = calls(25)
    fig = confusion_figure(truth, predicted)
    ax = fig.axes[0]
    columns = [t.get_text() for t in ax.get_xticklabels()]
    rows = [t.get_text() for t in ax.get_yticklabels()]
    assert len(rows) == 25 and columns[:25] == rows and columns[-1] == "Unassigned"
    image = ax.images[0].get_array()
    np.testing.assert_allclose(np.asarray(image).sum(axis=1), 1.0)  # rows normalised
    assert_text_readable(fig, ax)


def test_figures_grow_with_class_count():
    small = confusion_figure(*calls(5))
    large = confusion_figure(*calls(25))
    assert large.get_size_inches()[0] > small.get_size_inches()[0]
    assert large.get_size_inches()[1] > small.get_size_inches()[1]
    assert f1_figure(*calls(25)).get_size_inches()[1] > f1_figure(*calls(5)).get_size_inches()[1]
    assert_text_readable(small, small.axes[0])


def test_f1_figure_readable_and_correct():
    from sklearn.metrics import f1_score
    truth, predicted = calls(25)
    fig = f1_figure(truth, predicted)
    ax = fig.axes[0]
    assert_text_readable(fig, ax)
    widths = {label.get_text(): bar.get_width()
              for label, bar in zip(ax.get_yticklabels(), ax.patches, strict=True)}
    assert len(widths) == 25
    for name in ("B cell", "Kupffer cell"):
        assert widths[name] == pytest.approx(f1_score(truth == name, predicted == name))
    assert list(widths.values()) == sorted(widths.values(), reverse=True)


def test_training_curve_and_save(tmp_path):
    history = {"epoch": [1, 2, 3], "train_loss": [1.5, 1.0, 0.7],
               "train_accuracy": [0.4, 0.6, 0.8], "valid_loss": [1.6, 1.2, 0.9],
               "valid_accuracy": [0.35, 0.5, 0.7]}
    fig = training_curve_figure(history)
    loss_ax, acc_ax = fig.axes
    assert [line.get_label() for line in loss_ax.lines] == ["training", "validation"]
    np.testing.assert_array_equal(acc_ax.lines[1].get_ydata(), history["valid_accuracy"])
    assert_text_readable(fig, loss_ax)
    path = save_figure(fig, str(tmp_path / "curve.png"))
    with open(path, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path) == ["curve.png"]
    with pytest.raises(ValueError, match="empty"):
        training_curve_figure({"epoch": [], "train_loss": [], "train_accuracy": []})


def test_missing_matplotlib(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(MissingDependencyError, match=r"pip install .matplotlib>=3.7."):
        confusion_figure(["a"], ["a"])


def _datasets(seed=0):
    counts, types = synthetic_counts(n_cells=96, n_genes=40, n_types=3, seed=seed)
    X = np.log2(1 + counts).astype(np.float32)
    train = CellDataset(X[:72], types[:72], classes=["a", "b", "c"])
    valid = CellDataset(X[72:], types[72:], classes=["a", "b", "c"])
    return train, valid


def test_history_records_each_epoch_without_changing_training():
    train, valid = _datasets()
    with_history = ACTINNModel(40, 3, batch_size=16, learning_rate=1e-2, seed=3)
    history = TrainingHistory(train, valid)
    with_history.fit(train, nb_epoch=4, callbacks=[history], checkpoint_interval=0)
    assert with_history.model.training  # scoring left the module in training mode
    plain = ACTINNModel(40, 3, batch_size=16, learning_rate=1e-2, seed=3)
    plain.fit(train, nb_epoch=4, checkpoint_interval=0)
    for a, b in zip(with_history.model.parameters(), plain.model.parameters(), strict=True):
        assert torch.equal(a, b)
    frame = history.to_dataframe()
    assert frame["epoch"].tolist() == [1, 2, 3, 4]
    assert list(frame.columns) == ["epoch", "train_loss", "train_accuracy", "valid_loss",
                                   "valid_accuracy"]
    assert frame["train_loss"].iloc[-1] < frame["train_loss"].iloc[0]
    # The last row is the model as it ended.
    loss, accuracy = score(with_history, valid)
    assert frame["valid_accuracy"].iloc[-1] == accuracy
    predicted = with_history.predict_proba(valid).argmax(axis=1)
    assert accuracy == pytest.approx(float((predicted == valid.y.ravel()).mean()))


def test_cli_train_and_evaluate_write_plots(tmp_path, capsys):
    counts, types = synthetic_counts(n_cells=150, n_genes=120, n_types=3, seed=0)
    cells = [f"cell{i}" for i in range(150)]
    names = ["alpha", "beta", "gamma"]
    data = write_counts(tmp_path / "train.h5", counts, cells=cells)
    truth = {c: names[t] for c, t in zip(cells, types, strict=True)}
    labels = write_labels(tmp_path / "labels.tsv", truth)
    plots = tmp_path / "plots"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cli.main(["train", "--train-set", data, "--train-labels", labels, "--model-dir",
                         str(tmp_path / "model"), "--epochs", "3", "--quiet",
                         "--validation-fraction", "0.2", "--plots", str(plots)]) == 0
    out = capsys.readouterr().out
    assert "validation accuracy" in out and "30 held-out cells" in out
    assert sorted(os.listdir(plots)) == ["training_curve.png", "training_history.tsv"]
    with open(plots / "training_history.tsv") as handle:
        assert len(handle.read().splitlines()) == 4  # header + 3 epochs
    predictions = str(tmp_path / "pred.tsv")
    assert cli.main(["predict", "--model-dir", str(tmp_path / "model"), "--test-set", data,
                     "--output", predictions]) == 0
    assert cli.main(["evaluate", "--predictions", predictions, "--labels", labels,
                     "--plots", str(plots)]) == 0
    assert sorted(os.listdir(plots)) == ["confusion_matrix.png", "f1_per_class.png",
                                         "training_curve.png", "training_history.tsv"]
    assert cli.main(["evaluate", "--predictions", predictions, "--labels", labels,
                     "--plots", labels]) == 2
    assert "--plots path exists and is not a folder" in capsys.readouterr().err
