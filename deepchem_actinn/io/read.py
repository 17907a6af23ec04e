"""Reading counts in any format: detect it, load it with its module, finish the matrix.

:func:`read_counts` is the one entry point for files (:func:`load_counts`
stops before :func:`~deepchem_actinn.io.counts.finish_matrix`, for
``convert``), :func:`as_count_matrix` for everything the Python API accepts
(a path, an ``AnnData``, a ``DataFrame``, a :class:`~deepchem_actinn.io.counts.CountMatrix`),
and :func:`read_labelled` reads counts with their label file.
"""

from __future__ import annotations

import os
from typing import Any, List, Optional

import numpy as np
import pandas as pd

from deepchem_actinn.errors import InputError
from deepchem_actinn.io.counts import CountMatrix, PathLike, StoredCounts, finish_matrix
from deepchem_actinn.io.detect import (
    FORMAT_OPTIONS,
    check_format_options,
    detect_format,
    normalize_format,
)
from deepchem_actinn.io.h5ad import _is_anndata, from_anndata, load_h5ad
from deepchem_actinn.io.labels import LabelJoin, join_labels, read_labels
from deepchem_actinn.io.mtx import load_mtx
from deepchem_actinn.io.pandas_hdf import load_pandas_hdf
from deepchem_actinn.io.tenx import load_10x_h5
from deepchem_actinn.io.text import load_text


def load_counts(path: PathLike, key: Optional[str] = None, *, format: Optional[str] = None,
                layer: Optional[str] = None, gene_column: Optional[str] = None,
                cells_as_rows: bool = False, gene_ids: bool = False) -> StoredCounts:
    """Load counts in any readable format as stored; :func:`read_counts` finishes them.

    Options that do not apply to the file's format are refused, so a typo'd
    ``--layer`` is never silently ignored.
    """
    name = os.fspath(path)
    kind = normalize_format(format) or detect_format(name)
    check_format_options(kind, name, key=key, layer=layer, gene_column=gene_column,
                         cells_as_rows=cells_as_rows, gene_ids=gene_ids)
    if kind == "pandas-hdf":
        return load_pandas_hdf(name, key)
    if kind == "10x-h5":
        return load_10x_h5(name, genome=key, gene_ids=gene_ids)
    if kind == "mtx":
        return load_mtx(name, gene_ids=gene_ids)
    if kind == "h5ad":
        return load_h5ad(name, layer=layer, gene_column=gene_column)
    return load_text(name, cells_as_rows=cells_as_rows, sep="," if kind == "csv" else "\t")


def read_counts(path: PathLike, key: Optional[str] = None, *, format: Optional[str] = None,
                layer: Optional[str] = None, gene_column: Optional[str] = None,
                cells_as_rows: bool = False, gene_ids: bool = False) -> CountMatrix:
    """Read a count matrix in any supported format into a cells x genes :class:`CountMatrix`.

    The format is recognised from the content (:func:`detect_format`), not
    the extension. Sparse formats stay sparse (CSR).

    Parameters
    ----------
    path: str
        A pandas HDF file (``DataFrame.to_hdf``; genes as index, cells as
        columns; ACTINN's and DeepChem's tutorial format), a 10x Genomics
        HDF5 file (Cell Ranger v2 or v3), a Matrix Market folder
        (``matrix.mtx[.gz]``, ``features.tsv[.gz]``/``genes.tsv``,
        ``barcodes.tsv[.gz]``) or its matrix file, a CSV/TSV table (genes x
        cells, optionally gzipped) or an ``.h5ad`` file.
    key: str, optional
        pandas HDF key (default ``dge`` or the only key); the genome of a
        10x file holding several.
    format: str, optional
        Skip detection: one of :data:`FORMATS` (or an alias like ``10x``).
    layer: str, optional
        ``.h5ad``: ``None`` for ``X``, ``"raw"`` for ``raw.X``, or a layer name.
    gene_column: str, optional
        ``.h5ad``: the ``var`` column holding gene symbols (default ``var_names``).
    cells_as_rows: bool
        CSV/TSV: the table is cells x genes.
    gene_ids: bool
        10x HDF5 and Matrix Market: use gene ids (Ensembl) instead of symbols.

    Examples
    --------
    >>> import tempfile, os, pandas as pd
    >>> path = os.path.join(tempfile.mkdtemp(), "counts.h5")
    >>> pd.DataFrame([[1, 0, 4], [0, 2, 0]], index=["Cd19", "Cd3e"],
    ...              columns=["c1", "c2", "c3"]).to_hdf(path, key="dge")
    >>> m = read_counts(path)
    >>> m.shape, m.genes.tolist()
    ((3, 2), ['CD19', 'CD3E'])
    """
    return load_counts(path, key, format=format, layer=layer, gene_column=gene_column,
                       cells_as_rows=cells_as_rows, gene_ids=gene_ids).finish()


