"""Harmonise parsed records onto the warehouse's identities: (study_id, sample_id) and gene_id.

Every layer goes through these functions after its parser, so sample and gene identity are decided in one place:
sample labels through :func:`transforms.ingest.samples.map_sample_columns`, feature identifiers through
:func:`transforms.ingest.genes.resolve_gene_ids`. A record keeps its ``feature_id`` as given; ``gene_id`` is set only
where the identifier's status is ``mapped``, so unmapped rows stay in the table (and in library sizes).
Record-level problems (a ``problem`` text set by a parser or here) are routed to ``ingest_issues`` instead of
the table, with file, line, column and the raw value.
"""

from __future__ import annotations

import polars as pl

from transforms.ingest.parse.text import MAX_IDENTIFIER_CHARS
from transforms.issues import ISSUE_SCHEMA, MAX_RECORD_CHARS

MAX_PLAUSIBLE_VALUE = 1e15
"""Largest count or abundance (in absolute value) a table takes; above it a value is an ``implausible_value``
error and the row is quarantined (1e15 is far above any read count or MS intensity; 1e300 is a broken file)."""


def attach_identity(records: pl.LazyFrame, *, sample_map: pl.DataFrame, gene_map: pl.DataFrame | None,
                    study_id: str, assay: str, file: str, features: pl.Series | None = None) -> pl.LazyFrame:
    """Add ``study_id``, ``assay``, ``sample_id`` and ``gene_id`` to parsed records.

    ``sample_map``: (column, sample_id) for the labels of this file; records of a label without a sample are
    left out (the mapping logged an ``unknown_sample`` or ``duplicate_sample`` error for the label, which fails
    the study). ``gene_map``: resolver output (feature_id, gene_id, status); None for tables without genes.
    ``features``: every feature id the records hold, when the records are a parsed matrix whose column labels
    are exactly ``sample_map``'s. Per-row work that cannot change a row is then skipped (hundreds of millions of
    rows at 20,000 samples): the identifier-length check when no id is too long, the sample join when every
    label is its own sample id, the gene join when no feature maps.
    """
    schema = records.collect_schema()
    frame = records.with_columns(
        *(pl.lit(None, dtype=pl.String).alias(c) for c in ("problem", "problem_code", "raw") if c not in schema),
        pl.lit(study_id).alias("study_id"),
        pl.lit(assay).alias("assay"),
        pl.lit(file).alias("file"),
    )
    if "line" not in schema:
        frame = frame.with_columns(pl.lit(None, dtype=pl.Int64).alias("line"))
    long_ids = features is None or bool((features.str.len_chars() > MAX_IDENTIFIER_CHARS).any())
    if "feature_id" in schema and long_ids:  # any parser: a feature id over the bound is quarantined, its text cut
        length = pl.col("feature_id").str.len_chars()
        long_id = pl.col("problem").is_null() & (length > MAX_IDENTIFIER_CHARS).fill_null(False)
        frame = frame.with_columns(
            problem_code=pl.when(long_id).then(pl.lit("identifier_too_long")).otherwise(pl.col("problem_code")),
            problem=pl.when(long_id).then(pl.format(f"feature identifier has {{}} characters (at most "
                                                    f"{MAX_IDENTIFIER_CHARS})", length)).otherwise(pl.col("problem")),
            raw=pl.when(long_id).then(pl.col("feature_id").str.slice(0, 80) + pl.lit(" ...")).otherwise(pl.col("raw")),
        )
    # A label without a sample already has its one error (unknown_sample / duplicate_sample) from the mapping,
    # which fails the study; its records are not repeated as one issue each.
    labels = sample_map.get_column("column")
    if features is not None and labels.is_unique().all() \
            and (labels == sample_map.get_column("sample_id")).fill_null(False).all():  # a null is a dropped label
        frame = frame.with_columns(pl.col("column").alias("sample_id"))
    else:
        frame = frame.join(sample_map.lazy().select("column", "sample_id").drop_nulls("sample_id"), on="column",
                           how="inner", maintain_order="left")
    if gene_map is None:
        return frame
    mapped = gene_map.filter(pl.col("status") == "mapped").select("feature_id", "gene_id").unique("feature_id")
    if features is not None and not features.is_in(mapped.get_column("feature_id").implode()).any():
        return frame.with_columns(pl.lit(None, pl.Int64).alias("gene_id"))
    # rows keep the file's order: a polars join keeps none unless asked, and stored rows in a new order on every
    # build made the same study's files differ (and, before dense blocks were sorted, its statistics)
    return frame.join(mapped.lazy(), on="feature_id", how="left", maintain_order="left")


