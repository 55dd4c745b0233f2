"""A warehouse over years: remove a study, vacuum what no reader needs, evolve a table's schema, doctor damage."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandera.polars as pa
import polars as pl
import pytest

import schemas.tables as tables
import warehouse.catalog
from schemas.tables import STUDY_TABLES
from tests.lake_rows import commit_load
from tests.warehouse.test_catalog import COUNTS, _derived, _publish, _rows
from warehouse.catalog import absent_columns, refresh_catalog
from warehouse.cli import main
from warehouse.commit import commit_frames
from warehouse.lake import STUDY_KEY, Lake
from warehouse.maintenance import doctor, protected_versions, vacuum
from warehouse.publish import publish_study


def test_remove_study_empties_every_table_with_one_commit_each(lake: Lake, wh: Path, capsys) -> None:
    _publish(lake, wh, "s1", "A", COUNTS)
    _publish(lake, wh, "s2", "A", COUNTS)
    present = [t for t in STUDY_TABLES if lake.exists(t)]
    before = {t: lake.version(t) for t in present}
    assert main(["remove", "s1", "--warehouse", str(wh)]) == 0
    for table in present:
        assert lake.scan(table, study_id="s1").select(pl.len()).collect().item() == 0, table
        new = [c for c in lake.delta(table).history() if c["version"] > before[table]]
        assert [c.get(STUDY_KEY) for c in new] == ["s1"], table  # exactly one commit per table
    assert _rows(wh, "SELECT DISTINCT study_id FROM rna_counts") == [("s2",)]
    assert _rows(wh, "SELECT count(*) FROM studies WHERE study_id = 's1'") == [(0,)]
    assert main(["remove", "s1", "--warehouse", str(wh)]) == 2  # gone: nothing left to remove
    assert "is not in" in capsys.readouterr().err


def test_remove_study_waits_for_a_build_of_it_in_progress_and_removes_nothing_past_the_timeout(
        lake: Lake, wh: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import warehouse.lake

    _publish(lake, wh, "s1", "A", COUNTS)
    monkeypatch.setattr(warehouse.lake, "BUILD_LOCK_TIMEOUT_S", 0.5)
    with lake.study_build("s1"):  # `omicsdw build` holds it for the study's whole run, between its steps too
        assert main(["remove", "s1", "--warehouse", str(wh)]) == 1
    err = capsys.readouterr().err
    assert "waiting for a build of 's1'" in err
    assert "nothing removed" in err
    assert _rows(wh, "SELECT count(*) FROM rna_counts WHERE study_id = 's1'") == [(len(COUNTS),)]
    assert main(["remove", "s1", "--warehouse", str(wh)]) == 0  # the build over: removed


def test_remove_of_a_mistyped_study_names_the_study_meant_and_removes_nothing(lake: Lake, wh: Path, capsys) -> None:
    _publish(lake, wh, "pasilla", "A", COUNTS)
    _publish(lake, wh, "airway", "A", COUNTS)
    assert main(["remove", "pasila", "--warehouse", str(wh)]) == 2
    assert capsys.readouterr().err.endswith("is not in " + str(wh) + "; did you mean 'pasilla'?\n")
    assert main(["remove", "zzz", "--warehouse", str(wh)]) == 2
    assert capsys.readouterr().err.endswith("; its studies: airway, pasilla\n")
    assert _rows(wh, "SELECT DISTINCT study_id FROM rna_counts ORDER BY 1") == [("airway",), ("pasilla",)]


def test_remove_study_from_a_warehouse_folder_that_does_not_exist_says_so_and_creates_nothing(
        tmp_path: Path, capsys) -> None:
    typo = tmp_path / "warehouse_dat"
    assert main(["remove", "s1", "--warehouse", str(typo)]) == 2
    assert f"no lake at {typo / 'lake'}" in capsys.readouterr().err
    assert not typo.exists()


def _two_studies_in_dagster(lake: Lake, wh: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """s1 and s2 published, with their Dagster partitions in a fresh DAGSTER_HOME (as the landing sensor or
    `omicsdw build` leaves them); returns that home."""
    import dagster as dg

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    _publish(lake, wh, "s1", "A", COUNTS)
    _publish(lake, wh, "s2", "A", COUNTS)
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("studies", ["s1", "s2"])
    return home


def test_remove_study_deletes_its_dagster_partition_and_the_landing_sensor_does_not_add_it_back(
        lake: Lake, wh: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import dagster as dg

    from orchestration.resources import WarehouseResource
    from orchestration.sensors import landing_sensor

    home = _two_studies_in_dagster(lake, wh, tmp_path, monkeypatch)
    assert main(["remove", "s1", "--warehouse", str(wh)]) == 0
    assert "deleted its Dagster partition 's1'" in capsys.readouterr().out
    landing = tmp_path / "landing"  # the study's folder was deleted too
    landing.mkdir()
    resource = WarehouseResource(landing_dir=str(landing), warehouse_dir=str(wh))
    with dg.DagsterInstance.get() as instance:  # a fresh handle on the same DAGSTER_HOME: what the UI lists
        assert instance.get_dynamic_partitions("studies") == ["s2"]
        tick = landing_sensor(dg.build_sensor_context(instance=instance, resources={"warehouse": resource},
                                                      cursor='{"s1": ["x", "y"], "s2": ["x", "y"]}'))
        assert (tick.run_requests, tick.dynamic_partitions_requests) == ([], [])
    assert main(["remove", "s2", "--warehouse", str(wh)]) == 0
    capsys.readouterr()
    monkeypatch.delenv("DAGSTER_HOME")  # no instance: the warehouse alone, as before
    _publish(lake, wh, "s3", "A", COUNTS)
    assert main(["remove", "s3", "--warehouse", str(wh)]) == 0
    assert "Dagster partition" not in capsys.readouterr().out
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_dynamic_partitions("studies") == []


def test_remove_study_with_another_table_damaged_still_removes_its_report_and_partition_then_names_doctor(
        lake: Lake, wh: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import dagster as dg

    from warehouse.report import REPORTS

    _two_studies_in_dagster(lake, wh, tmp_path, monkeypatch)
    report = wh / REPORTS / "s1" / "index.html"  # as the study_report asset leaves it
    report.parent.mkdir(parents=True)
    report.write_text("<html>s1</html>")
    for part in lake.study_files("rna_counts", "s2")[1]:  # s2's published file lost: no catalog can be built
        Path(lake.uri("rna_counts"), part).unlink()
    capsys.readouterr()
    assert main(["remove", "s1", "--warehouse", str(wh)]) == 1
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    assert f"omicsdw doctor --warehouse {wh}" in out.err
    assert not report.parent.exists()
    with dg.DagsterInstance.get() as instance:
        assert instance.get_dynamic_partitions("studies") == ["s2"]
    assert lake.scan("rna_counts", study_id="s1").select(pl.len()).collect().item() == 0


def _rows_of(table: str, **columns: list) -> pl.DataFrame:
    """Rows of ``table`` with the given columns, the contract's other columns NULL."""
    schema = tables.polars_schema(table)
    height = len(next(iter(columns.values())))
    return pl.DataFrame({c: columns.get(c, [None] * height) for c in schema}, schema=schema)


