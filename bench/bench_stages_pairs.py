"""Two code versions of ``omicsdw build`` on the same 20,000 x N study, in alternating pairs, with the polars peer.

Each pair runs the CLI build of code A, then code B (each its own process, ``PYTHONPATH`` pointing at the code's
folder, a fresh warehouse each time, ``bench_ingest.run_peer``: wall, CPU = user + system, peak RSS), then bare
polars read-unpivot-write of the same TSV; pairs alternate which code goes first, so a machine that drifts slower
over the job costs both the same. Prints one line per run and the medians; ``--json`` keeps them.

    python bench/bench_stages_pairs.py --a DIR_OF_OLD_CODE --b . --samples 1000 --pairs 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from bench_ingest import GENES, run_peer, study_folder, write_counts_tsv  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", type=Path, required=True, help="folder of code A (e.g. a git archive of main)")
    parser.add_argument("--b", type=Path, required=True, help="folder of code B")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=BENCH / "out")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    tsv = args.workdir / f"counts_{GENES}x{args.samples}.tsv"
    if not tsv.exists():
        write_counts_tsv(GENES, args.samples, tsv)
    study = study_folder(tsv, args.workdir, samples=args.samples)
    runs: dict[str, list[dict[str, object]]] = {"a": [], "b": [], "polars": []}
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    for i in range(args.pairs):
        for code in (("a", "b") if i % 2 == 0 else ("b", "a")):
            os.environ["PYTHONPATH"] = str(getattr(args, code).resolve())
            result = run_peer("omicsdw_cli", tsv=tsv, study=study, scratch=args.workdir / f"scratch_pair_{code}")
            result["load_end"] = os.getloadavg()[0]
            runs[code].append(result)
            print(f"pair {i + 1} {code}: {json.dumps(result)}", flush=True)
        os.environ.pop("PYTHONPATH", None)
        result = run_peer("polars", tsv=tsv, study=study, scratch=args.workdir / "scratch_pair_polars")
        runs["polars"].append(result)
        print(f"pair {i + 1} polars: {json.dumps(result)}", flush=True)
    medians = {k: {m: statistics.median(float(r[m]) for r in rs) for m in ("wall_s", "cpu_s", "rss_gib")}
               for k, rs in runs.items()}
    print(f"{started} -> {time.strftime('%H:%M:%S UTC', time.gmtime())}, load now {os.getloadavg()}")
    for k, m in medians.items():
        print(f"{k}: median wall {m['wall_s']:.1f} s, CPU {m['cpu_s']:.1f} s, RSS {m['rss_gib']:.2f} GiB, "
              f"CPU / polars {m['cpu_s'] / medians['polars']['cpu_s']:.1f}")
    if args.json:
        args.json.write_text(json.dumps({"started": started, "runs": runs, "medians": medians}, indent=2))


if __name__ == "__main__":
    main()
