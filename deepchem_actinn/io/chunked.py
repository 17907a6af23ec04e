"""Out-of-core training: two streaming passes over a 10x HDF5 or ``.h5ad`` file.

Memory stays proportional to one chunk of cells, not to the file:

1. **Statistics** (:func:`fit_featurizer_streaming`): each chunk of cells is
   read with h5py slices of ``indptr`` (a Cell Ranger matrix is genes x cells
   CSC, i.e. cells x genes CSR by rows; an ``.h5ad`` with a CSR ``X`` is the
   same), normalised and log-transformed; per-gene sums and sums of squares
   accumulate in float64. ACTINN's gene filters applied to those sums give
   exactly the genes :meth:`ScRNAFeaturizer.fit` chooses in memory, as a
   normal fitted featurizer (it saves with the model).
2. **Transform** (:func:`write_shards`): chunks are featurised to sparse
   rows and written to shards in one HDF5 file. Each cell goes to a shard
   drawn at random, so every shard is a uniform sample of the whole file
   (files are often sorted by sample or type).

Training (:func:`fit_on_shards`, or ``model.fit(shards)``) then shuffles
twice every epoch: a fresh random order of shards, and a fresh permutation
of the cells of each window of ``buffer_shards`` shards. Peak memory is one
window, whatever the number of cells. :func:`deepchem_actinn.train.train_streaming`
runs the whole pipeline (``progress``: a bar of the file's cells for each pass, then
one of epochs); :func:`deepchem_actinn.annotation.predict_streaming` annotates a
file chunk by chunk.

Command line::

    deepchem-actinn train --train-set atlas.h5 --train-labels labels.tsv \\
        --model-dir model --out-of-core /scratch/shards
    deepchem-actinn predict --model-dir model --test-set query.h5 \\
        --output predictions.tsv --chunk-cells 16384
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import scipy.sparse as sp

from deepchem_actinn.errors import InputError
from deepchem_actinn.file_checks import (
    attribute_shape,
    check_indices,
    check_indptr,
    check_sparse_group,
    dataset_shape,
    one_line_errors,
)
from deepchem_actinn.io import (
    PathLike,
    _strings,
    check_counts,
    detect_format,
    read_labels,
    string_dataset,
    tenx_v2_genome,
)
from deepchem_actinn.preprocessing import ScRNAFeaturizer, log_gene_sums
from deepchem_actinn.progress import Progress, pass_bar
from deepchem_actinn.quiet import deepchem_messages_hidden
from deepchem_actinn.sparse import SparseCellDataset, to_torch_csr

with deepchem_messages_hidden():  # DeepChem's import-time lines are not the user's
    import deepchem as dc

logger = logging.getLogger(__name__)

#: Cells per chunk read from the input file.
CHUNK_CELLS = 16_384
#: Cells per training shard (on average).
SHARD_CELLS = 16_384
SHARD_FILE = "shards.h5"
MANIFEST_FILE = "manifest.json"
_GENE_EXPRESSION = "Gene Expression"


# -- reading a file chunk by chunk -----------------------------------------------------


class ChunkedCounts:
    """A cells x genes sparse count matrix on disk, read a chunk of cells at a time.

    Reads Cell Ranger HDF5 (v3 ``matrix`` group, or v2 per-genome groups:
    genes x cells CSC arrays, i.e. cells x genes CSR rows; non "Gene
    Expression" features are dropped) and ``.h5ad`` files whose ``X`` (or
    ``layers/<layer>``) is a CSR matrix. Gene names are upper-cased and the
    first of duplicates kept, as :func:`~deepchem_actinn.io.read_counts` does.

    Parameters
    ----------
    path: str
        The file.
    layer: str, optional
        ``.h5ad`` layer to read instead of ``X``.
    gene_ids: bool
        10x: use the Ensembl ids instead of the gene symbols.
    genome: str, optional
        10x: the genome to read (needed when a file holds several).
    part: (int, int)
        ``(rank, world_size)``: :meth:`chunks` yields only the cells ``i`` with
        ``i % world_size == rank`` (each process of a distributed run reads
        its own cells). ``(0, 1)``, the default, is every cell.
    """

    @one_line_errors("10x HDF5 / .h5ad file")
    def __init__(self, path: PathLike, layer: Optional[str] = None,
                 gene_ids: bool = False, genome: Optional[str] = None,
                 part: Tuple[int, int] = (0, 1)) -> None:
        import h5py

        self.path = os.fspath(path)
        self.part = (int(part[0]), int(part[1]))
        self.kind = detect_format(self.path)
        if self.kind not in ("10x-h5", "h5ad"):
            raise InputError(f"streaming reads 10x HDF5 or .h5ad files, not {self.kind}; "
                             "convert the file (deepchem-actinn convert) or load it in memory",
                             self.path)
        genomes: Optional[List[str]] = None
        with h5py.File(self.path, "r") as handle:
            if self.kind == "10x-h5":
                if "matrix" in handle:
                    self._group = "matrix"
                    features = handle["matrix/features"]
                    names = _strings(features["id" if gene_ids and "id" in features
                                              else "name"])
                    types = (_strings(features["feature_type"]) if "feature_type" in features
                             else None)
                    if genome is not None and "genome" in features:
                        genomes = _strings(features["genome"])
                else:  # Cell Ranger 2: one group per genome
                    self._group = tenx_v2_genome(handle, genome, self.path)
                    v2 = handle[self._group]
                    field = "genes" if gene_ids or "gene_names" not in v2 else "gene_names"
                    names = _strings(v2[field])
                    types = None
                group = handle[self._group]
                n_genes, n_cells = dataset_shape(group["shape"], self.path)
                self._barcodes = f"{self._group}/barcodes"
            else:
                self._group = "X" if layer is None else f"layers/{layer}"
                if self._group not in handle:
                    raise InputError(f"no {self._group} in the .h5ad file", self.path)
                group = handle[self._group]
                encoding = group.attrs.get("encoding-type", "")
                if isinstance(encoding, bytes):
                    encoding = encoding.decode()
                if not isinstance(group, h5py.Group) or encoding != "csr_matrix":
                    raise InputError(f".h5ad {self._group} is not a CSR matrix "
                                     f"({encoding or 'dense'}); streaming needs CSR "
                                     "(adata.X = scipy.sparse.csr_matrix(...))", self.path)
                n_cells, n_genes = attribute_shape(group, self.path)
                names = _strings(handle["var"][_index_name(handle["var"])])
                types = None
                self._barcodes = "obs/" + _index_name(handle["obs"])
            # Sizes, then the whole pointer, checked once here: each chunk then
            # only checks its own indices (see read).
            if len(names) != n_genes:
                raise InputError(f"matrix is {n_cells} cells x {n_genes} genes but has "
                                 f"{len(names)} gene names", self.path)
            check_sparse_group(group, n_cells, n_genes, self.path)
            indptr = check_indptr(group["indptr"][()], int(group["indices"].shape[0]),
                                  self.path)
            self.indptr = np.asarray(indptr, dtype=np.int64)
            n_ids = len(string_dataset(handle[self._barcodes]))
            if n_ids != n_cells:
                raise InputError(f"matrix is {n_cells} cells x {n_genes} genes but has "
                                 f"{n_ids} cell ids", self.path)
            for labels in (types, genomes):
                if labels is not None and len(labels) != n_genes:
                    raise InputError(f"matrix has {n_genes} genes but {len(labels)} feature "
                                     "types or genomes", self.path)
        keep = np.ones(n_genes, dtype=bool)
        if types is not None:
            keep &= np.asarray([t == _GENE_EXPRESSION for t in types])
        if genomes is not None:
            if genome not in set(genomes):
                raise InputError(f"no genome '{genome}' among the features (genomes: "
                                 f"{', '.join(sorted(set(genomes)))})", self.path)
            keep &= np.asarray(genomes) == genome
        upper = np.asarray([str(g).upper() for g in names], dtype=object)
        # Then the first of each duplicated upper-cased name, as read_counts does.
        kept_index = np.flatnonzero(keep)
        first = ~pd.Index(upper[kept_index]).duplicated(keep="first")
        self.columns = kept_index[first]
        self.genes = upper[self.columns]
        self.n_cells = n_cells
        self.n_file_genes = n_genes
        self._all_columns = len(self.columns) == n_genes

    @property
    def shape(self) -> Tuple[int, int]:
        return (self.n_cells, len(self.genes))

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])

    def cell_ids(self, start: int = 0, stop: Optional[int] = None) -> np.ndarray:
        """Ids (barcodes) of cells ``start`` to ``stop``."""
        import h5py

        with h5py.File(self.path, "r") as handle:
            return self._ids(handle, start, stop)

    def _ids(self, handle: Any, start: int, stop: Optional[int]) -> np.ndarray:
        barcodes = string_dataset(handle[self._barcodes])
        return np.asarray(_strings(barcodes[start:stop]), dtype=object)

    @one_line_errors("10x HDF5 / .h5ad file")
    def read(self, start: int, stop: int, handle: Any = None) -> sp.csr_matrix:
        """Counts of cells ``start`` to ``stop`` as float32 CSR over :attr:`genes`."""
        import h5py

        if handle is None:
            with h5py.File(self.path, "r") as own:
                return self.read(start, stop, own)
        group = handle[self._group]
        lo, hi = int(self.indptr[start]), int(self.indptr[stop])
        indices = check_indices(group["indices"][lo:hi], self.n_file_genes, self.path)
        X = sp.csr_matrix((group["data"][lo:hi], indices, self.indptr[start:stop + 1] - lo),
                          shape=(stop - start, self.n_file_genes))
        if not self._all_columns:
            X = X[:, self.columns]
        return check_counts(X, self.path)

    def chunks(self, chunk_cells: int = CHUNK_CELLS, progress: Progress = False,
               desc: str = "reading") -> Iterator[Tuple[int, sp.csr_matrix, np.ndarray]]:
        """``(start, counts, ids)`` for consecutive chunks of ``chunk_cells`` cells.

        With a ``part``, each chunk holds only that part's cells of the range.
        ``progress`` draws a bar named ``desc`` over the file's cells
        (:mod:`deepchem_actinn.progress`), advanced as each chunk is done with.
        """
        import h5py

        rank, world = self.part
        with h5py.File(self.path, "r") as handle, \
                pass_bar(self.n_cells, desc, progress=progress) as shown:
            for start in range(0, self.n_cells, chunk_cells):
                stop = min(start + chunk_cells, self.n_cells)
                ids = self._ids(handle, start, stop)
                X = self.read(start, stop, handle)
                if world > 1:
                    rows = rank_rows(stop - start, start, rank, world)
                    X, ids = X[rows], ids[rows]
                yield start, X, ids
                shown.update(stop - start)  # a part reads the whole range too


def rank_rows(n: int, start: int, rank: int, world: int) -> np.ndarray:
    """Local row indices of the cells ``start .. start + n`` owned by ``rank``.

    >>> rank_rows(5, 7, 1, 3).tolist()  # cells 7..11; rank 1 of 3 owns 7 and 10
    [0, 3]
    """
    first = (rank - start) % world
    return np.arange(first, n, world)


def _index_name(group: Any) -> str:
    name = group.attrs.get("_index", "_index")
    return name.decode() if isinstance(name, bytes) else str(name)


# -- pass 1: gene statistics -----------------------------------------------------------


@dataclass
class StreamStatistics:
    """What pass 1 saw: cells used, cells skipped, classes found."""

    n_cells: int
    n_used: int
    n_unlabelled: int
    n_empty: int
    classes: np.ndarray
    seconds: float


def _label_lookup(labels: Optional[Union[PathLike, pd.Series]]) -> Optional[pd.Series]:
    if labels is None:
        return None
    series = labels if isinstance(labels, pd.Series) else read_labels(labels)
    series = series.copy()
    series.index = pd.Index([str(i) for i in series.index])
    return series[~series.index.duplicated(keep="first")].astype(str)


def fit_featurizer_streaming(source: Union[PathLike, ChunkedCounts],
                             labels: Optional[Union[PathLike, pd.Series]] = None, *,
                             restrict_to: Optional[Sequence[str]] = None,
                             featurizer: Optional[ScRNAFeaturizer] = None,
                             chunk_cells: int = CHUNK_CELLS,
                             reduce: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                             progress: Progress = False
                             ) -> Tuple[ScRNAFeaturizer, StreamStatistics]:
    """Pass 1: fit ACTINN's gene filters from per-gene sums, one chunk at a time.

    With ``labels``, only labelled cells count (as in memory, where cells are
    joined to their labels first). Cells with zero counts are left out.
    ``reduce`` sums ``[totals, squares, n_used, n_empty]`` over the processes of a
    distributed run (each having read its own part), so all fit the same genes.
    ``progress``: a bar of the file's cells ("gene statistics").

    Returns
    -------
    (ScRNAFeaturizer, StreamStatistics)
        A fitted featurizer, the same as ``ScRNAFeaturizer().fit`` on the
        same cells in memory, and what was counted.
    """
    started = time.perf_counter()
    counts = source if isinstance(source, ChunkedCounts) else ChunkedCounts(source)
    featurizer = featurizer or ScRNAFeaturizer()
    lookup = _label_lookup(labels)
    columns = featurizer.input_columns(counts.genes, restrict_to, counts.path)
    total = np.zeros(len(columns), np.float64)
    squares = np.zeros(len(columns), np.float64)
    n_used = n_unlabelled = n_empty = 0
    classes: set = set()
    for _, X, ids in counts.chunks(chunk_cells, progress, "gene statistics"):
        if lookup is not None:
            names = lookup.reindex(ids)
            known = names.notna().to_numpy()
            n_unlabelled += int((~known).sum())
            classes.update(names[known].tolist())
            X = X[np.flatnonzero(known)]
        X_in = X[:, columns] if len(columns) != X.shape[1] else X
        # The float32 values fit() sees, summed in float64 as it sums them.
        chunk_total, chunk_squares, used, empty = log_gene_sums(X_in, featurizer.target_sum)
        total += chunk_total
        squares += chunk_squares
        n_used += used
        n_empty += empty
    if reduce is not None:
        sums = reduce(np.concatenate([total, squares, [n_used, n_empty]]))
        total, squares = sums[:len(columns)], sums[len(columns):-2]
        n_used, n_empty = int(sums[-2]), int(sums[-1])
    if n_used == 0:
        raise InputError("no labelled cell with non-zero counts" if lookup is not None
                         else "every cell has zero counts", counts.path)
    featurizer.fit_from_sums(total, squares, n_used, counts.genes[columns], counts.path)
    featurizer.joint_ = False
    stats = StreamStatistics(counts.n_cells, n_used, n_unlabelled, n_empty,
                             np.asarray(sorted(classes), dtype=object),
                             time.perf_counter() - started)
    return featurizer, stats


# -- pass 2: featurised shards -----------------------------------------------------------


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
    :class:`~deepchem_actinn.sparse.SparseCellDataset` of the chosen cells.

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


# -- training and prediction ---------------------------------------------------------------


def shard_generator(model: Any, shards: ShardedCellDataset, epochs: int
                    ) -> Iterator[Tuple[List, List, List]]:
    """Batches for ``model.fit_generator``: sparse tensors on the model's device."""
    for X_b, y_b, _ in shards._batches(model.batch_size, epochs, shuffle=True):
        y2 = y_b.reshape(-1, 1)
        w2 = (y2 >= 0).astype(np.float32)
        X_t = (to_torch_csr(X_b, model.device) if shards.sparse_batches
               else X_b.toarray())
        yield ([X_t], [np.maximum(y2, 0)], [w2])


