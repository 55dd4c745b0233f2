from pathlib import Path

import polars as pl
import pytest

from transforms.ingest.parse.copy_number import parse_cn_log2, parse_gistic, parse_gistic_long
from transforms.ingest.parse.seg import parse_seg
from transforms.issues import InputError, IssueLog

ES0 = "cbioportal_study_es_0"
LAML = "variants_tcga_laml_maftools"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _cell(records: pl.LazyFrame, feature_id: str, column: str) -> dict:
    rows = records.filter(pl.col("feature_id") == feature_id, pl.col("column") == column).collect()
    assert rows.height == 1
    return rows.row(0, named=True)


# --- continuous log2 ---------------------------------------------------------------------------------------------

def test_parse_cn_log2_es0_shape_and_cell(shared_data):
    parsed = parse_cn_log2(shared_data / ES0 / "data_cna_log2.txt", issues=IssueLog("es_0"))
    records = parsed.records.collect()
    # awk -F'\t' 'NR==1{print NF-2} END{print NR-1}' data_cna_log2.txt -> 778 samples, 7 genes
    assert len(parsed.columns) == 778
    assert records.height == 7 * 778
    assert records.get_column("call").null_count() == records.height
    # awk -F'\t' 'NR==1{for(i=1;i<=NF;i++) if($i=="TCGA-A2-A04P-01") c=i} $1=="AGRN"{print NR, $c}' -> 3 0.208
    cell = _cell(parsed.records, "AGRN|375790", "TCGA-A2-A04P-01")
    assert cell["log2_ratio"] == pytest.approx(0.208)
    assert cell["line"] == 3
    assert cell["problem"] is None
    # the validator's deliberate 'ERCC5|aaa' symbol is kept as given: cut -f1,2 data_cna_log2.txt | tail -1
    assert "ERCC5|aaa|2073" in records.get_column("feature_id").to_list()


# --- discrete GISTIC, long and wide ------------------------------------------------------------------------------

def test_parse_gistic_long_es0_counts(shared_data):
    issues = IssueLog("es_0")
    parsed = parse_gistic_long(shared_data / ES0 / "data_cna_discrete.txt", issues=issues)
    records = parsed.records.collect()
    # awk -F'\t' 'NR>1' data_cna_discrete.txt | wc -l; cut -f3 | sort -u | wc -l; cut -f1 | sort -u | wc -l
    assert records.height == 6304
    assert len(parsed.columns) == 788
    assert records.get_column("feature_id").n_unique() == 8
    # awk -F'\t' 'NR>1{print $4}' data_cna_discrete.txt | sort | uniq -c
    counts = dict(records.get_column("call").value_counts().iter_rows())
    assert counts == {-2: 14, -1: 1491, 0: 4561, 1: 189, 2: 49}
    # awk -F'\t' '$3=="TCGA-A7-A26F-01" && $1=="ERCC5"{print NR, $4}' data_cna_discrete.txt -> 848 -2
    cell = _cell(parsed.records, "ERCC5|2073", "TCGA-A7-A26F-01")
    assert (cell["call"], cell["line"]) == (-2, 848)
    # awk -F'\t' 'NR>1 && ($5!=""||$6!=""||$7!=""||$9!=""||$10!=""||$11!="")' data_cna_discrete.txt | wc -l -> 7
    [info] = [i for i in issues.issues if i.code == "columns_not_loaded"]
    assert info.severity == "info"
    assert info.message.startswith("7 row(s)")


def test_parse_gistic_wide_matches_long(shared_data):
    wide = parse_gistic(shared_data / ES0 / "extras/legacy_wide_cna_discrete/data_cna_discrete.txt",
                        issues=IssueLog("es_0")).records.collect()
    long = parse_gistic_long(shared_data / ES0 / "data_cna_discrete.txt", issues=IssueLog("es_0")).records.collect()
    # tr -d '\r' < legacy wide | awk: 8 genes x 788 samples, same value counts as the long file
    assert wide.height == 6304
    assert wide.get_column("problem").null_count() == wide.height
    # awk -F'\t' 'NR==1{for(i=1;i<=NF;i++) if($i=="TCGA-A2-A04U-01") c=i} {print NR, $1, $c}' legacy wide:
    # every gene is 2 except ACP3 (line 9) = 0; the long file has the same (lines 154-161)
    assert _cell(wide.lazy(), "AGRN|375790", "TCGA-A2-A04U-01")["call"] == 2
    assert _cell(wide.lazy(), "ACP3|55", "TCGA-A2-A04U-01")["call"] == 0
    assert _cell(wide.lazy(), "ACP3|55", "TCGA-A2-A04U-01")["line"] == 9
    # an awk join of the two files (CR removed) finds no differing cell
    joined = wide.join(long, on=["feature_id", "column"], how="full", suffix="_long")
    assert joined.height == 6304
    assert (joined.get_column("call") == joined.get_column("call_long")).all()


