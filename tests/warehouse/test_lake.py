"""Lake and the one commit path on hand-written rows: stage, commit, discard, time travel, locks, orphans."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl
import pytest

from warehouse.commit import commit_frames, unchanged
from warehouse.lake import _WAITED, WAIT_NOTICE_S, Lake, StudyLocked, _acquire

SAMPLES = pl.DataFrame({"study_id": ["s1", "s1"], "sample_id": ["a", "b"], "subject_id": ["p1", "p2"]})


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(tmp_path / "lake")


def _parquet_files(lake: Lake, table: str) -> set[str]:
    root = Path(lake.uri(table))
    return {str(p.relative_to(root)) for p in root.rglob("*.parquet")}


def test_commit_frames_replaces_one_study_and_keeps_the_other(lake: Lake) -> None:
    other = SAMPLES.with_columns(pl.lit("s2").alias("study_id"))
    assert commit_frames(lake, [("samples", SAMPLES)], tables=["samples"], study_id="s1", fingerprint="f1").ok
    assert commit_frames(lake, [("samples", other)], tables=["samples"], study_id="s2", fingerprint="g1").ok
    newer = SAMPLES.head(1).with_columns(pl.lit("p9").alias("subject_id"))
    commit = commit_frames(lake, [("samples", newer)], tables=["samples"], study_id="s1", fingerprint="f2")
    rows = lake.scan("samples").collect().sort("study_id", "sample_id")
    assert rows.rows() == [("s1", "a", "p9"), ("s2", "a", "p1"), ("s2", "b", "p2")]
    assert commit.writes["samples"].rows == 1
    assert lake.last_fingerprint("samples", "s1") == "f2"
    # time travel: version 1 (after the create at 0) is the first study alone
    assert lake.scan("samples", version=1).collect().sort("sample_id").equals(SAMPLES)


def test_commit_frames_commits_nothing_when_one_table_breaks_its_contract(lake: Lake) -> None:
    attributes = pl.DataFrame({"study_id": ["s1"], "sample_id": ["a"], "attribute": ["x"], "value": ["1"],
                               "value_type": ["not-a-type"]})  # value_type must be string / number / boolean
    commit = commit_frames(lake, [("samples", SAMPLES), ("sample_attributes", attributes)],
                           tables=["samples", "sample_attributes"], study_id="s1", fingerprint="f1")
    assert not commit.ok
    assert list(commit.failures) == ["sample_attributes"]
    assert lake.scan("samples").collect().height == 0  # all or none
    assert _parquet_files(lake, "samples") == set()
    assert _parquet_files(lake, "sample_attributes") == set()


def test_stage_is_invisible_until_commit_and_discard_removes_the_files(lake: Lake) -> None:
    lake.ensure_tables(["samples"])
    staged = lake.stage("samples", SAMPLES.drop("study_id"), study_id="s1")
    assert lake.staged_rows(staged) == 2
    assert lake.scan_staged(staged).collect().equals(SAMPLES)  # study_id comes back from the partition
    assert lake.scan("samples").collect().height == 0  # readers do not see staged files
    assert _parquet_files(lake, "samples") == set(staged.relative_paths)
    lake.discard(staged)
    assert _parquet_files(lake, "samples") == set()
    assert lake.version("samples") == 0  # the create only: nothing was committed

    staged = lake.stage("samples", SAMPLES.drop("study_id"), study_id="s1")
    result = lake.commit(staged, fingerprint="f1")
    assert (result.version, result.rows, result.skipped) == (1, 2, False)
    assert lake.scan("samples").collect().sort("sample_id").equals(SAMPLES)


def test_unchanged_skips_a_unit_whose_fingerprint_is_committed(lake: Lake) -> None:
    assert not lake.exists("samples")
    assert unchanged(lake, ["samples"], study_id="s1", fingerprint="f1") is None  # nothing committed yet
    commit_frames(lake, [("samples", SAMPLES)], tables=["samples"], study_id="s1", fingerprint="f1")
    again = unchanged(lake, ["samples"], study_id="s1", fingerprint="f1")
    assert again is not None
    assert again.writes["samples"].skipped
    assert again.writes["samples"].rows == 2
    assert unchanged(lake, ["samples"], study_id="s1", fingerprint="f2") is None


def test_ensure_tables_tolerates_a_concurrent_creator(lake: Lake) -> None:
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(_create, [lake.root] * 4)  # no creator fails
    # a creator that checked before another committed may add one more empty commit (mode="ignore" checks first)
    assert lake.version("samples") in (0, 1)
    assert lake.scan("samples").collect().height == 0


def _create(root: str) -> None:
    Lake(root).ensure_tables(["samples"])


def test_study_session_deletes_what_a_killed_session_staged(lake: Lake) -> None:
    with lake.study_session("s1"):
        commit_frames(lake, [("samples", SAMPLES)], tables=["samples"], study_id="s1", fingerprint="f1")
    committed = _parquet_files(lake, "samples")
    # a session that staged and died: its journal names the file, nothing committed it
    session = lake.study_session("s1")
    session.__enter__()
    staged = lake.stage("samples", SAMPLES, study_id="s1")
    session.gen.close()  # the process is gone: the lock is released, the journal stays
    assert _parquet_files(lake, "samples") == committed | set(staged.relative_paths)
    with lake.study_session("s1"):
        pass
    assert _parquet_files(lake, "samples") == committed
    assert lake.scan("samples").collect().height == 2


def test_study_session_lets_one_writer_in_and_names_the_holder(lake: Lake, caplog) -> None:
    import warehouse.lake

    warehouse.lake._WAITED.discard("s1")
    ready = multiprocessing.get_context("spawn").Event()
    holder = multiprocessing.get_context("spawn").Process(target=_hold, args=(lake.root, ready))
    holder.start()
    try:
        assert ready.wait(30)
        start = time.monotonic()
        with pytest.raises(StudyLocked, match="s1 is being written by process"), lake.study_session("s1", timeout=1):
            pass
        assert time.monotonic() - start >= 1
        waited = [r.getMessage() for r in caplog.records if r.getMessage().startswith("waiting for s1")]
        assert len(waited) == 1  # said once, at once: a waiting build does not look hung
        assert "being written by process" in waited[0]
        with lake.study_session("s2", timeout=1):  # another study is not blocked
            pass
    finally:  # SIGKILL: in one full-suite run the holder outlived its SIGTERM and slept its 60 s
        holder.kill()
        holder.join()
    with lake.study_session("s1", timeout=5):  # a killed holder's lock is released by the kernel
        pass


_FLOCK_FOR = ("import fcntl, sys, time; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
              "print('held', flush=True); time.sleep(float(sys.argv[2]))")
"""A bare holder of a lock file's flock that writes no pid into it (a Python child without omicsdw's imports)."""


@contextmanager
def _flock_child(path: Path, seconds: float) -> Iterator[int]:
    """A child process holding ``path``'s flock for ``seconds`` (killed on exit); yields its pid."""
    with subprocess.Popen([sys.executable, "-c", _FLOCK_FOR, str(path), str(seconds)], stdout=subprocess.PIPE,
                          text=True) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == "held\n"
            yield child.pid
        finally:
            child.kill()


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="the kernel's lock table is Linux's")
def test_acquire_names_the_process_holding_the_lock_not_the_pid_written_in_it(tmp_path: Path, caplog) -> None:
    # The lock file says "process N" of its last holder: a new holder has not written its own pid yet, or that
    # was this very process in its previous step. Two builds of one study each said they waited for the other.
    path = tmp_path / "lock"
    path.write_text(f"process {os.getpid()}")
    _WAITED.discard("s1")
    with _flock_child(path, 30) as pid, open(path, "a+") as lock, pytest.raises(StudyLocked) as caught:
        _acquire(lock, "s1", 1.0)
    waited = [r.getMessage() for r in caplog.records if r.getMessage().startswith("waiting for s1")]
    assert waited == [f"waiting for s1: it is being written by process {pid}, another run (runs of one study take "
                      "turns step by step; up to 1 s, OMICSDW_LOCK_TIMEOUT)"]
    assert str(caught.value).startswith(f"s1 is being written by process {pid} for more than 1 s")


