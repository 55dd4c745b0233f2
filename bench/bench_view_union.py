"""A table's catalog view, two ways, on one built warehouse: ``read_parquet(files)`` (as a frozen copy of main builds
it) against this tree's ``read_parquet(files) UNION ALL BY NAME`` an empty typed row (which lets a contract column no
file has yet read as NULL). For each table: the view's creation (binds every file) and two queries (every study, one
study), DuckDB on one thread, the peers alternating per repetition; prints the median of the repetitions and the
ratio, and whether both gave the same rows. E.g.:

    git archive main | tar -x -C /tmp/frozen_main
    python bench/bench_view_union.py --warehouse DIR --main /tmp/frozen_main --repeats 3
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from warehouse.catalog import table_view_sql, visible_files
from warehouse.storage import open_lake

QUERIES = {
    "copy_number": ["SELECT study_id, count(*), avg(log2_ratio) FROM copy_number GROUP BY ALL ORDER BY 1",
                    "SELECT count(*) FROM copy_number WHERE study_id = 'study_es_0'"],
    "gene_sample_omics": ["SELECT study_id, count(*), avg(rna_log2) FROM gene_sample_omics GROUP BY ALL ORDER BY 1",
                          "SELECT * FROM gene_sample_omics WHERE study_id = 'brca' AND gene_id = 6776 ORDER BY ALL"],
    "rna_counts": ["SELECT study_id, sum(count) FROM rna_counts GROUP BY ALL ORDER BY 1",
                   "SELECT sum(count) FROM rna_counts WHERE study_id = 'airway'"],
}


def _main_view_sql(tree: Path) -> Callable[..., str]:
    spec = importlib.util.spec_from_file_location("main_catalog", tree / "warehouse" / "catalog.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.table_view_sql  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", required=True, type=Path)
    parser.add_argument("--main", required=True, type=Path, help="a frozen copy of main (git archive)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    lake = open_lake(args.warehouse)
    peers = {"main": _main_view_sql(args.main), "branch": table_view_sql}
    times: dict[tuple[str, str, str], list[float]] = {}
    rows: dict[tuple[str, str, str], object] = {}
    for rep in range(args.repeats):
        for peer in (["main", "branch"] if rep % 2 == 0 else ["branch", "main"]):
            for table, queries in QUERIES.items():
                files = [f"{lake.root}/{f}" for f in visible_files(lake, [table])[table][1]]
                con = duckdb.connect()
                con.execute("SET threads = 1")
                start = time.perf_counter()
                con.execute(peers[peer](table, files, root=None))
                times.setdefault((table, "create view", peer), []).append(time.perf_counter() - start)
                for i, query in enumerate(queries):
                    start = time.perf_counter()
                    rows[(table, f"query {i + 1}", peer)] = con.execute(query).fetchall()
                    times.setdefault((table, f"query {i + 1}", peer), []).append(time.perf_counter() - start)
                con.close()
    for table, step, peer in sorted(times):
        if peer != "main":
            continue
        old, new = statistics.median(times[(table, step, "main")]), statistics.median(times[(table, step, "branch")])
        same = rows.get((table, step, "main")) == rows.get((table, step, "branch"))
        print(f"{table:18} {step:12} main {old * 1000:8.1f} ms  branch {new * 1000:8.1f} ms  ratio {new / old:5.2f}"
              f"  same rows: {same}")


if __name__ == "__main__":
    main()
