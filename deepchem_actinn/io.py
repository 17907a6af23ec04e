"""Readers: count matrices and cell-type label files.

Everything here returns cells x genes data (the orientation DeepChem and
scanpy use), whatever the orientation on disk. Files in the format of
ACTINN and of DeepChem's tutorial (pandas HDF, genes x cells) are read with
:func:`read_counts`; labels (``cell_id<TAB>cell_type``) with
:func:`read_labels`, and joined to cells **by id** with :func:`join_labels`.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import scipy.sparse as sp

from deepchem_actinn.errors import InputError

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
# np.ndarray or scipy.sparse.csr_matrix (Any: numpy and scipy stubs do not unify).
Matrix = Any
#: Gene names, cell ids or class names: a list or a numpy array of str.
Names = Union[Sequence[str], np.ndarray]

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# First-row words that mark a label file's header line.
_HEADER_WORDS = {
    "cell", "cells", "cell_id", "cellid", "cell id", "barcode", "barcodes", "id", "ids",
    "cell_type", "celltype", "cell type", "label", "labels", "type", "cluster", "annotation",
}


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
        return CountMatrix(self.X[index], self.genes, self.cells[index], self.source,
                           list(self.notes))

    def library_sizes(self) -> np.ndarray:
        """Total counts of each cell."""
        return np.asarray(self.X.sum(axis=1), dtype=np.float64).ravel()


# ---------------------------------------------------------------------------
# Count matrices
# ---------------------------------------------------------------------------


def _check_readable(path: PathLike) -> str:
    name = os.fspath(path)
    if not os.path.exists(name):
        raise InputError("file not found", name)
    if os.path.isdir(name):
        raise InputError("is a directory, expected a file", name)
    if os.path.getsize(name) == 0:
        raise InputError("file is empty", name)
    return name


def _is_hdf5(path: str) -> bool:
    with open(path, "rb") as handle:
        return handle.read(8) == HDF5_SIGNATURE


def read_pandas_hdf(path: PathLike, key: Optional[str] = None) -> pd.DataFrame:
    """Read the genes x cells DataFrame stored by ``DataFrame.to_hdf``.

    The key is ``key`` if given, else ``dge`` (ACTINN's), else the file's only key.
    """
    name = _check_readable(path)
    if not _is_hdf5(name):
        raise InputError("not an HDF5 file (expected pandas HDF, key 'dge')", name)
    try:
        with pd.HDFStore(name, mode="r") as store:
            keys = [k.lstrip("/") for k in store.keys()]
            if key is None:
                if "dge" in keys:
                    key = "dge"
                elif len(keys) == 1:
                    key = keys[0]
                elif not keys:
                    raise InputError("HDF5 file holds no pandas DataFrame", name)
                else:
                    raise InputError(
                        f"HDF5 file holds {len(keys)} DataFrames ({', '.join(keys[:5])}); "
                        "choose one with --key", name)
            if key not in keys:
                raise InputError(f"no key '{key}' in HDF5 file (keys: {', '.join(keys)})", name)
            frame = store[key]
    except InputError:
        raise
    except Exception as exc:  # tables raises many types for damaged files
        raise InputError(f"cannot read as pandas HDF: {type(exc).__name__}: {exc}", name) from exc
    if not isinstance(frame, pd.DataFrame):
        raise InputError(f"key '{key}' holds a {type(frame).__name__}, not a DataFrame", name)
    return frame


def check_counts(X: Matrix, source: str, allow_non_integer: bool = True) -> Matrix:
    """Validate a count matrix: numeric, finite, non-negative, not empty.

    Non-integer values are accepted with a warning, since ACTINN's
    normalisation assumes raw counts but log-normalised data still runs.
    Returns ``X`` as float32 (dense) or a float32 CSR matrix.
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
        if not np.array_equal(values, np.round(values)):
            message = (f"{source}: matrix holds non-integer values; ACTINN expects raw counts "
                       "(results on normalised data may be poor)")
            if not allow_non_integer:
                raise InputError("matrix holds non-integer values; ACTINN expects raw counts",
                                 source)
            warnings.warn(message, CountMatrixWarning, stacklevel=3)
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
        warnings.warn(note, CountMatrixWarning, stacklevel=3)
        keep = np.flatnonzero(~duplicated)
        matrix = CountMatrix(matrix.X[:, keep], matrix.genes[keep], matrix.cells,
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
    warnings.warn(note, CountMatrixWarning, stacklevel=3)
    return CountMatrix(matrix.X, matrix.genes, np.asarray(unique, dtype=object), matrix.source,
                       matrix.notes + [note])


def finish_matrix(X: Matrix, genes: Sequence, cells: Sequence, source: str) -> CountMatrix:
    """Validate values, upper-case and de-duplicate names: every reader ends here."""
    X = check_counts(X, source)
    matrix = CountMatrix(X, list(genes), list(cells), source=source)
    return _dedupe_cells(_dedupe_genes(matrix))


def read_counts(path: PathLike, key: Optional[str] = None) -> CountMatrix:
    """Read a genes x cells count matrix into a cells x genes :class:`CountMatrix`.

    Parameters
    ----------
    path: str
        A pandas HDF file (``DataFrame.to_hdf``; genes as index, cells as
        columns), the format of ACTINN and of DeepChem's tutorial.
    key: str, optional
        HDF key; default ``dge`` or the file's only key.

    Examples
    --------
    >>> import tempfile, os, pandas as pd
    >>> path = os.path.join(tempfile.mkdtemp(), "counts.h5")
    >>> pd.DataFrame([[1, 0, 4], [0, 2, 0]], index=["Cd19", "Cd3e"],
    ...              columns=["c1", "c2", "c3"]).to_hdf(path, key="dge")
    >>> m = read_counts(path)
    >>> m.shape, m.genes.tolist()
    ((3, 2), ['CD19', 'CD3E'])
    """
    name = _check_readable(path)
    frame = read_pandas_hdf(name, key)
    return finish_matrix(frame.to_numpy().T, list(frame.index), list(frame.columns), name)


# ---------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------


def read_labels(path: PathLike) -> pd.Series:
    """Read ``cell_id<TAB>cell_type`` lines into a Series indexed by cell id.

    A header line is detected from its words (``cell_id``, ``label``, ...)
    and skipped. Duplicate ids, empty files and files that are not
    tab-separated are refused.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "labels.tsv")
    >>> _ = open(path, "w").write("cell_id\\tcell_type\\nc1\\tB cell\\nc2\\tT cell\\n")
    >>> read_labels(path).to_dict()
    {'c1': 'B cell', 'c2': 'T cell'}
    """
    name = _check_readable(path)
    try:
        with open(name, encoding="utf-8-sig") as handle:
            lines = [line.rstrip("\r\n") for line in handle]
    except UnicodeDecodeError:
        raise InputError("label file is not UTF-8 text", name) from None
    rows = [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]
    if not rows:
        raise InputError("label file is empty", name)
    parsed: List[Tuple[str, str]] = []
    for number, line in rows:
        fields = line.split("\t")
        if len(fields) < 2:
            hint = ""
            for sep, sep_name in ((",", "commas"), (";", "semicolons"), (" ", "spaces")):
                if sep in line:
                    hint = f" (it looks separated by {sep_name})"
                    break
            raise InputError(
                f"line {number} is not 'cell_id<TAB>cell_type'{hint}", name)
        cell, label = fields[0].strip(), fields[1].strip()
        if not cell or not label:
            raise InputError(f"line {number} has an empty cell id or cell type", name)
        parsed.append((cell, label))
    first_cell, first_label = parsed[0]
    if first_cell.lower() in _HEADER_WORDS or first_label.lower() in _HEADER_WORDS:
        parsed = parsed[1:]
        if not parsed:
            raise InputError("label file has a header but no labels", name)
    labels = pd.Series([label for _, label in parsed], index=[cell for cell, _ in parsed],
                       name="cell_type", dtype=object)
    duplicated = labels.index.duplicated(keep=False)
    if duplicated.any():
        examples = sorted(set(labels.index[duplicated]))[:5]
        raise InputError(
            f"{int(labels.index.duplicated().sum())} duplicate cell ids "
            f"(e.g. {', '.join(examples)})", name)
    return labels


@dataclass
class LabelJoin:
    """What :func:`join_labels` matched: the labelled cells and what was left out."""

    matrix: CountMatrix
    labels: np.ndarray
    n_unlabelled_cells: int
    n_labels_without_cell: int
    unlabelled_examples: List[str]
    orphan_label_examples: List[str]

    def summary(self) -> str:
        parts = [f"{self.matrix.shape[0]} labelled cells"]
        if self.n_unlabelled_cells:
            parts.append(f"{self.n_unlabelled_cells} cells without a label "
                         f"(e.g. {', '.join(self.unlabelled_examples)}) left out")
        if self.n_labels_without_cell:
            parts.append(f"{self.n_labels_without_cell} labels without a cell "
                         f"(e.g. {', '.join(self.orphan_label_examples)}) ignored")
        return "; ".join(parts)


def join_labels(matrix: CountMatrix, labels: pd.Series, label_source: str = "<labels>",
                min_fraction: float = 0.0) -> LabelJoin:
    """Keep the cells that have a label, matched by id, in the matrix's order.

    Cells without a label and labels without a cell are counted and reported
    with a warning. No match at all is an error; if the label ids match the
    gene names instead, the matrix is transposed and the error says so.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> m = CountMatrix(np.eye(3), ["g1", "g2", "g3"], ["a", "b", "c"])
    >>> j = join_labels(m, pd.Series({"c": "T", "a": "B"}))
    >>> j.matrix.cells.tolist(), j.labels.tolist()
    (['a', 'c'], ['B', 'T'])
    """
    label_index = pd.Index([str(i) for i in labels.index])
    cells = pd.Index(matrix.cells)
    has_label = cells.isin(label_index)
    if not has_label.any():
        upper_ids = pd.Index([i.upper() for i in label_index])
        if upper_ids.isin(pd.Index(matrix.genes)).mean() > 0.5:
            raise InputError(
                f"the label ids of {label_source} match this matrix's gene names: the matrix "
                "looks transposed (expected genes as rows, cells as columns)", matrix.source)
        raise InputError(
            f"no cell id matches a label id in {label_source} (cells e.g. "
            f"{', '.join(map(str, matrix.cells[:3]))}; labels e.g. "
            f"{', '.join(map(str, label_index[:3]))})", matrix.source)
    fraction = float(has_label.mean())
    if fraction < min_fraction:
        raise InputError(
            f"only {int(has_label.sum())} of {len(cells)} cells have a label in {label_source}",
            matrix.source)
    keep = np.flatnonzero(has_label)
    values = pd.Series(np.asarray(labels.values, dtype=object), index=label_index)
    joined = matrix.select_cells(keep)
    orphans = label_index[~label_index.isin(cells)]
    result = LabelJoin(
        matrix=joined,
        labels=np.asarray(values.loc[joined.cells].to_numpy(), dtype=object),
        n_unlabelled_cells=int((~has_label).sum()),
        n_labels_without_cell=int(len(orphans)),
        unlabelled_examples=[str(c) for c in matrix.cells[~has_label][:3]],
        orphan_label_examples=[str(c) for c in orphans[:3]],
    )
    if result.n_unlabelled_cells or result.n_labels_without_cell:
        warnings.warn(f"{matrix.source} + {label_source}: {result.summary()}",
                      CountMatrixWarning, stacklevel=2)
    return result


def read_labelled(counts: PathLike, labels: PathLike, key: Optional[str] = None) -> LabelJoin:
    """Read a count matrix and its label file and join them by cell id."""
    matrix = read_counts(counts, key=key)
    return join_labels(matrix, read_labels(labels), label_source=os.fspath(labels))
