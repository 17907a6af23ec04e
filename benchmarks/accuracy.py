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
DATA_FOLDERS = ("tm_deepchem_tutorial", "tm_deepchem_samples", "actinn_tm_droplet",
                "pbmc68k_reduced", "kang_ifnb_ctrl", "kang_ifnb_stim",
                "zilionis_mouse_lung_immune")
NETWORK_PRESETS = ("actinn", "transfer", "robust")
DEFAULT_METHODS = ("actinn", "transfer", "logreg")
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
    datasets: Tuple[str, ...] = ()  # dataset families it touches (leave-one-dataset-out)


def _path(*parts: str) -> str:
    return os.path.join(DATA, *parts)


def _subset(matrix, cells: Sequence[str]):  # noqa: ANN001, ANN202
    from deepchem_actinn.io import CountMatrix

    position = {c: i for i, c in enumerate(matrix.cells)}
    rows = np.array([position[c] for c in cells], dtype=np.int64)
    return CountMatrix(matrix.X[rows], matrix.genes, matrix.cells[rows], source=matrix.source)


def _read(folder: str, counts: str, labels: str, mapping: Optional[Dict[str, str]] = None
          ) -> Tuple[object, pd.Series]:
    """Counts and labels of one folder; ``mapping`` renames types and drops the unmapped."""
    import deepchem_actinn as da

    matrix = da.read_counts(_path(folder, counts))
    series = da.read_labels(_path(folder, labels))
    series = series[series.index.isin(matrix.cells)]
    if mapping is not None:
        series = series[series.isin(list(mapping))].map(mapping)
    return matrix, series


def _labelled(matrix, series: pd.Series):  # noqa: ANN001, ANN202
    """The labelled cells of ``matrix``, in its order."""
    cells = [c for c in matrix.cells if c in series.index]
    return _subset(matrix, cells), series.loc[cells]


def _split(name: str, datasets: Tuple[str, ...], matrix, series: pd.Series  # noqa: ANN001
           ) -> Task:
    """80/20 stratified split (seed 0) of one labelled matrix."""
    import deepchem_actinn as da

    matrix, series = _labelled(matrix, series)
    dataset = da.ScRNALoader().create_dataset(matrix, series)
    train_idx, _, test_idx = da.StratifiedSplitter().split(dataset, 0.8, 0.0, 0.2, seed=0)
    train_cells, test_cells = dataset.ids[train_idx], dataset.ids[test_idx]
    return Task(name, _subset(matrix, train_cells), series.loc[train_cells],
                _subset(matrix, test_cells), series.loc[test_cells], cross=False,
                datasets=datasets)


def _pair(name: str, datasets: Tuple[str, ...], train: Tuple[object, pd.Series],
          query: Tuple[object, pd.Series]) -> Task:
    """Train on one labelled matrix, score the query cells of the types both share."""
    train_matrix, train_labels = _labelled(*train)
    query_matrix, truth = _labelled(*query)
    truth = truth[truth.isin(set(train_labels))]
    return Task(name, train_matrix, train_labels, _subset(query_matrix, list(truth.index)),
                truth, cross=True, datasets=datasets)


def _tissue(matrix, series: pd.Series, tissue: str):  # noqa: ANN001, ANN202
    meta = pd.read_csv(_path("zilionis_mouse_lung_immune", "cell_metadata.tsv"), sep="\t",
                       index_col=0)
    cells = [c for c in matrix.cells if meta.loc[c, "Tissue"] == tissue and c in series.index]
    return _subset(matrix, cells), series.loc[cells]


# Coarse PBMC types shared by Kang 2018 and the PBMC 68k bulk labels.
KANG_COARSE = {"B": "B", "B Activated": "B", "CD14 Mono": "Monocyte", "CD16 Mono": "Monocyte",
               "NK": "NK", "CD4 Naive T": "T", "CD4 Memory T": "T", "CD8 T": "T",
               "T activated": "T"}
PBMC68K_COARSE = {"CD19+ B": "B", "CD14+ Monocyte": "Monocyte", "CD56+ NK": "NK",
                  "CD4+/CD25 T Reg": "T", "CD8+ Cytotoxic T": "T",
                  "CD8+/CD45RA+ Naive Cytotoxic": "T", "CD4+/CD45RO+ Memory": "T",
                  "CD4+/CD45RA+/CD25- Naive T": "T"}
# Kang types under the Zilionis names (the folder's label_harmonisation_vs_kang.tsv).
KANG_TO_ZILIONIS = {"B": "B cells", "B Activated": "B cells", "NK": "NK cells",
                    "CD4 Naive T": "T cells", "CD4 Memory T": "T cells", "CD8 T": "T cells",
                    "T activated": "T cells"}


