"""A night through the live daemon: ``dagster-daemon run`` with the landing sensor and ``study_automation``.

Generates N small studies (``make_studies.py``, as ``bench_fixed_cost.py``), starts ``dagster-daemon run -m
orchestration.definitions`` of a code tree (this one, or a frozen copy of main given by ``--code``) in a fresh
``DAGSTER_HOME`` holding the tree's ``orchestration/instance/dagster.yaml``, lets the landing sensor find the studies
and waits until no run is queued or in progress and none was launched for ``--quiet`` seconds (several automation
ticks). Then it stops the daemon and counts, from the instance's run storage: runs per job and status, their wall
time, the materialisations the automation runs made and how many of those were ``unchanged``; and the CPU seconds of
the daemon's whole process tree (its code server and every run process, reaped in turn).

    python bench/daemon_night.py --studies 12 [--code DIR] [--json bench/out/night.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from bench_fixed_cost import landing  # noqa: E402

AUTOMATION_JOB = "__ASSET_JOB"
"""The job name of runs the automation sensor launches (Dagster's implicit asset job)."""


def _count(home: Path) -> dict[str, object]:
    """Runs per job and status, their wall seconds, and the automation runs' materialisations (unchanged ones)."""
    import dagster as dg

    os.environ["DAGSTER_HOME"] = str(home)
    with dg.DagsterInstance.get() as instance:
        records = instance.get_run_records()
        runs: Counter[str] = Counter()
        wall: dict[str, float] = {}
        partitions: dict[str, list[str]] = {}
        written = unchanged = 0
        for record in records:
            run = record.dagster_run
            runs[f"{run.job_name} {run.status.value}"] += 1
            if record.start_time and record.end_time:
                wall[run.job_name] = wall.get(run.job_name, 0.0) + record.end_time - record.start_time
            if run.job_name != AUTOMATION_JOB:
                continue
            partitions.setdefault(run.tags.get("dagster/partition", "-"), []).append(run.run_id[:8])
            for event in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
                written += 1
                meta = event.asset_materialization.metadata if event.asset_materialization else {}
                value = meta.get("unchanged")
                unchanged += bool(value is not None and value.value is True)
    return {"runs": dict(sorted(runs.items())), "run_wall_s": {k: round(v, 1) for k, v in sorted(wall.items())},
            "automation_partitions": {k: len(v) for k, v in sorted(partitions.items())},
            "automation_materialisations": written, "automation_unchanged": unchanged}


def _busy(home: Path) -> tuple[int, int]:
    """(runs not finished, runs in all) of the instance."""
    import dagster as dg

    os.environ["DAGSTER_HOME"] = str(home)
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
        return sum(not r.is_finished for r in runs), len(runs)


def night(code: Path, folder: Path, workdir: Path, *, quiet: float, timeout: float) -> dict[str, object]:
    """One night of ``code`` over the studies in ``folder``: a fresh instance and warehouse in ``workdir``."""
    home, warehouse = workdir / "dagster_home", workdir / "warehouse"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text((code / "orchestration" / "instance" / "dagster.yaml").read_text())
    env = {**os.environ, "DAGSTER_HOME": str(home), "OMICSDW_LANDING": str(folder),
           "OMICSDW_WAREHOUSE": str(warehouse), "OMICSDW_PLOTS": "0", "PYTHONPATH": str(code),
           "DAGSTER_TELEMETRY_DISABLED": "1"}
    env.pop("OMICSDW_EXECUTOR", None)
    daemon = Path(sys.executable).with_name("dagster-daemon")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    start = time.monotonic()
    with open(workdir / "daemon.log", "w") as log:
        process = subprocess.Popen([str(daemon), "run", "-m", "orchestration.definitions"], cwd=code, env=env,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        last_change, seen = time.monotonic(), -1
        try:
            while time.monotonic() - start < timeout:
                time.sleep(5)
                busy, total = _busy(home)
                if busy or total != seen:
                    last_change, seen = time.monotonic(), total
                elif total and time.monotonic() - last_change > quiet:
                    break
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"code": str(code), "load_before": load, "load_after": os.getloadavg()[0],
            "wall_s": round(time.monotonic() - start, 1), "cpu_s": round(cpu, 1), **_count(home)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=12)
    parser.add_argument("--samples", type=int, default=80)
    parser.add_argument("--genes", type=int, default=700)
    parser.add_argument("--code", type=Path, action="append",
                        help="code tree(s) to run, in this order (default: this tree); repeat to alternate")
    parser.add_argument("--quiet", type=float, default=100.0, help="seconds with no run in progress and none new")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    folder = landing(BENCH / "out", args.studies, args.samples, args.genes)
    results = []
    for index, code in enumerate(args.code or [BENCH.parent]):
        workdir = BENCH / "out" / f"night_{index}"  # kept for reading the run storage afterwards (dagster dev)
        shutil.rmtree(workdir, ignore_errors=True)
        result = night(code.resolve(), folder, workdir, quiet=args.quiet, timeout=args.timeout)
        print(json.dumps(result), flush=True)
        results.append(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
