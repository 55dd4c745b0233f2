"""vacuum keeps what published studies read; doctor names what is damaged."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

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
    assert [v.table for v in vacuum(lake, retention_hours=0) if v.files] == []  # nothing is deleted twice


def test_vacuum_never_deletes_the_files_of_a_run_that_began_after_it_looked_for_runs(
        lake: Lake, wh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`omicsdw vacuum` beside `omicsdw build`: the build took a study's lock just after vacuum looked for runs in
    progress, staged its files, and vacuum deleted them before their commit (the build failed reading one back)."""
    _publish(lake, wh, "s1", "A", COUNTS)
    rows = COUNTS.with_columns(pl.lit("s1").alias("study_id"))
    killed = lake.stage("rna_counts", rows, study_id="s1")  # a run killed earlier: an orphan
    staged = []

    def run_begins(self: Lake) -> list[str]:  # none when vacuum first looks; one begins at once and stages
        if not staged:
            staged.append(Lake(lake.root).stage("rna_counts", rows, study_id="s1"))
            return []
        return ["s1"]

    monkeypatch.setattr(Lake, "sessions_in_progress", run_begins)
    vacuum(lake, retention_hours=0)
    (new,) = staged
    assert all(Path(lake.uri("rna_counts"), f).is_file() for f in new.relative_paths)
    monkeypatch.undo()  # the run ended without committing: both are orphans now
    deleted = {v.table: v.files for v in vacuum(lake, retention_hours=0)}
    assert sorted(deleted["rna_counts"]) == sorted(killed.relative_paths + new.relative_paths)
    assert _rows(wh, "SELECT sum(count) FROM rna_counts") == [(30.0,)]


def test_time_travel_to_a_version_vacuum_deleted_says_so(lake: Lake, wh: Path) -> None:
    import warehouse
    from warehouse.publish import publish_study

    _publish(lake, wh, "s1", "A", COUNTS)
    load_a = lake.version("rna_counts")
    commit_load(lake, "s1", {"rna_counts": COUNTS.with_columns(pl.col("count") * 2)}, load="B")
    _derived(lake, "s1", "B")
    assert publish_study(lake, "s1").ok
    vacuum(lake, retention_hours=0)  # load A is neither published nor newest any more
    with pytest.raises(FileNotFoundError, match=r"version \d+ of 'rna_counts' cannot be read: 1 of its 1 files") \
            as caught:
        warehouse.table("rna_counts", version=load_a, warehouse=wh).collect()
    assert "retention window, --retention-hours" in str(caught.value)  # not deleted by the vacuum of a moment ago
    assert "deleted or lost otherwise" in str(caught.value)  # vacuum is not the only cause
    newest = warehouse.table("rna_counts", version=lake.version("rna_counts"), warehouse=wh).collect()
    assert newest["count"].sum() == 60.0


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


def test_doctor_says_a_lost_catalog_of_a_built_lake_is_rebuilt_by_a_build_not_a_first_build(lake: Lake,
                                                                                            wh: Path) -> None:
    _publish(lake, wh, "s1", "A", COUNTS)
    (wh / CATALOG_NAME).unlink()
    (problem,) = doctor(lake, wh)
    assert problem.startswith(f"catalog: no catalog at {wh / CATALOG_NAME}, but the lake {lake.root} holds "
                              "published studies; rebuild the catalog: omicsdw build --landing DIR --warehouse ")
    assert "build the warehouse first" not in problem  # what a warehouse never built is told


