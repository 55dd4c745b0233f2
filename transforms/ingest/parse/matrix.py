"""Wide feature x sample matrices (TSV/CSV) as a streaming long frame.

The generic reader behind count matrices, cBioPortal expression / copy-number / protein matrices, mixOmics
tables (samples as rows) and the per-sample RNA formats, which are one-value-column matrices. Before the records
are built, a Python pass counts fields per line (ragged rows; blank and ``#`` lines) and a polars scan of the
identifier and annotation columns finds duplicate and empty identifiers; the records are a lazy scan + unpivot
of the same file, so a 20,000 x 20,000 matrix is never held whole in memory. Quoted fields spanning lines are
not supported (they show up as ragged rows).

Cell values: ``MISSING_VALUES`` (empty, ``NA``, ``NaN``, ...) become a null ``value`` with no problem, because R,
pandas and cBioPortal all write missing measurements that way. Any other text that is not a finite number keeps
a null ``value`` and gets a ``problem`` plus its ``raw`` text, for the writer to quarantine. Surrounding spaces
are not stripped: ``' 4 '`` is a problem, not 4.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from transforms.ingest.parse import ParsedAssay
from transforms.ingest.parse.text import (
    MAX_IDENTIFIER_CHARS,
    TableLayout,
    field_count,
    open_text,
    report_ragged_rows,
    sniff_table,
)
from transforms.issues import MAX_RECORD_CHARS, InputError, Issue, IssueLog, clip

CBIOPORTAL_GENE_COLUMNS = ("Hugo_Symbol", "Entrez_Gene_Id")
"""Leading gene columns of cBioPortal-style matrices: without ``id_columns``, both identify the row (composite
``SYMBOL|ENTREZ``) instead of ``Entrez_Gene_Id`` being read as a sample."""

MISSING_VALUES = ("", "NA", "NaN", "nan", "N/A", "NULL", "null")
"""Cell texts read as a missing value (null, no problem)."""

RECORD_SCHEMA = {"feature_id": pl.String, "column": pl.String, "value": pl.Float64, "line": pl.Int64,
                 "problem": pl.String, "raw": pl.String}
"""Columns of ``records`` for every matrix-like parser."""

_ROW = "_omicsdw_row"
_ID = "_omicsdw_id"


def parse_matrix(path: Path, *, issues: IssueLog, display_name: str | None = None,
                 id_columns: Sequence[str] | None = None, annotation_columns: Sequence[str] = (),
                 transpose: bool = False) -> ParsedAssay:
    """Read a wide matrix into ``records``: one row per feature and sample column, streamed.

    Parameters
    ----------
    path
        TSV or CSV file (gzip allowed); the first non-comment line is the header.
    issues
        Collector for problems; a file that cannot be read at all raises :class:`InputError`.
    display_name
        File name used in issues (path relative to the study folder); default ``path.name``.
    id_columns
        One or two identifier columns; default the first column, or ``Hugo_Symbol`` / ``Entrez_Gene_Id`` when the
        header starts with them (:data:`CBIOPORTAL_GENE_COLUMNS`). Two give a composite ``feature_id``
        ``"FIRST|SECOND"`` without empty parts (cBioPortal ``Hugo_Symbol``, ``Entrez_Gene_Id``: ``TP53|7157``,
        ``|7157`` -> ``7157``). Names absent from the header are skipped; none present is an error.
    annotation_columns
        Per-feature columns kept as strings in ``features`` instead of being read as samples (absent ones are
        ignored). With ``transpose`` they are per-sample columns and are left out.
    transpose
        Samples are rows and features are columns (mixOmics); the identifier column holds the sample labels.

    Returns
    -------
    ParsedAssay
        ``records`` with :data:`RECORD_SCHEMA` (``line`` is the line of the file row the value sits on);
        ``columns`` the sample labels in file order; ``features`` ``feature_id``, ``line`` and the annotation
        columns, one row per feature.
    """
    layout = sniff_table(path, issues=issues, display_name=display_name)
    return parse_wide_table(layout, issues=issues, id_columns=id_columns,
                            annotation_columns=annotation_columns, transpose=transpose)


def parse_wide_table(layout: TableLayout, *, issues: IssueLog, id_columns: Sequence[str] | None = None,
                     annotation_columns: Sequence[str] = (), transpose: bool = False) -> ParsedAssay:
    """:func:`parse_matrix` on an already sniffed layout (format parsers check their columns first).

    A layout with ``header_line == 0`` describes a header-less file whose column names the caller supplied.
    """
    name = layout.display_name
    if id_columns is None and not transpose:
        id_columns = [c for c in CBIOPORTAL_GENE_COLUMNS if c in layout.header[:2]] or None
    ids = [c for c in (id_columns or layout.header[:1]) if c in layout.header]
    if not ids:
        raise InputError(Issue(name, "missing_column", "error",
                               f"none of the identifier columns {list(id_columns or [])} is in the header",
                               layout.header_line or None))
    if len(ids) > (1 if transpose else 2):
        raise ValueError(f"at most {1 if transpose else 2} identifier columns, got {ids}")
    annotations = [c for c in annotation_columns if c in layout.header and c not in ids]
    values = [c for c in layout.header if c not in ids and c not in annotations]
    if not values:
        raise InputError(Issue(name, "no_value_columns", "error",
                               "the header has no value columns besides identifiers and annotations",
                               layout.header_line or None))
    row = pl.col(_ROW)
    wide = pl.scan_csv(layout.path, separator=layout.separator, has_header=False, skip_lines=layout.header_line,
                       schema=dict.fromkeys(layout.header, pl.String), quote_char='"', encoding="utf8-lossy",
                       truncate_ragged_lines=True, empty_string_is_null=False, row_index_name=_ROW)
    rows = _check_rows(layout, wide.select(_ROW, _identifier(ids).alias(_ID), *annotations), issues=issues,
                       id_column=ids[0], transpose=transpose)
    if rows.excluded_rows:
        wide = wide.filter(~row.is_in(pl.Series(rows.excluded_rows, dtype=pl.UInt32).implode()))

    raw = pl.col("raw")
    number = raw.cast(pl.Float64, strict=False)
    finite = number.is_finite().fill_null(False)
    missing = raw.is_null() | raw.is_in(MISSING_VALUES)
    value = pl.when(finite).then(number)
    problem = pl.when(~finite & ~missing).then(
        pl.when(number.is_null()).then(pl.format("non-numeric value '{}'", raw))
        .otherwise(pl.format("non-finite value '{}'", raw)))
    label, variable = ("column", "feature_id") if transpose else ("feature_id", "column")
    records = (
        wide.select(_identifier(ids).alias(label), (row.cast(pl.Int64) + layout.header_line + 1).alias("line"),
                    *values)
        .unpivot(on=values, index=[label, "line"], variable_name=variable, value_name="raw")
        .with_columns(value=value, problem=problem)
        .with_columns(raw=pl.when(pl.col("problem").is_not_null()).then(raw))
        .select(list(RECORD_SCHEMA))
    )
    id_list = rows.kept.get_column(_ID).to_list()
    if transpose:
        columns = id_list
        features = pl.DataFrame({"feature_id": values, "line": [layout.header_line or None] * len(values)},
                                schema={"feature_id": pl.String, "line": pl.Int64})
    else:
        columns = values
        features = rows.kept.select(pl.col(_ID).alias("feature_id"), "line", *annotations)
    metadata = {"rows": rows.kept.height, "value_columns": len(values), "rows_excluded": len(rows.excluded_rows),
                "separator": layout.separator, "encoding": layout.encoding, "header_line": layout.header_line}
    return ParsedAssay(records=records, columns=columns, features=features, metadata=metadata)


def require_columns(layout: TableLayout, names: Sequence[str]) -> None:
    """Raise :class:`InputError` naming the columns a fixed-layout format needs but the header lacks."""
    absent = [n for n in names if n not in layout.header]
    if absent:
        raise InputError(Issue(layout.display_name, "missing_column", "error",
                               f"header lacks column(s) {absent}; found {layout.header}",
                               layout.header_line or None))


def cast_annotation(features: pl.DataFrame, column: str, dtype: type[pl.DataType], *, issues: IssueLog,
                    file: str) -> pl.DataFrame:
    """Cast one annotation column of ``features`` to a number; each unreadable cell is a warning."""
    text = pl.col(column)
    cast = features.with_columns(text.cast(dtype, strict=False).alias("_cast"))
    bad = cast.filter(pl.col("_cast").is_null() & text.is_not_null() & ~text.is_in(MISSING_VALUES))
    for line, raw_text in bad.select("line", column).iter_rows():
        issues.warning("non_numeric_annotation", f"{column} {raw_text!r} is not a number; left empty",
                       file=file, line=line, column=column)
    return cast.with_columns(pl.col("_cast").alias(column)).drop("_cast")


def _identifier(ids: list[str]) -> pl.Expr:
    """The ``feature_id`` (or sample label) of a row: one column, or two joined by ``|`` without empty parts."""
    if len(ids) == 1:
        return pl.col(ids[0])
    return pl.concat_str([pl.when(pl.col(c) != "").then(pl.col(c)) for c in ids], separator="|",
                         ignore_nulls=True)


@dataclass
class _Rows:
    """The data rows of the polars scan: kept ones (identifier, file line, annotations) and excluded indices."""

    kept: pl.DataFrame
    excluded_rows: list[int] = field(default_factory=list)


def _check_rows(layout: TableLayout, identifiers: pl.LazyFrame, *, issues: IssueLog, id_column: str,
                transpose: bool) -> _Rows:
    """Ragged rows (error); blank, comment, duplicate and empty-identifier rows excluded with an issue.

    A Python pass counts fields per line (polars would pad a short row silently); the identifiers come from
    the same polars scan as the records, so both agree. Row ``k`` of that scan is line
    ``k + header_line + 1``: it has no comment handling, so ``#`` and blank lines are rows too.
    """
    name = layout.display_name
    skipped: dict[str, list[int]] = {"blank": [], "comment": []}
    ragged = _count_fields(layout, skipped)
    report_ragged_rows(layout, ragged, issues=issues)  # once each; the rest of the file is still checked
    for what, lines in skipped.items():
        if lines:
            issues.info(f"{what}_lines", f"{len(lines)} {what} line(s) after the header left out "
                        f"(first on line {lines[0]})", file=name, line=lines[0])
    offset = layout.header_line + 1
    excluded = [line - offset for lines in skipped.values() for line in lines]
    excluded += [line - offset for line, _ in ragged]
    frame = identifiers.filter(~pl.col(_ROW).is_in(pl.Series(excluded, dtype=pl.UInt32).implode())).collect()
    ident = pl.col(_ID)
    frame = frame.with_columns(
        line=pl.col(_ROW).cast(pl.Int64) + offset,
        empty=ident.is_null() | (ident == ""),
        too_long=ident.str.len_chars().fill_null(0) > MAX_IDENTIFIER_CHARS,
    )
    too_long = frame.filter("too_long").select("line", ident.str.len_chars().alias("length"), ident)
    for line, length, text in too_long.iter_rows():
        issues.error("identifier_too_long", f"{'sample' if transpose else 'feature'} identifier has {length} "
                     f"characters (at most {MAX_IDENTIFIER_CHARS}); row left out", file=name, line=line,
                     column=id_column, record=clip(text, MAX_IDENTIFIER_CHARS))
    excluded += frame.filter("too_long").get_column(_ROW).to_list()
    frame = frame.filter(~pl.col("too_long")).drop("too_long").with_columns(
        duplicate=~pl.col("empty") & ~ident.is_first_distinct())
    bad = frame.filter(pl.col("empty") | pl.col("duplicate"))
    if bad.height:
        _report_bad_rows(layout, bad, frame, issues=issues, column=id_column,
                         kind="sample" if transpose else "feature")
    kept = frame.filter(~pl.col("empty") & ~pl.col("duplicate")).drop("empty", "duplicate")
    if kept.height == 0:
        raise InputError(Issue(name, "no_rows", "error", "the table has a header but no data rows",
                               layout.header_line or None))
    return _Rows(kept=kept, excluded_rows=sorted(excluded + bad.get_column(_ROW).to_list()))


def _count_fields(layout: TableLayout, skipped: dict[str, list[int]]) -> list[tuple[int, int]]:
    """``(line, n_fields)`` of every data line whose field count is not the header's; fills ``skipped``."""
    sep = layout.separator.encode()
    width = len(layout.header)
    ragged: list[tuple[int, int]] = []
    with open_text(layout.path) as fh:
        for number, line in enumerate(fh, start=1):
            if number <= layout.header_line:
                continue
            if line.startswith(b"#"):
                skipped["comment"].append(number)
            elif not line.strip():
                skipped["blank"].append(number)
            else:
                n = (field_count(line.decode("utf-8", errors="replace").rstrip("\r\n"), layout.separator)
                     if b'"' in line else line.count(sep) + 1)
                if n != width:
                    ragged.append((number, n))
    return ragged


def _report_bad_rows(layout: TableLayout, bad: pl.DataFrame, frame: pl.DataFrame, *, issues: IssueLog,
                     column: str, kind: str) -> None:
    """One warning per duplicate or empty identifier, with the raw row (truncated) as ``record``."""
    first_line = dict(frame.filter(~pl.col("empty") & ~pl.col("duplicate")).select(_ID, "line").iter_rows())
    wanted = set(bad.get_column("line"))
    records: dict[int, str] = {}
    with open_text(layout.path) as fh:
        for number, line in enumerate(fh, start=1):
            if number in wanted:
                text = line.decode("utf-8", errors="replace").rstrip("\r\n")
                records[number] = clip(text[:MAX_RECORD_CHARS + 1]) or ""
    for ident, line, empty in bad.select(_ID, "line", "empty").iter_rows():
        if empty:
            issues.warning(f"empty_{kind}_id", f"empty {kind} identifier; row left out", file=layout.display_name,
                           line=line, column=column, record=records.get(line))
        else:
            issues.warning(f"duplicate_{kind}", f"{kind} {ident!r} already on line {first_line[ident]}; this "
                           "row is left out", file=layout.display_name, line=line, column=column,
                           record=records.get(line))
