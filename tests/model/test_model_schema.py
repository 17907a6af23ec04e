"""Model folders are untrusted input; saving replaces only the model, never with a bad one.

* ``actinn_model.json`` is checked against a schema (every field's type and
  range, known keys only, sizes before allocation) even when its digests were
  recomputed, as anyone can; each refusal is one line through the CLI.
* A load racing a save reads one model or the other, never a mix.
* Retraining into a model folder keeps every other file in it.
* Diverged training and models that do not fit on the disk leave the
  previous model in place; outputs written together are replaced together.
"""

import errno
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest
import torch
from conftest import sha256_file as _sha256
from conftest import synthetic_counts

import deepchem_actinn as da
from deepchem_actinn import atomic, cli
from deepchem_actinn.errors import ModelFileError, TrainingError
from deepchem_actinn.model import (
    MODEL_FILE,
    PRESETS,
    WEIGHTS_FILE,
    ACTINNModel,
    _metadata_digest,
)
from deepchem_actinn.model import file_format as model_module
from deepchem_actinn.model.file_format import HYPERPARAMETERS, network_parameters
from deepchem_actinn.preprocessing import ScRNAFeaturizer
from deepchem_actinn.validation import OptionError


@pytest.fixture
def saved(reference):
    return reference  # the session's trained reference (conftest)


def digests(folder):
    return {name: _sha256(os.path.join(folder, name)) for name in (MODEL_FILE, WEIGHTS_FILE)}


def one_line_error(capsys, argv, only=False):
    """Run the CLI; assert exit 2 with one error line, the last on stderr; return it.

    ``train`` and ``predict`` report progress on stderr before an error that
    comes late; ``only``: the error is all there is.
    """
    capsys.readouterr()
    code = cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if "error:" in line or "Traceback" in line]
    assert code == 2 and len(errors) == 1 and err[-1] == errors[0], err
    assert len(err) == 1 or not only, err
    return err[-1]


def predict_argv(model, counts, output):
    return [os.fspath(a) for a in ("predict", "--model-dir", model, "--test-set", counts,
                                   "--output", output)]


def train_argv(counts, labels, model, *extra):
    return [os.fspath(a) for a in ("train", "--train-set", counts, "--train-labels", labels,
                                   "--model-dir", model, "--epochs", "2", "--quiet", *extra)]


# ---------------------------------------------------------------------------
# The schema: crafted metadata with valid digests
# ---------------------------------------------------------------------------


def rewrite(folder, change):
    """Edit actinn_model.json and recompute its digests, as an attacker would."""
    path = os.path.join(folder, MODEL_FILE)
    with open(path) as handle:
        meta = json.load(handle)
    change(meta)
    meta["weights_sha256"] = _sha256(os.path.join(folder, WEIGHTS_FILE))
    meta["metadata_sha256"] = _metadata_digest(meta)
    with open(path, "w") as handle:
        json.dump(meta, handle)


def setter(*keys_and_value):
    *keys, value = keys_and_value

    def change(meta):
        for key in keys[:-1]:
            meta = meta[key]
        meta[keys[-1]] = value
    return change


def rewrite_weights(folder, change):
    path = os.path.join(folder, WEIGHTS_FILE)
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)
    rewrite(folder, lambda meta: None)


def fill_first(value):
    return lambda state: state["hidden.0.weight"].view(-1)[0].fill_(value)


def duplicate_gene(meta):
    genes = meta["featurizer"]["genes"]
    genes[1] = genes[0]


def duplicate_class(meta):
    meta["classes"][1] = meta["classes"][0]


def compress_weights(folder):
    import zipfile
    path = os.path.join(folder, WEIGHTS_FILE)
    with zipfile.ZipFile(path) as source:
        records = [(info.filename, source.read(info)) for info in source.infolist()]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for name, data in records:
            target.writestr(name, data)
    rewrite(folder, lambda meta: None)


def raw_json(text):
    def write(folder):
        with open(os.path.join(folder, MODEL_FILE), "w") as handle:
            handle.write(text)
    return write


def huge_json(folder):
    with open(os.path.join(folder, MODEL_FILE), "r+b") as handle:
        handle.truncate(1_500_000_000)  # sparse: no disk used, and never read


