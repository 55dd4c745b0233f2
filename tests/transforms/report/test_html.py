"""The study report page: every section from small hand-made tables, optional sections only with their view, and
the page opening offline in headless Chromium without console errors, each section with its plots."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import polars as pl
from matplotlib.image import imread

from tests.browser import render
from transforms.report.html import SECTIONS, StudyReportData, study_report_html, warehouse_index_html
from transforms.report.plots import ma_plot, volcano_plot

SAMPLES = ["a1", "a2", "a3", "b1", "b2", "b3"]


def _data(**extra: object) -> StudyReportData:
    rng = np.random.default_rng(2)
    genes = [f"g{i}" for i in range(50)]
    values = rng.normal(size=(50, 6)) + np.r_[[0] * 3, [2] * 3]
    vst = pl.DataFrame({"assay": "counts", "sample_id": np.tile(SAMPLES, 50), "feature_id": np.repeat(genes, 6),
                        "value": values.ravel()})
    qc = pl.DataFrame({"study_id": "s", "sample_id": SAMPLES, "assay": "counts",
                       "library_size": [1e6, 1.1e6, 0.9e6, 1e6, 2e4, 1.2e6], "detected_genes": [50, 49, 50, 48, 12, 50],
                       "pct_top100": [None] * 6, "pct_mito": [None] * 6, "median_correlation": [0.9] * 6,
                       "pca_distance": [1.0] * 6,
                       "qc_flags": [[], [], [], [], ["low_library_size"], []], "qc_pass": [True] * 4 + [False, True],
                       "excluded": [False] * 4 + [True, False]})
    embeddings = pl.DataFrame({"study_id": "s", "sample_id": np.repeat(SAMPLES, 2), "assay": "counts",
                               "method": "pca", "component": [1, 2] * 6, "value": rng.normal(size=12)})
    clusters = pl.DataFrame({"study_id": "s", "sample_id": SAMPLES, "assay": "counts", "method": "consensus",
                             "k": 2, "cluster": [1, 1, 1, 2, 2, 2]})
    attributes = pl.DataFrame({"sample_id": SAMPLES, "attribute": "group", "value": list("aaabbb")})
    coverage = pl.DataFrame({"study_id": "s", "sample_id": SAMPLES, "has_rna_counts": True, "n_layers": 1})
    return StudyReportData(study_id="s", name="a <small> study", sample_qc=qc, vst=vst, embeddings=embeddings,
                           clusters=clusters, attributes=attributes, coverage=coverage, colour_by="group",
                           **extra)  # type: ignore[arg-type]


def _empty(data: StudyReportData) -> StudyReportData:
    """The same study without counts (as tcga_laml): every RNA table empty."""
    return StudyReportData(study_id=data.study_id, name=data.name, sample_qc=data.sample_qc.clear(),
                           vst=data.vst.clear(), embeddings=data.embeddings.clear(), clusters=data.clusters.clear(),
                           attributes=data.attributes, coverage=data.coverage)


def test_study_report_html_has_every_section_and_escapes_text():
    page = study_report_html(_data())
    for section in SECTIONS:
        assert f'<section id="{section}">' in page
    assert "a &lt;small&gt; study" in page
    assert page.count("data:image/png;base64,") == 3  # QC bars, heatmap, PCA (no DE plots given)
    assert '<tr class="fail"><td>b2</td>' in page
    assert "1 sample-assay pair failing QC, 1 of them excluded from normalisation, DE and later stages" in page
    assert "http://" not in page
    assert "https://" not in page


def test_study_report_html_without_counts_and_plots_claims_no_de_results():
    # A proteomics-only study built with --no-plots: the page said DE "results are in the catalog"; there are none.
    no_plots = StudyReportData(**{**_empty(_data()).__dict__, "plots": False, "signature_scores": pl.DataFrame()})
    page = study_report_html(no_plots)
    assert "No differential expression: it needs a count assay" in page
    assert "results are in the catalog" not in page
    assert "scores are of RNA values: no RNA assay" in page
    assert "results are in the catalog (differential_expression)" in study_report_html(
        StudyReportData(**{**_data().__dict__, "plots": False}))


def test_study_report_html_without_counts_says_why_in_each_section():
    page = study_report_html(_empty(_data()))
    assert "No count assay: sample QC needs raw RNA counts." in page
    # with plots on, brca and a proteomics-only study with a contrast read "no contrast in study.yaml, or no count
    # assay" (either); the page knows which (trialH)
    assert "No differential expression: it needs a count assay (DESeq2 fits raw RNA counts)." in page
    assert "no contrast in study.yaml" not in page
    assert "data:image/png" not in page
    for section in SECTIONS:
        assert f'<section id="{section}">' in page


def _everything() -> StudyReportData:
    """The small study with every optional section: DE plots, enrichment, signature scores, RNA-protein r."""
    rng = np.random.default_rng(4)
    de = pl.DataFrame({"log2_fold_change": rng.normal(size=300), "pvalue": rng.uniform(size=300),
                       "padj": rng.uniform(size=300), "base_mean": rng.uniform(1, 1000, size=300)})
    plots = [("treated_vs_control_ma", ma_plot(de, title="s")), ("treated_vs_control_volcano",
                                                                 volcano_plot(de, title="s"))]
    enrichment = pl.DataFrame({"study_id": "s", "contrast": "treated_vs_control", "gene_set": ["HALLMARK_X"],
                               "fdr": [0.01]})
    scores = pl.DataFrame({"assay": "counts", "library": "h", "gene_set": np.repeat(["SET_A", "SET_B"], 6),
                           "sample_id": SAMPLES * 2, "score": rng.normal(size=12)})
    rna_protein = pl.DataFrame({"gene_id": range(40), "r": rng.uniform(-0.5, 0.9, size=40), "n": 6})
    return _data(contrast_plots=plots, enrichment=enrichment, signature_scores=scores, rna_protein=rna_protein)


EXPECTED_IMAGES = {"summary": 0, "sample-qc": 1, "correlation": 1, "pca": 1, "clusters": 0,
                   "differential-expression": 2, "omics-coverage": 0, "gene-set-enrichment": 0,
                   "signature-scores": 1, "rna-protein-correlation": 1}
"""Plots each section of :func:`_everything`'s page draws."""


