"""Synthetic negative-binomial RNA-seq counts: genes x samples, seedable, written as TSV and/or .npy.

Gene means are log-normal (median 50, many low genes, a few very high), dispersions follow DESeq2's parametric
trend ``0.05 + 2 / mean``, and each sample has a log-normal size factor (sd 0.3), so the factors the benchmarks
compute have realistic spread, zeros and all-zero genes.

    python bench/make_counts.py --genes 20000 --samples 5000 --out counts.tsv [--npy counts.npy] [--seed 1]
    python bench/make_counts.py --genes 20000 --samples 20000 --npy-samples-major big.npy   # no TSV

``--npy`` holds a float64 genes x samples block; ``--npy-samples-major`` holds samples x genes so that a block of
samples is one contiguous read (``read_sample_block``), for studies bigger than memory.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import polars as pl

GENE_CHUNK = 1000
SAMPLE_CHUNK = 1000


def _gene_model(genes: int, samples: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    means = np.exp(rng.normal(np.log(50.0), 2.0, size=genes))
    dispersion = 0.05 + 2.0 / means
    size = np.exp(rng.normal(0.0, 0.3, size=samples))
    return means, dispersion, size


def _draw(means: np.ndarray, dispersion: np.ndarray, size: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Counts of the given genes (rows) in the given samples (columns)."""
    mu = means[:, None] * size[None, :]
    n = 1.0 / dispersion[:, None]
    return rng.negative_binomial(n, n / (n + mu)).astype(np.float64)


def make_counts(genes: int, samples: int, *, seed: int = 1) -> np.ndarray:
    """A genes x samples float64 block of NB counts (fits in memory)."""
    means, dispersion, size = _gene_model(genes, samples, seed)
    rng = np.random.default_rng(seed + 1)
    return _draw(means, dispersion, size, rng)


def write_tsv(counts: np.ndarray, out: Path) -> None:
    """Write ``gene_id`` + one integer column per sample, gene chunk by gene chunk."""
    genes, samples = counts.shape
    names = [f"S{j + 1:05d}" for j in range(samples)]
    with out.open("wb") as fh:
        for start in range(0, genes, GENE_CHUNK):
            stop = min(start + GENE_CHUNK, genes)
            frame = pl.DataFrame(counts[start:stop].astype(np.int64), schema=names, orient="row")
            frame = frame.insert_column(0, pl.Series("gene_id", [f"G{i + 1:05d}" for i in range(start, stop)]))
            frame.write_csv(fh, separator="\t", include_header=start == 0)


def write_samples_major(genes: int, samples: int, out: Path, *, seed: int = 1) -> None:
    """Write a samples x genes float64 .npy sample chunk by sample chunk, never holding the whole study."""
    means, dispersion, size = _gene_model(genes, samples, seed)
    rng = np.random.default_rng(seed + 1)
    array = np.lib.format.open_memmap(out, mode="w+", dtype=np.float64, shape=(samples, genes))
    for start in range(0, samples, SAMPLE_CHUNK):
        stop = min(start + SAMPLE_CHUNK, samples)
        array[start:stop] = _draw(means, dispersion, size[start:stop], rng).T
        array.flush()
    del array


def read_sample_block(path: Path, start: int, stop: int) -> np.ndarray:
    """Samples ``start:stop`` of a samples-major .npy as a genes x samples block, by one contiguous read."""
    with path.open("rb") as fh:
        version = np.lib.format.read_magic(fh)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _fortran, dtype = read_header(fh)
        genes = shape[1]
        fh.seek(start * genes * dtype.itemsize, 1)
        block = np.fromfile(fh, dtype=dtype, count=(stop - start) * genes)
    return block.reshape(stop - start, genes).T


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genes", type=int, default=20000)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="TSV path (genes x samples, integer counts)")
    parser.add_argument("--npy", type=Path, help="genes x samples float64 .npy path")
    parser.add_argument("--npy-samples-major", type=Path, help="samples x genes float64 .npy path (block-wise)")
    args = parser.parse_args()
    if args.npy_samples_major:
        write_samples_major(args.genes, args.samples, args.npy_samples_major, seed=args.seed)
    if args.out or args.npy:
        counts = make_counts(args.genes, args.samples, seed=args.seed)
        if args.npy:
            np.save(args.npy, counts)
        if args.out:
            write_tsv(counts, args.out)


if __name__ == "__main__":
    main()
