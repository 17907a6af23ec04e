"""What ACTINN trains with: the optimiser, the loss and the checks around a fit.

:class:`WeightL2Adam` is DeepChem's ``Adam`` with ACTINN's L2 penalty on
weight matrices only (``tf.nn.l2_loss`` semantics, sum of squares / 2;
biases are not penalised, unlike ``Adam(weight_decay=)``); the learning-rate
schedule (:func:`_schedule_value`) is a staircase decay that lives inside
it. The loss is softmax cross-entropy, with label smoothing and the
linear-skip head (:class:`_SmoothedCrossEntropy`); :class:`_DivergenceGuard`
stops a fit at the first non-finite loss, and :func:`_raw_counts_summary`
spots raw counts given instead of features.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn as nn

from deepchem_actinn.errors import TrainingError
from deepchem_actinn.quiet import deepchem_messages_hidden

with deepchem_messages_hidden():  # DeepChem's import-time lines are not the user's
    import deepchem as dc
    from deepchem.models.optimizers import Adam, ExponentialDecay, LearningRateSchedule

if TYPE_CHECKING:
    from deepchem_actinn.model.actinn_model import ACTINNModel


def class_counts(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Training cells per class (unknown types, -1, not counted)."""
    labels = np.asarray(y).ravel().astype(np.int64)
    return np.bincount(labels[labels >= 0], minlength=n_classes).astype(np.float64)


def _balanced_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """``n / (k * n_c)`` per class (scikit-learn's "balanced"); absent classes get 0."""
    return balanced_weights(class_counts(y, n_classes))