def test_acquire_says_nothing_of_a_wait_shorter_than_the_notice(tmp_path: Path, caplog) -> None:
    # Two builds of one study take turns step by step: the first one's next step waits a moment while the second
    # finds the study unchanged. Said at once, each build printed that it waited for the other.
    path = tmp_path / "lock"
    _WAITED.discard("s1")
    with _flock_child(path, WAIT_NOTICE_S / 3), open(path, "a+") as lock:
        _acquire(lock, "s1", 10.0)
    assert not [r for r in caplog.records if r.getMessage().startswith("waiting for")]


def test_study_build_makes_a_second_build_wait_for_the_whole_first_and_leaves_the_step_locks_free(lake: Lake) -> None:
    """Two CLI builds of one study took turns step by step (the study's lock is per step): the whole-build lock makes
    the second wait for the first to end, and is told who holds it; the steps' own lock is another file."""
    import socket
    import threading

    told: list[str] = []
    events: list[str] = []

    def second() -> None:
        with lake.study_build("s1", on_wait=told.append):
            events.append("second starts")

    with lake.study_build("s1"):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(1.0)
        with lake.study_session("s1", timeout=1):  # a step of the first build still takes the study's write lock
            events.append("first's step")
        events.append("first ends")
    thread.join(10)
    assert events == ["first's step", "first ends", "second starts"]
    assert told == [f"process {os.getpid()} on {socket.gethostname()}"]
    with lake.study_build("s2", on_wait=told.append):  # another study: not waited for
        pass
    assert len(told) == 1


