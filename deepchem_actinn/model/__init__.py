"""ACTINN's model: the torch network, its training pieces, presets, the DeepChem model, its files.

================ ============================================================
module           holds
================ ============================================================
``network``      :class:`ActinnClassifier` (pure torch), the gene layer
                 :class:`GeneLinear` and its sparse product
                 (:func:`~deepchem_actinn.model.network.sparse_linear`)
``training``     the optimiser (:class:`WeightL2Adam`, the learning-rate
                 schedule), the loss, the divergence guard
``presets``      :data:`PRESETS` and every default setting,
                 :func:`preset_settings`, :func:`featurizer_for`
``actinn_model`` :class:`ACTINNModel`, the DeepChem ``TorchModel``, with the
                 one inference path (:meth:`ACTINNModel.predict_blocks`)
``file_format``  the model folder: :data:`MODEL_FILE`, :data:`WEIGHTS_FILE`,
                 the schema, digests, saving and loading
================ ============================================================

Names are imported lazily, so reading :data:`PRESETS` or
:data:`MODEL_FILE` (as the command line does before any work) loads neither
torch nor DeepChem. Every name below is importable from
``deepchem_actinn.model``.

>>> from deepchem_actinn.model import DEFAULT_PRESET, PRESETS
>>> DEFAULT_PRESET in PRESETS
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from deepchem_actinn.lazy import lazy_exports

_EXPORTS = {
    # presets: every default setting (no torch, no DeepChem)
    "ACTINN_DEFAULTS": "presets", "DEFAULT_PRESET": "presets",
    "GENE_SELECTION_DEFAULTS": "presets", "PRESETS": "presets", "TRAINING_OPTIONS": "presets",
    "describe_preset": "presets", "featurizer_for": "presets", "preset_settings": "presets",
    # the model-file format
    "MODEL_FILE": "file_format", "MODEL_FORMAT": "file_format",
    "MODEL_FORMAT_VERSION": "file_format", "WEIGHTS_FILE": "file_format",
    "_metadata_digest": "file_format", "read_model_metadata": "file_format",
    "save_model": "file_format", "load_model": "file_format",
    # the torch network
    "ActinnClassifier": "network", "GeneLinear": "network", "gene_means": "network",
    "gene_product": "network", "sparse_linear": "network", "to_torch_csr": "network",
    # training pieces
    "WeightL2Adam": "training", "_DivergenceGuard": "training",
    "_balanced_weights": "training", "RAW_COUNT_ROW_SUM": "training",
    # the DeepChem model
    "ACTINNModel": "actinn_model", "refuse_unknown_keywords": "actinn_model",
    # the one inference path, and a saved model loaded for it alone (no DeepChem)
    "PREDICT_BATCH": "inference", "PREDICT_VALUES": "inference",
    "PredictionBlock": "inference", "predict_rows": "inference",
    "predict_blocks": "inference", "Reference": "inference", "load_reference": "file_format",
}

__all__ = [name for name in _EXPORTS if not name.startswith("_")]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)


if TYPE_CHECKING:  # static checkers see the eager imports
    from deepchem_actinn.model.actinn_model import ACTINNModel, refuse_unknown_keywords
    from deepchem_actinn.model.file_format import (
        MODEL_FILE,
        MODEL_FORMAT,
        MODEL_FORMAT_VERSION,
        WEIGHTS_FILE,
        _metadata_digest,
        load_model,
        load_reference,
        read_model_metadata,
        save_model,
    )
    from deepchem_actinn.model.inference import (
        PREDICT_BATCH,
        PREDICT_VALUES,
        PredictionBlock,
        Reference,
        predict_blocks,
        predict_rows,
    )
    from deepchem_actinn.model.network import (
        ActinnClassifier,
        GeneLinear,
        gene_means,
        gene_product,
        sparse_linear,
        to_torch_csr,
    )
    from deepchem_actinn.model.presets import (
        ACTINN_DEFAULTS,
        DEFAULT_PRESET,
        GENE_SELECTION_DEFAULTS,
        PRESETS,
        TRAINING_OPTIONS,
        describe_preset,
        featurizer_for,
        preset_settings,
    )
    from deepchem_actinn.model.training import (
        RAW_COUNT_ROW_SUM,
        WeightL2Adam,
        _balanced_weights,
        _DivergenceGuard,
    )
