"""The loader: count files and label files into DeepChem datasets of cells.

:class:`ScRNALoader`, a ``dc.data.DataLoader``, turns count files plus a
label TSV into a :class:`~deepchem_actinn.data.cells.CellDataset` or a
:class:`~deepchem_actinn.data.cells.SparseCellDataset`. With ``data_dir=``,
:meth:`ScRNALoader.create_dataset` writes a ``dc.data.DiskDataset`` shard by
shard instead; :func:`load_disk_dataset` reopens one with its gene and class
names.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any, Iterator, List, Optional, Sequence, Tuple, Union, cast

import numpy as np
import pandas as pd
import scipy.sparse as sp

from deepchem_actinn.data.cells import CellDataset, SparseCellDataset, encode_labels
from deepchem_actinn.errors import InputError, ModelFileError, user_stacklevel
from deepchem_actinn.io import (
    CountMatrix,
    Names,
    PathLike,
    as_count_matrix,
    join_labels,
    labels_source,
    read_labels,
    take_columns,
)
from deepchem_actinn.model import file_format
from deepchem_actinn.preprocessing import ScRNAFeaturizer
from deepchem_actinn.quiet import deepchem_messages_hidden

with deepchem_messages_hidden():  # DeepChem's import-time lines are not the user's
    import deepchem as dc


#: Cells per shard of the ``DiskDataset`` :meth:`ScRNALoader.create_dataset` writes (DeepChem's).
SHARD_SIZE = 8192
#: Gene and class names beside the shards of such a ``DiskDataset`` (JSON).
NAMES_FILE = "cell_names.json"
Inputs = Union[PathLike, CountMatrix, Any]
LabelSource = Union[PathLike, pd.Series, Sequence[Union[PathLike, pd.Series]]]


class ScRNALoader(dc.data.DataLoader):
    """Load count files and label files into DeepChem datasets of cells.

    A ``dc.data.DataLoader``: ``create_dataset`` takes the inputs and returns
    a :class:`CellDataset` (in memory), a
    :class:`~deepchem_actinn.data.cells.SparseCellDataset` (``sparse=True``) or,
    given ``data_dir``, a ``dc.data.DiskDataset`` written shard by shard. The
    one task is ``"cell_type"``: ``y`` holds indices into the class list.

    Without a featurizer ``X`` holds raw counts, cells x genes: fit a
    :class:`~deepchem_actinn.preprocessing.ScRNAFeaturizer` on the training
    part only, after splitting.

    Parameters
    ----------
    classes: sequence of str, optional
        Fix the class list (e.g. a trained model's); default the sorted
        cell types found in the labels.
    key: str, optional
        HDF key of the count matrix.
    sparse: bool
        Return a :class:`~deepchem_actinn.data.cells.SparseCellDataset` (CSR
        ``X``, never densified) instead of a ``CellDataset``.
    featurizer: ScRNAFeaturizer, optional
        ``X`` becomes the featurised model genes (``featurizer.genes_``). A
        featurizer that is not fitted yet is fitted on the first cells loaded
        (the labelled ones when labels are given): use this for the reference
        you will train on, then load query files with the same, now fitted,
        loader. A fitted featurizer is only applied.
    labels: path, Series or list of them, optional
        Default label source of :meth:`create_dataset`.
    log_every_n: int
        Kept for DeepChem's ``DataLoader`` signature.

    Examples
    --------
    >>> import os, tempfile, pandas as pd
    >>> folder = tempfile.mkdtemp()
    >>> pd.DataFrame([[5, 0, 1], [0, 3, 2]], index=["Cd19", "Cd3e"],
    ...              columns=["c1", "c2", "c3"]).to_hdf(os.path.join(folder, "x.h5"), key="dge")
    >>> _ = open(os.path.join(folder, "y.tsv"), "w").write("c3\\tT\\nc1\\tB\\nc2\\tT\\n")
    >>> ds = ScRNALoader().create_dataset(os.path.join(folder, "x.h5"),
    ...                                   os.path.join(folder, "y.tsv"))
    >>> ds.X.shape, ds.ids.tolist(), ds.y.ravel().tolist(), ds.classes.tolist()
    ((3, 2), ['c1', 'c2', 'c3'], [0, 1, 1], ['B', 'T'])
    >>> disk = ScRNALoader().create_dataset([os.path.join(folder, "x.h5")],
    ...                                     os.path.join(folder, "y.tsv"),
    ...                                     data_dir=os.path.join(folder, "disk"), shard_size=2)
    >>> type(disk).__name__, disk.get_number_shards(), disk.genes.tolist()
    ('DiskDataset', 2, ['CD19', 'CD3E'])
    >>> load_disk_dataset(os.path.join(folder, "disk")).classes.tolist()
    ['B', 'T']
    """

    def __init__(self, classes: Optional[Names] = None, key: Optional[str] = None,
                 sparse: bool = False, featurizer: Optional[ScRNAFeaturizer] = None,
                 labels: Optional[LabelSource] = None, log_every_n: int = 1000) -> None:
        # DataLoader only stores the featurizer (it type-checks UserDefinedFeaturizer alone),
        # so ScRNAFeaturizer, which is not a dc.feat.Featurizer, goes in as it is.
        super().__init__(tasks=["cell_type"], featurizer=featurizer, log_every_n=log_every_n)
        self.classes = None if classes is None else list(classes)
        self.key = key
        self.sparse = bool(sparse)
        self.labels = labels

    def create_dataset(self, inputs: Union[Inputs, Sequence[Inputs]],  # type: ignore[override]
                       labels: Optional[LabelSource] = None, data_dir: Optional[str] = None,
                       shard_size: Optional[int] = None) -> Any:
        """Read cells (and their labels) into a dataset.

        Parameters
        ----------
        inputs: path, CountMatrix, AnnData, DataFrame, or a list of them
            Count matrices; several must have the same genes (their cells are
            concatenated, in order, and their cell ids must be distinct).
        labels: path, Series or list of them, optional
            Cell id -> cell type; default the loader's ``labels``. Only
            labelled cells are kept. ``None`` everywhere: unlabelled cells
            (``y`` zeros, ``w`` zeros, as ``NumpyDataset``).
        data_dir: str, optional
            Write a ``dc.data.DiskDataset`` there, ``shard_size`` cells per shard
            (default :data:`SHARD_SIZE`), densifying one shard at a time. Its
            ``genes`` and ``classes`` are attributes of the returned object and
            saved in :data:`NAMES_FILE` (:func:`load_disk_dataset` reads them back).
        shard_size: int, optional
            Cells per shard of a ``DiskDataset``.
        """
        matrix = self._read(inputs)
        source = self.labels if labels is None else labels
        y: Optional[np.ndarray] = None
        classes: Optional[Names] = self.classes
        if source is not None:
            label_series, label_source = _label_series(source)
            joined = join_labels(matrix, label_series, label_source=label_source)
            y, classes = encode_labels(joined.labels, self.classes, source=label_source)
            matrix = joined.matrix
        X, genes = self._features(matrix)
        if data_dir is not None:
            size = SHARD_SIZE if shard_size is None else int(shard_size)
            if size < 1:
                raise ValueError(f"shard_size must be at least 1, not {shard_size}")
            return _write_disk_dataset(X, y, matrix.cells, genes, classes, data_dir, size)
        if self.sparse:
            return SparseCellDataset(X, y, ids=matrix.cells, genes=genes, classes=classes)
        return CellDataset(_dense(X), y, ids=matrix.cells, genes=genes, classes=classes)

    def featurize(self, inputs: Any, data_dir: Optional[str] = None,
                  shard_size: Optional[int] = SHARD_SIZE) -> Any:
        """DeepChem's deprecated alias of :meth:`create_dataset` (which passes ``data_dir``
        positionally, where this loader takes ``labels``)."""
        warnings.warn("featurize() is deprecated and has been renamed to create_dataset()",
                      FutureWarning, stacklevel=user_stacklevel())
        return self.create_dataset(inputs, data_dir=data_dir, shard_size=shard_size)

    def _read(self, inputs: Union[Inputs, Sequence[Inputs]]) -> CountMatrix:
        items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if not items:
            raise ValueError("create_dataset needs at least one count matrix")
        return _concatenate([item if isinstance(item, CountMatrix)
                             else as_count_matrix(item, key=self.key) for item in items])

    def _features(self, matrix: CountMatrix) -> Tuple[Any, np.ndarray]:
        """``X`` and its gene names: raw counts, or the featurizer's model genes."""
        featurizer = self.featurizer
        if featurizer is None:
            return matrix.X, matrix.genes
        if featurizer.genes_ is None:
            featurizer.fit(matrix)  # the reference's cells; later inputs are only transformed
        return featurizer.transform(matrix, sparse_output=True), featurizer.genes_