def test_remove_study_drops_its_rows_from_the_cross_study_tables(lake: Lake, wh: Path) -> None:
    _publish(lake, wh, "s1", "A", COUNTS)
    _publish(lake, wh, "s2", "A", COUNTS)
    libraries = {"scope": ["shipped", "study"], "study_id": [None, "s1"], "library": ["hallmark", "own"],
                 "gene_set": ["SET", "OWN_SET"]}
    registry = [("gene_sets", _rows_of("gene_sets", **libraries, kind=["set"] * 2, n_genes=[1, 1],
                                       n_mapped=[1, 1])),
                ("gene_set_members", _rows_of("gene_set_members", **libraries, gene_id=[7157, 7157],
                                              identifier=["TP53", "TP53"]))]
    assert commit_frames(lake, registry, tables=["gene_sets", "gene_set_members"], study_id=None,
                         fingerprint="registry").ok
    matches = _rows_of("signature_matches", query_kind=["contrast"] * 3, query_study_id=["s1", "s2", "s2"],
                       query_name=["c"] * 3, target_study_id=["s2", "s1", "s2"], target_contrast=["c"] * 3,
                       n_up=[1] * 3, n_down=[0] * 3, method=["cmap_wks"] * 3, query_version=["v"] * 3,
                       target_version=["v"] * 3)
    assert commit_frames(lake, [("signature_matches", matches)], tables=["signature_matches"], study_id=None,
                         fingerprint="matches").ok
    before = {t: lake.version(t) for t in ("gene_sets", "gene_set_members", "signature_matches")}
    assert main(["remove", "s1", "--warehouse", str(wh)]) == 0
    for table, version in before.items():
        assert lake.version(table) == version + 1, table  # one commit each
    assert lake.scan("gene_sets").select("study_id").collect()["study_id"].to_list() == [None]
    assert lake.scan("gene_set_members").select("study_id").collect()["study_id"].to_list() == [None]
    assert _rows(wh, "SELECT query_study_id, target_study_id FROM signature_matches") == [("s2", "s2")]


