"""Shared fixtures. DeepChem's import-time messages are silenced here, once."""

import contextlib
import io
import logging
import os
import warnings

import numpy as np
import pandas as pd
import pytest

with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()), \
        warnings.catch_warnings():
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    import deepchem  # noqa: F401
    logging.disable(logging.NOTSET)
logging.getLogger("deepchem").setLevel(logging.ERROR)

from deepchem_actinn.sample_data import sample_files, tutorial_files  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """The networks are tiny: one torch thread is fastest and immune to a busy machine."""
    import torch
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def samples():
    """DeepChem's two bundled Tabula Muris samples (paths)."""
    return sample_files()


@pytest.fixture(scope="session")
def tutorial():
    """The bundled DeepChem tutorial pair (paths)."""
    return tutorial_files()


def write_counts(path, counts, genes=None, cells=None, key="dge"):
    """Write a genes x cells pandas HDF file from a cells x genes array."""
    counts = np.asarray(counts)
    genes = genes if genes is not None else [f"Gene{i}" for i in range(counts.shape[1])]
    cells = cells if cells is not None else [f"cell{i}" for i in range(counts.shape[0])]
    pd.DataFrame(counts.T, index=genes, columns=cells).to_hdf(path, key=key)
    return os.fspath(path)


def write_10x(path, X, genes, cells, version=3, gene_ids=None, feature_types=None,
              genomes=("mm10",)):
    """Write a cells x genes matrix as Cell Ranger HDF5, by hand in the published layout.

    The arrays are those of the genes x cells CSC matrix Cell Ranger stores (the cells x
    genes CSR arrays): int32 values, int64 ``indices``/``indptr``, ``shape`` = (genes,
    cells). Feature ids are ``gene_ids`` (default ``ENSG00000``, ``ENSG00001``, ...).

    - ``version=3``: ``matrix/{barcodes,data,indices,indptr,shape}`` and
      ``matrix/features/{id,name,feature_type,genome}``; ``feature_types`` (one a feature,
      default all ``Gene Expression``) may mark extra columns of ``X`` as, e.g.,
      ``Antibody Capture``; every feature is of the one genome in ``genomes``.
    - ``version=2``: one group of ``{barcodes,data,indices,indptr,shape,genes,gene_names}``
      per genome in ``genomes`` (several: a barnyard file), each holding the same matrix.
    """
    import h5py
    import scipy.sparse as sp

    def text(names):
        return np.array([str(name).encode() for name in names])

    X = sp.csr_matrix(X)
    genes, cells = list(genes), list(cells)
    ids = list(gene_ids) if gene_ids is not None else [f"ENSG{i:05d}" for i in range(len(genes))]
    assert X.shape == (len(cells), len(genes)) == (len(cells), len(ids)), X.shape
    arrays = {"barcodes": text(cells), "data": X.data.astype(np.int32),
              "indices": X.indices.astype(np.int64), "indptr": X.indptr.astype(np.int64),
              "shape": np.array([len(genes), len(cells)], np.int32)}
    with h5py.File(path, "w") as handle:
        if version == 3:
            (genome,) = genomes
            types = list(feature_types) if feature_types is not None \
                else ["Gene Expression"] * len(genes)
            assert len(types) == len(genes), types
            group = handle.create_group("matrix")
            group.update(arrays)
            features = group.create_group("features")
            features.update({"id": text(ids), "name": text(genes), "feature_type": text(types),
                             "genome": text([genome] * len(genes))})
        elif version == 2:
            assert feature_types is None, "10x v2 files have no feature types"
            for genome in genomes:
                group = handle.create_group(genome)
                group.update(arrays)
                group.update({"genes": text(ids), "gene_names": text(genes)})
        else:
            raise ValueError(f"10x HDF5 version 2 or 3, not {version!r}")
    return os.fspath(path)


def write_labels(path, mapping, header=False):
    """Write a cell_id<TAB>cell_type file."""
    with open(path, "w") as handle:
        if header:
            handle.write("cell_id\tcell_type\n")
        for cell, label in mapping.items():
            handle.write(f"{cell}\t{label}\n")
    return os.fspath(path)


def synthetic_counts(n_cells=120, n_genes=200, n_types=3, seed=0):
    """Poisson counts whose cell types differ in a block of marker genes."""
    rng = np.random.default_rng(seed)
    types = np.arange(n_cells) % n_types
    rates = rng.gamma(2.0, 1.0, size=n_genes)
    lam = np.tile(rates, (n_cells, 1))
    block = n_genes // (2 * n_types)
    for t in range(n_types):
        lam[types == t, t * block:(t + 1) * block] *= 8.0
    counts = rng.poisson(lam).astype(np.int64)
    return counts, types


def write_labelled_counts(folder, n_cells, n_genes, type_prefix="t"):
    """Synthetic counts (cells ``cell{i}``, genes ``Gene{i}``) and their labels on disk.

    Returns ``(counts, types, counts_path, labels_path)``.
    """
    counts, types = synthetic_counts(n_cells, n_genes)
    path = write_counts(folder / "counts.h5", counts)
    names = {f"cell{i}": f"{type_prefix}{t}" for i, t in enumerate(types)}
    return counts, types, path, write_labels(folder / "labels.tsv", names)


def sha256_file(path):
    """Hex SHA-256 of a file's bytes (what model metadata records for its weights)."""
    import hashlib

    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def one_line_error(capsys, *argv, alone=False):
    """Run the CLI in-process; return its one error line, the last on stderr (exit 2).

    Progress lines may come before it (``alone``: none may).
    """
    from deepchem_actinn import cli

    capsys.readouterr()
    code = cli.main([os.fspath(a) for a in argv])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, (code, out, err)
    assert "Traceback" not in err and sum("error" in line for line in lines) == 1, err
    assert lines[-1].startswith("deepchem-actinn: error: "), err
    assert len(lines) == 1 or not alone, err
    return lines[-1]


#: The session ``reference``'s size: cells ``cell{i}``, genes ``Gene{i}``, labels ``t0``-``t2``.
REFERENCE_CELLS, REFERENCE_GENES = 60, 120


@pytest.fixture(scope="session")
def reference(tmp_path_factory):
    """One small trained reference for the whole session: counts and labels on disk and the
    saved model folder (tests that change it copy it first), trained with the defaults
    (seed 0) for one epoch; also the counts as an array (``X``, cells x genes), their
    ``types`` (0-2) and the ``genes`` and ``cells`` names."""
    folder = tmp_path_factory.mktemp("reference")
    X, types, counts, labels = write_labelled_counts(folder, REFERENCE_CELLS, REFERENCE_GENES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import deepchem_actinn as da

        model = da.train_reference(counts, labels, epochs=1)
    return {"model": model.save(folder / "model"), "counts": counts, "labels": labels,
            "X": X, "types": types, "genes": [f"Gene{i}" for i in range(REFERENCE_GENES)],
            "cells": [f"cell{i}" for i in range(REFERENCE_CELLS)]}
