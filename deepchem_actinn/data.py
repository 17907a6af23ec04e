"""DeepChem datasets of cells: a loader and a stratified splitter.

:class:`ScRNALoader` turns a genes x cells file plus a label TSV into a
:class:`CellDataset`, a ``dc.data.NumpyDataset`` of cells x genes with
integer ``y`` (shape ``(n, 1)``), unit ``w`` and the cell ids as ``ids``,
that also remembers its gene names and its (sorted) class list so every
DeepChem splitter, metric and callback can be used on it.

:class:`SparseCellDataset` is the same over a CSR matrix (cells stay sparse
from reading to training: single-cell counts are ~93% zeros): it hands
:class:`~deepchem_actinn.model.ACTINNModel` sparse mini-batches
(``sparse_batches=True``), densifies one batch at a time everywhere else
(``iterbatches``, ``itersamples``) and implements ``select``, so every
DeepChem splitter splits it. Training on it gives the same model as the dense
path for the same seed (only float summation order differs).
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import scipy.sparse as sp

from deepchem_actinn.errors import InputError
from deepchem_actinn.io import (
    CellDatasetMixin,
    CountMatrix,
    CountMatrixWarning,
    Names,
    PathLike,
    join_labels,
    labels_source,
    read_counts,
    read_labels,
)
from deepchem_actinn.quiet import deepchem_messages_hidden

with deepchem_messages_hidden():  # DeepChem's import-time lines are not the user's
    import deepchem as dc

logger = logging.getLogger(__name__)


class CellDataset(CellDatasetMixin, dc.data.NumpyDataset):
    """A ``NumpyDataset`` of cells that carries its gene names and class names.

    ``select`` (used by every DeepChem splitter) keeps both, so a split of a
    ``CellDataset`` is still a ``CellDataset``.

    Parameters
    ----------
    X: np.ndarray
        Cells x genes, float32.
    y: np.ndarray, optional
        Class indices into ``classes``, shape ``(n, 1)``; -1 for a cell whose
        type is not among ``classes`` (its weight is then 0).
    w, ids:
        As in ``NumpyDataset``; ``ids`` are the cell ids.
    genes: sequence of str
        Names of the columns of ``X``.
    classes: sequence of str
        Cell-type names; ``y`` indexes this list.

    Examples
    --------
    >>> import numpy as np
    >>> ds = CellDataset(np.ones((3, 2)), np.array([[0], [1], [0]]), ids=["a", "b", "c"],
    ...                  genes=["G1", "G2"], classes=["B cell", "T cell"])
    >>> part = ds.select([2, 1])
    >>> type(part).__name__, part.ids.tolist(), part.cell_types().tolist()
    ('CellDataset', ['c', 'b'], ['B cell', 'T cell'])
    """

    def __init__(self, X: np.ndarray, y: Optional[np.ndarray] = None,
                 w: Optional[np.ndarray] = None, ids: Optional[Names] = None,
                 genes: Optional[Names] = None,
                 classes: Optional[Names] = None) -> None:
        X = np.asarray(X, dtype=np.float32)
        if y is not None:
            y = np.asarray(y, dtype=np.int64).reshape(-1, 1)
            if w is None:
                w = (y >= 0).astype(np.float32)
        super().__init__(X, y, w, None if ids is None else np.asarray(ids, dtype=object),
                         n_tasks=1)
        self.genes = np.asarray(genes if genes is not None else
                                [f"GENE{i}" for i in range(X.shape[1])], dtype=object)
        self.classes = np.asarray(classes if classes is not None else [], dtype=object)
        if len(self.genes) != X.shape[1]:
            raise ValueError(f"{len(self.genes)} gene names for {X.shape[1]} columns")

    def select(self, indices: Union[Sequence[int], np.ndarray],
               select_dir: Optional[str] = None) -> CellDataset:
        indices = np.asarray(indices, dtype=np.int64)
        return CellDataset(self.X[indices], self.y[indices], self.w[indices], self.ids[indices],
                           genes=self.genes, classes=self.classes)


def encode_labels(labels: Names, classes: Optional[Names] = None,
                  source: str = "<labels>") -> Tuple[np.ndarray, np.ndarray]:
    """Map names to indices into ``classes`` (default: the sorted unique names).

    Names outside a given ``classes`` become -1, with a warning.

    Examples
    --------
    >>> y, classes = encode_labels(["T", "B", "T"])
    >>> y.ravel().tolist(), classes.tolist()
    ([1, 0, 1], ['B', 'T'])
    """
    names = np.asarray([str(v) for v in labels], dtype=object)
    if classes is None:
        classes = np.asarray(sorted(set(names)), dtype=object)
    else:
        classes = np.asarray([str(c) for c in classes], dtype=object)
    lookup = {c: i for i, c in enumerate(classes)}
    y = np.asarray([lookup.get(n, -1) for n in names], dtype=np.int64).reshape(-1, 1)
    unknown = y.ravel() < 0
    if unknown.any():
        examples = sorted(set(names[unknown]))[:5]
        warnings.warn(f"{source}: {int(unknown.sum())} cells have types the model does not "
                      f"know ({', '.join(examples)}); they get y=-1 and weight 0",
                      CountMatrixWarning, stacklevel=2)
    return y, classes


class ScRNALoader:
    """Load count files and label files into :class:`CellDataset` objects.

    Like a ``dc.data.DataLoader``: ``create_dataset`` takes the inputs and
    returns a dataset. ``X`` holds raw counts, cells x genes; fit a
    :class:`~deepchem_actinn.preprocessing.ScRNAFeaturizer` on the training
    part only, after splitting.

    Parameters
    ----------
    classes: sequence of str, optional
        Fix the class list (e.g. a trained model's); default the sorted
        cell types found in the labels.
    key: str, optional
        HDF key of the count matrix.
    sparse: bool
        Return a :class:`~deepchem_actinn.sparse.SparseCellDataset` (CSR
        ``X``, never densified) instead of a ``CellDataset``.

    Examples
    --------
    >>> import os, tempfile, pandas as pd
    >>> folder = tempfile.mkdtemp()
    >>> pd.DataFrame([[5, 0, 1], [0, 3, 2]], index=["Cd19", "Cd3e"],
    ...              columns=["c1", "c2", "c3"]).to_hdf(os.path.join(folder, "x.h5"), key="dge")
    >>> _ = open(os.path.join(folder, "y.tsv"), "w").write("c3\\tT\\nc1\\tB\\nc2\\tT\\n")
    >>> ds = ScRNALoader().create_dataset(os.path.join(folder, "x.h5"),
    ...                                   os.path.join(folder, "y.tsv"))
    >>> ds.X.shape, ds.ids.tolist(), ds.y.ravel().tolist(), ds.classes.tolist()
    ((3, 2), ['c1', 'c2', 'c3'], [0, 1, 1], ['B', 'T'])
    """

    def __init__(self, classes: Optional[Names] = None, key: Optional[str] = None,
                 sparse: bool = False) -> None:
        self.classes = None if classes is None else list(classes)
        self.key = key
        self.sparse = bool(sparse)

    def create_dataset(self, counts: Union[PathLike, CountMatrix],
                       labels: Optional[Union[PathLike, pd.Series]] = None
                       ) -> Union[CellDataset, SparseCellDataset]:
        matrix = counts if isinstance(counts, CountMatrix) else read_counts(counts, key=self.key)
        make = _sparse_dataset if self.sparse else _dense_dataset
        if labels is None:
            return make(matrix, None, self.classes)
        if isinstance(labels, pd.Series):
            label_series, label_source = labels, labels_source(labels) or "<labels>"
        else:
            label_series, label_source = read_labels(labels), os.fspath(labels)
        joined = join_labels(matrix, label_series, label_source=label_source)
        y, classes = encode_labels(joined.labels, self.classes, source=label_source)
        return make(joined.matrix, y, classes)


def _dense(matrix: CountMatrix) -> np.ndarray:
    X = matrix.X
    return np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float32)


def _dense_dataset(matrix: CountMatrix, y: Optional[np.ndarray],
                   classes: Optional[Names]) -> CellDataset:
    return CellDataset(_dense(matrix), y, ids=matrix.cells, genes=matrix.genes, classes=classes)


def _sparse_dataset(matrix: CountMatrix, y: Optional[np.ndarray],
                    classes: Optional[Names]) -> SparseCellDataset:
    return SparseCellDataset(matrix.X, y, ids=matrix.cells, genes=matrix.genes, classes=classes)


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
                name = label
                classes = getattr(dataset, "classes", None)
                if classes is not None and 0 <= label < len(classes):
                    name = classes[label]
                raise InputError(f"cell type '{name}' has a single cell, so it cannot be split "
                                 "by type; remove it or add cells")
            start = 0
            for part, count in zip(parts, counts, strict=True):
                part.append(members[start:start + count])
                start += count
        train, valid, test = (np.sort(np.concatenate(p)).astype(np.int64) if p
                              else np.zeros(0, np.int64) for p in parts)
        return train, valid, test


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


Batch = Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]



class SparseCellDataset(CellDatasetMixin, dc.data.Dataset):
    """A DeepChem ``Dataset`` of cells whose ``X`` is a CSR matrix.

    Parameters
    ----------
    X: scipy sparse matrix or array
        Cells x genes (converted to float32 CSR).
    y: np.ndarray, optional
        Class indices into ``classes``, shape ``(n, 1)``; -1 for an unknown
        type (weight 0).
    w: np.ndarray, optional
        Sample weights ``(n, 1)``; default 1 for labelled cells.
    ids: sequence of str, optional
        Cell ids.
    genes, classes: sequence of str, optional
        Column names and cell-type names, as in :class:`~deepchem_actinn.data.CellDataset`.
    sparse_batches: bool
        Let :class:`~deepchem_actinn.model.ACTINNModel` feed sparse batches
        to a sparse first layer (faster); ``False`` densifies each batch.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> X = sp.csr_matrix(np.array([[0, 1.0], [2.0, 0], [0, 0]]))
    >>> ds = SparseCellDataset(X, np.array([[0], [1], [0]]), ids=["a", "b", "c"],
    ...                        genes=["G1", "G2"], classes=["B", "T"])
    >>> part = ds.select([1, 0])
    >>> type(part).__name__, part.ids.tolist(), part.X.toarray().tolist()
    ('SparseCellDataset', ['b', 'a'], [[2.0, 0.0], [0.0, 1.0]])
    >>> next(ds.iterbatches(batch_size=2, deterministic=True))[0].tolist()
    [[0.0, 1.0], [2.0, 0.0]]
    """

    def __init__(self, X: Any, y: Optional[np.ndarray] = None, w: Optional[np.ndarray] = None,
                 ids: Optional[Names] = None, genes: Optional[Names] = None,
                 classes: Optional[Names] = None, sparse_batches: bool = True) -> None:
        self._X = sp.csr_matrix(X, dtype=np.float32)
        self._X.sort_indices()
        n = self._X.shape[0]
        if y is None:
            # NumpyDataset's convention for unlabelled data.
            self._y = np.zeros((n, 1), np.float32)
            self._w = np.zeros((n, 1), np.float32) if w is None else np.asarray(w, np.float32)
        else:
            self._y = np.asarray(y, dtype=np.int64).reshape(-1, 1)
            self._w = ((self._y >= 0).astype(np.float32) if w is None
                       else np.asarray(w, dtype=np.float32).reshape(n, -1))
        self._ids = (np.arange(n).astype(str).astype(object) if ids is None
                     else np.asarray(ids, dtype=object))
        if len(self._y) != n or len(self._w) != n or len(self._ids) != n:
            raise ValueError(f"X has {n} rows but y, w, ids have {len(self._y)}, "
                             f"{len(self._w)}, {len(self._ids)}")
        self.genes = np.asarray(genes if genes is not None else
                                [f"GENE{i}" for i in range(self._X.shape[1])], dtype=object)
        self.classes = np.asarray(classes if classes is not None else [], dtype=object)
        if len(self.genes) != self._X.shape[1]:
            raise ValueError(f"{len(self.genes)} gene names for {self._X.shape[1]} columns")
        self.sparse_batches = bool(sparse_batches)

    # -- the Dataset interface ------------------------------------------------------

    def __len__(self) -> int:
        return int(self._X.shape[0])

    def get_shape(self) -> Tuple[Tuple[int, ...], Tuple[int, ...], Tuple[int, ...],
                                 Tuple[int, ...]]:
        return (tuple(self._X.shape), self._y.shape, self._w.shape, self._ids.shape)

    def get_task_names(self) -> np.ndarray:
        return np.arange(self._y.shape[1])

    @property
    def X(self) -> sp.csr_matrix:  # type: ignore[override]
        """The CSR matrix itself (not a dense copy)."""
        return self._X

    @property
    def y(self) -> np.ndarray:
        return self._y

    @property
    def w(self) -> np.ndarray:
        return self._w

    @property
    def ids(self) -> np.ndarray:
        return self._ids

    def iterbatches(self, batch_size: Optional[int] = None, epochs: int = 1,
                    deterministic: bool = False, pad_batches: bool = False) -> Iterator[Batch]:
        """Mini-batches ``(X, y, w, ids)`` with ``X`` densified one batch at a time."""
        n = len(self)
        size = n if batch_size is None else int(batch_size)
        for _ in range(epochs):
            order = np.arange(n) if deterministic else np.random.permutation(n)
            for start in range(0, n, max(size, 1)):
                index = order[start:start + size]
                batch = (self._X[index].toarray(), self._y[index], self._w[index],
                         self._ids[index])
                if pad_batches:
                    batch = dc.data.pad_batch(size, *batch)
                yield batch

    def itersamples(self) -> Iterator[Batch]:
        """One cell at a time, ``X`` row dense."""
        for i in range(len(self)):
            yield (self._X[i].toarray().ravel(), self._y[i], self._w[i], self._ids[i])

    def transform(self, transformer: Any, **args: Any) -> SparseCellDataset:
        """Apply a DeepChem transformer (on a dense copy: most transformers need one)."""
        X, y, w, ids = transformer.transform_array(self._X.toarray(), self._y, self._w,
                                                   self._ids)
        return SparseCellDataset(sp.csr_matrix(X), y, w, ids, self.genes, self.classes,
                                 self.sparse_batches)

    def select(self, indices: Union[Sequence[int], np.ndarray],
               select_dir: Optional[str] = None) -> SparseCellDataset:
        """The given cells, in the given order (what DeepChem splitters call)."""
        indices = np.asarray(indices, dtype=np.int64)
        return SparseCellDataset(self._X[indices], self._y[indices], self._w[indices],
                                 self._ids[indices], genes=self.genes, classes=self.classes,
                                 sparse_batches=self.sparse_batches)

    def get_statistics(self, X_stats: bool = True, y_stats: bool = True
                       ) -> Tuple[np.ndarray, ...]:
        """Column means and standard deviations, computed without densifying."""
        out = []
        if X_stats:
            mean = np.asarray(self._X.mean(axis=0)).ravel()
            square = np.asarray(self._X.multiply(self._X).mean(axis=0)).ravel()
            out += [mean, np.sqrt(np.maximum(square - mean ** 2, 0.0))]
        if y_stats:
            out += [self._y.mean(axis=0), self._y.std(axis=0)]
        return tuple(out)

    # -- the CellDataset extras ---------------------------------------------------

    def to_dense(self) -> Any:
        """A dense :class:`~deepchem_actinn.data.CellDataset` copy (small data only)."""
        labelled = self._y.dtype.kind in "iu"
        return CellDataset(self._X.toarray(), self._y if labelled else None,
                           self._w if labelled else None, self._ids, genes=self.genes,
                           classes=self.classes)

    @classmethod
    def from_dataset(cls, dataset: Any, sparse_batches: bool = True) -> SparseCellDataset:
        """Wrap a ``CellDataset`` (or any dataset with ``X``/``y``/``w``/``ids``)."""
        labelled = np.asarray(dataset.y).dtype.kind in "iu"
        return cls(sp.csr_matrix(dataset.X), dataset.y if labelled else None,
                   dataset.w if labelled else None, dataset.ids,
                   genes=getattr(dataset, "genes", None),
                   classes=getattr(dataset, "classes", None), sparse_batches=sparse_batches)


# -- sparse first layer -------------------------------------------------------------


def featurize_sparse(featurizer: Any, dataset: Any) -> SparseCellDataset:
    """Apply a fitted featurizer to raw counts, keeping them sparse.

    ``dataset`` is a :class:`SparseCellDataset` or a ``CellDataset`` of raw
    counts; the result holds the normalised model genes as CSR.
    """
    X = featurizer.transform(sp.csr_matrix(dataset.X), dataset.genes, sparse_output=True)
    labelled = np.asarray(dataset.y).dtype.kind in "iu" and len(dataset.y)
    return SparseCellDataset(X, dataset.y if labelled else None,
                             dataset.w if labelled else None, dataset.ids,
                             genes=featurizer.genes_, classes=dataset.classes,
                             sparse_batches=getattr(dataset, "sparse_batches", True))