def test_parse_gistic_out_of_range_and_missing(tmp_path):
    path = _write(tmp_path, "cna.txt",
                  "Hugo_Symbol\tEntrez_Gene_Id\tS1\tS2\n"
                  "TP53\t7157\t3\t-2\n"
                  "MYC\t\t0.5\tNA\n"
                  "\t1956\tabc\t1\n")
    records = parse_gistic(path, issues=IssueLog("t")).records.collect().sort("line", "column")
    by_cell = {(r["feature_id"], r["column"]): r for r in records.iter_rows(named=True)}
    assert by_cell["TP53|7157", "S1"]["call"] is None
    assert by_cell["TP53|7157", "S1"]["problem"] == "call 3 outside -2..2"
    assert by_cell["TP53|7157", "S1"]["raw"] == "3"
    assert by_cell["TP53|7157", "S1"]["line"] == 2
    assert by_cell["TP53|7157", "S2"]["call"] == -2
    assert by_cell["MYC", "S1"]["problem"] == "fractional call 0.5"
    assert by_cell["MYC", "S2"]["call"] is None
    assert by_cell["MYC", "S2"]["problem"] is None
    assert by_cell["1956", "S1"]["problem"] == "non-numeric value 'abc'"
    assert by_cell["1956", "S2"]["call"] == 1


def test_parse_gistic_generic_first_column_is_the_gene(tmp_path):
    # a plain genes x samples matrix (study.yaml format gistic) names its gene column freely
    path = _write(tmp_path, "cna.txt", "Gene\tS1\tS2\nTP53\t1\t-2\n")
    records = parse_gistic(path, issues=IssueLog("t")).records.collect()
    assert records.select("column", "feature_id", "call").rows() == [("S1", "TP53", 1), ("S2", "TP53", -2)]


def test_parse_gistic_cbioportal_columns_are_not_samples(tmp_path):
    path = _write(tmp_path, "cna.txt", "Entrez_Gene_Id\tHugo_Symbol\tS1\n7157\tTP53\t1\n")
    parsed = parse_gistic(path, issues=IssueLog("t"))
    assert parsed.columns == ["S1"]
    assert parsed.records.collect()["feature_id"].to_list() == ["TP53|7157"]


def test_parse_gistic_long_bad_rows(tmp_path):
    path = _write(tmp_path, "cna_long.txt",
                  "Hugo_Symbol\tEntrez_Gene_Id\tSample_Id\tValue\n"
                  "TP53\t7157\tS1\t3\n"
                  "TP53\t7157\tS1\t1\n"
                  "\t\tS2\t1\n"
                  "EGFR\t1956\t\t2\n"
                  "EGFR\t1956\tS2\tNA\n")
    issues = IssueLog("t")
    records = parse_gistic_long(path, issues=issues).records.collect()
    assert records.select("line", "call", "problem").rows() == [(2, None, "call 3 outside -2..2"), (6, None, None)]
    found = {(i.code, i.line, i.column) for i in issues.issues}
    assert found == {("duplicate_record", 3, "Hugo_Symbol"), ("empty_feature_id", 4, "Hugo_Symbol"),
                     ("empty_sample_label", 5, "Sample_Id")}


def test_parse_gistic_long_missing_column(tmp_path):
    path = _write(tmp_path, "cna_long.txt", "Hugo_Symbol\tSample_Id\nTP53\tS1\n")
    with pytest.raises(InputError) as err:
        parse_gistic_long(path, issues=IssueLog("t"))
    assert err.value.issue.code == "missing_column"
    assert "Value" in err.value.issue.message


# --- segments ----------------------------------------------------------------------------------------------------

