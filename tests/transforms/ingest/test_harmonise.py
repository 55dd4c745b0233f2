"""Identity attachment, value flags, quarantine routing and gene_id_map rows on 1-3 hand-written rows.

Every expected frame is written out by hand from the rules in transforms/ingest/harmonise.py; the end-to-end runs
in tests/warehouse exercise the same functions on real files.
"""

import polars as pl
from polars.testing import assert_frame_equal

from transforms.ingest.harmonise import (
    attach_identity,
    flag_values,
    gene_map_rows,
    quarantine_rows,
)
from transforms.issues import MAX_RECORD_CHARS

SAMPLE_MAP = pl.DataFrame({"column": ["S1", "S2", "S3"], "sample_id": ["s-1", "s-2", None]})
GENE_MAP = pl.DataFrame({"feature_id": ["TP53", "FOO"], "gene_id": [7157, None], "status": ["mapped", "unmapped"]})


def _records(**columns) -> pl.LazyFrame:
    return pl.LazyFrame(columns)


def test_attach_identity_maps_samples_and_only_mapped_genes():
    records = _records(feature_id=["TP53", "FOO", "TP53"], column=["S1", "S2", "S3"], line=[2, 3, 2],
                       value=[1.0, 2.0, 3.0])
    got = attach_identity(records, sample_map=SAMPLE_MAP, gene_map=GENE_MAP, study_id="st", assay="rna",
                          file="c.tsv").collect().sort("line")
    # S3 has no sample (its label error was logged by the mapping): its record is left out, not repeated.
    # TP53 is mapped -> 7157; FOO is unmapped -> gene_id null but the row stays.
    expected = pl.DataFrame({
        "feature_id": ["TP53", "FOO"], "column": ["S1", "S2"], "line": [2, 3], "value": [1.0, 2.0],
        "problem": [None, None], "problem_code": [None, None], "raw": [None, None],
        "study_id": ["st", "st"], "assay": ["rna", "rna"], "file": ["c.tsv", "c.tsv"],
        "sample_id": ["s-1", "s-2"], "gene_id": [7157, None],
    }, schema_overrides={"problem": pl.String, "problem_code": pl.String, "raw": pl.String})
    assert_frame_equal(got, expected, check_column_order=False)


def test_attach_identity_of_a_parsed_matrix_skips_only_lookups_that_change_nothing():
    records = _records(feature_id=["G1", "G2", "G1"], column=["A", "A", "B"], line=[2, 3, 2], value=[1.0, 2.0, 3.0])
    features = pl.Series(["G1", "G2"])
    no_genes = pl.DataFrame({"feature_id": ["G1", "G2"], "gene_id": [None, None], "status": ["unmapped"] * 2},
                            schema_overrides={"gene_id": pl.Int64})
    # every label is its own sample, no feature maps: sample_id = the label, gene_id null, every row kept
    own = pl.DataFrame({"column": ["A", "B"], "sample_id": ["A", "B"]})
    got = attach_identity(records, sample_map=own, gene_map=no_genes, study_id="st", assay="rna", file="m.tsv",
                          features=features).collect().sort("line", "column")
    assert got.select("feature_id", "column", "sample_id", "gene_id").rows() == [
        ("G1", "A", "A", None), ("G1", "B", "B", None), ("G2", "A", "A", None)]
    assert got.schema["gene_id"] == pl.Int64
    # label B without a sample (its error is logged by the mapping): its row still leaves, as without `features`
    dropped = pl.DataFrame({"column": ["A", "B"], "sample_id": ["A", None]})
    got = attach_identity(records, sample_map=dropped, gene_map=no_genes, study_id="st", assay="rna", file="m.tsv",
                          features=features).collect().sort("line")
    assert got.select("feature_id", "sample_id").rows() == [("G1", "A"), ("G2", "A")]
    # a label mapped to another id, and one mapped feature: both looked up
    renamed = pl.DataFrame({"column": ["A", "B"], "sample_id": ["s-a", "s-b"]})
    genes = pl.DataFrame({"feature_id": ["G1", "G2"], "gene_id": [7157, None], "status": ["mapped", "unmapped"]})
    got = attach_identity(records, sample_map=renamed, gene_map=genes, study_id="st", assay="rna", file="m.tsv",
                          features=features).collect().sort("line", "column")
    assert got.select("sample_id", "gene_id").rows() == [("s-a", 7157), ("s-b", 7157), ("s-a", None)]


def test_attach_identity_without_gene_map_adds_a_null_line_and_no_gene_id():
    got = attach_identity(_records(column=["S2"], value=[4.0]), sample_map=SAMPLE_MAP, gene_map=None,
                          study_id="st", assay="seg", file="s.seg").collect()
    assert got.select("study_id", "assay", "file", "line", "sample_id", "value").rows() == [
        ("st", "seg", "s.seg", None, "s-2", 4.0)]
    assert got.schema["line"] == pl.Int64
    assert "gene_id" not in got.columns


