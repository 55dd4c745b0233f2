from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest

from transforms.ingest.parse.maf import parse_maf
from transforms.ingest.parse.matrix import RECORD_SCHEMA, parse_matrix
from transforms.issues import InputError, IssueLog


def _write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_parse_matrix_pasilla_shape_cell_and_column_sums(shared_data: Path):
    issues = IssueLog("pasilla")
    parsed = parse_matrix(shared_data / "rnaseq_pasilla" / "pasilla_gene_counts.tsv", issues=issues)
    records = parsed.records.collect()
    assert dict(records.schema) == RECORD_SCHEMA
    # head -1 pasilla_gene_counts.tsv: gene_id + 7 samples
    assert parsed.columns == ["untreated1", "untreated2", "untreated3", "untreated4",
                              "treated1", "treated2", "treated3"]
    # awk 'END{print NR-1}' pasilla_gene_counts.tsv -> 14599 genes
    assert parsed.features.height == 14599
    assert records.height == 14599 * 7
    # awk -F'\t' '$1=="FBgn0000008"{print NR, $0}' -> line 3: 92 161 76 70 140 88 70
    cell = records.filter(pl.col("feature_id") == "FBgn0000008", pl.col("column") == "treated1")
    assert cell.select("value", "line").row(0) == (140.0, 3)
    # awk -F'\t' 'NR>1{for(i=2;i<=NF;i++)s[i]+=$i} END{...}'
    sums = records.group_by("column").agg(pl.col("value").sum()).sort("column")
    assert dict(sums.iter_rows()) == {
        "untreated1": 13972512, "untreated2": 21911438, "untreated3": 8358426, "untreated4": 9841335,
        "treated1": 18670279, "treated2": 9571826, "treated3": 10343856}
    assert records.get_column("problem").null_count() == records.height
    assert issues.issues == []


def test_parse_matrix_cbioportal_composite_id(shared_data: Path):
    issues = IssueLog("es_0")
    parsed = parse_matrix(shared_data / "cbioportal_study_es_0" / "data_expression_median.txt", issues=issues,
                          id_columns=("Hugo_Symbol", "Entrez_Gene_Id"))
    records = parsed.records.collect()
    # cut -f1,2 data_expression_median.txt
    assert parsed.features.get_column("feature_id").to_list() == [
        "CREB3L1|90993", "RPS11|6205", "PNMA1|9240", "MMP2|4313", "ZHX3|23051", "ERCC5|2073"]
    # head -1 | awk -F'\t' '{print NF-2}' -> 526 samples
    assert len(parsed.columns) == 526
    assert records.height == 6 * 526
    # awk: column of TCGA-A2-A04P-01, row MMP2 -> line 5, -0.716333333333333
    cell = records.filter(pl.col("feature_id") == "MMP2|4313", pl.col("column") == "TCGA-A2-A04P-01")
    assert cell.select("value", "line").row(0) == (-0.716333333333333, 5)


def test_parse_matrix_transposed_mixomics(shared_data: Path):
    parsed = parse_matrix(shared_data / "tcga_brca_mixomics" / "train_mrna.tsv", issues=IssueLog("brca"),
                          transpose=True)
    records = parsed.records.collect()
    # tests/data keeps the first 20 of the 150 samples (tcga_brca_mixomics/SOURCE.md)
    # awk 'END{print NR}' -> 21 lines (20 samples); head -1 | awk '{print NF}' -> 201 (sample_id + 200 genes)
    assert len(parsed.columns) == 20
    assert parsed.columns[:3] == ["A0FJ", "A13E", "A0G0"]
    assert parsed.features.height == 200
    assert records.height == 20 * 200
    # awk -F'\t' 'NR==1{...$i=="ZEB1"...} $1=="A0SX"{print NR, $c}' -> 5 5.22603463800141
    cell = records.filter(pl.col("feature_id") == "ZEB1", pl.col("column") == "A0SX")
    assert cell.select("value", "line").row(0) == (5.22603463800141, 5)


