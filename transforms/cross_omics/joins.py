"""``gene_sample_omics``: one row per sample and gene with a value in any layer, built by lazy joins.

One source per gene and layer, so a gene's values across samples are comparable:

- RNA: ``rna_normalized`` rows with a gene; count assays before abundance assays, then the assay (and feature) with
  the most samples for the gene, then by name. ``rna_log2`` is its ``log2_value``, ``rna_zscore`` its ``zscore``.
  Abundance assays measured as z-scores (cBioPortal ``*_Zscores``) have no log2 value and never win.
- Protein: ``protein_abundance`` rows with a gene and a ``log2_abundance``; total protein before phospho-specific,
  mass spectrometry before RPPA, groups of one gene before groups shared by several genes (each gene of a shared
  group gets the group's value and ``protein_ambiguous``), then most samples, then by name. The z-score is taken per
  gene over the study's samples with a value.
- Copy number: per sample and gene the first assay (by name) with a call and the first with a log2 ratio; assays
  measured per gene (GISTIC calls, log2 matrices) before values placed on genes from segments (``segment_assays``).
- Mutation: ``mutated`` is True when any assay says mutated, False when one profiled the gene without a non-silent
  variant, NULL when none profiled it (panel). ``mutation_classes`` lists the distinct consequences of its
  non-silent variants.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from transforms.moments import group_zscores

KEY = ["sample_id", "gene_id"]
SOURCE = ["assay", "feature_id"]
"""The columns naming a source (one assay's feature) of a gene's values."""

RNA_ORDER = [pl.col("source") != "counts"]
"""RNA sources ranked: count assays first."""
PROTEIN_ORDER = [pl.col("is_phospho").fill_null(False), pl.col("platform") != "ms",
                 pl.col("is_ambiguous").fill_null(False)]
"""Protein sources ranked: total before phospho-specific, mass spectrometry before RPPA, one gene before shared."""

PROTEIN_LAYER = pl.Schema({"sample_id": pl.String, "gene_id": pl.Int64, "protein_log2": pl.Float64,
                           "protein_zscore": pl.Float64, "protein_ambiguous": pl.Boolean})
"""The columns of :func:`with_protein_zscores` (the protein layer before its per-gene source name)."""


@dataclass(frozen=True)
class Winners:
    """The source of each gene in one layer: ``best`` (``gene_id, assay, feature_id``, one row per gene with
    values); ``every_row`` when each gene has that one source only, so every row with a gene is the winner's and
    no join is needed to keep them.
    """

    best: pl.DataFrame
    every_row: bool


def source_summary(frame: pl.LazyFrame, *, value: str, order: Sequence[pl.Expr]) -> pl.LazyFrame:
    """One row per gene and source: ``_o<i>`` the source's ranks (``order``, on the source's first row), ``_n``
    its rows with a ``value``, ``_rows`` its rows. Small (genes x sources); every row of the layer is read once.
    """
    # the first row's columns, ranked after the group-by: ranking every row first took 3x the group-by's CPU
    firsts = sorted({c for e in order for c in e.meta.root_names()})
    return (frame.filter(pl.col("gene_id").is_not_null())
            .group_by(["gene_id", *SOURCE])
            .agg(*[pl.col(c).first() for c in firsts], pl.col(value).count().alias("_n"),
                 pl.len().alias("_rows"))
            .select("gene_id", *SOURCE, *[e.alias(f"_o{i}") for i, e in enumerate(order)], "_n", "_rows"))


def winners(sources: pl.DataFrame) -> Winners:
    """Each gene's source from a :func:`source_summary`: the ranks decide (first wins), ties broken by most rows
    with a value, then by name; sources without any value never win.
    """
    if sources["_n"].min() and not sources["gene_id"].is_duplicated().any():  # type: ignore[operator]
        return Winners(sources.select("gene_id", *SOURCE), every_row=True)
    ranks = [c for c in sources.columns if c.startswith("_o")]
    best = (sources.filter(pl.col("_n") > 0)
            .sort([*ranks, "_n", *SOURCE], descending=[False] * len(ranks) + [True] + [False] * len(SOURCE))
            .group_by("gene_id", maintain_order=True).first().select("gene_id", *SOURCE))
    return Winners(best, every_row=False)


def _winner_rows(frame: pl.LazyFrame, chosen: Winners) -> pl.LazyFrame:
    """The rows of each gene's winning source (the semi join, a string-keyed join over every row, only when some
    gene has another source or one without values).
    """
    rows = frame.filter(pl.col("gene_id").is_not_null())
    return rows if chosen.every_row else rows.join(chosen.best.lazy(), on=["gene_id", *SOURCE], how="semi")


def rna_winners(rna_normalized: pl.LazyFrame) -> Winners:
    """The RNA source of each gene: counts before abundance, then most samples, then by name."""
    return winners(source_summary(rna_normalized, value="log2_value", order=RNA_ORDER).collect(engine="streaming"))


def protein_winners(protein_abundance: pl.LazyFrame) -> Winners:
    """The protein source of each gene, ranked by :data:`PROTEIN_ORDER`, then most samples, then by name."""
    return winners(source_summary(protein_abundance, value="log2_abundance", order=PROTEIN_ORDER)
                   .collect(engine="streaming"))


def rna_values(rna_normalized: pl.LazyFrame, chosen: Winners) -> pl.LazyFrame:
    """``sample_id, gene_id, rna_log2, rna_zscore``: the winning source's rows with either value."""
    return (_winner_rows(rna_normalized, chosen)
            .filter(pl.col("log2_value").is_not_null() | pl.col("zscore").is_not_null())
            .select(*KEY, pl.col("log2_value").alias("rna_log2"), pl.col("zscore").alias("rna_zscore")))


