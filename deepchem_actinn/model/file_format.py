"""The model-file format: a model folder written, read back and checked.

:func:`save_model` (:meth:`ACTINNModel.save`) writes ``actinn_model.json``
(format version, hyper-parameters, classes, the fitted preprocessing, the
SHA-256 of the weights and of the metadata itself) beside ``weights.pt`` (a
plain tensor ``state_dict``), under a temporary name renamed into place;
:func:`load_model` (:meth:`ACTINNModel.load`) rebuilds the model from them
and :func:`read_model_metadata` reads the metadata alone. Checkpoints'
featurizer and class names are checked here too (:func:`checkpoint_names`).

What a model folder may hold is checked before anything is built from it.
A model folder is untrusted input: folders are shared and downloaded, and the
digests in ``actinn_model.json`` catch damage and hand edits but anyone can
recompute them, so they prove nothing about who wrote the folder. Loading
therefore

* reads ``actinn_model.json`` with a size bound, refusing duplicate keys and
  turning a too deeply nested document into one line;
* checks every field against the tables below (type, range, known keys
  only; :data:`HYPERPARAMETERS` and :data:`FEATURIZER` are the places to
  add a new setting), then the fields against each other;
* reads ``weights.pt`` once, checks those bytes against the digest recorded
  in the metadata read from the same directory, and deserialises the same
  bytes as tensors only (``torch.load(weights_only=True)`` of an
  uncompressed PyTorch zip archive): finite floating-point tensors, at least
  as many numbers as the declared network has before the network is built.

:func:`read_model_snapshot` opens both files through one directory handle,
so a load racing :meth:`ACTINNModel.save` (which swaps whole folders) reads
one model or the other, never a mix; it retries when a file vanishes or the
pair does not match (the old folder was being deleted, or files were copied
over in place) before it reports damage.

>>> HYPERPARAMETERS["decay_steps"](1000)
1000
>>> HYPERPARAMETERS["decay_steps"](0)
Traceback (most recent call last):
...
deepchem_actinn.model.file_format.SchemaError: must be an integer >= 1, not 0
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import pickle
import re
import shutil
import stat
import time
import warnings
import zipfile
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

import numpy as np
import torch

from deepchem_actinn.atomic import replace_directory, staging_folder
from deepchem_actinn.errors import ModelFileError, OutputError, TrainingError
from deepchem_actinn.model.presets import (
    PRESETS,
    TRAINING_OPTIONS,
    preset_settings,
    record_gene_selection,
)
from deepchem_actinn.preprocessing import ScRNAFeaturizer

if TYPE_CHECKING:
    from deepchem_actinn.model.network import ActinnClassifier

MODEL_FILE = "actinn_model.json"
WEIGHTS_FILE = "weights.pt"
MODEL_FORMAT = "deepchem_actinn.model"
MODEL_FORMAT_VERSION = 2
# Version 1 stored the gene layer's weight as units x genes (nn.Linear's layout).
_GENE_MAJOR_SINCE = 2

#: Largest ``actinn_model.json`` read (gene lists of big references are a few MB);
#: parsed JSON takes up to ~12x its size in memory.
MAX_METADATA_BYTES = 32 << 20
#: JSON arrays and objects in it: a model description has a handful, and a file of
#: millions of ``[]`` would take 20x its size once parsed.
MAX_METADATA_CONTAINERS = 100_000
#: Largest network built from a model file (8 GiB of float32 weights).
MAX_PARAMETERS = 1 << 31
MAX_WEIGHTS_BYTES = 4 * MAX_PARAMETERS + (64 << 20)
MAX_HIDDEN_LAYERS = 64
MAX_LAYER_WIDTH = 1 << 20
MAX_NAME_CHARS = 4096
#: Reads of a folder that is being replaced before a mismatch counts as damage.
SNAPSHOT_TRIES = 8

_BIG = 1 << 62


class SchemaError(ValueError):
    """A value that breaks the schema; ``field`` is its dotted path once known."""

    def __init__(self, problem: str, field: Optional[str] = None) -> None:
        super().__init__(problem if field is None else f"{field}: {problem}")
        self.problem, self.field = problem, field


Check = Callable[[Any], Any]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def integer(low: int, high: int = _BIG) -> Check:
    """An integer (not a bool, not a float) in ``[low, high]``."""
    def check(value: Any) -> int:
        if not _is_int(value) or not low <= value <= high:
            # int32's cap is a sanity bound: named only to whoever exceeds it.
            bound = (f">= {low}" if high == _BIG or (high >= 2**31 - 1 and _is_int(value)
                                                      and value < low)
                     else f"in [{low}, {high}]")
            raise SchemaError(f"must be an integer {bound}, not {_show(value)}")
        return int(value)
    return check


def number(low: float, high: float = math.inf, *, low_open: bool = False,
           high_open: bool = False) -> Check:
    """A finite number in the interval (ints are accepted and become floats)."""
    def check(value: Any) -> float:
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
              and math.isfinite(value)
              and (low < value if low_open else low <= value)
              and (value < high if high_open else value <= high))
        if not ok:
            left, right = "(" if low_open else "[", ")" if high_open or high == math.inf else "]"
            raise SchemaError(f"must be a finite number in {left}{low:g}, {high:g}{right}, "
                              f"not {_show(value)}")
        return float(value)
    return check


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise SchemaError(f"must be true or false, not {_show(value)}")
    return value


def one_of(*choices: Any) -> Check:
    def check(value: Any) -> Any:
        if isinstance(value, (bool, int, float, str, type(None))) and any(
                value == c and type(value) is type(c) for c in choices):
            return value
        raise SchemaError(f"must be one of {', '.join(map(_show, choices))}, not {_show(value)}")
    return check


def preset(value: Any) -> str:
    return one_of(*PRESETS)(value)  # type: ignore[no-any-return]


def integer_list(item: Check, max_length: int) -> Check:
    def check(value: Any) -> List[int]:
        if not isinstance(value, list) or len(value) > max_length:
            raise SchemaError(f"must be a list of at most {max_length} integers, "
                              f"not {_show(value)}")
        checked = []
        for index, element in enumerate(value):
            try:
                checked.append(item(element))
            except SchemaError as exc:
                raise SchemaError(f"item {index} {exc.problem}") from None
        return checked
    return check


def names(*, plain: bool) -> Check:
    """A list of distinct strings; ``plain``: also non-empty, short, no control characters.

    Class names become output labels and table headers, hence ``plain``;
    gene names are matched against count files, which may spell anything.
    """
    def check(value: Any) -> List[str]:
        if not isinstance(value, list):
            raise SchemaError(f"must be a list of names, not {_show(value)}")
        for index, name in enumerate(value):
            if not isinstance(name, str):
                raise SchemaError(f"item {index} must be a string, not {_show(name)}")
            if plain and (not name.strip() or len(name) > MAX_NAME_CHARS
                          or any(ord(c) < 32 or ord(c) == 127 for c in name)):
                raise SchemaError(f"item {index} {_show(name)} must be a non-empty name of at "
                                  f"most {MAX_NAME_CHARS} characters without control characters")
        if len(set(value)) != len(value):
            seen: set = set()
            for name in value:
                if name in seen:
                    raise SchemaError(f"holds {_show(name)} twice; names must be distinct")
                seen.add(name)
        return list(value)
    return check


def text(max_chars: int) -> Check:
    def check(value: Any) -> str:
        if not isinstance(value, str) or len(value) > max_chars:
            raise SchemaError(f"must be a string of at most {max_chars} characters, "
                              f"not {_show(value)}")
        return value
    return check


def gene_pattern(value: Any) -> Optional[str]:
    """``None`` or a regular expression of gene names (a featurizer's ``exclude_genes``)."""
    if value is None:
        return None
    pattern = text(1000)(value)
    try:
        re.compile(pattern)
    except re.error as exc:
        raise SchemaError(f"must be a regular expression ({exc})") from None
    return pattern


def finite_numbers(value: Any) -> List[float]:
    """A list of finite numbers (a featurizer's per-gene means)."""
    if not isinstance(value, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in value):
        raise SchemaError(f"must be a list of finite numbers, not {_show(value)}")
    return [float(v) for v in value]


def digest(value: Any) -> str:
    if not isinstance(value, str) or len(value) != 64 or any(c not in "0123456789abcdef"
                                                             for c in value):
        raise SchemaError(f"must be a SHA-256 hex digest, not {_show(value)}")
    return value


#: Every hyper-parameter a model file may hold, with its check. ``ACTINNModel``
#: receives these and nothing else, so a new constructor setting must be added
#: here (the round-trip test in tests/test_model_schema.py fails until it is).
#: Missing keys take the constructor's defaults (older model files).
def ranged(name: str) -> Check:
    """The check of a numeric setting, from the rule ``ACTINNModel`` itself enforces
    (:data:`deepchem_actinn.validation.RANGES`): what the constructor refuses, a model
    file may not hold."""
    from deepchem_actinn.validation import RANGES

    rule = RANGES[name]
    if rule.integer:
        return integer(int(rule.low if rule.low is not None else -_BIG),
                       int(rule.high) if rule.high is not None else _BIG)
    return number(-math.inf if rule.low is None else rule.low,
                  math.inf if rule.high is None else rule.high,
                  low_open=rule.low_open, high_open=rule.high_open)


HYPERPARAMETERS: Dict[str, Check] = {
    "hidden_sizes": integer_list(integer(1, MAX_LAYER_WIDTH), MAX_HIDDEN_LAYERS),
    **{name: ranged(name) for name in (
        "learning_rate", "decay_rate", "decay_steps", "l2", "batch_size", "epochs",
        "input_dropout", "min_steps", "label_smoothing", "low_percentile", "high_percentile",
        "linear_weight", "gene_dropout", "seed")},
    "class_weight": one_of(None, "balanced"),
    "linear_skip": boolean,
    "linear_l2": lambda value: None if value is None else ranged("linear_l2")(value),
    "exclude_genes": gene_pattern,
    "missing_genes": one_of("zero", "mean"),
    "preset": preset,
}

#: The fitted featurizer's state (``ScRNAFeaturizer.to_dict``).
FEATURIZER: Dict[str, Check] = {
    "target_sum": number(0, low_open=True),
    "low_percentile": number(0, 100),
    "high_percentile": number(0, 100),
    "min_gene_overlap": number(0, 1),
    "exclude_genes": gene_pattern,
    "missing_genes": one_of("zero", "mean"),
    "gene_means": finite_numbers,
    "joint": boolean,
    "input_genes": names(plain=False),
    "genes": names(plain=False),
}
FEATURIZER_OPTIONAL = {"joint", "exclude_genes", "missing_genes", "gene_means"}  # older files


def _section(table: Mapping[str, Check], optional: Sequence[str]) -> Check:
    """A JSON object checked key by key against ``table``; unknown keys are refused."""
    def check(value: Any) -> Dict[str, Any]:
        if not isinstance(value, dict):
            raise SchemaError(f"must be an object, not {_show(value)}")
        return _check_fields(value, table, [k for k in table if k not in optional])
    return check


#: Top-level fields of ``actinn_model.json`` (``format`` and ``format_version``
#: are checked first, by :func:`validate_metadata`).
METADATA: Dict[str, Check] = {
    "format": text(100),
    "format_version": integer(1),
    "package_version": text(100),
    "n_genes": integer(1, MAX_PARAMETERS),
    "n_classes": integer(1, MAX_PARAMETERS),
    "classes": names(plain=True),
    "hyperparameters": _section(HYPERPARAMETERS, list(HYPERPARAMETERS)),
    "featurizer": _section(FEATURIZER, sorted(FEATURIZER_OPTIONAL)),
    "global_step": integer(0),
    "weights_sha256": digest,
    "metadata_sha256": digest,
}
METADATA_OPTIONAL = {"package_version", "global_step", "metadata_sha256"}


def _check_fields(value: Dict[str, Any], table: Mapping[str, Check],
                  required: Sequence[str]) -> Dict[str, Any]:
    unknown = sorted(set(value) - set(table))
    if unknown:
        raise SchemaError(f"unknown field {_show(unknown[0])} (written by a newer or a "
                          "different program?)")
    missing = [key for key in required if key not in value]
    if missing:
        raise SchemaError(f"lacks the field {_show(missing[0])}")
    checked = {}
    for key, item in value.items():
        try:
            checked[key] = table[key](item)
        except SchemaError as exc:  # nested sections report "hyperparameters.decay_steps"
            raise SchemaError(exc.problem, key if exc.field is None
                              else f"{key}.{exc.field}") from None
    return checked


def network_parameters(n_genes: int, n_classes: int, hidden_sizes: Sequence[int],
                       linear_skip: bool = False) -> int:
    """Numbers in the network a model file declares: the linear layers and the temperature.

    A setting that adds weights (another layer, a skip path) must add them
    here: this count bounds what loading allocates before the network exists.
    """
    sizes = [n_genes, *hidden_sizes, n_classes]
    skip = n_genes * n_classes + n_classes if linear_skip else 0
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True)) + 1 + skip


