"""Chunked reading: a 10x HDF5 or ``.h5ad`` file a chunk of cells at a time.

:class:`ChunkedCounts` reads the CSR rows of a file whose layout its
format's module gives (:func:`~deepchem_actinn.io.tenx.tenx_layout`,
:func:`~deepchem_actinn.io.h5ad.h5ad_layout`), so memory stays
proportional to one chunk, not to the file. It feeds chunked annotation
(``annotate(..., chunk_cells=N)``), the streamed featurizer fit
(:func:`~deepchem_actinn.preprocessing.fit_featurizer_streaming`) and the
shards of out-of-core training (:func:`~deepchem_actinn.data.shards.write_shards`);
with ``part``, each process of a distributed run reads its own cells
(:func:`rank_rows`).
"""

from __future__ import annotations

import os
from typing import Any, Iterator, Optional, Tuple

import numpy as np
import pandas as pd
import scipy.sparse as sp

from deepchem_actinn.errors import InputError
from deepchem_actinn.io.checks import (
    check_indices,
    check_indptr,
    check_sparse_group,
    one_line_errors,
)
from deepchem_actinn.io.counts import PathLike, check_counts
from deepchem_actinn.io.detect import detect_format
from deepchem_actinn.io.h5ad import h5ad_layout
from deepchem_actinn.io.hdf5 import _strings, string_dataset
from deepchem_actinn.io.tenx import _GENE_EXPRESSION, tenx_layout
from deepchem_actinn.progress import Progress, pass_bar

#: Cells per chunk read from the input file.
CHUNK_CELLS = 16_384


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
        with h5py.File(self.path, "r") as handle:
            layout = (tenx_layout(handle, genome, gene_ids, self.path) if self.kind == "10x-h5"
                      else h5ad_layout(handle, layer, self.path))
            self._group, self._barcodes = layout.group, layout.barcodes
            names, types, genomes = layout.names, layout.types, layout.genomes
            n_cells, n_genes = layout.n_cells, layout.n_genes
            group = handle[self._group]
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
