"""Presets: the faithful ACTINN stays unchanged, ``robust`` is recorded and its options behave."""

import json
import os

import deepchem as dc
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import synthetic_counts

from deepchem_actinn.io import CountMatrix
from deepchem_actinn.model import (
    ACTINN_DEFAULTS,
    MODEL_FILE,
    PRESETS,
    TRAINING_OPTIONS,
    ActinnClassifier,
    ACTINNModel,
    _balanced_weights,
    featurizer_for,
)
from deepchem_actinn.preprocessing import TECHNICAL_GENES
from deepchem_actinn.train import train_reference


def _reference(n_cells=90, seed=0):
    counts, types = synthetic_counts(n_cells=n_cells, n_genes=120, n_types=3, seed=seed)
    cells = [f"c{i}" for i in range(n_cells)]
    matrix = CountMatrix(counts, [f"g{i}" for i in range(counts.shape[1])], cells)
    labels = pd.Series([f"type{t}" for t in types], index=cells)
    return matrix, labels


def _toy(n=64, genes=10, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, genes)).astype(np.float32)
    y = (np.arange(n) % classes).reshape(-1, 1)
    X[np.arange(n), y.ravel()] += 3.0
    return dc.data.NumpyDataset(X, y)


def test_actinn_preset_is_the_paper_and_switches_every_option_off():
    model = ACTINNModel(20, 3)
    params = model.hyperparameters
    assert params["preset"] == "actinn"
    for key, value in ACTINN_DEFAULTS.items():
        expected = list(value) if isinstance(value, tuple) else value
        assert params[key] == expected, key
    for key, value in TRAINING_OPTIONS.items():
        assert params[key] == value, key
    assert PRESETS["actinn"] == {}
    assert type(model.loss) is dc.models.losses.SparseSoftmaxCrossEntropy
    assert model.epochs_for(10_000) == 50


def test_actinn_preset_trains_exactly_as_without_options():
    data = _toy()
    a = ACTINNModel(10, 3, batch_size=16, seed=3)
    b = ACTINNModel(10, 3, batch_size=16, seed=3, preset="actinn", min_steps=0,
                    label_smoothing=0.0, class_weight=None)
    a.fit(data, nb_epoch=3, checkpoint_interval=0)
    b.fit(data, nb_epoch=3, checkpoint_interval=0)
    for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_robust_preset_settings_and_override():
    model = ACTINNModel(20, 3, preset="robust")
    assert model.settings["learning_rate"] == 1e-3
    assert model.settings["input_dropout"] == 0.5
    assert model.model.input_dropout.p == 0.5
    assert ACTINNModel(20, 3, preset="robust", input_dropout=0.2).settings["input_dropout"] == 0.2
    with pytest.raises(ValueError, match="preset"):
        ACTINNModel(20, 3, preset="fast")
    with pytest.raises(ValueError, match="class_weight"):
        ACTINNModel(20, 3, class_weight="inverse")


def test_robust_preset_is_saved_and_reloaded(tmp_path):
    matrix, labels = _reference()
    model = train_reference(matrix, labels, preset="robust", epochs=3, label_smoothing=0.1,
                            min_steps=7, device="cpu")
    folder = model.save(tmp_path / "robust_model")
    with open(os.path.join(folder, MODEL_FILE), encoding="utf-8") as handle:
        saved = json.load(handle)["hyperparameters"]
    assert saved["preset"] == "robust"
    assert saved["learning_rate"] == 1e-3 and saved["input_dropout"] == 0.5
    assert saved["label_smoothing"] == 0.1 and saved["min_steps"] == 7
    loaded = ACTINNModel.load(folder, device="cpu")
    assert loaded.preset == "robust"
    assert loaded.hyperparameters == model.hyperparameters
    X = model.featurizer.transform(matrix)
    np.testing.assert_allclose(loaded.predict_proba(dc.data.NumpyDataset(X)),
                               model.predict_proba(dc.data.NumpyDataset(X)), atol=1e-6)


def test_min_steps_raises_the_epochs_of_small_references():
    model = ACTINNModel(10, 3, batch_size=16, epochs=2, min_steps=40)
    data = _toy(n=64)  # 4 steps an epoch
    assert model.epochs_for(len(data)) == 10
    model.fit(data, checkpoint_interval=0)
    assert model._global_step == 40
    big = ACTINNModel(10, 3, batch_size=16, epochs=2, min_steps=4)
    big.fit(data, checkpoint_interval=0)
    assert big._global_step == 8  # epochs win when they already give enough steps


