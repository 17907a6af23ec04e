"""The count-matrix types every reader returns, and the checks of their values.

:class:`CountMatrix` is cells x genes (the orientation DeepChem and scanpy
use) with upper-cased gene names and cell ids; :class:`StoredCounts` is what a
format's loader returns, the counts as the file stores them, and
:func:`finish_matrix` turns it into a :class:`CountMatrix` (values checked
by :func:`check_counts`, names de-duplicated). :func:`take_rows` and
:func:`take_columns` select without copying when nothing is left out.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import scipy.sparse as sp

from deepchem_actinn.errors import InputError, user_stacklevel

PathLike = Union[str, "os.PathLike[str]"]
# np.ndarray or scipy.sparse.csr_matrix (Any: numpy and scipy stubs do not unify).
Matrix = Any
#: Gene names, cell ids or class names: a list or a numpy array of str.
Names = Union[Sequence[str], np.ndarray]


class CountMatrixWarning(UserWarning):
    """Something in a count matrix was repaired or looks unusual."""


@dataclass
class CountMatrix:
    """A cells x genes count matrix with its cell ids and gene names.

    Parameters
    ----------
    X: np.ndarray or scipy.sparse.csr_matrix
        Counts, shape ``(n_cells, n_genes)``.
    genes: sequence of str
        Gene names, upper-cased as ACTINN does so symbols match across species
        and pipelines.
    cells: sequence of str
        Cell ids.
    source: str
        Where the matrix came from, used in error messages.

    Examples
    --------
    >>> import numpy as np
    >>> m = CountMatrix(np.array([[1, 0], [2, 3]]), ["Cd19", "Cd3e"], ["c1", "c2"])
    >>> m.genes.tolist(), m.shape
    (['CD19', 'CD3E'], (2, 2))
    """

    X: Matrix
    genes: Any  # np.ndarray of str after __post_init__
    cells: Any
    source: str = "<memory>"
    notes: List[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if sp.issparse(self.X):
            self.X = sp.csr_matrix(self.X)
        else:
            self.X = np.asarray(self.X)
        self.genes = np.asarray([str(g).upper() for g in self.genes], dtype=object)
        self.cells = np.asarray([str(c) for c in self.cells], dtype=object)
        if self.X.ndim != 2 or self.X.shape != (len(self.cells), len(self.genes)):
            raise InputError(
                f"matrix shape {self.X.shape} does not match {len(self.cells)} cells x "
                f"{len(self.genes)} genes", self.source)

    @property
    def shape(self) -> Tuple[int, int]:
        return (int(self.X.shape[0]), int(self.X.shape[1]))

    @classmethod
    def from_dataframe(cls, frame: pd.DataFrame, source: str = "<memory>",
                       cells_as_rows: bool = False) -> CountMatrix:
        """Build from a genes x cells DataFrame (or cells x genes with ``cells_as_rows``)."""
        if cells_as_rows:
            frame = frame.T
        values = frame.to_numpy()
        return cls(np.ascontiguousarray(values.T), list(frame.index), list(frame.columns),
                   source=source)

    def to_dataframe(self) -> pd.DataFrame:
        """The genes x cells DataFrame of ACTINN's and DeepChem's HDF files."""
        dense = self.X.toarray() if sp.issparse(self.X) else self.X
        return pd.DataFrame(dense.T, index=list(self.genes), columns=list(self.cells))

    def select_cells(self, index: Union[np.ndarray, Sequence[int]]) -> CountMatrix:
        """A new matrix with the given rows, in the given order."""
        index = np.asarray(index, dtype=np.int64)
        return CountMatrix(take_rows(self.X, index), self.genes, self.cells[index], self.source,
                           list(self.notes))

    def library_sizes(self) -> np.ndarray:
        """Total counts of each cell."""
        return np.asarray(self.X.sum(axis=1), dtype=np.float64).ravel()


def _is_everything(index: np.ndarray, n: int) -> bool:
    """True for a selection that keeps all ``n`` items in order (a mask or indices)."""
    index = np.asarray(index)
    if index.dtype == bool:
        return len(index) == n and bool(index.all())
    return len(index) == n and bool((index == np.arange(n)).all())


def take_rows(X: Any, index: np.ndarray) -> Any:
    """``X[index]`` (rows: cells), without copying when ``index`` keeps every row in order.

    An atlas' matrix is gigabytes; reading, label joining and gene filtering
    each used to copy it whole to select all of its rows.

    >>> X = sp.csr_matrix(np.eye(3))
    >>> take_rows(X, np.arange(3)) is X, take_rows(X, [2, 0]).toarray()[0].tolist()
    (True, [0.0, 0.0, 1.0])
    """
    return X if _is_everything(index, X.shape[0]) else X[index]


def take_columns(X: Any, index: np.ndarray) -> Any:
    """``X[:, index]`` (columns: genes), without copying when it keeps every column in order.

    >>> X = np.eye(3)
    >>> take_columns(X, np.ones(3, bool)) is X, take_columns(X, [1]).shape
    (True, (3, 1))
    """
    return X if _is_everything(index, X.shape[1]) else X[:, index]


def check_counts(X: Matrix, source: str, allow_non_integer: bool = True) -> Matrix:
    """Validate a count matrix: numeric, finite, non-negative, not empty.

    Non-integer values are accepted with a warning, since ACTINN's
    normalisation assumes raw counts but log-normalised data still runs.
    Returns ``X`` as float32 (dense) or a float32 CSR matrix.

    Examples
    --------
    >>> import numpy as np
    >>> check_counts(np.array([[1, 0], [2, 3]]), "counts.h5").dtype
    dtype('float32')
    >>> check_counts(np.array([[1, -1]]), "counts.h5")
    Traceback (most recent call last):
    ...
    deepchem_actinn.errors.InputError: counts.h5: matrix holds 1 negative values; ...
    """
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise InputError(f"matrix has no {'cells' if X.shape[0] == 0 else 'genes'}", source)
    values: Any = X.data if sp.issparse(X) else X
    if not np.issubdtype(np.asarray(values).dtype, np.number) or np.asarray(values).dtype == bool:
        try:
            values = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError("matrix holds non-numeric values", source) from None
        X = sp.csr_matrix((values, X.indices, X.indptr), shape=X.shape) if sp.issparse(X) \
            else values
    values = X.data if sp.issparse(X) else X
    if values.size:
        if np.isnan(values).any():
            raise InputError(f"matrix holds {int(np.isnan(values).sum())} NaN values", source)
        if np.isinf(values).any():
            raise InputError(f"matrix holds {int(np.isinf(values).sum())} infinite values",
                             source)
        if (values < 0).any():
            raise InputError(
                f"matrix holds {int((values < 0).sum())} negative values; ACTINN needs raw counts",
                source)
        if values.dtype.kind == "f" and values.dtype.itemsize > 4:
            # float32 is what the network sees: larger values would become inf, then NaN.
            huge = values > np.finfo(np.float32).max
            if huge.any():
                raise InputError(f"matrix holds {int(huge.sum())} values beyond the float32 "
                                 f"range (e.g. {float(values[huge].flat[0]):.3g}); ACTINN needs "
                                 "raw counts", source)
        fractional = values != np.round(values)
        if fractional.any():
            example = float(np.asarray(values)[fractional].flat[0])
            message = (f"{source}: matrix holds {int(fractional.sum())} non-integer values "
                       f"(e.g. {example:.4g}); ACTINN expects raw counts, and results on "
                       "normalised or log data may be poor; continuing (pass raw counts to "
                       "silence this)")
            if not allow_non_integer:
                raise InputError("matrix holds non-integer values; ACTINN expects raw counts",
                                 source)
            warnings.warn(message, CountMatrixWarning, stacklevel=user_stacklevel())
    if sp.issparse(X):
        return sp.csr_matrix(X, dtype=np.float32)
    return np.ascontiguousarray(X, dtype=np.float32)


def _dedupe_genes(matrix: CountMatrix) -> CountMatrix:
    """Keep the first of genes whose upper-cased names repeat (as ACTINN does)."""
    duplicated = pd.Index(matrix.genes).duplicated(keep="first")
    if duplicated.any():
        examples = sorted(set(matrix.genes[duplicated]))[:5]
        note = (f"{matrix.source}: {int(duplicated.sum())} duplicate gene names after "
                f"upper-casing (e.g. {', '.join(examples)}); kept the first of each")
        warnings.warn(note, CountMatrixWarning, stacklevel=user_stacklevel())
        keep = np.flatnonzero(~duplicated)
        matrix = CountMatrix(take_columns(matrix.X, keep), matrix.genes[keep], matrix.cells,
                             matrix.source, matrix.notes + [note])
    return matrix


def _dedupe_cells(matrix: CountMatrix) -> CountMatrix:
    """Make repeated cell ids unique as scanpy does (``id``, ``id-1``, ``id-2``...)."""
    index = pd.Index(matrix.cells)
    if not index.has_duplicates:
        return matrix
    seen: dict = {}
    taken = set(index)
    unique = []
    for cell in matrix.cells:
        if cell not in seen:
            seen[cell] = 0
            unique.append(cell)
            continue
        while True:
            seen[cell] += 1
            candidate = f"{cell}-{seen[cell]}"
            if candidate not in taken:
                break
        taken.add(candidate)
        unique.append(candidate)
    n_dup = int(index.duplicated().sum())
    examples = sorted(set(index[index.duplicated()]))[:5]
    note = (f"{matrix.source}: {n_dup} duplicate cell ids (e.g. {', '.join(map(str, examples))}); "
            "renamed the repeats id-1, id-2, ...")
    warnings.warn(note, CountMatrixWarning, stacklevel=user_stacklevel())
    return CountMatrix(matrix.X, matrix.genes, np.asarray(unique, dtype=object), matrix.source,
                       matrix.notes + [note])


def finish_matrix(X: Matrix, genes: Sequence, cells: Sequence, source: str) -> CountMatrix:
    """Validate values, upper-case and de-duplicate names: every reader ends here.

    Examples
    --------
    >>> import numpy as np
    >>> m = finish_matrix(np.array([[4, 0, 1]]), ["Cd3e", "CD3E", "Cd19"], ["c1"], "<memory>")
    >>> m.genes.tolist(), m.X.tolist()  # the repeated gene keeps its first column
    (['CD3E', 'CD19'], [[4.0, 1.0]])
    """
    X = check_counts(X, source)
    matrix = CountMatrix(X, list(genes), list(cells), source=source)
    return _dedupe_cells(_dedupe_genes(matrix))


@dataclass
class StoredCounts:
    """Counts as a file stores them, cells x genes, before :func:`finish_matrix`.

    ``genes`` keep their case and repeats; ``gene_ids`` holds the second
    gene identifier of 10x files (Ensembl ids next to symbols), if any.
    """

    X: Matrix
    genes: List[str]
    cells: List[str]
    source: str
    format: str
    gene_ids: Optional[List[str]] = None

    def finish(self) -> CountMatrix:
        """Validate and de-duplicate into a :class:`CountMatrix`."""
        return finish_matrix(self.X, self.genes, self.cells, self.source)
