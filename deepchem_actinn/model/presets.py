"""Named training modes: every setting of the network, the training and the gene selection.

:func:`preset_settings` resolves a preset with overrides; :func:`featurizer_for`
builds its (unfitted) preprocessing. ``ACTINNModel`` and every training path
(:mod:`deepchem_actinn.train`) read their defaults here, and a model file
names its preset (:mod:`deepchem_actinn.model_file` checks it is one of these).
"""

from __future__ import annotations

from typing import Any, Dict

from deepchem_actinn.preprocessing import ScRNAFeaturizer

#: Hyper-parameters of the original ACTINN (the default preset).
ACTINN_DEFAULTS: Dict[str, Any] = {
    "hidden_sizes": (100, 50, 25),
    "learning_rate": 1e-4,
    "decay_rate": 0.95,
    "decay_steps": 1000,
    "l2": 0.005,
    "batch_size": 128,
    "epochs": 50,
    "input_dropout": 0.0,
}

#: Training options beyond ACTINN; these values switch them off (ACTINN's behaviour).
#: ``min_steps``: train at least this many optimizer steps (more epochs on small references).
#: ``label_smoothing``: cross-entropy against (1 - e) one-hot + e uniform targets.
#: ``class_weight``: ``None`` or ``"balanced"`` (each type weighs n / (k * n_type)).
#: ``linear_skip``: a second, linear head beside the hidden layers.
#: ``linear_l2``: that head's L2 (``None``: the network's ``l2``).
#: ``linear_weight``: that head's weight in the call (the hidden layers' is 1 - it).
#: ``gene_dropout``: fraction of genes each batch hides from that head (read at their mean).
TRAINING_OPTIONS: Dict[str, Any] = {
    "min_steps": 0,
    "label_smoothing": 0.0,
    "class_weight": None,
    "linear_skip": False,
    "linear_l2": None,
    "linear_weight": 0.5,
    "gene_dropout": 0.0,
}

#: ACTINN's gene selection (:class:`~deepchem_actinn.preprocessing.ScRNAFeaturizer`
#: settings): genes outside the 1st-99th percentiles of total expression, then of
#: coefficient of variation, are dropped; no gene is excluded by name.
GENE_SELECTION_DEFAULTS: Dict[str, Any] = {
    "low_percentile": 1.0,
    "high_percentile": 99.0,
    "exclude_genes": None,
    "missing_genes": "zero",  # what a model gene absent from a query becomes
}

#: Named settings (see benchmarks/ACCURACY.md for the evidence behind each):
#:
#: * ``actinn``: the paper's gene filters, network and training, unchanged.
#: * ``transfer``: the recommended mode, for references applied to other datasets
#:   (platforms, labs, conditions, species). Every expressed gene (no percentile filter:
#:   the most expressed genes are often a type's markers); a second, linear head (genes ->
#:   types, fed the genes before input dropout) beside the hidden layers, each head trained
#:   as a classifier, the call weighting their logits 0.2 (hidden layers) and 0.8 (linear);
#:   Adam at 1e-3 for at least 2,000 steps, input dropout 0.5 and four times ACTINN's L2;
#:   each batch hides half the genes from the linear head (gene dropout 0.5, read at their
#:   mean), and a model gene the query lacks is likewise set to its reference mean, not zero;
#:   each type weighs the same in the loss (balanced class weights), so rare types are called.
#: * ``robust``: the previous cross-dataset preset (Adam at 1e-3, input dropout 0.5).
PRESETS: Dict[str, Dict[str, Any]] = {
    "actinn": {},
    "transfer": {"learning_rate": 1e-3, "input_dropout": 0.5, "min_steps": 2000, "l2": 0.02,
                 "linear_skip": True, "linear_weight": 0.8, "gene_dropout": 0.5,
                 "class_weight": "balanced",
                 "low_percentile": 0.0, "high_percentile": 100.0, "missing_genes": "mean"},
    "robust": {"learning_rate": 1e-3, "input_dropout": 0.5},
}
#: The mode ``train_reference`` and ``deepchem-actinn train`` use unless told otherwise;
#: ``ACTINNModel`` itself defaults to the paper's ``"actinn"``.
DEFAULT_PRESET = "transfer"

_PRESET_SUMMARIES = {
    "actinn": "the paper's ACTINN training",
    "transfer": "the recommended mode for annotating other datasets",
    "robust": "ACTINN at a 10x learning rate with input dropout",
}


def describe_preset(preset: str) -> str:
    """One line naming the mode a model was trained in.

    >>> describe_preset("actinn")
    "model trained with preset 'actinn' (the paper's ACTINN training)"
    """
    summary = _PRESET_SUMMARIES.get(preset)
    return f"model trained with preset '{preset}'" + (f" ({summary})" if summary else "")


def preset_settings(preset: str, **overrides: Any) -> Dict[str, Any]:
    """Every setting of a preset (network, training, gene selection), ``overrides`` applied.

    >>> preset_settings("robust", epochs=10)["learning_rate"], preset_settings("actinn")["l2"]
    (0.001, 0.005)
    >>> preset_settings("transfer", class_weight=None)["class_weight"] is None
    True
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset '{preset}'; choose from {', '.join(PRESETS)}")
    known = {**ACTINN_DEFAULTS, **TRAINING_OPTIONS, **GENE_SELECTION_DEFAULTS}
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise TypeError(f"unknown setting{'s' if len(unknown) > 1 else ''} "
                        f"{', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return {**known, **PRESETS[preset], **overrides}


def record_gene_selection(settings: Dict[str, Any], featurizer: ScRNAFeaturizer) -> None:
    """Put the gene selection a featurizer actually used in a model's settings (saved with it)."""
    settings.update(low_percentile=featurizer.low_percentile,
                    high_percentile=featurizer.high_percentile,
                    exclude_genes=featurizer.exclude_genes,
                    missing_genes=featurizer.missing_genes)


def featurizer_for(preset: str = "actinn", min_gene_overlap: float = 0.1,
                   **overrides: Any) -> ScRNAFeaturizer:
    """An unfitted :class:`ScRNAFeaturizer` with a preset's gene selection.

    >>> featurizer_for("actinn").high_percentile
    99.0
    """
    settings = preset_settings(preset, **overrides)
    return ScRNAFeaturizer(low_percentile=float(settings["low_percentile"]),
                           high_percentile=float(settings["high_percentile"]),
                           exclude_genes=settings["exclude_genes"],
                           missing_genes=settings["missing_genes"],
                           min_gene_overlap=min_gene_overlap)
