"""Annotation of new cells with a trained reference (training: :mod:`deepchem_actinn.train`).

>>> # model = train_reference("train.h5", "train_labels.tsv")
>>> # result = annotate("query.h5", model, threshold=0.5)
>>> # result.to_dataframe().head()
"""

from __future__ import annotations

import colorsys
import html
import importlib
import os
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from deepchem_actinn.errors import InputError, user_stacklevel
from deepchem_actinn.io import CHUNK_CELLS, ChunkedCounts, PathLike, as_count_matrix
from deepchem_actinn.io.h5ad import _import_anndata
from deepchem_actinn.model.file_format import load_reference
from deepchem_actinn.model.inference import Reference
from deepchem_actinn.preprocessing import GeneOverlap, PreprocessingWarning, chunk_transform
from deepchem_actinn.validation import UNASSIGNED, check_number

if TYPE_CHECKING:
    from deepchem_actinn.model.actinn_model import ACTINNModel

#: A trained model as annotation uses it: the DeepChem model, or a folder loaded for
#: annotation alone (:func:`~deepchem_actinn.model.file_format.load_reference`).
TrainedModel = Union["ACTINNModel", Reference]

IN_MEMORY = "<in memory>"
UNASSIGNED_COLOR = "#d3d3d3"  # light grey, as CellTypist and scanpy draw missing values
# scanpy's default categorical palette (``scanpy.plotting.palettes.default_20``), so
# figures look as scanpy users expect without importing scanpy or matplotlib.
PALETTE_20 = ("#1f77b4", "#ff7f0e", "#279e68", "#d62728", "#aa40fc", "#8c564b", "#e377c2",
              "#b5bd61", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5",
              "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5", "#ad494a", "#8c6d31")


def category_colors(categories: Sequence[str]) -> List[str]:
    """A colour per category, in order: ``Unassigned`` grey, the others a categorical palette.

    Up to 20 types get scanpy's default colours; more get evenly spread hues
    (golden-ratio steps), none of them grey.

    >>> category_colors(["B cell", "T cell", "Unassigned"])
    ['#1f77b4', '#ff7f0e', '#d3d3d3']
    """
    n_types = sum(1 for c in categories if c != UNASSIGNED)
    if n_types <= len(PALETTE_20):
        palette = list(PALETTE_20[:n_types])
    else:
        palette = []
        for i in range(n_types):
            hue = (i * 0.618033988749895) % 1.0
            r, g, b = colorsys.hsv_to_rgb(hue, 0.65 if i % 2 else 0.85, 0.75 if i % 3 else 0.9)
            palette.append(f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}")
    colors = iter(palette)
    return [UNASSIGNED_COLOR if c == UNASSIGNED else next(colors) for c in categories]


