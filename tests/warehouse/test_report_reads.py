"""A study's report reads the catalog's views over that study's published files only, and shows what a session on
the whole catalog (``warehouse.duckdb``) shows of the study.
"""

from __future__ import annotations

import shutil
from dataclasses import fields
from pathlib import Path

import polars as pl
import pytest

from schemas.tables import GLOBAL_TABLES, PUBLISHED_TABLES, polars_schema
from warehouse.catalog import STATUS_VIEW, connect, view_names
from warehouse.lake import Lake
from warehouse.report import (
    INDEX,
    REPORT_TABLES,
    REPORTS,
    read_study_report,
    report_session,
    study_session,
    write_study_report,
)

pytestmark = pytest.mark.slow
STUDIES = ("airway", "pasilla")


@pytest.fixture(scope="module")
def built(examples_built) -> Path:
    """The examples built by the CLI, STUDIES among them (with plots: the report embeds the stages' PNGs); read only."""
    return examples_built[1]


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows in one order (the catalog does not promise one): by every column of a sortable type."""
    keys = [c for c, t in frame.schema.items() if not isinstance(t, pl.List | pl.Struct)]
    return frame.sort(keys, nulls_last=True)


@pytest.mark.parametrize("study_id", STUDIES)
def test_study_session_shows_the_rows_and_report_data_the_full_catalog_shows_of_the_study(built: Path,
                                                                                        study_id: str) -> None:
    lake = Lake(built / "lake")
    whole, own = connect(built), study_session(lake, study_id)
    try:
        views = {v for (v,) in whole.execute("SELECT table_name FROM information_schema.tables "
                                             "WHERE table_type = 'VIEW'").fetchall()}
        views.remove(STATUS_VIEW)  # warehouse-wide: a study's session leaves it out (it read every study's attempts)
        assert views == {v for (v,) in own.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        rows = 0
        for view in sorted(views):
            columns = [c for (c,) in whole.execute("SELECT column_name FROM information_schema.columns "
                                                   "WHERE table_name = ?", [view]).fetchall()]
            if view in GLOBAL_TABLES or "study_id" not in columns:
                continue
            query = f'SELECT * FROM "{view}" WHERE study_id = ?'
            expected = _sorted(whole.sql(query, params=[study_id]).pl())
            found = _sorted(own.sql(query, params=[study_id]).pl())
            assert found.equals(expected), view
            assert own.execute(f'SELECT count(*) FROM "{view}" WHERE study_id <> ?', [study_id]).fetchall() == [(0,)]
            rows += expected.height
        assert rows > 1_000  # something to compare: the study's counts at least
        folder = built / REPORTS / study_id
        expected_report = read_study_report(whole, study_id, folder=folder)
        found_report = read_study_report(own, study_id, folder=folder)
    finally:
        whole.close()
        own.close()
    for field in fields(expected_report):
        a, b = getattr(found_report, field.name), getattr(expected_report, field.name)
        assert a.equals(b) if isinstance(b, pl.DataFrame) else a == b, field.name
    assert expected_report.contrast_plots
    assert expected_report.vst.height > 0


@pytest.mark.parametrize("study_id", ["airway", "pasilla", "study_es_0"])
def test_report_session_gives_the_report_data_a_session_with_every_view_gives(built: Path, study_id: str) -> None:
    """The report's session holds only the views it reads (study_es_0: RNA and protein, so the rna-protein
    correlations are queried), and the views named in the report's fingerprint are every view."""
    lake = Lake(built / "lake")
    whole, own = study_session(lake, study_id), report_session(lake, study_id)
    try:
        every = sorted(v for (v,) in whole.execute("SELECT table_name FROM information_schema.tables").fetchall())
        kept = {v for (v,) in own.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        assert [v for v in view_names() if v != STATUS_VIEW] == every  # study_status: warehouse-wide, left out
        assert len(kept) < len(every) / 2
        folder = built / REPORTS / study_id
        expected, found = (read_study_report(whole, study_id, folder=folder),
                           read_study_report(own, study_id, folder=folder))
    finally:
        whole.close()
        own.close()
    for field in fields(expected):
        a, b = getattr(found, field.name), getattr(expected, field.name)
        assert a.equals(b) if isinstance(b, pl.DataFrame) else a == b, field.name
    if study_id == "study_es_0":
        assert expected.rna_protein is not None  # the rna-protein query ran
    assert set(REPORT_TABLES) < set(every)


def test_write_study_report_reads_no_file_of_another_study_and_writes_the_same_page(built: Path,
                                                                                 tmp_path: Path) -> None:
    """Every published file of airway except its ``studies`` row (the report index lists every study) is
    truncated: pasilla's report is written as before, since it binds none of them (a catalog session binds every
    study's files on each query, so it fails on the first).
    """
    wh = tmp_path / "warehouse"
    shutil.copytree(built, wh)
    lake = Lake(wh / "lake")
    ledger = lake.scan("study_versions", study_id="airway").select("table_name", "files").collect()
    damaged = 0
    for table, files in ledger.iter_rows():
        for file in files if table != "studies" else []:
            (wh / "lake" / table / file).write_bytes(b"PAR1")
            damaged += 1
    assert damaged >= 12  # airway's published files but its studies row (sample_clusters: one file an assay)
    page = wh / REPORTS / "pasilla" / INDEX
    before = page.read_text()
    (page.parent / ".fingerprint").unlink()  # written anew, not kept as unchanged
    written = write_study_report(wh, "pasilla", lake=lake, plots=True)
    assert not written.unchanged
    assert page.read_text() == before
    index = (wh / REPORTS / INDEX).read_text()
    assert 'href="airway/index.html"' in index
    assert 'href="pasilla/index.html"' in index


def test_study_session_of_an_unpublished_study_has_empty_typed_views(built: Path) -> None:
    con = study_session(Lake(built / "lake"), "never_loaded")
    try:
        for table in PUBLISHED_TABLES:
            assert con.execute(f'SELECT count(*) FROM "{table}"').fetchall() == [(0,)], table
        assert [d[0] for d in con.execute("SELECT * FROM rna_counts").description] == list(polars_schema("rna_counts"))
        with pytest.raises(LookupError, match="not published"):
            read_study_report(con, "never_loaded", folder=built)
    finally:
        con.close()