def protein_values(protein_abundance: pl.LazyFrame, chosen: Winners) -> pl.LazyFrame:
    """``sample_id, gene_id, protein_log2, protein_ambiguous``: the winning source's rows with a value."""
    return (_winner_rows(protein_abundance, chosen).filter(pl.col("log2_abundance").is_not_null())
            .select(*KEY, pl.col("log2_abundance").alias("protein_log2"),
                    pl.col("is_ambiguous").fill_null(False).alias("protein_ambiguous")))


def with_protein_zscores(values: pl.DataFrame) -> pl.DataFrame:
    """:func:`protein_values` rows with ``protein_zscore``: per gene over the samples with a value, from the mean
    and SD of the values in ascending order (:func:`~transforms.moments.group_zscores`: the same bits in any row
    order, which the block split's sink and the source join do not keep); NULL unless the SD is positive.
    """
    zscore = group_zscores(values, key="gene_id", value="protein_log2").alias("protein_zscore")
    return values.select(*KEY, "protein_log2", zscore, "protein_ambiguous")


def protein_layer(protein_abundance: pl.LazyFrame) -> pl.LazyFrame:
    """``sample_id, gene_id, protein_log2, protein_zscore, protein_assay, protein_ambiguous`` per gene's source."""
    chosen = protein_winners(protein_abundance)
    assay = chosen.best.select("gene_id", pl.concat_str(*SOURCE, separator=":").alias("protein_assay"))
    return (with_protein_zscores(protein_values(protein_abundance, chosen).collect()).lazy()
            .join(assay.lazy(), on="gene_id")
            .select(*KEY, "protein_log2", "protein_zscore", "protein_assay", "protein_ambiguous"))


def copy_number_layer(copy_number: pl.LazyFrame, *, segment_assays: Sequence[str] = ()) -> pl.LazyFrame:
    """``sample_id, gene_id, cn_call, cn_log2``: the first assay (gene-level before ``segment_assays``, then by
    name) with each value.
    """
    rows = (copy_number.filter(pl.col("gene_id").is_not_null())
            .sort(pl.col("assay").is_in(list(segment_assays)), "assay", "feature_id"))
    return (rows.group_by(KEY)
            .agg(pl.col("call").drop_nulls().first().alias("cn_call"),
                 pl.col("log2_ratio").drop_nulls().first().alias("cn_log2"))
            .filter(pl.col("cn_call").is_not_null() | pl.col("cn_log2").is_not_null()))


def mutation_layer(mutation_status: pl.LazyFrame, variants: pl.LazyFrame, *, non_silent: list[str]) -> pl.LazyFrame:
    """``sample_id, gene_id, mutated, mutation_classes`` from the status table, classes from the variants."""
    status = (mutation_status.filter(pl.col("gene_id").is_not_null())
              .group_by(KEY)
              .agg(pl.col("mutated").any(ignore_nulls=True).alias("_any"),
                   pl.col("mutated").is_not_null().any().alias("_profiled"),
                   pl.col("top_consequence").drop_nulls().sort().first().alias("_top"))
              .filter(pl.col("_profiled"))  # not profiled anywhere is no value: no row of its own
              .select(*KEY, pl.col("_any").alias("mutated"), "_top"))
    classes = (variants.filter(pl.col("gene_id").is_not_null() & pl.col("consequence").is_in(non_silent))
               .group_by(KEY).agg(pl.col("consequence").unique().sort().str.join("; ").alias("_classes")))
    return (status.join(classes, on=KEY, how="left")
            .select(*KEY, "mutated",
                    pl.when(pl.col("mutated")).then(pl.coalesce("_classes", "_top")).alias("mutation_classes")))


