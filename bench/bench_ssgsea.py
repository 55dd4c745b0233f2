"""ssGSEA: omicsdw's vectorised scorer against gseapy 1.3.1's ``ssgsea`` on the same block, each in its own process.

Input: a synthetic log-scale block of ``--genes`` x ``--samples`` (normal values, seed 0, written once to
``bench/out/``) and ``--sets`` gene sets of random genes, sized as the 50 MSigDB Hallmark sets (32-200 genes,
tests/data/genesets) or, with ``--sizes uniform``, 15-500 genes. Each peer runs in a child process (wall time,
CPU time, peak RSS from ``resource.getrusage``), writes its ES matrix, and the parent reports the ratio and the
Pearson r / max |difference| between the two.

    python bench/bench_ssgsea.py [--genes 20000] [--samples 1000] [--sets 50] [--runs 3]
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

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"


def hallmark_sizes() -> list[int]:
    gmt = BENCH.parent / "tests" / "data" / "genesets" / "h.all.v7.4.symbols.gmt"
    return [len(line.split("\t")) - 2 for line in gmt.read_text().splitlines() if line]


def make_input(genes: int, samples: int, sets: int, sizes: str) -> Path:
    path = OUT / f"ssgsea_{genes}x{samples}_{sets}_{sizes}.npz"
    if not path.exists():
        rng = np.random.default_rng(0)
        values = rng.normal(5, 2, size=(genes, samples)).astype(np.float64)
        counts = ([hallmark_sizes()[i % 50] for i in range(sets)] if sizes == "hallmark"
                  else rng.integers(15, 501, size=sets).tolist())
        members = [np.sort(rng.choice(genes, size=c, replace=False)) for c in counts]
        np.savez(path, values=values, **{f"set{i}": m for i, m in enumerate(members)})
    return path


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_peer(peer: str, path: Path, result: Path) -> None:
    """Score the block with one peer; ``compute_s`` times the scoring call only (imports and input set-up before)."""
    data = np.load(path)
    values = data["values"]
    sets = {k: data[k] for k in data.files if k.startswith("set")}
    if peer == "omicsdw":
        import scipy.sparse as sp

        from transforms.signatures.scoring import ssgsea

        rows = np.concatenate([np.full(len(v), i) for i, v in enumerate(sets.values())])
        cols = np.concatenate(list(sets.values()))
        member = sp.csr_array((np.ones(len(rows)), (rows, cols)), shape=(len(sets), values.shape[0]))
        start, before = time.perf_counter(), _cpu()
        es = ssgsea(values, member)
        wall, cpu = time.perf_counter() - start, _cpu() - before
    else:
        import gseapy
        import pandas as pd

        genes = [f"G{i}" for i in range(values.shape[0])]
        frame = pd.DataFrame(values, index=genes, columns=[f"S{j}" for j in range(values.shape[1])])
        gmt = {k: [genes[i] for i in v] for k, v in sets.items()}
        start, before = time.perf_counter(), _cpu()
        res = gseapy.ssgsea(data=frame, gene_sets=gmt, outdir=None, min_size=1, max_size=100000,
                            permutation_num=0, no_plot=True, threads=1, verbose=False).res2d
        wall, cpu = time.perf_counter() - start, _cpu() - before
        es = res.pivot(index="Term", columns="Name", values="ES").astype(float).loc[list(sets), frame.columns]
        es = es.to_numpy()
    np.save(result, es)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"peer": peer, "compute_s": wall, "compute_cpu_s": cpu, "cpu_s": usage.ru_utime + usage.ru_stime,
                      "peak_rss_gib": usage.ru_maxrss / 2**20}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genes", type=int, default=20000)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--sets", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", choices=["hallmark", "uniform"], default="hallmark")
    parser.add_argument("--peer", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        run_peer(args.peer, Path(args.input), Path(args.result))
        return 0
    OUT.mkdir(exist_ok=True)
    path = make_input(args.genes, args.samples, args.sets, args.sizes)
    figures: dict[str, list[dict[str, float]]] = {"omicsdw": [], "gseapy": []}
    for _ in range(args.runs):
        for peer in figures:
            result = OUT / f"ssgsea_{peer}.npy"
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, __file__, "--peer", peer, "--input", str(path), "--result",
                                  str(result)], check=True, capture_output=True, text=True, cwd=BENCH.parent)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            row["process_s"] = time.perf_counter() - t0
            figures[peer].append(row)
    mine, ref = np.load(OUT / "ssgsea_omicsdw.npy"), np.load(OUT / "ssgsea_gseapy.npy")
    r = float(np.corrcoef(mine.ravel(), ref.ravel())[0, 1])
    print(f"{args.sets} sets ({args.sizes} sizes) x {args.genes} genes x {args.samples} samples, {args.runs} run(s), "
          "median:")
    print("| peer | compute s | compute CPU s | process s | process CPU s | peak RSS GiB |")
    print("|---|---|---|---|---|---|")
    med = {}
    for peer, rows in figures.items():
        med[peer] = {k: float(np.median([row[k] for row in rows])) for k in rows[0] if k != "peer"}
        m = med[peer]
        print(f"| {peer} | {m['compute_s']:.2f} | {m['compute_cpu_s']:.2f} | {m['process_s']:.2f} | {m['cpu_s']:.2f} "
              f"| {m['peak_rss_gib']:.2f} |")
    print(f"speed-up (compute): {med['gseapy']['compute_s'] / med['omicsdw']['compute_s']:.1f}x wall, "
          f"{med['gseapy']['compute_cpu_s'] / med['omicsdw']['compute_cpu_s']:.1f}x CPU; "
          f"(whole process): {med['gseapy']['process_s'] / med['omicsdw']['process_s']:.1f}x; "
          f"r = {r:.6f}; max |diff| = {np.abs(mine - ref).max():.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
