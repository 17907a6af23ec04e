"""ACTINN preprocessing, fitted on training cells and applied to any query.

ACTINN (Ma & Pellegrini 2020) scales each cell to 10,000 counts, takes
log2(x + 1), then drops the genes in the top and bottom 1% of total
expression and, of those left, of coefficient of variation. The original
fits those filters on the training and test cells together; here they are
fitted on the training cells only, so test cells never shape the model
(the paper's joint mode is ``fit(..., joint_with=query)``).

Two decisions the original leaves open (it produces NaN):

* A cell with zero counts over the model's genes has no library size. Its
  normalised profile is all zeros (never NaN); :meth:`ScRNAFeaturizer.fit`
  leaves such cells out of the gene statistics and warns.
* A gene with zero counts in every training cell has an undefined
  coefficient of variation. It carries no information and is dropped before
  the CV filter, so it cannot empty the gene list.

The gene filters are fitted from per-gene sums (:func:`log_gene_sums`,
:meth:`ScRNAFeaturizer.fit_from_sums`), gathered in memory, a chunk of a file
at a time (:func:`fit_featurizer_streaming`, out-of-core training) or over
the ranks of a distributed run: every path keeps the same genes.
:func:`chunk_transform` featurises the chunks of one file.
"""

from __future__ import annotations

import re
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import scipy.sparse as sp

from deepchem_actinn.errors import GeneOverlapError, InputError, user_stacklevel
from deepchem_actinn.io import (
    CHUNK_CELLS,
    ChunkedCounts,
    CountMatrix,
    Matrix,
    Names,
    PathLike,
    as_count_matrix,
    take_columns,
    take_rows,
)
from deepchem_actinn.io.labels import _label_lookup
from deepchem_actinn.progress import Progress

TARGET_SUM = 10_000.0
#: Mitochondrial (``MT-``, mouse ``mt-``) and ribosomal-protein (``RPL``/``RPS``,
#: mouse ``Rpl``/``Rps``) genes: highly expressed in every cell type, with a share of the
#: counts that follows the platform and the cell's state rather than its type.
TECHNICAL_GENES = r"MT-|RP[LS]\d|RPLP\d|MRP[LS]\d"


class PreprocessingWarning(UserWarning):
    """Cells or genes that preprocessing had to treat specially."""