def test_optional_sections_appear_only_with_their_data():
    page = study_report_html(_everything())
    for section in ("gene-set-enrichment", "signature-scores", "rna-protein-correlation"):
        assert f'<section id="{section}">' in page
    assert "HALLMARK_X" in page
    plain = study_report_html(_data())
    assert not any(s in plain for s in ("gene-set-enrichment", "signature-scores", "rna-protein-correlation"))


def test_contrast_plots_are_grouped_per_contrast_volcano_first():
    page = study_report_html(_everything())
    section = page.split('<section id="differential-expression">')[1].split("</section>")[0]
    assert section.count("<h3>") == 1
    assert section.index('alt="volcano plot of treated_vs_control"') < section.index('alt="MA plot of '
                                                                                      'treated_vs_control"')


def test_warehouse_index_links_each_report():
    page = warehouse_index_html(pl.DataFrame({"study_id": ["b", "a"], "name": ["B", None],
                                              "path": ["b/index.html", "a/index.html"]}))
    assert page.index('href="a/index.html"') < page.index('href="b/index.html"')


def test_study_report_renders_every_section_in_chromium(tmp_path):
    page = tmp_path / "index.html"
    page.write_text(study_report_html(_everything()))
    rendered = render(page, screenshot=tmp_path / "page.png")
    assert rendered.console == []
    sections = dict(re.findall(r'<section id="([^"]+)">(.*?)</section>', rendered.dom, flags=re.S))
    assert list(sections) == list(EXPECTED_IMAGES)
    assert set(SECTIONS) <= set(sections)
    for section, body in sections.items():
        images = re.findall(r'src="data:image/png;base64,([^"]+)"', body)
        assert len(images) == EXPECTED_IMAGES[section], section
        for encoded in images:  # each embedded plot decodes to a picture of some size
            height, width, _ = imread(io.BytesIO(base64.b64decode(encoded)), format="png").shape
            assert min(height, width) > 100, section
    assert imread(tmp_path / "page.png").shape[:2] == (3000, 1200)


def test_omics_coverage_counts_samples_per_combination_of_layers():
    coverage = pl.DataFrame({"study_id": "s", "sample_id": SAMPLES, "has_rna_counts": [True] * 4 + [False] * 2,
                             "has_variants": [True, True, False, False, True, False], "n_layers": 0})
    page = study_report_html(StudyReportData(**{**_data().__dict__, "coverage": coverage}))
    section = page.split('<section id="omics-coverage">')[1].split("</section>")[0]
    for layers, n in (("rna_counts", 2), ("rna_counts + variants", 2), ("variants", 1), ("(no omics rows)", 1)):
        assert f"<tr><td>{layers}</td><td>{n}</td></tr>" in section
    assert "<details><summary>Layers of each sample (6)</summary>" in section


