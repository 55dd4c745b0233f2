"""Scale model: storage, build time and query latency of 1,000 studies / 200,000 samples / 20,000 genes.

Every input is a measurement of this repository's code on this machine:

- ``--small``: a CPU-time probe (``fixed_cost_probe.py``) of a build of small studies (80 samples x 700 genes):
  CPU seconds per study of each part, the per-study fixed cost.
- ``--big``: the same probe of one study of 100 samples x 18,000 genes: with ``--small``, each asset's CPU
  seconds split into a per-study constant and a part proportional to the study's size.
- ``--monitor``: samples (time, CPU seconds, studies done) of a long ``omicsdw build`` of ``--studies`` small
  studies (``run_many`` below writes it): how the per-study cost grows with the warehouse.
- ``--warehouse``: that build's warehouse: bytes per stored row of every table, Delta history look-up time at its
  commit count, catalog rebuild time at its size, and the latency of typical analyst queries.

The model: a study of S samples x G genes costs ``fixed + sum over assets of slope * size`` CPU seconds, where an
asset's size is S x G when it reads every cell and G when it works per gene (enrichment) or per sample; plus a
term growing with the number of studies already in the warehouse, from the long build. ``--check`` predicts that
long build from the other inputs and prints predicted against measured.

    python bench/scale_model.py --small S.json --big B.json --monitor M.tsv --warehouse WH [--markdown]
    python bench/scale_model.py run-many --landing DIR --warehouse WH --monitor M.tsv   # the long build
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SMALL = (80, 700)
BIG = (100, 18_000)
TARGET = {"studies": 1_000, "samples": 200_000, "genes": 20_000}
PER_GENE = {"gene_set_enrichment"}
"""Assets whose work grows with the genes of a contrast, not with samples (prerank / ORA of one statistic)."""
ONCE_PER_BUILD = {"reference_tables", "gene_set_registry", "signature_matches"}
"""Assets that run once per build, not once per study: counted once, not fitted per study."""
PAIR_CPU_S = 2.0e-4
"""CPU seconds of one (query, target) contrast pair of ``signature_matches`` (bench/README "signature_matches":
~0.2 ms a pair at 50-200 contrasts x 20,000 genes); a full rebuild computes every ordered pair, n (n - 1)."""
MATCH_READ_CPU_S = 8.57 / 100**2
"""CPU seconds per study per study in the warehouse of ``signature_matches``' reads: each study's DE and gene map are
a filter over a scan of every study's files, so one run reads n x n files (8.57 CPU s at 100 studies, measured
2026-12-03 on the 100-study warehouse: bench/README "Scale model", session 8)."""
QUERIES = {
    # name -> (SQL, grain of the table it scans: "cell" = sample x gene rows, "gene" = gene rows per study)
    "one gene in every study (VST by study)": (
        "SELECT v.study_id, avg(v.vst) AS mean_vst, count(*) AS samples FROM rna_vst v "
        "JOIN genes g USING (gene_id) WHERE g.symbol = $symbol GROUP BY v.study_id", "cell"),
    "DE hits per study (padj < 0.05)": (
        "SELECT study_id, count(*) AS hits FROM differential_expression WHERE padj < 0.05 GROUP BY study_id", "gene"),
    "whole-table aggregate (mean log2 CPM per study)": (
        "SELECT study_id, avg(log2_cpm) AS mean_log2_cpm, count(*) AS n_rows FROM rna_normalized "
        "GROUP BY study_id", "cell"),
}
"""Latency at the target: the session's fixed cost (a trivial query) plus the rest in proportion to the rows of
the scanned table (a full scan: DuckDB reads every study's files; the gene filter is applied after reading)."""
COMMON_GENE = ("SELECT g.symbol FROM genes g JOIN differential_expression d USING (gene_id) GROUP BY g.symbol "
               "ORDER BY count(DISTINCT d.study_id) DESC, g.symbol LIMIT 1")
"""The gene of the one-gene query: the one measured in most studies (synthetic studies draw their genes)."""


def asset_costs(probe: dict[str, dict[str, float]], studies: int) -> dict[str, float]:
    """CPU seconds per study of each study asset body in a probe."""
    return {k.removeprefix("asset body: "): v["cpu_s"] / studies for k, v in probe.items()
            if k.startswith("asset body: ")}


def per_study_model(small: dict, big: dict, n_small: int) -> dict[str, tuple[float, float, str]]:
    """Asset -> (constant CPU s per study, CPU s per unit of size, size unit), from the small and the big probe."""
    low, high = asset_costs(small, n_small), asset_costs(big, 1)
    model = {}
    for asset, cost in high.items():
        if asset in ONCE_PER_BUILD:
            continue
        unit = "gene" if asset in PER_GENE else "cell"
        size_low = SMALL[1] if unit == "gene" else SMALL[0] * SMALL[1]
        size_high = BIG[1] if unit == "gene" else BIG[0] * BIG[1]
        base = low.get(asset, 0.0)
        slope = max(cost - base, 0.0) / (size_high - size_low)
        model[asset] = (max(base - slope * size_low, 0.0), slope, unit)
    return model


def study_cpu(model: dict[str, tuple[float, float, str]], samples: float, genes: float) -> dict[str, float]:
    """CPU seconds of one study of ``samples`` x ``genes`` per asset."""
    return {a: c + s * (genes if unit == "gene" else samples * genes) for a, (c, s, unit) in model.items()}


def monitor_curve(path: Path) -> tuple[list[float], float, float]:
    """CPU seconds of each finished study (interpolated at the sample where its count rose), start CPU, total.

    The first study's share includes the process start (imports, reference tables, gene-set registry)."""
    rows = [tuple(map(float, line.split("\t")[:3])) for line in path.read_text().splitlines() if line.strip()]
    done_at: dict[int, float] = {}
    for _, cpu, done in rows:
        done_at.setdefault(int(done), cpu)
    counts = sorted(done_at)
    per_study = [(done_at[b] - done_at[a]) / (b - a) for a, b in itertools.pairwise(counts) if b > a
                 for _ in range(b - a)]
    return per_study, done_at[counts[0]], rows[-1][1]


def fit_line(y: list[float], first: int = 2) -> tuple[float, float]:
    """Least-squares intercept and slope of y[k - 1] against k = first..n (the first study carries the process
    start, so it is left out by default)."""
    x = list(range(first, len(y) + 1))
    y = y[first - 1:]
    slope = statistics.linear_regression(x, y).slope
    return statistics.fmean(y) - slope * statistics.fmean(x), slope


def monitor_totals(path: Path) -> dict[str, float]:
    """Wall and CPU seconds of the long build from its first to its last sample, its peak RSS (GiB, the fifth
    column when recorded) and the load average's range."""
    rows = [[float(x) for x in line.split("\t")] for line in path.read_text().splitlines() if line.strip()]
    return {"wall_s": rows[-1][0] - rows[0][0], "cpu_s": rows[-1][1] - rows[0][1],
            "peak_rss_gib": max((r[4] for r in rows if len(r) > 4), default=float("nan")),
            "load_min": min(r[3] for r in rows), "load_max": max(r[3] for r in rows),
            "load_mean": statistics.fmean(r[3] for r in rows)}


def storage(warehouse: Path) -> dict[str, dict[str, float]]:
    """Per table: rows, bytes and studies of the files the catalog reads (published sets)."""
    from schemas.tables import GLOBAL_TABLES
    from warehouse.catalog import connect

    con = connect(warehouse)
    try:
        tables = [t for (t,) in con.execute("SELECT table_name FROM catalog_versions WHERE files > 0").fetchall()]
        found = {}
        for table in tables:
            columns = {c for (c,) in con.execute("SELECT column_name FROM information_schema.columns WHERE "
                                                 "table_name = ?", [table]).fetchall()}
            rows = con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]  # type: ignore[index]
            found[table] = {"rows": rows, "per_sample": "sample_id" in columns, "per_gene": "gene_id" in columns,
                            "per_study": table not in GLOBAL_TABLES}
        found["_studies"] = {"rows": con.execute("SELECT count(*) FROM studies").fetchone()[0]}  # type: ignore[index]
    finally:
        con.close()
    lake = warehouse / "lake"
    for table, info in found.items():
        if table == "_studies":
            continue
        info["bytes"] = sum(p.stat().st_size for p in (lake / table).rglob("*.parquet")
                            if "_delta_log" not in p.parts)  # data files, not Delta checkpoints
    return found


