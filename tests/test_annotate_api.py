"""``annotate()`` from every entry point, ``to_adata``, thresholds, gene identifiers.

A tiny reference is trained once; the same query, converted to every format
with ``deepchem-actinn convert`` and also passed as AnnData, DataFrame and
CountMatrix, must get exactly the same labels, probabilities and embedding.
"""

import os
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import write_labels

import deepchem_actinn as da
from deepchem_actinn import cli
from deepchem_actinn.errors import GeneOverlapError
from deepchem_actinn.io import CountMatrix
from deepchem_actinn.validation import UNASSIGNED

anndata = pytest.importorskip("anndata")

N_TYPES, N_GENES = 5, 150
TYPES = [f"type {chr(65 + t)}" for t in range(N_TYPES)]


def sparse_counts(n_cells, seed):
    """Mostly-zero counts whose types differ in blocks of marker genes."""
    rng = np.random.default_rng(seed)
    types = np.arange(n_cells) % N_TYPES
    lam = np.tile(rng.gamma(0.6, 1.0, size=N_GENES), (n_cells, 1))
    block = N_GENES // (2 * N_TYPES)
    for t in range(N_TYPES):
        lam[types == t, t * block:(t + 1) * block] *= 10.0
    return rng.poisson(lam).astype(np.int64), types


GENES = [f"Gene{i}" for i in range(N_GENES)]


# Not the session reference: 5 named types, 12 epochs and a query of known types (accuracy).
@pytest.fixture(scope="module")
def reference(tmp_path_factory, one_thread):
    folder = tmp_path_factory.mktemp("reference")
    counts, types = sparse_counts(250, seed=0)
    cells = [f"train{i}" for i in range(len(counts))]
    train = CountMatrix(counts, GENES, cells)
    labels = pd.Series([TYPES[t] for t in types], index=cells)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = da.train_reference(train, labels, epochs=12, batch_size=32,
                                   learning_rate=3e-3)
    model_dir = str(folder / "model")
    model.save(model_dir)
    query_counts, query_types = sparse_counts(90, seed=1)
    query_cells = [f"q{i}" for i in range(len(query_counts))]
    query_path = str(folder / "query.h5")
    pd.DataFrame(query_counts.T, index=GENES, columns=query_cells).to_hdf(query_path, key="dge")
    truth = {c: TYPES[t] for c, t in zip(query_cells, query_types, strict=True)}
    return {"model": model, "model_dir": model_dir, "query": query_path, "counts": query_counts,
            "cells": query_cells, "truth": truth, "folder": folder}


def same(result, other):
    assert result.cell_ids.tolist() == other.cell_ids.tolist()
    assert result.labels.tolist() == other.labels.tolist()
    np.testing.assert_array_equal(result.probabilities, other.probabilities)
    np.testing.assert_array_equal(result.probability, other.probability)
    np.testing.assert_array_equal(result.embedding, other.embedding)


def test_result_contents(reference):
    result = da.annotate(reference["query"], reference["model_dir"])
    n = len(reference["cells"])
    assert len(result) == n and result.probabilities.shape == (n, N_TYPES)
    assert result.embedding.shape == (n, 25)
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert result.classes.tolist() == TYPES
    accuracy = np.mean([label == reference["truth"][c]
                        for c, label in zip(result.cell_ids, result.labels, strict=True)])
    assert accuracy > 0.8  # the tiny reference works
    frame = result.to_dataframe(probabilities=True)
    assert list(frame.columns) == ["cell_type", "probability", *TYPES]


def test_every_format_gives_identical_calls(reference, tmp_path):
    base = da.annotate(reference["query"], reference["model"], threshold=0.7)
    assert (base.labels == UNASSIGNED).any() and (base.labels != UNASSIGNED).any()
    targets = {"tenx.h5": ["--to", "10x-h5"], "mtx": [], "q.csv": [], "q.tsv.gz": [],
               "q.h5ad": [], "back.h5": []}
    for name, extra in targets.items():
        target = str(tmp_path / name)
        assert cli.main(["convert", "--input", reference["query"], "--output", target,
                         *extra]) == 0
        same(da.annotate(target, reference["model_dir"], threshold=0.7), base)
    # Second generation: 10x -> h5ad -> annotate.
    again = str(tmp_path / "again.h5ad")
    assert cli.main(["convert", "--input", str(tmp_path / "tenx.h5"), "--output", again]) == 0
    same(da.annotate(again, reference["model"], threshold=0.7), base)


