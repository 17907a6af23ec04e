"""Accuracy of the faithful ACTINN, the ``robust`` preset and a linear baseline.

Development data only (``/work/shared/data`` or ``$ACTINN_DATA``): five
within- and cross-dataset tasks. For each task and seed the three methods
are trained on the same cells and genes and scored on the same query cells:

* ``actinn``: ``train_reference(preset="actinn")``, the paper's network.
* ``robust``: ``train_reference(preset="robust")``.
* ``robust+T`` (optional method): ``robust`` trained on 80% of the reference,
  with a temperature fitted on the other 20% (``ACTINNModel.fit_temperature``).
* ``logreg``: scikit-learn ``LogisticRegression`` (``max_iter=1000``,
  default ``C``) on log2(CP10k + 1) of the same input genes, no gene filter,
  no scaling.

Cross-dataset tasks train on the genes the query shares (``query=``), as
ACTINN does. Printed per task: accuracy, macro-F1 over the true classes
present, expected calibration error (15 bins, top-label) and fit time, then
the mean over tasks. Run::

    .venv/bin/python benchmarks/accuracy.py                 # all tasks, seeds 0 1 2
    .venv/bin/python benchmarks/accuracy.py --quick         # seed 0 only
    .venv/bin/python benchmarks/accuracy.py --tasks pbmc68k_split \\
        --variant 'nodrop=robust:{"input_dropout": 0.0}'    # an ablation

Exits 0 with a message when the data folder is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

DATA = os.environ.get("ACTINN_DATA", "/work/shared/data")
SHARED_TYPES = ["B cell", "T cell", "NK cell", "Monocyte", "Granulocyte"]
N_BINS = 15


@dataclass
class Task:
    """Training cells, query cells and the truth for the evaluated query cells."""

    name: str
    train: object  # CountMatrix
    train_labels: pd.Series
    query: object  # CountMatrix
    truth: pd.Series  # cell id -> type, the cells that are scored
    cross: bool  # restrict training to the query's genes


def _path(*parts: str) -> str:
    return os.path.join(DATA, *parts)


def _subset(matrix, cells: Sequence[str]):  # noqa: ANN001, ANN202
    from deepchem_actinn.io import CountMatrix

    position = {c: i for i, c in enumerate(matrix.cells)}
    rows = np.array([position[c] for c in cells], dtype=np.int64)
    return CountMatrix(matrix.X[rows], matrix.genes, matrix.cells[rows], source=matrix.source)


def _split(name: str, counts: str, labels: str) -> Task:
    """80/20 stratified split (seed 0) of one labelled file."""
    import deepchem_actinn as da

    matrix = da.read_counts(counts)
    series = da.read_labels(labels)
    dataset = da.ScRNALoader().create_dataset(matrix, series)
    train_idx, _, test_idx = da.StratifiedSplitter().split(dataset, 0.8, 0.0, 0.2, seed=0)
    train_cells, test_cells = dataset.ids[train_idx], dataset.ids[test_idx]
    return Task(name, _subset(matrix, train_cells), series.loc[train_cells],
                _subset(matrix, test_cells), series.loc[test_cells], cross=False)


def task_tm_train_test() -> Task:
    import deepchem_actinn as da

    folder = "tm_deepchem_tutorial"
    return Task("tm_train->test", da.read_counts(_path(folder, "train_sample.h5")),
                da.read_labels(_path(folder, "train_label_sample.txt")),
                da.read_counts(_path(folder, "test_sample.h5")),
                da.read_labels(_path(folder, "test_label_sample.txt")), cross=False)


def task_tm_split() -> Task:
    folder = "tm_deepchem_tutorial"
    return _split("tm_split80/20", _path(folder, "train_sample.h5"),
                  _path(folder, "train_label_sample.txt"))


def task_droplet_to_sample2() -> Task:
    import deepchem_actinn as da

    query = da.read_counts(_path("tm_deepchem_samples", "scRNAseq_sample_2.h5"))
    truth = da.read_labels(_path("tm_deepchem_samples", "labels_2_partial.txt"))
    return Task("droplet->sample2", da.read_counts(_path("actinn_tm_droplet", "train_set.h5")),
                da.read_labels(_path("actinn_tm_droplet", "train_label.txt")),
                query, truth[truth.index.isin(query.cells)], cross=True)


def task_droplet_to_tm_test() -> Task:
    import deepchem_actinn as da

    query = da.read_counts(_path("tm_deepchem_tutorial", "test_sample.h5"))
    truth = da.read_labels(_path("tm_deepchem_tutorial", "test_label_sample.txt"))
    truth = truth[truth.isin(SHARED_TYPES)]
    return Task("droplet->tm_test", da.read_counts(_path("actinn_tm_droplet", "train_set.h5")),
                da.read_labels(_path("actinn_tm_droplet", "train_label.txt")),
                _subset(query, list(truth.index)), truth, cross=True)


def task_pbmc_split() -> Task:
    return _split("pbmc68k_split80/20", _path("pbmc68k_reduced", "pbmc68k_reduced_counts.h5"),
                  _path("pbmc68k_reduced", "labels.txt"))


TASKS: Dict[str, Callable[[], Task]] = {
    "tm_train_test": task_tm_train_test,
    "tm_split": task_tm_split,
    "droplet_sample2": task_droplet_to_sample2,
    "droplet_tm_test": task_droplet_to_tm_test,
    "pbmc_split": task_pbmc_split,
}


# -- metrics --------------------------------------------------------------------------


def macro_f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Macro-F1 over the true classes present (predicted extra classes count as errors)."""
    from sklearn.metrics import f1_score

    labels = sorted(set(truth))
    return float(f1_score(truth, predicted, labels=labels, average="macro", zero_division=0))


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray,
                               n_bins: int = N_BINS) -> float:
    """Top-label ECE: sum over equal-width bins of |accuracy - confidence| x bin share."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        inside = index == b
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(ece)


@dataclass
class Score:
    accuracy: float
    f1: float
    ece: float
    seconds: float


def score(truth: np.ndarray, predicted: np.ndarray, confidence: np.ndarray,
          seconds: float) -> Score:
    correct = (truth == predicted).astype(np.float64)
    return Score(float(correct.mean()), macro_f1(truth, predicted),
                 expected_calibration_error(confidence, correct), seconds)


# -- methods --------------------------------------------------------------------------


def run_network(task: Task, seed: int, preset: str, overrides: Dict) -> Tuple[np.ndarray,
                                                                                np.ndarray, float]:
    import torch

    import deepchem_actinn as da
    from deepchem_actinn.annotate import featurize

    overrides = dict(overrides)
    calibrate = overrides.pop("calibrate", False)
    train, labels = task.train, task.train_labels
    torch.manual_seed(seed)
    start = time.perf_counter()
    if calibrate:  # hold out 20% of the reference (stratified) to fit the temperature
        dataset = da.ScRNALoader().create_dataset(train, labels)
        fit_idx, valid_idx, _ = da.StratifiedSplitter().split(dataset, 0.8, 0.2, 0.0, seed=seed)
        train, labels = _subset(train, dataset.ids[fit_idx]), labels.loc[dataset.ids[fit_idx]]
    model = da.train_reference(train, labels, query=task.query if task.cross else None,
                               preset=preset, seed=seed, device="cpu", **overrides)
    if calibrate:
        valid = da.ScRNALoader(classes=model.classes).create_dataset(
            _subset(task.train, dataset.ids[valid_idx]), task.train_labels)
        model.fit_temperature(featurize(model.featurizer, valid))
    seconds = time.perf_counter() - start
    result = da.annotate(task.query, model)
    frame = result.to_dataframe().loc[task.truth.index]
    return frame["cell_type"].to_numpy(), frame["probability"].to_numpy(), seconds


def run_logreg(task: Task, seed: int) -> Tuple[np.ndarray, np.ndarray, float]:
    from sklearn.linear_model import LogisticRegression

    from deepchem_actinn.preprocessing import ScRNAFeaturizer

    start = time.perf_counter()
    # Same input genes and normalisation as the network, no percentile filters.
    featurizer = ScRNAFeaturizer(low_percentile=0.0, high_percentile=100.0)
    featurizer.fit(task.train, restrict_to=list(task.query.genes) if task.cross else None)
    labels = task.train_labels.loc[task.train.cells].to_numpy()
    X = featurizer.transform(task.train)
    classifier = LogisticRegression(max_iter=1000, random_state=seed).fit(X, labels)
    seconds = time.perf_counter() - start
    query = _subset(task.query, list(task.truth.index))
    probabilities = classifier.predict_proba(featurizer.transform(query))
    best = probabilities.argmax(axis=1)
    return classifier.classes_[best], probabilities.max(axis=1), seconds


# -- report ---------------------------------------------------------------------------


def parse_variant(text: str) -> Tuple[str, str, Dict]:
    """``NAME=PRESET:{json overrides}`` -> (name, preset, overrides)."""
    name, _, rest = text.partition("=")
    preset, _, overrides = rest.partition(":")
    return name, preset, json.loads(overrides) if overrides else {}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="seed 0 only")
    parser.add_argument("--methods", nargs="+", default=["actinn", "robust", "logreg"],
                        help="actinn, robust, logreg and/or names given with --variant")
    parser.add_argument("--variant", action="append", default=[],
                        help="extra network NAME=PRESET:{json settings}, for ablations")
    parser.add_argument("--json", help="also write the per-seed scores here")
    args = parser.parse_args(argv)
    if not os.path.isdir(DATA) or not all(os.path.isdir(_path(d)) for d in (
            "tm_deepchem_tutorial", "tm_deepchem_samples", "actinn_tm_droplet",
            "pbmc68k_reduced")):
        print(f"accuracy benchmark skipped: development data not found under {DATA} "
              "(set ACTINN_DATA)")
        return 0
    warnings.filterwarnings("ignore")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import logging

    logging.disable(logging.WARNING)
    import torch

    # One thread: this small network gains nothing from more, and loses a lot under contention.
    torch.set_num_threads(1)
    seeds = [args.seeds[0]] if args.quick else args.seeds
    variants = {"actinn": ("actinn", {}), "robust": ("robust", {}),
                "robust+T": ("robust", {"calibrate": True})}
    for text in args.variant:
        name, preset, overrides = parse_variant(text)
        variants[name] = (preset, overrides)
        if name not in args.methods:
            args.methods.append(name)
    methods = args.methods
    print(f"accuracy benchmark: data {DATA}; seeds {seeds}; torch threads "
          f"{torch.get_num_threads()}")
    for name in methods:
        if name in variants:
            print(f"  {name}: preset {variants[name][0]} {json.dumps(variants[name][1])}")
    results: Dict[str, Dict[str, List[Score]]] = {}
    for task_name in args.tasks:
        task = TASKS[task_name]()
        truth = task.truth.to_numpy().astype(str)
        print(f"\n{task.name}: {len(task.train.cells)} training cells, "
              f"{task.train_labels.nunique()} types; {len(truth)} scored query cells")
        results[task.name] = {}
        for method in methods:
            scores = []
            for seed in seeds:
                if method == "logreg":
                    predicted, confidence, seconds = run_logreg(task, seed)
                else:
                    preset, overrides = variants[method]
                    predicted, confidence, seconds = run_network(task, seed, preset, overrides)
                scores.append(score(truth, predicted.astype(str), confidence, seconds))
            results[task.name][method] = scores
            print(f"  {method:<12} " + _format(scores), flush=True)
    _summary(results, methods)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({t: {m: [s.__dict__ for s in v] for m, v in r.items()}
                       for t, r in results.items()}, handle, indent=1)
    return 0


def _mean(scores: List[Score], field: str) -> float:
    return float(np.mean([getattr(s, field) for s in scores]))


def _format(scores: List[Score]) -> str:
    acc = [s.accuracy for s in scores]
    spread = f" (+-{np.std(acc):.3f})" if len(acc) > 1 else ""
    return (f"acc {np.mean(acc):.3f}{spread}  macroF1 {_mean(scores, 'f1'):.3f}  "
            f"ECE {_mean(scores, 'ece'):.3f}  fit {_mean(scores, 'seconds'):6.1f}s")


def _summary(results: Dict[str, Dict[str, List[Score]]], methods: List[str]) -> None:
    print("\nsummary (mean over seeds): accuracy / macro-F1 / ECE")
    header = f"{'task':<20}" + "".join(f"{m:>22}" for m in methods)
    print(header)
    for task, by_method in results.items():
        cells = "".join(f"{_mean(by_method[m], 'accuracy'):>10.3f}/{_mean(by_method[m], 'f1'):.3f}"
                        f"/{_mean(by_method[m], 'ece'):.3f}" for m in methods)
        print(f"{task:<20}{cells}")
    mean = "".join(
        f"{np.mean([_mean(r[m], 'accuracy') for r in results.values()]):>10.3f}"
        f"/{np.mean([_mean(r[m], 'f1') for r in results.values()]):.3f}"
        f"/{np.mean([_mean(r[m], 'ece') for r in results.values()]):.3f}" for m in methods)
    print(f"{'mean':<20}{mean}")
    fit = "".join(f"{np.mean([_mean(r[m], 'seconds') for r in results.values()]):>21.1f}s"
                  for m in methods)
    print(f"{'mean fit time':<20}{fit}")


if __name__ == "__main__":
    sys.exit(main())
