"""AnnData in and out (issue 13): training from an AnnData or .h5ad with labels in obs.

Every test builds its own small AnnData: raw counts in ``layers["counts"]``,
log-normalised values in ``X``, cell types in ``obs``, symbols in ``var``.
"""

import os
import warnings

import anndata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import one_line_error, synthetic_counts

import deepchem_actinn as da
from deepchem_actinn import cli
from deepchem_actinn.errors import InputError
from deepchem_actinn.io import as_count_matrix, obs_labels


def make_adata(n_cells=90, n_genes=120, seed=0):
    counts, types = synthetic_counts(n_cells, n_genes, seed=seed)
    normalised = np.log1p(counts / counts.sum(axis=1, keepdims=True) * 1e4)
    obs = pd.DataFrame({"cell_type": pd.Categorical([f"type{t}" for t in types]),
                        "louvain": [str(t % 2) for t in types]},
                       index=[f"cell{i}" for i in range(n_cells)])
    var = pd.DataFrame({"symbol": [f"Sym{j}" for j in range(n_genes)]},
                       index=[f"ENSG{j:05d}" for j in range(n_genes)])
    adata = anndata.AnnData(X=sp.csr_matrix(normalised.astype(np.float32)), obs=obs, var=var)
    adata.layers["counts"] = sp.csr_matrix(counts)
    return adata


def test_train_reference_on_an_anndata_with_obs_labels():
    adata = make_adata()
    model = da.train_reference(adata, "cell_type", layer="counts", epochs=1)
    assert model.classes.tolist() == ["type0", "type1", "type2"]
    assert set(model.featurizer.input_genes_) <= {g.upper() for g in adata.var_names}
    # The same cells from from_anndata(), which used to raise TypeError, and a Series.
    stored = da.from_anndata(adata, layer="counts", gene_column="symbol")
    other = da.train_reference(stored, adata.obs["cell_type"].astype(str), epochs=1)
    assert other.featurizer.input_genes_[0] == "SYM0"
    result = da.annotate(stored, other)
    assert len(result) == adata.n_obs


def test_h5ad_path_with_obs_labels_layer_and_gene_column(tmp_path):
    adata = make_adata()
    path = tmp_path / "ref.h5ad"
    adata.write_h5ad(path)
    model = da.train_reference(os.fspath(path), "cell_type", layer="counts",
                               gene_column="symbol", epochs=1)
    assert model.classes.tolist() == ["type0", "type1", "type2"]
    assert all(g.startswith("SYM") for g in model.featurizer.input_genes_)
    labels = obs_labels(os.fspath(path), "louvain")
    assert labels.attrs["source"] == f"{path} obs['louvain']"
    assert labels.to_dict() == {c: str(int(c[4:]) % 3 % 2) for c in adata.obs_names}


def test_missing_obs_values_leave_cells_out():
    adata = make_adata()
    values = adata.obs["cell_type"].astype(object)
    values.iloc[:9] = None
    adata.obs["partial"] = values
    with pytest.warns(UserWarning, match="9 cells without a label"):
        model = da.train_reference(adata, "partial", layer="counts", epochs=1)
    assert model.n_classes == 3


