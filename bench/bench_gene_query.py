"""One-gene queries on the stored long expression tables of warehouses built by different code (peers, one run).

For each table and warehouse: files, row groups and bytes of the table, then DuckDB (one thread) answering
``SELECT sample_id, <value> FROM read_parquet(<the table's files>) WHERE gene_id = ?`` for three genes (at 1/7, 1/2
and 5/6 of the gene-id range), seven times each: median and best wall, median CPU. Peers are interleaved per table
so that load from other processes hits them alike. Build the warehouses first (``bench_normalise_asset.py`` on the
same landing with each code version), e.g.:

    python bench/bench_gene_query.py --warehouse load_order=DIR1 gene_order=DIR2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq

TABLES = {"rna_vst": "vst", "rna_normalized": "log2_value", "differential_expression": "stat"}
REPEATS = 7


def _files(warehouse: Path, table: str) -> list[str]:
    return sorted(str(p) for p in (warehouse / "lake" / table).glob("study_id=*/*.parquet"))


def measure(peers: dict[str, Path]) -> list[dict[str, object]]:
    """One result row per table and peer (tables every peer has)."""
    rows = []
    for table, column in TABLES.items():
        files = {name: _files(wh, table) for name, wh in peers.items()}
        if not all(files.values()):
            continue
        genes = pl.read_parquet(next(iter(files.values())), columns=["gene_id"])["gene_id"].drop_nulls().unique().sort()
        probes = [int(genes[i]) for i in (len(genes) // 7, len(genes) // 2, 5 * len(genes) // 6)]
        for name, paths in files.items():
            con = duckdb.connect()
            con.execute("SET threads = 1")
            query = f"SELECT sample_id, {column} FROM read_parquet(?) WHERE gene_id = ?"
            walls, cpus, hits = [], [], 0
            for gene in probes:
                for _ in range(REPEATS):
                    cpu, wall = time.process_time(), time.perf_counter()
                    hits = len(con.execute(query, [paths, gene]).fetchall())
                    walls.append(time.perf_counter() - wall)
                    cpus.append(time.process_time() - cpu)
            con.close()
            rows.append({"table": table, "peer": name, "files": len(paths),
                         "row_groups": sum(pq.ParquetFile(p).num_row_groups for p in paths),
                         "mib": round(sum(os.path.getsize(p) for p in paths) / 2**20, 1), "rows_per_gene": hits,
                         "wall_ms_median": round(1000 * statistics.median(walls), 1),
                         "wall_ms_best": round(1000 * min(walls), 1),
                         "cpu_ms_median": round(1000 * statistics.median(cpus), 1)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warehouse", nargs="+", required=True, metavar="NAME=DIR", help="peers: name=warehouse")
    args = parser.parse_args()
    peers = {name: Path(folder) for name, folder in (p.split("=", 1) for p in args.warehouse)}
    load = os.getloadavg()
    rows = measure(peers)
    print("| table | peer | files | row groups | MiB | rows / gene | wall ms (median / best) | CPU ms (median) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['table']} | {r['peer']} | {r['files']} | {r['row_groups']} | {r['mib']} | {r['rows_per_gene']} "
              f"| {r['wall_ms_median']} / {r['wall_ms_best']} | {r['cpu_ms_median']} |")
    print(json.dumps({"load_avg_start": load, "load_avg_end": os.getloadavg(), "rows": rows}))


if __name__ == "__main__":
    main()
