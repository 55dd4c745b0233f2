"""GISTIC 2.0 outputs: the peak files (real TCGA LAML run, checked against an independent pandas read) and the gene
tables' header (hand-written in GISTIC's documented layout: no real one is in ../shared/data)."""

from pathlib import Path

import pandas as pd
import polars as pl
import pytest

from transforms.ingest.parse.copy_number import parse_cn_log2, parse_gistic
from transforms.ingest.parse.gistic2 import parse_gistic_lesions, parse_gistic_peak_genes
from transforms.issues import InputError, IssueLog

LAML = "variants_tcga_laml_maftools"
GENE_TABLES = "copy_number_gistic2"


def _pandas_lesions(path: Path) -> pd.DataFrame:
    """all_lesions read by pandas alone: one row per (peak row, sample) with the cell as pandas parsed it."""
    frame = pd.read_csv(path, sep="\t").drop(columns=["Unnamed: 200"])  # GISTIC's trailing tab
    samples = list(frame.columns[9:])
    long = frame.melt(id_vars=["Unique Name"], value_vars=samples, var_name="column", value_name="cell")
    long["peak_name"] = long["Unique Name"].str.replace(" - CN values", "").str.split().str.join(" ")
    long["cn"] = long["Unique Name"].str.endswith("CN values")
    return long


def test_parse_gistic_lesions_laml_equals_pandas_read(shared_data):
    path = shared_data / LAML / "all_lesions.conf_99.txt"
    issues = IssueLog("laml")
    parsed = parse_gistic_lesions(path, issues=issues)
    assert issues.issues == []
    records = parsed.calls.records.collect()
    # SOURCE.md: 191 samples; awk -F'\t' 'NR>1 && $1 !~ /CN values/' all_lesions.conf_99.txt | wc -l -> 16 peaks
    assert len(parsed.calls.columns) == 191
    assert parsed.peaks.height == 16
    assert records.height == 16 * 191
    assert records["problem"].null_count() == records.height
    expected = _pandas_lesions(path)
    calls = expected[~expected["cn"]].set_index(["peak_name", "column"])["cell"]
    changes = expected[expected["cn"]].set_index(["peak_name", "column"])["cell"]
    ours = records.to_pandas().set_index(["peak_name", "column"])
    assert (ours["call"].astype(float) == calls.reindex(ours.index)).all()
    assert ours["copy_change"].to_numpy() == pytest.approx(changes.reindex(ours.index).to_numpy())
    assert dict(records["call"].value_counts().iter_rows()) == {0: 2882, 1: 152, 2: 22}  # pandas Counter, by hand


def test_parse_gistic_lesions_laml_peak_annotations(shared_data):
    peaks = parse_gistic_lesions(shared_data / LAML / "all_lesions.conf_99.txt", issues=IssueLog("laml")).peaks
    by_name = {row["peak_name"]: row for row in peaks.iter_rows(named=True)}
    # sed -n 3p all_lesions.conf_99.txt | cut -f1-8: 11q23.3, chr11:118341650-118354357(probes 1039906:1039930),
    # chr11:118345795-118354342(...), chr11:118336967-118358092(...), 1.145e-08, 1.145e-08, ''
    kmt2a = by_name["Amplification Peak 2"]
    assert (kmt2a["direction"], kmt2a["cytoband"], kmt2a["chromosome"]) == ("amplification", "11q23.3", "11")
    assert (kmt2a["wide_peak_start"], kmt2a["wide_peak_end"]) == (118341650, 118354357)
    assert (kmt2a["peak_start"], kmt2a["peak_end"]) == (118345795, 118354342)
    assert (kmt2a["region_start"], kmt2a["region_end"]) == (118336967, 118358092)
    assert kmt2a["q_value"] == pytest.approx(1.145e-08)
    assert kmt2a["broad_or_focal"] is None
    # the file pads 'Deletion Peak  1': the name is the same whichever row or file names it
    assert "Deletion Peak 1" in by_name
    assert by_name["Deletion Peak 12"]["residual_q_value"] == pytest.approx(0.15019)  # sed -n 17p | cut -f7


