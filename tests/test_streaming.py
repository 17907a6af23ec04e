"""Out-of-core path: streamed statistics and shards equal the in-memory featurizer."""

import os

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import write_10x

from deepchem_actinn import cli
from deepchem_actinn.annotation import annotate, predict_streaming
from deepchem_actinn.data import ScRNALoader, ShardedCellDataset, write_shards
from deepchem_actinn.errors import InputError
from deepchem_actinn.io import ChunkedCounts, read_counts, read_labels
from deepchem_actinn.model import ACTINNModel
from deepchem_actinn.preprocessing import (
    ScRNAFeaturizer,
    chunk_transform,
    fit_featurizer_streaming,
)
from deepchem_actinn.train import featurize, fit_on_shards, train_streaming

# The test file holds an antibody feature, a duplicated gene and unlabelled cells on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::deepchem_actinn.io.CountMatrixWarning")


@pytest.fixture(scope="module")
def files(samples, tmp_path_factory):
    """sample_1 as a 10x v3 file (shuffled cells, a duplicate gene, an antibody) and .h5ad."""
    folder = tmp_path_factory.mktemp("stream")
    matrix = read_counts(samples.sample_1_counts)
    rng = np.random.default_rng(0)
    order = rng.permutation(matrix.shape[0])
    X = sp.csr_matrix(matrix.X[order])
    cells = matrix.cells[order].tolist()
    genes = matrix.genes.tolist()
    # Extra features read_counts drops: an antibody capture and a duplicated gene name.
    extra = sp.csr_matrix(rng.poisson(1.0, size=(X.shape[0], 2)).astype(np.float32))
    X_file = sp.hstack([X, extra], format="csr")
    names = genes + ["CD3_TOTALSEQ", genes[0].lower()]
    types = ["Gene Expression"] * len(genes) + ["Antibody Capture", "Gene Expression"]
    tenx = write_10x(folder / "cells.h5", X_file, names, cells, feature_types=types)
    labels = read_labels(samples.sample_1_labels)
    # Leave 20 cells unlabelled: they must be ignored for training.
    labels_path = folder / "labels.tsv"
    labels.drop(labels.index[:20]).to_csv(labels_path, sep="\t", header=False)
    import anndata

    h5ad = os.fspath(folder / "cells.h5ad")
    anndata.AnnData(X=X.astype(np.float32), obs=pd.DataFrame(index=cells),
                    var=pd.DataFrame(index=genes)).write_h5ad(h5ad)
    return {"10x": tenx, "h5ad": h5ad, "labels": os.fspath(labels_path), "folder": folder}


def in_memory(path, labels):
    dataset = ScRNALoader().create_dataset(path, labels)
    featurizer = ScRNAFeaturizer().fit(dataset.to_count_matrix())
    return dataset, featurizer, featurize(featurizer, dataset)


def test_chunked_reader_matches_read_counts(files):
    source = ChunkedCounts(files["10x"])
    matrix = read_counts(files["10x"])
    assert source.genes.tolist() == matrix.genes.tolist()
    pieces = list(source.chunks(chunk_cells=128))
    assert [p[0] for p in pieces] == list(range(0, 1000, 128))
    assert np.array_equal(sp.vstack([p[1] for p in pieces]).toarray(), matrix.X.toarray())
    assert np.concatenate([p[2] for p in pieces]).tolist() == matrix.cells.tolist()


@pytest.mark.parametrize("kind", ["10x", "h5ad"])
def test_streamed_featurizer_and_shards_equal_in_memory(files, kind, tmp_path):
    dataset, featurizer, features = in_memory(files[kind], files["labels"])
    streamed, stats = fit_featurizer_streaming(files[kind], files["labels"], chunk_cells=97)
    assert stats.n_unlabelled == 20 and stats.n_used == len(dataset)
    assert stats.classes.tolist() == dataset.classes.tolist()
    assert streamed.input_genes_.tolist() == featurizer.input_genes_.tolist()
    assert streamed.genes_.tolist() == featurizer.genes_.tolist()
    assert ScRNAFeaturizer.from_dict(streamed.to_dict()).genes_.tolist() == \
        featurizer.genes_.tolist()
    shards = write_shards(files[kind], streamed, tmp_path / "shards", files["labels"],
                          shard_cells=200, chunk_cells=97, seed=1)
    assert len(shards) == len(dataset) and len(shards.shard_rows) == 5
    # Every shard draws from the whole file, not from one stretch of it.
    first_shard_ids = set(shards.read_shard(0)[2])
    positions = [i for i, c in enumerate(dataset.ids) if c in first_shard_ids]
    assert min(positions) < 100 and max(positions) > 800
    # Same rows as the in-memory features, whatever the shard order.
    everything = shards.select(np.arange(len(shards)))
    row = {c: i for i, c in enumerate(features.ids)}
    index = np.array([row[c] for c in everything.ids])
    assert np.allclose(everything.X.toarray(), features.X[index], atol=1e-6)
    assert np.array_equal(everything.y.ravel(), features.y.ravel()[index])


