"""Former home of the sparse path, kept so existing imports keep working.

The sparse dataset lives with the other datasets
(:class:`deepchem_actinn.data.SparseCellDataset`, :func:`deepchem_actinn.data.featurize_sparse`),
the sparse product of the gene layer with the network
(:func:`deepchem_actinn.model.network.to_torch_csr`,
:func:`deepchem_actinn.model.network.sparse_linear`).
"""

from deepchem_actinn.data.cells import SparseCellDataset, featurize_sparse
from deepchem_actinn.model.network import sparse_linear, to_torch_csr

__all__ = ["SparseCellDataset", "featurize_sparse", "sparse_linear", "to_torch_csr"]
