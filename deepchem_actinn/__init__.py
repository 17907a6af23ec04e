"""ACTINN cell-type identification for single-cell RNA-seq, built on DeepChem.

Names are imported lazily, so ``deepchem_actinn.cli`` can start (and hide
DeepChem's import-time messages) before DeepChem is loaded.

>>> import deepchem_actinn as da
>>> sorted(da.PRESETS)[0]
'actinn'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from deepchem_actinn.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "ActinnError": "errors", "GeneOverlapError": "errors", "InputError": "errors",
    "ModelFileError": "errors", "MissingDependencyError": "errors",
    "OutputError": "errors", "TrainingError": "errors",
    "CountMatrix": "io", "join_labels": "io", "read_counts": "io", "read_labels": "io",
    "detect_format": "io", "from_anndata": "io", "write_counts": "io",
    "TrainingHistory": "history",
    "ScRNAFeaturizer": "preprocessing",
    "CellDataset": "data", "ScRNALoader": "data", "StratifiedSplitter": "data",
    "SparseCellDataset": "data", "ShardedCellDataset": "data",
    "train_streaming": "train", "predict_streaming": "annotation",
    "PRESETS": "model", "ACTINNModel": "model", "ActinnClassifier": "model",
    "AnnotationResult": "annotation", "annotate": "annotation", "train_reference": "train",
    "macro_f1_metric": "evaluation",
}

__all__ = ["__version__", *_EXPORTS]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)


if TYPE_CHECKING:  # static checkers see the eager imports
    from deepchem_actinn.annotation import AnnotationResult, annotate, predict_streaming
    from deepchem_actinn.data import (
        CellDataset,
        ScRNALoader,
        ShardedCellDataset,
        SparseCellDataset,
        StratifiedSplitter,
    )
    from deepchem_actinn.errors import (
        ActinnError,
        GeneOverlapError,
        InputError,
        MissingDependencyError,
        ModelFileError,
        OutputError,
        TrainingError,
    )
    from deepchem_actinn.evaluation import macro_f1_metric
    from deepchem_actinn.history import TrainingHistory
    from deepchem_actinn.io import (
        CountMatrix,
        detect_format,
        from_anndata,
        join_labels,
        read_counts,
        read_labels,
        write_counts,
    )
    from deepchem_actinn.model import PRESETS, ActinnClassifier, ACTINNModel
    from deepchem_actinn.preprocessing import ScRNAFeaturizer
    from deepchem_actinn.train import train_reference, train_streaming
