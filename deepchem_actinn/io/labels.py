"""Cell-type labels: label files, ``obs`` columns, and joining labels to cells by id.

:func:`read_labels` reads ``cell_id<TAB>cell_type`` files as people, pandas
and R write them; :func:`join_labels` keeps the cells that have a label,
matched by id; :func:`training_labels` resolves a training call's
``labels`` (a file, a Series, or the ``obs`` column of an AnnData/.h5ad).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple, Union

import numpy as np
import pandas as pd

from deepchem_actinn.errors import InputError, user_stacklevel
from deepchem_actinn.io.checks import _check_readable
from deepchem_actinn.io.counts import CountMatrix, CountMatrixWarning, PathLike, StoredCounts
from deepchem_actinn.io.detect import detect_format, normalize_format
from deepchem_actinn.io.h5ad import _is_anndata, obs_labels

# First-row words that mark a label file's header line.
_HEADER_WORDS = {
    "cell", "cells", "cell_id", "cellid", "cell id", "barcode", "barcodes", "id", "ids",
    "cell_type", "celltype", "cell type", "label", "labels", "type", "cluster", "annotation",
    "index", "obs_names", "cell_types", "cell_ontology_class", "bulk_labels", "louvain", "leiden",
}


def _unquote(field: str) -> str:
    """A field without the double quotes R and pandas put around text (``""`` is ``"``)."""
    field = field.strip()
    if len(field) >= 2 and field[0] == field[-1] == '"':
        return field[1:-1].replace('""', '"').strip()
    return field


def _looks_like_header(fields: List[str], raw: List[str], n_data_fields: int) -> bool:
    """True for a first row written as a header: by hand, by pandas or by R."""
    if not fields[0]:  # pandas' unnamed index ("\tlabel"), R's write.csv ('""\t"x"')
        return True
    if len(raw) == n_data_fields - 1:  # R's write.table: one name per column, none for ids
        return True
    return any(f.lower() in _HEADER_WORDS for f in fields[:2])


def labels_source(labels: pd.Series) -> Optional[str]:
    """The file (or ``obs`` column) a label Series was read from, if known."""
    source = labels.attrs.get("source") if hasattr(labels, "attrs") else None
    return None if source is None else str(source)


def read_labels(path: PathLike, column: Optional[Union[str, int]] = None) -> pd.Series:
    """Read ``cell_id<TAB>cell_type`` lines into a Series indexed by cell id.

    A header line is recognised from its words (``cell_id``, ``label``,
    ``index``...), an empty first field (pandas' unnamed index, R's
    ``write.csv``) or one field fewer than the rows (R's ``write.table``),
    and skipped; quotes around fields are removed. Duplicate ids, empty
    files and files that are not tab-separated are refused. Words such as
    ``NA`` or ``None`` are cell-type names, never missing values.

    Parameters
    ----------
    path: str
        The label file.
    column: str or int, optional
        The cell-type column of a file with more than two columns (an error
        without it): a header name, or a position counted from 0 at the
        cell-id column as pandas' ``iloc`` does (``2``: the third field).

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "labels.tsv")
    >>> _ = open(path, "w").write("cell_id\\tcell_type\\nc1\\tB cell\\nc2\\tT cell\\n")
    >>> read_labels(path).to_dict()
    {'c1': 'B cell', 'c2': 'T cell'}
    >>> _ = open(path, "w").write("\\tlouvain\\tbulk_labels\\nc1\\t0\\tB cell\\n")
    >>> read_labels(path, column="bulk_labels").to_dict()
    {'c1': 'B cell'}
    """
    name = _check_readable(path)
    try:
        with open(name, encoding="utf-8-sig") as handle:
            lines = [line.rstrip("\r\n") for line in handle]
    except UnicodeDecodeError:
        raise InputError("label file is not UTF-8 text", name) from None
    rows = [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]
    if not rows:
        raise InputError("label file is empty", name)
    split: List[Tuple[int, List[str]]] = []
    for number, line in rows:
        raw = line.split("\t")
        while len(raw) > 2 and not raw[-1].strip():  # trailing tabs add no column
            raw.pop()
        split.append((number, raw))
    for number, raw in split:
        if len(raw) < 2 and not (number == split[0][0] and len(split) > 1
                                 and len(split[1][1]) == 2):
            hint = ""
            line = "\t".join(raw)
            for sep, sep_name in ((",", "commas"), (";", "semicolons"), (" ", "spaces")):
                if sep in line:
                    hint = f" (it looks separated by {sep_name})"
                    break
            raise InputError(f"line {number} is not 'cell_id<TAB>cell_type'{hint}", name)
    first_raw = split[0][1]
    first = [_unquote(f) for f in first_raw]
    n_fields = len(split[1][1]) if len(split) > 1 else len(first_raw)
    has_header = _looks_like_header(first, first_raw, n_fields)
    if has_header and len(first) == n_fields - 1:
        first = [""] + first  # R's write.table names the columns, not the ids
    width = max(len(first), n_fields)
    names = first if has_header else [f"column {i}" for i in range(width)]
    listed = ", ".join(f"{i}: {n or '(index)'}" if has_header else f"{i}: e.g. '{first[i]}'"
                       for i, n in enumerate(names[:12]) if i < len(first))
    if column is None:
        if width > 2:
            raise InputError(
                f"label file has {width} columns ({listed}); choose the cell-type column with "
                "column= (--label-column NAME or position)", name)
        index = 1
    else:
        index = _label_column_index(column, names if has_header else None, width, listed, name)
    data = split[1:] if has_header else split
    if not data:
        raise InputError("label file has a header but no labels", name)
    parsed: List[Tuple[str, str]] = []
    for number, raw in data:
        if len(raw) <= index:
            raise InputError(f"line {number} has {len(raw)} fields, fewer than the cell-type "
                             f"column {index} needs", name)
        cell, label = _unquote(raw[0]), _unquote(raw[index])
        if not cell or not label:
            raise InputError(f"line {number} has an empty cell id or cell type", name)
        parsed.append((cell, label))
    labels = pd.Series([label for _, label in parsed], index=[cell for cell, _ in parsed],
                       name="cell_type", dtype=object)
    duplicated = labels.index.duplicated(keep=False)
    if duplicated.any():
        examples = sorted(set(labels.index[duplicated]))[:5]
        raise InputError(
            f"{int(labels.index.duplicated().sum())} duplicate cell ids "
            f"(e.g. {', '.join(examples)})", name)
    labels.attrs["source"] = name
    return labels


def _label_column_index(column: Union[str, int], header: Optional[List[str]], width: int,
                        listed: str, source: str) -> int:
    """The position of the chosen cell-type column (never 0, the cell ids)."""
    if header is not None and isinstance(column, str) and column in header[1:]:
        return header.index(column, 1)
    if header is not None and column == header[0] and column:
        raise InputError(f"column '{column}' holds the cell ids; choose the cell-type column "
                         f"({listed})", source)
    text = str(column).strip()
    if isinstance(column, (int, np.integer)) or text.lstrip("-").isdigit():
        index = int(text)
        if index == 0:
            raise InputError("column 0 holds the cell ids; choose the cell-type column "
                             f"({listed})", source)
        if not 0 < index < width:
            raise InputError(f"no column {index}: the file has {width} columns ({listed})",
                             source)
        return index
    where = "its header" if header is not None else "the file (it has no header line)"
    raise InputError(f"no column '{column}' in {where} ({listed})", source)


@dataclass
class LabelJoin:
    """What :func:`join_labels` matched: the labelled cells and what was left out.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> m = CountMatrix(np.eye(3), ["g1", "g2", "g3"], ["a", "b", "c"])
    >>> joined = join_labels(m, pd.Series({"a": "B cell", "z": "T cell"}))
    >>> joined.matrix.cells.tolist(), joined.labels.tolist()
    (['a'], ['B cell'])
    >>> for part in joined.summary().split("; "):
    ...     print(part)
    1 labelled cells
    2 cells without a label (e.g. b, c) left out
    1 labels without a cell (e.g. z) ignored
    """

    matrix: CountMatrix
    labels: np.ndarray
    n_unlabelled_cells: int
    n_labels_without_cell: int
    unlabelled_examples: List[str]
    orphan_label_examples: List[str]

    def summary(self) -> str:
        parts = [f"{self.matrix.shape[0]} labelled cells"]
        if self.n_unlabelled_cells:
            parts.append(f"{self.n_unlabelled_cells} cells without a label "
                         f"(e.g. {', '.join(self.unlabelled_examples)}) left out")
        if self.n_labels_without_cell:
            parts.append(f"{self.n_labels_without_cell} labels without a cell "
                         f"(e.g. {', '.join(self.orphan_label_examples)}) ignored")
        return "; ".join(parts)


def transposed_hint(source: str) -> str:
    """What a matrix whose cell ids are gene names should have been, worded for its kind.

    An AnnData is cells x genes (cells as obs), the tables genes x cells.

    >>> transposed_hint("pbmc.h5ad")
    'the AnnData looks transposed (expected cells as obs and genes as var, as scanpy writes them; transpose it with adata.T)'
    """  # noqa: E501
    if source == "<AnnData>" or source.lower().endswith(".h5ad"):
        return ("the AnnData looks transposed (expected cells as obs and genes as var, as "
                "scanpy writes them; transpose it with adata.T)")
    return "the matrix looks transposed (expected genes as rows, cells as columns)"


def join_labels(matrix: CountMatrix, labels: pd.Series, label_source: str = "<labels>",
                min_fraction: float = 0.0) -> LabelJoin:
    """Keep the cells that have a label, matched by id, in the matrix's order.

    Cells without a label and labels without a cell are counted and reported
    with a warning. No match at all is an error; if the label ids match the
    gene names instead, the matrix is transposed and the error says so.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> m = CountMatrix(np.eye(3), ["g1", "g2", "g3"], ["a", "b", "c"])
    >>> j = join_labels(m, pd.Series({"c": "T", "a": "B"}))
    >>> j.matrix.cells.tolist(), j.labels.tolist()
    (['a', 'c'], ['B', 'T'])
    """
    label_index = pd.Index([str(i) for i in labels.index])
    cells = pd.Index(matrix.cells)
    has_label = cells.isin(label_index)
    if not has_label.any():
        upper_ids = pd.Index([i.upper() for i in label_index])
        if upper_ids.isin(pd.Index(matrix.genes)).mean() > 0.5:
            raise InputError(
                f"the label ids of {label_source} match this matrix's gene names: "
                f"{transposed_hint(matrix.source)}", matrix.source)
        raise InputError(
            f"no cell id matches a label id in {label_source} (cells e.g. "
            f"{', '.join(map(str, matrix.cells[:3]))}; labels e.g. "
            f"{', '.join(map(str, label_index[:3]))})", matrix.source)
    fraction = float(has_label.mean())
    if fraction < min_fraction:
        raise InputError(
            f"only {int(has_label.sum())} of {len(cells)} cells have a label in {label_source}",
            matrix.source)
    keep = np.flatnonzero(has_label)
    values = pd.Series(np.asarray(labels.values, dtype=object), index=label_index)
    joined = matrix.select_cells(keep)
    orphans = label_index[~label_index.isin(cells)]
    result = LabelJoin(
        matrix=joined,
        labels=np.asarray(values.loc[joined.cells].to_numpy(), dtype=object),
        n_unlabelled_cells=int((~has_label).sum()),
        n_labels_without_cell=int(len(orphans)),
        unlabelled_examples=[str(c) for c in matrix.cells[~has_label][:3]],
        orphan_label_examples=[str(c) for c in orphans[:3]],
    )
    if result.n_unlabelled_cells or result.n_labels_without_cell:
        warnings.warn(f"{matrix.source} + {label_source}: {result.summary()}",
                      CountMatrixWarning, stacklevel=user_stacklevel())
    return result


def training_labels(counts: Any, labels: Any, format: Optional[str] = None) -> Any:
    """``labels`` as given, or the ``obs`` column it names when ``counts`` is an AnnData/.h5ad.

    A string names an ``obs`` column when ``counts`` is an ``AnnData`` or an
    ``.h5ad`` path and no file of that name exists; naming both is refused.
    """
    if not isinstance(labels, str):
        return labels
    is_file = os.path.isfile(labels)
    if _is_anndata(counts):
        if is_file and labels in counts.obs.columns:
            raise InputError(f"'{labels}' is both a label file and an obs column; pass "
                             "read_labels(path) or the Series adata.obs[column]", labels)
        return labels if is_file else obs_labels(counts, labels)
    if isinstance(counts, StoredCounts) and counts.format == "h5ad" and not is_file:
        raise InputError(f"labels '{labels}' is no file, and from_anndata() results have no "
                         "obs; pass the AnnData itself or adata.obs[column]", counts.source)
    if is_file or not isinstance(counts, (str, os.PathLike)) or not os.path.exists(counts):
        return labels
    kind = normalize_format(format) or detect_format(counts)
    return obs_labels(counts, labels) if kind == "h5ad" else labels


def _label_lookup(labels: Optional[Union[PathLike, pd.Series]]) -> Optional[pd.Series]:
    if labels is None:
        return None
    series = labels if isinstance(labels, pd.Series) else read_labels(labels)
    series = series.copy()
    series.index = pd.Index([str(i) for i in series.index])
    return series[~series.index.duplicated(keep="first")].astype(str)
