"""Plots a stage shows in the Dagster UI and writes to the study's report folder."""

from __future__ import annotations

import base64
from pathlib import Path

import dagster as dg

from transforms.expression.differential import DEResult
from transforms.expression.study import PADJ
from transforms.report.plots import ma_plot, volcano_plot


def contrast_plots(contrasts: list[tuple[str, DEResult]], *, study_id: str, folder: Path) -> dict[str, object]:
    """Volcano and MA plots of each contrast: PNG files in ``folder`` and inline images for the UI."""
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
