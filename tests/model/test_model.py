"""ACTINNModel: training, schedule, L2, sample weights, DeepChem API, save/load."""

import io
import json
import os
import subprocess
import sys
import textwrap

import deepchem as dc
import numpy as np
import pytest
import torch

from deepchem_actinn.data import CellDataset, ScRNALoader, StratifiedSplitter
from deepchem_actinn.errors import ModelFileError
from deepchem_actinn.model import ACTINN_DEFAULTS, ActinnClassifier, ACTINNModel
from deepchem_actinn.preprocessing import ScRNAFeaturizer
from deepchem_actinn.train import featurize

FAST = {"learning_rate": 1e-3, "batch_size": 32}


@pytest.fixture(scope="module")
def small(samples):
    """300 cells of sample_1 (5 types, stratified), featurised on themselves."""
    raw = ScRNALoader().create_dataset(samples.sample_1_counts, samples.sample_1_labels)
    index, _, _ = StratifiedSplitter().split(raw, 0.3, 0.0, 0.7, seed=0)
    raw = raw.select(index)
    featurizer = ScRNAFeaturizer().fit(raw.to_count_matrix())
    return featurize(featurizer, raw), featurizer


# Not the session reference: 25 epochs on real cells (5 types), for > 95% accuracy on them.
@pytest.fixture(scope="module")
def trained(small):
    features, featurizer = small
    model = ACTINNModel(len(featurizer.genes_), features.n_classes, classes=features.classes,
                        featurizer=featurizer, epochs=25, seed=0, **FAST)
    model.fit(features, checkpoint_interval=0)
    return model


def test_defaults_are_actinn():
    model = ACTINNModel(n_genes=10, n_classes=3)
    actinn = {"hidden_sizes": (100, 50, 25), "learning_rate": 1e-4, "decay_rate": 0.95,
              "decay_steps": 1000, "l2": 0.005, "batch_size": 128, "epochs": 50,
              "input_dropout": 0.0}
    assert {k: model.settings[k] for k in actinn} == actinn
    assert {k: v for k, v in ACTINN_DEFAULTS.items() if k != "hidden_sizes"} == \
        {k: v for k, v in actinn.items() if k != "hidden_sizes"}
    assert model.batch_size == 128 and model.epochs == 50
    sizes = [(layer.in_features, layer.out_features) for layer in model.model.layers()]
    assert sizes == [(10, 100), (100, 50), (50, 25), (25, 3)]
    assert model.current_learning_rate() == pytest.approx(1e-4)
    custom = ACTINNModel(n_genes=10, n_classes=3, hidden_sizes=(64, 16))
    assert [layer.out_features for layer in custom.model.layers()] == [64, 16, 3]
    with pytest.raises(ValueError, match="unknown preset"):
        ACTINNModel(n_genes=10, n_classes=3, preset="nope")


def test_xavier_uniform_init_and_zero_biases():
    net = ActinnClassifier(400, 5, generator=torch.Generator().manual_seed(0))
    for layer in net.layers():
        fan_in, fan_out = layer.in_features, layer.out_features
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        weights = layer.weight.detach().numpy()
        assert np.abs(weights).max() <= bound
        assert np.abs(weights).max() > 0.9 * bound
        assert (layer.bias.detach().numpy() == 0).all()


def test_overfits_a_small_real_set(trained, small):
    features, _ = small
    accuracy = (trained.predict_labels(features) == features.cell_types()).mean()
    assert accuracy > 0.95


