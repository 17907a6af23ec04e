"""AnnData: an ``AnnData`` in memory or an ``.h5ad`` file, read whole or by chunks.

Whole files are read with anndata (the ``anndata`` extra), their dataset
sizes checked first with h5py; :func:`from_anndata` takes the counts of
``X``, a layer or ``raw``, :func:`obs_labels` cell types from an ``obs``
column (of a file, only ``obs`` is read). :func:`h5ad_layout` says where a
CSR ``X`` (or layer) sits for :class:`~deepchem_actinn.io.chunked.ChunkedCounts`.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, List, Optional, Tuple

import numpy as np
import pandas as pd
import scipy.sparse as sp

from deepchem_actinn.errors import InputError, MissingDependencyError, user_stacklevel
from deepchem_actinn.io.checks import (
    _check_readable,
    attribute_shape,
    check_hdf5_sizes,
    check_sparse_matrix,
)
from deepchem_actinn.io.counts import CountMatrixWarning, Matrix, PathLike, StoredCounts
from deepchem_actinn.io.hdf5 import SparseLayout, _index_name, _strings

# The package itself, not the extra: works however deepchem_actinn was installed (wheel, git).
ANNDATA_HINT = "pip install 'anndata>=0.10' (the package's anndata extra)"


def _is_anndata(data: Any) -> bool:
    # Duck-typed, so anndata is imported only by those who use it.
    return all(hasattr(data, name) for name in ("obs_names", "var_names", "layers", "X"))


def _import_anndata(source: str) -> Any:
    try:
        import anndata
    except ImportError:
        raise MissingDependencyError(f"reading .h5ad needs the anndata package: {ANNDATA_HINT}",
                                     source) from None
    return anndata


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
                          CountMatrixWarning, stacklevel=user_stacklevel())
    return StoredCounts(X, genes, cells, source, "h5ad")


def _integral_sample(X: Any, n: int = 10_000) -> bool:
    values = X.data if sp.issparse(X) else np.asarray(X).ravel()
    values = np.asarray(values[:n], dtype=np.float64)
    return bool(np.array_equal(values, np.round(values)))


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


def h5ad_layout(handle: Any, layer: Optional[str], source: str) -> SparseLayout:
    """Where an ``.h5ad`` file's CSR ``X`` (or ``layers/<layer>``) and names are, for
    chunked reading; any other encoding is refused."""
    import h5py

    group_name = "X" if layer is None else f"layers/{layer}"
    if group_name not in handle:
        raise InputError(f"no {group_name} in the .h5ad file", source)
    group = handle[group_name]
    encoding = group.attrs.get("encoding-type", "")
    if isinstance(encoding, bytes):
        encoding = encoding.decode()
    if not isinstance(group, h5py.Group) or encoding != "csr_matrix":
        raise InputError(f".h5ad {group_name} is not a CSR matrix "
                         f"({encoding or 'dense'}); streaming needs CSR "
                         "(adata.X = scipy.sparse.csr_matrix(...))", source)
    n_cells, n_genes = attribute_shape(group, source)
    names = _strings(handle["var"][_index_name(handle["var"])])
    return SparseLayout(group_name, "obs/" + _index_name(handle["obs"]), names, n_cells, n_genes)
