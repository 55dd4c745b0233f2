"""Single-cell pseudobulk benchmark: omicsdw's block reader vs plain anndata (read fully) + scanpy aggregate.

Input: a synthetic sparse count h5ad (default 1,000,000 cells x 20,000 genes, 5 % non-zeros = 1,000 genes per
cell, counts 1 + geometric(0.5), 20 samples x 10 cell types), written in chunks of cells with h5py into the
skeleton anndata writes (so every reader sees a normal file), never held in memory whole. Peers, each in its own
process, one after the other in the same run:

- ``omicsdw``: ``read_single_cell`` (the sc_rna_counts reader: obs columns through anndata, X read in blocks of
  16 M non-zeros with h5py, indicator-matrix sums, gene resolution, the three output tables collected);
- ``anndata_scanpy``: ``anndata.read_h5ad`` (X fully in memory) + ``scanpy.get.aggregate(by=[sample, cell_type],
  func="sum")``.

Wall time, CPU time (user + system) and the child's peak RSS (``os.wait4`` rusage of that child) are reported
(``in_process_s``: from the start of the child to the result, before it is shaped for the comparison), and both
peers' sums are compared. A child whose resident memory passes ``--max-rss-gib`` (default 8) is killed and
reported with the wall and CPU time it had used (the machine is shared: the full-read peer needs about 3x the file
in memory). The input stays in ``bench/out/`` for the next run.

    python bench/bench_single_cell.py [--cells 1000000] [--genes 20000] [--density 0.05] [--peers ...]
                                      [--runs 1] [--baseline DIR] [--max-rss-gib 8]

``--runs N`` repeats the peers N times, interleaved (A B A B ...: the machine's drift hits each alike);
``--baseline DIR`` adds a third peer, ``baseline``: the omicsdw reader of another source tree (a frozen copy of
older code, ``git archive <commit> | tar -x -C DIR``), run the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from bench_cross_omics import _rss_gib  # the same /proc reading the cross-omics bench caps its peers by

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out"
ROOT = BENCH.parent
CHUNK = 20_000


def make_input(path: Path, *, cells: int, genes: int, density: float, samples: int, cell_types: int) -> None:
    """Write the synthetic h5ad: anndata writes the skeleton (obs, var, empty CSR X), h5py appends X by chunks."""
    import anndata as ad
    import h5py
    import pandas as pd
    import scipy.sparse as sp

    rng = np.random.default_rng(7)
    obs = pd.DataFrame({"sample": pd.Categorical([f"s{i % samples:02d}" for i in range(cells)]),
                        "cell_type": pd.Categorical(
                            [f"t{t}" for t in rng.integers(0, cell_types, size=cells)])},
                       index=[f"c{i:07d}" for i in range(cells)])
    var = pd.DataFrame(index=[f"G{i:05d}" for i in range(genes)])
    tmp = path.with_suffix(".tmp.h5ad")
    ad.AnnData(X=sp.csr_matrix((cells, genes), dtype=np.float32), obs=obs, var=var).write_h5ad(tmp)
    per_cell = max(1, round(density * genes))
    with h5py.File(tmp, "r+") as f:
        x = f["X"]
        for name in ("data", "indices", "indptr"):
            del x[name]
        data = x.create_dataset("data", shape=(0,), maxshape=(None,), dtype=np.float32, chunks=(1 << 20,))
        indices = x.create_dataset("indices", shape=(0,), maxshape=(None,), dtype=np.int32, chunks=(1 << 20,))
        indptr = np.zeros(cells + 1, dtype=np.int64)
        for start in range(0, cells, CHUNK):
            n = min(CHUNK, cells - start)
            picked = np.sort(rng.integers(0, genes, size=(n, per_cell), dtype=np.int32), axis=1)
            keep = np.ones_like(picked, dtype=bool)
            keep[:, 1:] = picked[:, 1:] != picked[:, :-1]  # drop repeated draws: a few % fewer than per_cell
            columns = picked[keep]
            counts = rng.geometric(0.5, size=columns.size).astype(np.float32)  # 1, 2, ... (mean 2)
            indptr[start + 1:start + n + 1] = indptr[start] + np.cumsum(keep.sum(axis=1))
            old = data.shape[0]
            data.resize((old + columns.size,))
            indices.resize((old + columns.size,))
            data[old:] = counts
            indices[old:] = columns
        x.create_dataset("indptr", data=indptr)
    tmp.rename(path)


PEER = """
import json, sys, time
import numpy as np
path, peer, result = sys.argv[1], sys.argv[2], sys.argv[3]
start = time.perf_counter()
if peer in ("omicsdw", "baseline"):
    import polars as pl
    from schemas.manifest import Assay, StudyManifest
    from transforms.ingest.genes import GeneReference
    from transforms.ingest.readers import AssayContext
    from transforms.ingest.single_cell import read_single_cell
    from transforms.issues import IssueLog
    from pathlib import Path
    assay = Assay(name="sc", kind="sc_rna_counts", format="h5ad", path=Path(path).name, gene_id_type="symbol",
                  sample_column="sample", cell_type_column="cell_type")
    context = AssayContext("bench", Path(path).parent, StudyManifest(study_id="bench", name="bench", assays=[assay]),
                           GeneReference.load(), None, None, IssueLog("bench"))
    output = read_single_cell(assay, [Path(path)], context)
    frames = {t: f.collect() for t, f in output.tables.items()}
    seconds = time.perf_counter() - start
    profiles = frames["cell_type_composition"].height  # rows: profile-major (sample, cell type), features in order
    sums = frames["sc_pseudobulk"]["count"].to_numpy().reshape(profiles, -1)
    rows = {t: f.height for t, f in frames.items()}