def _label_series(labels: LabelSource) -> Tuple[pd.Series, str]:
    """One Series of cell id -> type from a path, a Series or a list of them."""
    if isinstance(labels, (list, tuple)):
        parts = [_label_series(item) for item in labels]
        return (pd.concat([series for series, _ in parts]),
                ", ".join(source for _, source in parts))
    if isinstance(labels, pd.Series):
        return labels, labels_source(labels) or "<labels>"
    path = cast(PathLike, labels)
    return read_labels(path), os.fspath(path)


def _concatenate(matrices: List[CountMatrix]) -> CountMatrix:
    """The cells of matrices with the same genes, in order (columns in the first one's order)."""
    first = matrices[0]
    if len(matrices) == 1:
        return first
    column = {g: i for i, g in enumerate(first.genes)}
    blocks, seen = [first.X], set(first.cells)
    for matrix in matrices[1:]:
        if len(matrix.genes) != len(first.genes) or set(matrix.genes) != set(column):
            raise InputError(f"its {len(matrix.genes):,} genes are not the {len(first.genes):,} "
                             f"of {first.source}; files loaded together must have the same genes",
                             matrix.source)
        repeated = [c for c in matrix.cells if c in seen]
        if repeated:
            raise InputError(f"{len(repeated):,} of its cell ids are also in an earlier file "
                             f"(e.g. {repeated[0]}); cell ids must be distinct across files",
                             matrix.source)
        seen.update(matrix.cells)
        order = np.argsort([column[g] for g in matrix.genes])  # its columns, first's order
        blocks.append(take_columns(matrix.X, order))
    X = (sp.vstack([sp.csr_matrix(b) for b in blocks], format="csr")
         if any(sp.issparse(b) for b in blocks) else np.concatenate(blocks))
    return CountMatrix(X, first.genes, np.concatenate([m.cells for m in matrices]),
                       source=" + ".join(m.source for m in matrices))


