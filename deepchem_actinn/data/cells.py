"""DeepChem datasets of cells: dense (:class:`CellDataset`) and sparse (:class:`SparseCellDataset`).

:class:`CellDataset` is a ``dc.data.NumpyDataset`` of cells x genes with
integer ``y`` (shape ``(n, 1)``), unit ``w`` and the cell ids as ``ids``,
that also remembers its gene names and its (sorted) class list so every
DeepChem splitter, metric and callback can be used on it.

:class:`SparseCellDataset` is the same over a CSR matrix (cells stay sparse
from reading to training: single-cell counts are ~93% zeros): it hands
:class:`~deepchem_actinn.model.ACTINNModel` sparse mini-batches
(``sparse_batches=True``), densifies one batch at a time everywhere else
(``iterbatches``, ``itersamples``) and implements ``select``, so every
DeepChem splitter splits it. Training on it gives the same model as the dense
path for the same seed (only float summation order differs). DeepChem's
generic code (``Splitter.k_fold_split``, ``DiskDataset.merge``) converts a
dataset's ``X`` with ``np.array``; a ``SparseCellDataset``'s ``X`` then gives
its dense matrix (refused in one line beyond :data:`DENSE_VALUES_LIMIT`).
"""

from __future__ import annotations

import warnings
from typing import Any, Iterable, Iterator, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from deepchem_actinn.errors import user_stacklevel
from deepchem_actinn.io import CountMatrix, CountMatrixWarning, Names
from deepchem_actinn.quiet import deepchem_messages_hidden

with deepchem_messages_hidden():  # DeepChem's import-time lines are not the user's
    import deepchem as dc


#: Most values (cells x genes) a ``SparseCellDataset``'s ``X`` turns into a dense array
#: through ``np.asarray`` (4 GiB of float32).
DENSE_VALUES_LIMIT = 1 << 30


class CellDatasetMixin:
    """Cell-type helpers shared by the dense and sparse DeepChem datasets of cells.

    The dataset provides ``X``, ``y``, ``ids``, ``genes`` and ``classes``.
    """

    X: Any
    y: Any
    ids: Any
    genes: Any
    classes: Any

    def cell_types(self) -> np.ndarray:
        """Cell-type names of the labelled cells (``None`` where ``y`` is -1)."""
        y = np.asarray(self.y).ravel().astype(np.int64)
        names = np.empty(len(y), dtype=object)
        known = y >= 0
        names[known] = self.classes[y[known]]
        return names

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def to_count_matrix(self, source: str = "<dataset>") -> CountMatrix:
        """The same cells as a :class:`CountMatrix` (sparse stays sparse)."""
        return CountMatrix(self.X, self.genes, self.ids, source=source)

    def __repr__(self) -> str:
        # DeepChem's repr prints every id; a notebook wants the shape and the types.
        n_cells, n_genes = self.X.shape
        shown = ", ".join(map(str, self.classes[:4])) + (", ..." if len(self.classes) > 4 else "")
        kind = "sparse" if hasattr(self.X, "nnz") else "dense"
        classes = f"{len(self.classes)} classes ({shown})" if len(self.classes) else "no classes"
        return (f"<{type(self).__name__}: {n_cells:,} cells x {n_genes:,} genes, {classes}, "
                f"{kind}>")

    __str__ = __repr__


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

    def transform(self, transformer: Any, **args: Any) -> CellDataset:
        """A DeepChem transformer applied to ``X`` (and ``w``): a ``CellDataset`` again.

        ``NumpyDataset.transform`` would return a plain ``NumpyDataset``,
        without gene and class names. A transformer of ``y`` is refused: ``y``
        holds class indices.

        Examples
        --------
        >>> import numpy as np, deepchem as dc
        >>> ds = CellDataset(np.array([[1.0, 2.0], [3.0, 6.0]]), np.array([[0], [1]]),
        ...                  genes=["G1", "G2"], classes=["B", "T"])
        >>> out = ds.transform(dc.trans.NormalizationTransformer(transform_X=True, dataset=ds))
        >>> type(out).__name__, out.genes.tolist(), out.X.tolist()
        ('CellDataset', ['G1', 'G2'], [[-1.0, -1.0], [1.0, 1.0]])
        """
        _refuse_label_transformer(transformer, self)
        X, y, w, ids = transformer.transform_array(self.X, self.y, self.w, self.ids)
        labelled = has_labels(self)
        return CellDataset(X, y if labelled else None, w if labelled else None, ids,
                           genes=self.genes, classes=self.classes)

    @classmethod
    def merge(cls, datasets: Iterable[Any]) -> CellDataset:  # type: ignore[override]
        """Cells of several datasets with the same genes and classes, in order.

        ``dc.data.NumpyDataset.merge`` works too but returns a ``NumpyDataset``.
        """
        parts = list(datasets)
        genes, classes = _merge_names(parts)
        y, w = _merge_labels(parts)
        X = np.concatenate([p.X.toarray() if sp.issparse(p.X) else np.asarray(p.X)
                            for p in parts])
        return cls(X, y, w, np.concatenate([p.ids for p in parts]), genes=genes,
                   classes=classes)


