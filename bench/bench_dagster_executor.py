"""A small study's run through Dagster, by executor: every step in the run's process, or a process per step.

What the landing sensor, the nightly schedule and the UI launch: ``dagster asset materialize`` of one study
partition's assets (the study job's groups) in a fresh ``DAGSTER_HOME`` (Dagster's default SQLite storage), with
``OMICSDW_EXECUTOR`` set to each executor in turn, alternating, each run its own process tree; wall time and CPU
seconds (user + system of the command and the step processes it waits for). The study is one of
``make_studies.py`` (80 samples x 700 genes, one contrast), the issue's "small study".

    python bench/bench_dagster_executor.py --pairs 2 [--executors in_process multiprocess]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DAGSTER = str(Path(sys.executable).with_name("dagster"))
GROUPS = " or ".join(f"group:{g}" for g in ("ingest", "normalise", "signatures", "cross_omics", "qc", "publish",
                                              "report"))


def run(study: Path, executor: str) -> dict[str, float]:
    """One materialisation of the study's partition in a fresh Dagster home and warehouse."""
    with tempfile.TemporaryDirectory(dir=BENCH / "out") as tmp:
        landing, home = Path(tmp) / "landing", Path(tmp) / "home"
        shutil.copytree(study, landing / study.name)
        home.mkdir()
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        env = {**os.environ, "DAGSTER_HOME": str(home), "OMICSDW_LANDING": str(landing),
               "OMICSDW_WAREHOUSE": str(Path(tmp) / "wh"), "OMICSDW_EXECUTOR": executor,
               "DAGSTER_TELEMETRY_DISABLED": "1"}
        subprocess.run([sys.executable, "-c", "import dagster as dg; dg.DagsterInstance.get()."
                        f"add_dynamic_partitions('studies', [{study.name!r}])"], env=env, check=True, cwd=ROOT)
        load = os.getloadavg()[0]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run([DAGSTER, "asset", "materialize", "-m", "orchestration.definitions", "--select", GROUPS,
                               "--partition", study.name], env=env, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise SystemExit(f"{executor} failed:\n{done.stderr[-3000:]}")
    return {"wall_s": wall, "load": load,
            "cpu_s": after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--executors", nargs="+", default=["in_process", "multiprocess"])
    args = parser.parse_args()
    (BENCH / "out").mkdir(exist_ok=True)
    landing = BENCH / "out" / "dagster_executor_landing"
    if not (landing / ".done").exists():
        shutil.rmtree(landing, ignore_errors=True)
        subprocess.run([sys.executable, str(BENCH / "make_studies.py"), "--studies", "1", "--out", str(landing)],
                       check=True, cwd=ROOT)
        (landing / ".done").touch()
    study = next(p for p in sorted(landing.iterdir()) if p.is_dir())
    print(f"{time.strftime('%Y-%m-%d %H:%M')} UTC; study {study.name}\n")
    print("| pair | executor | load | wall s | CPU s |\n|---|---|---|---|---|")
    figures: dict[str, list[dict[str, float]]] = {e: [] for e in args.executors}
    for pair in range(1, args.pairs + 1):
        order = args.executors if pair % 2 else args.executors[::-1]
        for executor in order:
            result = run(study, executor)
            figures[executor].append(result)
            print(f"| {pair} | {executor} | {result['load']:.1f} | {result['wall_s']:.1f} | {result['cpu_s']:.1f} |",
                  flush=True)
    print()
    for executor, runs in figures.items():
        print(f"{executor}: median {statistics.median(r['wall_s'] for r in runs):.1f} s wall, "
              f"{statistics.median(r['cpu_s'] for r in runs):.1f} CPU s")


if __name__ == "__main__":
    main()
