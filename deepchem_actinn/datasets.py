"""Deprecated name of :mod:`deepchem_actinn.sample_data` (the bundled tutorial files).

Kept so ``from deepchem_actinn.datasets import tutorial_files`` goes on
working; it was easy to confuse with :mod:`deepchem_actinn.data` (DeepChem
datasets). Import :mod:`deepchem_actinn.sample_data` instead.
"""

from __future__ import annotations

from deepchem_actinn.sample_data import (  # noqa: F401
    BUNDLED,
    FILES,
    SampleFiles,
    TutorialFiles,
    default_cache_dir,
    fetch_file,
    sample_files,
    tutorial_files,
)
