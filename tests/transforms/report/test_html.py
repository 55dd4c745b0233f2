"""The study report page: every section from small hand-made tables, optional sections only with their view, and
the page opening offline in headless Chromium without console errors."""

from __future__ import annotations

import numpy as np
import polars as pl

from tests.browser import render
from transforms.report.html import SECTIONS, StudyReportData, study_report_html, warehouse_index_html

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
                       "qc_flags": [[], [], [], [], ["low_library_size"], []], "qc_pass": [True] * 4 + [False, True]})
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
    assert "http://" not in page
    assert "https://" not in page


def test_study_report_html_without_counts_says_why_in_each_section():
    page = study_report_html(_empty(_data()))
    assert "No count assay: sample QC needs raw RNA counts." in page
    assert "data:image/png" not in page
    for section in SECTIONS:
        assert f'<section id="{section}">' in page


def test_optional_sections_appear_only_with_their_view():
    enrichment = pl.DataFrame({"gene_set": ["HALLMARK_X"], "padj": [0.01]})
    page = study_report_html(_data(optional={"gene_set_enrichment": enrichment}))
    assert '<section id="gene-set-enrichment">' in page
    assert "HALLMARK_X" in page
    assert "signature-scores" not in study_report_html(_data())


def test_warehouse_index_links_each_report():
    page = warehouse_index_html(pl.DataFrame({"study_id": ["b", "a"], "name": ["B", None],
                                              "path": ["b/index.html", "a/index.html"]}))
    assert page.index('href="a/index.html"') < page.index('href="b/index.html"')


def test_study_report_renders_in_chromium_without_console_errors(tmp_path):
    page = tmp_path / "index.html"
    page.write_text(study_report_html(_data(optional={"omics_correlations": pl.DataFrame({"r": [0.5]})})))
    rendered = render(page)
    assert rendered.console == []
    for section in [*SECTIONS, "omics-correlations"]:
        assert f'id="{section}"' in rendered.dom
    assert rendered.dom.count("<img") == 3
