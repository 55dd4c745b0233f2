import gzip
import zipfile
from pathlib import Path

import polars as pl
import pytest

from transforms.ingest.samples import (
    map_sample_columns,
    read_sample_map,
    read_samples,
    read_subjects,
    tcga_patient_barcode,
    tcga_sample_barcode,
)
from transforms.issues import InputError, IssueLog


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _samples(*ids: str) -> pl.DataFrame:
    return pl.DataFrame({"sample_id": list(ids), "subject_id": [f"P_{i}" for i in ids]})


# --- clinical tables ---------------------------------------------------------------------------------------------

def test_read_samples_es0_cbioportal_header(shared_data: Path):
    issues = IssueLog("study_es_0")
    sheet = read_samples(shared_data / "cbioportal_study_es_0" / "data_clinical_samples.txt", issues=issues)
    assert sheet.samples.height == 845  # SOURCE.md: 845 samples
    # grep -n TCGA-A1-A0SK data_clinical_samples.txt -> line 7: TCGA-A1-A0SK  TCGA-A1-A0SK-01  basal-like
    row = sheet.samples.filter(pl.col("sample_id") == "TCGA-A1-A0SK-01").row(0, named=True)
    assert row == {"sample_id": "TCGA-A1-A0SK-01", "subject_id": "TCGA-A1-A0SK", "line": 7}
    subtype = sheet.attributes.filter(pl.col("sample_id") == "TCGA-A1-A0SK-01").row(0, named=True)
    assert subtype == {"sample_id": "TCGA-A1-A0SK-01", "attribute": "SUBTYPE", "value": "basal-like",
                       "value_type": "string", "line": 7}
    # awk -F'\t' '!/^#/ && NR>5 {v=tolower($3); if (v!="" && v!="na" && v!="[not available]") n++} END {print n}'
    assert sheet.attributes.height == 506
    assert issues.issues == []


def test_read_subjects_es0_declared_number(shared_data: Path):
    issues = IssueLog("study_es_0")
    sheet = read_subjects(shared_data / "cbioportal_study_es_0" / "data_clinical_patients.txt", issues=issues)
    assert sheet.subjects.height == 841  # SOURCE.md: 841 patients
    # line 7: TCGA-A1-A0SK  1:DECEASED  31.77  (empty)  [Not Available]; header line 3 declares OS_MONTHS NUMBER
    got = sheet.attributes.filter(pl.col("subject_id") == "TCGA-A1-A0SK").select("attribute", "value", "value_type")
    assert got.rows() == [("OS_STATUS", "1:DECEASED", "string"), ("OS_MONTHS", "31.77", "number")]
    # awk -F'\t' '!/^#/ && NR>5 && $5!="" && $5!="[Not Available]"' data_clinical_patients.txt | wc -l
    assert sheet.attributes.filter(pl.col("attribute") == "DFS_MONTHS").height == 717
    assert issues.issues == []


def test_read_samples_without_subject_column(tmp_path: Path):
    path = _write(tmp_path / "s.csv", "sample,age,treated\nA,51,TRUE\nB,NA,false\nC,60.5,true\n")
    issues = IssueLog("x")
    sheet = read_samples(path, issues=issues)
    assert sheet.samples.rows() == [("A", "A", 2), ("B", "B", 3), ("C", "C", 4)]
    types = dict(sheet.attributes.select("attribute", "value_type").unique().iter_rows())
    assert types == {"age": "number", "treated": "boolean"}  # inferred: 51, 60.5 / TRUE, false, true
    assert sheet.attributes.filter(pl.col("attribute") == "age").height == 2  # B's NA is missing
    assert [(i.code, i.severity) for i in issues.issues] == [("subject_from_sample", "info")]