def test_in_memory_inputs(reference):
    base = da.annotate(reference["query"], reference["model"])
    counts, cells = reference["counts"], reference["cells"]
    frame = pd.DataFrame(counts.T, index=GENES, columns=cells)
    same(da.annotate(frame, reference["model"]), base)
    same(da.annotate(frame.T, reference["model"], cells_as_rows=True), base)
    same(da.annotate(CountMatrix(sp.csr_matrix(counts), GENES, cells), reference["model"]), base)
    adata = anndata.AnnData(X=sp.csr_matrix(counts.astype(np.float32)),
                            obs=pd.DataFrame(index=cells), var=pd.DataFrame(index=GENES))
    same(da.annotate(adata, reference["model"]), base)
    # Counts in a layer, symbols in a var column, Ensembl ids as var_names.
    ids = [f"ENSG{i:011d}" for i in range(N_GENES)]
    other = anndata.AnnData(X=np.log1p(counts.astype(np.float32)), obs=pd.DataFrame(index=cells),
                            var=pd.DataFrame({"symbol": GENES}, index=ids))
    other.layers["counts"] = counts.astype(np.float32)
    same(da.annotate(other, reference["model"], layer="counts", gene_column="symbol"), base)
    with pytest.raises(GeneOverlapError, match="query has Ensembl ids but the model gene "
                                               "symbols"):
        da.annotate(other, reference["model"], layer="counts")


def test_gene_names_match_case_insensitively(reference):
    base = da.annotate(reference["query"], reference["model"])
    frame = pd.DataFrame(reference["counts"].T, index=[g.lower() for g in GENES],
                         columns=reference["cells"])
    same(da.annotate(frame, reference["model"]), base)


def test_ensembl_query_against_symbol_model_and_reverse(reference, tmp_path):
    ids = [f"ENSMUSG{i:011d}" for i in range(N_GENES)]
    frame = pd.DataFrame(reference["counts"].T, index=ids, columns=reference["cells"])
    with pytest.raises(GeneOverlapError) as info:
        da.annotate(frame, reference["model"])
    message = str(info.value)
    assert "0 of" in message and "model genes found" in message
    assert "the query has Ensembl ids but the model gene symbols" in message
    # The reverse: a model trained on Ensembl ids, a query with symbols.
    counts, types = sparse_counts(150, seed=2)
    cells = [f"t{i}" for i in range(len(counts))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ensembl_model = da.train_reference(CountMatrix(counts, ids, cells),
                                           pd.Series([TYPES[t] for t in types], index=cells),
                                           epochs=1)
    symbols = pd.DataFrame(reference["counts"].T, index=GENES, columns=reference["cells"])
    with pytest.raises(GeneOverlapError, match="query has gene symbols but the model Ensembl"):
        da.annotate(symbols, ensembl_model)


def test_threshold_semantics(reference):
    plain = da.annotate(reference["query"], reference["model"])
    assert UNASSIGNED not in set(plain.labels)
    cut = float(np.median(plain.probability))
    result = da.annotate(reference["query"], reference["model"], threshold=cut)
    below = result.probability < cut
    assert below.any() and (~below).any()
    assert (result.labels[below] == UNASSIGNED).all()
    assert (result.labels[~below] == plain.labels[~below]).all()  # >= threshold: kept
    assert (result.predicted == plain.labels).all()               # best guess kept
    np.testing.assert_array_equal(result.probabilities, plain.probabilities)
    assert (da.annotate(reference["query"], reference["model"], threshold=0.0).labels
            == plain.labels).all()
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="threshold must be in"):
            da.annotate(reference["query"], reference["model"], threshold=bad)


