"""The one inference path, in torch alone: what every prediction of the package runs.

:func:`predict_blocks` turns featurised cells into probabilities, logits and
embeddings block by block. :class:`ACTINNModel.predict_blocks
<deepchem_actinn.model.ACTINNModel.predict_blocks>` calls it, and so does a
:class:`Reference`: a saved model loaded for annotation only
(:func:`~deepchem_actinn.model.file_format.load_reference`), without DeepChem,
which is how ``deepchem-actinn predict`` and ``annotate(data, "model_dir")``
start in a fraction of the time the DeepChem model takes to import.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, Optional, Tuple, Union, cast

import numpy as np
import scipy.sparse as sp
import torch

from deepchem_actinn.model.network import ActinnClassifier, to_torch_csr
from deepchem_actinn.preprocessing import ScRNAFeaturizer

PREDICT_BATCH = 8192
#: Most probabilities (cells x classes) one prediction block holds: PREDICT_BATCH cells up
#: to 2,048 classes, fewer cells beyond, so 30,000 classes never need cells x classes.
PREDICT_VALUES = 1 << 24

#: What :func:`predict_blocks` yields: probabilities, logits, embedding.
PredictionBlock = Tuple[np.ndarray, np.ndarray, np.ndarray]


def predict_rows(n_classes: int) -> int:
    """Cells per prediction block: at most :data:`PREDICT_VALUES` probabilities each.

    >>> predict_rows(4), predict_rows(30_000)
    (8192, 559)
    """
    return max(1, min(PREDICT_BATCH, PREDICT_VALUES // max(int(n_classes), 1)))


def matrices(data: Any) -> Iterator[Any]:
    """The cells x genes matrices of ``data``: itself, a dataset's ``X``, or shard windows."""
    if hasattr(data, "windows"):  # ShardedCellDataset: no X in memory
        for X, _, _ in data.windows(shuffle=False):
            yield X
    elif hasattr(data, "X") and not isinstance(data, np.ndarray) and not sp.issparse(data):
        yield data.X  # a DeepChem dataset
    else:
        yield data


def predict_blocks(module: torch.nn.Module, data: Any, device: torch.device, n_classes: int,
                   rows: Optional[int] = None) -> Iterator[PredictionBlock]:
    """``(probabilities, logits, embedding)`` of featurised cells, one block at a time.

    ``data`` is a cells x genes matrix (dense or scipy sparse) or a dataset
    (its ``X``; a sharded one shard window after another, in order). A block
    holds ``rows`` cells (default :func:`predict_rows`). Every input takes the
    same sparse path in canonical CSR form, so dense and sparse copies of the
    cells get identical numbers (dense BLAS and the sparse first layer sum in
    different orders). ``module`` (an :class:`ActinnClassifier`, possibly
    wrapped by DDP) is in evaluation mode while a block is computed.

    >>> net = ActinnClassifier(5, 3, generator=torch.Generator().manual_seed(0))
    >>> p, z, h = next(predict_blocks(net, np.ones((2, 5)), torch.device("cpu"), 3))
    >>> p.shape, z.shape, h.shape, bool(np.allclose(p.sum(axis=1), 1))
    ((2, 3), (2, 3), (2, 25), True)
    """
    step = int(rows) if rows else predict_rows(n_classes)
    net = cast(ActinnClassifier, getattr(module, "module", module))  # DDP wraps the network
    for X in matrices(data):
        for start in range(0, X.shape[0], step):
            block = sp.csr_matrix(X[start:start + step], dtype=np.float32)
            block.sum_duplicates()  # sorted column indices within each cell
            block.eliminate_zeros()
            was_training = module.training
            module.eval()
            try:
                with torch.no_grad():  # per block: a suspended generator must not hold it
                    p, z, h = module(to_torch_csr(block, device))
            finally:
                module.train(was_training)
            # Logits: the heads combined, as the call combines them.
            yield (p[:, 0, :].cpu().numpy(), net.combine(z).cpu().numpy(), h.cpu().numpy())


class Reference:
    """A trained model loaded to annotate cells, and nothing else (no DeepChem, no training).

    What :func:`~deepchem_actinn.annotate` and ``deepchem-actinn predict``
    need of a model: the network, the fitted featurizer, the class names and
    the settings it was trained with. Built by
    :func:`~deepchem_actinn.model.file_format.load_reference`; it gives the
    same calls as :meth:`ACTINNModel.load <deepchem_actinn.model.ACTINNModel.load>`
    of the same folder, through the same :func:`predict_blocks`.
    """

    def __init__(self, network: ActinnClassifier, featurizer: ScRNAFeaturizer,
                 classes: np.ndarray, preset: str, settings: Dict[str, Any],
                 device: torch.device, loaded_from: Optional[str] = None) -> None:
        self.model = network.to(device).eval()
        self.featurizer = featurizer
        self.classes = np.asarray(classes, dtype=object)
        self.n_classes = len(self.classes)
        self.n_genes = int(len(featurizer.genes_)) if featurizer.genes_ is not None else 0
        self.preset = preset
        self.settings = settings
        self.device = device
        self.loaded_from = loaded_from

    def __repr__(self) -> str:
        return (f"Reference(preset={self.preset!r}, genes={self.n_genes}, "
                f"classes={self.n_classes}, loaded_from={self.loaded_from!r})")

    @property
    def genes(self) -> Optional[np.ndarray]:
        """Input gene names (from the featurizer)."""
        return self.featurizer.genes_

    def predict_blocks(self, data: Any, rows: Optional[int] = None) -> Iterator[PredictionBlock]:
        """:func:`predict_blocks` with this reference's network."""
        return predict_blocks(self.model, data, self.device, self.n_classes, rows)


def default_device(device: Optional[Union[str, torch.device]] = None) -> torch.device:
    """``device``, or the GPU when there is one (as DeepChem's ``TorchModel`` chooses)."""
    if device is None or (isinstance(device, str) and device == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    return torch.device(device)
