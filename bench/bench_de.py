"""Differential expression benchmark: 20,000 genes x 100 samples (50 vs 50), ours vs pydeseq2 alone.

Each peer runs in its own process, one after the other in the same run, on the same synthetic negative-binomial
counts (``make_counts``' model, seed 1, 10 % of genes 2-fold up in the test group); wall and CPU time of the child
process, the fit's own time and the child's peak RSS are reported. Both peers use every core: pydeseq2 its joblib
(loky) worker processes, omicsdw threads. pydeseq2's workers are shut down and waited for before the child exits,
so their CPU time counts in the child's; their largest peak RSS is reported as ``worker_peak_rss_gib`` (the main
process's own as ``peak_rss_gib``).

    python bench/bench_de.py [--genes 20000] [--samples 100] [--peers pydeseq2 omicsdw] [--repeats 1]

Cohort scale (issue 12): ``--samples 1000`` (500 vs 500). The load average is printed before and after each peer;
with ``--repeats`` the peers alternate and the medians close the output.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "out"


def make_input(genes: int, samples: int, path: Path) -> None:
    rng = np.random.default_rng(1)
    means = np.exp(rng.normal(np.log(50.0), 2.0, size=genes))
    dispersion = 0.05 + 2.0 / means
    fold = np.where(rng.random(genes) < 0.1, 2.0, 1.0)
    group = np.arange(samples) >= samples // 2
    mu = means[:, None] * np.where(group, fold[:, None], 1.0) * np.exp(rng.normal(0, 0.3, samples))[None, :]
    size = 1.0 / dispersion[:, None]
    counts = rng.negative_binomial(size, size / (size + mu)).astype(np.float64)
    np.save(path, counts)


def run_peer(peer: str, path: Path) -> dict[str, float]:
    code = f"""
import numpy as np, polars as pl, time, json, sys
counts = np.load({str(path)!r})
n = counts.shape[1]
condition = ["control"] * (n // 2) + ["treated"] * (n - n // 2)
start = time.perf_counter()
if {peer!r} == "omicsdw":
    from transforms.expression.differential import differential_expression
    samples = pl.DataFrame({{"sample_id": [f"s{{i:03d}}" for i in range(n)], "condition": condition}})
    table = differential_expression(counts, genes=[f"g{{i}}" for i in range(counts.shape[0])], samples=samples,
                                    factor="condition", test="treated", reference="control").table
    hits = int((table["padj"] < 0.05).sum())
else:
    import pandas as pd
    from pydeseq2.dds import DeseqDataSet
    from pydeseq2.ds import DeseqStats
    names = [f"s{{i:03d}}" for i in range(n)]
    dds = DeseqDataSet(counts=pd.DataFrame(counts.T.astype(int), index=names,
                                           columns=[f"g{{i}}" for i in range(counts.shape[0])]),
                       metadata=pd.DataFrame({{"condition": condition}}, index=names), design="~condition",
                       quiet=True)
    dds.deseq2()
    stats = DeseqStats(dds, contrast=["condition", "treated", "control"], quiet=True)
    stats.summary()
    hits = int((stats.results_df["padj"] < 0.05).sum())
compute = time.perf_counter() - start
if {peer!r} == "pydeseq2":
    from joblib.externals.loky import get_reusable_executor
    get_reusable_executor().shutdown(wait=True)
import resource
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
print(json.dumps({{"compute_s": round(compute, 1), "hits": hits, "peak_rss_gib": round(peak, 2),
                  "worker_peak_rss_gib": round(workers, 2)}}))
"""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[1])
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--genes", type=int, default=20000)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--peers", nargs="+", choices=["pydeseq2", "omicsdw"], default=["pydeseq2", "omicsdw"])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    path = OUT / f"de_{args.genes}x{args.samples}.npy"
    if not path.exists():
        make_input(args.genes, args.samples, path)
    runs: dict[str, list[dict[str, float]]] = {peer: [] for peer in args.peers}
    for _ in range(args.repeats):
        for peer in args.peers:
            load = os.getloadavg()[0]
            runs[peer].append(run_peer(peer, path))
            print(peer, time.strftime("%H:%M:%S"), f"load {load:.1f} -> ", runs[peer][-1],
                  f"-> load {os.getloadavg()[0]:.1f}", flush=True)
    if args.repeats > 1:
        for peer, results in runs.items():
            print(peer, "median", {key: float(np.median([r[key] for r in results])) for key in results[0]})


if __name__ == "__main__":
    main()