def gene_names(genes: pl.LazyFrame, rna: Winners, protein: Winners) -> pl.DataFrame:
    """``gene_id, symbol, _rna_assay, _protein_assay``: the columns of ``gene_sample_omics`` that are per gene (the
    symbol, and each layer's one source), joined to the rows once at the end instead of carried through the joins.
    """
    names = genes.select("gene_id", "symbol").collect()
    for chosen, column in ((rna.best.select("gene_id", pl.col("assay").alias("_rna_assay")), "_rna_assay"),
                           (protein.best.select("gene_id", pl.concat_str(*SOURCE, separator=":")
                                                .alias("_protein_assay")), "_protein_assay")):
        names = names.join(chosen.select("gene_id", column), on="gene_id", how="full", coalesce=True)
    return names


def join_layers(layers: Sequence[tuple[pl.LazyFrame, bool]], names: pl.DataFrame, *, study_id: str
                ) -> pl.LazyFrame:
    """Full join of the layers (rna, protein with z-scores, copy number, mutation: ``(rows, present)``; a layer
    whose input has no gene rows adds NULL columns instead of a full join, a pass over every joined row), then
    the per-gene names (:func:`gene_names`), each layer's source only on the rows with that layer's values.
    """
    joined: pl.LazyFrame | None = None
    missing: dict[str, pl.DataType] = {}
    for layer, present in layers:
        if not present:
            missing.update({c: t for c, t in layer.collect_schema().items() if c not in KEY})
        else:
            joined = layer if joined is None else joined.join(layer, on=KEY, how="full", coalesce=True)
    if joined is None:
        joined = layers[0][0]
    rna = pl.col("rna_log2").is_not_null() | pl.col("rna_zscore").is_not_null()  # the rna layer's rows
    return (joined.with_columns(pl.lit(None, dtype=t).alias(c) for c, t in missing.items()
                                if c not in joined.collect_schema())
            .join(names.lazy(), on="gene_id", how="left")
            .select(pl.lit(study_id).alias("study_id"), pl.col("sample_id").cast(pl.String), "gene_id", "symbol",
                    "rna_log2", "rna_zscore", pl.when(rna).then("_rna_assay").alias("rna_assay"), "protein_log2",
                    "protein_zscore",
                    pl.when(pl.col("protein_log2").is_not_null()).then("_protein_assay").alias("protein_assay"),
                    "protein_ambiguous", "cn_call", "cn_log2", "mutated", "mutation_classes"))


def _has_genes(table: pl.LazyFrame) -> bool:
    """Whether a layer's input has any row mapped to a gene (stops at the first)."""
    return table.filter(pl.col("gene_id").is_not_null()).select("gene_id").head(1).collect().height > 0


def gene_sample_omics(rna_normalized: pl.LazyFrame, protein_abundance: pl.LazyFrame, copy_number: pl.LazyFrame,
                      mutation_status: pl.LazyFrame, variants: pl.LazyFrame, genes: pl.LazyFrame, *,
                      study_id: str, non_silent: list[str], segment_assays: Sequence[str] = ()) -> pl.LazyFrame:
    """One row per sample and gene where any layer has a value (the ``gene_sample_omics`` contract), lazily
    (the sources and the protein z-scores are collected first).
    """
    rna, protein = rna_winners(rna_normalized), protein_winners(protein_abundance)
    with_protein = _has_genes(protein_abundance)
    layers = [(rna_values(rna_normalized, rna), _has_genes(rna_normalized)),
              (with_protein_zscores(protein_values(protein_abundance, protein).collect()).lazy()
               if with_protein else pl.LazyFrame(schema=PROTEIN_LAYER), with_protein),
              (copy_number_layer(copy_number, segment_assays=segment_assays), _has_genes(copy_number)),
              (mutation_layer(mutation_status, variants, non_silent=non_silent), _has_genes(mutation_status))]
    return join_layers(layers, gene_names(genes, rna, protein), study_id=study_id)