def declared_parameters(meta: Mapping[str, Any]) -> int:
    """:func:`network_parameters` of checked metadata, settings missing from it taken from
    its preset (as loading does)."""
    hyper = meta["hyperparameters"]
    network = preset_settings(hyper.get("preset", "actinn"),
                              **{k: v for k, v in hyper.items() if k not in ("preset", "seed")})
    return network_parameters(meta["n_genes"], meta["n_classes"], network["hidden_sizes"],
                              bool(network["linear_skip"]))


def validate_metadata(meta: Any, folder: str) -> Dict[str, Any]:
    """``actinn_model.json``'s content checked field by field; a ModelFileError names the field.

    Returns the checked metadata (numbers normalised, defaults not filled in).
    """
    def fail(problem: str) -> ModelFileError:
        return ModelFileError(f"{MODEL_FILE}: {problem}", folder)

    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{MODEL_FILE} is not a deepchem_actinn model description", folder)
    if "format_version" not in meta:
        raise ModelFileError(f"{MODEL_FILE} lacks its format_version (damaged or edited)", folder)
    version = meta["format_version"]
    if not _is_int(version) or not 1 <= version <= MODEL_FORMAT_VERSION:
        raise ModelFileError(f"model format version {_show(version)} is not supported by this "
                             f"deepchem_actinn (reads versions 1-{MODEL_FORMAT_VERSION}); "
                             "upgrade the package or retrain", folder)
    try:
        checked = _check_fields(meta, METADATA,
                                [k for k in METADATA if k not in METADATA_OPTIONAL])
    except SchemaError as exc:
        raise fail(str(exc)) from None
    # A hand edit (or damage) is caught here, with a message that says so; the digest
    # is not a signature (anyone can recompute it), so the checks above and below stay.
    if "metadata_sha256" in meta and meta["metadata_sha256"] != _metadata_digest(meta):
        raise ModelFileError(f"{MODEL_FILE} was changed after the model was saved (its "
                             "metadata_sha256 does not match); restore the original or retrain",
                             folder)
    if len(checked["classes"]) != checked["n_classes"]:
        raise fail("class list does not match n_classes")
    problem = featurizer_problem(checked["featurizer"], checked["n_genes"])
    if problem:
        raise fail(problem)
    declared = declared_parameters(checked)
    if declared > MAX_PARAMETERS:
        raise fail(f"declares a network of {declared:,} parameters, more than the "
                   f"{MAX_PARAMETERS:,} a model may have")
    return checked


