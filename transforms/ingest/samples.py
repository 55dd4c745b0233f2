"""Sample identity: clinical tables, the sample map, TCGA barcodes, and file column labels -> ``sample_id``.

The one sample-identity resolver: every assay's labels (matrix header cells, MAF ``Tumor_Sample_Barcode``
values) become ``sample_id`` by the same rules, so the layers of a study join on ``sample_id``. Parsers keep
labels exactly as written; only this module decides which sample a label is.

Rules of :func:`map_sample_columns`, first match wins:

1. ``sample_map``: a row for (assay, label), else a row for label with an empty assay (all assays);
2. ``exact``: the label is a ``sample_id``;
3. ``tcga_sample``: a TCGA aliquot barcode whose sample barcode (``TCGA-OR-A5J1-01``) is a ``sample_id``;
4. ``tcga_patient``: a TCGA sample/aliquot barcode whose patient barcode (``TCGA-OR-A5J1``) is a ``sample_id``
   (studies keyed by 12-character patient barcodes, such as maftools' TCGA LAML);
5. ``case_insensitive``: the label equals exactly one ``sample_id`` ignoring case and surrounding blanks
   (spreadsheets and R upper/lower-case labels); never used when two samples differ only by case.

Tool QC tables keyed by sample name (MultiQC's ``multiqc_general_stats.txt``, :func:`read_tool_qc`) go through the
same rules, one row at a time, with the study's samples as the known ones (``sample_map`` rows for assay
``multiqc`` or for all assays turn run ids and file stems into samples).

Suffix heuristics (``_subset.bam``, ``fb``) are deliberately absent: a wrong guess silently joins the wrong
samples, so such labels are errors whose message suggests the sample and the ``sample_map`` fix.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import polars as pl

from transforms.ingest.parse.text import (
    MAX_IDENTIFIER_CHARS,
    TableLayout,
    checks_stream,
    iter_lines,
    read_table,
    sniff_table,
)
from transforms.issues import InputError, Issue, IssueLog

LINE_BREAKING = frozenset({"Cc", "Zl", "Zp"})
"""Unicode categories refused in a sample label: control characters (C0, DEL, C1 with NEL) and the line and
paragraph separators, each a line break to ``str.splitlines`` and to line-based exports."""

_SAMPLE_ALIASES = ("sample_id", "sample", "tumor_sample_barcode")
_SUBJECT_ALIASES = ("subject_id", "patient_id", "subject", "patient")
_MISSING = ["", "na", "[not applicable]", "[not available]", "[pending]", "[discrepancy]", "[completed]",
            "[null]"]
"""Values cBioPortal's validator treats as missing (compared lower-case); they get no attribute row."""
_CBIO_TYPES = {"STRING": "string", "NUMBER": "number", "BOOLEAN": "boolean"}
_TCGA = re.compile(r"^TCGA[-.]([A-Z0-9]{2})[-.]([A-Z0-9]{4})(?:[-.](\d{2})[A-Z]?(?:[-.][A-Z0-9.-]*)?)?$",
                   re.IGNORECASE)
_ATTRIBUTE_SCHEMA = {"attribute": pl.String, "value": pl.String, "value_type": pl.String, "line": pl.Int64}
_MAPPING_SCHEMA = {"column": pl.String, "sample_id": pl.String, "subject_id": pl.String, "rule": pl.String}


def looks_like_measurement(values: pl.Series) -> bool:
    """Whether a sample attribute's values (those of the samples a design uses) look like a measurement (RIN, age)
    that R's DESeq2 would fit as one slope, rather than labels coded as numbers (a batch, lane or plate 1, 2, 3).

    Every value must be a finite number, with more than two distinct values (two are one indicator either way),
    and either some value is not an integer (RIN 7.9), or more than half the samples hold a value no other sample
    holds (ages in years mostly differ; a batch 1, 1, 2, 3, 3, 4 groups samples, and its 4 distinct values over 6
    samples would pass a 'distinct values > half the samples' rule).
    """
    text = values.cast(pl.String).str.strip_chars()
    parsed = text.cast(pl.Float64, strict=False)
    if text.is_empty() or parsed.null_count() or not parsed.is_finite().all() or text.n_unique() <= 2:
        return False
    if bool((parsed != parsed.round(0)).any()):
        return True
    once = int((text.value_counts()["count"] == 1).sum())
    return 2 * once > text.len()


