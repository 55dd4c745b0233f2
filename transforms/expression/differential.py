"""Differential expression of one study's counts: DESeq2 1.38's Wald test, by the numpy port in ``deseq2.py``.

The design is checked first (:func:`check_design` in ``design.py``, milliseconds) so that a study with a missing
level, no residual degrees of freedom or a confounded covariate fails with a sentence a curator can act on, not a
singular-matrix traceback minutes into a fit; the design matrix is R's ``model.matrix`` of ``~ covariates + factor``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from transforms.expression.deseq2 import deseq_wald
from transforms.expression.design import (  # the design's names, as they were here before design.py
    DesignError,
    _numeric_hint,
    check_design,
    design_formula,
    design_matrix,
)
from transforms.expression.normalise import size_factors

__all__ = ["DEResult", "DesignError", "_numeric_hint", "check_design", "design_formula", "design_matrix",
           "differential_expression", "independent_filtering"]

ALPHA = 0.1
"""FDR target of independent filtering: DESeq2's ``results()`` default (pydeseq2's own default is 0.05)."""

_CHECK_ROWS = 1024
"""Genes checked at a time for negative, missing and fractional counts."""

DE_SCHEMA = {
    "feature_id": pl.String,
    "base_mean": pl.Float64,
    "log2_fold_change": pl.Float64,
    "lfc_se": pl.Float64,
    "stat": pl.Float64,
    "pvalue": pl.Float64,
    "padj": pl.Float64,
}


@dataclass(frozen=True)
class DEResult:
    """One comparison: ``table`` has one row per gene (columns of ``DE_SCHEMA``), ``parameters`` is asset metadata."""

    table: pl.DataFrame
    parameters: dict[str, object] = field(default_factory=dict)


def canonical_sample_order(samples: pl.DataFrame, *, factor: str, test: str, reference: str) -> np.ndarray:
    """Row order in which samples are fitted: reference level, test level, other levels, each by sample_id
    (or, without that column, the first column of ``samples``).

    Sums over samples round differently in another order (last-bit differences), so a study is always fitted in
    one order that does not depend on how its long table was scanned, and its table is the same bit for bit;
    reference-then-test is the order count matrices are usually written in, and the one the R reference figures
    were made with.
    """
    level = samples[factor].cast(pl.String)
    rank = pl.when(level == reference).then(0).when(level == test).then(1).otherwise(2)
    identifier = "sample_id" if "sample_id" in samples.columns else samples.columns[0]
    key = samples.select(rank.alias("rank"), pl.col(identifier).cast(pl.String).alias("id"))
    return np.lexsort((key["id"].to_numpy(), key["rank"].to_numpy()))


def differential_expression(
    counts: np.ndarray,
    *,
    genes: Sequence[str],
    samples: pl.DataFrame,
    factor: str,
    test: str,
    reference: str,
    covariates: Sequence[str] = (),
    numeric: Sequence[str] = (),
    n_cpus: int | None = None,
) -> DEResult:
    """Wald test of ``test`` vs ``reference`` on a genes x samples count block; one result row per gene.

    ``counts`` columns follow the rows of ``samples``; ``genes`` labels its rows and becomes ``feature_id``.
    Fractional counts (RSEM, salmon) are rounded to the nearest integer first, as tximport users do for DESeq2.
    ``DESeq()`` then ``results()`` with DESeq2's defaults, by :func:`transforms.expression.deseq2.deseq_wald`:
    median-of-ratios size factors, parametric dispersion trend (falling back to the mean trend where DESeq2
    would use locfit, as recorded in ``parameters``), Cook's outlier replacement and filtering, independent
    filtering at ``ALPHA``, no LFC shrinkage. Genes with all-zero counts get ``base_mean`` 0 and nulls
    elsewhere; ``padj`` is null for genes removed by independent filtering or Cook's distance, as in DESeq2's
    ``results()``. The fit runs in this process without worker processes or BLAS calls, on ``n_cpus`` threads
    (default: one per core) that each fit whole blocks of genes (the size factors' threads compute whole samples),
    so the table does not depend on the number of cores, threads or BLAS threads.
    """
    check_design(samples, factor=factor, test=test, reference=reference, covariates=covariates, numeric=numeric)
    counts = np.asarray(counts, dtype=float)
    if counts.shape != (len(genes), samples.height):
        raise ValueError(
            f"counts are {counts.shape[0]} x {counts.shape[1]} but there are {len(genes)} genes and "
            f"{samples.height} samples"
        )
    rounded = False
    for start in range(0, counts.shape[0], _CHECK_ROWS):  # a block at a time: no genes x samples temporaries
        part = counts[start : start + _CHECK_ROWS]
        if not np.isfinite(part).all() or (part < 0).any():
            raise ValueError("counts must be finite and non-negative; quarantine NaN or negative values upstream")
        rounded = rounded or bool((part % 1 != 0).any())
    if len(set(genes)) != len(genes):
        raise ValueError("gene identifiers must be unique; aggregate or resolve duplicates first")
    order = canonical_sample_order(samples, factor=factor, test=test, reference=reference)
    samples = samples[order]
    if (order != np.arange(order.size)).any():
        counts = counts[:, order]  # a copy, rounded in place
        np.rint(counts, out=counts)
    elif rounded:
        counts = np.rint(counts)

    design, names = design_matrix(samples, factor=factor, reference=reference, covariates=covariates,
                                  numeric=numeric)
    levels = samples[factor].cast(pl.String)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = deseq_wald(
            counts,
            design,
            size_factors=size_factors(counts),
            coefficient=names.index(f"{factor}[T.{test}]"),
            contrast_samples=levels.is_in([test, reference]).to_numpy(),
            two_group=not covariates and levels.n_unique() == 2,
            threads=n_cpus or os.cpu_count() or 1,
        )
    table = pl.DataFrame(
        {
            "feature_id": list(genes),
            "base_mean": fit.base_mean,
            "log2_fold_change": fit.log2_fold_change,
            "lfc_se": fit.lfc_se,
            "stat": fit.stat,
            "pvalue": fit.pvalue,
            "padj": independent_filtering(fit.pvalue, base_mean=fit.base_mean, alpha=ALPHA),
        },
        schema=DE_SCHEMA,
    ).with_columns(pl.exclude("feature_id").fill_nan(None))
    parameters: dict[str, object] = {
        "method": "DESeq2 1.38 Wald test (numpy port)",
        "design": design_formula(factor, covariates, numeric),
        "contrast": [factor, test, reference],
        "n_genes": len(genes),
        "n_samples": samples.height,
        "counts_rounded": rounded,
        # "parametric", or "mean" where DESeq2 would substitute its locfit trend
        "dispersion_trend": fit.dispersion_trend,
        "dispersion_prior_variance": fit.prior_variance,
        "dispersion_prior_rule": fit.prior_variance_rule,
        "genes_refitted_by_optim": fit.n_optim,
        "genes_not_converged": fit.n_not_converged,
        "genes_with_replaced_outliers": fit.n_replaced,
        "alpha": ALPHA,
        "cooks_filter": True,
        "independent_filter": True,
        "lfc_shrinkage": False,
        "warnings": sorted({str(w.message) for w in caught}),
    }
    return DEResult(table=table, parameters=parameters)


def independent_filtering(pvalue: np.ndarray, *, base_mean: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values after DESeq2's independent filtering on mean normalised count.

    One value per gene; NaN where the p-value is NaN or the gene falls below the chosen ``base_mean`` cutoff.
    A line-for-line port of DESeq2 1.38 ``pvalueAdjustment``: 50 quantile cutoffs, rejections at ``alpha``
    smoothed by R's ``lowess(f = 1/5)``, and the first cutoff whose rejections exceed the smoothed maximum
    minus the residual RMSE. statsmodels' lowess reproduces R's ``lowess`` (pydeseq2 0.5.4's own lowess picks a
    different cutoff: pasilla, 475 more genes without padj).
    """
    from scipy.stats import false_discovery_control
    from statsmodels.nonparametric.smoothers_lowess import lowess

    lower = float(np.mean(base_mean == 0))
    theta = np.linspace(lower, 0.95 if lower < 0.95 else 1.0, 50)
    cutoffs = np.quantile(base_mean, theta)
    tested = ~np.isnan(pvalue)
    padj = np.full((len(pvalue), len(theta)), np.nan)
    for j, cutoff in enumerate(cutoffs):
        use = tested & (base_mean >= cutoff)
        if use.any():
            padj[use, j] = false_discovery_control(pvalue[use], method="bh")
    rejections = (padj < alpha).sum(axis=0)
    if rejections.max() <= 10:
        return padj[:, 0]
    fit = lowess(rejections, theta, frac=1 / 5, it=3, delta=0.01 * np.ptp(theta), return_sorted=False)
    residual = rejections[rejections > 0] - fit[rejections > 0]
    above = np.flatnonzero(rejections > fit.max() - np.sqrt(np.mean(residual**2)))
    return padj[:, above[0] if above.size else 0]
