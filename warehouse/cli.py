"""``omicsdw``: build the warehouse in-process, validate study folders, run read-only SQL.

``build`` materialises the same Dagster assets as ``dagster dev`` (ephemeral instance, no daemon), study by
study, so a failing study is reported and the others still land; the exit code is 1 if any study failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import polars as pl


def _build(args: argparse.Namespace) -> int:
    os.environ.setdefault("DAGSTER_TELEMETRY_DISABLED", "1")
    import dagster as dg

    from orchestration.definitions import STUDY_ASSETS, reference_tables
    from orchestration.resources import WarehouseResource
    from transforms.ingest import find_studies
    from warehouse.catalog import connect
    from warehouse.summary import warehouse_summary

    landing = Path(args.landing)
    studies = find_studies(landing)
    if args.study:
        missing = [s for s in args.study if s not in studies]
        if missing:
            print(f"not in {landing}: {', '.join(missing)} (found: {', '.join(studies) or 'none'})", file=sys.stderr)
            return 2
        studies = {s: studies[s] for s in args.study}
    if not studies:
        print(f"no study folders (study.yaml or meta_study.txt) in {landing}", file=sys.stderr)
        return 2
    resource = WarehouseResource(landing_dir=str(landing.resolve()), warehouse_dir=str(Path(args.warehouse)),
                                 lake_uri=args.lake)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("studies", list(studies))
    quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    resources = {"warehouse": resource}
    print(f"omicsdw build: {len(studies)} stud{'y' if len(studies) == 1 else 'ies'} from {landing} "
          f"into {args.warehouse}")
    start = time.monotonic()
    dg.materialize([reference_tables], resources=resources, instance=instance, run_config=quiet)
    failed = []
    for i, sid in enumerate(studies, start=1):
        print(f"[{i}/{len(studies)}] {sid} ...", end=" ", flush=True)
        t0 = time.monotonic()
        result = dg.materialize(STUDY_ASSETS, partition_key=sid, resources=resources, instance=instance,
                                run_config=quiet, raise_on_error=False, selection=None)
        if result.success:
            print(f"ok ({time.monotonic() - t0:.1f} s)")
        else:
            failed.append(sid)
            print("FAILED")
            for event in result.get_step_failure_events():
                error = event.step_failure_data.error
                message = error.message.strip() if error is not None else "step failed without an error message"
                print("    " + message.replace("\n", "\n    "))
    print(f"\n{warehouse_summary(connect(args.warehouse))}")
    print(f"\ndone in {time.monotonic() - start:.1f} s; "
          + (f"{len(failed)} failed: {', '.join(failed)}" if failed else "all studies loaded"))
    return 1 if failed else 0


def _validate(args: argparse.Namespace) -> int:
    from transforms.genes import GeneReference
    from transforms.ingest import find_studies, ingest_study
    from warehouse.load import study_issues
    from warehouse.summary import format_issue

    studies = find_studies(Path(args.path))
    if not studies:
        print(f"no study folders (study.yaml or meta_study.txt) in {args.path}", file=sys.stderr)
        return 1
    reference = GeneReference.load()
    n_errors = 0
    for sid, folder in studies.items():
        issues = study_issues(ingest_study(folder, reference=reference))
        errors = issues.filter(pl.col("severity") == "error").height
        n_errors += errors
        shown = issues if args.all else issues.filter(pl.col("severity") != "info")
        print(f"{sid} ({folder}): {errors} error(s), {issues.height - errors} other issue(s)")
        for row in shown.iter_rows(named=True):
            print("  " + format_issue(row))
    return 1 if n_errors else 0


def _sql(args: argparse.Namespace) -> int:
    from warehouse.catalog import connect

    con = connect(args.warehouse)
    try:
        frame = pl.DataFrame(con.sql(args.query).to_arrow_table())
    except Exception as exc:  # noqa: BLE001 - any DuckDB error is reported, not a traceback
        print(f"SQL error: {exc}", file=sys.stderr)
        return 1
    if args.format == "table":
        with pl.Config(tbl_rows=args.max_rows, tbl_cols=-1, fmt_str_lengths=80, tbl_width_chars=200):
            print(frame)
    elif args.format == "csv":
        if args.output:
            frame.write_csv(args.output)
        else:
            sys.stdout.write(frame.write_csv())
    else:
        if not args.output:
            print("--format parquet needs --output FILE", file=sys.stderr)
            return 2
        frame.write_parquet(args.output)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``omicsdw`` command."""
    parser = argparse.ArgumentParser(prog="omicsdw", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="load study folders into the warehouse (in-process Dagster run)")
    build.add_argument("--landing", required=True, help="folder of study folders (or one study folder)")
    build.add_argument("--warehouse", required=True, help="warehouse folder (catalog, lake, reports)")
    build.add_argument("--study", action="append", help="only this study id (repeatable)")
    build.add_argument("--lake", help="lake root URI if not <warehouse>/lake")
    build.set_defaults(run=_build)
    validate = sub.add_parser("validate", help="check study folders without loading anything")
    validate.add_argument("path", help="a study folder or a folder of study folders")
    validate.add_argument("--all", action="store_true", help="also list info issues")
    validate.set_defaults(run=_validate)
    sql = sub.add_parser("sql", help="run read-only SQL on the catalog")
    sql.add_argument("query")
    sql.add_argument("--warehouse", default=os.environ.get("OMICSDW_WAREHOUSE", "warehouse"))
    sql.add_argument("--format", choices=["table", "csv", "parquet"], default="table")
    sql.add_argument("--output", help="file to write (csv / parquet)")
    sql.add_argument("--max-rows", type=int, default=50, help="rows shown in table format")
    sql.set_defaults(run=_sql)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