def featurizer_problem(featurizer: Mapping[str, Any], n_genes: int) -> Optional[str]:
    """What makes a schema-checked featurizer state inconsistent with ``n_genes``, or ``None``."""
    if len(featurizer["genes"]) != n_genes:
        return "gene list does not match n_genes"
    if "gene_means" in featurizer and len(featurizer["gene_means"]) != n_genes:
        return "featurizer gene_means do not match n_genes"
    if featurizer["low_percentile"] > featurizer["high_percentile"]:
        return "featurizer low_percentile is above its high_percentile"
    if not set(featurizer["genes"]) <= set(featurizer["input_genes"]):
        return "featurizer genes are not a subset of its input genes"
    return None


def checkpoint_names(data: Mapping[str, Any], n_genes: int, n_classes: int,
                     source: str) -> Tuple[Optional[Dict[str, Any]], Optional[List[str]]]:
    """The featurizer state and class names a checkpoint carries (JSON text), checked as a
    model file's are (a checkpoint is an untrusted file too); ``None`` where absent.

    >>> checkpoint_names({"classes": '["B", "T"]'}, 10, 2, "ckpt.pt")
    (None, ['B', 'T'])
    >>> checkpoint_names({"classes": '["B", "B"]'}, 10, 2, "ckpt.pt")
    Traceback (most recent call last):
    ...
    deepchem_actinn.errors.ModelFileError: ckpt.pt: checkpoint: classes: holds 'B' twice; ...
    """
    found: Dict[str, Any] = {}
    for key, check in (("featurizer", METADATA["featurizer"]), ("classes", METADATA["classes"])):
        text = data.get(key)
        if text is None:
            continue
        try:
            if not isinstance(text, str):
                raise SchemaError(f"must be JSON text, not {type(text).__name__}")
            found[key] = check(parse_metadata(text.encode("utf-8"), source, f"{key} JSON"))
        except SchemaError as exc:
            raise ModelFileError(f"checkpoint: {key}"
                                 f"{'' if exc.field is None else '.' + exc.field}: {exc.problem}",
                                 source) from None
    problem = featurizer_problem(found["featurizer"], n_genes) if "featurizer" in found else None
    if "classes" in found and len(found["classes"]) != n_classes:
        problem = "class list does not match n_classes"
    if problem:
        raise ModelFileError(f"checkpoint does not fit this model ({problem})", source)
    return found.get("featurizer"), found.get("classes")


