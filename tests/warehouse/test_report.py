"""The report reads bounded slices of the catalog: the top variable genes in SQL (never the study's matrix)."""

from __future__ import annotations

import duckdb
import numpy as np
import polars as pl

from transforms.signatures.plots import top_variable_scores
from warehouse.report import (
    TOP_VARIABLE_VALUES,
    top_biomarker_candidates,
    top_enrichment,
    top_variable_sets,
    top_variable_values,
)


def _long(values: np.ndarray, *, study: str, assay: str, column: str) -> pl.DataFrame:
    genes, samples = values.shape
    return pl.DataFrame({"study_id": study, "assay": assay,
                         "sample_id": np.tile([f"s{j}" for j in range(samples)], genes),
                         "feature_id": np.repeat([f"g{i:02d}" for i in range(genes)], samples),
                         column: values.ravel()})


def test_top_variable_values_selects_the_most_variable_complete_genes_per_assay():
    rng = np.random.default_rng(8)
    vst = rng.normal(size=(50, 6)) * rng.uniform(0.1, 3, size=(50, 1))
    logcpm = rng.normal(size=(30, 4)) * rng.uniform(0.1, 3, size=(30, 1))
    vst_rows = _long(vst, study="s", assay="counts", column="vst")
    most = int(np.argmax(vst.var(axis=1, ddof=1)))
    vst_rows = vst_rows.filter((pl.col("feature_id") != f"g{most:02d}") | (pl.col("sample_id") != "s0"))
    con = duckdb.connect()
    con.register("rna_vst", pl.concat([vst_rows, _long(vst * 10, study="other", assay="counts", column="vst")])
                 .to_arrow())
    con.register("rna_normalized", pl.concat([  # 'tpm' has no VST: its log2 CPM stands in; 'counts' keeps its VST
        _long(logcpm, study="s", assay="tpm", column="log2_cpm"),
        _long(vst[:30, :4] * 100, study="s", assay="counts", column="log2_cpm")]).with_columns(
        pl.lit("counts").alias("source")).to_arrow())
    found = top_variable_values(con, "s", top_genes=5)
    # numpy: variance ddof=1 per gene over the complete genes (the one missing a sample is left out)
    variance = vst.var(axis=1, ddof=1)
    variance[most] = -1
    expected_vst = sorted(f"g{i:02d}" for i in np.argsort(-variance)[:5])
    expected_cpm = sorted(f"g{i:02d}" for i in np.argsort(-logcpm.var(axis=1, ddof=1))[:5])
    counts = found.filter(pl.col("assay") == "counts")
    assert sorted(counts["feature_id"].unique()) == expected_vst
    assert sorted(found.filter(pl.col("assay") == "tpm")["feature_id"].unique()) == expected_cpm
    assert (counts.height, found.height) == (5 * 6, 5 * 6 + 5 * 4)  # top genes x samples, nothing more
    row = counts.filter(pl.col("feature_id") == expected_vst[0], pl.col("sample_id") == "s3")
    assert row["value"].item() == vst[int(expected_vst[0][1:]), 3]


def test_top_variable_values_of_a_study_with_a_vst_for_every_count_assay_read_rna_vst_alone():
    rng = np.random.default_rng(9)
    vst = rng.normal(size=(40, 5)) * rng.uniform(0.1, 3, size=(40, 1))
    con = duckdb.connect()
    con.register("rna_vst", pl.concat([_long(vst, study="s", assay="counts", column="vst"),
                                       _long(vst[::-1] * 10, study="other", assay="counts", column="vst")]).to_arrow())
    con.register("rna_normalized", pl.concat([
        _long(vst * 100, study="s", assay="counts", column="log2_cpm").with_columns(pl.lit("counts").alias("source")),
        _long(vst * 1000, study="other", assay="tpm", column="log2_cpm").with_columns(
            pl.lit("counts").alias("source"))]).to_arrow())
    found = top_variable_values(con, "s", top_genes=4)
    top = np.argsort(-vst.var(axis=1, ddof=1))[:4]  # numpy, ddof=1 as R's rowVars
    expected = pl.DataFrame({
        "assay": "counts", "sample_id": [f"s{j}" for i in sorted(top) for j in range(5)],
        "feature_id": [f"g{i:02d}" for i in sorted(top) for _ in range(5)],
        "value": [vst[i, j] for i in sorted(top) for j in range(5)]})
    assert found.equals(expected)
    general = con.sql(TOP_VARIABLE_VALUES, params={"study": "s", "top": 4}).pl()
    assert found.equals(general)


