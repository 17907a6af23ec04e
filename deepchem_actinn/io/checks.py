"""Checks shared by every reader of untrusted count files.

Counts files are routinely downloaded from strangers, so each reader checks
what a file *claims* (dimensions, dataset sizes, sparse structure) before
it allocates memory for it or indexes with it. The whole-file readers of
each format in :mod:`deepchem_actinn.io` and the chunked reader
(:mod:`deepchem_actinn.io.chunked`) call the same functions here, so a file
refused by one path is refused, with the same line, by the others. Whether
a path is a readable, non-empty file is checked here too.

Every failure is an :class:`~deepchem_actinn.errors.InputError`: one line
naming the file and the problem.
"""

from __future__ import annotations

import functools
import gzip
import os
from typing import Any, Callable, Optional, Tuple, TypeVar

import numpy as np

from deepchem_actinn.errors import ActinnError, InputError

_Method = TypeVar("_Method", bound=Callable[..., Any])

#: Deflate (gzip, zlib) expands at most ~1032x; no stored byte can hold more.
MAX_EXPANSION = 1032
#: Small datasets are never refused on their storage ratio (HDF5 overheads).
_SLACK_BYTES = 1 << 20
#: A text table wider than this is refused before pandas parses it: pandas
#: needs ~2.4 kB per column (a million columns take gigabytes), and a real
#: genes x cells table this wide would not fit in memory anyway.
MAX_TEXT_COLUMNS = 200_000
#: The longest first (header) line read from a text table.
MAX_HEADER_BYTES = 32 << 20
#: Matrix Market needs at least this many bytes per coordinate entry ("1 1 1\n").
_MIN_MTX_ENTRY_BYTES = 6


def _check_readable(path: Any) -> str:
    name = os.fspath(path)
    if not os.path.exists(name):
        raise InputError("file not found", name)
    if os.path.isdir(name):
        raise InputError("is a directory, expected a file", name)
    if os.path.getsize(name) == 0:
        raise InputError("file is empty", name)
    return name


def _gib(n: float) -> str:
    return f"{n / 2 ** 30:.3g} GiB"


def memory_limit() -> int:
    """Bytes this process may allocate at most: physical memory, or a lower cgroup or ulimit."""
    limit = 1 << 62
    try:
        limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        pass
    for cgroup in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(cgroup) as handle:
                text = handle.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) > 0:
            limit = min(limit, int(text))
    try:
        import resource

        for kind in (resource.RLIMIT_AS, resource.RLIMIT_DATA):
            soft = resource.getrlimit(kind)[0]
            if soft != resource.RLIM_INFINITY and soft > 0:
                limit = min(limit, int(soft))
    except (ImportError, ValueError, OSError):
        pass
    return int(limit)


def one_line_errors(what: str) -> Callable[[_Method], _Method]:
    """Decorate a reader method: errors h5py or numpy raise on a damaged file (``KeyError``,
    ``OSError``...) become one :class:`InputError` naming ``self.path``."""
    def decorate(method: _Method) -> _Method:
        @functools.wraps(method)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except ActinnError:
                raise
            except (KeyError, OSError, ValueError, TypeError, IndexError, AttributeError) as exc:
                raise InputError(f"cannot read {what}: {type(exc).__name__}: {exc}",
                                 getattr(self, "path", None)) from exc
        return wrapper  # type: ignore[return-value]
    return decorate


def check_allocation(nbytes: int, source: str, what: str) -> None:
    """Refuse, before allocating, an array larger than this machine's memory."""
    limit = memory_limit()
    if nbytes > limit:
        raise InputError(f"{what} would need {_gib(nbytes)}, more than the {_gib(limit)} of "
                         "memory available (damaged or crafted file, or stream it with "
                         "--chunk-cells / --out-of-core)", source)


