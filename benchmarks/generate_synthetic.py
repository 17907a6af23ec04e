"""Realistic synthetic single-cell count matrices, written as Cell Ranger v3 HDF5 in chunks.

Counts are negative binomial around real cell-type profiles:

* **Profiles**: the mean normalised expression of each of the 5 cell types
  of ACTINN's Tabula Muris droplet data (``--reference``, 14,063 genes),
  extended to ``--genes`` genes by resampling real gene means, and to
  ``--types`` types by sub-types (a parent profile with 3% of its genes
  changed by a log-normal factor). Without the reference file, random
  log-normal profiles are used.
* **Library sizes**: log-normal with the real data's spread (sd of log 0.54),
  the median calibrated so the matrix has ``--density`` non-zeros (7%).
* **Counts**: gamma-Poisson (negative binomial, inverse dispersion ~2 per
  gene) for each cell's well-expressed genes; for the many genes with a
  tiny mean the NB is a Poisson (their zeros dominate) and is sampled
  sparsely, so 1M cells x 15k genes never exist as a dense array.

The file is written chunk by chunk (memory ~ one chunk); labels go to a
``cell_id<TAB>cell_type`` file beside it.

    python benchmarks/generate_synthetic.py --cells 100000 --out /tmp/synth_100k.h5
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Optional, Tuple

import h5py
import numpy as np

REFERENCE = "/work/shared/data/actinn_tm_droplet"


def load_profiles(reference: Optional[str], n_genes: int, n_types: int,
                  rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray, list]:
    """``(profiles types x genes summing to 1, gene names, type names)``."""
    base: Optional[np.ndarray] = None
    names: list = []
    if reference and os.path.isfile(os.path.join(reference, "train_set.h5")):
        import pandas as pd

        from deepchem_actinn.io.pandas_hdf import read_pandas_hdf

        # The package's h5py reader: pandas' own would unpickle object-typed data.
        counts = read_pandas_hdf(os.path.join(reference, "train_set.h5"), "dge")
        labels = pd.read_csv(os.path.join(reference, "train_label.txt"), sep="\t", header=None,
                             index_col=0).iloc[:, 0]
        X = counts.to_numpy(dtype=np.float64)  # genes x cells
        X = X / X.sum(axis=0, keepdims=True)
        types = sorted(set(labels))
        base = np.stack([X[:, (labels.loc[counts.columns] == t).to_numpy()].mean(axis=1)
                         for t in types])
        gene_names = [str(g) for g in counts.index]
        names = [str(t) for t in types]
    if base is None:
        base = rng.lognormal(-11, 2.0, size=(5, n_genes))
        gene_names = []
        names = [f"type{i}" for i in range(5)]
    # Extend or trim the genes: extra genes resample real gene means (with noise).
    if base.shape[1] < n_genes:
        extra = n_genes - base.shape[1]
        pick = rng.integers(0, base.shape[1], size=extra)
        base = np.hstack([base, base[:, pick] * rng.lognormal(0, 0.5, size=(len(base), extra))])
        gene_names = gene_names + [f"SYNGENE{i}" for i in range(extra)]
    base = base[:, :n_genes]
    gene_names = gene_names[:n_genes] if gene_names else [f"GENE{i}" for i in range(n_genes)]
    profiles = [row for row in base]
    while len(profiles) < n_types:  # sub-types of the real types
        parent = len(profiles) % len(base)
        child = base[parent].copy()
        changed = rng.random(n_genes) < 0.03
        child[changed] *= rng.lognormal(0, 1.5, size=int(changed.sum()))
        names.append(f"{names[parent]} {len(profiles) // len(base) + 1}")
        profiles.append(child)
    P = np.stack(profiles[:n_types]) + 1e-9
    return P / P.sum(axis=1, keepdims=True), np.asarray(gene_names), names[:n_types]


def expected_density(P: np.ndarray, libraries: np.ndarray, theta: np.ndarray) -> float:
    mu = libraries[:, None] * P[None, :, :]  # cells x types x genes
    return float((1 - (1 + mu / theta) ** (-theta)).mean())


def sample_chunk(P: np.ndarray, types: np.ndarray, libraries: np.ndarray, theta: np.ndarray,
                 rng: np.random.Generator, high_mu: float = 0.1) -> Tuple[np.ndarray, ...]:
    """CSR arrays ``(data, indices, indptr)`` of one chunk of cells."""
    n_genes = P.shape[1]
    rows, cols, vals = [], [], []
    for t in np.unique(types):
        members = np.flatnonzero(types == t)
        L = libraries[members]
        p = P[t]
        high = np.flatnonzero(p * np.median(libraries) > high_mu)
        low = np.setdiff1d(np.arange(n_genes), high)
        # Well-expressed genes: gamma-Poisson, dense over this small gene set.
        shape = theta[high].astype(np.float32)
        gamma = rng.standard_gamma(shape, size=(len(members), len(high)),
                                   dtype=np.float32) / shape
        mu = (L[:, None] * p[high][None, :]).astype(np.float32) * gamma
        counts = rng.poisson(mu)
        r, c = np.nonzero(counts)
        rows.append(members[r])
        cols.append(high[c])
        vals.append(counts[r, c])
        # Low-mean genes: Poisson, sampled sparsely (how many reads, then which genes).
        p_low = p[low]
        reads = rng.poisson(L * p_low.sum())
        genes = low[np.searchsorted(np.cumsum(p_low) / p_low.sum(),
                                    rng.random(int(reads.sum())), side="right").clip(
            0, len(low) - 1)]
        rows.append(np.repeat(members, reads))
        cols.append(genes)
        vals.append(np.ones(len(genes), dtype=np.int64))
    import scipy.sparse as sp

    X = sp.csr_matrix((np.concatenate(vals).astype(np.int32),
                       (np.concatenate(rows), np.concatenate(cols))),
                      shape=(len(types), n_genes))  # duplicates (same gene twice) are summed
    X.sum_duplicates()
    X.sort_indices()
    return X.data.astype(np.int32), X.indices.astype(np.int32), X.indptr.astype(np.int64)


def generate(path: str, n_cells: int, n_genes: int = 15_000, n_types: int = 10,
             density: float = 0.07, chunk: int = 10_000, seed: int = 0,
             reference: Optional[str] = REFERENCE) -> dict:
    """Write the 10x HDF5 file and ``<path>.labels.tsv``; return a summary."""
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    P, genes, type_names = load_profiles(reference, n_genes, n_types, rng)
    theta = rng.lognormal(np.log(2.0), 0.5, size=n_genes)
    # Type frequencies like an atlas: a few abundant types, several rare ones.
    freq = rng.dirichlet(np.full(n_types, 1.0)) * 0.8 + 0.2 / n_types
    log_sd = 0.54
    probe = rng.lognormal(0, log_sd, size=200)
    probe_types = rng.choice(n_types, size=200, p=freq)
    lo, hi = 100.0, 1e6
    for _ in range(40):  # median library giving the target density
        mid = np.sqrt(lo * hi)
        d = float(np.mean([expected_density(P[t:t + 1], np.array([mid * s]), theta)
                           for s, t in zip(probe, probe_types, strict=True)]))
        lo, hi = (mid, hi) if d < density else (lo, mid)
    median_library = np.sqrt(lo * hi)
    partial = path + ".partial"
    nnz = 0
    with h5py.File(partial, "w") as handle, \
            open(path + ".labels.tsv.partial", "w", encoding="utf-8") as labels:
        handle.attrs["filetype"] = "matrix"
        handle.attrs["version"] = 2
        group = handle.create_group("matrix")
        data = group.create_dataset("data", (0,), np.int32, maxshape=(None,), chunks=(1 << 18,))
        indices = group.create_dataset("indices", (0,), np.int32, maxshape=(None,),
                                       chunks=(1 << 18,))
        indptr = np.zeros(n_cells + 1, np.int64)
        barcodes = group.create_dataset("barcodes", (n_cells,), "S24")
        for start in range(0, n_cells, chunk):
            stop = min(start + chunk, n_cells)
            types = rng.choice(n_types, size=stop - start, p=freq)
            libraries = median_library * rng.lognormal(0, log_sd, size=stop - start)
            d, i, p = sample_chunk(P, types, libraries, theta, rng)
            for ds, values in ((data, d), (indices, i)):
                ds.resize((nnz + len(values),))
                ds[nnz:] = values
            indptr[start + 1:stop + 1] = p[1:] + nnz
            nnz += len(d)
            ids = [f"CELL{c:09d}-1" for c in range(start, stop)]
            barcodes[start:stop] = np.array([s.encode() for s in ids])
            labels.write("".join(f"{c}\t{type_names[t]}\n" for c, t in zip(ids, types,
                                                                              strict=True)))
        group.create_dataset("indptr", data=indptr)
        group.create_dataset("shape", data=np.array([n_genes, n_cells], np.int32))
        features = group.create_group("features")
        features.create_dataset("name", data=np.array([g.encode() for g in genes]))
        features.create_dataset("id", data=np.array([f"SYN{g:08d}".encode()
                                                     for g in range(n_genes)]))
        features.create_dataset("feature_type", data=np.array([b"Gene Expression"] * n_genes))
        features.create_dataset("genome", data=np.array([b"synthetic"] * n_genes))
    os.replace(partial, path)
    os.replace(path + ".labels.tsv.partial", path + ".labels.tsv")
    return {"path": path, "cells": n_cells, "genes": n_genes, "types": n_types,
            "nnz": nnz, "density": nnz / (n_cells * n_genes),
            "median_library": float(median_library), "seconds": time.perf_counter() - started,
            "bytes": os.path.getsize(path)}


def replicate(source: str, path: str, times: int, chunk: int = 50_000) -> dict:
    """Write ``times`` copies of ``source``'s cells (new barcodes) to a larger 10x file.

    Same gene-level statistics as a fresh draw, at disk speed: a fresh 1M-cell
    draw takes ~40 min on 2 busy cores, a 10x replica of 100k cells minutes.
    """
    started = time.perf_counter()
    partial = path + ".partial"
    with h5py.File(source, "r") as src, h5py.File(partial, "w") as dst, \
            open(source + ".labels.tsv", encoding="utf-8") as handle, \
            open(path + ".labels.tsv.partial", "w", encoding="utf-8") as labels:
        label_lines = handle.read().splitlines()
        s = src["matrix"]
        n_genes, n_cells = (int(v) for v in s["shape"][()])
        indptr = s["indptr"][()]
        nnz_one = int(indptr[-1])
        dst.attrs["filetype"] = "matrix"
        dst.attrs["version"] = 2
        group = dst.create_group("matrix")
        total = nnz_one * times
        data = group.create_dataset("data", (total,), np.int32, chunks=(1 << 18,))
        indices = group.create_dataset("indices", (total,), np.int32, chunks=(1 << 18,))
        barcodes = group.create_dataset("barcodes", (n_cells * times,), "S24")
        for copy in range(times):
            for start in range(0, n_cells, chunk):
                stop = min(start + chunk, n_cells)
                lo, hi = int(indptr[start]), int(indptr[stop])
                data[copy * nnz_one + lo:copy * nnz_one + hi] = s["data"][lo:hi]
                indices[copy * nnz_one + lo:copy * nnz_one + hi] = s["indices"][lo:hi]
                ids = [f"CELL{copy * n_cells + c:09d}-1" for c in range(start, stop)]
                barcodes[copy * n_cells + start:copy * n_cells + stop] = np.array(
                    [i.encode() for i in ids])
                labels.write("".join(f"{i}\t{line.split(chr(9), 1)[1]}\n"
                                     for i, line in zip(ids, label_lines[start:stop],
                                                        strict=True)))
        full = np.concatenate([indptr[:-1] + copy * nnz_one for copy in range(times)]
                              + [[nnz_one * times]]).astype(np.int64)
        group.create_dataset("indptr", data=full)
        group.create_dataset("shape", data=np.array([n_genes, n_cells * times], np.int32))
        src.copy(src["matrix/features"], group, "features")
    os.replace(partial, path)
    os.replace(path + ".labels.tsv.partial", path + ".labels.tsv")
    return {"path": path, "cells": n_cells * times, "genes": n_genes, "nnz": nnz_one * times,
            "replica_of": source, "seconds": time.perf_counter() - started,
            "bytes": os.path.getsize(path)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", type=int, required=True)
    parser.add_argument("--genes", type=int, default=15_000)
    parser.add_argument("--types", type=int, default=10)
    parser.add_argument("--density", type=float, default=0.07)
    parser.add_argument("--chunk", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference", default=REFERENCE,
                        help="folder with ACTINN's train_set.h5 + train_label.txt ('' = random)")
    parser.add_argument("--replicate", metavar="SOURCE",
                        help="instead of sampling, write --cells / cells(SOURCE) copies of SOURCE")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.replicate:
        with h5py.File(args.replicate, "r") as handle:
            times = max(1, args.cells // int(handle["matrix/shape"][1]))
        summary = replicate(args.replicate, args.out, times)
    else:
            summary = generate(args.out, args.cells, args.genes, args.types, args.density,
                           args.chunk, args.seed, args.reference or None)
    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                   for k, v in summary.items()))


if __name__ == "__main__":
    main()
