"""Whole study build benchmark: ``omicsdw build`` (ingest + normalise + VST) of one count-matrix study, against
the ingest alone and bare polars read-unpivot-write of the same file.

The peers and the input are those of ``bench_ingest.py`` (same synthetic 20,000-gene TSV, each peer in its own
process under ``/usr/bin/time``: wall, CPU and peak RSS of the whole process):

- ``omicsdw_cli``: ``omicsdw build --landing <study> --warehouse <fresh dir>``: the Dagster run of every study
  asset (reference tables, ingest, sample factors, normalised expression, VST) and the catalog;
- ``omicsdw``: ``read_study`` + ``load_study`` (the ingest alone, no Dagster);
- ``polars``: ``scan_csv -> unpivot -> sink_parquet``, the baseline of the goal in ``PERFORMANCE.md``
  (build within 4x of it at 1,000 samples).

    python bench/bench_study_build.py --samples 1000 5000 [--repeats 1] [--peers omicsdw_cli omicsdw polars]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from bench_ingest import bench_size  # noqa: E402

PEERS = ["omicsdw_cli", "omicsdw", "polars"]


def markdown(results: dict[str, object]) -> str:
    lines = ["| samples | peer | runs | wall s | CPU s | peak RSS GiB | wall / polars | wall / ingest | CPU / ingest |",
             "|---|---|---|---|---|---|---|---|---|"]
    for samples, entry in results["sizes"].items():
        med = entry["median"]
        polars, ingest = med.get("polars"), med.get("omicsdw")
        for peer, m in med.items():
            over_polars = f"{m['wall_s'] / polars['wall_s']:.2f}" if polars else "-"
            over_ingest = [f"{m[k] / ingest[k]:.2f}" if ingest else "-" for k in ("wall_s", "cpu_s")]
            lines.append(f"| {int(samples):,} | {peer} | {m['n']} | {m['wall_s']:.1f} | {m['cpu_s']:.1f} | "
                         f"{m['rss_gib']:.2f} | {over_polars} | {' | '.join(over_ingest)} |")
        for peer, why in entry["skipped"].items():
            lines.append(f"| {int(samples):,} | {peer} | 0 | skipped: {why} | | | | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--peers", nargs="+", choices=PEERS, default=PEERS)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=BENCH / "out")
    parser.add_argument("--json", type=Path, help="results file (default: <workdir>/results_study_build.json)")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {"date": time.strftime("%Y-%m-%d %H:%M"), "load_avg_start": os.getloadavg(),
                                  "sizes": {}}
    for samples in args.samples:
        results["sizes"][samples] = bench_size(samples, workdir=args.workdir, peers=args.peers,
                                               repeats=args.repeats, pandas_max_samples=0,
                                               cli_max_samples=samples)
    results["load_avg_end"] = os.getloadavg()
    (args.json or args.workdir / "results_study_build.json").write_text(json.dumps(results, indent=2))
    print(f"{results['date']}, load average {results['load_avg_start'][0]:.1f} -> {results['load_avg_end'][0]:.1f}")
    print(markdown(results))


if __name__ == "__main__":
    main()