def fifo_json(folder):
    os.remove(os.path.join(folder, MODEL_FILE))
    os.mkfifo(os.path.join(folder, MODEL_FILE))  # opening it for reading would block


def edit(change):
    return lambda folder: rewrite(folder, change)


HP = "hyperparameters"
#: case -> (damage, pattern the one-line error must match)
CRAFTED = {
    "model_dir in hyperparameters": (edit(setter(HP, "model_dir", "/tmp/actinn-evil")),
                                     r"hyperparameters: unknown field 'model_dir'"),
    "tensorboard: true": (edit(setter(HP, "tensorboard", True)), r"unknown field 'tensorboard'"),
    "decay_steps 0": (edit(setter(HP, "decay_steps", 0)),
                      r"hyperparameters.decay_steps: must be an integer >= 1, not 0"),
    "decay_steps 1.5": (edit(setter(HP, "decay_steps", 1.5)), r"decay_steps: must be an integer"),
    "batch_size true": (edit(setter(HP, "batch_size", True)), r"batch_size: must be an integer"),
    "learning_rate inf": (edit(setter(HP, "learning_rate", math.inf)),
                          r"learning_rate: must be a finite number.*inf"),
    "input_dropout 1": (edit(setter(HP, "input_dropout", 1.0)), r"input_dropout: must be a fin"),
    "label_smoothing 2": (edit(setter(HP, "label_smoothing", 2)), r"label_smoothing: must be"),
    "class_weight other": (edit(setter(HP, "class_weight", "heavy")),
                           r"class_weight: must be one of None, 'balanced', not 'heavy'"),
    "unknown preset": (edit(setter(HP, "preset", "fast")), r"preset: must be one of 'actinn'"),
    "seed -1": (edit(setter(HP, "seed", -1)), r"seed: must be an integer >= 0, not -1"),
    "hidden_sizes a string": (edit(setter(HP, "hidden_sizes", "100")),
                              r"hidden_sizes: must be a list of at most 64 integers"),
    "hidden_sizes 0 wide": (edit(setter(HP, "hidden_sizes", [10, 0])),
                            r"hidden_sizes: item 1 must be an integer in \[1, "),
    "hidden_sizes 160 GB": (edit(setter(HP, "hidden_sizes", [200000, 200000, 25])),
                            r"declares a network of 40,0\d\d,\d{3},\d{3} parameters, more than"),
    "hidden_sizes beyond the weights": (edit(setter(HP, "hidden_sizes", [3000, 3000, 25])),
                                        r"weights.pt does not fit the network .*9,\d{3},\d{3} "
                                        r"parameters declared"),
    "hyperparameters a list": (edit(setter(HP, [])), r"hyperparameters: must be an object"),
    "global_step a string": (edit(setter("global_step", "ten")),
                             r"global_step: must be an integer >= 0, not 'ten'"),
    "n_genes a float": (edit(setter("n_genes", 120.0)), r"n_genes: must be an integer"),
    "class name a list": (edit(setter("classes", 0, ["t0"])),
                          r"classes: item 0 must be a string, not \['t0'\]"),
    "class name null": (edit(setter("classes", 1, None)), r"classes: item 1 must be a string"),
    "class name empty": (edit(setter("classes", 1, " ")), r"classes: item 1 ' ' must be a non-emp"),
    "class name with a newline": (edit(setter("classes", 1, "a\nb")),
                                  r"item 1 'a\\nb' must be .*without control characters"),
    "duplicate class names": (edit(duplicate_class), r"classes: holds 't0' twice"),
    "duplicate gene names": (edit(duplicate_gene), r"featurizer.genes: holds '\w+' twice"),
    "target_sum NaN": (edit(setter("featurizer", "target_sum", math.nan)),
                       r"featurizer.target_sum: must be a finite number in \(0, inf\), not nan"),
    "target_sum -1": (edit(setter("featurizer", "target_sum", -1)), r"target_sum: must be a fin"),
    "percentiles swapped": (edit(lambda meta: meta["featurizer"].update(low_percentile=60.0,
                                                                        high_percentile=40.0)),
                            r"low_percentile is above its high_percentile"),
    "featurizer field unknown": (edit(setter("featurizer", "means", [1.0])),
                                 r"featurizer: unknown field 'means'"),
    "featurizer lacks genes": (edit(lambda m: m["featurizer"].pop("genes")),
                               r"featurizer: lacks the field 'genes'"),
    "unknown top-level field": (edit(setter("extra", 1)), r"json: unknown field 'extra'"),
    "classes missing": (edit(lambda m: m.pop("classes")), r"lacks the field 'classes'"),
    "format_version true": (edit(setter("format_version", True)),
                            r"model format version True is not supported"),
    "weights digest not hex": (lambda f: rewrite(f, lambda m: None) or _edit_raw(
        f, setter("weights_sha256", "z" * 64)), r"weights_sha256: must be a SHA-256 hex digest"),
    "200k-deep JSON": (raw_json("[" * 200_000 + "]" * 200_000),
                       r"actinn_model.json holds 200,000 JSON arrays or objects"),
    "5000-deep JSON": (raw_json('{"a":' * 5000 + "1" + "}" * 5000),
                       r"actinn_model.json is not valid JSON \(nested too deeply\)"),
    "a million empty lists": (raw_json("[" + ",".join(["[]"] * 1_000_000) + "]"),
                              r"holds 1,000,001 JSON arrays or objects"),
    "1.5 GB JSON": (huge_json, r"actinn_model.json is 1,500,000,000 bytes, more than a model "
                               r"file may be"),
    "duplicate JSON keys": (raw_json('{"format": "deepchem_actinn.model", "format": "x"}'),
                            r"not valid JSON \(key 'format' appears twice\)"),
    "JSON a FIFO": (fifo_json, r"actinn_model.json is not a regular file"),
    "NaN weight": (lambda f: rewrite_weights(f, fill_first(math.nan)),
                   r"weights.pt: 'hidden.0.weight' holds NaN or infinite values"),
    "infinite weight": (lambda f: rewrite_weights(f, fill_first(math.inf)),
                        r"'hidden.0.weight' holds NaN or infinite values"),
    "integer weights": (lambda f: rewrite_weights(
        f, lambda s: s.__setitem__("temperature", torch.ones((), dtype=torch.int64))),
        r"'temperature' holds torch.int64 values, not floating-point weights"),
    "weights with a tensor too few": (lambda f: rewrite_weights(f, lambda s: s.pop("output.bias")),
                                      r"weights.pt does not fit the network"),
    "compressed weights archive": (compress_weights, r"weights.pt holds compressed records"),
}


