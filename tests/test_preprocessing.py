"""ScRNAFeaturizer: ACTINN's normalisation and gene filters, gene alignment, edge cases."""

import os
import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import synthetic_counts

from deepchem_actinn.errors import GeneOverlapError
from deepchem_actinn.io import CountMatrix, read_counts
from deepchem_actinn.preprocessing import (
    PreprocessingWarning,
    ScRNAFeaturizer,
    gene_statistics,
    normalize_log2,
    select_genes,
)

DATA = os.path.join(os.path.dirname(__file__), "fixtures")


def actinn_scale_set(counts_genes_x_cells):
    """Original ACTINN ``scale_sets`` for one set (float64): genes x cells in, kept rows out."""
    X = np.asarray(counts_genes_x_cells, dtype=np.float64)
    X = np.divide(X, np.sum(X, axis=0, keepdims=True)) * 10000
    X = np.log2(X + 1)
    expr = np.sum(X, axis=1)
    keep = np.flatnonzero((expr >= np.percentile(expr, 1)) & (expr <= np.percentile(expr, 99)))
    cv = np.std(X[keep], axis=1) / np.mean(X[keep], axis=1)
    keep = keep[(cv >= np.percentile(cv, 1)) & (cv <= np.percentile(cv, 99))]
    return keep, X[keep]


# Two cells of 10,000 counts (scale factor 1), so log2(count + 1) is exact by hand.
#            g0  g1  g2  g3  g4  g5 (the rest of the 10,000)
HAND = np.array([[1, 3, 15, 7, 31, 9943],
                 [0, 1, 0, 7, 3, 9989]], dtype=np.float64)
HAND_GENES = ["g0", "g1", "g2", "g3", "g4", "g5"]


# -- hand-computed values -----------------------------------------------------------


def test_normalize_log2_by_hand():
    counts = np.array([[1, 3, 7, 15, 9974],        # library 10,000: scale 1
                       [2, 6, 14, 30, 19948],      # library 20,000: scale 1/2, same profile
                       [0, 0, 0, 0, 0]], dtype=np.float64)
    out = normalize_log2(counts)
    expected_row = [1.0, 2.0, 3.0, 4.0, np.log2(9975.0)]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], expected_row, rtol=1e-6)
    np.testing.assert_allclose(out[1], expected_row, rtol=1e-6)
    assert (out[2] == 0).all()  # a zero-count cell stays zero, never NaN


def test_gene_filters_by_hand():
    # log2(x+1): g0 (1,0) g1 (2,1) g2 (4,0) g3 (3,3) g4 (5,2) g5 (~13.3,~13.3)
    # totals 1, 3, 4, 6, 7, ~26.6: with 6 distinct totals P1/P99 drop the min (g0) and max (g5).
    # CV (std ddof 0 / mean) of the rest: g1 1/3, g2 1, g3 0, g4 3/7 -> drop g3 (min) and g2 (max).
    featurizer = ScRNAFeaturizer().fit(HAND, HAND_GENES)
    assert featurizer.genes_.tolist() == ["G1", "G4"]
    assert featurizer.input_genes_.tolist() == [g.upper() for g in HAND_GENES]
    np.testing.assert_allclose(featurizer.transform(HAND, HAND_GENES), [[2, 5], [1, 2]],
                               rtol=1e-6)
    total, cv = gene_statistics(normalize_log2(HAND))
    np.testing.assert_allclose(total[:5], [1, 3, 4, 6, 7], rtol=1e-6)
    np.testing.assert_allclose(cv[:5], [1, 1 / 3, 1, 0, 3 / 7], rtol=1e-6, atol=1e-7)


def test_gene_filters_match_original_actinn_percentiles():
    # Rates high enough that no gene is seen in a single cell: no ties at the percentiles.
    rng = np.random.default_rng(3)
    counts = rng.poisson(rng.gamma(2.0, 3.0, size=300) + 0.5, size=(80, 300))
    genes = [f"g{i}" for i in range(300)]
    keep, values = actinn_scale_set(counts.T)
    featurizer = ScRNAFeaturizer().fit(counts, genes)
    assert featurizer.genes_.tolist() == [f"G{i}" for i in keep]
    assert 280 < len(keep) < 300
    np.testing.assert_allclose(featurizer.transform(counts, genes), values.T, rtol=1e-5)


