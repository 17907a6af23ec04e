"""Reading and writing count matrices and cell-type labels.

Everything here returns cells x genes data (the orientation DeepChem and
scanpy use), whatever the orientation on disk. One module per concern:

================= ==========================================================
module            holds
================= ==========================================================
``counts``        :class:`CountMatrix` (what every reader returns),
                  :class:`StoredCounts` (counts as a file stores them),
                  :func:`check_counts`, :func:`finish_matrix`
``checks``        the checks every reader applies to untrusted files
``detect``        :func:`detect_format` (from the content), :data:`FORMATS`
``pandas_hdf``    pandas HDF (``DataFrame.to_hdf``; ACTINN's and DeepChem's
                  tutorial format), parsed with h5py, never unpickled
``tenx``          10x Genomics HDF5 (Cell Ranger v2, v3), whole or chunked
``mtx``           Matrix Market folders (``matrix.mtx``, ``features.tsv``...)
``text``          CSV and TSV tables
``h5ad``          ``AnnData`` and ``.h5ad`` (whole or chunked), ``obs`` labels
``hdf5``          what the HDF5 formats share (string datasets, layouts)
``read``          :func:`read_counts` (any format), :func:`as_count_matrix`,
                  :func:`read_labelled`
``chunked``       :class:`ChunkedCounts`: a file a chunk of cells at a time
``labels``        :func:`read_labels`, :func:`join_labels`
``writers``       :func:`write_counts` (every format read here)
================= ==========================================================

Count files (any format, recognised from the content) are read with
:func:`read_counts`; labels (``cell_id<TAB>cell_type``) with
:func:`read_labels`, and joined to cells **by id** with :func:`join_labels`.
Every name below is importable from ``deepchem_actinn.io``.
"""

from __future__ import annotations

from deepchem_actinn.io.checks import _check_readable
from deepchem_actinn.io.chunked import CHUNK_CELLS, ChunkedCounts, rank_rows
from deepchem_actinn.io.counts import (
    CountMatrix,
    CountMatrixWarning,
    Matrix,
    Names,
    PathLike,
    StoredCounts,
    check_counts,
    finish_matrix,
    take_columns,
    take_rows,
)
from deepchem_actinn.io.detect import (
    FORMAT_OPTIONS,
    FORMATS,
    GZIP_SIGNATURE,
    HDF5_SIGNATURE,
    check_format_options,
    detect_format,
    normalize_format,
)
from deepchem_actinn.io.h5ad import (
    ANNDATA_HINT,
    _import_anndata,
    _is_anndata,
    from_anndata,
    load_h5ad,
    obs_labels,
    read_anndata,
)
from deepchem_actinn.io.hdf5 import string_dataset
from deepchem_actinn.io.labels import (
    LabelJoin,
    join_labels,
    labels_source,
    read_labels,
    training_labels,
    transposed_hint,
)
from deepchem_actinn.io.mtx import load_mtx
from deepchem_actinn.io.pandas_hdf import load_pandas_hdf, read_pandas_hdf
from deepchem_actinn.io.read import (
    as_count_matrix,
    gene_list,
    load_counts,
    read_counts,
    read_labelled,
)
from deepchem_actinn.io.tenx import load_10x_h5, tenx_v2_genome
from deepchem_actinn.io.text import load_text
from deepchem_actinn.io.writers import output_format, write_counts

__all__ = [
    "CHUNK_CELLS", "ChunkedCounts", "rank_rows",
    "CountMatrix", "CountMatrixWarning", "Matrix", "Names", "PathLike", "StoredCounts",
    "check_counts", "finish_matrix", "take_columns", "take_rows",
    "FORMAT_OPTIONS", "FORMATS", "GZIP_SIGNATURE", "HDF5_SIGNATURE", "check_format_options",
    "detect_format", "normalize_format",
    "ANNDATA_HINT", "from_anndata", "load_h5ad", "obs_labels", "read_anndata",
    "string_dataset",
    "LabelJoin", "join_labels", "labels_source", "read_labels", "training_labels",
    "transposed_hint",
    "load_mtx", "load_pandas_hdf", "read_pandas_hdf",
    "as_count_matrix", "gene_list", "load_counts", "read_counts", "read_labelled",
    "load_10x_h5", "tenx_v2_genome", "load_text", "output_format", "write_counts",
]