def test_parse_gistic_peak_genes_laml_equals_pandas_read(shared_data):
    for name, peaks in (("amp_genes.conf_99.txt", 4), ("del_genes.conf_99.txt", 12)):
        path = shared_data / LAML / name
        genes = parse_gistic_peak_genes(path, issues=IssueLog("laml"))
        table = pd.read_csv(path, sep="\t", header=None, dtype=str, keep_default_na=False)
        cells = table.iloc[4:, 1:1 + peaks]  # rows from 'genes in wide peak' on, one column per peak
        expected = sorted((int(c) + 1, v.strip()) for c in cells.columns for v in cells[c] if v.strip())
        assert sorted(genes.select("peak_column", "feature_id").rows()) == expected
        assert genes["in_wide_peak"].all()
        assert genes["direction"].unique().to_list() == ["amplification" if name.startswith("amp") else "deletion"]
    amp = parse_gistic_peak_genes(shared_data / LAML / "amp_genes.conf_99.txt", issues=IssueLog("laml"))
    # head -5 amp_genes.conf_99.txt | cut -f2: the 11q23.3 peak holds KMT2A alone
    assert amp.filter(pl.col("cytoband") == "11q23.3")["feature_id"].to_list() == ["KMT2A"]
    assert amp.filter(pl.col("cytoband") == "11q23.3").select("wide_peak_start", "wide_peak_end").row(0) == (
        118341650, 118354357)


_HEADER = "Unique Name\tDescriptor\tWide Peak Limits\tPeak Limits\tRegion Limits\tq values\tResidual q values " \
          "after removing segments shared with higher peaks\tBroad or Focal\tAmplitude Threshold\tS1\tS2\t\n"
_ANNOT = "1p33\tchr1:100-200(probes 1:2)\tchr1:120-180(probes 1:2)\tchr1:50-300(probes 1:3)\t0.01\t0.01\t\t"
_LESIONS = (_HEADER + f"Amplification Peak 1\t{_ANNOT}0: t<0.1; 1: 0.1<t< 0.9; 2: t>0.9\t0\t2\t\n"
            f"Amplification Peak 1 - CN values\t{_ANNOT}Actual Copy Change Given\t0.05\t1.2\t\n")


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_parse_gistic_lesions_bad_cells_are_located_problem_records(tmp_path):
    text = _LESIONS.replace("\t0\t2\t\n", "\tx\t3\t\n", 1).replace("\t1.2\t\n", "\tNA\t\n")
    parsed = parse_gistic_lesions(_write(tmp_path, "all_lesions.conf_99.txt", text), issues=IssueLog("t"))
    rows = {r["column"]: r for r in parsed.calls.records.collect().iter_rows(named=True)}
    assert (rows["S1"]["problem"], rows["S1"]["line"], rows["S1"]["raw"]) == ("non-numeric call 'x'", 2, "x")
    assert (rows["S2"]["problem"], rows["S2"]["line"]) == ("call 3 is not 0, 1 or 2", 2)
    assert rows["S1"]["call"] is None


def test_parse_gistic_lesions_bad_copy_change_points_at_its_row(tmp_path):
    text = _LESIONS.replace("\t1.2\t\n", "\tNA\t\n")
    rows = parse_gistic_lesions(_write(tmp_path, "all_lesions.conf_99.txt", text), issues=IssueLog("t")).calls
    bad = rows.records.collect().filter(pl.col("problem").is_not_null()).row(0, named=True)
    assert (bad["column"], bad["line"], bad["problem"]) == ("S2", 3, "non-numeric copy change 'NA'")


def test_parse_gistic_lesions_truncated_row_is_a_ragged_row_error(tmp_path):
    text = _LESIONS[: _LESIONS.rindex("\t1.2")]  # the copy stopped inside the last row
    issues = IssueLog("t")
    parsed = parse_gistic_lesions(_write(tmp_path, "all_lesions.conf_99.txt", text), issues=issues)
    (issue,) = issues.issues
    assert (issue.code, issue.severity, issue.line) == ("ragged_row", "error", 3)
    assert parsed.calls.records.collect()["copy_change"].null_count() == 2  # the CN row is left out


def test_parse_gistic_lesions_duplicate_sample_column_stops_the_file(tmp_path):
    path = _write(tmp_path, "all_lesions.conf_99.txt", _LESIONS.replace("\tS2\t\n", "\tS1\t\n", 1))
    with pytest.raises(InputError) as caught:
        parse_gistic_lesions(path, issues=IssueLog("t"))
    assert (caught.value.issue.code, caught.value.issue.line, caught.value.issue.column) == (
        "duplicate_column", 1, "S1")


