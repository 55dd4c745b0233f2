"""signature_matches: CMap connectivity of every contrast against every other, from scratch and incrementally.

Input: synthetic DE statistics for ``--contrasts`` contrasts x ``--genes`` genes (seed 0): each contrast is one of
10 shared programmes (so matches have signal) plus noise, with its top 100 up / down genes as its own query
(:func:`transforms.signatures.connectivity.contrast_query`). Each step runs in its own child process (wall and CPU time,
peak RSS from ``resource.getrusage``):

- ``full``: every pair of ``n`` contrasts from an empty table (n (n - 1) pairs), for each ``n`` in ``--sizes``;
- ``add``: the table of ``n`` contrasts exists; one more contrast lands; only its pairs (2n rows) are computed
  (:func:`~transforms.signatures.connectivity.match_signatures` keeps every still-valid row).

Both time :func:`match_signatures` (the computation; the Delta commit of the result is not included).

    python bench/bench_signature_matches.py [--genes 20000] [--sizes 50,100,200]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"
sys.path.insert(0, str(BENCH.parent))

from schemas.tables import polars_schema  # noqa: E402
from transforms.signatures import connectivity  # noqa: E402


def statistics(n: int, genes: int) -> list[pl.DataFrame]:
    """(gene_id, stat) of ``n`` contrasts: programme effect + noise; contrast i uses programme i % 10."""
    rng = np.random.default_rng(0)
    programmes = rng.normal(0, 3, size=(10, genes)) * (rng.random((10, genes)) < 0.05)
    gene_ids = np.arange(1, genes + 1, dtype=np.int64)
    return [pl.DataFrame({"gene_id": gene_ids, "stat": programmes[i % 10] + rng.normal(0, 1, genes)})
            for i in range(n)]


def sides(stats: list[pl.DataFrame]) -> tuple[list[connectivity.Query], list[connectivity.Target]]:
    queries, targets = [], []
    for i, frame in enumerate(stats):
        queries.append(connectivity.contrast_query("bench", f"c{i:04d}", frame))
        targets.append(connectivity.make_target("bench", f"c{i:04d}", frame, version="v1"))
    return queries, targets


def run_step(step: str, n: int, genes: int, result: Path) -> None:
    """Compute one step in this (child) process and write its figures to ``result``."""
    empty = pl.DataFrame(schema=polars_schema("signature_matches"))
    table_path = OUT / f"matches_{n}x{genes}.parquet"
    if step == "full":
        queries, targets = sides(statistics(n, genes))
        existing = empty
    else:  # add: the table of the first n contrasts exists (written by the full step of n)
        queries, targets = sides(statistics(n + 1, genes))
        existing = pl.read_parquet(table_path).select(list(empty.columns))
    start, cpu = time.perf_counter(), time.process_time()
    table, computed = connectivity.match_signatures(queries, targets, existing)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    if step == "full":
        table.write_parquet(table_path)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result.write_text(json.dumps({"step": step, "contrasts": n, "genes": genes, "wall_s": wall, "cpu_s": cpu,
                                  "pairs_computed": computed, "rows": table.height, "peak_rss_mb": peak}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--sizes", default="50,100,200")
    parser.add_argument("--step", choices=["full", "add"], help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        run_step(args.step, args.n, args.genes, args.result)
        return
    OUT.mkdir(exist_ok=True)
    print("| step | contrasts | pairs computed | rows in table | wall s | CPU s | CPU us / pair | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    for n in [int(s) for s in args.sizes.split(",")]:
        for step in ("full", "add"):
            result = OUT / f"matches_{step}_{n}.json"
            subprocess.run([sys.executable, __file__, "--step", step, "--n", str(n), "--genes", str(args.genes),
                            "--result", str(result)], check=True)
            r = json.loads(result.read_text())
            label = f"{n}" if step == "full" else f"{n} + 1"
            per_pair = 1e6 * r["cpu_s"] / max(r["pairs_computed"], 1)
            print(f"| {step} | {label} | {r['pairs_computed']:,} | {r['rows']:,} | {r['wall_s']:.2f} | "
                  f"{r['cpu_s']:.2f} | {per_pair:.0f} | {r['peak_rss_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
