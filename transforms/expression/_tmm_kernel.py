"""Compiled per-sample kernel of edgeR's TMM (``.calcFactorTMM``), one pass over each sample's gathered counts.

numba is imported with this module, which ``normalise`` imports only when it first computes TMM factors (numba's
import costs a few tenths of a second that processes without TMM need not pay). Functions are compiled on first use
and cached next to this file (``__pycache__``; numba falls back to a user cache directory when that is read-only).

Per sample: M, A and the variance of the genes edgeR counts (finite M and A, A above the cutoff) with edgeR's exact
expressions, so that ties (and so R's average ranks) fall as in R; each trim's two order statistics by a histogram of
the values (1,024 buckets between their least and largest) and a sort of the values in the two buckets holding the
ends, instead of partitions of whole rows; then the weighted mean of the kept M in one loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit

# Buckets of the histogram locating a trim's ends (8 KB of counts: stays in the L1 cache).
_BUCKETS = 1024
# Whole counts below this take log2(count / library size) from a table filled once per sample: edgeR's A needs that
# logarithm besides M's ratio, and most counts are small and repeat within a sample.
_TABLE = 1024
_TILE = 64  # genes per tile of the samples-major copy of a genes-major block
# Units in the last place around the bucket of a trim end on ratios (_log_trim_range): ratios with one log2 (M) are
# a few thousand units apart at most, far fewer than this.
_MARGIN = 1 << 16


CACHED = True
"""Whether the kernel is cached on disk; False when numba found no writable cache directory (a read-only install,
its fallback user cache directory not writable either): each process would compile it (~15 CPU s), so ``normalise``
then takes its numpy path (set ``NUMBA_CACHE_DIR`` to a writable directory on such deployments)."""


def _jit(function: Callable[..., Any]) -> Any:
    """Compile with numba's ``njit``: a cache on disk, without GIL, and numpy's error model (x / 0 is inf or NaN,
    as in R; the default raises); without a cache when numba has nowhere to write one (:data:`CACHED`).
    """
    global CACHED
    try:
        return njit(cache=True, nogil=True, error_model="numpy")(function)
    except RuntimeError:  # "cannot cache function ...: no locator available for file ..."
        CACHED = False
        return njit(nogil=True, error_model="numpy")(function)


@_jit
def _trim_range(
    x: np.ndarray, n: int, trim: float, least: float, largest: float, hist: np.ndarray, buf: np.ndarray
) -> tuple[float, float]:
    """Closed range of the values of ``x[:n]`` (finite, in ``[least, largest]``) that edgeR's rank trim keeps:
    ``floor(n*trim)+1 <= rank <= n-floor(n*trim)``, with R's average rank of ties.

    The histogram's bucket ``int((x - least) * scale)`` is non-decreasing in ``x``, so a lower bucket holds only
    smaller values. Ranks are monotone in the value, so the kept values are an interval whose ends are the order
    statistics at the two bounds; a tied end value is kept when the average rank of its tie group is inside the
    bounds, else the range stops one float short of it. Nothing kept gives an empty range (``inf``, ``-inf``).
    """
    lo_rank = math.floor(n * trim) + 1
    hi_rank = n + 1 - lo_rank
    if lo_rank > hi_rank:
        return math.inf, -math.inf
    span = largest - least
    scale = _BUCKETS / span if span > 0 else 0.0
    if not math.isfinite(scale):
        scale = 0.0
    hist[:] = 0
    for i in range(n):
        hist[min(int((x[i] - least) * scale), _BUCKETS - 1)] += 1
    k1, k2 = lo_rank - 1, hi_rank - 1  # 0-based places of the ends in order
    b1, b2, below1, below2, cum = -1, -1, 0, 0, 0
    for b in range(_BUCKETS):
        if b1 < 0 and cum + hist[b] > k1:
            b1, below1 = b, cum
        if cum + hist[b] > k2:
            b2, below2 = b, cum
            break
        cum += hist[b]
    # the values of bucket b1 first in buf, then those of b2
    size1 = hist[b1]
    c1, c2 = 0, size1
    for i in range(n):
        b = min(int((x[i] - least) * scale), _BUCKETS - 1)  # the same bucket as in the histogram
        if b == b1:
            buf[c1] = x[i]
            c1 += 1
        elif b == b2:
            buf[c2] = x[i]
            c2 += 1
    group1 = buf[:size1]
    group1.sort()
    low = _end(group1, below1, k1, lo_rank, True)
    if b2 == b1:
        return low, _end(group1, below1, k2, hi_rank, False)
    group2 = buf[size1:c2]
    group2.sort()
    return low, _end(group2, below2, k2, hi_rank, False)


@_jit
def _end(group: np.ndarray, below: int, k: int, rank: int, lower: bool) -> float:
    """One end of a trim's range from the sorted values of the bucket holding the order statistic at place ``k``
    (``below`` values are in lower buckets): that value, or the next float inward if its tie group's average rank
    ``(less + 1 + upto) / 2`` is outside the bound ``rank``.
    """
    v = group[k - below]
    less = below + np.searchsorted(group, v, side="left")
    upto = below + np.searchsorted(group, v, side="right")
    if lower:
        return v if less + 1 + upto >= 2 * rank else np.nextafter(v, math.inf)
    return v if less + 1 + upto <= 2 * rank else np.nextafter(v, -math.inf)


@_jit
def _log_trim_range(
    x: np.ndarray, n: int, trim: float, least: float, largest: float, hist: np.ndarray, buf1: np.ndarray,
    buf2: np.ndarray,
) -> tuple[float, float]:  # fmt: skip
    """Closed range of the ratios ``x[:n]`` (positive, finite, in ``[least, largest]``) whose ``log2`` (edgeR's M)
    edgeR's rank trim keeps.

    ``log2`` is non-decreasing, so M's order statistics are those of the ratios, but ratios a few units in the last
    place apart can share one M: a tie group of M is a run of ratios around an end whose ``log2`` are equal. The ends
    are found in a histogram of the ratios' bits (an int64 increasing with the value and nearly linear in its
    logarithm: buckets of about equal width in M), then among the ratios within ``_MARGIN`` units in the last place
    of the end's bucket, sorted. Only the ratios next to an end get a logarithm. Ratios with one ``log2`` are at
    most a few thousand units in the last place apart (``log2`` is faithful, M's ulp is at most ~1.4 |M| <= 1,500 of
    the ratio's), so an end's tie group lies inside its window.
    """
    lo_rank = math.floor(n * trim) + 1
    hi_rank = n + 1 - lo_rank
    if lo_rank > hi_rank:
        return math.inf, -math.inf
    bits = x[:n].view(np.int64)
    ends = np.array([least, largest]).view(np.int64)
    base, shift = ends[0], 0
    while (ends[1] - base) >> shift >= _BUCKETS:
        shift += 1
    hist[:] = 0
    for i in range(n):
        hist[(bits[i] - base) >> shift] += 1
    k1, k2 = lo_rank - 1, hi_rank - 1  # 0-based places of the ends in order
    b1, b2, cum = -1, -1, 0
    for b in range(_BUCKETS):
        if b1 < 0 and cum + hist[b] > k1:
            b1 = b
        if cum + hist[b] > k2:
            b2 = b
            break
        cum += hist[b]
    lo1, hi1 = (b1 << shift) - _MARGIN, ((b1 + 1) << shift) + _MARGIN  # windows of offsets bits - base
    lo2, hi2 = (b2 << shift) - _MARGIN, ((b2 + 1) << shift) + _MARGIN
    below1, below2, c1, c2 = 0, 0, 0, 0
    for i in range(n):  # without branches: each window's next place is written, and kept if inside the window
        d = bits[i] - base
        buf1[c1], buf2[c2] = x[i], x[i]
        below1 += d < lo1
        below2 += d < lo2
        c1 += (d >= lo1) & (d < hi1)
        c2 += (d >= lo2) & (d < hi2)
    group1, group2 = buf1[:c1], buf2[:c2]
    group1.sort()
    group2.sort()
    return _log_end(group1, below1, k1, lo_rank, True), _log_end(group2, below2, k2, hi_rank, False)


@_jit
def _log_end(group: np.ndarray, below: int, k: int, rank: int, lower: bool) -> float:
    """One end of :func:`_log_trim_range` from the sorted ratios of a window around the order statistic at place
    ``k`` (``below`` ratios are below the window): the least (greatest) ratio of its M tie group if the group's
    average rank is inside the bound ``rank``, else the next float above (below) the group.
    """
    q = k - below
    m = math.log2(group[q])
    left, right = q, q
    while left > 0 and (group[left - 1] == group[left] or math.log2(group[left - 1]) == m):
        left -= 1
    while right < group.size - 1 and (group[right + 1] == group[right] or math.log2(group[right + 1]) == m):
        right += 1
    twice_rank = 2 * below + left + right + 2  # less + 1 + upto, less = below + left, upto = below + right + 1
    if lower:
        return group[left] if twice_rank >= 2 * rank else np.nextafter(group[right], math.inf)
    return group[right] if twice_rank <= 2 * rank else np.nextafter(group[left], -math.inf)


@_jit
def _tmm_sample(
    obs: np.ndarray,
    n_obs: float,
    p: np.ndarray,
    log_p: np.ndarray,
    ref_variance: np.ndarray,
    logratio_trim: float,
    sum_trim: float,
    do_weighting: bool,
    a_cutoff: float,
    x: np.ndarray,
    a: np.ndarray,
    genes: np.ndarray,
    hist: np.ndarray,
    buf1: np.ndarray,
    buf2: np.ndarray,
    table: np.ndarray,
) -> float:
    """Unscaled TMM factor of one sample's counts ``obs`` (the genes the reference counts) against the reference."""
    size = min(table.size, obs.size)  # a small study fills a smaller table
    for k in range(size):
        table[k] = math.log2(k / n_obs)
    # edgeR's ratio (obs / n_obs) / p, whose log2 is M, and A of every gene, kept in x, a and genes when edgeR counts
    # the gene (finite M and A, A above the cutoff). M is taken only of the ratios kept by both trims and of those
    # next to the M trim's ends (a logarithm per value was half of the kernel's time). No branch on the values: a
    # mispredicted branch per value cost more than the work saved by skipping a zero count.
    n = 0
    x_least, x_largest, a_least, a_largest = math.inf, 0.0, math.inf, -math.inf
    for g in range(obs.size):
        o = obs[g]
        e = o / n_obs
        ratio = e / p[g]
        # log2(o / n_obs) from the table for whole counts, the same bits as computing it
        ag = (table[int(o)] if o < size and o == math.floor(o) else math.log2(e)) + log_p[g]
        ag /= 2
        counted = (ratio > 0) & (ratio < math.inf) & math.isfinite(ag) & (ag > a_cutoff)
        x[n], a[n], genes[n] = ratio, ag, g
        n += counted
        if counted:
            x_least, x_largest = min(x_least, ratio), max(x_largest, ratio)
            a_least, a_largest = min(a_least, ag), max(a_largest, ag)
    # edgeR returns 1 when every |M| < 1e-6 (R's max() of nothing is -Inf); the largest |M| is at an end
    if n == 0 or max(abs(math.log2(x_least)), abs(math.log2(x_largest))) < 1e-6:
        return 1.0
    x_low, x_high = _log_trim_range(x, n, logratio_trim, x_least, x_largest, hist, buf1, buf2)
    a_low, a_high = _trim_range(a, n, sum_trim, a_least, a_largest, hist, buf1)
    # the kept genes and ratios to the front of genes and x (place i is read before kept <= i is written)
    kept = 0
    for i in range(n):
        xi, ai = x[i], a[i]
        genes[kept], x[kept] = genes[i], xi
        kept += (x_low <= xi) & (xi <= x_high) & (a_low <= ai) & (ai <= a_high)
    total, weights = 0.0, 0.0
    for i in range(kept):
        m = math.log2(x[i])
        if do_weighting:  # sum(logR / v, na.rm = TRUE) / sum(1 / v, na.rm = TRUE)
            g = genes[i]
            o = obs[g]
            v = (n_obs - o) / n_obs / o + ref_variance[g]
            term = m / v
            if not math.isnan(term):
                total += term
            term = 1.0 / v
            if not math.isnan(term):
                weights += term
        else:
            total += m
            weights += 1.0
    f = total / weights
    return 1.0 if math.isnan(f) else 2.0**f  # edgeR: a NaN f (nothing kept) is 0


@_jit
def tmm_columns(
    counts: np.ndarray,
    rows: np.ndarray,
    start: int,
    stop: int,
    library_size: np.ndarray,
    p: np.ndarray,
    log_p: np.ndarray,
    ref_variance: np.ndarray,
    logratio_trim: float,
    sum_trim: float,
    do_weighting: bool,
    a_cutoff: float,
    out: np.ndarray,
) -> None:
    """Unscaled TMM factors of columns ``start:stop`` of ``counts`` (genes x samples) into ``out``, over the genes
    ``rows`` that the reference counts (``p``, ``log_p``, ``ref_variance``: its terms of M, A and the variance).

    The columns are first copied samples-major: genes in the inner loop when the block is stored samples-major
    (Fortran order), else in tiles of 64 genes (2.5x faster than a loop over genes, then samples).
    """
    width, size = stop - start, rows.size
    obs = np.empty((width, size))
    if counts.strides[0] < counts.strides[1]:
        for j in range(width):
            for g in range(size):
                obs[j, g] = counts[rows[g], start + j]
    else:  # in tiles of genes: a row's columns are read together, a sample's genes written together
        for tile in range(0, size, _TILE):
            for j in range(width):
                for g in range(tile, min(tile + _TILE, size)):
                    obs[j, g] = counts[rows[g], start + j]
    x, a, buf1, buf2 = np.empty(size), np.empty(size), np.empty(size), np.empty(size)
    genes = np.empty(size, dtype=np.intp)
    hist = np.empty(_BUCKETS, dtype=np.int64)
    table = np.empty(_TABLE)
    for j in range(width):
        out[j] = _tmm_sample(
            obs[j], library_size[start + j], p, log_p, ref_variance, logratio_trim, sum_trim, do_weighting,
            a_cutoff, x, a, genes, hist, buf1, buf2, table,
        )
