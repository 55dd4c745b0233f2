"""Correlations and Welch t-tests per gene across samples, vectorised on dense genes x samples blocks.

Spearman is Pearson on ranks: each gene's row is ranked (average ranks for ties) over the samples where both
layers have a value, then one vectorised Pearson gives every gene at once. p-values use the t distribution with
n - 2 degrees of freedom, as ``scipy.stats.pearsonr`` (its exact beta distribution is the same) and
``scipy.stats.spearmanr`` do. Benjamini-Hochberg FDR is taken over the non-null p-values of one family.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
from scipy import stats

MIN_SAMPLES = 5
"""Samples with both values a gene needs for a correlation row."""
MIN_GROUP = 3
"""Mutated and wild-type samples (each) a Welch t-test needs; fewer gives NULL statistic and p-value."""

CORRELATION_SCHEMA = pl.Schema({"gene_id": pl.Int64, "method": pl.String, "r": pl.Float64, "pvalue": pl.Float64,
                                "fdr": pl.Float64, "n": pl.Int64})
EFFECT_SCHEMA = pl.Schema({"gene_id": pl.Int64, "n_mutated": pl.Int64, "n_wildtype": pl.Int64,
                           "mean_difference": pl.Float64, "statistic": pl.Float64, "pvalue": pl.Float64,
                           "fdr": pl.Float64})


def dense_pair(frame: pl.DataFrame, *, x: str, y: str, samples: pl.Series | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gene ids and two genes x samples blocks (NaN where a value is missing) from long ``gene_id, sample_id`` rows.

    ``samples`` (sorted, unique) fixes the column axis, so each gene's row is the same whichever genes share the
    block (row sums in numpy depend on the row's length and order): a block-wise computation then gives exactly
    the one-shot figures. Default: the samples of ``frame`` with both values.
    """
    both = frame.filter(pl.col(x).is_not_null() & pl.col(y).is_not_null()
                        & pl.col(x).is_not_nan() & pl.col(y).is_not_nan())
    genes = both["gene_id"].unique().sort()
    axis = (both["sample_id"].unique() if samples is None else samples).sort().to_numpy().astype(str)
    g = both["gene_id"].cast(pl.Int64).to_numpy()
    row = np.searchsorted(genes.to_numpy(), g)
    col = np.searchsorted(axis, both["sample_id"].to_numpy().astype(str))
    xs = np.full((len(genes), len(axis)), np.nan)
    ys = np.full((len(genes), len(axis)), np.nan)
    xs[row, col] = both[x].cast(pl.Float64).to_numpy()
    ys[row, col] = both[y].cast(pl.Float64).to_numpy()
    return genes.to_numpy(), xs, ys


def rank_rows(values: np.ndarray) -> np.ndarray:
    """Average ranks of each row over its non-NaN cells (NaN stays NaN), as ``scipy.stats.rankdata``."""
    return stats.rankdata(values, axis=1, nan_policy="omit")