def _hold(root: str, ready) -> None:  # type: ignore[no-untyped-def]
    with Lake(root).study_session("s1"):
        ready.set()
        time.sleep(60)


def test_staged_statistics_are_the_min_max_and_nulls_of_every_staged_file(lake: Lake) -> None:
    lake.ensure_tables(["rna_counts"])
    frames = [pl.DataFrame({"assay": ["r", "r"], "sample_id": ["a", "b"], "gene_id": [1, None],
                            "feature_id": ["g1", "g2"], "count": [c, 2.0], "length": [None, None]})
              for c in (5.0, 0.5)]
    staged = lake.stage_frames("rna_counts", frames, study_id="s1")
    stats = lake.staged_statistics(staged)
    assert "study_id" not in stats  # the partition lives in the path
    assert (stats["count"].nulls, stats["count"].min, stats["count"].max) == (0, 0.5, 5.0)
    assert (stats["gene_id"].nulls, stats["gene_id"].min, stats["gene_id"].max) == (2, 1, 1)
    assert (stats["length"].nulls, stats["length"].min) == (4, None)
    assert (stats["sample_id"].min, stats["sample_id"].max) == ("a", "b")


def test_history_read_incrementally_equals_a_full_read_also_after_the_table_is_recreated(lake: Lake) -> None:
    from deltalake import DeltaTable

    def full() -> list[dict]:
        return DeltaTable(lake.uri("samples")).history()

    for i in range(3):
        commit_frames(lake, [("samples", SAMPLES)], tables=["samples"], study_id=f"s{i}", fingerprint=f"f{i}")
        assert lake.history("samples") == full()
    assert [c["version"] for c in lake.history("samples")] == [3, 2, 1, 0]
    assert lake.last_fingerprint("samples", "s0") == "f0"
    # the same path, a new table with as many commits: its own history, not the cached one
    import shutil

    shutil.rmtree(lake.uri("samples"))
    lake.ensure_tables(["samples"])
    for i in range(3):
        commit_frames(lake, [("samples", SAMPLES)], tables=["samples"], study_id=f"t{i}", fingerprint=f"g{i}")
    assert lake.history("samples") == full()
    assert lake.last_fingerprint("samples", "s0") is None
    assert lake.last_fingerprint("samples", "t2") == "g2"


def test_an_open_table_follows_other_writers_and_is_opened_anew_when_recreated(lake: Lake) -> None:
    import shutil
    import threading

    from deltalake import DeltaTable

    def fresh() -> tuple[int, list[str]]:
        table = DeltaTable(lake.uri("samples"))
        return table.version(), sorted(table.file_uris())

    def seen() -> tuple[int, list[str]]:
        table = lake.delta("samples")
        return table.version(), sorted(table.file_uris())

    def other_writer(study: str) -> None:  # another thread keeps its own open tables, as another process would
        commit_frames(Lake(lake.root), [("samples", SAMPLES)], tables=["samples"], study_id=study, fingerprint="x")

    commit_frames(lake, [("samples", SAMPLES)], tables=["samples"], study_id="s0", fingerprint="f0")
    assert seen() == fresh()
    writer = threading.Thread(target=other_writer, args=("s1",))
    writer.start()
    writer.join()
    assert seen() == fresh()
    assert seen()[0] == 2
    # the same path, a new table with more commits than the open one had: read anew, not its commits replayed
    # on top of the old table's files
    shutil.rmtree(lake.uri("samples"))
    lake.ensure_tables(["samples"])
    for i in range(4):
        commit_frames(lake, [("samples", SAMPLES)], tables=["samples"], study_id=f"t{i}", fingerprint=f"g{i}")
    assert seen() == fresh()
    assert lake.scan("samples").collect()["study_id"].unique().sort().to_list() == ["t0", "t1", "t2", "t3"]


