"""The sparse first layer: CSR batches as torch tensors and a gene layer that reads them.

Single-cell counts are ~93% zeros. :func:`to_torch_csr` hands a CSR block to
torch without densifying it, and :func:`sparse_linear` is the first layer's
product on it: the same numbers as the dense layer, in a fraction of the time.
The dataset that keeps cells sparse end to end,
:class:`~deepchem_actinn.data.SparseCellDataset`, lives with the other
datasets in :mod:`deepchem_actinn.data` (and is importable from here).
"""

from __future__ import annotations

import warnings
from typing import Any, Optional, Tuple, Union

import numpy as np
import scipy.sparse as sp
import torch

# The sparse dataset lives with the other datasets; named here too, where it used to live.
from deepchem_actinn.data import SparseCellDataset, featurize_sparse  # noqa: F401


def to_torch_csr(X: sp.csr_matrix, device: Optional[Union[str, torch.device]] = None
                 ) -> torch.Tensor:
    """A scipy CSR matrix as a float32 ``torch.sparse_csr`` tensor (arrays shared on CPU).

    Examples
    --------
    >>> import scipy.sparse as sp, numpy as np
    >>> to_torch_csr(sp.csr_matrix(np.eye(2))).to_dense().tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    X = sp.csr_matrix(X, dtype=np.float32)
    # int32 indices where they fit (every mini-batch): no copies, and embedding_bag takes them.
    index = np.int32 if max(X.nnz, X.shape[1]) < np.iinfo(np.int32).max else np.int64
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(torch.from_numpy(X.indptr.astype(index, copy=False)),
                                       torch.from_numpy(X.indices.astype(index, copy=False)),
                                       torch.from_numpy(X.data), size=X.shape,
                                       dtype=torch.float32, device=device,
                                       check_invariants=False)


class _SparseLinearCPU(torch.autograd.Function):
    """``x @ weight + bias`` for CSR ``x`` on CPU, ``weight`` genes x units.

    Forward sums, for each cell, the weight rows of its non-zero genes;
    backward sums, for each gene, the output gradients of the cells that
    express it: both are ``embedding_bag`` gathers (vectorised, no dense
    input, no transposed copy of the weights). Only the weight and bias get
    gradients (cell counts are data).
    """

    @staticmethod
    def forward(ctx: Any, crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor,
                n_cols: int, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        out = torch.nn.functional.embedding_bag(
            col, weight, crow, mode="sum", per_sample_weights=values, include_last_offset=True)
        ctx.save_for_backward(crow, col, values)
        ctx.n_cols = n_cols
        return out + bias

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Tuple[Optional[torch.Tensor], ...]:
        crow, col, values = ctx.saved_tensors
        # The batch by gene (CSC): one bag of cells per gene.
        by_gene = sp.csr_matrix((values.numpy(), col.numpy(), crow.numpy()),
                                shape=(len(crow) - 1, ctx.n_cols)).tocsc()
        index = by_gene.indices.dtype  # int32 unless the batch is huge; offsets must match
        grad_weight = torch.nn.functional.embedding_bag(
            torch.from_numpy(by_gene.indices), grad.detach().contiguous(),
            torch.from_numpy(by_gene.indptr.astype(index, copy=False)), mode="sum",
            per_sample_weights=torch.from_numpy(by_gene.data), include_last_offset=True)
        return None, None, None, None, grad_weight, grad.sum(dim=0)


def sparse_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``x @ weight + bias`` for a sparse (CSR or COO) batch, without densifying it.

    ``weight`` is genes x units (the layout of
    :class:`~deepchem_actinn.model.GeneLinear`). Equal to the dense product
    up to float summation order, values and gradients.

    Examples
    --------
    >>> import torch, scipy.sparse as sp, numpy as np
    >>> weight, bias = torch.randn(4, 3), torch.randn(3)
    >>> X = sp.random(5, 4, density=0.5, format="csr", dtype=np.float32, random_state=0)
    >>> dense = torch.as_tensor(X.toarray()) @ weight + bias
    >>> torch.allclose(sparse_linear(to_torch_csr(X), weight, bias), dense, atol=1e-6)
    True
    """
    if x.layout != torch.sparse_csr:
        x = x.to_sparse_csr()
    if x.device.type == "cpu":
        out: torch.Tensor = _SparseLinearCPU.apply(
            x.crow_indices(), x.col_indices(), x.values(), int(x.shape[1]), weight, bias)
        return out
    # GPU: cuSPARSE; autograd differentiates sparse.mm with respect to the dense operand.
    return torch.sparse.mm(x, weight) + bias