def query_latency(warehouse: Path, repeats: int = 5) -> dict[str, dict[str, float]]:
    """Fastest of ``repeats`` runs of each query through warehouse.connect (a new session each time: on a shared
    machine the fastest is the least disturbed), and once through
    ``omicsdw sql`` (a whole process: start-up, catalog attach, query, printing)."""
    import warehouse as api

    con = api.connect(warehouse)
    try:
        symbol = con.execute(COMMON_GENE).fetchone()[0]  # type: ignore[index]
    finally:
        con.close()
    found = {}
    for name, (sql, _) in {"trivial (SELECT 1: session cost)": ("SELECT 1", "none"), **QUERIES}.items():
        times, rows = [], 0
        for _ in range(repeats):
            start = time.perf_counter()
            con = api.connect(warehouse)
            try:
                rows = len(con.execute(sql, {"symbol": symbol} if "$symbol" in sql else None).fetchall())
            finally:
                con.close()
            times.append(time.perf_counter() - start)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "warehouse.cli", "sql", sql.replace("$symbol", f"'{symbol}'"),
                        "--warehouse", str(warehouse), "--format", "csv"], check=True, capture_output=True)
        found[name] = {"connect_s": min(times), "cli_s": time.perf_counter() - start, "rows": rows}
    return found


