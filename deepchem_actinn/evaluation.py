"""Scoring calls against true labels: the predictions table, per-class metrics.

``deepchem-actinn evaluate`` is :func:`score_predictions` then
:func:`evaluation_report`; both work on any calls (``annotate``'s too).
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import pandas as pd

from deepchem_actinn.errors import InputError, user_stacklevel
from deepchem_actinn.io import read_labels
from deepchem_actinn.validation import UNASSIGNED


def read_predictions(path: str) -> Any:
    """Read a predictions TSV written by ``predict`` (``cell_id``, ``cell_type``, ...)."""
    if not os.path.isfile(path):
        raise InputError("file not found", path)
    try:
        # No missing-value words: a type named NA, nan, None or null is a name here.
        frame = pd.read_csv(path, sep="\t", dtype={"cell_id": str, "cell_type": str},
                            keep_default_na=False, na_filter=False)
    except Exception as exc:
        raise InputError(f"cannot read predictions TSV: {exc}", path) from exc
    if not {"cell_id", "cell_type"} <= set(frame.columns):
        raise InputError("predictions need columns cell_id and cell_type (written by "
                         "'deepchem-actinn predict')", path)
    if frame["cell_id"].duplicated().any():
        raise InputError("predictions hold duplicate cell ids", path)
    empty = frame["cell_type"].str.strip() == ""
    if empty.any():
        raise InputError(f"{int(empty.sum())} predictions have an empty cell_type (e.g. cell "
                         f"{frame['cell_id'][empty].iloc[0]})", path)
    return frame.set_index("cell_id")


def evaluation_report(predicted_names: Any, true_names: Any,
                      unassigned: str = UNASSIGNED) -> Dict[str, Any]:
    """Accuracy, macro-F1, coverage and per-class precision/recall/F1 of called types.

    Examples
    --------
    >>> report = evaluation_report(["B", "T", "Unassigned", "T"], ["B", "T", "T", "B"])
    >>> report["accuracy"], report["coverage"], round(report["assigned_accuracy"], 3)
    (0.5, 0.75, 0.667)
    >>> report["per_class"]["support"].tolist()
    [2, 2]
    """
    predicted = np.asarray(predicted_names, dtype=object)
    truth = np.asarray(true_names, dtype=object)
    assigned = predicted != unassigned
    classes = pd.Index(sorted(set(truth)), name="cell_type")
    # Per-class counts, as scikit-learn derives them, without a classes x classes matrix.
    support = pd.Series(truth).value_counts().reindex(classes).to_numpy(dtype=np.int64)
    called = pd.Series(predicted).value_counts().reindex(classes, fill_value=0).to_numpy()
    hits = pd.Series(truth[predicted == truth]).value_counts().reindex(
        classes, fill_value=0).to_numpy()
    precision = np.divide(hits, called, out=np.zeros(len(classes)), where=called > 0)
    recall = np.divide(hits, support, out=np.zeros(len(classes)), where=support > 0)
    f1 = np.divide(2 * hits, support + called, out=np.zeros(len(classes)),
                   where=support + called > 0)
    table = pd.DataFrame({"precision": precision, "recall": recall, "f1": f1,
                          "support": support}, index=classes)
    return {
        "n_cells": int(len(truth)),
        "accuracy": float((predicted == truth).mean()),
        "macro_f1": float(np.mean(f1)) if len(f1) else 0.0,
        "coverage": float(assigned.mean()),
        "assigned_accuracy": float((predicted[assigned] == truth[assigned]).mean())
        if assigned.any() else float("nan"),
        "per_class": table,
    }


def macro_f1_score(y_true: Any, y_pred: Any, sample_weight: Optional[Any] = None) -> float:
    """F1 averaged over the classes present in ``y_true``, as ``evaluate`` reports it.

    A class only predicted (never true) counts in the precision of none and is
    not averaged, as in :func:`evaluation_report`; ``sample_weight`` weighs cells.

    >>> round(macro_f1_score([0, 0, 1, 2], [0, 1, 1, 2]), 4)  # F1 2/3, 2/3 and 1
    0.7778
    """
    truth = np.asarray(y_true).ravel()
    predicted = np.asarray(y_pred).ravel()
    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} true labels but {len(predicted)} predictions")
    weight = np.ones(len(truth)) if sample_weight is None \
        else np.asarray(sample_weight, dtype=float).ravel()
    classes, codes = np.unique(np.concatenate([truth, predicted]), return_inverse=True)
    true_codes, predicted_codes = codes[:len(truth)], codes[len(truth):]
    support = np.bincount(true_codes, weight, len(classes))
    called = np.bincount(predicted_codes, weight, len(classes))
    hits = np.bincount(true_codes, weight * (true_codes == predicted_codes), len(classes))
    present = np.isin(np.arange(len(classes)), true_codes)
    f1 = np.divide(2 * hits, support + called, out=np.zeros(len(classes)),
                   where=support + called > 0)
    return float(f1[present].mean()) if present.any() else 0.0


def macro_f1_metric() -> Any:
    """A ``dc.metrics.Metric`` named ``macro_f1``: :func:`macro_f1_score` of the top class.

    DeepChem's ``f1_score`` metric is binary and fails with more than two cell
    types; this one takes the argmax of the predicted probabilities, for
    ``model.evaluate``, ``dc.models.ValidationCallback`` and any number of types.
    DeepChem is imported on call, so the CLI's ``evaluate`` starts without it.

    >>> macro_f1_metric().name
    'macro_f1'
    """
    import deepchem as dc

    return dc.metrics.Metric(macro_f1_score, mode="classification", name="macro_f1",
                             classification_handling_mode="threshold")


def score_predictions(predictions_path: str, labels_path: str,
                      label_column: Optional[Union[str, int]] = None
                      ) -> Tuple[np.ndarray, np.ndarray]:
    """``(truth, predicted)`` of the predicted cells that have a cell-type label.

    Cells without a label, and cells labelled ``Unassigned`` (no cell type: it
    would pass for a correct abstention), are left out with a warning; no cell
    left to score is an error. ``label_column`` chooses the cell-type column
    of a label file with more than two (see :func:`~deepchem_actinn.io.read_labels`).
    """
    predictions = read_predictions(predictions_path)
    labels = read_labels(labels_path, column=label_column)
    shared = predictions.index.intersection(labels.index)
    if len(shared) == 0:
        raise InputError(f"no predicted cell id matches a label id in {labels_path}",
                         predictions_path)
    if len(shared) < len(predictions):
        warnings.warn(f"{len(predictions) - len(shared)} of {len(predictions)} predicted cells "
                      f"have no label in {labels_path}; scored the {len(shared)} labelled",
                      stacklevel=user_stacklevel())
    abstained = labels.loc[shared] == UNASSIGNED
    if abstained.all():
        raise InputError(f"every scored cell is labelled '{UNASSIGNED}' (no cell type)",
                         labels_path)
    if abstained.any():
        warnings.warn(f"{labels_path}: {int(abstained.sum())} cells labelled '{UNASSIGNED}' "
                      "have no cell type to score; left out", stacklevel=user_stacklevel())
        shared = shared[~abstained.to_numpy()]
    return labels.loc[shared].to_numpy(), predictions.loc[shared, "cell_type"].to_numpy()