def test_learning_rate_schedule_really_applies(small):
    features, featurizer = small
    model = ACTINNModel(len(featurizer.genes_), features.n_classes, batch_size=64,
                        decay_steps=3)
    seen = {}
    model.fit(features, nb_epoch=3, checkpoint_interval=0,
              callbacks=[lambda m, step: seen.setdefault(step, m.current_learning_rate())])
    steps = 3 * model.steps_per_epoch(len(features))  # 3 x ceil(300 / 64) = 15
    assert sorted(seen) == list(range(1, steps + 1))
    for step, rate in seen.items():
        assert rate == pytest.approx(1e-4 * 0.95 ** (step // 3), rel=1e-9)
    assert model.current_learning_rate() == pytest.approx(1e-4 * 0.95 ** 5)
    assert seen[steps] < seen[1]


def test_l2_penalises_weights_not_biases():
    model = ACTINNModel(n_genes=12, n_classes=3, l2=0.005)
    model._ensure_built()
    decay = {id(p): group["weight_decay"] for group in model._pytorch_optimizer.param_groups
             for p in group["params"]}
    for layer in model.model.layers():
        assert decay[id(layer.weight)] == 0.005 and decay[id(layer.bias)] == 0.0
    assert len(decay) == len(list(model.model.parameters()))
    assert ACTINNModel(5, 2, l2=0).optimizer.l2 == 0.0


def test_training_follows_actinns_loss_with_the_l2_term(small):
    """Same weights as plain Adam on cross-entropy + 0.005 * sum(W**2) / 2 (tf.nn.l2_loss)."""
    features, featurizer = small
    X = torch.as_tensor(features.X[:96])
    y = torch.as_tensor(features.y[:96].ravel())
    # One full batch per epoch: the shuffled order cannot change the gradient.
    model = ACTINNModel(len(featurizer.genes_), features.n_classes, seed=3, batch_size=96)
    model.fit(CellDataset(features.X[:96], features.y[:96]), nb_epoch=6, checkpoint_interval=0)
    reference = ActinnClassifier(len(featurizer.genes_), features.n_classes,
                                 generator=torch.Generator().manual_seed(3))
    optimizer = torch.optim.Adam(reference.parameters(), lr=1e-4)
    for _ in range(6):
        optimizer.zero_grad()
        logits = reference(X)[1].squeeze(1)
        penalty = sum((layer.weight ** 2).sum() for layer in reference.layers()) / 2
        (torch.nn.functional.cross_entropy(logits, y) + 0.005 * penalty).backward()
        optimizer.step()
    for ours, theirs in zip(model.model.parameters(), reference.parameters(), strict=True):
        assert torch.allclose(ours, theirs, atol=1e-6)
    assert not torch.allclose(model.model.output.weight,
                              ActinnClassifier(len(featurizer.genes_), features.n_classes,
                                               generator=torch.Generator().manual_seed(3)
                                               ).output.weight, atol=1e-6)


def test_loads_models_saved_in_format_version_1(trained, tmp_path):
    """Version 1 stored the gene layer as units x genes; it loads and predicts the same."""
    from conftest import sha256_file as _sha256

    from deepchem_actinn.model import MODEL_FILE, WEIGHTS_FILE, _metadata_digest

    folder = trained.save(tmp_path / "v2")
    state = torch.load(os.path.join(folder, WEIGHTS_FILE), weights_only=True)
    state["hidden.0.weight"] = state["hidden.0.weight"].t().contiguous()
    torch.save(state, os.path.join(folder, WEIGHTS_FILE))
    meta = json.load(open(os.path.join(folder, MODEL_FILE)))
    meta.update(format_version=1, weights_sha256=_sha256(os.path.join(folder, WEIGHTS_FILE)))
    meta["metadata_sha256"] = _metadata_digest(meta)
    json.dump(meta, open(os.path.join(folder, MODEL_FILE), "w"))
    assert state["hidden.0.weight"].shape == (100, trained.n_genes)
    old = ACTINNModel.load(folder)
    features = CellDataset(np.random.default_rng(0).random((20, trained.n_genes)))
    assert np.allclose(old.predict_proba(features), trained.predict_proba(features), atol=1e-6)


def test_sample_weights_are_honoured(small):
    features, featurizer = small
    y = features.y.copy()
    w = np.ones_like(y, dtype=np.float32)
    w[y == 2] = 0.0
    relabelled = y.copy()
    relabelled[y == 2] = 0  # what a zero-weight cell is labelled must not matter
    runs = []
    for labels in (y, relabelled):
        model = ACTINNModel(len(featurizer.genes_), features.n_classes, seed=1, **FAST)
        model.fit(CellDataset(features.X, labels, w), nb_epoch=2, deterministic=True,
                  checkpoint_interval=0)
        runs.append([p.detach().clone() for p in model.model.parameters()])
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)
    # And a cell of weight 1 does matter.
    model = ACTINNModel(len(featurizer.genes_), features.n_classes, seed=1, **FAST)
    model.fit(CellDataset(features.X, relabelled, np.ones_like(w)), nb_epoch=2,
              deterministic=True, checkpoint_interval=0)
    assert not all(torch.equal(a, b.detach())
                   for a, b in zip(runs[0], model.model.parameters(), strict=True))


def test_predict_shapes_and_names(trained, small):
    features, _ = small
    n, k = len(features), features.n_classes
    probs = trained.predict(features)
    assert probs.shape == (n, 1, k)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-5)
    proba = trained.predict_proba(features)
    assert proba.shape == (n, k)
    # predict_proba takes the one (sparse) inference path: DeepChem's dense predict to rounding.
    np.testing.assert_allclose(proba, probs[:, 0, :], rtol=1e-5, atol=1e-7)
    labels = trained.predict_labels(features)
    assert set(labels) <= set(features.classes)
    np.testing.assert_array_equal(labels, features.classes[proba.argmax(axis=1)])
    embedding = trained.predict_embedding(features)
    assert embedding.shape == (n, 25) and (embedding >= 0).all()  # ReLU layer


