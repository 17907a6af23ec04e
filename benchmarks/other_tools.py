"""actinn-jax and CellTypist on the synthetic 10x files, for ``scale.py``'s table.

They need scanpy (and jax), which this project does not, so they live in an
interpreter of their own and ``scale.py`` runs this file with it:

    python3.11 -m venv /tmp/aj && /tmp/aj/bin/pip install actinn-jax==0.3.1
    python3.11 -m venv /tmp/ct && /tmp/ct/bin/pip install celltypist==1.7.1 "scipy<1.11" \\
        "numpy<2" "anndata<0.11" "scanpy<1.11"
    python benchmarks/scale.py --files synth_100k.h5 --modes sparse actinn-jax celltypist \\
        --tools-python actinn-jax=/tmp/aj/bin/python celltypist=/tmp/ct/bin/python

One run prints one JSON line with the keys ``scale.py`` prints for its own
paths. Each tool is run as its documentation suggests for a large reference,
with one pass over the cells where it has a notion of epochs:

* actinn-jax: ``train_reference(adata, num_epochs=1, batch_size=128)`` (the
  ACTINN network and batch, JAX on CPU; normalisation and gene filters inside
  training, so they count as training time), ``predict_proba`` on raw counts.
* CellTypist: scanpy ``normalize_total(1e4)`` + ``log1p`` (preprocessing),
  ``train(use_SGD=True, mini_batch=True, epochs=1, with_mean=False)`` (its
  large-data mode: SGD logistic regression on batches of 1,000 cells, sparse
  input kept sparse), ``annotate`` without majority voting. celltypist 1.7.1
  cannot annotate a sparse ``X`` with scipy >= 1.11 (a CSR divided by an array
  becomes a COO it then assigns into), and jax needs scipy >= 1.14, so each
  tool gets its own interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
import warnings
from typing import Any, Dict


def _read(path: str) -> Any:
    import pandas as pd
    import scanpy as sc

    adata = sc.read_10x_h5(path)
    adata.var_names_make_unique()
    truth = pd.read_csv(path + ".labels.tsv", sep="\t", header=None, index_col=0,
                        dtype=str).iloc[:, 0]
    adata = adata[adata.obs_names.isin(truth.index)].copy()
    adata.obs["cell_type"] = truth.loc[adata.obs_names].to_numpy()
    return adata


def actinn_jax(path: str) -> Dict[str, Any]:
    import actinn_jax as aj
    import numpy as np

    t = time.perf_counter()
    adata = _read(path)
    out: Dict[str, Any] = {"read_s": time.perf_counter() - t, "preprocess_s": 0.0,
                           "preprocess_note": "inside training"}
    t = time.perf_counter()
    model = aj.train_reference(adata, "cell_type", num_epochs=1, batch_size=128,
                               use_raw=False, print_cost=False)
    out["train_s"] = time.perf_counter() - t
    t = time.perf_counter()
    probs = np.asarray(model.predict_proba(adata, use_raw=False))
    out["predict_s"] = time.perf_counter() - t
    classes = np.asarray(model.classes)
    out["accuracy_1_epoch"] = float((classes[probs.argmax(axis=1)]
                                     == adata.obs["cell_type"].to_numpy()).mean())
    out["n"] = adata.n_obs
    return out


def celltypist(path: str) -> Dict[str, Any]:
    import celltypist as ct
    import scanpy as sc

    t = time.perf_counter()
    adata = _read(path)
    out: Dict[str, Any] = {"read_s": time.perf_counter() - t}
    t = time.perf_counter()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    out["preprocess_s"] = time.perf_counter() - t
    t = time.perf_counter()
    model = ct.train(adata, labels="cell_type", use_SGD=True, mini_batch=True, epochs=1,
                     with_mean=False, n_jobs=1)
    out["train_s"] = time.perf_counter() - t
    t = time.perf_counter()
    result = ct.annotate(adata, model=model, majority_voting=False)
    out["predict_s"] = time.perf_counter() - t
    called = result.predicted_labels["predicted_labels"].astype(str).to_numpy()
    out["accuracy_1_epoch"] = float((called == adata.obs["cell_type"].to_numpy()).mean())
    out["train_note"] = "cells seen: min(n, 100 batches x 1,000)"
    out["n"] = adata.n_obs
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("tool", choices=["actinn-jax", "celltypist"])
    parser.add_argument("path")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.threads:  # the same thread budget as the torch paths
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = str(args.threads)
        os.environ["XLA_FLAGS"] = ("--xla_cpu_multi_thread_eigen=false "
                                   "intra_op_parallelism_threads=1")
    warnings.simplefilter("ignore")
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # both tools print progress
        out = (actinn_jax if args.tool == "actinn-jax" else celltypist)(args.path)
    n = out.pop("n")
    seen = min(n, 100_000) if args.tool == "celltypist" else n
    out.update(mode=args.tool, cells=n, train_cells_per_s=seen / out["train_s"],
               predict_cells_per_s=n / out["predict_s"],
               peak_rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
