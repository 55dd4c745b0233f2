"""Plots a stage shows in the Dagster UI and writes to the study's report folder.

``draw=False`` (a build without plots: ``WarehouseResource.plots``) draws nothing and deletes the stage's earlier
PNGs of the study, so the report never shows plots of older results.
"""

from __future__ import annotations

import base64
from pathlib import Path

import dagster as dg
import polars as pl

from transforms.expression.differential import DEResult
from transforms.expression.study import PADJ
from transforms.report.plots import ma_plot, volcano_plot
from transforms.signatures.enrichment import PERMUTATIONS
from transforms.signatures.plots import enrichment_dot_plot, running_score_plot, score_heatmap

CONTRAST_PNGS = ("*_volcano.png", "*_ma.png")
SCORE_PNGS = ("*_ssgsea_heatmap.png",)
ENRICHMENT_PNGS = ("*_enrichment_dots.png", "*_running_score_*.png")


def _undrawn(folder: Path, patterns: tuple[str, ...]) -> dict[str, object]:
    for pattern in patterns:
        for path in folder.glob(pattern):
            path.unlink(missing_ok=True)
    return {}


def contrast_plots(contrasts: list[tuple[str, DEResult]], *, study_id: str, folder: Path,
                   draw: bool = True) -> dict[str, object]:
    """Volcano and MA plots of each contrast: PNG files in ``folder`` and inline images for the UI."""
    if not draw:
        return _undrawn(folder, CONTRAST_PNGS)
    metadata: dict[str, object] = {}
    for name, result in contrasts:
        for kind, plot in (("volcano", volcano_plot), ("ma", ma_plot)):
            png = plot(result.table, title=f"{study_id}: {name}", padj_threshold=PADJ)
            path = folder / f"{name}_{kind}.png"
            path.write_bytes(png)
            encoded = base64.b64encode(png).decode()
            image = f"![{kind} plot of {name}](data:image/png;base64,{encoded})"
            metadata[f"{name}.{kind}"] = dg.MetadataValue.md(image)
            metadata[f"{name}.{kind}_png"] = dg.MetadataValue.path(str(path))
    return metadata


def _show(metadata: dict[str, object], key: str, png: bytes, path: Path, label: str) -> None:
    path.write_bytes(png)
    encoded = base64.b64encode(png).decode()
    metadata[key] = dg.MetadataValue.md(f"![{label}](data:image/png;base64,{encoded})")
    metadata[f"{key}_png"] = dg.MetadataValue.path(str(path))


def score_plots(scores: pl.DataFrame, *, study_id: str, folder: Path, draw: bool = True) -> dict[str, object]:
    """A heatmap of the most variable ssGSEA scores per assay (PNG in ``folder`` and inline): the study report's
    picture, which the report embeds.
    """
    if not draw:
        return _undrawn(folder, SCORE_PNGS)
    metadata: dict[str, object] = {}
    for (assay,), part in scores.filter(pl.col("method") == "ssgsea").group_by("assay", maintain_order=True):
        png = score_heatmap(part, title=f"{study_id} / {assay}: ssGSEA")
        _show(metadata, f"{assay}.ssgsea_heatmap", png, folder / f"{assay}_ssgsea_heatmap.png", "score heatmap")
    return metadata


def enrichment_plots(enrichment: pl.DataFrame, statistics: dict[str, pl.DataFrame],
                     members: dict[str, dict[str, list[str]]], *, study_id: str, folder: Path,
                     running: int = 3, draw: bool = True, permutations: int = PERMUTATIONS) -> dict[str, object]:
    """Per contrast: a dot plot of the top gene sets and running-score plots of the ``running`` top prerank sets
    (``permutations``: prerank's, the resolution of its p-values and FDRs).
    """
    if not draw:
        return _undrawn(folder, ENRICHMENT_PNGS)
    metadata: dict[str, object] = {}
    for contrast, stats in statistics.items():
        rows = enrichment.filter(pl.col("contrast") == contrast)
        _show(metadata, f"{contrast}.enrichment_dots", enrichment_dot_plot(rows, title=f"{study_id}: {contrast}",
                                                                              permutations=permutations),
              folder / f"{contrast}_enrichment_dots.png", "enrichment dot plot")
        top = rows.filter(pl.col("method") == "prerank").sort("fdr", "pvalue").head(running)
        for i, row in enumerate(top.iter_rows(named=True), start=1):
            genes = [int(g) for g in members.get(row["library"], {}).get(row["gene_set"], [])]
            png = running_score_plot(stats, genes, title=f"{contrast}: {row['gene_set'][:60]} "
                                                         f"(NES {row['nes']:.2f}, FDR {row['fdr']:.2g})")
            _show(metadata, f"{contrast}.running_score_{i}", png, folder / f"{contrast}_running_score_{i}.png",
                  "running score")
    return metadata
