"""Readers: count matrices and cell-type label files.

Everything here returns cells x genes data (the orientation DeepChem and
scanpy use), whatever the orientation on disk. Files in the format of
ACTINN and of DeepChem's tutorial (pandas HDF, genes x cells) are read with
:func:`read_counts`; labels (``cell_id<TAB>cell_type``) with
:func:`read_labels`, and joined to cells **by id** with :func:`join_labels`.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import scipy.sparse as sp

from deepchem_actinn.errors import InputError, MissingDependencyError
from deepchem_actinn.file_checks import (
    check_compressed,
    check_dataset,
    check_dimensions,
    check_hdf5_sizes,
    check_sparse_group,
    check_sparse_matrix,
    check_text_width,
    dataset_shape,
    mtx_header,
)

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
    "index", "obs_names", "cell_types", "cell_ontology_class", "bulk_labels", "louvain", "leiden",
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
        return CountMatrix(take_rows(self.X, index), self.genes, self.cells[index], self.source,
                           list(self.notes))

    def library_sizes(self) -> np.ndarray:
        """Total counts of each cell."""
        return np.asarray(self.X.sum(axis=1), dtype=np.float64).ravel()


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
    The file is parsed with h5py (:mod:`deepchem_actinn.pandas_hdf`), never
    through pandas/PyTables, which unpickle object-typed data and attributes:
    files holding pickled objects are refused.

    Examples
    --------
    >>> from deepchem_actinn.sample_data import sample_files
    >>> read_pandas_hdf(sample_files().sample_2_counts).shape  # genes x cells
    (1200, 1000)
    """
    from deepchem_actinn.pandas_hdf import read_frame

    name = _check_readable(path)
    if not _is_hdf5(name):
        raise InputError("not an HDF5 file (expected pandas HDF, key 'dge')", name)
    stored = read_frame(name, key)
    return pd.DataFrame(stored.values, index=pd.Index(stored.index),
                        columns=pd.Index(stored.columns), copy=False)


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
    warnings.warn(note, CountMatrixWarning, stacklevel=3)
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


# -- Other formats -------------------------------------------------------------
#
# Each format has a loader returning :class:`StoredCounts` (the counts as the
# file holds them: names not upper-cased, nothing de-duplicated, so `convert`
# can write them back unchanged) and :func:`read_counts` finishes them into a
# CountMatrix. Sparse files stay sparse (CSR) all the way.

#: Count-matrix formats :func:`read_counts` reads and :func:`detect_format` returns.
FORMATS = ("pandas-hdf", "10x-h5", "mtx", "csv", "tsv", "h5ad")
_FORMAT_ALIASES = {
    "pandas": "pandas-hdf", "hdf": "pandas-hdf", "pandas_hdf": "pandas-hdf",
    "10x": "10x-h5", "10x-hdf5": "10x-h5", "10x_h5": "10x-h5", "cellranger": "10x-h5",
    "mex": "mtx", "matrix-market": "mtx", "matrixmarket": "mtx", "10x-mtx": "mtx",
    "txt": "tsv", "text": "tsv", "anndata": "h5ad",
}
#: The formats each reading option applies to.
FORMAT_OPTIONS = {"key": ("pandas-hdf", "10x-h5"), "layer": ("h5ad",), "gene_column": ("h5ad",),
                  "cells_as_rows": ("csv", "tsv"), "gene_ids": ("10x-h5", "mtx")}
GZIP_SIGNATURE = b"\x1f\x8b"
ANNDATA_HINT = "pip install 'deepchem_actinn[anndata]'"
_MTX_NAME = re.compile(r"^(.*?)matrix\.mtx(\.gz)?$", re.IGNORECASE)
_GENE_EXPRESSION = "Gene Expression"


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


def normalize_format(name: Optional[str]) -> Optional[str]:
    """Map a format name or alias (``10x``, ``anndata``, ``mex``...) to one of :data:`FORMATS`."""
    if name is None:
        return None
    key = str(name).strip().lower()
    key = _FORMAT_ALIASES.get(key, key)
    if key not in FORMATS:
        raise InputError(f"unknown format '{name}'; choose from {', '.join(FORMATS)}")
    return key


def _sniff(path: str, size: int = 4096) -> Tuple[bytes, bool]:
    """The first bytes of a file (decompressed if gzip) and whether it is gzip."""
    with open(path, "rb") as handle:
        head = handle.read(size)
    if head.startswith(GZIP_SIGNATURE):
        try:
            with gzip.open(path, "rb") as handle:
                return handle.read(size), True
        except (OSError, EOFError) as exc:
            raise InputError(f"damaged gzip file ({exc})", path) from exc
    return head, False


def _find_mtx(path: str) -> Tuple[str, str]:
    """The folder and matrix file of a Matrix Market folder (or of its matrix file)."""
    if os.path.isfile(path):
        return os.path.dirname(os.path.abspath(path)), path
    names = sorted(os.listdir(path))
    matrices = [n for n in names if _MTX_NAME.match(n)]
    if len(matrices) == 1:
        return path, os.path.join(path, matrices[0])
    if len(matrices) > 1:
        raise InputError(f"folder holds {len(matrices)} Matrix Market files "
                         f"({', '.join(matrices[:4])}); give the path of one", path)
    nested = [n for n in ("filtered_feature_bc_matrix", "raw_feature_bc_matrix",
                          "filtered_gene_bc_matrices", "raw_gene_bc_matrices") if n in names]
    hint = f" (a Cell Ranger folder? use {os.path.join(path, nested[0])})" if nested else ""
    raise InputError("folder holds no matrix.mtx or matrix.mtx.gz; expected a Matrix Market "
                     f"folder (matrix.mtx[.gz], features.tsv[.gz], barcodes.tsv[.gz]){hint}", path)