def test_select_genes_uses_np_percentile_bounds():
    rng = np.random.default_rng(0)
    total = rng.uniform(1, 100, size=500)
    cv = rng.uniform(0.1, 5, size=500)
    lo, hi = np.percentile(total, [1, 99])
    first = (total >= lo) & (total <= hi)
    cv_lo, cv_hi = np.percentile(cv[first], [1, 99])
    expected = np.flatnonzero(first & (cv >= cv_lo) & (cv <= cv_hi))
    np.testing.assert_array_equal(select_genes(total, cv), expected)
    assert len(expected) == 500 - 10 - 10  # 5 + 5 by total, then 5 + 5 by CV


def test_ties_at_a_percentile_are_all_kept():
    # Genes seen in one cell all have CV sqrt(n - 1): a tie at the 99th percentile.
    rng = np.random.default_rng(1)
    n = 50
    counts = rng.poisson(5.0, size=(n, 200)).astype(float) + 1
    counts[:, 170:] = 0  # 170-179 never expressed, so P1 of total expression is 0
    for j in range(180, 200):  # 180-199 seen in one cell each, with distinct values
        counts[j - 180, j] = rng.integers(50, 100)
    genes = [f"g{i}" for i in range(200)]
    featurizer = ScRNAFeaturizer().fit(counts, genes)
    singletons = {f"G{j}" for j in range(180, 200)}
    kept = singletons & set(featurizer.genes_)
    assert kept in (set(), singletons)  # all or none, never an arbitrary part
    assert kept == singletons  # they sit at P99 exactly, and p1 <= cv <= p99 keeps them
    # The decision does not depend on summation order (sparse input, cell order).
    assert ScRNAFeaturizer().fit(sp.csr_matrix(counts), genes).genes_.tolist() == \
        featurizer.genes_.tolist()
    assert ScRNAFeaturizer().fit(counts[::-1], genes).genes_.tolist() == \
        featurizer.genes_.tolist()


def test_regression_against_deepchem_actinn_featurizer(samples):
    """DeepChem's ACTINNFeaturizer output on sample_1 is ours on the genes it keeps.

    DeepChem keeps 1443 genes, we keep 1456: the 13 extra are genes seen in a single
    cell, whose CV is exactly sqrt(999), the 99th percentile; float32 rounding makes
    DeepChem keep an arbitrary part of that tie, we keep all of it.
    """
    reference = np.load(os.path.join(DATA, "actinn_feat_ref_output.npz"))["arr_0"]
    assert reference.shape == (1000, 1443)
    matrix = read_counts(samples.sample_1_counts)
    featurizer = ScRNAFeaturizer().fit(matrix)
    ours = featurizer.transform(matrix)
    assert ours.shape == (1000, 1456)
    # Both keep genes in input order: walk ours, matching each reference column in turn.
    skipped, position = [], 0
    for column in reference.T:
        while not np.allclose(ours[:, position], column, rtol=1e-5, atol=1e-5):
            skipped.append(position)
            position += 1
        position += 1
    skipped.extend(range(position, ours.shape[1]))
    assert len(skipped) == 13
    n_cells_expressing = (ours[:, skipped] > 0).sum(axis=0)
    assert (n_cells_expressing == 1).all()


# -- fitted on training cells only ----------------------------------------------------


