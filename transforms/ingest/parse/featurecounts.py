"""featureCounts output: one count matrix of genes x BAM files, with the command line on line 1."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import polars as pl

from transforms.ingest.parse import ParsedAssay
from transforms.ingest.parse.matrix import cast_annotation, parse_wide_table, require_columns
from transforms.ingest.parse.text import checks_stream, open_text, sniff_table
from transforms.issues import InputError, Issue, IssueLog

FEATURECOUNTS_COLUMNS = ("Geneid", "Chr", "Start", "End", "Strand", "Length")
_ALIGNMENT = re.compile(r"\.(bam|sam|cram)$", re.IGNORECASE)


@checks_stream
def parse_featurecounts(path: Path, *, issues: IssueLog, display_name: str | None = None) -> ParsedAssay:
    """Read a featureCounts table into ``records``: one row per gene and BAM column, counts in ``value``.

    The sample label is the BAM column header with its directories and ``.bam`` (``.sam``, ``.cram``) extension
    stripped (``/data/SRR1039508_subset.bam`` -> ``SRR1039508_subset``); any other suffix stays, as mapping labels
    to sample ids happens later (``sample_map`` or exact match). ``--extraAttributes`` columns (those after
    ``Length`` not named like an alignment file) are annotations, not samples.

    Returns
    -------
    ParsedAssay
        ``records`` as :data:`transforms.ingest.parse.matrix.RECORD_SCHEMA`; ``features`` ``feature_id``, ``line``,
        ``length`` (Int64, summed exon length, the length for TPM/FPKM); ``metadata`` the featureCounts version
        and each BAM header with its label.
    """
    name = display_name or path.name
    layout = sniff_table(path, issues=issues, display_name=display_name)
    require_columns(layout, FEATURECOUNTS_COLUMNS)
    rest = layout.header[len(FEATURECOUNTS_COLUMNS):]
    bams = [c for c in rest if _ALIGNMENT.search(c)] or rest
    labels = {c: _ALIGNMENT.sub("", re.split(r"[/\\]", c)[-1]) for c in bams}
    seen: dict[str, str] = {}
    for header, label in labels.items():
        if label in seen:
            raise InputError(Issue(name, "duplicate_column", "error", f"BAM columns {seen[label]!r} and "
                                   f"{header!r} both give sample label {label!r}", layout.header_line, header))
        seen[label] = header
    layout = replace(layout, header=[labels.get(c, c) for c in layout.header])
    annotations = [c for c in layout.header[1:] if c not in seen]
    parsed = parse_wide_table(layout, issues=issues, id_columns=("Geneid",), annotation_columns=annotations)
    assert parsed.features is not None  # parse_wide_table always returns its feature frame
    features = cast_annotation(parsed.features, "Length", pl.Int64, issues=issues, file=name)
    features = _non_positive_lengths(features, issues=issues, file=name)
    parsed.features = features.select("feature_id", "line", pl.col("Length").alias("length"))
    parsed.metadata |= {"program": _program(path), "bam_columns": {h: labels[h] for h in bams}}
    return parsed


def _non_positive_lengths(features: pl.DataFrame, *, issues: IssueLog, file: str) -> pl.DataFrame:
    """A gene's summed exon ``Length`` must be positive: one error for the file (how many rows, the first line)
    and those lengths left empty, so the table contract never meets them unlocated.
    """
    bad = features.filter(pl.col("Length") <= 0)
    if bad.height:
        line, value = bad.select("line", "Length").row(0)
        issues.error("invalid_length", f"{bad.height} row(s) have a Length of 0 or less (first on line {line}: "
                     f"{value}); their lengths are left empty", file=file, line=line, column="Length",
                     record=str(bad["feature_id"][0]))
    return features.with_columns(pl.when(pl.col("Length") > 0).then(pl.col("Length")).alias("Length"))


def _program(path: Path) -> str | None:
    """``featureCounts v2.0.3`` from the ``# Program:featureCounts v2.0.3; Command:...`` first line."""
    with open_text(path) as fh:
        first = fh.readline().decode("utf-8", errors="replace")
    found = re.match(r"#\s*Program:\s*([^;]+)", first)
    return found.group(1).strip() if found else None
