from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest

from transforms.ingest.parse.featurecounts import parse_featurecounts
from transforms.ingest.parse.labels import sample_label_from_path
from transforms.ingest.parse.matrix import RECORD_SCHEMA
from transforms.ingest.parse.rsem import parse_rsem
from transforms.ingest.parse.salmon import parse_salmon
from transforms.ingest.parse.star import parse_star
from transforms.issues import InputError, IssueLog

# A ReadsPerGene.out.tab laid out as in the STAR manual (--quantMode GeneCounts): 4 N_* rows, then
# gene, unstranded, 1st-read-strand (htseq -s yes), 2nd-read-strand (htseq -s reverse); a reverse library.
STAR_TEXT = (
    "N_unmapped\t2674603\t2674603\t2674603\n"
    "N_multimapping\t2097790\t2097790\t2097790\n"
    "N_noFeature\t1899896\t15229052\t2189456\n"
    "N_ambiguous\t1182958\t65519\t595212\n"
    "ENSG00000223972.5\t0\t0\t0\n"
    "ENSG00000227232.5\t40\t2\t38\n"
    "ENSG00000278267.1\t5\t0\t5\n"
    "ENSG00000243485.5\t120\t9\t111\n"
)


def _salmon(shared_data: Path) -> Path:
    return shared_data / "rnaseq_airway" / "salmon" / "SRR1039508" / "quant.sf.gz"


def _value(records: pl.DataFrame, feature_id: str) -> tuple:
    return records.filter(pl.col("feature_id") == feature_id).select("value", "line").row(0)


def test_parse_featurecounts_airway_labels_counts_lengths(shared_data: Path):
    issues = IssueLog("airway")
    parsed = parse_featurecounts(
        shared_data / "rnaseq_airway" / "featurecounts" / "airway_subset_featureCounts.txt", issues=issues)
    records = parsed.records.collect()
    assert dict(records.schema) == RECORD_SCHEMA
    # head -2 | tail -1: BAM columns SRR1039508_subset.bam ... SRR1039521_subset.bam, `.bam` stripped
    assert parsed.columns == [f"SRR10395{n}_subset" for n in ("08", "09", "12", "13", "16", "17", "20", "21")]
    # awk -F'\t' '$1=="ENSG00000120948"{print NR; for(i=6;i<=NF;i++) printf "%s ", $i}' -> line 7,
    # Length 4622, counts 2673 2031 3263 1570 3446 3615 2171 1949
    gene = records.filter(pl.col("feature_id") == "ENSG00000120948").sort("column")
    assert gene.get_column("value").to_list() == [2673, 2031, 3263, 1570, 3446, 3615, 2171, 1949]
    assert set(gene.get_column("line")) == {7}
    assert parsed.features.filter(pl.col("feature_id") == "ENSG00000120948").row(0) == ("ENSG00000120948", 7, 4622)
    assert parsed.features.schema["length"] == pl.Int64
    # awk -F'\t' 'NR>2{n++; s+=$7} END{print n, s}' -> 20 genes, 6649 reads in SRR1039508_subset
    assert parsed.features.height == 20
    assert records.filter(pl.col("column") == "SRR1039508_subset").get_column("value").sum() == 6649
    assert parsed.metadata["program"] == "featureCounts v2.0.3"
    assert issues.issues == []


def test_parse_featurecounts_strips_directories_and_keeps_extra_attributes(tmp_path: Path):
    path = tmp_path / "counts.txt"
    path.write_text("# Program:featureCounts v2.0.6; Command:\"featureCounts\"\n"
                    "Geneid\tChr\tStart\tEnd\tStrand\tLength\tgene_name\t/data/run1/S1.bam\truns/S2.BAM\n"
                    "G1\t1\t10\t20\t+\t11\tABC\t5\t7\n")
    parsed = parse_featurecounts(path, issues=IssueLog("t"))
    assert parsed.columns == ["S1", "S2"]
    assert parsed.records.collect().sort("column").select("column", "value").rows() == [("S1", 5.0), ("S2", 7.0)]


@pytest.mark.parametrize(("text", "code"), [
    pytest.param("Geneid\tChr\tStart\tEnd\tStrand\tLength\ta/S1.bam\tb/S1.bam\nG1\t1\t10\t20\t+\t11\t5\t7\n",
                 "duplicate_column", id="two_bams_same_label"),
    pytest.param("Geneid\tChr\tStart\tEnd\tStrand\tS1.bam\nG1\t1\t10\t20\t+\t5\n", "missing_column",
                 id="missing_length"),
])
def test_parse_featurecounts_bad_header_is_error(tmp_path: Path, text: str, code: str):
    path = tmp_path / "counts.txt"
    path.write_text(text)
    with pytest.raises(InputError) as caught:
        parse_featurecounts(path, issues=IssueLog("t"))
    assert caught.value.issue.code == code


