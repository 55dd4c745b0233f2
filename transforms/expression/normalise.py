"""Count normalisation on a dense block of one study: one row per feature, one column per sample.

Everything here is pure numpy on a float64 ``counts`` block (genes x samples, every feature of the study including
unmapped ones) and returns arrays aligned to its rows or columns; the caller keeps the row and column labels and
writes results back as long rows. The factors equal edgeR 3.40 (``calcNormFactors(method="TMM")``, ``cpm``) and
DESeq2 1.38 (``estimateSizeFactors``, ``vst``) so that numbers agree with the R packages analysts check against.

Studies too big for one block are processed in blocks of sample columns, PyDESeq2-style: a *fit* pass builds the
per-gene reference from all blocks, then each block is transformed on its own.

- Size factors: ``log_geomeans = fit_log_geomeans(blocks)``, then ``size_factors_from_reference(block,
  log_geomeans)`` per block (by the same compiled module as TMM for large blocks of whole counts: the same bits).
- TMM: pass 1 gives ``library_sizes(block)``, ``expressed |= (block > 0).any(axis=1)`` and
  ``np.sqrt(block).sum(axis=0)``; pass 2 gives ``upper_quartiles(block, library_size=..., expressed=expressed)``;
  ``tmm_reference(...)`` picks the reference column; pass 3 gives ``tmm_factors_against(block, reference, ...)``
  (a compiled per-sample kernel, ``_tmm_kernel``, for blocks of 2^24 counts or more; numpy below; the upper
  quartiles of such blocks by the same module).
  The geometric-mean scaling (``geometric_mean_scaled``) is applied once to the factors of *all* samples.
- log2 CPM: pass the study-wide ``mean_library_size`` (mean of library size x factor over all samples).
- z-scores: ``row_moments(blocks)`` then ``zscore_rows(block, moments=...)``.
- VST: per-gene base means over all blocks, ``vst_genes`` picks the rows, ``fit_vst_trend`` on those rows of all
  samples, then ``vst_transform`` per block.
"""

from __future__ import annotations

import importlib
import itertools
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    # The VST functions import the DESeq2 module when called: it imports scipy's optimize, special and stats (about
    # a second of every process), which the sample factors do not need.
    from transforms.expression.deseq2 import DispersionTrend

# Elements per internal chunk of sample columns (~4 MB per float64 temporary): a chunk's samples-major copy (and the
# numpy passes' temporaries) stay in the processor cache: numpy's passes ran about twice as fast as with 32 MB chunks.
_CHUNK_ELEMENTS = 1 << 19
_THREADS = os.cpu_count() or 1
# Blocks of fewer values take TMM in numpy (_tmm_samples): the compiled kernel's first call in a process costs ~1 CPU
# s (numba's import ~0.4 s, loading the kernel from its cache ~0.7 s), what numpy takes for ~15 M values
# (bench/README.md, "Session 15: TMM").
_TMM_KERNEL_MIN_VALUES = 1 << 24
# Size factors take the same kernels' module when TMM has loaded it, or alone from this many values (their numpy path
# costs ~18 ns a value, the compiled one ~7: the ~0.7 CPU s of numba's import and first call pay from ~60 M).
_SIZE_FACTOR_KERNEL_MIN_VALUES = 1 << 26
_TILE = 256
_LN_MILLION = np.log(1e6)
_LN_TWO = np.log(2.0)
# Order statistics of each sample by numpy's sort where it has its AVX-512 sort (as fast as one partition there,
# bench/README_factors.md), else by partitions (one partition takes ~45 % of the time of the AVX2 / scalar sort).
_SORT_SELECTS = bool(importlib.import_module("numpy._core._multiarray_umath").__cpu_features__.get("AVX512_SKX"))


def _as_counts(counts: np.ndarray) -> np.ndarray:
    """Validate a counts block (2-D, finite, non-negative) and return it as float64 without copying if possible."""
    return _validated(counts)[0]


