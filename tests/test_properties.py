"""Property tests of ACTINN's preprocessing (hypothesis).

For any non-negative count matrix, zero rows and columns included:
normalisation never yields NaN or inf, each non-empty cell sums to 10,000
before the log, and the fitted genes and the transformed cells do not
depend on the order of cells or genes.
"""

import warnings

import numpy as np
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from deepchem_actinn.errors import ActinnError
from deepchem_actinn.preprocessing import (
    TARGET_SUM,
    ScRNAFeaturizer,
    gene_statistics,
    normalize_log2,
    select_genes,
)

FAST = settings(max_examples=50, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Mostly small counts with many zeros, as in scRNA-seq, plus the odd huge one.
COUNT = st.one_of(st.just(0), st.integers(0, 5), st.integers(0, 300), st.integers(0, 10**6))


def count_matrices(max_cells=25, max_genes=40):
    shape = st.tuples(st.integers(1, max_cells), st.integers(1, max_genes))
    return arrays(np.int64, shape, elements=COUNT)


@st.composite
def matrix_with_zero_rows_and_columns(draw):
    X = draw(count_matrices())
    rows = draw(st.lists(st.integers(0, X.shape[0] - 1), max_size=3))
    columns = draw(st.lists(st.integers(0, X.shape[1] - 1), max_size=3))
    X[rows, :] = 0
    X[:, columns] = 0
    return X


@st.composite
def matrix_and_permutations(draw, min_cells=2, min_genes=3):
    shape = st.tuples(st.integers(min_cells, 25), st.integers(min_genes, 40))
    X = draw(arrays(np.int64, shape, elements=COUNT))
    cells = draw(st.permutations(range(X.shape[0])))
    genes = draw(st.permutations(range(X.shape[1])))
    return X, np.asarray(cells), np.asarray(genes)


def gene_names(n):
    return np.asarray([f"G{i}" for i in range(n)], dtype=object)


@FAST
@given(matrix_with_zero_rows_and_columns())
def test_normalisation_is_finite_and_sums_to_target(X):
    L = normalize_log2(X)
    assert L.shape == X.shape and L.dtype == np.float32
    assert np.isfinite(L).all()
    assert (L >= 0).all()
    library = X.sum(axis=1)
    totals = (np.exp2(L.astype(np.float64)) - 1.0).sum(axis=1)
    np.testing.assert_allclose(totals[library > 0], TARGET_SUM, rtol=1e-4)
    assert (L[library == 0] == 0).all()  # an empty cell stays empty, never NaN


@FAST
@given(matrix_with_zero_rows_and_columns())
def test_sparse_normalisation_matches_dense(X):
    dense = normalize_log2(X)
    sparse = normalize_log2(sp.csr_matrix(X))
    assert sp.issparse(sparse)
    np.testing.assert_allclose(sparse.toarray(), dense, rtol=1e-6, atol=1e-6)


@FAST
@given(matrix_with_zero_rows_and_columns())
def test_gene_statistics_have_no_inf_and_nan_only_for_unexpressed_genes(X):
    total, cv = gene_statistics(normalize_log2(X))
    assert np.isfinite(total).all()
    expressed = total > 0
    assert np.isfinite(cv[expressed]).all()
    assert np.isnan(cv[~expressed]).all()
    kept = select_genes(total, cv)
    assert expressed[kept].all()  # a never-expressed gene is never kept


@FAST
@given(matrix_with_zero_rows_and_columns(), matrix_with_zero_rows_and_columns())
def test_featurizer_is_finite_or_refuses_clearly(X, query):
    genes = gene_names(X.shape[1])
    featurizer = ScRNAFeaturizer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            featurizer.fit(X, genes)
        except ActinnError as error:
            assert "\n" not in str(error)
            return
        out = featurizer.transform(X, genes)
        assert np.isfinite(out).all() and out.shape == (X.shape[0], len(featurizer.genes_))
        # A query with other genes, some shared, some missing (zero-filled).
        query_genes = gene_names(query.shape[1])
        try:
            other = featurizer.transform(query, query_genes)
        except ActinnError:
            return  # too small an overlap: refused with a GeneOverlapError
        assert np.isfinite(other).all() and other.shape[0] == query.shape[0]


@FAST
@given(matrix_and_permutations())
def test_fit_is_invariant_to_cell_and_gene_order(case):
    X, cells, genes = case
    names = gene_names(X.shape[1])
    results = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for matrix, gene_list in ((X, names), (X[cells][:, genes], names[genes])):
            try:
                results.append(set(ScRNAFeaturizer().fit(matrix, gene_list).genes_))
            except ActinnError as error:
                results.append(type(error))
    assert results[0] == results[1]


@FAST
@given(matrix_and_permutations())
def test_transform_follows_cell_and_gene_order(case):
    X, cells, genes = case
    names = gene_names(X.shape[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            featurizer = ScRNAFeaturizer().fit(X, names)
        except ActinnError:
            return
        plain = featurizer.transform(X, names)
        permuted = featurizer.transform(X[cells][:, genes], names[genes])
    # Output columns follow the model's genes whatever the query's gene order;
    # output rows follow the query's cells.
    np.testing.assert_allclose(permuted, plain[cells], rtol=1e-6, atol=1e-6)
