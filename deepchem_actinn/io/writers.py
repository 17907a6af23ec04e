"""Writers: every count-matrix format :func:`~deepchem_actinn.io.read_counts` reads.

Used by ``deepchem-actinn convert``. Each writer writes under a temporary
name beside the target and renames it into place, so an interrupted write
leaves the previous file (or nothing). What is written reads back to the
same counts, genes and cells, in the same order:

========== ==============================================================
format      written as
========== ==============================================================
pandas-hdf  genes x cells ``DataFrame.to_hdf`` (key ``dge``): ACTINN's and
            DeepChem's tutorial format
10x-h5      Cell Ranger v3 HDF5 (``matrix`` group, CSC genes x cells)
mtx         folder: ``matrix.mtx.gz`` (genes x cells), ``features.tsv.gz``,
            ``barcodes.tsv.gz``
csv, tsv    genes x cells table, header row of cell ids (``.gz``: gzipped)
h5ad        ``AnnData`` with counts in ``X`` (needs the ``anndata`` extra)
========== ==============================================================

Integer counts are written as integers, other values with enough digits to
read back bit-identical as float32.
"""

from __future__ import annotations

import contextlib
import gzip
import os
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from deepchem_actinn.atomic import atomic_file, atomic_folder, umask_mode
from deepchem_actinn.errors import InputError
from deepchem_actinn.io.counts import CountMatrix, StoredCounts
from deepchem_actinn.io.detect import FORMATS, normalize_format
from deepchem_actinn.io.h5ad import _import_anndata

#: Files a Matrix Market folder written here may hold (and may be replaced).
MTX_FILES = {"matrix.mtx", "matrix.mtx.gz", "features.tsv", "features.tsv.gz", "genes.tsv",
             "genes.tsv.gz", "barcodes.tsv", "barcodes.tsv.gz"}
_EXTENSIONS = (
    (".h5ad", "h5ad"), (".csv", "csv"), (".csv.gz", "csv"), (".tsv", "tsv"), (".tsv.gz", "tsv"),
    (".txt", "tsv"), (".txt.gz", "tsv"), (".tab", "tsv"), (".h5", "pandas-hdf"),
    (".hdf5", "pandas-hdf"), (".hdf", "pandas-hdf"), (".mtx", "mtx"),
)


def output_format(path: str, to: Optional[str] = None) -> str:
    """The format to write: ``to`` if given, else from the output name.

    ``.h5``/``.hdf5`` mean pandas HDF (the tutorial's format; pass
    ``to="10x-h5"`` for Cell Ranger's), a name without extension (or an
    existing folder) a Matrix Market folder.

    Examples
    --------
    >>> output_format("query.h5ad"), output_format("out/pbmc"), output_format("x.h5", "10x")
    ('h5ad', 'mtx', '10x-h5')
    """
    chosen = normalize_format(to)
    if chosen is not None:
        return chosen
    lower = os.fspath(path).lower()
    for extension, kind in sorted(_EXTENSIONS, key=lambda e: -len(e[0])):
        if lower.endswith(extension):
            return kind
    if os.path.isdir(path) or lower.endswith(os.sep) or not os.path.splitext(lower)[1]:
        return "mtx"
    raise InputError(f"cannot tell the output format from the name; choose one with --to "
                     f"({', '.join(FORMATS)})", path)


@contextlib.contextmanager
def _atomic_folder(path: str) -> Iterator[str]:
    """A staging folder that replaces ``path`` on success; refuses a folder of other files."""
    target = os.path.abspath(path)
    if os.path.exists(target):
        if not os.path.isdir(target):
            raise InputError("exists and is not a folder", path)
        extra = sorted(set(os.listdir(target)) - MTX_FILES)
        if extra:
            raise InputError(f"folder exists and holds other files ({', '.join(extra[:3])}); "
                             "choose a new output folder", path)
    with atomic_folder(target) as staging:
        yield staging


def _integral(X: Any) -> bool:
    values = X.data if sp.issparse(X) else np.asarray(X)
    return bool(np.array_equal(values, np.round(values)))


def _values(X: Any, integral: bool) -> Any:
    """Counts as int64 when whole numbers, else float32 (what the readers return)."""
    dtype = np.int64 if integral else np.float32
    if sp.issparse(X):
        return sp.csr_matrix(X, dtype=dtype)
    return np.asarray(X, dtype=dtype)