@pytest.mark.parametrize("compress", [False, True])
def test_read_samples_latin1_sheet_keeps_its_accented_values(tmp_path: Path, compress: bool):
    # An Excel "CSV (Windows)" export: cp1252 / Latin-1 bytes. The warning said "read as latin-1"; the values were
    # read as UTF-8 with replacement, so 'Zürich' was stored as 'Z\ufffdrich'.
    raw = "sample_id,site,note\r\nA,Zürich,café\r\nB,Nîmes,µg/ml\r\n".encode("latin-1")
    path = tmp_path / ("s.csv.gz" if compress else "s.csv")
    path.write_bytes(gzip.compress(raw) if compress else raw)
    issues = IssueLog("x")
    sheet = read_samples(path, issues=issues)
    values = sheet.attributes.sort("line", "attribute").select("sample_id", "attribute", "value").rows()
    assert values == [("A", "note", "café"), ("A", "site", "Zürich"), ("B", "note", "µg/ml"), ("B", "site", "Nîmes")]
    assert ("bad_encoding", "warning") in [(i.code, i.severity) for i in issues.issues]


def test_read_samples_latin1_byte_past_the_sniffed_start_is_read_as_latin1_with_a_warning(tmp_path: Path):
    # The encoding is sniffed on the first 64 KiB; a long clinical sheet's first accented row came later and was
    # stored as U+FFFD without any issue.
    rows = "".join(f"S{i},site_{i:05d}_{'x' * 40}\n" for i in range(2000))  # ~110 KB of ASCII
    path = tmp_path / "s.csv"
    path.write_bytes(("sample_id,site\n" + rows + "Z1,Zürich\n").encode("latin-1"))
    issues = IssueLog("x")
    sheet = read_samples(path, issues=issues)
    assert sheet.attributes.filter(pl.col("sample_id") == "Z1")["value"].to_list() == ["Zürich"]
    warnings = [(i.code, i.line, i.message) for i in issues.issues if i.severity == "warning"]
    assert warnings == [("bad_encoding", 2002, "line is not valid UTF-8; it and every other such line of the file "
                                               "are read as Windows-1252")]


@pytest.mark.parametrize("late", [False, True])
def test_read_samples_mixed_utf8_and_windows_1252_lines_each_keep_their_characters(tmp_path: Path, late: bool):
    # A UTF-8 sheet with one row pasted from an Excel (Windows-1252) export, early or past the sniffed 64 KiB: the
    # UTF-8 rows must not become mojibake ('ZÃ¼rich'), and 1252's curly quotes and euro sign are not C1 controls.
    filler = "".join(f"S{i},site_{i:05d}_{'x' * 40}\n" for i in range(2000)) if late else ""
    path = tmp_path / "s.csv"
    path.write_bytes(("sample_id,site\nU1,Zürich\n" + filler).encode() + b"W1,\x93caf\xe9\x94 \x805\n")
    issues = IssueLog("x")
    sheet = read_samples(path, issues=issues)
    site = dict(sheet.attributes.select("sample_id", "value").iter_rows())
    assert (site["U1"], site["W1"]) == ("Zürich", "\u201ccafé\u201d \u20ac5")
    assert "bad_encoding" in [i.code for i in issues.issues]


def test_read_samples_utf8_header_of_a_sheet_with_a_windows_1252_row_is_not_mojibake(tmp_path: Path):
    # The sniffer decoded its whole 64 KiB window as Latin-1 when one row was not UTF-8: the UTF-8 header's
    # 'Höhe' became the attribute 'HÃ¶he' although every value was decoded line by line.
    path = tmp_path / "s.csv"
    path.write_bytes("sample_id,Höhe\nU1,Zürich\n".encode() + b"W1,caf\xe9\n")
    issues = IssueLog("x")
    sheet = read_samples(path, issues=issues)
    assert sheet.attributes.select("sample_id", "attribute", "value").rows() == [
        ("U1", "Höhe", "Zürich"), ("W1", "Höhe", "café")]
    assert [(i.code, i.line) for i in issues.issues if i.severity == "warning"] == [("bad_encoding", 3)]


