"""Salmon ``quant.sf``: transcript abundances of one sample, optionally summed to genes."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import polars as pl

from transforms.ingest.parse import ParsedAssay
from transforms.ingest.parse.matrix import RECORD_SCHEMA, cast_annotation, parse_wide_table, require_columns
from transforms.ingest.parse.text import checks_stream, sniff_table
from transforms.issues import IssueLog

SALMON_COLUMNS = ("Name", "Length", "EffectiveLength", "TPM", "NumReads")
_QUANTITY = {"counts": "NumReads", "tpm": "TPM"}


@checks_stream
def parse_salmon(path: Path, *, issues: IssueLog, display_name: str | None = None, sample: str,
                 quantity: Literal["counts", "tpm"] = "counts", tx2gene: pl.DataFrame | None = None
                 ) -> ParsedAssay:
    """Read one sample's ``quant.sf`` (plain or gzip): one row per transcript, or per gene with ``tx2gene``.

    Parameters
    ----------
    sample
        The sample label (usually the folder name, see :func:`transforms.ingest.parse.labels.sample_label_from_path`).
    quantity
        ``counts`` reads ``NumReads`` (estimated, fractional: kept as is), ``tpm`` reads ``TPM``.
    tx2gene
        Columns ``transcript_id`` and ``gene``. Transcript versions (``.N``) are stripped on both sides before
        the join, then values are summed per gene; transcripts without a gene keep their own id (never
        dropped). A gene is null when one of its transcripts is missing, and carries the ``problem`` when one
        is unreadable, so a partial sum never passes for a whole one.

    Returns
    -------
    ParsedAssay
        ``records`` as :data:`transforms.ingest.parse.matrix.RECORD_SCHEMA` (``column`` is ``sample``; a gene's ``line``
        is that of its first transcript); ``features`` ``feature_id``, ``line``, ``length``, ``effective_length``
        (Float64). For genes both lengths are the TPM-weighted mean over the gene's transcripts, the length
        tximport uses to turn counts into abundances, or the plain mean when the gene's TPM is 0.
    """
    name = display_name or path.name
    if quantity not in _QUANTITY:
        raise ValueError(f"quantity must be one of {sorted(_QUANTITY)}, got {quantity!r}")
    layout = sniff_table(path, issues=issues, display_name=display_name)
    require_columns(layout, SALMON_COLUMNS)
    value_column = _QUANTITY[quantity]
    annotations = [c for c in layout.header[1:] if c != value_column]
    parsed = parse_wide_table(layout, issues=issues, id_columns=("Name",), annotation_columns=annotations)
    features = parsed.features
    assert features is not None  # parse_wide_table always returns its feature frame
    for column in ("Length", "EffectiveLength", "TPM"):
        if column in features.columns:
            features = cast_annotation(features, column, pl.Float64, issues=issues, file=name)
    features = features.rename({"Length": "length", "EffectiveLength": "effective_length"})
    records = parsed.records.with_columns(column=pl.lit(sample))
    metadata = parsed.metadata | {"quantity": value_column, "transcripts": features.height}
    if tx2gene is None:
        return ParsedAssay(records, [sample], features.select("feature_id", "line", "length", "effective_length"),
                           metadata)
    transcripts = records.collect()
    if quantity == "tpm":
        features = features.join(transcripts.select("feature_id", TPM="value"), on="feature_id", how="left")
    genes, gene_features, counts = _sum_to_genes(transcripts, features, tx2gene, issues=issues, file=name)
    return ParsedAssay(genes.lazy(), [sample], gene_features, metadata | counts)


def _unversioned(column: str) -> pl.Expr:
    return pl.col(column).str.replace(r"\.\d+$", "")


def _sum_to_genes(transcripts: pl.DataFrame, features: pl.DataFrame, tx2gene: pl.DataFrame, *,
                  issues: IssueLog, file: str) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, int]]:
    """Per-gene records and lengths; transcripts without a gene stay as they are."""
    mapping = tx2gene.select(_unversioned("transcript_id").alias("transcript"), pl.col("gene").cast(pl.String))
    ambiguous = mapping.filter(pl.col("transcript").is_duplicated()).get_column("transcript").unique()
    if ambiguous.len():
        issues.warning("ambiguous_tx2gene", f"{ambiguous.len()} transcripts have several genes in tx2gene "
                       f"(first: {ambiguous.sort()[0]}); the first gene listed is used", file=file)
    mapping = mapping.unique("transcript", keep="first", maintain_order=True)
    gene = pl.coalesce("gene", "feature_id").alias("gene_key")
    joined = (transcripts.join(features.select("feature_id", "length", "effective_length", "TPM"),
                               on="feature_id", how="left")
              .with_columns(_unversioned("feature_id").alias("transcript"))
              .join(mapping, on="transcript", how="left")
              .with_columns(gene)
              .sort("line"))
    weight = pl.col("TPM").fill_null(0)
    total = weight.sum()

    def weighted(column: str) -> pl.Expr:
        return pl.when(total > 0).then((pl.col(column) * weight).sum() / total).otherwise(pl.col(column).mean())

    problems = pl.col("problem").drop_nulls()
    summed = pl.col("gene").is_not_null().any()
    first_bad = pl.col("feature_id").filter(pl.col("problem").is_not_null()).first()
    summary = pl.format("{} of {} transcripts unreadable; {}: {}", problems.len(), pl.len(), first_bad,
                        problems.first())
    grouped = joined.group_by("gene_key", maintain_order=True).agg(
        value=pl.when(pl.col("value").null_count() == 0).then(pl.col("value").sum()),
        line=pl.col("line").min(),
        problem=pl.when(problems.len() == 0).then(None).when(summed).then(summary).otherwise(problems.first()),
        raw=pl.col("raw").drop_nulls().first(),
        column=pl.col("column").first(),
        length=weighted("length"),
        effective_length=weighted("effective_length"),
        summed=summed,
        n=pl.len(),
    ).rename({"gene_key": "feature_id"})
    records = grouped.select(list(RECORD_SCHEMA))
    gene_features = grouped.select("feature_id", "line", "length", "effective_length")
    genes = grouped.filter("summed")
    counts = {"genes": genes.height, "transcripts_summed": int(genes.get_column("n").sum()),
              "transcripts_unmapped": grouped.height - genes.height}
    return records, gene_features, counts
