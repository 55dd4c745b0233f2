"""GISTIC 2.0 ``all_lesions`` parsing at cohort scale: peaks x samples cells into per-sample peak records.

Writes a synthetic ``all_lesions.conf_99.txt`` in GISTIC's layout (``--peaks`` amplification and deletion peaks, their
``- CN values`` rows, ``--samples`` sample columns, the trailing tab), then times
:func:`transforms.ingest.parse.gistic2.parse_gistic_lesions` (records collected) in a child process per run, for
each source tree given (``--trees``: this one by default; a frozen copy of another branch to compare), alternating,
``--repeats`` times. CPU is the child's user + system seconds (``os.wait4``), the import of the package included.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
ROOT = Path(__file__).resolve().parent.parent
CHILD = """
import sys
from pathlib import Path
from transforms.ingest.parse.gistic2 import parse_gistic_lesions
from transforms.issues import IssueLog
parsed = parse_gistic_lesions(Path(sys.argv[1]), issues=IssueLog("bench"))
records = parsed.calls.records.collect()
assert records.height == parsed.peaks.height * len(parsed.calls.columns), records.height
print(records.height, records["problem"].null_count())
"""


def write_lesions(path: Path, *, peaks: int, samples: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    annotation = "1p33\tchr1:100-200(probes 1:2)\tchr1:120-180(probes 1:2)\tchr1:50-300(probes 1:3)\t0.01\t0.01\t\t"
    with path.open("w") as fh:
        fh.write("Unique Name\tDescriptor\tWide Peak Limits\tPeak Limits\tRegion Limits\tq values\tResidual q values "
                 "after removing segments shared with higher peaks\tBroad or Focal\tAmplitude Threshold\t"
                 + "\t".join(f"S{i}" for i in range(samples)) + "\t\n")
        rows = (("", "0: t<0.1; 1: 0.1<t< 0.9; 2: t>0.9"), (" - CN values", "Actual Copy Change Given"))
        for suffix, threshold in rows:
            for kind in ("Amplification", "Deletion"):
                for number in range(1, peaks // 2 + 1):
                    cells = ("\t".join(rng.choice("0001112") for _ in range(samples)) if not suffix
                             else "\t".join(f"{rng.uniform(-1.5, 2.5):.5g}" for _ in range(samples)))
                    fh.write(f"{kind} Peak {number:2d}{suffix}\t{annotation}{threshold}\t{cells}\t\n")


def run(tree: Path, path: Path) -> tuple[float, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], env=env, cwd=tree, stdout=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    assert proc.stdout is not None
    proc.stdout.read()
    if status != 0:
        raise SystemExit(f"{tree}: child failed ({status})")
    return usage.ru_utime + usage.ru_stime, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--peaks", type=int, default=100)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trees", nargs="+", type=Path, default=[ROOT])
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    path = OUT / f"all_lesions_{args.peaks}x{args.samples}.conf_99.txt"
    if not path.exists():
        write_lesions(path, peaks=args.peaks, samples=args.samples)
    times: dict[Path, list[tuple[float, float]]] = {tree: [] for tree in args.trees}
    for _ in range(args.repeats):
        for tree in args.trees:
            times[tree].append(run(tree, path))
    print(f"{args.peaks} peaks x {args.samples} samples ({args.peaks * args.samples:,} records), "
          f"{path.stat().st_size:,} bytes; median of {args.repeats}")
    for tree, runs in times.items():
        cpu = statistics.median(c for c, _ in runs)
        wall = statistics.median(w for _, w in runs)
        print(f"  {tree}: CPU {cpu:.2f} s (runs {', '.join(f'{c:.2f}' for c, _ in runs)}), wall {wall:.2f} s")


if __name__ == "__main__":
    main()