@pytest.mark.parametrize(("header", "message"), [
    ("sample_id,condition,,", "the last 2 header field(s) have no name (separators at the end of the header, as a "
     "spreadsheet export writes for formatted empty columns): delete those columns"),
    ("sample_id,condition,", "the last 1 header field(s) have no name (separators at the end of the header, as a "
     "spreadsheet export writes for formatted empty columns): delete those columns"),
    ("sample_id,,condition,", "header field(s) 2, 4 have no name"),
])
def test_read_samples_unnamed_columns_are_named_as_such(tmp_path: Path, header: str, message: str):
    # An Excel export with empty formatted columns ends every line with ",,": the error said "column '' appears
    # more than once in the header", which sent the user looking for a repeated column.
    width = header.count(",")
    path = _write(tmp_path / "s.csv", header + "\n" + "".join(f"S{i},a{',' * (width - 1)}\n" for i in range(2)))
    with pytest.raises(InputError) as caught:
        read_samples(path, issues=IssueLog("x"))
    issue = caught.value.issue
    assert (issue.file, issue.code, issue.line, issue.message) == ("s.csv", "empty_column_name", 1, message)


def test_read_samples_duplicate_and_empty_ids_are_errors(tmp_path: Path):
    path = _write(tmp_path / "s.tsv", "sample_id\tsubject_id\nA\tP1\n\tP2\nB\tP3\nA\tP4\n")
    issues = IssueLog("x")
    sheet = read_samples(path, issues=issues)
    assert sheet.samples.rows() == [("A", "P1", 2), ("B", "P3", 4)]
    assert [(i.code, i.line, i.column) for i in issues.errors] == [
        ("empty_id", 3, "sample_id"), ("duplicate_sample", 5, "sample_id")]
    # an error fails the study: the message must not say the row is merely left out
    assert issues.errors[1].message == ("sample 'A' already on line 2: one row per sample (an error: the study is not "
                                        "loaded until the file is fixed)")


def test_read_samples_declared_number_with_text_is_warning(tmp_path: Path):
    text = ("#Patient\t#Sample\tStage\n#p\ts\tstage\n#STRING\tSTRING\tNUMBER\n#1\t1\t1\n"
            "PATIENT_ID\tSAMPLE_ID\tSTAGE\nP1\tS1\t2\nP2\tS2\tIIb\n")
    issues = IssueLog("x")
    sheet = read_samples(_write(tmp_path / "data_clinical_sample.txt", text), issues=issues)
    assert sheet.samples.rows() == [("S1", "P1", 6), ("S2", "P2", 7)]
    assert sheet.attributes["value_type"].to_list() == ["string", "string"]
    assert [(i.code, i.severity, i.line, i.column) for i in issues.issues] == [("bad_value", "warning", 7, "STAGE")]


def test_read_samples_missing_id_column_raises(tmp_path: Path):
    with pytest.raises(InputError) as caught:
        read_samples(_write(tmp_path / "s.csv", "name,age\nA,1\n"), issues=IssueLog("x"))
    assert (caught.value.issue.code, caught.value.issue.line) == ("missing_column", 1)


# --- TCGA barcodes -----------------------------------------------------------------------------------------------

def test_tcga_sample_barcode_from_aliquot():
    assert tcga_sample_barcode("TCGA-OR-A5J1-01A-11R-A29S-07") == "TCGA-OR-A5J1-01"
    assert tcga_sample_barcode("TCGA-OR-A5J1-01") == "TCGA-OR-A5J1-01"
    assert tcga_sample_barcode("TCGA.OR.A5J1.01A") == "TCGA-OR-A5J1-01"  # R make.names
    assert tcga_sample_barcode("TCGA-OR-A5J1") is None  # patient only
    assert tcga_sample_barcode("SRR1039508") is None


def test_tcga_patient_barcode_from_sample_and_aliquot():
    assert tcga_patient_barcode("TCGA-OR-A5J1-01A-11R-A29S-07") == "TCGA-OR-A5J1"
    assert tcga_patient_barcode("TCGA-OR-A5J1") == "TCGA-OR-A5J1"
    assert tcga_patient_barcode("TCGA-OR-A5J1_subset") is None
    assert tcga_patient_barcode("TEST-A2B8-01") is None