def _hdf5_kind(path: str) -> str:
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            keys = list(handle.keys())
            encoding = handle.attrs.get("encoding-type", b"")
            if isinstance(encoding, bytes):
                encoding = encoding.decode("utf-8", "replace")
            if encoding == "anndata" or {"X", "obs", "var"} <= set(keys):
                return "h5ad"
            matrix = handle.get("matrix")
            if isinstance(matrix, h5py.Group) and {"data", "indices", "indptr", "shape"} <= set(
                    matrix.keys()):
                return "10x-h5"
            if isinstance(matrix, h5py.Dataset) and "row_attrs" in keys:
                raise InputError("a loom file, which is not read; convert it to .h5ad "
                                 "(scanpy.read_loom(...).write_h5ad(...))", path)
            groups = [handle[k] for k in keys if isinstance(handle[k], h5py.Group)]
            if groups and all({"data", "indices", "indptr", "shape", "barcodes"} <= set(g.keys())
                              for g in groups):
                return "10x-h5"
            if "PYTABLES_FORMAT_VERSION" in handle.attrs or any(
                    "pandas_type" in g.attrs for g in groups):
                return "pandas-hdf"
    except InputError:
        raise
    except Exception as exc:  # h5py raises OSError, KeyError... on damaged files
        raise InputError(f"cannot read HDF5 file: {type(exc).__name__}: {exc}", path) from exc
    raise InputError("HDF5 file is neither pandas HDF, 10x Genomics HDF5 nor .h5ad "
                     f"(top-level keys: {', '.join(keys[:8]) or 'none'})", path)


def detect_format(path: PathLike) -> str:
    """Name the count-matrix format of ``path`` from its content, not its name.

    HDF5 files are told apart by their structure (``X``/``obs``/``var``:
    h5ad; a ``matrix`` group or per-genome groups: 10x; PyTables: pandas
    HDF), a folder or a file starting ``%%MatrixMarket`` is Matrix Market,
    other text is CSV or TSV by the separator of its first line (gzip
    decompressed first).

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "counts.h5")  # misleading extension
    >>> _ = open(path, "w").write("gene,c1,c2\\nCd19,1,0\\n")
    >>> detect_format(path)
    'csv'
    """
    name = os.fspath(path)
    if not os.path.exists(name):
        raise InputError("file not found", name)
    if os.path.isdir(name):
        _find_mtx(name)
        return "mtx"
    if os.path.getsize(name) == 0:
        raise InputError("file is empty", name)
    head, _ = _sniff(name)
    if head.startswith(HDF5_SIGNATURE):
        return _hdf5_kind(name)
    if head.startswith(b"PK\x03\x04"):
        raise InputError("a zip archive (.zip, .xlsx, .npz?), not a count matrix; unpack or "
                         "export it as CSV, Matrix Market, 10x HDF5 or .h5ad", name)
    if head.lstrip().startswith(b"%%MatrixMarket"):
        return "mtx"
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = head.decode("latin-1") if b"\x00" not in head else ""
    if not text or "\x00" in text:
        import h5py
        if h5py.is_hdf5(name):  # HDF5 with a user block
            return _hdf5_kind(name)
        raise InputError(f"not a recognised count-matrix format (readable: {', '.join(FORMATS)})",
                         name)
    first = text.splitlines()[0] if text.splitlines() else ""
    if "\t" in first:
        return "tsv"
    if "," in first:
        return "csv"
    hint = " (it looks separated by semicolons)" if ";" in first else ""
    raise InputError("text file is neither tab- nor comma-separated (expected genes x cells "
                     f"with cell ids in the header row){hint}", name)


def string_dataset(node: Any) -> Any:
    """The HDF5 dataset of a string array: the node itself, or the ``values`` of an
    anndata >= 0.13 ``nullable-string-array`` group (``values`` + ``mask``)."""
    return node["values"] if hasattr(node, "keys") and "values" in node else node


def _strings(values: Any) -> List[str]:
    """Decode an HDF5 string dataset (fixed-length bytes or variable-length)."""
    values = string_dataset(values)
    if hasattr(values, "id") and hasattr(values, "file"):  # an h5py dataset: size first
        check_dataset(values, values.file.filename, values.name)
    array = np.asarray(values[()] if hasattr(values, "shape") and hasattr(values, "dtype")
                       and not isinstance(values, np.ndarray) else values).ravel()
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in array]


def _csc_to_cells(data: Any, indices: Any, indptr: Any, shape: Any, source: str) -> Matrix:
    """A genes x cells CSC triplet (10x layout) as a cells x genes CSR matrix."""
    n_genes, n_cells = check_dimensions(shape, source)
    check_compressed(data, indices, indptr, n_cells, n_genes, source)
    try:
        X = sp.csr_matrix((np.asarray(data), np.asarray(indices), np.asarray(indptr)),
                          shape=(n_cells, n_genes))
    except ValueError as exc:
        raise InputError(f"damaged sparse matrix: {exc}", source) from exc
    return X


def _read_10x_matrix(group: Any, source: str) -> Matrix:
    """The counts of a 10x group, their sizes checked before they are read."""
    if "shape" not in group:
        raise InputError(f"10x HDF5 group {group.name} lacks 'shape'", source)
    n_genes, n_cells = dataset_shape(group["shape"], source, f"10x HDF5 {group.name}/shape")
    check_sparse_group(group, n_cells, n_genes, source)
    return _csc_to_cells(group["data"][()], group["indices"][()], group["indptr"][()],
                         (n_genes, n_cells), source)


