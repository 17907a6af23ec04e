"""One-call training of a reference and annotation of new cells.

>>> # model = train_reference("train.h5", "train_labels.tsv")
>>> # result = annotate("query.h5", model, threshold=0.5)
>>> # result.to_dataframe().head()
"""

from __future__ import annotations

import os
import sys
import types
import warnings
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Union

import numpy as np
import pandas as pd
import torch

from deepchem_actinn.data import CellDataset, ScRNALoader
from deepchem_actinn.errors import InputError
from deepchem_actinn.io import CountMatrix, PathLike, finish_matrix, read_counts
from deepchem_actinn.model import ACTINNModel
from deepchem_actinn.preprocessing import GeneOverlap, PreprocessingWarning, ScRNAFeaturizer

UNASSIGNED = "Unassigned"
PREDICT_BATCH = 8192


def as_count_matrix(data: Any, key: Optional[str] = None) -> CountMatrix:
    """Accept a path, a :class:`CountMatrix` or a genes x cells ``DataFrame``."""
    if isinstance(data, CountMatrix):
        return data
    if isinstance(data, pd.DataFrame):
        return finish_matrix(data.to_numpy().T, list(data.index), list(data.columns),
                             "<DataFrame>")
    if isinstance(data, (str, os.PathLike)):
        return read_counts(data, key=key)
    raise TypeError(f"cannot read cells from a {type(data).__name__}")


def _gene_list(query: Any) -> List[str]:
    if query is None:
        return []
    if isinstance(query, (list, tuple, np.ndarray, pd.Index)):
        return [str(g) for g in query]
    return [str(g) for g in as_count_matrix(query).genes]


def train_reference(counts: Union[PathLike, CountMatrix, pd.DataFrame],
                    labels: Union[PathLike, pd.Series], *, query: Any = None,
                    joint: bool = False, preset: str = "actinn", key: Optional[str] = None,
                    seed: int = 0, callbacks: Union[Callable, List[Callable]] = [],
                    device: Optional[Union[str, torch.device]] = None,
                    **model_kwargs: Any) -> ACTINNModel:
    """Train an ACTINN reference from counts and labels in one call.

    Parameters
    ----------
    counts, labels:
        Training counts (path, :class:`CountMatrix` or genes x cells
        DataFrame) and their ``cell_id<TAB>cell_type`` labels (path or Series).
    query: path, CountMatrix or list of genes, optional
        Restrict training to the genes this query shares, as ACTINN does, so
        none of the query's model genes is zero-filled.
    joint: bool
        With a ``query`` matrix, fit the gene filters on training and query
        cells together (the paper's mode) instead of on training cells only.
    preset: str
        ``"actinn"`` or another name in :data:`deepchem_actinn.PRESETS`.
    **model_kwargs:
        Passed to :class:`ACTINNModel` (``epochs``, ``batch_size``,
        ``learning_rate``, ...).

    Returns
    -------
    ACTINNModel
        Trained, with its featurizer and classes; ``model.save(dir)`` keeps it.
    """
    matrix = as_count_matrix(counts, key=key)
    dataset = ScRNALoader().create_dataset(matrix, labels)
    if dataset.n_classes < 2:
        raise InputError(f"the training labels hold a single cell type "
                         f"('{dataset.classes[0]}'); ACTINN needs at least two", matrix.source)
    library = dataset.X.sum(axis=1)
    if (library == 0).any():
        warnings.warn(f"{matrix.source}: dropped {int((library == 0).sum())} training cells with "
                      "zero counts", PreprocessingWarning, stacklevel=2)
        dataset = dataset.select(np.flatnonzero(library > 0))
    featurizer = ScRNAFeaturizer()
    train_matrix = dataset.to_count_matrix(matrix.source)
    if joint:
        if query is None:
            raise ValueError("joint=True needs a query matrix")
        featurizer.fit(train_matrix, joint_with=as_count_matrix(query, key=None))
    else:
        featurizer.fit(train_matrix, restrict_to=_gene_list(query) if query is not None else None)
    features = featurize(featurizer, dataset)
    model = ACTINNModel(len(featurizer.genes_), dataset.n_classes, preset=preset,
                        classes=dataset.classes, featurizer=featurizer, seed=seed, device=device,
                        **model_kwargs)
    model.fit(features, callbacks=callbacks)
    return model


