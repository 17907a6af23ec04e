"""The one training pipeline: in memory, out of core and distributed all go through it.

Every path takes the same steps with the same meaning of every option:

1. join cells to their labels and check them (:func:`check_classes`: no
   ``Unassigned`` type, at least two types; cells with zero counts dropped
   with a warning, all-zero refused);
2. fit the preset's preprocessing (:func:`split_settings` makes the unfitted
   featurizer: the preset's gene selection, overrides, ``min_gene_overlap``),
   restricted to a query's genes or fitted jointly with it;
3. hold out a stratified validation split (in memory only);
4. build the model (:func:`build_model`) and fit it, with callbacks,
   per-epoch checkpoints and a progress bar of epochs (``progress``;
   :mod:`deepchem_actinn.progress`, as are the out-of-core passes' bars).

:func:`prepare` does 1-4 for cells held in memory, :func:`prepare_out_of_core`
for a 10x HDF5 / ``.h5ad`` file streamed into shards (its statistics pass is
:func:`~deepchem_actinn.preprocessing.fit_featurizer_streaming`, its shard pass
:func:`~deepchem_actinn.data.shards.write_shards`; :func:`fit_on_shards` trains from them);
:func:`deepchem_actinn.distributed.train_distributed` uses the same checks,
featurizer and model construction on each rank. The CLI's ``train`` only
maps its options to these functions.

>>> # model = train_reference("train.h5", "train_labels.tsv", preset="transfer")
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import torch

from deepchem_actinn.data import (
    SHARD_CELLS,
    CellDataset,
    ScRNALoader,
    ShardedCellDataset,
    SparseCellDataset,
    StratifiedSplitter,
    featurize_sparse,
    write_shards,
)
from deepchem_actinn.errors import InputError, user_stacklevel
from deepchem_actinn.io import (
    CHUNK_CELLS,
    ChunkedCounts,
    Names,
    PathLike,
    as_count_matrix,
    gene_list,
    labels_source,
    training_labels,
)
from deepchem_actinn.model.actinn_model import ACTINNModel, refuse_unknown_keywords
from deepchem_actinn.model.network import to_torch_csr
from deepchem_actinn.model.presets import (
    DEFAULT_PRESET,
    GENE_SELECTION_DEFAULTS,
    featurizer_for,
)
from deepchem_actinn.preprocessing import (
    PreprocessingWarning,
    ScRNAFeaturizer,
    fit_featurizer_streaming,
)
from deepchem_actinn.progress import Progress, TrainingProgress
from deepchem_actinn.validation import check_training_classes

Callbacks = Union[Callable, List[Callable]]


# -- the steps every path shares --------------------------------------------------------


def split_settings(preset: str, min_gene_overlap: float, settings: Dict[str, Any]
                   ) -> Tuple[ScRNAFeaturizer, Dict[str, Any]]:
    """The preset's unfitted featurizer and the model settings left in ``settings``.

    Gene-selection overrides (``low_percentile``, ``high_percentile``,
    ``exclude_genes``) go to the featurizer, everything else to
    :class:`~deepchem_actinn.model.ACTINNModel` (which refuses unknown names).

    >>> featurizer, rest = split_settings("actinn", 0.5, {"epochs": 3, "low_percentile": 5.0})
    >>> featurizer.low_percentile, featurizer.min_gene_overlap, rest
    (5.0, 0.5, {'epochs': 3})
    """
    rest = dict(settings)
    selection = {k: rest.pop(k) for k in list(rest) if k in GENE_SELECTION_DEFAULTS}
    return featurizer_for(preset, min_gene_overlap=min_gene_overlap, **selection), rest


def check_settings(settings: Dict[str, Any], function: str) -> None:
    """Refuse, before any data is read, a setting no model takes (a typo'd ``layr=``)."""
    refuse_unknown_keywords(settings, function)


def check_classes(classes: Names, labels: Optional[str], source: str) -> None:
    """Refuse training labels with a type named ``Unassigned`` or fewer than two types.

    The error names the labels file (``labels``) when there is one, else ``source``.
    """
    check_training_classes(classes, labels)
    if len(classes) < 2:
        found = f" ('{classes[0]}')" if len(classes) else ""
        raise InputError(f"the training labels hold a single cell type{found}; ACTINN needs "
                         "at least two", labels or source)


def warn_dropped(n_empty: int, source: str) -> None:
    """The warning for labelled training cells left out for having zero counts."""
    if n_empty:
        warnings.warn(f"{source}: dropped {n_empty} training cells with zero counts",
                      PreprocessingWarning, stacklevel=user_stacklevel())


def build_model(featurizer: ScRNAFeaturizer, classes: Names, *, preset: str,
                seed: int = 0, device: Optional[Union[str, torch.device]] = None,
                **settings: Any) -> ACTINNModel:
    """The model of a fitted featurizer and the training classes, with the preset's settings."""
    assert featurizer.genes_ is not None
    return ACTINNModel(len(featurizer.genes_), len(classes), preset=preset, classes=classes,
                       featurizer=featurizer, seed=seed, device=device, **settings)


def _labels_source(labels: Any) -> Optional[str]:
    return labels_source(labels) if isinstance(labels, pd.Series) else os.fspath(labels)


# -- in memory --------------------------------------------------------------------------


def fit_featurizer(dataset: Any, source: str, query: Any = None, *, joint: bool = False,
                   min_gene_overlap: float = 0.1, preset: str = "actinn",
                   **gene_selection: Any) -> ScRNAFeaturizer:
    """Fit a preset's preprocessing on a raw-count training dataset.

    ``query`` (path, CountMatrix or gene list) restricts the genes to those it
    shares; with ``joint=True`` (a matrix query) the filters are fitted on
    training and query cells together, the paper's mode. ``gene_selection``
    overrides the preset's ``low_percentile``, ``high_percentile`` and
    ``exclude_genes``.
    """
    featurizer, rest = split_settings(preset, min_gene_overlap, gene_selection)
    if rest:  # only gene selection belongs here
        raise TypeError(f"fit_featurizer() got unexpected keyword arguments "
                        f"{', '.join(map(repr, sorted(rest)))}")
    return _fit(featurizer, dataset, source, query, joint)


def _fit(featurizer: ScRNAFeaturizer, dataset: Any, source: str, query: Any,
         joint: bool) -> ScRNAFeaturizer:
    """Fit ``featurizer`` on a raw-count dataset: restricted to ``query``'s genes, or jointly."""
    train_matrix = dataset.to_count_matrix(source)
    if joint:
        if query is None:
            raise ValueError("joint=True needs a query matrix")
        return featurizer.fit(train_matrix, joint_with=as_count_matrix(query, key=None))
    return featurizer.fit(train_matrix,
                          restrict_to=gene_list(query) if query is not None else None)


def featurize(featurizer: ScRNAFeaturizer, dataset: Any) -> Any:
    """Apply a fitted featurizer to a raw-count :class:`CellDataset` (or a sparse one).

    Examples
    --------
    >>> from deepchem_actinn.sample_data import sample_files
    >>> files = sample_files()
    >>> raw = ScRNALoader().create_dataset(files.sample_1_counts, files.sample_1_labels)
    >>> featurizer = ScRNAFeaturizer().fit(raw.to_count_matrix())
    >>> cells = featurize(featurizer, raw)
    >>> cells.X.shape == (len(raw), len(featurizer.genes_)), cells.ids[0] == raw.ids[0]
    (True, True)
    """
    if isinstance(dataset, SparseCellDataset):
        return featurize_sparse(featurizer, dataset)
    X = featurizer.transform(dataset.X, dataset.genes)
    return CellDataset(X, dataset.y if len(dataset.y) else None, dataset.w if len(dataset.y)
                       else None, dataset.ids, genes=featurizer.genes_, classes=dataset.classes)


@dataclass
class Training:
    """A prepared training run: the model built and its cells featurised, ready to fit.

    Attributes
    ----------
    model: the :class:`~deepchem_actinn.model.ACTINNModel` to train.
    data: the featurised training cells (in memory, or shards on disk).
    valid: the featurised held-out cells of ``validation_fraction``, or ``None``.
    epochs: epochs :meth:`fit` runs (fewer than the model's after ``resume``).
    steps: optimizer steps :meth:`fit` takes in memory (``None``: training from shards).
    history: the per-epoch recorder (with ``history=True`` or a validation split).
    checkpoints: write a checkpoint at the end of every epoch (``checkpoint_dir``).
    """

    model: ACTINNModel
    data: Any
    valid: Optional[Any] = None
    epochs: int = 0
    steps: Optional[int] = None
    history: Optional[Any] = None
    checkpoints: bool = False

    def fit(self, callbacks: Callbacks = [], progress: Progress = None) -> ACTINNModel:
        """Train; ``callbacks`` (DeepChem ``fit`` callbacks) run after every step.

        ``progress``: a bar of epochs with the running mean loss, the
        validation accuracy (with ``valid``) and an ETA, on stderr
        (:mod:`deepchem_actinn.progress`; ``None``: only when interactive).
        """
        steps = list(callbacks) if isinstance(callbacks, list) else [callbacks]
        per_epoch = self.model.steps_per_epoch(len(self.data))
        if self.history is not None:
            steps.append(self.history)
        if self.checkpoints:
            steps.append(_epoch_checkpoints(per_epoch))
        # Registered last, so an epoch's score is in the history at its end. A resumed
        # model's steps count on (an unbuilt one has no _global_step yet).
        done = getattr(self.model, "_global_step", 0)
        bar = TrainingProgress(self.epochs, per_epoch, first_step=done, history=self.history,
                               progress=progress)
        try:
            if self.steps is None:  # shards: batches stream from disk
                fit_on_shards(self.model, self.data, nb_epoch=self.epochs,
                              callbacks=[*steps, bar], checkpoint_interval=0)
            else:
                self.model.fit(self.data, nb_epoch=self.epochs, callbacks=[*steps, bar],
                               checkpoint_interval=0)
        finally:
            bar.close()  # also when interrupted: the line ends where training stopped
        return self.model


def _epoch_checkpoints(steps_per_epoch: int) -> Callable:
    """A fit() callback writing a checkpoint at the end of every epoch.

    DeepChem's ``checkpoint_interval`` saves one step before each multiple;
    on epoch boundaries a resumed run restarts exactly where this one was.
    """
    def save(model: Any, step: int) -> None:
        if step % steps_per_epoch == 0:
            model.save_checkpoint(max_checkpoints_to_keep=2)

    return save


def prepare(counts: Any,
            labels: Union[PathLike, pd.Series], *, query: Any = None, joint: bool = False,
            preset: str = DEFAULT_PRESET, key: Optional[str] = None,
            read_options: Optional[Dict[str, Any]] = None, layer: Optional[str] = None,
            gene_column: Optional[str] = None, seed: int = 0,
            device: Optional[Union[str, torch.device]] = None, sparse: bool = True,
            min_gene_overlap: float = 0.1, validation_fraction: Optional[float] = None,
            history: bool = False, checkpoint_dir: Optional[str] = None,
            resume: bool = False, **settings: Any) -> Training:
    """Steps 1-4 of the pipeline for cells read into memory; ``.fit()`` trains.

    Takes :func:`train_reference`'s arguments, and: ``read_options`` for
    :func:`~deepchem_actinn.io.read_counts` (``layer`` and ``gene_column``
    join them); ``validation_fraction`` of each
    type held out before the featurizer is fitted (``Training.valid``, scored
    by the history every epoch); ``history`` to record per-epoch loss and
    accuracy; ``checkpoint_dir`` for a checkpoint after every epoch and
    ``resume`` to continue from its latest one.
    """
    featurizer, settings = split_settings(preset, min_gene_overlap, settings)
    check_settings(settings, "train_reference")
    if joint and query is None:
        raise ValueError("joint=True needs a query matrix")
    options = dict(read_options or {})
    options.update({k: v for k, v in (("layer", layer), ("gene_column", gene_column)) if v})
    labels = training_labels(counts, labels, options.get("format"))  # an obs column?
    matrix = as_count_matrix(counts, key=key, **options)
    dataset = ScRNALoader(sparse=sparse).create_dataset(matrix, labels)
    check_classes(dataset.classes, _labels_source(labels), matrix.source)
    library = np.asarray(dataset.X.sum(axis=1)).ravel()
    if (library == 0).all():
        raise InputError("every labelled training cell has zero counts", matrix.source)
    if (library == 0).any():
        warn_dropped(int((library == 0).sum()), matrix.source)
        dataset = dataset.select(np.flatnonzero(library > 0))
    valid = None
    if validation_fraction is not None:  # cells of every type held out, before fitting
        train_index, valid_index, _ = StratifiedSplitter().split(
            dataset, 1.0 - validation_fraction, validation_fraction, 0.0, seed=seed)
        dataset, valid = dataset.select(train_index), dataset.select(valid_index)
    _fit(featurizer, dataset, matrix.source, query, joint)
    features = featurize(featurizer, dataset)
    if checkpoint_dir is not None:
        settings["model_dir"] = checkpoint_dir
    model = build_model(featurizer, dataset.classes, preset=preset, seed=seed, device=device,
                        **settings)
    epochs, per_epoch = model.epochs_for(len(features)), model.steps_per_epoch(len(features))
    if resume:  # weights, optimizer, step, LR schedule and shuffling state
        if checkpoint_dir is None:
            raise ValueError("resume=True needs a checkpoint_dir")
        model.restore(model_dir=checkpoint_dir)
        epochs = max(epochs - model.get_global_step() // per_epoch, 0)
    recorder = None
    valid_features = None if valid is None else featurize(featurizer, valid)
    if history or valid is not None:
        from deepchem_actinn.history import TrainingHistory
        recorder = TrainingHistory(features, valid_features)
    return Training(model, features, valid_features, epochs, epochs * per_epoch, recorder,
                    checkpoints=checkpoint_dir is not None)


def train_reference(counts: Any, labels: Union[PathLike, pd.Series], *, query: Any = None,
                    joint: bool = False, preset: str = DEFAULT_PRESET,
                    key: Optional[str] = None, layer: Optional[str] = None,
                    gene_column: Optional[str] = None,
                    seed: int = 0, callbacks: Callbacks = [],
                    device: Optional[Union[str, torch.device]] = None, sparse: bool = True,
                    min_gene_overlap: float = 0.1, progress: Progress = None,
                    **model_kwargs: Any) -> ACTINNModel:
    """Train an ACTINN reference from counts and labels in one call.

    Parameters
    ----------
    counts:
        Training counts: a path (any format :func:`~deepchem_actinn.io.read_counts`
        reads), an ``AnnData``, what :func:`~deepchem_actinn.io.from_anndata`
        returns, a :class:`CountMatrix` or a genes x cells DataFrame.
    labels:
        Cell types by cell id: a ``cell_id<TAB>cell_type`` file
        (:func:`~deepchem_actinn.io.read_labels`; ``read_labels(path,
        column=...)`` for wider tables), a Series, or, when ``counts`` is an
        ``AnnData`` or ``.h5ad`` file, the name of an ``obs`` column (cells
        with a missing value are left out).
    layer, gene_column:
        ``AnnData`` / ``.h5ad``: the layer holding raw counts (``"raw"``:
        ``raw.X``; default ``X``) and the ``var`` column of gene symbols
        (default ``var_names``).
    query: path, CountMatrix or list of genes, optional
        Restrict training to the genes this query shares, as ACTINN does, so
        none of the query's model genes is zero-filled.
    joint: bool
        With a ``query`` matrix, fit the gene filters on training and query
        cells together (the paper's mode) instead of on training cells only.
    preset: str
        ``"transfer"`` (the default, the recommended mode for annotating other
        datasets), ``"actinn"`` (the paper's training) or another name in
        :data:`deepchem_actinn.PRESETS`.
    sparse: bool
        Keep the cells sparse (CSR) from reading to training
        (:class:`~deepchem_actinn.data.cells.SparseCellDataset`, the default):
        far less memory and 2-3x faster epochs on single-cell data, the same
        model as dense arrays (``False``) up to float rounding.
    min_gene_overlap: float
        Smallest fraction of the model's genes a query must hold (0.1).
    progress: bool, optional
        A progress bar on stderr: epoch ``i/N``, the running mean training
        loss and an ETA. ``None`` (default): shown only when interactive
        (stderr a terminal, or a Jupyter kernel); ``True`` / ``False``
        force it (:mod:`deepchem_actinn.progress`).
    **model_kwargs:
        Settings that override the preset's: :class:`ACTINNModel`'s
        (``epochs``, ``batch_size``, ``learning_rate``, ...) and the gene
        selection (``low_percentile``, ``high_percentile``, ``exclude_genes``).
        An unknown name raises ``TypeError``.

    Returns
    -------
    ACTINNModel
        Trained, with its featurizer and classes; ``model.save(dir)`` keeps it.

    Examples
    --------
    >>> from deepchem_actinn.sample_data import sample_files
    >>> files = sample_files()
    >>> model = train_reference(files.sample_1_counts, files.sample_1_labels, epochs=1)
    >>> model.classes.tolist()
    ['B cell', 'Granulocyte', 'Monocyte', 'NK cell', 'T cell']
    >>> model.n_genes == len(model.featurizer.genes_)
    True
    """
    return prepare(counts, labels, query=query, joint=joint, preset=preset, key=key,
                   layer=layer, gene_column=gene_column, seed=seed,
                   device=device, sparse=sparse, min_gene_overlap=min_gene_overlap,
                   **model_kwargs).fit(callbacks, progress)


# -- out of core --------------------------------------------------------------------------


def shard_generator(model: Any, shards: ShardedCellDataset, epochs: int
                    ) -> Iterator[Tuple[List, List, List]]:
    """Batches for ``model.fit_generator``: sparse tensors on the model's device."""
    for X_b, y_b, _ in shards._batches(model.batch_size, epochs, shuffle=True):
        y2, w2 = model._batch_labels(y_b.reshape(-1, 1), None, "fit")  # as fit's batches
        X_t = (to_torch_csr(X_b, model.device) if shards.sparse_batches
               else X_b.toarray())
        yield ([X_t], [y2], [w2])


def fit_on_shards(model: Any, shards: ShardedCellDataset, nb_epoch: Optional[int] = None,
                  **fit_kwargs: Any) -> float:
    """Train ``model`` (an :class:`~deepchem_actinn.model.ACTINNModel`) from shards.

    Returns DeepChem's average loss. Peak memory is one shard window.
    """
    epochs = model.epochs if nb_epoch is None else int(nb_epoch)
    model.prepare_class_weights(shards)
    return float(model.fit_generator(shard_generator(model, shards, epochs), **fit_kwargs))


def prepare_out_of_core(counts: Any, labels: Union[PathLike, pd.Series], work_dir: PathLike,
                        *, query: Any = None, preset: str = DEFAULT_PRESET, seed: int = 0,
                        device: Optional[Union[str, torch.device]] = None,
                        min_gene_overlap: float = 0.1, chunk_cells: Optional[int] = None,
                        shard_cells: Optional[int] = None, buffer_shards: int = 4,
                        restrict_to: Optional[Sequence[str]] = None,
                        progress: Progress = None, **settings: Any) -> Training:
    """The pipeline for a 10x HDF5 / CSR ``.h5ad`` file streamed chunk by chunk.

    ``counts`` is a path or a :class:`~deepchem_actinn.io.chunked.ChunkedCounts`;
    ``query`` (or its genes, ``restrict_to``) restricts the genes as in
    memory. Pass 1 fits the featurizer from per-gene sums, pass 2 writes
    featurised shards to ``work_dir``, each with a bar of the file's cells
    (``progress``, as in :func:`train_reference`); ``.fit()`` trains from them.
    """
    featurizer, settings = split_settings(preset, min_gene_overlap, settings)
    check_settings(settings, "train_streaming")  # before two passes over the file
    source = counts if isinstance(counts, ChunkedCounts) else ChunkedCounts(counts)
    labels = training_labels(source.path, labels)  # an .h5ad's obs column?
    if query is not None:
        restrict_to = gene_list(query)
    featurizer, stats = fit_featurizer_streaming(
        source, labels, restrict_to=restrict_to, featurizer=featurizer,
        chunk_cells=chunk_cells or CHUNK_CELLS, progress=progress)
    check_classes(list(stats.classes), _labels_source(labels), source.path)
    warn_dropped(stats.n_empty, source.path)
    shards = write_shards(source, featurizer, work_dir, labels, classes=list(stats.classes),
                          shard_cells=shard_cells or SHARD_CELLS,
                          chunk_cells=chunk_cells or CHUNK_CELLS, seed=seed,
                          progress=progress)
    shards.buffer_shards = max(1, int(buffer_shards))
    model = build_model(featurizer, stats.classes, preset=preset, seed=seed, device=device,
                        **settings)
    # The preset's step floor (min_steps) counts here as in memory and distributed.
    return Training(model, shards, epochs=model.epochs_for(len(shards)))


def train_streaming(counts: Any, labels: Union[PathLike, pd.Series], work_dir: PathLike,
                    *, preset: str = DEFAULT_PRESET, seed: int = 0,
                    device: Optional[Union[str, torch.device]] = None,
                    chunk_cells: Optional[int] = None, shard_cells: Optional[int] = None,
                    buffer_shards: int = 4, restrict_to: Optional[Sequence[str]] = None,
                    min_gene_overlap: float = 0.1, callbacks: Callbacks = [],
                    progress: Progress = None, **model_kwargs: Any) -> ACTINNModel:
    """:func:`train_reference` for files of any size: both streaming passes, then training.

    ``work_dir`` receives the shards (delete it afterwards); the returned
    model saves like any other (``model.save(dir)``). ``callbacks`` are
    DeepChem ``fit`` callbacks, called after every step. ``progress`` (as in
    :func:`train_reference`) gives each pass over the file a bar of its
    cells, and training its bar of epochs.
    """
    return prepare_out_of_core(counts, labels, work_dir, preset=preset, seed=seed,
                               device=device, chunk_cells=chunk_cells, shard_cells=shard_cells,
                               buffer_shards=buffer_shards, restrict_to=restrict_to,
                               min_gene_overlap=min_gene_overlap, progress=progress,
                               **model_kwargs).fit(callbacks, progress)
