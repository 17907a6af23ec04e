"""Data-parallel ACTINN training with PyTorch DistributedDataParallel and ``torchrun``.

One process per rank (``torchrun`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and the rendezvous address)::

    torchrun --standalone --nproc_per_node 2 -m deepchem_actinn.distributed \\
        --train-set atlas.h5 --train-labels labels.tsv --model-dir model

Several machines (run the same line on each, ``--node_rank`` 0..N-1)::

    torchrun --nnodes 2 --nproc_per_node 4 --node_rank 0 \\
        --rdzv_backend c10d --rdzv_endpoint head-node:29500 \\
        -m deepchem_actinn.distributed --train-set ... --train-labels ... --model-dir ...

What each rank does:

1. Reads only its own cells: cells ``i`` with ``i % world_size == rank``.
   10x HDF5 and CSR ``.h5ad`` files are **streamed**: chunk by chunk for the
   statistics, then into featurised shards in a scratch folder of the rank's
   own (``--work-dir``, default beside ``--model-dir``; removed at the end),
   so a rank's memory is one chunk or one shard window whatever the file's
   size. Other formats are read whole and then strided.
2. Computes per-gene sums and sums of squares of its log-normalised cells;
   these are **all-reduced** (summed over ranks), so every rank fits the same
   gene filters, identical to fitting on all cells in one process. The class
   list is the union over ranks.
3. Trains :class:`~deepchem_actinn.model.ActinnClassifier` wrapped in
   ``DistributedDataParallel`` through the usual
   :class:`~deepchem_actinn.model.ACTINNModel` loop: same loss, L2 on weights,
   Adam 1e-4 with the staircase decay. Each rank's batch is
   ``batch_size // world_size`` (default 128 // 2 = 64), so a step averages
   gradients over ``batch_size`` cells as single-process training does and an
   epoch has the same number of steps (the decay follows the same schedule).
   Ranks take the same number of steps per epoch, the smallest rank's (ranks
   read every ``world_size``-th cell, so their sizes differ by a few cells).
4. Rank 0 writes a normal model directory (``ACTINNModel.load`` reads it).

Backend: NCCL when training on GPUs, gloo on CPU (``--backend`` overrides).
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import logging
import os
import shutil
import sys
import tempfile
import warnings
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
import torch.distributed as dist

from deepchem_actinn.io import rank_rows
from deepchem_actinn.model.presets import DEFAULT_PRESET, PRESETS

logger = logging.getLogger(__name__)

#: Formats each rank streams from disk into shards of its own (memory: one shard window).
STREAMED = ("10x-h5", "h5ad")


def read_rank_cells(path: str, rank: int, world: int
                    ) -> Tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """This rank's cells of a file read whole (not streamed): ``(counts CSR, ids, genes)``."""
    from deepchem_actinn.io import read_counts

    matrix = read_counts(path)
    rows = rank_rows(matrix.shape[0], 0, rank, world)
    return sp.csr_matrix(matrix.X[rows], dtype=np.float32), matrix.cells[rows], matrix.genes


def _all_reduce(array: np.ndarray, op: Any = None) -> np.ndarray:
    tensor = torch.as_tensor(np.ascontiguousarray(array), dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor, op=op or dist.ReduceOp.SUM)
    return tensor.cpu().numpy()


def fit_featurizer_distributed(X: sp.csr_matrix, genes: np.ndarray, source: str = "<ranks>",
                               featurizer: Any = None) -> Tuple[Any, int]:
    """Fit ``featurizer`` (default ACTINN's) from gene sums all-reduced over ranks.

    Every rank fits the same genes, those of one process fitting all cells.
    Returns the featurizer and the number of empty cells over all ranks.
    """
    from deepchem_actinn.preprocessing import ScRNAFeaturizer, log_gene_sums

    featurizer = featurizer or ScRNAFeaturizer()
    columns = featurizer.input_columns(genes, None, source)
    total, squares, used, empty = log_gene_sums(X[:, columns] if len(columns) != len(genes)
                                                else X, featurizer.target_sum)
    sums = _all_reduce(np.concatenate([total, squares, [used, empty]]))
    n = len(columns)
    featurizer.fit_from_sums(sums[:n], sums[n:2 * n], int(sums[-2]),
                             np.asarray(genes, dtype=object)[columns], source)
    featurizer.joint_ = False
    return featurizer, int(sums[-1])