def test_map_sample_columns_laml_gistic_aliquots_to_patients(shared_data: Path):
    laml = shared_data / "variants_tcga_laml_maftools"
    with gzip.open(laml / "tcga_laml.maf.gz", "rt") as fh:
        header = fh.readline().rstrip("\n").split("\t")
        at = header.index("Tumor_Sample_Barcode")
        maf_ids = sorted({line.split("\t")[at] for line in fh})
    with open(laml / "all_lesions.conf_99.txt") as fh:
        columns = [c for c in fh.readline().rstrip("\n").split("\t") if c.startswith("TCGA")]
    samples = pl.DataFrame({"sample_id": maf_ids, "subject_id": maf_ids})
    issues = IssueLog("laml")
    mapping = map_sample_columns(columns, assay="gistic", samples=samples, sample_map=None, issues=issues,
                                 file="all_lesions.conf_99.txt")
    assert len(columns) == 191  # SOURCE.md: 191 samples in all_lesions
    assert mapping.filter(pl.col("rule") == "tcga_patient").height == 184  # SOURCE.md: 184 overlap the MAF
    row = mapping.filter(pl.col("column") == "TCGA-AB-2803-03A-01D-0756-21").row(0, named=True)
    assert (row["sample_id"], row["subject_id"]) == ("TCGA-AB-2803", "TCGA-AB-2803")
    # comm -13 <(MAF barcodes) <(all_lesions header cut -c1-12): the 7 patients without mutations
    unknown = sorted(i.column[:12] for i in issues.errors if i.code == "unknown_sample")
    assert unknown == ["TCGA-AB-2811", "TCGA-AB-2815", "TCGA-AB-2837", "TCGA-AB-2856", "TCGA-AB-2893",
                       "TCGA-AB-2944", "TCGA-AB-2969"]
    assert {i.line for i in issues.errors} == {1}


def test_map_sample_columns_laml_clinical_by_tumor_sample_barcode(shared_data: Path):
    laml = shared_data / "variants_tcga_laml_maftools"
    issues = IssueLog("laml")
    sheet = read_samples(laml / "tcga_laml_annot.tsv", issues=issues)
    assert sheet.samples.height == 200  # SOURCE.md: 200 patients
    with open(laml / "all_lesions.conf_99.txt") as fh:
        columns = [c for c in fh.readline().rstrip("\n").split("\t") if c.startswith("TCGA")]
    mapping = map_sample_columns(columns, assay="gistic", samples=sheet.samples, sample_map=None,
                                 issues=issues, file="all_lesions.conf_99.txt")
    # comm -12 <(annot column 1) <(all_lesions header cut -c1-12) | wc -l -> 191
    assert mapping["rule"].to_list() == ["tcga_patient"] * 191
    assert not issues.has_errors


# --- mapping rules -----------------------------------------------------------------------------------------------