def balanced_weights(counts: np.ndarray) -> np.ndarray:
    """:func:`_balanced_weights` from the cells per class (summed over ranks, say)."""
    counts = np.asarray(counts, dtype=np.float64)
    n_classes = len(counts)
    present = counts > 0
    weights = np.zeros(n_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


class WeightL2Adam(Adam):
    """DeepChem's ``Adam`` with ACTINN's L2 penalty on weight matrices only.

    ACTINN adds ``l2 * sum(W**2) / 2`` (``tf.nn.l2_loss``) over its weights to
    the loss, i.e. ``l2 * W`` to their gradients: exactly what torch's Adam
    ``weight_decay`` adds before the moment updates. Applying it there, in a
    parameter group of the weights alone (biases get none, unlike
    ``Adam(weight_decay=)``), trains the same network without a second pass
    over the weights for the penalty, and lets the whole update run as one
    fused kernel where torch has one. Reported losses are the cross-entropy
    alone.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Linear(3, 2)
    >>> groups = WeightL2Adam(learning_rate=1e-3, l2=0.005)._create_pytorch_optimizer(
    ...     net.parameters()).param_groups
    >>> [(len(g["params"]), g["weight_decay"]) for g in groups]
    [(1, 0.005), (1, 0.0)]
    """

    def __init__(self, learning_rate: Any = 1e-4, l2: float = 0.0,
                 other_l2: Optional[Dict[int, float]] = None, **kwargs: Any) -> None:
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.l2 = float(l2)
        self.other_l2 = dict(other_l2 or {})  # id(weight) -> its own L2 (the linear head's)

    def _create_pytorch_optimizer(self, params: Iterable[torch.Tensor]) -> torch.optim.Adam:
        params = list(params)
        weights = [p for p in params if p.ndim > 1]
        groups = [{"params": [p for p in weights if id(p) not in self.other_l2],
                   "weight_decay": self.l2}]
        for value in sorted(set(self.other_l2.values())):
            groups.append({"params": [p for p in weights if self.other_l2.get(id(p)) == value],
                           "weight_decay": value})
        groups.append({"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0})
        groups = [group for group in groups if group["params"]]
        lr = (self.learning_rate.initial_rate
              if isinstance(self.learning_rate, LearningRateSchedule) else self.learning_rate)
        options = {"lr": lr, "betas": (self.beta1, self.beta2), "eps": self.epsilon}
        try:
            # One kernel for the whole update (torch >= 2.4 on CPU, CUDA).
            return torch.optim.Adam(groups, fused=True, **options)  # type: ignore[arg-type]
        except (RuntimeError, TypeError, ValueError):
            return torch.optim.Adam(groups, **options)  # type: ignore[arg-type]


def _schedule_value(schedule: Any, step: int) -> float:
    """Learning rate of a DeepChem schedule (or constant) after ``step`` steps."""
    if isinstance(schedule, ExponentialDecay):
        exponent = step / schedule.decay_steps
        if schedule.staircase:
            exponent = math.floor(exponent)
        return float(schedule.initial_rate * schedule.decay_rate ** exponent)
    return float(schedule)


class _SmoothedCrossEntropy(dc.models.losses.Loss):
    """``SparseSoftmaxCrossEntropy`` with label smoothing (targets ``1 - e`` + ``e / K``),
    averaged over the heads of ``(B, heads, K)`` logits (each head a classifier)."""

    def __init__(self, smoothing: float) -> None:
        super().__init__()
        self.smoothing = float(smoothing)

    def _create_pytorch_loss(self) -> Callable:
        ce_loss = nn.CrossEntropyLoss(reduction="none", label_smoothing=self.smoothing)

        def loss(output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            if len(output.shape) == 3:  # (B, heads, K) -> (B, K, heads)
                output = output.permute(0, 2, 1)
                labels = labels.reshape(len(labels), -1)[:, :1].expand(-1, output.shape[2])
            elif len(labels.shape) == len(output.shape):
                labels = labels.squeeze(-1)
            return ce_loss(output, labels.long())

        return loss


class _DivergenceGuard:
    """Wraps the loss to see each step's value; ``check`` (a fit callback) raises on NaN/inf.

    Values are inspected every ``every`` steps, so a GPU is not synchronised
    at each step. Their sum and number are kept for :meth:`totals` (progress
    bars show the mean loss from them, without a second forward pass).
    """

    def __init__(self, loss: Callable, every: int) -> None:
        self.loss, self.every = loss, every
        self.pending: List[torch.Tensor] = []
        self.total, self.count = 0.0, 0  # the checked values

    def totals(self) -> Tuple[float, int]:
        """Sum and number of the batch losses so far (reading pending ones syncs a GPU)."""
        if not self.pending:
            return self.total, self.count
        pending = float(torch.stack(self.pending).double().sum())
        return self.total + pending, self.count + len(self.pending)

    def __call__(self, *args: Any) -> torch.Tensor:
        value = self.loss(*args)
        self.pending.append(value.detach().reshape(()))
        return value

    def check(self, model: ACTINNModel, step: int, final: bool = False) -> None:
        if not self.pending or (len(self.pending) < self.every and not final):
            return
        values = torch.stack(self.pending).cpu()
        self.pending.clear()
        bad = torch.nonzero(~torch.isfinite(values)).ravel()
        if len(bad):
            value = float(values[int(bad[0])])
            shown = "NaN" if math.isnan(value) else "infinite"
            at = step - len(values) + 1 + int(bad[0])
            rate = _schedule_value(model.optimizer.learning_rate, 0)
            raise TrainingError(f"training diverged: loss became {shown} at step {at}; try a "
                                f"lower --learning-rate (this run: {rate:g})")
        self.total += float(values.double().sum())
        self.count += len(values)


RAW_COUNT_ROW_SUM = 100  # median cell total above which integer data are counts, not 0/1 flags


def _raw_counts_summary(dataset: Any, rows: int = 1000) -> str:
    """Why ``dataset`` looks like unfeaturised counts, or ``""``.

    Non-negative integers with a median of at least ``RAW_COUNT_ROW_SUM`` per
    cell: ACTINN's features (log2 of normalised counts) are not integers.
    Only the first ``rows`` cells of in-memory datasets are looked at (a
    sharded dataset would be read from disk).
    """
    from deepchem_actinn.data import SparseCellDataset
    if not isinstance(dataset, (dc.data.NumpyDataset, SparseCellDataset)):
        return ""
    X = dataset.X[:rows]
    values = X.data if sp.issparse(X) else np.asarray(X)
    if values.size == 0 or values.min() < 0 or not np.array_equal(values, np.round(values)):
        return ""
    totals = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
    median = float(np.median(totals))
    if median < RAW_COUNT_ROW_SUM:
        return ""
    return f"non-negative integers, a median of {median:,.0f} per cell"
