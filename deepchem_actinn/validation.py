"""Range checks of numeric arguments and devices, shared by the command line and the API.

One rule per argument name (:data:`RANGES`): the CLI's option types and the
Python functions (:class:`~deepchem_actinn.model.ACTINNModel`,
:func:`~deepchem_actinn.annotation.annotate`) refuse the same values with the
same one-line :class:`OptionError`.

>>> check_number("epochs", 3)
3
>>> check_number("learning_rate", float("nan"))
Traceback (most recent call last):
...
deepchem_actinn.validation.OptionError: learning_rate must be a finite number > 0, got nan
>>> parse_number("threshold", "0.5")
0.5
"""

from __future__ import annotations

import math
import numbers
import operator
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Union

from deepchem_actinn.errors import ActinnError, InputError

#: The label of cells below a threshold (no cell type); no training type may be named so.
UNASSIGNED = "Unassigned"
#: Seeds feed numpy's and torch's generators; numpy's legacy range keeps them portable.
SEED_MAX = 2 ** 32 - 1
#: Counts (epochs, cells per chunk, ...) beyond int32 overflow numpy/torch index types.
INT_MAX = 2 ** 31 - 1


class OptionError(ActinnError):
    """A numeric argument or a device outside what it may be.

    ``name`` is the argument, ``requirement`` the message without it (the
    CLI prints ``argument --NAME: requirement``).
    """

    def __init__(self, name: str, requirement: str) -> None:
        self.name = name
        self.requirement = requirement
        super().__init__(f"{name} {requirement}")


@dataclass(frozen=True)
class Range:
    """Allowed values: an integer or a finite float between optional bounds."""

    integer: bool
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False

    def describe(self, value: Any = None) -> str:
        kind = "an integer" if self.integer else "a finite number"
        if self.integer and self.high == INT_MAX and self.low is not None:
            # The int32 cap is a sanity bound: named only to whoever exceeds it.
            over = isinstance(value, numbers.Real) and float(value) > INT_MAX
            return f"{kind} >= {_show(self.low)}" + (f" and <= {INT_MAX}" if over else "")
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            interval = f"in {left}{_show(self.low)}, {_show(self.high)}{right}"
            return f"{kind} {interval}" if self.integer else interval
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {_show(self.low)}"
        return kind

    def contains(self, value: float) -> bool:
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (self.high is not None
                    and (value > self.high or (self.high_open and value == self.high)))