def _doctor_output(wh: Path, capsys) -> tuple[int, str]:
    """``omicsdw doctor`` as a user runs it: exit code and everything printed (a traceback fails the test)."""
    capsys.readouterr()
    code = main(["doctor", "--warehouse", str(wh)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return code, captured.out


@pytest.mark.parametrize("damage", ["corrupt_json", "missing_first_commit", "no_log", "study_versions",
                                    "empty_commit"])
def test_doctor_names_a_table_whose_delta_log_is_damaged(lake: Lake, wh: Path, capsys, damage: str) -> None:
    _publish(lake, wh, "s1", "A", COUNTS)
    table = "study_versions" if damage == "study_versions" else "rna_counts"
    log = Path(lake.uri(table), "_delta_log")
    commits = sorted(log.glob("*.json"))
    if damage == "no_log":
        shutil.rmtree(log)
    elif damage == "missing_first_commit":
        commits[0].unlink()
    elif damage == "empty_commit":  # cut to 0 bytes (a crash before the data reached the disk, a full disk)
        commits[-1].write_bytes(b"")
    else:
        commits[-1].write_text('{"add": {"path": "part-')  # a torn commit file
    code, out = _doctor_output(wh, capsys)
    assert code == 1
    named = [line for line in out.splitlines() if line.startswith(f"{table}: ")]
    assert ["Delta log" in line for line in named] == [True], out
    assert main(["vacuum", "--warehouse", str(wh), "--retention-hours", "0"]) == 1  # refuses: nothing deleted
    assert f"{table}:" in capsys.readouterr().err
    assert _rows(wh, "SELECT sum(count) FROM rna_counts") == [(30.0,)]  # analysts still read the published set


def test_doctor_names_a_torn_commit_file_older_than_the_newest_checkpoint_and_vacuum_refuses(
        lake: Lake, wh: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    """The newest version opens from its checkpoint without reading older commit files, so a torn one went unseen:
    doctor said healthy and vacuum, opening the version a published study reads, stopped with a traceback."""
    import warehouse.lake

    monkeypatch.setattr(warehouse.lake, "CHECKPOINT_EVERY", 1)  # a checkpoint after every commit
    _publish(lake, wh, "s1", "A", COUNTS)
    _publish(lake, wh, "s2", "A", COUNTS)
    log = Path(lake.uri("rna_counts"), "_delta_log")
    assert list(log.glob("*.checkpoint.parquet"))
    first = sorted(log.glob("*.json"))[1]  # s1's load, read by its published set; the newest is s2's
    first.write_text('{"add": {"path": "part-')
    code, out = _doctor_output(wh, capsys)
    assert code == 1
    assert [line.split(":")[0] for line in out.splitlines() if "Delta log" in line] == ["rna_counts"], out
    assert f"_delta_log/{first.name}" in out
    assert main(["vacuum", "--warehouse", str(wh), "--retention-hours", "0"]) == 1  # refuses, no traceback
    assert "rna_counts: " in capsys.readouterr().err
    assert _rows(wh, "SELECT sum(count) FROM rna_counts") == [(60.0,)]  # analysts still read both studies


def test_a_verb_stopped_by_a_torn_delta_log_says_so_in_one_line_naming_doctor(lake: Lake, wh: Path, capsys) -> None:
    _publish(lake, wh, "s1", "A", COUNTS)
    _publish(lake, wh, "s2", "A", COUNTS)
    sorted(Path(lake.uri("rna_counts"), "_delta_log").glob("*.json"))[-1].write_text('{"add": {"path": "part-')
    capsys.readouterr()
    assert main(["remove", "s1", "--warehouse", str(wh)]) == 1  # was a DeltaError traceback
    err = capsys.readouterr().err
    assert err.startswith("omicsdw remove: a table of the lake cannot be read (")
    assert f"omicsdw doctor --warehouse {wh}" in err


def test_a_commit_lost_to_another_writer_says_run_it_again_not_doctor(lake: Lake, wh: Path, capsys,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from deltalake.exceptions import CommitFailedError

    import warehouse.publish

    _publish(lake, wh, "s1", "A", COUNTS)

    def raced(*args: object, **kwargs: object) -> None:
        raise CommitFailedError("Transaction failed: version already exists: 3")

    monkeypatch.setattr(warehouse.publish, "remove_study", raced)
    capsys.readouterr()
    assert main(["remove", "s1", "--warehouse", str(wh)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("omicsdw remove: another writer committed to the same table at the same time (")
    assert "run it again" in err
    assert "doctor" not in err


def test_a_delta_error_on_a_healthy_lake_is_not_called_damage(lake: Lake, wh: Path, capsys,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from deltalake.exceptions import SchemaMismatchError

    import warehouse.publish

    _publish(lake, wh, "s1", "A", COUNTS)

    def mismatched(*args: object, **kwargs: object) -> None:
        raise SchemaMismatchError("Cannot cast schema, number of fields does not match")

    monkeypatch.setattr(warehouse.publish, "remove_study", mismatched)
    capsys.readouterr()
    with pytest.raises(SchemaMismatchError):  # its traceback: a bug to report, not a table to repair
        main(["remove", "s1", "--warehouse", str(wh)])
    assert "cannot be read" not in capsys.readouterr().err


def test_doctor_names_a_catalog_that_is_not_a_database_and_orphans_of_each_table(lake: Lake, wh: Path,
                                                                                capsys) -> None:
    _publish(lake, wh, "s1", "A", COUNTS)
    for table in ("rna_counts", "samples"):
        lake.stage(table, lake.scan(table).collect(), study_id="s1")  # staged by a run killed before its commit
    code, out = _doctor_output(wh, capsys)
    assert code == 1
    assert [line.split(":")[0] for line in out.splitlines() if "no Delta version references" in line] == \
        ["samples", "rna_counts"]  # each table named (in table order), not only the first
    (wh / CATALOG_NAME).write_bytes(b"not a duckdb file" * 300)
    code, out = _doctor_output(wh, capsys)
    assert code == 1
    assert any(line.startswith("catalog: ") and "cannot be opened" in line for line in out.splitlines()), out


@pytest.mark.parametrize(("hours", "said"), [("-5", "-5 is negative"), ("1.5", "'1.5' is not a whole number")])
def test_vacuum_refuses_a_retention_that_is_not_zero_or_more_whole_hours(wh: Path, capsys, hours: str,
                                                                          said: str) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["vacuum", "--warehouse", str(wh), "--retention-hours", hours])
    assert exited.value.code == 2
    assert said in capsys.readouterr().err


def test_vacuum_of_a_mistyped_warehouse_says_so_and_creates_nothing(tmp_path: Path, capsys) -> None:
    assert main(["vacuum", "--warehouse", str(tmp_path / "typo")]) == 2
    assert "no lake at" in capsys.readouterr().err
    assert not (tmp_path / "typo").exists()


def test_doctor_names_a_catalog_one_rebuild_behind_with_the_same_file_counts(lake: Lake, wh: Path) -> None:
    from warehouse.publish import publish_study

    _publish(lake, wh, "s1", "A", COUNTS)
    old = (wh / CATALOG_NAME).read_bytes()
    commit_load(lake, "s1", {"rna_counts": COUNTS.with_columns(pl.col("count") * 2)}, load="B")
    _derived(lake, "s1", "B")
    assert publish_study(lake, "s1").ok
    refresh_catalog(lake, wh)
    vacuum(lake, retention_hours=24)  # vacuum's own commits do not make a catalog stale
    assert doctor(lake, wh) == []
    (wh / CATALOG_NAME).write_bytes(old)  # restored from before the rebuild: analysts see load A
    assert _rows(wh, "SELECT sum(count) FROM rna_counts") == [(30.0,)]
    stale = [p for p in doctor(lake, wh) if "is stale" in p]
    assert [p.split(":")[0] for p in stale] == ["study_versions"], stale


def test_doctor_checks_a_read_only_warehouse_and_vacuum_says_it_cannot_write_it(lake: Lake, wh: Path, capsys,
                                                                                 monkeypatch) -> None:
    """A warehouse on a read-only mount (a snapshot, an analysts' mount): doctor opened each study's lock file for
    appending to see whether a run holds it, and crashed with EROFS; vacuum and remove printed a traceback."""
    import builtins
    import errno
    import os

    import warehouse.lake

    _publish(lake, wh, "s1", "A", COUNTS)

    def read_only(file, mode="r", *args, **kwargs):  # type: ignore[no-untyped-def]
        if any(c in mode for c in "wax+"):
            raise OSError(errno.EROFS, "Read-only file system", str(file))
        return builtins.open(file, mode, *args, **kwargs)

    def os_read_only(path, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return opener(path, flags, *args, **kwargs)

    opener = os.open
    monkeypatch.setattr(warehouse.lake, "open", read_only, raising=False)
    monkeypatch.setattr(warehouse.lake.os, "open", os_read_only)
    code, out = _doctor_output(wh, capsys)
    assert (code, out.splitlines()[-1]) == (0, "healthy"), out
    for verb in (["vacuum"], ["remove", "s1"]):
        assert main([*verb, "--warehouse", str(wh)]) == 1
        err = capsys.readouterr().err
        assert f"omicsdw {verb[0]}: the warehouse cannot be written" in err, err
        assert "Read-only file system" in err, err
    assert _rows(wh, "SELECT sum(count) FROM rna_counts") == [(30.0,)]
