"""A study's HTML report and the warehouse's index of reports: self-contained pages that open offline from a file.

Plots are PNGs embedded as ``data:`` URIs, tables are plain HTML, the style sheet is inline: no script, no font,
no network request. :func:`study_report_html` takes what the report shows (already read from the catalog) and
returns the page; sections whose data the study lacks say so instead of disappearing, except the optional ones
(enrichment, signatures, RNA-protein correlation), which appear only when the catalog has their view.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field

import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from transforms.qc import samples as qc
from transforms.report.qc_plots import correlation_heatmap, pca_scatter, qc_bars

MAX_TABLE_ROWS = 200
"""Rows shown of a table section (the rest are in the catalog)."""

SECTIONS = ("summary", "sample-qc", "correlation", "pca", "clusters", "differential-expression", "omics-coverage")
"""Ids of the sections every report has, in page order (the optional ones follow)."""

_STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; padding-top: 0.5em; }
table { border-collapse: collapse; font-size: 0.8em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: left; }
th { background: #f3f3f3; } tr.fail td { background: #fdecea; }
img { max-width: 100%; border: 1px solid #eee; margin: 4px 0; }
.note { color: #666; font-size: 0.9em; } nav a { margin-right: 1em; } .wide { overflow-x: auto; }
"""


@dataclass(frozen=True)
class StudyReportData:
    """Everything a study report shows, as read from the catalog (one study's rows of each view)."""

    study_id: str
    name: str
    sample_qc: pl.DataFrame
    vst: pl.DataFrame
    """``assay``, ``sample_id``, ``feature_id``, ``value``: log-scale values the correlation heatmap uses."""
    embeddings: pl.DataFrame
    clusters: pl.DataFrame
    attributes: pl.DataFrame
    coverage: pl.DataFrame
    colour_by: str | None = None
    top_genes: int = qc.TOP_GENES
    explained: dict[str, list[float]] = field(default_factory=dict)
    contrast_plots: list[tuple[str, bytes]] = field(default_factory=list)
    """(file name, PNG bytes) of the DE stage's volcano and MA plots."""
    optional: dict[str, pl.DataFrame] = field(default_factory=dict)
    """View name -> rows of the optional sections whose view the catalog has."""
    images: dict[str, bytes] = field(default_factory=dict)
    """Extra plots (name -> PNG), e.g. a signature heatmap made by the caller."""


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() and abs(value) >= 1e4 else f"{value:.4g}"
    if isinstance(value, list):
        return html.escape(", ".join(str(v) for v in value))
    return html.escape(str(value))


def html_table(frame: pl.DataFrame, *, max_rows: int = MAX_TABLE_ROWS, row_class: str | None = None) -> str:
    """An HTML table of ``frame`` (first ``max_rows`` rows); ``row_class`` names a boolean column marking failures."""
    shown = frame.head(max_rows)
    columns = [c for c in shown.columns if c != row_class]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in shown.iter_rows(named=True):
        marker = ' class="fail"' if row_class is not None and row[row_class] is False else ""
        body.append(f"<tr{marker}>" + "".join(f"<td>{_cell(row[c])}</td>" for c in columns) + "</tr>")
    more = (f'<p class="note">{frame.height - max_rows} more rows in the catalog.</p>'
            if frame.height > max_rows else "")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{html.escape(title)}</h2>{body}</section>'


def _none(what: str) -> str:
    return f'<p class="note">{html.escape(what)}</p>'


def _assays(frame: pl.DataFrame) -> list[str]:
    return sorted(frame["assay"].unique().to_list()) if frame.height else []


def _qc_section(data: StudyReportData) -> str:
    if data.sample_qc.height == 0:
        return _none("No count assay: sample QC needs raw RNA counts.")
    parts = []
    for assay in _assays(data.sample_qc):
        rows = data.sample_qc.filter(pl.col("assay") == assay).sort("sample_id")
        failed = rows.filter(~pl.col("qc_pass")).height
        parts.append(f"<h3>{html.escape(assay)}</h3><p>{rows.height} samples, {failed} failing QC.</p>"
                     + _img(qc_bars(rows, title=f"{data.study_id} / {assay}"), f"library sizes of {assay}")
                     + html_table(rows.drop("study_id", "assay", strict=False), row_class="qc_pass"))
    return "".join(parts)