def test_to_adata_new_and_existing(reference, tmp_path):
    result = da.annotate(reference["query"], reference["model"], threshold=0.7)
    n = len(result)
    fresh = result.to_adata()
    assert fresh.obs_names.tolist() == reference["cells"] and fresh.n_vars == 0
    label = fresh.obs["actinn_label"]
    assert isinstance(label.dtype, pd.CategoricalDtype)
    assert label.cat.categories.tolist() == TYPES + [UNASSIGNED]
    assert label.astype(str).tolist() == result.labels.tolist()
    np.testing.assert_array_equal(fresh.obs["actinn_probability"], result.probability)
    assert fresh.obsm["actinn_probabilities"].shape == (n, N_TYPES)
    assert fresh.obsm["X_actinn"].shape == (n, 25)
    assert list(fresh.uns["actinn_classes"]) == TYPES
    fresh.write_h5ad(tmp_path / "calls.h5ad")  # storable as written
    back = anndata.read_h5ad(tmp_path / "calls.h5ad")
    assert back.obs["actinn_label"].astype(str).tolist() == result.labels.tolist()

    # An existing AnnData in another cell order: aligned by obs_names, in place.
    order = np.random.default_rng(0).permutation(n)
    counts = reference["counts"][order].astype(np.float32)
    cells = [reference["cells"][i] for i in order]
    adata = anndata.AnnData(X=counts, obs=pd.DataFrame(index=cells),
                            var=pd.DataFrame(index=GENES))
    returned = result.to_adata(adata, prefix="ref")
    assert returned is adata
    np.testing.assert_array_equal(adata.obsm["ref_probabilities"], result.probabilities[order])
    np.testing.assert_array_equal(adata.obsm["X_ref"], result.embedding[order])
    assert adata.obs["ref_label"].astype(str).tolist() == result.labels[order].tolist()
    # Annotating that AnnData directly gives the same calls per cell (to the last bits
    # only: BLAS blocks rows differently once the cells are in another order).
    direct = da.annotate(adata, reference["model"], threshold=0.7)
    np.testing.assert_allclose(direct.probabilities, result.probabilities[order], rtol=1e-5,
                               atol=1e-7)

    with pytest.raises(ValueError, match="do not match"):
        result.to_adata(adata[:10].copy())


def test_to_adata_celltypist_fields(reference, tmp_path):
    """Top call and thresholded call apart, per-type columns, provenance, grey Unassigned."""
    result = da.annotate(reference["query"], reference["model_dir"], threshold=0.9)
    below = result.labels == UNASSIGNED
    assert below.any() and (~below).any()  # both kinds of cell, or the test shows nothing
    adata = result.to_adata(probability_columns=True)
    prediction = adata.obs["actinn_prediction"]
    assert prediction.cat.categories.tolist() == TYPES  # no Unassigned: before the threshold
    assert prediction.astype(str).tolist() == result.predicted.tolist()
    assert (adata.obs["actinn_label"].astype(str).to_numpy()[~below]
            == prediction.astype(str).to_numpy()[~below]).all()
    for k, name in enumerate(TYPES):
        np.testing.assert_array_equal(adata.obs[f"actinn_p_{name}"], result.probabilities[:, k])
    meta = adata.uns["actinn"]
    assert meta["model"] == os.path.abspath(reference["model_dir"])
    assert meta["preset"] == result.preset and meta["threshold"] == 0.9
    assert meta["version"] == da.__version__
    n_model = len(reference["model"].genes)  # the gene filters kept fewer than N_GENES
    assert meta["gene_overlap"] == {"found": n_model, "total": n_model, "fraction": 1.0}
    colors = list(adata.uns["actinn_label_colors"])
    assert len(colors) == N_TYPES + 1 and colors[-1] == "#d3d3d3"
    assert "#d3d3d3" not in colors[:-1] and len(set(colors)) == len(colors)
    assert colors[:2] == ["#1f77b4", "#ff7f0e"]  # scanpy's default palette, in category order
    assert list(adata.uns["actinn_prediction_colors"]) == colors[:-1]  # same type, same colour

    path = tmp_path / "calls.h5ad"
    adata.write_h5ad(path)
    back = anndata.read_h5ad(path)
    assert back.uns["actinn"]["gene_overlap"]["found"] == n_model
    assert back.obs["actinn_prediction"].astype(str).tolist() == result.predicted.tolist()
    assert list(back.uns["actinn_label_colors"]) == colors

    # A model object annotates "in memory"; no threshold is recorded as None and no
    # Unassigned category (nor grey) is added.
    plain = da.annotate(reference["query"], reference["model"]).to_adata()
    assert plain.uns["actinn"]["model"] == "<in memory>"
    assert plain.uns["actinn"]["threshold"] is None
    assert "#d3d3d3" not in list(plain.uns["actinn_label_colors"])
    assert not any(c.startswith("actinn_p_") for c in plain.obs)  # only when asked
    loaded = da.ACTINNModel.load(reference["model_dir"])
    assert da.annotate(reference["query"], loaded).model_source == meta["model"]
    # Asked for per-type columns without kept probabilities: a clear refusal.
    slim = da.annotate(reference["query"], reference["model"], probabilities=False)
    with pytest.raises(ValueError, match="probability_columns needs every class probability"):
        slim.to_adata(probability_columns=True)
    with pytest.raises(TypeError):
        result.to_adata(probability_colums=True)