def test_parse_matrix_composite_id_drops_empty_parts(tmp_path: Path):
    path = _write(tmp_path, "cna.txt", "Hugo_Symbol\tEntrez_Gene_Id\tCytoband\tS1\n"
                                       "TP53\t7157\t17p13.1\t-1\n\t672\t17q21\t0\nKRAS\t\t12p12.1\t2\n")
    parsed = parse_matrix(path, issues=IssueLog("t"), id_columns=("Hugo_Symbol", "Entrez_Gene_Id"),
                          annotation_columns=("Cytoband", "Length"))
    assert parsed.columns == ["S1"]
    assert parsed.features.rows() == [("TP53|7157", 2, "17p13.1"), ("672", 3, "17q21"), ("KRAS", 4, "12p12.1")]
    records = parsed.records.collect().sort("line")
    assert records.get_column("feature_id").to_list() == ["TP53|7157", "672", "KRAS"]
    assert records.get_column("value").to_list() == [-1.0, 0.0, 2.0]


def test_parse_matrix_only_entrez_column_present(tmp_path: Path):
    path = _write(tmp_path, "expr.txt", "Entrez_Gene_Id\tS1\tS2\n7157\t1.5\t2\n")
    parsed = parse_matrix(path, issues=IssueLog("t"), id_columns=("Hugo_Symbol", "Entrez_Gene_Id"))
    assert parsed.columns == ["S1", "S2"]
    assert parsed.records.collect().get_column("feature_id").unique().to_list() == ["7157"]


def test_parse_matrix_missing_and_bad_cells(tmp_path: Path):
    path = _write(tmp_path, "m.tsv", "gene\tA\tB\tC\ng1\t1\tNA\t\ng2\tabc\tNaN\t-Inf\n")
    issues = IssueLog("t")
    records = parse_matrix(path, issues=issues).records.collect().sort("line", "column")
    # missing cells (empty, NA, NaN) are null without a problem; 'abc' and '-Inf' are problems on line 3
    assert records.select("line", "column", "value", "problem", "raw").rows() == [
        (2, "A", 1.0, None, None), (2, "B", None, None, None), (2, "C", None, None, None),
        (3, "A", None, "non-numeric value 'abc'", "abc"), (3, "B", None, None, None),
        (3, "C", None, "non-finite value '-Inf'", "-Inf")]
    assert issues.issues == []


@pytest.mark.parametrize(("short", "bad_line"), [(True, 3), (False, 4)])
def test_parse_matrix_ragged_row_is_error_with_line(tmp_path: Path, short: bool, bad_line: int):
    row = "g2\t1" if short else "g3\t1\t2\t3"
    body = f"g1\t1\t2\n{row}\n" if short else f"g1\t1\t2\ng2\t1\t2\n{row}\n"
    path = _write(tmp_path, "r.tsv", "gene\tA\tB\n" + body)
    issues = IssueLog("t")
    parsed = parse_matrix(path, issues=issues)
    assert [(i.code, i.line) for i in issues.errors] == [("ragged_row", bad_line)]
    assert bad_line not in parsed.records.collect()["line"].to_list()


def test_parse_matrix_ragged_row_reported_once_and_other_problems_too(tmp_path: Path):
    # a ragged row used to be two errors (the row, then a file summary) and stop the file: its duplicate
    # gene and non-numeric value went unreported until the row was fixed
    path = _write(tmp_path, "r.tsv", "gene\tA\tB\ng1\t1\t2\ng2\t1\ng1\t3\t4\ng3\tx\t5\n")
    issues = IssueLog("t")
    records = parse_matrix(path, issues=issues).records.collect()
    assert [(i.code, i.line) for i in issues.issues] == [("ragged_row", 3), ("duplicate_feature", 4)]
    assert records.filter(pl.col("problem").is_not_null()).select("line", "problem").rows() == [
        (5, "non-numeric value 'x'")]


def test_parse_matrix_duplicate_sample_column_is_error(tmp_path: Path):
    path = _write(tmp_path, "d.tsv", "gene\tA\tB\tA\ng1\t1\t2\t3\n")
    with pytest.raises(InputError) as caught:
        parse_matrix(path, issues=IssueLog("t"))
    assert (caught.value.issue.code, caught.value.issue.column, caught.value.issue.line) == (
        "duplicate_column", "A", 1)


