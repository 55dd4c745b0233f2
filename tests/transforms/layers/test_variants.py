"""Mutation status and gene panels; expected values from awk on the raw files or written by hand."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from transforms.ingest.parse.gene_panel import parse_gene_panels
from transforms.ingest.parse.maf import parse_maf
from transforms.ingest.parse.matrix import parse_matrix
from transforms.issues import IssueLog
from transforms.layers.variants import (
    NON_SILENT,
    SO_SEVERITY,
    mutation_status_from_matrix,
    mutation_status_from_variants,
    variant_class,
)


def test_variant_class_maf_and_vcf_alleles_agree() -> None:
    alleles = pl.DataFrame({
        "ref": ["C", "-", "A", "CCT", "T", "GT", "GT", "AT", "ATG", "CATATT", "A"],
        "alt": ["T", "CCTCTT", "ACCTCTT", "C", "-", "GTT", "G", "AC", "GCA", "GGGG", "<DEL>"],
    })
    got = alleles.select(variant_class(pl.col("ref"), pl.col("alt")).alias("c"))["c"].to_list()
    assert got == ["SNV", "insertion", "insertion", "deletion", "deletion", "insertion", "deletion", "SNV",
                   "MNV", "complex", "complex"]


def test_non_silent_excludes_silent_terms() -> None:
    assert {"missense_variant", "stop_gained", "frameshift_variant", "splice_site_variant"} <= NON_SILENT
    assert not {"synonymous_variant", "intron_variant", "3_prime_UTR_variant", "splice_region_variant"} & NON_SILENT
    assert set(SO_SEVERITY) >= NON_SILENT


def test_mutation_status_from_variants_laml(shared_data: Path) -> None:
    parsed = parse_maf(shared_data / "variants_tcga_laml_maftools" / "tcga_laml.maf.gz", issues=IssueLog("t"))
    status = mutation_status_from_variants(parsed.records.collect(), samples=parsed.columns)
    # awk: genes with >= 1 variant in maftools' vc_nonSyn classes: 1241; samples 193
    assert status["feature_id"].n_unique() == 1241
    assert status.height == 193 * 1241
    # zcat tcga_laml.maf.gz | awk -F'\t' '$1=="DNMT3A" && $9 ~ /^(Frame_Shift_...|Missense_Mutation)$/' -> 48 samples
    dnmt3a = status.filter(pl.col("feature_id") == "DNMT3A")
    assert dnmt3a["mutated"].sum() == 48
    assert status["mutated"].null_count() == 0


def test_mutation_status_from_variants_counts_and_top_consequence() -> None:
    variants = pl.DataFrame({
        "column": ["S1", "S1", "S1", "S2"],
        "feature_id": ["TP53", "TP53", "KRAS", "KRAS"],
        "consequence": ["missense_variant", "stop_gained", "synonymous_variant", "missense_variant"],
    })
    status = mutation_status_from_variants(variants, samples=["S1", "S2", "S3"])
    rows = {(r["column"], r["feature_id"]): r for r in status.iter_rows(named=True)}
    # by hand: TP53 and KRAS each have a non-silent variant somewhere -> 3 samples x 2 genes
    assert len(rows) == 6
    assert (rows["S1", "TP53"]["mutated"], rows["S1", "TP53"]["n_variants"]) == (True, 2)
    assert rows["S1", "TP53"]["top_consequence"] == "stop_gained"  # stop_gained outranks missense
    assert (rows["S1", "KRAS"]["mutated"], rows["S1", "KRAS"]["top_consequence"]) == (False, "synonymous_variant")
    assert (rows["S3", "KRAS"]["mutated"], rows["S3", "KRAS"]["n_variants"]) == (False, 0)


def test_parse_gene_panels_es0_outside_panel_is_null(shared_data: Path) -> None:
    study = shared_data / "cbioportal_study_es_0"
    issues = IssueLog("t")
    panels = parse_gene_panels(study / "data_gene_panel_matrix.txt",
                               [study / "data_gene_panel_testpanel1.txt", study / "data_gene_panel_testpanel2.txt"],
                               issues=issues)
    # data_gene_panel_matrix.txt 'mutations' column: TCGA-A1-A0SB-02 TESTPANEL2, TEST_SAMPLE_5 NA
    assert "BRCA2" not in panels["TCGA-A1-A0SB-02"]
    assert "FGFR3" in panels["TCGA-A1-A0SB-02"]
    assert panels["TEST_SAMPLE_5"] == set()
    assert len(panels["TCGA-A1-A0SB-01"]) == 17  # gene_list of TESTPANEL1 has 17 symbols
    maf = parse_maf(study / "data_mutations_extended.maf", issues=issues)
    status = mutation_status_from_variants(maf.records.collect(), samples=maf.columns, panel_genes=panels)
    rows = {(r["column"], r["feature_id"]): r["mutated"] for r in status.iter_rows(named=True)}
    # awk: TCGA-A1-A0SB-02 (TESTPANEL2: no BRCA2) has no BRCA2 variant -> not profiled, null, not false
    assert rows["TCGA-A1-A0SB-02", "BRCA2"] is None
    # ... but it has a non-silent MSH3 variant (awk '$16=="TCGA-A1-A0SB-02"'), MSH3 is on TESTPANEL2
    assert rows["TCGA-A1-A0SB-02", "MSH3"] is True
    # ACP3 (on TESTPANEL1) has missense variants in TEST_SAMPLE_1..4 and 15, none in TCGA-A1-A0SB-01 -> false
    assert rows["TCGA-A1-A0SB-01", "ACP3"] is False
    assert issues.issues == []


def test_mutation_status_from_matrix(tmp_path: Path) -> None:
    path = tmp_path / "mut.tsv"
    path.write_text("Hugo_Symbol\tS1\tS2\tS3\nTP53\t1\t0\tNA\nKRAS\t\t2\t1\n")
    parsed = mutation_status_from_matrix(parse_matrix(path, issues=IssueLog("t")))
    rows = {(r["column"], r["feature_id"]): r for r in parsed.records.collect().iter_rows(named=True)}
    assert [rows["S1", "TP53"]["mutated"], rows["S2", "TP53"]["mutated"], rows["S3", "TP53"]["mutated"]] == [
        True, False, None]
    assert rows["S1", "KRAS"]["mutated"] is None
    assert rows["S1", "KRAS"]["problem"] is None
    assert rows["S2", "KRAS"]["mutated"] is None
    assert rows["S2", "KRAS"]["problem"] == "mutation call is not 0 or 1: 2.0"
    assert rows["S2", "KRAS"]["line"] == 3


@pytest.mark.parametrize("consequence", ["missense_variant", "frameshift_variant"])
def test_mutation_status_from_variants_unknown_sample_ignored(consequence: str) -> None:
    variants = pl.DataFrame({"column": ["S9"], "feature_id": ["TP53"], "consequence": [consequence]})
    assert mutation_status_from_variants(variants, samples=["S1"]).height == 0
