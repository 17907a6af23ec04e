"""Former home of out-of-core training, kept so existing imports keep working.

Each piece now lives with its kind: the chunked reader in
:mod:`deepchem_actinn.io.chunked`, the streamed featurizer fit and the chunk
transform in :mod:`deepchem_actinn.preprocessing`, the sharded dataset in
:mod:`deepchem_actinn.data.shards`, training from shards in
:mod:`deepchem_actinn.train`.
"""

from deepchem_actinn.data.shards import (
    MANIFEST_FILE,
    SHARD_CELLS,
    SHARD_FILE,
    ShardedCellDataset,
    write_shards,
)
from deepchem_actinn.io.chunked import CHUNK_CELLS, ChunkedCounts, rank_rows
from deepchem_actinn.preprocessing import (
    StreamStatistics,
    chunk_transform,
    fit_featurizer_streaming,
)
from deepchem_actinn.train import fit_on_shards, shard_generator

__all__ = [
    "CHUNK_CELLS", "ChunkedCounts", "MANIFEST_FILE", "SHARD_CELLS", "SHARD_FILE",
    "ShardedCellDataset", "StreamStatistics", "chunk_transform", "fit_featurizer_streaming",
    "fit_on_shards", "rank_rows", "shard_generator", "write_shards",
]
