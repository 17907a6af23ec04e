"""No partial results: runs killed midway leave the previous result or nothing.

Models are written to a hidden ``.NAME.tmp-*`` folder and swapped into place
in one atomic step; prediction tables to a hidden ``.NAME.*.tmp`` file and
renamed. A SIGKILL cannot run clean-up code, so such a hidden temporary may
remain: it is never read, and later saves work beside it.
"""

import glob
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import REFERENCE_CELLS
from conftest import sha256_file as _sha256

import deepchem_actinn as da
from deepchem_actinn import atomic as atomic_module
from deepchem_actinn import cli
from deepchem_actinn import model as model_module
from deepchem_actinn.model import MODEL_FILE, WEIGHTS_FILE, file_format


@pytest.fixture(scope="module")
def small(reference, tmp_path_factory):
    """Small counts, labels and two different trained models (A and B) on disk: A is the
    session's reference (1 epoch, seed 0; only ever copied or read here), B is trained on
    the same cells for 2 epochs with seed 1."""
    folder = tmp_path_factory.mktemp("small")
    counts, labels = reference["counts"], reference["labels"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = da.train_reference(counts, labels, epochs=2, seed=1).save(folder / "B")
    return {"counts": counts, "labels": labels, "A": reference["model"], "B": b}


def digests(folder):
    return {name: _sha256(os.path.join(folder, name)) for name in (MODEL_FILE, WEIGHTS_FILE)}


def hidden_siblings(path):
    name = os.path.basename(os.fspath(path))
    return sorted(glob.glob(os.path.join(os.path.dirname(os.fspath(path)), f".{name}.*")))


def python_script(code, *args):
    """Start ``python -c code args`` in the repository's environment."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *map(os.fspath, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# ---------------------------------------------------------------------------
# SIGKILL during training: the real command, killed from outside
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_sigkill_during_training(tutorial, small, tmp_path):
    previous = shutil.copytree(small["A"], tmp_path / "previous")
    before = digests(previous)
    fresh = tmp_path / "fresh"
    processes = [subprocess.Popen(
        [sys.executable, "-m", "deepchem_actinn.cli", "train", "--train-set",
         tutorial.train_counts, "--train-labels", tutorial.train_labels, "--model-dir",
         os.fspath(target), "--epochs", "1000", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for target in (previous, fresh)]
    try:
        for process in processes:
            # The command announces the run on stderr just before fit() starts.
            line = process.stderr.readline()
            while line and "cells," not in line:
                line = process.stderr.readline()
            assert "4000 cells" in line, line
        time.sleep(2.0)  # well into training: 1000 epochs take minutes
        for process in processes:
            assert process.poll() is None, "training ended before it was killed"
            process.send_signal(signal.SIGKILL)
        for process in processes:
            assert process.wait(timeout=60) == -signal.SIGKILL
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.communicate()
    # Nothing at all where there was nothing, not even a hidden temporary.
    assert not fresh.exists()
    assert hidden_siblings(fresh) == []
    # The previous complete model is untouched and loads.
    assert digests(previous) == before
    assert hidden_siblings(previous) == []
    assert da.ACTINNModel.load(previous).n_classes == 3


# ---------------------------------------------------------------------------
# SIGKILL inside save(), at the two moments that matter
# ---------------------------------------------------------------------------

KILL_IN_SAVE = """
    import os, signal, sys
    import deepchem_actinn.model as m
    source, target, moment = sys.argv[1:4]
    model = m.ACTINNModel.load(source)
    def die():
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    if moment == "before-json":        # weights written, metadata not yet
        import deepchem_actinn.model.file_format as file_format
        file_format._write_json = lambda *args, **kwargs: die()
    elif moment == "after-swap":       # new model in place, old one not yet deleted
        import deepchem_actinn.atomic as atomic
        exchange = atomic._exchange
        atomic._exchange = lambda a, b: (exchange(a, b), die())
    model.save(target)
    print("not killed")
"""


@pytest.mark.slow
def test_sigkill_inside_save(small, tmp_path):
    before_json = shutil.copytree(small["A"], tmp_path / "before_json")
    after_swap = shutil.copytree(small["A"], tmp_path / "after_swap")
    processes = [python_script(KILL_IN_SAVE, small["B"], target, moment)
                 for target, moment in ((before_json, "before-json"), (after_swap, "after-swap"))]
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == -signal.SIGKILL, err
        assert "not killed" not in out
    a, b = digests(small["A"]), digests(small["B"])
    # Killed before the swap: the previous model, complete; a half-written temporary beside it.
    assert digests(before_json) == a
    (stray,) = hidden_siblings(before_json)
    assert os.path.basename(stray).startswith(".before_json.tmp-")
    assert os.listdir(stray) == [WEIGHTS_FILE]
    # Killed right after the swap: the new model, complete; the old one in the temporary.
    assert digests(after_swap) == b
    (stray,) = hidden_siblings(after_swap)
    assert digests(stray) == a
    for folder in (before_json, after_swap):
        # load() reads only the model folder, never the leftovers ...
        assert da.ACTINNModel.load(folder).n_classes == 3
        # ... and a later save works beside them.
        da.ACTINNModel.load(small["B"]).save(folder)
        assert digests(folder) == b


def test_interrupted_save_cleans_up(small, tmp_path, monkeypatch):
    """Ctrl-C (or any error) inside save() removes its temporary and keeps the old model."""
    target = shutil.copytree(small["A"], tmp_path / "model")
    model = da.ACTINNModel.load(small["B"])

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(file_format, "_write_json", interrupt)
    with pytest.raises(KeyboardInterrupt):
        model.save(target)
    assert digests(target) == digests(small["A"])
    assert sorted(os.listdir(tmp_path)) == ["model"]
    monkeypatch.undo()
    monkeypatch.setattr(atomic_module, "_exchange", interrupt)
    with pytest.raises(KeyboardInterrupt):
        model.save(tmp_path / "model")
    assert digests(target) == digests(small["A"])
    assert sorted(os.listdir(tmp_path)) == ["model"]


def test_save_without_atomic_exchange(small, tmp_path, monkeypatch):
    """Where renameat2 is missing, two renames replace the old model, leaving no backup."""
    target = shutil.copytree(small["A"], tmp_path / "model")
    monkeypatch.setattr(atomic_module, "_exchange", lambda a, b: False)
    da.ACTINNModel.load(small["B"]).save(target)
    assert digests(target) == digests(small["B"])
    assert sorted(os.listdir(tmp_path)) == ["model"]


def test_save_replaces_atomically_and_leaves_nothing(small, tmp_path):
    target = shutil.copytree(small["A"], tmp_path / "model")
    da.ACTINNModel.load(small["B"]).save(target)
    assert digests(target) == digests(small["B"])
    assert sorted(os.listdir(tmp_path)) == ["model"]


def test_ctrl_c_during_cli_training(small, tmp_path, capsys, monkeypatch):
    def interrupt(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(model_module.ACTINNModel, "fit", interrupt)
    capsys.readouterr()
    code = cli.main(["train", "--train-set", small["counts"], "--train-labels", small["labels"],
                     "--model-dir", os.fspath(tmp_path / "model"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 130
    assert err.strip().splitlines()[-1] == "deepchem-actinn: interrupted; nothing was written"
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------
# SIGKILL while predict writes its table
# ---------------------------------------------------------------------------

KILL_IN_PREDICT = """
    import os, signal, sys
    import pandas as pd
    from deepchem_actinn import cli
    def write_half_then_die(self, path, *args, **kwargs):
        with open(path, "w") as handle:
            handle.write("cell_id\\tcell_type\\tprobability\\ncell0\\tt")
            handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    pd.DataFrame.to_csv = write_half_then_die
    cli.main(["predict", "--model-dir", sys.argv[1], "--test-set", sys.argv[2],
              "--output", sys.argv[3]])
    print("not killed")
"""


@pytest.mark.slow
def test_sigkill_while_writing_predictions(small, tmp_path):
    fresh = tmp_path / "fresh.tsv"
    existing = tmp_path / "existing.tsv"
    existing.write_text("cell_id\tcell_type\tprobability\nold\tt0\t1\n")
    processes = [python_script(KILL_IN_PREDICT, small["A"], small["counts"], output)
                 for output in (fresh, existing)]
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == -signal.SIGKILL, err
        assert "not killed" not in out
    assert not fresh.exists()
    assert existing.read_text() == "cell_id\tcell_type\tprobability\nold\tt0\t1\n"
    # The half-written table sits only in a hidden temporary, which no command reads.
    for output in (fresh, existing):
        (stray,) = hidden_siblings(output)
        assert stray.endswith(".tmp")
    # A later run writes the complete table beside the leftovers.
    assert cli.main(["predict", "--model-dir", small["A"], "--test-set", small["counts"],
                     "--output", os.fspath(fresh)]) == 0
    table = pd.read_csv(fresh, sep="\t")
    assert len(table) == REFERENCE_CELLS and np.isfinite(table["probability"]).all()
