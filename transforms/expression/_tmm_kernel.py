"""Compiled per-sample kernel of edgeR's TMM (``.calcFactorTMM``), one pass over each sample's gathered counts.

numba is imported with this module, which ``normalise`` imports only when it first computes TMM factors (numba's
import costs a few tenths of a second that processes without TMM need not pay). Functions are compiled on first use
and cached next to this file (``__pycache__``; numba falls back to a user cache directory when that is read-only).

Per sample, usually (:func:`_tmm_sample_keyed`, edgeR's default A cutoff): the genes are ranked by keys computed
with one multiplication each, ``count / reference count`` for M and ``count * reference count`` for A (monotone in
M and A to rounding); each trim's ends are located in histograms of the keys' float bits, and only the genes whose
keys lie near an end get edgeR's exact M ratio and A, sorted, so that ties (and so R's average ranks) fall as in R at
the ends; the other genes are kept or not by their keys, and the kept genes' weighted mean takes M and the variance
from tables of ``log2(k)`` and ``1 / k`` (within ~1e-14 of edgeR's expressions). Otherwise, or when a sample is
degenerate (all M near one value, counts far below 1, fewer than 64 genes: :func:`_tmm_sample`): M, A and the
variance of the genes edgeR counts (finite M and A, A above the cutoff) with edgeR's exact expressions; each trim's
two order statistics by a histogram of the values (1,024 buckets between their least and largest) and a sort of the
values in the two buckets holding the ends; then the weighted mean of the kept M in one loop (M of a kept gene as
``2 * A - 2 * log2(p)``). The upper quartiles that choose TMM's reference sample are here too
(:func:`upper_quartile_columns`, histograms of whole counts).

DESeq2's size factors (median of ratios) use the same module when it is loaded, for whole counts: per-gene sums of
the logs with numpy's bits (:func:`log_row_sums`), and each sample's median by the same histogram selection
(:func:`median_log_ratios`): the same bits as ``normalise``'s numpy path, at a third (sums) to a half (medians) of
its CPU.
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


def _jit(function: Callable[..., Any], **options: Any) -> Any:
    """Compile with numba's ``njit``: a cache on disk, without GIL, and numpy's error model (x / 0 is inf or NaN,
    as in R; the default raises); without a cache when numba has nowhere to write one (:data:`CACHED`).
    """
    global CACHED
    try:
        return njit(cache=True, nogil=True, error_model="numpy", **options)(function)
    except RuntimeError:  # "cannot cache function ...: no locator available for file ..."
        CACHED = False
        return njit(nogil=True, error_model="numpy", **options)(function)


def _jit_reassociated(function: Callable[..., Any]) -> Any:
    """:func:`_jit` allowing floating-point reassociation (so sums vectorise) and fused multiply-adds."""
    return _jit(function, fastmath={"reassoc", "contract"})


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
    k1, k2 = lo_rank - 1, hi_rank - 1  # 0-based places of the ends in order
    group1, below1, group2, below2 = _order_groups(x, n, least, scale, k1, k2, hist, buf)
    return _end(group1, below1, k1, lo_rank, True), _end(group2, below2, k2, hi_rank, False)


@_jit
def _order_groups(
    x: np.ndarray, n: int, least: float, scale: float, k1: int, k2: int, hist: np.ndarray, buf: np.ndarray
) -> tuple[np.ndarray, int, np.ndarray, int]:
    """The sorted values of the histogram buckets holding the order statistics at 0-based places ``k1 <= k2`` of
    ``x[:n]``, each with the count of values in lower buckets (one group twice when both are in one bucket).

    The bucket ``int((x - least) * scale)`` is non-decreasing in ``x``, so a lower bucket holds only smaller values:
    the statistic at place ``k`` is ``group[k - below]``. TMM's trims and the size factors' medians share it.
    """
    hist[:] = 0
    for i in range(n):
        hist[min(int((x[i] - least) * scale), _BUCKETS - 1)] += 1
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
    if b2 == b1:
        return group1, below1, group1, below1
    group2 = buf[size1:c2]
    group2.sort()
    return group1, below1, group2, below2


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
    # the gene (finite M and A, A above the cutoff). M's logarithm is taken only of the ratios next to the M trim's
    # ends (a logarithm per value was half of the kernel's time); the kept genes' M comes from A. No branch on the
    # values: a mispredicted branch per value cost more than the work saved by skipping a zero count.
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
        genes[kept], a[kept] = genes[i], ai
        kept += (x_low <= xi) & (xi <= x_high) & (a_low <= ai) & (ai <= a_high)
    total, weights = 0.0, 0.0
    for i in range(kept):
        g = genes[i]
        # M = log2(obs / n_obs) - log2(p) from 2 A = log2(obs / n_obs) + log2(p): within ~1e-14 of edgeR's
        # log2((obs / n_obs) / p) (the rounding of the sum in A), without a logarithm per kept gene (half of this loop)
        m = 2.0 * (a[i] - log_p[g])
        if do_weighting:  # sum(logR / v, na.rm = TRUE) / sum(1 / v, na.rm = TRUE)
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


# The fast per-sample path (_tmm_sample_keyed) ranks the genes by keys that need no logarithm and no division:
# count / reference count for M (2^M is it times a constant of the sample) and count * reference count for A (4^A is
# it times a constant). A key's bucket is taken from its float64 bits (exponent and top mantissa bits: monotone in
# the key, equal widths in its logarithm), clamped to the histogram's ends.
_M_SHIFT = 45  # 128 buckets an octave of the M key
_M_BUCKETS = 6144  # 48 octaves: keys 2^-24 .. 2^24
_M_BASE = int(np.array([2.0**-24]).view(np.int64)[0]) >> _M_SHIFT
_A_SHIFT = 47  # 32 buckets an octave of the A key
_A_BUCKETS = 2048  # 64 octaves: keys 1/2 .. 2^63
_A_BASE = int(np.array([0.5]).view(np.int64)[0]) >> _A_SHIFT
# Units in the last place of a key around the bucket of a trim end whose genes get exact values: a key is within a
# few units of edgeR's ratio (A: product) times a constant, and values with one log2 (M) or one A are a few thousand
# units apart at most; buckets are 2^45 or 2^47 units wide.
_KEY_MARGIN = 1 << 16
# Whole counts below this take log2(count) and 1 / count from tables (the kept genes' M and variance).
_INT_TABLE = 1 << 12


@_jit
def _bucket(bits: int, shift: int, base: int, buckets: int) -> int:
    return min(max((bits >> shift) - base, 0), buckets - 1)


@_jit
def _place_bucket(hist: np.ndarray, k: int) -> int:
    """The bucket of ``hist`` holding the value at 0-based place ``k``."""
    cum = 0
    for b in range(hist.size):
        cum += hist[b]
        if cum > k:
            return b
    return hist.size - 1  # not reached when k < the count of values


@_jit_reassociated
def _kept_sums(
    obs: np.ndarray, kept: np.ndarray, log_p: np.ndarray, ref_variance: np.ndarray, log2_int: np.ndarray,
    inv_int: np.ndarray, log2_n: float, inv_n: float, do_weighting: bool,
) -> tuple[float, float]:  # fmt: skip
    """The sums of edgeR's weighted mean over the ``kept`` genes, ``sum(M / v)`` and ``sum(1 / v)`` (or of M and 1
    unweighted), with M and the variance ``v`` from the tables (whole counts): without branches, and reassociated
    (so vectorised).
    """
    total, weights = 0.0, 0.0
    for g in range(obs.size):
        k = int(obs[g]) if kept[g] else 1
        m = log2_int[k] - log2_n - log_p[g]
        if do_weighting:
            w = 1.0 / (inv_int[k] - inv_n + ref_variance[g])
            total += m * w if kept[g] else 0.0
            weights += w if kept[g] else 0.0
        else:
            total += m if kept[g] else 0.0
            weights += 1.0 if kept[g] else 0.0
    return total, weights


@_jit
def _tmm_sample_keyed(
    obs: np.ndarray,
    n_obs: float,
    ref: np.ndarray,
    inv_ref: np.ndarray,
    p: np.ndarray,
    log_p: np.ndarray,
    ref_variance: np.ndarray,
    logratio_trim: float,
    sum_trim: float,
    do_weighting: bool,
    log2_int: np.ndarray,
    inv_int: np.ndarray,
    key_m: np.ndarray,
    key_a: np.ndarray,
    hist_m: np.ndarray,
    hist_a: np.ndarray,
    win_m1: np.ndarray,
    win_m2: np.ndarray,
    win_a1: np.ndarray,
    win_a2: np.ndarray,
    deferred: np.ndarray,
    kept: np.ndarray,
    mark: np.ndarray,
) -> float:
    """Unscaled TMM factor of one sample (as :func:`_tmm_sample`) when edgeR counts exactly the genes with a positive
    count (an A cutoff below every A), or NaN when this path does not decide (the caller then takes
    :func:`_tmm_sample`).

    M and A are ranked by keys: ``obs / ref`` and ``obs * ref`` are, to rounding, ``2^M`` and ``4^A`` times a
    constant of the sample. A trim's two ends are in the histogram buckets of the keys found by counting; only the
    genes whose keys are within ``_KEY_MARGIN`` units of such a bucket (its window) get edgeR's exact ratio or A,
    sorted to find the end with R's average rank of ties (:func:`_log_end`, :func:`_end`), as :func:`_tmm_sample`
    does with all of them. A gene outside every window is kept or not by its keys; a kept gene's M and variance come
    from tables of ``log2(k)`` and ``1 / k`` (within a few units of rounding of edgeR's expressions, whose sums run
    in another order anyway).
    """
    size = obs.size
    for g in range(size):
        o = obs[g]
        key_m[g] = o * inv_ref[g]
        key_a[g] = o * ref[g]
    bits_m, bits_a = key_m.view(np.int64), key_a.view(np.int64)
    hist_m[:] = 0
    hist_a[:] = 0
    n = 0
    for g in range(size):
        counted = obs[g] > 0
        hist_m[_bucket(bits_m[g], _M_SHIFT, _M_BASE, _M_BUCKETS)] += counted
        hist_a[_bucket(bits_a[g], _A_SHIFT, _A_BASE, _A_BUCKETS)] += counted
        n += counted
    # a count far below 1 or a tiny reference count (the A key's first bucket): the exact path
    if n < 64 or hist_a[0] > 0:
        return math.nan
    first, last = 0, _M_BUCKETS - 1
    while hist_m[first] == 0:
        first += 1
    while hist_m[last] == 0:
        last -= 1
    if last - first < 3:  # every M near one value (edgeR's |M| < 1e-6 test, ties everywhere): the exact path
        return math.nan
    lo_m = math.floor(n * logratio_trim) + 1
    lo_a = math.floor(n * sum_trim) + 1
    if lo_m > n + 1 - lo_m or lo_a > n + 1 - lo_a:
        return 1.0  # a trim keeps nothing: edgeR's f is NaN, the factor 1
    bm1, bm2 = _place_bucket(hist_m, lo_m - 1), _place_bucket(hist_m, n - lo_m)
    ba1, ba2 = _place_bucket(hist_a, lo_a - 1), _place_bucket(hist_a, n - lo_a)
    if bm1 == 0 or bm2 == _M_BUCKETS - 1 or ba2 == _A_BUCKETS - 1:
        return math.nan  # an end in a clamped bucket
    # windows: key bits in [lo, hi)
    lo_m1, hi_m1 = ((bm1 + _M_BASE) << _M_SHIFT) - _KEY_MARGIN, ((bm1 + 1 + _M_BASE) << _M_SHIFT) + _KEY_MARGIN
    lo_m2, hi_m2 = ((bm2 + _M_BASE) << _M_SHIFT) - _KEY_MARGIN, ((bm2 + 1 + _M_BASE) << _M_SHIFT) + _KEY_MARGIN
    lo_a1, hi_a1 = ((ba1 + _A_BASE) << _A_SHIFT) - _KEY_MARGIN, ((ba1 + 1 + _A_BASE) << _A_SHIFT) + _KEY_MARGIN
    lo_a2, hi_a2 = ((ba2 + _A_BASE) << _A_SHIFT) - _KEY_MARGIN, ((ba2 + 1 + _A_BASE) << _A_SHIFT) + _KEY_MARGIN
    # the counts below the windows; each gene marked: kept by its keys (a whole count in the tables), or its exact
    # values needed (1: in a window, 2: and kept unless a trim's end says otherwise), without branches
    below_m1, below_m2, below_a1, below_a2 = 0, 0, 0, 0
    top = log2_int.size
    for g in range(size):
        o = obs[g]
        km, ka = bits_m[g], bits_a[g]
        counted = o > 0
        below_m1 += counted & (km < lo_m1)
        below_m2 += counted & (km < lo_m2)
        below_a1 += counted & (ka < lo_a1)
        below_a2 += counted & (ka < lo_a2)
        window = counted & (
            ((km >= lo_m1) & (km < hi_m1)) | ((km >= lo_m2) & (km < hi_m2))
            | ((ka >= lo_a1) & (ka < hi_a1)) | ((ka >= lo_a2) & (ka < hi_a2))
        )  # fmt: skip
        inside = counted & (km >= lo_m1) & (km < hi_m2) & (ka >= lo_a1) & (ka < hi_a2)
        whole = (o < top) & (o == np.floor(o))
        kept[g] = inside & (window ^ True) & whole
        mark[g] = (window | (inside & (whole ^ True))) * (1 + inside)
    # the windows' exact values, and the genes to decide by them
    c_m1, c_m2, c_a1, c_a2, d = 0, 0, 0, 0, 0
    for g in range(size):
        if mark[g] == 0:
            continue
        km, ka = bits_m[g], bits_a[g]
        e = obs[g] / n_obs
        ratio = e / p[g]
        ag = (math.log2(e) + log_p[g]) / 2
        win_m1[c_m1] = ratio
        c_m1 += (km >= lo_m1) & (km < hi_m1)
        win_m2[c_m2] = ratio
        c_m2 += (km >= lo_m2) & (km < hi_m2)
        win_a1[c_a1] = ag
        c_a1 += (ka >= lo_a1) & (ka < hi_a1)
        win_a2[c_a2] = ag
        c_a2 += (ka >= lo_a2) & (ka < hi_a2)
        deferred[d] = g
        d += mark[g] == 2
    log2_n, inv_n = math.log2(n_obs), 1.0 / n_obs
    total, weights = _kept_sums(obs, kept, log_p, ref_variance, log2_int, inv_int, log2_n, inv_n, do_weighting)
    group_m1, group_m2 = win_m1[:c_m1], win_m2[:c_m2]
    group_a1, group_a2 = win_a1[:c_a1], win_a2[:c_a2]
    group_m1.sort()
    group_m2.sort()
    group_a1.sort()
    group_a2.sort()
    x_low = _log_end(group_m1, below_m1, lo_m - 1, lo_m, True)
    x_high = _log_end(group_m2, below_m2, n - lo_m, n + 1 - lo_m, False)
    a_low = _end(group_a1, below_a1, lo_a - 1, lo_a, True)
    a_high = _end(group_a2, below_a2, n - lo_a, n + 1 - lo_a, False)
    for i in range(d):
        g = deferred[i]
        o = obs[g]
        e = o / n_obs
        ratio = e / p[g]
        ag = (math.log2(e) + log_p[g]) / 2
        if not ((x_low <= ratio) & (ratio <= x_high) & (a_low <= ag) & (ag <= a_high)):
            continue
        m = math.log2(e) - log_p[g]
        if do_weighting:
            w = 1.0 / (1.0 / o - inv_n + ref_variance[g])
            total += m * w
            weights += w
        else:
            total += m
            weights += 1.0
    if not (math.isfinite(total) and math.isfinite(weights)):
        return math.nan  # a zero variance (one gene holds both libraries) or overflow: the exact path
    f = total / weights
    return 1.0 if math.isnan(f) else 2.0**f


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
    ref: np.ndarray,
    log2_int: np.ndarray,
    inv_int: np.ndarray,
    out: np.ndarray,
) -> None:
    """Unscaled TMM factors of columns ``start:stop`` of ``counts`` (genes x samples) into ``out``, over the genes
    ``rows`` that the reference counts (``p``, ``log_p``, ``ref_variance``: its terms of M, A and the variance;
    ``ref``: its counts; ``log2_int`` and ``inv_int``: ``log2(k)`` and ``1 / k`` of whole numbers ``k``).

    Each sample takes :func:`_tmm_sample_keyed` when edgeR counts exactly its positive counts (an A cutoff below any
    A), else or when that cannot decide, :func:`_tmm_sample`.

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
    keyed = a_cutoff < -2000.0  # below any A: edgeR counts the positive counts
    inv_ref = 1.0 / ref
    key_m, key_a = np.empty(size), np.empty(size)
    hist_m, hist_a = np.empty(_M_BUCKETS, dtype=np.int32), np.empty(_A_BUCKETS, dtype=np.int32)
    win_a1, win_a2 = np.empty(size), np.empty(size)
    kept, mark = np.empty(size, dtype=np.bool_), np.empty(size, dtype=np.int8)
    for j in range(width):
        f = math.nan
        if keyed:
            f = _tmm_sample_keyed(
                obs[j], library_size[start + j], ref, inv_ref, p, log_p, ref_variance, logratio_trim, sum_trim,
                do_weighting, log2_int, inv_int, key_m, key_a, hist_m, hist_a, buf1, buf2, win_a1, win_a2, genes, kept,
                mark,
            )
        if math.isnan(f):
            f = _tmm_sample(
                obs[j], library_size[start + j], p, log_p, ref_variance, logratio_trim, sum_trim, do_weighting,
                a_cutoff, x, a, genes, hist, buf1, buf2, table,
            )
        out[j] = f


