"""Plots of a study's sample QC: library sizes and detected genes, correlation heatmap with dendrogram, PCA.

Drawn like :mod:`transforms.report.plots`: matplotlib's Agg backend on a private ``Figure``, PNG bytes out.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from scipy.cluster.hierarchy import dendrogram, linkage
from scipy.spatial.distance import squareform

from transforms.report.plots import new_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_PASS = "#2c7fb8"
_FAIL = "#c0392b"
_PALETTE = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"]
MAX_LABELS = 60
"""Most samples whose names a plot still writes on its axis (beyond that they overlap into a black band)."""
MAX_ANNOTATED = 40
"""Most points of a PCA plot labelled with their sample name."""


def png(figure: Figure) -> bytes:
    """The figure as PNG bytes (tight layout)."""
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _bars(axes: Axes, heights: np.ndarray, colours: list[str], *, width: float = 0.8) -> None:
    """Bars at 0..n-1 as one collection: the pixels of ``axes.bar`` (same rectangles, colours, no edge, the y axis
    stuck at 0) without an artist per bar (80 samples: ~0.1 CPU s less a figure).
    """
    x = np.arange(len(heights), dtype=float)
    low, high = x - width / 2, x + width / 2
    zero = np.zeros_like(x)
    heights = np.asarray(heights, dtype=float)
    corners = np.stack([np.c_[low, zero], np.c_[low, heights], np.c_[high, heights], np.c_[high, zero]], axis=1)
    from matplotlib.collections import PolyCollection

    bars = PolyCollection(list(corners), facecolors=colours, edgecolors="none", linewidths=0)
    bars.sticky_edges.y.append(0)
    axes.add_collection(bars)
    axes.autoscale_view()


def qc_bars(qc: pl.DataFrame, *, title: str) -> bytes:
    """Library size and detected genes per sample (one ``sample_qc`` assay), failed samples in red."""
    figure = new_figure((8, 3.6))
    left, right = figure.subplots(1, 2)
    labels = qc["sample_id"].to_list()
    colours = [_PASS if ok else _FAIL for ok in qc["qc_pass"].to_list()]
    for axes, column, label in ((left, "library_size", "library size (counts)"),
                                (right, "detected_genes", "detected genes (count > 0)")):
        _bars(axes, qc[column].to_numpy(), colours)
        if len(labels) <= MAX_LABELS:
            axes.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        else:
            axes.set_xticks([])
            axes.set_xlabel(f"{len(labels)} samples")
        axes.set_ylabel(label)
    figure.suptitle(f"{title} (red: fails QC)", fontsize=10)
    return png(figure)


def correlation_heatmap(corr: np.ndarray, labels: list[str], *, title: str) -> bytes:
    """Sample correlation heatmap ordered by an average-linkage dendrogram (1 - correlation), drawn above it."""
    figure = new_figure((6.5, 7))
    top = figure.add_axes((0.2, 0.78, 0.62, 0.15))
    heat = figure.add_axes((0.2, 0.18, 0.62, 0.6))
    bar = figure.add_axes((0.85, 0.18, 0.03, 0.6))
    distance = np.clip(1 - corr, 0, None)
    np.fill_diagonal(distance, 0)
    tree = linkage(squareform(distance, checks=False), method="average")
    order = dendrogram(tree, ax=top, no_labels=True, color_threshold=0, above_threshold_color="black")["leaves"]
    top.set_axis_off()
    image = heat.imshow(corr[np.ix_(order, order)], cmap="viridis", aspect="auto", interpolation="nearest")
    names = [labels[i] for i in order]
    if len(names) <= MAX_LABELS:
        heat.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
        heat.set_yticks(range(len(names)), names, fontsize=7)
    else:
        heat.set_xticks([])
        heat.set_yticks([])
        heat.set_xlabel(f"{len(names)} samples")
    figure.colorbar(image, cax=bar, label="Pearson r")
    top.set_title(title, fontsize=10)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def pca_scatter(scores: pl.DataFrame, *, colour: pl.Series | None, explained: list[float] | None,
                title: str) -> bytes:
    """PC1 against PC2 (``sample_id``, ``pc1``, ``pc2``), coloured by a sample attribute when given."""
    figure = new_figure((6, 4.5))
    axes = figure.subplots()
    x, y = scores["pc1"].to_numpy(), scores["pc2"].to_numpy()
    groups = colour.fill_null("NA").to_list() if colour is not None else ["samples"] * scores.height
    for i, level in enumerate(sorted(set(groups))):
        mask = np.array([g == level for g in groups])
        axes.scatter(x[mask], y[mask], s=30, color=_PALETTE[i % len(_PALETTE)], label=str(level))
    if scores.height <= MAX_ANNOTATED:
        for label, xi, yi in zip(scores["sample_id"].to_list(), x, y, strict=True):
            axes.annotate(label, (xi, yi), fontsize=6, xytext=(3, 3), textcoords="offset points")
    share = explained or []
    axes.set_xlabel("PC1" + (f" ({100 * share[0]:.0f}% variance)" if len(share) > 0 else ""))
    axes.set_ylabel("PC2" + (f" ({100 * share[1]:.0f}% variance)" if len(share) > 1 else ""))
    axes.legend(fontsize=7, title=colour.name if colour is not None else None, title_fontsize=7)
    axes.set_title(title, fontsize=10)
    return png(figure)