def has_labels(dataset: Any) -> bool:
    """Whether ``dataset.y`` holds class indices (integers); unlabelled cells have float zeros,
    ``NumpyDataset``'s convention."""
    return np.asarray(dataset.y).dtype.kind in "iu"


def _refuse_label_transformer(transformer: Any, dataset: Any) -> None:
    if getattr(transformer, "transform_y", False):
        raise ValueError(f"{type(dataset).__name__}.y holds class indices: "
                         f"{type(transformer).__name__}(transform_y=True) would turn them into "
                         "numbers that name no class")


def _merge_names(datasets: Sequence[Any]) -> Tuple[np.ndarray, np.ndarray]:
    """The shared gene and class names of datasets to merge; one line saying why not."""
    if not datasets:
        raise ValueError("nothing to merge: no datasets given")
    if not all(hasattr(d, "genes") and hasattr(d, "classes") for d in datasets):
        raise TypeError("merge takes datasets of cells (CellDataset, SparseCellDataset): "
                        "others have no gene and class names")
    genes, classes = datasets[0].genes, datasets[0].classes
    for index, dataset in enumerate(datasets[1:], start=1):
        for what, mine, theirs in (("genes", genes, dataset.genes),
                                   ("classes", classes, dataset.classes)):
            if list(theirs) != list(mine):
                raise ValueError(f"cannot merge: dataset {index} has other {what} than "
                                 f"dataset 0 ({len(theirs)} vs {len(mine)}; select or align "
                                 "them first)")
    return np.asarray(genes, dtype=object), np.asarray(classes, dtype=object)


def _merge_labels(datasets: Sequence[Any]) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """``y`` and ``w`` of merged datasets; unlabelled cells among labelled ones get -1, weight 0."""
    labelled = [has_labels(d) for d in datasets]
    if not any(labelled):
        return None, None
    y = np.concatenate([np.asarray(d.y, np.int64).reshape(-1, 1) if known
                        else np.full((len(d), 1), -1, np.int64)
                        for d, known in zip(datasets, labelled, strict=True)])
    w = np.concatenate([np.asarray(d.w, np.float32).reshape(len(d), -1)[:, :1] if known
                        else np.zeros((len(d), 1), np.float32)
                        for d, known in zip(datasets, labelled, strict=True)])
    return y, w


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
                      CountMatrixWarning, stacklevel=user_stacklevel())
    return y, classes


Batch = Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


class _CellMatrix(sp.csr_matrix):
    """A CSR matrix that numpy turns into its dense array (``np.asarray``), within
    :data:`DENSE_VALUES_LIMIT` values.

    DeepChem's generic code converts a dataset's ``X`` with ``np.array``
    (``Splitter.k_fold_split`` through ``DiskDataset.from_numpy``,
    ``DiskDataset.merge``, ``predict_on_batch``). A plain scipy matrix
    becomes a 0-d object array there, which DeepChem then pickles to disk and
    fails on; the dense cells are what it means.
    """

    def __array__(self, dtype: Any = None, copy: Optional[bool] = None) -> np.ndarray:
        if copy is False:
            raise ValueError("a sparse matrix cannot become a dense array without a copy")
        n_cells, n_genes = self.shape
        if n_cells * n_genes > DENSE_VALUES_LIMIT:
            raise ValueError(f"densifying {n_cells:,} cells x {n_genes:,} genes would take "
                             f"{4 * n_cells * n_genes / 2**30:.1f} GiB; keep them sparse "
                             "(StratifiedSplitter().k_fold_split, select, iterbatches) or "
                             "densify a part (select(...).to_dense())")
        dense = self.toarray()
        return dense if dtype is None else dense.astype(dtype, copy=False)


