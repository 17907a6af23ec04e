"""DeepChem without its import-time messages.

DeepChem prints ~17 lines (missing optional backends, RDKit descriptors) when
first imported. Every module of this package that needs DeepChem imports it
inside :func:`deepchem_messages_hidden`, so ``import deepchem_actinn`` and its
first use stay quiet in Python as on the command line; the command lines
(``deepchem-actinn``, the ``torchrun`` entry point) also call
:func:`import_quietly` before anything else. Only those import-time lines are
hidden: DeepChem's later warnings and the package's own still reach the user.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import warnings
from typing import Any, Iterator


@contextlib.contextmanager
def deepchem_messages_hidden() -> Iterator[None]:
    """Run the block (DeepChem's first import) with its prints, warnings and log lines hidden.

    A no-op once DeepChem is loaded, so nothing of the user's is ever swallowed later.
    """
    if "deepchem" in sys.modules:
        yield
        return
    buffer = io.StringIO()
    previous = logging.root.manager.disable
    with contextlib.redirect_stderr(buffer), contextlib.redirect_stdout(buffer), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(previous)


def import_quietly() -> Any:
    """The package, with DeepChem loaded quietly: what the command lines start with.

    They also keep DeepChem's later log warnings off their one-line output.
    """
    with deepchem_messages_hidden():
        import deepchem  # noqa: F401
    logging.getLogger("deepchem").setLevel(logging.ERROR)
    import deepchem_actinn

    return deepchem_actinn
