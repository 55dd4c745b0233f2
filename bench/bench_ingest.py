"""Ingest benchmark: a synthetic 20,000-gene count matrix (TSV) into the warehouse, against bare polars and pandas.

Every peer reads the same TSV in its own process, timed by ``/usr/bin/time`` (whole-process wall seconds and peak
RSS, interpreter start-up and imports included; CPU seconds too, which other processes on the machine disturb
less than wall time):

- ``omicsdw_cli``: ``omicsdw build --landing <study> --warehouse <fresh dir>``, the real pipeline as users run it
  (in-process Dagster run of every study asset: reference tables, parse, harmonise, quarantine, pandera checks,
  Delta commits, then the normalise assets (sample factors, normalised expression, VST) and the catalog);
  ``t_study`` is the study's own time as the CLI prints it; skipped above ``--cli-max-samples``;
- ``omicsdw``: ``read_study`` + ``load_study`` called directly, i.e. the same work without Dagster start-up,
  the reference tables and the catalog;
- ``polars``: ``scan_csv -> unpivot -> sink_parquet``, the baseline of the goal in ``PERFORMANCE.md``;
- ``pandas``: ``read_csv -> melt -> to_parquet``, skipped above ``--pandas-max-samples`` (its memory grows with
  the file: ``PERFORMANCE.md`` measured 18.4 GB at 20,000 samples).

The study folder holds a ``study.yaml`` with one ``rna_counts`` assay (format ``matrix``, ``gene_id_type: auto``)
and a hard link to the TSV, no samples table. Peers are interleaved within a repeat so that load from other
processes hits all of them alike; a peer gets ``--repeats`` runs (median reported) unless its first run took over
a minute, then one. Results: a markdown table on stdout and ``--json``.

    python bench/bench_ingest.py --samples 1000 5000 20000 [--repeats 3] [--peers omicsdw polars pandas]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from make_counts import _draw, _gene_model  # noqa: E402

GENES = 20000
GENE_CHUNK = 500
PEERS = ["omicsdw_cli", "omicsdw", "polars", "pandas"]
ONE_RUN_ABOVE_S = 60.0
STUDY_YAML = """\
study_id: bench_{samples}
name: synthetic negative-binomial counts, {genes} genes x {samples} samples
organism: human
assays:
  - name: counts
    kind: rna_counts
    format: matrix
    path: counts.tsv
    gene_id_type: auto