def test_top_variable_sets_keeps_the_most_variable_ssgsea_sets_per_assay():
    rng = np.random.default_rng(9)
    scores = rng.normal(size=(12, 5)) * np.arange(1, 13)[:, None]  # set i has spread ~ i + 1
    rows = (_long(scores, study="s", assay="counts", column="score")
            .rename({"feature_id": "gene_set"}).with_columns(pl.lit("h").alias("library"),
                                                             pl.lit("ssgsea").alias("method")))
    other = rows.with_columns(pl.lit("singscore").alias("method"), pl.col("score") * 100)  # not ssGSEA: ignored
    con = duckdb.connect()
    con.register("signature_scores", pl.concat([rows, other]).to_arrow())
    found = top_variable_sets(con, "s", top=3)
    expected = sorted(f"g{i:02d}" for i in np.argsort(-scores.var(axis=1, ddof=1))[:3])
    assert sorted(found["gene_set"].unique()) == expected
    assert found.height == 3 * 5
    assert set(found["score"].to_list()) <= set(scores.ravel().tolist())


def test_the_stage_heatmap_shows_the_sets_of_the_report_query_in_its_order():
    rng = np.random.default_rng(10)
    scores = rng.normal(size=(12, 5)) * np.arange(1, 13)[:, None]
    scores[11] *= 3
    scores[4] = scores[11]  # g04 (library h) ties with g11 (library a): the tie goes by library, then gene set
    rows = (_long(scores, study="s", assay="counts", column="score").rename({"feature_id": "gene_set"})
            .with_columns(library=pl.when(pl.col("gene_set") == "g11").then(pl.lit("a")).otherwise(pl.lit("h")),
                          method=pl.lit("ssgsea")))
    rows = rows.with_columns(score=pl.when((pl.col("gene_set") == "g10") & (pl.col("sample_id") == "s1"))
                             .then(None).otherwise(pl.col("score")))  # a NULL score is left out of g10's variance
    con = duckdb.connect()
    con.register("signature_scores", rows.to_arrow())
    report = top_variable_sets(con, "s", top=3)
    stage = top_variable_scores(rows.drop("study_id", "assay", "method"), top=3)
    # numpy: ddof=1 variance over the scores present; the tie of g11 and g04 first, then the next largest
    present = [np.delete(scores[i], 1) if i == 10 else scores[i] for i in range(12)]
    variance = [float(v.var(ddof=1)) for v in present]
    library = ["a" if i == 11 else "h" for i in range(12)]
    top = sorted(range(12), key=lambda i: (-variance[i], library[i], f"g{i:02d}"))[:3]
    assert top[:2] == [11, 4]
    expected = sorted((library[i], f"g{i:02d}") for i in top)  # by library, gene set, as the page draws them
    assert stage.select("library", "gene_set").unique(maintain_order=True).rows() == expected
    assert stage.select("library", "gene_set", "sample_id", "score").equals(
        report.select("library", "gene_set", "sample_id", "score"))
    assert stage.height == 5 * 3 - (10 in top)


def _enrichment_rows() -> pl.DataFrame:
    """One contrast without a gene at padj < 0.05 up (ora_up: every set holds no DE gene, p = 1 by construction),
    two down genes (ora_down: two sets hold one, hypergeometric p from scipy), and another study's rows."""
    from scipy.stats import false_discovery_control, hypergeom

    sets = [f"SET_{i:02d}" for i in range(40)]
    # universe 1,000 tested genes, 2 down genes; SET_00 (size 100) holds both (p 0.0099, FDR 0.4), SET_01 (50) one
    p_down = [hypergeom.sf(1, 1000, 100, 2), hypergeom.sf(0, 1000, 50, 2)] + [1.0] * 38
    fdr_down = false_discovery_control(p_down, method="bh")
    base = {"study_id": "s", "contrast": "a_vs_b", "library": "lib", "gene_set": sets, "size": [100, 50] + [20] * 38,
            "nes": None}
    up = pl.DataFrame({**base, "method": "ora_up", "es": 0.0, "pvalue": 1.0, "fdr": 1.0, "leading_edge": None})
    down = pl.DataFrame({**base, "method": "ora_down", "es": 1.0, "pvalue": p_down, "fdr": fdr_down,
                         "leading_edge": ["1;2", "3"] + [None] * 38})
    other = up.with_columns(pl.lit("other").alias("study_id"), pl.lit(1e-9).alias("fdr"), pl.lit("9").alias(
        "leading_edge"))
    return pl.concat([up, down, other], how="vertical_relaxed")


def test_top_enrichment_leaves_out_ora_sets_holding_no_de_gene_and_counts_the_tests():
    con = duckdb.connect()
    rows = _enrichment_rows()
    con.register("gene_set_enrichment", rows.to_arrow())
    top, tests = top_enrichment(con, "s")
    assert top["gene_set"].to_list() == ["SET_00", "SET_01"]  # the only sets holding a DE gene
    assert top["method"].to_list() == ["ora_down", "ora_down"]
    assert top["pvalue"].to_list() == rows.filter(pl.col("study_id") == "s", pl.col("method") == "ora_down")[
        "pvalue"][:2].to_list()
    assert tests.to_dicts() == [
        {"contrast": "a_vs_b", "method": "ora_down", "sets_tested": 40, "sets_with_result": 2, "sets_at_fdr": 0},
        {"contrast": "a_vs_b", "method": "ora_up", "sets_tested": 40, "sets_with_result": 0, "sets_at_fdr": 0}]


