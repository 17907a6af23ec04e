"""DeepChem datasets of cells: a loader and a stratified splitter.

:class:`ScRNALoader`, a ``dc.data.DataLoader``, turns count files plus a label TSV into a
:class:`CellDataset`, a ``dc.data.NumpyDataset`` of cells x genes with
integer ``y`` (shape ``(n, 1)``), unit ``w`` and the cell ids as ``ids``,
that also remembers its gene names and its (sorted) class list so every
DeepChem splitter, metric and callback can be used on it.

:class:`SparseCellDataset` is the same over a CSR matrix (cells stay sparse
from reading to training: single-cell counts are ~93% zeros): it hands
:class:`~deepchem_actinn.model.ACTINNModel` sparse mini-batches
(``sparse_batches=True``), densifies one batch at a time everywhere else
(``iterbatches``, ``itersamples``) and implements ``select``, so every
DeepChem splitter splits it. Training on it gives the same model as the dense
path for the same seed (only float summation order differs). DeepChem's
generic code (``Splitter.k_fold_split``, ``DiskDataset.merge``) converts a
dataset's ``X`` with ``np.array``; a ``SparseCellDataset``'s ``X`` then gives
its dense matrix (refused in one line beyond :data:`DENSE_VALUES_LIMIT`).

With ``data_dir=``, :meth:`ScRNALoader.create_dataset` writes a
``dc.data.DiskDataset`` shard by shard instead; :func:`load_disk_dataset`
reopens one with its gene and class names.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from typing import Any, Iterable, Iterator, List, Optional, Sequence, Tuple, Union, cast

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from deepchem_actinn import model_file
from deepchem_actinn.errors import InputError, ModelFileError
from deepchem_actinn.io import (
    CellDatasetMixin,
    CountMatrix,
    CountMatrixWarning,
    Names,
    PathLike,
    as_count_matrix,
    join_labels,
    labels_source,
    read_labels,
    take_columns,
)
from deepchem_actinn.preprocessing import ScRNAFeaturizer
from deepchem_actinn.quiet import deepchem_messages_hidden

with deepchem_messages_hidden():  # DeepChem's import-time lines are not the user's
    import deepchem as dc

logger = logging.getLogger(__name__)

#: Cells per shard of the ``DiskDataset`` :meth:`ScRNALoader.create_dataset` writes (DeepChem's).
SHARD_SIZE = 8192
#: Gene and class names beside the shards of such a ``DiskDataset`` (JSON).
NAMES_FILE = "cell_names.json"
#: Most values (cells x genes) a ``SparseCellDataset``'s ``X`` turns into a dense array
#: through ``np.asarray`` (4 GiB of float32).
DENSE_VALUES_LIMIT = 1 << 30


class CellDataset(CellDatasetMixin, dc.data.NumpyDataset):
    """A ``NumpyDataset`` of cells that carries its gene names and class names.

    ``select`` (used by every DeepChem splitter) keeps both, so a split of a
    ``CellDataset`` is still a ``CellDataset``.

    Parameters
    ----------
    X: np.ndarray
        Cells x genes, float32.
    y: np.ndarray, optional
        Class indices into ``classes``, shape ``(n, 1)``; -1 for a cell whose
        type is not among ``classes`` (its weight is then 0).
    w, ids:
        As in ``NumpyDataset``; ``ids`` are the cell ids.
    genes: sequence of str
        Names of the columns of ``X``.
    classes: sequence of str
        Cell-type names; ``y`` indexes this list.

    Examples
    --------
    >>> import numpy as np
    >>> ds = CellDataset(np.ones((3, 2)), np.array([[0], [1], [0]]), ids=["a", "b", "c"],
    ...                  genes=["G1", "G2"], classes=["B cell", "T cell"])
    >>> part = ds.select([2, 1])
    >>> type(part).__name__, part.ids.tolist(), part.cell_types().tolist()
    ('CellDataset', ['c', 'b'], ['B cell', 'T cell'])
    """

    def __init__(self, X: np.ndarray, y: Optional[np.ndarray] = None,
                 w: Optional[np.ndarray] = None, ids: Optional[Names] = None,
                 genes: Optional[Names] = None,
                 classes: Optional[Names] = None) -> None:
        X = np.asarray(X, dtype=np.float32)
        if y is not None:
            y = np.asarray(y, dtype=np.int64).reshape(-1, 1)
            if w is None:
                w = (y >= 0).astype(np.float32)
        super().__init__(X, y, w, None if ids is None else np.asarray(ids, dtype=object),
                         n_tasks=1)
        self.genes = np.asarray(genes if genes is not None else
                                [f"GENE{i}" for i in range(X.shape[1])], dtype=object)
        self.classes = np.asarray(classes if classes is not None else [], dtype=object)
        if len(self.genes) != X.shape[1]:
            raise ValueError(f"{len(self.genes)} gene names for {X.shape[1]} columns")

    def select(self, indices: Union[Sequence[int], np.ndarray],
               select_dir: Optional[str] = None) -> CellDataset:
        indices = np.asarray(indices, dtype=np.int64)
        return CellDataset(self.X[indices], self.y[indices], self.w[indices], self.ids[indices],
                           genes=self.genes, classes=self.classes)

    def transform(self, transformer: Any, **args: Any) -> CellDataset:
        """A DeepChem transformer applied to ``X`` (and ``w``): a ``CellDataset`` again.

        ``NumpyDataset.transform`` would return a plain ``NumpyDataset``,
        without gene and class names. A transformer of ``y`` is refused: ``y``
        holds class indices.

        Examples
        --------
        >>> import numpy as np, deepchem as dc
        >>> ds = CellDataset(np.array([[1.0, 2.0], [3.0, 6.0]]), np.array([[0], [1]]),
        ...                  genes=["G1", "G2"], classes=["B", "T"])
        >>> out = ds.transform(dc.trans.NormalizationTransformer(transform_X=True, dataset=ds))
        >>> type(out).__name__, out.genes.tolist(), out.X.tolist()
        ('CellDataset', ['G1', 'G2'], [[-1.0, -1.0], [1.0, 1.0]])
        """
        _refuse_label_transformer(transformer, self)
        X, y, w, ids = transformer.transform_array(self.X, self.y, self.w, self.ids)
        labelled = np.asarray(self.y).dtype.kind in "iu"
        return CellDataset(X, y if labelled else None, w if labelled else None, ids,
                           genes=self.genes, classes=self.classes)

    @classmethod
    def merge(cls, datasets: Iterable[Any]) -> CellDataset:  # type: ignore[override]
        """Cells of several datasets with the same genes and classes, in order.

        ``dc.data.NumpyDataset.merge`` works too but returns a ``NumpyDataset``.
        """
        parts = list(datasets)
        genes, classes = _merge_names(parts)
        y, w = _merge_labels(parts)
        X = np.concatenate([p.X.toarray() if sp.issparse(p.X) else np.asarray(p.X)
                            for p in parts])
        return cls(X, y, w, np.concatenate([p.ids for p in parts]), genes=genes,
                   classes=classes)


def _refuse_label_transformer(transformer: Any, dataset: Any) -> None:
    if getattr(transformer, "transform_y", False):
        raise ValueError(f"{type(dataset).__name__}.y holds class indices: "
                         f"{type(transformer).__name__}(transform_y=True) would turn them into "
                         "numbers that name no class")


def _merge_names(datasets: Sequence[Any]) -> Tuple[np.ndarray, np.ndarray]:
    """The shared gene and class names of datasets to merge; one line saying why not."""
    if not datasets:
        raise ValueError("nothing to merge: no datasets given")
    if not all(hasattr(d, "genes") and hasattr(d, "classes") for d in datasets):
        raise TypeError("merge takes datasets of cells (CellDataset, SparseCellDataset): "
                        "others have no gene and class names")
    genes, classes = datasets[0].genes, datasets[0].classes
    for index, dataset in enumerate(datasets[1:], start=1):
        for what, mine, theirs in (("genes", genes, dataset.genes),
                                   ("classes", classes, dataset.classes)):
            if list(theirs) != list(mine):
                raise ValueError(f"cannot merge: dataset {index} has other {what} than "
                                 f"dataset 0 ({len(theirs)} vs {len(mine)}; select or align "
                                 "them first)")
    return np.asarray(genes, dtype=object), np.asarray(classes, dtype=object)


def _merge_labels(datasets: Sequence[Any]) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """``y`` and ``w`` of merged datasets; unlabelled cells among labelled ones get -1, weight 0."""
    labelled = [np.asarray(d.y).dtype.kind in "iu" for d in datasets]
    if not any(labelled):
        return None, None
    y = np.concatenate([np.asarray(d.y, np.int64).reshape(-1, 1) if known
                        else np.full((len(d), 1), -1, np.int64)
                        for d, known in zip(datasets, labelled, strict=True)])
    w = np.concatenate([np.asarray(d.w, np.float32).reshape(len(d), -1)[:, :1] if known
                        else np.zeros((len(d), 1), np.float32)
                        for d, known in zip(datasets, labelled, strict=True)])
    return y, w


def encode_labels(labels: Names, classes: Optional[Names] = None,
                  source: str = "<labels>") -> Tuple[np.ndarray, np.ndarray]:
    """Map names to indices into ``classes`` (default: the sorted unique names).

    Names outside a given ``classes`` become -1, with a warning.

    Examples
    --------
    >>> y, classes = encode_labels(["T", "B", "T"])
    >>> y.ravel().tolist(), classes.tolist()
    ([1, 0, 1], ['B', 'T'])
    """
    names = np.asarray([str(v) for v in labels], dtype=object)
    if classes is None:
        classes = np.asarray(sorted(set(names)), dtype=object)
    else:
        classes = np.asarray([str(c) for c in classes], dtype=object)
    lookup = {c: i for i, c in enumerate(classes)}
    y = np.asarray([lookup.get(n, -1) for n in names], dtype=np.int64).reshape(-1, 1)
    unknown = y.ravel() < 0
    if unknown.any():
        examples = sorted(set(names[unknown]))[:5]
        warnings.warn(f"{source}: {int(unknown.sum())} cells have types the model does not "
                      f"know ({', '.join(examples)}); they get y=-1 and weight 0",
                      CountMatrixWarning, stacklevel=2)
    return y, classes


Inputs = Union[PathLike, CountMatrix, Any]
LabelSource = Union[PathLike, pd.Series, Sequence[Union[PathLike, pd.Series]]]


class ScRNALoader(dc.data.DataLoader):
    """Load count files and label files into DeepChem datasets of cells.

    A ``dc.data.DataLoader``: ``create_dataset`` takes the inputs and returns
    a :class:`CellDataset` (in memory), a
    :class:`~deepchem_actinn.sparse.SparseCellDataset` (``sparse=True``) or,
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
        Return a :class:`~deepchem_actinn.sparse.SparseCellDataset` (CSR
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
                      FutureWarning, stacklevel=2)
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
        raw = handle.read(model_file.MAX_METADATA_BYTES + 1)
    try:
        names = model_file.parse_metadata(raw, folder, NAMES_FILE)
        if not isinstance(names, dict) or set(names) != {"genes", "classes"}:
            raise model_file.SchemaError("must be an object of genes and classes")
        genes = model_file.names(plain=False)(names["genes"])
        classes = model_file.names(plain=True)(names["classes"])
    except model_file.SchemaError as exc:
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