@dataclass(frozen=True)
class SampleSheet:
    """A sample table in two frames.

    ``samples``: one row per sample (``sample_id``, ``subject_id``, ``line``).
    ``attributes``: one row per sample and non-missing attribute (``sample_id``, ``attribute``, ``value``
    as written, ``value_type`` 'string' | 'number' | 'boolean', ``line``).
    """

    samples: pl.DataFrame
    attributes: pl.DataFrame


@dataclass(frozen=True)
class SubjectSheet:
    """A subject (patient) table: ``subjects`` (``subject_id``, ``line``) and ``attributes`` as in SampleSheet."""

    subjects: pl.DataFrame
    attributes: pl.DataFrame


def tcga_sample_barcode(label: str) -> str | None:
    """``TCGA-OR-A5J1-01A-11R-A29S-07`` -> ``TCGA-OR-A5J1-01``; None unless the label has a sample type.

    Dots (R-mangled names such as ``TCGA.OR.A5J1.01A``) are read as dashes; the result is upper-case.
    """
    match = _TCGA.match(label.strip())
    if match is None or match.group(3) is None:
        return None
    return f"TCGA-{match.group(1)}-{match.group(2)}-{match.group(3)}".upper()


def tcga_patient_barcode(label: str) -> str | None:
    """``TCGA-OR-A5J1-01A-11R-A29S-07`` (or ``TCGA-OR-A5J1``) -> ``TCGA-OR-A5J1``; None if not a TCGA barcode."""
    match = _TCGA.match(label.strip())
    if match is None:
        return None
    return f"TCGA-{match.group(1)}-{match.group(2)}".upper()


@checks_stream
def read_samples(path: Path, *, issues: IssueLog, display_name: str | None = None,
                 sample_column: str | None = None) -> SampleSheet:
    """Read a sample table (TSV/CSV, cBioPortal ``data_clinical_sample.txt`` included) into a SampleSheet.

    The sample column is ``sample_column`` or the first of sample_id / sample / Tumor_Sample_Barcode (any
    case); the subject column is subject_id / patient_id / subject / patient. Without a subject column each
    sample is its own subject. Rows with an empty or repeated sample_id are error issues and left out.
    """
    name = display_name or path.name
    layout = sniff_table(path, issues=issues, display_name=name)
    frame = _read_rows(layout, issues=issues)
    if frame.height == 0:  # a header alone: every data column would be reported as an unknown sample
        raise InputError(Issue(name, "no_rows", "error", "the sample table has a header but no samples",
                               layout.header_line))
    id_column = _id_column(layout, _SAMPLE_ALIASES, chosen=sample_column, what="sample")
    frame = _unique_ids(frame, id_column, file=name, issues=issues, what="sample")
    subject_column = _find_column(layout.header, _SUBJECT_ALIASES, exclude=id_column)
    if subject_column is None:
        issues.info("subject_from_sample", "no subject/patient column: each sample is its own subject",
                    file=name, line=layout.header_line)
        subjects = pl.col(id_column)
    else:
        stripped = pl.col(subject_column).str.strip_chars()
        empty = stripped.is_null() | (stripped == "")
        for sample_id, line in frame.filter(empty).select(id_column, "line").iter_rows():
            issues.warning("empty_subject_id", f"sample {sample_id!r} has no subject; it is its own subject",
                           file=name, line=line, column=subject_column)
        subjects = pl.when(empty).then(pl.col(id_column)).otherwise(stripped)
    samples = frame.select(pl.col(id_column).alias("sample_id"), subjects.alias("subject_id"), "line")
    id_columns = [id_column] + ([subject_column] if subject_column else [])
    attributes = _attributes(frame, layout, id_column=id_column, exclude=id_columns, issues=issues)
    return SampleSheet(samples, attributes.rename({id_column: "sample_id"}))


