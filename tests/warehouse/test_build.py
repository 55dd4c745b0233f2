"""End to end: `omicsdw build` on real studies, re-runs, a corrupted file, and an analyst reading meanwhile.

Expected figures come from the raw files (awk / wc, noted per assertion) or from the data's SOURCE.md.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
import pytest

import warehouse
from tests.warehouse.catalog_sql import sql as _sql
from warehouse.cli import main

pytestmark = pytest.mark.slow

# awk -F'\t' 'NR>1{for(i=2;i<=NF;i++)s[i]+=$i} END{...}' pasilla_gene_counts.tsv
PASILLA_LIBRARY_SIZES = {"untreated1": 13972512, "untreated2": 21911438, "untreated3": 8358426,
                         "untreated4": 9841335, "treated1": 18670279, "treated2": 9571826, "treated3": 10343856}


@pytest.fixture(scope="module")
def built(examples_built) -> tuple[Path, Path]:
    """pasilla, laml, study_es_0 and airway built by the CLI (tests here only read it or re-run it unchanged)."""
    return examples_built


def test_build_loads_every_example_study(built):
    _, wh = built
    samples = dict(_sql(wh, "SELECT study_id, count(*) FROM samples GROUP BY ALL"))
    # pasilla: 7 count columns; LAML: wc -l clinical = 201 incl. header; es_0: 845 (SOURCE.md); airway: 8 runs
    assert samples == {"pasilla": 7, "tcga_laml": 200, "study_es_0": 845, "airway": 8}


def test_build_counts_sum_to_library_sizes_with_unmapped_genes_kept(built):
    _, wh = built
    sums = dict(_sql(wh, "SELECT sample_id, sum(count) FROM rna_counts WHERE study_id = 'pasilla' GROUP BY ALL"))
    assert sums == PASILLA_LIBRARY_SIZES
    # fly genes are kept, unmapped, with the reason; one gene_id_map row per FlyBase ID (wc -l = 14,600 - header)
    statuses = _sql(wh, "SELECT status, rule, count(*) FROM gene_id_map WHERE study_id = 'pasilla' GROUP BY ALL")
    assert statuses == [("unmapped", "organism_not_human", 14599)]
    # grep FBgn0000008 pasilla_gene_counts.tsv -> 92 161 76 70 140 88 70
    (cell,) = _sql(wh, "SELECT count FROM rna_counts WHERE feature_id = 'FBgn0000008' AND sample_id = 'untreated2'")
    assert cell == (161.0,)


def test_build_variants_and_layers_per_sample(built):
    _, wh = built
    variants = dict(_sql(wh, "SELECT study_id, count(*) FROM variants GROUP BY ALL"))
    assert variants == {"tcga_laml": 2207, "study_es_0": 36}  # SOURCE.md of both data sets
    # awk: Tumor_Sample_Barcode == TCGA-AB-2988 -> 15 variants
    assert _sql(wh, "SELECT count(*) FROM variants WHERE sample_id = 'TCGA-AB-2988'") == [(15,)]
    coverage = _sql(wh, "SELECT has_variants, has_cn_segments FROM sample_omics_coverage "
                        "WHERE study_id = 'tcga_laml' AND sample_id = 'TCGA-AB-2988'")
    assert coverage == [(True, True)]


def test_build_catalog_has_comments_on_tables_and_columns(built):
    _, wh = built
    (comment,) = _sql(wh, "SELECT comment FROM duckdb_views() WHERE view_name = 'rna_counts'")[0]
    assert "one row per study, assay, sample and feature" in comment
    missing = _sql(wh, "SELECT table_name, column_name FROM duckdb_columns() WHERE comment IS NULL "
                       "AND table_name IN (SELECT view_name FROM duckdb_views() WHERE NOT internal)")
    assert missing == []


def test_build_rerun_of_unchanged_studies_changes_nothing(built):
    landing, wh = built
    before = _sql(wh, "SELECT * FROM catalog_versions ORDER BY 1")
    assert main(["build", "--landing", str(landing), "--warehouse", str(wh)]) == 0
    assert _sql(wh, "SELECT * FROM catalog_versions ORDER BY 1") == before


def test_build_time_travel_reads_an_earlier_version(built):
    _, wh = built
    # version 0 is the empty table created before any study; version 1 is the first study's commit alone
    assert warehouse.table("samples", version=0, warehouse=wh).collect().height == 0
    first = warehouse.table("samples", version=1, warehouse=wh).collect()
    (study,) = first["study_id"].unique().to_list()
    current = warehouse.table("samples", warehouse=wh).filter(pl.col("study_id") == study).collect()
    assert first.sort("sample_id").equals(current.sort("sample_id"))


def test_corrupt_file_fails_study_keeps_previous_data_and_reports_where(tmp_path, example_landing):
    landing = example_landing(tmp_path, "pasilla")
    wh = tmp_path / "warehouse"
    assert main(["build", "--landing", str(landing), "--warehouse", str(wh)]) == 0
    analyst = duckdb.connect(str(wh / "warehouse.duckdb"), read_only=True)  # stays open during the next run

    counts = landing / "pasilla" / "counts.tsv"
    lines = counts.read_text().splitlines()
    fields = lines[2].split("\t")  # file line 3: FBgn0000008
    fields[3] = "-5"               # untreated3
    lines[2] = "\t".join(fields)
    lines[9] = lines[9] + "\t12"   # file line 10 gets an extra field
    counts.write_text("\n".join(lines) + "\n")

    assert main(["build", "--landing", str(landing), "--warehouse", str(wh)]) == 1
    assert analyst.sql("SELECT sum(count) FROM rna_counts").fetchall() == [(sum(PASILLA_LIBRARY_SIZES.values()),)]
    analyst.close()
    errors = pl.from_arrow(warehouse.connect(wh).sql(
        "SELECT file, line, code FROM ingest_issues WHERE severity = 'error'").to_arrow_table())
    assert ("counts.tsv", 10, "ragged_row") in errors.rows()
    # the previous good counts are still what readers see
    sums = dict(_sql(wh, "SELECT sample_id, sum(count) FROM rna_counts GROUP BY ALL"))
    assert sums == PASILLA_LIBRARY_SIZES

    lines[9] = lines[9].rsplit("\t", 1)[0]  # fix the ragged row: the negative count alone is quarantined
    counts.write_text("\n".join(lines) + "\n")
    assert main(["build", "--landing", str(landing), "--warehouse", str(wh)]) == 1
    quarantine = _sql(wh, "SELECT file, line, \"column\", code, record FROM quarantine")
    assert quarantine == [("counts.tsv", 3, "untreated3", "negative_count", "-5.0")]


def test_validate_reports_file_line_and_exit_code(tmp_path, capsys, example_landing):
    landing = example_landing(tmp_path, "pasilla")
    assert main(["validate", str(landing)]) == 0
    (landing / "pasilla" / "samples.tsv").write_text("sample_id\tcondition\nuntreated1\tuntreated\n")
    assert main(["validate", str(landing)]) == 1
    out = capsys.readouterr().out
    assert "unknown_sample" in out
    assert "counts.tsv:1 column 'treated1'" in out


def test_sql_command_writes_csv(built, tmp_path):
    _, wh = built
    target = tmp_path / "out.csv"
    assert main(["sql", "SELECT study_id, count(*) AS n FROM samples GROUP BY ALL ORDER BY 1", "--warehouse",
                 str(wh), "--format", "csv", "--output", str(target)]) == 0
    assert pl.read_csv(target).rows() == [("airway", 8), ("pasilla", 7), ("study_es_0", 845), ("tcga_laml", 200)]
    assert main(["sql", "DELETE FROM genes", "--warehouse", str(wh)]) == 1  # read-only


def test_build_normalises_counts_like_edger_and_deseq2(built, r_table):
    _, wh = built
    reference = r_table("pasilla_sample_factors.tsv")
    got = pl.from_arrow(warehouse.connect(wh).sql(
        "SELECT sample_id, library_size, tmm_factor, size_factor FROM rna_sample_factors "
        "WHERE study_id = 'pasilla'").to_arrow_table())
    joined = reference.join(got, on="sample_id", suffix="_ours")
    assert joined.height == 7
    for column in ("library_size", "tmm_factor", "size_factor"):
        relative = ((joined[column] - joined[f"{column}_ours"]).abs() / joined[column]).max()
        assert relative < 1e-6, column
    # DESeq2 1.38 on pasilla (~ type + condition) finds 1,068 genes at padj < 0.05 (tests/data/r_reference)
    (hits,) = _sql(wh, "SELECT count(*) FROM differential_expression WHERE study_id = 'pasilla' AND padj < 0.05")[0]
    assert hits == 1068
    # the same genes, and the same genes without padj (independent filtering) as R's results()
    r = pl.read_csv(Path(__file__).resolve().parents[1] / "data" / "r_reference" / "pasilla_de_condition.tsv.gz",
                    separator="\t", null_values="NA")
    ours = pl.from_arrow(warehouse.connect(wh).sql(
        "SELECT feature_id, padj FROM differential_expression WHERE study_id = 'pasilla'").to_arrow_table())
    assert set(ours.filter(pl.col("padj") < 0.05)["feature_id"]) == set(r.filter(pl.col("padj") < 0.05)["feature_id"])
    assert set(ours.filter(pl.col("padj").is_null())["feature_id"]) == set(r.filter(pl.col("padj").is_null())[
        "feature_id"])


def test_build_again_reports_unchanged_studies_and_writes_nothing(built, capsys):
    landing, wh = built
    versions = _sql(wh, "SELECT table_name, delta_version FROM catalog_versions ORDER BY 1")
    assert main(["build", "--landing", str(landing), "--warehouse", str(wh), "--study", "airway"]) == 0
    assert "airway ... unchanged" in capsys.readouterr().out
    assert _sql(wh, "SELECT table_name, delta_version FROM catalog_versions ORDER BY 1") == versions


def test_build_documents_joined_view_columns_by_their_own_table(built):
    _, wh = built
    comments = dict(_sql(wh, "SELECT table_name, comment FROM duckdb_columns() WHERE column_name = 'assay' "
                             "AND table_name IN ('rna_expression', 'gene_mapping_summary', 'rna_counts')"))
    assert comments["rna_expression"] == comments["gene_mapping_summary"] == comments["rna_counts"]
    assert "Count assay the contrast" not in comments["rna_expression"]


def test_build_mapping_summary_counts_protein_rows_that_keep_their_gene(built):
    _, wh = built
    # study_es_0 RPPA: 16 antibodies, every protein_abundance row carries a gene (several per gene: phospho sites)
    rows = _sql(wh, "SELECT identifiers, with_gene, mapped_fraction FROM gene_mapping_summary "
                    "WHERE study_id = 'study_es_0' AND assay = 'rppa'")
    assert rows == [(16, 16, 1.0)]
    assert _sql(wh, "SELECT count(*) FROM protein_abundance WHERE assay = 'rppa' AND gene_id IS NULL") == [(0,)]


def test_unknown_sample_issue_points_at_the_header_line(tmp_path, example_landing):
    landing = example_landing(tmp_path, "pasilla")
    counts = landing / "pasilla" / "counts.tsv"
    counts.write_text("# exported by a pipeline\n" + counts.read_text().replace("treated3", "treated9", 1))
    assert main(["build", "--landing", str(landing), "--warehouse", str(tmp_path / "wh")]) == 1
    rows = _sql(tmp_path / "wh", "SELECT file, line, \"column\", code FROM ingest_issues WHERE severity = 'error'")
    assert rows == [("counts.tsv", 2, "untreated9", "unknown_sample")]  # "treated3" inside "untreated3"


# awk -F'\t' 'NR>1{for(i=2;i<=NF;i++) if($i>0) d[i]++} END{...}' examples/pasilla/counts.tsv
PASILLA_DETECTED_GENES = {"untreated1": 10529, "untreated2": 11154, "untreated3": 10202, "untreated4": 10281,
                          "treated1": 11208, "treated2": 10323, "treated3": 10332}


def test_build_sample_qc_counts_libraries_and_detected_genes_by_hand(built):
    _, wh = built
    rows = _sql(wh, "SELECT sample_id, library_size, detected_genes, qc_pass FROM sample_qc WHERE study_id = 'pasilla'")
    assert {s: lib for s, lib, _, _ in rows} == PASILLA_LIBRARY_SIZES
    assert {s: n for s, _, n, _ in rows} == PASILLA_DETECTED_GENES
    assert all(ok for *_, ok in rows)  # the DESeq2 vignette's libraries are all fine


def test_build_embeddings_and_clusters_for_every_count_study(built):
    _, wh = built
    qc = dict(_sql(wh, "SELECT study_id, count(*) FROM sample_qc GROUP BY ALL"))
    assert qc == {"airway": 8, "pasilla": 7}  # tcga_laml and study_es_0 have no raw counts: no rows
    pcs = dict(_sql(wh, "SELECT study_id, count(DISTINCT sample_id) FROM sample_embeddings WHERE component = 1 "
                        "GROUP BY ALL"))
    assert pcs == {"airway": 8, "pasilla": 7}
    methods = _sql(wh, "SELECT DISTINCT study_id, method FROM sample_clusters WHERE k = 2 ORDER BY ALL")
    assert methods == [("airway", "consensus"), ("airway", "hierarchical"), ("pasilla", "consensus"),
                       ("pasilla", "hierarchical")]


def test_build_writes_a_report_per_study_that_renders_in_chromium(built):
    from tests.browser import render
    from transforms.report.html import SECTIONS

    _, wh = built
    listed = dict(_sql(wh, "SELECT study_id, report_path FROM study_reports"))
    assert listed == {s: f"reports/{s}/index.html" for s in ("airway", "pasilla", "tcga_laml", "study_es_0")}
    assert all((wh / path).is_file() for path in listed.values())
    index = (wh / "reports" / "index.html").read_text()
    assert all(f'href="{s}/index.html"' in index for s in listed)
    for study, images in (("pasilla", 5), ("tcga_laml", 0)):  # QC bars, heatmap, PCA, volcano, MA; none for LAML
        rendered = render(wh / listed[study])
        assert rendered.console == []
        assert all(f'id="{section}"' in rendered.dom for section in SECTIONS)
        assert rendered.dom.count("<img") == images
    assert render(wh / "reports" / "index.html").console == []


def test_build_cbioportal_copy_number_rna_correlation_equals_scipy(built, shared_data):
    from scipy import stats

    _, wh = built
    # study_es_0: ERCC5 is the gene with both a log2 CNA row (data_cna_log2.txt, 'ERCC5|aaa') and an expression
    # row (data_expression_median.txt); correlate them over the samples where both files have a number
    folder = shared_data / "cbioportal_study_es_0"

    def row(file: str, label: str) -> dict[str, float]:
        table = pl.read_csv(folder / file, separator="\t", infer_schema=False)
        values = table.filter(pl.col("Hugo_Symbol") == label).drop("Hugo_Symbol", "Entrez_Gene_Id").row(0, named=True)
        return {s: float(v) for s, v in values.items() if v not in (None, "", "NA")}

    cn, rna = row("data_cna_log2.txt", "ERCC5|aaa"), row("data_expression_median.txt", "ERCC5")
    both = sorted(set(cn) & set(rna))
    x, y = [cn[s] for s in both], [rna[s] for s in both]
    found = {m: (r, p, n) for m, r, p, n in _sql(
        wh, "SELECT c.method, c.r, c.pvalue, c.n FROM omics_correlations c JOIN genes g USING (gene_id) "
            "WHERE c.study_id = 'study_es_0' AND g.symbol = 'ERCC5' AND c.layer_x = 'copy_number' "
            "AND c.layer_y = 'rna'")}
    for method, test in (("spearman", stats.spearmanr), ("pearson", stats.pearsonr)):
        result = test(x, y)
        assert found[method][0] == pytest.approx(result.statistic, abs=1e-12)
        assert found[method][1] == pytest.approx(result.pvalue, rel=1e-9)
        assert found[method][2] == len(both)


def test_build_publishes_a_study_whose_one_contrast_cannot_be_fitted(tmp_path, capsys, example_landing):
    # airway with two more contrasts: one by cell line (2 samples each, dex as covariate) that can be fitted, and
    # one naming a covariate no sample has. The bad one failed the study's load at ingest (an error) and, past
    # that, its DE stage: nothing of airway was published. Now it is a located warning and DE skips it alone.
    landing = example_landing(tmp_path, "airway")
    manifest = landing / "airway" / "study.yaml"
    text = manifest.read_text().replace(
        "    covariates: [cell]\n",
        "    covariates: [cell]\n"
        "  - {name: n61311_vs_n052611, factor: cell, test: N61311, reference: N052611, covariates: [dex]}\n"
        "  - {name: by_lab, factor: dex, test: trt, reference: untrt, covariates: [lab]}\n", 1)
    manifest.write_text(text)
    line = text.splitlines().index(
        "  - {name: by_lab, factor: dex, test: trt, reference: untrt, covariates: [lab]}") + 1
    wh = tmp_path / "warehouse"
    assert main(["build", "--landing", str(landing), "--warehouse", str(wh)]) == 0
    assert _sql(wh, "SELECT file, line, \"column\", code, severity FROM ingest_issues WHERE code = "
                    "'invalid_contrast'") == [("study.yaml", line, "contrasts[2].covariates", "invalid_contrast",
                                               "warning")]
    # the published study: both fitted contrasts, 20 genes each (featurecounts.txt: 20 genes)
    assert _sql(wh, "SELECT contrast, count(*) FROM differential_expression GROUP BY ALL ORDER BY 1") == [
        ("dex_vs_untreated", 20), ("n61311_vs_n052611", 20)]
    assert _sql(wh, "SELECT count(*) FROM rna_vst") == [(20 * 8,)]