def flag_values(records: pl.LazyFrame, *, value: str = "value", kind: str = "count",
                allow_missing: bool = False) -> pl.LazyFrame:
    """Flag values a table may not hold: NaN, infinite, above :data:`MAX_PLAUSIBLE_VALUE`, negative counts,
    missing (unless allowed).

    The first failing check names the problem; a row that already has a parser problem keeps it.
    """
    v = pl.col(value)
    checks = [(v.is_nan(), "nan_value", pl.lit(f"{kind} is NaN")),
              (v.is_infinite(), "infinite_value", pl.lit(f"{kind} is infinite")),
              (v.abs() > MAX_PLAUSIBLE_VALUE, "implausible_value",
               pl.format(f"{kind} {{}} is above the plausible bound {MAX_PLAUSIBLE_VALUE:g}", v))]
    if kind == "count":
        checks.append((v < 0, "negative_count", pl.format("negative count {}", v)))
    if not allow_missing:
        checks.append((v.is_null(), "missing_value", pl.lit(f"{kind} is missing")))
    code, text = pl.col("problem_code"), pl.col("problem")
    for condition, name, message in reversed(checks):
        hit = pl.col("problem").is_null() & condition.fill_null(False)
        code = pl.when(hit).then(pl.lit(name)).otherwise(code)
        text = pl.when(hit).then(message).otherwise(text)
    raw = pl.when(pl.col("raw").is_null()).then(v.cast(pl.String)).otherwise(pl.col("raw"))
    return records.with_columns(code.alias("problem_code"), text.alias("problem"), raw.alias("raw"))


_THOUSANDS = r"^[-+]?[0-9]{1,3}(,[0-9]{3})+(\.[0-9]*)?$"
_DECIMAL_COMMA = r"^[-+]?([0-9]{1,3}(\.[0-9]{3})+|[0-9]*),[0-9]+$"


def quarantine_rows(records: pl.LazyFrame) -> pl.LazyFrame:
    """Problem rows as ``ingest_issues`` rows (severity error: a study with bad rows does not commit).

    A value written with a thousands separator or a decimal comma (a spreadsheet in a European locale) says so in
    its message: "non-numeric value '1,5'" alone left the reader to find out why.

    One issue per cause: rows repeating the same file, line, column, problem and value (a bad feature length on
    every sample's row of a gene) are one issue. ``problem_column``, when set, names the column at fault.
    """
    column = (pl.coalesce("problem_column", "column") if "problem_column" in records.collect_schema()
              else pl.col("column"))
    raw = pl.col("raw").cast(pl.String)
    hint = (pl.when(raw.str.contains(_THOUSANDS))
            .then(pl.lit(" (a thousands separator or a decimal comma? write plain numbers with '.' for decimals)"))
            .when(raw.str.contains(_DECIMAL_COMMA)).then(pl.lit(" (a decimal comma? write '.' for decimals)"))
            .otherwise(pl.lit("")))
    return records.filter(pl.col("problem").is_not_null()).select(
        pl.col("study_id").cast(pl.String),
        pl.col("file").cast(pl.String),
        pl.col("line").cast(pl.Int64),
        column.cast(pl.String).alias("column"),
        pl.col("problem_code").fill_null("invalid_value").cast(pl.String).alias("code"),
        pl.lit("error").alias("severity"),
        _clipped(pl.col("problem").cast(pl.String) + hint.fill_null("")).alias("message"),
        _clipped(pl.col("raw").cast(pl.String)).alias("record"),
    ).unique(maintain_order=True).cast(ISSUE_SCHEMA)


def _clipped(text: pl.Expr) -> pl.Expr:
    """A quarantined cell cut to :data:`transforms.issues.MAX_RECORD_CHARS` (never megabytes in the log)."""
    return pl.when(text.str.len_chars() > MAX_RECORD_CHARS).then(
        text.str.slice(0, MAX_RECORD_CHARS) + pl.lit(" ...")).otherwise(text)


def gene_map_rows(resolved: pl.DataFrame, *, study_id: str, assay: str) -> pl.DataFrame:
    """Resolver output as ``gene_id_map`` rows for one assay."""
    return resolved.select(
        pl.lit(study_id).alias("study_id"),
        pl.lit(assay).alias("assay"),
        pl.col("namespace").cast(pl.String),
        pl.col("feature_id").cast(pl.String),
        pl.col("gene_id").cast(pl.Int64),
        pl.col("status").cast(pl.String),
        pl.col("rule").cast(pl.String),
    )