def _pick_device(requested: Optional[str]) -> torch.device:
    if requested:
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def _rank_cells_in_memory(train_set: str, train_labels: str, rank: int, world: int,
                          featurizer: Any) -> Tuple[Any, List[str], Any, int]:
    """Formats read whole: this rank's featurised cells as a SparseCellDataset."""
    from deepchem_actinn.data import SparseCellDataset, encode_labels, featurize_sparse
    from deepchem_actinn.io import read_labels

    X, ids, genes = read_rank_cells(train_set, rank, world)
    labels = read_labels(train_labels)
    labels.index = pd.Index([str(i) for i in labels.index])
    labels = labels[~labels.index.duplicated(keep="first")].astype(str)
    names = labels.reindex(ids)
    labelled = np.flatnonzero(names.notna().to_numpy())
    X, ids, names = X[labelled], ids[labelled], names.iloc[labelled]
    classes = _union_over_ranks(set(names.tolist()), world)
    featurizer, n_empty = fit_featurizer_distributed(X, genes, train_set, featurizer)
    keep = np.asarray(X.sum(axis=1)).ravel() > 0
    X, ids, names = X[np.flatnonzero(keep)], ids[keep], names[keep]
    # Equal cell counts, so every rank takes the same number of steps.
    n_local = int(_all_reduce(np.array([X.shape[0]]), dist.ReduceOp.MIN)[0])
    y, _ = encode_labels(names.tolist()[:n_local], classes)
    raw = SparseCellDataset(X[:n_local], y, ids=ids[:n_local], genes=genes, classes=classes)
    return featurizer, classes, featurize_sparse(featurizer, raw), n_empty


def _rank_shards(train_set: str, train_labels: str, folder: str, rank: int, world: int,
                 chunk_cells: int, seed: int, featurizer: Any) -> Tuple[Any, List[str], Any, int]:
    """Streamed formats: this rank's cells featurised into shards of its own, chunk by chunk.

    Gene statistics are all-reduced, so every rank fits the same featurizer;
    memory stays one chunk (statistics, shards) or one shard window (training).
    """
    from deepchem_actinn.data import write_shards
    from deepchem_actinn.io import ChunkedCounts
    from deepchem_actinn.preprocessing import fit_featurizer_streaming

    source = ChunkedCounts(train_set, part=(rank, world))
    featurizer, stats = fit_featurizer_streaming(source, train_labels, chunk_cells=chunk_cells,
                                                 featurizer=featurizer, reduce=_all_reduce)
    classes = _union_over_ranks(set(stats.classes.tolist()), world)
    shards = write_shards(source, featurizer, folder, train_labels, classes=classes,
                          chunk_cells=chunk_cells, seed=seed + rank)
    return featurizer, classes, shards, stats.n_empty


def _union_over_ranks(names: set, world: int) -> List[str]:
    gathered: List[Any] = [None] * world
    dist.all_gather_object(gathered, sorted(names))
    return sorted(set().union(*gathered))


def _equal_steps(model: Any, shards: Any, epochs: int, steps: int) -> Iterator[Any]:
    """Shard batches, ``steps`` per epoch on every rank (DDP needs equal step counts)."""
    from deepchem_actinn.train import shard_generator

    for _ in range(epochs):
        yield from itertools.islice(shard_generator(model, shards, 1), steps)