@dataclass
class AnnotationResult:
    """Per-cell calls of :func:`annotate`.

    Attributes
    ----------
    cell_ids: cell ids, in input order.
    labels: called type per cell; ``"Unassigned"`` below ``threshold``.
    predicted: most probable type per cell, ignoring the threshold.
    probability: probability of the most probable type.
    probabilities: ``(n_cells, n_classes)``, columns in ``classes`` order; ``None``
        from ``annotate(..., probabilities=False)``.
    embedding: the last hidden layer, ``(n_cells, 25)`` for ACTINN.
    overlap: how the query's genes covered the model's.
    preset: the training mode of the model (``"actinn"``: the paper's; see
        :data:`~deepchem_actinn.model.PRESETS`).
    model_source: the model directory :func:`annotate` read (absolute path),
        or ``"<in memory>"`` for a model object not loaded from one.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from deepchem_actinn.train import train_reference
    >>> rng = np.random.default_rng(0)
    >>> counts = pd.DataFrame(rng.poisson(5, size=(300, 40)),  # genes x cells
    ...                       index=[f"g{i}" for i in range(300)],
    ...                       columns=[f"c{j}" for j in range(40)])
    >>> labels = pd.Series(["T cell", "B cell"] * 20, index=counts.columns)
    >>> result = annotate(counts, train_reference(counts, labels, epochs=1), threshold=0.9)
    >>> len(result), result.classes.tolist(), result.embedding.shape
    (40, ['B cell', 'T cell'], (40, 25))
    >>> set(result.labels) <= {"B cell", "T cell", "Unassigned"}
    True
    >>> result.to_dataframe(probabilities=True).columns.tolist()
    ['cell_type', 'probability', 'B cell', 'T cell']
    """

    cell_ids: np.ndarray
    labels: np.ndarray
    predicted: np.ndarray
    probability: np.ndarray
    probabilities: Optional[np.ndarray]
    classes: np.ndarray
    embedding: np.ndarray
    threshold: Optional[float]
    overlap: GeneOverlap
    preset: str = "actinn"  # the mode the model was trained in
    model_source: str = IN_MEMORY  # recorded in to_adata's uns for provenance

    def __len__(self) -> int:
        return len(self.cell_ids)

    def _summary(self, top: int = 5) -> Tuple[List[Tuple[str, str]], pd.Series]:
        """``(field, value)`` rows and the most common calls, for the reprs."""
        counts = pd.Series([str(v) for v in self.labels], dtype=object).value_counts()
        overlap = self.overlap
        rows = [("cells", f"{len(self):,}"), ("types", f"{len(self.classes):,}"),
                ("preset", self.preset),
                ("threshold", "none" if self.threshold is None
                 else f"{self.threshold:g} ({int(counts.get(UNASSIGNED, 0)):,} Unassigned)")]
        if overlap is not None:
            rows.append(("gene overlap", f"{overlap.n_found:,} of {overlap.n_model_genes:,} "
                                         f"model genes ({100 * overlap.fraction:.1f}%)"))
        return rows, counts.head(top)

    def __repr__(self) -> str:
        # The dataclass repr would print every cell (1,000+ lines in a notebook).
        rows, counts = self._summary()
        lines = [f"AnnotationResult: {'; '.join(f'{k} {v}' for k, v in rows)}"]
        more = len(set(map(str, self.labels))) - len(counts)
        lines.append("  top calls: " + ", ".join(f"{name} {n:,}" for name, n in counts.items())
                     + (f" (+{more} more)" if more > 0 else ""))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows, counts = self._summary()
        cells = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                        f"<td style='text-align:left'>{html.escape(v)}</td></tr>" for k, v in rows)
        calls = "".join(f"<tr><td style='text-align:left'>{html.escape(name)}</td>"
                        f"<td>{n:,}</td></tr>" for name, n in counts.items())
        return (f"<b>AnnotationResult</b><table>{cells}</table>"
                f"<table><tr><th>top calls</th><th>cells</th></tr>{calls}</table>")

    def to_dataframe(self, probabilities: bool = False) -> pd.DataFrame:
        """Table indexed by cell id: ``cell_type``, ``probability`` (and one column per class)."""
        frame = pd.DataFrame({"cell_type": self.labels, "probability": self.probability},
                             index=pd.Index(self.cell_ids, name="cell_id"))
        if probabilities:
            if self.probabilities is None:
                raise ValueError("this result kept no probabilities (annotate(..., "
                                 "probabilities=False)); annotate again to get them")
            extra = pd.DataFrame(self.probabilities, index=frame.index,
                                 columns=[str(c) for c in self.classes])
            frame = pd.concat([frame, extra], axis=1)
        return frame

    def _order_for(self, obs_names: Any) -> np.ndarray:
        """Row of this result for each ``obs_names`` entry; refuse cells that do not match."""
        cells = pd.Index([str(c) for c in self.cell_ids])
        obs = pd.Index([str(c) for c in obs_names])
        if obs.equals(cells):
            return np.arange(len(cells))
        if len(obs) == len(cells) and obs.has_duplicates and all(
                c == o or c.startswith(f"{o}-") for c, o in zip(cells, obs, strict=True)):
            return np.arange(len(cells))  # repeated ids the reader renamed id-1, id-2...
        if not obs.has_duplicates and not cells.has_duplicates:
            order = cells.get_indexer(obs)
            if len(obs) == len(cells) and (order >= 0).all():
                return order  # same cells, another order: align by name
        missing = obs[~obs.isin(cells)]
        extra = cells[~cells.isin(obs)]
        raise ValueError(
            f"the AnnData's {len(obs)} obs_names do not match the {len(cells)} annotated cells "
            f"({len(missing)} without a call, e.g. {list(missing[:3])}; {len(extra)} calls "
            f"without a cell, e.g. {list(extra[:3])}); annotate this AnnData itself")

    def metadata(self) -> Dict[str, Any]:
        """What made these calls, as ``to_adata`` stores it in ``uns["actinn"]``.

        Model (directory or ``"<in memory>"``), preset, threshold (``None``:
        none), package version and how the query's genes covered the model's.
        """
        from deepchem_actinn import __version__
        return {
            "model": self.model_source,
            "preset": self.preset,
            "threshold": None if self.threshold is None else float(self.threshold),
            "version": __version__,
            "gene_overlap": {"found": int(self.overlap.n_found),
                             "total": int(self.overlap.n_model_genes),
                             "fraction": float(self.overlap.fraction)},
        }

    def majority_vote(self, groups: Any) -> np.ndarray:
        """Each cell's call replaced by the most common call of its cluster (CellTypist's vote).

        ``groups`` holds a cluster per cell (e.g. Leiden's): an array in this
        result's cell order, or a ``Series`` indexed by cell id. The calls are
        :attr:`labels` (after the threshold, so a cluster of mostly
        ``Unassigned`` cells stays ``Unassigned``); ties go to the type that
        comes first in :attr:`classes`, ``Unassigned`` last. A cell without a
        cluster (NaN) keeps its own call. ``to_adata(adata,
        majority_voting="leiden")`` votes over an ``obs`` column.

        >>> result = AnnotationResult(np.array(["a", "b", "c", "d"]),
        ...     np.array(["T", "B", "T", "B"], dtype=object), None, None, None,
        ...     np.array(["B", "T"], dtype=object), None, None, None)
        >>> result.majority_vote([0, 0, 0, 1]).tolist()
        ['T', 'T', 'T', 'B']
        """
        if isinstance(groups, str):
            raise TypeError("majority_vote takes a cluster per cell; to vote over an obs "
                            "column use to_adata(adata, majority_voting=COLUMN)")
        if isinstance(groups, pd.Series) and not isinstance(groups.index, pd.RangeIndex):
            try:
                order = self._order_for(groups.index)
            except ValueError:
                raise ValueError("the groups' index does not match the annotated cell ids; pass "
                                 "a Series indexed by cell id or an array in result order"
                                 ) from None
            groups = groups.iloc[order.argsort()]  # to this result's cell order
        values = np.asarray(groups, dtype=object)
        if values.ndim != 1 or len(values) != len(self):
            raise ValueError(f"majority_vote needs one cluster per cell ({len(self)}), got "
                             f"shape {values.shape}")
        return _vote(self.labels, values, [str(c) for c in self.classes] + [UNASSIGNED])

    def to_adata(self, adata: Any = None, prefix: str = "actinn", *,
                 probability_columns: bool = False,
                 majority_voting: Optional[str] = None) -> Any:
        """Store the calls in an ``AnnData`` (in place) and return it.

        Writes, in ``obs``: ``{prefix}_label`` (the call after the threshold,
        categorical: the model's classes, plus ``Unassigned`` with a
        threshold), ``{prefix}_prediction`` (the most probable type, before
        the threshold) and ``{prefix}_probability`` (its probability); with
        ``probability_columns=True`` also one ``{prefix}_p_<type>`` column per
        type, so ``sc.pl.umap(adata, color="actinn_p_B cell")`` works. In
        ``obsm``: ``{prefix}_probabilities`` (cells x classes, columns in
        ``uns["{prefix}_classes"]`` order) and ``X_{prefix}`` (the embedding,
        usable by ``scanpy.pp.neighbors(use_rep=...)``). In ``uns``:
        ``{prefix}`` (:meth:`metadata`: model, preset, threshold, version,
        gene overlap) and ``{prefix}_label_colors`` / ``{prefix}_prediction_colors``
        (scanpy's colour lists: ``Unassigned`` grey, a type the same colour in both).

        ``majority_voting="leiden"`` also writes ``obs["{prefix}_majority_voting"]``:
        each cell's cluster's most common call (:meth:`majority_vote`) over
        that ``obs`` column. When the column is absent and scanpy is
        installed, it is computed first: Leiden clusters of the ACTINN
        embedding (``sc.pp.neighbors(use_rep="X_{prefix}", key_added=prefix)``,
        so an existing neighbour graph is kept; ``sc.tl.leiden``).

        Cells are matched to ``obs_names`` by id; a mismatch raises
        ``ValueError``. Without ``adata``, a new one with no genes is built.
        Needs the ``anndata`` extra.
        """
        anndata = _import_anndata("to_adata")
        if probability_columns and self.probabilities is None:
            raise ValueError("probability_columns needs every class probability, which this "
                             "result did not keep (annotate(..., probabilities=False))")
        if adata is None:
            adata = anndata.AnnData(obs=pd.DataFrame(index=pd.Index(
                [str(c) for c in self.cell_ids], dtype=object)))
        order = self._order_for(adata.obs_names)
        scanpy: Any = None
        if majority_voting is not None and majority_voting not in adata.obs:
            try:  # checked before anything is written: a refusal leaves adata as it was
                scanpy = importlib.import_module("scanpy")
            except ImportError:
                raise InputError(f"adata.obs has no column {majority_voting!r} to vote over; "
                                 "pass an existing clustering column (e.g. 'leiden') or "
                                 "install scanpy to compute Leiden clusters") from None
        types = [str(c) for c in self.classes]
        categories = list(types)
        if self.threshold is not None or UNASSIGNED in set(self.labels):
            categories.append(UNASSIGNED)
        colors = category_colors(categories)
        adata.obs[f"{prefix}_label"] = pd.Categorical(
            [str(v) for v in self.labels[order]], categories=categories)
        adata.obs[f"{prefix}_prediction"] = pd.Categorical(
            [str(v) for v in self.predicted[order]], categories=types)
        adata.obs[f"{prefix}_probability"] = np.asarray(self.probability[order])
        if self.probabilities is not None:
            adata.obsm[f"{prefix}_probabilities"] = np.asarray(self.probabilities[order])
            if probability_columns:
                columns = pd.DataFrame(self.probabilities[order], index=adata.obs.index,
                                       columns=[f"{prefix}_p_{t}" for t in types])
                # One concat, not a column at a time: pandas warns past ~100 inserts.
                adata.obs = pd.concat([adata.obs.drop(columns=columns.columns, errors="ignore"),
                                       columns], axis=1)
        adata.uns[f"{prefix}_classes"] = np.asarray(types, dtype=object)
        adata.uns[prefix] = self.metadata()
        adata.uns[f"{prefix}_label_colors"] = np.asarray(colors, dtype=object)
        adata.uns[f"{prefix}_prediction_colors"] = np.asarray(colors[:len(types)], dtype=object)
        adata.obsm[f"X_{prefix}"] = np.asarray(self.embedding[order])
        if majority_voting is not None:
            if scanpy is not None:
                scanpy.pp.neighbors(adata, use_rep=f"X_{prefix}", key_added=prefix)
                scanpy.tl.leiden(adata, key_added=majority_voting, neighbors_key=prefix,
                                 **_leiden_options(scanpy))
            voted = _vote(self.labels[order], np.asarray(adata.obs[majority_voting], dtype=object),
                          categories)
            adata.obs[f"{prefix}_majority_voting"] = pd.Categorical(voted, categories=categories)
            adata.uns[f"{prefix}_majority_voting_colors"] = np.asarray(colors, dtype=object)
            adata.uns[prefix]["majority_voting"] = majority_voting
        return adata