def test_parse_salmon_counts_and_tpm(shared_data: Path):
    issues = IssueLog("airway")
    counts = parse_salmon(_salmon(shared_data), issues=issues, sample="SRR1039508")
    records = counts.records.collect()
    # tests/data keeps the first 1,000 of the 205,870 transcripts (rnaseq_airway/SOURCE.md):
    # zcat quant.sf.gz | awk -F'\t' 'NR>1{s+=$5; n++} END{printf "%d %.6f", n, s}' -> 1000 69996.885000
    assert records.height == 1000
    assert records.get_column("value").sum() == pytest.approx(69996.885, abs=1e-6)
    assert set(records.get_column("column")) == {"SRR1039508"}
    # zcat quant.sf.gz | awk -F'\t' '$1=="ENST00000514057.1"{print NR, $0}' -> 96 ... 539.943 644.155432 4745.448
    assert _value(records, "ENST00000514057.1") == (4745.448, 96)
    assert counts.features.filter(pl.col("feature_id") == "ENST00000514057.1").row(0) == (
        "ENST00000514057.1", 96, 681.0, 539.943)
    tpm = parse_salmon(_salmon(shared_data), issues=issues, sample="SRR1039508", quantity="tpm")
    assert _value(tpm.records.collect(), "ENST00000514057.1") == (644.155432, 96)
    assert issues.issues == []


def test_parse_salmon_sums_transcripts_to_genes(shared_data: Path):
    # hand-made map: versions stripped on both sides; lines 2, 91 -> G1; 3, 5 -> G0 (TPM 0); 96 -> G2
    tx2gene = pl.DataFrame({"transcript_id": ["ENST00000456328", "ENST00000457540", "ENST00000450305",
                                              "ENST00000619216", "ENST00000514057.1"],
                            "gene": ["G1", "G1", "G0", "G0", "G2"]})
    parsed = parse_salmon(_salmon(shared_data), issues=IssueLog("t"), sample="SRR1039508", tx2gene=tx2gene)
    records = parsed.records.collect()
    # 16.907 + 1126.147 (lines 2 and 91); first line 2
    assert _value(records, "G1") == pytest.approx((1143.054, 2))
    assert _value(records, "G0") == (0.0, 3)
    assert _value(records, "G2") == (4745.448, 96)
    # every other transcript kept under its own id; total reads unchanged (zcat | awk sum of $5)
    assert records.height == 1000 - 5 + 3
    assert _value(records, "ENST00000488147.1") == (69.349, 4)
    assert records.get_column("value").sum() == pytest.approx(69996.885, abs=1e-6)
    assert parsed.metadata.items() >= {"genes": 3, "transcripts_summed": 5, "transcripts_unmapped": 995}.items()
    lengths = {r[0]: r[2:] for r in parsed.features.filter(pl.col("feature_id").str.starts_with("G")).rows()}
    # awk: (0.793609*1561.450 + 91.200510*905.023)/(0.793609+91.200510) = 910.685823, same with Length 1049.288189
    assert lengths["G1"] == pytest.approx((1049.288189, 910.685823))
    # TPM 0: plain means (632+68)/2 and (477+3)/2
    assert lengths["G0"] == pytest.approx((350.0, 240.0))


def test_parse_salmon_gene_with_bad_transcript_is_problem(tmp_path: Path):
    path = tmp_path / "quant.sf"
    path.write_text("Name\tLength\tEffectiveLength\tTPM\tNumReads\n"
                    "T1.1\t100\t80\t10\t5\nT2.3\t200\t180\t20\tfive\nT3.1\t300\t280\t0\t0\n")
    parsed = parse_salmon(path, issues=IssueLog("t"), sample="S",
                          tx2gene=pl.DataFrame({"transcript_id": ["T1", "T2"], "gene": ["G", "G"]}))
    records = parsed.records.collect().sort("line")
    assert records.select("feature_id", "value", "line", "problem", "raw").rows() == [
        ("G", None, 2, "1 of 2 transcripts unreadable; T2.3: non-numeric value 'five'", "five"),
        ("T3.1", 0.0, 4, None, None)]


def test_parse_salmon_missing_column_is_error(tmp_path: Path):
    path = tmp_path / "quant.sf"
    path.write_text("Name\tLength\tTPM\tNumReads\nT1\t100\t10\t5\n")
    with pytest.raises(InputError) as caught:
        parse_salmon(path, issues=IssueLog("t"), sample="S")
    assert caught.value.issue.code == "missing_column"


