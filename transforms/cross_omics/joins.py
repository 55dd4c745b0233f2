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

import polars as pl

from transforms.moments import group_moments

KEY = ["sample_id", "gene_id"]


def _winner(frame: pl.LazyFrame, *, value: str, order: list[pl.Expr], source: list[str]) -> pl.LazyFrame:
    """The rows of one source per gene: ``order`` ranks sources (first wins), ties broken by sample count, name;
    sources without any ``value`` never win.

    The (gene, source) summary is small and collected first (one pass); when every gene has exactly one source and
    it has values, that is every row, so the long frame is returned as it is, without the semi join (the costly
    part: a string-keyed join over every row).
    """
    sources = (frame.group_by(["gene_id", *source])
               .agg(*[e.first().alias(f"_o{i}") for i, e in enumerate(order)],
                    pl.col(value).is_not_null().sum().alias("_n"))
               .collect())
    if sources["_n"].min() and not sources["gene_id"].is_duplicated().any():  # type: ignore[operator]
        return frame
    ranks = [f"_o{i}" for i in range(len(order))]
    best = (sources.filter(pl.col("_n") > 0)
            .sort([*ranks, "_n", *source], descending=[False] * len(ranks) + [True] + [False] * len(source))
            .group_by("gene_id", maintain_order=True).first().select("gene_id", *source))
    return frame.join(best.lazy(), on=["gene_id", *source], how="semi")


def rna_layer(rna_normalized: pl.LazyFrame) -> pl.LazyFrame:
    """``sample_id, gene_id, rna_log2, rna_zscore, rna_assay`` from the winning RNA source of each gene."""
    rows = rna_normalized.filter(pl.col("gene_id").is_not_null())
    best = _winner(rows, value="log2_value", order=[(pl.col("source") != "counts")], source=["assay", "feature_id"])
    return (best.filter(pl.col("log2_value").is_not_null() | pl.col("zscore").is_not_null())
            .select(*KEY, pl.col("log2_value").alias("rna_log2"), pl.col("zscore").alias("rna_zscore"),
                    pl.col("assay").alias("rna_assay")))


def protein_layer(protein_abundance: pl.LazyFrame) -> pl.LazyFrame:
    """``sample_id, gene_id, protein_log2, protein_zscore, protein_assay, protein_ambiguous`` per gene's source."""
    rows = protein_abundance.filter(pl.col("gene_id").is_not_null())
    order = [pl.col("is_phospho").fill_null(False), pl.col("platform") != "ms", pl.col("is_ambiguous").fill_null(False)]
    best = _winner(rows, value="log2_abundance", order=order, source=["assay", "feature_id"])
    value = pl.col("log2_abundance")
    # per-gene mean and SD from the values in ascending order (collected: one column pair of the block), since a
    # window mean summed them in arrival order, which the split's sink and the source join do not fix
    moments = group_moments(best.select("gene_id", value).collect(), key="gene_id", value="log2_abundance")
    best = best.filter(value.is_not_null()).join(moments.lazy().select("gene_id", "mean", "sd"), on="gene_id")
    return (best
            .select(*KEY, value.alias("protein_log2"),
                    pl.when(pl.col("sd") > 0).then((value - pl.col("mean")) / pl.col("sd")).alias("protein_zscore"),
                    pl.concat_str("assay", "feature_id", separator=":").alias("protein_assay"),
                    pl.col("is_ambiguous").fill_null(False).alias("protein_ambiguous")))


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


def _has_genes(table: pl.LazyFrame) -> bool:
    """Whether a layer's input has any row mapped to a gene (stops at the first)."""
    return table.filter(pl.col("gene_id").is_not_null()).select("gene_id").head(1).collect().height > 0


def gene_sample_omics(rna_normalized: pl.LazyFrame, protein_abundance: pl.LazyFrame, copy_number: pl.LazyFrame,
                      mutation_status: pl.LazyFrame, variants: pl.LazyFrame, genes: pl.LazyFrame, *,
                      study_id: str, non_silent: list[str], segment_assays: Sequence[str] = ()) -> pl.LazyFrame:
    """One row per sample and gene where any layer has a value (the ``gene_sample_omics`` contract), lazily."""
    layers = [(rna_layer(rna_normalized), rna_normalized), (protein_layer(protein_abundance), protein_abundance),
              (copy_number_layer(copy_number, segment_assays=segment_assays), copy_number),
              (mutation_layer(mutation_status, variants, non_silent=non_silent), mutation_status)]
    # a layer without gene rows adds NULL columns instead of a full join (a pass over every joined row)
    present = [(layer, _has_genes(table)) for layer, table in layers]
    joined: pl.LazyFrame | None = None
    missing: dict[str, pl.DataType] = {}
    for layer, has_rows in present:
        if not has_rows:
            missing.update({c: t for c, t in layer.collect_schema().items() if c not in KEY})
        else:
            joined = layer if joined is None else joined.join(layer, on=KEY, how="full", coalesce=True)
    if joined is None:
        joined = present[0][0]
    joined = joined.with_columns(pl.lit(None, dtype=t).alias(c) for c, t in missing.items()
                                 if c not in joined.collect_schema())
    return (joined.join(genes.select("gene_id", "symbol"), on="gene_id", how="left")
            .with_columns(pl.lit(study_id).alias("study_id"))
            .select("study_id", "sample_id", "gene_id", "symbol", "rna_log2", "rna_zscore", "rna_assay",
                    "protein_log2", "protein_zscore", "protein_assay", "protein_ambiguous", "cn_call", "cn_log2",
                    "mutated", "mutation_classes"))