def _keep_gene_expression(X: Matrix, genes: List[str], ids: List[str],
                          types: Optional[List[str]], source: str
                          ) -> Tuple[Matrix, List[str], List[str]]:
    """Drop antibody, CRISPR... features of a 10x file (keep ``Gene Expression``)."""
    if types is None:
        return X, genes, ids
    keep = np.array([t == _GENE_EXPRESSION for t in types])
    if keep.all():
        return X, genes, ids
    if not keep.any():
        raise InputError(f"no '{_GENE_EXPRESSION}' features (types: "
                         f"{', '.join(sorted(set(types))[:5])})", source)
    others = ", ".join(sorted(set(types) - {_GENE_EXPRESSION})[:3])
    warnings.warn(f"{source}: kept the {int(keep.sum())} '{_GENE_EXPRESSION}' features, dropped "
                  f"{int((~keep).sum())} others ({others})", CountMatrixWarning, stacklevel=4)
    index = np.flatnonzero(keep)
    return (take_columns(X, index), [genes[i] for i in index], [ids[i] for i in index])


def tenx_v2_genome(handle: Any, genome: Optional[str], source: str) -> str:
    """The genome group to read from a Cell Ranger 2 HDF5 file (one group per genome)."""
    import h5py

    available = [k for k in handle.keys() if isinstance(handle[k], h5py.Group)]
    if genome is None:
        if len(available) != 1:
            raise InputError(f"10x HDF5 file holds {len(available)} genomes "
                             f"({', '.join(available[:5])}); choose one with --key", source)
        return str(available[0])
    if genome not in available:
        raise InputError(f"no genome '{genome}' in 10x HDF5 file (genomes: "
                         f"{', '.join(available)})", source)
    return genome


def load_10x_h5(path: PathLike, genome: Optional[str] = None,
                gene_ids: bool = False) -> StoredCounts:
    """Load a Cell Ranger HDF5 matrix (v3 ``matrix`` group, or v2 per-genome groups)."""
    import h5py

    name = _check_readable(path)
    try:
        with h5py.File(name, "r") as handle:
            if "matrix" in handle and isinstance(handle["matrix"], h5py.Group):
                group = handle["matrix"]
                if "features" not in group or "barcodes" not in group:
                    raise InputError("10x HDF5 'matrix' group lacks features or barcodes", name)
                features = group["features"]
                names = _strings(features["name"])
                ids = _strings(features["id"]) if "id" in features else list(names)
                types = (_strings(features["feature_type"]) if "feature_type" in features
                         else None)
                genomes = _strings(features["genome"]) if "genome" in features else None
            else:
                group = handle[tenx_v2_genome(handle, genome, name)]
                ids = _strings(group["genes"]) if "genes" in group else []
                names = _strings(group["gene_names"]) if "gene_names" in group else list(ids)
                ids = ids or list(names)
                types, genomes, genome = None, None, None
            X = _read_10x_matrix(group, name)
            cells = _strings(group["barcodes"])
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"cannot read 10x HDF5 file: {type(exc).__name__}: {exc}", name) from exc
    if len(names) != X.shape[1] or len(ids) != X.shape[1] or len(cells) != X.shape[0] or \
            any(v is not None and len(v) != X.shape[1] for v in (types, genomes)):
        raise InputError(f"10x HDF5 matrix is {X.shape[1]} genes x {X.shape[0]} cells but lists "
                         f"{len(names)} features and {len(cells)} barcodes", name)
    if genome is not None and genomes is not None:
        if genome not in set(genomes):
            raise InputError(f"no genome '{genome}' among the features (genomes: "
                             f"{', '.join(sorted(set(genomes)))})", name)
        index = np.flatnonzero(np.asarray(genomes) == genome)
        X, names, ids = X[:, index], [names[i] for i in index], [ids[i] for i in index]
        types = None if types is None else [types[i] for i in index]
    X, names, ids = _keep_gene_expression(X, names, ids, types, name)
    genes, other = (ids, names) if gene_ids else (names, ids)
    return StoredCounts(X, genes, cells, name, "10x-h5", gene_ids=other)


def _read_table_column(path: str, source: str) -> pd.DataFrame:
    _, gz = _sniff(path, 2)
    check_text_width(path, "\t", source, limit=1000, what="fields")
    try:
        return pd.read_csv(path, sep="\t", header=None, dtype=str, keep_default_na=False,
                           compression="gzip" if gz else None, quoting=3)
    except Exception as exc:
        raise InputError(f"cannot read {os.path.basename(path)}: {exc}", source) from exc


def _companion(folder: str, prefix: str, stems: Sequence[str]) -> Optional[str]:
    for stem in stems:
        for candidate in (prefix + stem, stem):
            for suffix in ("", ".gz"):
                full = os.path.join(folder, candidate + suffix)
                if os.path.isfile(full):
                    return full
    return None


