"""Volcano and MA plots of one differential-expression table, as PNG bytes for asset metadata and reports.

Drawn with matplotlib's Agg backend on a private ``Figure`` (no pyplot state, no display), so plots can be made
from worker processes and tests alike.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_SIGNIFICANT = "#c0392b"
_OTHER = "#7f8c8d"
_FEW_GENES = 2000


def short_label(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters for an axis label: cut with an ellipsis, keeping a trailing
    identifier in parentheses (``... (GO:0001936)``), which tells apart sets whose names begin alike (GO biological
    process names run to 100 characters; a bare cut left ``regulation of endothelial cell proliferation (GO:0``).
    """
    if len(text) <= width:
        return text
    head, open_, tail = text.rpartition(" (")
    if open_ and tail.endswith(")") and len(tail) + 5 <= width // 2:
        keep = width - len(tail) - 3  # the ellipsis, " (" and the identifier with its ")"
        return f"{head[:keep].rstrip()}\u2026 ({tail}"
    return text[:width - 1].rstrip() + "\u2026"


def new_figure(figsize: tuple[float, float], dpi: int = 100) -> Figure:
    """A private ``Figure`` on matplotlib's Agg canvas. matplotlib is imported here, on the first plot: importing
    it costs ~0.6 CPU s a process (fonts among it), which ``omicsdw build --no-plots`` and every process that draws
    nothing would pay for nothing.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(figure)
    return figure


def volcano_plot(de: pl.DataFrame, *, title: str, padj_threshold: float = 0.05) -> bytes:
    """log2 fold change against -log10 p-value, genes with ``padj < padj_threshold`` highlighted.

    ``de`` has one row per gene with ``log2_fold_change``, ``pvalue`` and ``padj``; genes without a p-value
    (all-zero counts, Cook's outliers) cannot be placed and are left out.
    """
    shown = de.filter(pl.col("log2_fold_change").is_not_null() & pl.col("pvalue").is_not_null())
    significant = _significant(shown, padj_threshold)
    # A p-value of exactly 0 (underflow) is drawn at the smallest positive double instead of at infinity.
    y = -np.log10(np.maximum(shown["pvalue"].to_numpy(), np.finfo(float).tiny))
    return _scatter(
        shown["log2_fold_change"].to_numpy(),
        y,
        significant,
        title=f"{title}: {significant.sum()} genes at padj < {padj_threshold:g}",
        xlabel="log2 fold change",
        ylabel="-log10 p-value",
        vline=0.0,
    )


def ma_plot(de: pl.DataFrame, *, title: str, padj_threshold: float = 0.05) -> bytes:
    """Mean normalised count (log10) against log2 fold change, genes with ``padj < padj_threshold`` highlighted.

    ``de`` has one row per gene with ``base_mean``, ``log2_fold_change`` and ``padj``; all-zero genes have no
    fold change and are left out.
    """
    shown = de.filter(pl.col("log2_fold_change").is_not_null() & (pl.col("base_mean") > 0))
    significant = _significant(shown, padj_threshold)
    return _scatter(
        np.log10(shown["base_mean"].to_numpy()),
        shown["log2_fold_change"].to_numpy(),
        significant,
        title=f"{title}: {significant.sum()} genes at padj < {padj_threshold:g}",
        xlabel="log10 mean of normalised counts",
        ylabel="log2 fold change",
        hline=0.0,
    )


def _significant(de: pl.DataFrame, padj_threshold: float) -> np.ndarray:
    return (de["padj"] < padj_threshold).fill_null(False).to_numpy()


def _scatter(
    x: np.ndarray,
    y: np.ndarray,
    highlight: np.ndarray,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    vline: float | None = None,
    hline: float | None = None,
) -> bytes:
    figure = new_figure((6, 4.5))
    axes = figure.subplots()
    size = 3 if x.size > _FEW_GENES else 14  # a few hundred genes (a gene panel, a test window) stay visible
    axes.scatter(x[~highlight], y[~highlight], s=size, c=_OTHER, alpha=0.5, linewidths=0, rasterized=True)
    axes.scatter(x[highlight], y[highlight], s=size + 1, c=_SIGNIFICANT, alpha=0.8, linewidths=0, rasterized=True)
    if vline is not None:
        axes.axvline(vline, color="black", linewidth=0.5)
    if hline is not None:
        axes.axhline(hline, color="black", linewidth=0.5)
    axes.set_title(title, fontsize=10)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