def _edit_raw(folder, change):
    """Edit the JSON keeping its metadata digest valid but the weights digest as set."""
    path = os.path.join(folder, MODEL_FILE)
    with open(path) as handle:
        meta = json.load(handle)
    change(meta)
    meta["metadata_sha256"] = _metadata_digest(meta)
    with open(path, "w") as handle:
        json.dump(meta, handle)


@pytest.mark.parametrize("case", list(CRAFTED))
def test_crafted_model_folder_is_one_line(case, saved, tmp_path, capsys):
    damage, pattern = CRAFTED[case]
    folder = os.fspath(shutil.copytree(saved["model"], tmp_path / "model"))
    damage(folder)
    started = time.perf_counter()
    with pytest.raises(ModelFileError) as info:
        ACTINNModel.load(folder)
    message = str(info.value)
    assert message.startswith(folder) and "\n" not in message and re.search(pattern, message), \
        message
    line = one_line_error(capsys, predict_argv(folder, saved["counts"], tmp_path / "pred.tsv"),
                          only=True)
    assert folder in line and re.search(pattern, line), line
    assert time.perf_counter() - started < 20  # nothing large was built or read
    assert sorted(os.listdir(tmp_path)) == ["model"]
    assert not os.path.exists("/tmp/actinn-evil")


def test_the_installed_command_refuses_a_crafted_model(saved, tmp_path):
    """The real process: one line, exit 2, nothing allocated for a 160 GB network."""
    folder = shutil.copytree(saved["model"], tmp_path / "model")
    rewrite(folder, setter(HP, "hidden_sizes", [200000, 200000, 25]))
    done = subprocess.run([sys.executable, "-m", "deepchem_actinn.cli",
                           *predict_argv(folder, saved["counts"], tmp_path / "pred.tsv")],
                          capture_output=True, text=True, timeout=240)
    err = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(err) == 1, done.stderr
    assert re.search(r"^deepchem-actinn: error: .*model: actinn_model.json: declares a network",
                     err[0])
    assert sorted(os.listdir(tmp_path)) == ["model"]