def test_qc_table_heatmap_and_pca_say_which_values_they_are_of():
    # trialE: a 16,014-read library had median_correlation -0.30 in the QC table (log2 CPM of the raw counts, by
    # hand) above a heatmap whose lowest cell was 0.22 (its VST): the page said neither.
    page = study_report_html(_data())
    qc_part = page.split('<section id="sample-qc">')[1].split("</section>")[0]
    assert "median_correlation and pca_distance are computed on log2 CPM of the raw counts" in qc_part
    correlation = page.split('<section id="correlation">')[1].split("</section>")[0]
    assert "Pearson correlation of the variance-stabilised counts (rna_vst; log2 CPM for an assay without them)" \
        in correlation
    pca = page.split('<section id="pca">')[1].split("</section>")[0]
    assert "PCA of the variance-stabilised counts (rna_vst; log2 CPM for an assay without them), the" in pca


def test_correlation_heatmap_of_a_wide_study_shows_a_seeded_subsample_and_says_so(monkeypatch):
    import transforms.report.html as page

    monkeypatch.setattr(page, "HEATMAP_MAX_SAMPLES", 4)
    html = study_report_html(_data())
    assert "4 of the 6 samples, drawn with a fixed seed." in html
    shown = page.heatmap_samples(6, max_samples=4)
    assert shown.tolist() == sorted(set(shown.tolist()))
    assert shown.size == 4
    assert page.heatmap_samples(6, max_samples=6).tolist() == list(range(6))


def test_signature_section_embeds_the_stage_heatmap_and_draws_only_assays_without_one():
    scores = pl.DataFrame({"assay": np.repeat(["counts", "tpm"], 12), "library": "h",
                           "gene_set": np.tile(np.repeat(["SET_A", "SET_B"], 6), 2), "sample_id": SAMPLES * 4,
                           "score": np.random.default_rng(5).normal(size=24)})
    stage_png = b"\x89PNG stage heatmap of counts"
    page = study_report_html(_data(signature_scores=scores, signature_plots=[("counts", stage_png)]))
    section = page.split('<section id="signature-scores">')[1].split("</section>")[0]
    images = dict(re.findall(r'<img alt="signature score heatmap of ([^"]+)" src="data:image/png;base64,([^"]+)"',
                             section))
    assert base64.b64decode(images["counts"]) == stage_png  # embedded as the stage wrote it, not redrawn
    height, width, _ = imread(io.BytesIO(base64.b64decode(images["tpm"])), format="png").shape
    assert min(height, width) > 100  # no stage PNG for tpm: drawn here
    plain = study_report_html(_data(signature_scores=scores, signature_plots=[("counts", stage_png)], plots=False))
    assert "data:image/png" not in plain


def test_every_report_table_scrolls_sideways_rather_than_leaving_the_page():
    # the enrichment table of a contrast is wider than a 1,280 px window: its last columns were cut off
    page = study_report_html(_everything())
    assert page.count("<table>") > 3
    assert page.count("<table>") == page.count('<div class="wide"><table>')
    assert page.count('<div class="wide"><div class="wide">') == 0


def test_warehouse_index_lists_a_study_without_a_report_with_its_result_and_first_error():
    from datetime import UTC, datetime

    when = datetime(2026, 12, 5, 6, 30, tzinfo=UTC)
    page = warehouse_index_html(pl.DataFrame({
        "study_id": ["ok", "bad"], "name": ["OK", None], "path": ["ok/index.html", None],
        "result": ["loaded", "failed"], "attempted_at": [when, when], "published_version": [3, None],
        "published_at": [when, None], "errors": [0, 2], "warnings": [1, 0],
        "first_error_file": [None, "samples.tsv"], "first_error_line": [None, 10],
        "first_error_column": [None, "sample_id"], "first_error": [None, "ragged_row: 7 fields"]}))
    bad = page[page.index("<tr class=\"fail\">"):]
    bad = bad[:bad.index("</tr>")]
    assert "<td>bad</td>" in bad  # no link: no page
    assert "<strong>failed</strong>" in bad
    assert "samples.tsv:10 column sample_id: ragged_row: 7 fields" in bad
    assert "never" in bad
    assert page.count('class="fail"') == 1
    assert 'href="ok/index.html"' in page
    assert "version 3, 2026-12-05 06:30 UTC" in page
    assert "2 studies: 1 failed, 1 loaded" in page
