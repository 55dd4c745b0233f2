"""GISTIC 2.0 peak files: ``all_lesions.conf_XX.txt`` (peaks x samples) and ``amp_genes`` / ``del_genes`` (genes per
peak), as written by the Broad's GISTIC 2.0 (GenePattern module, Firehose, TCGA pipelines).

``all_lesions`` holds each significant peak twice: a row named ``Amplification Peak 3`` (or ``Deletion Peak  3``,
the number padded to two places) whose sample cells are GISTIC's thresholded calls, 0 (below the low-level
threshold, ``t<0.1``), 1 (above it) or 2 (above the sample's high-level threshold), and a row named
``Amplification Peak 3 - CN values`` (``Amplitude Threshold``: ``Actual Copy Change Given``) whose cells are the
copy change itself (log2 ratio, negative for deletions). Both rows repeat the peak's annotation: cytoband, three
nested intervals (``chr1:47516423-47533836(probes 23153:23159)``: the wide peak, the peak and the region) and the
q-values. One per-sample record per peak joins the two rows' cells; the peak name drops the file's padding
(``Deletion Peak 1``), so it is the same whichever row or file names it.

``amp_genes`` / ``del_genes`` are transposed: one column per peak (ordered by q-value, not by peak number), rows
``cytoband``, ``q value``, ``residual q value``, ``wide peak boundaries`` and then ``genes in wide peak`` continued
on rows with an empty label. A peak is matched to ``all_lesions`` by direction and wide peak boundaries; a gene in
brackets (``[CDKN2A]``) is GISTIC's nearest gene to a peak that holds none, kept with ``in_wide_peak`` false.

GISTIC ends every line with a tab: one empty field past the header is its layout, not a column. Both files are small
(peaks x samples), so they are read line by line here and every problem is located at its line and column.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from transforms.ingest.parse import ParsedAssay
from transforms.ingest.parse.text import MAX_RAGGED_REPORTED, read_lines
from transforms.issues import InputError, Issue, IssueLog

NAME = "Unique Name"
THRESHOLD = "Amplitude Threshold"
RESIDUAL = "Residual q values after removing segments shared with higher peaks"
BROAD = "Broad or Focal"
LESION_COLUMNS = (NAME, "Descriptor", "Wide Peak Limits", "Peak Limits", "Region Limits", "q values", THRESHOLD)
"""Columns an ``all_lesions`` file must hold; the sample columns follow ``Amplitude Threshold``."""

LESIONS_FILE = re.compile(r"(^|\.)all_lesions(\.conf_\d+)?(\.[^/]*)?\.txt(\.gz)?$")
GENES_FILE = re.compile(r"(^|\.)(amp|del)_genes(\.conf_\d+)?(\.[^/]*)?\.txt(\.gz)?$")
GENE_LEVEL_FILE = re.compile(r"(^|\.)(all_thresholded\.by_genes|all_data_by_genes|broad_data_by_genes|"
                             r"focal_data_by_genes)(\.[^/]*)?\.txt(\.gz)?$")
"""File names GISTIC 2.0 gives its outputs (``[base.]name[.conf_XX][.ext].txt``)."""

_PEAK = re.compile(r"^(Amplification|Deletion) Peak\s+(\d+)(\s*-\s*CN values)?$")
_LIMITS = re.compile(r"^chr([0-9A-Za-z_]+):(\d+)-(\d+)(\(probes \d+:\d+\))?$")
_CALLS = {"0": 0, "1": 1, "2": 2}
"""The thresholded calls as written (GISTIC writes integers; anything else is a problem record)."""

PEAK_SCHEMA = {"peak_name": pl.String, "direction": pl.String, "peak_number": pl.Int64, "cytoband": pl.String,
               "chromosome": pl.String, "wide_peak_start": pl.Int64, "wide_peak_end": pl.Int64,
               "peak_start": pl.Int64, "peak_end": pl.Int64, "region_start": pl.Int64, "region_end": pl.Int64,
               "q_value": pl.Float64, "residual_q_value": pl.Float64, "broad_or_focal": pl.String, "line": pl.Int64}
"""One row per peak of an ``all_lesions`` file (``line``: its thresholded row)."""

CALL_SCHEMA = {"column": pl.String, "peak_name": pl.String, "line": pl.Int64, "call": pl.Int8,
               "copy_change": pl.Float64, "problem": pl.String, "problem_code": pl.String, "raw": pl.String}
"""One record per peak and sample column; a record with a ``problem`` is quarantined."""

GENE_SCHEMA = {"direction": pl.String, "chromosome": pl.String, "wide_peak_start": pl.Int64,
               "wide_peak_end": pl.Int64, "cytoband": pl.String, "feature_id": pl.String, "in_wide_peak": pl.Boolean,
               "line": pl.Int64, "peak_column": pl.Int64}
"""One row per gene cell of an ``amp_genes`` / ``del_genes`` file (``peak_column``: 1-based column of its peak)."""


@dataclass
class GisticLesions:
    """An ``all_lesions`` file: its peaks (:data:`PEAK_SCHEMA`) and per-sample calls (``calls.records``)."""

    peaks: pl.DataFrame
    calls: ParsedAssay


def _fields(text: str, width: int) -> list[str]:
    """A line's tab-separated fields without GISTIC's trailing empty ones beyond ``width``."""
    fields = text.split("\t")
    while len(fields) > width and fields[-1].strip() == "":
        fields.pop()
    return fields


def _header(path: Path, name: str) -> tuple[int, list[str], list[tuple[int, str]]]:
    """The first non-blank line (split, GISTIC's trailing tab dropped) and the lines after it."""
    lines = [(n, t) for n, t in read_lines(path, file=name) if t.strip()]
    if not lines:
        raise InputError(Issue(name, "empty_file", "error", "file is empty"))
    number, text = lines[0]
    header = [h.strip() for h in _fields(text.removeprefix("\ufeff"), 1)]  # a byte-order mark is no name
    return number, header, lines[1:]


def _ragged(issues: IssueLog, name: str, bad: list[tuple[int, int]], width: int) -> None:
    for number, n in bad[:MAX_RAGGED_REPORTED]:
        issues.error("ragged_row", f"row has {n} fields, the header has {width}; row left out", file=name,
                     line=number)
    if len(bad) > MAX_RAGGED_REPORTED:
        issues.error("ragged_row", f"{len(bad) - MAX_RAGGED_REPORTED} more rows do not have {width} fields; left out",
                     file=name, line=bad[MAX_RAGGED_REPORTED][0])


def _limits(text: str) -> tuple[str, int, int] | None:
    match = _LIMITS.match(text.strip())
    if match is None:
        return None
    return match.group(1), int(match.group(2)), int(match.group(3))


def _number(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def peak_name(direction: str, number: int) -> str:
    """``Amplification Peak 3`` / ``Deletion Peak 12``: GISTIC's name without its padding."""
    return f"{'Amplification' if direction == 'amplification' else 'Deletion'} Peak {number}"


def parse_gistic_lesions(path: Path, *, issues: IssueLog, display_name: str | None = None) -> GisticLesions:
    """Read ``all_lesions.conf_XX.txt``: one peak row per thresholded row, one record per peak and sample column.

    Records (:data:`CALL_SCHEMA`): ``call`` (0/1/2 from the thresholded row) and ``copy_change`` (the ``- CN values``
    row's cell; null when the file has no such row for the peak). A cell that is not a number, a call other than
    0, 1 or 2, or an empty cell is a problem record (quarantined, failing the study) with the cell's line, sample
    column and text. A peak row whose name, intervals or q-value cannot be read, a repeated peak, and a CN row
    without its thresholded row are located errors and the row is left out; a row with a missing or extra field
    (a cut file) is a ``ragged_row`` error. A missing column or a sample column named twice stops the file.
    """
    name = display_name or path.name
    header_line, header, rows = _header(path, name)
    absent = [c for c in LESION_COLUMNS if c not in header]
    if absent:
        raise InputError(Issue(name, "missing_column", "error", f"header lacks column(s) {absent} of a GISTIC 2.0 "
                               f"all_lesions file; found {header[:10]}", header_line))
    samples = header[header.index(THRESHOLD) + 1:]
    if not samples:
        raise InputError(Issue(name, "no_value_columns", "error", "no sample columns after 'Amplitude Threshold'",
                               header_line))
    seen: set[str] = set()
    for position, label in enumerate(header, start=1):
        if label == "":
            raise InputError(Issue(name, "empty_column_name", "error", f"header field {position} has no name",
                                   header_line))
        if label in seen:
            raise InputError(Issue(name, "duplicate_column", "error",
                                   f"column {label!r} appears more than once in the header", header_line, label))
        seen.add(label)
    if not rows:
        raise InputError(Issue(name, "no_rows", "error", "the table has a header but no data rows", header_line))
    col = {c: header.index(c) for c in header}
    first = len(header) - len(samples)
    width = len(header)
    peaks: dict[str, dict[str, object]] = {}
    calls: dict[str, tuple[int, list[str]]] = {}
    values: dict[str, tuple[int, list[str]]] = {}
    ragged: list[tuple[int, int]] = []
    rejected: set[str] = set()
    for number, text in rows:
        fields = _fields(text, width)
        if len(fields) != width:
            ragged.append((number, len(fields)))
            if (cut := _PEAK.match(fields[0].strip())) and not cut.group(3):  # its CN row is no orphan on top
                rejected.add(peak_name("amplification" if cut.group(1) == "Amplification" else "deletion",
                                       int(cut.group(2))))
            continue
        label = fields[col[NAME]].strip()
        match = _PEAK.match(label)
        if match is None:
            issues.error("invalid_peak", f"{NAME} {label!r} is not 'Amplification Peak N' or 'Deletion Peak N' "
                         "(with ' - CN values' for copy changes); row left out", file=name, line=number,
                         column=NAME, record=label)
            continue
        direction = "amplification" if match.group(1) == "Amplification" else "deletion"
        key = peak_name(direction, int(match.group(2)))
        target = values if match.group(3) else calls
        if key in target:
            issues.error("duplicate_record", f"{label!r} repeats line {target[key][0]}; row left out", file=name,
                         line=number, column=NAME, record=label)
            continue
        if match.group(3):
            values[key] = (number, fields[first:])
            continue
        peak = _peak_row(fields, col, key=key, direction=direction, peak_number=int(match.group(2)),
                         line=number, issues=issues, file=name)
        if peak is None:
            rejected.add(key)
        else:
            peaks[key] = peak
            calls[key] = (number, fields[first:])
    _ragged(issues, name, ragged, width)
    for key, (number, _) in values.items():
        if key not in calls and key not in rejected:
            issues.error("orphan_peak_values", f"'{key} - CN values' has no '{key}' row of calls; row left out",
                         file=name, line=number, column=NAME)
    records = _call_records(calls, values, samples)
    frame = pl.DataFrame(list(peaks.values()), schema=PEAK_SCHEMA, orient="row") if peaks else \
        pl.DataFrame(schema=PEAK_SCHEMA)
    metadata: dict[str, object] = {"peaks": frame.height, "samples": len(samples), "header_line": header_line,
                                   "amplifications": int((frame["direction"] == "amplification").sum()),
                                   "deletions": int((frame["direction"] == "deletion").sum())}
    return GisticLesions(frame, ParsedAssay(records=records.lazy(), columns=samples, metadata=metadata))


def _peak_row(fields: list[str], col: dict[str, int], *, key: str, direction: str, peak_number: int, line: int,
              issues: IssueLog, file: str) -> dict[str, object] | None:
    """One :data:`PEAK_SCHEMA` row, or None after a located error when an interval or q-value cannot be read."""
    intervals = {}
    for column, prefix in (("Wide Peak Limits", "wide_peak"), ("Peak Limits", "peak"), ("Region Limits", "region")):
        parsed = _limits(fields[col[column]])
        if parsed is None:
            issues.error("invalid_peak_limits", f"{column} {fields[col[column]].strip()!r} is not "
                         "'chrN:start-end(probes a:b)'; peak left out", file=file, line=line, column=column)
            return None
        intervals[prefix] = parsed
    chromosomes = {c for c, _, _ in intervals.values()}
    if len(chromosomes) > 1:
        issues.error("invalid_peak_limits", f"the peak's intervals lie on chromosomes {sorted(chromosomes)}; peak "
                     "left out", file=file, line=line, column="Wide Peak Limits")
        return None
    q_value = _number(fields[col["q values"]])
    if q_value is None or not 0 <= q_value <= 1:
        issues.error("invalid_q_value", f"q value {fields[col['q values']].strip()!r} is not a number in 0..1; peak "
                     "left out", file=file, line=line, column="q values")
        return None
    residual = _number(fields[col[RESIDUAL]]) if RESIDUAL in col else None
    broad = fields[col[BROAD]].strip() if BROAD in col else ""
    return {"peak_name": key, "direction": direction, "peak_number": peak_number,
            "cytoband": fields[col["Descriptor"]].strip() or None, "chromosome": intervals["wide_peak"][0],
            "wide_peak_start": intervals["wide_peak"][1], "wide_peak_end": intervals["wide_peak"][2],
            "peak_start": intervals["peak"][1], "peak_end": intervals["peak"][2],
            "region_start": intervals["region"][1], "region_end": intervals["region"][2],
            "q_value": q_value, "residual_q_value": residual, "broad_or_focal": broad or None, "line": line}


def _call_records(calls: dict[str, tuple[int, list[str]]], values: dict[str, tuple[int, list[str]]],
                  samples: list[str]) -> pl.DataFrame:
    """:data:`CALL_SCHEMA` records: each peak's thresholded cell beside its CN-values cell, per sample (polars
    expressions over the cells' text: 100 peaks x 10,000 samples is a million cells, bench/README.md).
    """
    if not calls:
        return pl.DataFrame(schema=CALL_SCHEMA)
    frames = []
    for key, (line, cells) in calls.items():
        cn_line, cn_cells = values.get(key, (None, None))
        frames.append(pl.DataFrame({"column": samples, "text": cells, "cn_text": cn_cells},
                                   schema={"column": pl.String, "text": pl.String, "cn_text": pl.String})
                      .with_columns(peak_name=pl.lit(key), line=pl.lit(line, pl.Int64),
                                    cn_line=pl.lit(cn_line, pl.Int64)))
    text, cn_text = pl.col("text").str.strip_chars(), pl.col("cn_text").str.strip_chars()
    call = text.replace_strict(_CALLS, default=None, return_dtype=pl.Int8)
    number, change = (t.cast(pl.Float64, strict=False) for t in (text, cn_text))
    bad_call = (pl.when(text == "").then(pl.lit("missing call"))
                .when(number.is_null() | ~number.is_finite()).then(pl.format("non-numeric call '{}'", text))
                .otherwise(pl.format("call {} is not 0, 1 or 2", text)))
    bad_change = (pl.when(cn_text == "").then(pl.lit("missing copy change"))
                  .otherwise(pl.format("non-numeric copy change '{}'", cn_text)))
    change_broken = pl.col("cn_text").is_not_null() & (change.is_null() | ~change.is_finite().fill_null(False))
    return pl.concat(frames).select(
        "column", "peak_name",
        pl.when(call.is_null() | ~change_broken).then("line").otherwise("cn_line").alias("line"),
        call.alias("call"),
        pl.when(change.is_finite()).then(change).alias("copy_change"),
        pl.when(call.is_null()).then(bad_call).when(change_broken).then(bad_change).alias("problem"),
        pl.when(call.is_null()).then(pl.lit("invalid_call"))
        .when(change_broken).then(pl.lit("invalid_copy_change")).alias("problem_code"),
        pl.when(call.is_null()).then(text).when(change_broken).then(cn_text).alias("raw"),
    ).cast(pl.Schema(CALL_SCHEMA))


def parse_gistic_peak_genes(path: Path, *, issues: IssueLog, display_name: str | None = None) -> pl.DataFrame:
    """Read ``amp_genes.conf_XX.txt`` / ``del_genes.conf_XX.txt``: one :data:`GENE_SCHEMA` row per gene cell.

    The direction comes from the file name (``amp_`` / ``del_``). The label rows ``cytoband``, ``q value`` and
    ``wide peak boundaries`` and the first ``genes in wide peak`` row must be there; a peak column whose boundaries
    cannot be read is an error and its genes are left out; a row with more peak cells than the header
    (``cytoband`` row) has peaks is a ``ragged_row`` error.
    """
    name = display_name or path.name
    match = GENES_FILE.search(path.name)
    if match is None:
        raise InputError(Issue(name, "unknown_gistic_file", "error",
                               "not named amp_genes.* or del_genes.*: the direction of its peaks is unknown"))
    direction = "amplification" if match.group(2) == "amp" else "deletion"
    header_line, header, rows = _header(path, name)
    if header[:1] != ["cytoband"]:
        raise InputError(Issue(name, "missing_column", "error", f"first row is {header[:1]}, not 'cytoband': not "
                               "a GISTIC 2.0 amp_genes / del_genes file", header_line))
    width = len(header)
    labelled: dict[str, tuple[int, list[str]]] = {}
    genes: list[tuple[int, list[str]]] = []
    ragged: list[tuple[int, int]] = []
    for number, text in rows:
        fields = _fields(text, width)
        if len(fields) > width:
            ragged.append((number, len(fields)))
            continue
        fields += [""] * (width - len(fields))  # a gene row ends where its last listed gene is
        label = fields[0].strip()
        if label == "genes in wide peak" or (label == "" and "genes in wide peak" in labelled):
            genes.append((number, fields))
        if label:
            labelled.setdefault(label, (number, fields))
    _ragged(issues, name, ragged, width)
    absent = [label for label in ("q value", "wide peak boundaries", "genes in wide peak") if label not in labelled]
    if absent:
        raise InputError(Issue(name, "missing_row", "error", f"row(s) {absent} missing: file cut short or not a "
                               "GISTIC 2.0 genes file", rows[-1][0] if rows else header_line))
    boundary_line, boundaries = labelled["wide peak boundaries"]
    out = []
    for position in range(1, width):
        limits = _limits(boundaries[position])
        if limits is None:
            issues.error("invalid_peak_limits", f"wide peak boundaries {boundaries[position].strip()!r} are not "
                         "'chrN:start-end'; the peak's genes are left out", file=name, line=boundary_line,
                         column=header[position] or f"column {position + 1}")
            continue
        for number, fields in genes:
            cell = fields[position].strip()
            if not cell:
                continue
            nearest = cell.startswith("[") and cell.endswith("]")
            out.append((direction, *limits, header[position] or None, cell[1:-1].strip() if nearest else cell,
                        not nearest, number, position + 1))
    return pl.DataFrame(out, schema=GENE_SCHEMA, orient="row")
