"""Report read benchmark: the study report's top-variable-gene selection in DuckDB vs the pivot it replaced.

Input: a synthetic ``rna_vst`` Parquet of GENES x SAMPLES rows (one study, one assay), written by DuckDB. Peers,
each in its own process (wall time and the child's own peak RSS, ``ru_maxrss``):

- ``sql``: :func:`warehouse.report.top_variable_values` over a view of the file (DuckDB aggregates; the report then
  holds top_genes x samples values);
- ``pivot``: what the report did before: every row of the study into polars, ``pivot`` to genes x samples, then
  :func:`transforms.qc.samples.top_variable` in numpy.

    python bench/bench_report.py [--genes 20000] [--samples 5000] [--peers sql pivot]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out" / "report"
REPO = BENCH.parent

PEERS = {
    "sql": """
import duckdb
from warehouse.report import top_variable_values
con = duckdb.connect(config={"threads": 2, "memory_limit": "2GB"})
con.execute("SET enable_progress_bar = false")
con.execute(f"CREATE VIEW rna_vst AS SELECT * FROM read_parquet('{path}')")
con.execute("CREATE VIEW rna_normalized AS SELECT 'x' AS study_id, 'x' AS assay, 'x' AS sample_id, 'x' AS feature_id, "
            "'counts' AS source, 0.0 AS log2_cpm WHERE false")
rows = top_variable_values(con, "bench", top_genes=500).height
""",
    "pivot": """
import duckdb
from transforms.qc.samples import top_variable
con = duckdb.connect(config={"threads": 2})
con.execute("SET enable_progress_bar = false")
long = con.sql(f"SELECT assay, sample_id, feature_id, vst AS value FROM read_parquet('{path}') "
               "WHERE study_id = 'bench'").pl()
wide = long.pivot(on="sample_id", index="feature_id", values="value", aggregate_function="first")
rows = top_variable(wide.drop("feature_id").to_numpy(), top_genes=500).size
""",
}


def make_input(genes: int, samples: int) -> Path:
    path = OUT / f"vst_{genes}x{samples}.parquet"
    if not path.exists():
        import duckdb

        OUT.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(config={"threads": 2, "memory_limit": "2GB"})
        con.execute(f"""COPY (SELECT 'bench' AS study_id, 'counts' AS assay,
                              'S' || lpad(s::VARCHAR, 5, '0') AS sample_id,
                              'G' || lpad(g::VARCHAR, 5, '0') AS feature_id, (g % 97) / 10.0 * random() + 5 AS vst
                       FROM range({samples}) t(s), range({genes}) u(g)) TO '{path}' (FORMAT parquet)""")
    return path


def run(peer: str, path: Path) -> dict[str, object]:
    code = ("import resource, sys, time\nt = time.perf_counter()\npath = " + repr(str(path)) + PEERS[peer]
            + "\nprint(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, rows)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    seconds, rss, rows = done.stdout.split()[-3:]
    return {"peer": peer, "seconds": round(float(seconds), 1), "peak_rss_mib": round(int(rss) / 1024),
            "values_kept": int(rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genes", type=int, default=20000)
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--peers", nargs="+", default=list(PEERS), choices=list(PEERS))
    args = parser.parse_args()
    path = make_input(args.genes, args.samples)
    for peer in args.peers:
        print(json.dumps({"genes": args.genes, "samples": args.samples, **run(peer, path)}), flush=True)


if __name__ == "__main__":
    main()
