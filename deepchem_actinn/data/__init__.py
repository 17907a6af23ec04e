"""DeepChem datasets of cells: dense, sparse and sharded, the loader and the splitter.

============ ===============================================================
module       holds
============ ===============================================================
``cells``    :class:`CellDataset` (dense, a ``dc.data.NumpyDataset``),
             :class:`SparseCellDataset` (CSR), :func:`encode_labels`
``loader``   :class:`ScRNALoader` (a ``dc.data.DataLoader``), DiskDatasets
             written shard by shard and :func:`load_disk_dataset`
``splitters`` :class:`StratifiedSplitter` (every type in each part)
``shards``   :func:`write_shards` and :class:`ShardedCellDataset`: featurised
             cells on disk, for out-of-core training
============ ===============================================================

Every name below is importable from ``deepchem_actinn.data``.
"""

from __future__ import annotations

from deepchem_actinn.data.cells import (
    DENSE_VALUES_LIMIT,
    Batch,
    CellDataset,
    CellDatasetMixin,
    SparseCellDataset,
    encode_labels,
    featurize_sparse,
)
from deepchem_actinn.data.loader import (
    NAMES_FILE,
    SHARD_SIZE,
    Inputs,
    LabelSource,
    ScRNALoader,
    load_disk_dataset,
)
from deepchem_actinn.data.shards import (
    MANIFEST_FILE,
    SHARD_CELLS,
    SHARD_FILE,
    ShardedCellDataset,
    write_shards,
)
from deepchem_actinn.data.splitters import StratifiedSplitter

__all__ = [
    "DENSE_VALUES_LIMIT", "CellDataset", "CellDatasetMixin", "SparseCellDataset",
    "encode_labels", "featurize_sparse", "NAMES_FILE", "SHARD_SIZE", "ScRNALoader",
    "load_disk_dataset", "MANIFEST_FILE", "SHARD_CELLS", "SHARD_FILE", "ShardedCellDataset",
    "write_shards", "StratifiedSplitter", "Batch", "Inputs", "LabelSource",
]
