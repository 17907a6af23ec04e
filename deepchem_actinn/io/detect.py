"""Format detection: which count-matrix format a file holds, read from its content.

:func:`detect_format` looks at the bytes (HDF5 signature, gzip, a
``%%MatrixMarket`` banner, the separator of a text table) and, for HDF5,
at the structure (``X``/``obs``/``var``: h5ad; a ``matrix`` group or
per-genome groups: 10x; PyTables: pandas HDF), never at the name.
:data:`FORMATS` lists the formats, :func:`normalize_format` maps aliases to
them and :data:`FORMAT_OPTIONS` says which reading option applies to which.
"""

from __future__ import annotations

import gzip
import os
import re
from typing import Any, Optional, Tuple

from deepchem_actinn.errors import InputError
from deepchem_actinn.io.counts import PathLike

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
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
GZIP_SIGNATURE = b"\x1f\x8b"
_MTX_NAME = re.compile(r"^(.*?)matrix\.mtx(\.gz)?$", re.IGNORECASE)


def normalize_format(name: Optional[str]) -> Optional[str]:
    """Map a format name or alias (``10x``, ``anndata``, ``mex``...) to one of :data:`FORMATS`."""
    if name is None:
        return None
    key = str(name).strip().lower()
    key = _FORMAT_ALIASES.get(key, key)
    if key not in FORMATS:
        raise InputError(f"unknown format '{name}'; choose from {', '.join(FORMATS)}")
    return key


def check_format_options(kind: str, source: str, **options: Any) -> None:
    """Refuse a reading option (given: not ``None``/``False``) that ``kind`` files do not take."""
    applies = FORMAT_OPTIONS
    for option, value in options.items():
        if value is not None and value is not False and kind not in applies[option]:
            hint = " (use gene_column / --gene-column for .h5ad)" if option == "gene_ids" \
                and kind == "h5ad" else ""
            raise InputError(f"option {option} applies to {' and '.join(applies[option])} "
                             f"input, but this is {kind}{hint}", source)


def _is_hdf5(path: str) -> bool:
    with open(path, "rb") as handle:
        return handle.read(8) == HDF5_SIGNATURE


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
