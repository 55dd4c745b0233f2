"""One study's cross-omics stage: ``gene_sample_omics`` written block by block of genes to work files (bounded
memory: :mod:`transforms.cross_omics.blocks`), then the per-gene statistics read those files one block at a time,
on a dense genes x samples array per block; the BH FDR of each family is taken over every block at the end.

Copy number enters the statistics as ``cn_log2`` when the study has any log2 ratio, else as the GISTIC call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from schemas.manifest import Contrast
from schemas.tables import CROSS_OMICS_TABLES, polars_schema
from transforms.cross_omics.blocks import ROWS_PER_BLOCK, gene_sample_omics_blocks
from transforms.cross_omics.statistics import (
    MIN_GROUP,
    MIN_SAMPLES,
    bh_fdr,
    block_correlations,
    block_effect_rows,
    dense_pair,
    welch_rows,
    with_fdr,
)

PAIRS = (("rna", "protein"), ("copy_number", "rna"), ("copy_number", "protein"))
"""Layer pairs correlated per gene (layer_x, layer_y)."""


@dataclass
class CrossOmicsOutput:
    """Frames for the commit (``gene_sample_omics`` as LazyFrames over the block work files) and metadata."""

    frames: list[tuple[str, pl.DataFrame | pl.LazyFrame]]
    metadata: dict[str, dict[str, object]] = field(default_factory=dict)


def _blocks(gso: pl.LazyFrame | Sequence[pl.LazyFrame]) -> tuple[list[pl.LazyFrame], pl.LazyFrame]:
    """The blocks of genes (one block: the frame itself) and all of them as one frame."""
    blocks = [gso] if isinstance(gso, pl.LazyFrame) else list(gso)
    return blocks, pl.concat(blocks) if blocks else pl.LazyFrame(schema=polars_schema("gene_sample_omics"))


def _columns(gso: pl.LazyFrame) -> dict[str, str]:
    has_log2 = gso.select(pl.col("cn_log2").is_not_null().any()).collect().item()
    return {"rna": "rna_log2", "protein": "protein_log2", "copy_number": "cn_log2" if has_log2 else "cn_call"}


def _sample_axis(gso: pl.LazyFrame) -> pl.Series:
    """Every sample of the study, sorted: the column axis of every block's dense arrays."""
    return gso.select(pl.col("sample_id").unique()).collect()["sample_id"].sort()


def omics_correlations(gso: pl.LazyFrame | Sequence[pl.LazyFrame], *, study_id: str,
                       min_samples: int = MIN_SAMPLES) -> pl.DataFrame:
    """Spearman and Pearson per gene for each of :data:`PAIRS` (the ``omics_correlations`` contract); ``gso`` is
    the study's ``gene_sample_omics`` rows, or a sequence of blocks of whole genes (read one at a time).
    """
    blocks, whole = _blocks(gso)
    columns, samples = _columns(whole), _sample_axis(whole)
    ambiguous = (whole.filter(pl.col("protein_ambiguous").is_not_null())
                 .group_by("gene_id").agg(pl.col("protein_ambiguous").any()))
    parts = []
    for layer_x, layer_y in PAIRS:
        x, y = columns[layer_x], columns[layer_y]
        found = [block_correlations(block.select("gene_id", "sample_id", x, y)
                                    .filter(pl.col(x).is_not_null() & pl.col(y).is_not_null()).collect(),
                                    x=x, y=y, min_samples=min_samples, samples=samples) for block in blocks]
        parts.append(with_fdr(pl.concat(found), by=["method"]).with_columns(pl.lit(layer_x).alias("layer_x"),
                                                                              pl.lit(layer_y).alias("layer_y")))
    frame = pl.concat(parts).join(ambiguous.collect(), on="gene_id", how="left")
    protein = (pl.col("layer_x") == "protein") | (pl.col("layer_y") == "protein")
    return (frame.with_columns(pl.lit(study_id).alias("study_id"),
                               pl.when(protein).then(pl.col("protein_ambiguous").fill_null(False))
                               .alias("protein_ambiguous"))
            .select(list(polars_schema("omics_correlations"))))