# ------------------------------------------------------------------------- DESeq2's median of ratios (size factors)


@_jit
def _pairwise_block(a: np.ndarray, start: int, n: int) -> float:
    """A contiguous run of at most 128 values summed as numpy sums it: in order below 8, else in eight sums."""
    if n < 8:
        res = 0.0
        for i in range(start, start + n):
            res += a[i]
        return res
    r0, r1, r2, r3 = a[start], a[start + 1], a[start + 2], a[start + 3]
    r4, r5, r6, r7 = a[start + 4], a[start + 5], a[start + 6], a[start + 7]
    whole = n - n % 8
    for i in range(start + 8, start + whole, 8):
        r0, r1, r2, r3 = r0 + a[i], r1 + a[i + 1], r2 + a[i + 2], r3 + a[i + 3]
        r4, r5, r6, r7 = r4 + a[i + 4], r5 + a[i + 5], r6 + a[i + 6], r7 + a[i + 7]
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for i in range(start + whole, start + n):
        res += a[i]
    return res


@_jit
def _pairwise_sum(a: np.ndarray, start: int, n: int) -> float:
    """``a[start:start + n].sum()`` as numpy adds a contiguous run (its pairwise summation: blocks of up to 128
    values by :func:`_pairwise_block`, longer runs as the sum of their halves split at a multiple of 8), so the same
    bits as numpy's row sums. Without recursion (a recursive function loaded from numba's cache crashed): a stack of
    runs to sum (``n > 0``) or to add up (``n == 0``: the two last sums).
    """
    if n <= 128:
        return _pairwise_block(a, start, n)
    run_start, run_n = np.empty(128, dtype=np.int64), np.empty(128, dtype=np.int64)
    sums = np.empty(128)
    top, done = 1, 0
    run_start[0], run_n[0] = start, n
    while top > 0:
        top -= 1
        s, m = run_start[top], run_n[top]
        if m == 0:
            done -= 1
            sums[done - 1] = sums[done - 1] + sums[done]
        elif m <= 128:
            sums[done] = _pairwise_block(a, s, m)
            done += 1
        else:
            half = m // 2
            half -= half % 8
            # popped in turn: the first half, the second, then their sum
            run_start[top], run_n[top] = 0, 0
            run_start[top + 1], run_n[top + 1] = s + half, m - half
            run_start[top + 2], run_n[top + 2] = s, half
            top += 3
    return sums[0]