def history_lookup(warehouse: Path) -> dict[str, float]:
    """Seconds of one Delta history look-up of the oldest study in rna_counts: reading the whole commit log (what
    every look-up cost before ``Lake.history`` kept what it read) and ``Lake.last_commit`` in a process that has
    read the log once (a table load plus the commits added since: none here)."""
    from warehouse.lake import Lake

    lake = Lake((warehouse / "lake").resolve())
    commits = len(lake.delta("rna_counts").history())
    first = sorted(lake.scan("studies").select("study_id").collect()["study_id"].to_list())[0]
    start = time.perf_counter()
    for _ in range(5):
        next(c for c in lake.delta("rna_counts").history() if c.get("omicsdw.study") == first)
    full = (time.perf_counter() - start) / 5
    lake.last_commit("rna_counts", first)
    start = time.perf_counter()
    for _ in range(5):
        lake.last_commit("rna_counts", first)
    return {"commits": commits, "seconds": full, "incremental_seconds": (time.perf_counter() - start) / 5}


def catalog_rebuild(warehouse: Path) -> float:
    """Seconds of one catalog rebuild of the warehouse (into a scratch file, the real one untouched)."""
    from warehouse.catalog import _build
    from warehouse.lake import Lake

    scratch = warehouse / ".scale-model-catalog.tmp"
    scratch.unlink(missing_ok=True)
    start = time.perf_counter()
    try:
        _build(Lake((warehouse / "lake").resolve()), scratch, warehouse)
    finally:
        scratch.unlink(missing_ok=True)
    return time.perf_counter() - start


