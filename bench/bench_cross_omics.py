"""Cross-omics and feature-set read benchmarks: omicsdw vs plain polars / DuckDB joins, and vs a pandas pivot.

1. ``join``: two synthetic long layers (RNA ``rna_normalized`` rows and MS protein ``protein_abundance`` rows,
   GENES x SAMPLES each, 5 % of protein cells missing) -> ``gene_sample_omics`` Parquet. Peers: omicsdw
   (:func:`transforms.cross_omics.blocks.gene_sample_omics_blocks`: split by gene block, one join per block, one
   file per block), plain polars (one full join, ``sink_parquet``), plain DuckDB (``FULL OUTER JOIN`` ``COPY
   TO``). ``correlations``: omicsdw's ``omics_correlations`` on the block files (Spearman + Pearson of every gene,
   p-values, FDR) against a polars ``group_by(gene).agg(pl.corr(...))`` (r only) on the same files.
2. ``features``: omicsdw's feature-set build (:func:`transforms.features.build.build_feature_matrix`, rna layer
   ``top_variable: GENES`` over the joined blocks: SAMPLES x GENES, finished block by block, hashed and written
   as ``warehouse.feature_sets`` does before its commit; ``omicsdw_features_build_zscore``: the same with
   ``scale: zscore`` and ``impute: train_mean``, so scaling and imputation means are learned too); a long feature
   matrix (SAMPLES x GENES, stored sorted by sample as feature_values is) read back wide: omicsdw's reader
   (:func:`warehouse.feature_sets.wide_frame`: sample-range reads, positional fill) vs
   ``pandas.read_parquet(...).pivot`` and polars ``pivot``.

Each peer runs in its own process; wall time, CPU time and peak RSS (``ru_maxrss`` the child reads itself) are
printed; a peer whose RSS passes ``--max-rss-gib`` is killed (the machine is shared). Inputs are written in blocks
of 1,000 samples, so 5,000 samples never sit in memory at once. ``--baseline DIR`` (a frozen copy of older code,
``git archive <commit> | tar -x -C DIR``) adds the peer ``omicsdw_join_baseline``: ``omicsdw_join`` imported from
``DIR``; ``--repeats N`` runs the peer list N times in turn (alternating pairs); ``--check`` then compares the two
joins' block files, block by block, sorted (``assert_frame_equal``).

    python bench/bench_cross_omics.py [--genes 20000] [--samples 1000] [--peers ...] [--baseline DIR --repeats 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out" / "cross_omics"
REPO = BENCH.parent


def make_inputs(genes: int, samples: int) -> dict[str, Path]:
    """Write the synthetic layers in blocks of at most 1,000 samples (one Parquet file each: bounded memory at
    5,000 samples); peers read them by glob.
    """
    folder = OUT / f"{genes}x{samples}"
    paths = {"rna": folder / "rna" / "*.parquet", "protein": folder / "protein" / "*.parquet",
             "features": folder / "fv" / "*.parquet"}
    done = folder / "complete"
    if done.exists():
        return paths
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(0)
    sample_ids = [f"S{j:05d}" for j in range(samples)]
    block = min(samples, 1000)
    for part in paths.values():
        part.parent.mkdir(parents=True, exist_ok=True)
    for start in range(0, samples, block):
        ids = sample_ids[start:start + block]
        n = len(ids) * genes
        gene = np.tile(np.arange(1, genes + 1), len(ids))
        sample = np.repeat(np.array(ids), genes)
        rna = rng.normal(8, 2, n)
        protein = 0.5 * rna + rng.normal(20, 1, n)
        keep = rng.random(n) > 0.05
        base = {"study_id": "bench", "sample_id": sample, "gene_id": gene}
        name = f"part{start // block:03d}.parquet"
        pl.DataFrame({**base, "assay": "counts", "feature_id": gene.astype(str), "source": "counts",
                      "log2_value": rna, "zscore": (rna - 8) / 2}).write_parquet(paths["rna"].parent / name)
        pl.DataFrame({**base, "assay": "ms", "feature_id": gene.astype(str), "platform": "ms", "is_phospho": False,
                      "is_ambiguous": False, "log2_abundance": protein}).filter(pl.Series(keep)).write_parquet(
            paths["protein"].parent / name)
        pl.DataFrame({"study_id": "bench", "sample_id": sample, "feature": np.char.add("rna__G", gene.astype(str)),
                      "value": rna}).write_parquet(paths["features"].parent / name)
    done.touch()
    return paths


def run_peer(peer: str, paths: dict[str, str], out: str) -> None:  # runs in the child process
    import polars as pl

    if peer in ("omicsdw_join", "omicsdw_join_baseline"):
        from transforms.cross_omics.blocks import gene_sample_omics_blocks

        schema = {"study_id": pl.String, "assay": pl.String, "sample_id": pl.String, "gene_id": pl.Int64,
                  "feature_id": pl.String}
        tables = {"rna_normalized": pl.scan_parquet(paths["rna"]),
                  "protein_abundance": pl.scan_parquet(paths["protein"]),
                  "copy_number": pl.LazyFrame(schema={**schema, "log2_ratio": pl.Float64, "call": pl.Int8}),
                  "gene_mutation_status": pl.LazyFrame(schema={**schema, "mutated": pl.Boolean,
                                                               "top_consequence": pl.String}),
                  "variants": pl.LazyFrame(schema={**schema, "consequence": pl.String})}
        genes = pl.LazyFrame({"gene_id": list(range(1, 30001)), "symbol": [f"G{i}" for i in range(1, 30001)]})
        shutil.rmtree(out, ignore_errors=True)
        blocks = gene_sample_omics_blocks(tables, genes, out, study_id="bench", non_silent=[])
        print("blocks", len(blocks), file=sys.stderr)
    elif peer == "polars_join":
        rna = pl.scan_parquet(paths["rna"]).select("sample_id", "gene_id", "log2_value", "zscore")
        protein = pl.scan_parquet(paths["protein"]).select("sample_id", "gene_id", "log2_abundance")
        rna.join(protein, on=["sample_id", "gene_id"], how="full", coalesce=True).sink_parquet(out)
    elif peer == "duckdb_join":
        import duckdb

        duckdb.sql(f"""COPY (SELECT coalesce(r.sample_id, p.sample_id) AS sample_id,
                              coalesce(r.gene_id, p.gene_id) AS gene_id, r.log2_value, r.zscore, p.log2_abundance
                       FROM read_parquet('{paths["rna"]}') r FULL OUTER JOIN read_parquet('{paths["protein"]}') p
                       USING (sample_id, gene_id)) TO '{out}' (FORMAT parquet)""")
    elif peer == "omicsdw_correlations":
        from transforms.cross_omics.study import omics_correlations

        blocks = sorted(Path(paths["gso"]).glob("*.parquet"))
        omics_correlations([pl.scan_parquet(b) for b in blocks], study_id="bench").write_parquet(out)
    elif peer == "polars_correlations":  # r only (no p-values, FDR or layer pairs): a lower bound
        both = pl.scan_parquet(Path(paths["gso"]) / "*.parquet").filter(pl.col("rna_log2").is_not_null()
                                                     & pl.col("protein_log2").is_not_null())
        both.group_by("gene_id").agg(pl.corr("rna_log2", "protein_log2", method="spearman").alias("spearman"),
                                     pl.corr("rna_log2", "protein_log2").alias("pearson"),
                                     pl.len().alias("n")).sink_parquet(out)
    elif peer in ("omicsdw_features_build", "omicsdw_features_build_zscore"):
        import tempfile

        from schemas.features import FeatureSetSpec
        from transforms.features.build import build_feature_matrix
        from warehouse.feature_sets import _content_hash, _written

        gso = pl.scan_parquet(Path(paths["gso"]) / "*.parquet")
        samples = pl.DataFrame({"study_id": "bench", "sample_id": [f"S{j:05d}" for j in range(int(paths["samples"]))]})
        attributes = pl.DataFrame(schema={"study_id": pl.String, "sample_id": pl.String, "attribute": pl.String,
                                          "value": pl.String})
        learned = {"scale": {"method": "zscore"}, "impute": "train_mean"} if peer.endswith("_zscore") else {}
        spec = FeatureSetSpec.model_validate({"name": "bench", "studies": ["bench"], "layers": [
            {"layer": "rna", "top_variable": int(paths["genes"])}], **learned})
        matrix = build_feature_matrix(spec, gso=gso, samples=samples, attributes=attributes)
        with tempfile.TemporaryDirectory(dir=Path(out).parent) as workdir:
            files: list[Path] = []
            digest = _content_hash(_written(matrix.blocks(), Path(workdir), files), matrix.columns, matrix.scaling)
            print("blocks", len(files), "columns", len(matrix.columns), digest, file=sys.stderr)
    elif peer == "polars_pivot_read":
        long = pl.read_parquet(paths["features"])
        print("shape", long.pivot(on="feature", index=["study_id", "sample_id"], values="value").shape,
              file=sys.stderr)
    elif peer == "omicsdw_features_read":
        from warehouse.feature_sets import wide_frame

        scan = pl.scan_parquet(paths["features"])  # keys and columns come from the manifest in omicsdw
        keys = pl.DataFrame({"study_id": "bench", "sample_id": [f"S{j:05d}" for j in range(int(paths["samples"]))]})
        columns = [f"rna__G{g}" for g in range(1, int(paths["genes"]) + 1)]
        print("shape", wide_frame(scan, keys, columns).shape, file=sys.stderr)
    elif peer == "pandas_pivot_read":
        import pandas as pd

        long = pd.read_parquet(str(Path(paths["features"]).parent))
        wide = long.pivot(index=["study_id", "sample_id"], columns="feature", values="value")
        print("shape", wide.shape, file=sys.stderr)
    else:
        raise ValueError(peer)


def _rss_gib(pid: int) -> float:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    return int(text.split("VmRSS:")[1].split()[0]) / 2**20 if "VmRSS:" in text else 0.0


def measure(peer: str, paths: dict[str, object], out: Path, *, max_rss_gib: float, code_root: Path = REPO
            ) -> dict[str, object]:
    """Run one peer in a child (importing omicsdw from ``code_root``); a child whose RSS passes ``max_rss_gib``
    is killed (the machine is shared).
    """
    code = (f"import sys, json; sys.path.insert(0, {str(code_root)!r}); sys.path.insert(0, {str(BENCH)!r}); "
            f"from bench_cross_omics import run_peer; run_peer({peer!r}, json.loads(sys.argv[1]), sys.argv[2]); "
            "import resource; print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)")
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen([sys.executable, "-c", code, json.dumps({k: str(v) for k, v in paths.items()}),
                             str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = 0.0
    while proc.poll() is None:
        seen = max(seen, _rss_gib(proc.pid))
        if seen > max_rss_gib:
            proc.kill()
            proc.wait()
            return {"peer": peer, "error": f"killed: RSS passed {max_rss_gib} GiB"}
        time.sleep(0.2)
    _, stderr = proc.communicate()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        return {"peer": peer, "error": stderr.strip().splitlines()[-1]}
    return {"peer": peer, "wall_s": round(wall, 2),
            "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2),
            "peak_rss_gib": round(int(stderr.split("RSS ")[-1].split()[0]) / 2**20, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genes", type=int, default=20000)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--peers", nargs="+", default=["polars_join", "duckdb_join", "omicsdw_join",
                                                       "polars_correlations", "omicsdw_correlations",
                                                       "omicsdw_features_build", "omicsdw_features_build_zscore",
                                                       "pandas_pivot_read",
                                                       "polars_pivot_read", "omicsdw_features_read"])
    parser.add_argument("--max-rss-gib", type=float, default=12.0,
                        help="kill a peer whose resident memory passes this (the machine is shared)")
    parser.add_argument("--baseline", type=Path, help="a frozen copy of older code: adds omicsdw_join_baseline")
    parser.add_argument("--repeats", type=int, default=1, help="run the peer list this many times in turn")
    parser.add_argument("--check", action="store_true",
                        help="compare omicsdw_join's block files with omicsdw_join_baseline's (sorted, exact)")
    parser.add_argument("--make-only", action="store_true", help=argparse.SUPPRESS)
    if sys.argv[1:2] == ["--check-only"]:
        same_blocks(Path(sys.argv[2]), Path(sys.argv[3]))
        return 0
    args = parser.parse_args()
    if "omicsdw_join_baseline" in args.peers and args.baseline is None:
        parser.error("the peer omicsdw_join_baseline needs --baseline DIR")
    if args.make_only:
        make_inputs(args.genes, args.samples)
        return 0
    # generated in a child: Linux children inherit the parent's peak RSS (ru_maxrss survives fork and execve)
    subprocess.run([sys.executable, __file__, "--make-only", "--genes", str(args.genes), "--samples",
                    str(args.samples)], check=True)
    paths = make_inputs(args.genes, args.samples)
    folder = paths["rna"].parent.parent
    paths["gso"] = folder / "gso_omicsdw_join.parquet" / "gene_sample_omics"  # the folder omicsdw_join wrote
    paths.update(genes=args.genes, samples=args.samples)
    print(f"{args.genes} genes x {args.samples} samples")
    print("| peer | wall s | CPU s | peak RSS GiB |\n|---|---|---|---|")
    peers = [*args.peers, *(["omicsdw_join_baseline"] if args.baseline and "omicsdw_join_baseline" not in args.peers
                             else [])]
    for _ in range(args.repeats):
        for peer in peers:
            root = args.baseline.resolve() if peer == "omicsdw_join_baseline" else REPO
            row = measure(peer, paths, folder / f"gso_{peer}.parquet", max_rss_gib=args.max_rss_gib,
                          code_root=root)
            print(f"| {row['peer']} | {row.get('wall_s', row.get('error'))} | {row.get('cpu_s', '')} | "
                  f"{row.get('peak_rss_gib', '')} |", flush=True)
    if args.check:
        subprocess.run([sys.executable, __file__, "--check-only", str(folder / "gso_omicsdw_join.parquet"),
                        str(folder / "gso_omicsdw_join_baseline.parquet")], check=True)
    return 0


def same_blocks(new: Path, old: Path) -> None:
    """The two joins wrote the same rows, block file by block file (sorted by gene and sample, exact floats)."""
    import polars as pl
    from polars.testing import assert_frame_equal

    files = sorted((new / "gene_sample_omics").glob("*.parquet"))
    assert [f.name for f in files] == sorted(f.name for f in (old / "gene_sample_omics").glob("*.parquet"))
    rows = 0
    for file in files:
        mine = pl.read_parquet(file).sort("gene_id", "sample_id")
        assert_frame_equal(mine, pl.read_parquet(old / "gene_sample_omics" / file.name).sort("gene_id", "sample_id"))
        rows += mine.height
    print(f"same rows in {len(files)} block files ({rows} rows)")


if __name__ == "__main__":
    sys.exit(main())