def test_parse_gistic_lesions_missing_column_and_bad_limits(tmp_path):
    with pytest.raises(InputError) as caught:
        parse_gistic_lesions(_write(tmp_path, "a.txt", _LESIONS.replace("Wide Peak Limits", "Wide")),
                             issues=IssueLog("t"))
    assert caught.value.issue.code == "missing_column"
    issues = IssueLog("t")
    parsed = parse_gistic_lesions(_write(tmp_path, "b.txt", _LESIONS.replace("chr1:100-200", "1:100-200", 1)),
                                  issues=issues)
    assert parsed.peaks.is_empty()
    assert [(i.code, i.line, i.column) for i in issues.issues] == [("invalid_peak_limits", 2, "Wide Peak Limits")]


def test_parse_gistic_peak_genes_nearest_gene_in_brackets(tmp_path):
    text = ("cytoband\t9p21.3\t\nq value\t0.001\t\nresidual q value\t0.001\t\n"
            "wide peak boundaries\tchr9:21000000-22000000\t\ngenes in wide peak\t[CDKN2A]\t\n")
    genes = parse_gistic_peak_genes(_write(tmp_path, "del_genes.conf_90.txt", text), issues=IssueLog("t"))
    assert genes.select("direction", "feature_id", "in_wide_peak", "line").rows() == [
        ("deletion", "CDKN2A", False, 5)]


# -- the gene tables: all_thresholded.by_genes.txt / all_data_by_genes.txt -----------------------------------------

def test_parse_gistic_reads_gistic2_gene_table_header(shared_data):
    """``Locus ID`` and ``Cytoband`` are gene columns, not samples (on main ``Locus ID`` was a sample)."""
    parsed = parse_gistic(shared_data / GENE_TABLES / "all_thresholded.by_genes.txt", issues=IssueLog("t"))
    assert parsed.columns == ["TCGA-AB-2803-03A-01D-0756-21", "TCGA-AB-2820-03A-01D-0756-21",
                              "TCGA-AB-2822-03A-01D-0756-21"]
    records = parsed.records.collect()
    assert records.height == 5 * 3  # tail -n +2 | wc -l -> 5 genes
    # awk -F'\t' '$1=="KMT2A"{print NR, $2, $5}' all_thresholded.by_genes.txt -> 3 4297 2
    kmt2a = records.filter(pl.col("feature_id") == "KMT2A|4297",
                           pl.col("column") == "TCGA-AB-2820-03A-01D-0756-21").row(0, named=True)
    assert (kmt2a["call"], kmt2a["line"]) == (2, 3)
    assert parsed.features is not None
    assert parsed.features["Cytoband"].to_list() == ["1p33", "11q23.3", "21q22.2", "17p13.1", "1p36.33"]


def test_parse_cn_log2_reads_gistic2_data_by_genes(shared_data):
    parsed = parse_cn_log2(shared_data / GENE_TABLES / "all_data_by_genes.txt", issues=IssueLog("t"))
    records = parsed.records.collect()
    assert len(parsed.columns) == 3
    # awk -F'\t' '$1=="TP53"{print $6}' all_data_by_genes.txt -> -0.512
    tp53 = records.filter(pl.col("feature_id") == "TP53|7157",
                          pl.col("column") == "TCGA-AB-2822-03A-01D-0756-21").row(0, named=True)
    assert tp53["log2_ratio"] == pytest.approx(-0.512)
    assert records["problem"].null_count() == records.height


def test_parse_gistic_lesions_cut_peak_row_is_one_error_not_two(tmp_path):
    """A thresholded row cut short is a ragged_row error; its CN-values row is not reported again as an orphan."""
    lines = _LESIONS.splitlines(keepends=True)
    text = lines[0] + lines[1][: lines[1].rindex("\t0\t2")] + "\n" + lines[2]
    issues = IssueLog("t")
    parsed = parse_gistic_lesions(_write(tmp_path, "all_lesions.conf_99.txt", text), issues=issues)
    assert [(i.code, i.line) for i in issues.issues] == [("ragged_row", 2)]
    assert parsed.peaks.is_empty()
