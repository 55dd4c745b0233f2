"""``gene_sample_omics`` in bounded memory: the study's layers split into blocks of whole genes, joined per block.

Every step of :func:`~transforms.cross_omics.joins.gene_sample_omics` is per gene (the source choice, the protein
z-score) or per sample and gene (the joins, copy number, mutation), so the rows of a block of genes joined on their
own are exactly that block's rows of the one-shot join. First one pass over the study's RNA and protein rows
chooses each gene's source (:func:`~transforms.cross_omics.joins.source_summary`, small) and counts the rows per
gene. A study with more than ``rows_per_block`` input rows (all layers together) is then split in one streaming
pass: each layer is written to work files per block (polars ``PartitionBy`` sink), blocks being contiguous gene-id
ranges of about equal input rows; RNA and protein as the winning source's values only (``sample_id, gene_id`` and
two value columns: their source names are per gene and join the rows once at the end). Each block is then joined
on its own and written to its own Parquet file (a gene-id range per file, so a gene filter skips the other files;
not sorted inside: sorting by gene and sample added 70 % to the join's CPU). Memory is bounded by the block, not
the study: a 20,000 x 5,000 study never has more than ``rows_per_block`` input rows in a join. A smaller study is
one block read straight from its inputs (no split). The statistics read the same block files one at a time
(:mod:`transforms.cross_omics.study`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from transforms.cross_omics.joins import (
    PROTEIN_LAYER,
    PROTEIN_ORDER,
    RNA_ORDER,
    copy_number_layer,
    gene_names,
    join_layers,
    mutation_layer,
    protein_values,
    rna_values,
    source_summary,
    winners,
    with_protein_zscores,
)

ROWS_PER_BLOCK = 8_000_000
"""Input rows (all layers) per gene block: 1.0-1.4 GiB peak with two layers at 1,000-5,000 samples (bench/README.md)."""

INPUT_COLUMNS = {
    "copy_number": ["sample_id", "gene_id", "assay", "feature_id", "call", "log2_ratio"],
    "gene_mutation_status": ["sample_id", "gene_id", "mutated", "top_consequence"],
    "variants": ["sample_id", "gene_id", "consequence"],
}
"""The columns of each input the copy-number and mutation layers read (only these are written to the block work
files; RNA and protein are written as their winning source's values)."""


def _write_work_file(frame: pl.LazyFrame, path: Path | pl.PartitionBy) -> None:
    """Work files are read once or a few times and never kept (the commit writes the table's own files): lz4
    without statistics writes faster than the default zstd (6.4 vs 8.8 CPU s for 40M rows).
    """
    frame.sink_parquet(path, compression="lz4", statistics=False)


def split_by_gene(frames: Mapping[str, pl.LazyFrame], rows_per_gene: pl.DataFrame, workdir: Path, *,
                  rows_per_block: int = ROWS_PER_BLOCK) -> list[dict[str, pl.LazyFrame]]:
    """``frames`` (one per layer input, gene-mapped rows) as blocks of whole genes, each block's frames LazyFrames.

    ``rows_per_gene`` (``gene_id, len``: the study's input rows per gene) sets the blocks. One block, the frames
    as they are, when there are at most ``rows_per_block`` rows in all; otherwise one pass writes each frame to
    ``workdir/<name>/_block=<k>/`` and block ``k`` reads those files.
    """
    per_gene = rows_per_gene.group_by("gene_id").agg(pl.col("len").sum()).sort("gene_id")
    total = int(per_gene["len"].sum())
    count = min(math.ceil(total / rows_per_block), per_gene.height)
    if count <= 1:
        return [dict(frames)]
    # contiguous gene ranges of about equal rows: a gene's block from the rows before it
    before = per_gene["len"].cum_sum().to_numpy() - per_gene["len"].to_numpy()
    block = np.minimum(before * count // total, count - 1)
    if block[-1] == 0:
        return [dict(frames)]
    _, block = np.unique(block, return_inverse=True)  # numbered 0, 1, ... (a block may get no gene)
    key = pl.LazyFrame({"gene_id": per_gene["gene_id"], "_block": pl.Series(block, dtype=pl.UInt32)})
    for name, frame in frames.items():  # one frame at a time: one streaming pass each, memory bounded
        # the block of each row by a join on the gene (a lookup per row; a sum of comparisons with every block end
        # grows with the blocks)
        _write_work_file(frame.join(key, on="gene_id"), pl.PartitionBy(workdir / name, key="_block",
                                                                        include_key=False))
    return [{n: _block_files(workdir / n / f"_block={b}", frames[n].collect_schema()) for n in frames}
            for b in range(int(block[-1]) + 1)]


def _block_files(folder: Path, schema: pl.Schema) -> pl.LazyFrame:
    if not folder.is_dir():  # no row of this table falls in the block
        return pl.LazyFrame(schema=schema)
    return pl.scan_parquet(folder / "*.parquet", hive_partitioning=False, schema=schema)


def gene_sample_omics_blocks(tables: Mapping[str, pl.LazyFrame], genes: pl.LazyFrame, workdir: str | Path, *,
                             study_id: str, non_silent: list[str], segment_assays: Sequence[str] = (),
                             rows_per_block: int = ROWS_PER_BLOCK) -> list[Path]:
    """``gene_sample_omics`` of one study written block by block: one Parquet file per gene block, their paths in
    gene order. Together the files hold exactly the one-shot join's rows.
    """
    folder = Path(workdir)
    out = folder / "gene_sample_omics"
    out.mkdir(parents=True, exist_ok=True)
    rna_in, protein_in = tables["rna_normalized"], tables["protein_abundance"]
    others = {t: tables[t].filter(pl.col("gene_id").is_not_null()).select(c) for t, c in INPUT_COLUMNS.items()}
    # one pass: each gene's RNA and protein source, every layer's rows per gene, and the study's samples
    rna_sources, protein_sources, *counts = pl.collect_all([
        source_summary(rna_in, value="log2_value", order=RNA_ORDER),
        source_summary(protein_in, value="log2_abundance", order=PROTEIN_ORDER),
        *[frame.group_by("gene_id").len() for frame in others.values()],
        pl.concat([frame.select("sample_id") for frame in (rna_in, protein_in, *others.values())])
        .filter(pl.col("sample_id").is_not_null()).unique()], engine="streaming")
    *counts, samples = counts
    rna, protein = winners(rna_sources), winners(protein_sources)
    present = {"rna": rna_sources.height > 0, "protein": protein_sources.height > 0,
               **{t: c.height > 0 for t, c in zip(others, counts, strict=True)}}
    rows_per_gene = pl.concat([rna_sources.select("gene_id", pl.col("_rows").cast(pl.UInt32).alias("len")),
                               protein_sources.select("gene_id", pl.col("_rows").cast(pl.UInt32).alias("len")),
                               *[c.select("gene_id", pl.col("len").cast(pl.UInt32)) for c in counts]])
    # sample ids as an Enum of the study's samples: joins on its integer codes, not on the strings (a fifth less
    # CPU for a block's join), made strings again as the rows are written
    sample = pl.col("sample_id").cast(pl.Enum(samples["sample_id"].sort()))
    frames = {name: frame.with_columns(sample) for name, frame in
              {"rna": rna_values(rna_in, rna), "protein": protein_values(protein_in, protein), **others}.items()}
    names = gene_names(genes, rna, protein)
    paths = []
    for b, block in enumerate(split_by_gene(frames, rows_per_gene, folder / "blocks", rows_per_block=rows_per_block)):
        layers = [(block["rna"], present["rna"]),
                  (with_protein_zscores(block["protein"].collect()).lazy() if present["protein"]
                   else pl.LazyFrame(schema=PROTEIN_LAYER), present["protein"]),
                  (copy_number_layer(block["copy_number"], segment_assays=segment_assays), present["copy_number"]),
                  (mutation_layer(block["gene_mutation_status"], block["variants"], non_silent=non_silent),
                   present["gene_mutation_status"])]
        path = out / f"block-{b:05d}.parquet"
        _write_work_file(join_layers(layers, names, study_id=study_id), path)
        paths.append(path)
    return paths