def test_parse_matrix_duplicate_and_empty_gene_warn_and_keep_first(tmp_path: Path):
    path = _write(tmp_path, "d.tsv", "gene\tA\ng1\t1\ng2\t2\ng1\t3\n\t4\n")
    issues = IssueLog("t")
    parsed = parse_matrix(path, issues=issues)
    records = parsed.records.collect().sort("line")
    assert records.select("feature_id", "value", "line").rows() == [("g1", 1.0, 2), ("g2", 2.0, 3)]
    assert [(i.severity, i.code, i.line, i.record) for i in issues.issues] == [
        ("warning", "duplicate_feature", 4, "g1\t3"), ("warning", "empty_feature_id", 5, "\t4")]
    assert parsed.metadata["rows_excluded"] == 2


def test_parse_matrix_blank_and_comment_lines_keep_line_numbers(tmp_path: Path):
    path = _write(tmp_path, "c.tsv", "# made by hand\ngene\tA\ng1\t1\n# note\n\ng2\t2\n")
    issues = IssueLog("t")
    records = parse_matrix(path, issues=issues).records.collect().sort("line")
    assert records.select("feature_id", "line").rows() == [("g1", 3), ("g2", 6)]
    assert sorted((i.code, i.line) for i in issues.issues) == [("blank_lines", 5), ("comment_lines", 4)]


@pytest.mark.parametrize(("name", "text", "encoding", "code"), [
    pytest.param("h.tsv", "gene\tA\tB\n", "utf-8", "no_rows", id="header_only"),
    pytest.param("e.tsv", "", "utf-8", "empty_file", id="empty_file"),
    pytest.param("s.txt", "gene A B\ng1 1 2\n", "utf-8", "wrong_delimiter", id="single_field_header"),
    pytest.param("u.tsv", "\ufeffgene\tA\ng1\t1\n", "utf-16", "bad_encoding", id="utf16"),
])
def test_parse_matrix_unusable_file_is_error(tmp_path: Path, name: str, text: str, encoding: str, code: str):
    path = _write(tmp_path, name, text, encoding=encoding)
    with pytest.raises(InputError) as caught:
        parse_matrix(path, issues=IssueLog("t"))
    assert caught.value.issue.code == code


def test_parse_matrix_comma_file_read_as_csv(tmp_path: Path):
    path = _write(tmp_path, "m.csv", 'gene,A,B\ng1,1,2\n"g,2",3,4\n')
    parsed = parse_matrix(path, issues=IssueLog("t"))
    assert parsed.metadata["separator"] == ","
    records = parsed.records.collect().sort("line", "column")
    assert records.select("feature_id", "column", "value").rows() == [
        ("g1", "A", 1.0), ("g1", "B", 2.0), ("g,2", "A", 3.0), ("g,2", "B", 4.0)]


def test_parse_matrix_latin1_is_read_with_warning(tmp_path: Path):
    path = _write(tmp_path, "l.tsv", "gene\tSéance\ng1\t1.5\n", encoding="latin-1")
    issues = IssueLog("t")
    parsed = parse_matrix(path, issues=issues)
    assert parsed.columns == ["Séance"]
    assert parsed.records.collect().select("column", "value").rows() == [("Séance", 1.5)]
    assert [(i.severity, i.code, i.line) for i in issues.issues] == [("warning", "bad_encoding", 1)]