def _correlation_section(data: StudyReportData) -> str:
    if data.vst.height == 0:
        return _none("No normalised count values: nothing to correlate.")
    parts = []
    for assay in _assays(data.vst):
        wide = (data.vst.filter(pl.col("assay") == assay)
                .pivot(on="sample_id", index="feature_id", values="value", aggregate_function="first"))
        labels = [c for c in wide.columns if c != "feature_id"]
        if len(labels) < 2:
            parts.append(_none(f"{assay}: fewer than two samples."))
            continue
        top = qc.top_variable(wide.select(labels).to_numpy().astype(float), top_genes=data.top_genes)
        corr = qc.correlation(top)
        parts.append(f"<h3>{html.escape(assay)}</h3><p>Pearson correlation over the {top.shape[0]} most variable "
                     "genes; samples ordered by average-linkage clustering on 1 - r.</p>"
                     + _img(correlation_heatmap(corr, labels, title=f"{data.study_id} / {assay}"),
                            f"correlation heatmap of {assay}"))
    return "".join(parts)


def _colour(data: StudyReportData, samples: pl.Series) -> pl.Series | None:
    if data.colour_by is None:
        return None
    values = data.attributes.filter(pl.col("attribute") == data.colour_by).select("sample_id", "value")
    joined = samples.to_frame().join(values, on="sample_id", how="left", maintain_order="left")
    return joined["value"].alias(data.colour_by)


def _pca_section(data: StudyReportData) -> str:
    if data.embeddings.height == 0:
        return _none("No PCA: it needs a count assay with at least two samples.")
    parts = []
    for assay in _assays(data.embeddings):
        wide = (data.embeddings.filter(pl.col("assay") == assay, pl.col("method") == "pca",
                                       pl.col("component") <= 2)
                .pivot(on="component", index="sample_id", values="value").sort("sample_id"))
        wide = wide.rename({c: f"pc{c}" for c in wide.columns if c != "sample_id"})
        if "pc2" not in wide.columns:
            wide = wide.with_columns(pl.lit(0.0).alias("pc2"))
        colour = _colour(data, wide["sample_id"])
        note = f"coloured by {data.colour_by}" if data.colour_by else "no sample attribute to colour by"
        parts.append(f"<h3>{html.escape(assay)}</h3><p>PCA of the (at most) {data.top_genes} most variable genes; "
                     f"{html.escape(note)}.</p>"
                     + _img(pca_scatter(wide, colour=colour, explained=data.explained.get(assay),
                                        title=f"{data.study_id} / {assay}"), f"PCA of {assay}"))
    return "".join(parts)


def _clusters_section(data: StudyReportData) -> str:
    if data.clusters.height == 0:
        return _none("No clusters: clustering needs a count assay with at least three samples.")
    wide = (data.clusters.with_columns(pl.format("{}_k{}", "method", "k").alias("clustering"))
            .pivot(on="clustering", index=["assay", "sample_id"], values="cluster").sort("assay", "sample_id"))
    ordered = sorted((c for c in wide.columns if c not in {"assay", "sample_id"}),
                     key=lambda c: (c.split("_k")[0], int(c.split("_k")[1])))
    return ("<p>Average-linkage hierarchical clusters (1 - Pearson r) and consensus clusters (Monti 2003, 80% "
            "subsamples) for each k; the chosen k and its stability are in the Dagster metadata.</p>"
            + html_table(wide.select("assay", "sample_id", *ordered)))


def _contrast_section(data: StudyReportData) -> str:
    if not data.contrast_plots:
        return _none("No differential-expression plots (no contrast in study.yaml, or no count assay).")
    return "".join(f"<h3>{html.escape(name)}</h3>" + _img(png, name) for name, png in data.contrast_plots)


