"""Plots of a study report's layer sections: signature-score heatmap, RNA-protein correlation histogram.

Drawn like :mod:`transforms.report.plots`: matplotlib's Agg backend on a private ``Figure``, PNG bytes out. Figure
sizes are capped, and sample labels are drawn only while they stay legible (``MAX_LABELS``), so a study of
thousands of samples gives a readable picture of the same size.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from transforms.report.plots import new_figure, short_label
from transforms.report.qc_plots import MAX_LABELS, png


def signature_heatmap(scores: pl.DataFrame, *, title: str) -> bytes:
    """Gene sets x samples heatmap of ``score`` (one assay and method; ``gene_set``, ``sample_id``), centred per set."""
    sets = scores["gene_set"].unique(maintain_order=True)
    samples = scores["sample_id"].unique().sort()
    matrix = np.full((sets.len(), samples.len()), np.nan)
    at = scores.select(pl.col("gene_set").replace_strict(sets, range(sets.len()), return_dtype=pl.Int64),
                       pl.col("sample_id").replace_strict(samples, range(samples.len()), return_dtype=pl.Int64))
    matrix[at["gene_set"].to_numpy(), at["sample_id"].to_numpy()] = scores["score"].to_numpy()
    matrix -= np.nanmean(matrix, axis=1, keepdims=True)
    figure = new_figure((min(14.0, 5 + 0.18 * samples.len()), 1.8 + 0.22 * sets.len()))
    axes = figure.subplots()
    limit = float(np.nanmax(np.abs(matrix))) if np.isfinite(matrix).any() else 1.0
    image = axes.imshow(matrix, aspect="auto", cmap="RdBu_r", vmin=-(limit or 1.0), vmax=limit or 1.0,
                        interpolation="nearest")
    figure.colorbar(image, ax=axes, label="score - set mean", fraction=0.04)
    axes.set_yticks(range(sets.len()), [short_label(name, 50) for name in sets.to_list()], fontsize=7)
    if samples.len() <= MAX_LABELS:
        axes.set_xticks(range(samples.len()), samples.to_list(), rotation=90, fontsize=7)
    else:
        axes.set_xticks([])
        axes.set_xlabel(f"{samples.len()} samples")
    axes.set_title(title, fontsize=10)
    return png(figure)


def correlation_histogram(r: np.ndarray, *, title: str) -> bytes:
    """Histogram of per-gene correlations in [-1, 1] with the median marked."""
    figure = new_figure((6, 3.6))
    axes = figure.subplots()
    axes.hist(r, bins=np.linspace(-1, 1, 41).tolist(), color="#2c7fb8", edgecolor="white")
    median = float(np.median(r))
    axes.axvline(median, color="#c0392b", linewidth=1.2, label=f"median r = {median:.2f}")
    axes.axvline(0, color="black", linewidth=0.5)
    axes.set_xlim(-1, 1)
    axes.set_xlabel("Spearman r (RNA vs protein, per gene)")
    axes.set_ylabel("genes")
    axes.legend(fontsize=8)
    axes.set_title(f"{title}: {r.size} genes", fontsize=10)
    return png(figure)