def test_a_table_versions_files_are_read_once_and_anew_after_a_commit_or_a_recreation(lake: Lake,
                                                                                        monkeypatch) -> None:
    """Scans, a study's files and its publication read a version's add actions (the whole table's files); a
    version's files never change, so they are read from the log once per version and table id."""
    import shutil

    from deltalake import DeltaTable

    reads: list[int] = []
    get_add_actions = DeltaTable.get_add_actions

    def counted(self: DeltaTable, *args, **kwargs):  # type: ignore[no-untyped-def]
        reads.append(self.version())
        return get_add_actions(self, *args, **kwargs)

    monkeypatch.setattr(DeltaTable, "get_add_actions", counted)
    commit_frames(lake, [("samples", SAMPLES)], tables=["samples"], study_id="s1", fingerprint="f1")
    reads.clear()
    for _ in range(3):
        assert sorted(lake.add_actions("samples")["path"].to_list()) == sorted(_parquet_files(lake, "samples"))
        assert lake.scan("samples", study_id="s1").collect().sort("sample_id").equals(SAMPLES)
        assert lake.study_files_and_rows("samples", "s1") == (1, sorted(_parquet_files(lake, "samples")), 2)
    assert reads == [1]
    commit_frames(lake, [("samples", SAMPLES.with_columns(pl.lit("s2").alias("study_id")))], tables=["samples"],
                  study_id="s2", fingerprint="f2")
    assert sorted(lake.add_actions("samples")["path"].to_list()) == sorted(_parquet_files(lake, "samples"))
    assert lake.study_files_and_rows("samples", "s2")[1:] == (
        sorted(f for f in _parquet_files(lake, "samples") if f.startswith("study_id=s2/")), 2)
    assert reads == [1, 2]
    # the same path and version number, another table: its own files
    shutil.rmtree(lake.uri("samples"))
    lake.ensure_tables(["samples"])
    commit_frames(lake, [("samples", SAMPLES.with_columns(pl.lit("t0").alias("study_id")))], tables=["samples"],
                  study_id="t0", fingerprint="g0")
    assert lake.delta("samples").version() == 1
    assert sorted(lake.add_actions("samples")["path"].to_list()) == sorted(_parquet_files(lake, "samples"))
    assert lake.scan("samples").collect()["study_id"].unique().to_list() == ["t0"]
    assert reads == [1, 2, 1]


def test_a_table_version_committed_again_after_a_restore_is_read_anew(lake: Lake, tmp_path: Path) -> None:
    """A lake restored from a backup under a running process (a Dagster code server) keeps its table ids, and its
    next commit is another file under a version number already read: its files are that commit's (review: the
    memo keyed by table id and version listed the lost commit's files, and the scan failed on them)."""
    import shutil

    def study(study_id: str) -> pl.DataFrame:
        return SAMPLES.with_columns(pl.lit(study_id).alias("study_id"))

    commit_frames(lake, [("samples", study("s1"))], tables=["samples"], study_id="s1", fingerprint="f1")
    backup = tmp_path / "backup"
    shutil.copytree(lake.uri("samples"), backup)
    commit_frames(lake, [("samples", study("s2"))], tables=["samples"], study_id="s2", fingerprint="f2")
    assert sorted(lake.scan("samples").collect()["study_id"].unique().to_list()) == ["s1", "s2"]
    shutil.rmtree(lake.uri("samples"))
    shutil.copytree(backup, lake.uri("samples"))
    commit_frames(lake, [("samples", study("s3"))], tables=["samples"], study_id="s3", fingerprint="f3")
    assert lake.delta("samples").version() == 2
    assert sorted(lake.add_actions("samples")["path"].to_list()) == sorted(_parquet_files(lake, "samples"))
    assert sorted(lake.scan("samples").collect()["study_id"].unique().to_list()) == ["s1", "s3"]