# ---------------------------------------------------------------------------
# Reading one consistent snapshot
# ---------------------------------------------------------------------------


class _Transient(Exception):
    """A read that may succeed once a concurrent replacement of the folder is over."""

    def __init__(self, error: ModelFileError) -> None:
        super().__init__(str(error))
        self.error = error


def _reject_duplicate_keys(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    result: Dict[str, Any] = {}
    for key, value in pairs:
        if key in result:  # parsers disagree on which one wins
            raise ValueError(f"key {_show(key)} appears twice")
        result[key] = value
    return result


def parse_metadata(raw: bytes, folder: str, name: str = MODEL_FILE) -> Any:
    """JSON from the bytes of ``actinn_model.json`` (or another small JSON file, ``name``);
    every failure is one ModelFileError line."""
    containers = raw.count(b"[") + raw.count(b"{")  # an upper bound: brackets in names count
    if containers > MAX_METADATA_CONTAINERS:
        raise ModelFileError(f"{name} holds {containers:,} JSON arrays or objects; a model "
                             "description has a handful", folder)
    if len(raw) > MAX_METADATA_BYTES:
        raise ModelFileError(f"{name} is more than {MAX_METADATA_BYTES:,} bytes", folder)
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_reject_duplicate_keys)
    except RecursionError:
        raise ModelFileError(f"{name} is not valid JSON (nested too deeply)", folder) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelFileError(f"{name} is not valid JSON ({str(exc)[:200]})", folder) from exc