def load_mtx(path: PathLike, gene_ids: bool = False) -> StoredCounts:
    """Load a Matrix Market folder: ``matrix.mtx[.gz]`` (genes x cells), features, barcodes.

    ``path`` is the folder or its matrix file. Gene names come from
    ``features.tsv[.gz]`` (Cell Ranger v3: id, symbol, type) or
    ``genes.tsv[.gz]`` (v2: id, symbol); a file prefix such as GEO's
    ``GSM123_matrix.mtx.gz`` + ``GSM123_barcodes.tsv.gz`` is followed.
    """
    import scipy.io

    name = os.fspath(path)
    if not os.path.exists(name):
        raise InputError("file not found", name)
    folder, matrix_file = _find_mtx(name)
    match = _MTX_NAME.match(os.path.basename(matrix_file))
    prefix = match.group(1) if match else ""
    features_file = _companion(folder, prefix, ("features.tsv", "genes.tsv"))
    barcodes_file = _companion(folder, prefix, ("barcodes.tsv",))
    if features_file is None or barcodes_file is None:
        missing = "features.tsv[.gz] or genes.tsv[.gz]" if features_file is None \
            else "barcodes.tsv[.gz]"
        raise InputError(f"Matrix Market folder lacks {missing}", folder)
    head, gz = _sniff(matrix_file, 64)
    if not head.lstrip().startswith(b"%%MatrixMarket"):
        raise InputError("not a Matrix Market file (no %%MatrixMarket header)", matrix_file)
    # The size line is checked against the file and the name lists before
    # scipy allocates anything for it (a false claim used to abort the process).
    _, n_rows, n_columns, _ = mtx_header(matrix_file)
    features = _read_table_column(features_file, folder)
    barcodes = _read_table_column(barcodes_file, folder)
    ids = features.iloc[:, 0].tolist()
    names = features.iloc[:, 1].tolist() if features.shape[1] > 1 else list(ids)
    types = features.iloc[:, 2].tolist() if features.shape[1] > 2 else None
    cells = barcodes.iloc[:, 0].tolist()
    if (n_rows, n_columns) not in ((len(ids), len(cells)), (len(cells), len(ids))):
        raise InputError(f"matrix is {n_rows} x {n_columns} but "
                         f"{os.path.basename(features_file)} lists {len(ids)} genes and "
                         f"{os.path.basename(barcodes_file)} {len(cells)} cells", folder)
    try:
        opener: Any = gzip.open if gz else open
        with opener(matrix_file, "rb") as handle:
            stored = sp.csr_matrix(scipy.io.mmread(handle))
    except Exception as exc:
        raise InputError(f"cannot read Matrix Market file: {type(exc).__name__}: {exc}",
                         matrix_file) from exc
    if stored.shape == (len(ids), len(cells)):
        X = sp.csr_matrix(stored.T)
    elif stored.shape == (len(cells), len(ids)):
        X = stored  # cells x genes on disk (not 10x's layout, but unambiguous)
    else:
        raise InputError(f"matrix is {stored.shape[0]} x {stored.shape[1]} but "
                         f"{os.path.basename(features_file)} lists {len(ids)} genes and "
                         f"{os.path.basename(barcodes_file)} {len(cells)} cells", folder)
    X, names, ids = _keep_gene_expression(X, names, ids, types, folder)
    genes, other = (ids, names) if gene_ids else (names, ids)
    return StoredCounts(X, genes, cells, folder if os.path.isdir(name) else name, "mtx",
                        gene_ids=other)


def load_text(path: PathLike, cells_as_rows: bool = False,
              sep: Optional[str] = None) -> StoredCounts:
    """Load a CSV/TSV table: genes x cells (header row of cell ids, gene names first).

    With ``cells_as_rows`` the table is cells x genes (header row of genes).
    The separator is read from the first line unless given; gzip is
    recognised from the content.
    """
    name = _check_readable(path)
    head, gz = _sniff(name)
    if sep is None:
        first = head.decode("utf-8", "replace").splitlines()[0] if head else ""
        sep = "\t" if "\t" in first else ","
    check_text_width(name, sep, name)  # before pandas allocates per column
    try:
        frame = pd.read_csv(name, sep=sep, index_col=0, dtype={0: str}, low_memory=False,
                            compression="gzip" if gz else None)
    except Exception as exc:
        raise InputError(f"cannot read as a delimited table: {type(exc).__name__}: {exc}",
                         name) from exc
    if frame.shape[1] == 0:
        raise InputError("table has a single column; expected gene names then one column per "
                         f"{'gene' if cells_as_rows else 'cell'}", name)
    bad = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if bad:
        column = frame[bad[0]].dropna().astype(str)
        text = column[pd.to_numeric(column, errors="coerce").isna()]
        example = f" (e.g. '{text.iloc[0]}')" if len(text) else ""
        first = "cell ids" if cells_as_rows else "gene names"
        raise InputError(f"column '{bad[0]}' is not numeric{example}; expected {first} in the "
                         "first column and counts in the others", name)
    values = frame.to_numpy()
    # Keep mostly-zero tables sparse so later steps do not copy them densely.
    nonzero = np.count_nonzero(values)
    matrix: Matrix = values if cells_as_rows else values.T
    if values.size and nonzero < 0.5 * values.size:
        matrix = sp.csr_matrix(matrix)
    rows, columns = [str(i) for i in frame.index], [str(c) for c in frame.columns]
    genes, cells = (columns, rows) if cells_as_rows else (rows, columns)
    return StoredCounts(matrix, genes, cells, name, "csv" if sep == "," else "tsv")


def _layer_names(adata: Any) -> List[str]:
    """Named layers (anndata >= 0.13 also lists ``X`` itself, under the key ``None``)."""
    return [str(name) for name in getattr(adata, "layers", {}).keys() if name is not None]


def _anndata_elements(adata: Any, layer: Optional[str], gene_column: Optional[str],
                      source: str) -> Tuple[Matrix, List[str], List[str]]:
    if layer is None or layer == "X":
        X, var, var_names = adata.X, adata.var, adata.var_names
    elif layer == "raw":
        if adata.raw is None:
            raise InputError("AnnData has no .raw; choose another layer", source)
        X, var, var_names = adata.raw.X, adata.raw.var, adata.raw.var_names
    else:
        if layer not in adata.layers:
            names = ", ".join(_layer_names(adata)[:8]) or "none"
            raise InputError(f"no layer '{layer}' in AnnData (layers: {names}; also X, raw)",
                             source)
        X, var, var_names = adata.layers[layer], adata.var, adata.var_names
    if X is None:
        raise InputError("AnnData has no X; choose a layer", source)
    if gene_column is None:
        genes = [str(g) for g in var_names]
    else:
        if gene_column not in var.columns:
            columns = ", ".join(map(str, var.columns[:8])) or "none"
            raise InputError(f"no var column '{gene_column}' (columns: {columns})", source)
        column = var[gene_column]
        if column.isna().any():
            raise InputError(f"var column '{gene_column}' has {int(column.isna().sum())} missing "
                             "gene names", source)
        genes = [str(g) for g in column]
    if hasattr(X, "to_memory"):  # backed sparse datasets
        X = X.to_memory()
    check_sparse_matrix(X, source)  # before scipy indexes with its indices
    X = sp.csr_matrix(X) if sp.issparse(X) else np.asarray(X)
    return X, genes, [str(c) for c in adata.obs_names]