def test_attach_identity_quarantines_an_identifier_over_512_characters():
    long_id = "X" * 513
    records = _records(feature_id=[long_id, "TP53"], column=["S1", "S1"], line=[2, 3],
                       problem=[None, "parser said so"], problem_code=[None, "bad"], raw=[None, "r"])
    got = attach_identity(records, sample_map=SAMPLE_MAP, gene_map=GENE_MAP, study_id="st", assay="rna",
                          file="c.tsv").collect().sort("line")
    assert got.select("problem_code", "problem", "raw").rows() == [
        ("identifier_too_long", "feature identifier has 513 characters (at most 512)", "X" * 80 + " ..."),
        ("bad", "parser said so", "r"),  # an earlier parser problem is kept
    ]


def test_flag_values_names_the_first_failing_check_for_counts():
    records = _records(value=[5.0, -1.0, float("nan"), float("inf"), -2e15, None, -3.0],
                       problem=[None, None, None, None, None, None, "kept"],
                       problem_code=[None, None, None, None, None, None, "parser"],
                       raw=[None, None, None, None, None, None, "x"]).with_columns(pl.col("problem").cast(pl.String))
    got = flag_values(records).collect()
    assert got["problem_code"].to_list() == [None, "negative_count", "nan_value", "infinite_value",
                                             "implausible_value", "missing_value", "parser"]
    # -2e15: above the bound in absolute value, so implausible wins over negative (checked first)
    assert got["problem"].to_list() == [
        None, "negative count -1.0", "count is NaN", "count is infinite",
        "count -2000000000000000.0 is above the plausible bound 1e+15", "count is missing", "kept"]
    assert got["raw"].to_list() == ["5.0", "-1.0", "NaN", "inf", "-2000000000000000.0", None, "x"]


def test_flag_values_abundance_allows_negatives_and_missing_when_asked():
    records = _records(intensity=[-1.5, None], problem=[None, None], problem_code=[None, None], raw=[None, None],
                       ).with_columns(pl.col("problem", "problem_code", "raw").cast(pl.String))
    got = flag_values(records, value="intensity", kind="abundance", allow_missing=True).collect()
    assert got.select("problem_code", "problem", "raw").rows() == [(None, None, "-1.5"), (None, None, None)]


def test_quarantine_rows_one_issue_per_cause_with_column_and_clipped_record():
    long_raw = "y" * (MAX_RECORD_CHARS + 1)
    records = _records(
        study_id=["st"] * 4, file=["c.tsv"] * 4, line=[2, 2, 3, 4], column=["S1", "S1", "S2", "S1"],
        problem_column=["Length", "Length", None, None],
        problem=["bad length", "bad length", "too long", None], problem_code=["invalid_length", "invalid_length",
                                                                             None, None],
        raw=["-5", "-5", long_raw, "1"])
    got = quarantine_rows(records).collect()
    # rows 1-2 repeat file, line, column, problem and value: one issue; row 4 has no problem: not an issue
    expected = pl.DataFrame({
        "study_id": ["st", "st"], "file": ["c.tsv", "c.tsv"], "line": [2, 3], "column": ["Length", "S2"],
        "code": ["invalid_length", "invalid_value"], "severity": ["error", "error"],
        "message": ["bad length", "too long"], "record": ["-5", "y" * MAX_RECORD_CHARS + " ..."],
    })
    assert_frame_equal(got, expected)


def test_gene_map_rows_labels_resolver_output_with_study_and_assay():
    resolved = pl.DataFrame({"feature_id": ["TP53", "FOO"], "namespace": ["symbol", "symbol"],
                             "gene_id": pl.Series([7157, None], dtype=pl.Int32), "status": ["mapped", "unmapped"],
                             "rule": ["exact", "not_found"], "extra": [1, 2]})
    got = gene_map_rows(resolved, study_id="st", assay="rna")
    expected = pl.DataFrame({"study_id": ["st", "st"], "assay": ["rna", "rna"], "namespace": ["symbol", "symbol"],
                             "feature_id": ["TP53", "FOO"], "gene_id": pl.Series([7157, None], dtype=pl.Int64),
                             "status": ["mapped", "unmapped"], "rule": ["exact", "not_found"]})
    assert_frame_equal(got, expected)


def test_quarantine_rows_names_a_thousands_separator_or_a_decimal_comma():
    # A spreadsheet in a European locale writes 1.234,5 as '1.234,5' and 0.5 as '0,5': each cell said only
    # "non-numeric value '0,5'" (one error per cell), leaving the reader to find out why.
    raws = ["1,234", "-12,345,678", "1,234.5", "278,43", ",5", "1.234,5", "abc", "1,2,3"]
    records = _records(study_id=["st"] * len(raws), file=["c.tsv"] * len(raws), line=list(range(2, 2 + len(raws))),
                       column=["S1"] * len(raws), problem=[f"non-numeric value '{r}'" for r in raws],
                       problem_code=[None] * len(raws), raw=raws)
    thousands = " (a thousands separator or a decimal comma? write plain numbers with '.' for decimals)"
    comma = " (a decimal comma? write '.' for decimals)"
    hints = [thousands, thousands, thousands, comma, comma, comma, "", ""]
    got = quarantine_rows(records).collect()
    assert got["message"].to_list() == [f"non-numeric value '{r}'{h}" for r, h in zip(raws, hints, strict=True)]