def test_label_smoothing_raises_the_loss_of_confident_predictions():
    data = _toy()
    plain = ACTINNModel(10, 3, batch_size=64, seed=1)
    smooth = ACTINNModel(10, 3, batch_size=64, seed=1, label_smoothing=0.2)
    logits = torch.tensor([[[8.0, -8.0, -8.0]]])
    labels = torch.tensor([[0]])
    plain_loss = plain.loss._create_pytorch_loss()(logits, labels)
    smooth_loss = smooth.loss._create_pytorch_loss()(logits, labels)
    assert float(smooth_loss) > float(plain_loss) + 1.0
    smooth.fit(data, nb_epoch=2, checkpoint_interval=0)  # trains end to end


def test_balanced_class_weights():
    weights = _balanced_weights(np.array([0, 0, 0, 1, -1]), 3)
    np.testing.assert_allclose(weights, [4 / 6, 4 / 2, 0.0])
    model = ACTINNModel(10, 3, batch_size=8, class_weight="balanced")
    data = dc.data.NumpyDataset(np.zeros((8, 10), np.float32), np.array([0] * 6 + [1, 2]))
    model._class_weights = _balanced_weights(data.y, 3)
    (_, (y_b,), (w_b,)), = list(model.default_generator(data, mode="fit", deterministic=True))
    assert w_b.shape == (8, 1)
    np.testing.assert_allclose(w_b.ravel(), [8 / 18] * 6 + [8 / 3, 8 / 3])


def test_temperature_changes_probabilities_not_calls():
    data = _toy(n=90)
    model = ACTINNModel(10, 3, batch_size=16, learning_rate=1e-2, seed=0)
    model.fit(data, nb_epoch=20, checkpoint_interval=0)
    before = model.predict_proba(data)
    valid = _toy(n=60, seed=5)
    temperature = model.fit_temperature(valid)
    assert 0.05 <= temperature <= 20.0 and temperature != 1.0
    assert float(model.model.temperature) == pytest.approx(temperature)
    after = model.predict_proba(data)
    assert not np.allclose(before, after)
    np.testing.assert_array_equal(before.argmax(1), after.argmax(1))
    # Over-confident on noisy labels -> T > 1 flattens the probabilities.
    noisy = _toy(n=60, seed=6)
    noisy.y[::2] = (noisy.y[::2] + 1) % 3
    assert model.fit_temperature(noisy) > 1.0


def test_input_dropout_is_seeded_by_the_model_not_the_global_generator():
    data = _toy()
    weights = []
    for disturbance in (1, 2):
        torch.manual_seed(disturbance)  # other code drawing from torch's global generator
        model = ACTINNModel(10, 3, batch_size=16, seed=5, preset="robust")
        model.fit(data, nb_epoch=2, checkpoint_interval=0)
        weights.append(model.model.hidden[0].weight.detach().clone())
    assert torch.equal(weights[0], weights[1])
    other = ACTINNModel(10, 3, batch_size=16, seed=6, preset="robust")
    other.fit(data, nb_epoch=2, checkpoint_interval=0)
    assert not torch.equal(weights[0], other.model.hidden[0].weight)