else:
    import anndata as ad
    import scanpy as sc
    adata = ad.read_h5ad(path)
    agg = sc.get.aggregate(adata, by=["sample", "cell_type"], func="sum")
    seconds = time.perf_counter() - start
    order = np.lexsort((agg.obs["cell_type"].astype(str).to_numpy(), agg.obs["sample"].astype(str).to_numpy()))
    layer = agg.layers["sum"]
    sums = np.asarray(layer.todense() if hasattr(layer, "todense") else layer)[order]
    rows = {"profiles": int(agg.n_obs)}
np.save(result, sums)
print(json.dumps({"seconds": seconds, "rows": rows}))
"""


def _watch(child: subprocess.Popen, max_rss_gib: float, killed: list[float], done: threading.Event) -> None:
    """Kill ``child`` when its resident memory passes ``max_rss_gib`` (polled every 0.1 s); note the RSS seen."""
    while not done.wait(0.1):
        rss = _rss_gib(child.pid)
        if rss > max_rss_gib and not done.is_set():  # set once the child is reaped: its pid may be reused
            killed.append(rss)
            os.kill(child.pid, signal.SIGKILL)  # not Popen.kill: its poll() could reap the child before os.wait4
            return


def run_peer(peer: str, path: Path, root: Path = ROOT, max_rss_gib: float = 8.0) -> dict[str, object]:
    """Run one peer in a child process (the omicsdw code of ``root``); its wall time, in-process time and peak RSS
    (``os.wait4`` rusage). A child whose RSS passes ``max_rss_gib`` is killed (the machine is shared)."""
    result = OUT / f"sc_sums_{peer}.npy"
    result.unlink(missing_ok=True)
    log, err = OUT / f"sc_{peer}.out", OUT / f"sc_{peer}.err"
    killed: list[float] = []
    done = threading.Event()
    start = time.perf_counter()
    with open(log, "w") as stdout, open(err, "w") as stderr:
        child = subprocess.Popen([sys.executable, "-c", PEER, str(path), peer, str(result)], cwd=root,
                                 stdout=stdout, stderr=stderr, env={**os.environ, "PYTHONPATH": str(root)})
        watcher = threading.Thread(target=_watch, args=(child, max_rss_gib, killed, done), daemon=True)
        watcher.start()
        _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage (not the max over all children)
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
        done.set()
        watcher.join()
    wall = time.perf_counter() - start
    if killed:
        return {"peer": peer, "failed": f"killed: resident memory passed {max_rss_gib} GiB ({killed[0]:.2f} seen)",
                "wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
                "user_s": round(usage.ru_utime, 1), "sys_s": round(usage.ru_stime, 1),
                "peak_rss_gib": round(usage.ru_maxrss / 2**20, 2)}
    if os.waitstatus_to_exitcode(status) != 0:
        lines = err.read_text().strip().splitlines()
        return {"peer": peer, "failed": lines[-1] if lines else f"exit status {status}"}
    figures = json.loads(log.read_text().strip().splitlines()[-1])
    return {"peer": peer, "wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "user_s": round(usage.ru_utime, 1), "sys_s": round(usage.ru_stime, 1),
            "in_process_s": round(figures["seconds"], 1), "peak_rss_gib": round(usage.ru_maxrss / 2**20, 2),
            "rows": figures["rows"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--density", type=float, default=0.05)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--cell-types", type=int, default=10)
    parser.add_argument("--peers", nargs="+", default=["omicsdw", "anndata_scanpy"],
                        choices=["omicsdw", "anndata_scanpy"])
    parser.add_argument("--runs", type=int, default=1, help="repeat the peers, interleaved")
    parser.add_argument("--baseline", type=Path, help="a source tree whose omicsdw reader runs as a third peer")
    parser.add_argument("--max-rss-gib", type=float, default=8.0,
                        help="kill a peer whose resident memory passes this (the machine is shared)")
    parser.add_argument("--make-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    path = OUT / f"sc_{args.cells}x{args.genes}_{args.density:g}.h5ad"
    if args.make_only:
        make_input(path, cells=args.cells, genes=args.genes, density=args.density, samples=args.samples,
                   cell_types=args.cell_types)
        return 0
    if not path.exists():
        # written in a child: a child's peak RSS starts from its parent's (ru_maxrss survives fork and execve), so
        # writing the input here would raise every peer's figure to the writer's peak
        t0 = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--make-only", *sys.argv[1:]], check=True)
        print(f"input written in {time.perf_counter() - t0:.0f} s", flush=True)
    print(f"{path.name}: {path.stat().st_size / 2**30:.2f} GiB on disk; load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    roots = {peer: ROOT for peer in args.peers}
    if args.baseline:
        roots["baseline"] = args.baseline.resolve()
    for run in range(args.runs):
        for peer, root in roots.items():
            row = run_peer(peer, path, root, args.max_rss_gib)
            print(json.dumps({"run": run + 1, **row}), f"load {os.getloadavg()[0]:.2f}", flush=True)
        done = [p for p in roots if (OUT / f"sc_sums_{p}.npy").exists()]
        if len(done) >= 2:
            first, *others = (np.load(OUT / f"sc_sums_{p}.npy") for p in done)
            equal = all(first.shape == o.shape and bool(np.array_equal(first, o)) for o in others)
            print(f"sums equal ({', '.join(done)}): {equal} {first.shape}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
