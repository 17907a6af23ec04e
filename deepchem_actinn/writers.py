"""Former home of the count-matrix writers (:mod:`deepchem_actinn.io.writers`), kept so
existing imports keep working."""

from deepchem_actinn.io.writers import (
    MTX_FILES,
    output_format,
    write_10x_h5,
    write_counts,
    write_h5ad,
    write_mtx,
    write_pandas_hdf,
    write_text,
)

__all__ = ["MTX_FILES", "output_format", "write_10x_h5", "write_counts", "write_h5ad",
           "write_mtx", "write_pandas_hdf", "write_text"]
