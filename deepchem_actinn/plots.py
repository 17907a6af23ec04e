"""Figures of an annotation: confusion matrix, per-class F1, training curve.

Needs matplotlib (``pip install 'matplotlib>=3.7'``, the ``plots`` extra). Figures are
built with the object-oriented API (``matplotlib.figure.Figure``), so no
pyplot state or GUI backend is involved: :func:`save_figure` renders PNG
with Agg, anywhere, and a notebook still displays the returned figure.
Sizes and fonts grow with the number of cell types so 20-60 labels stay
readable.

>>> # fig = confusion_figure(truth, predicted)
>>> # save_figure(fig, "confusion_matrix.png")
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from deepchem_actinn.atomic import atomic_file
from deepchem_actinn.errors import ActinnError, MissingDependencyError

PLOTS_HINT = "pip install 'matplotlib>=3.7' (the package's plots extra)"
UNASSIGNED = "Unassigned"
#: Most cell types a figure shows: beyond it the labels are unreadable, and a confusion
#: matrix grows with the square of the count (20,000 types: 400 million cells).
MAX_PLOT_TYPES = 150


def check_plot_types(n_types: int, hint: str = "plot a subset of the types") -> None:
    """Refuse, before any drawing, a figure of more than :data:`MAX_PLOT_TYPES` types."""
    if n_types > MAX_PLOT_TYPES:
        raise ActinnError(f"figures show at most {MAX_PLOT_TYPES} cell types and these calls "
                          f"hold {n_types}; {hint}")


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingDependencyError(f"plots need matplotlib: {PLOTS_HINT}") from None
    return Figure(figsize=(width, height), layout="constrained")


def _sort_key(name: str) -> tuple:
    return (name.lower(), name)


def _tick_size(n: int) -> float:
    return 10.0 if n <= 12 else 8.5 if n <= 25 else 7.5 if n <= 45 else 6.5


def confusion_figure(truth: Sequence[str], predicted: Sequence[str],
                     classes: Optional[Sequence[str]] = None, normalize: bool = True,
                     title: Optional[str] = None) -> Any:
    """Confusion matrix, rows = true type, each row normalised to sum to 1.

    Columns are the same types, then any predicted type absent from the
    truth and ``Unassigned`` (threshold) last. Cell values are printed as
    percentages while they fit (up to 30 types).

    Parameters
    ----------
    truth, predicted: sequences of str
        True and called type of each cell.
    classes: sequence of str, optional
        Row order (default: sorted true types).
    normalize: bool
        Fractions of each true type (default) or raw counts.
    """
    truth_arr = np.asarray([str(t) for t in truth], dtype=object)
    pred_arr = np.asarray([str(p) for p in predicted], dtype=object)
    rows = list(classes) if classes is not None else sorted(set(truth_arr), key=_sort_key)
    extra = sorted(set(pred_arr) - set(rows) - {UNASSIGNED}, key=_sort_key)
    columns = rows + extra + ([UNASSIGNED] if UNASSIGNED in set(pred_arr) else [])
    check_plot_types(len(columns))
    table = pd.crosstab(pd.Categorical(truth_arr, categories=rows),
                        pd.Categorical(pred_arr, categories=columns), dropna=False)
    counts = table.reindex(index=rows, columns=columns, fill_value=0).to_numpy(dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    values = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0) \
        if normalize else counts
    n_rows, n_cols = len(rows), len(columns)
    longest = max((len(str(c)) for c in columns), default=1)
    cell = 0.42 if n_cols <= 12 else 0.32 if n_cols <= 30 else 0.22
    label_room = min(longest, 40) * _tick_size(n_cols) / 72 * 0.62
    fig = _figure(max(5.0, n_cols * cell + label_room + 1.6),
                  max(4.0, n_rows * cell + label_room + 0.9))
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="Blues", vmin=0.0,
                      vmax=1.0 if normalize else max(float(values.max()), 1.0), aspect="auto",
                      interpolation="nearest")
    colorbar = fig.colorbar(image, ax=ax, shrink=0.6, pad=0.01)
    colorbar.set_label("fraction of true type" if normalize else "cells")
    size = _tick_size(max(n_rows, n_cols))
    ax.set_xticks(np.arange(n_cols), labels=columns, rotation=60, ha="right",
                  rotation_mode="anchor", fontsize=size)
    ax.set_yticks(np.arange(n_rows), labels=rows, fontsize=size)
    ax.set_xlabel("predicted type")
    ax.set_ylabel("true type")
    ax.set_title(title or ("Confusion matrix (rows normalised)" if normalize
                           else "Confusion matrix"))
    if columns[-1] == UNASSIGNED:  # set the threshold's column apart
        ax.axvline(n_cols - 1.5, color="#555555", linewidth=1.2)
    if n_cols <= 30:
        for i in range(n_rows):
            for j in range(n_cols):
                if counts[i, j] == 0:
                    continue
                value = values[i, j]
                text = f"{100 * value:.0f}" if normalize else f"{int(value)}"
                ax.text(j, i, text, ha="center", va="center", fontsize=size * 0.8,
                        color="white" if value > 0.55 * (1.0 if normalize else values.max())
                        else "black")
    return fig


def f1_figure(truth: Sequence[str], predicted: Sequence[str],
              title: Optional[str] = None) -> Any:
    """Horizontal bars of each true type's F1 (best first), with its cell count.

    The dashed line is the macro-F1. ``Unassigned`` calls count as errors.
    """
    from sklearn.metrics import precision_recall_fscore_support

    truth_arr = np.asarray([str(t) for t in truth], dtype=object)
    pred_arr = np.asarray([str(p) for p in predicted], dtype=object)
    classes = sorted(set(truth_arr), key=_sort_key)
    check_plot_types(len(classes))
    _, _, f1, support = precision_recall_fscore_support(truth_arr, pred_arr, labels=classes,
                                                        zero_division=0)
    order = np.argsort(-f1, kind="stable")
    names = [classes[i] for i in order]
    scores, counts = f1[order], support[order]
    n = len(names)
    size = _tick_size(n)
    longest = max((len(c) for c in names), default=1)
    fig = _figure(4.5 + min(longest, 40) * size / 72 * 0.62, max(3.0, 0.9 + n * 0.27))
    ax = fig.add_subplot()
    positions = np.arange(n)
    ax.barh(positions, scores, color="#4C72B0", height=0.7)
    ax.set_yticks(positions, labels=names, fontsize=size)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.18)
    ax.set_xticks(np.linspace(0, 1, 6))
    ax.set_xlabel("F1")
    macro = float(np.mean(f1)) if n else float("nan")
    ax.axvline(macro, color="#C44E52", linestyle="--", linewidth=1, zorder=1)
    for y, (value, count) in enumerate(zip(scores, counts, strict=True)):
        # A white box keeps the macro line from crossing the numbers.
        ax.text(min(value, 1.0) + 0.01, y, f"{value:.2f} (n={int(count)})", va="center",
                fontsize=size * 0.85, zorder=3,
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.6})
    ax.set_title(title or f"F1 per cell type (dashed: macro-F1 {macro:.3f})")
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def training_curve_figure(history: Any, title: Optional[str] = None) -> Any:
    """Loss and accuracy per epoch, training and (if recorded) validation cells.

    ``history`` is a :class:`~deepchem_actinn.history.TrainingHistory`, its
    ``to_dataframe()`` or a dict of the same columns.
    """
    frame = history.to_dataframe() if hasattr(history, "to_dataframe") else pd.DataFrame(history)
    if frame.empty:
        raise ValueError("the training history is empty (no finished epoch was recorded)")
    fig = _figure(10.0, 4.0)
    loss_ax, acc_ax = fig.subplots(1, 2)
    epochs = frame["epoch"].to_numpy()
    marker = "o" if len(epochs) <= 30 else None
    loss_ax.plot(epochs, frame["train_loss"], marker=marker, markersize=3, label="training")
    acc_ax.plot(epochs, frame["train_accuracy"], marker=marker, markersize=3, label="training")
    if "valid_loss" in frame and frame["valid_loss"].notna().any():
        loss_ax.plot(epochs, frame["valid_loss"], marker=marker, markersize=3,
                     label="validation")
        acc_ax.plot(epochs, frame["valid_accuracy"], marker=marker, markersize=3,
                    label="validation")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("cross-entropy")
    loss_ax.set_title("Loss")
    acc_ax.set_xlabel("epoch")
    acc_ax.set_ylabel("accuracy")
    acc_ax.set_title("Accuracy")
    acc_ax.set_ylim(0, 1.02)
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title)
    return fig


def save_figure(fig: Any, path: str, dpi: int = 150) -> str:
    """Write a figure as PNG under a temporary name, then rename it into place."""
    path = os.fspath(path)
    with atomic_file(path) as temporary:
        fig.savefig(temporary, format="png", dpi=dpi)
    return path