def test_parse_seg_es0(shared_data):
    parsed = parse_seg(shared_data / ES0 / "data_cna_hg19.seg", issues=IssueLog("es_0"))
    records = parsed.records.collect()
    # wc -l data_cna_hg19.seg -> 10 (header + 9 segments, one sample)
    assert records.height == 9
    assert parsed.columns == ["TCGA-A2-A04P-01"]
    # sed -n 3p data_cna_hg19.seg -> TCGA-A2-A04P-01 1 95676511 95676518 2 -1.6636
    row = records.filter(pl.col("line") == 3).row(0, named=True)
    assert (row["chromosome"], row["start"], row["end"], row["num_probes"]) == ("1", 95676511, 95676518, 2)
    assert row["segment_mean"] == pytest.approx(-1.6636)
    # sed -n 6p: seg.mean written as -8e-04
    assert records.filter(pl.col("line") == 6).item(0, "segment_mean") == pytest.approx(-0.0008)
    assert records.get_column("problem").null_count() == 9


def test_parse_seg_laml_cbs_gz(shared_data):
    parsed = parse_seg(shared_data / LAML / "LAML_CBS_segments.tsv.gz", issues=IssueLog("laml"))
    records = parsed.records.collect()
    # zcat LAML_CBS_segments.tsv.gz | awk 'NR>1' | wc -l -> 6470; cut -f1 | sort -u | wc -l -> 191
    assert records.height == 6470
    assert len(parsed.columns) == 191
    # zcat | awk -F'\t' '$2=="X"' | wc -l -> 293; no Y segments
    assert records.filter(pl.col("chromosome") == "X").height == 293
    assert records.filter(pl.col("chromosome") == "Y").height == 0
    # zcat | awk -F'\t' 'NR==100' -> TCGA-AB-2805 18 329586 72273290 39308 0
    row = records.filter(pl.col("line") == 100).row(0, named=True)
    assert row == {"column": "TCGA-AB-2805", "feature_id": None, "line": 100, "chromosome": "18",
                   "start": 329586, "end": 72273290, "num_probes": 39308, "segment_mean": 0.0, "problem": None}


def test_parse_seg_laml_single_sample(shared_data):
    records = parse_seg(shared_data / LAML / "TCGA.AB.3009.hg19.seg.txt", issues=IssueLog("laml")).records.collect()
    # wc -l TCGA.AB.3009.hg19.seg.txt -> 819 (818 segments); awk '$2=="Y"' | wc -l -> 3
    assert records.height == 818
    assert records.filter(pl.col("chromosome") == "Y").height == 3
    # sed -n 819p -> TCGA-AB-3009 Y 9387994 59018259 6162 -0.3877
    last = records.filter(pl.col("line") == 819).row(0, named=True)
    assert (last["chromosome"], last["start"], last["end"], last["num_probes"]) == ("Y", 9387994, 59018259, 6162)
    assert last["segment_mean"] == pytest.approx(-0.3877)


def test_parse_seg_problems_and_chromosome_names(tmp_path):
    path = _write(tmp_path, "bad.seg",
                  "Sample\tChromosome\tStart\tEnd\tNum_Probes\tSegment_Mean\n"
                  "S1\tchr1\t500\t100\t3\t0.1\n"
                  "S1\tchr23\t1e+05\t200000\tNA\t-0.2\n"
                  "S1\tchrY\tabc\t300\t2\tx\n")
    records = parse_seg(path, issues=IssueLog("t")).records.collect()
    assert records.get_column("chromosome").to_list() == ["1", "X", "Y"]
    assert records.get_column("problem").to_list() == [
        "start 500 > end 100", None, "non-numeric start 'abc'; non-numeric segment_mean 'x'"]
    assert records.row(1, named=True)["start"] == 100000  # R writes 100000 as 1e+05
    assert records.row(1, named=True)["num_probes"] is None


def test_parse_seg_missing_column(tmp_path):
    path = _write(tmp_path, "bad.seg", "ID\tchrom\tloc.start\tloc.end\tnum.mark\nS1\t1\t1\t10\t3\n")
    with pytest.raises(InputError) as err:
        parse_seg(path, issues=IssueLog("t"))
    assert err.value.issue.code == "missing_column"
    assert "segment_mean" in err.value.issue.message


def test_parse_seg_short_row(tmp_path):
    path = _write(tmp_path, "short.seg", "ID\tchrom\tloc.start\tloc.end\tseg.mean\nS1\t1\t1\t10\t0.1\nS1\t1\t20\n")
    issues = IssueLog("t")
    parsed = parse_seg(path, issues=issues)  # the short row is reported once and left out; line 2 is read
    assert [(i.code, i.line) for i in issues.issues] == [("ragged_row", 3)]
    assert parsed.records.collect()["line"].to_list() == [2]