def _feature_set_row(lake: Lake, inputs: dict) -> None:
    """A stored feature-set version whose manifest records its input versions (as warehouse.feature_sets does)."""
    row = pl.DataFrame({"feature_set": ["panel"], "version": [1], "created_at": [datetime.now(UTC)], "rows": [2],
                        "columns": [1], "content_hash": ["h"], "manifest": [json.dumps({"inputs": inputs})]})
    schema = tables.polars_schema("feature_sets")
    frame = pl.DataFrame({c: row[c] if c in row.columns else None for c in schema}).cast(schema)  # type: ignore[arg-type]
    assert commit_frames(lake, [("feature_sets", frame)], tables=["feature_sets"], study_id=None,
                         fingerprint="fs-1").ok


def test_vacuum_keeps_the_versions_a_stored_feature_set_was_built_from(lake: Lake, wh: Path) -> None:
    _publish(lake, wh, "s1", "A", COUNTS)
    version_a = lake.study_version("rna_counts", "s1")
    assert version_a is not None
    _feature_set_row(lake, {"study_versions": lake.version("study_versions"),
                            "tables": {"rna_counts": {"s1": version_a}}})
    commit_load(lake, "s1", {"rna_counts": COUNTS.with_columns(pl.col("count") * 2)}, load="B")
    _derived(lake, "s1", "B")
    assert publish_study(lake, "s1").ok  # load A is neither published nor current any more
    assert version_a in protected_versions(lake)["rna_counts"]
    vacuum(lake, retention_hours=0)
    kept = lake.scan("rna_counts", version=version_a, study_id="s1").select(pl.col("count").sum()).collect()
    assert kept.item() == 30.0  # the feature set's input version is still readable


def _registry(lake: Lake, genes: list[int]) -> None:
    """The gene-set registry rewritten whole (as a new library in any study folder does)."""
    schema = tables.polars_schema("gene_set_members")
    members = pl.DataFrame({"scope": "shipped", "library": "lib", "gene_set": "SET", "gene_id": genes,
                            "identifier": [str(g) for g in genes]}).with_columns(
        **{c: pl.lit(None) for c in schema if c not in ("scope", "library", "gene_set", "gene_id", "identifier")}
    ).select(list(schema)).cast(schema)  # type: ignore[arg-type]
    assert commit_frames(lake, [("gene_set_members", members)], tables=["gene_set_members"], study_id=None,
                         fingerprint=f"registry-{genes}").ok


def test_vacuum_keeps_the_gene_set_registry_version_a_feature_set_was_built_from(lake: Lake, wh: Path) -> None:
    from warehouse.feature_sets import _input_versions

    _publish(lake, wh, "s1", "A", COUNTS)
    _registry(lake, [7157, 4609])
    inputs = _input_versions(lake, ["s1"])  # what a feature-set build records in its manifest
    built_on = lake.version("gene_set_members")
    _feature_set_row(lake, inputs)
    _registry(lake, [7157])  # a new library: the registry is a new version, the old file is removed from it
    assert built_on in protected_versions(lake)["gene_set_members"]
    vacuum(lake, retention_hours=0)
    members = lake.scan("gene_set_members", version=built_on).select("gene_id").collect()
    assert sorted(members["gene_id"]) == [4609, 7157]


def test_vacuum_leaves_the_staged_files_of_a_run_in_progress(lake: Lake, wh: Path) -> None:
    _publish(lake, wh, "s1", "A", COUNTS)
    running = Lake(lake.root)  # another session (as another process would): it holds study s2's lock
    with running.study_session("s2"):
        staged = running.stage("rna_counts", COUNTS.with_columns(pl.lit("s2").alias("study_id")), study_id="s2")
        assert lake.sessions_in_progress() == ["s2"]
        vacuum(lake, retention_hours=0)
        assert all(Path(lake.uri("rna_counts"), f).is_file() for f in staged.relative_paths)
    assert lake.sessions_in_progress() == []
    deleted = {v.table: v.files for v in vacuum(lake, retention_hours=0)}  # the run ended without committing
    assert sorted(deleted["rna_counts"]) == sorted(staged.relative_paths)