@checks_stream
def read_subjects(path: Path, *, issues: IssueLog, display_name: str | None = None,
                  subject_column: str | None = None) -> SubjectSheet:
    """Read a subject (patient) table, cBioPortal ``data_clinical_patient.txt`` included, into a SubjectSheet.

    The subject column is ``subject_column`` or the first of subject_id / patient_id / subject / patient (any
    case). Rows with an empty or repeated subject_id are error issues and left out.
    """
    name = display_name or path.name
    layout = sniff_table(path, issues=issues, display_name=name)
    frame = _read_rows(layout, issues=issues)
    if frame.height == 0:  # harmless (the samples name their subjects) but not what the file was meant to say
        issues.warning("no_rows", "the subject table has a header but no subjects", file=name,
                       line=layout.header_line)
    id_column = _id_column(layout, _SUBJECT_ALIASES, chosen=subject_column, what="subject")
    frame = _unique_ids(frame, id_column, file=name, issues=issues, what="subject")
    attributes = _attributes(frame, layout, id_column=id_column, exclude=[id_column], issues=issues)
    return SubjectSheet(frame.select(pl.col(id_column).alias("subject_id"), "line"),
                        attributes.rename({id_column: "subject_id"}))


@checks_stream
def read_sample_map(path: Path, *, issues: IssueLog, display_name: str | None = None) -> pl.DataFrame:
    """Read the ``sample_map`` table: one row per (assay, column label) and the sample_id it is.

    Columns ``column`` and ``sample_id`` are required; ``assay`` is optional and an empty assay means the row
    applies to every assay. Returns ``assay`` (null = all), ``column``, ``sample_id``, ``line``. Rows with an
    empty column/sample_id, and repeats of an (assay, column) pair, are error issues and left out.
    """
    name = display_name or path.name
    layout = sniff_table(path, issues=issues, display_name=name)
    lower = {h.lower(): h for h in reversed(layout.header)}
    missing = [c for c in ("column", "sample_id") if c not in lower]
    if missing:
        raise InputError(Issue(name, "missing_column", "error", f"sample_map needs columns assay (optional), "
                               f"column, sample_id; missing {missing}", layout.header_line))
    frame = _read_rows(layout, issues=issues).select(
        (pl.col(lower["assay"]) if "assay" in lower else pl.lit(None, pl.String)).alias("assay"),
        pl.col(lower["column"]).alias("column"), pl.col(lower["sample_id"]).alias("sample_id"), "line",
    ).with_columns(pl.col("assay", "column", "sample_id").str.strip_chars().replace("", None))
    if frame.height == 0:  # the assays' labels are then read as sample ids (errors there name the labels)
        issues.warning("no_rows", "sample_map has a header but no rows", file=name, line=layout.header_line)
    empty = frame.filter(pl.col("column").is_null() | pl.col("sample_id").is_null())
    issues.extend_from_frame(empty, file=name, code="empty_id", severity="error",
                             message="sample_map row without a column label or sample_id")
    frame = frame.filter(pl.col("column").is_not_null() & pl.col("sample_id").is_not_null())
    repeated = frame.filter(pl.struct("assay", "column").is_first_distinct().not_())
    for row in repeated.iter_rows(named=True):
        issues.error("duplicate_mapping", f"(assay {row['assay'] or '(all)'}, column {row['column']!r}) is "
                     "mapped more than once; the first row is used", file=name, line=row["line"],
                     column=row["column"])
    return frame.filter(pl.struct("assay", "column").is_first_distinct())


