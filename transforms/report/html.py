"""A study's HTML report and the warehouse's index of reports: self-contained pages that open offline from a file.

Plots are PNGs embedded as ``data:`` URIs, tables are plain HTML, the style sheet is inline: no script, no font,
no network request. :func:`study_report_html` takes what the report shows (already read from the catalog, bounded:
the top variable genes, the top gene sets, one correlation per gene) and returns the page; sections whose data the
study lacks say so instead of disappearing, except the optional ones (enrichment and signature scores when the
catalog has their view, biomarker candidates and RNA-protein correlation when the study has both layers).
"""

from __future__ import annotations

import base64
import html
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

import numpy as np
import polars as pl

from transforms.qc import samples as qc
from transforms.report.layer_plots import correlation_histogram, signature_heatmap
from transforms.report.qc_plots import correlation_heatmap, pca_scatter, qc_bars

MAX_TABLE_ROWS = 200
"""Rows shown of a table section (the rest are in the catalog)."""
HEATMAP_MAX_SAMPLES = 2000
"""Above this many samples the correlation heatmap shows a fixed-seed subsample of this many (its n x n matrix and
dendrogram would not fit in memory at 20,000 samples, nor be readable)."""
ENRICHMENT_ROWS = 30
"""Enrichment results shown (lowest FDR first)."""
ENRICHMENT_FDR = 0.05
"""FDR below which the report calls a gene set enriched."""
ENRICHMENT_FEW = 10
"""Results shown, with their p and FDR, when no gene set is enriched (the best of nothing, said as such)."""

BIOMARKER_ROWS = 20
"""Biomarker candidates shown per contrast (lowest RNA adjusted p first)."""
BIOMARKER_P = 0.05
"""Threshold of the candidate counts per contrast (RNA padj, protein p)."""

SECTIONS = ("summary", "sample-qc", "correlation", "pca", "clusters", "differential-expression", "omics-coverage")
"""Ids of the sections every report has, in page order (the optional ones follow)."""

_STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; padding-top: 0.5em; }
table { border-collapse: collapse; font-size: 0.8em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: left; white-space: nowrap; }
th { background: #f3f3f3; } tr.fail td { background: #fdecea; }
img { max-width: 100%; border: 1px solid #eee; margin: 4px 0; }
.pair { display: flex; flex-wrap: wrap; gap: 8px; align-items: flex-start; }
.pair img { max-width: 540px; }
.note { color: #666; font-size: 0.9em; } nav a { margin-right: 1em; } .wide { overflow-x: auto; }
"""


@dataclass(frozen=True)
class StudyReportData:
    """Everything a study report shows, as read from the catalog (one study's rows of each view, bounded)."""

    study_id: str
    name: str
    sample_qc: pl.DataFrame
    vst: pl.DataFrame
    """``assay``, ``sample_id``, ``feature_id``, ``value``: log-scale values (VST, else log2 CPM) of each count
    assay's ``top_genes`` most variable complete genes, selected in SQL (never the whole study)."""
    embeddings: pl.DataFrame
    clusters: pl.DataFrame
    attributes: pl.DataFrame
    coverage: pl.DataFrame
    colour_by: str | None = None
    top_genes: int = qc.TOP_GENES
    explained: dict[str, list[float]] = field(default_factory=dict)
    contrast_plots: list[tuple[str, bytes]] = field(default_factory=list)
    """(file stem ``<contrast>_volcano`` / ``<contrast>_ma``, PNG bytes) of the DE stage's plots."""
    enrichment: pl.DataFrame | None = None
    """Top ``gene_set_enrichment`` rows by FDR, without ORA sets holding no DE gene; None when the catalog has no
    such view."""
    enrichment_tests: pl.DataFrame | None = None
    """``contrast``, ``method``, ``sets_tested``, ``sets_with_result``, ``sets_at_fdr`` (below ``ENRICHMENT_FDR``):
    what was tested, so a study where nothing is enriched says so; None: not read (only the rows are shown)."""
    enrichment_plots: list[tuple[str, bytes]] = field(default_factory=list)
    """(contrast, PNG) dot plots the signatures stage wrote."""
    signature_scores: pl.DataFrame | None = None
    """``assay``, ``library``, ``gene_set``, ``sample_id``, ``score`` (ssGSEA) of the most variable gene sets; None
    when the catalog has no such view."""
    signature_plots: list[tuple[str, bytes]] = field(default_factory=list)
    """(assay, PNG) heatmaps of those scores the signatures stage wrote (the same picture, drawn once); an assay
    without one is drawn here."""
    rna_protein: pl.DataFrame | None = None
    """``gene_id``, ``r``, ``n``: per-gene RNA-protein Spearman r; None unless the study has both layers."""
    biomarker_candidates: pl.DataFrame | None = None
    """Each contrast's top ``biomarker_candidates`` rows (with ``symbol``); None unless the study has RNA and
    protein."""
    biomarker_tests: pl.DataFrame | None = None
    """``contrast``, ``rna_method``, ``genes``, ``rna_padj_lt``, ``protein_pvalue_lt``, ``both_concordant``
    (below ``BIOMARKER_P``) per contrast."""
    contrasts: list[str] = field(default_factory=list)
    """Names of the study.yaml contrasts (the DE section names those it could not fit)."""
    plots: bool = True
    """Draw the report's own plots (False: the page has the tables and text only, and says so)."""


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
    """An HTML table of ``frame`` (first ``max_rows`` rows); ``row_class`` names a boolean column marking failures.

    In a box that scrolls sideways: a wide table (the enrichment results) cut its last columns off a 1,280 px page.
    """
    shown = frame.head(max_rows)
    columns = [c for c in shown.columns if c != row_class]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in shown.iter_rows(named=True):
        marker = ' class="fail"' if row_class is not None and row[row_class] is False else ""
        body.append(f"<tr{marker}>" + "".join(f"<td>{_cell(row[c])}</td>" for c in columns) + "</tr>")
    more = (f'<p class="note">{frame.height - max_rows} more rows in the catalog.</p>'
            if frame.height > max_rows else "")
    return f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>{more}'


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{html.escape(title)}</h2>{body}</section>'


def _none(what: str) -> str:
    return f'<p class="note">{html.escape(what)}</p>'


def _plot(data: StudyReportData, draw: Callable[[], bytes], alt: str) -> str:
    """The image ``draw`` returns, or nothing when the report is written without plots."""
    return _img(draw(), alt) if data.plots else ""


def _assays(frame: pl.DataFrame) -> list[str]:
    return sorted(frame["assay"].unique().to_list()) if frame.height else []


QC_VALUES = ("median_correlation and pca_distance are computed on log2 CPM of the raw counts (QC runs before "
             "normalisation), so they differ from the correlations and PCA below, which are of the normalised "
             "(variance-stabilised) counts.")
"""Said under each QC table: a shallow library's median_correlation of -0.30 sat above a heatmap whose lowest
cell was 0.22 (trialE), with nothing saying the two are of different values."""
STRUCTURE_VALUES = "the variance-stabilised counts (rna_vst; log2 CPM for an assay without them)"
"""What the report's heatmap and PCA are of (``warehouse.report.top_variable_values``)."""


def _qc_section(data: StudyReportData) -> str:
    if data.sample_qc.height == 0:
        return _none("No count assay: sample QC needs raw RNA counts.")
    parts = []
    for assay in _assays(data.sample_qc):
        rows = data.sample_qc.filter(pl.col("assay") == assay).sort("sample_id")
        failed = rows.filter(~pl.col("qc_pass")).height
        parts.append(f"<h3>{html.escape(assay)}</h3><p>{rows.height} samples, {failed} failing QC. "
                     f"{QC_VALUES}</p>"
                     + _plot(data, partial(qc_bars, rows, title=f"{data.study_id} / {assay}"),
                             f"library sizes of {assay}")
                     + html_table(rows.drop("study_id", "assay", strict=False), row_class="qc_pass"))
    return "".join(parts)


def _dense(rows: pl.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Features x samples block of long (``sample_id``, ``feature_id``, ``value``) rows, filled by position."""
    samples = rows["sample_id"].unique(maintain_order=True)
    features = rows["feature_id"].unique(maintain_order=True)
    block = np.full((features.len(), samples.len()), np.nan)
    at = rows.select(pl.col("feature_id").replace_strict(features, range(features.len()), return_dtype=pl.Int64),
                     pl.col("sample_id").replace_strict(samples, range(samples.len()), return_dtype=pl.Int64))
    block[at["feature_id"].to_numpy(), at["sample_id"].to_numpy()] = rows["value"].to_numpy()
    return block, samples.to_list()


def _correlation_section(data: StudyReportData) -> str:
    if data.vst.height == 0:
        return _none("No normalised count values: nothing to correlate.")
    parts = []
    for assay in _assays(data.vst):
        block, labels = _dense(data.vst.filter(pl.col("assay") == assay))
        if len(labels) < 2:
            parts.append(_none(f"{assay}: fewer than two samples."))
            continue
        top = qc.top_variable(block, top_genes=data.top_genes)
        shown = heatmap_samples(len(labels), max_samples=HEATMAP_MAX_SAMPLES)
        corr = qc.correlation(top[:, shown])
        labels = [labels[i] for i in shown]
        sampled = (f" {shown.size} of the {block.shape[1]} samples, drawn with a fixed seed." if shown.size
                   < block.shape[1] else "")
        parts.append(f"<h3>{html.escape(assay)}</h3><p>Pearson correlation of {STRUCTURE_VALUES} over the "
                     f"{top.shape[0]} most variable genes; samples ordered by average-linkage clustering on "
                     f"1 - r (the tree above).{sampled}</p>"
                     + _plot(data, partial(correlation_heatmap, corr, labels, title=f"{data.study_id} / {assay}"),
                             f"correlation heatmap of {assay}"))
    return "".join(parts)


def heatmap_samples(n: int, *, max_samples: int = HEATMAP_MAX_SAMPLES, seed: int = 1) -> np.ndarray:
    """Columns the correlation heatmap shows: all up to ``max_samples``, else a fixed-seed sorted subsample."""
    if n <= max_samples:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_samples, replace=False))


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
        genes = data.vst.filter(pl.col("assay") == assay)["feature_id"].n_unique() if data.vst.height else 0
        used = f"the {genes}" if 0 < genes < data.top_genes else f"the (at most) {data.top_genes}"
        parts.append(f"<h3>{html.escape(assay)}</h3><p>PCA of {STRUCTURE_VALUES}, {used} most variable genes "
                     "(centred, unscaled); "
                     f"{html.escape(note)}.</p>"
                     + _plot(data, partial(pca_scatter, wide, colour=colour, explained=data.explained.get(assay),
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


def _no_counts_de(data: StudyReportData) -> str:
    """Why a study without counts has no DE, naming the study.yaml contrasts it skipped and where they went."""
    text = "No differential expression: it needs a count assay (DESeq2 fits raw RNA counts)."
    if not data.contrasts:
        return text
    named = ", ".join(data.contrasts)
    plural = len(data.contrasts) > 1
    text += f" The contrast{'s' if plural else ''} of study.yaml ({named}) {'were' if plural else 'was'} skipped"
    if data.biomarker_candidates is not None:
        return text + " by DESeq2; the Biomarker candidates section compares the same groups by Welch t-tests of " \
                      "the log2 RNA and protein values."
    return text + ": nothing else in the warehouse uses a contrast without counts (biomarker candidates need RNA " \
                  "and protein of the same samples)."


def _contrast_section(data: StudyReportData) -> str:
    if not data.contrast_plots:  # without counts there is no DE, plots or not (a proteomics-only study)
        return _none(_no_counts_de(data)
                     if data.sample_qc.height == 0 else "No differential-expression plots: no contrast in study.yaml."
                     if data.plots else "Plots were not drawn (built without plots); the results are in the catalog "
                     "(differential_expression).")
    by_contrast: dict[str, dict[str, bytes]] = {}
    for stem, png in data.contrast_plots:
        contrast, _, kind = stem.rpartition("_")
        by_contrast.setdefault(contrast, {})[kind] = png
    parts = []
    for contrast, plots in sorted(by_contrast.items()):
        images = "".join(_img(plots[kind], f"{label} plot of {contrast}")
                         for kind, label in (("volcano", "volcano"), ("ma", "MA")) if kind in plots)
        parts.append(f'<h3>{html.escape(contrast)}</h3><div class="pair">{images}</div>')
    return ("<p>Volcano (log2 fold change against -log10 p) and MA (mean normalised count against log2 fold change) "
            "plots of each contrast; red: padj &lt; 0.05.</p>" + "".join(parts))


def _coverage_section(coverage: pl.DataFrame) -> str:
    """Samples per layer and per combination of layers (which samples can be joined across layers), then the
    per-sample table folded away (a study may have hundreds of samples).
    """
    if coverage.height == 0:
        return _none("No samples.")
    layers = [c for c in coverage.columns if c.startswith("has_")]
    per_layer = pl.DataFrame({"layer": [c.removeprefix("has_") for c in layers],
                              "samples": [int(coverage[c].sum()) for c in layers]})
    names = [c.removeprefix("has_") for c in layers]
    combined = (coverage.select(pl.concat_list([pl.when(pl.col(c)).then(pl.lit(n)) for c, n in zip(layers, names,
                                                                                                    strict=True)])
                                .list.drop_nulls().list.join(" + ").replace("", "(no omics rows)").alias("layers"))
                .group_by("layers").len("samples").sort("samples", "layers", descending=[True, False]))
    return (f"<p>{coverage.height} samples; samples with each layer, and with each combination of layers:</p>"
            f'<div class="pair">{html_table(per_layer)}{html_table(combined)}</div>'
            f"<details><summary>Layers of each sample ({coverage.height})</summary>"
            + html_table(coverage.drop("study_id", "layers", strict=False)) + "</details>")


def _enrichment_section(rows: pl.DataFrame, plots: list[tuple[str, bytes]],
                        tests: pl.DataFrame | None = None) -> str:
    """The enrichment results of lowest FDR, or, when no set is below ``ENRICHMENT_FDR``, a sentence saying so with
    the few best shown for what they are.

    ORA sets holding no DE gene are not results (p = 1 by construction: with no gene at padj < 0.05, every set),
    so they are never listed; ``tests`` counts them per contrast and method.
    """
    tested = ("" if tests is None or tests.height == 0 else
              "<p>Gene sets tested per contrast and method (ORA: sets holding a gene at padj &lt; 0.05 of the "
              "method's direction; prerank: every set of 15-500 ranked genes in the libraries "
              "<code>prerank_libraries</code> selects, Hallmark by default):</p>"
              + html_table(tests.rename({"sets_with_result": "sets_with_a_result",
                                         "sets_at_fdr": f"sets_at_fdr_lt_{ENRICHMENT_FDR}"}, strict=False)))
    if rows.height == 0:
        if tests is not None and tests.height:
            return _none("No gene set enriched: no ORA set holds a gene at padj < 0.05 (no DE gene in a tested "
                         "set) and no set was preranked (prerank tests sets of 15-500 ranked genes in the libraries "
                         "prerank_libraries selects, Hallmark by default).") + tested
        return _none("No enrichment results for this study: enrichment tests the DESeq2 results of a contrast, so it "
                     "needs a contrast and a count assay, and tested genes in a gene set.")
    images = "".join(f"<h3>{html.escape(contrast)}</h3>" + _img(png, f"enrichment dot plot of {contrast}")
                     for contrast, png in plots)
    found = rows.filter(pl.col("fdr") < ENRICHMENT_FDR).height
    if found == 0:
        shown = min(rows.height, ENRICHMENT_FEW)
        one = shown == 1
        text = (f"<p><strong>No gene set is enriched at FDR &lt; {ENRICHMENT_FDR} in any contrast.</strong> The "
                f"{shown} result{'' if one else 's'} of lowest FDR {'is' if one else 'are'} listed with "
                f"{'its' if one else 'their'} real p-value and FDR, for orientation: not findings. ORA sets holding "
                "no gene at padj &lt; 0.05 are left out (their p is 1).</p>")
        return text + tested + images + html_table(rows.drop("study_id", strict=False), max_rows=ENRICHMENT_FEW)
    return (f"<p>The {min(rows.height, ENRICHMENT_ROWS)} results of lowest FDR (prerank on the Wald statistic, ORA "
            "of up / down genes at padj &lt; 0.05; ORA sets holding no such gene are left out); the rest are in the "
            "catalog (<code>top_gene_sets</code>).</p>"
            + tested + images + html_table(rows.drop("study_id", strict=False), max_rows=ENRICHMENT_ROWS))


def _biomarker_section(data: StudyReportData, rows: pl.DataFrame) -> str:
    """Per contrast: the counts of tested genes passing each threshold, then its candidates of lowest RNA padj
    (the ``biomarker_candidates`` columns, with the gene's symbol).
    """
    tests = data.biomarker_tests if data.biomarker_tests is not None else pl.DataFrame()
    if rows.height == 0:
        return _none("No biomarker candidates: they need a contrast in study.yaml and genes measured as RNA and "
                     "protein in 3 or more samples of each of its groups." if not data.contrasts else
                     "No biomarker candidates: no gene with RNA and protein was tested between the groups of "
                     f"{', '.join(data.contrasts)} (3 samples with values in each group are needed).")
    p = BIOMARKER_P
    counts = html_table(tests.rename({"rna_padj_lt": f"rna_padj_lt_{p}", "protein_pvalue_lt": f"protein_pvalue_lt_{p}",
                                      "both_concordant": f"both_lt_{p}_same_sign"}, strict=False))
    parts = []
    for (contrast,), part in rows.group_by("contrast", maintain_order=True):
        parts.append(f"<h3>{html.escape(str(contrast))}</h3>"
                     + html_table(part.drop("contrast"), max_rows=BIOMARKER_ROWS))
    return ("<p>Genes measured as RNA and protein, per contrast: the RNA log2 fold change and adjusted p (rna_method "
            "deseq2: DESeq2's, from differential_expression; welch: a Welch t-test of log2 RNA between the contrast's "
            "groups, BH-adjusted, for studies without counts) beside the protein difference (mean of test - mean of "
            "reference, log2) and its Welch p-value, the gene's RNA-protein Spearman r and whether RNA and protein "
            f"move the same way. Genes tested and passing each threshold ({p}):</p>" + counts
            + f"<p>Each contrast's candidates of lowest RNA adjusted p (then protein p), at most {BIOMARKER_ROWS}; "
            "all are in the catalog (<code>biomarker_candidates</code>).</p>" + "".join(parts))


def _signature_section(data: StudyReportData, scores: pl.DataFrame) -> str:
    if scores.height == 0:
        return _none("No signature scores for this study (scores are of RNA values: no RNA assay, or no gene set "
                     "with 5 measured members).")
    parts = []
    drawn = dict(data.signature_plots)
    for assay in _assays(scores):
        rows = scores.filter(pl.col("assay") == assay)
        draw = (partial(drawn.__getitem__, assay) if assay in drawn
                else partial(signature_heatmap, rows, title=f"{data.study_id} / {assay}: ssGSEA"))
        parts.append(f"<h3>{html.escape(assay)}</h3><p>ssGSEA scores of the {rows['gene_set'].n_unique()} most "
                     "variable gene sets, centred per set.</p>"
                     + _plot(data, draw, f"signature score heatmap of {assay}"))
    return "".join(parts)


def _rna_protein_section(data: StudyReportData, correlations: pl.DataFrame) -> str:
    if correlations.height == 0:
        return _none("The study has RNA and protein, but no gene has both in 5 or more samples.")
    r = correlations["r"].drop_nulls().to_numpy()
    return (f"<p>Spearman correlation of RNA (log2 normalised) and protein per gene over the samples with both: "
            f"{r.size} genes, median r = {np.median(r):.2f} (CPTAC reports about 0.4-0.5 in tumours).</p>"
            + _plot(data, lambda: correlation_histogram(r, title=f"{data.study_id}: RNA-protein"),
                    "RNA-protein correlations"))


def study_report_html(data: StudyReportData) -> str:
    """The study's report page: summary, sample QC, correlation, PCA, clusters, DE plots, omics coverage, and the
    optional sections the catalog has.
    """
    n_samples = data.coverage.height
    failed = data.sample_qc.filter(~pl.col("qc_pass")).height if data.sample_qc.height else 0
    excluded = data.sample_qc.filter(pl.col("excluded")).height if "excluded" in data.sample_qc.columns else 0
    assays = len(_assays(data.sample_qc))
    summary = (f"<p>{n_samples} samples; {assays} count assay{'' if assays == 1 else 's'}; {failed} sample-assay "
               f"pair{'' if failed == 1 else 's'} failing QC"
               + (f", {excluded} of them excluded from normalisation, DE and later stages (qc.exclude_failed)"
                  if excluded else "") + ".</p>"
               + ("" if data.plots else '<p class="note">Built without plots (<code>omicsdw build --no-plots</code> '
                                        "or <code>OMICSDW_PLOTS=0</code>): tables and text only.</p>"))
    sections = [
        _section("summary", "Summary", summary),
        _section("sample-qc", "Sample QC", _qc_section(data)),
        _section("correlation", "Sample correlation", _correlation_section(data)),
        _section("pca", "PCA", _pca_section(data)),
        _section("clusters", "Clusters", _clusters_section(data)),
        _section("differential-expression", "Differential expression", _contrast_section(data)),
        _section("omics-coverage", "Omics coverage", _coverage_section(data.coverage)),
    ]
    optional = []
    if data.enrichment is not None:
        optional.append(("gene-set-enrichment", "Gene set enrichment",
                         _enrichment_section(data.enrichment, data.enrichment_plots, data.enrichment_tests)))
    if data.signature_scores is not None:
        optional.append(("signature-scores", "Signature scores", _signature_section(data, data.signature_scores)))
    if data.biomarker_candidates is not None:
        optional.append(("biomarker-candidates", "Biomarker candidates",
                         _biomarker_section(data, data.biomarker_candidates)))
    if data.rna_protein is not None:
        optional.append(("rna-protein-correlation", "RNA-protein correlation",
                         _rna_protein_section(data, data.rna_protein)))
    sections += [_section(*part) for part in optional]
    ids = [*SECTIONS, *(anchor for anchor, _, _ in optional)]
    nav = "<nav>" + "".join(f'<a href="#{i}">{html.escape(i)}</a>' for i in ids) + "</nav>"
    title = html.escape(f"{data.study_id}: {data.name}")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{_STYLE}</style></head><body><h1>{title}</h1>"
            f'<p><a href="../index.html">All study reports</a></p>{nav}{"".join(sections)}</body></html>')


def _when(value: object) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if isinstance(value, datetime) else "-"


def first_error_text(row: Mapping[str, object]) -> str:
    """``file:line column: reason`` of a ``study_status`` row's first located error ("" when none)."""
    if not row.get("first_error"):
        return ""
    line = row.get("first_error_line")
    where = f"{row.get('first_error_file') or '?'}:{'?' if line is None else line}"
    column = row.get("first_error_column")
    return f"{where}{f' column {column}' if column else ''}: {row['first_error']}"


def attempt_note_html(row: Mapping[str, object]) -> str:
    """The note a published study's page shows when its latest ingest attempt (a ``study_status`` row) was not
    what readers see: failed or withheld; "" when it was loaded. The page itself is the previous good version.
    """
    result = row.get("result")
    if result not in ("failed", "withheld"):
        return ""
    run = f", run {str(row['run_id'])[:8]}" if row.get("run_id") else ""
    by = f", {row['launched_by']}" if row.get("launched_by") else ""
    what = (f"failed ({row.get('errors')} error{'' if row.get('errors') == 1 else 's'}; first: "
            f"{first_error_text(row)})" if result == "failed" else
            "was withheld: ingested without errors, but a later stage or check failed (its message: the build's "
            "output, or runs/failures.log of the daemon)")
    published = _when(row.get("published_at"))
    return ('<p class="attempt" style="background:#fdecea;border:1px solid #e6a09a;padding:0.5em 1em">'
            f"<strong>The latest attempt to load this study ({_when(row.get('attempted_at'))}"
            f"{html.escape(run + by)}) "
            f"{html.escape(what)}.</strong> This page shows the version published {published} (studies version "
            f"{row.get('published_version')}), which readers still see. <code>omicsdw status --study "
            f"{html.escape(str(row['study_id']))}</code> lists its issues.</p>")


INDEX_COLUMNS = ("study", "result", "last attempt", "published", "errors", "warnings", "first error")
"""Columns of the report index's table."""


def warehouse_index_html(reports: pl.DataFrame) -> str:
    """The warehouse's report index: one row per study, with a link to its report when it was published (``path``
    relative to reports/, NULL: none) and its last ingest attempt when the ``study_status`` columns are given
    (``result``, ``attempted_at``, ``published_version``, ``published_at``, ``errors``, ``warnings``, the first
    error's ``first_error_file`` / ``_line`` / ``_column`` / ``first_error``): a failed or withheld study is listed
    too, marked, with its first located error, so the morning reader sees every study, not only the published.
    """
    rows = reports.sort("study_id").to_dicts()
    body = []
    for row in rows:
        study = html.escape(str(row["study_id"]))
        link = f'<a href="{html.escape(row["path"])}">{study}</a>' if row.get("path") else study
        result = row.get("result") or ("published" if row.get("path") else "-")
        bad = result in ("failed", "withheld")
        published = (f"version {row['published_version']}, {_when(row.get('published_at'))}"
                     if row.get("published_version") is not None else "yes" if row.get("path") else "never")
        if bad and row.get("path"):
            published += " (the report shows it)"
        name = f'<br><span class="note">{html.escape(row["name"])}</span>' if row.get("name") else ""
        cells = [link + name, f"<strong>{result}</strong>" if bad else result,
                 _when(row.get("attempted_at")), html.escape(published),
                 *(_cell(row.get(c)) for c in ("errors", "warnings")), html.escape(first_error_text(row))]
        marker = ' class="fail"' if bad else ""
        body.append(f"<tr{marker}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    counts = Counter(r.get("result") or "published" for r in rows)
    summary = (f"{len(rows)} stud{'y' if len(rows) == 1 else 'ies'}"
               + (": " + ", ".join(f"{n} {result}" for result, n in sorted(counts.items())) if rows else "")
               + ". Result of each study's last ingest attempt (as <code>omicsdw status</code>): loaded (the "
               "report is of it), failed (errors: nothing of it was loaded), withheld (loaded but not published: a "
               "later stage or check failed); a study published before keeps its report, which says the latest "
               "attempt failed.")
    head = "".join(f"<th>{html.escape(c)}</th>" for c in INDEX_COLUMNS)
    table = (f'<table class="index"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
             if rows else "")
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>omicsdw study reports</title>'
            f"<style>{_STYLE}table.index td {{ white-space: normal; }} table.index td:first-child {{ max-width: "
            f"22em; }}</style></head><body><h1>Study reports</h1><p>{summary}</p>{table}</body></html>")