def test_map_sample_columns_airway_featurecounts_with_sample_map(shared_data: Path, tmp_path: Path):
    airway = shared_data / "rnaseq_airway"
    issues = IssueLog("airway")
    sheet = read_samples(airway / "sample_table.csv", issues=issues, sample_column="Run")
    # head -2 featurecounts/airway_subset_featureCounts.txt | tail -1 | cut -f7-
    runs = ["SRR1039508", "SRR1039509", "SRR1039512", "SRR1039513", "SRR1039516", "SRR1039517", "SRR1039520",
            "SRR1039521"]
    columns = [f"{run}_subset.bam" for run in runs]
    without = map_sample_columns(columns, assay="counts", samples=sheet.samples, sample_map=None,
                                 issues=issues, file="airway_subset_featureCounts.txt", header_line=2)
    assert without["sample_id"].null_count() == 8
    first = issues.errors[0]
    assert (first.code, first.line, first.column) == ("unknown_sample", 2, "SRR1039508_subset.bam")
    assert "SRR1039508" in first.message
    assert "sample_map" in first.message

    lines = "".join(f"counts,{run}_subset.bam,{run}\n" for run in runs)
    sample_map = read_sample_map(_write(tmp_path / "sample_map.csv", "assay,column,sample_id\n" + lines),
                                 issues=IssueLog("airway"))
    fixed_issues = IssueLog("airway")
    fixed = map_sample_columns(columns, assay="counts", samples=sheet.samples, sample_map=sample_map,
                               issues=fixed_issues, file="airway_subset_featureCounts.txt", header_line=2)
    assert fixed["sample_id"].to_list() == runs
    # sample_table.csv: SRR1039508 is cell N61311 (no subject column, so the sample is its own subject)
    assert fixed["subject_id"].to_list() == runs
    assert set(fixed["rule"]) == {"sample_map"}
    assert fixed_issues.issues == []
    # head -1 sample_table.csv: 10 columns; the unnamed first one (R row names) is not an attribute, so
    # 8 attributes besides Run, 8 rows each, no missing values
    assert [(i.code, i.column) for i in issues.issues if i.severity == "info"] == [
        ("subject_from_sample", None), ("unnamed_column", "")]
    assert sheet.attributes.height == 8 * 8


def test_map_sample_columns_pasilla_fb_suffix_fixed_by_sample_map(shared_data: Path, tmp_path: Path):
    pasilla = shared_data / "rnaseq_pasilla"
    sheet = read_samples(pasilla / "pasilla_sample_annotation.csv", issues=IssueLog("p"), sample_column="file")
    # head -1 pasilla_gene_counts.tsv | cut -f2-
    columns = ["untreated1", "untreated2", "untreated3", "untreated4", "treated1", "treated2", "treated3"]
    issues = IssueLog("p")
    map_sample_columns(columns, assay="counts", samples=sheet.samples, sample_map=None, issues=issues,
                       file="pasilla_gene_counts.tsv")
    assert [i.code for i in issues.errors] == ["unknown_sample"] * 7
    assert "'untreated1fb'" in issues.errors[0].message  # the hint names the annotated sample

    rows = "".join(f",{c},{c}fb\n" for c in columns)  # empty assay: applies to every assay
    sample_map = read_sample_map(_write(tmp_path / "sample_map.csv", "assay,column,sample_id\n" + rows),
                                 issues=IssueLog("p"))
    issues = IssueLog("p")
    mapping = map_sample_columns(columns, assay="counts", samples=sheet.samples, sample_map=sample_map,
                                 issues=issues, file="pasilla_gene_counts.tsv")
    assert mapping.filter(pl.col("column") == "treated2").row(0, named=True)["sample_id"] == "treated2fb"
    assert mapping["sample_id"].null_count() == 0
    assert issues.issues == []


def test_map_sample_columns_rule_order():
    samples = _samples("TCGA-AB-1234-01", "S2", "x9", "X9")
    sample_map = pl.DataFrame({"assay": ["rna", None], "column": ["lab1", "lab1"],
                               "sample_id": ["S2", "x9"]})
    issues = IssueLog("x")
    mapping = map_sample_columns(["lab1", "TCGA-AB-1234-01A-11R-A29S-07", "s2", "X9"], assay="rna",
                                 samples=samples, sample_map=sample_map, issues=issues, file="m.tsv")
    assert mapping.rows() == [
        ("lab1", "S2", "P_S2", "sample_map"),  # the assay's row wins over the all-assays row
        ("TCGA-AB-1234-01A-11R-A29S-07", "TCGA-AB-1234-01", "P_TCGA-AB-1234-01", "tcga_sample"),
        ("s2", None, None, "duplicate"),  # case-insensitive S2, already taken by lab1
        ("X9", "X9", "P_X9", "exact"),
    ]
    assert [(i.code, i.column) for i in issues.errors] == [("duplicate_sample", "s2")]


