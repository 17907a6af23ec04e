"""ACTINN's network as plain torch: the gene layer (dense or sparse batches) and the MLP.

:class:`ActinnClassifier` is the ``nn.Module`` (genes -> 100 -> 50 -> 25 ->
types, ReLU). Its first layer, :class:`GeneLinear`, stores its weight genes x
units so a sparse batch (:func:`to_torch_csr`) is multiplied without being
densified (:func:`sparse_linear`: the same numbers as the dense product, in a
fraction of the time; single-cell counts are ~93% zeros). Nothing here
imports DeepChem.
"""

from __future__ import annotations

import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn as nn
import torch.nn.functional as F


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


class GeneLinear(nn.Module):
    """The layer that reads the genes: ``x @ weight + bias``, ``weight`` genes x units.

    The numbers of ``nn.Linear(n_genes, units)`` with ``weight`` stored
    transposed. Gene-major storage is what a sparse batch needs: its forward
    gathers the weight rows of each cell's expressed genes and its gradient
    arrives gene by gene (:func:`sparse_linear`),
    with no transposed copy of the network's largest matrix at each step.
    Dense batches are an ordinary matrix product.

    Examples
    --------
    >>> import torch
    >>> layer = GeneLinear(6, 2)
    >>> tuple(layer.weight.shape), tuple(layer(torch.ones(3, 6)).shape)
    ((6, 2), (3, 2))
    """

    def __init__(self, in_features: int, out_features: int,
                 generator: Optional[torch.Generator] = None) -> None:
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        # Xavier-uniform drawn as nn.Linear's (units x genes), so seeds keep their weights.
        weight = torch.empty(self.out_features, self.in_features)
        nn.init.xavier_uniform_(weight, generator=generator)
        self.weight = nn.Parameter(weight.t().contiguous())
        self.bias = nn.Parameter(torch.zeros(self.out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gene_product(x, self.weight, self.bias)


def gene_product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``x @ weight + bias`` for a dense or sparse batch (``weight`` genes x units)."""
    if x.layout == torch.strided:
        return torch.addmm(bias, x, weight)
    return sparse_linear(x, weight, bias)


def gene_means(x: torch.Tensor) -> torch.Tensor:
    """Each gene's mean over a dense or sparse (CSR) batch."""
    if x.layout == torch.strided:
        return x.mean(dim=0)
    if x.layout != torch.sparse_csr:
        x = x.to_sparse_csr()
    sums = torch.zeros(x.shape[1], dtype=x.dtype, device=x.device)
    return sums.index_add_(0, x.col_indices(), x.values()) / x.shape[0]


class ActinnClassifier(nn.Module):
    """ACTINN's multilayer perceptron as a plain ``torch.nn.Module``.

    Parameters
    ----------
    n_genes: int
        Input features (genes kept by preprocessing).
    n_classes: int
        Cell types.
    hidden_sizes: sequence of int
        Width of each hidden ReLU layer; ``(100, 50, 25)`` in ACTINN.
    input_dropout: float
        Dropout on the input genes while training (0 in ACTINN).
    dropout_seed: int, optional
        Seeds the dropout masks with a generator of the module's own, so a
        seeded model trains the same whatever else used torch's global
        random state; ``None`` draws from the global state.

    linear_skip: bool
        Add a second head, genes -> types (a multinomial logistic regression),
        beside the hidden layers. It reads the genes before input dropout;
        each head is trained as a classifier of its own.
    linear_weight: float
        The linear head's weight in the call (the hidden layers' is
        ``1 - linear_weight``); the call is the weighted sum of their logits.
    gene_dropout: float
        While training, each batch hides this fraction of genes from the
        linear head, which reads them at their batch mean, as a query
        lacking a gene reads its reference mean; the kept genes' deviations
        are scaled by ``1 / (1 - gene_dropout)``. Spreads the head's weight
        over co-expressed genes, so a query missing some loses less.

    Returns from ``forward``: class probabilities ``(B, 1, K)`` (softmax of
    the combined logits (:meth:`combine`) divided by the calibration temperature), the logits of
    each head ``(B, heads, K)`` (one head in ACTINN) and the last hidden layer
    ``(B, hidden_sizes[-1])``, the shapes DeepChem's classifiers use.

    Examples
    --------
    >>> import torch
    >>> net = ActinnClassifier(n_genes=30, n_classes=4)
    >>> probs, logits, embedding = net(torch.zeros(2, 30))
    >>> tuple(probs.shape), tuple(logits.shape), tuple(embedding.shape)
    ((2, 1, 4), (2, 1, 4), (2, 25))
    """

    temperature: torch.Tensor  # a buffer (saved with the weights)

    def __init__(self, n_genes: int, n_classes: int,
                 hidden_sizes: Sequence[int] = (100, 50, 25), input_dropout: float = 0.0,
                 generator: Optional[torch.Generator] = None,
                 dropout_seed: Optional[int] = None, linear_skip: bool = False,
                 linear_weight: float = 0.5, gene_dropout: float = 0.0) -> None:
        super().__init__()
        self.gene_dropout = float(gene_dropout)
        self.dropout_seed = dropout_seed
        self._dropout_generators: Dict[str, torch.Generator] = {}
        sizes = [int(n_genes)] + [int(h) for h in hidden_sizes] + [int(n_classes)]
        # The layer that sees the genes is a GeneLinear (sparse batches, gene-major weights).
        linear = [GeneLinear(a, b, generator) if i == 0 else nn.Linear(a, b)
                  for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True))]
        self.hidden = nn.ModuleList(linear[:-1])
        self.output = linear[-1]
        self.input_dropout = nn.Dropout(float(input_dropout))
        # Temperature scaling (1 = none); a buffer so it is saved with the weights.
        self.register_buffer("temperature", torch.ones(()))
        for layer in linear[1:]:
            nn.init.xavier_uniform_(layer.weight, generator=generator)
            nn.init.zeros_(layer.bias)
        # A second head beside the hidden layers: genes -> types, a multinomial logistic
        # regression inside the network, fed the genes before input dropout.
        self.skip: Optional[GeneLinear] = None
        self.linear_weight = float(linear_weight)
        if linear_skip:
            self.skip = GeneLinear(sizes[0], sizes[-1], generator)
            nn.init.zeros_(self.skip.weight)

    @classmethod
    def from_settings(cls, n_genes: int, n_classes: int, settings: Dict[str, Any],
                      generator: Optional[torch.Generator] = None,
                      dropout_seed: Optional[int] = None) -> ActinnClassifier:
        """The network a model's settings (:func:`~deepchem_actinn.model.preset_settings`)
        describe: what training builds and what loading a saved model rebuilds."""
        return cls(n_genes, n_classes, tuple(int(h) for h in settings["hidden_sizes"]),
                   float(settings["input_dropout"]), generator=generator,
                   dropout_seed=dropout_seed, linear_skip=bool(settings["linear_skip"]),
                   linear_weight=float(settings["linear_weight"]),
                   gene_dropout=float(settings["gene_dropout"]))

    def layers(self) -> List[nn.Module]:
        """The linear layers, input to output (the first one a :class:`GeneLinear`)."""
        return list(self.hidden) + [self.output]

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self._drop_inputs(x)
        for layer in self.hidden:
            h = F.relu(layer(h))
        heads = [self.output(h)]
        if self.skip is not None:
            heads.append(self._linear_head(x))
        logits = torch.stack(heads, dim=1)  # (B, heads, K); each head trained as a classifier
        probs = F.softmax(self.combine(logits) / self.temperature, dim=-1)
        return probs.unsqueeze(1), logits, h

    def _linear_head(self, x: torch.Tensor) -> torch.Tensor:
        assert self.skip is not None
        rate = self.gene_dropout
        if not self.training or rate == 0.0:
            return self.skip(x)
        weight = self.skip.weight
        keep = torch.rand(weight.shape[0], generator=self.dropout_generator(x.device),
                          device=x.device) >= rate
        scaled = weight * (keep.to(weight.dtype) / (1.0 - rate)).unsqueeze(1)
        # x' = m + keep * (x - m) / (1 - rate) with m the batch mean, so
        # x' @ W = x @ scaled + m @ (W - scaled).
        shift = gene_means(x).detach() @ (weight - scaled)
        return gene_product(x, scaled, self.skip.bias + shift)

    def combine(self, logits: torch.Tensor) -> torch.Tensor:
        """The logits of the call from each head's ``(B, heads, K)``: the hidden layers'
        and the linear head's, weighted ``1 - linear_weight`` and ``linear_weight`` (a
        weighted product of their probabilities)."""
        if logits.shape[1] == 1:
            return logits[:, 0]
        return (1.0 - self.linear_weight) * logits[:, 0] + self.linear_weight * logits[:, 1]

    def dropout_generator(self, device: torch.device) -> Optional[torch.Generator]:
        """The seeded generator of the dropout masks on ``device`` (made on first use)."""
        if self.dropout_seed is None:
            return None
        key = str(device)
        if key not in self._dropout_generators:
            generator = torch.Generator(device=device)
            generator.manual_seed(int(self.dropout_seed))
            self._dropout_generators[key] = generator
        return self._dropout_generators[key]

    def _drop_inputs(self, x: torch.Tensor) -> torch.Tensor:
        rate = float(self.input_dropout.p)
        if not self.training or rate == 0.0:
            return x
        if x.layout == torch.sparse_csr and self.dropout_seed is not None:
            # Dropping a zero changes nothing, so only the stored values are masked and the
            # batch stays sparse; the mask is the dense path's (same draws, same model).
            keep = torch.rand(x.shape, generator=self.dropout_generator(x.device),
                              device=x.device) >= rate
            rows = torch.repeat_interleave(torch.arange(x.shape[0], device=x.device),
                                           x.crow_indices().diff())
            kept = keep[rows, x.col_indices()]
            return torch.sparse_csr_tensor(x.crow_indices(), x.col_indices(),
                                           x.values() * kept / (1.0 - rate), x.shape,
                                           check_invariants=False)  # x's own structure
        if x.layout != torch.strided:
            x = x.to_dense()
        if self.dropout_seed is None:
            return self.input_dropout(x)
        keep = torch.rand(x.shape, generator=self.dropout_generator(x.device),
                          device=x.device) >= rate
        return x * keep / (1.0 - rate)