def _vote(labels: np.ndarray, groups: np.ndarray, categories: List[str]) -> np.ndarray:
    """Most common label of each group, for every cell; ties to the first in ``categories``."""
    names = list(categories) + sorted(set(map(str, labels)) - set(categories))
    code = {name: i for i, name in enumerate(names)}
    label_codes = np.fromiter((code[str(v)] for v in labels), np.int64, len(labels))
    group_codes, uniques = pd.factorize(pd.Series(groups, dtype=object))  # NaN: -1
    clustered = group_codes >= 0
    table = np.zeros((len(uniques), len(names)), np.int64)
    np.add.at(table, (group_codes[clustered], label_codes[clustered]), 1)
    winners = np.asarray(names, dtype=object)[table.argmax(axis=1)]  # argmax: first of ties
    voted = np.asarray([str(v) for v in labels], dtype=object)
    voted[clustered] = winners[group_codes[clustered]]
    return voted


def top_calls(model: TrainedModel, X: Any) -> Tuple[np.ndarray, np.ndarray]:
    """Index and probability of each featurised cell's most probable class.

    Block by block (:meth:`ACTINNModel.predict_blocks`): never a cells x classes matrix.
    """
    best, top = [np.zeros(0, np.int64)], [np.zeros(0, np.float32)]
    for p, _, _ in model.predict_blocks(X):
        best.append(p.argmax(axis=1))
        top.append(p.max(axis=1))
    return np.concatenate(best), np.concatenate(top)


