"""The catalog readers see: published study sets, fresh connections, read-only sessions, a movable folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

import warehouse
from tests.lake_rows import commit_load
from warehouse.catalog import CATALOG_NAME, CatalogMissing, connect, refresh_catalog
from warehouse.commit import commit_frames
from warehouse.lake import Lake
from warehouse.publish import InconsistentStudy, publish_study, remove_study

COUNTS = pl.DataFrame({"assay": "counts", "sample_id": ["a", "b"], "gene_id": [7157, 7157],
                       "feature_id": "TP53", "count": [10.0, 20.0], "length": [None, None]},
                      schema_overrides={"length": pl.Float64})


def _rows(wh: Path, sql: str) -> list[tuple]:
    con = connect(wh)
    try:
        return con.sql(sql).fetchall()
    finally:
        con.close()


def _derived(lake: Lake, study_id: str, load: str) -> None:
    """The derived tables of a load (normalise, DE, signatures, cross-omics, QC), empty (what a study without
    counts' stages commit)."""
    from schemas.tables import DERIVED_TABLES

    commit = commit_frames(lake, [], tables=DERIVED_TABLES, study_id=study_id, fingerprint=f"d-{load}", inputs=load)
    assert commit.ok


def _publish(lake: Lake, wh: Path, study_id: str, load: str, counts: pl.DataFrame) -> None:
    commit_load(lake, study_id, {"rna_counts": counts}, load=load)
    _derived(lake, study_id, load)
    assert publish_study(lake, study_id).ok
    refresh_catalog(lake, wh)


def test_catalog_shows_the_published_set_until_every_stage_of_a_new_load_ran(lake: Lake, wh: Path) -> None:
    _publish(lake, wh, "s1", "A", COUNTS)
    commit_load(lake, "s1", {"rna_counts": COUNTS.with_columns(pl.col("count") * 2)}, load="B")  # ingest only
    with pytest.raises(InconsistentStudy, match="rna_sample_factors") as refused:
        publish_study(lake, "s1")
    # a study whose ingest finds it unchanged is not rebuilt by `build --study`: the hint names the way out too
    assert "omicsdw remove s1, then build it again" in str(refused.value)
    refresh_catalog(lake, wh)
    assert _rows(wh, "SELECT sum(count) FROM rna_counts") == [(30.0,)]  # still load A
    assert warehouse.table("rna_counts", warehouse=wh).collect()["count"].sum() == 30.0
    _derived(lake, "s1", "B")
    publish_study(lake, "s1")
    refresh_catalog(lake, wh)
    assert _rows(wh, "SELECT sum(count) FROM rna_counts") == [(60.0,)]
    assert warehouse.table("rna_counts", warehouse=wh).collect()["count"].sum() == 60.0


def test_every_column_of_the_catalog_has_a_comment_its_own_tables_too(lake: Lake, wh: Path) -> None:
    # catalog_versions and catalog_info, which the README lists beside the views, had no column comments
    _publish(lake, wh, "s1", "A", COUNTS)
    assert _rows(wh, "SELECT table_name, column_name FROM duckdb_columns() WHERE NOT internal AND "
                     "(comment IS NULL OR comment = '')") == []
    assert _rows(wh, "SELECT comment FROM duckdb_columns() WHERE table_name = 'catalog_versions' AND "
                     "column_name = 'files'") == [("Parquet files the table's view reads.",)]


def test_connect_sees_the_newest_catalog_while_an_old_connection_is_open(lake: Lake, wh: Path) -> None:
    _publish(lake, wh, "s1", "A", COUNTS)
    old = connect(wh)
    _publish(lake, wh, "s2", "A", COUNTS)
    assert old.sql("SELECT count(DISTINCT study_id) FROM rna_counts").fetchall() == [(1,)]  # its snapshot
    assert _rows(wh, "SELECT count(DISTINCT study_id) FROM rna_counts") == [(2,)]
    old.close()


def test_connect_reads_the_lake_only(lake: Lake, wh: Path, tmp_path: Path) -> None:
    _publish(lake, wh, "s1", "A", COUNTS)
    con = connect(wh)
    outside = tmp_path / "outside.csv"
    outside.write_text("a\n1\n")
    for sql in (f"SELECT * FROM read_csv('{outside}')", f"COPY (SELECT 1) TO '{tmp_path / 'x.csv'}'",
                "SET enable_external_access = true", f"ATTACH '{tmp_path / 'x.db'}'"):
        with pytest.raises(Exception, match=r"disabled by configuration|locked"):
            con.sql(sql)
    assert not (tmp_path / "x.csv").exists()
    con.close()


def test_moved_warehouse_folder_still_answers(lake: Lake, wh: Path, tmp_path: Path) -> None:
    _publish(lake, wh, "s1", "A", COUNTS)
    moved = tmp_path / "elsewhere" / "wh"
    moved.parent.mkdir()
    shutil.move(wh, moved)
    assert _rows(moved, "SELECT sum(count) FROM rna_counts") == [(30.0,)]


def test_refresh_catalog_removes_temporary_files_of_killed_builders(lake: Lake, wh: Path) -> None:
    _publish(lake, wh, "s1", "A", COUNTS)
    (wh / f".{CATALOG_NAME}.99999.tmp").write_bytes(b"half")
    (wh / f".{CATALOG_NAME}.99999.tmp.wal").write_bytes(b"half")
    refresh_catalog(lake, wh)
    assert sorted(p.name for p in wh.iterdir() if p.name.startswith(f".{CATALOG_NAME}")) == []


def test_connect_without_a_catalog_says_how_to_build_one(tmp_path: Path) -> None:
    with pytest.raises(CatalogMissing, match="build the warehouse first"):
        connect(tmp_path)


def test_remove_study_unpublishes_then_empties_every_table(lake: Lake, wh: Path) -> None:
    _publish(lake, wh, "s1", "A", COUNTS)
    _publish(lake, wh, "s2", "A", COUNTS)
    remove_study(lake, "s1")
    refresh_catalog(lake, wh)
    assert _rows(wh, "SELECT DISTINCT study_id FROM rna_counts") == [("s2",)]
    assert lake.scan("rna_counts", study_id="s1").collect().height == 0
    assert lake.scan("rna_counts", version=2, study_id="s1").collect().height == 2  # history kept


def test_table_version_that_does_not_exist_names_the_versions(lake: Lake, wh: Path) -> None:
    _publish(lake, wh, "s1", "A", COUNTS)
    with pytest.raises(ValueError, match=r"table 'rna_counts' has versions 0 to 1; version 7 does not exist"):
        warehouse.table("rna_counts", version=7, warehouse=wh)


def test_table_follows_the_catalog_when_a_run_died_before_rebuilding_it(lake: Lake, wh: Path) -> None:
    _publish(lake, wh, "s1", "A", COUNTS)
    commit_load(lake, "s1", {"rna_counts": COUNTS.with_columns(pl.col("count") * 2)}, load="B")
    _derived(lake, "s1", "B")
    publish_study(lake, "s1")  # killed here: published, catalog not rebuilt
    assert _rows(wh, "SELECT sum(count) FROM rna_counts") == [(30.0,)]
    assert warehouse.table("rna_counts", warehouse=wh).collect()["count"].sum() == 30.0  # the same answer
    refresh_catalog(lake, wh)  # the next run of any study
    assert warehouse.table("rna_counts", warehouse=wh).collect()["count"].sum() == 60.0


def test_table_of_a_missing_warehouse_is_an_error_not_an_empty_table(lake: Lake, wh: Path, tmp_path: Path) -> None:
    _publish(lake, wh, "s1", "A", COUNTS)
    assert warehouse.table("rna_counts", warehouse=wh).collect().height == 2
    for reader in (lambda w: warehouse.table("rna_counts", warehouse=w),
                   lambda w: warehouse.table("rna_counts", version=1, warehouse=w),
                   lambda w: warehouse.delta_snapshots("rna_counts", warehouse=w),
                   lambda w: warehouse.feature_versions("x", warehouse=w)):
        with pytest.raises(CatalogMissing, match=r"no lake at .*typo"):
            reader(tmp_path / "typo")  # a mistyped folder read as 0 rows before


def test_sql_output_into_a_missing_folder_is_refused_before_the_query_without_a_traceback(
        lake: Lake, wh: Path, tmp_path: Path, capsys) -> None:
    from warehouse.cli import main

    _publish(lake, wh, "s1", "A", COUNTS)
    out = tmp_path / "no_such_dir" / "counts.csv"
    assert main(["sql", "SELECT * FROM rna_counts", "--warehouse", str(wh), "--format", "csv",
                 "--output", str(out)]) == 2
    assert f"omicsdw sql: no folder {out.parent} for counts.csv" in capsys.readouterr().err
    assert main(["sql", "SELECT * FROM rna_counts", "--warehouse", str(wh), "--format", "parquet"]) == 2
    assert "omicsdw sql: --format parquet needs --output FILE" in capsys.readouterr().err


def test_sql_output_without_a_file_format_is_refused_not_ignored(lake: Lake, wh: Path, tmp_path: Path,
                                                                  capsys) -> None:
    from warehouse.cli import main

    _publish(lake, wh, "s1", "A", COUNTS)
    out = tmp_path / "counts.csv"
    assert main(["sql", "SELECT * FROM rna_counts", "--warehouse", str(wh), "--output", str(out)]) == 2
    assert "add --format csv or --format parquet" in capsys.readouterr().err
    assert not out.exists()
    assert main(["sql", "SELECT * FROM rna_counts", "--warehouse", str(wh), "--format", "csv",
                 "--output", str(out)]) == 0
    assert out.read_text().splitlines()[1:] == ["s1,counts,a,7157,TP53,10.0,", "s1,counts,b,7157,TP53,20.0,"]


def test_sql_without_a_statement_is_refused_without_a_traceback(lake: Lake, wh: Path, capsys) -> None:
    from warehouse.cli import main

    _publish(lake, wh, "s1", "A", COUNTS)
    for query in ("", "  ", "-- a comment only"):
        assert main(["sql", query, "--warehouse", str(wh)]) == 2  # was an AttributeError on None
        assert "omicsdw sql: the query has no statement" in capsys.readouterr().err


def test_sql_with_several_statements_is_refused_not_shown_as_the_last_one(lake: Lake, wh: Path, capsys) -> None:
    from warehouse.cli import main

    _publish(lake, wh, "s1", "A", COUNTS)
    # printed the one row of the second SELECT, exit 0: the two counts of the first were never shown (trialK)
    assert main(["sql", "SELECT count(*) FROM rna_counts; SELECT 'second'", "--warehouse", str(wh)]) == 2
    captured = capsys.readouterr()
    assert "the query holds 2 statements" in captured.err
    assert "second" not in captured.out
    assert main(["sql", "SELECT count(*) AS n FROM rna_counts;", "--warehouse", str(wh), "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["n", "2"]  # one statement and a trailing ';' still run
