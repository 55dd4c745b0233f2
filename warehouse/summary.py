"""Human-readable summaries of a build: what the CLI prints and what a failed run says."""

from __future__ import annotations

import duckdb
import polars as pl

from warehouse.load import StudyLoad

_MAX_LISTED = 15


def format_issue(row: dict[str, object]) -> str:
    """``file:line column 'c' [code] message`` for one ingest_issues row."""
    where = str(row["file"])
    if row.get("line") is not None:
        where += f":{row['line']}"
    if row.get("column"):
        where += f" column {row['column']!r}"
    return f"{str(row['severity']).upper()} {where} [{row['code']}] {row['message']}"


def describe_errors(load: StudyLoad, *, published: bool) -> str:
    """The errors of a failed study, one per line (first few), for the Dagster failure and the CLI;
    ``published``: whether readers see an earlier version of the study (kept), or nothing of it (a new study).
    """
    errors = load.errors
    kept = "previous data kept" if published else "nothing loaded, no earlier version of the study"
    lines = [f"study {load.study_id!r} failed with {errors.height} error(s); {kept}:"]
    lines += ["  " + format_issue(row) for row in errors.head(_MAX_LISTED).iter_rows(named=True)]
    if errors.height > _MAX_LISTED:
        lines.append(f"  ... and {errors.height - _MAX_LISTED} more (SELECT * FROM ingest_issues)")
    return "\n".join(lines)


def warehouse_summary(con: duckdb.DuckDBPyConnection) -> str:
    """Studies, samples, genes, rows per table and issues by severity, read from the catalog."""
    counts = con.execute(
        "SELECT (SELECT count(*) FROM studies), (SELECT count(*) FROM samples), "
        "(SELECT count(DISTINCT gene_id) FROM gene_id_map WHERE status = 'mapped'), (SELECT count(*) FROM genes)"
    ).fetchall()[0]
    lines = [f"studies: {counts[0]}   samples: {counts[1]}   genes mapped: {counts[2]} "
             f"(of {counts[3]} in the reference)", "rows per table:"]
    tables = [r[0] for r in con.execute("SELECT table_name FROM catalog_versions").fetchall()]
    for name in tables:
        (n,) = con.execute(f'SELECT count(*) FROM "{name}"').fetchall()[0]
        lines.append(f"  {name:<22} {n:>12,}")
    issues = pl.DataFrame(con.sql(
        "SELECT study_id, severity, count(*) AS n FROM ingest_issues GROUP BY ALL ORDER BY ALL").to_arrow_table())
    lines.append("issues: " + (", ".join(f"{r['study_id']} {r['severity']} {r['n']}"
                                         for r in issues.iter_rows(named=True)) or "none"))
    return "\n".join(lines)