class _TorchCells(torch.utils.data.IterableDataset):
    """What ``NumpyDataset.make_pytorch_dataset`` yields, rows densified as they are drawn.

    Same order as DeepChem's (per-epoch ``RandomState(epoch)``, workers take
    contiguous parts), so a dense copy of the cells yields the same items.
    """

    def __init__(self, dataset: SparseCellDataset, epochs: int, deterministic: bool,
                 batch_size: Optional[int]) -> None:
        self.dataset, self.epochs = dataset, int(epochs)
        self.deterministic, self.batch_size = deterministic, batch_size

    def __iter__(self) -> Iterator[Batch]:
        data = self.dataset
        n = len(data)
        worker = torch.utils.data.get_worker_info()
        first, last = (0, n) if worker is None else (worker.id * n // worker.num_workers,
                                                     (worker.id + 1) * n // worker.num_workers)
        for epoch in range(self.epochs):
            order = (np.arange(first, last) if self.deterministic
                     else np.random.RandomState(epoch).permutation(n)[first:last])
            if self.batch_size is None:
                for i in order:
                    yield data.X[i].toarray().ravel(), data.y[i], data.w[i], data.ids[i]
            else:
                for start in range(0, len(order), self.batch_size):
                    index = order[start:start + self.batch_size]
                    yield data.X[index].toarray(), data.y[index], data.w[index], data.ids[index]


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
        self._X = _CellMatrix(X, dtype=np.float32)
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
        """The CSR matrix itself (not a dense copy; ``np.asarray(X)`` gives one)."""
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
        """Apply a DeepChem transformer (on a dense copy: most transformers need one).

        Genes and classes are kept; a transformer of ``y`` (class indices) is refused.
        """
        _refuse_label_transformer(transformer, self)
        X, y, w, ids = transformer.transform_array(self._X.toarray(), self._y, self._w,
                                                   self._ids)
        labelled = has_labels(self)
        return SparseCellDataset(sp.csr_matrix(X), y if labelled else None, w, ids, self.genes,
                                 self.classes, self.sparse_batches)

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

    def to_dataframe(self) -> pd.DataFrame:
        """Cells as rows: one sparse column per gene, then ``y``, ``w`` and ``ids``
        (``NumpyDataset.to_dataframe``'s columns after ``X``)."""
        X = pd.DataFrame.sparse.from_spmatrix(sp.csr_matrix(self._X),
                                              columns=[str(g) for g in self.genes])
        parts = [X]
        for name, values in (("y", self._y), ("w", self._w)):
            columns = [name] if values.shape[1] == 1 else [f"{name}{i + 1}"
                                                           for i in range(values.shape[1])]
            parts.append(pd.DataFrame(values, columns=columns))
        parts.append(pd.DataFrame({"ids": self._ids}))
        return pd.concat(parts, axis=1)

    def make_pytorch_dataset(self, epochs: int = 1, deterministic: bool = False,
                             batch_size: Optional[int] = None) -> torch.utils.data.IterableDataset:
        """A ``torch.utils.data.IterableDataset`` of ``(X, y, w, ids)``, as
        ``NumpyDataset``'s: single cells (``X`` a dense row) or, with
        ``batch_size``, batches (``X`` dense, one batch at a time)."""
        return _TorchCells(self, epochs, deterministic, batch_size)

    @classmethod
    def merge(cls, datasets: Iterable[Any]) -> SparseCellDataset:
        """Cells of several datasets (sparse or dense) with the same genes and classes, in
        order, as one ``SparseCellDataset``.

        Examples
        --------
        >>> import numpy as np
        >>> a = SparseCellDataset(np.eye(2), np.array([[0], [1]]), ids=["a", "b"],
        ...                       genes=["G1", "G2"], classes=["B", "T"])
        >>> both = SparseCellDataset.merge([a, a.select([1])])
        >>> both.ids.tolist(), both.X.toarray().tolist()
        (['a', 'b', 'b'], [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
        """
        parts = list(datasets)
        genes, classes = _merge_names(parts)
        y, w = _merge_labels(parts)
        X = sp.vstack([sp.csr_matrix(p.X, dtype=np.float32) for p in parts], format="csr")
        return cls(X, y, w, np.concatenate([p.ids for p in parts]), genes=genes,
                   classes=classes, sparse_batches=getattr(parts[0], "sparse_batches", True))

    # -- the CellDataset extras ---------------------------------------------------

    def to_dense(self) -> Any:
        """A dense :class:`~deepchem_actinn.data.CellDataset` copy (small data only)."""
        labelled = has_labels(self)
        return CellDataset(self._X.toarray(), self._y if labelled else None,
                           self._w if labelled else None, self._ids, genes=self.genes,
                           classes=self.classes)

    @classmethod
    def from_dataset(cls, dataset: Any, sparse_batches: bool = True) -> SparseCellDataset:
        """Wrap a ``CellDataset`` (or any dataset with ``X``/``y``/``w``/``ids``)."""
        labelled = has_labels(dataset)
        return cls(sp.csr_matrix(dataset.X), dataset.y if labelled else None,
                   dataset.w if labelled else None, dataset.ids,
                   genes=getattr(dataset, "genes", None),
                   classes=getattr(dataset, "classes", None), sparse_batches=sparse_batches)


def featurize_sparse(featurizer: Any, dataset: Any) -> SparseCellDataset:
    """Apply a fitted featurizer to raw counts, keeping them sparse.

    ``dataset`` is a :class:`SparseCellDataset` or a ``CellDataset`` of raw
    counts; the result holds the normalised model genes as CSR.
    """
    X = featurizer.transform(sp.csr_matrix(dataset.X), dataset.genes, sparse_output=True)
    labelled = has_labels(dataset) and len(dataset.y)
    return SparseCellDataset(X, dataset.y if labelled else None,
                             dataset.w if labelled else None, dataset.ids,
                             genes=featurizer.genes_, classes=dataset.classes,
                             sparse_batches=getattr(dataset, "sparse_batches", True))
