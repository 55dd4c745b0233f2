"""The report reads bounded slices of the catalog: the top variable genes in SQL (never the study's matrix)."""

from __future__ import annotations

import duckdb
import numpy as np
import polars as pl

from transforms.signatures.plots import top_variable_scores
from warehouse.report import TOP_VARIABLE_VALUES, top_variable_sets, top_variable_values


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
