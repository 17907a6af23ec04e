"""Exceptions with one-line messages that name the offending file."""

from __future__ import annotations

import os
import sys
from types import FrameType
from typing import Optional


class ActinnError(ValueError):
    """Base class for every error this package raises about user input.

    It subclasses ``ValueError`` so ``except ValueError`` keeps working, and
    the CLI prints ``str(error)`` on one line with no traceback.

    Examples
    --------
    >>> str(InputError("line 3 is not 'cell_id<TAB>cell_type'", "labels.csv"))
    "labels.csv: line 3 is not 'cell_id<TAB>cell_type'"
    >>> isinstance(InputError("bad"), ValueError)
    True
    """

    def __init__(self, problem: str, path: Optional[object] = None) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        message = problem if self.path is None else f"{self.path}: {problem}"
        # One line, always: messages may embed examples taken from user files.
        super().__init__(" ".join(message.split()))


class InputError(ActinnError):
    """A count matrix or label file that cannot be used as given."""


class OutputError(ActinnError):
    """An output that could not be written (disk full); the previous file is left as it was."""


class ModelFileError(ActinnError):
    """A model directory that is missing, corrupted, tampered with or too new."""


class GeneOverlapError(ActinnError):
    """A query shares too few genes with the model to be annotated."""


class MissingDependencyError(ActinnError, ImportError):
    """An optional extra (``anndata``, ``plots``) is needed and not installed.

    Also an ``ImportError``, so ``except ImportError`` catches it; the message
    names the ``pip install`` line that fixes it.
    """


class TrainingError(ActinnError):
    """Training that cannot give a usable model (it diverged); nothing was saved."""


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def user_stacklevel() -> int:
    """The ``stacklevel`` that points ``warnings.warn``, called by the caller of this, at the
    first line outside the package: the user's own call, however deep the warning arose.

    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warnings.warn("note", UserWarning, stacklevel=user_stacklevel())
    >>> caught[0].filename.startswith(_PACKAGE_DIR)
    False
    """
    frame: Optional[FrameType] = sys._getframe(1)  # the package function about to warn
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(
            _PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    return level