def _dense(X: Any) -> np.ndarray:
    return np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float32)


def _write_disk_dataset(X: Any, y: Optional[np.ndarray], cells: Names, genes: Names,
                        classes: Optional[Names], data_dir: str,
                        shard_size: int) -> dc.data.DiskDataset:
    """A ``DiskDataset`` of ``X`` written one dense shard at a time, names in NAMES_FILE."""
    n = X.shape[0]
    # Fixed-width strings, not objects: numpy stores those without pickle.
    ids = np.asarray([str(c) for c in cells], dtype=str)
    if y is None:  # NumpyDataset's convention for unlabelled cells
        y, w = np.zeros((n, 1), np.float32), np.zeros((n, 1), np.float32)
    else:
        w = (y >= 0).astype(np.float32)

    def shards() -> Iterator[Tuple[np.ndarray, ...]]:
        for start in range(0, n, shard_size):
            part = slice(start, start + shard_size)
            yield _dense(X[part]), y[part], w[part], ids[part]

    dataset = dc.data.DiskDataset.create_dataset(shards(), data_dir=data_dir,
                                                 tasks=["cell_type"])
    names = {"genes": [str(g) for g in genes],
             "classes": [str(c) for c in (classes if classes is not None else [])]}
    with open(os.path.join(data_dir, NAMES_FILE), "w", encoding="utf-8") as handle:
        json.dump(names, handle)
    dataset.genes = np.asarray(names["genes"], dtype=object)
    dataset.classes = np.asarray(names["classes"], dtype=object)
    return dataset


def load_disk_dataset(data_dir: PathLike) -> dc.data.DiskDataset:
    """Reopen a ``DiskDataset`` written by ``ScRNALoader.create_dataset(..., data_dir=)``.

    Its ``genes`` and ``classes`` are set from :data:`NAMES_FILE`. The folder
    is checked first, so nothing in it is unpickled: DeepChem loads shards
    with ``allow_pickle=True`` and falls back to a ``metadata.joblib``, so a
    folder holding such a file or an array of Python objects is refused.
    """
    folder = os.fspath(data_dir)
    names_path = os.path.join(folder, NAMES_FILE)
    if not os.path.isfile(names_path):
        raise InputError(f"not a dataset written by ScRNALoader (no {NAMES_FILE})", folder)
    if os.path.exists(os.path.join(folder, "metadata.joblib")):
        raise InputError("holds metadata.joblib, a pickle: refused, since loading it could "
                         "run code", folder)
    with open(names_path, "rb") as handle:
        raw = handle.read(file_format.MAX_METADATA_BYTES + 1)
    try:
        names = file_format.parse_metadata(raw, folder, NAMES_FILE)
        if not isinstance(names, dict) or set(names) != {"genes", "classes"}:
            raise file_format.SchemaError("must be an object of genes and classes")
        genes = file_format.names(plain=False)(names["genes"])
        classes = file_format.names(plain=True)(names["classes"])
    except file_format.SchemaError as exc:
        raise InputError(f"{NAMES_FILE}: {exc}", folder) from None
    except ModelFileError as exc:
        raise InputError(exc.problem, folder) from None
    dataset = dc.data.DiskDataset(folder)
    for column in ("ids", "X", "y", "w"):
        for name in dataset.metadata_df[column]:
            if name is not None:
                _check_plain_array(folder, str(name))
    width = dataset.get_shape()[0]
    if len(width) != 2 or width[1] != len(genes):
        raise InputError(f"X has shape {width} but {NAMES_FILE} names {len(genes)} genes",
                         folder)
    dataset.genes = np.asarray(genes, dtype=object)
    dataset.classes = np.asarray(classes, dtype=object)
    return dataset


def _check_plain_array(folder: str, name: str) -> None:
    """Refuse a shard that is not a ``.npy`` file of plain numbers or strings in ``folder``."""
    if os.path.basename(name) != name or not name.endswith(".npy"):
        raise InputError(f"its metadata names {name!r}, not a .npy file of the folder", folder)
    try:
        with open(os.path.join(folder, name), "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            dtype = read(handle)[2]
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {name} as a numpy array ({exc})", folder) from None
    if dtype.hasobject:
        raise InputError(f"{name} holds Python objects: refused, since loading it could run "
                         "code", folder)