"""


# ---------------------------------------------------------------------------------------------------- input


def write_counts_tsv(genes: int, samples: int, out: Path, *, seed: int = 1) -> None:
    """``gene_id`` + one integer column per sample, drawn and written a gene chunk at a time.

    Same model as ``make_counts.py`` (log-normal means, DESeq2 dispersion trend, log-normal size factors) but never
    holds the whole matrix, so 20,000 x 20,000 is written in a few hundred MB.
    """
    means, dispersion, size = _gene_model(genes, samples, seed)
    rng = np.random.default_rng(seed + 1)
    names = [f"S{j + 1:05d}" for j in range(samples)]
    tmp = out.with_suffix(".partial")
    with tmp.open("wb") as fh:
        for start in range(0, genes, GENE_CHUNK):
            stop = min(start + GENE_CHUNK, genes)
            block = _draw(means[start:stop], dispersion[start:stop], size, rng).astype(np.int64)
            frame = pl.DataFrame(block, schema=names, orient="row")
            frame = frame.insert_column(0, pl.Series("gene_id", [f"G{i + 1:05d}" for i in range(start, stop)]))
            frame.write_csv(fh, separator="\t", include_header=start == 0)
    tmp.rename(out)


def study_folder(tsv: Path, workdir: Path, *, samples: int) -> Path:
    """A landing folder with one study: ``study.yaml`` and ``counts.tsv`` (a hard link, no copy)."""
    landing = workdir / f"landing_{samples}"
    folder = landing / f"bench_{samples}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "study.yaml").write_text(STUDY_YAML.format(genes=GENES, samples=samples))
    counts = folder / "counts.tsv"
    if not counts.exists():
        os.link(tsv, counts)
    return folder


# --------------------------------------------------------------------------------------------------- workers


def _polars(tsv: Path, out: Path) -> dict[str, object]:
    (pl.scan_csv(tsv, separator="\t")
     .unpivot(index="gene_id", variable_name="column", value_name="count")
     .sink_parquet(out))
    return {"rows": pl.scan_parquet(out).select(pl.len()).collect().item()}


def _pandas(tsv: Path, out: Path) -> dict[str, object]:
    import pandas as pd

    long = pd.read_csv(tsv, sep="\t").melt(id_vars="gene_id", var_name="column", value_name="count")
    long.to_parquet(out, index=False)
    return {"rows": len(long)}


def _omicsdw(study: Path, warehouse: Path) -> dict[str, object]:
    from transforms.ingest.genes import GeneReference
    from transforms.ingest.study import read_study
    from warehouse.lake import Lake
    from warehouse.load import load_study

    t0 = time.perf_counter()
    reference = GeneReference.load()
    t1 = time.perf_counter()
    ingest = read_study(study, reference=reference)
    t2 = time.perf_counter()
    load = load_study(Lake(warehouse / "lake"), ingest)
    t3 = time.perf_counter()
    codes = load.issues.group_by("severity", "code").len().sort("len", descending=True)
    return {"rows": load.writes["rna_counts"].rows if "rna_counts" in load.writes else None, "ok": load.ok,
            "t_reference": t1 - t0, "t_ingest": t2 - t1, "t_load": t3 - t2,
            "issues": [f"{r['severity']}:{r['code']}x{r['len']}" for r in codes.iter_rows(named=True)]}


def run_worker(name: str, source: Path, out: Path) -> None:
    work = {"polars": _polars, "pandas": _pandas, "omicsdw": _omicsdw}[name]
    print(json.dumps(work(source, out)))


# ---------------------------------------------------------------------------------------------------- driver


def timed(command: list[str], *, env: dict[str, str] | None = None) -> dict[str, object]:
    """Wall and CPU (user + system) seconds and peak RSS (GiB) of one process, plus the JSON it reports last."""
    load_avg = os.getloadavg()[0]
    proc = subprocess.run(["/usr/bin/time", "-f", "@@ %e %U %S %M", *command], capture_output=True, text=True,
                          cwd=ROOT, env=env, check=False)
    if proc.returncode != 0:
        stderr = "\n".join(x for x in proc.stderr.splitlines() if not x.startswith("@@ "))
        raise RuntimeError(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{stderr[-4000:]}")
    wall, user, system, rss_kb = next(x for x in proc.stderr.splitlines() if x.startswith("@@ ")).split()[1:]
    lines = proc.stdout.strip().splitlines()
    try:
        report = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        report = {}
    return {"wall_s": float(wall), "cpu_s": float(user) + float(system), "rss_gib": int(rss_kb) / 1024**2,
            "load_avg": load_avg, "stdout": proc.stdout, **report}


def delta_rows(warehouse: Path, table: str) -> int:
    return pl.scan_delta(str(warehouse / "lake" / table)).select(pl.len()).collect().item()


def run_peer(peer: str, *, tsv: Path, study: Path, scratch: Path) -> dict[str, object]:
    """One timed run of one peer; its output is checked for the expected row count, then deleted."""
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    try:
        if peer == "omicsdw_cli":
            env = {**os.environ, "DAGSTER_HOME": str(scratch / "dagster_home"), "DO_NOT_TRACK": "1",
                   "DAGSTER_TELEMETRY_DISABLED": "1"}
            (scratch / "dagster_home").mkdir()
            (scratch / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
            omicsdw = Path(sys.executable).with_name("omicsdw")
            result = timed([str(omicsdw), "build", "--landing", str(study.parent), "--warehouse",
                            str(scratch / "warehouse")], env=env)
            result["rows"] = delta_rows(scratch / "warehouse", "rna_counts")
            found = re.search(r"\.\.\. ok \(([\d.]+) s\)", result.pop("stdout"))
            result["t_study"] = float(found.group(1)) if found else None
        elif peer == "omicsdw":
            result = timed([sys.executable, __file__, "--worker", "omicsdw", "--source", str(study),
                            "--out", str(scratch / "warehouse")])
            del result["stdout"]
            if not result["ok"]:
                raise RuntimeError(f"the study did not load: {', '.join(result['issues'])}")
        else:
            result = timed([sys.executable, __file__, "--worker", peer, "--source", str(tsv),
                            "--out", str(scratch / "long.parquet")])
            del result["stdout"]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return result


def bench_size(samples: int, *, workdir: Path, peers: list[str], repeats: int, pandas_max_samples: int,
               cli_max_samples: int) -> dict[str, object]:
    tsv = workdir / f"counts_{GENES}x{samples}.tsv"
    entry: dict[str, object] = {"tsv_gib": None, "runs": {}, "skipped": {}}
    if not tsv.exists():
        start = time.perf_counter()
        write_counts_tsv(GENES, samples, tsv)
        entry["generate_s"] = time.perf_counter() - start
    entry["tsv_gib"] = tsv.stat().st_size / 1024**3
    study = study_folder(tsv, workdir, samples=samples)
    limits = {"pandas": ("--pandas-max-samples", pandas_max_samples), "omicsdw_cli": ("--cli-max-samples",
                                                                                      cli_max_samples)}
    for peer, (option, limit) in limits.items():
        if peer in peers and samples > limit:
            entry["skipped"][peer] = f"over {option} {limit}"
    active = [p for p in peers if p not in entry["skipped"]]
    runs: dict[str, list[dict[str, object]]] = {p: [] for p in active}
    for round_ in range(repeats):
        for peer in active:
            if peer in entry["skipped"] or (round_ and runs[peer][0]["wall_s"] > ONE_RUN_ABOVE_S):
                continue
            try:
                result = run_peer(peer, tsv=tsv, study=study, scratch=workdir / f"scratch_{peer}")
            except RuntimeError as exc:  # a failing peer is reported, the others still run
                print(f"{samples} {peer} FAILED: {exc}", file=sys.stderr, flush=True)
                entry["skipped"][peer] = "failed (message in the JSON results)"
                entry.setdefault("errors", {})[peer] = str(exc)[-3000:]
                continue
            print(f"{samples} {peer}: {result}", file=sys.stderr, flush=True)
            runs[peer].append(result)
    runs = {p: rs for p, rs in runs.items() if rs}
    entry["runs"] = runs
    entry["median"] = {p: {"wall_s": statistics.median(r["wall_s"] for r in rs),
                           "cpu_s": statistics.median(r["cpu_s"] for r in rs),
                           "rss_gib": statistics.median(r["rss_gib"] for r in rs), "n": len(rs),
                           "rows": rs[0].get("rows")} for p, rs in runs.items()}
    return entry


def markdown(results: dict[str, object]) -> str:
    lines = ["| samples | long rows | peer | runs | wall s | CPU s | peak RSS GiB | wall / polars | CPU / polars |",
             "|---|---|---|---|---|---|---|---|---|"]
    for samples, entry in results["sizes"].items():
        med = entry["median"]
        base = med.get("polars")
        for peer, m in med.items():
            ratios = [f"{m[k] / base[k]:.2f}" if base else "-" for k in ("wall_s", "cpu_s")]
            lines.append(f"| {int(samples):,} | {m['rows'] or 0:,} | {peer} | {m['n']} | {m['wall_s']:.1f} | "
                         f"{m['cpu_s']:.1f} | {m['rss_gib']:.2f} | {' | '.join(ratios)} |")
        for peer, why in entry["skipped"].items():
            lines.append(f"| {int(samples):,} | | {peer} | 0 | skipped: {why} | | | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, nargs="+", default=[1000, 5000, 20000])
    parser.add_argument("--peers", nargs="+", choices=PEERS, default=PEERS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pandas-max-samples", type=int, default=10000,
                        help="skip pandas above this (7.7 GiB at 5,000 here, 18.4 GB at 20,000 in PERFORMANCE.md)")
    parser.add_argument("--cli-max-samples", type=int, default=5000,
                        help="skip `omicsdw build` above this (its normalise stage: 247 s, 6.2 GiB at 5,000)")
    parser.add_argument("--workdir", type=Path, default=BENCH / "out")
    parser.add_argument("--json", type=Path, help="results file (default: <workdir>/results_ingest.json)")
    parser.add_argument("--worker", choices=["polars", "pandas", "omicsdw"], help=argparse.SUPPRESS)
    parser.add_argument("--source", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(args.worker, args.source, args.out)
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 1024**3:.0f} GiB",
        "load_avg_start": os.getloadavg(), "sizes": {},
    }
    for samples in args.samples:
        results["sizes"][samples] = bench_size(samples, workdir=args.workdir, peers=args.peers,
                                               repeats=args.repeats, pandas_max_samples=args.pandas_max_samples,
                                               cli_max_samples=args.cli_max_samples)
    results["load_avg_end"] = os.getloadavg()
    (args.json or args.workdir / "results_ingest.json").write_text(json.dumps(results, indent=2))
    print(f"{results['date']}, {results['machine']}, load average at start {results['load_avg_start'][0]:.2f}")
    print(markdown(results))


if __name__ == "__main__":
    main()
