"""VCF parsing benchmark: ``bcftools query`` vs ``parse_vcf`` (read + consequence choice + collect).

Each run is its own process timed by ``/usr/bin/time`` (wall seconds, CPU seconds user+sys, peak RSS); median
of ``--runs`` runs, peers interleaved; the ratios are ours / bcftools in the same session. CPU seconds are the
steadier figure when other processes load the machine. The input is made by ``bench/make_vcf.py``.

Usage: ``python bench/bench_vcf.py [VCF.gz] [--runs 3] [--baseline DIR]``; ``--baseline`` adds ``parse_vcf`` from
another source tree as a third peer (e.g. ``git archive <commit> transforms schemas | tar -x -C DIR``), so a
change is measured against its predecessor in the same session.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BCFTOOLS = ["bcftools", "query", "-f", "%CHROM\t%POS\t%REF\t%ALT\t%INFO/CSQ[\t%AD]\n"]
OURS = (
    "import sys; from pathlib import Path; from transforms.issues import IssueLog; "
    "from transforms.ingest.parse.vcf import parse_vcf; "
    "frame = parse_vcf(Path(sys.argv[1]), issues=IssueLog('bench')).records.collect(); "
    "print(frame.height, file=sys.stderr)"
)


def timed(command: list[str], cwd: Path = ROOT) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and peak RSS (MiB) of one process; its stdout goes to /dev/null."""
    result = subprocess.run(["/usr/bin/time", "-f", "@@ %e %U %S %M", *command], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, cwd=cwd, check=True)
    line = next(x for x in result.stderr.splitlines() if x.startswith("@@ "))
    wall, user, system, rss_kb = line.split()[1:]
    return float(wall), float(user) + float(system), int(rss_kb) / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("vcf", nargs="?", default=str(ROOT / "bench" / "out" / "vep_1m.vcf.gz"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--baseline", type=Path, help="a source tree whose parse_vcf runs as a third peer")
    args = parser.parse_args()
    ours_command = [sys.executable, "-c", OURS, args.vcf]
    peers = {"bcftools query": ([*BCFTOOLS, args.vcf], ROOT), "parse_vcf": (ours_command, ROOT)}
    if args.baseline:
        peers["baseline"] = (ours_command, args.baseline.resolve())
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in peers}
    for _ in range(args.runs):  # interleaved, so load from other processes hits all alike
        for name, (command, cwd) in peers.items():
            results[name].append(timed(command, cwd))
    print("load average after:  {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    medians = {name: tuple(statistics.median(run[i] for run in r) for i in range(3)) for name, r in results.items()}
    for name, (wall, cpu, rss) in medians.items():
        runs = ", ".join(f"{w:.2f}" for w, _, _ in results[name])
        print(f"{name:15s} wall {wall:6.2f} s ({args.records / wall / 1000:4.0f}k records/s)  cpu {cpu:6.2f} s "
              f"({args.records / cpu / 1000:4.0f}k records/cpu-s)  peak {rss:6.0f} MiB  (wall runs: {runs})")
    ours, theirs = medians["parse_vcf"], medians["bcftools query"]
    print(f"ratio parse_vcf / bcftools: wall {ours[0] / theirs[0]:.2f}, cpu {ours[1] / theirs[1]:.2f}")
    if args.baseline:
        base = medians["baseline"]
        print(f"ratio baseline / bcftools: wall {base[0] / theirs[0]:.2f}, cpu {base[1] / theirs[1]:.2f}")


if __name__ == "__main__":
    main()