_DIR_FD = os.open in os.supports_dir_fd and hasattr(os, "O_DIRECTORY")


def _read_bounded(name: str, folder: str, dir_fd: Optional[int], limit: int,
                  missing: str) -> bytes:
    """The bytes of regular file ``name`` in the folder (opened through ``dir_fd``)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)  # a FIFO must not block the open
    try:
        if dir_fd is None:
            handle = os.open(os.path.join(folder, name), flags)
        else:
            handle = os.open(name, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        raise _Transient(ModelFileError(missing, folder)) from None
    except OSError as exc:
        raise ModelFileError(f"cannot read {name} ({exc.strerror})", folder) from None
    with os.fdopen(handle, "rb") as stream:
        info = os.fstat(stream.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ModelFileError(f"{name} is not a regular file", folder)
        if info.st_size > limit:
            raise ModelFileError(f"{name} is {info.st_size:,} bytes, more than a model file may "
                                 f"be ({limit:,})", folder)
        try:
            # The size it has, plus one byte to see it grow: read(limit) would allocate
            # the whole limit (gigabytes) up front.
            data = stream.read(info.st_size + 1)
        except OSError as exc:
            raise ModelFileError(f"cannot read {name} ({exc.strerror})", folder) from None
    if len(data) != info.st_size:  # written to while being read: read the pair again
        raise _Transient(ModelFileError(f"{name} changed while it was read", folder))
    return data


def _read_once(folder: str, with_weights: bool) -> Tuple[Dict[str, Any], Optional[bytes]]:
    dir_fd = None
    if _DIR_FD:
        try:
            # One handle on the folder: both files come from the same directory even if
            # save() swaps a new one into its place meanwhile.
            dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            raise _Transient(ModelFileError("model directory not found", folder)) from None
        except NotADirectoryError:
            raise ModelFileError("model directory not found (a file has that name)",
                                 folder) from None
        except OSError as exc:
            raise ModelFileError(f"cannot open the model directory ({exc.strerror})",
                                 folder) from None
    elif not os.path.isdir(folder):
        raise _Transient(ModelFileError("model directory not found", folder))
    try:
        raw = _read_bounded(MODEL_FILE, folder, dir_fd, MAX_METADATA_BYTES,
                            f"not a deepchem_actinn model directory (no {MODEL_FILE})")
        try:
            parsed = parse_metadata(raw, folder)
        except ModelFileError as exc:  # possibly a copy over the file, still in progress
            raise _Transient(exc) from None
        meta = validate_metadata(parsed, folder)
        if not with_weights:
            return meta, None
        data = _read_bounded(WEIGHTS_FILE, folder, dir_fd, MAX_WEIGHTS_BYTES,
                             f"missing {WEIGHTS_FILE}")
        if hashlib.sha256(data).hexdigest() != meta["weights_sha256"]:
            raise _Transient(ModelFileError(f"{WEIGHTS_FILE} does not match the checksum in "
                                            f"{MODEL_FILE} (corrupted or replaced)", folder))
        return meta, data
    finally:
        if dir_fd is not None:
            os.close(dir_fd)


def read_model_snapshot(folder: str, with_weights: bool = True
                        ) -> Tuple[Dict[str, Any], Optional[bytes]]:
    """Checked metadata and the weights bytes it describes, from one state of the folder.

    A missing file, unreadable JSON or a weights digest that does not match
    is retried a few times (a replacement may be in progress) before it is
    reported as a ModelFileError.
    """
    for attempt in range(SNAPSHOT_TRIES):
        try:
            return _read_once(folder, with_weights)
        except _Transient as exc:
            last = exc.error
            time.sleep(0.002 * attempt)
    raise last


def load_weights(data: bytes, folder: str) -> Dict[str, torch.Tensor]:
    """Tensors from ``weights.pt``'s bytes: an uncompressed PyTorch archive of finite floats."""
    refused = (f"{WEIGHTS_FILE} is not a PyTorch archive of tensors (a bare pickle or an old "
               "torch format): refused, since loading it could run code")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError):
        raise ModelFileError(refused if data[:1] == b"\x80" else
                             f"cannot read {WEIGHTS_FILE} (damaged, or not a PyTorch file)",
                             folder) from None
    # torch.save stores its records uncompressed: a compressed one could unpack to any size.
    if any(e.compress_type != zipfile.ZIP_STORED for e in entries) or sum(
            e.file_size for e in entries) > len(data):
        raise ModelFileError(f"{WEIGHTS_FILE} holds compressed records, which torch.save never "
                             "writes (damaged or crafted)", folder)
    try:
        state = load_tensors(io.BytesIO(data), "cpu")
    except pickle.UnpicklingError as exc:
        raise ModelFileError(f"{WEIGHTS_FILE} holds Python objects, not only tensors: "
                             "refused, since loading it could run code", folder) from exc
    except Exception as exc:
        raise ModelFileError(f"cannot read {WEIGHTS_FILE} (damaged, or not a PyTorch file): "
                             f"{type(exc).__name__}: {str(exc)[:120]}", folder) from exc
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ModelFileError(f"{WEIGHTS_FILE} is not a tensor state dict", folder)
    for name, tensor in state.items():
        if not tensor.is_floating_point():
            raise ModelFileError(f"{WEIGHTS_FILE}: {_show(name)} holds {tensor.dtype} values, "
                                 "not floating-point weights", folder)
    bad = nonfinite_tensor(state)
    if bad is not None:
        raise ModelFileError(f"{WEIGHTS_FILE}: {_show(bad)} holds NaN or infinite values "
                             "(the training that wrote it diverged, or the file was "
                             "tampered with)", folder)
    return state


