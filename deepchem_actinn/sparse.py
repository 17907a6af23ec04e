"""Sparse cells end to end: a DeepChem dataset backed by a CSR matrix.

Single-cell counts are ~93% zeros. DeepChem's ``NumpyDataset`` and
``DiskDataset`` hold dense arrays, so an atlas of a million cells would need
tens of GB. :class:`SparseCellDataset` keeps ``X`` as a
``scipy.sparse.csr_matrix`` and

* hands :class:`~deepchem_actinn.model.ACTINNModel` its mini-batches as
  sparse tensors (``sparse_batches=True``, the default), whose first layer
  is then a sparse product (:func:`sparse_linear`): the same numbers as the
  dense layer, in a fraction of the time;
* densifies one batch at a time everywhere else (``iterbatches``,
  ``itersamples``), so any DeepChem code that reads batches works;
* implements ``select``, so every DeepChem splitter (and
  :class:`~deepchem_actinn.data.StratifiedSplitter`) splits it.

Training on it gives the same model as the dense path for the same seed
(same batches, same initial weights; only float summation order differs).
"""

from __future__ import annotations

import warnings
from typing import Any, Iterator, Optional, Sequence, Tuple, Union

import deepchem as dc
import numpy as np
import scipy.sparse as sp
import torch

from deepchem_actinn.io import CellDatasetMixin, Names

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
        from deepchem_actinn.data import CellDataset

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


def to_torch_csr(X: sp.csr_matrix, device: Optional[Union[str, torch.device]] = None
                 ) -> torch.Tensor:
    """A scipy CSR matrix as a float32 ``torch.sparse_csr`` tensor (arrays shared on CPU).

    Examples
    --------
    >>> import scipy.sparse as sp, numpy as np
    >>> to_torch_csr(sp.csr_matrix(np.eye(2))).to_dense().tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    X = sp.csr_matrix(X, dtype=np.float32)
    # int32 indices where they fit (every mini-batch): no copies, and embedding_bag takes them.
    index = np.int32 if max(X.nnz, X.shape[1]) < np.iinfo(np.int32).max else np.int64
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(torch.from_numpy(X.indptr.astype(index, copy=False)),
                                       torch.from_numpy(X.indices.astype(index, copy=False)),
                                       torch.from_numpy(X.data), size=X.shape,
                                       dtype=torch.float32, device=device,
                                       check_invariants=False)


class _SparseLinearCPU(torch.autograd.Function):
    """``x @ weight + bias`` for CSR ``x`` on CPU, ``weight`` genes x units.

    Forward sums, for each cell, the weight rows of its non-zero genes;
    backward sums, for each gene, the output gradients of the cells that
    express it: both are ``embedding_bag`` gathers (vectorised, no dense
    input, no transposed copy of the weights). Only the weight and bias get
    gradients (cell counts are data).
    """

    @staticmethod
    def forward(ctx: Any, crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor,
                n_cols: int, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        out = torch.nn.functional.embedding_bag(
            col, weight, crow, mode="sum", per_sample_weights=values, include_last_offset=True)
        ctx.save_for_backward(crow, col, values)
        ctx.n_cols = n_cols
        return out + bias

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Tuple[Optional[torch.Tensor], ...]:
        crow, col, values = ctx.saved_tensors
        # The batch by gene (CSC): one bag of cells per gene.
        by_gene = sp.csr_matrix((values.numpy(), col.numpy(), crow.numpy()),
                                shape=(len(crow) - 1, ctx.n_cols)).tocsc()
        index = by_gene.indices.dtype  # int32 unless the batch is huge; offsets must match
        grad_weight = torch.nn.functional.embedding_bag(
            torch.from_numpy(by_gene.indices), grad.detach().contiguous(),
            torch.from_numpy(by_gene.indptr.astype(index, copy=False)), mode="sum",
            per_sample_weights=torch.from_numpy(by_gene.data), include_last_offset=True)
        return None, None, None, None, grad_weight, grad.sum(dim=0)


def sparse_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``x @ weight + bias`` for a sparse (CSR or COO) batch, without densifying it.

    ``weight`` is genes x units (the layout of
    :class:`~deepchem_actinn.model.GeneLinear`). Equal to the dense product
    up to float summation order, values and gradients.

    Examples
    --------
    >>> import torch, scipy.sparse as sp, numpy as np
    >>> weight, bias = torch.randn(4, 3), torch.randn(3)
    >>> X = sp.random(5, 4, density=0.5, format="csr", dtype=np.float32, random_state=0)
    >>> dense = torch.as_tensor(X.toarray()) @ weight + bias
    >>> torch.allclose(sparse_linear(to_torch_csr(X), weight, bias), dense, atol=1e-6)
    True
    """
    if x.layout != torch.sparse_csr:
        x = x.to_sparse_csr()
    if x.device.type == "cpu":
        out: torch.Tensor = _SparseLinearCPU.apply(
            x.crow_indices(), x.col_indices(), x.values(), int(x.shape[1]), weight, bias)
        return out
    # GPU: cuSPARSE; autograd differentiates sparse.mm with respect to the dense operand.
    return torch.sparse.mm(x, weight) + bias


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
