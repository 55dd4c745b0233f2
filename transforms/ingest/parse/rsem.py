"""RSEM ``*.genes.results`` / ``*.isoforms.results``: expected counts and abundances of one sample."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import polars as pl

from transforms.ingest.parse import ParsedAssay
from transforms.ingest.parse.matrix import cast_annotation, parse_wide_table, require_columns
from transforms.ingest.parse.text import checks_stream, sniff_table
from transforms.issues import InputError, Issue, IssueLog

RSEM_COLUMNS = ("length", "effective_length", "expected_count", "TPM", "FPKM")
_QUANTITY = {"counts": "expected_count", "tpm": "TPM", "fpkm": "FPKM"}


@checks_stream
def parse_rsem(path: Path, *, issues: IssueLog, display_name: str | None = None, sample: str,
               quantity: Literal["counts", "tpm", "fpkm"] = "counts") -> ParsedAssay:
    """Read one sample's RSEM results into ``records``: one row per gene (or isoform), streamed.

    ``counts`` reads ``expected_count``, which is fractional (reads shared between genes are split): kept as
    Float64, never rounded, so rounding for count models stays a visible, later choice. ``tpm`` and ``fpkm``
    read those columns. The identifier is the first column (``gene_id`` or ``transcript_id``), as given
    (versioned, ``_PAR_Y`` rows kept).

    Returns
    -------
    ParsedAssay
        ``records`` as :data:`transforms.ingest.parse.matrix.RECORD_SCHEMA` with ``column`` = ``sample``; ``features``
        ``feature_id``, ``line``, ``length``, ``effective_length`` (Float64, expression-weighted over isoforms
        by RSEM) and ``transcript_ids`` (genes) or ``gene_id`` (isoforms).
    """
    name = display_name or path.name
    if quantity not in _QUANTITY:
        raise ValueError(f"quantity must be one of {sorted(_QUANTITY)}, got {quantity!r}")
    layout = sniff_table(path, issues=issues, display_name=display_name)
    if layout.header[0] not in ("gene_id", "transcript_id"):
        raise InputError(Issue(name, "missing_column", "error", f"first column is {layout.header[0]!r}; RSEM "
                               "results start with gene_id or transcript_id", layout.header_line))
    require_columns(layout, RSEM_COLUMNS)
    value_column = _QUANTITY[quantity]
    annotations = [c for c in layout.header[1:] if c != value_column]
    parsed = parse_wide_table(layout, issues=issues, annotation_columns=annotations)
    features = parsed.features
    assert features is not None  # parse_wide_table always returns its feature frame
    for column in ("length", "effective_length"):
        features = cast_annotation(features, column, pl.Float64, issues=issues, file=name)
    features = _unknown_effective_lengths(features, issues=issues, file=name)
    links = [c for c in ("transcript_id(s)", "gene_id") if c in features.columns]
    parsed.features = features.select("feature_id", "line", "length", "effective_length",
                                      *[pl.col(c).alias(c.replace("(s)", "s")) for c in links])
    parsed.records = parsed.records.with_columns(column=pl.lit(sample))
    parsed.columns = [sample]
    parsed.metadata |= {"quantity": value_column}
    return parsed


def _unknown_effective_lengths(features: pl.DataFrame, *, issues: IssueLog, file: str) -> pl.DataFrame:
    """RSEM writes an ``effective_length`` of 0 for a feature shorter than the mean fragment (its TPM is 0):
    the length for TPM is unknown, not invalid, so it is left empty with one ``info`` issue per file.
    """
    zero = features.filter(pl.col("effective_length") <= 0)
    if zero.height:
        line = zero["line"][0]
        issues.info("zero_effective_length", f"{zero.height} feature(s) have an effective_length of 0 or less "
                    f"(first on line {line}; RSEM's mark of a feature shorter than the fragments); their "
                    "lengths are left empty and their TPM unknown", file=file, line=line, column="effective_length",
                    record=str(zero["feature_id"][0]))
    return features.with_columns(pl.when(pl.col("effective_length") > 0).then(pl.col("effective_length"))
                                 .alias("effective_length"))