def train_distributed(train_set: str, train_labels: str, model_dir: str, *,
                      preset: str = DEFAULT_PRESET, epochs: Optional[int] = None,
                      batch_size: int = 128, seed: int = 0, device: Optional[str] = None,
                      min_gene_overlap: float = 0.1, chunk_cells: int = 16_384,
                      work_dir: Optional[str] = None, **model_kwargs: Any) -> Optional[str]:
    """Run on every rank of an initialised process group; rank 0 returns the saved path.

    Options mean what they mean in :func:`~deepchem_actinn.train.train_reference`
    (the same checks, featurizer and model construction: :mod:`deepchem_actinn.train`);
    ``batch_size`` is the global batch, each rank taking ``batch_size // world_size``.
    10x HDF5 and ``.h5ad`` files are streamed: each rank writes its featurised
    cells to shards in a folder of its own under ``work_dir`` (default: beside
    ``model_dir``), removed at the end. Other formats are read into memory.
    """
    from torch.nn.parallel import DistributedDataParallel

    from deepchem_actinn.io import detect_format
    from deepchem_actinn.model.training import class_counts
    from deepchem_actinn.train import build_model, check_classes, split_settings, warn_dropped

    rank, world = dist.get_rank(), dist.get_world_size()
    torch_device = _pick_device(device)
    if torch_device.type == "cuda":
        torch.cuda.set_device(torch_device)
    featurizer, settings = split_settings(preset, min_gene_overlap, model_kwargs)
    settings.update(batch_size=max(1, batch_size // world), epochs=epochs)
    scratch = None
    try:
        if detect_format(train_set) in STREAMED:
            parent = work_dir or os.path.dirname(os.path.abspath(model_dir))
            os.makedirs(parent, exist_ok=True)
            scratch = tempfile.mkdtemp(prefix=f".actinn-rank{rank}-", dir=parent)
            featurizer, classes, data, n_empty = _rank_shards(
                train_set, train_labels, scratch, rank, world, chunk_cells, seed, featurizer)
        else:
            featurizer, classes, data, n_empty = _rank_cells_in_memory(
                train_set, train_labels, rank, world, featurizer)
        check_classes(classes, train_labels, train_set)
        if rank == 0:
            warn_dropped(n_empty, train_set)
        model = build_model(featurizer, classes, preset=preset, seed=seed, device=torch_device,
                            **settings)
        # Different batches on each rank, same initial weights (DDP broadcasts rank 0's).
        model._shuffle_rng = np.random.default_rng([seed, rank])
        # class_weight="balanced" weighs by the cells of every rank, as one process would.
        model.class_counts = _all_reduce(class_counts(data.y, len(classes)), dist.ReduceOp.SUM)
        module = model.model
        model.model = DistributedDataParallel(
            module, device_ids=[torch_device.index] if torch_device.type == "cuda" else None)
        if scratch is None:
            model.fit(data, checkpoint_interval=0)
        else:
            steps = int(_all_reduce(np.array([model.steps_per_epoch(len(data))]),
                                    dist.ReduceOp.MIN)[0])
            model.prepare_class_weights(data)
            model.fit_generator(_equal_steps(model, data, model.epochs_for(len(data)), steps),
                                checkpoint_interval=0)
        saved = None
        if rank == 0:
            settings["batch_size"] = batch_size
            final = build_model(featurizer, classes, preset=preset, seed=seed, device="cpu",
                                **settings)
            final.model.load_state_dict({k: v.detach().cpu()
                                         for k, v in module.state_dict().items()})
            final._ensure_built()
            final._global_step = model._global_step
            final._sync_schedule()
            saved = final.save(model_dir)
            logger.info("rank 0 wrote %s (%d steps, %d ranks)", saved, model._global_step,
                        world)
        dist.barrier()
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return saved


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point for ``torchrun ... -m deepchem_actinn.distributed``."""
    from deepchem_actinn.validation import option_type

    parser = argparse.ArgumentParser(prog="torchrun ... -m deepchem_actinn.distributed",
                                     description="Train ACTINN with DistributedDataParallel")
    parser.add_argument("--train-set", required=True)
    parser.add_argument("--train-labels", required=True)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS),
                        help=f"training mode, as in deepchem-actinn train (default "
                        f"{DEFAULT_PRESET})")
    parser.add_argument("--epochs", type=option_type("epochs"))
    parser.add_argument("--batch-size", type=option_type("batch_size"), default=128,
                        help="global batch; each rank takes batch-size // world-size")
    parser.add_argument("--learning-rate", type=option_type("learning_rate"))
    parser.add_argument("--seed", type=option_type("seed"), default=0)
    parser.add_argument("--min-overlap", type=option_type("threshold"), default=0.1,
                        help="smallest fraction of model genes a query must hold (0.1)")
    parser.add_argument("--device", help="default: cuda:LOCAL_RANK if a GPU is present, else cpu")
    parser.add_argument("--backend", choices=["gloo", "nccl"],
                        help="default: nccl on GPU, gloo on CPU")
    parser.add_argument("--chunk-cells", type=option_type("chunk_cells"), default=16_384)
    parser.add_argument("--work-dir", help="where each rank writes its shards of a streamed "
                        "10x / .h5ad file (default: beside --model-dir); removed at the end")
    args = parser.parse_args(argv)
    from deepchem_actinn.quiet import import_quietly
    from deepchem_actinn.tuning import reuse_freed_memory

    import_quietly()  # DeepChem's import-time messages, once per rank
    reuse_freed_memory()
    warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")
    if "RANK" not in os.environ:  # plain `python -m`: a world of one
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0",
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ.get("MASTER_PORT",
                                                                              "29533"))
    device = _pick_device(args.device)
    backend = args.backend or ("nccl" if device.type == "cuda" else "gloo")
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    from deepchem_actinn.errors import ActinnError

    extra = {} if args.learning_rate is None else {"learning_rate": args.learning_rate}
    try:
        saved = train_distributed(args.train_set, args.train_labels, args.model_dir,
                                  preset=args.preset, min_gene_overlap=args.min_overlap,
                                  epochs=args.epochs, batch_size=args.batch_size,
                                  seed=args.seed, device=str(device),
                                  chunk_cells=args.chunk_cells, work_dir=args.work_dir,
                                  **extra)
        if saved:
            print(saved)
        return 0
    except ActinnError as exc:
        print(f"deepchem_actinn.distributed: error: {exc}", file=sys.stderr)
        return 2
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