@_jit
def log_row_sums(counts: np.ndarray, width: int, table: np.ndarray, out: np.ndarray) -> bool:
    """Per-row sums of ``log(counts)`` into ``out``, the logs looked up in ``table`` (``np.log(0 .. size - 1)``),
    with numpy's bits for ``_log_row_sums`` of each chunk of ``width`` columns, the chunks' sums added in order.

    numpy adds a row of a C-order copy pairwise and a row of a Fortran-order copy column after column; each chunk is
    summed here the way numpy sums it in the layout of ``counts``. False (``out`` unfinished) when a count is not
    whole or beyond the table: the caller then takes numpy's logarithms.
    """
    n_rows, n_cols = counts.shape
    top = table.size
    if counts.strides[0] >= counts.strides[1]:  # rows contiguous: pairwise, as numpy adds a C-order row
        buf = np.empty(min(width, n_cols))
        for i in range(n_rows):
            total = 0.0
            for start in range(0, n_cols, width):
                w = min(width, n_cols - start)
                whole = True
                for k in range(w):
                    v = counts[i, start + k]
                    whole &= (v == math.floor(v)) & (v < top)
                    buf[k] = table[int(min(v, top - 1))]
                if not whole:
                    return False
                part = _pairwise_sum(buf, 0, w)
                total = part if start == 0 else total + part
            out[i] = total
        return True
    part = np.empty(n_rows)  # columns contiguous: numpy adds column after column
    for start in range(0, n_cols, width):
        stop = min(start + width, n_cols)
        whole = True
        for j in range(start, stop):
            for i in range(n_rows):
                v = counts[i, j]
                whole &= (v == math.floor(v)) & (v < top)
                lv = table[int(min(v, top - 1))]
                part[i] = lv if j == start else part[i] + lv
        if not whole:
            return False
        for i in range(n_rows):
            out[i] = part[i] if start == 0 else out[i] + part[i]
    return True