def test_train_only_fit_ignores_the_test_cells():
    counts, _ = synthetic_counts(n_cells=150, n_genes=200, seed=2)
    genes = [f"g{i}" for i in range(200)]
    train, test_a = counts[:100], counts[100:]
    test_b = np.random.default_rng(9).poisson(3.0, size=(70, 200))
    featurizer = ScRNAFeaturizer().fit(train, genes)
    genes_before = featurizer.genes_.copy()
    train_features = featurizer.transform(train, genes)
    out_a = featurizer.transform(test_a, genes)
    out_b = featurizer.transform(test_b, genes)
    assert out_a.shape == (50, len(genes_before)) and out_b.shape == (70, len(genes_before))
    np.testing.assert_array_equal(featurizer.genes_, genes_before)
    np.testing.assert_array_equal(featurizer.transform(train, genes), train_features)
    # restrict_to depends on the query's gene names, never on its cells.
    names = genes[:150]
    r1 = ScRNAFeaturizer().fit(train, genes, restrict_to=names)
    r2 = ScRNAFeaturizer().fit(train, genes, restrict_to=names)
    np.testing.assert_array_equal(r1.genes_, r2.genes_)
    assert set(r1.input_genes_) == {g.upper() for g in names}


def test_joint_mode_differs_and_sorts_common_genes():
    counts, _ = synthetic_counts(n_cells=150, n_genes=200, seed=2)
    genes = [f"g{i}" for i in range(200)]
    rng = np.random.default_rng(5)
    order = rng.permutation(200)
    train = counts[:100][:, order]
    train_genes = [genes[i] for i in order]  # unsorted
    query_genes = genes[20:]
    query_a = counts[100:, 20:]
    query_b = rng.poisson(0.05, size=(300, 180))  # very different cells
    joint_a = ScRNAFeaturizer().fit(train, train_genes, joint_with=(query_a, query_genes))
    joint_b = ScRNAFeaturizer().fit(train, train_genes, joint_with=(query_b, query_genes))
    alone = ScRNAFeaturizer().fit(train, train_genes, restrict_to=query_genes)
    assert joint_a.joint_ and not alone.joint_
    assert joint_a.input_genes_.tolist() == sorted(g.upper() for g in query_genes)
    assert list(joint_a.genes_) == sorted(joint_a.genes_)
    assert set(joint_a.genes_) != set(joint_b.genes_)  # the query cells shape the joint filter
    assert set(alone.input_genes_) == set(joint_a.input_genes_)
    assert set(joint_b.genes_) != set(alone.genes_)


# -- gene alignment ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted():
    counts, _ = synthetic_counts(n_cells=120, n_genes=200, seed=4)
    genes = np.array([f"g{i}" for i in range(200)], dtype=object)
    return ScRNAFeaturizer().fit(counts, genes), counts, genes


def test_transform_reorders_query_genes(fitted):
    featurizer, counts, genes = fitted
    order = np.random.default_rng(0).permutation(len(genes))
    np.testing.assert_array_equal(featurizer.transform(counts[:, order], genes[order]),
                                  featurizer.transform(counts, genes))


def test_dense_features_are_row_major(fitted):
    """Mini-batches gather rows: a column-major result made dense epochs ~2x slower."""
    featurizer, counts, genes = fitted
    dense = featurizer.transform(counts, genes)
    assert dense.dtype == np.float32 and dense.flags["C_CONTIGUOUS"]
    assert featurizer.transform(sp.csr_matrix(counts), genes).flags["C_CONTIGUOUS"]


def test_missing_genes_become_zeros_and_library_uses_present_genes(fitted):
    featurizer, counts, genes = fitted
    model_genes = list(featurizer.genes_)
    missing = {model_genes[0].lower(), model_genes[5].lower(), model_genes[10].lower()}
    keep = np.array([g not in missing for g in genes])
    out = featurizer.transform(counts[:, keep], genes[keep])
    for name in missing:
        assert (out[:, model_genes.index(name.upper())] == 0).all()
    # Library size: the query's counts over the fitted input genes it holds.
    library = counts[:, keep].sum(axis=1).astype(np.float64)
    column = model_genes.index(model_genes[1])
    expected = np.log2(counts[:, genes.tolist().index(model_genes[1].lower())] / library * 1e4 + 1)
    np.testing.assert_allclose(out[:, column], expected, rtol=1e-5)


