"""``gene_sample_omics`` in bounded memory: the study's layers split into blocks of whole genes, joined per block.

Every step of :func:`~transforms.cross_omics.joins.gene_sample_omics` is per gene (the source choice, the protein
z-score) or per sample and gene (the joins, copy number, mutation), so the rows of a block of genes joined on their
own are exactly that block's rows of the one-shot join. A study with more than ``rows_per_block`` input rows (all
layers together) is first split in one streaming pass: each input table is written to work files per block
(polars ``PartitionBy`` sink), blocks being contiguous gene-id ranges of about equal input rows. Each block is
then joined on its own and written to its own Parquet file (a gene-id range per file, so a gene filter skips the
other files; not sorted inside: sorting by gene and sample added 70 % to the join's CPU). Memory is bounded by
the block, not the study: a 20,000 x 5,000 study never has more than ``rows_per_block`` input rows in a join. A
smaller study is one block read straight from its inputs (no extra pass). The statistics read the same block
files one at a time (:mod:`transforms.cross_omics.study`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from transforms.cross_omics.joins import gene_sample_omics

ROWS_PER_BLOCK = 8_000_000
"""Input rows (all layers) per gene block: about 1.2 GiB peak for one block of two layers (bench/README.md)."""

INPUT_COLUMNS = {
    "rna_normalized": ["sample_id", "gene_id", "assay", "feature_id", "source", "log2_value", "zscore"],
    "protein_abundance": ["sample_id", "gene_id", "assay", "feature_id", "platform", "is_phospho", "is_ambiguous",
                          "log2_abundance"],
    "copy_number": ["sample_id", "gene_id", "assay", "feature_id", "call", "log2_ratio"],
    "gene_mutation_status": ["sample_id", "gene_id", "mutated", "top_consequence"],
    "variants": ["sample_id", "gene_id", "consequence"],
}
"""The columns of each input the layers read (only these are written to the block work files)."""


def split_by_gene(tables: Mapping[str, pl.LazyFrame], workdir: Path, *, rows_per_block: int = ROWS_PER_BLOCK
                  ) -> list[dict[str, pl.LazyFrame]]:
    """The input tables (keys of :data:`INPUT_COLUMNS`) as blocks of whole genes, each block's tables LazyFrames.

    One block, the gene-mapped rows as they are, when all tables together have at most ``rows_per_block`` such
    rows; otherwise one pass writes each table to ``workdir/<table>/_block=<k>/`` and block ``k`` reads those files.
    """
    rows = {t: tables[t].filter(pl.col("gene_id").is_not_null()).select(c) for t, c in INPUT_COLUMNS.items()}
    per_gene = (pl.concat([f.select("gene_id") for f in rows.values()]).group_by("gene_id").len()
                .sort("gene_id").collect())
    total = int(per_gene["len"].sum())
    count = min(math.ceil(total / rows_per_block), per_gene.height)
    if count <= 1:
        return [rows]
    # contiguous gene ranges of about equal rows: a gene's block from the rows before it; the key counts the
    # block ends a gene id is past (an elementwise expression, as the partitioned sink needs)
    before = per_gene["len"].cum_sum().to_numpy() - per_gene["len"].to_numpy()
    block = np.minimum(before * count // total, count - 1)
    ends = [int(g) for g, b, after in zip(per_gene["gene_id"], block, [*block[1:], count], strict=True) if after != b]
    if len(ends) <= 1:
        return [rows]
    key = pl.sum_horizontal([(pl.col("gene_id") > end).cast(pl.UInt32) for end in ends[:-1]]).alias("_block")
    for table, frame in rows.items():  # one table at a time: one streaming pass each, memory bounded
        # work files read once: lz4 without statistics writes faster than the default zstd (6.4 vs 8.8 CPU s for
        # 40M rows)
        frame.sink_parquet(pl.PartitionBy(workdir / table, key=key, include_key=False), compression="lz4",
                           statistics=False)
    return [{t: _block_files(workdir / t / f"_block={b}", rows[t].collect_schema()) for t in rows}
            for b in range(len(ends))]


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
    paths = []
    blocks = split_by_gene(tables, folder / "blocks", rows_per_block=rows_per_block)
    if len(blocks) > 1:  # the gene dimension is read once, not once per block
        genes = genes.select("gene_id", "symbol").collect().lazy()
    for b, block in enumerate(blocks):
        path = out / f"block-{b:05d}.parquet"
        (gene_sample_omics(block["rna_normalized"], block["protein_abundance"], block["copy_number"],
                           block["gene_mutation_status"], block["variants"], genes, study_id=study_id,
                           non_silent=non_silent, segment_assays=segment_assays).sink_parquet(path))
        paths.append(path)
    return paths