@pytest.mark.parametrize("late", [False, True])
def test_parse_matrix_windows_1252_feature_ids_keep_their_characters(tmp_path: Path, late: bool):
    # Feature ids were scanned utf8-lossy: 'Café' (a Latin-1 byte) became 'Caf\ufffd' silently, with no issue at
    # all past the sniffed 64 KiB. Lines that are UTF-8 stay UTF-8 (the header's 'Zürich'), the others are
    # Windows-1252 (curly quotes, euro sign), as for sample sheets; the warning names the first such line.
    filler = "".join(f"g{i}\t{i}\t1\n" for i in range(8000)) if late else ""  # ~90 KB of ASCII
    raw = "gene\tZürich\tB\n".encode() + filler.encode() + b"Caf\xe9\t1\t2\n\x93q\x94\x80\t3\t4\nUm\xc3\xa4\t5\t6\n"
    path = tmp_path / "m.tsv"
    path.write_bytes(raw)
    issues = IssueLog("t")
    parsed = parse_matrix(path, issues=issues)
    first = 8002 if late else 2
    assert parsed.columns == ["Zürich", "B"]
    records = parsed.records.collect().filter(pl.col("line") >= first).sort("line", "column")
    assert records.select("feature_id", "column", "value").rows() == [
        ("Café", "B", 2.0), ("Café", "Zürich", 1.0), ("\u201cq\u201d\u20ac", "B", 4.0),
        ("\u201cq\u201d\u20ac", "Zürich", 3.0), ("Umä", "B", 6.0), ("Umä", "Zürich", 5.0)]
    assert parsed.features is not None
    features = parsed.features.filter(pl.col("line") >= first)["feature_id"].to_list()
    assert features == ["Café", "\u201cq\u201d\u20ac", "Umä"]
    assert [(i.severity, i.code, i.line) for i in issues.issues] == [("warning", "bad_encoding", first)]


def test_parse_matrix_windows_1252_line_is_transcoded_without_holding_the_file(tmp_path: Path, monkeypatch):
    """One Latin-1 line made the whole file's text held in Python for the scans (read, split, joined: ~3x the
    file, 36 MB of Python memory for this 12 MB matrix); now it is transcoded in chunks to a staged file."""
    import tracemalloc

    import transforms.ingest.parse.text as text

    monkeypatch.setattr(text, "TRANSCODE_CHUNK_BYTES", 256 * 1024, raising=False)  # raising: main has none
    row = "\t".join(str(100 + j % 7) for j in range(1000))  # column S3 holds 103 on every line
    path = tmp_path / "m.tsv"
    with open(path, "wb") as fh:
        fh.write(("gene\t" + "\t".join(f"S{j}" for j in range(1000)) + "\n").encode())
        fh.writelines(f"g{i}\t{row}\n".encode() for i in range(3000))
        fh.write(b"Caf\xe9\t" + row.encode() + b"\n")
    assert path.stat().st_size > 12_000_000
    issues = IssueLog("t")
    tracemalloc.start()
    try:
        parsed = parse_matrix(path, issues=issues)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8_000_000, f"{peak:,} bytes of Python memory for a 12 MB file"
    s3 = parsed.records.filter(pl.col("column") == "S3").select(pl.col("value").sum(), pl.len()).collect()
    assert s3.rows() == [(3001 * 103.0, 3001)]
    assert parsed.features is not None
    assert parsed.features["feature_id"][-1] == "Café"
    assert [(i.code, i.line) for i in issues.issues] == [("bad_encoding", 3002)]


def test_staged_as_utf8_keeps_lines_whole_across_chunks(tmp_path: Path):
    """Chunks smaller than a line and a CRLF at a chunk's end: each line is transcoded whole, as one read did."""
    from transforms.ingest.parse.text import staged_as_utf8

    path = tmp_path / "t.tsv"
    path.write_bytes(b"Z\xc3\xbcrich\r\nCaf\xe9 \x93q\x94\r\nUm\xc3\xa4\n\x80")
    for chunk in (1, 2, 3, 7, 1024):
        with staged_as_utf8(path, chunk_bytes=chunk) as staged:
            assert staged.read().decode() == "Zürich\r\nCafé \u201cq\u201d\r\nUmä\n\u20ac", chunk


def test_staged_as_utf8_transcodes_a_bare_cr_file_read_in_chunks_line_by_line(tmp_path: Path):
    """Excel's "CSV (Macintosh)": Latin-1 lines ended by a bare CR, no newline at all, then one CRLF line split
    across chunks. Each line is transcoded on its own (a UTF-8 line stays UTF-8), whatever the chunk size."""
    from transforms.ingest.parse.text import staged_as_utf8

    path = tmp_path / "mac.csv"
    path.write_bytes(b"gene,A\rCaf\xe9,1\rZ\xc3\xbcrich,2\r\x93q\x94,3\r\nna\xefve,4\r")
    expected = "gene,A\rCafé,1\rZürich,2\r\u201cq\u201d,3\r\nnaïve,4\r"  # cp1252 0x93/0x94: curly quotes
    for chunk in (1, 2, 5, 8, 13, 1024):
        with staged_as_utf8(path, chunk_bytes=chunk) as staged:
            assert staged.read().decode() == expected, chunk