def normalize_log2(X: Matrix, target_sum: float = TARGET_SUM,
                   library_sizes: Optional[np.ndarray] = None) -> Matrix:
    """Scale each row (cell) to ``target_sum`` counts, then take log2(x + 1).

    Rows with zero counts stay all zero. Sparse input stays sparse.

    Examples
    --------
    >>> import numpy as np
    >>> normalize_log2(np.array([[1.0, 3.0], [0.0, 0.0]]), target_sum=4.0).tolist()
    [[1.0, 2.0], [0.0, 0.0]]
    """
    if library_sizes is None:
        library_sizes = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
    with np.errstate(divide="ignore"):
        scale = np.where(library_sizes > 0, target_sum / np.maximum(library_sizes, 1e-300), 0.0)
    if sp.issparse(X):
        X = sp.csr_matrix(X)
        if not X.has_canonical_format:
            X = X.copy()
            X.sum_duplicates()
        # Each stored count times its cell's scale, in float64: the numbers of a diagonal
        # matrix product without its cost, by blocks of rows whose float64 temporaries
        # stay cache-sized (an atlas has 10^9 stored counts).
        data = np.empty(X.nnz, np.float32)
        counts = np.diff(X.indptr)
        rows = max(1, (1 << 22) * X.shape[0] // max(X.nnz, 1))
        for start in range(0, X.shape[0], rows):
            stop = min(start + rows, X.shape[0])
            lo, hi = X.indptr[start], X.indptr[stop]
            values = X.data[lo:hi].astype(np.float64)
            values *= np.repeat(scale[start:stop], counts[start:stop])
            data[lo:hi] = np.log2(values + 1.0)
        out = sp.csr_matrix((data, X.indices.copy(), X.indptr.copy()), shape=X.shape)
        out.eliminate_zeros()  # empty cells (scale 0) and stored zeros stay absent
        return out
    dense = np.asarray(X, dtype=np.float64) * scale[:, None]
    return np.log2(dense + 1.0).astype(np.float32)


def gene_sums(L: Matrix) -> Tuple[np.ndarray, np.ndarray]:
    """Per-gene float64 sums and sums of squares over the rows (cells) of ``L``.

    What :func:`gene_statistics` needs, and what streaming and distributed
    fits add up chunk by chunk or over processes.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> total, squares = gene_sums(sp.csr_matrix(np.array([[1.0, 0.0], [3.0, 2.0]])))
    >>> total.tolist(), squares.tolist()
    ([4.0, 2.0], [10.0, 4.0])
    """
    if sp.issparse(L):
        # float64 sums, as for dense input (float32 sums differ from the dense ones enough
        # to change which genes pass the filters), accumulated cell after cell by bincount
        # without a float64 copy of the whole matrix.
        L = sp.csr_matrix(L)
        total = np.bincount(L.indices, weights=L.data, minlength=L.shape[1])
        squares = np.bincount(L.indices, weights=np.square(L.data, dtype=np.float64),
                              minlength=L.shape[1])
        return total, squares
    L64 = np.asarray(L, dtype=np.float64)
    return L64.sum(axis=0), np.square(L64).sum(axis=0)


def log_gene_sums(X: Matrix, target_sum: float = TARGET_SUM
                  ) -> Tuple[np.ndarray, np.ndarray, int, int]:
    """:func:`gene_sums` of the log-normalised cells of raw counts ``X`` that are not empty.

    Returns ``(total, squares, n_used, n_empty)``: what the streamed fit adds
    up chunk by chunk and the distributed fit over processes, the same float
    values :meth:`ScRNAFeaturizer.fit` sums in memory.

    >>> import numpy as np
    >>> total, squares, used, empty = log_gene_sums(np.array([[1.0, 1.0], [0.0, 0.0]]), 2.0)
    >>> total.tolist(), used, empty
    ([1.0, 1.0], 1, 1)
    """
    library = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
    rows = np.flatnonzero(library > 0)
    total, squares = gene_sums(normalize_log2(take_rows(X, rows), target_sum, library[rows]))
    return total, squares, len(rows), len(library) - len(rows)


def gene_statistics(L: Matrix) -> Tuple[np.ndarray, np.ndarray]:
    """Total expression and coefficient of variation (population std / mean) of each column.

    A column that is zero in every row has a NaN coefficient of variation.

    Examples
    --------
    >>> import numpy as np
    >>> total, cv = gene_statistics(np.array([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0]]))
    >>> total.tolist(), cv.round(3).tolist()
    ([4.0, 0.0, 4.0], [0.5, nan, 0.0])
    """
    total, squares = gene_sums(L)
    return total, coefficient_of_variation(total, squares, L.shape[0])


def coefficient_of_variation(total: np.ndarray, squares: np.ndarray, n: float) -> np.ndarray:
    """Population std / mean of each gene from its sum and sum of squares over ``n`` cells.

    Sums are what streaming and distributed fits accumulate; NaN where the mean is 0.

    Examples
    --------
    >>> import numpy as np
    >>> coefficient_of_variation(np.array([4.0, 0.0]), np.array([10.0, 0.0]), 2).round(3).tolist()
    [0.5, nan]
    """
    mean = total / n
    variance = np.maximum(squares / n - mean ** 2, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(mean > 0, np.sqrt(variance) / np.where(mean > 0, mean, 1.0), np.nan)


def select_genes(total: np.ndarray, cv: np.ndarray, low: float = 1.0,
                 high: float = 99.0) -> np.ndarray:
    """ACTINN's two percentile filters; returns the indices of the kept genes.

    First total expression in ``[P_low, P_high]`` (percentiles over all genes),
    then coefficient of variation in ``[P_low, P_high]`` of the genes left.
    Genes never expressed are dropped before the second filter.

    Examples
    --------
    >>> import numpy as np
    >>> total = np.arange(1.0, 11.0); cv = np.array([5, 1, 2, 3, 4, 5, 6, 7, 8, 9.0])
    >>> select_genes(total, cv, low=10, high=90).tolist()
    [2, 3, 4, 5, 6, 7]
    """
    lo, hi = np.percentile(total, [low, high])
    keep = _within(total, lo, hi) & (total > 0) & np.isfinite(cv)
    if not keep.any():
        return np.flatnonzero(keep)
    cv_lo, cv_hi = np.percentile(cv[keep], [low, high])
    keep &= _within(cv, cv_lo, cv_hi)
    return np.flatnonzero(keep)


def _within(values: np.ndarray, lo: float, hi: float, rtol: float = 1e-9) -> np.ndarray:
    """``lo <= values <= hi``, keeping values tied with a bound up to rounding.

    Ties at the percentiles are common: every gene seen in a single cell has
    CV sqrt(n - 1) exactly. Their computed values differ in the last bits, so
    an exact comparison would keep an arbitrary part of them, changing with
    summation order (dense vs sparse input, float32 vs float64).
    """
    return (values >= lo - rtol * abs(lo)) & (values <= hi + rtol * abs(hi))


@dataclass
class GeneOverlap:
    """How a query's genes cover a fitted featurizer's genes.

    Examples
    --------
    >>> report = GeneOverlap(n_model_genes=4, n_found=3, n_input_genes=5, n_input_found=4,
    ...                      n_query_genes=6)
    >>> report.fraction
    0.75
    >>> report.summary()
    '3 of 4 model genes found in the query (75.0%; 1 set to zero, 2 query genes unused)'
    """

    n_model_genes: int
    n_found: int
    n_input_genes: int
    n_input_found: int
    n_query_genes: int
    missing_genes: str = "zero"  # what a missing model gene is set to: "zero" or "mean"

    @property
    def fraction(self) -> float:
        return self.n_found / max(self.n_model_genes, 1)

    def summary(self) -> str:
        missing = self.n_model_genes - self.n_found
        filled = ("set to the reference mean" if self.missing_genes == "mean" and missing
                  else "set to zero")
        return (f"{self.n_found} of {self.n_model_genes} model genes found in the query "
                f"({100 * self.fraction:.1f}%; {missing} {filled}, "
                f"{self.n_query_genes - self.n_input_found} query genes unused)")


def _as_matrix(data: Union[CountMatrix, Matrix], genes: Optional[Names]
               ) -> Tuple[Matrix, np.ndarray, str]:
    if isinstance(data, CountMatrix):
        return data.X, data.genes, data.source
    if genes is None:
        raise TypeError("pass genes=... with a bare matrix, or a CountMatrix")
    upper = np.asarray([str(g).upper() for g in genes], dtype=object)
    if data.shape[1] != len(upper):
        raise InputError(f"matrix has {data.shape[1]} columns but {len(upper)} gene names "
                         "were given")
    return data, upper, "<memory>"


class ScRNAFeaturizer:
    """ACTINN's normalisation and gene filter, fitted on the training cells.

    Parameters
    ----------
    target_sum: float
        Counts each cell is scaled to before the log (10,000 in ACTINN).
    low_percentile, high_percentile: float
        Genes outside these percentiles of total expression, then of
        coefficient of variation, are dropped (1 and 99 in ACTINN).
    min_gene_overlap: float
        :meth:`transform` refuses a query that holds less than this fraction
        of the model's genes; below 50% it warns.
    missing_genes: str
        What a model gene absent from a query becomes: ``"zero"`` (ACTINN) or
        ``"mean"``, its mean normalised expression in the training cells
        (:attr:`gene_means_`), which shifts a model's calls less.
    exclude_genes: str, optional
        Regular expression (matched case-insensitively from the start of the
        name) of genes to leave out entirely, of the library sizes too; e.g.
        :data:`TECHNICAL_GENES`, the mitochondrial and ribosomal-protein genes
        whose share of a cell's counts is set by the platform and the cell's
        quality rather than its type. ``None`` (ACTINN) keeps every gene.

    Attributes
    ----------
    input_genes_: np.ndarray
        Genes the library sizes are computed over (the training genes, or
        those shared with a query when fitted with ``restrict_to``).
    genes_: np.ndarray
        Genes kept by the filters, in model-input order.
    gene_means_: np.ndarray
        Mean normalised (log2) expression of each of ``genes_`` over the
        training cells with counts.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> counts = rng.poisson(2.0, size=(50, 300))
    >>> genes = [f"g{i}" for i in range(300)]
    >>> featurizer = ScRNAFeaturizer().fit(counts, genes)
    >>> len(featurizer.genes_) < 300
    True
    >>> query = featurizer.transform(counts[:, ::-1], genes[::-1])  # reordered genes
    >>> np.allclose(query, featurizer.transform(counts, genes))
    True
    """

    def __init__(self, target_sum: float = TARGET_SUM, low_percentile: float = 1.0,
                 high_percentile: float = 99.0, min_gene_overlap: float = 0.1,
                 exclude_genes: Optional[str] = None, missing_genes: str = "zero") -> None:
        if missing_genes not in ("zero", "mean"):
            raise ValueError(f"missing_genes must be 'zero' or 'mean', got {missing_genes!r}")
        self.missing_genes = missing_genes
        self.gene_means_: Any = None  # np.ndarray of float32 once fitted
        self.target_sum = float(target_sum)
        self.low_percentile = float(low_percentile)
        self.high_percentile = float(high_percentile)
        self.min_gene_overlap = float(min_gene_overlap)
        self.exclude_genes = exclude_genes
        if exclude_genes is not None:
            re.compile(exclude_genes)  # a bad pattern fails here, not at fit time
        self.input_genes_: Any = None  # np.ndarray of str once fitted
        self.genes_: Any = None
        self.joint_ = False

    # -- fitting ---------------------------------------------------------------

    def fit(self, data: Union[CountMatrix, Matrix], genes: Optional[Names] = None, *,
            restrict_to: Optional[Names] = None,
            joint_with: Optional[Union[CountMatrix, Tuple[Matrix, Sequence[str]]]] = None,
            ) -> ScRNAFeaturizer:
        """Choose the genes from training counts (cells x genes).

        Parameters
        ----------
        data: CountMatrix or array-like
            Raw training counts, cells x genes (dense or scipy sparse).
        genes: sequence of str, optional
            Gene names, needed when ``data`` is a bare matrix.
        restrict_to: sequence of str, optional
            Use only the training genes also in this list (the genes of the
            query to be annotated), so no query gene is zero-filled. The
            statistics are still computed on the training cells only.
        joint_with: CountMatrix or (matrix, genes), optional
            The paper's mode: fit the filters on training and these cells
            together, over the genes both share (sorted, as ACTINN does).
        """
        X, train_genes, source = _as_matrix(data, genes)
        columns = np.arange(len(train_genes))
        self.joint_ = joint_with is not None
        if joint_with is not None:
            other_X, other_genes, _ = (_as_matrix(joint_with, None)
                                       if isinstance(joint_with, CountMatrix)
                                       else _as_matrix(joint_with[0], joint_with[1]))
            shared = set(other_genes)
            columns = np.flatnonzero([g in shared for g in train_genes])
            # ACTINN sorts the common genes
            columns = columns[np.argsort(train_genes[columns], kind="stable")]
            if len(columns) == 0:
                raise GeneOverlapError("training data shares no gene with the query", source)
        columns = self.input_columns(train_genes, None if joint_with is not None else
                                     restrict_to, source, columns)
        input_genes = train_genes[columns]
        parts = [take_columns(X, columns)]
        if joint_with is not None:
            parts.append(self._align(other_X, other_genes, input_genes))
        # The sums the streamed and distributed fits add up, part by part (no stacked copy).
        total, squares, n_used, n_empty = log_gene_sums(parts[0], self.target_sum)
        for part in parts[1:]:
            more = log_gene_sums(part, self.target_sum)
            total, squares = total + more[0], squares + more[1]
            n_used, n_empty = n_used + more[2], n_empty + more[3]
        if n_empty:
            warnings.warn(f"{source}: {n_empty} cells have zero counts over the model genes; "
                          "left out of the gene statistics", PreprocessingWarning,
                          stacklevel=user_stacklevel())
        return self.fit_from_sums(total, squares, n_used, input_genes, source)

    def input_columns(self, genes: Names, restrict_to: Optional[Names] = None,
                      source: str = "<memory>", columns: Optional[np.ndarray] = None
                      ) -> np.ndarray:
        """Columns of ``genes`` the model may use: shared with ``restrict_to``, not excluded.

        The in-memory, streamed and distributed fits all choose their input genes here.

        >>> f = ScRNAFeaturizer(exclude_genes="MT-")
        >>> f.input_columns(["CD3E", "mt-Co1", "Cd19"], restrict_to=["cd19", "MT-CO1"]).tolist()
        [2]
        """
        names = np.asarray([str(g) for g in genes], dtype=object)
        if columns is None:
            columns = np.arange(len(names))
        if restrict_to is not None:
            shared = {str(g).upper() for g in restrict_to}
            columns = columns[[str(g).upper() in shared for g in names[columns]]]
            if len(columns) == 0:
                raise GeneOverlapError("training data shares no gene with the query", source)
        if self.exclude_genes is not None:
            excluded = re.compile(self.exclude_genes, re.IGNORECASE)
            columns = columns[[excluded.match(g) is None for g in names[columns]]]
        return np.asarray(columns, dtype=np.int64)

    def fit_from_sums(self, total: np.ndarray, squares: np.ndarray, n_cells: int,
                      input_genes: Names, source: str = "<memory>") -> ScRNAFeaturizer:
        """Choose the genes from per-gene sums over ``n_cells`` log-normalised cells.

        :meth:`fit` computes the sums from a matrix (:func:`gene_sums`); the
        streaming and distributed fits add them up chunk by chunk or over
        processes, and all choose the genes here.

        >>> import numpy as np
        >>> f = ScRNAFeaturizer(low_percentile=0, high_percentile=100)
        >>> f.fit_from_sums(np.array([4.0, 0.0, 4.0]), np.array([10.0, 0.0, 8.0]), 2,
        ...                 ["A", "B", "C"]).genes_.tolist()
        ['A', 'C']
        """
        if n_cells == 0:
            raise InputError("every training cell has zero counts", source)
        cv = coefficient_of_variation(total, squares, n_cells)
        kept = select_genes(total, cv, self.low_percentile, self.high_percentile)
        if len(kept) < 2:
            raise InputError(f"only {len(kept)} genes pass ACTINN's filters; the training "
                             "matrix has too few expressed genes", source)
        self.input_genes_ = np.asarray(input_genes, dtype=object)
        self.genes_ = self.input_genes_[kept]
        self.gene_means_ = (np.asarray(total, np.float64)[kept] / n_cells).astype(np.float32)
        return self

    # -- applying --------------------------------------------------------------

    def _check_fitted(self) -> None:
        if self.genes_ is None or self.input_genes_ is None:
            raise RuntimeError("ScRNAFeaturizer is not fitted: call fit() first")

    @staticmethod
    def _align(X: Matrix, genes: np.ndarray, target: np.ndarray) -> Matrix:
        """Columns of ``X`` reordered to ``target``; genes absent from ``X`` are zeros."""
        position = {g: i for i, g in enumerate(genes)}
        source_cols = np.array([position.get(g, -1) for g in target], dtype=np.int64)
        present = source_cols >= 0
        if present.all():
            return take_columns(X, source_cols)
        if sp.issparse(X):
            picked = sp.csc_matrix(X[:, source_cols[present]])
            # Scatter the present columns into their target slots.
            mapping = sp.csr_matrix(
                (np.ones(present.sum()), (np.arange(present.sum()), np.flatnonzero(present))),
                shape=(present.sum(), len(target)))
            return sp.csr_matrix(picked @ mapping, dtype=X.dtype)
        out = np.zeros((X.shape[0], len(target)), dtype=X.dtype)
        out[:, present] = X[:, source_cols[present]]
        return out

    def present_genes(self, genes: Names) -> np.ndarray:
        """Which model genes (``genes_``, in order) a query with these gene names holds."""
        self._check_fitted()
        query = {str(g).upper() for g in genes}
        return np.array([g in query for g in self.genes_], dtype=bool)

    def overlap(self, genes: Names) -> GeneOverlap:
        """Count how many model genes a query with these gene names holds."""
        self._check_fitted()
        assert self.genes_ is not None and self.input_genes_ is not None
        query = {str(g).upper() for g in genes}
        return GeneOverlap(
            n_model_genes=len(self.genes_),
            n_found=int(self.present_genes(genes).sum()),
            n_input_genes=len(self.input_genes_),
            n_input_found=sum(g in query for g in self.input_genes_),
            n_query_genes=len(query),
            missing_genes=self.missing_genes if self.gene_means_ is not None else "zero",
        )

    def check_overlap(self, genes: Names, source: str = "<query>",
                      cells: Optional[Names] = None) -> GeneOverlap:
        """Raise :class:`GeneOverlapError` below ``min_gene_overlap``; warn below 50%.

        With the query's ``cells``, a matrix whose cell ids are the model's
        genes is reported as transposed.
        """
        report = self.overlap(genes)
        if report.fraction < self.min_gene_overlap or report.n_found == 0:
            model_ensembl = _looks_ensembl(self.genes_)
            query_ensembl = _looks_ensembl(genes)
            hint = ""
            if cells is not None and self.overlap(cells).n_found > report.n_found:
                from deepchem_actinn.io import transposed_hint
                hint = f"; its cell ids match the model's genes: {transposed_hint(source)}"
            elif model_ensembl != query_ensembl:
                kinds = ("Ensembl ids", "gene symbols")
                hint = (f"; the query has {kinds[0 if query_ensembl else 1]} but the model "
                        f"{kinds[0 if model_ensembl else 1]}")
            elif report.n_found > 0:
                hint = "; retrain restricted to the query's genes (train --query)"
            raise GeneOverlapError(
                f"too few genes shared with the model: {report.summary()}{hint}", source)
        if report.fraction < 0.5:
            warnings.warn(f"{source}: {report.summary()}; retrain restricted to the query's "
                          "genes (train --query) for better calls", PreprocessingWarning,
                          stacklevel=user_stacklevel())
        return report

    def transform(self, data: Union[CountMatrix, Matrix], genes: Optional[Names] = None,
                  *, sparse_output: bool = False) -> Matrix:
        """Normalise raw counts and return the model's genes, cells x genes float32.

        Query genes are aligned to the fitted ones: reordered, missing genes
        set to zero, extra genes dropped. Library sizes are summed over the
        fitted input genes only, so extra query genes do not shift them.
        """
        self._check_fitted()
        assert self.genes_ is not None and self.input_genes_ is not None
        X, query_genes, source = _as_matrix(data, genes)
        self.check_overlap(query_genes, source,
                           cells=data.cells if isinstance(data, CountMatrix) else None)
        position = {g: i for i, g in enumerate(query_genes)}
        input_cols = np.array([position.get(g, -1) for g in self.input_genes_], dtype=np.int64)
        present_cols = input_cols[input_cols >= 0]
        library = np.asarray(take_columns(X, present_cols).sum(axis=1),
                             dtype=np.float64).ravel()
        model_counts = self._align(X, query_genes, self.genes_)
        out = self._fill_missing(normalize_log2(model_counts, self.target_sum, library),
                                 np.array([g not in position for g in self.genes_], dtype=bool))
        if sp.issparse(out):
            return out if sparse_output else np.asarray(out.toarray(), dtype=np.float32)
        # Cells are rows and mini-batches gather rows: C order. (Selecting columns by
        # index hands back a column-major array, whose rows are strided: a dense epoch
        # then ran ~2x slower.)
        return np.ascontiguousarray(out, dtype=np.float32)

    def _fill_missing(self, out: Matrix, missing: np.ndarray) -> Matrix:
        """Set the model genes a query lacks to their training means (``missing_genes="mean"``).

        Zero, ACTINN's choice, reads as "not expressed in any cell" and moves every
        call the same way; the mean is what the model saw on average.
        """
        if self.missing_genes != "mean" or self.gene_means_ is None or not missing.any():
            return out
        columns = np.flatnonzero(missing)
        values = np.asarray(self.gene_means_, np.float32)[columns]
        if not sp.issparse(out):
            out = np.array(out, dtype=np.float32)
            out[:, columns] = values
            return out
        n = out.shape[0]
        fill = sp.csr_matrix((np.tile(values, n), (np.repeat(np.arange(n), len(columns)),
                                                   np.tile(columns, n))),
                             shape=out.shape, dtype=np.float32)
        return sp.csr_matrix(out + fill, dtype=np.float32)  # the columns were all zero

    # -- DeepChem's featurizer interface (duck-typed: importing deepchem here would slow
    # down every `deepchem-actinn predict` start) --------------------------------------

    def featurize(self, datapoints: Any, log_every_n: int = 1000, **kwargs: Any) -> np.ndarray:
        """DeepChem's ``Featurizer.featurize``: the fitted :meth:`transform` of raw counts.

        What DeepChem code calls (``featurizer.featurize(inputs)``), after :meth:`fit`.

        Parameters
        ----------
        datapoints: CountMatrix, path, AnnData, DataFrame, array or list
            Raw counts: a :class:`~deepchem_actinn.io.CountMatrix`, a count file
            in any format :func:`~deepchem_actinn.io.read_counts` reads, an
            ``AnnData``, a genes x cells ``DataFrame``, a cells x genes array
            (dense or scipy sparse) with ``genes=``, or a list of these (their
            cells stacked in order).
        log_every_n: int
            Accepted for DeepChem's signature; the cells are featurised as one matrix.
        **kwargs:
            ``genes`` for a bare array; otherwise how to read a file or an
            ``AnnData`` (``key``, ``format``, ``layer``, ``gene_column``...).

        Returns
        -------
        np.ndarray
            float32, cells x :attr:`genes_`.

        Examples
        --------
        >>> import numpy as np
        >>> counts = np.random.default_rng(0).poisson(2.0, size=(20, 100))
        >>> genes = [f"g{i}" for i in range(100)]
        >>> featurizer = ScRNAFeaturizer().fit(counts, genes)
        >>> np.array_equal(featurizer(counts, genes=genes), featurizer.transform(counts, genes))
        True
        >>> ScRNAFeaturizer().featurize(counts, genes=genes)
        Traceback (most recent call last):
        ...
        RuntimeError: ScRNAFeaturizer is not fitted: call fit() first
        """
        self._check_fitted()  # before reading any file
        genes = kwargs.pop("genes", None)
        if genes is not None:
            if kwargs:
                raise TypeError(f"featurize() takes no {', '.join(sorted(kwargs))} with genes= "
                                "(those read files)")
            matrix = datapoints if sp.issparse(datapoints) else np.asarray(datapoints)
            return np.asarray(self.transform(matrix, genes))
        if isinstance(datapoints, (list, tuple)):
            parts = [self.featurize(item, log_every_n, **kwargs) for item in datapoints]
            return (np.concatenate(parts) if parts
                    else np.zeros((0, len(self.genes_)), np.float32))
        if isinstance(datapoints, np.ndarray) or sp.issparse(datapoints):
            _as_matrix(datapoints, None)  # raises: a bare matrix needs its gene names
        return np.asarray(self.transform(as_count_matrix(datapoints, **kwargs)))

    def __call__(self, datapoints: Any, **kwargs: Any) -> np.ndarray:
        """:meth:`featurize`, as DeepChem featurizers are called."""
        return self.featurize(datapoints, **kwargs)

    def fit_transform(self, data: Union[CountMatrix, Matrix],
                      genes: Optional[Names] = None, **fit_kwargs: Any) -> Matrix:
        """:meth:`fit` then :meth:`transform` on the same cells."""
        return self.fit(data, genes, **fit_kwargs).transform(data, genes)

    # -- persistence -----------------------------------------------------------

    def to_dict(self) -> Dict[str, Any]:
        """Plain-JSON state: settings and gene lists."""
        self._check_fitted()
        assert self.genes_ is not None and self.input_genes_ is not None
        return {
            "target_sum": self.target_sum,
            "low_percentile": self.low_percentile,
            "high_percentile": self.high_percentile,
            "min_gene_overlap": self.min_gene_overlap,
            "exclude_genes": self.exclude_genes,
            "missing_genes": self.missing_genes,
            "joint": self.joint_,
            "input_genes": [str(g) for g in self.input_genes_],
            "genes": [str(g) for g in self.genes_],
            **({} if self.gene_means_ is None else
               {"gene_means": [float(v) for v in self.gene_means_]}),
        }

    @classmethod
    def from_dict(cls, state: Dict[str, Any]) -> ScRNAFeaturizer:
        """Rebuild a fitted featurizer from :meth:`to_dict` output."""
        exclude = state.get("exclude_genes")  # absent from files saved before it existed
        featurizer = cls(float(state["target_sum"]), float(state["low_percentile"]),
                         float(state["high_percentile"]), float(state["min_gene_overlap"]),
                         None if exclude is None else str(exclude),
                         str(state.get("missing_genes", "zero")))
        if state.get("gene_means") is not None:
            featurizer.gene_means_ = np.asarray(state["gene_means"], dtype=np.float32)
            if len(featurizer.gene_means_) != len(state["genes"]):
                raise ValueError("featurizer gene_means do not match its genes")
        featurizer.joint_ = bool(state.get("joint", False))
        featurizer.input_genes_ = np.asarray([str(g) for g in state["input_genes"]], dtype=object)
        featurizer.genes_ = np.asarray([str(g) for g in state["genes"]], dtype=object)
        if not set(featurizer.genes_) <= set(featurizer.input_genes_):
            raise ValueError("featurizer genes are not a subset of its input genes")
        return featurizer


def _looks_ensembl(genes: Optional[Names]) -> bool:
    """True when most names look like Ensembl gene ids (ENSG..., ENSMUSG...)."""
    if genes is None or len(genes) == 0:
        return False
    sample = [str(g).upper() for g in list(genes)[:500]]
    return float(np.mean([g.startswith("ENS") and any(c.isdigit() for c in g)
                          for g in sample])) > 0.5


# -- streamed fitting: one chunk of a file at a time ------------------------------------


@dataclass
class StreamStatistics:
    """What pass 1 saw: cells used, cells skipped, classes found."""

    n_cells: int
    n_used: int
    n_unlabelled: int
    n_empty: int
    classes: np.ndarray
    seconds: float


def fit_featurizer_streaming(source: Union[PathLike, ChunkedCounts],
                             labels: Optional[Union[PathLike, pd.Series]] = None, *,
                             restrict_to: Optional[Sequence[str]] = None,
                             featurizer: Optional[ScRNAFeaturizer] = None,
                             chunk_cells: int = CHUNK_CELLS,
                             reduce: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                             progress: Progress = False
                             ) -> Tuple[ScRNAFeaturizer, StreamStatistics]:
    """Pass 1: fit ACTINN's gene filters from per-gene sums, one chunk at a time.

    With ``labels``, only labelled cells count (as in memory, where cells are
    joined to their labels first). Cells with zero counts are left out.
    ``reduce`` sums ``[totals, squares, n_used, n_empty]`` over the processes of a
    distributed run (each having read its own part), so all fit the same genes.
    ``progress``: a bar of the file's cells ("gene statistics").

    Returns
    -------
    (ScRNAFeaturizer, StreamStatistics)
        A fitted featurizer, the same as ``ScRNAFeaturizer().fit`` on the
        same cells in memory, and what was counted.
    """
    started = time.perf_counter()
    counts = source if isinstance(source, ChunkedCounts) else ChunkedCounts(source)
    featurizer = featurizer or ScRNAFeaturizer()
    lookup = _label_lookup(labels)
    columns = featurizer.input_columns(counts.genes, restrict_to, counts.path)
    total = np.zeros(len(columns), np.float64)
    squares = np.zeros(len(columns), np.float64)
    n_used = n_unlabelled = n_empty = 0
    classes: set = set()
    for _, X, ids in counts.chunks(chunk_cells, progress, "gene statistics"):
        if lookup is not None:
            names = lookup.reindex(ids)
            known = names.notna().to_numpy()
            n_unlabelled += int((~known).sum())
            classes.update(names[known].tolist())
            X = X[np.flatnonzero(known)]
        X_in = X[:, columns] if len(columns) != X.shape[1] else X
        # The float32 values fit() sees, summed in float64 as it sums them.
        chunk_total, chunk_squares, used, empty = log_gene_sums(X_in, featurizer.target_sum)
        total += chunk_total
        squares += chunk_squares
        n_used += used
        n_empty += empty
    if reduce is not None:
        sums = reduce(np.concatenate([total, squares, [n_used, n_empty]]))
        total, squares = sums[:len(columns)], sums[len(columns):-2]
        n_used, n_empty = int(sums[-2]), int(sums[-1])
    if n_used == 0:
        raise InputError("no labelled cell with non-zero counts" if lookup is not None
                         else "every cell has zero counts", counts.path)
    featurizer.fit_from_sums(total, squares, n_used, counts.genes[columns], counts.path)
    featurizer.joint_ = False
    stats = StreamStatistics(counts.n_cells, n_used, n_unlabelled, n_empty,
                             np.asarray(sorted(classes), dtype=object),
                             time.perf_counter() - started)
    return featurizer, stats


def chunk_transform(featurizer: ScRNAFeaturizer, genes: np.ndarray) -> Any:
    """``featurizer.transform`` for many chunks with the same genes, mapping genes once.

    Gives the same float32 values as ``transform(X, genes, sparse_output=True)``
    (same float64 products and log) without its per-call gene lookups and
    copies; falls back to ``transform`` when a model gene is missing.
    """
    position = {g: i for i, g in enumerate(genes)}
    model_cols = np.array([position.get(g, -1) for g in featurizer.genes_], dtype=np.int64)
    input_cols = np.array([position.get(g, -1) for g in featurizer.input_genes_],
                          dtype=np.int64)
    if (model_cols < 0).any() or (input_cols < 0).any():
        return lambda X: featurizer.transform(X, genes, sparse_output=True)
    all_inputs = len(input_cols) == len(genes)  # input genes are every file gene
    target = featurizer.target_sum

    def transform(X: sp.csr_matrix) -> sp.csr_matrix:
        library = np.asarray((X if all_inputs else X[:, input_cols]).sum(axis=1),
                             dtype=np.float64).ravel()
        with np.errstate(divide="ignore"):
            scale = np.where(library > 0, target / np.maximum(library, 1e-300), 0.0)
        out = sp.csr_matrix(X[:, model_cols])
        values = out.data.astype(np.float64) * np.repeat(scale, np.diff(out.indptr))
        out.data = np.log2(values + 1.0).astype(np.float32)
        return out

    return transform