def expected_vote(labels, groups):
    """Each cell's cluster's most common label, by counting (ties: TYPES order, then Unassigned)."""
    rank = {name: i for i, name in enumerate(TYPES + [UNASSIGNED])}
    best = {}
    for group in set(groups):
        counted = pd.Series(labels[groups == group]).value_counts()
        top = counted[counted == counted.max()].index
        best[group] = min(top, key=rank.__getitem__)
    return np.array([best[g] for g in groups], dtype=object)


def test_majority_vote(reference):
    result = da.annotate(reference["query"], reference["model"], threshold=0.9)
    rng = np.random.default_rng(3)
    groups = rng.integers(0, 6, size=len(result))  # clusters that mix types: votes change calls
    voted = result.majority_vote(groups)
    np.testing.assert_array_equal(voted, expected_vote(result.labels, groups))
    assert (voted != result.labels).any()
    for g in np.unique(groups):
        assert len(set(voted[groups == g])) == 1
    # A Series indexed by cell id is aligned by id, whatever its order.
    order = rng.permutation(len(result))
    shuffled = pd.Series(groups[order], index=result.cell_ids[order])
    np.testing.assert_array_equal(result.majority_vote(shuffled), voted)
    # A cell without a cluster keeps its own call.
    with_missing = pd.Series(groups, dtype=object)
    with_missing[0] = np.nan
    assert result.majority_vote(with_missing)[0] == result.labels[0]
    # Ties go to the type listed first.
    small = da.AnnotationResult(np.array(["a", "b", "c", "d"]),
                                np.array(["type C", "type B", UNASSIGNED, "type A"], dtype=object),
                                None, None, None, np.array(TYPES, dtype=object), None, None, None)
    assert small.majority_vote([1, 1, 2, 2]).tolist() == ["type B", "type B", "type A", "type A"]
    with pytest.raises(ValueError, match="one cluster per cell"):
        result.majority_vote(groups[:-1])
    with pytest.raises(TypeError, match="majority_voting=COLUMN"):
        result.majority_vote("leiden")
    with pytest.raises(ValueError, match="index does not match"):
        result.majority_vote(pd.Series(groups, index=[f"x{i}" for i in range(len(groups))]))