def test_resumed_robust_run_replays_the_dropout_masks(tmp_path):
    data = _toy()
    unbroken = ACTINNModel(10, 3, batch_size=16, seed=2, preset="robust")
    unbroken.fit(data, nb_epoch=4, checkpoint_interval=0)
    first = ACTINNModel(10, 3, batch_size=16, seed=2, preset="robust",
                        model_dir=str(tmp_path))
    first.fit(data, nb_epoch=2)  # writes a checkpoint at the end
    resumed = ACTINNModel(10, 3, batch_size=16, seed=2, preset="robust",
                          model_dir=str(tmp_path))
    resumed.restore()
    resumed.fit(data, nb_epoch=2, checkpoint_interval=0)
    for a, b in zip(unbroken.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_sparse_input_dropout_keeps_zeros_and_scales_the_kept_values():
    net = ActinnClassifier(6, 2, input_dropout=0.5, dropout_seed=0)
    net.train()
    dense = torch.tensor([[0.0, 2.0, 0.0, 4.0, 1.0, 0.0]] * 200)
    dropped = net._drop_inputs(dense.to_sparse_csr()).to_dense()
    assert torch.all(dropped[dense == 0] == 0)
    kept = dropped[dense != 0] / dense[dense != 0]
    assert set(kept.unique().tolist()) == {0.0, 2.0}  # dropped, or kept and scaled by 1/(1-p)
    assert 0.4 < float((kept > 0).float().mean()) < 0.6
    net.eval()
    assert torch.equal(net._drop_inputs(dense.to_sparse_csr()).to_dense(), dense)


def test_linear_skip_is_a_second_head_whose_mean_with_the_first_is_the_call():
    plain = ActinnClassifier(8, 3, generator=torch.Generator().manual_seed(0))
    skip = ActinnClassifier(8, 3, generator=torch.Generator().manual_seed(0), linear_skip=True,
                            input_dropout=0.5, dropout_seed=1)
    assert plain.skip is None and tuple(skip.skip.weight.shape) == (8, 3)
    x = torch.rand(4, 8)
    assert tuple(plain(x)[1].shape) == (4, 1, 3) and tuple(skip(x)[1].shape) == (4, 2, 3)
    with torch.no_grad():
        skip.skip.weight[2, 1] = 5.0
    probs, logits, _ = skip.eval()(x)
    torch.testing.assert_close(logits[:, 0], plain(x)[1][:, 0])  # the hidden layers' head
    torch.testing.assert_close(logits[:, 1, 1], 5.0 * x[:, 2])
    torch.testing.assert_close(probs[:, 0], torch.softmax(logits.mean(dim=1), dim=-1))
    torch.testing.assert_close(skip(x.to_sparse_csr())[1], logits)
    skip.train()  # input dropout reaches the hidden layers, never the linear head
    torch.testing.assert_close(skip(x)[1][:, 1], logits[:, 1])
    # Each head is trained as a classifier: the loss is the mean of their cross-entropies.
    model = ACTINNModel(8, 3, linear_skip=True)
    labels = torch.tensor([[0], [2], [1], [0]])
    loss = model.loss._create_pytorch_loss()(logits, labels)
    expected = torch.stack([torch.nn.functional.cross_entropy(logits[:, h], labels[:, 0],
                                                              reduction="none")
                            for h in (0, 1)], dim=1)
    torch.testing.assert_close(loss, expected)


def test_linear_weight_sets_each_heads_share_of_the_call():
    net = ActinnClassifier(8, 3, generator=torch.Generator().manual_seed(0), linear_skip=True,
                           linear_weight=0.8).eval()
    with torch.no_grad():
        net.skip.weight.normal_()
    x = torch.rand(5, 8)
    probs, logits, _ = net(x)
    torch.testing.assert_close(net.combine(logits), 0.2 * logits[:, 0] + 0.8 * logits[:, 1])
    torch.testing.assert_close(probs[:, 0], torch.softmax(net.combine(logits), dim=-1))
    model = ACTINNModel(8, 3, linear_skip=True, linear_weight=1.0)
    assert model.model.linear_weight == 1.0 and model.settings["linear_weight"] == 1.0
    with pytest.raises(ValueError, match="linear_weight"):
        ACTINNModel(8, 3, linear_skip=True, linear_weight=1.5)


def test_unknown_keyword_arguments_are_refused_by_name():
    matrix, labels = _reference()
    with pytest.raises(TypeError, match="nb_epoch"):
        ACTINNModel(10, 3, nb_epoch=1)
    with pytest.raises(TypeError, match="learning_rte"):
        train_reference(matrix, labels, learning_rte=1e-3)
    with pytest.raises(ValueError, match="option layer does not apply to a CountMatrix"):
        train_reference(matrix, labels, layer="counts")  # a real option, for files and AnnData


def test_gene_selection_is_a_setting_of_the_preset_and_is_saved(tmp_path):
    matrix, labels = _reference()
    genes = np.asarray(matrix.genes).copy()
    genes[:3] = ["MT-CO1", "RPL13A", "Rps27"]  # technical genes, by any case
    matrix = CountMatrix(matrix.X, genes, matrix.cells)
    model = train_reference(matrix, labels, preset="robust", epochs=1, device="cpu",
                            low_percentile=0.0, high_percentile=100.0,
                            exclude_genes=TECHNICAL_GENES)
    kept = set(model.featurizer.genes_)
    assert not kept & {"MT-CO1", "RPL13A", "RPS27"}
    assert set(model.featurizer.input_genes_) == set(matrix.genes[3:]) >= kept
    assert model.settings["exclude_genes"] == TECHNICAL_GENES
    assert model.settings["high_percentile"] == 100.0
    loaded = ACTINNModel.load(model.save(tmp_path / "m"), device="cpu")
    assert loaded.featurizer.exclude_genes == TECHNICAL_GENES
    assert loaded.hyperparameters == model.hyperparameters
    actinn = featurizer_for("actinn")
    assert (actinn.low_percentile, actinn.high_percentile, actinn.exclude_genes) == \
        (1.0, 99.0, None)


def test_explicit_epochs_are_the_training_length_unless_min_steps_is_given_too():
    assert ACTINNModel(10, 3, preset="transfer").settings["min_steps"] == 2000
    short = ACTINNModel(10, 3, preset="transfer", epochs=2)
    assert short.settings["min_steps"] == 0 and short.epochs_for(64) == 2
    floor = ACTINNModel(10, 3, preset="transfer", epochs=2, min_steps=40, batch_size=16)
    assert floor.epochs_for(64) == 10  # 4 steps an epoch


def test_transfer_preset_is_the_default_of_train_reference_and_is_reported(tmp_path):
    from deepchem_actinn.annotation import annotate

    matrix, labels = _reference()
    model = train_reference(matrix, labels, epochs=2, device="cpu")
    assert model.preset == "transfer" and model.model.skip is not None
    assert model.featurizer.high_percentile == 100.0
    assert model.featurizer.exclude_genes is None
    result = annotate(matrix, model.save(tmp_path / "m"))
    assert result.preset == "transfer"
    assert ACTINNModel(10, 3).preset == "actinn"  # the class itself stays the paper's


def test_missing_genes_take_the_reference_mean_in_the_transfer_mode(tmp_path):
    from deepchem_actinn.annotation import annotate
    from deepchem_actinn.preprocessing import ScRNAFeaturizer

    matrix, labels = _reference()
    featurizer = ScRNAFeaturizer(low_percentile=0, high_percentile=100, missing_genes="mean")
    featurizer.fit(matrix)
    full = featurizer.transform(matrix)
    np.testing.assert_allclose(featurizer.gene_means_, full.mean(axis=0), rtol=1e-5, atol=1e-6)
    keep = np.arange(len(matrix.genes)) != 5  # the query lacks one model gene
    query = CountMatrix(matrix.X[:, keep], np.asarray(matrix.genes)[keep], matrix.cells)
    gene = list(featurizer.genes_).index(str(matrix.genes[5]).upper())
    for sparse in (False, True):
        X = featurizer.transform(query, sparse_output=sparse)
        X = X.toarray() if hasattr(X, "toarray") else X
        np.testing.assert_allclose(X[:, gene], featurizer.gene_means_[gene], rtol=1e-6)
        np.testing.assert_array_equal(np.delete(X, gene, axis=1) > 0,
                                      np.delete(full, gene, axis=1) > 0)
    assert "1 set to the reference mean" in featurizer.overlap(query.genes).summary()
    zero = ScRNAFeaturizer(low_percentile=0, high_percentile=100).fit(matrix)
    assert (zero.transform(query)[:, gene] == 0).all()
    assert "1 set to zero" in zero.overlap(query.genes).summary()
    model = train_reference(matrix, labels, epochs=1, device="cpu")  # transfer: "mean"
    loaded = ACTINNModel.load(model.save(tmp_path / "m"), device="cpu")
    assert loaded.featurizer.missing_genes == "mean" and loaded.settings["missing_genes"] == "mean"
    np.testing.assert_array_equal(loaded.featurizer.gene_means_, model.featurizer.gene_means_)
    assert "set to the reference mean" in annotate(query, loaded).overlap.summary()
    actinn = train_reference(matrix, labels, preset="actinn", epochs=1, device="cpu")
    assert actinn.featurizer.missing_genes == "zero"
    # Cells without counts stay empty cells: the filled-in means are not theirs.
    empty = CountMatrix(np.zeros_like(query.X), query.genes, query.cells)
    with pytest.raises(ValueError, match="every cell has zero counts over the model's genes"):
        annotate(empty, loaded)


def test_gene_dropout_hides_genes_from_the_linear_head_at_their_batch_mean():
    torch.manual_seed(0)
    net = ActinnClassifier(12, 3, generator=torch.Generator().manual_seed(0), linear_skip=True,
                           dropout_seed=7, gene_dropout=0.5)
    with torch.no_grad():
        net.skip.weight.normal_()
        net.skip.bias.normal_()
    x = torch.rand(6, 12) * (torch.rand(6, 12) > 0.4)
    eval_logits = net.eval()(x)[1]
    torch.testing.assert_close(eval_logits[:, 1], net.skip(x))  # predictions see every gene
    net.train()
    logits = net(x)[1][:, 1]
    # The same draw by hand: hidden genes read their batch mean, kept ones scaled deviations.
    replay = torch.Generator().manual_seed(7)
    keep = (torch.rand(12, generator=replay) >= 0.5).float()
    mean = x.mean(dim=0)
    shown = mean + keep * (x - mean) / 0.5
    torch.testing.assert_close(logits, shown @ net.skip.weight + net.skip.bias)
    assert 0 < keep.sum() < 12
    # A sparse batch draws the same genes and gives the same logits.
    twin = ActinnClassifier(12, 3, linear_skip=True, dropout_seed=7, gene_dropout=0.5)
    twin.load_state_dict(net.state_dict())
    torch.testing.assert_close(twin.train()(x.to_sparse_csr())[1][:, 1], logits)


def test_gene_dropout_is_a_recorded_checked_setting():
    model = ACTINNModel(8, 3, linear_skip=True, gene_dropout=0.3)
    assert model.model.gene_dropout == 0.3 and model.settings["gene_dropout"] == 0.3
    assert ACTINNModel(8, 3).settings["gene_dropout"] == 0.0  # ACTINN: off
    with pytest.raises(ValueError, match="gene_dropout"):
        ACTINNModel(8, 3, linear_skip=True, gene_dropout=1.0)
