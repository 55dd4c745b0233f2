"""Peak memory of a count matrix with one line that is not UTF-8: ``parse_matrix`` + its records sunk to Parquet.

One Latin-1 feature id (``CAF\\xc9...`` on line 10,001) sends the matrix parser down its fallback: each such line
is read as Windows-1252 and the scans read a UTF-8 copy of the file. Session 18 stages that copy in a temporary
file, a chunk at a time, where main held it in memory (read, split into lines, joined: ~3x the file).

Each code tree (``--code NAME=DIR``, e.g. ``git archive main | tar -x -C DIR``) runs in its own process, timed by
``/usr/bin/time`` (wall, user + system CPU, peak RSS at the end) with the peak RSS once ``parse_matrix`` returned
(the transcoding and the row checks' scan: the sink of 100 M records that follows has a peak of its own); trees
alternate within a repeat, median reported. The same
file made ASCII is run once per tree as the reference of a file that needs no fallback.

    python bench/bench_latin1_matrix.py --code main=/tmp/main --code branch=. [--samples 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from bench_ingest import write_counts_tsv  # noqa: E402

CHILD = """
import resource
import sys
from pathlib import Path
import transforms
from transforms.ingest.parse.matrix import parse_matrix
assert transforms.__file__.startswith(sys.argv[3]), transforms.__file__
from transforms.issues import IssueLog
issues = IssueLog("bench")
parsed = parse_matrix(Path(sys.argv[1]), issues=issues)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
parsed.records.sink_parquet(sys.argv[2])
print([(i.code, i.line) for i in issues.issues])
"""


def latin1_copy(ascii_tsv: Path, out: Path, *, line: int = 10_001) -> None:
    """``ascii_tsv`` with the feature id of ``line`` made Latin-1 (``G10000`` -> ``CAF\\xc9G10000``), streamed."""
    if out.exists():
        return
    with ascii_tsv.open("rb") as src, out.with_suffix(".partial").open("wb") as dst:
        for number, text in enumerate(src, start=1):
            dst.write(b"CAF\xc9" + text if number == line else text)
    out.with_suffix(".partial").rename(out)


def run(code: Path, tsv: Path, workdir: Path) -> dict[str, float | str]:
    """One child process on ``tsv`` with ``code`` first on the path (and its folder: ``python -c`` puts the working
    directory before PYTHONPATH): wall, CPU and peak RSS."""
    timing = workdir / "time.txt"
    out = workdir / "records.parquet"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(code), "POLARS_MAX_THREADS": "2"}
    done = subprocess.run(["/usr/bin/time", "-o", str(timing), "-f", "%e %U %S %M", sys.executable, "-c", CHILD,
                           str(tsv), str(out), str(code)], env=env, cwd=code, capture_output=True, text=True,
                          check=True)
    wall, user, system, rss_kib = timing.read_text().split()[-4:]
    out.unlink()
    parsed_kib, issues = done.stdout.strip().split("\n", 1)
    return {"wall": float(wall), "cpu": float(user) + float(system), "rss_mib": int(rss_kib) / 1024,
            "parse_rss_mib": int(parsed_kib) / 1024, "issues": issues}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--code", action="append", required=True, help="NAME=DIR of a code tree")
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--genes", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=BENCH / "out" / "latin1")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    ascii_tsv = args.workdir / f"counts_{args.genes}x{args.samples}.tsv"
    if not ascii_tsv.exists():
        write_counts_tsv(args.genes, args.samples, ascii_tsv)
    latin1 = args.workdir / f"counts_{args.genes}x{args.samples}_latin1.tsv"
    latin1_copy(ascii_tsv, latin1)
    codes = {name: Path(path).resolve() for name, path in (c.split("=", 1) for c in args.code)}
    print(f"file: {latin1.stat().st_size / 2**20:.0f} MiB, {args.genes} x {args.samples}", flush=True)
    runs: dict[tuple[str, str], list[dict[str, float | str]]] = {}
    for repeat in range(args.repeats):
        for name, code in codes.items():
            result = run(code, latin1, args.workdir)
            runs.setdefault((name, "latin1"), []).append(result)
            print(repeat, name, "latin1", result, flush=True)
    for name, code in codes.items():
        result = run(code, ascii_tsv, args.workdir)
        runs.setdefault((name, "ascii"), []).append(result)
        print("ascii", name, result, flush=True)
    print("\n| code | file | runs | wall s (median) | CPU s (median) | peak RSS after parse_matrix, MiB (runs) | "
          "median | peak RSS at the end, MiB (runs) | median |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (name, kind), results in runs.items():
        parse = [float(r["parse_rss_mib"]) for r in results]
        rss = [float(r["rss_mib"]) for r in results]
        print(f"| {name} | {kind} | {len(results)} | {statistics.median(float(r['wall']) for r in results):.1f} | "
              f"{statistics.median(float(r['cpu']) for r in results):.1f} | "
              f"{' / '.join(f'{x:.0f}' for x in parse)} | {statistics.median(parse):.0f} | "
              f"{' / '.join(f'{x:.0f}' for x in rss)} | {statistics.median(rss):.0f} |")


if __name__ == "__main__":
    main()