def correlate_rows(x: np.ndarray, y: np.ndarray, *, method: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: r, two-sided p-value and n over the cells where both blocks have a value.

    ``x`` and ``y`` must already be NaN in the same cells. Rows where either side is constant get NaN r.
    """
    if method == "spearman":
        x, y = rank_rows(x), rank_rows(y)
    elif method != "pearson":
        raise ValueError(f"method must be 'spearman' or 'pearson', not {method!r}")
    n = np.sum(~np.isnan(x), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        xc = x - np.nanmean(x, axis=1, keepdims=True)
        yc = y - np.nanmean(y, axis=1, keepdims=True)
        sxy = np.nansum(xc * yc, axis=1)
        sxx = np.nansum(xc * xc, axis=1)
        syy = np.nansum(yc * yc, axis=1)
        r = sxy / np.sqrt(sxx * syy)
        r = np.where((sxx > 0) & (syy > 0), np.clip(r, -1.0, 1.0), np.nan)
        df = n - 2
        t = r * np.sqrt(df / ((1.0 - r) * (1.0 + r)))
        p = np.where(np.abs(r) == 1.0, 0.0, 2.0 * stats.t.sf(np.abs(t), df))
    return r, np.where(np.isnan(r), np.nan, p), n


def bh_fdr(pvalues: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values of the non-NaN entries (NaN stays NaN)."""
    out = np.full(pvalues.shape, np.nan)
    ok = ~np.isnan(pvalues)
    if ok.any():
        out[ok] = stats.false_discovery_control(pvalues[ok], method="bh")
    return out


def with_fdr(frame: pl.DataFrame, *, by: Sequence[str] = ()) -> pl.DataFrame:
    """``fdr``: BH over the non-null ``pvalue`` of each ``by`` group (one family; no ``by``: all rows), rows kept
    in their order.
    """
    indexed = frame.with_row_index("_i")
    parts = indexed.partition_by(list(by), maintain_order=True) if by and frame.height else [indexed]
    return pl.concat([part.with_columns(pl.Series("fdr", bh_fdr(part["pvalue"].cast(pl.Float64).to_numpy()),
                                                  nan_to_null=True)) for part in parts]).sort("_i").drop("_i")


def block_correlations(frame: pl.DataFrame, *, x: str, y: str, methods: tuple[str, ...] = ("spearman", "pearson"),
                       min_samples: int = MIN_SAMPLES, samples: pl.Series | None = None) -> pl.DataFrame:
    """``gene_id, method, r, pvalue, fdr, n`` of one block of genes with at least ``min_samples`` pairs; ``fdr``
    is NULL here (a family spans every block: :func:`with_fdr`); ``samples`` as in :func:`dense_pair`.
    """
    genes, xs, ys = dense_pair(frame, x=x, y=y, samples=samples)
    if len(genes) == 0:
        return pl.DataFrame(schema=CORRELATION_SCHEMA)
    keep = np.sum(~np.isnan(xs), axis=1) >= min_samples
    genes, xs, ys = genes[keep], xs[keep], ys[keep]
    parts = []
    for method in methods:
        r, p, n = correlate_rows(xs, ys, method=method)
        parts.append(pl.DataFrame({"gene_id": genes.astype(np.int64), "method": method, "r": r, "pvalue": p,
                                   "fdr": None, "n": n.astype(np.int64)}, nan_to_null=True))
    return pl.concat(parts).cast(CORRELATION_SCHEMA)  # type: ignore[arg-type]


def layer_correlations(frame: pl.DataFrame, *, x: str, y: str, methods: tuple[str, ...] = ("spearman", "pearson"),
                       min_samples: int = MIN_SAMPLES) -> pl.DataFrame:
    """``gene_id, method, r, pvalue, fdr, n`` for every gene with at least ``min_samples`` pairs of ``x`` and ``y``."""
    found = block_correlations(frame, x=x, y=y, methods=methods, min_samples=min_samples)
    return with_fdr(found, by=["method"])


def welch_rows(values: np.ndarray, group: np.ndarray, *, min_group: int = MIN_GROUP) -> dict[str, np.ndarray]:
    """Per row: Welch t-test of the cells where ``group`` is 1 against those where it is 0 (NaN cells of either
    block are left out): n of each, mean difference (1 minus 0), t and two-sided p (NULL below ``min_group``).
    """
    ok = ~np.isnan(values) & ~np.isnan(group)
    a = ok & (group == 1)
    b = ok & (group == 0)
    na, nb = a.sum(axis=1), b.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ma = np.where(a, values, 0.0).sum(axis=1) / na
        mb = np.where(b, values, 0.0).sum(axis=1) / nb
        va = np.where(a, (values - ma[:, None]) ** 2, 0.0).sum(axis=1) / (na - 1)
        vb = np.where(b, (values - mb[:, None]) ** 2, 0.0).sum(axis=1) / (nb - 1)
        se2 = va / na + vb / nb
        t = (ma - mb) / np.sqrt(se2)
        df = se2 ** 2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))
        p = 2.0 * stats.t.sf(np.abs(t), df)
    enough = (na >= min_group) & (nb >= min_group) & np.isfinite(t)
    return {"n_a": na, "n_b": nb, "mean_difference": np.where((na > 0) & (nb > 0), ma - mb, np.nan),
            "statistic": np.where(enough, t, np.nan), "pvalue": np.where(enough, p, np.nan)}


def block_effect_rows(frame: pl.DataFrame, *, value: str, min_group: int = MIN_GROUP,
                      samples: pl.Series | None = None) -> pl.DataFrame:
    """:func:`mutation_effect_rows` of one block of genes, ``fdr`` NULL (:func:`with_fdr` over every block)."""
    rows = frame.filter(pl.col("mutated").is_not_null()).with_columns(pl.col("mutated").cast(pl.Float64))
    genes, values, group = dense_pair(rows, x=value, y="mutated", samples=samples)
    if len(genes) == 0:
        return pl.DataFrame(schema=EFFECT_SCHEMA)
    out = welch_rows(values, group, min_group=min_group)
    keep = (out["n_a"] > 0) & (out["n_b"] > 0)
    return pl.DataFrame({"gene_id": genes[keep].astype(np.int64), "n_mutated": out["n_a"][keep].astype(np.int64),
                         "n_wildtype": out["n_b"][keep].astype(np.int64),
                         "mean_difference": out["mean_difference"][keep], "statistic": out["statistic"][keep],
                         "pvalue": out["pvalue"][keep], "fdr": None}, nan_to_null=True, schema=EFFECT_SCHEMA)


def mutation_effect_rows(frame: pl.DataFrame, *, value: str, min_group: int = MIN_GROUP) -> pl.DataFrame:
    """``gene_id, n_mutated, n_wildtype, mean_difference, statistic, pvalue, fdr`` for genes with at least one
    mutated and one wild-type sample with a ``value`` (samples whose status is NULL are neither).
    """
    return with_fdr(block_effect_rows(frame, value=value, min_group=min_group))