def test_metadata_changed_without_its_digest_is_named(saved, tmp_path):
    """Schema-valid edits that keep the old digest still say the file was changed."""
    folder = shutil.copytree(saved["model"], tmp_path / "model")
    path = folder / MODEL_FILE
    meta = json.loads(path.read_text())
    meta["hyperparameters"]["epochs"] = 7
    path.write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match=r"changed after the model was saved"):
        ACTINNModel.load(folder)


def test_hyperparameter_table_covers_the_constructor():
    """Each setting a model saves has a check; a new setting fails here until it gets one."""
    for preset in PRESETS:
        assert set(ACTINNModel(5, 2, preset=preset).hyperparameters) == set(HYPERPARAMETERS)


@pytest.mark.parametrize("hidden", [(100, 50, 25), (7,), ()])
def test_network_parameters_counts_the_network(hidden):
    model = ACTINNModel(30, 4, hidden_sizes=hidden)
    held = sum(t.numel() for t in model.model.state_dict().values())
    assert network_parameters(30, 4, hidden) == held


def test_every_setting_round_trips(saved, tmp_path):
    """What save writes, load accepts: non-default values of every setting."""
    featurizer = ACTINNModel.load(saved["model"]).featurizer
    model = ACTINNModel(len(featurizer.genes_), 3, featurizer=featurizer, hidden_sizes=(),
                        learning_rate=0.5, decay_rate=0.5, decay_steps=1, l2=0, batch_size=1,
                        epochs=1, input_dropout=0.25, preset="robust", min_steps=3,
                        label_smoothing=0.5, class_weight="balanced", seed=2**31,
                        linear_skip=True, linear_weight=0.7, linear_l2=0.001,
                        low_percentile=2.0, high_percentile=97.0,
                        exclude_genes="MT-",
                        classes=["T cell", "B-cell (naive)", "NA"])
    loaded = ACTINNModel.load(model.save(tmp_path / "m"))
    assert loaded.hyperparameters == model.hyperparameters
    assert loaded.classes.tolist() == ["T cell", "B-cell (naive)", "NA"]


# ---------------------------------------------------------------------------
# One consistent snapshot while the folder is being replaced
# ---------------------------------------------------------------------------


def tiny_model(classes, seed):
    counts, _ = synthetic_counts(60, 40, seed=seed)
    featurizer = ScRNAFeaturizer().fit(counts, [f"G{i}" for i in range(40)])
    return ACTINNModel(len(featurizer.genes_), 3, classes=classes, featurizer=featurizer,
                       hidden_sizes=(4,), seed=seed)


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two renames"])
def test_load_racing_replacement_reads_one_model(exchange, tmp_path, monkeypatch):
    if not exchange:
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    models = {"A": tiny_model(["a0", "a1", "a2"], 1), "B": tiny_model(["b0", "b1", "b2"], 2)}
    sources = {name: m.save(tmp_path / name) for name, m in models.items()}
    weights = {name: m.model.state_dict() for name, m in models.items()}
    target = os.fspath(shutil.copytree(sources["A"], tmp_path / "model"))
    done, errors = threading.Event(), []

    def swap():  # what save() does, less the serialisation: stage a copy, swap it in
        try:
            for i in range(250):
                staging = atomic.staging_folder(target)
                for name in (MODEL_FILE, WEIGHTS_FILE):
                    shutil.copy(os.path.join(sources["AB"[i % 2]], name), staging)
                atomic.replace_directory(staging, target)
                time.sleep(0.001)  # let loads start at every stage of a swap
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.set()

    swapper = threading.Thread(target=swap)
    swapper.start()
    loads = 0
    try:
        while not done.is_set() or loads < 5:
            model = ACTINNModel.load(target)  # raises on a mixed pair or false corruption
            name = model.classes[0][0].upper()
            for key, tensor in model.model.state_dict().items():
                assert torch.equal(tensor, weights[name][key]), (loads, key)
            loads += 1
    finally:
        done.wait(30)
        swapper.join(30)
    assert not errors, errors
    assert loads >= 5


