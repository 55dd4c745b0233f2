"""Segmented copy number (CBS / IGV / cBioPortal / GDC ``.seg``): one row per segment of one sample.

Segment files come from many tools that agree on the content (sample, chromosome, start, end, number of probes,
mean log2 ratio) but not on the header, so columns are found by a case-insensitive alias list. Coordinates are kept
as written (1-based, inclusive, on whatever build the study declares); placing segments on genes is
:func:`transforms.layers.copy_number.segments_to_genes`.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from transforms.ingest.parse import ParsedAssay
from transforms.ingest.parse.text import checks_stream, read_table, sniff_table
from transforms.issues import InputError, Issue, IssueLog

# Target column -> header names accepted for it (compared lower-case); only num_probes may be absent.
SEG_COLUMNS: dict[str, tuple[str, ...]] = {
    "column": ("id", "sample", "sample_id", "gdc_aliquot"),
    "chromosome": ("chrom", "chromosome", "chr"),
    "start": ("loc.start", "start", "start.bp"),
    "end": ("loc.end", "end", "end.bp"),
    "num_probes": ("num.mark", "num_probes", "num.markers", "num_markers"),
    "segment_mean": ("seg.mean", "segment_mean", "seg.cn"),
}
_OPTIONAL = {"num_probes"}
MISSING_TOKENS = ("", "NA", "NaN", "nan", "N/A")


def normalise_chromosome(expr: pl.Expr) -> pl.Expr:
    """``chr1``/``1`` -> ``1``; ``x``/``23`` -> ``X``, ``y``/``24`` -> ``Y``, ``M``/``chrM`` -> ``MT``.

    23 and 24 are the numeric X and Y of Affymetrix/cBioPortal segment files. Other names (alt contigs) keep their
    spelling without the ``chr`` prefix; an empty name becomes null.
    """
    bare = expr.str.strip_chars().str.replace(r"(?i)^chr", "")
    lower = bare.str.to_lowercase()
    return (
        pl.when(lower.is_in(["x", "23"])).then(pl.lit("X"))
        .when(lower.is_in(["y", "24"])).then(pl.lit("Y"))
        .when(lower.is_in(["m", "mt"])).then(pl.lit("MT"))
        .when(bare == "").then(pl.lit(None, dtype=pl.String))
        .otherwise(bare)
    )


@checks_stream
def parse_seg(path: Path, *, issues: IssueLog, display_name: str | None = None) -> ParsedAssay:
    """Read a segment file; ``records`` has one row per segment (grain: sample x segment).

    Columns: ``column`` (sample label as written), ``feature_id`` (null: segments are not features), ``line``,
    ``chromosome`` (normalised, see :func:`normalise_chromosome`), ``start``/``end`` Int64, ``num_probes`` Int64
    (null when absent), ``segment_mean`` Float64 and ``problem`` (null when fine, else why the segment cannot be
    used: a non-numeric or missing number, ``start > end``, a missing sample or chromosome). Numbers in R's
    scientific notation (``1e+05``) are accepted. The file is small enough to read eagerly; gzip is transparent.
    """
    layout = sniff_table(path, issues=issues, display_name=display_name)
    found = _match_columns(layout.header, file=layout.display_name, line=layout.header_line)
    table = read_table(layout, issues=issues)
    # read_table reports each ragged row once and leaves it out (polars would pad a short row with nulls)
    if table.height == 0:
        raise InputError(Issue(layout.display_name, "no_records", "error",
                               "segment file has a header but no segments", layout.header_line))

    raw = table.select(
        pl.col("line"),
        *[pl.col(source).str.strip_chars().alias(target) for target, source in found.items()],
    )
    problems = [
        pl.when(pl.col("column").is_null() | (pl.col("column") == "")).then(pl.lit("missing sample label")),
        pl.when(normalise_chromosome(pl.col("chromosome")).is_null()).then(pl.lit("missing chromosome")),
        *_number_problems("start", integer=True, required=True),
        *_number_problems("end", integer=True, required=True),
        *_number_problems("segment_mean", integer=False, required=True),
    ]
    if "num_probes" in found:
        problems += _number_problems("num_probes", integer=True, required=False)
    start, end = _number("start").cast(pl.Int64, strict=False), _number("end").cast(pl.Int64, strict=False)
    problems.append(pl.when(start > end).then(pl.format("start {} > end {}", start, end)))

    records = raw.select(
        pl.col("column"),
        pl.lit(None, dtype=pl.String).alias("feature_id"),
        pl.col("line"),
        normalise_chromosome(pl.col("chromosome")).alias("chromosome"),
        pl.when(_is_integer("start")).then(start).alias("start"),
        pl.when(_is_integer("end")).then(end).alias("end"),
        (pl.when(_is_integer("num_probes")).then(_number("num_probes").cast(pl.Int64, strict=False))
         if "num_probes" in found else pl.lit(None, dtype=pl.Int64)).alias("num_probes"),
        _number("segment_mean").alias("segment_mean"),
        pl.concat_str(problems, separator="; ", ignore_nulls=True).alias("problem"),
    ).with_columns(pl.when(pl.col("problem") != "").then(pl.col("problem")).alias("problem"))

    samples = records.get_column("column").drop_nulls().unique(maintain_order=True).to_list()
    metadata = {
        "columns_used": found,
        "segments": records.height,
        "samples": len(samples),
        "segments_with_problem": records.get_column("problem").is_not_null().sum(),
    }
    return ParsedAssay(records=records.lazy(), columns=samples, metadata=metadata)


def _match_columns(header: list[str], *, file: str, line: int) -> dict[str, str]:
    """Map each target column to the header name that holds it, or raise for a missing required one."""
    lower = {name.lower(): name for name in reversed(header)}  # first occurrence wins
    found: dict[str, str] = {}
    for target, aliases in SEG_COLUMNS.items():
        match = next((lower[a] for a in aliases if a in lower), None)
        if match is not None:
            found[target] = match
        elif target not in _OPTIONAL:
            raise InputError(Issue(file, "missing_column", "error",
                                   f"no {target} column in the segment header; expected one of "
                                   f"{', '.join(aliases)} (any case)", line))
    return found


def _number(name: str) -> pl.Expr:
    """The cell as Float64; null for a missing token or non-numeric text."""
    return pl.when(~pl.col(name).is_in(MISSING_TOKENS)).then(pl.col(name).cast(pl.Float64, strict=False))


def _is_integer(name: str) -> pl.Expr:
    value = _number(name)
    return value.is_finite() & (value == value.floor())


def _number_problems(name: str, *, integer: bool, required: bool) -> list[pl.Expr]:
    """Reasons a numeric cell is unusable: missing (when required), non-numeric, or fractional (for integers)."""
    cell = pl.col(name)
    missing = cell.is_null() | cell.is_in(MISSING_TOKENS)
    value = _number(name)
    reasons: list[pl.Expr] = [
        pl.when(~missing & value.is_null()).then(pl.format("non-numeric {} '{}'", pl.lit(name), cell))]
    if required:
        reasons.append(pl.when(missing).then(pl.lit(f"missing {name}")))
    if integer:
        reasons.append(pl.when(value.is_not_null() & ~_is_integer(name))
                       .then(pl.format("non-integer {} '{}'", pl.lit(name), cell)))
    return reasons