def mutation_effects(gso: pl.LazyFrame | Sequence[pl.LazyFrame], *, study_id: str,
                     min_group: int = MIN_GROUP) -> pl.DataFrame:
    """Welch t-test of each mutated gene's own RNA and protein, mutated vs wild type (``mutation_effects``);
    ``gso`` as in :func:`omics_correlations`.
    """
    blocks, whole = _blocks(gso)
    samples = _sample_axis(whole)
    parts = []
    for layer, column in (("rna", "rna_log2"), ("protein", "protein_log2")):
        found = [block_effect_rows(block.select("gene_id", "sample_id", column, "mutated").filter(
            pl.col(column).is_not_null() & pl.col("mutated").is_not_null()).collect(), value=column,
            min_group=min_group, samples=samples) for block in blocks]
        parts.append(with_fdr(pl.concat(found)).with_columns(pl.lit(layer).alias("layer")))
    return (pl.concat(parts).with_columns(pl.lit(study_id).alias("study_id"))
            .select(list(polars_schema("mutation_effects"))))


def _contrast_groups(attributes: pl.DataFrame, contrast: Contrast) -> pl.DataFrame:
    """``sample_id, group`` (1 test, 0 reference) of a contrast's samples (those its ``filter`` keeps)."""
    rows = attributes.filter(pl.col("attribute") == contrast.factor)
    for attribute, values in contrast.filter.items():
        chosen = attributes.filter((pl.col("attribute") == attribute) & pl.col("value").is_in(values))
        rows = rows.filter(pl.col("sample_id").is_in(chosen["sample_id"].implode()))
    return rows.filter(pl.col("value").is_in([contrast.test, contrast.reference])).select(
        "sample_id", (pl.col("value") == contrast.test).cast(pl.Float64).alias("group"))


def _rna_welch(gso: pl.LazyFrame, groups: pl.DataFrame, *, min_group: int) -> pl.DataFrame:
    """``gene_id, rna_log2fc, rna_padj`` from a Welch t-test of rna_log2 between a contrast's groups: the RNA side
    of studies without counts (log-scale abundances), where differential_expression has no rows.
    """
    rows = (gso.select("gene_id", "sample_id", "rna_log2").filter(pl.col("rna_log2").is_not_null())
            .join(groups.lazy(), on="sample_id").collect())
    if rows.height == 0:
        return pl.DataFrame(schema={"gene_id": pl.Int64, "rna_log2fc": pl.Float64, "rna_padj": pl.Float64})
    genes, values, group = dense_pair(rows, x="rna_log2", y="group")
    test = welch_rows(values, group, min_group=min_group)
    return pl.DataFrame({"gene_id": genes.astype(np.int64), "rna_log2fc": test["mean_difference"],
                         "rna_padj": bh_fdr(test["pvalue"])}, nan_to_null=True)


def biomarker_candidates(gso: pl.LazyFrame, differential: pl.LazyFrame, attributes: pl.DataFrame,
                         correlations: pl.DataFrame, *, contrasts: Sequence[Contrast], study_id: str,
                         has_counts: bool, min_group: int = MIN_GROUP) -> pl.DataFrame:
    """Per contrast and gene with both: the RNA fold change beside a Welch test of protein_log2 between the
    contrast's groups and the gene's RNA-protein Spearman r (the ``biomarker_candidates`` contract).

    The RNA side is DESeq2's (``differential_expression``, ``rna_method`` deseq2) when the contrast has rows there
    (count assays); otherwise a Welch t-test of ``rna_log2`` between the same groups (``rna_method`` welch:
    mean difference of log2 values, BH FDR over the tested genes), so studies of log-scale abundances and protein
    (e.g. TCGA mRNA + RPPA) get candidates too. In a study with counts (``has_counts``) a contrast without rows
    was skipped by DE (a design the samples cannot support): it gets no candidates, not a Welch stand-in, also
    when DE skipped every contrast.
    """
    schema = polars_schema("biomarker_candidates")
    protein = gso.select("gene_id", "sample_id", "protein_log2").filter(pl.col("protein_log2").is_not_null())
    rho = correlations.filter((pl.col("layer_x") == "rna") & (pl.col("layer_y") == "protein")
                              & (pl.col("method") == "spearman")).select("gene_id", pl.col("r").alias("rna_protein_r"))
    parts = []
    for contrast in contrasts:
        groups = _contrast_groups(attributes, contrast)
        rows = protein.join(groups.lazy(), on="sample_id").collect()
        rna = (differential.filter((pl.col("contrast") == contrast.name) & pl.col("gene_id").is_not_null())
               .sort("assay", "feature_id").group_by("gene_id", maintain_order=True).first()
               .select("gene_id", pl.col("log2_fold_change").alias("rna_log2fc"), pl.col("padj").alias("rna_padj"))
               .collect().with_columns(pl.lit("deseq2").alias("rna_method")))
        if rna.height == 0 and not has_counts:  # a contrast DE skipped in a study with counts gets no stand-in
            rna = _rna_welch(gso, groups, min_group=min_group).with_columns(pl.lit("welch").alias("rna_method"))
        if rows.height == 0 or rna.height == 0:
            continue
        genes, values, group = dense_pair(rows, x="protein_log2", y="group")
        test = welch_rows(values, group, min_group=min_group)
        frame = pl.DataFrame({"gene_id": genes.astype(np.int64), "protein_difference": test["mean_difference"],
                              "protein_pvalue": test["pvalue"]}, nan_to_null=True)
        sign = pl.col("rna_log2fc").sign() * pl.col("protein_difference").sign()
        parts.append(rna.join(frame, on="gene_id").join(rho, on="gene_id", how="left").with_columns(
            pl.lit(study_id).alias("study_id"), pl.lit(contrast.name).alias("contrast"),
            pl.when(sign.is_not_null()).then(sign > 0).alias("concordant")))
    if not parts:
        return pl.DataFrame(schema=schema)
    return pl.concat(parts).select(list(schema))


