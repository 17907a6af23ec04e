"""Matrix Market folders: ``matrix.mtx[.gz]``, ``features.tsv``/``genes.tsv``, ``barcodes.tsv``.

The folder Cell Ranger writes beside its HDF5 file (v3: features with id,
symbol and type; v2: genes with id and symbol) and GEO's prefixed copies
(``GSM123_matrix.mtx.gz`` + ``GSM123_barcodes.tsv.gz``). The size line is
checked against the file and the name lists before anything is allocated.
"""

from __future__ import annotations

import gzip
import os
from typing import Any, Optional, Sequence

import pandas as pd
import scipy.sparse as sp

from deepchem_actinn.errors import InputError
from deepchem_actinn.io.checks import check_text_width, mtx_header
from deepchem_actinn.io.counts import PathLike, StoredCounts
from deepchem_actinn.io.detect import _MTX_NAME, _find_mtx, _sniff
from deepchem_actinn.io.tenx import _keep_gene_expression


def _read_table_column(path: str, source: str) -> pd.DataFrame:
    _, gz = _sniff(path, 2)
    check_text_width(path, "\t", source, limit=1000, what="fields")
    try:
        return pd.read_csv(path, sep="\t", header=None, dtype=str, keep_default_na=False,
                           compression="gzip" if gz else None, quoting=3)
    except Exception as exc:
        raise InputError(f"cannot read {os.path.basename(path)}: {exc}", source) from exc


def _companion(folder: str, prefix: str, stems: Sequence[str]) -> Optional[str]:
    for stem in stems:
        for candidate in (prefix + stem, stem):
            for suffix in ("", ".gz"):
                full = os.path.join(folder, candidate + suffix)
                if os.path.isfile(full):
                    return full
    return None


def load_mtx(path: PathLike, gene_ids: bool = False) -> StoredCounts:
    """Load a Matrix Market folder: ``matrix.mtx[.gz]`` (genes x cells), features, barcodes.

    ``path`` is the folder or its matrix file. Gene names come from
    ``features.tsv[.gz]`` (Cell Ranger v3: id, symbol, type) or
    ``genes.tsv[.gz]`` (v2: id, symbol); a file prefix such as GEO's
    ``GSM123_matrix.mtx.gz`` + ``GSM123_barcodes.tsv.gz`` is followed.
    """
    import scipy.io

    name = os.fspath(path)
    if not os.path.exists(name):
        raise InputError("file not found", name)
    folder, matrix_file = _find_mtx(name)
    match = _MTX_NAME.match(os.path.basename(matrix_file))
    prefix = match.group(1) if match else ""
    features_file = _companion(folder, prefix, ("features.tsv", "genes.tsv"))
    barcodes_file = _companion(folder, prefix, ("barcodes.tsv",))
    if features_file is None or barcodes_file is None:
        missing = "features.tsv[.gz] or genes.tsv[.gz]" if features_file is None \
            else "barcodes.tsv[.gz]"
        raise InputError(f"Matrix Market folder lacks {missing}", folder)
    head, gz = _sniff(matrix_file, 64)
    if not head.lstrip().startswith(b"%%MatrixMarket"):
        raise InputError("not a Matrix Market file (no %%MatrixMarket header)", matrix_file)
    # The size line is checked against the file and the name lists before
    # scipy allocates anything for it (a false claim used to abort the process).
    _, n_rows, n_columns, _ = mtx_header(matrix_file)
    features = _read_table_column(features_file, folder)
    barcodes = _read_table_column(barcodes_file, folder)
    ids = features.iloc[:, 0].tolist()
    names = features.iloc[:, 1].tolist() if features.shape[1] > 1 else list(ids)
    types = features.iloc[:, 2].tolist() if features.shape[1] > 2 else None
    cells = barcodes.iloc[:, 0].tolist()
    if (n_rows, n_columns) not in ((len(ids), len(cells)), (len(cells), len(ids))):
        raise InputError(f"matrix is {n_rows} x {n_columns} but "
                         f"{os.path.basename(features_file)} lists {len(ids)} genes and "
                         f"{os.path.basename(barcodes_file)} {len(cells)} cells", folder)
    try:
        opener: Any = gzip.open if gz else open
        with opener(matrix_file, "rb") as handle:
            stored = sp.csr_matrix(scipy.io.mmread(handle))
    except Exception as exc:
        raise InputError(f"cannot read Matrix Market file: {type(exc).__name__}: {exc}",
                         matrix_file) from exc
    if stored.shape == (len(ids), len(cells)):
        X = sp.csr_matrix(stored.T)
    elif stored.shape == (len(cells), len(ids)):
        X = stored  # cells x genes on disk (not 10x's layout, but unambiguous)
    else:
        raise InputError(f"matrix is {stored.shape[0]} x {stored.shape[1]} but "
                         f"{os.path.basename(features_file)} lists {len(ids)} genes and "
                         f"{os.path.basename(barcodes_file)} {len(cells)} cells", folder)
    X, names, ids = _keep_gene_expression(X, names, ids, types, folder)
    genes, other = (ids, names) if gene_ids else (names, ids)
    return StoredCounts(X, genes, cells, folder if os.path.isdir(name) else name, "mtx",
                        gene_ids=other)