# ---------------------------------------------------------------------------
# train replaces only the model's own files
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["renameat2", "two renames", "no hard links"])
def test_retraining_keeps_the_other_files_of_the_folder(variant, saved, tmp_path, capsys,
                                                        monkeypatch):
    if variant == "two renames":
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    if variant == "no hard links":
        def no_link(*args, **kwargs):
            raise OSError(errno.EPERM, "Operation not permitted")
        monkeypatch.setattr(atomic.os, "link", no_link)
    folder = shutil.copytree(saved["model"], tmp_path / "model")
    previous = digests(folder)
    train = shutil.copy(saved["counts"], folder / "train.h5")
    labels = shutil.copy(saved["labels"], folder / "labels.tsv")
    (folder / "NOTES.md").write_text("how this reference was built\n")
    (folder / "runs").mkdir()
    (folder / "runs" / "log.txt").write_text("epoch 1\n")
    os.chmod(folder, 0o750)
    before = {p: (p.read_bytes(), p.stat().st_ino) for p in
              (folder / "train.h5", folder / "labels.tsv", folder / "NOTES.md",
               folder / "runs" / "log.txt")}
    capsys.readouterr()
    assert cli.main(train_argv(train, labels, folder, "--seed", "3")) == 0
    assert digests(folder) != previous
    assert ACTINNModel.load(folder).hyperparameters["seed"] == 3
    for path, (content, inode) in before.items():
        assert path.read_bytes() == content, path
        if variant != "no hard links":
            assert path.stat().st_ino == inode, path  # the same file, not a copy
    assert sorted(os.listdir(folder)) == sorted(
        [MODEL_FILE, WEIGHTS_FILE, "train.h5", "labels.tsv", "NOTES.md", "runs"])
    assert os.stat(folder).st_mode & 0o777 == 0o750
    assert os.listdir(tmp_path) == ["model"]  # no hidden leftovers beside it


@pytest.mark.parametrize("flag", ["--checkpoint-dir", "--out-of-core"])
def test_work_folder_inside_a_new_model_folder_is_refused_before_training(flag, saved, tmp_path,
                                                                           capsys):
    """Training would create it there, and save would then refuse a folder of other files."""
    line = one_line_error(capsys, train_argv(saved["counts"], saved["labels"], tmp_path / "m",
                                             flag, tmp_path / "m" / "work"), only=True)
    assert f"{flag} {tmp_path / 'm' / 'work'} is inside the model directory" in line
    assert os.listdir(tmp_path) == []
    # In a folder that already holds a model it is kept like any other file.
    folder = shutil.copytree(saved["model"], tmp_path / "model")
    capsys.readouterr()
    assert cli.main(train_argv(saved["counts"], saved["labels"], folder, "--checkpoint-dir",
                               folder / "checkpoints")) == 0
    assert sorted(os.listdir(folder / "checkpoints")) == ["checkpoint1.pt", "checkpoint2.pt"]


def test_files_created_during_the_swap_are_kept(saved, tmp_path, monkeypatch):
    """A file that appears after the folder was mirrored is moved into the new folder."""
    folder = os.fspath(shutil.copytree(saved["model"], tmp_path / "model"))
    exchange = atomic._exchange

    def late_file_then_exchange(a, b):
        with open(os.path.join(b, "late.txt"), "w") as handle:
            handle.write("late")
        return exchange(a, b)

    monkeypatch.setattr(atomic, "_exchange", late_file_then_exchange)
    ACTINNModel.load(folder).save(folder)
    assert open(os.path.join(folder, "late.txt")).read() == "late"
    assert os.listdir(tmp_path) == ["model"]