def fit_on_shards(model: Any, shards: ShardedCellDataset, nb_epoch: Optional[int] = None,
                  **fit_kwargs: Any) -> float:
    """Train ``model`` (an :class:`~deepchem_actinn.model.ACTINNModel`) from shards.

    Returns DeepChem's average loss. Peak memory is one shard window.
    """
    epochs = model.epochs if nb_epoch is None else int(nb_epoch)
    return float(model.fit_generator(shard_generator(model, shards, epochs), **fit_kwargs))


def chunk_transform(featurizer: ScRNAFeaturizer, genes: np.ndarray) -> Any:
    """``featurizer.transform`` for many chunks with the same genes, mapping genes once.

    Gives the same float32 values as ``transform(X, genes, sparse_output=True)``
    (same float64 products and log) without its per-call gene lookups and
    copies; falls back to ``transform`` when a model gene is missing.
    """
    position = {g: i for i, g in enumerate(genes)}
    model_cols = np.array([position.get(g, -1) for g in featurizer.genes_], dtype=np.int64)
    input_cols = np.array([position.get(g, -1) for g in featurizer.input_genes_],
                          dtype=np.int64)
    if (model_cols < 0).any() or (input_cols < 0).any():
        return lambda X: featurizer.transform(X, genes, sparse_output=True)
    all_inputs = len(input_cols) == len(genes)  # input genes are every file gene
    target = featurizer.target_sum

    def transform(X: sp.csr_matrix) -> sp.csr_matrix:
        library = np.asarray((X if all_inputs else X[:, input_cols]).sum(axis=1),
                             dtype=np.float64).ravel()
        with np.errstate(divide="ignore"):
            scale = np.where(library > 0, target / np.maximum(library, 1e-300), 0.0)
        out = sp.csr_matrix(X[:, model_cols])
        values = out.data.astype(np.float64) * np.repeat(scale, np.diff(out.indptr))
        out.data = np.log2(values + 1.0).astype(np.float32)
        return out

    return transform
