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
"""

from __future__ import annotations

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


def count_metrics(counts: np.ndarray, *, mito: np.ndarray | None = None) -> CountMetrics:
    """Library size, detected genes, pct_top100 and pct_mito of each column of a features x samples count block.

    Rows with a missing cell are left out (as the normalise stage does); ``mito`` marks mitochondrial rows.
    """
    counts = np.asarray(counts, dtype=float)
    complete = ~np.isnan(counts).any(axis=1)
    used = counts[complete]
    library = used.sum(axis=0)
    detected = (used > 0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        if used.shape[0] > TOP_COUNTED:
            top = -np.sort(-used, axis=0)[:TOP_COUNTED].sum(axis=0)
            pct_top = 100 * top / library
        else:
            pct_top = np.full(used.shape[1], np.nan)
        if mito is not None and mito[complete].any():
            pct_mito = 100 * used[mito[complete]].sum(axis=0) / library
        else:
            pct_mito = np.full(used.shape[1], np.nan)
    return CountMetrics(library, detected, pct_top, pct_mito)


def top_variable(values: np.ndarray, *, top_genes: int = TOP_GENES) -> np.ndarray:
    """The ``top_genes`` rows of highest variance (ddof=1, as R's rowVars), complete rows only, most variable first."""
    values = np.asarray(values, dtype=float)
    rows = np.flatnonzero(~np.isnan(values).any(axis=1))
    if values.shape[1] < 2:
        return values[rows[:0]]
    variance = values[rows].var(axis=1, ddof=1)
    order = np.argsort(-variance, kind="stable")[:top_genes]
    return values[rows[order]]


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
                       subsample: float = SUBSAMPLE, seed: int = 1) -> Consensus | None:
    """Hierarchical and consensus clusters of the samples (columns) for k = 2 .. min(max_k, samples - 1).

    None when no k fits (fewer than 4 samples with the default subsample). The resampling is seeded, so a
    rebuild gives the same table.
    """
    n = values.shape[1]
    size = max(2, int(np.ceil(subsample * n)))
    ks = list(range(2, min(max_k, n - 1, size - 1) + 1))  # a subsample must be able to hold k + 1 samples
    if not ks:
        return None
    # rounded: two builds of the same data differ in the last bits of normalised values, and a near-tie in the
    # average linkage must not turn that into other clusters
    full = np.round(correlation_distance(correlation(values)), DISTANCE_DIGITS)
    rng = np.random.default_rng(seed)
    together = {k: np.zeros((n, n)) for k in ks}
    sampled = np.zeros((n, n))
    for _ in range(resamples):
        pick = np.sort(rng.choice(n, size=size, replace=False))
        sub = full[np.ix_(pick, pick)]
        tree = linkage(squareform(sub, checks=False), method="average")
        sampled[np.ix_(pick, pick)] += 1
        for k in ks:
            labels = _maxclust(tree, min(k, size))
            together[k][np.ix_(pick, pick)] += labels[:, None] == labels[None, :]
    upper = np.triu_indices(n, 1)
    hierarchical, consensus, pac, within = {}, {}, {}, {}
    for k in ks:
        matrix = np.divide(together[k], sampled, out=np.zeros((n, n)), where=sampled > 0)
        np.fill_diagonal(matrix, 1)
        hierarchical[k] = hierarchical_clusters(full, k=k)
        consensus[k] = hierarchical_clusters(1 - matrix, k=k)
        pairs = matrix[upper]
        pac[k] = float(((pairs > PAC_RANGE[0]) & (pairs < PAC_RANGE[1])).mean())
        same = (consensus[k][:, None] == consensus[k][None, :])[upper]
        within[k] = float(pairs[same].mean()) if same.any() else float("nan")
    chosen = min(ks, key=lambda k: (pac[k], k))
    return Consensus(ks, hierarchical, consensus, pac, within, chosen)