def _check_names(names: Sequence[str], what: str, path: str) -> None:
    bad = [n for n in names if "\t" in n or "\n" in n or "\r" in n]
    if bad:
        raise InputError(f"{len(bad)} {what} contain tabs or line breaks (e.g. {bad[0]!r}); "
                         "they cannot be written to this format", path)


def write_pandas_hdf(X: Any, genes: Sequence[str], cells: Sequence[str], path: str,
                     key: str = "dge") -> None:
    """Genes x cells ``DataFrame.to_hdf``, ACTINN's and DeepChem's tutorial format."""
    values = _values(X, _integral(X))
    dense = values.toarray() if sp.issparse(values) else values
    frame = pd.DataFrame(dense.T, index=pd.Index(list(genes), dtype=object),
                         columns=pd.Index(list(cells), dtype=object))
    with atomic_file(path) as temporary:
        frame.to_hdf(temporary, key=key, mode="w")


def _bytes(names: Sequence[str]) -> np.ndarray:
    encoded = [str(n).encode("utf-8") for n in names]
    width = max((len(b) for b in encoded), default=1) or 1
    return np.array(encoded, dtype=f"S{width}")


def write_10x_h5(X: Any, genes: Sequence[str], cells: Sequence[str], path: str,
                 gene_ids: Optional[Sequence[str]] = None, genome: str = "unknown") -> None:
    """Cell Ranger v3 HDF5: ``matrix/{data,indices,indptr,shape,barcodes,features/...}``.

    A cells x genes CSR matrix is exactly the genes x cells CSC matrix Cell
    Ranger stores, so the arrays are written as they are.
    """
    import h5py

    integral = _integral(X)
    csr = sp.csr_matrix(_values(X, integral))
    csr.sort_indices()
    ids = list(gene_ids) if gene_ids is not None else list(genes)
    with atomic_file(path) as temporary:
        with h5py.File(temporary, "w") as handle:
            handle.attrs["filetype"] = "matrix"
            handle.attrs["version"] = 2
            group = handle.create_group("matrix")
            group.create_dataset("barcodes", data=_bytes(cells))
            small = integral and (csr.data.size == 0 or csr.data.max() < 2 ** 31)
            group.create_dataset("data", data=csr.data.astype(np.int32) if small else csr.data,
                                 compression="gzip", compression_opts=4)
            group.create_dataset("indices", data=csr.indices.astype(np.int64),
                                 compression="gzip", compression_opts=4)
            group.create_dataset("indptr", data=csr.indptr.astype(np.int64))
            group.create_dataset("shape", data=np.array([csr.shape[1], csr.shape[0]],
                                                        dtype=np.int32))
            features = group.create_group("features")
            features.create_dataset("id", data=_bytes(ids))
            features.create_dataset("name", data=_bytes(genes))
            features.create_dataset("feature_type", data=_bytes(["Gene Expression"] * len(ids)))
            features.create_dataset("genome", data=_bytes([genome] * len(ids)))
            features.create_dataset("_all_tag_keys", data=np.array([b"genome"]))


@contextlib.contextmanager
def _gzip_writer(path: str) -> Iterator[Any]:
    # mtime=0: the same matrix gives the same bytes.
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                compresslevel=6, mtime=0) as handle:
        yield handle


def write_mtx(X: Any, genes: Sequence[str], cells: Sequence[str], path: str,
              gene_ids: Optional[Sequence[str]] = None) -> None:
    """Matrix Market folder as Cell Ranger writes it (genes x cells, gzipped)."""
    import scipy.io

    _check_names(genes, "gene names", path)
    _check_names(cells, "cell ids", path)
    integral = _integral(X)
    coo = sp.coo_matrix(sp.csr_matrix(_values(X, integral)).T)
    ids = list(gene_ids) if gene_ids is not None else list(genes)
    with _atomic_folder(path) as staging:
        with _gzip_writer(os.path.join(staging, "matrix.mtx.gz")) as handle:
            scipy.io.mmwrite(handle, coo, field="integer" if integral else "real")
        with _gzip_writer(os.path.join(staging, "features.tsv.gz")) as handle:
            handle.write("".join(f"{i}\t{g}\tGene Expression\n"
                                 for i, g in zip(ids, genes, strict=True)).encode("utf-8"))
        with _gzip_writer(os.path.join(staging, "barcodes.tsv.gz")) as handle:
            handle.write("".join(f"{c}\n" for c in cells).encode("utf-8"))
        for name in os.listdir(staging):
            os.chmod(os.path.join(staging, name), umask_mode(0o666))


