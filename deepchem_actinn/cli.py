"""``deepchem-actinn``: train a reference, annotate cells, score the calls.

Every error a user can cause prints one line (``deepchem-actinn: error:
FILE: problem``) and exits with status 2, leaving no partial output; every
file is written under a temporary name and renamed into place.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
from typing import Any, Callable, Dict, List, Optional, Sequence

from deepchem_actinn.validation import option_type  # light: no DeepChem

PROG = "deepchem-actinn"


def _import_quietly() -> Any:
    from deepchem_actinn.quiet import import_quietly
    return import_quietly()


def _show_warning(message: Any, category: Any, filename: str, lineno: int,
                  file: Any = None, line: Optional[str] = None) -> None:
    print(f"{PROG}: warning: {' '.join(str(message).split())}", file=sys.stderr)


# ---------------------------------------------------------------------------
# Safe output
# ---------------------------------------------------------------------------


def _same_file(a: str, b: Optional[str]) -> bool:
    if b is None or not os.path.exists(a) or not os.path.exists(b):
        return False
    return os.path.samefile(a, b)


def check_output_path(path: str, inputs: Sequence[Optional[str]], what: str = "output") -> None:
    """Refuse an output that would overwrite an input or cannot be written."""
    from deepchem_actinn.errors import InputError
    for source in inputs:
        if source is not None and (os.path.abspath(path) == os.path.abspath(source)
                                   or _same_file(path, source)):
            raise InputError(f"{what} path is the same file as {source}, which this command "
                             "reads or writes; choose another name", path)
    folder = os.path.dirname(os.path.abspath(path)) or "."
    if os.path.isdir(path):
        raise InputError(f"{what} path is a directory", path)
    if not os.path.isdir(folder):
        raise InputError(f"{what} folder {folder} does not exist", path)
    if not os.access(folder, os.W_OK):
        raise InputError(f"{what} folder {folder} is not writable", path)


def check_model_dir(path: str) -> None:
    """Refuse, before any training, a --model-dir that ``ACTINNModel.save`` could not write."""
    from deepchem_actinn.errors import InputError
    from deepchem_actinn.model.file_format import MODEL_FILE
    target = os.path.abspath(path)
    if os.path.exists(target) and not os.path.isdir(target):
        raise InputError("model directory path exists and is not a directory", path)
    if os.path.isdir(target) and os.listdir(target) \
            and not os.path.isfile(os.path.join(target, MODEL_FILE)):
        raise InputError("model directory exists, is not empty and holds no model; "
                         "choose a new --model-dir", path)
    parent = os.path.dirname(target)
    while not os.path.exists(parent):  # save() creates missing parents
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise InputError(f"cannot create the model directory: {parent} is a file", path)
    if not os.access(parent, os.W_OK):
        raise InputError(f"cannot create the model directory: {parent} is not writable", path)


def check_work_dirs(model_dir: str, folders: Dict[str, Optional[str]]) -> None:
    """Refuse a working folder (``--checkpoint-dir``...) inside a --model-dir holding no model yet.

    Training would create it there, and save() then finds a folder of other
    files, which it never replaces: the run would be lost. Inside a model
    folder it is fine (save keeps what is not the model's).
    """
    from deepchem_actinn.errors import InputError
    from deepchem_actinn.model.file_format import MODEL_FILE
    target = os.path.abspath(model_dir)
    if os.path.isfile(os.path.join(target, MODEL_FILE)):
        return
    for flag, folder in folders.items():
        if folder is not None and os.path.abspath(folder).startswith(target + os.sep):
            raise InputError(f"{flag} {folder} is inside the model directory, which holds no "
                             "model yet; choose a folder outside it", model_dir)


def atomic_output(path: str) -> Any:
    """Yield a temporary path beside ``path``; rename it into place only on success."""
    from deepchem_actinn.atomic import atomic_file
    return atomic_file(path)


# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    _import_quietly()
    from deepchem_actinn.tuning import reuse_freed_memory
    reuse_freed_memory()  # this process is ours: ~15% faster steps (see tuning.py)

    from deepchem_actinn.annotation import top_calls
    from deepchem_actinn.errors import InputError
    from deepchem_actinn.train import prepare

    for name in (args.train_set, args.train_labels, args.query):
        if name is not None and os.path.abspath(args.model_dir) == os.path.abspath(name):
            raise InputError("model directory is also an input file", args.model_dir)
    check_model_dir(args.model_dir)
    check_work_dirs(args.model_dir, {"--checkpoint-dir": args.checkpoint_dir,
                                     "--out-of-core": args.out_of_core})
    if args.resume and args.checkpoint_dir is None:
        raise InputError("--resume needs --checkpoint-dir DIR", args.model_dir)
    _check_plots_dir(args.plots)
    if args.joint and args.query is None:
        raise InputError("--joint needs --query FILE", args.train_set)
    labels = _train_labels(args)  # before any work: a wrong column is one line
    if args.out_of_core is not None:
        return _train_out_of_core(args, labels)
    # Sparse from reading to training: the same model as dense, less memory, faster epochs.
    training = prepare(args.train_set, labels, key=args.key,
                       read_options=_read_options(args),
                       query=_read_query(args) if args.query is not None else None,
                       joint=args.joint, validation_fraction=args.validation_fraction,
                       history=args.plots is not None, checkpoint_dir=args.checkpoint_dir,
                       resume=args.resume, **_training_options(args))
    model, features = training.model, training.data
    if args.resume:
        print(f"{PROG}: resumed from step {model.get_global_step()} (epoch "
              f"{model.get_global_step() // model.steps_per_epoch(len(features))}); "
              f"{training.epochs} epochs left", file=sys.stderr)
    featurizer = model.featurizer
    assert featurizer is not None and featurizer.genes_ is not None
    print(f"{PROG}: {len(features)} cells, {len(featurizer.genes_)} genes kept of "
          f"{len(featurizer.input_genes_)}, {model.n_classes} types, {model.epochs} epochs "
          f"({training.steps} steps)", file=sys.stderr)
    training.fit(progress=not args.quiet)
    # Block by block: one class per cell (30k x 30k) must not need a cells x classes matrix.
    train_acc = float((top_calls(model, features.X)[0] == features.y.ravel()).mean())
    model.save(args.model_dir)
    print(f"{PROG}: training accuracy {train_acc:.4f}; model saved to {args.model_dir}")
    history, valid = training.history, training.valid
    if history is not None and valid is not None and history.valid_accuracy:
        print(f"{PROG}: validation accuracy {history.valid_accuracy[-1]:.4f} "
              f"({len(valid)} held-out cells, not used for training)")
    if history is not None and args.plots is not None:
        _write_training_plots(args.plots, history)
    return 0


def _train_labels(args: argparse.Namespace) -> Any:
    """--train-labels as a path, its --label-column, or the .h5ad's obs[--label-column]."""
    from deepchem_actinn.errors import InputError
    from deepchem_actinn.io import detect_format, normalize_format, obs_labels, read_labels
    if args.train_labels is None:
        if args.label_column is None:
            raise InputError("no labels: give --train-labels FILE, or --label-column COL to "
                             "take them from an .h5ad's obs", args.train_set)
        kind = normalize_format(args.format) or detect_format(args.train_set)
        if kind != "h5ad":
            raise InputError(f"--label-column without --train-labels takes labels from an "
                             f".h5ad's obs, but this is {kind}; give --train-labels FILE",
                             args.train_set)
        return obs_labels(args.train_set, args.label_column)
    if args.label_column is None:
        return args.train_labels
    return read_labels(args.train_labels, column=args.label_column)


def _training_options(args: argparse.Namespace) -> Dict[str, Any]:
    """The options every training path takes the same way (``train``, ``--out-of-core``)."""
    return {"preset": args.preset, "seed": args.seed, "min_gene_overlap": args.min_overlap,
            "device": None if args.device == "auto" else args.device,
            "epochs": args.epochs, "batch_size": args.batch_size,
            "learning_rate": args.learning_rate}


#: Options that need the whole file in memory: refused by train --out-of-core and
#: predict --chunk-cells, which stream one 10x / CSR .h5ad file.
_IN_MEMORY_ONLY = {"joint": "--joint", "validation_fraction": "--validation-fraction",
                   "plots": "--plots", "checkpoint_dir": "--checkpoint-dir",
                   "resume": "--resume", "format": "--format", "gene_column": "--gene-column",
                   "cells_as_rows": "--cells-as-rows"}


def _train_out_of_core(args: argparse.Namespace, labels: Any) -> int:
    """train --out-of-core DIR: two streaming passes, shards in DIR, one chunk in memory."""
    import shutil
    import tempfile

    from deepchem_actinn.errors import InputError
    from deepchem_actinn.io import CHUNK_CELLS, ChunkedCounts
    from deepchem_actinn.train import prepare_out_of_core

    given = [flag for name, flag in _IN_MEMORY_ONLY.items() if getattr(args, name, None)]
    if given:
        raise InputError(f"--out-of-core does not take {', '.join(given)}", args.train_set)
    if os.path.isfile(args.out_of_core):
        raise InputError("--out-of-core needs a folder for the shards, not a file",
                         args.out_of_core)
    source = ChunkedCounts(args.train_set, layer=args.layer, gene_ids=args.gene_ids,
                           genome=args.key)
    query = _read_query(args) if args.query is not None else None
    os.makedirs(args.out_of_core, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".actinn-shards-", dir=args.out_of_core)
    print(f"{PROG}: streaming {source.n_cells} cells x {len(source.genes)} genes "
          f"({CHUNK_CELLS} at a time; shards in {work})", file=sys.stderr)
    try:
        model = prepare_out_of_core(source, labels, work, query=query,
                                    progress=not args.quiet, **_training_options(args)
                                    ).fit(progress=not args.quiet)
        model.save(args.model_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # shards are as large as the data
    assert model.featurizer is not None and model.featurizer.genes_ is not None
    print(f"{PROG}: {model.get_global_step()} steps, {len(model.featurizer.genes_)} genes, "
          f"{model.n_classes} types; model saved to {args.model_dir}")
    return 0


def _append_table(frame: Any, path: str, first: bool, sep: str = "\t") -> None:
    """Write a block of rows to a table (with the header when ``first``, else appended)."""
    from deepchem_actinn.atomic import naming
    with naming(path):  # a full disk then names this output
        frame.to_csv(path, sep=sep, float_format="%.6g", header=first,
                     mode="w" if first else "a")


#: predict --output: the calls as a table (by extension, .csv comma-separated) or the query
#: as an .h5ad with the calls added.
_PREDICT_OUTPUTS = (".tsv", ".txt", ".csv", ".h5ad")


def _separator(path: str) -> str:
    return "," if path.lower().endswith(".csv") else "\t"


def _check_predict_output(args: argparse.Namespace) -> bool:
    """Refuse an --output name of no known kind, before any work; True for .h5ad."""
    from deepchem_actinn.errors import InputError
    extension = os.path.splitext(args.output)[1].lower()
    if extension not in _PREDICT_OUTPUTS:
        raise InputError(f"--output must end {', '.join(_PREDICT_OUTPUTS[:-1])} (the calls as "
                         "a table) or .h5ad (the query with the calls added)", args.output)
    if args.majority_voting is not None and extension != ".h5ad":
        raise InputError("--majority-voting adds a column to the query's obs: it needs an "
                         ".h5ad --output", args.output)
    if extension == ".h5ad" and args.chunk_cells is not None:
        raise InputError("--chunk-cells streams the query, but an .h5ad --output holds all of "
                         "it; write a .tsv with --chunk-cells", args.output)
    return extension == ".h5ad"


def _predict_h5ad(args: argparse.Namespace, model: Any) -> Any:
    """The query (--test-set, any format) as an AnnData with the calls added; and the result."""
    import warnings

    import pandas as pd

    from deepchem_actinn.annotation import annotate
    from deepchem_actinn.io import (
        _import_anndata,
        check_format_options,
        detect_format,
        load_counts,
        normalize_format,
        read_anndata,
    )
    options = _read_options(args)
    if (normalize_format(args.format) or detect_format(args.test_set)) == "h5ad":
        options.pop("format", None)
        check_format_options("h5ad", args.test_set, key=args.key, **options)
        adata = read_anndata(args.test_set)  # obs, var, layers... all kept
        query: Any = adata
    else:
        query = load_counts(args.test_set, key=args.key, **options)
        var = pd.DataFrame(index=pd.Index(query.genes, dtype=object))
        if query.gene_ids is not None:
            var["gene_ids"] = query.gene_ids
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*names are not unique")
            adata = _import_anndata(args.output).AnnData(
                X=query.X, obs=pd.DataFrame(index=pd.Index(query.cells, dtype=object)), var=var)
        options = {}
    result = annotate(query, model, args.threshold, **options)
    return result.to_adata(adata, majority_voting=args.majority_voting), result


def cmd_predict(args: argparse.Namespace) -> int:
    # Torch alone: a saved model annotates without DeepChem (load_reference), so predict
    # starts in a fraction of train's time.
    from collections import Counter

    import pandas as pd

    from deepchem_actinn.annotation import calls, prediction_blocks
    from deepchem_actinn.atomic import atomic_files
    from deepchem_actinn.errors import InputError
    from deepchem_actinn.model.file_format import load_reference
    inputs = [args.test_set, os.path.join(args.model_dir, "actinn_model.json"),
              os.path.join(args.model_dir, "weights.pt")]
    check_output_path(args.output, inputs)
    to_h5ad = _check_predict_output(args)
    if args.probabilities is not None:
        check_output_path(args.probabilities, inputs + [args.output], "probabilities")
    model = load_reference(args.model_dir,
                           device=None if args.device == "auto" else args.device)
    if to_h5ad:
        return _write_predict_h5ad(args, model)
    if args.chunk_cells is not None:
        given = [flag for name, flag in _IN_MEMORY_ONLY.items() if getattr(args, name, None)]
        if given:
            raise InputError(f"--chunk-cells does not take {', '.join(given)}", args.test_set)
        overlap, blocks = prediction_blocks(args.test_set, model, key=args.key,
                                            chunk_cells=args.chunk_cells, layer=args.layer,
                                            gene_ids=args.gene_ids)
    else:
        overlap, blocks = prediction_blocks(args.test_set, model, key=args.key,
                                            **_read_options(args))
    # Calls and probabilities are written block by block as they are predicted (no cells x
    # classes matrix), into temporaries that replace the old outputs together or not at all.
    targets = [args.output] + ([args.probabilities] if args.probabilities is not None else [])
    classes = [str(c) for c in model.classes]
    counts: Counter = Counter()
    sep = _separator(args.output)
    with atomic_files(targets) as temporaries:
        first = True
        for ids, probabilities, _ in blocks:
            labels, _, probability = calls(model, probabilities, args.threshold)
            index = pd.Index(ids, name="cell_id")
            _append_table(pd.DataFrame({"cell_type": labels, "probability": probability},
                                       index=index), temporaries[0], first, sep)
            if args.probabilities is not None:
                _append_table(pd.DataFrame(probabilities, index=index, columns=classes),
                              temporaries[1], first, _separator(args.probabilities))
            counts.update(labels.tolist())
            first = False
        if first:  # no cell: the headers alone
            index = pd.Index([], name="cell_id")
            _append_table(pd.DataFrame({"cell_type": [], "probability": []}, index=index),
                          temporaries[0], True, sep)
            if args.probabilities is not None:
                _append_table(pd.DataFrame(columns=classes, index=index), temporaries[1], True,
                              _separator(args.probabilities))
    # After the calls, so a file that fails part-way gets its one error line and no other.
    _predict_summary(args, model, overlap, counts)
    return 0


def _predict_summary(args: argparse.Namespace, model: Any, overlap: Any, counts: Any) -> None:
    from deepchem_actinn.model.presets import describe_preset
    print(f"{PROG}: {overlap.summary()}", file=sys.stderr)
    print(f"{PROG}: annotated {sum(counts.values())} cells -> {args.output}; "
          f"{describe_preset(model.preset)}")
    for name, count in counts.most_common():
        print(f"  {name}\t{count}")


def _write_predict_h5ad(args: argparse.Namespace, model: Any) -> int:
    """predict --output FILE.h5ad: the query with the calls, written like every output."""
    from collections import Counter

    from deepchem_actinn.atomic import atomic_files, naming
    adata, result = _predict_h5ad(args, model)
    targets = [args.output] + ([args.probabilities] if args.probabilities is not None else [])
    with atomic_files(targets) as temporaries:
        with naming(temporaries[0]), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*names are not unique")
            adata.write_h5ad(temporaries[0])
        if args.probabilities is not None:
            table = result.to_dataframe(probabilities=True).drop(
                columns=["cell_type", "probability"])
            _append_table(table, temporaries[1], True, _separator(args.probabilities))
    _predict_summary(args, model, result.overlap, Counter(str(v) for v in result.labels))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    # Tables only: neither DeepChem nor torch is imported, so evaluate starts at once.
    from deepchem_actinn.evaluation import evaluation_report, score_predictions
    _check_plots_dir(args.plots)
    truth, predicted = score_predictions(args.predictions, args.labels,
                                         label_column=args.label_column)
    if args.plots is not None:  # before any output: too many types to draw is refused
        from deepchem_actinn.plots import check_plot_types
        check_plot_types(len(set(truth) | set(predicted)),
                         "leave out --plots (the per-class table lists every type)")
    report = evaluation_report(predicted, truth)
    print(f"cells\t{report['n_cells']}")
    print(f"accuracy\t{report['accuracy']:.4f}")
    print(f"macro_f1\t{report['macro_f1']:.4f}")
    if report["coverage"] < 1.0:
        print(f"coverage\t{report['coverage']:.4f}")
        print(f"assigned_accuracy\t{report['assigned_accuracy']:.4f}")
    print()
    print(report["per_class"].to_string(float_format=lambda v: f"{v:.3f}"))
    if args.plots is not None:
        _write_evaluation_plots(args.plots, truth, predicted)
    return 0


# ---------------------------------------------------------------------------
# Input formats, conversion, plots
# ---------------------------------------------------------------------------


def _read_options(args: argparse.Namespace) -> dict:
    """The --format/--layer/--gene-column/--cells-as-rows/--gene-ids given, for read_counts."""
    options = {"format": getattr(args, "format", None), "layer": getattr(args, "layer", None),
               "gene_column": getattr(args, "gene_column", None),
               "cells_as_rows": getattr(args, "cells_as_rows", False),
               "gene_ids": getattr(args, "gene_ids", False)}
    return {name: value for name, value in options.items() if value}


def _read_query(args: argparse.Namespace) -> Any:
    """Read --query, auto-detected, with the input options that apply to its format."""
    from deepchem_actinn.io import FORMAT_OPTIONS, detect_format, read_counts
    kind = detect_format(args.query)
    options = {name: value for name, value in _read_options(args).items()
               if name != "format" and kind in FORMAT_OPTIONS[name]}
    return read_counts(args.query, key=args.query_key, **options)


def cmd_convert(args: argparse.Namespace) -> int:
    from deepchem_actinn.errors import InputError
    from deepchem_actinn.io import check_counts, load_counts, output_format, write_counts
    kind = output_format(args.output, args.to)
    if os.path.exists(args.input) and (os.path.abspath(args.input) == os.path.abspath(
            args.output) or _same_file(args.input, args.output)):
        raise InputError("output is the input; choose another name", args.output)
    folder = os.path.dirname(os.path.abspath(args.output))
    if kind != "mtx":
        check_output_path(args.output, [args.input])
    elif not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise InputError(f"output folder {folder} does not exist or is not writable",
                         args.output)
    stored = load_counts(args.input, key=args.key, **_read_options(args))
    stored.X = check_counts(stored.X, stored.source)
    write_counts(stored, args.output, kind, key=args.output_key)
    print(f"{PROG}: {stored.X.shape[0]} cells x {stored.X.shape[1]} genes ({stored.format}) "
          f"-> {args.output} ({kind})")
    return 0


def _check_plots_dir(path: Optional[str]) -> None:
    """Fail before any work if --plots cannot be honoured (no matplotlib, bad folder)."""
    if path is None:
        return
    from deepchem_actinn.errors import InputError, MissingDependencyError
    from deepchem_actinn.plots import PLOTS_HINT
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingDependencyError(f"--plots needs matplotlib: {PLOTS_HINT}") from None
    if os.path.exists(path) and not os.path.isdir(path):
        raise InputError("--plots path exists and is not a folder", path)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise InputError(f"--plots folder's parent {parent} does not exist", path)


def _write_together(folder: str, outputs: dict) -> None:
    """Write ``{file name: writer(path)}`` into ``folder``, replacing them all or none.

    A folder this call creates is removed again if the writing fails.
    """
    from deepchem_actinn.atomic import atomic_files, naming
    created = not os.path.isdir(folder)
    os.makedirs(folder, exist_ok=True)
    try:
        names = list(outputs)
        with atomic_files([os.path.join(folder, name) for name in names]) as temporaries:
            for name, temporary in zip(names, temporaries, strict=True):
                with naming(temporary):
                    outputs[name](temporary)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(folder)  # only if empty: never anything of the user's
        raise


def _png(figure: Any) -> Callable[[str], None]:
    return lambda path: figure.savefig(path, format="png", dpi=150)


def _write_training_plots(folder: str, history: Any) -> None:
    from deepchem_actinn.plots import training_curve_figure
    figure = training_curve_figure(history)
    table = history.to_dataframe().set_index("epoch")
    _write_together(folder, {
        "training_curve.png": _png(figure),
        "training_history.tsv": lambda path: table.to_csv(path, sep="\t", float_format="%.6g"),
    })
    print(f"{PROG}: wrote {os.path.join(folder, 'training_curve.png')} and "
          "training_history.tsv")


def _write_evaluation_plots(folder: str, truth: Any, predicted: Any) -> None:
    from deepchem_actinn.plots import confusion_figure, f1_figure
    # Both figures are drawn before the folder is made: a failure leaves nothing behind.
    _write_together(folder, {"confusion_matrix.png": _png(confusion_figure(truth, predicted)),
                             "f1_per_class.png": _png(f1_figure(truth, predicted))})
    print(f"{PROG}: wrote confusion_matrix.png and f1_per_class.png to {folder}")


# ---------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``deepchem-actinn: error: ...``), exit 2."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        self.exit(2, f"{PROG}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def _device(text: str) -> str:
    """``--device``: auto, or a device this machine has (a GPU only where one is present)."""
    from deepchem_actinn.validation import OptionError, check_device
    try:
        check_device(text)
    except OptionError as error:
        raise argparse.ArgumentTypeError(error.requirement) from None
    return text


_probability = option_type("threshold")
_positive_int = option_type("epochs")
_learning_rate = option_type("learning_rate")
_seed = option_type("seed")


def _presets() -> List[str]:
    from deepchem_actinn.model.presets import PRESETS  # light: no DeepChem, no torch

    return list(PRESETS)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="ACTINN cell-type identification "
                     "for scRNA-seq on DeepChem.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command")

    train = commands.add_parser("train", help="train a reference model")
    train.add_argument("--train-set", required=True,
                       help="counts: pandas HDF, 10x HDF5, Matrix Market, CSV/TSV or .h5ad")
    train.add_argument("--train-labels",
                       help="cell_id<TAB>cell_type TSV (or --label-column of an .h5ad)")
    train.add_argument("--label-column", metavar="COL",
                       help="the cell-type column of a --train-labels file with more than two "
                            "columns (header name, or position counted from 0 at the cell "
                            "ids); without --train-labels, the obs column of an .h5ad "
                            "--train-set")
    train.add_argument("--model-dir", required=True, help="directory to write the model to")
    train.add_argument("--query", help="restrict training to the genes this file shares")
    train.add_argument("--joint", action="store_true",
                       help="fit gene filters on training + query cells (the paper's mode)")
    train.add_argument("--key", help="HDF key (default dge or the only key) or 10x genome of "
                                     "--train-set")
    train.add_argument("--query-key", help="HDF key of --query")
    train.add_argument("--preset", default="transfer", choices=sorted(_presets()),
                       help="transfer (default): the recommended mode, for annotating other "
                       "datasets; actinn: the paper's gene filters, network and training; "
                       "robust: ACTINN at a 10x learning rate with input dropout")
    train.add_argument("--epochs", type=_positive_int, help="default 50")
    train.add_argument("--batch-size", type=_positive_int, help="default 128")
    train.add_argument("--learning-rate", type=_learning_rate,
                       help="initial rate, default 1e-4 (robust: 1e-3)")
    train.add_argument("--seed", type=_seed, default=0)
    train.add_argument("--min-overlap", type=_probability, default=0.1,
                       help="smallest fraction of model genes a query must hold (default 0.1)")
    train.add_argument("--device", default="auto", type=_device,
                       help="auto (default), cpu or cuda")
    train.add_argument("--quiet", action="store_true",
                       help="no progress bars (by default on stderr: each pass of "
                            "--out-of-core over the file, then epochs with loss, validation "
                            "accuracy and ETA)")
    train.add_argument("--checkpoint-dir", metavar="DIR",
                       help="write a checkpoint here after every epoch (for --resume)")
    train.add_argument("--resume", action="store_true",
                       help="continue from the latest checkpoint in --checkpoint-dir (same "
                            "data and options): the run ends as an unbroken one would")
    train.add_argument("--validation-fraction", type=_open_fraction, metavar="F",
                       help="hold out this fraction of each type (not trained on) for a "
                            "validation curve and accuracy")
    train.add_argument("--plots", metavar="DIR",
                       help="write training_curve.png (loss and accuracy per epoch) here")
    train.add_argument("--out-of-core", metavar="DIR",
                       help="stream a 10x HDF5 / CSR .h5ad --train-set in chunks, training "
                            "from shuffled shards written to DIR (removed afterwards): memory "
                            "stays that of one chunk, for atlases")
    _add_input_options(train, "--train-set (and --query where they apply)")
    train.set_defaults(handler=cmd_train)

    predict = commands.add_parser("predict", help="annotate cells with a trained model")
    predict.add_argument("--model-dir", required=True)
    predict.add_argument("--test-set", required=True,
                         help="counts: pandas HDF, 10x HDF5, Matrix Market, CSV/TSV or .h5ad")
    predict.add_argument("--output", required=True,
                         help="predictions table (.tsv/.txt; .csv comma-separated): cell_id, "
                              "cell_type, probability; or .h5ad: the query (any format) with "
                              "the calls in obs, obsm and uns (see to_adata)")
    predict.add_argument("--probabilities", help="TSV of every class probability per cell")
    predict.add_argument("--threshold", type=_probability,
                         help="label cells below this probability 'Unassigned'")
    predict.add_argument("--majority-voting", metavar="COLUMN",
                         help="with an .h5ad --output: also give each cell its cluster's most "
                              "common call (obs column actinn_majority_voting), clusters "
                              "from this obs column of an .h5ad --test-set (or Leiden "
                              "clusters computed under that name when scanpy is installed)")
    predict.add_argument("--key", help="HDF key of --test-set")
    predict.add_argument("--device", default="auto", type=_device)
    predict.add_argument("--chunk-cells", type=_positive_int, metavar="N",
                         help="read a 10x HDF5 / CSR .h5ad --test-set N cells at a time "
                              "(memory of one chunk; the same calls), e.g. 16384")
    _add_input_options(predict, "--test-set")
    predict.set_defaults(handler=cmd_predict)

    evaluate = commands.add_parser("evaluate", help="score predictions against labels")
    evaluate.add_argument("--predictions", required=True, help="TSV written by predict")
    evaluate.add_argument("--labels", required=True, help="cell_id<TAB>cell_type TSV")
    evaluate.add_argument("--label-column", metavar="COL",
                          help="the cell-type column of a --labels file with more than two "
                               "columns (header name, or position counted from 0 at the ids)")
    evaluate.add_argument("--plots", metavar="DIR",
                          help="write confusion_matrix.png and f1_per_class.png here")
    evaluate.set_defaults(handler=cmd_evaluate)

    convert = commands.add_parser(
        "convert", help="convert a count matrix between formats",
        description="Convert counts between pandas HDF (the tutorial's), 10x HDF5, Matrix "
                    "Market, CSV/TSV and .h5ad. The output format comes from --to or the "
                    "output name (.h5: pandas HDF, .h5ad, .csv, .tsv[.gz], no extension: "
                    "Matrix Market folder).")
    convert.add_argument("--input", required=True, help="count matrix in any readable format")
    convert.add_argument("--output", required=True, help="file (or folder for mtx) to write")
    convert.add_argument("--to", choices=_formats(), help="output format (default: from name)")
    convert.add_argument("--key", help="pandas HDF key or 10x genome of --input")
    convert.add_argument("--output-key", default="dge", help="pandas HDF key written (dge)")
    _add_input_options(convert, "--input")
    convert.set_defaults(handler=cmd_convert)
    return parser


def _formats() -> List[str]:
    from deepchem_actinn.io import FORMATS
    return list(FORMATS)


_open_fraction = option_type("validation_fraction")


def _add_input_options(command: argparse.ArgumentParser, what: str) -> None:
    group = command.add_argument_group(
        "input format", f"How to read {what}; the format is detected from the content.")
    group.add_argument("--format", choices=_formats(), help="skip detection")
    group.add_argument("--layer", help=".h5ad: layer with the raw counts ('raw' = raw.X; "
                                       "default X)")
    group.add_argument("--gene-column", help=".h5ad: var column of gene symbols "
                                             "(default var_names)")
    group.add_argument("--cells-as-rows", action="store_true",
                       help="CSV/TSV: rows are cells, columns genes (default genes x cells)")
    group.add_argument("--gene-ids", action="store_true",
                       help="10x HDF5 / Matrix Market: use gene ids instead of symbols")


def main(argv: Optional[Sequence[str]] = None) -> int:
    # The package imports lazily: train loads DeepChem itself, quietly; predict needs
    # torch alone, and --help, evaluate and convert neither.
    import deepchem_actinn as da

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help (0) or a one-line usage error (2): returned, not raised
        return stop.code if isinstance(stop.code, int) else 2
    if args.version:
        print(f"{PROG} {da.__version__}")
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    ActinnError = da.ActinnError
    previous_showwarning = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")
            warnings.showwarning = _show_warning
            return int(args.handler(args))
    except BrokenPipeError:  # output piped into `head`, say
        return 0
    except (ActinnError, OSError) as error:
        print(f"{PROG}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; nothing was written", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = previous_showwarning


if __name__ == "__main__":
    sys.exit(main())