def _loaders() -> Dict[str, Callable[[], Tuple[object, pd.Series]]]:
    return {
        "tm_facs_train": lambda: _read("tm_deepchem_tutorial", "train_sample.h5",
                                       "train_label_sample.txt"),
        "tm_facs_test": lambda: _read("tm_deepchem_tutorial", "test_sample.h5",
                                      "test_label_sample.txt"),
        "tm_droplet": lambda: _read("actinn_tm_droplet", "train_set.h5", "train_label.txt"),
        "tm_sample2": lambda: _read("tm_deepchem_samples", "scRNAseq_sample_2.h5",
                                    "labels_2_partial.txt"),
        "pbmc68k": lambda: _read("pbmc68k_reduced", "pbmc68k_reduced_counts.h5", "labels.txt"),
        "pbmc68k_coarse": lambda: _read("pbmc68k_reduced", "pbmc68k_reduced_counts.h5",
                                        "labels.txt", PBMC68K_COARSE),
        "kang_ctrl": lambda: _read("kang_ifnb_ctrl", "counts.h5", "labels.txt"),
        "kang_stim": lambda: _read("kang_ifnb_stim", "counts.h5", "labels.txt"),
        "kang_ctrl_coarse": lambda: _read("kang_ifnb_ctrl", "counts.h5", "labels.txt",
                                          KANG_COARSE),
        "kang_ctrl_zil": lambda: _read("kang_ifnb_ctrl", "counts.h5", "labels.txt",
                                       KANG_TO_ZILIONIS),
        "zilionis": lambda: _read("zilionis_mouse_lung_immune", "counts.h5", "labels.txt"),
    }


def _load(name: str, cache: Dict[str, Tuple[object, pd.Series]] = {}
          ) -> Tuple[object, pd.Series]:
    if name not in cache:
        cache[name] = _loaders()[name]()
    return cache[name]


