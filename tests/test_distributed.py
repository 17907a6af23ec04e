"""torchrun with 2 CPU ranks (gloo) gives a normal model as good as single-process training."""

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import write_counts, write_labels

from deepchem_actinn.annotation import annotate
from deepchem_actinn.data import ScRNALoader, StratifiedSplitter
from deepchem_actinn.io import rank_rows, read_counts, read_labels
from deepchem_actinn.model import ACTINNModel
from deepchem_actinn.train import train_reference

EPOCHS = 10


def test_rank_rows_partition_every_chunk():
    owned = [np.concatenate([start + rank_rows(n, start, rank, 3)
                             for start, n in ((0, 7), (7, 7), (14, 5))]) for rank in range(3)]
    assert sorted(np.concatenate(owned).tolist()) == list(range(19))
    assert all((o % 3 == rank).all() for rank, o in enumerate(owned))


@pytest.fixture(scope="module")
def split(samples, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    dataset = ScRNALoader().create_dataset(samples.sample_1_counts, samples.sample_1_labels)
    train, _, test = StratifiedSplitter().split(dataset, 0.8, 0.0, 0.2, seed=0)
    matrix = read_counts(samples.sample_1_counts)
    labels = read_labels(samples.sample_1_labels)
    row = {c: i for i, c in enumerate(matrix.cells)}
    paths = {}
    for name, index in (("train", train), ("test", test)):
        cells = dataset.ids[index]
        counts = matrix.X[[row[c] for c in cells]]
        paths[name] = write_counts(folder / f"{name}.h5", counts, list(matrix.genes),
                                   list(cells))
        paths[name + "_labels"] = write_labels(folder / f"{name}.tsv",
                                               {c: labels[c] for c in cells})
    paths["folder"] = folder
    return paths


def accuracy(model, split):
    table = annotate(split["test"], model).to_dataframe()
    truth = read_labels(split["test_labels"]).loc[table.index]
    return float((table.cell_type == truth).mean())


def launch_two_ranks(train_set, labels, model_dir, *extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", "-m", "deepchem_actinn.distributed",
               "--train-set", os.fspath(train_set), "--train-labels", os.fspath(labels),
               "--model-dir", os.fspath(model_dir), "--epochs", str(EPOCHS),
               "--learning-rate", "1e-3", "--device", "cpu", *extra]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == os.fspath(model_dir)
    return ACTINNModel.load(model_dir)


@pytest.fixture(scope="module")
def single(split):
    return train_reference(split["train"], split["train_labels"], epochs=EPOCHS,
                           learning_rate=1e-3, device="cpu")


@pytest.mark.slow
def test_two_ranks_stream_10x_files_into_shards_of_their_own(split, single):
    """A 10x file is streamed: rank shards in --work-dir, removed; the same featurizer."""
    from deepchem_actinn.io import write_counts

    tenx = os.fspath(split["folder"] / "train_10x.h5")
    write_counts(read_counts(split["train"]), tenx, "10x-h5")
    work = split["folder"] / "scratch"
    distributed = launch_two_ranks(tenx, split["train_labels"], split["folder"] / "ddp_10x",
                                   "--work-dir", os.fspath(work))
    assert sorted(os.listdir(work)) == []  # each rank removed its shards
    assert distributed.featurizer.genes_.tolist() == single.featurizer.genes_.tolist()
    assert distributed.classes.tolist() == single.classes.tolist()
    assert abs(distributed._global_step - single._global_step) <= EPOCHS
    assert accuracy(distributed, split) >= accuracy(single, split) - 0.04


@pytest.mark.slow
def test_two_cpu_ranks_match_single_process(split, single):
    model_dir = split["folder"] / "ddp_model"
    distributed = launch_two_ranks(split["train"], split["train_labels"], model_dir)
    # All-reduced gene statistics: the same featurizer as one process on all cells.
    assert distributed.featurizer.genes_.tolist() == single.featurizer.genes_.tolist()
    assert distributed.classes.tolist() == single.classes.tolist()
    assert distributed.settings["batch_size"] == 128
    # Same number of optimizer steps per epoch as single-process training.
    assert abs(distributed._global_step - single._global_step) <= EPOCHS
    acc_distributed, acc_single = accuracy(distributed, split), accuracy(single, split)
    assert acc_single > 0.9
    assert acc_distributed >= acc_single - 0.04, (acc_distributed, acc_single)
