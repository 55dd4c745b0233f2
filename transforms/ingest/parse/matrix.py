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
from typing import IO

import numpy as np
import polars as pl

from transforms.ingest.parse import ParsedAssay
from transforms.ingest.parse.text import (
    MAX_IDENTIFIER_CHARS,
    READ_ERRORS,
    TableLayout,
    checks_stream,
    field_count,
    is_utf8,
    lines_as_utf8,
    open_text,
    report_ragged_rows,
    sniff_table,
    staged_as_utf8,
    unreadable,
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
_LABEL = "_omicsdw_label"


@checks_stream
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
    lead = len(ids) + len(annotations)
    trailing_values = not transpose and layout.header[lead:] == values
    rows = _check_rows(layout, [_identifier(ids).alias(_ID), *annotations], issues=issues, id_column=ids[0],
                       transpose=transpose, plain_from=lead if trailing_values else None)
    try:
        wide = _scan(layout, values if rows.plain else None, source=rows.source)
    finally:  # the scans hold their own handles of the staged text: ours is not needed any more
        if rows.source is not None:
            rows.source.close()
    if rows.excluded_rows:
        wide = wide.filter(~row.is_in(pl.Series(rows.excluded_rows, dtype=pl.UInt32).implode()))
    label, variable = ("column", "feature_id") if transpose else ("feature_id", "column")
    # the identifier is one added column: a select or rename of every value column costs 20,000 expressions a batch
    body = wide.with_columns(_identifier(ids).alias(_LABEL))
    matrix = WideMatrix(body, values, typed=rows.plain, first_line=layout.header_line + 1, label=label,
                        variable=variable)
    records = matrix.records
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
    return ParsedAssay(records=records, columns=columns, features=features, metadata=metadata,
                       wide=None if transpose else matrix)


def _scan(layout: TableLayout, typed: list[str] | None, *, source: IO[bytes] | None = None) -> pl.LazyFrame:
    """The file as a lazy wide frame with a row index; every column text, or the ``typed`` ones Int64 (the caller
    proved them whole numbers below 1e15: polars parses those ~10 % cheaper as integers than as floats).
    ``source``: the file's text in UTF-8, staged, when some of its lines are not (:func:`_check_rows`), else the
    file (each scan takes its own handle of ``source``: polars maps it, nothing is read here).

    Without a header row polars takes the file's width from its first line: a short first data line (reported and
    left out as a ragged row) would fail the whole file, so the columns it lacks are inserted as nulls instead.
    """
    schema: dict[str, type[pl.DataType]] = dict.fromkeys(layout.header, pl.String)
    schema.update(dict.fromkeys(typed or (), pl.Int64))
    return pl.scan_csv(layout.path if source is None else source, separator=layout.separator, has_header=False,
                       skip_lines=layout.header_line, schema=schema, quote_char='"', encoding="utf8-lossy",
                       truncate_ragged_lines=True, missing_columns="insert", empty_string_is_null=False,
                       row_index_name=_ROW)


@dataclass
class WideMatrix:
    """A matrix before its unpivot: one row per kept file row (``_LABEL`` identifier, ``_ROW`` row of the scan, the
    value columns as in the header); row ``k`` is file line ``k + first_line``.

    ``typed``: the value columns are Int64, read without text parsing, because the pre-pass proved every value
    cell a plain whole number of at most 15 digits (:func:`_plain_values`): none can be missing, negative,
    fractional, non-finite or above any plausible bound, so there is nothing to flag per cell, and each is exact
    as a Float64 (below 2^53). Otherwise they are text and :meth:`long` parses each cell, keeping the problem and
    raw text of the bad ones.
    """

    frame: pl.LazyFrame
    values: list[str]
    typed: bool
    first_line: int
    label: str = "feature_id"
    variable: str = "column"
    records: pl.LazyFrame = field(init=False)

    def __post_init__(self) -> None:
        self.records = self.long()

    def long(self) -> pl.LazyFrame:
        """Unpivot into :data:`RECORD_SCHEMA` records: one per feature row and value column."""
        # the line from the row index after the unpivot: computed only where a plan reads it (problem rows)
        long = self.frame.unpivot(on=self.values, index=[_LABEL, _ROW], variable_name=self.variable,
                                  value_name="raw").select(
            pl.col(_LABEL).alias(self.label), self.variable, "raw",
            (pl.col(_ROW).cast(pl.Int64) + self.first_line).alias("line"))
        if self.typed:
            nothing = pl.lit(None, pl.String)
            return long.select(self.label, self.variable, pl.col("raw").cast(pl.Float64).alias("value"), "line",
                               nothing.alias("problem"), nothing.alias("raw")).select(*RECORD_SCHEMA)
        raw = pl.col("raw")
        number = raw.cast(pl.Float64, strict=False)
        finite = number.is_finite().fill_null(False)
        missing = raw.is_null() | raw.is_in(MISSING_VALUES)
        value = pl.when(finite).then(number)
        problem = pl.when(~finite & ~missing).then(
            pl.when(number.is_null()).then(pl.format("non-numeric value '{}'", raw))
            .otherwise(pl.format("non-finite value '{}'", raw)))
        return (long.with_columns(value=value, problem=problem)
                .with_columns(raw=pl.when(pl.col("problem").is_not_null()).then(raw))
                .select(*RECORD_SCHEMA))


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
    plain: bool = False
    """Every data line is kept-shape and its value cells are plain whole numbers (:func:`_plain_values`)."""
    source: IO[bytes] | None = None
    """What to scan: None for the file itself, or its text with each line that is not UTF-8 decoded as
    Windows-1252 (polars' ``utf8-lossy`` would make each such byte U+FFFD, silently), staged in a temporary file."""


def _check_rows(layout: TableLayout, identifiers: list[pl.Expr | str], *, issues: IssueLog, id_column: str,
                transpose: bool, plain_from: int | None = None) -> _Rows:
    """Ragged rows (error); blank, comment, duplicate and empty-identifier rows excluded with an issue; lines that
    are not UTF-8 read as Windows-1252 with a located ``bad_encoding`` warning.

    A Python pass counts fields per line (polars would pad a short row silently); the ``identifiers`` columns
    come from the same polars scan as the records, so both agree. Row ``k`` of that scan is line
    ``k + header_line + 1``: it has no comment handling, so ``#`` and blank lines are rows too.
    """
    skipped: dict[str, list[int]] = {"blank": [], "comment": []}
    not_utf8: list[int] = []
    ragged, plain, first = _count_fields(layout, skipped, not_utf8, plain_from=plain_from)
    source = _as_utf8(layout, not_utf8, issues=issues) if not_utf8 else None
    try:
        return _checked_rows(layout, identifiers, ragged, skipped, first, source=source, plain=plain, issues=issues,
                             id_column=id_column, transpose=transpose)
    except BaseException:
        if source is not None:
            source.close()
        raise


def _checked_rows(layout: TableLayout, identifiers: list[pl.Expr | str], ragged: list[tuple[int, int]],
                  skipped: dict[str, list[int]], first: list[str] | None, *, source: IO[bytes] | None, plain: bool,
                  issues: IssueLog, id_column: str, transpose: bool) -> _Rows:
    """:func:`_check_rows` once the pre-pass counted the fields (``source``: the staged UTF-8 text, if any)."""
    name = layout.display_name
    report_ragged_rows(layout, ragged, issues=issues)  # once each; the rest of the file is still checked
    for what, lines in skipped.items():
        if lines:
            issues.info(f"{what}_lines", f"{len(lines)} {what} line(s) after the header left out "
                        f"(first on line {lines[0]})", file=name, line=lines[0])
    offset = layout.header_line + 1
    excluded = [line - offset for lines in skipped.values() for line in lines]
    excluded += [line - offset for line, _ in ragged]
    if first is not None and not ragged and not any(skipped.values()):  # the pre-pass read them: no second scan
        frame = pl.DataFrame({_ROW: pl.int_range(len(first), dtype=pl.UInt32, eager=True),
                              _ID: pl.Series(first, dtype=pl.String)})
    else:
        frame = _scan(layout, None, source=source).select(_ROW, *identifiers).filter(
            ~pl.col(_ROW).is_in(pl.Series(excluded, dtype=pl.UInt32).implode())).collect()
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
    return _Rows(kept=kept, excluded_rows=sorted(excluded + bad.get_column(_ROW).to_list()),
                 plain=plain and not ragged and not any(skipped.values()), source=source)


def _as_utf8(layout: TableLayout, not_utf8: list[int], *, issues: IssueLog) -> IO[bytes]:
    """The file's text with each line in ``not_utf8`` read as Windows-1252 (:func:`lines_as_utf8`), staged in a
    temporary file for the scans (:func:`staged_as_utf8`: memory stays bounded by a chunk, where the text held in
    memory cost ~3x the file); only such a file pays for it. The warning names the first such line unless the
    sniffer already warned about the file's start.
    """
    if layout.encoding != "latin-1":
        more = f" ({len(not_utf8) - 1} more after it)" if len(not_utf8) > 1 else ""
        issues.warning("bad_encoding", f"line is not valid UTF-8{more}; read as Windows-1252",
                       file=layout.display_name, line=not_utf8[0])
    try:
        return staged_as_utf8(layout.path)
    except READ_ERRORS as exc:
        raise unreadable(layout.display_name, exc) from exc


def _count_fields(layout: TableLayout, skipped: dict[str, list[int]], not_utf8: list[int], *,
                  plain_from: int | None = None) -> tuple[list[tuple[int, int]], bool, list[str] | None]:
    """``(line, n_fields)`` of every data line whose field count is not the header's; whether every data line's
    fields from ``plain_from`` on are plain whole numbers (:func:`_plain_values`; False without ``plain_from``);
    and, when ``plain_from`` is 1 and every line is plain, unquoted and has an ASCII first field, the first fields
    (the identifiers, exactly as the polars scan reads them), else None. Fills ``skipped`` and ``not_utf8`` (the
    lines that are not valid UTF-8; an ASCII line, the common case, is not decoded).
    """
    sep = layout.separator.encode()
    width = len(layout.header)
    ragged: list[tuple[int, int]] = []
    table = _plain_table(sep)
    plain = plain_from is not None
    first: list[str] | None = [] if plain_from == 1 else None
    with open_text(layout.path) as fh:
        for number, line in enumerate(fh, start=1):
            if number <= layout.header_line:
                continue
            if not line.isascii() and not is_utf8(line):
                not_utf8.append(number)
            if line.startswith(b"#"):
                skipped["comment"].append(number)
            elif line.isspace():  # as `not line.strip()` on a non-empty line, without copying it
                skipped["blank"].append(number)
            else:
                quoted = b'"' in line
                mapped = line.translate(table) if plain else None
                if quoted:
                    n = field_count(line.decode("utf-8", errors="replace").rstrip("\r\n"), layout.separator)
                else:  # numpy counts the separators of a long line ~5x faster than bytes.count
                    n = 1 + (_occurrences(mapped, _SEP) if mapped is not None else _occurrences(line, sep[0]))
                if n != width:
                    ragged.append((number, n))
                elif mapped is not None and plain_from is not None:
                    start = _field_start(line, sep, plain_from)
                    plain = _plain_values(line, mapped, start)
                    if first is not None:
                        ident = line[:start - 1]
                        if quoted or not ident.isascii():
                            first = None
                        else:
                            first.append(ident.decode("ascii"))
    return ragged, plain, first if plain else None


def _occurrences(data: bytes, byte: int) -> int:
    return int(np.count_nonzero(np.frombuffer(data, np.uint8) == byte))


def _field_start(line: bytes, sep: bytes, field: int) -> int:
    """Byte offset where field ``field`` (0-based) of an unquoted ``line`` begins."""
    start = 0
    for _ in range(field):
        start = line.index(sep, start) + 1
    return start


_DIGIT, _SEP, _OTHER = ord("0"), ord("\t"), ord("x")


def _plain_table(sep: bytes) -> bytes:
    """Byte map for :func:`_plain_values`: digits -> ``0``, the separator -> tab, anything else -> ``x``."""
    table = bytearray([_OTHER]) * 256
    for digit in b"0123456789":
        table[digit] = _DIGIT
    table[sep[0]] = _SEP
    return bytes(table)


def _plain_values(line: bytes, mapped: bytes, start: int) -> bool:
    r"""Whether the fields of ``line`` from byte ``start`` on (up to the line end) are all non-empty runs of at most
    15 digits; ``mapped`` is ``line`` through :func:`_plain_table`.

    Such a cell is a whole number in [0, 1e15): Float64 reads it exactly, and no value check can fail on it, so
    the file is read typed. A search for any other byte, then numpy over the digit mask (an empty cell is two
    separators in a row; a run of 16 digits is found by doubling the run length four times): no per-cell Python,
    and on the 80 kB lines of a 20,000-sample file ~4x less CPU than byte-string searches for ``\t\t`` and
    ``0`` x 16.
    """
    end = len(line) - (2 if line.endswith(b"\r\n") else 1 if line.endswith(b"\n") else 0)
    if end <= start or mapped.find(b"x", start, end) >= 0:
        return False
    digits = np.frombuffer(mapped, np.uint8, end - start, start) == _DIGIT
    if not (digits[0] and digits[-1] and (digits[1:] | digits[:-1]).all()):
        return False
    runs = digits
    for shift in (1, 2, 4, 8):  # runs[i]: digits i .. i + 2 x shift - 1 are all digits
        runs = runs[shift:] & runs[:-shift]
    return not runs.any()


def _report_bad_rows(layout: TableLayout, bad: pl.DataFrame, frame: pl.DataFrame, *, issues: IssueLog,
                     column: str, kind: str) -> None:
    """One warning per duplicate or empty identifier, with the raw row (truncated) as ``record``."""
    first_line = dict(frame.filter(~pl.col("empty") & ~pl.col("duplicate")).select(_ID, "line").iter_rows())
    wanted = set(bad.get_column("line"))
    records: dict[int, str] = {}
    with open_text(layout.path) as fh:
        for number, line in enumerate(fh, start=1):
            if number in wanted:
                text = lines_as_utf8(line).decode("utf-8").rstrip("\r\n")
                records[number] = clip(text[:MAX_RECORD_CHARS + 1]) or ""
    for ident, line, empty in bad.select(_ID, "line", "empty").iter_rows():
        if empty:
            issues.warning(f"empty_{kind}_id", f"empty {kind} identifier; row left out", file=layout.display_name,
                           line=line, column=column, record=records.get(line))
        else:
            issues.warning(f"duplicate_{kind}", f"{kind} {ident!r} already on line {first_line[ident]}; this "
                           "row is left out", file=layout.display_name, line=line, column=column,
                           record=records.get(line))