def featurize(featurizer: ScRNAFeaturizer, dataset: CellDataset) -> CellDataset:
    """Apply a fitted featurizer to a raw-count :class:`CellDataset`."""
    X = featurizer.transform(dataset.X, dataset.genes)
    return CellDataset(X, dataset.y if len(dataset.y) else None, dataset.w if len(dataset.y)
                       else None, dataset.ids, genes=featurizer.genes_, classes=dataset.classes)


@dataclass
class AnnotationResult:
    """Per-cell calls of :func:`annotate`.

    Attributes
    ----------
    cell_ids: cell ids, in input order.
    labels: called type per cell; ``"Unassigned"`` below ``threshold``.
    predicted: most probable type per cell, ignoring the threshold.
    probability: probability of the most probable type.
    probabilities: ``(n_cells, n_classes)``, columns in ``classes`` order.
    embedding: the last hidden layer, ``(n_cells, 25)`` for ACTINN.
    overlap: how the query's genes covered the model's.
    """

    cell_ids: np.ndarray
    labels: np.ndarray
    predicted: np.ndarray
    probability: np.ndarray
    probabilities: np.ndarray
    classes: np.ndarray
    embedding: np.ndarray
    threshold: Optional[float]
    overlap: GeneOverlap

    def __len__(self) -> int:
        return len(self.cell_ids)

    def to_dataframe(self, probabilities: bool = False) -> pd.DataFrame:
        """Table indexed by cell id: ``cell_type``, ``probability`` (and one column per class)."""
        frame = pd.DataFrame({"cell_type": self.labels, "probability": self.probability},
                             index=pd.Index(self.cell_ids, name="cell_id"))
        if probabilities:
            extra = pd.DataFrame(self.probabilities, index=frame.index,
                                 columns=[str(c) for c in self.classes])
            frame = pd.concat([frame, extra], axis=1)
        return frame


def predict_outputs(model: ACTINNModel, X: Any) -> tuple:
    """Probabilities and embedding of featurised cells in one pass, in batches."""
    module = model.model
    module.eval()
    probs, embeddings = [], []
    with torch.no_grad():
        for start in range(0, X.shape[0], PREDICT_BATCH):
            block = X[start:start + PREDICT_BATCH]
            if hasattr(block, "toarray"):
                block = block.toarray()
            tensor = torch.as_tensor(np.asarray(block, dtype=np.float32), device=model.device)
            p, _, h = module(tensor)
            probs.append(p[:, 0, :].cpu().numpy())
            embeddings.append(h.cpu().numpy())
    n_hidden = model.settings["hidden_sizes"][-1]
    if not probs:
        return np.zeros((0, model.n_classes), np.float32), np.zeros((0, n_hidden), np.float32)
    return np.concatenate(probs), np.concatenate(embeddings)


def annotate(data: Any, model: Union[ACTINNModel, PathLike], threshold: Optional[float] = None,
             key: Optional[str] = None) -> AnnotationResult:
    """Call cell types with a trained reference, in one line.

    Parameters
    ----------
    data: path, CountMatrix or DataFrame
        Raw counts of the cells to annotate (a DataFrame is genes x cells).
    model: ACTINNModel or path
        A trained model or a directory written by ``ACTINNModel.save``.
    threshold: float, optional
        Cells whose top probability is below it are labelled ``Unassigned``.

    Returns
    -------
    AnnotationResult
    """
    if threshold is not None and not 0.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    if not isinstance(model, ACTINNModel):
        model = ACTINNModel.load(model)
    if model.featurizer is None:
        raise ValueError("the model has no fitted featurizer; train it with train_reference "
                         "or attach one")
    matrix = as_count_matrix(data, key=key)
    features = model.featurizer.transform(matrix, sparse_output=True)  # checks the overlap
    overlap = model.featurizer.overlap(matrix.genes)
    probabilities, embedding = predict_outputs(model, features)
    best = probabilities.argmax(axis=1) if len(probabilities) else np.zeros(0, np.int64)
    predicted = model.classes[best]
    probability = probabilities.max(axis=1) if len(probabilities) else np.zeros(0)
    labels = predicted.copy()
    if threshold is not None:
        labels[probability < float(threshold)] = UNASSIGNED
    return AnnotationResult(matrix.cells, labels, predicted, probability, probabilities,
                            model.classes, embedding, threshold, overlap)


class _CallableModule(types.ModuleType):
    """This module, callable as :func:`annotate`.

    ``deepchem_actinn`` imports lazily (so the CLI can hide DeepChem's import
    messages), and Python binds ``deepchem_actinn.annotate`` to this module
    when it is first imported; being callable keeps ``da.annotate(...)``
    working whichever was imported first.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> AnnotationResult:
        return annotate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
