"""Per-study fixed cost: ``omicsdw build`` of many small studies against ``omicsdw validate`` of the same folders.

Generates N small synthetic studies (``make_studies.py``: 80 samples x 700 genes with real Ensembl ids / symbols,
samples.tsv, study.yaml with one contrast), then in the same run, each command its own process:
``omicsdw validate LANDING`` and ``omicsdw build --landing LANDING --warehouse WH`` (fresh warehouse); wall time,
CPU seconds (user + system of the child) and the build's ratio to validate. ``--profile K`` then builds the
first K studies again with CPU-time probes (``fixed_cost_probe.py``) into another fresh warehouse and splits the
time into parts (imports, Dagster runs, each asset's body, Delta commits, catalog rebuilds, publication, report,
plots).

    python bench/bench_fixed_cost.py --studies 8 [--profile 3] [--json bench/out/fixed_cost.json]
    python bench/bench_fixed_cost.py --studies 8 --jobs 1,2 --repeats 3 --build-arg=--no-plots

``--jobs 1,2``: each repeat runs validate, then one build per value (``omicsdw build --jobs N``, each into a fresh
warehouse), alternating in the given order; the medians are reported per value.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "out"
OMICSDW = [sys.executable, "-m", "warehouse.cli"]

def _child(command: list[str], *, env: dict[str, str] | None = None) -> dict[str, float]:
    """Run a command; wall and CPU seconds of the child (its own rusage, not this process')."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "stdout": done.stdout}  # type: ignore[dict-item]


DAGSTER_HOME: list[Path] = []
"""``--dagster-home DIR``: builds use a Dagster home made afresh in DIR for each build."""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DAGSTER_HOME", None)  # an ephemeral instance, as a first build on a new machine
    env["DAGSTER_TELEMETRY_DISABLED"] = "1"
    return env


def _build_env() -> dict[str, str]:
    """The build's environment: with ``--dagster-home``, a new empty Dagster home with this code's instance config
    (``orchestration/instance/dagster.yaml``, as ``make run`` copies it), else none (the ephemeral instance)."""
    env = _env()
    if DAGSTER_HOME:
        shutil.rmtree(DAGSTER_HOME[0], ignore_errors=True)
        DAGSTER_HOME[0].mkdir(parents=True)
        shutil.copy(ROOT / "orchestration" / "instance" / "dagster.yaml", DAGSTER_HOME[0] / "dagster.yaml")
        env["DAGSTER_HOME"] = str(DAGSTER_HOME[0].resolve())
    return env


def landing(workdir: Path, studies: int, samples: int, genes: int) -> Path:
    """The study folders (regenerated when the parameters changed)."""
    folder = workdir / f"landing_{studies}x{samples}x{genes}"
    if not (folder / ".done").exists():
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run([sys.executable, str(BENCH / "make_studies.py"), "--studies", str(studies), "--samples",
                        str(samples), "--genes", str(genes), "--out", str(folder)], check=True, cwd=ROOT)
        (folder / ".done").touch()
    return folder


def compare(folder: Path, warehouse: Path, build_args: list[str] | None = None,
            validate: dict[str, float] | None = None) -> dict[str, object]:
    """validate (unless given), then build into a fresh warehouse, of the same folders, each its own process."""
    shutil.rmtree(warehouse, ignore_errors=True)
    load = os.getloadavg()[0]
    validate = validate or _child([*OMICSDW, "validate", str(folder)], env=_env())
    build = _child([*OMICSDW, "build", "--landing", str(folder), "--warehouse", str(warehouse),
                    *(build_args or [])], env=_build_env())
    per_study = [float(line.rsplit("(", 1)[1].split()[0]) for line in str(build["stdout"]).splitlines()
                 if line.startswith("[") and line.endswith(" s)")]
    return {"load_before": load, "load_after": os.getloadavg()[0],
            "validate": {k: v for k, v in validate.items() if k != "stdout"},
            "build": {k: v for k, v in build.items() if k != "stdout"}, "study_s": per_study}


def profile(folder: Path, warehouse: Path, studies: list[str], out: Path, build_args: list[str] | None = None
            ) -> dict[str, dict[str, float]]:
    """Build ``studies`` with CPU-time probes (``fixed_cost_probe.py``), with the same ``build_args`` as the timed
    builds (e.g. ``--no-plots``); CPU and wall seconds per part."""
    shutil.rmtree(warehouse, ignore_errors=True)
    selected = [a for s in studies for a in ("--study", s)]
    _child([sys.executable, str(BENCH / "fixed_cost_probe.py"), "--out", str(out), "--", "build", "--landing",
            str(folder), "--warehouse", str(warehouse), *selected, *(build_args or [])], env=_build_env())
    return json.loads(out.read_text())["parts"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=8)
    parser.add_argument("--samples", type=int, default=80)
    parser.add_argument("--genes", type=int, default=700)
    parser.add_argument("--profile", type=int, default=0, help="also profile a build of the first K studies")
    parser.add_argument("--workdir", type=Path, default=OUT / "fixed_cost")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--repeats", type=int, default=1, help="validate + build pairs (median ratio reported)")
    parser.add_argument("--build-arg", action="append", default=[], dest="build_args",
                        help="extra argument of omicsdw build (repeatable), e.g. --build-arg=--no-plots")
    parser.add_argument("--jobs", default="", help="comma-separated --jobs values of omicsdw build, each timed "
                                                   "after the same validate in every repeat (e.g. 1,2)")
    parser.add_argument("--dagster-home", type=Path, help="build with DAGSTER_HOME set to this directory, emptied "
                        "and given this code's orchestration/instance/dagster.yaml before each build (the SQLite "
                        "instance of `make run`); default: no DAGSTER_HOME (the ephemeral instance)")
    args = parser.parse_args()
    if args.dagster_home:
        DAGSTER_HOME.append(args.dagster_home)
    if args.jobs:
        jobs_main(args)
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    folder = landing(args.workdir, args.studies, args.samples, args.genes)
    print(f"{args.studies} studies of {args.samples} samples x {args.genes} genes; {time.strftime('%Y-%m-%d %H:%M')}"
          f" UTC, load average {os.getloadavg()[0]:.2f}", flush=True)
    result: dict[str, object] = {"studies": args.studies, "samples": args.samples, "genes": args.genes,
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    print(f"omicsdw build {' '.join(args.build_args)}".rstrip())
    print("| run | load | command | wall s | CPU s | per study wall s | wall / validate | CPU / validate |")
    print("|---|---|---|---|---|---|---|---|")
    runs = []
    for run in range(1, args.repeats + 1):
        figures = compare(folder, args.workdir / "warehouse", args.build_args)
        runs.append(figures)
        validate, build = figures["validate"], figures["build"]
        assert isinstance(validate, dict)
        assert isinstance(build, dict)
        for name, peer in (("omicsdw validate", validate), ("omicsdw build", build)):
            print(f"| {run} | {figures['load_before']:.1f} -> {figures['load_after']:.1f} | {name} | "
                  f"{peer['wall_s']:.1f} | {peer['cpu_s']:.1f} | {peer['wall_s'] / args.studies:.2f} | "
                  f"{peer['wall_s'] / validate['wall_s']:.1f} | {peer['cpu_s'] / validate['cpu_s']:.1f} |", flush=True)
    cpu, wall, build_cpu, build_wall = _medians(runs)
    print(f"median of {len(runs)}: build / validate {cpu:.1f}x CPU, {wall:.1f}x wall; build "
          f"{build_cpu / args.studies:.2f} CPU s and {build_wall / args.studies:.2f} s wall a study; studies a minute "
          f"{60 * args.studies / build_wall:.1f} wall, {60 * args.studies / build_cpu:.1f} per CPU-minute", flush=True)
    result.update(runs[-1])
    result["runs"] = runs
    if args.profile:
        ids = sorted(p.name for p in folder.iterdir() if p.is_dir())[:args.profile]
        parts = profile(folder, args.workdir / "warehouse_profiled", ids, args.workdir / "probe.json",
                        args.build_args)
        result["profile"] = {"studies": len(ids), "parts": parts}
        print(f"\nWhere a build of {len(ids)} studies spends its time (process CPU s inside each part; parts nest):")
        print("| part | calls | CPU s | CPU s per study | wall s |\n|---|---|---|---|---|")
        for name, spent in sorted(parts.items(), key=lambda kv: -kv[1]["cpu_s"]):
            print(f"| {name} | {spent['calls']:.0f} | {spent['cpu_s']:.2f} | {spent['cpu_s'] / len(ids):.2f} | "
                  f"{spent['wall_s']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


def _medians(runs: list[dict]) -> tuple[float, float, float, float]:
    """Medians over runs: build / validate CPU and wall, the build's CPU and wall seconds."""
    def median(value) -> float:  # type: ignore[no-untyped-def]
        return statistics.median(value(r["build"], r["validate"]) for r in runs)

    return (median(lambda b, v: b["cpu_s"] / v["cpu_s"]), median(lambda b, v: b["wall_s"] / v["wall_s"]),
            median(lambda b, v: b["cpu_s"]), median(lambda b, v: b["wall_s"]))


def jobs_main(args: argparse.Namespace) -> None:
    """``--jobs 1,2``: per repeat one validate, then each jobs value's build, alternating; ratios per value."""
    args.workdir.mkdir(parents=True, exist_ok=True)
    folder = landing(args.workdir, args.studies, args.samples, args.genes)
    values = [int(v) for v in args.jobs.split(",")]
    print(f"{args.studies} studies of {args.samples} samples x {args.genes} genes; {time.strftime('%Y-%m-%d %H:%M')}"
          f" UTC, load average {os.getloadavg()[0]:.2f}; omicsdw build {' '.join(args.build_args)} --jobs "
          f"{args.jobs}", flush=True)
    print("| run | load | command | wall s | CPU s | wall / validate | CPU / validate | studies a minute (wall) |")
    print("|---|---|---|---|---|---|---|---|")
    runs: dict[int, list[dict]] = {v: [] for v in values}
    for run in range(1, args.repeats + 1):
        validate = _child([*OMICSDW, "validate", str(folder)], env=_env())
        print(f"| {run} | {os.getloadavg()[0]:.1f} | omicsdw validate | {validate['wall_s']:.1f} | "
              f"{validate['cpu_s']:.1f} | 1.0 | 1.0 | |", flush=True)
        for jobs in values if run % 2 else values[::-1]:  # alternate which build goes first
            figures = compare(folder, args.workdir / "warehouse", [*args.build_args, "--jobs", str(jobs)], validate)
            build = figures["build"]
            assert isinstance(build, dict)
            runs[jobs].append(figures)
            print(f"| {run} | {figures['load_before']:.1f} -> {figures['load_after']:.1f} | omicsdw build --jobs "
                  f"{jobs} | {build['wall_s']:.1f} | {build['cpu_s']:.1f} | {build['wall_s'] / validate['wall_s']:.1f} "
                  f"| {build['cpu_s'] / validate['cpu_s']:.1f} | {60 * args.studies / build['wall_s']:.1f} |",
                  flush=True)
    for jobs, done in runs.items():
        cpu, wall, build_cpu, build_wall = _medians(done)
        print(f"--jobs {jobs}, median of {len(done)}: build / validate {cpu:.1f}x CPU, {wall:.1f}x wall; build "
              f"{build_cpu:.1f} CPU s, {build_wall:.1f} s wall; {60 * args.studies / build_wall:.1f} studies a "
              "minute", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"studies": args.studies, "jobs": values, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