def load_tensors(source: Any, device: Any) -> Any:
    """``torch.load(weights_only=True)`` (tensors and plain data, never objects), quietly:
    torch's warnings are not the user's business. Weights and checkpoints are read here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(source, map_location=device, weights_only=True)


def nonfinite_tensor(state: Mapping[str, torch.Tensor]) -> Optional[str]:
    """The name of the first floating-point tensor holding NaN or inf, or ``None``."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


def _show(value: Any) -> str:
    """A short repr of a value from a file (it may be huge or multi-line)."""
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _metadata_digest(meta: Dict[str, Any]) -> str:
    """SHA-256 of the metadata as canonical JSON, without its own digest field."""
    body = {k: v for k, v in meta.items() if k != "metadata_sha256"}
    canonical = json.dumps(json.loads(json.dumps(body)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# -- saving and loading a model folder ------------------------------------------------


def save_model(model: Any, directory: Union[str, os.PathLike[str]]) -> str:
    """Write ``model`` (an :class:`~deepchem_actinn.model.ACTINNModel` with its fitted
    featurizer) as a model directory; see :meth:`ACTINNModel.save`."""
    if model.featurizer is None or model.featurizer.genes_ is None:
        raise ValueError("a model needs its fitted featurizer to be saved as a reference")
    from deepchem_actinn import __version__
    target = os.path.abspath(os.fspath(directory))
    if os.path.isdir(target) and os.listdir(target) and not os.path.isfile(
            os.path.join(target, MODEL_FILE)):
        # Never swap out a folder that is not a model: it may hold the user's data.
        raise ModelFileError("exists, is not empty and is not a model directory; "
                             "choose a new --model-dir", target)
    state = {k: v.detach().cpu() for k, v in model.model.state_dict().items()}
    bad = nonfinite_tensor(state)
    if bad is not None:  # a diverged model would call every cell the first class
        raise TrainingError(f"not saved: the weights ({bad}) hold NaN or infinite values, "
                            "so training diverged; try a lower learning rate", target)
    buffer = io.BytesIO()
    torch.save(state, buffer)  # in memory: a full disk is then our OSError, named below
    weights = buffer.getvalue()
    parent = os.path.dirname(target)
    writing = target
    try:
        os.makedirs(parent, exist_ok=True)
        staging = staging_folder(target)
    except OSError as exc:
        raise OutputError(f"cannot create the model directory ({exc.strerror})",
                          target) from None
    try:
        writing = os.path.join(target, WEIGHTS_FILE)
        _write_bytes(os.path.join(staging, WEIGHTS_FILE), weights)
        meta = {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "package_version": __version__,
            "n_genes": model.n_genes,
            "n_classes": model.n_classes,
            "classes": [str(c) for c in model.classes],
            "hyperparameters": model.hyperparameters,
            "featurizer": model.featurizer.to_dict(),
            "global_step": int(model._global_step) if model._built else 0,
            "weights_sha256": hashlib.sha256(weights).hexdigest(),
        }
        meta["metadata_sha256"] = _metadata_digest(meta)  # last: covers every field
        validate_metadata(meta, target)  # never write what load() refuses
        writing = os.path.join(target, MODEL_FILE)
        _write_json(os.path.join(staging, MODEL_FILE), meta)
        writing = target
        # Only the model's own files are replaced: anything else in the folder stays.
        replace_directory(staging, target, own=(MODEL_FILE, WEIGHTS_FILE))
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        kept = "the previous model is kept" if os.path.isdir(target) else "nothing was saved"
        raise OutputError(f"cannot write the model ({exc.strerror or exc}); {kept}",
                          writing) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _read_for_loading(folder: str) -> Tuple[Dict[str, Any], Dict[str, torch.Tensor],
                                            ScRNAFeaturizer, Dict[str, Any]]:
    """The checked metadata, weights, featurizer and hyperparameters of a model folder."""
    meta, data = read_model_snapshot(folder)
    assert data is not None
    state = load_weights(data, folder)
    # Bound what building the network allocates by what the file holds.
    declared = declared_parameters(meta)
    held = sum(t.numel() for t in state.values())
    if declared > held:
        raise ModelFileError(f"{WEIGHTS_FILE} does not fit the network described in "
                             f"{MODEL_FILE} ({declared:,} parameters declared, {held:,} "
                             "stored)", folder)
    try:
        featurizer = ScRNAFeaturizer.from_dict(meta["featurizer"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"inconsistent {MODEL_FILE}: {exc}", folder) from exc
    # A training option the file does not name came after it: it was off then.
    params = {**TRAINING_OPTIONS, **meta["hyperparameters"]}
    return meta, state, featurizer, params


def _load_state(network: Any, state: Dict[str, torch.Tensor], meta: Mapping[str, Any],
                folder: str) -> None:
    """Put the saved weights into ``network``, if they are the network's."""
    if int(meta["format_version"]) < _GENE_MAJOR_SINCE:
        state = _gene_major(state, network)
    expected = network.state_dict()
    if set(state) != set(expected) or any(state[k].shape != expected[k].shape
                                          for k in expected):
        raise ModelFileError(f"{WEIGHTS_FILE} does not fit the network described in "
                             f"{MODEL_FILE}", folder)
    network.load_state_dict(state)


def load_model(cls: Any, directory: Union[str, os.PathLike[str]],
               device: Optional[Union[str, torch.device]] = None, **kwargs: Any) -> Any:
    """Rebuild the ``cls`` model (:class:`~deepchem_actinn.model.ACTINNModel`) saved in
    ``directory``; see :meth:`ACTINNModel.load`."""
    folder = os.fspath(directory)
    meta, state, featurizer, params = _read_for_loading(folder)
    try:
        model = cls(int(meta["n_genes"]), int(meta["n_classes"]),
                    classes=meta["classes"], featurizer=featurizer, device=device,
                    **params, **kwargs)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"inconsistent {MODEL_FILE}: {exc}", folder) from exc
    _load_state(model.model, state, meta, folder)
    model._ensure_built()
    model._global_step = int(meta.get("global_step", 0))
    model.loaded_from = os.path.abspath(folder)
    model._sync_schedule()
    return model


def load_reference(directory: Union[str, os.PathLike[str]],
                   device: Optional[Union[str, torch.device]] = None) -> Any:
    """A saved model loaded to annotate cells only: a
    :class:`~deepchem_actinn.model.inference.Reference`, without DeepChem.

    The same checks as :meth:`ACTINNModel.load <deepchem_actinn.model.ACTINNModel.load>`
    and the same calls; what ``deepchem-actinn predict`` and
    ``annotate(data, "model_dir")`` use.
    """
    from deepchem_actinn.model.inference import Reference, default_device
    from deepchem_actinn.model.network import ActinnClassifier

    folder = os.fspath(directory)
    meta, state, featurizer, params = _read_for_loading(folder)
    preset_name = params.pop("preset", "actinn")
    params.pop("seed", None)
    try:
        settings = preset_settings(preset_name, **params)
        settings["hidden_sizes"] = tuple(int(h) for h in settings["hidden_sizes"])
        record_gene_selection(settings, featurizer)  # as ACTINNModel records it
        network = ActinnClassifier.from_settings(int(meta["n_genes"]), int(meta["n_classes"]),
                                                 settings)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"inconsistent {MODEL_FILE}: {exc}", folder) from exc
    _load_state(network, state, meta, folder)
    return Reference(network, featurizer, np.asarray(meta["classes"], dtype=object),
                     preset_name, settings, default_device(device),
                     loaded_from=os.path.abspath(folder))


def read_model_metadata(directory: str) -> Dict[str, Any]:
    """Read ``actinn_model.json`` and check it against its schema; ModelFileError says why not.

    Examples
    --------
    >>> import tempfile
    >>> read_model_metadata(tempfile.mkdtemp())
    Traceback (most recent call last):
    ...
    deepchem_actinn.errors.ModelFileError: ...: not a deepchem_actinn model directory ...
    """
    return read_model_snapshot(os.fspath(directory), with_weights=False)[0]


def _gene_major(state: Dict[str, Any], net: ActinnClassifier) -> Dict[str, Any]:
    """A version-1 state dict with its gene layer's weight transposed to genes x units."""
    key = "hidden.0.weight" if len(net.hidden) else "output.weight"
    value = state.get(key)
    if isinstance(value, torch.Tensor) and value.ndim == 2:
        state = {**state, key: value.t().contiguous()}
    return state


def _write_json(path: str, payload: Dict[str, Any]) -> None:
    _write_bytes(path, json.dumps(payload, indent=1).encode("utf-8"))


def _write_bytes(path: str, data: bytes) -> None:
    """Write and fsync a new file (a full disk raises OSError here, which save() names)."""
    with open(path, "xb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