def map_sample_columns(columns: Sequence[str], *, assay: str, samples: pl.DataFrame | None,
                       sample_map: pl.DataFrame | None, issues: IssueLog, file: str,
                       header_line: int = 1, attributes: pl.DataFrame | None = None) -> pl.DataFrame:
    """Decide which sample each column label of one assay's file is (rules in the module docstring).

    ``samples`` has ``sample_id`` and ``subject_id`` (SampleSheet.samples); when it is None there is no sample
    table and every label is a new sample (TCGA aliquots collapse to their sample barcode, the subject is the
    patient barcode, otherwise the sample itself). Returns one row per distinct label: ``column``,
    ``sample_id``, ``subject_id``, ``rule``. A label matching no sample (``unknown_sample``) or a second label
    for a sample already taken (``duplicate_sample``) is an error issue and gets a null sample_id.
    ``attributes`` (the sample table's long attributes) only improve that error's hint: a label that is another
    column's value of one sample (a sheet keyed by BioSample whose files are named by Run) names both.
    """
    explicit = _explicit_map(sample_map, assay=assay)
    known = dict(samples.select("sample_id", "subject_id").iter_rows()) if samples is not None else None
    folded: dict[str, list[str]] = {}
    for known_id in known or ():
        folded.setdefault(known_id.strip().casefold(), []).append(known_id)
    rows: list[tuple[str, str | None, str | None, str]] = []
    taken: dict[str, str] = {}
    sample_id: str | None
    subject_id: str | None
    r_names: dict[str, list[str]] | None = None  # known sample ids by their make.names form, for the hint
    for label in dict.fromkeys(columns):
        if len(label) > MAX_IDENTIFIER_CHARS:
            issues.error("identifier_too_long", f"sample label has {len(label)} characters (at most "
                         f"{MAX_IDENTIFIER_CHARS}); its records are left out", file=file, line=header_line,
                         column=label[:80] + " ...")
            rows.append((label, None, None, "too_long"))
            continue
        if any(unicodedata.category(c) in LINE_BREAKING for c in label):  # from a file name: a newline, a tab
            issues.error("invalid_sample_label", f"sample label {label!r} holds a control character (a newline or "
                         "tab in a file or folder name?); its records are left out: rename it", file=file,
                         line=header_line, column=repr(label)[1:-1])
            rows.append((label, None, None, "invalid"))
            continue
        if known is None:
            rule = "sample_map" if label in explicit else "new_sample"
            sample_id = explicit.get(label) or tcga_sample_barcode(label) or label
            subject_id = tcga_patient_barcode(sample_id) or sample_id
        else:
            sample_id, rule = _match(label, explicit, known, folded)
            if sample_id is None:
                if r_names is None:  # built once, at the first unknown label: one look-up per label after it
                    r_names = {}
                    for known_id in known:
                        r_names.setdefault(_as_r_name(known_id), []).append(known_id)
                _report_unknown(label, explicit, known, issues=issues, file=file, line=header_line,
                                attributes=attributes, r_names=r_names)
            subject_id = known.get(sample_id) if sample_id is not None else None
        if sample_id is not None and sample_id in taken:
            issues.error("duplicate_sample", f"column {label!r} and column {taken[sample_id]!r} are both sample "
                         f"{sample_id!r}; only the first is kept (fix it in sample_map)", file=file,
                         line=header_line, column=label)
            sample_id, subject_id, rule = None, None, "duplicate"
        if sample_id is not None:
            taken[sample_id] = label
        rows.append((label, sample_id, subject_id, rule))
    return pl.DataFrame(rows, schema=_MAPPING_SCHEMA, orient="row")


TOOL_QC_ASSAY = "multiqc"
"""The ``sample_map`` assay name of MultiQC's sample names (rows with an empty assay apply too)."""


