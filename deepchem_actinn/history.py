"""Per-epoch training curves: a DeepChem callback that records loss and accuracy.

>>> # history = TrainingHistory(train_features, valid_features)
>>> # model.fit(train_features, callbacks=[history])
>>> # history.to_dataframe()   # epoch, train_loss, train_accuracy, valid_loss, valid_accuracy
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

SCORE_BATCH = 8192


class TrainingHistory:
    """Record the loss and accuracy of the training (and validation) cells each epoch.

    Pass it to ``ACTINNModel.fit(..., callbacks=[history])``. DeepChem calls
    it after every step; at the end of each epoch it scores the given
    featurised datasets in evaluation mode, without gradients and without
    touching any random state, so training gives the same weights with or
    without it.

    Parameters
    ----------
    train: dc.data.Dataset
        The featurised training cells (what ``fit`` gets).
    valid: dc.data.Dataset, optional
        Held-out featurised cells for the validation curve.
    steps_per_epoch: int, optional
        Default ``ceil(len(train) / model.batch_size)``, as ``fit`` batches.

    Attributes
    ----------
    epochs, train_loss, train_accuracy, valid_loss, valid_accuracy: list
        One entry per finished epoch. The loss is the mean softmax
        cross-entropy of the labelled cells (without the L2 penalty).

    Examples
    --------
    >>> import numpy as np, deepchem as dc
    >>> from deepchem_actinn.model import ACTINNModel
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(64, 10)).astype(np.float32)
    >>> data = dc.data.NumpyDataset(X, (X[:, 0] > 0).astype(int).reshape(-1, 1))
    >>> model = ACTINNModel(10, 2, learning_rate=1e-2, batch_size=16)
    >>> history = TrainingHistory(data)
    >>> _ = model.fit(data, nb_epoch=3, callbacks=[history], checkpoint_interval=0)
    >>> history.epochs
    [1, 2, 3]
    """

    def __init__(self, train: Any, valid: Any = None,
                 steps_per_epoch: Optional[int] = None) -> None:
        self.train = train
        self.valid = valid
        self.steps_per_epoch = steps_per_epoch
        self.epochs: List[int] = []
        self.train_loss: List[float] = []
        self.train_accuracy: List[float] = []
        self.valid_loss: List[float] = []
        self.valid_accuracy: List[float] = []
        self._first_step: Optional[int] = None

    def __call__(self, model: Any, step: int) -> None:
        if self._first_step is None:
            self._first_step = step - 1  # steps before this fit() (a resumed model)
            if self.steps_per_epoch is None:
                self.steps_per_epoch = int(math.ceil(len(self.train) / model.batch_size))
        assert self.steps_per_epoch is not None
        done = step - self._first_step
        if done % self.steps_per_epoch:
            return
        self.epochs.append(done // self.steps_per_epoch)
        loss, accuracy = score(model, self.train)
        self.train_loss.append(loss)
        self.train_accuracy.append(accuracy)
        if self.valid is not None:
            loss, accuracy = score(model, self.valid)
            self.valid_loss.append(loss)
            self.valid_accuracy.append(accuracy)

    def to_dict(self) -> Dict[str, List[float]]:
        columns: Dict[str, List[Any]] = {"epoch": list(self.epochs),
                                         "train_loss": list(self.train_loss),
                                         "train_accuracy": list(self.train_accuracy)}
        if self.valid is not None:
            columns["valid_loss"] = list(self.valid_loss)
            columns["valid_accuracy"] = list(self.valid_accuracy)
        return columns

    def to_dataframe(self) -> pd.DataFrame:
        """One row per epoch."""
        return pd.DataFrame(self.to_dict())


def score(model: Any, dataset: Any) -> Tuple[float, float]:
    """Mean cross-entropy and accuracy of a model on labelled, featurised cells.

    Cells with weight 0 (unknown types, ``y = -1``) are left out. Logits come
    from :meth:`~deepchem_actinn.model.ACTINNModel.predict_blocks`, the one
    inference path (evaluation mode, then back as it was).
    """
    y_all = np.asarray(dataset.y).reshape(len(dataset), -1)[:, 0].astype(np.int64)
    w_all = np.asarray(dataset.w).reshape(len(dataset), -1)[:, 0] if len(dataset.w) \
        else np.ones(len(y_all))
    total_loss, correct, counted = 0.0, 0, 0
    from deepchem_actinn.model.inference import predict_rows
    # Many types: fewer cells a block, so logits stay within predict_rows' budget.
    rows = min(SCORE_BATCH, predict_rows(getattr(model, "n_classes", 1)))
    start = 0
    for _, logits, _ in model.predict_blocks(dataset.X, rows=rows):
        y, w = y_all[start:start + len(logits)], w_all[start:start + len(logits)]
        start += len(logits)
        keep = (y >= 0) & (w > 0)
        if not keep.any():
            continue
        z = torch.as_tensor(logits[keep])
        target = torch.as_tensor(y[keep])
        total_loss += float(F.cross_entropy(z, target, reduction="sum"))
        correct += int((z.argmax(dim=1) == target).sum())
        counted += int(keep.sum())
    if counted == 0:
        return float("nan"), float("nan")
    return total_loss / counted, correct / counted
