"""The stratified splitter: every cell type in each part, dense or sparse datasets alike."""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

import numpy as np

from deepchem_actinn.errors import InputError
from deepchem_actinn.quiet import deepchem_messages_hidden

with deepchem_messages_hidden():  # DeepChem's import-time lines are not the user's
    import deepchem as dc


class StratifiedSplitter(dc.splits.Splitter):
    """Split so every cell type keeps its proportions in train, valid and test.

    DeepChem's ``RandomStratifiedSplitter`` stratifies integer labels as
    0-vs-rest and ``SingletaskStratifiedSplitter`` returns float indices;
    this one stratifies on every class of ``y[:, 0]`` and returns integer
    indices. Each type gets at least one training cell, and at least one
    test (then validation) cell when that split is asked for. A type with a
    single cell cannot be stratified and is refused.

    Examples
    --------
    >>> import numpy as np, deepchem as dc
    >>> y = np.array([0] * 80 + [1] * 20).reshape(-1, 1)
    >>> ds = dc.data.NumpyDataset(np.zeros((100, 1)), y)
    >>> train, valid, test = StratifiedSplitter().split(ds, 0.8, 0.1, 0.1, seed=0)
    >>> len(train), len(valid), len(test), int((y[test] == 1).sum())
    (80, 10, 10, 2)
    """

    def split(self, dataset: dc.data.Dataset, frac_train: float = 0.8, frac_valid: float = 0.1,
              frac_test: float = 0.1, seed: Optional[int] = None,
              log_every_n: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        fractions = np.array([frac_train, frac_valid, frac_test], dtype=np.float64)
        if (fractions < 0).any() or not np.isclose(fractions.sum(), 1.0):
            raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions.tolist()}")
        y = np.asarray(dataset.y).reshape(len(dataset), -1)[:, 0].astype(np.int64)
        rng = np.random.default_rng(seed)
        parts: List[List[np.ndarray]] = [[], [], []]
        wanted = fractions > 0
        for label in np.unique(y):
            members = rng.permutation(np.flatnonzero(y == label))
            counts = _allocate(len(members), fractions)
            if wanted.sum() > 1 and len(members) < 2:
                raise InputError(f"cell type '{_type_name(dataset, label)}' has a single cell, "
                                 "so it cannot be split by type; remove it or add cells")
            start = 0
            for part, count in zip(parts, counts, strict=True):
                part.append(members[start:start + count])
                start += count
        train, valid, test = (np.sort(np.concatenate(p)).astype(np.int64) if p
                              else np.zeros(0, np.int64) for p in parts)
        return train, valid, test

    def k_fold_split(self, dataset: dc.data.Dataset, k: int,  # type: ignore[override]
                     directories: Optional[List[str]] = None, seed: Optional[int] = None,
                     **kwargs: Any) -> List[Tuple[dc.data.Dataset, dc.data.Dataset]]:
        """``k`` pairs ``(train, cv)``: each type's cells dealt evenly over the folds.

        The folds are ``dataset.select`` of the cells, so a ``CellDataset`` or
        ``SparseCellDataset`` stays one (in memory, sparse stays sparse), and
        a ``DiskDataset`` writes to ``directories`` (``2 * k`` of them,
        train then cv of each fold) when given. Every type keeps at least one
        training cell in every fold; a type with a single cell is refused.

        Examples
        --------
        >>> import numpy as np
        >>> from deepchem_actinn.data import CellDataset
        >>> ds = CellDataset(np.zeros((9, 1)), np.array([0] * 6 + [1] * 3).reshape(-1, 1))
        >>> folds = StratifiedSplitter().k_fold_split(ds, 3, seed=0)
        >>> [(len(train), int((cv.y == 1).sum())) for train, cv in folds]
        [(6, 1), (6, 1), (6, 1)]
        """
        y = np.asarray(dataset.y).reshape(len(dataset), -1)[:, 0].astype(np.int64)
        if not 2 <= int(k) <= len(y):
            raise ValueError(f"k must be between 2 and the number of cells ({len(y)}), not {k}")
        if directories is not None and len(directories) != 2 * k:
            raise ValueError(f"k_fold_split needs 2 * k = {2 * k} directories, not "
                             f"{len(directories)}")
        rng = np.random.default_rng(seed)
        fold = np.empty(len(y), np.int64)
        dealt = 0
        for label in np.unique(y):
            members = rng.permutation(np.flatnonzero(y == label))
            if len(members) < 2:
                raise InputError(f"cell type '{_type_name(dataset, label)}' has a single cell, "
                                 "so it cannot be split by type; remove it or add cells")
            # Dealing on from where the last type stopped keeps fold sizes within one cell.
            fold[members] = (dealt + np.arange(len(members))) % k
            dealt += len(members)
        pairs = []
        for i in range(k):
            train_dir, cv_dir = directories[2 * i:2 * i + 2] if directories else (None, None)
            pairs.append((dataset.select(np.flatnonzero(fold != i), select_dir=train_dir),
                          dataset.select(np.flatnonzero(fold == i), select_dir=cv_dir)))
        return pairs


def _type_name(dataset: Any, label: int) -> str:
    classes = getattr(dataset, "classes", None)
    if classes is not None and 0 <= label < len(classes):
        return str(classes[label])
    return str(label)


def _allocate(n: int, fractions: np.ndarray) -> List[int]:
    """Largest-remainder split of ``n`` items, then at least one train and one test item."""
    raw = fractions * n
    counts = np.floor(raw).astype(int)
    for index in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[index] += 1
    # Guarantees, in priority order: train, test, valid (each only if asked for).
    for target in (0, 2, 1):
        if fractions[target] > 0 and counts[target] == 0 and n > 0:
            donor = int(np.argmax(np.where(np.arange(3) == target, -1, counts)))
            if counts[donor] > 1 or (donor != 0 and counts[donor] > 0):
                counts[donor] -= 1
                counts[target] += 1
    return counts.tolist()