@checks_stream
def read_tool_qc(path: Path, *, samples: pl.DataFrame, sample_map: pl.DataFrame | None, issues: IssueLog,
                 display_name: str | None = None) -> pl.DataFrame:
    """Sample attributes from a MultiQC ``multiqc_general_stats.txt`` (any columns, first column ``Sample``).

    Each row's sample name is resolved by :func:`map_sample_columns` against ``samples`` (``sample_id``,
    ``subject_id``: the study's samples; a tool's name never creates a sample). A row that resolves to no sample is
    an ``unresolved_tool_qc_sample`` warning at its line, and its values are left out. Several rows may resolve to
    one sample (a tool per row: trimmed, deduplicated, R1 files); a value given twice for the same sample and
    column keeps the first, with a ``duplicate_attribute`` warning. Empty cells give no row. Returns
    ``sample_id``, ``attribute`` (the column name as MultiQC wrote it), ``value``, ``value_type``, ``line``.
    """
    name = display_name or path.name
    layout = sniff_table(path, issues=issues, display_name=name)
    id_column = _id_column(layout, ("sample",), chosen=None, what="sample")
    frame = _unique_ids(_read_rows(layout, issues=issues), id_column, file=name, issues=issues, what="sample")
    attributes = _attributes(frame, layout, id_column=id_column, exclude=[id_column], issues=issues)
    resolved: dict[str, str] = {}
    for label, line in frame.select(id_column, "line").iter_rows():
        found = IssueLog(issues.study_id)
        mapping = map_sample_columns([label], assay=TOOL_QC_ASSAY, samples=samples, sample_map=sample_map,
                                     issues=found, file=name, header_line=line)
        sample_id = mapping["sample_id"].item()
        if sample_id is None:
            why = "; ".join(i.message for i in found.issues) or f"{label!r} is not a sample"
            issues.warning("unresolved_tool_qc_sample", f"{why}; the row's QC values are not stored", file=name,
                           line=line, column=id_column)
        else:
            resolved[label] = sample_id
    rows = (attributes.join(pl.DataFrame({id_column: list(resolved), "sample_id": list(resolved.values())},
                                         schema={id_column: pl.String, "sample_id": pl.String}),
                            on=id_column)
            .sort("line", maintain_order=True))
    repeated = rows.filter(pl.struct("sample_id", "attribute").is_first_distinct().not_())
    for row in repeated.iter_rows(named=True):
        issues.warning("duplicate_attribute", f"sample {row['sample_id']!r} already has {row['attribute']!r} from "
                       "an earlier row; this value is not stored", file=name, line=row["line"],
                       column=row["attribute"])
    return (rows.filter(pl.struct("sample_id", "attribute").is_first_distinct())
            .select("sample_id", "attribute", "value", "value_type", "line"))


def _match(label: str, explicit: dict[str, str], known: dict[str, str], folded: dict[str, list[str]]
           ) -> tuple[str | None, str]:
    if label in explicit:
        return (explicit[label], "sample_map") if explicit[label] in known else (None, "unknown")
    if label in known:
        return label, "exact"
    sample = tcga_sample_barcode(label)
    if sample is not None and sample in known:
        return sample, "tcga_sample"
    patient = tcga_patient_barcode(label)
    if patient is not None and patient != label and patient in known:
        return patient, "tcga_patient"
    candidates = folded.get(label.strip().casefold(), [])
    if len(candidates) == 1:
        return candidates[0], "case_insensitive"
    return None, "unknown"