def _validated(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_as_counts` and the column sums it checks (the library sizes)."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2:
        raise ValueError(f"The count matrix must be 2-D (genes x samples), got {counts.ndim} dimension(s).")
    sums = counts.sum(axis=0)
    if np.isnan(sums).any():
        raise ValueError("NaNs are not allowed in the count matrix.")
    if np.isinf(sums).any():
        raise ValueError("Infinite values are not allowed in the count matrix.")
    if counts.size and counts.min() < 0:
        raise ValueError("The count matrix should only contain non-negative values.")
    return counts, sums


def _check_no_empty_samples(library_size: np.ndarray) -> None:
    empty = np.flatnonzero(~(library_size > 0))
    if empty.size:
        raise ValueError(
            f"Sample column(s) {empty.tolist()} have no counts (all-zero samples); remove them before normalising."
        )


def _column_chunks(n_rows: int, n_columns: int) -> Iterator[slice]:
    width = max(1, _CHUNK_ELEMENTS // max(n_rows, 1))
    for start in range(0, n_columns, width):
        yield slice(start, min(start + width, n_columns))


def _map_column_chunks(function: Callable[[slice], np.ndarray], n_rows: int, n_columns: int) -> np.ndarray:
    """Apply ``function`` to chunks of columns, one thread per core (numpy releases the GIL), and join the results."""
    chunks = list(_column_chunks(n_rows, n_columns))
    out = np.empty(n_columns)
    with ThreadPoolExecutor(max_workers=_THREADS) as pool:
        for cols, values in zip(chunks, pool.map(function, chunks), strict=True):
            out[cols] = values
    return out


def _samples_major(counts: np.ndarray, cols: slice, rows: np.ndarray | None = None) -> np.ndarray:
    """A samples x genes copy of columns ``cols`` (and ``rows``, sorted indices, if given) of a genes x samples block.

    Per-sample sorts and sums then run along contiguous memory (numpy's SIMD sort), and the chunk's passes may
    overwrite it. Copied in tiles of genes: four times faster than numpy's transposing copy of a narrow column chunk;
    ``rows`` are picked from the copy of all rows afterwards (that and the copy take ~70 % of the time of a tiled
    copy of the rows picked by fancy indexing).
    """
    out = np.empty((cols.stop - cols.start, counts.shape[0]))
    for start in range(0, counts.shape[0], _TILE):
        tile = slice(start, start + _TILE)
        out[:, tile] = counts[tile, cols].T
    if rows is None:
        return out
    picked = np.zeros(counts.shape[0], dtype=bool)
    picked[rows] = True
    return np.compress(picked, out, axis=1)


def library_sizes(counts: np.ndarray) -> np.ndarray:
    """Library size of each sample: the column sums of ``counts`` (one value per sample)."""
    return _validated(counts)[1]


def geometric_mean_scaled(factors: np.ndarray) -> np.ndarray:
    """Scale factors to geometric mean 1, as edgeR does after computing TMM factors of all samples."""
    factors = np.asarray(factors, dtype=np.float64)
    return factors / np.exp(np.mean(np.log(factors)))


# ---------------------------------------------------------------------------------------------- DESeq2 size factors


_LOG_TABLE_LIMIT = 1 << 22  # counts up to 4 M take their log from a table (32 MB at most)


@lru_cache(maxsize=2)
def _log_table(size: int) -> np.ndarray:
    """``np.log(0 .. size - 1)``, read-only."""
    with np.errstate(divide="ignore"):
        table = np.log(np.arange(size, dtype=np.float64))
    table.flags.writeable = False
    return table


def _log_table_for(counts: np.ndarray) -> np.ndarray | None:
    """The table of logs covering every count of ``counts`` (validated), or None when the counts are too large."""
    top = float(counts.max()) if counts.size else 0.0
    if top >= _LOG_TABLE_LIMIT:
        return None
    return _log_table(1 << max(int(top).bit_length(), 10))


def _log_counts(values: np.ndarray, table: np.ndarray | None) -> np.ndarray:
    """``np.log(values)`` into ``values``: whole counts look their log up in ``table`` (a gather instead of a
    logarithm per value: the same numbers, about twice as fast), others (fractional estimates) are computed.
    """
    if table is not None:
        whole = values.astype(np.intp)
        if np.array_equal(whole, values):
            return np.take(table, whole, out=values)
    with np.errstate(divide="ignore"):
        return np.log(values, out=values)


_ROW_CHUNK_CELLS = 1 << 20
"""Cells (8 MiB of float64) of the rows whose logs :func:`_log_row_sums` holds at a time."""


def _log_row_sums(block: np.ndarray, table: np.ndarray | None = None) -> np.ndarray:
    """Per-row sums of ``log(block)`` (:func:`row_sums_by_chunks`: no copy of the whole block and its integer twin;
    at 20,000 x 1,000 those were two fresh 160 MB arrays, whose first touch cost more than the logs).
    """
    return row_sums_by_chunks(block, lambda rows, _: _log_counts(np.array(rows, dtype=np.float64), table))


def row_sums_by_chunks(block: np.ndarray, transform: Callable[[np.ndarray, slice], np.ndarray]) -> np.ndarray:
    """``transform(block, slice(None)).sum(axis=1)`` for a cell-by-cell ``transform`` that keeps the layout of its
    input (numpy arithmetic does), computed on ~``_ROW_CHUNK_CELLS`` cells of whole rows at a time: ``transform``
    gets the rows and their slice of the block (for per-row operands).

    The same bits as on the whole block: a row's cells are added in the same order, in the same layout, whatever
    rows are beside it; chunks are of even size with two rows or more, never one row alone, which numpy would add
    pairwise. ``transform`` may overwrite a copy it made, never ``block``.
    """
    n_rows, n_cols = block.shape
    out = np.empty(n_rows)
    chunks = max(1, min(-(-n_rows * n_cols // _ROW_CHUNK_CELLS), n_rows // 2))
    bounds = np.linspace(0, n_rows, chunks + 1).round().astype(np.intp)
    for start, stop in itertools.pairwise(bounds):
        out[start:stop] = transform(block[start:stop], slice(start, stop)).sum(axis=1)
    return out


def fit_log_geomeans(blocks: Iterable[np.ndarray]) -> np.ndarray:
    """Per-gene mean of log counts over all samples of all blocks (the DESeq2 pseudo-reference sample).

    Genes with a zero in any sample get ``-inf`` and are left out of the median of ratios, as in DESeq2.
    """
    total: np.ndarray | None = None
    n_samples = 0
    for block in blocks:
        block = _as_counts(block)
        part = _log_row_sums_by_columns(block, _log_table_for(block), block.shape[1])[0]
        total = part if total is None else total + part
        n_samples += block.shape[1]
    if total is None or n_samples == 0:
        raise ValueError("No sample columns were given to fit the log geometric means.")
    return total / n_samples


def _median_of_ratios(
    block: np.ndarray, log_geomeans: np.ndarray, table: np.ndarray | None, library_size: np.ndarray,
    *, whole: bool | None = None,
) -> np.ndarray:  # fmt: skip
    """Size factors of a validated block (column sums ``library_size``) against ``log_geomeans`` (shape checked);
    ``whole``: what the kernel's log sums found (:func:`_log_row_sums_by_columns`): every count whole and inside
    ``table`` (True), a count that is not (False: the kernel would not take the medians either), or nothing (None).
    """
    _check_no_empty_samples(library_size)
    usable = np.isfinite(log_geomeans)
    if not usable.any():
        raise ValueError(
            "every gene contains at least one zero, cannot compute log geometric means "
            "(median-of-ratios size factors need at least one gene counted in every sample)"
        )
    rows = np.flatnonzero(usable)
    reference = log_geomeans[rows]
    n = rows.size
    half = n // 2

    def chunk(cols: slice) -> np.ndarray:
        ratios = _log_counts(_samples_major(block, cols, rows), table)
        ratios -= reference
        # The middle order statistic(s): without numpy's AVX-512 sort, a partition at one place is ~2x faster than
        # the sort of these rows (and than a partition at two places); the lower middle of an even count is then the
        # largest value left of it.
        if _SORT_SELECTS:
            ratios.sort(axis=1)
            median = ratios[:, half] if n % 2 else (ratios[:, half - 1] + ratios[:, half]) / 2
        else:
            ratios.partition(half, axis=1)
            median = ratios[:, half] if n % 2 else (ratios[:, :half].max(axis=1) + ratios[:, half]) / 2
        return np.exp(median)

    if table is None or whole is False or not _size_factor_kernel_pays(block):
        return _map_column_chunks(chunk, block.shape[0], block.shape[1])
    from transforms.expression._tmm_kernel import median_log_ratios

    def compiled_chunk(cols: slice) -> np.ndarray:
        median = np.empty(cols.stop - cols.start)
        if median_log_ratios(block, rows, cols.start, cols.stop, reference, table, bool(whole), median):
            return np.exp(median)
        return chunk(cols)  # a count that is not whole (np.log, not the table)

    return _map_column_chunks(compiled_chunk, block.shape[0], block.shape[1])


def _size_factor_kernel_pays(block: np.ndarray) -> bool:
    """Whether the size factors of ``block`` take the compiled kernels (:mod:`._tmm_kernel`): the same bits as the
    numpy path, at about half of its CPU for whole counts, but numba's import and first call cost ~0.7 CPU s a
    process. So blocks of ``_TMM_KERNEL_MIN_VALUES`` or more when the process has loaded the kernels already (TMM
    took them), or of ``_SIZE_FACTOR_KERNEL_MIN_VALUES`` or more alone; not when a sample of its counts (~64 x 64,
    microseconds) has one that is not whole (RSEM / Salmon expected counts): the kernels would find it and leave the
    block to numpy after a pass of their own, and numba need not be loaded for it.
    """
    if block.size < _TMM_KERNEL_MIN_VALUES or block.shape[0] < 2:
        return False
    sample = block[:: max(1, block.shape[0] // 64), :: max(1, block.shape[1] // 64)]
    if not np.array_equal(np.floor(sample), sample):
        return False
    loaded = "transforms.expression._tmm_kernel" in sys.modules
    return (loaded or block.size >= _SIZE_FACTOR_KERNEL_MIN_VALUES) and _tmm_kernel_cached()


def size_factors_from_reference(block: np.ndarray, log_geomeans: np.ndarray) -> np.ndarray:
    """DESeq2 median-of-ratios size factors of the samples in ``block`` against fitted ``log_geomeans``.

    One value per sample of the block: ``exp(median(log(count) - log_geomean))`` over the genes with a finite log
    geometric mean (counted in every sample of the study).
    """
    block, sums = _validated(block)
    log_geomeans = np.asarray(log_geomeans, dtype=np.float64)
    if log_geomeans.shape != (block.shape[0],):
        raise ValueError(f"log_geomeans has shape {log_geomeans.shape}, expected ({block.shape[0]},).")
    return _median_of_ratios(block, log_geomeans, _log_table_for(block), sums)


def size_factors(counts: np.ndarray) -> np.ndarray:
    """DESeq2 ``estimateSizeFactors`` (median of ratios) of every sample in ``counts``."""
    counts, sums = _validated(counts)
    table = _log_table_for(counts)
    width = max(1, _CHUNK_ELEMENTS // max(counts.shape[0], 1))  # the columns of a _column_chunks chunk
    log_sums, whole = _log_row_sums_by_columns(counts, table, width)
    return _median_of_ratios(counts, log_sums / counts.shape[1], table, sums, whole=whole)


def _log_row_sums_by_columns(
    counts: np.ndarray, table: np.ndarray | None, width: int
) -> tuple[np.ndarray, bool | None]:
    """Per-row sums of ``log(counts)`` (validated): :func:`_log_row_sums` of each chunk of ``width`` columns, one
    thread per core, then the chunks' sums added in order; by the compiled kernel (the same bits) when it pays. And
    what the kernel found: every count whole and inside ``table`` (True: it computed the sums), a count that is not
    (False), or None when it did not run.
    """
    n_rows, n_cols = counts.shape
    if table is not None and _size_factor_kernel_pays(counts):
        from transforms.expression._tmm_kernel import log_row_sums

        out = np.empty(n_rows)
        bounds = np.linspace(0, n_rows, _THREADS + 1).round().astype(np.intp)
        row_parts = [slice(int(start), int(stop)) for start, stop in itertools.pairwise(bounds)]
        with ThreadPoolExecutor(max_workers=_THREADS) as pool:
            if all(pool.map(lambda rows: log_row_sums(counts[rows], width, table, out[rows]), row_parts)):
                return out, True
        whole: bool | None = False
    else:
        whole = None
    if width >= n_cols:
        return _log_row_sums(counts, table), whole
    chunks = [counts[:, start:start + width] for start in range(0, n_cols, width)]
    with ThreadPoolExecutor(max_workers=_THREADS) as pool:
        parts = list(pool.map(lambda chunk: _log_row_sums(chunk, table), chunks))
    return np.sum(parts, axis=0), whole


# ---------------------------------------------------------------------------------------------------- edgeR TMM


def _expressed_rows(counts: np.ndarray) -> np.ndarray:
    """Rows of a validated block (non-negative) with a positive count: ``(counts > 0).any(axis=1)`` without its
    block-sized boolean temporary (whose first touch cost 0.18 CPU s at 20,000 x 5,000, the row maxima 0.05).
    """
    return np.max(counts, axis=1, initial=0.0) > 0


def upper_quartiles(counts: np.ndarray, *, library_size: np.ndarray, expressed: np.ndarray | None = None) -> np.ndarray:
    """Upper quartile of each sample's counts divided by its library size (edgeR's ``.calcFactorQuantile``).

    ``expressed`` marks the rows with a positive count in any sample of the *study* (edgeR drops all-zero rows
    first); by default it is computed from ``counts``, which is right when ``counts`` holds every sample.
    """
    counts = _as_counts(counts)
    expressed = np.asarray(_expressed_rows(counts) if expressed is None else expressed, dtype=bool)
    if expressed.any() and not expressed.all() and counts[~expressed].any():
        raise ValueError("expressed must mark every row with a positive count")
    return _upper_quartiles(counts, np.asarray(library_size, dtype=np.float64), expressed)


def _upper_quartiles(counts: np.ndarray, library_size: np.ndarray, expressed: np.ndarray) -> np.ndarray:
    """:func:`upper_quartiles` of a validated block, ``expressed`` checked."""
    n = int(np.count_nonzero(expressed))
    if n == 0:
        return np.zeros(counts.shape[1])
    skipped = counts.shape[0] - n
    # The rows left out are zeros, the smallest counts: in each sorted sample they fill the first `skipped` places.
    # R quantile type 7, written as R computes it: (1 - h) * x[lo] + h * x[hi] only where x[hi] != x[lo].
    index = 1 + (n - 1) * 0.75
    lo = int(np.floor(index))  # x[hi] with hi = ceil(index) is x[lo] or the next value
    h = index - lo

    place = skipped + lo - 1  # 0-based place of x[lo] in each sample's sorted counts; x[hi] is the next one

    def chunk(cols: slice) -> np.ndarray:
        # Without numpy's AVX-512 sort: a partition at one place, then the smallest value right of it (x[hi]).
        ordered = _samples_major(counts, cols)
        if _SORT_SELECTS:
            ordered.sort(axis=1)
        else:
            ordered.partition(place, axis=1)
        q = ordered[:, place]
        if index == lo:
            return q
        q_hi = ordered[:, place + 1] if _SORT_SELECTS else ordered[:, place + 1:].min(axis=1)
        return np.where(q_hi != q, (1 - h) * q + h * q_hi, q)

    if counts.size >= _TMM_KERNEL_MIN_VALUES and _tmm_kernel_cached():
        from transforms.expression._tmm_kernel import upper_quartile_columns

        numpy_chunk = chunk

        def chunk(cols: slice) -> np.ndarray:
            out = np.empty(cols.stop - cols.start)
            if upper_quartile_columns(counts, cols.start, cols.stop, place, h, index != lo, out):
                return out
            return numpy_chunk(cols)

    return _map_column_chunks(chunk, counts.shape[0], counts.shape[1]) / library_size


def tmm_reference(upper_quartiles: np.ndarray, *, sqrt_sums: np.ndarray | Callable[[], np.ndarray]) -> int:
    """Index of edgeR's TMM reference sample: upper-quartile factor closest to their mean.

    When the median upper quartile is (near) zero, edgeR 3.40 takes instead the sample with the largest sum of
    square-root counts (``sqrt_sums``, one value per sample, or a function computing them only in that case).
    """
    f75 = np.asarray(upper_quartiles, dtype=np.float64)
    if np.median(f75) < 1e-20:
        return int(np.argmax(sqrt_sums() if callable(sqrt_sums) else sqrt_sums))
    return int(np.argmin(np.abs(f75 - np.mean(f75))))


def tmm_factors_against(
    counts: np.ndarray,
    reference: np.ndarray,
    *,
    library_size: np.ndarray,
    reference_library_size: float,
    logratio_trim: float = 0.3,
    sum_trim: float = 0.05,
    do_weighting: bool = True,
    a_cutoff: float = -1e10,
) -> np.ndarray:
    """Unscaled TMM factor of each sample in ``counts`` against the ``reference`` sample's counts (edgeR's
    ``.calcFactorTMM``), vectorised across samples.

    One value per sample; apply :func:`geometric_mean_scaled` to the factors of all samples of the study.
    """
    return _tmm_factors_against(
        _as_counts(counts),
        np.asarray(reference, dtype=np.float64),
        np.asarray(library_size, dtype=np.float64),
        float(reference_library_size),
        logratio_trim=logratio_trim,
        sum_trim=sum_trim,
        do_weighting=do_weighting,
        a_cutoff=a_cutoff,
    )


def _tmm_factors_against(
    counts: np.ndarray,
    reference: np.ndarray,
    library_size: np.ndarray,
    n_ref: float,
    *,
    logratio_trim: float,
    sum_trim: float,
    do_weighting: bool,
    a_cutoff: float,
) -> np.ndarray:
    """:func:`tmm_factors_against` of a validated block."""
    # edgeR keeps ranks floor(n * trim) + 1 .. n - floor(n * trim): a negative trim keeps every rank, as 0 does (the
    # numpy path indexed out of its sort, the kernel returned 1)
    logratio_trim, sum_trim = max(logratio_trim, 0.0), max(sum_trim, 0.0)
    # Genes the reference does not count have M = A = -inf in every sample: edgeR leaves them out, and so do we
    # before gathering the samples.
    rows = np.flatnonzero(reference > 0)
    if rows.size == 0:
        return np.ones(counts.shape[1])
    counted = reference[rows]
    p = counted / n_ref
    log_p, ref_variance = np.log2(p), (n_ref - counted) / n_ref / counted
    if counts.size < _TMM_KERNEL_MIN_VALUES or not _tmm_kernel_cached():

        def numpy_chunk(cols: slice) -> np.ndarray:
            obs = _samples_major(counts, cols, None if rows.size == counts.shape[0] else rows)
            return _tmm_samples(obs, library_size[cols], p, log_p, ref_variance, logratio_trim=logratio_trim,
                                sum_trim=sum_trim, do_weighting=do_weighting, a_cutoff=a_cutoff)

        return _map_column_chunks(numpy_chunk, counts.shape[0], counts.shape[1])
    from transforms.expression._tmm_kernel import _INT_TABLE, tmm_columns

    whole = np.arange(_INT_TABLE, dtype=np.float64)
    with np.errstate(divide="ignore"):
        log2_int, inv_int = np.log2(whole), 1.0 / whole

    def chunk(cols: slice) -> np.ndarray:
        out = np.empty(cols.stop - cols.start)
        tmm_columns(
            counts, rows, cols.start, cols.stop, library_size, p, log_p, ref_variance,
            float(logratio_trim), float(sum_trim), bool(do_weighting), float(a_cutoff), counted, log2_int, inv_int,
            out,
        )  # fmt: skip
        return out

    return _map_column_chunks(chunk, counts.shape[0], counts.shape[1])


def _tmm_kernel_cached() -> bool:
    """Whether the compiled kernel loads from numba's disk cache (else each process would compile it, ~15 CPU s).

    Imported here, not with the module: numba's import costs ~0.4 CPU s that processes without TMM do not pay.
    """
    from transforms.expression import _tmm_kernel

    return _tmm_kernel.CACHED


def _tmm_samples(
    obs: np.ndarray,
    library_size: np.ndarray,
    p: np.ndarray,
    log_p: np.ndarray,
    ref_variance: np.ndarray,
    *,
    logratio_trim: float,
    sum_trim: float,
    do_weighting: bool,
    a_cutoff: float,
) -> np.ndarray:
    """Unscaled TMM factors of the samples of ``obs`` (samples x the genes the reference counts) in numpy, one
    sample at a time: edgeR's ``.calcFactorTMM`` with its expressions, R's average ranks by a sort and two searches.

    The same factors as the compiled kernel (to rounding) for blocks too small to repay its first call.
    """
    out = np.empty(obs.shape[0])
    for j, (o, n_obs) in enumerate(zip(obs, library_size, strict=True)):
        with np.errstate(divide="ignore", invalid="ignore"):
            e = o / n_obs
            m = np.log2(e / p)
            a = (np.log2(e) + log_p) / 2
        counted = np.isfinite(m) & np.isfinite(a) & (a > a_cutoff)
        m, a = m[counted], a[counted]
        if m.size == 0 or np.abs(m).max() < 1e-6:  # edgeR returns 1 (R's max() of nothing is -Inf)
            out[j] = 1.0
            continue
        keep = _rank_trimmed(m, logratio_trim) & _rank_trimmed(a, sum_trim)
        m = m[keep]
        with np.errstate(divide="ignore", invalid="ignore"):
            if do_weighting:  # sum(logR / v, na.rm = TRUE) / sum(1 / v, na.rm = TRUE)
                kept = o[counted][keep]
                v = (n_obs - kept) / n_obs / kept + ref_variance[counted][keep]
                f = np.nansum(m / v) / np.nansum(1 / v)
            else:
                f = m.sum() / m.size
        out[j] = 1.0 if np.isnan(f) else 2.0**f  # edgeR: a NaN f (nothing kept) is 0
    return out


def _rank_trimmed(values: np.ndarray, trim: float) -> np.ndarray:
    """Which ``values`` edgeR's rank trim ``floor(n*trim)+1 <= rank <= n-floor(n*trim)`` keeps (R's average rank).

    Ranks are monotone in the value: the kept values lie between the order statistics at the two bounds, and the tie
    group of each is kept when its average rank ``(less + 1 + upto) / 2`` is inside the bounds.
    """
    n = values.size
    lo = math.floor(n * trim) + 1
    hi = n + 1 - lo
    if lo > hi:
        return np.zeros(n, dtype=bool)
    ordered = np.sort(values)
    v1, v2 = ordered[lo - 1], ordered[hi - 1]
    twice1 = ordered.searchsorted(v1, "left") + 1 + ordered.searchsorted(v1, "right")
    twice2 = ordered.searchsorted(v2, "left") + 1 + ordered.searchsorted(v2, "right")
    keep = values >= v1 if twice1 >= 2 * lo else values > v1
    keep &= values <= v2 if twice2 <= 2 * hi else values < v2
    return keep


def tmm_factors(
    counts: np.ndarray,
    *,
    library_size: np.ndarray | None = None,
    logratio_trim: float = 0.3,
    sum_trim: float = 0.05,
    do_weighting: bool = True,
    a_cutoff: float = -1e10,
    ref_column: int | None = None,
) -> np.ndarray:
    """TMM factors equal to edgeR 3.40 ``calcNormFactors(method="TMM")``, one per sample of ``counts``.

    The reference sample is edgeR's choice unless ``ref_column`` (0-based) is given; factors are scaled to
    geometric mean 1. An all-zero sample is an error (edgeR fails on it too).
    """
    counts, sums = _validated(counts)
    library_size = np.asarray(sums if library_size is None else library_size, dtype=np.float64)
    if library_size.shape != (counts.shape[1],):
        raise ValueError(f"library_size has shape {library_size.shape}, expected ({counts.shape[1]},).")
    _check_no_empty_samples(sums)
    _check_no_empty_samples(library_size)
    expressed = _expressed_rows(counts)
    if counts.shape[1] == 1 or not expressed.any():
        return np.ones(counts.shape[1])
    if ref_column is None:
        f75 = _upper_quartiles(counts, library_size, expressed)
        ref_column = tmm_reference(f75, sqrt_sums=lambda: np.sqrt(counts).sum(axis=0))
    factors = _tmm_factors_against(
        counts,
        counts[:, ref_column],
        library_size,
        float(library_size[ref_column]),
        logratio_trim=logratio_trim,
        sum_trim=sum_trim,
        do_weighting=do_weighting,
        a_cutoff=a_cutoff,
    )
    return geometric_mean_scaled(factors)


# ------------------------------------------------------------------------------------- expression scales and z-scores


def _check_library_size(library_size: np.ndarray, n_columns: int) -> np.ndarray:
    library_size = np.asarray(library_size, dtype=np.float64)
    if library_size.shape != (n_columns,):
        raise ValueError(f"library_size has shape {library_size.shape}, expected ({n_columns},).")
    if not (np.isfinite(library_size).all() and (library_size > 0).all()):
        raise ValueError("library sizes should be finite and positive")
    return library_size


def cpm(counts: np.ndarray, *, library_size: np.ndarray) -> np.ndarray:
    """Counts per million (edgeR ``cpm``): ``counts * 1e6 / library_size``, same shape as ``counts``."""
    counts = _as_counts(counts)
    library_size = _check_library_size(library_size, counts.shape[1])
    return counts * (1e6 / library_size)


def log2_cpm(
    counts: np.ndarray,
    *,
    library_size: np.ndarray,
    norm_factors: np.ndarray | None = None,
    prior_count: float = 2.0,
    mean_library_size: float | None = None,
) -> np.ndarray:
    """Log2 counts per million equal to edgeR ``cpm(y, log=TRUE, prior.count=prior_count)``, with effective
    library size ``library_size * norm_factors``.

    As edgeR's ``addPriorCount``, the prior is scaled by each library's size relative to the mean library size and
    twice the prior is added to the library size. For a block of a larger study pass ``mean_library_size``, the
    mean effective library size over all samples, so that every block gets the priors of the whole study.
    """
    counts = _as_counts(counts)
    lib = _check_library_size(library_size, counts.shape[1])
    if norm_factors is not None:
        lib = lib * _check_library_size(norm_factors, counts.shape[1])
    mean_lib = float(np.mean(lib)) if mean_library_size is None else float(mean_library_size)
    prior = prior_count * lib / mean_lib
    out = counts + prior
    np.log(out, out=out)
    out -= np.log(lib + 2 * prior)
    out += _LN_MILLION
    out /= _LN_TWO
    return out


def tpm(counts: np.ndarray, *, lengths: np.ndarray) -> np.ndarray:
    """Transcripts per million from counts and feature lengths (bp), same shape as ``counts``.

    ``lengths`` is one length per row, or one per cell (Salmon / RSEM effective lengths differ by sample). Cells
    whose length is unknown (NaN) or not positive cannot be rated: they are NaN and left out of the per-sample
    totals, so the known cells of each sample sum to one million.
    """
    counts = _as_counts(counts)
    lengths = np.asarray(lengths, dtype=np.float64)
    if lengths.shape == (counts.shape[0],):
        lengths = lengths[:, None]
    elif lengths.shape != counts.shape:
        raise ValueError(f"lengths has shape {lengths.shape}, expected ({counts.shape[0]},) or {counts.shape}.")
    known = np.isfinite(lengths) & (lengths > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(known, counts / lengths, np.nan)
        return rate * (1e6 / np.nansum(rate, axis=0))


class RowMoments(NamedTuple):
    """Per-gene mean and standard deviation over the reference samples (one value per row each)."""

    mean: np.ndarray
    sd: np.ndarray


def row_moments(blocks: Iterable[np.ndarray], *, ddof: int = 1) -> RowMoments:
    """Per-row mean and standard deviation over the non-missing values of all ``blocks`` (Chan's pairwise update,
    counted per row).

    Feed only the reference columns (for example the normal samples) of each block to get a reference population.
    Rows with at most ``ddof`` values have a NaN SD (and so NaN z-scores).
    """
    n: np.ndarray | None = None
    mean = m2 = np.zeros(0)
    for block in blocks:
        block = np.asarray(block, dtype=np.float64)
        missing = np.isnan(block)
        # np.nansum sums a copy of the block (same layout) with NaN set to 0: a block without NaN (log2 CPM of
        # counts) is summed as it is, the same additions in the same order without the copies.
        whole = not missing.any() and (block.flags.c_contiguous or block.flags.f_contiguous)
        k = np.full(block.shape[0], float(block.shape[1])) if whole else (~missing).sum(axis=1).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            b_mean = np.where(k > 0, (block.sum(axis=1) if whole else np.nansum(block, axis=1)) / k, 0.0)
        if whole:  # by chunks of rows: no block-sized temporary, the same sums (row_sums_by_chunks)
            def squared(rows: np.ndarray, at: slice, means: np.ndarray = b_mean) -> np.ndarray:
                return np.square(rows - means[at, None])

            b_m2 = row_sums_by_chunks(block, squared)
        else:
            deviation = block - b_mean[:, None]
            np.square(deviation, out=deviation)
            b_m2 = np.nansum(deviation, axis=1)
            del deviation
        del missing
        if n is None:
            n, mean, m2 = k, b_mean, b_m2
            continue
        total = n + k
        with np.errstate(invalid="ignore", divide="ignore"):
            delta = b_mean - mean
            mean = np.where(total > 0, mean + delta * np.where(total > 0, k / total, 0), 0.0)
            m2 = m2 + b_m2 + np.where(total > 0, delta**2 * n * k / total, 0.0)
        n = total
    if n is None:
        raise ValueError("No reference columns were given to compute row moments.")
    with np.errstate(invalid="ignore", divide="ignore"):
        sd = np.where(n > ddof, np.sqrt(m2 / (n - ddof)), np.nan)
    return RowMoments(np.where(n > 0, mean, np.nan), sd)


def zscore_rows(
    values: np.ndarray,
    *,
    reference_mask: np.ndarray | None = None,
    ddof: int = 1,
    moments: RowMoments | None = None,
) -> np.ndarray:
    """z-score of each gene across samples: ``(value - mean) / sd`` per row, same shape as ``values``.

    Mean and SD come from the columns chosen by ``reference_mask`` (for example the normal samples; all columns by
    default), or from ``moments`` fitted over every block of a larger study. Genes with zero or undefined SD are NaN;
    an SD below 1e-10 of the mean's magnitude counts as zero (a constant row, such as the log2 CPM of an all-zero
    gene, has an SD of rounding noise).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"values must be 2-D (genes x samples), got {values.ndim} dimension(s).")
    if moments is None:
        reference = values if reference_mask is None else values[:, np.asarray(reference_mask, dtype=bool)]
        moments = row_moments([reference], ddof=ddof)
    constant = ~(moments.sd > 1e-10 * np.maximum(np.abs(moments.mean), 1.0))
    sd = np.where(constant, np.nan, moments.sd)
    return (values - moments.mean[:, None]) / sd[:, None]


# ------------------------------------------------------------------------------------------------------- DESeq2 VST


def vst_genes(base_mean: np.ndarray, *, nsub: int = 1000) -> np.ndarray:
    """Row indices DESeq2's ``vst`` fits the dispersion trend on: ``nsub`` genes evenly spread over the ranks of
    the base mean (mean normalised count over all samples) among genes with base mean above 5.
    """
    base_mean = np.asarray(base_mean, dtype=np.float64)
    candidates = np.flatnonzero(base_mean > 5)
    if candidates.size < nsub:
        raise ValueError(
            f"less than 'nsub' ({nsub}) rows with mean normalized count > 5 ({candidates.size}); "
            "fit the trend on all genes instead (nsub=None)"
        )
    order = candidates[np.argsort(base_mean[candidates], kind="stable")]
    n1 = nsub - 1
    # R: round(seq(from=1, to=length(o), length=nsub)); both round half to even.
    positions = np.concatenate([[1.0], 1 + np.arange(1, n1) * ((order.size - 1) / n1), [float(order.size)]])
    return order[np.round(positions).astype(np.intp) - 1]


def fit_vst_trend(counts: np.ndarray, *, size_factors: np.ndarray) -> DispersionTrend:
    """DESeq2's blind (design ``~1``) gene-wise dispersions and parametric trend, fitted on the rows of ``counts``.

    ``counts`` holds the genes to fit on (``vst_genes``) across *all* samples; ``size_factors`` are those of all
    samples. The DE code's ``estimateDispersionsGeneEst``
    (:func:`transforms.expression.deseq2.gene_wise_dispersions`) with a one-column design, then
    ``estimateDispersionsFit(fitType="parametric")``.
    """
    from transforms.expression import deseq2

    counts = _as_counts(counts)
    sf = np.asarray(size_factors, dtype=np.float64)
    m = counts.shape[1]
    if m < 2:
        raise ValueError("at least two samples are needed to estimate dispersions")
    counts = counts[counts.sum(axis=1) > 0]
    gene = deseq2.gene_wise_dispersions(counts, np.ones((m, 1)), size_factors=sf)
    use = gene.dispersion > 100 * deseq2.MIN_DISP
    if not use.any():
        raise ValueError("all gene-wise dispersion estimates are within 2 orders of magnitude of the minimum")
    return deseq2.parametric_dispersion_fit(gene.base_mean[use], gene.dispersion[use])


def vst_transform(counts: np.ndarray, *, size_factors: np.ndarray, trend: DispersionTrend) -> np.ndarray:
    """DESeq2's closed-form parametric variance-stabilising transform of normalised counts (log2 scale):
    ``log2((1 + a1 + 2 a0 q + 2 sqrt(a0 q (1 + a1 + a0 q))) / (4 a0))`` with ``q`` the normalised count.

    Computed in place on two scratch arrays (the same operations on the same operands as the formula, so the same
    bits), not the dozen temporaries of the expression written out.
    """
    counts = _as_counts(counts)
    q = counts / np.asarray(size_factors, dtype=np.float64)
    a0, a1 = trend.asympt_disp, trend.extra_pois
    root = a0 * q
    root += 1 + a1
    root *= a0 * q
    np.sqrt(root, out=root)
    root *= 2
    q *= 2 * a0
    q += 1 + a1
    q += root
    q /= 4 * a0
    np.log(q, out=q)
    q /= _LN_TWO
    return q


def vst(counts: np.ndarray, *, size_factors: np.ndarray, nsub: int | None = 1000) -> np.ndarray:
    """DESeq2 ``vst(dds, blind=TRUE)`` of a whole study block, same shape as ``counts``.

    The trend is fitted on ``nsub`` genes as DESeq2 does; ``nsub=None`` fits it on every gene, as
    ``varianceStabilizingTransformation(dds, blind=TRUE)`` does.
    """
    counts = _as_counts(counts)
    sf = np.asarray(size_factors, dtype=np.float64)
    if nsub is None:
        trend = fit_vst_trend(counts, size_factors=sf)
    else:
        if counts.shape[0] < nsub:
            raise ValueError(f"less than 'nsub' ({nsub}) rows; fit the trend on all genes instead (nsub=None)")
        rows = vst_genes((counts / sf).mean(axis=1), nsub=nsub)
        trend = fit_vst_trend(counts[rows], size_factors=sf)
    return vst_transform(counts, size_factors=sf, trend=trend)
