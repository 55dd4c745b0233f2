"""Plots of the signatures stage as PNG bytes: enrichment dot plot, GSEA running score, signature-score heatmap.

Drawn like :mod:`transforms.report.plots` (matplotlib Agg on a private ``Figure``, no pyplot state).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from transforms.report.layer_plots import signature_heatmap
from transforms.report.plots import new_figure, short_label
from transforms.signatures.enrichment import PERMUTATIONS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TOP_SETS = 30
"""Gene sets of the ssGSEA heatmap (the study report's, which shows this PNG)."""


def _png(figure: Figure) -> bytes:
    figure.tight_layout()
    buffer = io.BytesIO()
    # tight_layout does not make room for a colour bar's label beside long y labels: the dot plot's '-log10 FDR'
    # was cut at the right edge; the picture is saved around everything drawn
    figure.savefig(buffer, format="png", bbox_inches="tight", pad_inches=0.05)
    return buffer.getvalue()


def enrichment_dot_plot(enrichment: pl.DataFrame, *, title: str, top: int = 20,
                        permutations: int = PERMUTATIONS) -> bytes:
    """The ``top`` gene sets of one contrast by FDR (any method): x = NES (prerank) or log2 fold enrichment (ORA),
    dot size = set size, colour = -log10 FDR.

    A prerank FDR of 0 means no permutation of ``permutations`` did as well: it is below 1 / permutations, not 0,
    and is drawn there (at 1e-300 a colour bar of 270-330 made 'FDR 0' read as a result of 1e-300).
    """
    rows = (enrichment.filter(pl.col("fdr").is_not_null())
            .with_columns(x=pl.when(pl.col("method") == "prerank").then(pl.col("nes"))
                          .otherwise(pl.col("es").log(2) * pl.when(pl.col("method") == "ora_down").then(-1)
                                     .otherwise(1)))
            .filter(pl.col("x").is_not_null() & pl.col("x").is_finite())
            .sort("fdr", "pvalue").head(top).reverse())
    figure = new_figure((7, 1.2 + 0.28 * max(rows.height, 1)))
    axes = figure.subplots()
    if rows.height:
        fdr = rows["fdr"].to_numpy()
        resolved = (rows["method"] == "prerank").to_numpy() & (fdr == 0)
        colour = -np.log10(np.maximum(np.where(resolved, 1 / permutations, fdr), 1e-300))
        points = axes.scatter(rows["x"].to_numpy(), np.arange(rows.height), s=10 + 2 * np.sqrt(rows["size"]) ** 2 / 4,
                              c=colour, cmap="viridis")
        figure.colorbar(points, ax=axes, label="-log10 FDR" + (f" (prerank FDR 0 at 1/{permutations})"
                                                              if resolved.any() else ""))
        labels = [short_label(f"{m}: {lib}/{g}", 70)
                  for m, lib, g in rows.select("method", "library", "gene_set").iter_rows()]
        axes.set_yticks(np.arange(rows.height), labels, fontsize=7)
        axes.axvline(0, color="black", linewidth=0.5)
    else:  # ORA with no gene at padj < 0.05 tests every set with enrichment 0: tested, but nothing to place
        axes.text(0.5, 0.5, "no gene set enriched (no gene at padj < 0.05, no prerank result)" if enrichment.height
                  else "no gene set tested", ha="center", va="center", transform=axes.transAxes)
    axes.set_xlabel("NES (prerank) / signed log2 fold enrichment (ORA)")
    axes.set_title(title, fontsize=10)
    return _png(figure)


def running_score_plot(stats: pl.DataFrame, members: list[int], *, title: str) -> bytes:
    """GSEA running enrichment score (weighted, p = 1) of ``members`` along the ranked statistic, with the hits."""
    ranked = stats.select("gene_id", "stat").drop_nulls().sort("stat", descending=True)
    hits = np.isin(ranked["gene_id"].to_numpy(), np.asarray(members, dtype=np.int64))
    weights = np.abs(ranked["stat"].to_numpy()) * hits
    n, k = len(hits), int(hits.sum())
    step = np.where(hits, weights / weights.sum() if weights.sum() > 0 else 1 / max(k, 1), -1 / max(n - k, 1))
    running = np.cumsum(step)
    figure = new_figure((6, 4))
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot(np.arange(n), running, color="#2c7fb8", linewidth=1)
    top.axhline(0, color="black", linewidth=0.5)
    top.set_ylabel("running ES")
    top.set_title(title, fontsize=9)
    bottom.vlines(np.flatnonzero(hits), 0, 1, color="black", linewidth=0.5)
    bottom.set_yticks([])
    bottom.set_xlabel("genes ranked by Wald statistic")
    return _png(figure)


def top_variable_scores(scores: pl.DataFrame, *, top: int = TOP_SETS) -> pl.DataFrame:
    """Rows of the ``top`` gene sets of largest score variance over samples (ddof 1; NULL scores left out; ties
    by library and gene set), ordered by library, gene set and sample: the selection of the report's
    ``TOP_VARIABLE_SETS`` query (``warehouse/report.py``), on one assay and method's rows.
    """
    scored = scores.filter(pl.col("score").is_not_null())
    ranked = (scored.group_by("library", "gene_set").agg(pl.col("score").var(ddof=1).alias("variance"))
              .sort(["variance", "library", "gene_set"], descending=[True, False, False], nulls_last=True)
              .head(top).select("library", "gene_set"))
    return scored.join(ranked, on=["library", "gene_set"]).sort("library", "gene_set", "sample_id")


def score_heatmap(scores: pl.DataFrame, *, title: str, top: int = TOP_SETS) -> bytes:
    """Heatmap of one assay and method's scores: the ``top`` most variable gene sets x samples (row-centred).

    The picture the study report shows (:func:`top_variable_scores`, drawn by
    :func:`transforms.report.layer_plots.signature_heatmap`): the report embeds this PNG instead of drawing it
    again (~0.28 CPU s a small study, the costliest figure of a build).
    """
    rows = top_variable_scores(scores, top=top)
    if rows.height == 0:
        figure = new_figure((5, 2))
        axes = figure.subplots()
        axes.text(0.5, 0.5, "no gene set scored", ha="center", va="center", transform=axes.transAxes)
        axes.set_axis_off()
        axes.set_title(title, fontsize=10)
        return _png(figure)
    return signature_heatmap(rows, title=title)
