"""Warnings point at the user's line, however deep in the package they arise (errors.py)."""

import warnings

import numpy as np
import pandas as pd
from conftest import synthetic_counts

import deepchem_actinn as da
from deepchem_actinn.errors import user_stacklevel
from deepchem_actinn.io import CountMatrix, read_counts


def _caught(call):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return [w for w in caught if w.category.__module__.startswith("deepchem_actinn")]


def test_a_query_missing_genes_is_reported_at_the_annotate_line(reference):
    model = da.ACTINNModel.load(reference["model"])
    full = read_counts(reference["counts"])
    keep = np.arange(len(full.genes)) % 3 == 0  # a third of the model's genes
    query = CountMatrix(full.X[:, keep], list(np.asarray(full.genes)[keep]), full.cells)
    line = None

    def call():
        nonlocal line
        import inspect
        line = inspect.currentframe().f_lineno + 1
        da.annotate(query, model)

    (caught,) = _caught(call)
    assert "model genes found in the query" in str(caught.message)
    assert caught.filename == __file__ and caught.lineno == line


def test_reading_and_training_warnings_point_here(tmp_path):
    counts, types = synthetic_counts(n_cells=40, n_genes=30)
    cells = [f"c{i}" for i in range(40)]
    matrix = CountMatrix(counts, [f"g{i}" for i in range(30)], cells)
    labels = pd.Series([f"t{t}" for t in types][:30], index=cells[:30])  # 10 cells unlabelled
    caught = _caught(lambda: da.train_reference(matrix, labels, epochs=1))
    assert caught and {w.filename for w in caught} == {__file__}, \
        [(w.filename, str(w.message)) for w in caught]


def test_user_stacklevel_from_outside_the_package_is_the_direct_caller():
    assert user_stacklevel() == 1  # this test's frame is already outside