def calls(model: TrainedModel, probabilities: np.ndarray, threshold: Optional[float]
          ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(labels, predicted, probability)`` of a block of cells' probabilities.

    ``labels`` is ``predicted`` with ``Unassigned`` below ``threshold``.
    """
    best = probabilities.argmax(axis=1) if len(probabilities) else np.zeros(0, np.int64)
    predicted = model.classes[best]
    probability = probabilities.max(axis=1) if len(probabilities) else np.zeros(0)
    labels = predicted.copy()
    if threshold is not None:
        labels[probability < float(threshold)] = UNASSIGNED
    return labels, predicted, probability


Blocks = Iterator[Tuple[np.ndarray, np.ndarray, np.ndarray]]


def prediction_blocks(data: Any, model: TrainedModel, key: Optional[str] = None, *,
                      format: Optional[str] = None, layer: Optional[str] = None,
                      gene_column: Optional[str] = None, cells_as_rows: bool = False,
                      gene_ids: bool = False, chunk_cells: Optional[int] = None
                      ) -> Tuple[GeneOverlap, Blocks]:
    """What :func:`annotate` computes, as ``(cell ids, probabilities, embedding)`` blocks.

    The input is read and checked (genes, overlap) before this returns; the
    blocks are then predicted as they are drawn, so a caller can write each
    one out (``deepchem-actinn predict``) and hold no cells x classes matrix.
    """
    if model.featurizer is None:
        raise ValueError("the model has no fitted featurizer; train it with train_reference "
                         "or attach one")
    if chunk_cells is not None:
        chunk_cells = int(check_number("chunk_cells", chunk_cells))
        if format or gene_column or cells_as_rows:
            raise ValueError("chunk_cells reads 10x HDF5 and CSR .h5ad files by themselves; "
                             "it takes no format, gene_column or cells_as_rows")
        if not isinstance(data, (str, os.PathLike)):
            raise ValueError("chunk_cells needs a file path")
        return _chunk_blocks(os.fspath(data), model, chunk_cells, layer=layer,
                             gene_ids=gene_ids, genome=key)
    options = {"format": format, "layer": layer, "gene_column": gene_column,
               "cells_as_rows": cells_as_rows, "gene_ids": gene_ids}
    matrix = as_count_matrix(data, key=key, **{k: v for k, v in options.items() if v})
    features = model.featurizer.transform(matrix, sparse_output=True)  # checks the overlap
    present = model.featurizer.present_genes(matrix.genes)
    _check_empty_cells(_count_empty(features, present), features.shape[0], matrix.source)
    cells = np.asarray(matrix.cells, dtype=object)

    def blocks() -> Blocks:
        start = 0
        for p, _, h in model.predict_blocks(features):
            yield cells[start:start + len(p)], p, h
            start += len(p)

    return model.featurizer.overlap(matrix.genes), blocks()


def annotate(data: Any, model: Union[TrainedModel, PathLike], threshold: Optional[float] = None,
             key: Optional[str] = None, *, format: Optional[str] = None,
             layer: Optional[str] = None, gene_column: Optional[str] = None,
             cells_as_rows: bool = False, gene_ids: bool = False,
             chunk_cells: Optional[int] = None, probabilities: bool = True
             ) -> AnnotationResult:
    """Call cell types with a trained reference, in one line.

    Parameters
    ----------
    data: path, AnnData, DataFrame or CountMatrix
        Raw counts of the cells to annotate: a file in any format
        :func:`~deepchem_actinn.io.read_counts` reads (pandas HDF, 10x HDF5,
        Matrix Market folder, CSV/TSV, ``.h5ad``), an ``AnnData``, or a
        genes x cells ``DataFrame``.
    model: ACTINNModel or path
        A trained model or a directory written by ``ACTINNModel.save`` (loaded
        with :func:`~deepchem_actinn.model.file_format.load_reference`: the same
        calls, without importing DeepChem).
    threshold: float, optional
        Cells whose top probability is below it are labelled ``Unassigned``.
    key, format, layer, gene_column, cells_as_rows, gene_ids:
        How to read ``data`` (see :func:`~deepchem_actinn.io.read_counts`);
        ``layer`` and ``gene_column`` also apply to an ``AnnData``,
        ``cells_as_rows`` to a ``DataFrame``.
    chunk_cells: int, optional
        Read ``data``, a 10x HDF5 or ``.h5ad`` file with a CSR matrix, this
        many cells at a time, so memory stays bounded whatever the file's
        size (atlases); the calls are those of reading it whole (the
        probabilities to float rounding).
    probabilities: bool
        Keep every class probability of every cell (``result.probabilities``).
        ``False`` keeps each cell's top call and its probability only, so a
        reference with thousands of types needs no cells x classes matrix.

    Returns
    -------
    AnnotationResult
        ``.to_dataframe()`` for a table, ``.to_adata(adata)`` to store the
        calls in an ``AnnData``.

    Examples
    --------
    >>> import os, tempfile
    >>> from deepchem_actinn.sample_data import sample_files
    >>> files = sample_files()
    >>> from deepchem_actinn.train import train_reference
    >>> model = train_reference(files.sample_1_counts, files.sample_1_labels, epochs=1)
    >>> folder = model.save(os.path.join(tempfile.mkdtemp(), "reference"))
    >>> result = annotate(files.sample_2_counts, folder, threshold=0.5)  # a saved reference
    >>> len(result), result.probabilities.shape
    (1000, (1000, 5))
    >>> table = result.to_dataframe()  # indexed by cell id
    >>> table.index.name, table.columns.tolist()
    ('cell_id', ['cell_type', 'probability'])
    """
    if threshold is not None:
        threshold = check_number("threshold", threshold)
    source = getattr(model, "loaded_from", None) or IN_MEMORY
    if isinstance(model, (str, os.PathLike)):  # loaded for annotation alone: no DeepChem
        source = os.path.abspath(os.fspath(model))
        trained: TrainedModel = load_reference(model)
    else:
        trained = model
    overlap, blocks = prediction_blocks(data, trained, key, format=format, layer=layer,
                                        gene_column=gene_column, cells_as_rows=cells_as_rows,
                                        gene_ids=gene_ids, chunk_cells=chunk_cells)
    cells, kept, best, top, embeddings = [], [], [], [], []
    for ids, p, h in blocks:
        cells.append(ids)
        if probabilities:
            kept.append(p)
        best.append(p.argmax(axis=1))
        top.append(p.max(axis=1))
        embeddings.append(h)
    n_hidden = trained.settings["hidden_sizes"][-1]
    every = (np.concatenate(kept) if kept else np.zeros((0, trained.n_classes), np.float32)) \
        if probabilities else None
    predicted = trained.classes[np.concatenate(best) if best else np.zeros(0, np.int64)]
    probability = np.concatenate(top) if top else np.zeros(0, np.float32)
    labels = predicted.copy()
    if threshold is not None:
        labels[probability < float(threshold)] = UNASSIGNED
    return AnnotationResult(np.concatenate(cells) if cells else np.zeros(0, object), labels,
                            predicted, probability, every, trained.classes,
                            np.concatenate(embeddings) if embeddings
                            else np.zeros((0, n_hidden), np.float32), threshold, overlap,
                            trained.preset, source)


def _leiden_options(scanpy: Any) -> Dict[str, Any]:
    """scanpy's coming Leiden defaults (igraph) where it and igraph have them: the same
    clustering scanpy recommends, without its FutureWarning about the change."""
    import inspect

    if "flavor" not in inspect.signature(scanpy.tl.leiden).parameters:
        return {}  # scanpy < 1.10
    try:
        importlib.import_module("igraph")
    except ImportError:
        return {}
    return {"flavor": "igraph", "n_iterations": 2, "directed": False}


def _count_empty(features: Any, present: np.ndarray) -> int:
    """Cells with no counts over the model genes the query holds (missing genes may be
    filled with reference means, which are not the cell's counts)."""
    held = features if present.all() else features[:, np.flatnonzero(present)]
    return int((np.asarray(held.sum(axis=1)).ravel() == 0).sum())


def _check_empty_cells(n_empty: int, n_cells: int, source: str) -> None:
    if n_cells and n_empty == n_cells:
        raise InputError("every cell has zero counts over the model's genes; nothing to annotate",
                         source)
    if n_empty:
        warnings.warn(f"{source}: {n_empty} of {n_cells} cells have zero counts over the "
                      "model's genes; their calls come from an empty profile and are "
                      "unreliable", PreprocessingWarning, stacklevel=user_stacklevel())


def _chunk_blocks(path: str, model: TrainedModel, chunk_cells: int,
                  layer: Optional[str] = None, gene_ids: bool = False,
                  genome: Optional[str] = None) -> Tuple[GeneOverlap, Blocks]:
    """:func:`prediction_blocks` of a 10x HDF5 / CSR ``.h5ad`` file, one chunk at a time."""
    assert model.featurizer is not None
    source = ChunkedCounts(path, layer=layer, gene_ids=gene_ids, genome=genome)
    model.featurizer.check_overlap(source.genes, source.path)
    transform = chunk_transform(model.featurizer, source.genes)
    present = model.featurizer.present_genes(source.genes)

    def blocks() -> Blocks:
        n_empty = 0
        for _, counts, ids in source.chunks(chunk_cells):
            features = transform(counts)
            n_empty += _count_empty(features, present)
            start = 0
            for p, _, h in model.predict_blocks(features):
                yield ids[start:start + len(p)], p, h
                start += len(p)
        _check_empty_cells(n_empty, source.n_cells, source.path)

    return model.featurizer.overlap(source.genes), blocks()


def predict_streaming(model: Any, counts: PathLike, chunk_cells: int = CHUNK_CELLS
                      ) -> Tuple[np.ndarray, np.ndarray]:
    """Class probabilities of every cell of a file, chunk by chunk: ``(ids, probabilities)``.

    ``annotate(counts, model, chunk_cells=...)`` gives the same with names.
    """
    result = annotate(os.fspath(counts), model, chunk_cells=chunk_cells)
    assert result.probabilities is not None  # kept by default
    return result.cell_ids, result.probabilities