# name -> (dataset families it touches, builder). Families drive the leave-one-dataset-out view.
TASKS: Dict[str, Tuple[Tuple[str, ...], Callable[[], Task]]] = {
    # within one dataset (80/20 stratified split)
    "tm_facs": (("tm_facs",), lambda: Task(
        "tm_facs", *_labelled(*_load("tm_facs_train")), *_labelled(*_load("tm_facs_test")),
        cross=False, datasets=("tm_facs",))),
    "pbmc68k": (("pbmc68k",), lambda: _split("pbmc68k", ("pbmc68k",), *_load("pbmc68k"))),
    "kang_ctrl": (("kang",), lambda: _split("kang_ctrl", ("kang",), *_load("kang_ctrl"))),
    "zilionis": (("zilionis",), lambda: _split("zilionis", ("zilionis",), *_load("zilionis"))),
    # across platforms (10x -> Smart-seq2)
    "droplet->sample2": (("tm_droplet", "tm_sample2"), lambda: _pair(
        "droplet->sample2", ("tm_droplet", "tm_sample2"), _load("tm_droplet"),
        _load("tm_sample2"))),
    "droplet->tm_facs": (("tm_droplet", "tm_facs"), lambda: _pair(
        "droplet->tm_facs", ("tm_droplet", "tm_facs"), _load("tm_droplet"),
        _load("tm_facs_test"))),
    # across conditions (interferon stimulation; healthy vs tumour-bearing animals)
    "kang_ctrl->stim": (("kang",), lambda: _pair(
        "kang_ctrl->stim", ("kang",), _load("kang_ctrl"), _load("kang_stim"))),
    "kang_stim->ctrl": (("kang",), lambda: _pair(
        "kang_stim->ctrl", ("kang",), _load("kang_stim"), _load("kang_ctrl"))),
    "zil_healthy->tumour": (("zilionis",), lambda: _pair(
        "zil_healthy->tumour", ("zilionis",), _tissue(*_load("zilionis"), "healthy"),
        _tissue(*_load("zilionis"), "tumor"))),
    "zil_tumour->healthy": (("zilionis",), lambda: _pair(
        "zil_tumour->healthy", ("zilionis",),
        _tissue(*_load("zilionis"), "tumor"),
        _tissue(*_load("zilionis"), "healthy"))),
    # across labs
    "kang->pbmc68k": (("kang", "pbmc68k"), lambda: _pair(
        "kang->pbmc68k", ("kang", "pbmc68k"), _load("kang_ctrl_coarse"),
        _load("pbmc68k_coarse"))),
    "pbmc68k->kang": (("kang", "pbmc68k"), lambda: _pair(
        "pbmc68k->kang", ("kang", "pbmc68k"), _load("pbmc68k_coarse"),
        _load("kang_ctrl_coarse"))),
    # across species, tissues and platforms (human PBMC 10x <-> mouse lung inDrop)
    "human->mouse": (("kang", "zilionis"), lambda: _pair(
        "human->mouse", ("kang", "zilionis"), _load("kang_ctrl_zil"), _load("zilionis"))),
    "mouse->human": (("kang", "zilionis"), lambda: _pair(
        "mouse->human", ("kang", "zilionis"), _load("zilionis"), _load("kang_ctrl_zil"))),
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
    from deepchem_actinn.train import featurize

    overrides = dict(overrides)
    calibrate = overrides.pop("calibrate", False)
    # "no_query": train on every reference gene, as `deepchem-actinn train` without --query.
    restrict = task.cross and not overrides.pop("no_query", False)
    train, labels = task.train, task.train_labels
    torch.manual_seed(seed)
    start = time.perf_counter()
    if calibrate:  # hold out 20% of the reference (stratified) to fit the temperature
        dataset = da.ScRNALoader().create_dataset(train, labels)
        fit_idx, valid_idx, _ = da.StratifiedSplitter().split(dataset, 0.8, 0.2, 0.0, seed=seed)
        train, labels = _subset(train, dataset.ids[fit_idx]), labels.loc[dataset.ids[fit_idx]]
    model = da.train_reference(train, labels, query=task.query if restrict else None,
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
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="seed 0 only")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS),
                        help=f"{', '.join(DEFAULT_METHODS)} and/or names given with --variant")
    parser.add_argument("--variant", action="append", default=[],
                        help="extra network NAME=PRESET:{json settings}, for ablations")
    parser.add_argument("--json", help="also write the per-seed scores here")
    parser.add_argument("--merge", nargs="+", metavar="JSON",
                        help="print the report of earlier --json files (e.g. runs made in "
                             "parallel) instead of training")
    parser.add_argument("--markdown", action="store_true",
                        help="with --merge: also the per-task table as Markdown")
    args = parser.parse_args(argv)
    if args.merge:
        results = _merge(args.merge)
        methods = [m for m in args.methods if all(m in r for r in results.values())]
        _report(results, methods)
        if args.markdown:
            _markdown(results, methods)
        return 0
    missing = [d for d in DATA_FOLDERS if not os.path.isdir(_path(d))]
    if missing:
        print(f"accuracy benchmark skipped: development data not found under {DATA} "
              f"({', '.join(missing)}; set ACTINN_DATA)")
        return 0
    warnings.filterwarnings("ignore")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import logging

    logging.disable(logging.WARNING)
    import torch

    # One thread: this small network gains nothing from more, and loses a lot under contention.
    torch.set_num_threads(1)
    seeds = [args.seeds[0]] if args.quick else args.seeds
    variants = {name: (name, {}) for name in NETWORK_PRESETS}
    variants["robust+T"] = ("robust", {"calibrate": True})
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
        task = TASKS[task_name][1]()
        truth = task.truth.to_numpy().astype(str)
        print(f"\n{task.name}: {len(task.train.cells)} training cells, "
              f"{task.train_labels.nunique()} types; {len(truth)} scored query cells of "
              f"{truth.size and len(set(truth))} types")
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
        if args.json:  # after every task, so a long run can be read while it goes on
            with open(args.json, "w", encoding="utf-8") as handle:
                json.dump({t: {m: [s.__dict__ for s in v] for m, v in r.items()}
                           for t, r in results.items()}, handle, indent=1)
    _report(results, methods)
    return 0


def _merge(paths: Sequence[str]) -> Dict[str, Dict[str, List[Score]]]:
    results: Dict[str, Dict[str, List[Score]]] = {}
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for task, by_method in json.load(handle).items():
                for method, scores in by_method.items():
                    results.setdefault(task, {})[method] = [Score(**s) for s in scores]
    return {t: results[t] for t in TASKS if t in results}


def _mean(scores: List[Score], field: str) -> float:
    return float(np.mean([getattr(s, field) for s in scores]))


def _format(scores: List[Score]) -> str:
    acc = [s.accuracy for s in scores]
    spread = f" (+-{np.std(acc):.3f})" if len(acc) > 1 else ""
    return (f"acc {np.mean(acc):.3f}{spread}  macroF1 {_mean(scores, 'f1'):.3f}  "
            f"ECE {_mean(scores, 'ece'):.3f}  fit {_mean(scores, 'seconds'):6.1f}s")