def run_many(landing: Path, warehouse: Path, monitor: Path, build_args: list[str] | None = None) -> None:
    """``omicsdw build`` of the landing (plus ``build_args``, e.g. ``--no-plots``), sampling every 5 s into
    ``monitor``: time, CPU seconds, finished studies, load average and the build's peak RSS so far (GiB)."""
    log = monitor.with_suffix(".log")
    with open(log, "w") as out:
        build = subprocess.Popen([sys.executable, "-m", "warehouse.cli", "build", "--landing", str(landing),
                                  "--warehouse", str(warehouse), *(build_args or [])], stdout=out,
                                 stderr=subprocess.STDOUT)
    tick = os.sysconf("SC_CLK_TCK")
    with open(monitor, "w") as samples:
        while build.poll() is None:
            try:
                fields = Path(f"/proc/{build.pid}/stat").read_text().rsplit(")", 1)[1].split()
                status = Path(f"/proc/{build.pid}/status").read_text()
            except FileNotFoundError:
                break
            cpu = (int(fields[11]) + int(fields[12])) / tick
            peak_kib = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)
            done = sum(1 for line in log.read_text().splitlines()
                       if line.startswith("[") and (" ok (" in line or "FAILED" in line or "unchanged (" in line))
            samples.write(f"{time.time():.1f}\t{cpu:.2f}\t{done}\t{os.getloadavg()[0]:.2f}\t"
                          f"{peak_kib / 2**20:.3f}\n")
            samples.flush()
            time.sleep(5)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "run-many":
        parser = argparse.ArgumentParser()
        parser.add_argument("run_many")
        parser.add_argument("--landing", type=Path, required=True)
        parser.add_argument("--warehouse", type=Path, required=True)
        parser.add_argument("--monitor", type=Path, required=True)
        parser.add_argument("--build-arg", action="append", default=[], dest="build_args",
                            help="extra argument of omicsdw build (repeatable), e.g. --build-arg=--no-plots")
        args = parser.parse_args()
        run_many(args.landing, args.warehouse, args.monitor, args.build_args)
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=Path, required=True, help="probe JSON of small studies")
    parser.add_argument("--small-studies", type=int, required=True, help="studies in the --small build")
    parser.add_argument("--big", type=Path, help="probe JSON of one 100 x 18,000 study (without it: no per-asset "
                                                 "extrapolation of the build)")
    parser.add_argument("--monitor", type=Path, required=True, help="CPU samples of the long build")
    parser.add_argument("--warehouse", type=Path, required=True, help="the long build's warehouse")
    parser.add_argument("--json", type=Path, help="write inputs and predictions here")
    args = parser.parse_args()

    small = json.loads(args.small.read_text())["parts"]
    model = (per_study_model(small, json.loads(args.big.read_text())["parts"], args.small_studies) if args.big
             else {})
    per_study, start_cpu, total_cpu = monitor_curve(args.monitor)
    intercept, growth = fit_line(per_study)
    long_build = monitor_totals(args.monitor)
    history = history_lookup(args.warehouse)
    rebuild = catalog_rebuild(args.warehouse)
    stored = storage(args.warehouse)
    queries = query_latency(args.warehouse)
    load = os.getloadavg()[0]

    # -- check: the long build predicted from the small probe alone (no growth), against the measurement ----
    n = len(per_study)
    bodies = {k.removeprefix("asset body: "): v["cpu_s"] for k, v in small.items() if k.startswith("asset body: ")}
    fixed_small = sum(v for k, v in bodies.items() if k not in ONCE_PER_BUILD) / args.small_studies
    runs = small.get("Dagster runs (execute_in_process, all)") or small["Dagster runs (dg.materialize, all)"]
    runs_overhead = (runs["cpu_s"] - sum(bodies.values())) / args.small_studies
    predicted_flat = fixed_small + runs_overhead
    utilisation = long_build["cpu_s"] / long_build["wall_s"]
    print(f"## Scale model ({time.strftime('%Y-%m-%d %H:%M')} UTC, load average {load:.2f})\n")
    print(f"Long build: {n} studies finished, {total_cpu - start_cpu:.0f} CPU s after the first sample, "
          f"{long_build['wall_s']:.0f} s wall ({60 * n / long_build['wall_s']:.1f} studies a minute, "
          f"{60 * n / long_build['cpu_s']:.1f} per CPU-minute, {utilisation:.2f} CPU s per wall s), peak RSS "
          f"{long_build['peak_rss_gib']:.2f} GiB, load average {long_build['load_min']:.1f}-"
          f"{long_build['load_max']:.1f} (mean {long_build['load_mean']:.1f}); per study "
          f"{statistics.fmean(per_study):.2f} CPU s (first: {per_study[0]:.2f} with the process start; 2-11: "
          f"{statistics.fmean(per_study[1:11]):.2f}, last 10: {statistics.fmean(per_study[-10:]):.2f}); fitted over "
          f"studies 2-{n}: {intercept:.2f} + {growth * 1000:.1f} ms x k for the k-th study.")
    print(f"Check: the small-study probe predicts {predicted_flat:.2f} CPU s per study ({args.small_studies} studies, "
          f"no growth term); measured {statistics.fmean(per_study[1:11]):.2f} for studies 2-11 (ratio "
          f"{statistics.fmean(per_study[1:11]) / predicted_flat:.2f}), mean {statistics.fmean(per_study):.2f} "
          f"(ratio {statistics.fmean(per_study) / predicted_flat:.2f}); the fit's intercept + growth predicts "
          f"{n * intercept + growth * n * (n + 1) / 2:.0f} CPU s for all {n} against "
          f"{sum(per_study):.0f} measured.")
    print(f"Delta history look-up at {history['commits']} commits: {1000 * history['seconds']:.1f} ms reading the "
          f"whole log, {1000 * history['incremental_seconds']:.1f} ms incrementally (Lake.history); catalog rebuild "
          f"at {n} studies: {rebuild:.2f} s.\n")

    # -- target ----------------------------------------------------------------------------------------------
    studies, samples, genes = TARGET["studies"], TARGET["samples"], TARGET["genes"]
    per = samples / studies
    costs = study_cpu(model, per, genes)
    compute = sum(costs.values())
    grown = growth * studies * (studies + 1) / 2
    once = {a: bodies.get(a, 0.0) for a in ONCE_PER_BUILD - {"signature_matches"}}
    once["signature_matches (every contrast pair)"] = PAIR_CPU_S * studies * (studies - 1)
    once["signature_matches (reads: every study's DE filtered from all studies' files)"] = (
        MATCH_READ_CPU_S * studies**2)
    total = studies * (compute + runs_overhead) + grown + sum(once.values())
    print(f"Target: {studies:,} studies x {per:.0f} samples x {genes:,} genes ({samples:,} samples).\n")
    print("| asset | CPU s per study (constant) | CPU s per unit | unit | CPU s per target study | share |")
    print("|---|---|---|---|---|---|")
    for asset, (c, s, unit) in sorted(model.items(), key=lambda kv: -costs[kv[0]]):
        print(f"| {asset} | {c:.2f} | {s:.2e} | {unit} | {costs[asset]:.1f} | {costs[asset] / (compute or 1):.0%} |")
    print(f"| Dagster run overhead | {runs_overhead:.2f} | | | {runs_overhead:.2f} | |")
    print(f"| growth with the warehouse (k-th study: {growth * 1000:.1f} ms x k) | | | | "
          f"{grown / studies:.1f} (mean) | |")
    for asset, cpu in once.items():
        print(f"| {asset}, once per build | | | | {cpu / studies:.2f} ({cpu:,.1f} once) | |")
    if costs:
        print(f"\nBuild of all {studies:,} studies, one `omicsdw build` process: {total:,.0f} CPU s = "
              f"{total / 3600:.1f} CPU hours (a full rebuild: every fingerprint changed); at the long build's "
              f"{utilisation:.2f} CPU s per wall s, {total / utilisation / 3600:.1f} h wall.")
        parts = {**{f"asset `{a}`": c * studies for a, c in costs.items()},
                 "Dagster outside the asset bodies": runs_overhead * studies, "growth with the warehouse": grown,
                 **once}
        small_total = studies * intercept + grown
        print(f"{studies:,} small studies (80 x 700) in one build, from the long build's fit alone: "
              f"{small_total:,.0f} CPU s = {small_total / 3600:.1f} CPU hours, "
              f"of which growth {grown / small_total:.0%}; "
              f"the {studies:,}th study {intercept + growth * studies:.1f} CPU s.")
        ranked = sorted(parts.items(), key=lambda kv: -kv[1])
        print("Bottleneck: " + "; ".join(f"{name} {cpu / 3600:.1f} CPU hours ({cpu / total:.0%})"
                                          for name, cpu in ranked[:3]) + ".\n")

    bytes_total, rows_total = 0.0, 0.0
    print("| table | rows now | bytes / row | rows at target | GiB at target |\n|---|---|---|---|---|")
    published = stored.pop("_studies")["rows"]
    measured_samples = published * SMALL[0]
    for table, info in sorted(stored.items(), key=lambda kv: -kv[1]["bytes"]):
        if not info["rows"]:
            continue
        factor = 1.0
        if info["per_study"]:  # global tables (genes, gene sets) do not grow with studies
            factor = studies / published
            factor *= (per / SMALL[0]) if info["per_sample"] else 1
            factor *= (genes / SMALL[1]) if info["per_gene"] else 1
        rows = info["rows"] * factor
        size = info["bytes"] / info["rows"] * rows
        bytes_total, rows_total = bytes_total + size, rows_total + rows
        print(f"| {table} | {info['rows']:,} | {info['bytes'] / info['rows']:.1f} | {rows:,.0f} | "
              f"{size / 2**30:.1f} |")
    print(f"| **all** | | | {rows_total:,.0f} | **{bytes_total / 2**30:.0f}** |")
    print(f"\n(measured on {published} published studies, {measured_samples:,} samples; bytes per row of a "
          "700-gene study, so the estimate assumes compression stays as it is at 20,000 genes.)\n")

    print("| query | rows out | via warehouse.connect s | via omicsdw sql s | predicted at target s |")
    print("|---|---|---|---|---|")
    scale = {name: studies / published * genes / SMALL[1] * (per / SMALL[0] if grain == "cell" else 1)
             for name, (_, grain) in QUERIES.items()}
    session = queries["trivial (SELECT 1: session cost)"]["connect_s"]
    for name, found in queries.items():
        target = session + max(found["connect_s"] - session, 0.0) * scale.get(name, 0.0)
        print(f"| {name} | {found['rows']} | {found['connect_s']:.3f} | {found['cli_s']:.2f} | {target:.1f} |")
    if args.json:
        args.json.write_text(json.dumps({"model": model, "per_study": per_study, "growth": growth,
                                         "long_build": long_build, "once_per_build": once,
                                         "history": history, "catalog_rebuild_s": rebuild, "storage": stored,
                                         "queries": queries, "total_cpu_s": total, "load": load}, indent=2))


if __name__ == "__main__":
    main()