class StratifiedSplitter(dc.splits.Splitter):
    """Split so every cell type keeps its proportions in train, valid and test.

    DeepChem's ``RandomStratifiedSplitter`` stratifies integer labels as
    0-vs-rest and ``SingletaskStratifiedSplitter`` returns float indices;
    this one stratifies on every class of ``y[:, 0]`` and returns integer
    indices. Each type gets at least one training cell, and at least one
    test (then validation) cell when that split is asked for. A type with a
    single cell cannot be stratified and is refused.

    Examples
    --------
    >>> import numpy as np, deepchem as dc
    >>> y = np.array([0] * 80 + [1] * 20).reshape(-1, 1)
    >>> ds = dc.data.NumpyDataset(np.zeros((100, 1)), y)
    >>> train, valid, test = StratifiedSplitter().split(ds, 0.8, 0.1, 0.1, seed=0)
    >>> len(train), len(valid), len(test), int((y[test] == 1).sum())
    (80, 10, 10, 2)
    """

    def split(self, dataset: dc.data.Dataset, frac_train: float = 0.8, frac_valid: float = 0.1,
              frac_test: float = 0.1, seed: Optional[int] = None,
              log_every_n: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        fractions = np.array([frac_train, frac_valid, frac_test], dtype=np.float64)
        if (fractions < 0).any() or not np.isclose(fractions.sum(), 1.0):
            raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions.tolist()}")
        y = np.asarray(dataset.y).reshape(len(dataset), -1)[:, 0].astype(np.int64)
        rng = np.random.default_rng(seed)
        parts: List[List[np.ndarray]] = [[], [], []]
        wanted = fractions > 0
        for label in np.unique(y):
            members = rng.permutation(np.flatnonzero(y == label))
            counts = _allocate(len(members), fractions)
            if wanted.sum() > 1 and len(members) < 2:
                raise InputError(f"cell type '{_type_name(dataset, label)}' has a single cell, "
                                 "so it cannot be split by type; remove it or add cells")
            start = 0
            for part, count in zip(parts, counts, strict=True):
                part.append(members[start:start + count])
                start += count
        train, valid, test = (np.sort(np.concatenate(p)).astype(np.int64) if p
                              else np.zeros(0, np.int64) for p in parts)
        return train, valid, test

    def k_fold_split(self, dataset: dc.data.Dataset, k: int,  # type: ignore[override]
                     directories: Optional[List[str]] = None, seed: Optional[int] = None,
                     **kwargs: Any) -> List[Tuple[dc.data.Dataset, dc.data.Dataset]]:
        """``k`` pairs ``(train, cv)``: each type's cells dealt evenly over the folds.

        The folds are ``dataset.select`` of the cells, so a ``CellDataset`` or
        ``SparseCellDataset`` stays one (in memory, sparse stays sparse), and
        a ``DiskDataset`` writes to ``directories`` (``2 * k`` of them,
        train then cv of each fold) when given. Every type keeps at least one
        training cell in every fold; a type with a single cell is refused.

        Examples
        --------
        >>> import numpy as np
        >>> ds = CellDataset(np.zeros((9, 1)), np.array([0] * 6 + [1] * 3).reshape(-1, 1))
        >>> folds = StratifiedSplitter().k_fold_split(ds, 3, seed=0)
        >>> [(len(train), int((cv.y == 1).sum())) for train, cv in folds]
        [(6, 1), (6, 1), (6, 1)]
        """
        y = np.asarray(dataset.y).reshape(len(dataset), -1)[:, 0].astype(np.int64)
        if not 2 <= int(k) <= len(y):
            raise ValueError(f"k must be between 2 and the number of cells ({len(y)}), not {k}")
        if directories is not None and len(directories) != 2 * k:
            raise ValueError(f"k_fold_split needs 2 * k = {2 * k} directories, not "
                             f"{len(directories)}")
        rng = np.random.default_rng(seed)
        fold = np.empty(len(y), np.int64)
        dealt = 0
        for label in np.unique(y):
            members = rng.permutation(np.flatnonzero(y == label))
            if len(members) < 2:
                raise InputError(f"cell type '{_type_name(dataset, label)}' has a single cell, "
                                 "so it cannot be split by type; remove it or add cells")
            # Dealing on from where the last type stopped keeps fold sizes within one cell.
            fold[members] = (dealt + np.arange(len(members))) % k
            dealt += len(members)
        pairs = []
        for i in range(k):
            train_dir, cv_dir = directories[2 * i:2 * i + 2] if directories else (None, None)
            pairs.append((dataset.select(np.flatnonzero(fold != i), select_dir=train_dir),
                          dataset.select(np.flatnonzero(fold == i), select_dir=cv_dir)))
        return pairs