def from_anndata(adata: Any, layer: Optional[str] = None, gene_column: Optional[str] = None,
                 source: str = "<AnnData>") -> StoredCounts:
    """Counts of an ``AnnData``: ``X`` (``layer=None``), ``layers[layer]`` or ``raw.X``.

    Gene names are ``var_names`` or the ``var`` column ``gene_column``
    (e.g. ``"gene_symbols"`` when ``var_names`` are Ensembl ids).
    """
    X, genes, cells = _anndata_elements(adata, layer, gene_column, source)
    values = X.data if sp.issparse(X) else X
    if not (np.issubdtype(values.dtype, np.number) or values.dtype == np.bool_):
        where = "X" if layer is None else f"layer '{layer}'"
        raise InputError(f"{where} holds non-numeric values ({values.dtype}); ACTINN needs raw "
                         "counts", source)
    if values.size and np.issubdtype(values.dtype, np.number) and values.min() < 0:
        choices = _layer_names(adata) + (
            ["raw"] if getattr(adata, "raw", None) is not None else [])
        where = "X" if layer is None else f"layer '{layer}'"
        raise InputError(f"{where} holds negative values (scaled data?); ACTINN needs raw counts: "
                         f"choose them with layer= / --layer (available: "
                         f"{', '.join(choices) or 'none'})", source)
    if layer is None and not _integral_sample(X):
        alternatives = [n for n in _layer_names(adata) if _integral_sample(adata.layers[n])]
        if getattr(adata, "raw", None) is not None and _integral_sample(adata.raw.X):
            alternatives.append("raw")
        if alternatives:
            warnings.warn(f"{source}: X holds non-integer values (normalised?) but layer "
                          f"'{alternatives[0]}' holds counts; choose it with "
                          f"layer='{alternatives[0]}' (--layer {alternatives[0]})",
                          CountMatrixWarning, stacklevel=3)
    return StoredCounts(X, genes, cells, source, "h5ad")


def _integral_sample(X: Any, n: int = 10_000) -> bool:
    values = X.data if sp.issparse(X) else np.asarray(X).ravel()
    values = np.asarray(values[:n], dtype=np.float64)
    return bool(np.array_equal(values, np.round(values)))


def _import_anndata(source: str) -> Any:
    try:
        import anndata
    except ImportError:
        raise MissingDependencyError(f"reading .h5ad needs the anndata package: {ANNDATA_HINT}",
                                     source) from None
    return anndata


def _check_h5ad_sizes(name: str) -> None:
    """Dataset sizes and sparse headers, before anndata reads (and allocates) them all."""
    import h5py

    if not h5py.is_hdf5(name):
        return  # anndata's own error names the problem
    try:
        with h5py.File(name, "r") as handle:
            check_hdf5_sizes(handle, name)
    except InputError:
        raise
    except Exception as exc:  # h5py raises several types on damaged files
        raise InputError(f"cannot read .h5ad: {type(exc).__name__}: {exc}", name) from exc


def read_anndata(path: PathLike) -> Any:
    """The whole ``AnnData`` of an ``.h5ad`` file, its sizes checked before it is read."""
    name = _check_readable(path)
    anndata = _import_anndata(name)
    _check_h5ad_sizes(name)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="anndata")
        try:
            return anndata.read_h5ad(name)
        except Exception as exc:
            raise InputError(f"cannot read .h5ad: {type(exc).__name__}: {exc}", name) from exc


def load_h5ad(path: PathLike, layer: Optional[str] = None,
              gene_column: Optional[str] = None) -> StoredCounts:
    """Load an ``.h5ad`` file (needs the ``anndata`` extra); see :func:`from_anndata`."""
    return from_anndata(read_anndata(path), layer, gene_column, source=os.fspath(path))


def check_format_options(kind: str, source: str, **options: Any) -> None:
    """Refuse a reading option (given: not ``None``/``False``) that ``kind`` files do not take."""
    applies = FORMAT_OPTIONS
    for option, value in options.items():
        if value is not None and value is not False and kind not in applies[option]:
            hint = " (use gene_column / --gene-column for .h5ad)" if option == "gene_ids" \
                and kind == "h5ad" else ""
            raise InputError(f"option {option} applies to {' and '.join(applies[option])} "
                             f"input, but this is {kind}{hint}", source)


def load_counts(path: PathLike, key: Optional[str] = None, *, format: Optional[str] = None,
                layer: Optional[str] = None, gene_column: Optional[str] = None,
                cells_as_rows: bool = False, gene_ids: bool = False) -> StoredCounts:
    """Load counts in any readable format as stored; :func:`read_counts` finishes them.

    Options that do not apply to the file's format are refused, so a typo'd
    ``--layer`` is never silently ignored.
    """
    name = os.fspath(path)
    kind = normalize_format(format) or detect_format(name)
    check_format_options(kind, name, key=key, layer=layer, gene_column=gene_column,
                         cells_as_rows=cells_as_rows, gene_ids=gene_ids)
    if kind == "pandas-hdf":
        # Genes x cells by definition (the tutorial's layout): no --cells-as-rows here.
        frame = read_pandas_hdf(name, key)
        return StoredCounts(frame.to_numpy().T, [str(g) for g in frame.index],
                            [str(c) for c in frame.columns], name, kind)
    if kind == "10x-h5":
        return load_10x_h5(name, genome=key, gene_ids=gene_ids)
    if kind == "mtx":
        return load_mtx(name, gene_ids=gene_ids)
    if kind == "h5ad":
        return load_h5ad(name, layer=layer, gene_column=gene_column)
    return load_text(name, cells_as_rows=cells_as_rows, sep="," if kind == "csv" else "\t")