def test_map_sample_columns_case_insensitive_only_when_unique():
    issues = IssueLog("x")
    mapping = map_sample_columns(["s1", "x9"], assay="rna", samples=_samples("S1", "x9 ", "X9"),
                                 sample_map=None, issues=issues, file="m.tsv")
    assert mapping.rows() == [("s1", "S1", "P_S1", "case_insensitive"), ("x9", None, None, "unknown")]
    assert [(i.code, i.column) for i in issues.errors] == [("unknown_sample", "x9")]


def test_map_sample_columns_sample_map_to_unknown_sample_is_error():
    sample_map = pl.DataFrame({"assay": ["rna"], "column": ["c1"], "sample_id": ["nope"]})
    issues = IssueLog("x")
    mapping = map_sample_columns(["c1"], assay="rna", samples=_samples("S1"), sample_map=sample_map,
                                 issues=issues, file="m.tsv", header_line=3)
    assert mapping["sample_id"].to_list() == [None]
    (error,) = issues.errors
    assert (error.code, error.line, error.column) == ("unknown_sample", 3, "c1")
    assert "'nope'" in error.message


def test_map_sample_columns_label_that_is_another_column_of_one_sample_names_it(shared_data: Path):
    # airway's sample_table.csv: the id column read is 'Sample' (SRS...), the Salmon folders are named by 'Run'
    # (SRR1039508 is the Run of SRS508568 in the file); the error gave no hint that the sheet held the answer.
    issues = IssueLog("x")
    sheet = read_samples(shared_data / "rnaseq_airway" / "sample_table.csv", issues=issues)
    mapping = map_sample_columns(["SRR1039508", "NOT_THERE"], assay="salmon", samples=sheet.samples,
                                 sample_map=None, issues=issues, file="salmon/SRR1039508/quant.sf.gz",
                                 attributes=sheet.attributes)
    assert mapping["sample_id"].to_list() == [None, None]
    first, second = issues.errors
    assert first.message == ("column 'SRR1039508' is not a known sample (it is the 'Run' of sample 'SRS508568' in "
                             "the samples table); make that column sample_id, or map the label in sample_map")
    assert second.message == "column 'NOT_THERE' is not a known sample; add it to samples or sample_map"


def test_map_sample_columns_without_sample_table():
    issues = IssueLog("x")
    mapping = map_sample_columns(["TCGA-AB-2803-03A-01D-0756-21", "TCGA-AB-2803-03B-01D-0756-21", "cells_1"],
                                 assay="cn", samples=None, sample_map=None, issues=issues, file="m.tsv")
    assert mapping.rows() == [
        ("TCGA-AB-2803-03A-01D-0756-21", "TCGA-AB-2803-03", "TCGA-AB-2803", "new_sample"),
        ("TCGA-AB-2803-03B-01D-0756-21", None, None, "duplicate"),  # second vial of the same sample
        ("cells_1", "cells_1", "cells_1", "new_sample"),
    ]
    assert [(i.code, i.column) for i in issues.errors] == [("duplicate_sample", "TCGA-AB-2803-03B-01D-0756-21")]


# --- sample_map file ---------------------------------------------------------------------------------------------

def test_read_sample_map_duplicates_and_empty_values(tmp_path: Path):
    text = "assay\tcolumn\tsample_id\nrna\tc1\tS1\nrna\tc1\tS2\n\tc1\tS3\nrna\t\tS4\n"
    issues = IssueLog("x")
    frame = read_sample_map(_write(tmp_path / "sample_map.tsv", text), issues=issues)
    assert frame.rows() == [("rna", "c1", "S1", 2), (None, "c1", "S3", 4)]
    assert [(i.code, i.line) for i in issues.errors] == [("empty_id", 5), ("duplicate_mapping", 3)]


def test_read_sample_map_missing_column_raises(tmp_path: Path):
    with pytest.raises(InputError) as caught:
        read_sample_map(_write(tmp_path / "sample_map.csv", "assay,label,sample\nrna,a,b\n"), issues=IssueLog("x"))
    assert caught.value.issue.code == "missing_column"