def test_bad_anndata_training_inputs():
    adata = make_adata()
    with pytest.raises(InputError, match=r"no obs column 'celltype' \(obs columns: "
                                         r"cell_type, louvain\)"):
        da.train_reference(adata, "celltype", layer="counts", epochs=1)
    with pytest.raises(TypeError, match="layr"):
        da.train_reference(adata, "cell_type", layr="counts", epochs=1)
    with pytest.raises(TypeError, match="nb_epoch"):
        da.train_reference(adata, "cell_type", layer="counts", nb_epoch=1)
    matrix = da.from_anndata(adata, layer="counts").finish()
    with pytest.raises(InputError, match="option layer does not apply to a CountMatrix"):
        da.train_reference(matrix, adata.obs["cell_type"], layer="counts", epochs=1)
    with pytest.raises(InputError, match="option cells_as_rows does not apply to an AnnData"):
        as_count_matrix(adata, cells_as_rows=True)
    with pytest.raises(InputError, match="from_anndata\\(\\) results have no obs"):
        da.train_reference(da.from_anndata(adata, layer="counts"), "cell_type", epochs=1)
    twice = make_adata()
    twice.obs_names = ["same"] * 2 + list(twice.obs_names[2:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(InputError, match=r"obs_names repeat \(e.g. same\)"):
            da.train_reference(twice, "cell_type", layer="counts", epochs=1)


def test_cli_train_with_labels_from_obs(tmp_path, capsys):
    adata = make_adata()
    path = tmp_path / "ref.h5ad"
    adata.write_h5ad(path)
    model = tmp_path / "model"
    assert cli.main(["train", "--train-set", os.fspath(path), "--label-column", "cell_type",
                     "--layer", "counts", "--model-dir", os.fspath(model), "--epochs", "1",
                     "--quiet"]) == 0
    assert da.ACTINNModel.load(os.fspath(model)).classes.tolist() == ["type0", "type1",
                                                                      "type2"]
    line = one_line_error(capsys, "train", "--train-set", path, "--layer", "counts",
                          "--model-dir", tmp_path / "m2")
    assert f"{path}: no labels: give --train-labels FILE, or --label-column" in line
    line = one_line_error(capsys, "train", "--train-set", path, "--label-column", "type",
                          "--layer", "counts", "--model-dir", tmp_path / "m2")
    assert "no obs column 'type' (obs columns: cell_type, louvain)" in line
    tsv = tmp_path / "counts.tsv"
    pd.DataFrame(adata.layers["counts"].toarray().T, index=adata.var_names,
                 columns=adata.obs_names).to_csv(tsv, sep="\t")
    line = one_line_error(capsys, "train", "--train-set", tsv, "--label-column", "cell_type",
                          "--model-dir", tmp_path / "m2")
    assert "takes labels from an .h5ad's obs, but this is tsv" in line
    assert not (tmp_path / "m2").exists()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A model trained on an AnnData's counts layer, saved; and a query AnnData."""
    folder = tmp_path_factory.mktemp("reference")
    model = da.train_reference(make_adata(), "cell_type", layer="counts", epochs=2)
    return model.save(os.fspath(folder / "model")), make_adata(60, seed=1)


def test_predict_writes_the_query_h5ad_with_the_calls(reference, tmp_path, capsys):
    model, query = reference
    query.obsm["X_umap"] = np.zeros((query.n_obs, 2))
    path = tmp_path / "query.h5ad"
    query.write_h5ad(path)
    output, probabilities = tmp_path / "annotated.h5ad", tmp_path / "probabilities.csv"
    assert cli.main(["predict", "--model-dir", model, "--test-set", os.fspath(path),
                     "--layer", "counts", "--threshold", "0.4", "--output", os.fspath(output),
                     "--probabilities", os.fspath(probabilities)]) == 0
    assert f"-> {output}" in capsys.readouterr().out
    annotated = anndata.read_h5ad(output)
    # The query itself, everything kept, with the calls of annotate() added.
    assert annotated.obs_names.tolist() == query.obs_names.tolist()
    assert annotated.obs["louvain"].tolist() == query.obs["louvain"].tolist()
    assert "X_umap" in annotated.obsm and "counts" in annotated.layers
    np.testing.assert_allclose(annotated.X.toarray(), query.X.toarray())
    expected = da.annotate(query, model, 0.4, layer="counts")
    assert annotated.obs["actinn_label"].astype(str).tolist() == expected.labels.tolist()
    assert "Unassigned" in annotated.obs["actinn_label"].cat.categories
    np.testing.assert_allclose(annotated.obsm["actinn_probabilities"], expected.probabilities,
                               rtol=1e-5)
    table = pd.read_csv(probabilities, index_col=0)  # .csv: comma-separated
    assert table.columns.tolist() == ["type0", "type1", "type2"] and len(table) == 60


def test_predict_h5ad_from_another_format_and_csv_calls(reference, tmp_path):
    model, query = reference
    tsv = tmp_path / "query.tsv"
    counts = pd.DataFrame(query.layers["counts"].toarray().T, index=query.var_names,
                          columns=query.obs_names)
    counts.to_csv(tsv, sep="\t")
    output = tmp_path / "annotated.h5ad"
    assert cli.main(["predict", "--model-dir", model, "--test-set", os.fspath(tsv),
                     "--output", os.fspath(output)]) == 0
    annotated = anndata.read_h5ad(output)
    dense = annotated.X.toarray() if sp.issparse(annotated.X) else annotated.X
    np.testing.assert_array_equal(dense, counts.to_numpy().T)
    assert annotated.var_names.tolist() == query.var_names.tolist()
    calls = tmp_path / "calls.csv"
    assert cli.main(["predict", "--model-dir", model, "--test-set", os.fspath(tsv),
                     "--output", os.fspath(calls)]) == 0
    table = pd.read_csv(calls)
    assert table.columns.tolist() == ["cell_id", "cell_type", "probability"]
    assert table["cell_type"].tolist() == annotated.obs["actinn_label"].astype(str).tolist()


def test_predict_output_names_refused_before_any_work(reference, tmp_path, capsys):
    model, query = reference
    path = tmp_path / "query.h5ad"
    query.write_h5ad(path)
    for name in ("calls.json", "calls", "calls.h5"):
        line = one_line_error(capsys, "predict", "--model-dir", tmp_path / "no-model",
                              "--test-set", path, "--output", tmp_path / name)
        assert f"{tmp_path / name}: --output must end .tsv, .txt, .csv" in line
        assert not (tmp_path / name).exists()
    line = one_line_error(capsys, "predict", "--model-dir", model, "--test-set", path,
                          "--output", tmp_path / "a.h5ad", "--chunk-cells", "10")
    assert "--chunk-cells streams the query" in line
    line = one_line_error(capsys, "predict", "--model-dir", model, "--test-set", path,
                          "--gene-ids", "--output", tmp_path / "a.h5ad")
    assert f"{path}: option gene_ids applies to 10x-h5 and mtx input, but this is h5ad" in line
    # A failure leaves the previous output as it was.
    output = tmp_path / "annotated.h5ad"
    output.write_bytes(b"previous")
    line = one_line_error(capsys, "predict", "--model-dir", model, "--test-set", path,
                          "--layer", "spliced", "--output", output)
    assert "no layer 'spliced'" in line
    assert output.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotated.h5ad", "query.h5ad"]


def test_transposed_anndata_is_worded_for_anndata(reference, tmp_path):
    model, query = reference
    counts = anndata.AnnData(X=query.layers["counts"], obs=query.obs[[]], var=query.var[[]])
    flipped = counts.T  # genes as obs, cells as var
    with pytest.raises(InputError) as info:
        da.train_reference(flipped, query.obs["cell_type"].astype(str), epochs=1)
    message = str(info.value)
    assert "the AnnData looks transposed (expected cells as obs and genes as var" in message
    assert "genes as rows" not in message
    path = tmp_path / "flipped.h5ad"
    flipped.write_h5ad(path)
    with pytest.raises(da.GeneOverlapError) as info:
        da.annotate(os.fspath(path), model)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "AnnData looks transposed" in message
    assert "genes as rows" not in message


def test_cells_as_rows_on_pandas_hdf_is_refused(tmp_path, capsys):
    from conftest import write_counts

    counts, _ = synthetic_counts(20, 30)
    path = write_counts(tmp_path / "counts.h5", counts)
    with pytest.raises(InputError, match="option cells_as_rows applies to csv and tsv input, "
                                         "but this is pandas-hdf"):
        da.read_counts(path, cells_as_rows=True)
    line = one_line_error(capsys, "convert", "--input", path, "--cells-as-rows", "--output",
                          tmp_path / "out.h5ad")
    assert f"{path}: option cells_as_rows applies to csv and tsv input" in line
    assert not (tmp_path / "out.h5ad").exists()


def test_convert_to_h5ad_keeps_integer_counts_integer(tmp_path, capsys):
    from conftest import write_counts

    counts, _ = synthetic_counts(20, 30)
    path = write_counts(tmp_path / "counts.h5", counts)
    output = tmp_path / "counts.h5ad"
    assert cli.main(["convert", "--input", path, "--output", os.fspath(output)]) == 0
    written = anndata.read_h5ad(output)
    assert written.X.dtype.kind == "i"
    X = written.X.toarray() if sp.issparse(written.X) else written.X
    np.testing.assert_array_equal(X, counts)
    # Other values stay float32, as read.
    values = pd.DataFrame((counts + 0.5).T, index=[f"g{j}" for j in range(30)],
                          columns=[f"c{i}" for i in range(20)])
    values.to_csv(tmp_path / "values.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # non-integer counts: a warning
        assert cli.main(["convert", "--input", os.fspath(tmp_path / "values.csv"), "--output",
                         os.fspath(tmp_path / "values.h5ad")]) == 0
    written = anndata.read_h5ad(tmp_path / "values.h5ad")
    assert written.X.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(written.X), counts + 0.5)


def test_unknown_settings_refused_before_streaming(tmp_path):
    from deepchem_actinn.train import train_streaming

    with pytest.raises(TypeError, match="train_streaming\\(\\) got unexpected keyword argument "
                                        "'nb_epoch'"):
        train_streaming(tmp_path / "missing.h5", tmp_path / "labels.tsv", tmp_path / "work",
                        nb_epoch=1)
