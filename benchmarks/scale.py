"""Time and memory of the streaming, sparse and dense paths on synthetic 10x files.

Each path runs in a fresh subprocess that reports its own peak RSS
(``ru_maxrss``), so one path's memory never hides another's:

* ``streaming``: two passes over the file (gene statistics, then featurised
  shards on disk), one epoch from the shards, then annotation of the whole
  file chunk by chunk (read + featurise + predict).
* ``sparse``: the whole file in memory as CSR, ``SparseCellDataset``, one
  epoch, prediction of the featurised cells.
* ``dense``: the tutorial's in-memory path (dense raw counts, dense
  preprocessing, ``CellDataset``/``NumpyDataset``, dense batches). Where its
  preprocessing would not fit in memory, ``dense-train`` preprocesses
  sparsely and trains/predicts on the densified features; where even those
  would not fit, dense is skipped (the table says so).

    python benchmarks/generate_synthetic.py --cells 100000 --out /tmp/scale/synth_100k.h5
    python benchmarks/scale.py --files /tmp/scale/synth_10k.h5 /tmp/scale/synth_100k.h5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from typing import Any, Dict, List

MEMORY_BUDGET = 18e9  # bytes a path may plan to use on this 24 GB machine


def _quiet() -> None:
    import contextlib
    import io
    import logging
    import warnings

    warnings.simplefilter("ignore")
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        logging.disable(logging.WARNING)
        import deepchem  # noqa: F401
        logging.disable(logging.NOTSET)
    logging.getLogger("deepchem").setLevel(logging.ERROR)


def _peak_rss() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0  # KiB on Linux


def worker(path: str, mode: str, work_dir: str, device: str, threads: int) -> Dict[str, Any]:
    _quiet()
    import torch

    from deepchem_actinn.tuning import reuse_freed_memory

    reuse_freed_memory()  # as deepchem-actinn train does, for every path alike

    if threads:
        torch.set_num_threads(threads)

    from deepchem_actinn.model import ACTINNModel

    labels = path + ".labels.tsv"
    out: Dict[str, Any] = {"mode": mode}
    if mode == "torchrun-2":
        # Two CPU ranks (gloo) on this machine; each streams every other cell into shards
        # of its own. The time counts start-up, both passes over the file, the
        # all-reduced gene statistics and one epoch.
        os.makedirs(work_dir, exist_ok=True)
        folder = os.path.join(work_dir, "model")
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                        "--nproc_per_node", "2", "-m", "deepchem_actinn.distributed",
                        "--train-set", path, "--train-labels", labels, "--model-dir", folder,
                        "--epochs", "1"], check=True, capture_output=True,
                       env={**os.environ, "OMP_NUM_THREADS": str(threads or 1)})
        out["train_s"] = time.perf_counter() - t
        out["preprocess_s"] = 0.0
        out["preprocess_note"] = "inside training (each rank reads and featurises its cells)"
        # The largest rank's peak, before this process reads anything large itself.
        rank_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024.0
        model = ACTINNModel.load(folder)
        n = _predict_file(model, path, labels, out)
        out.update(cells=n, genes=len(model.genes), train_cells_per_s=n / out["train_s"],
                   predict_cells_per_s=n / out["predict_s"], peak_rss_gb=rank_peak / 1e9)
        return out
    if mode == "epoch-ab":
        return _epoch_ab(path, labels, device, out)
    if mode == "streaming":
        from deepchem_actinn.streaming import (
            fit_featurizer_streaming,
            fit_on_shards,
            write_shards,
        )

        t = time.perf_counter()
        featurizer, stats = fit_featurizer_streaming(path, labels)
        out["pass1_s"] = time.perf_counter() - t
        shards = write_shards(path, featurizer, work_dir, labels, classes=list(stats.classes))
        out["preprocess_s"] = time.perf_counter() - t
        n = len(shards)
        model = ACTINNModel(len(featurizer.genes_), shards.n_classes, classes=shards.classes,
                            featurizer=featurizer, device=device)
        model._ensure_built()  # torch imports its compiler stack here, once per process
        t = time.perf_counter()
        fit_on_shards(model, shards, nb_epoch=1)
        out["train_s"] = time.perf_counter() - t
        _predict_file(model, path, labels, out)
    else:
        from deepchem_actinn.data import CellDataset, ScRNALoader
        from deepchem_actinn.preprocessing import ScRNAFeaturizer
        from deepchem_actinn.sparse import featurize_sparse
        from deepchem_actinn.train import featurize

        t = time.perf_counter()
        sparse = mode in ("sparse", "dense-train")
        raw = ScRNALoader(sparse=sparse).create_dataset(path, labels)
        featurizer = ScRNAFeaturizer().fit(raw.to_count_matrix())
        features: Any = featurize_sparse(featurizer, raw) if sparse else featurize(featurizer,
                                                                                    raw)
        del raw
        out["preprocess_s"] = time.perf_counter() - t
        if mode == "dense-train":
            out["preprocess_note"] = "sparse preprocessing (dense would not fit), then densified"
            features = CellDataset(features.X.toarray(), features.y, ids=features.ids,
                                   genes=features.genes, classes=features.classes)
        n = len(features)
        model = ACTINNModel(len(featurizer.genes_), features.n_classes,
                            classes=features.classes, featurizer=featurizer, device=device)
        model._ensure_built()  # torch imports its compiler stack here, once per process
        t = time.perf_counter()
        model.fit(features, nb_epoch=1)
        out["train_s"] = time.perf_counter() - t
        t = time.perf_counter()
        probs = model.predict_proba(features.X)  # the one inference path, block by block
        out["predict_s"] = time.perf_counter() - t
        out["accuracy_1_epoch"] = float((probs.argmax(axis=1) == features.y.ravel()).mean())
        out["predict_note"] = "featurised cells in memory"
    out.update(cells=n, genes=len(model.genes), train_cells_per_s=n / out["train_s"],
               predict_cells_per_s=n / out["predict_s"], peak_rss_gb=_peak_rss() / 1e9)
    return out


def _predict_file(model: Any, path: str, labels: str, out: Dict[str, Any]) -> int:
    """Annotate the whole file chunk by chunk (read + featurise + predict); score it."""
    import pandas as pd

    from deepchem_actinn.annotation import predict_streaming

    t = time.perf_counter()
    ids, probs = predict_streaming(model, path)
    out["predict_s"] = time.perf_counter() - t
    truth = pd.read_csv(labels, sep="\t", header=None, index_col=0).iloc[:, 0]
    out["accuracy_1_epoch"] = float(
        (model.classes[probs.argmax(axis=1)] == truth.loc[ids].to_numpy()).mean())
    out["predict_note"] = "whole file: read + featurise + predict"
    return len(ids)


def _epoch_ab(path: str, labels: str, device: str, out: Dict[str, Any],
              rounds: int = 3) -> Dict[str, Any]:
    """Sparse and dense epochs alternated in one process: a ratio immune to slow drifts.

    The same featurised cells, the same seed (so the same batches and initial
    weights); epochs alternate sparse, dense, sparse, ... and the medians are
    reported. Timings on a shared machine drift by tens of percent over
    minutes; alternating keeps both paths under the same conditions.
    """
    import numpy as np

    from deepchem_actinn.data import CellDataset, ScRNALoader
    from deepchem_actinn.model import ACTINNModel
    from deepchem_actinn.preprocessing import ScRNAFeaturizer
    from deepchem_actinn.sparse import featurize_sparse

    t = time.perf_counter()
    raw = ScRNALoader(sparse=True).create_dataset(path, labels)
    featurizer = ScRNAFeaturizer().fit(raw.to_count_matrix())
    sparse = featurize_sparse(featurizer, raw)
    del raw
    dense = CellDataset(sparse.X.toarray(), sparse.y, ids=sparse.ids, genes=sparse.genes,
                        classes=sparse.classes)
    out["preprocess_s"] = time.perf_counter() - t
    models = {name: ACTINNModel(len(featurizer.genes_), sparse.n_classes, seed=0,
                                classes=sparse.classes, featurizer=featurizer, device=device)
              for name in ("sparse", "dense")}
    seconds: Dict[str, List[float]] = {"sparse": [], "dense": []}
    for _ in range(rounds):
        for name, data in (("sparse", sparse), ("dense", dense)):
            models[name]._ensure_built()
            t = time.perf_counter()
            models[name].fit(data, nb_epoch=1, checkpoint_interval=0)
            seconds[name].append(time.perf_counter() - t)
    n = len(sparse)
    median = {name: float(np.median(v)) for name, v in seconds.items()}
    out.update(cells=n, genes=len(featurizer.genes_), epoch_s=seconds,
               sparse_cells_per_s=n / median["sparse"], dense_cells_per_s=n / median["dense"],
               ratio=median["dense"] / median["sparse"],
               ratios=[d / s for s, d in zip(seconds["sparse"], seconds["dense"], strict=True)],
               peak_rss_gb=_peak_rss() / 1e9)
    return out


def _run_json(command: List[str], mode: str) -> Dict[str, Any]:
    """Run a worker process; its last stdout line is its JSON result."""
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"mode": mode, "error": " | ".join(tail)[-400:],
                "wall_s": time.perf_counter() - started}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall_s"] = time.perf_counter() - started
    return result


def run_path(path: str, mode: str, work_root: str, device: str, threads: int
             ) -> Dict[str, Any]:
    work = os.path.join(work_root, f"{os.path.basename(path)}.{mode}")
    shutil.rmtree(work, ignore_errors=True)
    try:
        return _run_json([sys.executable, __file__, "--worker", mode, "--files", path,
                          "--work-dir", work, "--device", device, "--threads", str(threads)],
                         mode)
    finally:
        shutil.rmtree(work, ignore_errors=True)


TOOLS = ("actinn-jax", "celltypist")


def run_tool(path: str, tool: str, python: str, threads: int) -> Dict[str, Any]:
    """One of :data:`TOOLS` through ``other_tools.py`` in its own interpreter."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "other_tools.py")
    return _run_json([python, script, tool, path, "--threads", str(threads)], tool)