def write_text(X: Any, genes: Sequence[str], cells: Sequence[str], path: str,
               sep: str = ",") -> None:
    """Genes x cells table with a header row of cell ids; gzipped if ``path`` ends ``.gz``."""
    _check_names(genes, "gene names", path)
    integral = _integral(X)
    values = _values(X, integral)
    dense = values.toarray() if sp.issparse(values) else values
    frame = pd.DataFrame(dense.T, index=pd.Index(list(genes), name="gene"),
                         columns=list(cells))
    compression: Any = ({"method": "gzip", "compresslevel": 6, "mtime": 0}
                        if path.lower().endswith(".gz") else None)
    with atomic_file(path) as temporary:
        frame.to_csv(temporary, sep=sep, float_format=None if integral else "%.9g",
                     compression=compression)


def write_h5ad(X: Any, genes: Sequence[str], cells: Sequence[str], path: str,
               gene_ids: Optional[Sequence[str]] = None) -> None:
    """``AnnData`` with the counts in ``X`` (CSR unless mostly non-zero).

    Whole numbers are written as integers (int32, or int64 beyond its range)
    as the other writers do, other values as float32.
    """
    import warnings

    anndata = _import_anndata(path)
    nonzero = X.nnz if sp.issparse(X) else np.count_nonzero(X)
    dense = nonzero >= 0.5 * X.shape[0] * X.shape[1] and X.shape[0] * X.shape[1] > 0
    values = X.data if sp.issparse(X) else np.asarray(X)
    dtype: Any = np.float32
    if _integral(X):
        small = values.size == 0 or (values.min() >= -2 ** 31 and values.max() < 2 ** 31)
        dtype = np.int32 if small else np.int64
    matrix = (np.asarray(X.toarray() if sp.issparse(X) else X, dtype=dtype) if dense
              else sp.csr_matrix(X, dtype=dtype))
    var = pd.DataFrame(index=pd.Index(list(genes), dtype=object))
    if gene_ids is not None:
        var["gene_ids"] = list(gene_ids)
    adata = anndata.AnnData(X=matrix, obs=pd.DataFrame(index=pd.Index(list(cells), dtype=object)),
                            var=var)
    with atomic_file(path) as temporary, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*names are not unique")
        adata.write_h5ad(temporary)


def write_counts(counts: Any, path: str, format: Optional[str] = None, *,
                 key: str = "dge") -> str:
    """Write a :class:`CountMatrix` or :class:`StoredCounts` in a format; return the format.

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> from deepchem_actinn.io import CountMatrix, read_counts
    >>> m = CountMatrix(np.array([[1, 0], [2, 3]]), ["CD19", "CD3E"], ["c1", "c2"])
    >>> folder = tempfile.mkdtemp()
    >>> write_counts(m, os.path.join(folder, "m.csv"))
    'csv'
    >>> read_counts(os.path.join(folder, "m.csv")).X.tolist()
    [[1.0, 0.0], [2.0, 3.0]]
    """
    path = os.fspath(path)
    kind = output_format(path, format)
    X = counts.X
    genes = [str(g) for g in counts.genes]
    cells = [str(c) for c in counts.cells]
    gene_ids = counts.gene_ids if isinstance(counts, StoredCounts) else None
    if not isinstance(counts, (StoredCounts, CountMatrix)):
        raise TypeError(f"cannot write a {type(counts).__name__}")
    if kind == "pandas-hdf":
        write_pandas_hdf(X, genes, cells, path, key=key)
    elif kind == "10x-h5":
        write_10x_h5(X, genes, cells, path, gene_ids=gene_ids)
    elif kind == "mtx":
        write_mtx(X, genes, cells, path, gene_ids=gene_ids)
    elif kind == "h5ad":
        write_h5ad(X, genes, cells, path, gene_ids=gene_ids)
    else:
        write_text(X, genes, cells, path, sep="," if kind == "csv" else "\t")
    return kind
