"""Import the package with DeepChem's import-time messages hidden.

DeepChem prints ~17 lines (missing optional backends, RDKit descriptors) when
first imported; the command lines (``deepchem-actinn``, the ``torchrun``
entry point) call :func:`import_quietly` before anything else.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import Any


def import_quietly() -> Any:
    """Import ``deepchem_actinn`` and DeepChem with their import-time messages hidden."""
    buffer = io.StringIO()
    with contextlib.redirect_stderr(buffer), contextlib.redirect_stdout(buffer), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)
        try:
            import deepchem_actinn
            import deepchem_actinn.annotation  # noqa: F401  (loads DeepChem)
        finally:
            logging.disable(previous)
    logging.getLogger("deepchem").setLevel(logging.ERROR)
    return deepchem_actinn