def _type_name(dataset: Any, label: int) -> str:
    classes = getattr(dataset, "classes", None)
    if classes is not None and 0 <= label < len(classes):
        return str(classes[label])
    return str(label)


def _allocate(n: int, fractions: np.ndarray) -> List[int]:
    """Largest-remainder split of ``n`` items, then at least one train and one test item."""
    raw = fractions * n
    counts = np.floor(raw).astype(int)
    for index in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[index] += 1
    # Guarantees, in priority order: train, test, valid (each only if asked for).
    for target in (0, 2, 1):
        if fractions[target] > 0 and counts[target] == 0 and n > 0:
            donor = int(np.argmax(np.where(np.arange(3) == target, -1, counts)))
            if counts[donor] > 1 or (donor != 0 and counts[donor] > 0):
                counts[donor] -= 1
                counts[target] += 1
    return counts.tolist()


Batch = Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


class _CellMatrix(sp.csr_matrix):
    """A CSR matrix that numpy turns into its dense array (``np.asarray``), within
    :data:`DENSE_VALUES_LIMIT` values.

    DeepChem's generic code converts a dataset's ``X`` with ``np.array``
    (``Splitter.k_fold_split`` through ``DiskDataset.from_numpy``,
    ``DiskDataset.merge``, ``predict_on_batch``). A plain scipy matrix
    becomes a 0-d object array there, which DeepChem then pickles to disk and
    fails on; the dense cells are what it means.
    """

    def __array__(self, dtype: Any = None, copy: Optional[bool] = None) -> np.ndarray:
        if copy is False:
            raise ValueError("a sparse matrix cannot become a dense array without a copy")
        n_cells, n_genes = self.shape
        if n_cells * n_genes > DENSE_VALUES_LIMIT:
            raise ValueError(f"densifying {n_cells:,} cells x {n_genes:,} genes would take "
                             f"{4 * n_cells * n_genes / 2**30:.1f} GiB; keep them sparse "
                             "(StratifiedSplitter().k_fold_split, select, iterbatches) or "
                             "densify a part (select(...).to_dense())")
        dense = self.toarray()
        return dense if dtype is None else dense.astype(dtype, copy=False)