def test_study_report_says_no_gene_set_is_enriched_instead_of_listing_sets_at_p_1():
    # the known defect: with no significant gene, the report listed 30 ORA sets, every one at p = 1
    from tests.transforms.report.test_html import _data
    from transforms.report.html import study_report_html

    con = duckdb.connect()
    con.register("gene_set_enrichment", _enrichment_rows().to_arrow())
    top, tests = top_enrichment(con, "s")
    page = study_report_html(_data(enrichment=top, enrichment_tests=tests))
    section = page[page.index('<section id="gene-set-enrichment">'):]
    section = section[:section.index("</section>")]
    assert "No gene set is enriched at FDR &lt; 0.05" in section
    assert "SET_00" in section
    assert "SET_01" in section
    assert not any(f"SET_{i:02d}<" in section for i in range(2, 40))  # no set at p = 1
    assert "ora_up" in section  # ... but the tests table says ora_up tested 40 sets, none holding an up gene

    con.register("gene_set_enrichment", _enrichment_rows().filter(pl.col("method") == "ora_up").to_arrow())
    top, tests = top_enrichment(con, "s")
    page = study_report_html(_data(enrichment=top, enrichment_tests=tests))
    assert "No gene set enriched: no ORA set holds a gene at padj &lt; 0.05" in page
    assert "SET_00<" not in page


def test_top_biomarker_candidates_keeps_each_contrasts_lowest_rna_padj_with_symbols_and_counts():
    con = duckdb.connect()
    padj = [0.5, 0.01, None, 0.01, 0.2, 0.04]
    rows = pl.DataFrame({"study_id": ["s"] * 6 + ["other"], "contrast": ["a"] * 4 + ["b"] * 2 + ["a"],
                         "gene_id": [1, 2, 3, 4, 1, 2, 9], "rna_log2fc": [1.0, -2.0, 0.5, 3.0, 1.0, 1.0, 9.0],
                         "rna_padj": [*padj, 1e-9], "rna_method": "welch",
                         "protein_difference": [1.0, -1.0, 0.2, -0.5, -1.0, 2.0, 9.0],
                         "protein_pvalue": [0.01, 0.02, 0.3, 0.01, 0.5, 0.001, 1e-9],
                         "rna_protein_r": 0.3, "concordant": [True, True, True, False, False, True, True]})
    con.register("biomarker_candidates", rows.to_arrow())
    con.register("genes", pl.DataFrame({"gene_id": [1, 2, 3], "symbol": ["ONE", "TWO", "THREE"]}).to_arrow())
    top, tests = top_biomarker_candidates(con, "s", rows=3)
    # a: padj 0.01 (gene 4, protein p 0.01) before 0.01 (gene 2, protein p 0.02), then 0.5; NULL padj last, cut
    assert top.select("contrast", "gene_id", "symbol").rows() == [
        ("a", 4, None), ("a", 2, "TWO"), ("a", 1, "ONE"), ("b", 2, "TWO"), ("b", 1, "ONE")]
    # a: 3 genes with padj, 2 below 0.05 (2, 4); protein p < 0.05: 1, 2, 4; both and same sign: 2 (4 is discordant)
    assert tests.rows() == [("a", "welch", 4, 2, 3, 1), ("b", "welch", 2, 1, 1, 1)]


def test_note_latest_attempt_puts_replaces_and_removes_the_note_under_the_title(tmp_path):
    from warehouse.report import INDEX, note_latest_attempt

    page = tmp_path / INDEX
    page.write_text("<html><body><h1>s: S</h1><section>old good version</section></body></html>")
    note_latest_attempt(tmp_path, "<p>failed A</p>")
    assert page.read_text() == ("<html><body><h1>s: S</h1><!--omicsdw:attempt--><p>failed A</p>"
                                "<!--/omicsdw:attempt--><section>old good version</section></body></html>")
    note_latest_attempt(tmp_path, "<p>failed B</p>")
    assert page.read_text().count("failed") == 1
    assert "<p>failed B</p>" in page.read_text()
    note_latest_attempt(tmp_path, "")  # loaded again: the note goes
    assert page.read_text() == ("<html><body><h1>s: S</h1><!--omicsdw:attempt--><!--/omicsdw:attempt-->"
                                "<section>old good version</section></body></html>")
    stamp = page.stat().st_mtime_ns
    note_latest_attempt(tmp_path, "")  # nothing to change: the page is not rewritten
    assert page.stat().st_mtime_ns == stamp
