"""What the HDF5 formats (10x, h5ad) share: string datasets, and where a sparse matrix sits.

:class:`SparseLayout` says where a file's cells x genes CSR arrays and its
names are: each format's module fills one (:func:`~deepchem_actinn.io.tenx.tenx_layout`,
:func:`~deepchem_actinn.io.h5ad.h5ad_layout`) and
:class:`~deepchem_actinn.io.chunked.ChunkedCounts` reads any of them a chunk of cells
at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional

import numpy as np

from deepchem_actinn.io.checks import check_dataset


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


def _index_name(group: Any) -> str:
    name = group.attrs.get("_index", "_index")
    return name.decode() if isinstance(name, bytes) else str(name)


@dataclass
class SparseLayout:
    """Where an HDF5 file keeps its counts as cells x genes CSR arrays, and their names.

    ``group`` holds ``data``, ``indices`` and ``indptr`` (a row per cell),
    ``barcodes`` is the dataset of cell ids; ``names`` are the gene names as
    stored, ``types`` and ``genomes`` (10x) one per gene, or ``None``.
    """

    group: str
    barcodes: str
    names: List[str]
    n_cells: int
    n_genes: int
    types: Optional[List[str]] = None
    genomes: Optional[List[str]] = None