def test_parse_matrix_windows_1252_duplicate_row_record_is_decoded(tmp_path: Path):
    path = tmp_path / "m.tsv"
    path.write_bytes(b"gene\tA\nCaf\xe9\t1\nCaf\xe9\t2\n")
    issues = IssueLog("t")
    parse_matrix(path, issues=issues)
    assert [(i.code, i.line, i.record) for i in issues.issues] == [
        ("bad_encoding", 2, None), ("duplicate_feature", 3, "Café\t2")]


def test_parse_matrix_gzip_and_crlf(tmp_path: Path):
    path = tmp_path / "m.tsv.gz"
    path.write_bytes(gzip.compress(b"gene\tA\r\ng1\t7\r\ng2\t8\r\n"))
    records = parse_matrix(path, issues=IssueLog("t")).records.collect().sort("line")
    assert records.select("feature_id", "column", "value", "line").rows() == [
        ("g1", "A", 7.0, 2), ("g2", "A", 8.0, 3)]


def test_parse_matrix_missing_id_column_is_error(tmp_path: Path):
    path = _write(tmp_path, "m.tsv", "gene\tA\ng1\t1\n")
    with pytest.raises(InputError) as caught:
        parse_matrix(path, issues=IssueLog("t"), id_columns=("Hugo_Symbol",))
    assert caught.value.issue.code == "missing_column"


def test_parse_matrix_header_wider_than_the_sniff_window(tmp_path):
    # 20,000 sample labels of 7 characters: a 160 KB header line
    labels = [f"S{i:06d}" for i in range(20000)]
    path = tmp_path / "wide.tsv"
    path.write_text("gene\t" + "\t".join(labels) + "\n" + "G1\t" + "\t".join("1" for _ in labels) + "\n")
    parsed = parse_matrix(path, issues=IssueLog("t"))
    assert parsed.columns == labels
    assert parsed.records.select(pl.col("value").sum()).collect().item() == 20000


def test_parse_matrix_identifier_too_long_is_error_with_truncated_record(tmp_path: Path):
    giant = "G" * 5_000_000
    path = _write(tmp_path, "g.tsv", f"gene\tA\ng1\t1\n{giant}\t2\ng3\t3\n")
    issues = IssueLog("t")
    parsed = parse_matrix(path, issues=issues)
    (error,) = issues.issues
    assert (error.code, error.severity, error.line, error.column) == ("identifier_too_long", "error", 3, "gene")
    assert error.record == "G" * 512 + " ..."  # cut at MAX_IDENTIFIER_CHARS (512) and marked
    assert parsed.records.collect()["feature_id"].to_list() == ["g1", "g3"]


def test_parse_matrix_header_name_too_long_is_error(tmp_path: Path):
    path = _write(tmp_path, "h.tsv", f"gene\tA\t{'S' * 100_000}\ng1\t1\t2\n")
    with pytest.raises(InputError) as caught:
        parse_matrix(path, issues=IssueLog("t"))
    issue = caught.value.issue
    assert (issue.code, issue.line) == ("identifier_too_long", 1)
    assert issue.column == "S" * 80 + " ..."  # the 100,000-character name cut to 80 and marked


@pytest.mark.parametrize(("cells", "typed"), [
    ("7\t0\t123456789012345", True),  # plain whole numbers of up to 15 digits: read typed
    ("7\t0\t1000000000000000", False),  # 16 digits may pass the plausible bound: text, flagged there
    ("7\tNA\t1", False), ("7\t\t1", False), ("7\t0\t", False), ("7\t-1\t1", False), ("7\t1.5\t1", False),
    ("7\t1e3\t1", False), ("7\t 4\t1", False), ('7\t"4"\t1', False),
])
def test_parse_matrix_reads_plain_whole_numbers_typed_with_the_same_records(tmp_path: Path, cells: str,
                                                                               typed: bool):
    path = _write(tmp_path, "m.tsv", f"gene\tA\tB\tC\r\ng1\t1\t2\t3\r\ng2\t{cells}\r\n")
    parsed = parse_matrix(path, issues=IssueLog("t"))
    assert parsed.wide is not None
    assert parsed.wide.typed is typed
    records = parsed.records.collect().sort("line", "column")
    assert records.schema == pl.Schema(RECORD_SCHEMA)
    if typed:
        assert records.select("feature_id", "column", "value", "line", "problem", "raw").rows() == [
            ("g1", "A", 1.0, 2, None, None), ("g1", "B", 2.0, 2, None, None), ("g1", "C", 3.0, 2, None, None),
            ("g2", "A", 7.0, 3, None, None), ("g2", "B", 0.0, 3, None, None),
            ("g2", "C", 123456789012345.0, 3, None, None)]


