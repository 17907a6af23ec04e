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
from conftest import synthetic_counts

import deepchem_actinn as da
from deepchem_actinn import cli
from deepchem_actinn.errors import InputError
from deepchem_actinn.io import as_count_matrix, obs_labels


def one_line_error(capsys, *argv):
    """Run the CLI in-process; return its single error line (exit 2)."""
    capsys.readouterr()
    code = cli.main([os.fspath(a) for a in argv])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, (code, out, err)
    assert "Traceback" not in err and sum("error" in line for line in lines) == 1, err
    assert lines[-1].startswith("deepchem-actinn: error: "), err
    return lines[-1]


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
