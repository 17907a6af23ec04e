"""Sharded datasets: featurised cells in on-disk shards, for training beyond memory.

:func:`write_shards` (the second pass of out-of-core training, after
:func:`~deepchem_actinn.preprocessing.fit_featurizer_streaming`) featurises
a file a chunk at a time (:class:`~deepchem_actinn.io.chunked.ChunkedCounts`)
and scatters its cells over shards in one HDF5 file. Each cell goes to a
shard drawn at random, so every shard is a uniform sample of the whole file
(files are often sorted by sample or type).

:class:`ShardedCellDataset` reads them back: each epoch visits the shards in
a fresh random order and permutes the cells of each window of
``buffer_shards`` shards, so peak memory is one window whatever the number
of cells. :func:`deepchem_actinn.train.train_streaming` runs the whole
pipeline.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import scipy.sparse as sp

from deepchem_actinn.data.cells import SparseCellDataset
from deepchem_actinn.errors import InputError
from deepchem_actinn.io import CHUNK_CELLS, ChunkedCounts, PathLike
from deepchem_actinn.io.labels import _label_lookup
from deepchem_actinn.preprocessing import ScRNAFeaturizer, chunk_transform
from deepchem_actinn.progress import Progress
from deepchem_actinn.quiet import deepchem_messages_hidden

with deepchem_messages_hidden():  # DeepChem's import-time lines are not the user's
    import deepchem as dc


#: Cells per training shard (on average).
SHARD_CELLS = 16_384
SHARD_FILE = "shards.h5"
MANIFEST_FILE = "manifest.json"


def write_shards(source: Union[PathLike, ChunkedCounts], featurizer: ScRNAFeaturizer,
                 directory: PathLike, labels: Optional[Union[PathLike, pd.Series]] = None, *,
                 classes: Optional[Sequence[str]] = None, shard_cells: int = SHARD_CELLS,
                 chunk_cells: int = CHUNK_CELLS, seed: int = 0,
                 progress: Progress = False) -> ShardedCellDataset:
    """Pass 2: featurise every chunk and scatter its cells over random shards.

    With ``labels``, only labelled cells with non-zero counts are written
    (``y`` indexes ``classes``, default the sorted label names); without,
    every cell is written (for prediction). ``progress``: a bar of the
    file's cells ("featurizing").
    """
    import h5py

    counts = source if isinstance(source, ChunkedCounts) else ChunkedCounts(source)
    lookup = _label_lookup(labels)
    if lookup is not None and classes is None:
        classes = sorted(set(lookup.tolist()))
    class_index = {c: i for i, c in enumerate(classes or [])}
    folder = os.fspath(directory)
    os.makedirs(folder, exist_ok=True)
    n_shards = max(1, math.ceil(counts.n_cells / shard_cells))
    rng = np.random.default_rng(seed)
    rows = np.zeros(n_shards, np.int64)
    nnz = np.zeros(n_shards, np.int64)
    featurizer.check_overlap(counts.genes, counts.path)
    transform = chunk_transform(featurizer, counts.genes)
    path = os.path.join(folder, SHARD_FILE)
    partial = path + ".partial"
    with h5py.File(partial, "w") as out:
        groups = []
        for s in range(n_shards):
            g = out.create_group(f"shard{s:05d}")
            g.create_dataset("data", (0,), np.float32, maxshape=(None,), chunks=(1 << 16,))
            g.create_dataset("indices", (0,), np.int32, maxshape=(None,), chunks=(1 << 16,))
            g.create_dataset("indptr", (1,), np.int64, maxshape=(None,), chunks=(1 << 12,),
                             data=np.zeros(1, np.int64))
            g.create_dataset("y", (0,), np.int64, maxshape=(None,), chunks=(1 << 12,))
            g.create_dataset("ids", (0,), h5py.string_dtype(), maxshape=(None,),
                             chunks=(1 << 12,))
            groups.append(g)
        for _, X, ids in counts.chunks(chunk_cells, progress, "featurizing"):
            y = np.full(len(ids), -1, np.int64)
            if lookup is not None:
                names = lookup.reindex(ids)
                y = np.asarray([class_index.get(n, -1) if isinstance(n, str) else -1
                                for n in names], dtype=np.int64)
                library = np.asarray(X.sum(axis=1)).ravel()
                keep = np.flatnonzero((y >= 0) & (library > 0))
                X, ids, y = X[keep], ids[keep], y[keep]
            if X.shape[0] == 0:
                continue
            F = sp.csr_matrix(transform(X), dtype=np.float32)
            target = rng.integers(0, n_shards, size=F.shape[0])
            for s in np.unique(target):
                members = np.flatnonzero(target == s)
                part = F[members]
                g = groups[s]
                _append(g["data"], part.data)
                _append(g["indices"], part.indices.astype(np.int32))
                _append(g["indptr"], part.indptr[1:].astype(np.int64) + nnz[s])
                _append(g["y"], y[members])
                _append(g["ids"], np.asarray([str(i) for i in ids[members]], dtype=object))
                rows[s] += len(members)
                nnz[s] += part.nnz
    os.replace(partial, path)
    manifest = {
        "format": "deepchem_actinn.shards", "version": 1,
        "source": counts.path, "n_cells": int(rows.sum()), "nnz": int(nnz.sum()),
        "shard_rows": rows.tolist(), "genes": [str(g) for g in featurizer.genes_],
        "classes": [str(c) for c in (classes or [])], "featurizer": featurizer.to_dict(),
    }
    with open(os.path.join(folder, MANIFEST_FILE), "w", encoding="utf-8") as handle:
        json.dump(manifest, handle)
    return ShardedCellDataset(folder, seed=seed)


def _append(dataset: Any, values: np.ndarray) -> None:
    start = dataset.shape[0]
    dataset.resize((start + len(values),))
    dataset[start:] = values


class ShardedCellDataset(dc.data.Dataset):
    """Featurised cells in on-disk shards (written by :func:`write_shards`).

    ``iterbatches`` reads ``buffer_shards`` shards at a time: each epoch
    visits the shards in a new random order and permutes the cells of each
    window, so memory is one window whatever the dataset size. ``X`` is not
    offered (it would load everything); ``select`` returns an in-memory
    :class:`~deepchem_actinn.data.cells.SparseCellDataset` of the chosen cells.

    Parameters
    ----------
    directory: str
        Folder holding ``shards.h5`` and ``manifest.json``.
    buffer_shards: int
        Shards mixed together in memory (default 4).
    seed: int
        Seeds the shuffles.
    """

    def __init__(self, directory: PathLike, buffer_shards: int = 4, seed: int = 0) -> None:
        self.directory = os.fspath(directory)
        manifest_path = os.path.join(self.directory, MANIFEST_FILE)
        try:
            with open(manifest_path, encoding="utf-8") as handle:
                self.manifest: Dict[str, Any] = json.load(handle)
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"not a shard directory ({exc})", self.directory) from exc
        self.path = os.path.join(self.directory, SHARD_FILE)
        self.shard_rows = np.asarray(self.manifest["shard_rows"], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.shard_rows)])
        self.genes = np.asarray(self.manifest["genes"], dtype=object)
        self.classes = np.asarray(self.manifest["classes"], dtype=object)
        self.buffer_shards = max(1, int(buffer_shards))
        self.rng = np.random.default_rng(seed)
        self.sparse_batches = True

    @property
    def featurizer(self) -> ScRNAFeaturizer:
        return ScRNAFeaturizer.from_dict(self.manifest["featurizer"])

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def get_shape(self) -> Tuple[Tuple[int, ...], ...]:
        n = len(self)
        return ((n, len(self.genes)), (n, 1), (n, 1), (n,))

    def get_task_names(self) -> np.ndarray:
        return np.arange(1)

    @property
    def X(self) -> Any:  # type: ignore[override]
        # Deliberately absent (it would load every shard): ACTINNModel then
        # batches through iterbatches.
        raise AttributeError("ShardedCellDataset has no in-memory X; use iterbatches, "
                             "read_shard or select")

    @property
    def y(self) -> np.ndarray:
        return np.concatenate([self._read_field(s, "y") for s in range(len(self.shard_rows))]
                              ).reshape(-1, 1)

    @property
    def w(self) -> np.ndarray:
        return (self.y >= 0).astype(np.float32)

    @property
    def ids(self) -> np.ndarray:
        return np.concatenate([self._read_field(s, "ids") for s in range(len(self.shard_rows))])

    def _read_field(self, shard: int, field: str) -> np.ndarray:
        import h5py

        with h5py.File(self.path, "r") as handle:
            values = handle[f"shard{shard:05d}/{field}"][()]
        if field == "ids":
            return np.asarray([v.decode() if isinstance(v, bytes) else str(v) for v in values],
                              dtype=object)
        return np.asarray(values)

    def read_shard(self, shard: int, handle: Any = None
                   ) -> Tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
        """``(X, y, ids)`` of one shard."""
        import h5py

        if handle is None:
            with h5py.File(self.path, "r") as own:
                return self.read_shard(shard, own)
        g = handle[f"shard{shard:05d}"]
        X = sp.csr_matrix((g["data"][()], g["indices"][()], g["indptr"][()]),
                          shape=(int(self.shard_rows[shard]), len(self.genes)))
        ids = np.asarray([v.decode() if isinstance(v, bytes) else str(v) for v in g["ids"][()]],
                         dtype=object)
        return X, np.asarray(g["y"][()], dtype=np.int64), ids

    def windows(self, shuffle: bool = True
                ) -> Iterator[Tuple[sp.csr_matrix, np.ndarray, np.ndarray]]:
        """Windows of ``buffer_shards`` shards, rows permuted when ``shuffle``."""
        import h5py

        order = (self.rng.permutation(len(self.shard_rows)) if shuffle
                 else np.arange(len(self.shard_rows)))
        with h5py.File(self.path, "r") as handle:
            for start in range(0, len(order), self.buffer_shards):
                parts = [self.read_shard(int(s), handle)
                         for s in order[start:start + self.buffer_shards]]
                X = sp.vstack([p[0] for p in parts], format="csr")
                y = np.concatenate([p[1] for p in parts])
                ids = np.concatenate([p[2] for p in parts])
                if shuffle:
                    perm = self.rng.permutation(len(y))
                    X, y, ids = X[perm], y[perm], ids[perm]
                yield X, y, ids

    def iterbatches(self, batch_size: Optional[int] = None, epochs: int = 1,
                    deterministic: bool = False, pad_batches: bool = False
                    ) -> Iterator[Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Dense mini-batches ``(X, y, w, ids)``; shuffled unless ``deterministic``."""
        for X_b, y_b, ids_b in self._batches(batch_size or 128, epochs, not deterministic):
            y2 = y_b.reshape(-1, 1)
            batch = (X_b.toarray(), y2, (y2 >= 0).astype(np.float32), ids_b)
            if pad_batches:
                batch = dc.data.pad_batch(batch_size or 128, *batch)
            yield batch

    def _batches(self, batch_size: int, epochs: int, shuffle: bool
                 ) -> Iterator[Tuple[sp.csr_matrix, np.ndarray, np.ndarray]]:
        # Batches may span windows, so every batch but the epoch's last is full.
        for _ in range(epochs):
            carry: Optional[Tuple[sp.csr_matrix, np.ndarray, np.ndarray]] = None
            for X, y, ids in self.windows(shuffle):
                if carry is not None:
                    X = sp.vstack([carry[0], X], format="csr")
                    y, ids = np.concatenate([carry[1], y]), np.concatenate([carry[2], ids])
                    carry = None
                full = (len(y) // batch_size) * batch_size
                for start in range(0, full, batch_size):
                    stop = start + batch_size
                    yield X[start:stop], y[start:stop], ids[start:stop]
                if full < len(y):
                    carry = (X[full:], y[full:], ids[full:])
            if carry is not None:
                yield carry

    def itersamples(self) -> Iterator[Tuple[np.ndarray, np.ndarray, np.ndarray, Any]]:
        for X, y, ids in self.windows(shuffle=False):
            for i in range(len(y)):
                yield (X[i].toarray().ravel(), y[i:i + 1], (y[i:i + 1] >= 0).astype(np.float32),
                       ids[i])

    def transform(self, transformer: Any, **args: Any) -> dc.data.Dataset:
        raise NotImplementedError("transform a selection (select) of a sharded dataset")

    def select(self, indices: Union[Sequence[int], np.ndarray],
               select_dir: Optional[str] = None) -> SparseCellDataset:
        """Cells by global index (shard order), as an in-memory sparse dataset."""
        indices = np.asarray(indices, dtype=np.int64)
        shard_of = np.searchsorted(self.offsets, indices, side="right") - 1
        pieces_X: List[sp.csr_matrix] = []
        pieces_y: List[np.ndarray] = []
        pieces_ids: List[np.ndarray] = []
        position: List[np.ndarray] = []
        for s in np.unique(shard_of):
            members = np.flatnonzero(shard_of == s)
            X, y, ids = self.read_shard(int(s))
            local = indices[members] - self.offsets[s]
            pieces_X.append(X[local])
            pieces_y.append(y[local])
            pieces_ids.append(ids[local])
            position.append(members)
        if not pieces_X:
            return SparseCellDataset(sp.csr_matrix((0, len(self.genes)), dtype=np.float32),
                                     np.zeros((0, 1), np.int64), genes=self.genes,
                                     classes=self.classes)
        back = np.argsort(np.concatenate(position), kind="stable")
        return SparseCellDataset(sp.vstack(pieces_X, format="csr")[back],
                                 np.concatenate(pieces_y)[back],
                                 ids=np.concatenate(pieces_ids)[back], genes=self.genes,
                                 classes=self.classes)