def test_shard_batches_cover_each_cell_once_per_epoch_in_new_orders(files, tmp_path):
    featurizer, _ = fit_featurizer_streaming(files["10x"], files["labels"])
    shards = write_shards(files["10x"], featurizer, tmp_path / "s", files["labels"],
                          shard_cells=150, seed=0)
    shards.buffer_shards = 2
    epochs = [list(shards.iterbatches(batch_size=64)) for _ in range(2)]
    for batches in epochs:
        sizes = [len(b[0]) for b in batches]
        assert all(s == 64 for s in sizes[:-1]) and sum(sizes) == len(shards)
        ids = np.concatenate([b[3] for b in batches])
        assert sorted(ids) == sorted(shards.ids)
    first = [np.concatenate([b[3] for b in e]).tolist() for e in epochs]
    assert first[0] != first[1]
    ordered = np.concatenate([b[3] for b in shards.iterbatches(64, deterministic=True)])
    assert ordered.tolist() == shards.ids.tolist()


def test_chunk_transform_equals_featurizer_transform(files):
    featurizer, _ = fit_featurizer_streaming(files["10x"], files["labels"])
    source = ChunkedCounts(files["10x"])
    X = source.read(0, 300)
    expected = featurizer.transform(X, source.genes, sparse_output=True)
    got = chunk_transform(featurizer, source.genes)(X)
    assert got.dtype == np.float32 and np.array_equal(got.toarray(), expected.toarray())
    # A file lacking model genes goes through transform itself (zero-filled genes).
    fewer = source.genes.copy()
    fewer[np.flatnonzero(np.isin(source.genes, featurizer.genes_))[:3]] = "ABSENT"
    assert np.array_equal(chunk_transform(featurizer, fewer)(X).toarray(),
                          featurizer.transform(X, fewer, sparse_output=True).toarray())


def test_training_from_shards_and_streaming_prediction(files, tmp_path):
    model = train_streaming(files["10x"], files["labels"], tmp_path / "work", epochs=6,
                            learning_rate=1e-3, seed=0, device="cpu", shard_cells=256,
                            buffer_shards=2)
    loaded = ACTINNModel.load(model.save(tmp_path / "model"))
    ids, probs = predict_streaming(loaded, files["h5ad"], chunk_cells=300)
    truth = read_labels(files["labels"])
    known = pd.Index(ids).isin(truth.index)
    calls = loaded.classes[probs.argmax(axis=1)][known]
    assert len(ids) == 1000 and probs.shape == (1000, 5)
    assert (calls == truth.loc[ids[known]].to_numpy()).mean() > 0.9
    # model.fit on the sharded dataset itself (dense batches through DeepChem) also trains.
    shards = ShardedCellDataset(tmp_path / "work")
    other = ACTINNModel(len(shards.genes), shards.n_classes, classes=shards.classes,
                        featurizer=shards.featurizer, learning_rate=1e-3, device="cpu")
    before = other.predict_proba(shards.select(np.arange(100)))
    other.fit(shards, nb_epoch=1)
    assert not np.allclose(before, other.predict_proba(shards.select(np.arange(100))))
    assert fit_on_shards(other, shards, nb_epoch=1) > 0