def as_count_matrix(data: Any, key: Optional[str] = None, **read_options: Any) -> CountMatrix:
    """Accept a path (any format), an ``AnnData``, a :class:`CountMatrix`, the
    :class:`StoredCounts` of :func:`from_anndata` / :func:`load_counts` or a ``DataFrame``.

    A ``DataFrame`` is genes x cells (``cells_as_rows=True``: cells x
    genes); an ``AnnData`` gives ``X``, ``layers[layer]`` or ``raw.X``
    (``layer=``) with ``var_names`` or a ``var`` column (``gene_column=``)
    as genes. ``read_options`` go to :func:`~deepchem_actinn.io.read_counts`;
    one that does not apply to ``data`` is refused rather than ignored.
    """
    unknown = set(read_options) - set(FORMAT_OPTIONS) - {"format"}
    if unknown:
        raise TypeError(f"unexpected keyword arguments {', '.join(map(repr, sorted(unknown)))}")
    given = sorted(name for name, value in read_options.items() if value)
    if key is not None:
        given = ["key"] + given
    applies = {CountMatrix: (), StoredCounts: (), pd.DataFrame: ("cells_as_rows",)}
    for kind, allowed in applies.items():
        if isinstance(data, kind) and set(given) - set(allowed):
            raise InputError(f"option {', '.join(sorted(set(given) - set(allowed)))} does not "
                             f"apply to a {kind.__name__} (only to files"
                             f"{'' if kind is pd.DataFrame else ' and AnnData'})",
                             f"<{kind.__name__}>")
    if _is_anndata(data) and set(given) - {"layer", "gene_column"}:
        raise InputError(f"option {', '.join(sorted(set(given) - {'layer', 'gene_column'}))} "
                         "does not apply to an AnnData (layer and gene_column do)", "<AnnData>")
    if isinstance(data, CountMatrix):
        return data
    if isinstance(data, StoredCounts):  # from_anndata(), load_counts()
        return data.finish()
    if isinstance(data, pd.DataFrame):
        frame = data.T if read_options.get("cells_as_rows") else data
        return finish_matrix(frame.to_numpy().T, list(frame.index), list(frame.columns),
                             "<DataFrame>")
    if _is_anndata(data):
        return from_anndata(data, layer=read_options.get("layer"),
                            gene_column=read_options.get("gene_column")).finish()
    if isinstance(data, (str, os.PathLike)):
        return read_counts(data, key=key, **read_options)
    raise TypeError(f"cannot read cells from a {type(data).__name__}")


def gene_list(query: Any) -> List[str]:
    """A query's genes: a list of names, or those of what :func:`as_count_matrix` reads."""
    if query is None:
        return []
    if isinstance(query, (list, tuple, np.ndarray, pd.Index)):
        return [str(g) for g in query]
    return [str(g) for g in as_count_matrix(query).genes]


def read_labelled(counts: PathLike, labels: PathLike, key: Optional[str] = None) -> LabelJoin:
    """Read a count matrix and its label file and join them by cell id.

    Examples
    --------
    >>> from deepchem_actinn.sample_data import sample_files
    >>> files = sample_files()
    >>> joined = read_labelled(files.sample_1_counts, files.sample_1_labels)
    >>> joined.matrix.shape, joined.n_unlabelled_cells, joined.labels[:3].tolist()
    ((1000, 1500), 0, ['B cell', 'T cell', 'B cell'])
    """
    matrix = read_counts(counts, key=key)
    return join_labels(matrix, read_labels(labels), label_source=os.fspath(labels))