def test_to_adata_majority_voting(reference, monkeypatch):
    import sys
    import types

    result = da.annotate(reference["query"], reference["model"], threshold=0.9)
    n = len(result)
    rng = np.random.default_rng(4)
    groups = rng.integers(0, 5, size=n)
    order = rng.permutation(n)
    adata = anndata.AnnData(obs=pd.DataFrame(
        {"cluster": pd.Categorical(groups[order].astype(str))},
        index=[reference["cells"][i] for i in order]))
    result.to_adata(adata, majority_voting="cluster")
    voted = adata.obs["actinn_majority_voting"]
    assert voted.cat.categories.tolist() == TYPES + [UNASSIGNED]
    assert voted.astype(str).tolist() == result.majority_vote(groups)[order].tolist()
    assert adata.uns["actinn"]["majority_voting"] == "cluster"
    assert list(adata.uns["actinn_majority_voting_colors"]) == list(
        adata.uns["actinn_label_colors"])

    # No such column and no scanpy: one line saying what to do, and adata left untouched.
    monkeypatch.setitem(sys.modules, "scanpy", None)  # import scanpy raises ImportError
    bare = anndata.AnnData(obs=pd.DataFrame(index=reference["cells"]))
    with pytest.raises(ValueError, match="no column 'leiden'.*install scanpy") as error:
        result.to_adata(bare, majority_voting="leiden")
    assert "\n" not in str(error.value) and "actinn_label" not in bare.obs

    # With scanpy: Leiden on the ACTINN embedding, in its own neighbour graph, named as asked.
    calls = []

    def neighbors(adata, use_rep, key_added):
        calls.append(("neighbors", use_rep, key_added))
        assert adata.obsm[use_rep].shape == (n, 25)  # the embedding is there first

    def leiden(adata, key_added, neighbors_key):
        calls.append(("leiden", key_added, neighbors_key))
        adata.obs[key_added] = pd.Categorical((np.arange(adata.n_obs) % 3).astype(str))

    fake = types.SimpleNamespace(pp=types.SimpleNamespace(neighbors=neighbors),
                                 tl=types.SimpleNamespace(leiden=leiden))
    monkeypatch.setitem(sys.modules, "scanpy", fake)
    result.to_adata(bare, majority_voting="leiden")
    assert calls == [("neighbors", "X_actinn", "actinn"), ("leiden", "leiden", "actinn")]
    assert bare.obs["actinn_majority_voting"].astype(str).tolist() == \
        result.majority_vote(np.arange(n) % 3).tolist()
    # A scanpy with Leiden flavours and igraph installed: its coming default, no FutureWarning.
    options = []

    def leiden_with_flavors(adata, key_added, neighbors_key, flavor="leidenalg",
                            n_iterations=-1, directed=None):
        options.append((flavor, n_iterations, directed))
        adata.obs[key_added] = pd.Categorical(np.zeros(adata.n_obs, int).astype(str))

    fake.tl.leiden = leiden_with_flavors
    for igraph in (types.ModuleType("igraph"), None):  # None: import igraph fails
        monkeypatch.setitem(sys.modules, "igraph", igraph)
        del bare.obs["leiden"]  # a column that exists is voted over, not recomputed
        result.to_adata(bare, majority_voting="leiden")
    assert options == [("igraph", 2, False), ("leidenalg", -1, None)]


def test_cli_predict_majority_voting(reference, tmp_path, capsys, monkeypatch):
    from conftest import one_line_error

    rng = np.random.default_rng(5)
    clusters = rng.integers(0, 4, size=len(reference["cells"])).astype(str)
    query = tmp_path / "query.h5ad"
    anndata.AnnData(X=reference["counts"].astype(np.float32),
                    obs=pd.DataFrame({"leiden": pd.Categorical(clusters)},
                                     index=reference["cells"]),
                    var=pd.DataFrame(index=GENES)).write_h5ad(query)
    output = tmp_path / "calls.h5ad"
    assert cli.main(["predict", "--model-dir", reference["model_dir"], "--test-set", str(query),
                     "--output", str(output), "--threshold", "0.9",
                     "--majority-voting", "leiden"]) == 0
    back = anndata.read_h5ad(output)
    expected = da.annotate(str(query), reference["model"], threshold=0.9).majority_vote(clusters)
    assert back.obs["actinn_majority_voting"].astype(str).tolist() == expected.tolist()
    line = one_line_error(capsys, "predict", "--model-dir", reference["model_dir"],
                          "--test-set", query, "--output", tmp_path / "calls.tsv",
                          "--majority-voting", "leiden")
    assert "--majority-voting" in line and ".h5ad --output" in line
    # A column the query lacks, without scanpy: one line, and no output written.
    import sys
    monkeypatch.setitem(sys.modules, "scanpy", None)
    line = one_line_error(capsys, "predict", "--model-dir", reference["model_dir"],
                          "--test-set", query, "--output", tmp_path / "other.h5ad",
                          "--majority-voting", "louvain")
    assert "no column 'louvain'" in line and "install scanpy" in line
    assert not (tmp_path / "other.h5ad").exists()


