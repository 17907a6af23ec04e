"""``deepchem-actinn`` end to end on the bundled Tabula Muris samples."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
from conftest import write_labels

from deepchem_actinn.cli import main

DEEPCHEM_NOISE = ("No normalization for", "Skipped loading", "torch_geometric", "dgl")


def command():
    """The installed console script, else the module."""
    script = os.path.join(os.path.dirname(sys.executable), "deepchem-actinn")
    return [script] if os.path.isfile(script) else [sys.executable, "-m", "deepchem_actinn.cli"]


def run(args, **kwargs):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(args, capture_output=True, text=True, timeout=300, env=env, **kwargs)


def assert_quiet_import(stderr):
    for noise in DEEPCHEM_NOISE:
        assert noise not in stderr, stderr[-2000:]


def test_train_predict_evaluate_in_subprocesses(samples, tmp_path):
    model_dir = tmp_path / "model"
    train = run(command() + [
        "train", "--train-set", samples.sample_1_counts, "--train-labels",
        samples.sample_1_labels, "--model-dir", str(model_dir), "--query",
        samples.sample_2_counts, "--epochs", "4", "--batch-size", "64",
        "--learning-rate", "1e-3"])
    assert train.returncode == 0, train.stderr[-3000:]
    assert_quiet_import(train.stderr)
    assert "epoch 4/4" in train.stderr and "loss=" in train.stderr  # the progress bar
    assert "training accuracy" in train.stdout
    assert sorted(os.listdir(model_dir)) == ["actinn_model.json", "weights.pt"]

    predictions, probabilities = tmp_path / "pred.tsv", tmp_path / "probs.tsv"
    predict = run([sys.executable, "-m", "deepchem_actinn.cli", "predict", "--model-dir",
                   str(model_dir), "--test-set", samples.sample_2_counts, "--output",
                   str(predictions), "--probabilities", str(probabilities)])
    assert predict.returncode == 0, predict.stderr[-3000:]
    assert_quiet_import(predict.stderr)
    with open(predictions) as handle:
        assert handle.readline() == "cell_id\tcell_type\tprobability\n"
    table = pd.read_csv(predictions, sep="\t", index_col=0)
    assert len(table) == 1000 and table.index[0].startswith("tma_facs_")
    classes = ["B cell", "Granulocyte", "Monocyte", "NK cell", "T cell"]
    assert set(table["cell_type"]) <= set(classes)
    assert ((table["probability"] > 0) & (table["probability"] <= 1)).all()
    probs = pd.read_csv(probabilities, sep="\t", index_col=0)
    assert probs.index.name == "cell_id" and list(probs.columns) == classes
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(probs.max(axis=1), table["probability"], atol=1e-5)
    # Every model gene is in the query: trained with --query.
    assert "0 set to zero" in predict.stderr

    evaluate = run(command() + ["evaluate", "--predictions", str(predictions), "--labels",
                                samples.sample_2_labels])
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
    assert_quiet_import(evaluate.stderr)
    lines = dict(line.split("\t", 1) for line in evaluate.stdout.splitlines()
                 if line.count("\t") == 1)
    assert int(lines["cells"]) == 246
    # The tutorial's sample 1 -> sample 2 task: ACTINN calls these cells well.
    assert float(lines["accuracy"]) >= 0.8 and float(lines["macro_f1"]) >= 0.5  # 0.88 here
    assert "754 of 1000 predicted cells have no label" in evaluate.stderr


def test_main_in_process(samples, tmp_path, capsys):
    model_dir = str(tmp_path / "model")
    assert main(["train", "--train-set", samples.sample_1_counts, "--train-labels",
                 samples.sample_1_labels, "--model-dir", model_dir, "--epochs", "15",
                 "--batch-size", "32", "--learning-rate", "1e-3", "--quiet"]) == 0
    out = capsys.readouterr()
    assert "1000 cells" in out.err and "5 types" in out.err
    train_accuracy = float(out.out.split("training accuracy ")[1].split(";")[0])
    assert train_accuracy > 0.95
    predictions = str(tmp_path / "pred.tsv")
    assert main(["predict", "--model-dir", model_dir, "--test-set", samples.sample_1_counts,
                 "--output", predictions, "--threshold", "0.5"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--predictions", predictions, "--labels",
                 samples.sample_1_labels]) == 0
    out = capsys.readouterr().out
    assert out.startswith("cells\t1000\naccuracy\t")
    assert float(out.split("accuracy\t")[1].split("\n")[0]) > 0.9
    for name in ("B cell", "T cell", "precision", "recall"):
        assert name in out


def test_bad_input_exits_2_with_one_line(tmp_path):
    missing = str(tmp_path / "missing.h5")
    done = run(command() + ["train", "--train-set", missing, "--train-labels", missing,
                            "--model-dir", str(tmp_path / "m"), "--quiet"])
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == [f"deepchem-actinn: error: {missing}: file not found"], done.stderr
    assert not os.path.exists(tmp_path / "m")


def test_bad_inputs_in_process(samples, tmp_path, capsys):
    commas = tmp_path / "labels.csv"
    commas.write_text("a,B\nb,T\n")
    model_dir = tmp_path / "m"
    assert main(["train", "--train-set", samples.sample_1_counts, "--train-labels",
                 str(commas), "--model-dir", str(model_dir), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"deepchem-actinn: error: {commas}: line 1")
    assert not model_dir.exists()

    # Labels whose ids are the matrix's genes: the matrix is taken as transposed.
    genes = pd.read_hdf(samples.sample_1_counts).index[:50]
    transposed = write_labels(tmp_path / "genes.tsv", {g: "B" for g in genes})
    assert main(["train", "--train-set", samples.sample_1_counts, "--train-labels",
                 transposed, "--model-dir", str(model_dir), "--quiet"]) == 2
    assert "looks transposed" in capsys.readouterr().err

    not_a_model = tmp_path / "folder"
    not_a_model.mkdir()
    output = tmp_path / "pred.tsv"
    assert main(["predict", "--model-dir", str(not_a_model), "--test-set",
                 samples.sample_2_counts, "--output", str(output)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a deepchem_actinn model directory" in err[0]
    assert not output.exists() and os.listdir(tmp_path).count("pred.tsv") == 0

    assert main(["evaluate", "--predictions", str(output), "--labels",
                 samples.sample_2_labels]) == 2
    assert "file not found" in capsys.readouterr().err


def test_evaluate_and_help_start_without_deepchem_or_torch(tmp_path):
    """Tables only: evaluate (and --help) never import DeepChem or torch, so they start at once."""
    predictions = tmp_path / "pred.tsv"
    predictions.write_text("cell_id\tcell_type\tprobability\na\tB\t0.9\nb\tT\t0.8\n")
    labels = write_labels(tmp_path / "labels.tsv", {"a": "B", "b": "B"})
    script = ("import sys\n"
              "from deepchem_actinn import cli\n"
              f"assert cli.main(['evaluate', '--predictions', {str(predictions)!r}, "
              f"'--labels', {str(labels)!r}]) == 0\n"
              "try:\n"
              "    cli.main(['train', '--help'])\n"
              "except SystemExit:\n"
              "    pass\n"
              "print('loaded', 'torch' in sys.modules, 'deepchem' in sys.modules)\n")
    done = run([sys.executable, "-c", script])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "accuracy\t0.5000" in done.stdout
    assert done.stdout.strip().endswith("loaded False False"), done.stdout