def test_map_sample_columns_label_too_long_is_error_and_not_a_sample():
    # a MAF Tumor_Sample_Barcode of megabytes used to become a sample id
    issues = IssueLog("t")
    giant = "S" * 600
    mapping = map_sample_columns(["S1", giant], assay="mut", samples=None, sample_map=None, issues=issues,
                                 file="mut.maf", header_line=2)
    assert mapping.select("column", "sample_id").rows() == [("S1", "S1"), (giant, None)]
    (error,) = issues.issues
    assert (error.code, error.file, error.line) == ("identifier_too_long", "mut.maf", 2)
    assert error.column == "S" * 80 + " ..."  # the 600-character label cut to 80 and marked


def _zip(path: Path, member: str) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, "sample_id,x\nA,1\n")


@pytest.mark.parametrize(("first_member", "what", "advice"), [
    ("[Content_Types].xml", "an Excel .xlsx workbook",
     "export the sheet as tab- or comma-separated text (Save As > CSV or Text)"),
    ("mimetype", "an OpenDocument .ods workbook", "export the sheet as tab- or comma-separated text (Save As > CSV)"),
    ("samples.csv", "a zip archive (its first member: 'samples.csv')",
     "unzip it and name the table inside (or gzip it)"),
    (None, "an Excel 97-2003 (.xls) workbook", "export the sheet as tab- or comma-separated text (Save As > CSV)"),
])
def test_read_samples_spreadsheet_workbook_says_to_export_it(tmp_path: Path, first_member: str | None, what: str,
                                                             advice: str):
    # The workbook itself named as the sample sheet: "file contains NUL bytes: it is binary" told a new user what
    # the file is not, not what to do; a portal's zipped CSV is no workbook. The xlsx / ods members are those each
    # format writes first (OOXML's content types, ODF's mimetype); .xls: the OLE2 compound file header.
    path = tmp_path / "samples.xlsx"
    if first_member is None:
        path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x14\x00\x06\x00" + bytes(range(256)) * 4)
    else:
        _zip(path, first_member)
    with pytest.raises(InputError) as caught:
        read_samples(path, issues=IssueLog("x"))
    issue = caught.value.issue
    assert (issue.file, issue.code, issue.line) == ("samples.xlsx", "binary_file", 1)
    assert issue.message == f"file is {what}, not delimited text: {advice}"


def test_map_sample_columns_names_the_sample_r_make_names_renamed():
    # A counts table written from an R data.frame: make.names(c("S-1", "1A", "S 3")) is c("S.1", "X1A", "S.3")
    # (R documentation of make.names: invalid characters become '.', 'X' is prepended before a digit). The error
    # said only that 'S.1' is not a known sample; 'A.4' is no rename of 'A_4' (R keeps '_').
    samples = pl.DataFrame({"sample_id": ["S-1", "1A", "S 3", "A_4"], "subject_id": ["P1", "P2", "P3", "P4"]})
    issues = IssueLog("x")
    mapping = map_sample_columns(["S.1", "X1A", "S.3", "A.4"], assay="counts", samples=samples, sample_map=None,
                                 issues=issues, file="counts.tsv")
    assert mapping["sample_id"].to_list() == [None, None, None, None]
    renamed = (" renamed by R's make.names, which writes '.' for '-', spaces and other signs and puts 'X' before a "
               "leading digit: write.table(..., check.names = FALSE) keeps the names); add it to samples or sample_map")
    assert [(i.code, i.column, i.message) for i in issues.issues] == [
        ("unknown_sample", "S.1", f"column 'S.1' is not a known sample (it looks like sample 'S-1'{renamed}"),
        ("unknown_sample", "X1A", f"column 'X1A' is not a known sample (it looks like sample '1A'{renamed}"),
        ("unknown_sample", "S.3", f"column 'S.3' is not a known sample (it looks like sample 'S 3'{renamed}"),
        ("unknown_sample", "A.4", "column 'A.4' is not a known sample; add it to samples or sample_map")]
