"""Synthetic small RNA-seq study folders: a count matrix with real gene ids, samples.tsv, study.yaml, one contrast.

Genes are drawn from the shipped gene reference (protein-coding genes with an Ensembl id); even-numbered studies
name them by Ensembl gene id, odd-numbered ones by symbol, so both resolver paths run. Counts are negative binomial
as in ``make_counts.py`` (dispersion ``0.05 + 2 / mean``), with 10 % of genes 2-fold up in the test group, so DE
has something to find. Each study draws its own genes, counts and seed.

    python bench/make_studies.py --studies 100 --samples 80 --genes 700 --out bench/out/landing
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from transforms.ingest.genes import GeneReference

STUDY_YAML = """\
study_id: {sid}
name: synthetic study {sid}
description: bench/make_studies.py, seed {seed}; {samples} samples x {genes} genes.
organism: human
reference_genome: GRCh38
samples: samples.tsv
assays:
  - name: counts
    kind: rna_counts
    format: matrix
    path: counts.tsv
    gene_id_type: {id_type}
contrasts:
  - name: treated_vs_control
    factor: condition
    test: treated
    reference: control
"""


def gene_pool() -> pl.DataFrame:
    """Protein-coding reference genes with one Ensembl gene id and a unique symbol: (ensembl, symbol)."""
    reference = GeneReference.load()
    ensembl = (reference.xrefs.filter(pl.col("namespace") == "ensembl_gene")
               .filter(pl.len().over("gene_id") == 1).filter(pl.len().over("xref") == 1)
               .select("gene_id", pl.col("xref").alias("ensembl")))
    genes = (reference.genes.filter(pl.col("biotype") == "protein-coding")
             .filter(pl.len().over("symbol") == 1).select("gene_id", "symbol"))
    return genes.join(ensembl, on="gene_id").sort("gene_id").select("ensembl", "symbol")


def write_study(folder: Path, sid: str, pool: pl.DataFrame, *, samples: int, genes: int, seed: int) -> None:
    """One study folder: counts.tsv (genes x samples), samples.tsv (condition, batch), study.yaml."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    chosen = pool[np.sort(rng.choice(pool.height, size=genes, replace=False))]
    id_type = "ensembl" if seed % 2 == 0 else "symbol"
    ids = chosen["ensembl" if id_type == "ensembl" else "symbol"].to_list()
    names = [f"{sid}_S{j + 1:03d}" for j in range(samples)]
    treated = np.arange(samples) >= samples // 2
    means = np.exp(rng.normal(np.log(100.0), 1.5, size=genes))
    fold = np.where(rng.random(genes) < 0.1, 2.0, 1.0)
    mu = means[:, None] * np.exp(rng.normal(0.0, 0.3, size=samples))[None, :] * np.where(treated, fold[:, None], 1.0)
    n = 1.0 / (0.05 + 2.0 / mu)
    counts = rng.negative_binomial(n, n / (n + mu))
    frame = pl.DataFrame(counts, schema=names, orient="row").insert_column(0, pl.Series("gene_id", ids))
    frame.write_csv(folder / "counts.tsv", separator="\t")
    pl.DataFrame({"sample_id": names, "subject_id": [f"{n}_P" for n in names],
                  "condition": np.where(treated, "treated", "control"),
                  "batch": [f"b{j % 4}" for j in range(samples)]}).write_csv(folder / "samples.tsv", separator="\t")
    (folder / "study.yaml").write_text(STUDY_YAML.format(sid=sid, seed=seed, samples=samples, genes=genes,
                                                         id_type=id_type))


def make_studies(out: Path, studies: int, *, samples: int = 80, genes: int = 700, seed: int = 1,
                 prefix: str = "synth") -> list[str]:
    """Write ``studies`` folders under ``out`` (study ids ``<prefix>_0001``...); returns the ids."""
    pool = gene_pool()
    ids = []
    for i in range(studies):
        sid = f"{prefix}_{i + 1:04d}"
        write_study(out / sid, sid, pool, samples=samples, genes=genes, seed=seed * 100_000 + i)
        ids.append(sid)
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=8)
    parser.add_argument("--samples", type=int, default=80)
    parser.add_argument("--genes", type=int, default=700)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    ids = make_studies(args.out, args.studies, samples=args.samples, genes=args.genes, seed=args.seed)
    print(f"wrote {len(ids)} studies to {args.out}")


if __name__ == "__main__":
    main()