def test_parse_matrix_typed_only_when_every_line_is_plain(tmp_path: Path):
    # a comment line, a ragged row or a bad cell anywhere sends the whole file through the text parser
    for text in ("gene\tA\ng1\t1\n# note\n", "gene\tA\ng1\t1\ng2\t1\t2\n", "gene\tA\ng1\t1\ng2\tx\n"):
        assert parse_matrix(_write(tmp_path, "m.tsv", text), issues=IssueLog("t")).wide.typed is False
    # leading annotation columns may hold anything: only the value columns are checked
    path = _write(tmp_path, "m.tsv", "Hugo_Symbol\tEntrez_Gene_Id\tCytoband\tS1\nTP53\t7157\t17p13.1\t5\n")
    parsed = parse_matrix(path, issues=IssueLog("t"), annotation_columns=["Cytoband"])
    assert parsed.wide.typed is True
    assert parsed.records.collect().select("feature_id", "column", "value").rows() == [("TP53|7157", "S1", 5.0)]


@pytest.mark.parametrize(("rows", "ids"), [
    ("g1\t1\ng2\t2\n", ["g1", "g2"]),  # read by the pre-pass
    ('"g1"\t1\ng2\t2\n', ["g1", "g2"]),  # a quoted identifier: the polars scan unquotes it
    ("g1\t1\ng\u00e8ne\t2\n", ["g1", "g\u00e8ne"]),  # a non-ASCII identifier: read by the polars scan
])
def test_parse_matrix_typed_identifiers_as_written(tmp_path: Path, rows: str, ids: list[str]):
    parsed = parse_matrix(_write(tmp_path, "m.tsv", "gene\tA\n" + rows), issues=IssueLog("t"))
    assert parsed.wide.typed is True
    assert parsed.features.get_column("feature_id").to_list() == ids
    assert parsed.features.get_column("line").to_list() == [2, 3]
    assert parsed.records.collect().sort("line").select("feature_id", "value").rows() == [(ids[0], 1.0),
                                                                                           (ids[1], 2.0)]


def _wide_file(tmp_path: Path, rows: list[list[str]], width: int | None = None) -> Path:
    header = "gene\t" + "\t".join(f"S{j}" for j in range(width or len(rows[0]))) + "\n"
    return _write(tmp_path, "w.tsv", header + "".join(f"g{i}\t" + "\t".join(r) + "\n" for i, r in enumerate(rows)))


@pytest.mark.parametrize("position", [0, 1, 1234, 2998, 2999])
@pytest.mark.parametrize(("cell", "typed"), [
    ("123456789012345", True),  # 15 digits: plain
    ("1234567890123456", False),  # 16 digits
    ("99999999999999999999", False),  # 20 digits
    ("", False), ("1.5", False), ("-3", False), ("NA", False),
])
def test_parse_matrix_typed_check_finds_a_bad_cell_anywhere_on_a_long_line(tmp_path: Path, position: int,
                                                                           cell: str, typed: bool):
    # 3,000 cells a line (the check works on whole lines of a wide file at once): the one cell is found at the
    # line's first, second, an inner, the second-last and the last value column
    rows = [[str((i * 7 + j) % 1000) for j in range(3000)] for i in range(3)]
    rows[1][position] = cell
    parsed = parse_matrix(_wide_file(tmp_path, rows), issues=IssueLog("t"))
    assert parsed.wide is not None
    assert parsed.wide.typed is typed
    if typed:
        got = parsed.records.filter((pl.col("line") == 3) & (pl.col("column") == f"S{position}")).collect()
        assert got.get_column("value").to_list() == [123456789012345.0]