def _report_unknown(label: str, explicit: dict[str, str], known: dict[str, str], *, issues: IssueLog,
                    file: str, line: int, r_names: dict[str, list[str]], attributes: pl.DataFrame | None = None
                    ) -> None:
    if label in explicit:
        message = (f"sample_map maps {label!r} to {explicit[label]!r}, which is not in the samples table; "
                   "add it to samples or correct sample_map")
    else:
        near = [s for s in known if s.startswith(label) or label.startswith(s)]
        hint = f" (it looks like sample {near[0]!r})" if len(near) == 1 else ""
        renamed = r_names.get(label, [])
        if not hint and len(renamed) == 1:
            hint = (f" (it looks like sample {renamed[0]!r} renamed by R's make.names, which writes '.' for '-', "
                    "spaces and other signs and puts 'X' before a leading digit: write.table(..., "
                    "check.names = FALSE) keeps the names)")
        holders = (attributes.filter(pl.col("value") == label).select("sample_id", "attribute").unique()
                   if attributes is not None else None)
        if holders is not None and holders["sample_id"].n_unique() == 1:
            sample_id, attribute = holders.sort("attribute").row(0)
            hint = (f" (it is the {attribute!r} of sample {sample_id!r} in the samples table); make that column "
                    "sample_id, or map the label in sample_map")
        message = f"column {label!r} is not a known sample{hint}"
        if not hint.endswith("sample_map"):
            message += "; add it to samples or sample_map"
    issues.error("unknown_sample", message, file=file, line=line, column=label)


def _as_r_name(name: str) -> str:
    """``name`` as R's ``make.names`` writes it (``read.table`` / ``data.frame`` headers with ``check.names``):
    every character that is not a letter, digit, ``.`` or ``_`` becomes ``.``; a name not starting with a letter or
    a ``.`` not followed by a digit gets an ``X`` in front.
    """
    valid = re.sub(r"[^A-Za-z0-9._]", ".", name)
    if not re.match(r"[A-Za-z]|\.(?![0-9])", valid):
        valid = "X" + valid
    return valid


def _explicit_map(sample_map: pl.DataFrame | None, *, assay: str) -> dict[str, str]:
    """Label -> sample_id from sample_map rows for this assay, over rows for all assays (empty assay)."""
    if sample_map is None:
        return {}
    general = sample_map.filter(pl.col("assay").is_null() | (pl.col("assay") == ""))
    specific = sample_map.filter(pl.col("assay") == assay)
    return {**dict(general.select("column", "sample_id").iter_rows()),
            **dict(specific.select("column", "sample_id").iter_rows())}


def _find_column(header: list[str], aliases: Sequence[str], *, exclude: str | None = None) -> str | None:
    lower = [h.strip().lower() for h in header]
    for alias in aliases:
        for original, name in zip(header, lower, strict=True):
            if name == alias and original != exclude:
                return original
    return None


def _read_rows(layout: TableLayout, *, issues: IssueLog) -> pl.DataFrame:
    """All rows after the header, with their file line numbers."""
    return read_table(layout, issues=issues)


def _id_column(layout: TableLayout, aliases: Sequence[str], *, chosen: str | None, what: str) -> str:
    column = chosen if chosen in layout.header else _find_column(layout.header, aliases)
    if column is None:
        wanted = repr(chosen) if chosen else " / ".join(aliases)
        raise InputError(Issue(layout.display_name, "missing_column", "error",
                               f"no {what} identifier column ({wanted}) in the header", layout.header_line))
    return column


def _unique_ids(frame: pl.DataFrame, id_column: str, *, file: str, issues: IssueLog, what: str
                ) -> pl.DataFrame:
    """Strip identifiers; report and drop rows whose identifier is empty or repeats an earlier row's."""
    frame = frame.with_columns(pl.col(id_column).str.strip_chars())
    empty = frame.filter(pl.col(id_column).is_null() | (pl.col(id_column) == ""))
    issues.extend_from_frame(empty.select("line", pl.lit(id_column).alias("column")), file=file,
                             code="empty_id", severity="error", message=f"row has no {what} identifier")
    frame = frame.filter(pl.col(id_column).is_not_null() & (pl.col(id_column) != ""))
    first_line = dict(frame.group_by(id_column).agg(pl.col("line").min()).iter_rows())
    repeated = frame.filter(pl.col(id_column).is_first_distinct().not_())
    for value, line in repeated.select(id_column, "line").iter_rows():
        issues.error(f"duplicate_{what}", f"{what} {value!r} already on line {first_line[value]}: one row per "
                     f"{what} (an error: the study is not loaded until the file is fixed)", file=file, line=line,
                     column=id_column)
    frame = frame.filter(pl.col(id_column).is_first_distinct())
    folded = frame.with_columns(pl.col(id_column).str.to_lowercase().alias("_folded"))
    clashes = folded.filter(pl.col("_folded").is_first_distinct().not_())
    for value, line, key in clashes.select(id_column, "line", "_folded").iter_rows():  # A54N / a54n: a typo?
        other, other_line = folded.filter(pl.col("_folded") == key).select(id_column, "line").row(0)
        issues.warning(f"{what}_case", f"{what} {value!r} and {other!r} (line {other_line}) differ only by case; "
                       "kept as two, as identifiers are case-sensitive", file=file, line=line, column=id_column)
    return frame