def read_counts(path: PathLike, key: Optional[str] = None, *, format: Optional[str] = None,
                layer: Optional[str] = None, gene_column: Optional[str] = None,
                cells_as_rows: bool = False, gene_ids: bool = False) -> CountMatrix:
    """Read a count matrix in any supported format into a cells x genes :class:`CountMatrix`.

    The format is recognised from the content (:func:`detect_format`), not
    the extension. Sparse formats stay sparse (CSR).

    Parameters
    ----------
    path: str
        A pandas HDF file (``DataFrame.to_hdf``; genes as index, cells as
        columns; ACTINN's and DeepChem's tutorial format), a 10x Genomics
        HDF5 file (Cell Ranger v2 or v3), a Matrix Market folder
        (``matrix.mtx[.gz]``, ``features.tsv[.gz]``/``genes.tsv``,
        ``barcodes.tsv[.gz]``) or its matrix file, a CSV/TSV table (genes x
        cells, optionally gzipped) or an ``.h5ad`` file.
    key: str, optional
        pandas HDF key (default ``dge`` or the only key); the genome of a
        10x file holding several.
    format: str, optional
        Skip detection: one of :data:`FORMATS` (or an alias like ``10x``).
    layer: str, optional
        ``.h5ad``: ``None`` for ``X``, ``"raw"`` for ``raw.X``, or a layer name.
    gene_column: str, optional
        ``.h5ad``: the ``var`` column holding gene symbols (default ``var_names``).
    cells_as_rows: bool
        CSV/TSV: the table is cells x genes.
    gene_ids: bool
        10x HDF5 and Matrix Market: use gene ids (Ensembl) instead of symbols.

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
    return load_counts(path, key, format=format, layer=layer, gene_column=gene_column,
                       cells_as_rows=cells_as_rows, gene_ids=gene_ids).finish()


# ---------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------


def _is_anndata(data: Any) -> bool:
    # Duck-typed, so anndata is imported only by those who use it.
    return all(hasattr(data, name) for name in ("obs_names", "var_names", "layers", "X"))


def as_count_matrix(data: Any, key: Optional[str] = None, **read_options: Any) -> CountMatrix:
    """Accept a path (any format), an ``AnnData``, a :class:`CountMatrix`, the
    :class:`StoredCounts` of :func:`from_anndata` / :func:`load_counts` or a ``DataFrame``.

    A ``DataFrame`` is genes x cells (``cells_as_rows=True``: cells x
    genes); an ``AnnData`` gives ``X``, ``layers[layer]`` or ``raw.X``
    (``layer=``) with ``var_names`` or a ``var`` column (``gene_column=``)
    as genes. ``read_options`` go to :func:`~deepchem_actinn.io.read_counts`;
    one that does not apply to ``data`` is refused rather than ignored.
    """
    unknown = set(read_options) - set(FORMAT_OPTIONS) - {"format"}
    if unknown:
        raise TypeError(f"unexpected keyword arguments {', '.join(map(repr, sorted(unknown)))}")
    given = sorted(name for name, value in read_options.items() if value)
    if key is not None:
        given = ["key"] + given
    applies = {CountMatrix: (), StoredCounts: (), pd.DataFrame: ("cells_as_rows",)}
    for kind, allowed in applies.items():
        if isinstance(data, kind) and set(given) - set(allowed):
            raise InputError(f"option {', '.join(sorted(set(given) - set(allowed)))} does not "
                             f"apply to a {kind.__name__} (only to files"
                             f"{'' if kind is pd.DataFrame else ' and AnnData'})",
                             f"<{kind.__name__}>")
    if _is_anndata(data) and set(given) - {"layer", "gene_column"}:
        raise InputError(f"option {', '.join(sorted(set(given) - {'layer', 'gene_column'}))} "
                         "does not apply to an AnnData (layer and gene_column do)", "<AnnData>")
    if isinstance(data, CountMatrix):
        return data
    if isinstance(data, StoredCounts):  # from_anndata(), load_counts()
        return data.finish()
    if isinstance(data, pd.DataFrame):
        frame = data.T if read_options.get("cells_as_rows") else data
        return finish_matrix(frame.to_numpy().T, list(frame.index), list(frame.columns),
                             "<DataFrame>")
    if _is_anndata(data):
        return from_anndata(data, layer=read_options.get("layer"),
                            gene_column=read_options.get("gene_column")).finish()
    if isinstance(data, (str, os.PathLike)):
        return read_counts(data, key=key, **read_options)
    raise TypeError(f"cannot read cells from a {type(data).__name__}")


def _read_obs(path: str) -> pd.DataFrame:
    """The ``obs`` table of an ``.h5ad`` file, without reading its matrices."""
    import h5py

    anndata = _import_anndata(path)
    _check_h5ad_sizes(path)
    try:
        read_elem = anndata.io.read_elem
    except AttributeError:  # anndata < 0.11
        read_elem = anndata.experimental.read_elem
    try:
        with h5py.File(path, "r") as handle, warnings.catch_warnings():
            warnings.filterwarnings("ignore", module="anndata")
            if "obs" not in handle:
                raise InputError(".h5ad has no obs table", path)
            return read_elem(handle["obs"])
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"cannot read the obs of .h5ad: {type(exc).__name__}: {exc}",
                         path) from exc


def obs_labels(data: Any, column: str) -> pd.Series:
    """Cell types from the ``obs`` column ``column`` of an ``AnnData`` or ``.h5ad`` file.

    Indexed by ``obs_names``; cells whose value is missing have no label
    (they are left out of training, like cells missing from a label file).
    Of a file only ``obs`` is read.

    Examples
    --------
    >>> import anndata, numpy as np, pandas as pd
    >>> adata = anndata.AnnData(np.ones((3, 2)), obs=pd.DataFrame(
    ...     {"cell_type": ["B", None, "T"]}, index=["c1", "c2", "c3"]))
    >>> obs_labels(adata, "cell_type").to_dict()
    {'c1': 'B', 'c3': 'T'}
    """
    if _is_anndata(data):
        obs, source = data.obs, "<AnnData>"
    elif isinstance(data, (str, os.PathLike)):
        source = _check_readable(data)
        obs = _read_obs(source)
    else:
        raise TypeError(f"cannot read obs labels from a {type(data).__name__}")
    if column not in obs.columns:
        listed = ", ".join(map(str, obs.columns[:12])) or "none"
        raise InputError(f"no obs column '{column}' (obs columns: {listed})", source)
    index = pd.Index([str(c) for c in obs.index])
    if index.has_duplicates:
        examples = ", ".join(sorted(set(index[index.duplicated()]))[:3])
        raise InputError(f"obs_names repeat (e.g. {examples}), so labels cannot be matched to "
                         "cells; make them unique (adata.obs_names_make_unique())", source)
    values = obs[column]
    known = ~pd.isna(values).to_numpy()
    if not known.any():
        raise InputError(f"obs column '{column}' holds no cell types (all missing)", source)
    labels = pd.Series([str(v) for v in values.to_numpy()[known]], index=index[known],
                       name=str(column), dtype=object)
    labels.attrs["source"] = f"{source} obs['{column}']"
    return labels


def training_labels(counts: Any, labels: Any, format: Optional[str] = None) -> Any:
    """``labels`` as given, or the ``obs`` column it names when ``counts`` is an AnnData/.h5ad.

    A string names an ``obs`` column when ``counts`` is an ``AnnData`` or an
    ``.h5ad`` path and no file of that name exists; naming both is refused.
    """
    if not isinstance(labels, str):
        return labels
    is_file = os.path.isfile(labels)
    if _is_anndata(counts):
        if is_file and labels in counts.obs.columns:
            raise InputError(f"'{labels}' is both a label file and an obs column; pass "
                             "read_labels(path) or the Series adata.obs[column]", labels)
        return labels if is_file else obs_labels(counts, labels)
    if isinstance(counts, StoredCounts) and counts.format == "h5ad" and not is_file:
        raise InputError(f"labels '{labels}' is no file, and from_anndata() results have no "
                         "obs; pass the AnnData itself or adata.obs[column]", counts.source)
    if is_file or not isinstance(counts, (str, os.PathLike)) or not os.path.exists(counts):
        return labels
    kind = normalize_format(format) or detect_format(counts)
    return obs_labels(counts, labels) if kind == "h5ad" else labels


def gene_list(query: Any) -> List[str]:
    """A query's genes: a list of names, or those of what :func:`as_count_matrix` reads."""
    if query is None:
        return []
    if isinstance(query, (list, tuple, np.ndarray, pd.Index)):
        return [str(g) for g in query]
    return [str(g) for g in as_count_matrix(query).genes]