def test_result_reprs_are_short(reference):
    result = da.annotate(reference["query"], reference["model_dir"], threshold=0.9)
    text = repr(result)
    lines = text.splitlines()
    assert len(lines) == 2 and len(text) < 400  # not one line per cell
    n_unassigned = int((result.labels == UNASSIGNED).sum())
    n_model = len(reference["model"].genes)
    assert lines[0] == (f"AnnotationResult: cells 90; types {N_TYPES}; preset {result.preset}; "
                        f"threshold 0.9 ({n_unassigned} Unassigned); gene overlap {n_model} of "
                        f"{n_model} model genes (100.0%)")
    top = pd.Series(result.labels).value_counts()
    assert lines[1].startswith(f"  top calls: {top.index[0]} {top.iloc[0]}")
    assert "(+1 more)" in lines[1]  # 5 types + Unassigned, 5 shown
    page = result._repr_html_()
    assert page.count("<table>") == 2 and page.count("<tr>") == 5 + 1 + 5
    assert f"<td style='text-align:left'>{top.index[0]}</td><td>{top.iloc[0]}</td>" in page
    odd = da.AnnotationResult(np.array(["a"]), np.array(["<b>&co"], dtype=object),
                              None, None, None, np.array(["<b>&co"], dtype=object),
                              None, None, result.overlap)
    assert "&lt;b&gt;&amp;co" in odd._repr_html_() and "<b>&co" not in odd._repr_html_()


def test_category_colors_many_types():
    from deepchem_actinn.annotation import category_colors

    names = [f"t{i}" for i in range(45)] + [UNASSIGNED]
    colors = category_colors(names)
    assert colors[-1] == "#d3d3d3" and len(set(colors)) == len(colors)
    assert all(len(c) == 7 and c.startswith("#") for c in colors)
    # Unassigned is grey wherever it sits, and does not use up a palette colour.
    assert category_colors(["a", UNASSIGNED, "b"]) == ["#1f77b4", "#d3d3d3", "#ff7f0e"]


def test_cli_predict_any_format_and_evaluate(reference, tmp_path, capsys):
    query = str(tmp_path / "query.h5ad")
    assert cli.main(["convert", "--input", reference["query"], "--output", query]) == 0
    labels = write_labels(tmp_path / "labels.tsv", reference["truth"])
    output = str(tmp_path / "pred.tsv")
    assert cli.main(["predict", "--model-dir", reference["model_dir"], "--test-set", query,
                     "--output", output, "--threshold", "0.7"]) == 0
    table = pd.read_csv(output, sep="\t", index_col=0)
    expected = da.annotate(reference["query"], reference["model"], threshold=0.7)
    assert table["cell_type"].tolist() == expected.labels.tolist()
    capsys.readouterr()
    assert cli.main(["evaluate", "--predictions", output, "--labels", labels]) == 0
    out = capsys.readouterr().out
    truth = np.array([reference["truth"][c] for c in table.index])
    called = table["cell_type"].to_numpy()
    assigned = called != UNASSIGNED
    lines = dict(line.split("\t") for line in out.splitlines() if line.count("\t") == 1)
    assert float(lines["coverage"]) == pytest.approx(assigned.mean(), abs=1e-4)
    assert float(lines["assigned_accuracy"]) == pytest.approx(
        (called[assigned] == truth[assigned]).mean(), abs=1e-4)
    assert float(lines["accuracy"]) == pytest.approx((called == truth).mean(), abs=1e-4)
    # Input options reach the reader; a wrong one is one clear error line.
    assert cli.main(["predict", "--model-dir", reference["model_dir"], "--test-set", query,
                     "--output", output, "--layer", "spliced"]) == 2
    assert "no layer 'spliced'" in capsys.readouterr().err
    assert os.path.exists(output)
