"""CPU of ``staged_as_utf8`` on a bare-CR ("CSV (Macintosh)") Latin-1 file: no newline, so every chunk is pending.

Main appended each chunk to one buffer and searched all of it for a newline (quadratic in the file's size); the
branch keeps the chunks in a list and searches only the new one. Each code tree (``--code NAME=DIR``, e.g.
``git archive main | tar -x -C DIR``) runs in its own process (user + system CPU of the call, peak RSS); trees
alternate within a repeat, median reported, with the staged output's hash to show the trees agree.

    python bench/bench_staged_utf8.py --code main=/tmp/main --code branch=. [--mib 256] [--chunk-mib 8 1]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = """
import hashlib, resource, sys
from pathlib import Path
import transforms
from transforms.ingest.parse.text import staged_as_utf8
assert transforms.__file__.startswith(sys.argv[3]), transforms.__file__
before = resource.getrusage(resource.RUSAGE_SELF)
with staged_as_utf8(Path(sys.argv[1]), chunk_bytes=int(sys.argv[2])) as staged:
    after = resource.getrusage(resource.RUSAGE_SELF)
    digest = hashlib.sha256()
    while block := staged.read(1 << 24):
        digest.update(block)
cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
print(f"{cpu:.3f} {after.ru_maxrss // 1024} {digest.hexdigest()[:12]}")
"""


def write_mac_csv(path: Path, mib: int) -> None:
    """Lines of ~40 bytes ended by a bare CR, one Latin-1 byte in every tenth."""
    lines = [f"GENE{i:07d},{i % 997},{i % 89}.5,sample\r".encode() if i % 10 else
             f"CAF\xc9{i:07d},{i % 997},{i % 89}.5,sample\r".encode("latin-1") for i in range(100_000)]
    block = b"".join(lines)
    with open(path, "wb") as fh:
        for _ in range(max(1, mib * 1024 * 1024 // len(block))):
            fh.write(block)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", action="append", required=True, help="NAME=DIR of a code tree")
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--chunk-mib", type=float, nargs="+", default=[8.0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench_staged_utf8"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    path = args.workdir / f"mac_{args.mib}.csv"
    if not path.exists():
        write_mac_csv(path, args.mib)
    trees = [c.split("=", 1) for c in args.code]
    print(f"{path.stat().st_size / 2**20:.0f} MiB, bare CR, no newline")
    for chunk_mib in args.chunk_mib:
        runs: dict[str, list[tuple[float, int, str]]] = {name: [] for name, _ in trees}
        for _ in range(args.repeats):
            for name, tree in trees:
                root = str(Path(tree).resolve())
                out = subprocess.run([sys.executable, "-c", CHILD, str(path), str(int(chunk_mib * 2**20)),
                                      root], cwd=root, env={"PYTHONPATH": root}, capture_output=True, text=True,
                                     check=True).stdout.split()
                runs[name].append((float(out[0]), int(out[1]), out[2]))
        first = statistics.median(r[0] for r in runs[trees[0][0]])
        for name, _ in trees:
            cpu = statistics.median(r[0] for r in runs[name])
            print(f"chunk {chunk_mib:g} MiB  {name:8s} CPU {cpu:6.2f} s ({cpu / first:.2f}x)  "
                  f"peak RSS {max(r[1] for r in runs[name])} MiB  output {sorted({r[2] for r in runs[name]})}  "
                  f"runs {[r[0] for r in runs[name]]}")


if __name__ == "__main__":
    main()