def test_new_optional_column_appends_without_rewriting_old_studies(lake: Lake, wh: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    commit_load(lake, "old", {"rna_counts": COUNTS}, load="A")
    old_files = lake.study_files("rna_counts", "old")[1]
    stamps = {f: Path(lake.uri("rna_counts"), f).stat().st_mtime_ns for f in old_files}

    current = tables.TABLES["rna_counts"]

    class RnaCountsV2(current):  # type: ignore[valid-type,misc]
        batch: str | None = pa.Field(nullable=True, description="Sequencing batch (added in a later release).")

    monkeypatch.setitem(tables.TABLES, "rna_counts", RnaCountsV2)
    commit_load(lake, "new", {"rna_counts": COUNTS.with_columns(pl.lit("b1").alias("batch"))}, load="B")
    assert lake.study_files("rna_counts", "old")[1] == old_files  # the old study's files: the same, untouched
    assert {f: Path(lake.uri("rna_counts"), f).stat().st_mtime_ns for f in old_files} == stamps
    rows = lake.scan("rna_counts").select("study_id", "batch").unique().sort("study_id").collect().rows()
    assert rows == [("new", "b1"), ("old", None)]
    for study in ("old", "new"):
        _derived(lake, study, "A" if study == "old" else "B")
        assert publish_study(lake, study).ok
    refresh_catalog(lake, wh)  # analysts' SQL: the old files have no such column, the view gives NULL
    assert _rows(wh, "SELECT DISTINCT study_id, batch FROM rna_counts ORDER BY 1") == [("new", "b1"), ("old", None)]


def test_new_optional_column_that_no_study_has_written_yet_is_null_in_sql(lake: Lake, wh: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The release adding the column is deployed; before any study is written again (its first study failing, a
    removal) the catalog is rebuilt: the view named a column no file had, so every rebuild failed."""
    _publish(lake, wh, "old", "A", COUNTS)
    current = tables.TABLES["rna_counts"]

    class RnaCountsV2(current):  # type: ignore[valid-type,misc]
        batch: str | None = pa.Field(nullable=True, description="Sequencing batch (added in a later release).")

    monkeypatch.setitem(tables.TABLES, "rna_counts", RnaCountsV2)
    refresh_catalog(lake, wh)
    assert _rows(wh, "SELECT study_id, count(*), count(batch) FROM rna_counts GROUP BY ALL") == [("old", 2, 0)]
    assert _rows(wh, "SELECT sum(count) FROM rna_counts WHERE study_id = 'old'") == [(30.0,)]
    # a list column is one column, not its leaf ('element'): never taken for a column the files lack
    assert _rows(wh, "SELECT count(*) FROM study_versions WHERE files IS NULL") == [(0,)]


def test_absent_columns_unreadable_footers_never_turn_columns_into_nulls(lake: Lake, wh: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A footer that cannot be read says nothing about the columns its file lacks: every column stays named."""
    _publish(lake, wh, "s1", "A", COUNTS)

    def unreadable(self: Lake, uri: str) -> object:
        raise OSError("connection reset")

    monkeypatch.setattr(Lake, "_metadata", unreadable)
    monkeypatch.setattr(warehouse.catalog, "_FILE_COLUMNS", {})  # the footers the publish read: forgotten
    files = lake.study_files("rna_counts", "s1")[1]
    assert absent_columns(lake, "rna_counts", [f"rna_counts/{f}" for f in files]) == []
    refresh_catalog(lake, wh)
    assert _rows(wh, "SELECT count(*), count(count), count(gene_id) FROM rna_counts") == [(2, 2, 2)]


def test_absent_columns_reads_each_file_footer_once_per_process(lake: Lake, wh: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """While a column really is absent every footer is read (~15 ms a file on an object store): not on every
    rebuild of a long-running process too."""
    _publish(lake, wh, "s1", "A", COUNTS)
    _publish(lake, wh, "s2", "A", COUNTS)
    current = tables.TABLES["rna_counts"]

    class RnaCountsV2(current):  # type: ignore[valid-type,misc]
        batch: str | None = pa.Field(nullable=True, description="Sequencing batch (added in a later release).")

    monkeypatch.setitem(tables.TABLES, "rna_counts", RnaCountsV2)
    files = [f"rna_counts/{f}" for s in ("s1", "s2") for f in lake.study_files("rna_counts", s)[1]]
    read = []
    footer = Lake._metadata

    def counted(self: Lake, uri: str) -> object:
        read.append(uri)
        return footer(self, uri)

    monkeypatch.setattr(Lake, "_metadata", counted)
    monkeypatch.setattr(warehouse.catalog, "_FILE_COLUMNS", {})  # the footers the publishes read: forgotten
    assert absent_columns(lake, "rna_counts", files) == ["batch"]
    assert absent_columns(lake, "rna_counts", files) == ["batch"]
    assert sorted(read) == sorted(f"{lake.root}/{f}" for f in files)  # each once, over both calls


def test_doctor_names_a_corrupt_file_a_stale_catalog_and_reports_the_reference(lake: Lake, wh: Path,
                                                                              capsys) -> None:
    _publish(lake, wh, "s1", "A", COUNTS)
    assert main(["doctor", "--warehouse", str(wh)]) == 0
    out = capsys.readouterr().out
    assert "gene reference: org.Hs.eg.db 3.16.0" in out
    assert out.rstrip().endswith("healthy")
    _publish(lake, wh, "s2", "A", COUNTS)
    refresh_catalog(lake, wh)
    commit_load(lake, "s3", {"rna_counts": COUNTS}, load="A")
    _derived(lake, "s3", "A")
    assert publish_study(lake, "s3").ok  # published, but the catalog was not rebuilt: stale
    assert any("is stale" in p and p.startswith("rna_counts:") for p in doctor(lake, wh))
    refresh_catalog(lake, wh)
    (published, *_) = lake.study_files("rna_counts", "s2")[1]
    target = Path(lake.uri("rna_counts"), published)
    target.write_bytes(target.read_bytes()[:40])  # a torn write: no Parquet footer
    problems = doctor(lake, wh)
    assert any(p.startswith("rna_counts: ") for p in problems), problems
    assert main(["doctor", "--warehouse", str(wh)]) == 1
    assert "rna_counts" in capsys.readouterr().out


@pytest.mark.slow
def test_build_keeps_a_study_whose_landing_folder_was_deleted_until_remove(tmp_path: Path, capsys,
                                                                         study_folder) -> None:
    from tests.warehouse.catalog_sql import sql

    landing, wh = tmp_path / "landing", tmp_path / "wh"
    for sid in ("keep", "gone"):  # 'gone' has a gene-set library of its own (TP53 7157, MYC 4609)
        study_folder(landing, f"study_id: {sid}\nname: {sid}\nassays:\n  - {{name: rna, kind: rna_counts, "
                     "format: matrix, path: counts.tsv, gene_id_type: symbol}\n"
                     + ("gene_sets: [own.gmt]\n" if sid == "gone" else ""),
                     {"counts.tsv": "gene\tS1\tS2\nTP53\t10\t20\nMYC\t5\t6\n",
                      "own.gmt": "OWN_SET\tna\tTP53\tMYC\n"}, name=sid)
    assert main(["build", "--landing", str(landing), "--warehouse", str(wh)]) == 0
    own = "SELECT library, gene_set, identifier, gene_id FROM gene_set_members WHERE study_id = 'gone' ORDER BY 3"
    members = [("own", "OWN_SET", "MYC", 4609), ("own", "OWN_SET", "TP53", 7157)]
    assert sql(wh, own) == members
    shutil.rmtree(landing / "gone")
    capsys.readouterr()
    assert main(["build", "--landing", str(landing), "--warehouse", str(wh)]) == 0
    out = capsys.readouterr().out
    assert f"kept: gone has no folder in {landing}" in out
    assert "any more" not in out  # it never had one there when the landing is another folder than the first
    assert sql(wh, "SELECT study_id, count(*) FROM rna_counts GROUP BY ALL ORDER BY 1") == [("gone", 4), ("keep", 4)]
    assert sql(wh, own) == members  # kept whole: its library too (trialK: the registry rewrite dropped it)
    assert main(["remove", "gone", "--warehouse", str(wh)]) == 0
    assert sql(wh, "SELECT DISTINCT study_id FROM rna_counts") == [("keep",)]
    assert sql(wh, own) == []