def _declared_types(layout: TableLayout) -> dict[str, str]:
    """Attribute datatypes from line 3 of a cBioPortal 4-line ``#`` header ({} when there is none)."""
    lines = islice(iter_lines(layout.path, encoding=layout.encoding), layout.header_line - 1)
    comments = [text for _, text in lines if text.startswith("#")][:3]
    if len(comments) < 3:
        return {}
    types = [t.strip().upper() for t in comments[2].lstrip("#").split(layout.separator)]
    if len(types) != len(layout.header) or not set(types) <= _CBIO_TYPES.keys():
        return {}
    return {column: _CBIO_TYPES[t] for column, t in zip(layout.header, types, strict=True)}


def _attributes(frame: pl.DataFrame, layout: TableLayout, *, id_column: str, exclude: list[str],
                issues: IssueLog) -> pl.DataFrame:
    """Long form of the non-identifier columns, missing values left out, with each attribute's value type.

    A cBioPortal-declared type is kept unless a value contradicts it (a warning, then 'string'); otherwise the
    type is inferred: 'number' when every value parses as a number, 'boolean' when all are true/false.
    """
    if "" in layout.header and "" not in exclude:
        issues.info("unnamed_column", "a column without a name (R row names?) is not kept as an attribute",
                    file=layout.display_name, line=layout.header_line, column="")
    names = [c for c in layout.header if c not in exclude and c in frame.columns and c not in ("", "line")]
    long = frame.unpivot(index=[id_column, "line"], on=names, variable_name="attribute", value_name="value")
    long = long.with_columns(pl.col("value").cast(pl.String).str.strip_chars()).filter(
        pl.col("value").is_not_null() & ~pl.col("value").str.to_lowercase().is_in(_MISSING))
    is_number = pl.col("value").str.replace(r"^[<>]=?", "").cast(pl.Float64, strict=False).is_not_null()
    is_boolean = pl.col("value").str.to_lowercase().is_in(["true", "false"])
    checks = long.group_by("attribute", maintain_order=True).agg(
        number=is_number.all(), boolean=is_boolean.all(),
        bad_number=pl.col("line").filter(~is_number).first(),
        bad_boolean=pl.col("line").filter(~is_boolean).first(),
    )
    declared = _declared_types(layout)
    types: dict[str, str] = {}
    for row in checks.iter_rows(named=True):
        inferred = "number" if row["number"] else "boolean" if row["boolean"] else "string"
        wanted = declared.get(row["attribute"], inferred)
        if wanted != "string" and not row[wanted]:
            issues.warning("bad_value", f"attribute {row['attribute']!r} is declared {wanted.upper()} but has "
                           "other values; kept as string", file=layout.display_name,
                           line=row[f"bad_{wanted}"], column=row["attribute"])
            wanted = "string"
        types[row["attribute"]] = wanted
    return long.select(
        id_column, "attribute", "value",
        pl.col("attribute").replace_strict(types, default="string", return_dtype=pl.String).alias("value_type"),
        "line",
    ).cast({name: dtype for name, dtype in _ATTRIBUTE_SCHEMA.items()})
