"""``make bench``: the ingest, sample-factor, VCF, DE, ssGSEA, single-cell, fixed-cost and Dagster-executor
benchmarks, each in its own process.

Every benchmark runs with its default arguments (the figures in ``bench/README.md``); ``--quick`` is a smoke run
of a few minutes: 1,000 samples only, a 100,000-record VCF and 100,000 cells, one run each. A failing benchmark is
reported and the others still run; the exit code is 1 if any failed. Inputs and scratch output go to ``bench/out/``.

    python bench/run_all.py [--quick] [--only ingest factors vcf de ssgsea single_cell fixed dagster]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"


def commands(*, quick: bool) -> dict[str, list[list[str]]]:
    """Benchmark name -> the commands it runs (input generation first where the input is missing)."""
    py = sys.executable
    records = 100_000 if quick else 1_000_000
    vcf = OUT / ("vep_100k.vcf.gz" if quick else "vep_1m.vcf.gz")
    make_vcf = [] if vcf.exists() else [[py, str(BENCH / "make_vcf.py"), str(vcf), str(records)]]
    if quick:
        return {
            "ingest": [[py, str(BENCH / "bench_ingest.py"), "--samples", "1000", "--repeats", "1"]],
            "factors": [[py, str(BENCH / "bench_factors.py"), "--samples", "1000"]],
            "vcf": [*make_vcf, [py, str(BENCH / "bench_vcf.py"), str(vcf), "--records", str(records),
                                "--runs", "1"]],
            "de": [[py, str(BENCH / "bench_de.py"), "--genes", "5000"]],
            "ssgsea": [[py, str(BENCH / "bench_ssgsea.py"), "--samples", "200", "--runs", "1"]],
            "single_cell": [[py, str(BENCH / "bench_single_cell.py"), "--cells", "100000"]],
            "fixed": [[py, str(BENCH / "bench_fixed_cost.py"), "--studies", "3"]],
            "dagster": [[py, str(BENCH / "bench_dagster_executor.py"), "--pairs", "1"]],
        }
    return {
        "ingest": [[py, str(BENCH / "bench_ingest.py")]],
        "factors": [[py, str(BENCH / "bench_factors.py")]],
        "vcf": [*make_vcf, [py, str(BENCH / "bench_vcf.py"), str(vcf)]],
        "de": [[py, str(BENCH / "bench_de.py")]],
        "ssgsea": [[py, str(BENCH / "bench_ssgsea.py")]],
        "single_cell": [[py, str(BENCH / "bench_single_cell.py")]],
        "fixed": [[py, str(BENCH / "bench_fixed_cost.py"), "--studies", "8", "--profile", "3"]],
        "dagster": [[py, str(BENCH / "bench_dagster_executor.py")]],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1,000 samples, 100k VCF records")
    parser.add_argument("--only", nargs="+",
                        choices=["ingest", "factors", "vcf", "de", "ssgsea", "single_cell", "fixed", "dagster"],
                        help="run only these")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    print(f"omicsdw benchmarks, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    failed = []
    for name, steps in commands(quick=args.quick).items():
        if args.only and name not in args.only:
            continue
        print(f"\n== {name}", flush=True)
        start = time.monotonic()
        for step in steps:
            if subprocess.run(step, cwd=BENCH.parent, check=False).returncode != 0:
                failed.append(name)
                print(f"== {name} FAILED: {' '.join(step)}", flush=True)
                break
        else:
            print(f"== {name} done in {time.monotonic() - start:.0f} s", flush=True)
    print(f"\n{len(failed)} failed: {', '.join(failed)}" if failed else "\nall benchmarks ran")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
