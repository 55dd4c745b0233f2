"""The catalog rebuild (``refresh_catalog``) of one built warehouse by two code trees, in fresh processes, the trees
alternating: wall and CPU seconds of the rebuild alone, median of the repeats, and the ratio. E.g.:

    git archive main | tar -x -C /tmp/frozen_main
    python bench/bench_catalog_rebuild.py --warehouse DIR --tree main=/tmp/frozen_main --tree branch=. --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

PROBE = """
import json, sys, time
from pathlib import Path
from warehouse.catalog import refresh_catalog
from warehouse.storage import open_lake
wh = Path(sys.argv[1])
lake = open_lake(wh)
wall, cpu = time.perf_counter(), time.process_time()
refresh_catalog(lake, wh)
print(json.dumps({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", required=True, type=Path)
    parser.add_argument("--tree", action="append", required=True, help="NAME=DIR of a code tree")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    trees = dict(item.split("=", 1) for item in args.tree)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for rep in range(args.repeats):
        for name in (list(trees) if rep % 2 == 0 else list(reversed(trees))):
            env = {**os.environ, "PYTHONPATH": str(Path(trees[name]).resolve())}
            out = subprocess.run([sys.executable, "-c", PROBE, str(args.warehouse)], env=env, check=True,
                                 capture_output=True, text=True).stdout
            runs[name].append(json.loads(out.strip().splitlines()[-1]))
    first = next(iter(trees))
    for name, values in runs.items():
        wall = statistics.median(v["wall"] for v in values)
        cpu = statistics.median(v["cpu"] for v in values)
        base = statistics.median(v["wall"] for v in runs[first])
        print(f"{name:10} rebuild wall {wall:6.3f} s  cpu {cpu:6.3f} s  wall ratio to {first}: {wall / base:5.2f}")


if __name__ == "__main__":
    main()