def _unquote(field: str) -> str:
    """A field without the double quotes R and pandas put around text (``""`` is ``"``)."""
    field = field.strip()
    if len(field) >= 2 and field[0] == field[-1] == '"':
        return field[1:-1].replace('""', '"').strip()
    return field


def _looks_like_header(fields: List[str], raw: List[str], n_data_fields: int) -> bool:
    """True for a first row written as a header: by hand, by pandas or by R."""
    if not fields[0]:  # pandas' unnamed index ("\tlabel"), R's write.csv ('""\t"x"')
        return True
    if len(raw) == n_data_fields - 1:  # R's write.table: one name per column, none for ids
        return True
    return any(f.lower() in _HEADER_WORDS for f in fields[:2])


def labels_source(labels: pd.Series) -> Optional[str]:
    """The file (or ``obs`` column) a label Series was read from, if known."""
    source = labels.attrs.get("source") if hasattr(labels, "attrs") else None
    return None if source is None else str(source)


def read_labels(path: PathLike, column: Optional[Union[str, int]] = None) -> pd.Series:
    """Read ``cell_id<TAB>cell_type`` lines into a Series indexed by cell id.

    A header line is recognised from its words (``cell_id``, ``label``,
    ``index``...), an empty first field (pandas' unnamed index, R's
    ``write.csv``) or one field fewer than the rows (R's ``write.table``),
    and skipped; quotes around fields are removed. Duplicate ids, empty
    files and files that are not tab-separated are refused. Words such as
    ``NA`` or ``None`` are cell-type names, never missing values.

    Parameters
    ----------
    path: str
        The label file.
    column: str or int, optional
        The cell-type column of a file with more than two columns (an error
        without it): a header name, or a position counted from 0 at the
        cell-id column as pandas' ``iloc`` does (``2``: the third field).

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "labels.tsv")
    >>> _ = open(path, "w").write("cell_id\\tcell_type\\nc1\\tB cell\\nc2\\tT cell\\n")
    >>> read_labels(path).to_dict()
    {'c1': 'B cell', 'c2': 'T cell'}
    >>> _ = open(path, "w").write("\\tlouvain\\tbulk_labels\\nc1\\t0\\tB cell\\n")
    >>> read_labels(path, column="bulk_labels").to_dict()
    {'c1': 'B cell'}
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
    split: List[Tuple[int, List[str]]] = []
    for number, line in rows:
        raw = line.split("\t")
        while len(raw) > 2 and not raw[-1].strip():  # trailing tabs add no column
            raw.pop()
        split.append((number, raw))
    for number, raw in split:
        if len(raw) < 2 and not (number == split[0][0] and len(split) > 1
                                 and len(split[1][1]) == 2):
            hint = ""
            line = "\t".join(raw)
            for sep, sep_name in ((",", "commas"), (";", "semicolons"), (" ", "spaces")):
                if sep in line:
                    hint = f" (it looks separated by {sep_name})"
                    break
            raise InputError(f"line {number} is not 'cell_id<TAB>cell_type'{hint}", name)
    first_raw = split[0][1]
    first = [_unquote(f) for f in first_raw]
    n_fields = len(split[1][1]) if len(split) > 1 else len(first_raw)
    has_header = _looks_like_header(first, first_raw, n_fields)
    if has_header and len(first) == n_fields - 1:
        first = [""] + first  # R's write.table names the columns, not the ids
    width = max(len(first), n_fields)
    names = first if has_header else [f"column {i}" for i in range(width)]
    listed = ", ".join(f"{i}: {n or '(index)'}" if has_header else f"{i}: e.g. '{first[i]}'"
                       for i, n in enumerate(names[:12]) if i < len(first))
    if column is None:
        if width > 2:
            raise InputError(
                f"label file has {width} columns ({listed}); choose the cell-type column with "
                "column= (--label-column NAME or position)", name)
        index = 1
    else:
        index = _label_column_index(column, names if has_header else None, width, listed, name)
    data = split[1:] if has_header else split
    if not data:
        raise InputError("label file has a header but no labels", name)
    parsed: List[Tuple[str, str]] = []
    for number, raw in data:
        if len(raw) <= index:
            raise InputError(f"line {number} has {len(raw)} fields, fewer than the cell-type "
                             f"column {index} needs", name)
        cell, label = _unquote(raw[0]), _unquote(raw[index])
        if not cell or not label:
            raise InputError(f"line {number} has an empty cell id or cell type", name)
        parsed.append((cell, label))
    labels = pd.Series([label for _, label in parsed], index=[cell for cell, _ in parsed],
                       name="cell_type", dtype=object)
    duplicated = labels.index.duplicated(keep=False)
    if duplicated.any():
        examples = sorted(set(labels.index[duplicated]))[:5]
        raise InputError(
            f"{int(labels.index.duplicated().sum())} duplicate cell ids "
            f"(e.g. {', '.join(examples)})", name)
    labels.attrs["source"] = name
    return labels


def _label_column_index(column: Union[str, int], header: Optional[List[str]], width: int,
                        listed: str, source: str) -> int:
    """The position of the chosen cell-type column (never 0, the cell ids)."""
    if header is not None and isinstance(column, str) and column in header[1:]:
        return header.index(column, 1)
    if header is not None and column == header[0] and column:
        raise InputError(f"column '{column}' holds the cell ids; choose the cell-type column "
                         f"({listed})", source)
    text = str(column).strip()
    if isinstance(column, (int, np.integer)) or text.lstrip("-").isdigit():
        index = int(text)
        if index == 0:
            raise InputError("column 0 holds the cell ids; choose the cell-type column "
                             f"({listed})", source)
        if not 0 < index < width:
            raise InputError(f"no column {index}: the file has {width} columns ({listed})",
                             source)
        return index
    where = "its header" if header is not None else "the file (it has no header line)"
    raise InputError(f"no column '{column}' in {where} ({listed})", source)


@dataclass
class LabelJoin:
    """What :func:`join_labels` matched: the labelled cells and what was left out.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> m = CountMatrix(np.eye(3), ["g1", "g2", "g3"], ["a", "b", "c"])
    >>> joined = join_labels(m, pd.Series({"a": "B cell", "z": "T cell"}))
    >>> joined.matrix.cells.tolist(), joined.labels.tolist()
    (['a'], ['B cell'])
    >>> for part in joined.summary().split("; "):
    ...     print(part)
    1 labelled cells
    2 cells without a label (e.g. b, c) left out
    1 labels without a cell (e.g. z) ignored
    """

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


def transposed_hint(source: str) -> str:
    """What a matrix whose cell ids are gene names should have been, worded for its kind.

    An AnnData is cells x genes (cells as obs), the tables genes x cells.

    >>> transposed_hint("pbmc.h5ad")
    'the AnnData looks transposed (expected cells as obs and genes as var, as scanpy writes them; transpose it with adata.T)'
    """  # noqa: E501
    if source == "<AnnData>" or source.lower().endswith(".h5ad"):
        return ("the AnnData looks transposed (expected cells as obs and genes as var, as "
                "scanpy writes them; transpose it with adata.T)")
    return "the matrix looks transposed (expected genes as rows, cells as columns)"


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
                f"the label ids of {label_source} match this matrix's gene names: "
                f"{transposed_hint(matrix.source)}", matrix.source)
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
    """Read a count matrix and its label file and join them by cell id.

    Examples
    --------
    >>> from deepchem_actinn.sample_data import sample_files
    >>> files = sample_files()
    >>> joined = read_labelled(files.sample_1_counts, files.sample_1_labels)
    >>> joined.matrix.shape, joined.n_unlabelled_cells, joined.labels[:3].tolist()
    ((1000, 1500), 0, ['B cell', 'T cell', 'B cell'])
    """
    matrix = read_counts(counts, key=key)
    return join_labels(matrix, read_labels(labels), label_source=os.fspath(labels))
