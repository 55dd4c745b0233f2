"""Benchmark: sample factors (library size, TMM, median of ratios) against peers, and block-wise log2 CPM, z-scores
and VST of a 20,000 x 20,000 study.

Each peer runs in its own process under ``/usr/bin/time -v`` (whole-process wall time and peak RSS, loading the
same .npy included); the worker also reports its own load and compute times. Results go to stdout as a markdown
table and to ``--json``.

    python bench/bench_factors.py --workdir bench/out/factors --samples 1000 5000 --repeats 3 --big 20000

``--base DIR`` adds the peer ``ours_base``: our factors computed by the code in DIR (a frozen copy of an earlier
commit, ``git archive <commit> | tar -x -C DIR``), run alternately with ``ours`` in each repeat.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from make_counts import make_counts, read_sample_block, write_samples_major, write_tsv  # noqa: E402

GENES = 20000
PEERS = ["ours", "numpy_mor", "pydeseq2", "conorm"]


# ----------------------------------------------------------------------------------------------------- workers


def _ours(counts: np.ndarray) -> dict[str, np.ndarray | float]:
    from transforms.expression import normalise

    t0 = time.perf_counter()
    lib = normalise.library_sizes(counts)
    t1, c1 = time.perf_counter(), _cpu_seconds()
    tmm = normalise.tmm_factors(counts, library_size=lib)
    t2, c2 = time.perf_counter(), _cpu_seconds()
    sf = normalise.size_factors(counts)
    t3, c3 = time.perf_counter(), _cpu_seconds()
    return {
        "library_size": lib,
        "tmm": tmm,
        "sf": sf,
        "t_lib": t1 - t0,
        "t_tmm": t2 - t1,
        "t_sf": t3 - t2,
        "cpu_tmm": c2 - c1,
        "cpu_sf": c3 - c2,
    }


def _numpy_mor(counts: np.ndarray) -> dict[str, np.ndarray | float]:
    with np.errstate(divide="ignore"):
        logs = np.log(counts)
    log_geomeans = logs.mean(axis=1)
    keep = np.isfinite(log_geomeans)
    return {"sf": np.exp(np.median(logs[keep] - log_geomeans[keep, None], axis=0))}


def _pydeseq2(counts: np.ndarray) -> dict[str, np.ndarray | float]:
    import pandas as pd
    from pydeseq2.dds import DeseqDataSet

    samples = [f"S{j}" for j in range(counts.shape[1])]
    frame = pd.DataFrame(counts.T.astype(np.int64), index=samples, columns=[f"G{i}" for i in range(counts.shape[0])])
    metadata = pd.DataFrame({"condition": ["A"] * len(samples)}, index=samples)
    dds = DeseqDataSet(counts=frame, metadata=metadata, design="~1", quiet=True)
    dds.fit_size_factors()
    return {"sf": np.asarray(dds.obs["size_factors"], dtype=np.float64)}


def _conorm(counts: np.ndarray) -> dict[str, np.ndarray | float]:
    import conorm

    # conorm 1.2.0 passes `interpolation=` to np.nanquantile, a keyword numpy 2.4 removed: map it to `method=`.
    nanquantile = np.nanquantile

    def shim(a, q, *args, interpolation=None, **kwargs):
        if interpolation is not None:
            kwargs["method"] = interpolation
        return nanquantile(a, q, *args, **kwargs)

    np.nanquantile = shim
    return {"tmm": np.asarray(conorm.tmm_norm_factors(counts), dtype=np.float64).ravel()}


WORKERS = {"ours": _ours, "numpy_mor": _numpy_mor, "pydeseq2": _pydeseq2, "conorm": _conorm}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_worker(name: str, npy: Path, out: Path) -> None:
    t0 = time.perf_counter()
    counts = np.load(npy)
    t1, c1 = time.perf_counter(), _cpu_seconds()
    result = WORKERS[name](counts)
    t2, c2 = time.perf_counter(), _cpu_seconds()
    arrays = {k: v for k, v in result.items() if isinstance(v, np.ndarray)}
    np.savez(out, **arrays)
    report = {k: v for k, v in result.items() if not isinstance(v, np.ndarray)}
    report.update(load=t1 - t0, compute=t2 - t1, compute_cpu=c2 - c1)
    print(json.dumps(report))


def run_blockwise(path: Path, block: int) -> None:
    """log2 CPM (TMM), z-scores and VST of a samples-major study, ``block`` samples at a time."""
    from transforms.expression import normalise

    with path.open("rb") as fh:
        np.lib.format.read_magic(fh)
        samples, genes = np.lib.format.read_array_header_1_0(fh)[0]
    starts = list(range(0, samples, block))

    def blocks():
        for s in starts:
            yield read_sample_block(path, s, min(s + block, samples))

    times: dict[str, float] = {}
    t = time.perf_counter()
    # pass 1: library sizes, expressed rows, sqrt sums, log geometric means
    lib, sqrt_sums, expressed, log_sum = [], [], np.zeros(genes, dtype=bool), np.zeros(genes)
    for b in blocks():
        lib.append(normalise.library_sizes(b))
        sqrt_sums.append(np.sqrt(b).sum(axis=0))
        expressed |= (b > 0).any(axis=1)
        log_sum += normalise.fit_log_geomeans([b]) * b.shape[1]
    lib_all, log_geomeans = np.concatenate(lib), log_sum / samples
    # pass 2: upper quartiles -> TMM reference
    f75 = np.concatenate(
        [normalise.upper_quartiles(b, library_size=s, expressed=expressed) for b, s in zip(blocks(), lib, strict=True)]
    )
    ref = normalise.tmm_reference(f75, sqrt_sums=np.concatenate(sqrt_sums))
    ref_counts = read_sample_block(path, ref, ref + 1)[:, 0]
    times["fit_pass_1_2"] = time.perf_counter() - t
    t = time.perf_counter()
    # pass 3: TMM and size factors per block, base means for the VST gene choice
    tmm, sf, normed_sum = [], [], np.zeros(genes)
    for b, s in zip(blocks(), lib, strict=True):
        tmm.append(normalise.tmm_factors_against(b, ref_counts, library_size=s, reference_library_size=lib_all[ref]))
        f = normalise.size_factors_from_reference(b, log_geomeans)
        sf.append(f)
        normed_sum += (b / f).sum(axis=1)
    tmm_all, sf_all = normalise.geometric_mean_scaled(np.concatenate(tmm)), np.concatenate(sf)
    times["factors_pass_3"] = time.perf_counter() - t
    t = time.perf_counter()
    rows = normalise.vst_genes(normed_sum / samples)
    trend = normalise.fit_vst_trend(np.hstack([b[rows] for b in blocks()]), size_factors=sf_all)
    times["vst_trend_fit"] = time.perf_counter() - t
    t = time.perf_counter()
    mean_lib = float(np.mean(lib_all * tmm_all))
    bounds = [(s, min(s + block, samples)) for s in starts]

    def log_cpm_blocks():
        for b, (s, e) in zip(blocks(), bounds, strict=True):
            yield normalise.log2_cpm(b, library_size=lib_all[s:e], norm_factors=tmm_all[s:e],
                                     mean_library_size=mean_lib)

    moments = normalise.row_moments(log_cpm_blocks())
    times["log2cpm_moments_pass_4"] = time.perf_counter() - t
    t = time.perf_counter()
    checksum = 0.0
    for b, (s, e) in zip(blocks(), bounds, strict=True):
        z = normalise.zscore_rows(
            normalise.log2_cpm(b, library_size=lib_all[s:e], norm_factors=tmm_all[s:e], mean_library_size=mean_lib),
            moments=moments,
        )
        v = normalise.vst_transform(b, size_factors=sf_all[s:e], trend=trend)
        checksum += float(np.nansum(z[:10]) + v[:10].sum())
    times["log2cpm_zscore_vst_pass_5"] = time.perf_counter() - t
    times["maxrss_self_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"times": times, "trend": trend._asdict(), "checksum": checksum}))


# ------------------------------------------------------------------------------------------------------ driver


def timed(cmd: list[str]) -> dict:
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed:\n{proc.stderr[-3000:]}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    times = [re.search(rf"{kind} time \(seconds\): ([\d.]+)", proc.stderr) for kind in ("User", "System")]
    cpu = sum(float(t.group(1)) for t in times if t)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"wall": wall, "cpu": cpu, "rss_gb": rss_kb / 1024**2, **report}


def max_rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a / b - 1)))


def bench_factors(workdir: Path, samples: int, repeats: int, base: Path | None = None) -> dict:
    npy = workdir / f"counts_{GENES}x{samples}.npy"
    tsv = workdir / f"counts_{GENES}x{samples}.tsv"
    if not npy.exists():
        counts = make_counts(GENES, samples, seed=1)
        np.save(npy, counts)
        write_tsv(counts, tsv)
        del counts
    peers = ["ours_base", *PEERS] if base else PEERS
    runs: dict[str, list[dict]] = {p: [] for p in peers}
    for repeat in range(repeats):
        # with a base, its run and ours alternate which goes first
        order = peers if repeat % 2 == 0 or not base else ["ours", "ours_base", *PEERS[1:]]
        for peer in order:
            out = workdir / f"factors_{peer}_{samples}.npz"
            script = str(base / "bench" / "bench_factors.py") if peer == "ours_base" and base else __file__
            worker = "ours" if peer == "ours_base" else peer
            cmd = [sys.executable, script, "--worker", worker, "--npy", str(npy), "--out", str(out)]
            runs[peer].append(timed(cmd))
            print(peer, samples, runs[peer][-1], file=sys.stderr, flush=True)
    summary: dict = {p: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for p, rs in runs.items()}
    summary["runs"] = runs
    got = {p: np.load(workdir / f"factors_{p}_{samples}.npz") for p in peers}
    summary["diff"] = {
        **({"tmm_vs_base": max_rel(got["ours"]["tmm"], got["ours_base"]["tmm"]),
            "sf_vs_base": max_rel(got["ours"]["sf"], got["ours_base"]["sf"])} if base else {}),
        "sf_vs_pydeseq2": max_rel(got["ours"]["sf"], got["pydeseq2"]["sf"]),
        "sf_vs_numpy_mor": max_rel(got["ours"]["sf"], got["numpy_mor"]["sf"]),
        "tmm_vs_conorm": max_rel(got["ours"]["tmm"], got["conorm"]["tmm"]),
    }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker", choices=sorted(WORKERS))
    parser.add_argument("--npy", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--blockwise", type=Path, help="samples-major .npy to run block-wise (worker mode)")
    parser.add_argument("--block", type=int, default=2000)
    parser.add_argument("--workdir", type=Path, default=Path("bench/out/factors"))
    parser.add_argument("--samples", type=int, nargs="*", default=[1000, 5000])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--big", type=int, default=0, help="samples of the block-wise run (0: skip)")
    parser.add_argument("--base", type=Path, help="also run our factors from the code in this directory (alternating)")
    parser.add_argument("--json", type=Path, help="where to write the results (default: WORKDIR/results_factors.json)")
    args = parser.parse_args()
    if args.worker:
        run_worker(args.worker, args.npy, args.out)
        return
    if args.blockwise:
        run_blockwise(args.blockwise, args.block)
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    results: dict = {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "factors": {},
                     "load_average": [os.getloadavg()]}
    for n in args.samples:
        results["factors"][n] = bench_factors(args.workdir, n, args.repeats, args.base)
        results["load_average"].append(os.getloadavg())
    if args.big:
        big = args.workdir / f"counts_samples_major_{GENES}x{args.big}.npy"
        if not big.exists():
            start = time.perf_counter()
            write_samples_major(GENES, args.big, big, seed=3)
            results["big_generation_s"] = time.perf_counter() - start
        cmd = [sys.executable, __file__, "--blockwise", str(big), "--block", str(args.block)]
        results["blockwise"] = timed(cmd)
    (args.json or args.workdir / "results_factors.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