@_jit
def _middle(x: np.ndarray, n: int, least: float, largest: float, hist: np.ndarray, buf: np.ndarray) -> float:
    """The median of ``x[:n]`` (in ``[least, largest]``) as numpy's order statistics give it: the middle value, or
    the mean of the two middle ones for an even ``n`` (DESeq2's, R's ``median``).

    The two places are found in a histogram of the values (1,024 buckets between the least and largest), then among
    the sorted values of their buckets, as for TMM's trims.
    """
    k2 = n // 2
    k1 = k2 if n % 2 else k2 - 1
    span = largest - least
    scale = _BUCKETS / span if span > 0 else 0.0
    if not (math.isfinite(least) and math.isfinite(largest) and math.isfinite(scale)):  # a zero count: sort them
        ordered = np.sort(x[:n])
        return ordered[k2] if k1 == k2 else (ordered[k1] + ordered[k2]) / 2
    group1, below1, group2, below2 = _order_groups(x, n, least, scale, k1, k2, hist, buf)
    low, high = group1[k1 - below1], group2[k2 - below2]
    return high if k1 == k2 else (low + high) / 2


@_jit
def median_log_ratios(
    counts: np.ndarray, rows: np.ndarray, start: int, stop: int, log_geomeans: np.ndarray, table: np.ndarray,
    whole_known: bool, out: np.ndarray,
) -> bool:  # fmt: skip
    """Median over the genes ``rows`` of ``log(count) - log_geomeans`` for each column ``start:stop`` of ``counts``
    (genes x samples) into ``out``: the logarithm of DESeq2's size factor (``log_geomeans`` already restricted to
    ``rows``). The logs come from ``table``; False (``out`` unfinished) at the first tile of genes with a count not
    whole or beyond it (not checked when ``whole_known``: :func:`log_row_sums` found every count whole and inside the
    table).

    The ratios are written samples-major in tiles of genes (as :func:`tmm_columns` copies counts), each sample's
    least and largest noted on the way, then each sample's middle is selected by :func:`_middle`.
    """
    width, size = stop - start, rows.size
    ratios = np.empty((width, size))
    least, largest = np.full(width, math.inf), np.full(width, -math.inf)
    top = table.size
    whole = True
    for tile in range(0, size, _TILE):
        for j in range(width):
            low, high = least[j], largest[j]
            for g in range(tile, min(tile + _TILE, size)):
                v = counts[rows[g], start + j]
                if not whole_known:
                    whole &= (v == math.floor(v)) & (v < top)
                r = table[int(min(v, top - 1))] - log_geomeans[g]
                ratios[j, g] = r
                low, high = min(low, r), max(high, r)
            least[j], largest[j] = low, high
        if not whole:
            return False
    hist = np.empty(_BUCKETS, dtype=np.int64)
    buf = np.empty(size)
    for j in range(width):
        out[j] = _middle(ratios[j], size, least[j], largest[j], hist, buf)
    return True


