"""vacuum keeps what published studies read; doctor names what is damaged."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from tests.lake_rows import commit_load
from tests.warehouse.test_catalog import COUNTS, _derived, _publish, _rows
from warehouse.catalog import CATALOG_NAME, refresh_catalog
from warehouse.cli import main
from warehouse.lake import Lake
from warehouse.maintenance import doctor, vacuum


def test_vacuum_keeps_the_files_a_published_study_still_reads(lake: Lake, wh: Path) -> None:
    _publish(lake, wh, "s1", "A", COUNTS)
    commit_load(lake, "s1", {"rna_counts": COUNTS.with_columns(pl.col("count") * 2)}, load="B")  # not published
    vacuum(lake, retention_hours=0)
    assert _rows(wh, "SELECT sum(count) FROM rna_counts") == [(30.0,)]  # load A's file survived
    _derived(lake, "s1", "B")
    from warehouse.publish import publish_study

    publish_study(lake, "s1")
    refresh_catalog(lake, wh)
    deleted = {v.table: v.files for v in vacuum(lake, retention_hours=0)}
    assert len(deleted["rna_counts"]) == 1  # load A's file, no longer published or current
    assert _rows(wh, "SELECT sum(count) FROM rna_counts") == [(60.0,)]


def test_doctor_names_a_stale_catalog_a_missing_file_and_orphans(lake: Lake, wh: Path, capsys) -> None:
    _publish(lake, wh, "s1", "A", COUNTS)
    assert doctor(lake, wh) == []
    assert main(["doctor", "--warehouse", str(wh)]) == 0
    lake.stage("rna_counts", COUNTS.with_columns(pl.lit("s1").alias("study_id")), study_id="s1")  # never committed
    (published,) = list(Path(lake.uri("studies")).rglob("*.parquet"))
    published.unlink()
    (wh / CATALOG_NAME).unlink()
    problems = doctor(lake, wh)
    assert any(p.startswith("catalog: no catalog") for p in problems)
    assert any(p.startswith("studies: 1 file(s) readers need are missing") for p in problems)
    assert any(p.startswith("rna_counts: 1 file(s) in the lake no Delta version references") for p in problems)
    assert main(["doctor", "--warehouse", str(wh)]) == 1
    assert "problem(s)" in capsys.readouterr().out