def _coverage_section(coverage: pl.DataFrame) -> str:
    """Samples per layer first (a study may have hundreds of samples), then the per-sample table."""
    if coverage.height == 0:
        return _none("No samples.")
    layers = [c for c in coverage.columns if c.startswith("has_")]
    per_layer = pl.DataFrame({"layer": [c.removeprefix("has_") for c in layers],
                              "samples": [int(coverage[c].sum()) for c in layers]})
    return (f"<p>{coverage.height} samples; samples with each layer:</p>" + html_table(per_layer)
            + '<div class="wide">' + html_table(coverage.drop("study_id", strict=False)) + "</div>")


def _optional_section(name: str, rows: pl.DataFrame, image: bytes | None) -> str:
    body = (_img(image, name) if image is not None else "") + (html_table(rows, max_rows=50) if rows.height
                                                               else _none("No rows for this study."))
    return _section(name.replace("_", "-"), name.replace("_", " ").capitalize(), body)


def study_report_html(data: StudyReportData) -> str:
    """The study's report page: summary, sample QC, correlation, PCA, clusters, DE plots, omics coverage, and the
    optional sections the catalog has.
    """
    n_samples = data.coverage.height
    failed = data.sample_qc.filter(~pl.col("qc_pass")).height if data.sample_qc.height else 0
    summary = (f"<p>{n_samples} samples; {len(_assays(data.sample_qc))} count assays; {failed} sample-assay "
               "pairs failing QC.</p>")
    sections = [
        _section("summary", "Summary", summary),
        _section("sample-qc", "Sample QC", _qc_section(data)),
        _section("correlation", "Sample correlation", _correlation_section(data)),
        _section("pca", "PCA", _pca_section(data)),
        _section("clusters", "Clusters", _clusters_section(data)),
        _section("differential-expression", "Differential expression", _contrast_section(data)),
        _section("omics-coverage", "Omics coverage", _coverage_section(data.coverage)),
    ]
    sections += [_optional_section(name, rows, data.images.get(name)) for name, rows in data.optional.items()]
    ids = [*SECTIONS, *(n.replace("_", "-") for n in data.optional)]
    nav = "<nav>" + "".join(f'<a href="#{i}">{html.escape(i)}</a>' for i in ids) + "</nav>"
    title = html.escape(f"{data.study_id}: {data.name}")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{_STYLE}</style></head><body><h1>{title}</h1>"
            f'<p><a href="../index.html">All study reports</a></p>{nav}{"".join(sections)}</body></html>')


def warehouse_index_html(reports: pl.DataFrame) -> str:
    """The warehouse's report index: one link per study (``study_id``, ``name``, ``path`` relative to reports/)."""
    items = "".join(f'<li><a href="{html.escape(row["path"])}">{html.escape(row["study_id"])}</a> '
                    f'{html.escape(row["name"] or "")}</li>' for row in reports.sort("study_id").iter_rows(named=True))
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>omicsdw study reports</title>'
            f"<style>{_STYLE}</style></head><body><h1>Study reports</h1><ul>{items}</ul></body></html>")


def signature_heatmap(rows: pl.DataFrame, *, title: str) -> bytes | None:
    """Heatmap of ``signature_scores`` when it has (signature, sample_id, score) columns, else None."""
    needed = {"signature", "sample_id", "score"}
    if not needed <= set(rows.columns) or rows.height == 0:
        return None
    wide = rows.pivot(on="sample_id", index="signature", values="score", aggregate_function="mean")
    samples = [c for c in wide.columns if c != "signature"]
    figure = Figure(figsize=(7, 0.3 * wide.height + 2), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    image = axes.imshow(wide.select(samples).to_numpy().astype(float), aspect="auto", cmap="RdBu_r")
    axes.set_xticks(range(len(samples)), samples, rotation=90, fontsize=7)
    axes.set_yticks(range(wide.height), wide["signature"].to_list(), fontsize=7)
    figure.colorbar(image, ax=axes)
    axes.set_title(title, fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