def check_dimensions(shape: Any, source: str, what: str = "matrix") -> Tuple[int, int]:
    """A declared 2-D shape as two non-negative Python ints, or one clear error.

    >>> check_dimensions(np.array([3, 2], np.int32), "m.h5")
    (3, 2)
    """
    try:
        values = np.asarray(shape).ravel()
        ok = values.size == 2 and values.dtype.kind in "iu"
    except (TypeError, ValueError):
        ok = False
    if not ok or (values < 0).any() or (values > np.iinfo(np.int64).max // 2).any():
        raise InputError(f"{what} shape {np.asarray(shape).tolist()!r} is not two "
                         "non-negative integers", source)
    return int(values[0]), int(values[1])


def dataset_shape(node: Any, source: str, what: str = "shape") -> Tuple[int, int]:
    """A 2-D shape stored as a dataset of two integers (10x ``shape``), checked before reading."""
    if not hasattr(node, "dtype") or tuple(getattr(node, "shape", ()) or ()) != (2,):
        raise InputError(f"{what} is not two numbers", source)
    return check_dimensions(node[()], source, what)


def attribute_shape(node: Any, source: str, name: str = "shape") -> Tuple[int, int]:
    """A 2-D shape stored as an attribute (``.h5ad`` sparse groups), checked before reading."""
    if name not in node.attrs or tuple(node.attrs.get_id(name).shape or ()) != (2,):
        raise InputError(f"{node.name} has no '{name}' of two numbers", source)
    return check_dimensions(node.attrs[name], source, f"{node.name} {name}")


def _check_filters(dataset: Any, source: str, what: str) -> None:
    """Name a compression filter h5py lacks (PyTables' blosc, bzip2, lzo) before reading."""
    import h5py

    try:
        plist = dataset.id.get_create_plist()
        filters = [plist.get_filter(i) for i in range(plist.get_nfilters())]
    except Exception:  # no filter pipeline to inspect
        return
    for code, _, _, name in filters:
        if not h5py.h5z.filter_avail(code):
            label = name.decode("latin-1", "replace") if isinstance(name, bytes) else str(name)
            raise InputError(f"{what} is compressed with the '{label or code}' filter, which "
                             "cannot be read here; re-save it with zlib/gzip compression "
                             "(pandas: complib='zlib', the default)", source)


def check_dataset(dataset: Any, source: str, what: str) -> int:
    """Refuse an HDF5 dataset whose declared size is impossible or does not fit in memory.

    A crafted file can declare a dataset of 10^12 elements while storing
    nothing (unwritten chunks read as fill values); reading it would
    allocate terabytes. Stored bytes expand at most :data:`MAX_EXPANSION`
    times (deflate's bound), so a larger claim is refused before reading.
    Returns the number of elements.
    """
    if dataset.external or getattr(dataset, "is_virtual", False):
        raise InputError(f"{what} keeps its data in other files, which are not read", source)
    _check_filters(dataset, source, what)
    shape = tuple(int(n) for n in (dataset.shape or ()))
    n = int(np.prod(shape, dtype=np.float64)) if shape else 1
    itemsize = int(dataset.dtype.itemsize) if dataset.dtype.kind != "O" else 16
    logical = n * itemsize
    try:
        stored = int(dataset.id.get_storage_size())
    except Exception:  # h5py raises several types on damaged files
        stored = 0
    # Filters whose expansion has no bound (scale-offset, szip) get the memory check only.
    bounded = dataset.scaleoffset is None and dataset.compression in (None, "gzip", "lzf")
    if bounded and logical > _SLACK_BYTES and logical > stored * MAX_EXPANSION:
        raise InputError(f"{what} declares {n} values ({_gib(logical)}) but the file stores "
                         f"only {stored} bytes of them (damaged or crafted file)", source)
    check_allocation(logical, source, what)
    return n


def read_dataset(dataset: Any, source: str, what: str) -> np.ndarray:
    """``dataset[()]`` after :func:`check_dataset`."""
    check_dataset(dataset, source, what)
    return np.asarray(dataset[()])


def _integer(array: np.ndarray, source: str, what: str) -> np.ndarray:
    if array.dtype.kind not in "iu":
        raise InputError(f"damaged sparse matrix: {what} are {array.dtype}, not integers",
                         source)
    return array


def check_sparse_header(n_major: int, n_minor: int, indptr_length: int, indices_length: int,
                        data_length: int, source: str, major: str = "cells") -> None:
    """Lengths of a CSR/CSC triplet against its declared shape, before anything is read.

    ``major`` names what the pointer runs over (``cells`` for a cells x
    genes CSR, i.e. a 10x genes x cells CSC).
    """
    if indptr_length != n_major + 1:
        raise InputError(f"damaged sparse matrix: indptr has {indptr_length} entries for "
                         f"{n_major} {major} (expected {n_major + 1})", source)
    if data_length != indices_length:
        raise InputError(f"damaged sparse matrix: {data_length} values but {indices_length} "
                         "indices", source)
    if n_minor < 0 or n_major < 0:
        raise InputError("damaged sparse matrix: negative dimension", source)


def check_indptr(indptr: np.ndarray, nnz: int, source: str) -> np.ndarray:
    """A whole index pointer: integers from 0 to ``nnz``, never decreasing."""
    indptr = _integer(np.asarray(indptr), source, "indptr values")
    if indptr.size == 0:
        raise InputError("damaged sparse matrix: empty indptr", source)
    if int(indptr[0]) != 0:
        raise InputError(f"damaged sparse matrix: indptr starts at {int(indptr[0])}, not 0",
                         source)
    steps = np.diff(indptr)
    if steps.size and int(steps.min()) < 0:
        row = int(np.flatnonzero(steps < 0)[0])
        raise InputError(f"damaged sparse matrix: indptr decreases after row {row}", source)
    if int(indptr[-1]) != nnz:
        raise InputError(f"damaged sparse matrix: indptr ends at {int(indptr[-1])} but {nnz} "
                         "values are stored", source)
    return indptr


def check_indices(indices: np.ndarray, n_minor: int, source: str,
                  minor: str = "genes") -> np.ndarray:
    """Column (or row) indices that all lie in ``[0, n_minor)``."""
    indices = _integer(np.asarray(indices), source, "indices")
    if indices.size:
        low, high = int(indices.min()), int(indices.max())
        if low < 0:
            raise InputError(f"damaged sparse matrix: negative index {low}", source)
        if high >= n_minor:
            raise InputError(f"damaged sparse matrix: index {high} is out of range for "
                             f"{n_minor} {minor}", source)
    return indices


def check_compressed(data: Any, indices: Any, indptr: Any, n_major: int, n_minor: int,
                     source: str, major: str = "cells", minor: str = "genes") -> None:
    """The whole structure of a CSR (or CSC) matrix, vectorised.

    >>> check_compressed(np.ones(2), np.array([0, 2]), np.array([0, 1, 2]), 2, 3, "m.h5")
    >>> check_compressed(np.ones(2), np.array([0, 3]), np.array([0, 1, 2]), 2, 3, "m.h5")
    Traceback (most recent call last):
    ...
    deepchem_actinn.errors.InputError: m.h5: damaged sparse matrix: index 3 is out of range ...
    """
    indices, indptr = np.asarray(indices), np.asarray(indptr)
    check_sparse_header(n_major, n_minor, len(indptr), len(indices), len(np.asarray(data)),
                        source, major)
    check_indptr(indptr, len(indices), source)
    check_indices(indices, n_minor, source, minor)


def check_sparse_matrix(X: Any, source: str) -> None:
    """:func:`check_compressed` on a scipy CSR/CSC matrix (or do nothing for others)."""
    import scipy.sparse as sp

    if not sp.issparse(X) or X.format not in ("csr", "csc"):
        return
    rows, columns = X.shape
    if X.format == "csr":
        check_compressed(X.data, X.indices, X.indptr, rows, columns, source)
    else:
        check_compressed(X.data, X.indices, X.indptr, columns, rows, source, "genes", "cells")


def check_sparse_group(group: Any, n_major: int, n_minor: int, source: str,
                       major: str = "cells") -> None:
    """An HDF5 CSR/CSC group (10x, ``.h5ad``): sizes of its arrays, before reading any."""
    import h5py

    lengths = []
    for part in ("data", "indices", "indptr"):
        node = group.get(part)
        if not isinstance(node, h5py.Dataset) or node.ndim != 1:
            raise InputError(f"sparse matrix {group.name} lacks a 1-D '{part}' array", source)
        check_dataset(node, source, f"{group.name}/{part}")
        lengths.append(int(node.shape[0]))
    check_sparse_header(n_major, n_minor, lengths[2], lengths[1], lengths[0], source, major)


def check_hdf5_sizes(handle: Any, source: str) -> None:
    """Every dataset of an HDF5 file plausible in size, every sparse group consistent.

    For readers (anndata) that load a whole file: nothing they allocate can
    then exceed what the file really stores.
    """
    import h5py

    def visit(name: str, node: Any) -> None:
        if isinstance(node, h5py.Dataset):
            check_dataset(node, source, node.name)
            return
        encoding = node.attrs.get("encoding-type", b"")
        encoding = encoding.decode("utf-8", "replace") if isinstance(encoding, bytes) \
            else str(encoding)
        if encoding in ("csr_matrix", "csc_matrix"):
            rows, columns = attribute_shape(node, source)
            csr = encoding == "csr_matrix"
            check_sparse_group(node, rows if csr else columns, columns if csr else rows, source,
                               "rows" if csr else "columns")

    handle.visititems(visit)


# -- text files ---------------------------------------------------------------------


def uncompressed_bound(path: str) -> int:
    """The most bytes ``path`` can hold once decompressed (gzip expands <= 1032x)."""
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        gz = handle.read(2) == b"\x1f\x8b"
    return size * MAX_EXPANSION if gz else size


def first_line(path: str, source: Optional[str] = None, limit: Optional[int] = None) -> bytes:
    """The first line of a (maybe gzipped) text file, read with a bounded read."""
    limit = MAX_HEADER_BYTES if limit is None else limit
    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
    opener: Any = gzip.open if gz else open
    try:
        with opener(path, "rb") as handle:
            line = handle.readline(limit + 1)
    except (OSError, EOFError) as exc:
        raise InputError(f"cannot read: {exc}", source or path) from exc
    if len(line) > limit and not line.endswith(b"\n"):
        raise InputError(f"first line is longer than {limit >> 20} MiB; not a count table "
                         "(or convert it to Matrix Market, 10x HDF5 or .h5ad)", source or path)
    return line


def check_text_width(path: str, sep: str, source: Optional[str] = None,
                     limit: Optional[int] = None, what: str = "columns") -> int:
    """Refuse a delimited table whose header line is absurdly wide, before parsing it."""
    limit = MAX_TEXT_COLUMNS if limit is None else limit
    line = first_line(path, source)
    n = line.count(sep.encode()) + 1
    if n > limit:
        raise InputError(f"header line has {n} {what}, more than the {limit} a text table "
                         "may have here; convert it to Matrix Market, 10x HDF5 or .h5ad "
                         "(sparse) instead", source or path)
    return n


def mtx_header(path: str, source: Optional[str] = None) -> Tuple[str, int, int, int]:
    """``(layout, rows, columns, entries)`` of a Matrix Market file, checked before reading.

    ``layout`` is ``coordinate`` or ``array``. A size line claiming more
    entries than the shape holds, or than the file could store, is refused,
    so nothing is allocated for it.
    """
    source = source or path
    banner = first_line(path, source, 1 << 16).decode("latin-1").lower().split()
    if len(banner) < 4 or banner[0] != "%%matrixmarket" or banner[1] != "matrix":
        raise InputError("not a Matrix Market file (no '%%MatrixMarket matrix' header)", source)
    layout, field = banner[2], banner[3]
    if layout not in ("coordinate", "array"):
        raise InputError(f"unknown Matrix Market layout '{layout}'", source)
    if field not in ("integer", "real", "double", "pattern", "unsigned-integer"):
        raise InputError(f"Matrix Market field '{field}' is not counts", source)
    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
    opener: Any = gzip.open if gz else open
    size_line = ""
    with opener(path, "rb") as handle:
        for _ in range(10_000):  # comment lines before the size line
            line = handle.readline(1 << 16)
            if not line:
                break
            text = line.decode("latin-1").strip()
            if text and not text.startswith("%"):
                size_line = text
                break
    numbers = size_line.split()
    expected = 3 if layout == "coordinate" else 2
    if len(numbers) != expected or not all(n.isdigit() for n in numbers):
        raise InputError(f"Matrix Market size line {size_line[:60]!r} is not {expected} "
                         "non-negative integers", source)
    rows, columns = int(numbers[0]), int(numbers[1])
    entries = int(numbers[2]) if layout == "coordinate" else rows * columns
    if entries > rows * columns:
        raise InputError(f"Matrix Market header claims {entries} entries in a {rows} x "
                         f"{columns} matrix", source)
    bound = uncompressed_bound(path)
    per_entry = _MIN_MTX_ENTRY_BYTES if layout == "coordinate" else 2
    if entries * per_entry > bound:
        raise InputError(f"Matrix Market header claims {entries} entries, more than the file "
                         f"can hold (damaged or crafted file)", source)
    check_allocation(entries * 24, source, "the Matrix Market matrix")
    return layout, rows, columns, entries