def plan(n_cells: int, n_genes: int, modes: List[str], nnz: int = 0) -> List[str]:
    chosen = []
    for mode in modes:
        if mode in TOOLS and 20.0 * nnz > MEMORY_BUDGET:
            # scanpy holds the whole CSR (8 bytes per entry) and normalises copies of it.
            chosen.append(f"{mode}-skipped")
        elif mode == "epoch-ab":
            # Sparse features plus their dense copy (float32).
            chosen.append(mode if 4.0 * n_cells * n_genes <= MEMORY_BUDGET
                          else f"{mode}-skipped")
        elif mode == "dense":
            # Dense raw float32 + float64 normalisation copies: ~32 bytes per entry.
            if 32.0 * n_cells * n_genes <= MEMORY_BUDGET:
                chosen.append("dense")
            elif 8.0 * n_cells * n_genes <= MEMORY_BUDGET:
                chosen.append("dense-train")
            else:
                chosen.append("dense-skipped")
        elif mode == "sparse" and n_cells > 300_000:
            chosen.append("sparse-skipped")  # same memory story as streaming, minus the disk
        else:
            chosen.append(mode)
    return chosen


def plot(results: List[str], out: str) -> None:
    """Bar charts (train cells/s, prediction cells/s, peak RSS) from ``--json`` files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for name in results for line in open(name, encoding="utf-8")
            if line.strip()]
    rows = [r for r in rows if "error" not in r and "note" not in r]
    sizes = sorted({r["n_cells"] for r in rows})
    modes = [m for m in ("streaming", "sparse", "dense", "dense-train", "torchrun-2",
                         "actinn-jax", "celltypist")
             if any(r["mode"] == m for r in rows)]
    metrics = [("train_cells_per_s", "training, cells/s (1 epoch)"),
               ("predict_cells_per_s", "prediction, cells/s"),
               ("peak_rss_gb", "peak RSS, GB")]
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    width = 0.8 / max(len(modes), 1)
    for axis, (key, title) in zip(axes, metrics, strict=True):
        for k, mode in enumerate(modes):
            values = [next((r[key] for r in rows if r["n_cells"] == n and r["mode"] == mode),
                           float("nan")) for n in sizes]
            axis.bar([i + k * width for i in range(len(sizes))], values, width, label=mode)
        axis.set_xticks([i + width * (len(modes) - 1) / 2 for i in range(len(sizes))])
        axis.set_xticklabels([f"{n // 1000}k" if n < 1_000_000 else f"{n // 1_000_000}M"
                              for n in sizes])
        axis.set_title(title)
        axis.set_xlabel("cells (x 15,000 genes)")
    axes[2].axhline(6, color="black", linestyle="--", linewidth=0.8)
    handles, names = axes[0].get_legend_handles_labels()
    figure.legend(handles, names, loc="upper center", ncol=len(modes), fontsize=8,
                  frameon=False)
    figure.tight_layout(rect=(0, 0, 1, 0.92))
    figure.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", nargs="+", required=True,
                        help="10x HDF5 files from generate_synthetic.py (labels beside them)")
    parser.add_argument("--modes", nargs="+", default=["streaming", "sparse", "dense"],
                        help="streaming, sparse, dense, epoch-ab (sparse and dense epochs "
                        "alternated in one process), torchrun-2, actinn-jax, celltypist")
    parser.add_argument("--work-dir", default="/tmp/scale/work")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads per worker (0: torch's default, one per core)")
    parser.add_argument("--json", help="append results to this JSON-lines file")
    parser.add_argument("--plot", metavar="PNG", help="only plot the --json files given "
                        "as --files into PNG")
    parser.add_argument("--tools-python", nargs="+", metavar="[TOOL=]PYTHON", default=[],
                        help="interpreter(s) with actinn-jax and celltypist installed, for the "
                        "modes of those names: one for both, or celltypist=PATH "
                        "actinn-jax=PATH (see other_tools.py)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plot:
        plot(args.files, args.plot)
        return
    if args.worker:
        print(json.dumps(worker(args.files[0], args.worker, args.work_dir, args.device,
                                args.threads)))
        return
    import h5py

    interpreters = dict(item.split("=", 1) if "=" in item else ("", item)
                        for item in args.tools_python)
    rows = []
    for path in args.files:
        with h5py.File(path, "r") as handle:
            n_genes, n_cells = (int(v) for v in handle["matrix/shape"][()])
            nnz = int(handle["matrix/indptr"][-1])
        print(f"\n== {os.path.basename(path)}: {n_cells:,} cells x {n_genes:,} genes, "
              f"{100 * nnz / (n_cells * n_genes):.1f}% non-zero, load {os.getloadavg()[0]:.1f}",
              flush=True)
        for mode in plan(n_cells, n_genes, args.modes, nnz):
            if mode.endswith("-skipped"):
                result: Dict[str, Any] = {"mode": mode, "note": "would not fit in memory"}
            elif mode in TOOLS:
                python = interpreters.get(mode, interpreters.get(""))
                if python is None:
                    print(f"{mode:>14}: skipped (no --tools-python)", flush=True)
                    continue
                result = run_tool(path, mode, python, args.threads)
            else:
                result = run_path(path, mode, args.work_dir, args.device, args.threads)
            result.update(file=os.path.basename(path), n_cells=n_cells, n_genes=n_genes,
                          threads=args.threads, load=os.getloadavg()[0])
            rows.append(result)
            if args.json:
                with open(args.json, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps(result) + "\n")
            if "error" in result or "note" in result:
                print(f"{mode:>14}: {result.get('error') or result.get('note')}", flush=True)
                continue
            if mode == "epoch-ab":
                print(f"{mode:>14}: sparse {result['sparse_cells_per_s']:8,.0f} vs dense "
                      f"{result['dense_cells_per_s']:8,.0f} cells/s/epoch (medians of "
                      f"{len(result['ratios'])} alternated epochs) = {result['ratio']:.2f}x "
                      f"(each round: {', '.join(f'{r:.2f}' for r in result['ratios'])})",
                      flush=True)
                continue
            print(f"{mode:>14}: preprocess {result['preprocess_s']:8.1f} s | train "
                  f"{result['train_cells_per_s']:8,.0f} cells/s/epoch | predict "
                  f"{result['predict_cells_per_s']:8,.0f} cells/s | peak RSS "
                  f"{result['peak_rss_gb']:5.2f} GB | acc@1 epoch "
                  f"{result['accuracy_1_epoch']:.3f}", flush=True)


if __name__ == "__main__":
    main()