def test_exists_of_a_table_this_thread_holds_open_does_not_list_its_log(lake: Lake, monkeypatch) -> None:
    """delta-rs's existence check lists ``_delta_log`` (one file per commit): asked hundreds of times a study, it
    grew with the warehouse. An open table whose commit file is unchanged exists without it; a deleted or
    recreated table is still seen as it is."""
    import shutil

    from deltalake import DeltaTable

    listed: list[str] = []
    is_deltatable = DeltaTable.is_deltatable

    def counted(uri: str, storage_options: dict[str, str] | None = None) -> bool:
        listed.append(uri)
        return is_deltatable(uri, storage_options=storage_options)

    monkeypatch.setattr(DeltaTable, "is_deltatable", staticmethod(counted))
    commit_frames(lake, [("samples", SAMPLES)], tables=["samples"], study_id="s1", fingerprint="f1")
    lake.delta("samples")
    listed.clear()
    assert all(lake.exists("samples") for _ in range(5))
    assert listed == []
    assert not lake.exists("subjects")  # never created: delta-rs says so
    assert listed == [lake.uri("subjects")]
    shutil.rmtree(lake.uri("samples"))
    assert not lake.exists("samples")
    lake.ensure_tables(["samples"])
    assert lake.exists("samples")
    assert lake.delta("samples").version() == 0


def _delta_reader(lake: Lake, table: str, version: int | None, study_id: str | None) -> pl.DataFrame:
    """What polars' own Delta reader returns (the reference :meth:`Lake.scan` must equal)."""
    from schemas.tables import polars_schema

    frame = pl.scan_delta(lake.uri(table), version=version)
    if study_id is not None:
        frame = frame.filter(pl.col("study_id") == study_id)
    return frame.select(list(polars_schema(table))).collect()


def test_scan_reads_the_rows_polars_delta_reader_reads_at_every_version_and_study(lake: Lake) -> None:
    from deltalake import write_deltalake

    from schemas.tables import polars_schema

    counts = pl.DataFrame({"assay": ["rna", "rna", "rna%/x"], "sample_id": ["a", "b", "a"],
                           "feature_id": ["f1", "f1", "f2"], "gene_id": [1, None, 2], "count": [1.0, 2.0, 3.0]})
    for step, (study, keep) in enumerate([("s1", 3), ("s2", 2), ("s1", 1), ("s3", 3), ("s2", 0)]):
        rows = counts.head(keep).with_columns(pl.lit(study).alias("study_id"))
        for table, frame in (("rna_counts", rows), ("samples", SAMPLES.head(keep).with_columns(
                pl.lit(study).alias("study_id")))):
            frame = frame.select(pl.col(c) if c in frame.columns else pl.lit(None, t).alias(c)
                                 for c, t in polars_schema(table).items())
            assert commit_frames(lake, [(table, frame)], tables=[table], study_id=study, fingerprint=f"f{step}").ok
    # a commit not made by the commit path (another writer's append into s3's partition) after s3's last commit
    write_deltalake(lake.uri("samples"), SAMPLES.head(1).with_columns(pl.lit("s3").alias("study_id"),
                                                                      pl.lit("z").alias("sample_id")).to_arrow(),
                    mode="append", partition_by=["study_id"])
    for table in ("rna_counts", "samples"):
        newest = lake.delta(table).version()
        for version in [None, *range(newest + 1)]:
            for study in (None, "s1", "s2", "s3", "s4"):
                got = lake.scan(table, version=version, study_id=study).collect()
                assert got.schema == _delta_reader(lake, table, version, study).schema
                key = list(got.columns)
                assert got.sort(key, nulls_last=True).equals(
                    _delta_reader(lake, table, version, study).sort(key, nulls_last=True)), (table, version, study)
        for study in ("s1", "s2", "s3"):  # what the stages read: the study at its newest commit
            version = lake.study_version(table, study)
            assert lake.scan_study(table, study).collect().sort(key, nulls_last=True).equals(
                _delta_reader(lake, table, version, study).sort(key, nulls_last=True))
    assert lake.scan("samples", study_id="s3").collect()["sample_id"].sort().to_list() == ["a", "b", "z"]
    # s3's newest commit predates the append: read at that version, not from the newest files
    assert lake.scan_study("samples", "s3").collect()["sample_id"].sort().to_list() == ["a", "b"]
    assert lake.scan("rna_counts", study_id="s1").collect()["assay"].to_list() == ["rna"]


