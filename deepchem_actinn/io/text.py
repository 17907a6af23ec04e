"""CSV and TSV tables: genes x cells (header row of cell ids), or cells x genes; gzip or not."""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd
import scipy.sparse as sp

from deepchem_actinn.errors import InputError
from deepchem_actinn.io.checks import _check_readable, check_text_width
from deepchem_actinn.io.counts import Matrix, PathLike, StoredCounts
from deepchem_actinn.io.detect import _sniff


def load_text(path: PathLike, cells_as_rows: bool = False,
              sep: Optional[str] = None) -> StoredCounts:
    """Load a CSV/TSV table: genes x cells (header row of cell ids, gene names first).

    With ``cells_as_rows`` the table is cells x genes (header row of genes).
    The separator is read from the first line unless given; gzip is
    recognised from the content.
    """
    name = _check_readable(path)
    head, gz = _sniff(name)
    if sep is None:
        first = head.decode("utf-8", "replace").splitlines()[0] if head else ""
        sep = "\t" if "\t" in first else ","
    check_text_width(name, sep, name)  # before pandas allocates per column
    try:
        frame = pd.read_csv(name, sep=sep, index_col=0, dtype={0: str}, low_memory=False,
                            compression="gzip" if gz else None)
    except Exception as exc:
        raise InputError(f"cannot read as a delimited table: {type(exc).__name__}: {exc}",
                         name) from exc
    if frame.shape[1] == 0:
        raise InputError("table has a single column; expected gene names then one column per "
                         f"{'gene' if cells_as_rows else 'cell'}", name)
    bad = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if bad:
        column = frame[bad[0]].dropna().astype(str)
        text = column[pd.to_numeric(column, errors="coerce").isna()]
        example = f" (e.g. '{text.iloc[0]}')" if len(text) else ""
        first = "cell ids" if cells_as_rows else "gene names"
        raise InputError(f"column '{bad[0]}' is not numeric{example}; expected {first} in the "
                         "first column and counts in the others", name)
    values = frame.to_numpy()
    # Keep mostly-zero tables sparse so later steps do not copy them densely.
    nonzero = np.count_nonzero(values)
    matrix: Matrix = values if cells_as_rows else values.T
    if values.size and nonzero < 0.5 * values.size:
        matrix = sp.csr_matrix(matrix)
    rows, columns = [str(i) for i in frame.index], [str(c) for c in frame.columns]
    genes, cells = (columns, rows) if cells_as_rows else (rows, columns)
    return StoredCounts(matrix, genes, cells, name, "csv" if sep == "," else "tsv")