def test_evaluate_and_validation_callback_with_many_classes(trained, small):
    features, featurizer = small
    assert features.n_classes == 5
    metric = dc.metrics.Metric(dc.metrics.accuracy_score)
    scores = trained.evaluate(features, [metric])
    expected = (trained.predict_labels(features) == features.cell_types()).mean()
    assert scores["accuracy_score"] == pytest.approx(expected)
    log = io.StringIO()
    callback = dc.models.ValidationCallback(features, interval=5, metrics=[metric],
                                            output_file=log)
    model = ACTINNModel(len(featurizer.genes_), features.n_classes, **FAST)
    model.fit(features, nb_epoch=2, callbacks=[callback], checkpoint_interval=0)
    assert log.getvalue().count("accuracy_score") == 2 * 10 // 5
    assert 0.0 <= callback.get_best_score() <= 1.0


def test_macro_f1_metric_with_many_classes(small):
    """The exported metric scores 5 types through evaluate and ValidationCallback."""
    from sklearn.metrics import f1_score

    from deepchem_actinn import macro_f1_metric
    from deepchem_actinn.evaluation import evaluation_report, macro_f1_score

    features, featurizer = small
    metric = macro_f1_metric()
    log = io.StringIO()
    callback = dc.models.ValidationCallback(features, interval=3, metrics=[metric],
                                            output_file=log)
    # Briefly trained: imperfect calls, so macro-F1 and accuracy differ.
    model = ACTINNModel(len(featurizer.genes_), features.n_classes, classes=features.classes,
                        seed=0, **FAST)
    model.fit(features, nb_epoch=1, callbacks=[callback], checkpoint_interval=0)
    assert log.getvalue().count("macro_f1") == len(features) // 32 // 3
    scores = model.evaluate(features, [metric, dc.metrics.Metric(dc.metrics.accuracy_score)])
    truth, called = features.cell_types(), model.predict_labels(features)
    assert len(set(truth)) == 5 and len(set(called)) > 2
    # The same figure as `deepchem-actinn evaluate`, and scikit-learn's over the true types.
    assert scores["macro_f1"] == pytest.approx(evaluation_report(called, truth)["macro_f1"])
    assert scores["macro_f1"] == pytest.approx(
        f1_score(truth, called, labels=sorted(set(truth)), average="macro"))
    assert 0.0 < scores["macro_f1"] < 1.0
    assert scores["macro_f1"] != pytest.approx(scores["accuracy_score"])
    # Weighted cells, and a type only predicted, as scikit-learn with the true labels.
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 4, 200), rng.integers(0, 5, 200)
    weight = rng.uniform(0.1, 2.0, 200)
    assert macro_f1_score(y_true, y_pred, weight) == pytest.approx(
        f1_score(y_true, y_pred, labels=np.arange(4), average="macro", sample_weight=weight))


def test_model_repr(trained, small):
    features, featurizer = small
    text = repr(trained)
    assert "\n" not in text and "object at" not in text
    assert text.startswith(f"<ACTINNModel preset='actinn': {len(featurizer.genes_):,} genes "
                           "-> 100-50-25 -> 5 classes (")
    assert f"{trained._global_step:,} steps trained>" in text and trained._global_step > 0
    assert str(features.classes[0]) in text and "..." in text
    fresh = ACTINNModel(10, 2, classes=["B", "T"])
    assert repr(fresh) == "<ACTINNModel preset='actinn': 10 genes -> 100-50-25 -> 2 classes " \
        "(B, T); 0 steps trained>"