def test_a_study_filter_on_a_whole_table_read_reads_no_other_studys_files(lake: Lake) -> None:
    """``warehouse.table(t).filter(study_id == x)`` and a stage's read of one study must not read every study's
    files: the partition columns come from the folders, so polars skips the other partitions' files unread."""
    from datetime import UTC, datetime

    import warehouse

    for study in ("s1", "s2", "s3"):
        frame = SAMPLES.with_columns(pl.lit(study).alias("study_id"))
        assert commit_frames(lake, [("samples", frame)], tables=["samples"], study_id=study, fingerprint="f").ok
    files = sorted(_parquet_files(lake, "samples"))
    ledger = pl.DataFrame({"study_id": [f.split("/")[0].removeprefix("study_id=") for f in files],
                           "table_name": "samples", "delta_version": 2, "fingerprint": "f", "rows": 2,
                           "files": [[f] for f in files],
                           "published_at": datetime(2026, 1, 1, tzinfo=UTC)})
    for study, part in ledger.group_by("study_id"):
        assert commit_frames(lake, [("study_versions", part)], tables=["study_versions"], study_id=str(study[0]),
                             fingerprint="p").ok
    for relative in files:  # s2's file is damaged: any read of it fails
        if relative.startswith("study_id=s2/"):
            (Path(lake.uri("samples")) / relative).write_bytes(b"not parquet")
    with pytest.raises(pl.exceptions.ComputeError):
        lake.scan("samples").collect()
    api = warehouse.table("samples", lake_uri=lake.root)
    with pytest.raises(pl.exceptions.ComputeError):
        api.collect()
    for scan in (lake.scan("samples"), api, lake.scan_files("samples", files, typed=True)):
        got = scan.filter(pl.col("study_id") == "s1").collect()
        assert got.sort("sample_id").equals(SAMPLES.select(got.columns))
        assert scan.filter(pl.col("study_id").is_in(["s1", "s3"])).collect().height == 4


def test_a_frame_with_enum_ids_is_stored_as_plain_parquet_strings_with_the_rows_of_its_text_frame(lake: Lake) -> None:
    # The normalise stage hands the writer its identifiers as Enum codes (transforms.expression.study._long_frames);
    # the stored rows must be those of the same frame written as text: the contract's String columns for every
    # reader, the Parquet footer without an Arrow schema (which would bring the Enum back to polars).
    import pyarrow.parquet as pq

    from schemas.tables import polars_schema
    from schemas.validate import validate_rows

    ids = pl.Series(["g2", "g1", "g3"])
    text = pl.DataFrame({
        "assay": ["counts"] * 6, "sample_id": ["b", "a", "b", "a", "b", "a"], "gene_id": [7, 7, None, None, 5, 5],
        "feature_id": ["g2", "g2", "g1", "g1", "g3", "g3"], "source": ["counts"] * 6,
        "cpm": [1.5, None, 3.25, 0.0, 1e6, 2.0], "log2_cpm": [0.5, 1.0, None, -2.0, 3.0, 4.0],
        "tmm_cpm": [1.0] * 6, "mor": [2.0] * 6, "tpm": [None] * 6, "log2_value": [0.5, 1.0, None, -2.0, 3.0, 4.0],
        "zscore": [None, 0.1, -0.1, 0.2, 0.3, -0.3]}, schema_overrides={"tpm": pl.Float64})
    coded = text.with_columns(pl.col("sample_id").cast(pl.Enum(["b", "a"])), pl.col("feature_id").cast(pl.Enum(ids)),
                              pl.col("source").cast(pl.Enum(["counts", "abundance"])))
    lake.ensure_tables(["rna_normalized"])
    from_text = lake.stage_frames("rna_normalized", [text], study_id="s1")
    from_codes = lake.stage_frames("rna_normalized", [coded], study_id="s1")
    rows = lake.scan_staged(from_codes).collect()
    assert rows.schema == polars_schema("rna_normalized")
    assert rows.equals(lake.scan_staged(from_text).collect())
    assert rows.select("sample_id", "feature_id").rows() == list(zip(text["sample_id"], text["feature_id"],
                                                                       strict=True))
    assert validate_rows("rna_normalized", lake.scan_staged(from_codes),
                         statistics=lake.staged_statistics(from_codes)) == []
    (relative,) = from_codes.relative_paths
    footer = pq.read_metadata(f"{lake.uri('rna_normalized')}/{relative}")
    assert b"ARROW:schema" not in (footer.metadata or {})
    columns = {footer.row_group(0).column(i).path_in_schema: footer.row_group(0).column(i)
               for i in range(footer.num_columns)}
    assert "RLE_DICTIONARY" in columns["feature_id"].encodings
    assert columns["feature_id"].compression == "LZ4"
    assert {columns[c].compression for c in ("cpm", "zscore")} == {"UNCOMPRESSED"}
    assert all(columns[c].statistics is not None for c in columns)


