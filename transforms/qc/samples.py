"""Sample QC, PCA and clustering of one study assay, on dense blocks (features x samples).

Thresholds follow scater's ``perCellQCFilters`` / ``isOutlier`` (as nf-core pipelines do): a sample is flagged when
it lies more than ``nmads`` median absolute deviations (MAD scaled by 1.4826, R's ``mad``) from the study's median,
on the side that means trouble:

- ``low_library_size``: log library size below median - nmads x MAD;
- ``low_detected_genes``: log detected genes (count > 0) below median - nmads x MAD;
- ``high_pct_mito``: percent of counts on mitochondrial genes above median + nmads x MAD (only when the assay has
  mitochondrial genes);
- ``low_correlation``: median Pearson correlation with the other samples below median - nmads x MAD;
- ``pca_outlier``: distance from the study's median in PCA space above median + nmads x MAD.

With a MAD of zero only samples exactly at the median pass, as in scater. PCA (:func:`pca`) is DESeq2 ``plotPCA``:
the ``top_genes`` (500) most variable rows of a log-scale block (VST, else log2 CPM), centred per gene, unscaled.
Clustering (:func:`consensus_clusters`) is ConsensusClusterPlus-like (Monti et al. 2003): average-linkage
hierarchical clustering on 1 - Pearson correlation, repeated on 80% subsamples; the consensus matrix is clustered
the same way, and k is chosen by the lowest proportion of ambiguous clustering (PAC, Senbabaoglu et al. 2014).

Bounded memory at any width (a 20,000 x 20,000 block is 3.2 GB): per-sample metrics are computed over blocks of
sample columns and gene variances over blocks of gene rows (``block_cells`` cells at a time), each block laid out as
the whole-block computation would lay it out, so the results are bit-identical whatever the block size; median
correlations come from the whole n x n matrix up to ``CORRELATION_BLOCK`` samples (as before), above from blocks of
its rows (``block_cells`` cells). PCA is unchanged: it is an SVD of samples x ``top_genes``, linear in samples.
Sample x sample structures do not scale, so above ``CONSENSUS_MAX_SAMPLES`` samples :func:`consensus_clusters`
clusters a fixed-seed subsample of that many and assigns every other sample to the cluster whose centroid it
correlates with most (below it, nothing changes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.cluster import _hierarchy
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform
from scipy.stats import median_abs_deviation

TOP_GENES = 500
"""Most variable genes used for PCA, correlation and clustering (DESeq2 plotPCA ``ntop``)."""
TOP_COUNTED = 100
"""pct_top100: share of the library in this many most counted features (scater's ``percent.top``)."""
MAX_COMPONENTS = 10
MAX_K = 6
RESAMPLES = 100
SUBSAMPLE = 0.8
PAC_RANGE = (0.1, 0.9)
BLOCK_CELLS = 10_000_000
"""Cells (80 MB of float64) per block of the per-sample metric and per-gene variance passes."""
CORRELATION_BLOCK = 2000
"""Up to this many samples median correlations come from the whole n x n matrix; above, from blocks of rows."""
CONSENSUS_MAX_SAMPLES = 2000
"""Above this many samples consensus clustering runs on a fixed-seed subsample of this many (n x n matrices per k
would need ~22 GB at 20,000 samples); the other samples join the nearest cluster centroid."""


def mad_outliers(values: np.ndarray, *, nmads: float, side: str, log: bool = False) -> np.ndarray:
    """Boolean mask of values beyond ``nmads`` scaled MADs from the median (``side`` 'lower' or 'higher').

    NaN values are never outliers and do not count towards the median. ``log`` takes log1p first (scater's
    ``log=TRUE`` on library sizes and detected genes).
    """
    x = np.log1p(values) if log else np.asarray(values, dtype=float)
    ok = ~np.isnan(x)
    if not ok.any():
        return np.zeros(x.shape, dtype=bool)
    centre = np.median(x[ok])
    spread = median_abs_deviation(x[ok], scale="normal")
    with np.errstate(invalid="ignore"):
        out = x < centre - nmads * spread if side == "lower" else x > centre + nmads * spread
    return out & ok


@dataclass(frozen=True)
class CountMetrics:
    """Per-sample metrics of a count block: arrays over the block's columns (NaN where undefined)."""

    library_size: np.ndarray
    detected_genes: np.ndarray
    pct_top100: np.ndarray
    pct_mito: np.ndarray


def take_part(values: np.ndarray, rows: np.ndarray | None, cols: np.ndarray) -> np.ndarray:
    """``values[rows][:, cols]`` as a C-order float64 copy: the layout ``values[rows]`` has, so column sums and row
    variances of a part are bit-identical to those of the whole block.
    """
    columns = _run(cols)
    if rows is None:
        return np.ascontiguousarray(values[:, columns], dtype=np.float64)
    if isinstance(columns, slice) and isinstance(run := _run(rows), slice):  # a view, then one copy
        return np.asarray(values[run, columns], dtype=np.float64, order="C")
    return np.asarray(values[np.ix_(rows, cols)], dtype=np.float64, order="C")


def _run(index: np.ndarray) -> np.ndarray | slice:
    """``index`` as a slice when it is a run of consecutive positions (a view of the block, not a gathered copy)."""
    if index.size and index[-1] - index[0] == index.size - 1 and (index.size < 3 or bool((np.diff(index) == 1).all())):
        return slice(int(index[0]), int(index[-1]) + 1)
    return index


def index_blocks(n: int, size: int) -> list[np.ndarray]:
    """Consecutive index ranges of at most ``size`` (at least 1) covering 0 .. n - 1."""
    size = max(1, size)
    return [np.arange(start, min(start + size, n)) for start in range(0, n, size)]


def complete_rows(values: np.ndarray, *, columns: np.ndarray | None = None,
                  block_cells: int = BLOCK_CELLS) -> np.ndarray:
    """Indices of the rows without a missing cell in ``columns`` (all by default), read a block of columns at a time."""
    cols = np.arange(values.shape[1]) if columns is None else np.asarray(columns)
    missing = np.zeros(values.shape[0], dtype=bool)
    for part in index_blocks(cols.size, block_cells // max(values.shape[0], 1)):
        missing |= np.isnan(values[:, _run(cols[part])]).any(axis=1)
    return np.flatnonzero(~missing)


def _top_sum(used: np.ndarray, top: int) -> np.ndarray:
    """Per column, the sum of its ``top`` largest values, largest first (as ``-sort(-x)[:top].sum()``, same bits).

    ``used`` may be in either layout (a Fortran-order view of the block partitions each column in contiguous
    memory, ~4x faster than the C-order copy); the ``top`` values are summed in the same order and layout either
    way, so the sums are the same bits.
    """
    largest = np.ascontiguousarray(np.partition(used, used.shape[0] - top, axis=0)[used.shape[0] - top:])
    return -np.sort(-largest, axis=0).sum(axis=0)


def count_metrics(counts: np.ndarray, *, mito: np.ndarray | None = None,
                  block_cells: int = BLOCK_CELLS) -> CountMetrics:
    """Library size, detected genes, pct_top100 and pct_mito of each column of a features x samples count block.

    Rows with a missing cell are left out (as the normalise stage does); ``mito`` marks mitochondrial rows. Reads
    ``block_cells`` cells of sample columns at a time (a memory-mapped block is never copied whole).
    """
    n_cols = counts.shape[1]
    rows = complete_rows(counts, block_cells=block_cells)
    is_mito = None if mito is None or not mito[rows].any() else mito[rows]
    library, detected = np.zeros(n_cols), np.zeros(n_cols, dtype=np.int64)
    pct_top, pct_mito = np.full(n_cols, np.nan), np.full(n_cols, np.nan)
    for cols in index_blocks(n_cols, block_cells // max(rows.size, 1)):
        used = take_part(counts, rows, cols)
        library[cols] = used.sum(axis=0)
        detected[cols] = (used > 0).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            if rows.size > TOP_COUNTED:
                whole = (rows.size == counts.shape[0] and counts.dtype == np.float64
                         and isinstance(run := _run(cols), slice))
                pct_top[cols] = 100 * _top_sum(counts[:, run] if whole else used, TOP_COUNTED) / library[cols]
            if is_mito is not None:
                pct_mito[cols] = 100 * used[is_mito].sum(axis=0) / library[cols]
    return CountMetrics(library, detected, pct_top, pct_mito)


def top_variable(values: np.ndarray, *, top_genes: int = TOP_GENES, columns: np.ndarray | None = None,
                 transform: Callable[[np.ndarray], np.ndarray] | None = None,
                 block_cells: int = BLOCK_CELLS) -> np.ndarray:
    """The ``top_genes`` rows of highest variance (ddof=1, as R's rowVars), complete rows only, most variable first.

    ``columns`` (all by default) are the samples; ``transform`` maps a block of rows over those columns cell by cell
    (e.g. counts to log2 CPM) before the variance. Variances are taken over ``block_cells`` cells of whole rows at a
    time, laid out as ``values[rows]`` is, so the choice is the same as one pass over the whole block.
    """
    cols = np.arange(values.shape[1]) if columns is None else np.asarray(columns)
    rows = complete_rows(values, columns=cols, block_cells=block_cells)
    if cols.size < 2:
        return np.empty((0, cols.size))
    apply = transform or (lambda part: part)
    variance = np.concatenate([apply(take_part(values, rows[part], cols)).var(axis=1, ddof=1)
                               for part in index_blocks(rows.size, block_cells // cols.size)] or [np.empty(0)])
    order = np.argsort(-variance, kind="stable")[:top_genes]
    return apply(take_part(values, rows[order], cols))


@dataclass(frozen=True)
class Pca:
    """Sample scores (samples x components) and the fraction of variance each component explains."""

    scores: np.ndarray
    explained: np.ndarray


def pca(values: np.ndarray, *, max_components: int = MAX_COMPONENTS) -> Pca:
    """PCA of the samples (columns) of a genes x samples block: centred per gene, unscaled (prcomp on t(block)).

    Keeps at most ``min(samples - 1, max_components)`` components. Signs are fixed so that each component's
    loading of largest magnitude is positive.
    """
    x = np.asarray(values, dtype=float).T
    x = x - x.mean(axis=0)
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    n = min(x.shape[0] - 1, max_components, s.size)
    signs = np.sign(vt[np.arange(vt.shape[0]), np.abs(vt).argmax(axis=1)])
    signs[signs == 0] = 1
    scores = (u * s) * signs
    total = (s ** 2).sum()
    explained = (s ** 2) / total if total > 0 else np.zeros_like(s)
    return Pca(scores[:, :n], explained[:n])


def correlation(values: np.ndarray) -> np.ndarray:
    """Pearson correlation between the samples (columns) of a genes x samples block."""
    return np.corrcoef(np.asarray(values, dtype=float), rowvar=False)


def median_correlation(corr: np.ndarray) -> np.ndarray:
    """Each sample's median correlation with the other samples."""
    n = corr.shape[0]
    if n < 2:
        return np.full(n, np.nan)
    off = ~np.eye(n, dtype=bool)
    return np.array([np.median(corr[i, off[i]]) for i in range(n)])


def median_correlations(values: np.ndarray, *, whole_up_to: int = CORRELATION_BLOCK,
                        block_cells: int = BLOCK_CELLS) -> np.ndarray:
    """Each sample's median Pearson correlation with the other samples (columns) of a genes x samples block.

    Up to ``whole_up_to`` samples this is :func:`median_correlation` of :func:`correlation` (the whole n x n
    matrix); above, the correlation rows of as many samples as fit ``block_cells`` cells at a time, equal to the
    whole matrix's rows up to floating-point rounding of the matrix product.
    """
    n = values.shape[1]
    if n <= whole_up_to:
        return median_correlation(correlation(values))
    x = np.asarray(values, dtype=float).T
    x = x - x.mean(axis=1, keepdims=True)
    scale = 1 / np.sqrt(np.einsum("ij,ij->i", x, x))
    out = np.empty(n)
    for rows in index_blocks(n, block_cells // n):
        corr = (x[rows] @ x.T) * scale[rows, None] * scale[None, :]
        np.clip(corr, -1, 1, out=corr)
        off = np.ones(corr.shape, dtype=bool)
        off[np.arange(rows.size), rows] = False
        out[rows] = np.median(corr[off].reshape(rows.size, n - 1), axis=1)
    return out


def pca_distance(scores: np.ndarray) -> np.ndarray:
    """Euclidean distance of each sample from the component-wise median of the scores."""
    if scores.size == 0:
        return np.full(scores.shape[0], np.nan)
    return np.sqrt(((scores - np.median(scores, axis=0)) ** 2).sum(axis=1))


def _renumber(labels: np.ndarray) -> np.ndarray:
    """Cluster labels 1..k in order of first appearance, so equal partitions give equal labels."""
    seen: dict[int, int] = {}
    return np.array([seen.setdefault(int(label), len(seen) + 1) for label in labels])


def hierarchical_clusters(distance: np.ndarray, *, k: int) -> np.ndarray:
    """Average-linkage clusters (1..k) of a square distance matrix."""
    tree = linkage(squareform(distance, checks=False), method="average")
    return _renumber(fcluster(tree, t=k, criterion="maxclust"))


def correlation_distance(corr: np.ndarray) -> np.ndarray:
    """1 - Pearson correlation as a square distance matrix (zero diagonal, never negative)."""
    distance = np.clip(1 - corr, 0, None)
    np.fill_diagonal(distance, 0)
    return distance


@dataclass(frozen=True)
class Consensus:
    """Per k: hierarchical and consensus labels, the PAC and mean within-cluster consensus; the chosen k."""

    ks: list[int]
    hierarchical: dict[int, np.ndarray]
    consensus: dict[int, np.ndarray]
    pac: dict[int, float]
    within: dict[int, float]
    chosen_k: int


def _maxclust(tree: np.ndarray, k: int) -> np.ndarray:
    """``fcluster(tree, t=k, criterion="maxclust")`` of a tree ``linkage`` just made, without fcluster's linkage
    validation, which is ~60 % of a small study's consensus clustering (500 cuts of 80-sample trees); the same
    compiled routine fcluster calls, so the same labels (scipy is pinned in uv.lock; a test compares).
    """
    labels = np.zeros(tree.shape[0] + 1, dtype="i")
    _hierarchy.cluster_maxclust_dist(np.ascontiguousarray(tree, dtype=np.float64), labels, tree.shape[0] + 1, k)
    return labels


DISTANCE_DIGITS = 10
"""Decimals kept of correlation distances before clustering (last-bit noise between builds is far below)."""


def consensus_clusters(values: np.ndarray, *, max_k: int = MAX_K, resamples: int = RESAMPLES,
                       subsample: float = SUBSAMPLE, seed: int = 1,
                       max_samples: int = CONSENSUS_MAX_SAMPLES) -> Consensus | None:
    """Hierarchical and consensus clusters of the samples (columns) for k = 2 .. min(max_k, samples - 1).

    None when no k fits (fewer than 4 samples with the default subsample). The resampling is seeded, so a
    rebuild gives the same table. Above ``max_samples`` samples, both clusterings, the PAC and the within-cluster
    consensus are those of a fixed-seed subsample of ``max_samples`` samples (:func:`assign_to_centroids` places
    the others); at or below it every sample is clustered.
    """
    n = values.shape[1]
    if n <= max_samples:
        return _consensus_clusters(values, max_k=max_k, resamples=resamples, subsample=subsample, seed=seed)
    chosen = np.sort(np.random.default_rng(seed).choice(n, size=max_samples, replace=False))
    found = _consensus_clusters(values[:, chosen], max_k=max_k, resamples=resamples, subsample=subsample,
                                seed=seed)
    if found is None:
        return None
    hierarchical = {k: assign_to_centroids(values, chosen, labels) for k, labels in found.hierarchical.items()}
    consensus = {k: assign_to_centroids(values, chosen, labels) for k, labels in found.consensus.items()}
    return Consensus(found.ks, hierarchical, consensus, found.pac, found.within, found.chosen_k)


def assign_to_centroids(values: np.ndarray, chosen: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Clusters of every sample (column) of ``values``: the ``chosen`` columns keep their ``labels``; every other
    sample joins the cluster whose centroid (mean of its members' values) it has the highest Pearson correlation
    with (1 - r is the clustering's distance; ties go to the lower label). Renumbered 1..k by first sample.
    """
    values = np.asarray(values, dtype=float)
    ks = np.unique(labels)
    centroids = np.stack([values[:, chosen[labels == k]].mean(axis=1) for k in ks], axis=1)
    others = np.setdiff1d(np.arange(values.shape[1]), chosen)
    x = values[:, others] - values[:, others].mean(axis=0)
    c = centroids - centroids.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (x.T @ c) / np.outer(np.sqrt((x ** 2).sum(axis=0)), np.sqrt((c ** 2).sum(axis=0)))
    full = np.zeros(values.shape[1], dtype=np.int64)
    full[chosen] = labels
    full[others] = ks[np.argmax(np.nan_to_num(r, nan=-np.inf), axis=1)]
    return _renumber(full)


def _consensus_clusters(values: np.ndarray, *, max_k: int, resamples: int, subsample: float,
                        seed: int) -> Consensus | None:
    n = values.shape[1]
    size = max(2, int(np.ceil(subsample * n)))
    ks = list(range(2, min(max_k, n - 1, size - 1) + 1))  # a subsample must be able to hold k + 1 samples
    if not ks:
        return None
    # rounded: two builds of the same data differ in the last bits of normalised values, and a near-tie in the
    # average linkage must not turn that into other clusters
    full = np.round(correlation_distance(correlation(values)), DISTANCE_DIGITS)
    rng = np.random.default_rng(seed)
    # Who was drawn in each resample, and (per k) a one-hot column per resample and cluster: the pair counts are
    # then one matrix product each (``picked @ picked.T``: times drawn together; ``members @ members.T``: times
    # clustered together) instead of 100 n x n fancy-indexed additions per k. 0/1 products summed up to
    # ``resamples`` times are exact in float32 (integers below 2**24), so the counts are the loop's, bit for bit.
    picked = np.zeros((n, resamples), dtype=np.float32)
    members = {k: np.zeros((n, resamples * k), dtype=np.float32) for k in ks}
    for r in range(resamples):
        pick = np.sort(rng.choice(n, size=size, replace=False))
        sub = full[np.ix_(pick, pick)]
        tree = linkage(squareform(sub, checks=False), method="average")
        picked[pick, r] = 1
        for k in ks:
            labels = _maxclust(tree, min(k, size))  # 1 .. at most k
            members[k][pick, r * k + labels - 1] = 1
    sampled = (picked @ picked.T).astype(np.float64)
    together = {k: (members[k] @ members[k].T).astype(np.float64) for k in ks}
    whole_tree = linkage(squareform(full, checks=False), method="average")
    upper = np.triu_indices(n, 1)
    hierarchical, consensus, pac, within = {}, {}, {}, {}
    for k in ks:
        matrix = np.divide(together[k], sampled, out=np.zeros((n, n)), where=sampled > 0)
        np.fill_diagonal(matrix, 1)
        hierarchical[k] = _renumber(_maxclust(whole_tree, k))  # = hierarchical_clusters(full, k=k), one tree
        consensus[k] = hierarchical_clusters(1 - matrix, k=k)
        pairs = matrix[upper]
        pac[k] = float(((pairs > PAC_RANGE[0]) & (pairs < PAC_RANGE[1])).mean())
        same = (consensus[k][:, None] == consensus[k][None, :])[upper]
        within[k] = float(pairs[same].mean()) if same.any() else float("nan")
    chosen = min(ks, key=lambda k: (pac[k], k))
    return Consensus(ks, hierarchical, consensus, pac, within, chosen)