def test_fit_on_raw_counts_warns_at_the_callers_line(samples, small):
    import warnings

    from deepchem_actinn.data import SparseCellDataset
    from deepchem_actinn.preprocessing import PreprocessingWarning

    raw = ScRNALoader().create_dataset(samples.sample_1_counts, samples.sample_1_labels)
    raw = raw.select(np.arange(200))
    for data in (raw, SparseCellDataset.from_dataset(raw)):
        model = ACTINNModel(raw.X.shape[1], raw.n_classes, **FAST)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            line = sys._getframe().f_lineno + 1
            model.fit(data, nb_epoch=2, checkpoint_interval=0)
        raw_warnings = [w for w in caught if issubclass(w.category, PreprocessingWarning)]
        assert len(raw_warnings) == 1, [str(w.message) for w in caught]  # once, not per step
        message = str(raw_warnings[0].message)
        assert "look like raw counts" in message and "ScRNAFeaturizer" in message
        assert "featurize" in message
        assert raw_warnings[0].filename == __file__ and raw_warnings[0].lineno == line
    # Featurised cells, and integer 0/1 features, train without it.
    features, featurizer = small
    flags = dc.data.NumpyDataset((features.X[:100] > 1).astype(np.float32), features.y[:100])
    for data in (features, flags):
        model = ACTINNModel(data.X.shape[1], features.n_classes, **FAST)
        with warnings.catch_warnings():
            warnings.simplefilter("error", PreprocessingWarning)
            model.fit(data, nb_epoch=1, checkpoint_interval=0)


def test_save_and_load_round_trip(trained, small, tmp_path):
    features, _ = small
    folder = trained.save(tmp_path / "model")
    assert sorted(os.listdir(folder)) == ["actinn_model.json", "weights.pt"]
    loaded = ACTINNModel.load(folder)
    assert loaded is not trained
    np.testing.assert_array_equal(loaded.predict_proba(features), trained.predict_proba(features))
    assert loaded.classes.tolist() == trained.classes.tolist()
    assert loaded.featurizer.genes_.tolist() == trained.featurizer.genes_.tolist()
    assert loaded.hyperparameters == trained.hyperparameters
    assert loaded.current_learning_rate() == pytest.approx(trained.current_learning_rate())


def test_load_in_a_new_process(trained, small, tmp_path):
    features, _ = small
    folder = trained.save(tmp_path / "model")
    np.save(tmp_path / "X.npy", features.X)
    script = textwrap.dedent(f"""
        import warnings, logging, numpy as np
        warnings.simplefilter("ignore"); logging.disable(logging.WARNING)
        import deepchem as dc
        from deepchem_actinn.model import ACTINNModel
        model = ACTINNModel.load({str(folder)!r})
        X = np.load({str(tmp_path / "X.npy")!r})
        np.save({str(tmp_path / "P.npy")!r}, model.predict_proba(dc.data.NumpyDataset(X)))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_array_equal(np.load(tmp_path / "P.npy"), trained.predict_proba(features))


def test_load_refuses_what_is_not_a_model(trained, tmp_path):
    with pytest.raises(ModelFileError, match="model directory not found"):
        ACTINNModel.load(tmp_path / "missing")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("hello")
    with pytest.raises(ModelFileError, match="not a deepchem_actinn model directory"):
        ACTINNModel.load(tmp_path / "data")
    with pytest.raises(ModelFileError, match="not empty and is not a model"):
        trained.save(tmp_path / "data")  # never replaces a folder of user files
    folder = trained.save(tmp_path / "model")
    meta_path = os.path.join(folder, "actinn_model.json")
    meta = json.load(open(meta_path))
    meta["format_version"] = 99
    json.dump(meta, open(meta_path, "w"))
    with pytest.raises(ModelFileError, match="format version 99 is not supported") as info:
        ACTINNModel.load(folder)
    assert str(info.value).startswith(folder) and "\n" not in str(info.value)
    folder = trained.save(tmp_path / "model2")
    with open(os.path.join(folder, "weights.pt"), "ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(ModelFileError, match="checksum"):
        ACTINNModel.load(folder)