def test_the_dictionary_frame_writer_makes_the_file_pyarrow_makes_with_its_default_batches(
        lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    # The writer hands pyarrow 16,384 values at a time (warehouse.lake.WRITE_BATCH_ROWS) instead of its default
    # 1,024, to save each small batch's statistics cost: a physical setting only, so the file of a frame of
    # 300,000 rows (gene-major, as normalisation writes) must be byte for byte the one of pyarrow's default. (With
    # 32,768 or more it is not: pyarrow 25 then miscounts gene_id's definition-level histogram, apache/arrow#50778.)
    import numpy as np

    import warehouse.lake as lake_module

    rng = np.random.default_rng(3)
    genes, samples = 3000, 100
    feature_ids = pl.Series([f"ENSG{i:011d}" for i in range(genes)])
    sample_ids = pl.Series([f"S{j:04d}" for j in range(samples)])
    frame = pl.DataFrame({
        "assay": "counts",
        "sample_id": sample_ids.cast(pl.Enum(sample_ids)).gather(np.tile(np.arange(samples), genes)),
        "gene_id": pl.Series(np.repeat(np.arange(genes) + 100, samples)).set(
            pl.Series(np.repeat(np.arange(genes) % 7 == 0, samples)), None),  # a few unmapped features
        "feature_id": feature_ids.cast(pl.Enum(feature_ids)).gather(np.repeat(np.arange(genes), samples)),
        "vst": rng.normal(8, 2, genes * samples)})
    lake.ensure_tables(["rna_vst"])
    staged = lake.stage_frames("rna_vst", [frame], study_id="s1")
    monkeypatch.setattr(lake_module, "WRITE_BATCH_ROWS", None)  # pyarrow's default
    default = lake.stage_frames("rna_vst", [frame], study_id="s1")
    (ours,), (theirs,) = ([Path(lake.uri("rna_vst")) / r for r in s.relative_paths] for s in (staged, default))
    assert ours.read_bytes() == theirs.read_bytes()
    assert lake.scan_staged(staged).collect().height == genes * samples


def test_complete_columns_of_a_dictionary_frame_are_stored_required_and_read_back_as_the_frames_rows(
        lake: Lake) -> None:
    # Session 20: the dictionary-frame writer declares a column holding no NULL non-nullable, so pyarrow stores it
    # REQUIRED and makes no definition level per value (~36 % of writing an rna_normalized frame). A frame with a
    # NULL in a column keeps it OPTIONAL, so the files of one table differ; polars (staged and committed reads),
    # DuckDB and the Delta reader must all return the rows written, NULLs where given, in both kinds of file.
    import duckdb
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    from schemas.tables import polars_schema
    from schemas.validate import validate_rows

    features = pl.Series(["g1", "g2", "g3", "g4"])
    samples = pl.Series(["a", "b"])

    def frame(vst: list[float | None], genes: list[int | None], first: int) -> pl.DataFrame:
        return pl.DataFrame({
            "assay": ["counts"] * 4, "sample_id": samples.cast(pl.Enum(samples)).gather([0, 1, 0, 1]),
            "gene_id": pl.Series(genes, dtype=pl.Int64),
            "feature_id": features.cast(pl.Enum(features)).gather([first, first, first + 1, first + 1]), "vst": vst})

    complete = frame([1.5, -2.0, 0.0, 1e300], [7, 7, 9, 9], 0)
    with_nulls = frame([3.0, None, 4.25, 5.0], [5, 5, None, None], 2)
    lake.ensure_tables(["rna_vst"])
    staged = lake.stage_frames("rna_vst", [complete, with_nulls], study_id="s1")
    kinds = []
    for relative in staged.relative_paths:
        schema = pq.ParquetFile(f"{lake.uri('rna_vst')}/{relative}").schema
        kinds.append({schema.column(i).name: schema.column(i).max_definition_level for i in range(len(schema))})
    assert kinds == [{"sample_id": 0, "gene_id": 0, "feature_id": 0, "vst": 0},  # REQUIRED: no levels
                     {"sample_id": 0, "gene_id": 1, "feature_id": 0, "vst": 1}]
    expected = pl.DataFrame({
        "study_id": ["s1"] * 8, "assay": ["counts"] * 8, "sample_id": ["a", "b"] * 4,
        "gene_id": [7, 7, 9, 9, 5, 5, None, None], "feature_id": ["g1", "g1", "g2", "g2", "g3", "g3", "g4", "g4"],
        "vst": [1.5, -2.0, 0.0, 1e300, 3.0, None, 4.25, 5.0]}, schema=polars_schema("rna_vst"))
    order = ["sample_id", "feature_id", "vst"]
    assert lake.scan_staged(staged).collect().sort(order, nulls_last=True).equals(expected.sort(order, nulls_last=True))
    statistics = lake.staged_statistics(staged)
    assert (statistics["vst"].nulls, statistics["gene_id"].nulls, statistics["sample_id"].nulls) == (1, 2, 0)
    # the contract check still sees the NULL of the OPTIONAL file (vst is not nullable in rna_vst)
    assert validate_rows("rna_vst", lake.scan_staged(staged), statistics=statistics) == [
        "rna_vst.vst: not_nullable failed for None"]
    lake.commit(staged, fingerprint="f1")
    committed = lake.scan("rna_vst", study_id="s1").collect()
    assert committed.sort(order, nulls_last=True).equals(expected.sort(order, nulls_last=True))
    delta = pl.from_arrow(DeltaTable(lake.uri("rna_vst")).to_pyarrow_table())
    assert isinstance(delta, pl.DataFrame)
    assert delta.select(expected.columns).cast(dict(expected.schema)).sort(order, nulls_last=True).equals(
        expected.sort(order, nulls_last=True))
    files = [f"{lake.uri('rna_vst')}/{r}" for r in staged.relative_paths]
    duck = duckdb.sql(f"SELECT sample_id, gene_id, feature_id, vst FROM read_parquet({files!r}) "
                      "ORDER BY sample_id, feature_id, vst NULLS LAST").pl()
    assert duck.equals(expected.drop("study_id", "assay").sort(order, nulls_last=True))


def test_a_forked_child_does_not_inherit_a_held_add_actions_lock() -> None:
    """Review: the memo's lock held by another thread at a fork (a Celery or multiprocess worker) stayed held for
    ever in the child, whose first scan then hung."""
    import warehouse.lake

    with warehouse.lake._ACTIONS_LOCK:
        pid = os.fork()
        if pid == 0:  # the child: its lock is free
            os._exit(0 if warehouse.lake._ACTIONS_LOCK.acquire(timeout=5) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_the_add_actions_memo_is_bounded_by_files_kept(lake: Lake, monkeypatch) -> None:
    """A long-running code server over a warehouse of many files keeps at most _ACTIONS_MAX_FILES files' actions
    (the newest version read always)."""
    import warehouse.lake

    monkeypatch.setattr(warehouse.lake, "_ACTIONS_MAX_FILES", 1)
    monkeypatch.setattr(warehouse.lake, "_ACTIONS", warehouse.lake.OrderedDict())
    for study_id in ("s1", "s2"):
        commit_frames(lake, [("samples", SAMPLES.with_columns(pl.lit(study_id).alias("study_id")))],
                      tables=["samples"], study_id=study_id, fingerprint=study_id)
        lake.add_actions("samples")
    assert [frame.height for frame in warehouse.lake._ACTIONS.values()] == [2]