def test_parse_rsem_geuvadis_counts_and_tpm(shared_data: Path):
    path = shared_data / "rnaseq_geuvadis_rsem" / "ERR188021.genes.results.gz"
    issues = IssueLog("geuvadis")
    counts = parse_rsem(path, issues=issues, sample="ERR188021")
    records = counts.records.collect()
    # tests/data keeps the first 1,000 of the 58,288 genes (rnaseq_geuvadis_rsem/SOURCE.md)
    # zcat | awk 'END{print NR-1}' -> 1000 genes
    assert records.height == 1000
    # zcat | grep -n -P '^ENSG00000002586\.18\t' -> 25: length 466.00 eff 290.86 count 0.50 TPM 48.31
    assert _value(records, "ENSG00000002586.18") == (0.5, 25)
    # zcat | grep -n '^ENSG00000019582\.' -> 396: expected_count 184.00, TPM 4370.96
    assert _value(records, "ENSG00000019582.14") == (184.0, 396)
    # zcat | awk -F'\t' 'NR>1{s+=$5} END{printf "%.2f", s}' -> 2114.75
    assert records.get_column("value").sum() == pytest.approx(2114.75)
    # zcat | grep -c _PAR_Y -> 1 row (line 26, ENSG00000002586.18_PAR_Y), kept as given
    assert records.filter(pl.col("feature_id").str.ends_with("_PAR_Y")).height == 1
    assert counts.features.filter(pl.col("feature_id") == "ENSG00000002586.18").select(
        "line", "length", "effective_length").row(0) == (25, 466.0, 290.86)
    tpm = parse_rsem(path, issues=issues, sample="ERR188021", quantity="tpm").records.collect()
    assert _value(tpm, "ENSG00000019582.14") == (4370.96, 396)
    assert issues.issues == []


def test_parse_rsem_zero_effective_length_is_an_unknown_length_not_an_error(shared_data: Path, tmp_path: Path,
                                                                          reference, study_folder):
    folder = shared_data / "rnaseq_geuvadis_rsem" / "zero_effective_length"
    issues = IssueLog("geuvadis")
    parsed = parse_rsem(folder / "ERR188356.genes.results", issues=issues, sample="ERR188356")
    lengths = dict(parsed.features.select("line", "effective_length").iter_rows())
    # awk -F'\t' 'NR>1{print NR, $4}': lines 2-6 have effective lengths (1999.94 ...), lines 7-21 have 0.00
    assert (lengths[2], lengths[6]) == (1999.94, 2360.11)
    assert [line for line, value in lengths.items() if value is None] == list(range(7, 22))
    (issue,) = issues.issues
    assert (issue.code, issue.severity, issue.line, issue.column) == ("zero_effective_length", "info", 7,
                                                                      "effective_length")
    assert issue.message.startswith("15 feature(s)")
    # through ingest and the table contract: the rows load (counts kept, e.g. line 14: 1.40), lengths empty
    study = study_folder(tmp_path, "study_id: g\nname: g\nassays:\n  - {name: rsem, kind: rna_counts, format: rsem,"
                         " path: '*.genes.results', gene_id_type: ensembl}\n",
                         {"ERR188356.genes.results": (folder / "ERR188356.genes.results").read_bytes()})
    from transforms.ingest.study import read_study
    from warehouse.load import study_issues

    ingest = read_study(study, reference=reference)
    assert study_issues(ingest).filter(pl.col("severity") != "info").height == 0
    counts = pl.concat(ingest.tables["rna_counts"]).collect()
    assert counts.height == 20
    assert counts.filter(pl.col("feature_id") == "ENSG00000207165.1").select("count", "length").row(0) == (1.4, None)


def test_parse_rsem_bad_cell_and_wrong_file(tmp_path: Path):
    path = tmp_path / "S.genes.results"
    path.write_text("gene_id\ttranscript_id(s)\tlength\teffective_length\texpected_count\tTPM\tFPKM\n"
                    "G1\tT1\t100\t80\t2.5\t1\t1\nG2\tT2\t100\t80\t1,5\t1\t1\n")
    records = parse_rsem(path, issues=IssueLog("t"), sample="S").records.collect().sort("line")
    assert records.select("feature_id", "value", "line", "problem").rows() == [
        ("G1", 2.5, 2, None), ("G2", None, 3, "non-numeric value '1,5'")]
    wrong = tmp_path / "quant.sf"
    wrong.write_text("Name\tLength\tEffectiveLength\tTPM\tNumReads\nT1\t1\t1\t1\t1\n")
    with pytest.raises(InputError) as caught:
        parse_rsem(wrong, issues=IssueLog("t"), sample="S")
    assert caught.value.issue.code == "missing_column"


