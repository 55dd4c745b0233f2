"""parse_maf on the three real MAF flavours; expected values from awk/zcat on the raw files."""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest

from transforms.ingest.parse.maf import parse_maf
from transforms.issues import InputError, IssueLog


@pytest.fixture(scope="module")
def laml(shared_data: Path) -> pl.DataFrame:
    parsed = parse_maf(shared_data / "variants_tcga_laml_maftools" / "tcga_laml.maf.gz", issues=IssueLog("t"))
    return parsed.records.collect()


def test_parse_maf_laml_counts(laml: pl.DataFrame) -> None:
    # zcat tcga_laml.maf.gz | awk 'NR>1' | wc -l ; ... | cut -f14 | sort -u | wc -l
    assert laml.height == 2207
    assert laml["column"].n_unique() == 193
    # zcat tcga_laml.maf.gz | awk -F'\t' '$14=="TCGA-AB-3009"' | wc -l  (and TCGA-AB-2869)
    per_sample = dict(laml.group_by("column").len().iter_rows())
    assert per_sample["TCGA-AB-3009"] == 42
    assert per_sample["TCGA-AB-2869"] == 12
    assert laml["problem"].null_count() == laml.height


def test_parse_maf_laml_classification_counts(laml: pl.DataFrame) -> None:
    # zcat tcga_laml.maf.gz | awk -F'\t' 'NR>1{print $9}' | sort | uniq -c
    counts = dict(laml.group_by("variant_classification").len().iter_rows())
    assert counts == {"Missense_Mutation": 1342, "Silent": 449, "Nonsense_Mutation": 103, "Splice_Site": 92,
                      "Frame_Shift_Ins": 91, "Frame_Shift_Del": 52, "In_Frame_Ins": 42, "RNA": 10,
                      "In_Frame_Del": 10, "Intron": 8, "IGR": 5, "5'Flank": 3}
    consequences = dict(laml.group_by("consequence").len().iter_rows())
    assert consequences["missense_variant"] == 1342
    assert consequences["frameshift_variant"] == 91 + 52  # Frame_Shift_Ins + Frame_Shift_Del
    # zcat ... | cut -f10 | sort | uniq -c: SNP 2002, INS 141 (DEL 64 not asserted: one DEL row has ref and alt
    # of different non-empty lengths, which the shared REF/ALT rule calls complex)
    classes = dict(laml.group_by("variant_class").len().iter_rows())
    assert classes["SNV"] == 2002
    assert classes["insertion"] == 141


def test_parse_maf_laml_vaf_from_percent_column(laml: pl.DataFrame) -> None:
    # zcat tcga_laml.maf.gz | awk -F'\t' '$1=="ABCA10"': line 2, Splice_Site T>C, i_TumorVAF_WU 45.66
    row = laml.filter(pl.col("feature_id") == "ABCA10").row(0, named=True)
    assert row["line"] == 2
    assert row["vaf"] == pytest.approx(0.4566)
    assert (row["ref"], row["alt"], row["variant_class"]) == ("T", "C", "SNV")
    assert row["consequence"] == "splice_site_variant"
    assert row["impact"] == "HIGH"
    assert row["protein_change"] == "p.K960R"
    assert row["transcript_id"] == "NM_080282.3"


def test_parse_maf_vcf2maf_vaf_from_counts(shared_data: Path) -> None:
    parsed = parse_maf(shared_data / "variants_annotated_vcf" / "vcf2maf_test_b38_output.maf", issues=IssueLog("t"))
    frame = parsed.records.collect()
    assert frame.height == 25  # awk 'NR>2' vcf2maf_test_b38_output.maf | wc -l ('#version' line + header)
    # awk -F'\t' '$6==34792478 {print NR, $40, $42}': line 4, t_depth 901, t_alt_count 123
    row = frame.filter(pl.col("position") == 34792478).row(0, named=True)
    assert row["line"] == 4
    assert row["vaf"] == pytest.approx(123 / 901)
    assert row["depth"] == 901
    assert row["feature_id"] == "RUNX1"
    assert row["ensembl_gene"] == "ENSG00000159216"
    assert row["protein_change"] == "p.G367D"
    assert row["impact"] == "MODERATE"


def test_parse_maf_cbioportal_counts_and_fallback_vaf(shared_data: Path) -> None:
    parsed = parse_maf(shared_data / "cbioportal_study_es_0" / "data_mutations_extended.maf", issues=IssueLog("t"))
    frame = parsed.records.collect()
    # awk -F'\t' 'NR>2' data_mutations_extended.maf | wc -l ; cut -f16 | sort -u | wc -l
    assert frame.height == 36
    assert len(parsed.columns) == 21
    # awk -F'\t' 'NR==3' data_mutations_extended.maf: OR11H1, t_depth 0, t_alt_count empty, tumor_vaf 13.64
    first = frame.row(0, named=True)
    assert first["line"] == 3
    assert first["feature_id"] == "OR11H1"
    assert first["vaf"] == pytest.approx(0.1364)


def test_parse_maf_missing_required_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.maf"
    path.write_text("#version 2.4\nHugo_Symbol\tChromosome\tStart_Position\n"
                    "TP53\t17\t7577120\n")
    with pytest.raises(InputError) as caught:
        parse_maf(path, issues=IssueLog("t"))
    assert caught.value.issue.code == "missing_column"
    assert caught.value.issue.line == 2


def test_parse_maf_non_integer_position_is_a_problem(tmp_path: Path) -> None:
    header = ("Hugo_Symbol\tEntrez_Gene_Id\tChromosome\tStart_Position\tReference_Allele\tTumor_Seq_Allele1\t"
              "Tumor_Seq_Allele2\tTumor_Sample_Barcode\tVariant_Classification\tt_depth\tt_alt_count")
    path = tmp_path / "bad.maf.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(header + "\n"
                 "TP53\t7157\t17\t75x7120\tC\tC\tT\tS1\tMissense_Mutation\t40\t10\n"
                 "Unknown\t1956\t7\t55249071\tC\tC\tT\tS2\tMissense_Mutation\t50\t25\n")
    issues = IssueLog("t")
    frame = parse_maf(path, issues=issues).records.collect()
    assert frame.height == 2
    bad = frame.row(0, named=True)
    assert bad["position"] is None
    assert bad["problem"] == "position is not an integer"
    assert bad["line"] == 2
    ok = frame.row(1, named=True)
    assert ok["feature_id"] == "1956"  # Hugo_Symbol 'Unknown' -> Entrez_Gene_Id
    assert ok["vaf"] == pytest.approx(0.5)
    assert ok["problem"] is None
    assert [(i.code, i.line) for i in issues.issues] == [("bad_value", 2)]
