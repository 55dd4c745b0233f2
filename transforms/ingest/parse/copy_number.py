"""Gene-level copy number files: GISTIC discrete calls (wide or cBioPortal long) and continuous log2 ratios.

All three give one record per sample and gene-level feature in the columns of :data:`COPY_NUMBER_SCHEMA`, so the
``copy_number`` table takes calls and ratios from any of them. GISTIC calls are the five levels -2..2 (deep
deletion, shallow deletion, neutral, gain, amplification); anything else (3, 0.5, cBioPortal's legacy -1.5) is kept
as a ``problem`` record instead of being rounded into a level it does not mean. ``NA`` (not profiled in
cBioPortal) is a null call without a problem. GISTIC 2.0's own gene tables (``all_thresholded.by_genes.txt``: calls,
``all_data_by_genes.txt``: values) are recognised by their header (``Gene Symbol``, ``Locus ID`` or ``Gene ID``,
``Cytoband``): symbol and id make one ``SYMBOL|ID`` feature, as cBioPortal's ``Hugo_Symbol`` / ``Entrez_Gene_Id``
do. Its peak files (``all_lesions.conf_XX.txt``, ``amp_genes`` / ``del_genes``) are :mod:`.gistic2`.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from transforms.ingest.parse import ParsedAssay
from transforms.ingest.parse.matrix import (
    CBIOPORTAL_GENE_COLUMNS,
    MISSING_VALUES,
    parse_wide_table,
    require_columns,
)
from transforms.ingest.parse.text import TableLayout, checks_stream, read_table, sniff_table
from transforms.issues import InputError, Issue, IssueLog

COPY_NUMBER_SCHEMA = {"column": pl.String, "feature_id": pl.String, "line": pl.Int64, "log2_ratio": pl.Float64,
                      "call": pl.Int8, "problem": pl.String, "raw": pl.String}
"""Columns of ``records`` for every copy-number parser (``raw``: the cell text of a problem record)."""

GENE_COLUMNS = CBIOPORTAL_GENE_COLUMNS  # the long (DISCRETE_LONG) file names its gene columns the same way

ANNOTATION_COLUMNS = ("Cytoband",)

_LONG_COLUMNS = ("Sample_Id", "Value")

GISTIC2_SYMBOL = "Gene Symbol"
GISTIC2_IDS = ("Locus ID", "Gene ID")
"""Leading columns of GISTIC 2.0's ``*_by_genes.txt`` tables: ``Gene Symbol``, then the gene's ``Locus ID`` (Entrez,
negative for GISTIC's own non-Entrez entries; the symbol then decides) or ``Gene ID`` (GDC: Ensembl), then
``Cytoband``."""


def gene_id_columns(layout: TableLayout) -> list[str] | None:
    """The identifier columns of a gene-level copy-number table: GISTIC 2.0's ``Gene Symbol`` and its id column when
    the header starts with them, else None (cBioPortal's ``Hugo_Symbol`` / ``Entrez_Gene_Id`` or the first column,
    as :func:`transforms.ingest.parse.matrix.parse_wide_table` decides). Without it ``Locus ID`` was read as a sample.
    """
    if layout.header[:1] != [GISTIC2_SYMBOL]:
        return None
    return [GISTIC2_SYMBOL, *(c for c in GISTIC2_IDS if layout.header[1:2] == [c])]


@checks_stream
def _parse_gene_table(path: Path, *, issues: IssueLog, display_name: str | None) -> ParsedAssay:
    layout = sniff_table(path, issues=issues, display_name=display_name)
    return parse_wide_table(layout, issues=issues, id_columns=gene_id_columns(layout),
                            annotation_columns=ANNOTATION_COLUMNS)


def parse_gistic(path: Path, *, issues: IssueLog, display_name: str | None = None) -> ParsedAssay:
    """Wide discrete GISTIC calls (genes x samples, cBioPortal ``DISCRETE``): one record per gene and sample.

    The gene is ``Hugo_Symbol`` and/or ``Entrez_Gene_Id`` when they lead (cBioPortal), ``Gene Symbol`` and
    ``Locus ID`` / ``Gene ID`` (GISTIC 2.0's ``all_thresholded.by_genes.txt``, :func:`gene_id_columns`), else the
    first column (``Cytoband`` goes to ``features``); ``call`` Int8 in -2..2,
    ``log2_ratio`` null. Reading, duplicate genes and ragged rows are
    :func:`transforms.ingest.parse.matrix.parse_matrix`.
    """
    matrix = _parse_gene_table(path, issues=issues, display_name=display_name)
    records = matrix.records.select(
        "column", "feature_id", "line", pl.lit(None, dtype=pl.Float64).alias("log2_ratio"),
        *_calls(pl.col("value"), problem=pl.col("problem"), raw=pl.col("raw")),
    )
    return ParsedAssay(records=records, columns=matrix.columns, features=matrix.features,
                       metadata=matrix.metadata)


def parse_cn_log2(path: Path, *, issues: IssueLog, display_name: str | None = None) -> ParsedAssay:
    """Continuous gene-level log2 copy-number ratios (genes x samples, cBioPortal ``LOG2-VALUE``/``CONTINUOUS``).

    Same layout as :func:`parse_gistic` (GISTIC 2.0's ``all_data_by_genes.txt`` too); ``log2_ratio`` is the cell,
    ``call`` null.
    """
    matrix = _parse_gene_table(path, issues=issues, display_name=display_name)
    records = matrix.records.select(
        "column", "feature_id", "line", pl.col("value").alias("log2_ratio"),
        pl.lit(None, dtype=pl.Int8).alias("call"), "problem", "raw",
    )
    return ParsedAssay(records=records, columns=matrix.columns, features=matrix.features,
                       metadata=matrix.metadata)


@checks_stream
def parse_gistic_long(path: Path, *, issues: IssueLog, display_name: str | None = None) -> ParsedAssay:
    """Read cBioPortal ``DISCRETE_LONG`` (``Hugo_Symbol``, ``Entrez_Gene_Id``, ``Sample_Id``, ``Value``, ...).

    One record per line (grain: sample x gene). Driver annotations (``cbp_driver*``) and namespace columns
    (``Namespace.field``) are not part of ``copy_number``; an info issue says how many rows carried them. A row
    without gene or sample, or repeating an earlier (gene, sample) pair, is left out with a warning each (the
    first occurrence is kept, as for duplicate rows of a matrix).
    """
    layout = sniff_table(path, issues=issues, display_name=display_name)
    name = layout.display_name
    require_columns(layout, _LONG_COLUMNS)
    ids = [c for c in GENE_COLUMNS if c in layout.header]
    if not ids:
        require_columns(layout, GENE_COLUMNS)  # raises, naming both
    table = read_table(layout, issues=issues)
    # read_table reports each ragged row once and leaves it out (polars would pad a short row with nulls)
    if table.height == 0:  # a cut or emptied export: no calls at all is an error, not an empty profile
        raise InputError(Issue(name, "no_rows", "error", "the table has a header but no data rows",
                               layout.header_line))

    ids_present = [pl.when(pl.col(c) != "").then(pl.col(c)) for c in ids]
    keyed = table.with_columns(
        pl.concat_str(ids_present, separator="|", ignore_nulls=True).alias("feature_id"),
        pl.col("Sample_Id").alias("column"),
    ).with_columns(pl.when(pl.col("feature_id") != "").then(pl.col("feature_id")).alias("feature_id"))
    keyed = keyed.with_columns(
        pl.concat_str([pl.col(c).fill_null("") for c in layout.header], separator=layout.separator).alias("record"),
        pl.col("line").first().over("feature_id", "column").alias("first_line"),
    )
    no_gene = pl.col("feature_id").is_null()
    no_sample = ~no_gene & (pl.col("column").is_null() | (pl.col("column") == ""))
    repeated = ~no_gene & ~no_sample & (pl.col("line") != pl.col("first_line"))
    for rows, code, column, reason in (
        (no_gene, "empty_feature_id", ids[0], pl.lit("empty gene identifier; row left out")),
        (no_sample, "empty_sample_label", "Sample_Id", pl.lit("empty Sample_Id; row left out")),
        (repeated, "duplicate_record", ids[0],
         pl.format("gene {} and sample {} already on line {}; this row is left out",
                   pl.col("feature_id"), pl.col("column"), pl.col("first_line"))),
    ):
        issues.extend_from_frame(keyed.filter(rows).select("line", "record", pl.lit(column).alias("column"),
                                                            reason.alias("reason")),
                                 file=name, code=code, severity="warning", message=code)
    kept = keyed.filter(~(no_gene | no_sample | repeated))
    n_dropped = keyed.height - kept.height
    _report_unloaded(kept, [c for c in layout.header if c not in (*ids, *_LONG_COLUMNS, *ANNOTATION_COLUMNS)],
                     issues=issues, file=name, line=layout.header_line)

    cell = pl.col("Value")
    value = cell.cast(pl.Float64, strict=False)
    missing = cell.is_null() | cell.is_in(MISSING_VALUES)
    records = kept.select(
        "column", "feature_id", "line", pl.lit(None, dtype=pl.Float64).alias("log2_ratio"),
        *_calls(value, problem=pl.when(value.is_null() & ~missing).then(pl.format("non-numeric value '{}'", cell)),
                raw=cell),
    )
    samples = records.get_column("column").unique(maintain_order=True).to_list()
    metadata: dict[str, object] = {"rows": records.height, "rows_excluded": n_dropped, "samples": len(samples),
                "features": records.get_column("feature_id").n_unique()}
    return ParsedAssay(records=records.lazy(), columns=samples, metadata=metadata)


def _calls(value: pl.Expr, *, problem: pl.Expr, raw: pl.Expr) -> list[pl.Expr]:
    """``call``, ``problem`` and ``raw`` from a numeric cell: only integral -2..2 become a call."""
    integral = value == value.floor()
    level = value.cast(pl.Int64, strict=False).cast(pl.String)
    bad = (pl.when(value.is_null() | value.is_infinite()).then(None)
           .when(~integral).then(pl.format("fractional call {}", value))
           .when((value < -2) | (value > 2)).then(pl.format("call {} outside -2..2", level)))
    new_problem = pl.coalesce(problem, bad)
    return [
        pl.when(new_problem.is_null() & value.is_not_null()).then(value.cast(pl.Int8, strict=False)).alias("call"),
        new_problem.alias("problem"),
        pl.when(new_problem.is_not_null())
        .then(pl.coalesce(raw, pl.when(integral).then(level).otherwise(value.cast(pl.String)))).alias("raw"),
    ]


def _report_unloaded(kept: pl.DataFrame, columns: list[str], *, issues: IssueLog, file: str, line: int) -> None:
    """One info issue naming the columns ``copy_number`` has no place for, if any row fills them."""
    if not columns:
        return
    filled = kept.select(pl.any_horizontal((pl.col(c).is_not_null() & (pl.col(c) != "")) for c in columns)
                         .sum()).item()
    if filled:
        issues.info("columns_not_loaded", f"{filled} row(s) carry values in {', '.join(columns)}; copy_number "
                    "keeps only the call", file=file, line=line)