def _show(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def _count(low: int = 1) -> Range:
    return Range(True, low, INT_MAX)


def _fraction(low_open: bool = False, high_open: bool = False) -> Range:
    return Range(False, 0.0, 1.0, low_open, high_open)


#: The rule of every numeric argument, by its Python name (CLI ``--a-b`` is ``a_b``).
RANGES = {
    "epochs": _count(),
    "batch_size": _count(),
    "chunk_cells": _count(),
    "decay_steps": _count(),
    "n_genes": _count(),
    "n_classes": _count(),
    "hidden_sizes": _count(),
    "min_steps": _count(0),
    "seed": Range(True, 0, SEED_MAX),
    "learning_rate": Range(False, 0.0, low_open=True),
    "l2": Range(False, 0.0),
    "linear_l2": Range(False, 0.0),
    "linear_weight": _fraction(),
    "decay_rate": _fraction(low_open=True),
    "threshold": _fraction(),
    "min_overlap": _fraction(),
    "min_gene_overlap": _fraction(),
    "input_dropout": _fraction(high_open=True),
    "gene_dropout": _fraction(high_open=True),
    "label_smoothing": _fraction(high_open=True),
    "validation_fraction": _fraction(low_open=True, high_open=True),
    "low_percentile": Range(False, 0.0, 100.0),
    "high_percentile": Range(False, 0.0, 100.0),
}


def check_number(name: str, value: Any, rule: Optional[Range] = None) -> Union[int, float]:
    """``value`` as an int or float if it obeys ``rule`` (default ``RANGES[name]``).

    Integral floats pass as integers (``1000.0`` steps); booleans, strings,
    NaN and infinities never pass.

    >>> check_number("batch_size", 0)
    Traceback (most recent call last):
    ...
    deepchem_actinn.validation.OptionError: batch_size must be an integer >= 1, got 0
    """
    rule = rule or RANGES[name]
    requirement = f"must be {rule.describe(value)}, got {value!r}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise OptionError(name, requirement)
    number = float(value)
    if not math.isfinite(number):
        raise OptionError(name, requirement)
    if rule.integer:
        if not number.is_integer():
            raise OptionError(name, requirement)
        integer = operator.index(value) if isinstance(value, numbers.Integral) else int(number)
        if not rule.contains(integer):
            raise OptionError(name, requirement)
        return integer
    if not rule.contains(number):
        raise OptionError(name, requirement)
    return number


def parse_number(name: str, text: str, rule: Optional[Range] = None) -> Union[int, float]:
    """Parse command-line ``text`` and check it (:func:`check_number`)."""
    rule = rule or RANGES[name]
    try:
        value: Union[int, float] = int(text) if rule.integer else float(text)
    except ValueError:
        raise OptionError(name, f"must be {rule.describe()}, got {text!r}") from None
    return check_number(name, value, rule)


def check_device(device: Any, name: str = "device") -> None:
    """Refuse a device torch does not know, or a GPU this machine does not have.

    ``None`` and ``"auto"`` pass (a GPU when present, else the CPU).

    >>> check_device("cpu")
    >>> check_device("gpu")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    deepchem_actinn.validation.OptionError: device 'gpu' is not a device: use auto, cpu, ...
    """
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return
    import torch

    usage = "use auto, cpu, cuda, cuda:N or mps"
    try:
        parsed = device if isinstance(device, torch.device) else torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise OptionError(name, f"{device!r} is not a device: {usage}") from None
    shown = repr(str(parsed))
    if parsed.type == "cpu":
        return
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise OptionError(name, f"{shown}: no CUDA GPU is available on this machine; "
                                    "use cpu (or auto)")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise OptionError(name, f"{shown}: this machine has {count} CUDA GPU(s), "
                                    f"cuda:0 to cuda:{count - 1}")
        return
    if parsed.type == "mps":
        backend = getattr(torch.backends, "mps", None)
        if backend is None or not backend.is_available():
            raise OptionError(name, f"{shown}: no Apple MPS device is available; use cpu "
                                    "(or auto)")
        return
    raise OptionError(name, f"{shown} is not supported: {usage}")


def check_model_arguments(**arguments: Any) -> None:
    """Check the numeric arguments of :class:`~deepchem_actinn.model.ACTINNModel`.

    ``None`` means "the preset's value"; names without a rule (``preset``,
    ``classes``, DeepChem's own options) are left to their owners.
    """
    for name, value in arguments.items():
        if value is None:
            continue
        if name == "device":
            check_device(value)
        elif name == "hidden_sizes":
            if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
                raise OptionError(name, f"must be a sequence of layer widths, got {value!r}")
            for width in value:
                check_number(name, width)
        elif name in RANGES:
            check_number(name, value)


def check_training_classes(classes: Iterable[Any], source: Optional[str]) -> None:
    """Refuse training labels that name a type ``Unassigned``, the label of abstentions.

    A model with such a class would mix its calls with the cells ``--threshold``
    leaves unassigned (``evaluate``'s coverage, ``to_adata``'s categories).
    """
    if any(str(c) == UNASSIGNED for c in classes):
        raise InputError(f"a cell type is named '{UNASSIGNED}', the label given to cells below "
                         "--threshold; rename that type (e.g. 'Unassigned cells') in the "
                         "training labels", source)


def option_type(name: str) -> Callable[[str], Any]:
    """An argparse ``type`` parsing a number and checking it with the rule of ``name``
    (:data:`RANGES`), the rule the Python API applies too."""
    def parse(text: str) -> Any:
        try:
            return parse_number(name, text)
        except OptionError as error:
            import argparse
            raise argparse.ArgumentTypeError(error.requirement) from None

    parse.__name__ = name
    return parse