# ---------------------------------------------------------------------------
# Diverged training, full disks
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("rate, pattern", [
    ("1e10", r"error: training diverged: loss became (NaN|infinite) at step \d+; try a lower "
             r"--learning-rate"),
    ("inf", r"error: argument --learning-rate: must be a finite number > 0, got inf"),
])
def test_diverged_training_is_not_saved(rate, pattern, saved, tmp_path, capsys):
    folder = shutil.copytree(saved["model"], tmp_path / "model")
    previous = digests(folder)
    line = one_line_error(capsys, train_argv(saved["counts"], saved["labels"], folder,
                                             "--learning-rate", rate))
    assert re.search(pattern, line), line
    assert digests(folder) == previous and os.listdir(tmp_path) == ["model"]
    with pytest.raises((TrainingError, OptionError), match=r"training diverged: loss became|"
                                                           r"learning_rate must be a finite"):
        da.train_reference(saved["counts"], saved["labels"], epochs=2,
                           learning_rate=float(rate))


def test_save_refuses_non_finite_weights(saved, tmp_path):
    folder = shutil.copytree(saved["model"], tmp_path / "model")
    previous = digests(folder)
    model = ACTINNModel.load(folder)
    with torch.no_grad():
        model.model.output.bias[0] = math.nan
    with pytest.raises(TrainingError, match=r"not saved: the weights \(output.bias\) hold NaN"):
        model.save(folder)
    with pytest.raises(TrainingError):
        model.save(tmp_path / "new")
    assert digests(folder) == previous and os.listdir(tmp_path) == ["model"]


def test_model_that_does_not_fit_on_the_disk(saved, tmp_path, capsys, monkeypatch):
    folder = shutil.copytree(saved["model"], tmp_path / "model")
    previous = digests(folder)
    write = model_module._write_bytes

    def full_disk(path, data):
        if path.endswith(WEIGHTS_FILE):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write(path, data)

    monkeypatch.setattr(model_module, "_write_bytes", full_disk)
    line = one_line_error(capsys, train_argv(saved["counts"], saved["labels"], folder))
    assert line.endswith(f"{folder / WEIGHTS_FILE}: cannot write the model (No space left on "
                         "device); the previous model is kept"), line
    assert digests(folder) == previous and os.listdir(tmp_path) == ["model"]
    line = one_line_error(capsys, train_argv(saved["counts"], saved["labels"], tmp_path / "new"))
    assert "nothing was saved" in line and os.listdir(tmp_path) == ["model"]


def test_predictions_and_probabilities_are_replaced_together(saved, tmp_path, capsys,
                                                             monkeypatch):
    output, probabilities = tmp_path / "pred.tsv", tmp_path / "prob.tsv"
    output.write_text("old predictions\n")
    probabilities.write_text("old probabilities\n")
    to_csv = pd.DataFrame.to_csv

    def full_disk_for_probabilities(frame, path, *args, **kwargs):
        if os.path.basename(path).startswith(".prob.tsv"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return to_csv(frame, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_csv", full_disk_for_probabilities)
    line = one_line_error(capsys, predict_argv(saved["model"], saved["counts"], output)
                          + ["--probabilities", os.fspath(probabilities)])
    assert line.endswith(f"{probabilities}: cannot write: No space left on device; nothing "
                         "was replaced"), line
    assert output.read_text() == "old predictions\n"
    assert probabilities.read_text() == "old probabilities\n"
    assert sorted(os.listdir(tmp_path)) == ["pred.tsv", "prob.tsv"]
    monkeypatch.undo()
    assert cli.main(predict_argv(saved["model"], saved["counts"], output)
                    + ["--probabilities", os.fspath(probabilities)]) == 0
    assert len(pd.read_csv(output, sep="\t")) == len(pd.read_csv(probabilities, sep="\t")) == 60


def test_a_failed_rename_puts_the_first_output_back(tmp_path, monkeypatch):
    first, second = tmp_path / "a.tsv", tmp_path / "b.tsv"
    first.write_text("old a")
    replace = os.replace

    def fail_on_b(source, destination):
        if os.fspath(destination).endswith("b.tsv"):
            raise OSError(errno.EIO, "I/O error")
        replace(source, destination)

    monkeypatch.setattr(atomic.os, "replace", fail_on_b)
    with pytest.raises(OSError):
        with atomic.atomic_files([os.fspath(first), os.fspath(second)]) as (a, b):
            open(a, "w").write("new a")
            open(b, "w").write("new b")
    monkeypatch.undo()
    assert first.read_text() == "old a" and not second.exists()
    assert os.listdir(tmp_path) == ["a.tsv"]