# ------------------------------------------------------------------------------- upper quartiles (TMM's reference)

# Whole counts below this are counted in each sample's histogram of the upper-quartile pass (16 KB a sample).
_COUNT_BINS = 4096


@_jit
def upper_quartile_columns(
    counts: np.ndarray, start: int, stop: int, place: int, h: float, interpolate: bool, out: np.ndarray
) -> bool:
    """The upper quartile of edgeR (R's quantile type 7 at 0.75) of columns ``start:stop`` of ``counts`` into ``out``,
    before the division by the library size: the values at 0-based places ``place`` and ``place + 1`` of each
    column's sorted counts (all rows: zero rows first), ``(1 - h) * x[lo] + h * x[hi]`` where they differ (when
    ``interpolate``), as ``normalise``'s numpy path writes it, so the same bits.

    By a histogram of each column's whole counts below ``_COUNT_BINS``, read in tiles of rows (a row's columns are
    next to each other in a C-order block). False (``out`` unfinished) when a count is not whole, or a place falls
    among the larger counts: the caller then sorts.
    """
    n_rows, width = counts.shape[0], stop - start
    # counts are clamped before int(): numba's int() of a count of 2^63 or more is -2^63, an index that lands on the
    # next column's zeros (one past the block for the last column)
    hist = np.zeros((width, _COUNT_BINS + 1), dtype=np.int32)
    whole = True
    if counts.strides[0] < counts.strides[1]:
        for j in range(width):
            for g in range(n_rows):
                v = counts[g, start + j]
                whole &= v == np.floor(v)
                hist[j, int(min(v, _COUNT_BINS))] += 1
    else:
        for tile in range(0, n_rows, _TILE):
            for j in range(width):
                for g in range(tile, min(tile + _TILE, n_rows)):
                    v = counts[g, start + j]
                    whole &= v == np.floor(v)
                    hist[j, int(min(v, _COUNT_BINS))] += 1
    if not whole:
        return False
    for j in range(width):
        cum, lo, hi = 0, -1, -1
        for b in range(_COUNT_BINS):
            cum += hist[j, b]
            if lo < 0 and cum > place:
                lo = b
            if cum > place + 1:
                hi = b
                break
        if hi < 0:
            return False
        q, q_hi = float(lo), float(hi)
        out[j] = (1 - h) * q + h * q_hi if interpolate and q_hi != q else q
    return True