class _TorchCells(torch.utils.data.IterableDataset):
    """What ``NumpyDataset.make_pytorch_dataset`` yields, rows densified as they are drawn.

    Same order as DeepChem's (per-epoch ``RandomState(epoch)``, workers take
    contiguous parts), so a dense copy of the cells yields the same items.
    """

    def __init__(self, dataset: SparseCellDataset, epochs: int, deterministic: bool,
                 batch_size: Optional[int]) -> None:
        self.dataset, self.epochs = dataset, int(epochs)
        self.deterministic, self.batch_size = deterministic, batch_size

    def __iter__(self) -> Iterator[Batch]:
        data = self.dataset
        n = len(data)
        worker = torch.utils.data.get_worker_info()
        first, last = (0, n) if worker is None else (worker.id * n // worker.num_workers,
                                                     (worker.id + 1) * n // worker.num_workers)
        for epoch in range(self.epochs):
            order = (np.arange(first, last) if self.deterministic
                     else np.random.RandomState(epoch).permutation(n)[first:last])
            if self.batch_size is None:
                for i in order:
                    yield data.X[i].toarray().ravel(), data.y[i], data.w[i], data.ids[i]
            else:
                for start in range(0, len(order), self.batch_size):
                    index = order[start:start + self.batch_size]
                    yield data.X[index].toarray(), data.y[index], data.w[index], data.ids[index]



class SparseCellDataset(CellDatasetMixin, dc.data.Dataset):
    """A DeepChem ``Dataset`` of cells whose ``X`` is a CSR matrix.

    Parameters
    ----------
    X: scipy sparse matrix or array
        Cells x genes (converted to float32 CSR).
    y: np.ndarray, optional
        Class indices into ``classes``, shape ``(n, 1)``; -1 for an unknown
        type (weight 0).
    w: np.ndarray, optional
        Sample weights ``(n, 1)``; default 1 for labelled cells.
    ids: sequence of str, optional
        Cell ids.
    genes, classes: sequence of str, optional
        Column names and cell-type names, as in :class:`~deepchem_actinn.data.CellDataset`.
    sparse_batches: bool
        Let :class:`~deepchem_actinn.model.ACTINNModel` feed sparse batches
        to a sparse first layer (faster); ``False`` densifies each batch.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> X = sp.csr_matrix(np.array([[0, 1.0], [2.0, 0], [0, 0]]))
    >>> ds = SparseCellDataset(X, np.array([[0], [1], [0]]), ids=["a", "b", "c"],
    ...                        genes=["G1", "G2"], classes=["B", "T"])
    >>> part = ds.select([1, 0])
    >>> type(part).__name__, part.ids.tolist(), part.X.toarray().tolist()
    ('SparseCellDataset', ['b', 'a'], [[2.0, 0.0], [0.0, 1.0]])
    >>> next(ds.iterbatches(batch_size=2, deterministic=True))[0].tolist()
    [[0.0, 1.0], [2.0, 0.0]]
    """

    def __init__(self, X: Any, y: Optional[np.ndarray] = None, w: Optional[np.ndarray] = None,
                 ids: Optional[Names] = None, genes: Optional[Names] = None,
                 classes: Optional[Names] = None, sparse_batches: bool = True) -> None:
        self._X = _CellMatrix(X, dtype=np.float32)
        self._X.sort_indices()
        n = self._X.shape[0]
        if y is None:
            # NumpyDataset's convention for unlabelled data.
            self._y = np.zeros((n, 1), np.float32)
            self._w = np.zeros((n, 1), np.float32) if w is None else np.asarray(w, np.float32)
        else:
            self._y = np.asarray(y, dtype=np.int64).reshape(-1, 1)
            self._w = ((self._y >= 0).astype(np.float32) if w is None
                       else np.asarray(w, dtype=np.float32).reshape(n, -1))
        self._ids = (np.arange(n).astype(str).astype(object) if ids is None
                     else np.asarray(ids, dtype=object))
        if len(self._y) != n or len(self._w) != n or len(self._ids) != n:
            raise ValueError(f"X has {n} rows but y, w, ids have {len(self._y)}, "
                             f"{len(self._w)}, {len(self._ids)}")
        self.genes = np.asarray(genes if genes is not None else
                                [f"GENE{i}" for i in range(self._X.shape[1])], dtype=object)
        self.classes = np.asarray(classes if classes is not None else [], dtype=object)
        if len(self.genes) != self._X.shape[1]:
            raise ValueError(f"{len(self.genes)} gene names for {self._X.shape[1]} columns")
        self.sparse_batches = bool(sparse_batches)

    # -- the Dataset interface ------------------------------------------------------

    def __len__(self) -> int:
        return int(self._X.shape[0])

    def get_shape(self) -> Tuple[Tuple[int, ...], Tuple[int, ...], Tuple[int, ...],
                                 Tuple[int, ...]]:
        return (tuple(self._X.shape), self._y.shape, self._w.shape, self._ids.shape)

    def get_task_names(self) -> np.ndarray:
        return np.arange(self._y.shape[1])

    @property
    def X(self) -> sp.csr_matrix:  # type: ignore[override]
        """The CSR matrix itself (not a dense copy; ``np.asarray(X)`` gives one)."""
        return self._X

    @property
    def y(self) -> np.ndarray:
        return self._y

    @property
    def w(self) -> np.ndarray:
        return self._w

    @property
    def ids(self) -> np.ndarray:
        return self._ids

    def iterbatches(self, batch_size: Optional[int] = None, epochs: int = 1,
                    deterministic: bool = False, pad_batches: bool = False) -> Iterator[Batch]:
        """Mini-batches ``(X, y, w, ids)`` with ``X`` densified one batch at a time."""
        n = len(self)
        size = n if batch_size is None else int(batch_size)
        for _ in range(epochs):
            order = np.arange(n) if deterministic else np.random.permutation(n)
            for start in range(0, n, max(size, 1)):
                index = order[start:start + size]
                batch = (self._X[index].toarray(), self._y[index], self._w[index],
                         self._ids[index])
                if pad_batches:
                    batch = dc.data.pad_batch(size, *batch)
                yield batch

    def itersamples(self) -> Iterator[Batch]:
        """One cell at a time, ``X`` row dense."""
        for i in range(len(self)):
            yield (self._X[i].toarray().ravel(), self._y[i], self._w[i], self._ids[i])

    def transform(self, transformer: Any, **args: Any) -> SparseCellDataset:
        """Apply a DeepChem transformer (on a dense copy: most transformers need one).

        Genes and classes are kept; a transformer of ``y`` (class indices) is refused.
        """
        _refuse_label_transformer(transformer, self)
        X, y, w, ids = transformer.transform_array(self._X.toarray(), self._y, self._w,
                                                   self._ids)
        labelled = self._y.dtype.kind in "iu"
        return SparseCellDataset(sp.csr_matrix(X), y if labelled else None, w, ids, self.genes,
                                 self.classes, self.sparse_batches)

    def select(self, indices: Union[Sequence[int], np.ndarray],
               select_dir: Optional[str] = None) -> SparseCellDataset:
        """The given cells, in the given order (what DeepChem splitters call)."""
        indices = np.asarray(indices, dtype=np.int64)
        return SparseCellDataset(self._X[indices], self._y[indices], self._w[indices],
                                 self._ids[indices], genes=self.genes, classes=self.classes,
                                 sparse_batches=self.sparse_batches)

    def get_statistics(self, X_stats: bool = True, y_stats: bool = True
                       ) -> Tuple[np.ndarray, ...]:
        """Column means and standard deviations, computed without densifying."""
        out = []
        if X_stats:
            mean = np.asarray(self._X.mean(axis=0)).ravel()
            square = np.asarray(self._X.multiply(self._X).mean(axis=0)).ravel()
            out += [mean, np.sqrt(np.maximum(square - mean ** 2, 0.0))]
        if y_stats:
            out += [self._y.mean(axis=0), self._y.std(axis=0)]
        return tuple(out)

    def to_dataframe(self) -> pd.DataFrame:
        """Cells as rows: one sparse column per gene, then ``y``, ``w`` and ``ids``
        (``NumpyDataset.to_dataframe``'s columns after ``X``)."""
        X = pd.DataFrame.sparse.from_spmatrix(sp.csr_matrix(self._X),
                                              columns=[str(g) for g in self.genes])
        parts = [X]
        for name, values in (("y", self._y), ("w", self._w)):
            columns = [name] if values.shape[1] == 1 else [f"{name}{i + 1}"
                                                           for i in range(values.shape[1])]
            parts.append(pd.DataFrame(values, columns=columns))
        parts.append(pd.DataFrame({"ids": self._ids}))
        return pd.concat(parts, axis=1)

    def make_pytorch_dataset(self, epochs: int = 1, deterministic: bool = False,
                             batch_size: Optional[int] = None) -> torch.utils.data.IterableDataset:
        """A ``torch.utils.data.IterableDataset`` of ``(X, y, w, ids)``, as
        ``NumpyDataset``'s: single cells (``X`` a dense row) or, with
        ``batch_size``, batches (``X`` dense, one batch at a time)."""
        return _TorchCells(self, epochs, deterministic, batch_size)

    @classmethod
    def merge(cls, datasets: Iterable[Any]) -> SparseCellDataset:
        """Cells of several datasets (sparse or dense) with the same genes and classes, in
        order, as one ``SparseCellDataset``.

        Examples
        --------
        >>> import numpy as np
        >>> a = SparseCellDataset(np.eye(2), np.array([[0], [1]]), ids=["a", "b"],
        ...                       genes=["G1", "G2"], classes=["B", "T"])
        >>> both = SparseCellDataset.merge([a, a.select([1])])
        >>> both.ids.tolist(), both.X.toarray().tolist()
        (['a', 'b', 'b'], [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
        """
        parts = list(datasets)
        genes, classes = _merge_names(parts)
        y, w = _merge_labels(parts)
        X = sp.vstack([sp.csr_matrix(p.X, dtype=np.float32) for p in parts], format="csr")
        return cls(X, y, w, np.concatenate([p.ids for p in parts]), genes=genes,
                   classes=classes, sparse_batches=getattr(parts[0], "sparse_batches", True))

    # -- the CellDataset extras ---------------------------------------------------

    def to_dense(self) -> Any:
        """A dense :class:`~deepchem_actinn.data.CellDataset` copy (small data only)."""
        labelled = self._y.dtype.kind in "iu"
        return CellDataset(self._X.toarray(), self._y if labelled else None,
                           self._w if labelled else None, self._ids, genes=self.genes,
                           classes=self.classes)

    @classmethod
    def from_dataset(cls, dataset: Any, sparse_batches: bool = True) -> SparseCellDataset:
        """Wrap a ``CellDataset`` (or any dataset with ``X``/``y``/``w``/``ids``)."""
        labelled = np.asarray(dataset.y).dtype.kind in "iu"
        return cls(sp.csr_matrix(dataset.X), dataset.y if labelled else None,
                   dataset.w if labelled else None, dataset.ids,
                   genes=getattr(dataset, "genes", None),
                   classes=getattr(dataset, "classes", None), sparse_batches=sparse_batches)


# -- sparse first layer -------------------------------------------------------------


def featurize_sparse(featurizer: Any, dataset: Any) -> SparseCellDataset:
    """Apply a fitted featurizer to raw counts, keeping them sparse.

    ``dataset`` is a :class:`SparseCellDataset` or a ``CellDataset`` of raw
    counts; the result holds the normalised model genes as CSR.
    """
    X = featurizer.transform(sp.csr_matrix(dataset.X), dataset.genes, sparse_output=True)
    labelled = np.asarray(dataset.y).dtype.kind in "iu" and len(dataset.y)
    return SparseCellDataset(X, dataset.y if labelled else None,
                             dataset.w if labelled else None, dataset.ids,
                             genes=featurizer.genes_, classes=dataset.classes,
                             sparse_batches=getattr(dataset, "sparse_batches", True))