def _report(results: Dict[str, Dict[str, List[Score]]], methods: List[str]) -> None:
    """Per-task table, means, worst task, and the leave-one-dataset-out view."""
    print("\nsummary (mean over seeds): accuracy / macro-F1 / ECE")
    print(f"{'task':<22}" + "".join(f"{m:>22}" for m in methods))
    for task, by_method in results.items():
        print(f"{task:<22}" + "".join(
            f"{_mean(by_method[m], 'accuracy'):>10.3f}/{_mean(by_method[m], 'f1'):.3f}"
            f"/{_mean(by_method[m], 'ece'):.3f}" for m in methods))
    tasks = list(results)

    def per_task(method: str, field: str = "accuracy") -> np.ndarray:
        return np.array([_mean(results[t][method], field) for t in tasks])

    print(f"{'mean':<22}" + "".join(
        f"{per_task(m).mean():>10.3f}/{per_task(m, 'f1').mean():.3f}"
        f"/{per_task(m, 'ece').mean():.3f}" for m in methods))
    print(f"{'worst task accuracy':<22}" + "".join(
        f"{per_task(m).min():>15.3f} {tasks[int(per_task(m).argmin())][:6]:<6}"
        for m in methods))
    if "logreg" in methods:
        gaps = {m: per_task(m) - per_task("logreg") for m in methods}
        print(f"{'worst gap to logreg':<22}" + "".join(
            f"{gaps[m].min():>+15.3f} {tasks[int(gaps[m].argmin())][:6]:<6}" for m in methods))
    print(f"{'mean fit time':<22}" + "".join(
        f"{per_task(m, 'seconds').mean():>21.1f}s" for m in methods))
    _leave_one_dataset_out(results, methods)


def _markdown(results: Dict[str, Dict[str, List[Score]]], methods: List[str]) -> None:
    """Accuracy / macro-F1 per task and method (mean over seeds), as a Markdown table."""
    print("\n| task | " + " | ".join(methods) + " |")
    print("|---|" + "---|" * len(methods))
    for task, by_method in results.items():
        print(f"| {task} | " + " | ".join(
            f"{_mean(by_method[m], 'accuracy'):.3f} / {_mean(by_method[m], 'f1'):.3f}"
            for m in methods) + " |")
    print("| **mean** | " + " | ".join(
        f"{np.mean([_mean(r[m], 'accuracy') for r in results.values()]):.3f} / "
        f"{np.mean([_mean(r[m], 'f1') for r in results.values()]):.3f}" for m in methods)
        + " |")


def _leave_one_dataset_out(results: Dict[str, Dict[str, List[Score]]],
                           methods: List[str]) -> None:
    """Choose the network on the tasks that do not touch a dataset, score it on those that do.

    A choice that only looks good because it was tuned to some dataset loses
    here: for each dataset family D the network method with the best mean
    accuracy on the other tasks is picked, then judged on D's tasks beside
    the linear baseline.
    """
    networks = [m for m in methods if m != "logreg"]
    families = sorted({d for t in results for d in TASKS[t][0]})
    if len(networks) < 1 or len(families) < 2:
        return
    print("\nleave-one-dataset-out: network chosen on the other tasks, scored on the "
          "held-out dataset's tasks (accuracy / macro-F1)")
    print(f"{'held out':<12}{'tasks':>6}  {'chosen':<16}{'chosen':>14}"
          + (f"{'logreg':>14}{'gap':>8}" if "logreg" in methods else ""))
    held_out_scores: List[Tuple[float, float]] = []
    base_scores: List[Tuple[float, float]] = []
    for family in families:
        inside = [t for t in results if family in TASKS[t][0]]
        outside = [t for t in results if family not in TASKS[t][0]]
        if not inside or not outside:
            continue
        chosen = max(networks, key=lambda m: np.mean([_mean(results[t][m], "accuracy")
                                                      for t in outside]))
        acc = float(np.mean([_mean(results[t][chosen], "accuracy") for t in inside]))
        f1 = float(np.mean([_mean(results[t][chosen], "f1") for t in inside]))
        held_out_scores.append((acc, f1))
        line = f"{family:<12}{len(inside):>6}  {chosen:<16}{acc:>8.3f}/{f1:.3f}"
        if "logreg" in methods:
            base = (float(np.mean([_mean(results[t]["logreg"], "accuracy") for t in inside])),
                    float(np.mean([_mean(results[t]["logreg"], "f1") for t in inside])))
            base_scores.append(base)
            line += f"{base[0]:>8.3f}/{base[1]:.3f}{acc - base[0]:>+8.3f}"
        print(line)
    if held_out_scores:
        acc, f1 = np.mean(held_out_scores, axis=0)
        line = f"{'mean':<12}{'':>6}  {'':<16}{acc:>8.3f}/{f1:.3f}"
        if base_scores:
            base_acc, base_f1 = np.mean(base_scores, axis=0)
            line += f"{base_acc:>8.3f}/{base_f1:.3f}{acc - base_acc:>+8.3f}"
        print(line)


if __name__ == "__main__":
    sys.exit(main())