@pytest.mark.parametrize(("strandedness", "values"), [
    ("unstranded", [0, 40, 5, 120]), ("forward", [0, 2, 0, 9]), ("reverse", [0, 38, 5, 111])])
def test_parse_star_picks_strand_column(tmp_path: Path, strandedness: str, values: list[int]):
    path = tmp_path / "S1.ReadsPerGene.out.tab"
    path.write_text(STAR_TEXT)
    issues = IssueLog("t")
    parsed = parse_star(path, issues=issues, sample="S1", strandedness=strandedness)
    records = parsed.records.collect().sort("line")
    assert records.get_column("value").to_list() == values
    assert records.get_column("line").to_list() == [5, 6, 7, 8]
    assert set(records.get_column("column")) == {"S1"}
    assert parsed.features.height == 4
    column = {"unstranded": 1, "forward": 2, "reverse": 3}[strandedness]
    expected = {line.split("\t")[0]: int(line.split("\t")[column]) for line in STAR_TEXT.splitlines()[:4]}
    assert parsed.metadata["summary"] == expected
    # totals of the gene rows: forward 2+9=11, reverse 38+5+111=154 -> a reverse library
    assert parsed.metadata["inferred_strandedness"] == "reverse"
    codes = [(i.severity, i.code) for i in issues.issues]
    assert ("info", "star_summary_rows") in codes
    assert (("warning", "strandedness_mismatch") in codes) == (strandedness != "reverse")


def test_parse_star_ragged_row_is_error(tmp_path: Path):
    path = tmp_path / "ReadsPerGene.out.tab"
    path.write_text(STAR_TEXT + "ENSG00000999999.1\t3\t1\n")
    issues = IssueLog("t")
    parse_star(path, issues=issues, sample="S1", strandedness="reverse")
    assert [(i.code, i.line) for i in issues.errors] == [("ragged_row", 9)]


def test_parse_star_gzip_and_empty(tmp_path: Path):
    path = tmp_path / "S1.ReadsPerGene.out.tab.gz"
    path.write_bytes(gzip.compress(STAR_TEXT.encode()))
    assert parse_star(path, issues=IssueLog("t"), sample="S1", strandedness="reverse").features.height == 4
    empty = tmp_path / "ReadsPerGene.out.tab"
    empty.write_text("")
    with pytest.raises(InputError) as caught:
        parse_star(empty, issues=IssueLog("t"), sample="S1", strandedness="reverse")
    assert caught.value.issue.code == "empty_file"


@pytest.mark.parametrize(("path", "format", "label"), [
    ("rsem/ERR188021.genes.results.gz", "rsem", "ERR188021"),
    ("rsem/ERR188021/genes.results", "rsem", "ERR188021"),
    ("star/X.ReadsPerGene.out.tab", "star", "X"),
    ("star/X_ReadsPerGene.out.tab", "star", "X"),
    ("star/S7/ReadsPerGene.out.tab", "star", "S7"),
    ("salmon/SRR1039508/quant.sf.gz", "salmon", "SRR1039508"),
    ("salmon/SRR1039508/quant.sf", "salmon", "SRR1039508"),
])
def test_sample_label_from_path_strips_fixed_names(path: str, format: str, label: str):
    assert sample_label_from_path(Path(path), format) == label


def test_sample_label_from_path_rejects_matrix_formats():
    with pytest.raises(ValueError, match="per-sample"):
        sample_label_from_path(Path("counts.tsv"), "featurecounts")


def test_parse_featurecounts_non_positive_length_is_one_located_error(tmp_path: Path):
    # a negative Length passed validate and then failed build on the table contract with unlocated messages
    path = tmp_path / "counts.txt"
    path.write_text("Geneid\tChr\tStart\tEnd\tStrand\tLength\tS1.bam\n"
                    "G1\t1\t10\t20\t+\t11\t5\nG2\t1\t10\t20\t+\t-4\t6\nG3\t1\t10\t20\t+\t0\t7\n")
    issues = IssueLog("t")
    parsed = parse_featurecounts(path, issues=issues)
    (error,) = issues.issues
    assert (error.code, error.severity, error.line, error.column) == ("invalid_length", "error", 3, "Length")
    assert "2 row(s)" in error.message
    assert parsed.features.get_column("length").to_list() == [11, None, None]