@pytest.mark.parametrize(("fields", "line"), [(2999, 3), (3001, 4), (1, 3), (2999, 4), (2999, 2), (1, 2)])
def test_parse_matrix_ragged_long_line_is_located(tmp_path: Path, fields: int, line: int):
    rows = [["5"] * 3000 for _ in range(3)]
    rows[line - 2] = ["5"] * fields
    path = _wide_file(tmp_path, rows, width=3000)
    issues = IssueLog("t")
    parsed = parse_matrix(path, issues=issues)
    assert [(i.code, i.file, i.line) for i in issues.errors] == [("ragged_row", "w.tsv", line)]
    assert f"row has {fields + 1} fields, the header has 3001" in issues.errors[0].message
    kept = parsed.records.select("line").unique().collect().get_column("line").sort().to_list()
    assert kept == [n for n in (2, 3, 4) if n != line]  # a short first data line too: the others are read whole
    values = parsed.records.collect()
    assert values.height == 2 * 3000
    assert values["value"].to_list() == [5.0] * 6000


def test_parse_matrix_typed_plan_scans_integers_and_evaluates_no_value_column_before_the_unpivot(tmp_path: Path):
    # a select over every value column costs one expression per column and batch (20,000 at 20,000 samples);
    # float parsing costs ~10 % more than integer parsing of the same proven whole numbers
    rows = [[str(i * 10**13 + j * 7) for j in range(50)] for i in range(4)]
    parsed = parse_matrix(_wide_file(tmp_path, rows), issues=IssueLog("t"))
    assert parsed.wide is not None
    assert parsed.wide.typed is True
    schema = parsed.wide.frame.collect_schema()
    assert {schema[c] for c in parsed.wide.values} == {pl.Int64}
    plan = parsed.records.explain()
    assert "UNPIVOT" in plan
    assert [line for line in plan.splitlines() if 'col("S0")' in line or 'col("S49")' in line] == []
    records = parsed.records.collect()
    assert records.schema == pl.Schema(RECORD_SCHEMA)
    got = {(r["line"], r["column"]): r["value"] for r in records.iter_rows(named=True)}
    assert got == {(i + 2, f"S{j}"): float(i * 10**13 + j * 7) for i in range(4) for j in range(50)}


@pytest.mark.parametrize(("reader", "header", "found"), [
    (parse_matrix, "gene;A;B", "; it holds 2 ';' instead: save it tab- or comma-separated"),
    (parse_matrix, "gene|A|B|C", "; it holds 3 '|' instead: save it tab- or comma-separated"),
    (parse_matrix, "gene A B", "; it holds 2 spaces instead: save it tab- or comma-separated"),
    (parse_matrix, "geneAB", ""),
    (parse_maf, "Hugo_Symbol,Entrez_Gene_Id,Tumor_Sample_Barcode",
     "; it holds 2 commas instead: save it tab-separated"),
    (parse_maf, "Hugo_Symbol;Tumor_Sample_Barcode", "; it holds 1 ';' instead: save it tab-separated"),
    (parse_maf, "Hugo_Symbol Tumor_Sample_Barcode", "; it holds 1 space instead: save it tab-separated"),
])
def test_wrong_delimiter_names_the_one_found_and_the_readers_own(tmp_path: Path, reader, header: str, found: str):
    # A semicolon-separated export (a spreadsheet in a decimal-comma locale) said only that the header had a single
    # field, expected tabs or commas. A MAF (tab only) saved with commas got no hint, and one with ';' was told to
    # save it "tab- or comma-separated", which would fail again.
    path = _write(tmp_path, "m.maf" if reader is parse_maf else "m.tsv", header + "\ng1;1;2\n")
    with pytest.raises(InputError) as caught:
        reader(path, issues=IssueLog("t"))
    issue = caught.value.issue
    assert (issue.code, issue.line) == ("wrong_delimiter", 1)
    expected = "'\\t'" if reader is parse_maf else "'\\t' or ','"
    assert issue.message == f"header has a single field; expected fields separated by {expected}{found}"
