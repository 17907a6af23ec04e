"""Former home of the model-file format (:mod:`deepchem_actinn.model.file_format`), kept so
existing imports keep working."""

from deepchem_actinn.model.file_format import *  # noqa: F403
from deepchem_actinn.model.file_format import (  # noqa: F401  (private names tests and users took)
    _metadata_digest,
)