def test_command_line_out_of_core_train_and_chunked_predict(files, tmp_path, capsys):
    scratch = tmp_path / "scratch"
    assert cli.main(["train", "--train-set", files["10x"], "--train-labels", files["labels"],
                     "--model-dir", os.fspath(tmp_path / "m"), "--out-of-core",
                     os.fspath(scratch), "--epochs", "2", "--device", "cpu", "--quiet"]) == 0
    assert os.listdir(scratch) == []  # the shards (as large as the data) are removed
    assert ACTINNModel.load(tmp_path / "m").get_global_step() == 2 * -(-980 // 128)
    chunked, whole = tmp_path / "chunked.tsv", tmp_path / "whole.tsv"
    for output, extra in ((chunked, ["--chunk-cells", "300"]), (whole, [])):
        assert cli.main(["predict", "--model-dir", os.fspath(tmp_path / "m"), "--test-set",
                         files["10x"], "--output", os.fspath(output), *extra]) == 0
    # Chunk by chunk, the same calls and probabilities (to 6 digits) as reading it whole.
    assert chunked.read_text() == whole.read_text()
    assert len(pd.read_csv(chunked, sep="\t", index_col=0)) == 1000


def test_annotate_in_chunks_equals_annotate(files, tmp_path):
    model = train_streaming(files["h5ad"], files["labels"], tmp_path / "work", epochs=2,
                            seed=0, device="cpu")
    whole = annotate(files["h5ad"], model, threshold=0.6)
    chunked = annotate(files["h5ad"], model, threshold=0.6, chunk_cells=77)
    assert chunked.cell_ids.tolist() == whole.cell_ids.tolist()
    # Only the hidden layers' batch shapes differ (GEMM blocking): float rounding.
    assert np.allclose(chunked.probabilities, whole.probabilities, rtol=0, atol=1e-6)
    assert np.allclose(chunked.embedding, whole.embedding, rtol=1e-6, atol=1e-6)
    assert chunked.labels.tolist() == whole.labels.tolist()
    assert chunked.overlap == whole.overlap
    ids, probs = predict_streaming(model, files["h5ad"], chunk_cells=500)
    assert np.allclose(probs, whole.probabilities, rtol=0, atol=1e-6)
    assert ids.tolist() == whole.cell_ids.tolist()


def test_10x_v2_files_stream_with_their_genome(files, tmp_path):
    matrix = read_counts(files["10x"])
    path = write_10x(tmp_path / "v2.h5", matrix.X, matrix.genes, matrix.cells, version=2,
                     genomes=("hg19", "mm10"))
    with pytest.raises(InputError, match="2 genomes.*--key"):
        ChunkedCounts(path)
    chunked = ChunkedCounts(path, genome="mm10")
    assert chunked.genes.tolist() == matrix.genes.tolist()
    parts = [X for _, X, _ in chunked.chunks(333)]
    assert (sp.vstack(parts) != sp.csr_matrix(matrix.X)).nnz == 0
    assert ChunkedCounts(path, genome="mm10", gene_ids=True).genes[0] == "ENSG00000"


def test_out_of_core_errors_are_one_line_and_leave_nothing(files, tmp_path, capsys):
    pandas_file = tmp_path / "x.h5"
    pd.DataFrame([[1, 2]], index=["G"], columns=["a", "b"]).to_hdf(pandas_file, key="dge")
    with pytest.raises(InputError, match="streaming reads 10x HDF5 or .h5ad"):
        ChunkedCounts(pandas_file)
    cases = [
        (["train", "--train-set", pandas_file, "--train-labels", files["labels"],
          "--model-dir", tmp_path / "m", "--out-of-core", tmp_path / "s"],
         "x.h5: streaming reads 10x HDF5 or .h5ad files, not pandas-hdf"),
        (["train", "--train-set", files["10x"], "--train-labels", files["labels"],
          "--model-dir", tmp_path / "m", "--out-of-core", tmp_path / "s",
          "--validation-fraction", "0.2"], "--out-of-core does not take --validation-fraction"),
        (["predict", "--model-dir", tmp_path / "none", "--test-set", files["10x"],
          "--output", tmp_path / "o.tsv", "--chunk-cells", "0"],
         "argument --chunk-cells: must be an integer >= 1, got 0"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert cli.main([os.fspath(a) for a in argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "m").exists() and not (tmp_path / "o.tsv").exists()
    assert not (tmp_path / "s").exists() or os.listdir(tmp_path / "s") == []