def test_extra_query_genes_are_dropped_and_do_not_shift_library(fitted):
    featurizer, counts, genes = fitted
    extra = np.random.default_rng(1).poisson(500.0, size=(counts.shape[0], 30))
    wider = np.hstack([extra[:, :10], counts, extra[:, 10:]])
    wider_genes = np.concatenate([[f"x{i}" for i in range(10)], genes,
                                  [f"x{i}" for i in range(10, 30)]])
    np.testing.assert_array_equal(featurizer.transform(wider, wider_genes),
                                  featurizer.transform(counts, genes))


def test_overlap_report(fitted):
    featurizer, _, genes = fitted
    n_model = len(featurizer.genes_)
    query = [g.lower() for g in featurizer.genes_[: n_model // 2]] + ["NOT_A_GENE"]
    report = featurizer.overlap(query)
    assert report.n_model_genes == n_model
    assert report.n_found == n_model // 2
    assert report.n_query_genes == len(query)
    assert report.n_input_genes == len(genes)
    assert f"{n_model // 2} of {n_model} model genes" in report.summary()


def test_too_little_overlap_is_an_error(fitted):
    featurizer, counts, genes = fitted
    few = counts[:, :5]
    matrix = CountMatrix(few, genes[:5], [f"c{i}" for i in range(len(few))],
                         source="query.h5")
    with pytest.raises(GeneOverlapError) as info:
        featurizer.transform(matrix)
    message = str(info.value)
    assert message.startswith("query.h5: too few genes shared") and "\n" not in message
    with pytest.raises(GeneOverlapError):
        featurizer.transform(counts, [f"other{i}" for i in range(len(genes))])


def test_low_overlap_warns(fitted):
    featurizer, counts, genes = fitted
    keep = np.arange(len(genes)) % 3 == 0  # a third of the genes
    with pytest.warns(PreprocessingWarning, match="retrain restricted"):
        featurizer.transform(counts[:, keep], genes[keep])


def test_restrict_to_uses_only_shared_genes():
    counts, _ = synthetic_counts(n_cells=90, n_genes=150, seed=6)
    genes = [f"Gene{i}" for i in range(150)]
    query_genes = [f"GENE{i}" for i in range(40, 150)] + ["ONLY_IN_QUERY"]
    featurizer = ScRNAFeaturizer().fit(counts, genes, restrict_to=query_genes)
    assert featurizer.input_genes_.tolist() == [f"GENE{i}" for i in range(40, 150)]
    assert set(featurizer.genes_) <= set(query_genes)
    # Library sizes are over the shared genes only.
    sub = counts[:, 40:]
    expected = ScRNAFeaturizer().fit(sub, genes[40:])
    np.testing.assert_array_equal(featurizer.genes_, expected.genes_)
    with pytest.raises(GeneOverlapError):
        ScRNAFeaturizer().fit(counts, genes, restrict_to=["NOPE"])


# -- zero counts, all-zero genes, sparse input --------------------------------------------


def test_zero_count_cells_never_give_nan():
    counts, _ = synthetic_counts(n_cells=100, n_genes=150, seed=7)
    genes = [f"g{i}" for i in range(150)]
    with_empty = counts.copy().astype(float)
    with_empty[[3, 50]] = 0
    with pytest.warns(PreprocessingWarning, match="2 cells have zero counts"):
        featurizer = ScRNAFeaturizer().fit(with_empty, genes)
    reference = ScRNAFeaturizer().fit(np.delete(with_empty, [3, 50], axis=0), genes)
    np.testing.assert_array_equal(featurizer.genes_, reference.genes_)
    out = featurizer.transform(with_empty, genes)
    assert np.isfinite(out).all()
    assert (out[[3, 50]] == 0).all() and (out[[0, 1]] > 0).any()


def test_all_zero_genes_do_not_break_filtering():
    counts, _ = synthetic_counts(n_cells=100, n_genes=200, seed=8)
    counts = counts.astype(float)
    counts[:, :30] = 0  # 15% of genes never expressed: P1 of total expression is 0
    genes = [f"g{i}" for i in range(200)]
    featurizer = ScRNAFeaturizer().fit(counts, genes)
    assert 100 < len(featurizer.genes_) < 170
    assert not set(featurizer.genes_) & {f"G{i}" for i in range(30)}
    assert np.isfinite(featurizer.transform(counts, genes)).all()


def test_sparse_input_gives_identical_results():
    counts, _ = synthetic_counts(n_cells=120, n_genes=200, seed=9)
    genes = [f"g{i}" for i in range(200)]
    dense = ScRNAFeaturizer().fit(counts, genes)
    sparse = ScRNAFeaturizer().fit(sp.csr_matrix(counts), genes)
    np.testing.assert_array_equal(dense.genes_, sparse.genes_)
    query = counts[:, ::-1][:, 10:]  # reordered, 10 genes missing
    query_genes = genes[::-1][10:]
    expected = dense.transform(query, query_genes)
    np.testing.assert_allclose(dense.transform(sp.csr_matrix(query), query_genes), expected,
                               rtol=1e-6)
    as_sparse = dense.transform(sp.csr_matrix(query), query_genes, sparse_output=True)
    assert sp.issparse(as_sparse)
    np.testing.assert_allclose(as_sparse.toarray(), expected, rtol=1e-6)


def test_sparse_normalisation_takes_non_canonical_csr():
    """Duplicates, unsorted columns, stored zeros and empty cells: the dense numbers."""
    dense = np.array([[0, 3, 1, 0], [0, 0, 0, 0], [2, 0, 5, 7]], dtype=np.float64)
    # Cell 0: columns 2, 1, 1 (unsorted, a duplicate: 2 + 1 = 3); cell 1: one stored zero;
    # cell 2: columns 3, 0, 2, 2 (unsorted, 4 + 1 = 5 at column 2).
    messy = sp.csr_matrix((np.array([1, 2, 1, 0, 7, 2, 4, 1], np.float64),
                           np.array([2, 1, 1, 0, 3, 0, 2, 2]), np.array([0, 3, 4, 8])),
                          shape=(3, 4))
    assert not messy.has_canonical_format
    out = normalize_log2(messy)
    assert out.has_canonical_format and out.dtype == np.float32
    np.testing.assert_array_equal(out.toarray(), normalize_log2(dense))
    assert out[1].nnz == 0  # the empty cell stores nothing
    total, cv = gene_statistics(out)
    dense_total, dense_cv = gene_statistics(normalize_log2(dense))
    np.testing.assert_array_equal(total, dense_total)
    np.testing.assert_allclose(cv, dense_cv, rtol=1e-12)


def test_sparse_input_is_never_densified():
    rng = np.random.default_rng(0)
    n_cells, n_genes = 1000, 40_000  # dense float32 would take 160 MB
    X = sp.random(n_cells, n_genes, density=0.005, format="csr", random_state=1,
                  data_rvs=lambda k: rng.integers(1, 30, size=k)).astype(np.float32)
    genes = [f"g{i}" for i in range(n_genes)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PreprocessingWarning)
        tracemalloc.start()
        featurizer = ScRNAFeaturizer().fit(X, genes)
        out = featurizer.transform(X, genes, sparse_output=True)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert sp.issparse(out) and out.shape == (n_cells, len(featurizer.genes_))
    assert peak < 40e6, f"peak {peak / 1e6:.0f} MB"


# -- persistence ------------------------------------------------------------------------------


def test_to_dict_round_trip(fitted):
    featurizer, counts, genes = fitted
    state = featurizer.to_dict()
    again = ScRNAFeaturizer.from_dict(state)
    np.testing.assert_array_equal(again.transform(counts, genes),
                                  featurizer.transform(counts, genes))
    with pytest.raises(RuntimeError, match="not fitted"):
        ScRNAFeaturizer().transform(counts, genes)
