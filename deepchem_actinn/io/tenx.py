"""10x Genomics HDF5 (Cell Ranger v2 and v3): the file's layout, read whole or by chunks.

A Cell Ranger matrix is genes x cells CSC (``data``, ``indices``,
``indptr``, ``shape``), i.e. cells x genes CSR by rows; v3 keeps it in a
``matrix`` group with ``features`` (``id``, ``name``, ``feature_type``,
``genome``) and ``barcodes``, v2 in one group per genome (``genes``,
``gene_names``, ``barcodes``). :func:`tenx_features` reads where the counts
and the features are; :func:`load_10x_h5` reads the whole file on it and
:func:`tenx_layout` gives it to :class:`~deepchem_actinn.io.chunked.ChunkedCounts`.
Features other than "Gene Expression" (antibodies, CRISPR guides) are dropped.
The Matrix Market folder Cell Ranger also writes is read by :mod:`deepchem_actinn.io.mtx`.
"""

from __future__ import annotations

import warnings
from typing import Any, List, Optional, Tuple

import numpy as np
import scipy.sparse as sp

from deepchem_actinn.errors import InputError, user_stacklevel
from deepchem_actinn.io.checks import (
    _check_readable,
    check_compressed,
    check_dimensions,
    check_sparse_group,
    dataset_shape,
)
from deepchem_actinn.io.counts import (
    CountMatrixWarning,
    Matrix,
    PathLike,
    StoredCounts,
    take_columns,
)
from deepchem_actinn.io.hdf5 import SparseLayout, _strings

_GENE_EXPRESSION = "Gene Expression"


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
                  f"{int((~keep).sum())} others ({others})", CountMatrixWarning,
                  stacklevel=user_stacklevel())
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


def tenx_features(handle: Any, genome: Optional[str], source: str
                  ) -> Tuple[str, List[str], List[str], Optional[List[str]], Optional[List[str]]]:
    """``(group, names, ids, types, genomes)``: where a Cell Ranger file's counts are, and
    its features (symbols, ids, feature types and genomes; ``None`` where v2 has none).

    v3: the ``matrix`` group; v2: the group of ``genome`` (needed when the
    file holds several). Ids default to the symbols, symbols to the ids.
    """
    import h5py

    if "matrix" in handle and isinstance(handle["matrix"], h5py.Group):
        group = handle["matrix"]
        if "features" not in group or "barcodes" not in group:
            raise InputError("10x HDF5 'matrix' group lacks features or barcodes", source)
        features = group["features"]
        names = _strings(features["name"])
        ids = _strings(features["id"]) if "id" in features else list(names)
        types = (_strings(features["feature_type"]) if "feature_type" in features
                 else None)
        genomes = _strings(features["genome"]) if "genome" in features else None
        return "matrix", names, ids, types, genomes
    chosen = tenx_v2_genome(handle, genome, source)  # Cell Ranger 2: one group per genome
    group = handle[chosen]
    ids = _strings(group["genes"]) if "genes" in group else []
    names = _strings(group["gene_names"]) if "gene_names" in group else list(ids)
    return chosen, names, ids or list(names), None, None


def load_10x_h5(path: PathLike, genome: Optional[str] = None,
                gene_ids: bool = False) -> StoredCounts:
    """Load a Cell Ranger HDF5 matrix (v3 ``matrix`` group, or v2 per-genome groups)."""
    import h5py

    name = _check_readable(path)
    try:
        with h5py.File(name, "r") as handle:
            chosen, names, ids, types, genomes = tenx_features(handle, genome, name)
            if chosen != "matrix":
                genome = None  # v2: the genome chose the group
            group = handle[chosen]
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


def tenx_layout(handle: Any, genome: Optional[str], gene_ids: bool, source: str) -> SparseLayout:
    """Where a Cell Ranger file's counts and names are, for chunked reading.

    The features of :func:`tenx_features`: ids with ``gene_ids``, genomes
    only when one is chosen (the reader then keeps that genome's genes).
    """
    group, names, ids, types, genomes = tenx_features(handle, genome, source)
    n_genes, n_cells = dataset_shape(handle[group]["shape"], source)
    return SparseLayout(group, f"{group}/barcodes", ids if gene_ids else names, n_cells,
                        n_genes, types, genomes if genome is not None else None)