def cross_omics_study(tables: dict[str, pl.LazyFrame], attributes: pl.DataFrame, genes: pl.LazyFrame, *,
                      study_id: str, contrasts: Sequence[Contrast], non_silent: list[str],
                      workdir: str | Path, segment_assays: Sequence[str] = (),
                      rows_per_block: int = ROWS_PER_BLOCK) -> CrossOmicsOutput:
    """Every cross-omics table of one study from its harmonised (``tables``: rna_normalized, protein_abundance,
    copy_number, gene_mutation_status, variants, differential_expression) rows; ``segment_assays``: copy-number
    assays placed on genes from segments (a gene-level assay of the same sample wins over them);
    ``rows_per_block``: input rows per block of genes (bounds memory; the figures do not depend on it).
    """
    paths = gene_sample_omics_blocks(tables, genes, workdir, study_id=study_id, non_silent=non_silent,
                                     segment_assays=segment_assays, rows_per_block=rows_per_block)
    blocks = [pl.scan_parquet(p) for p in paths]
    gso = pl.scan_parquet(paths)
    correlations = omics_correlations(blocks, study_id=study_id)
    effects = mutation_effects(blocks, study_id=study_id)
    has_counts = tables["rna_normalized"].filter(pl.col("source") == "counts").head(1).collect().height > 0
    candidates = biomarker_candidates(gso, tables["differential_expression"], attributes, correlations,
                                      contrasts=contrasts, study_id=study_id, has_counts=has_counts)
    rna_protein = correlations.filter((pl.col("layer_x") == "rna") & (pl.col("layer_y") == "protein")
                                      & (pl.col("method") == "spearman"))["r"]
    frames: list[tuple[str, pl.DataFrame | pl.LazyFrame]] = [
        *[("gene_sample_omics", block) for block in blocks],  # one file per block: gene ranges skip files
        ("omics_correlations", correlations), ("mutation_effects", effects), ("biomarker_candidates", candidates)]
    metadata: dict[str, dict[str, object]] = {
        "gene_sample_omics": {"samples": gso.select(pl.col("sample_id").n_unique()).collect().item(),
                              "genes": gso.select(pl.col("gene_id").n_unique()).collect().item()},
        "omics_correlations": {"median_rna_protein_spearman": rna_protein.median() if rna_protein.len() else None,
                               "rna_protein_genes": rna_protein.len(), "min_samples": MIN_SAMPLES},
        "mutation_effects": {"tested": effects.filter(pl.col("pvalue").is_not_null()).height,
                             "min_group": MIN_GROUP},
    }
    assert set(dict(frames)) == set(CROSS_OMICS_TABLES)
    return CrossOmicsOutput(frames, metadata)


