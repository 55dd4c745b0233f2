"""The SQLite storage of a ``$DAGSTER_HOME`` instance (orchestration/sqlite_storage.py, configured in
orchestration/instance/dagster.yaml): the same runs, events and answers as Dagster's own SQLite storage, on the same
files, on pooled connections; other processes' writes seen at the next question."""

import logging
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as db
import yaml
from dagster._core.events.log import EventLogEntry

from orchestration.sqlite_storage import (
    RUN_SHARDS_KEPT,
    PooledSqliteEventLogStorage,
    PooledSqliteRunStorage,
)
from tests.orchestration.test_ephemeral import JOB, _run_all, downstream, upstream

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "orchestration" / "instance" / "dagster.yaml"


def _home(path: Path, *, stock: bool = False) -> Path:
    """A Dagster home with the project's instance config (``stock``: without its ``instance_class`` entry, i.e.
    Dagster's own SQLite storage in the same files)."""
    path.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load(CONFIG.read_text())
    if stock:
        del config["instance_class"]
    (path / "dagster.yaml").write_text(yaml.safe_dump(config))
    return path


def _instance(home: Path, monkeypatch: pytest.MonkeyPatch) -> dg.DagsterInstance:
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return dg.DagsterInstance.get()


@contextmanager
def _connections() -> Iterator[list[int]]:
    """Count the SQLite connections any engine opens inside the block."""
    counts = [0]

    def opened(*_args: object) -> None:
        counts[0] += 1

    db.event.listen(db.engine.Engine, "connect", opened)
    try:
        yield counts
    finally:
        db.event.remove(db.engine.Engine, "connect", opened)


def test_project_instance_config_selects_the_pooled_storage_in_dagster_homes_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = _home(tmp_path / "home")
    instance = _instance(home, monkeypatch)
    try:
        assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
        assert isinstance(instance.run_storage, PooledSqliteRunStorage)
        instance.add_dynamic_partitions("parts", ["a"])
    finally:
        instance.dispose()
    # where Dagster's default storage keeps them: the home's history/runs.db, history/runs/index.db
    assert (home / "history" / "runs.db").is_file()
    assert (home / "history" / "runs" / "index.db").is_file()


def test_an_instance_loaded_from_another_directory_keeps_its_files_there(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """``DagsterInstance.from_config(DIR)`` with ``$DAGSTER_HOME`` elsewhere: the storage is DIR's, as Dagster's."""
    monkeypatch.setenv("DAGSTER_HOME", str(_home(tmp_path / "elsewhere")))
    with dg.DagsterInstance.from_config(str(_home(tmp_path / "dir"))) as instance:
        assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
        instance.add_dynamic_partitions("parts", ["a"])
    assert (tmp_path / "dir" / "history" / "runs" / "index.db").is_file()
    assert not (tmp_path / "elsewhere" / "history").exists()


def test_pooled_instance_holds_what_dagsters_sqlite_instance_holds_with_few_connections(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stock = _instance(_home(tmp_path / "stock", stock=True), monkeypatch)
    pooled = _instance(_home(tmp_path / "pooled"), monkeypatch)
    assert not isinstance(stock.event_log_storage, PooledSqliteEventLogStorage)
    try:
        with _connections() as stock_opened:
            expected = _run_all(stock)
        with _connections() as pooled_opened:
            got = _run_all(pooled)
    finally:
        stock.dispose()
        pooled.dispose()
    assert got == expected
    assert ("checks", ("AssetCheckExecutionRecordStatus.FAILED", "AssetCheckExecutionRecordStatus.SUCCEEDED",
                       "AssetCheckExecutionRecordStatus.SUCCEEDED", "AssetCheckExecutionRecordStatus.SUCCEEDED")) in got
    # Dagster's storage opens a connection (and an engine) per use: ~390 for four runs
    assert stock_opened[0] > 300, stock_opened
    # the pooled one a few per database file: runs.db, index.db, the four run shards, a second index connection
    # for the schema questions asked while a use of the index is open
    assert pooled_opened[0] < 20, pooled_opened


def test_a_partition_another_process_adds_or_deletes_is_seen_at_the_next_question(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The landing sensor adds a study's partition, ``omicsdw remove`` deletes one, in other processes (with Dagster's
    own storage here) while this one holds its pooled connections: each question asks the database."""
    home = _home(tmp_path / "home")
    _home(tmp_path / "stock_config", stock=True)
    instance = _instance(home, monkeypatch)

    def other_process(call: str) -> None:
        # Dagster's own SQLite storage on the same files (a config without the ``instance_class`` entry, same home)
        script = textwrap.dedent(f"""
            import dagster as dg
            from dagster._core.instance.ref import InstanceRef
            instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir({str(home)!r},
                config_dir={str(tmp_path / 'stock_config')!r}))
            assert type(instance.event_log_storage).__name__ == "SqliteEventLogStorage"
            instance.{call}
        """)
        subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT, env={**os.environ,
                       "DAGSTER_HOME": str(home)})

    try:
        instance.add_dynamic_partitions("parts", ["a"])
        asked = [instance.has_dynamic_partition("parts", k) for k in "ab"]
        other_process("add_dynamic_partitions('parts', ['b'])")
        asked += [instance.has_dynamic_partition("parts", k) for k in "ab"]
        other_process("delete_dynamic_partition('parts', 'a')")
        asked += [instance.has_dynamic_partition("parts", k) for k in "ab"]
        assert instance.get_dynamic_partitions("parts") == ["b"]
    finally:
        instance.dispose()
    assert asked == [True, False, True, True, False, True]


def test_run_shards_beyond_the_newest_are_closed_and_a_wipe_starts_new_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    instance = _instance(_home(tmp_path / "home"), monkeypatch)
    storage = instance.event_log_storage
    assert isinstance(storage, PooledSqliteEventLogStorage)
    job = dg.Definitions(assets=[upstream, downstream], jobs=[JOB]).resolve_job_def("job")
    try:
        instance.add_dynamic_partitions("parts", ["a"])
        runs = [job.execute_in_process(partition_key="a", instance=instance).run_id
                for _ in range(RUN_SHARDS_KEPT + 2)]
        held = set(storage._pools._engines)
        assert held == {"index", *runs[-RUN_SHARDS_KEPT:]}
        # an older run's shard is reopened to read it
        assert [e.dagster_event_type for e in instance.all_logs(runs[0])] == \
            [e.dagster_event_type for e in instance.all_logs(runs[-1])]
        events = len(instance.all_logs(runs[-1]))
        instance.wipe()
        assert set(storage._pools._engines) == {"index"}
        assert not list(Path(storage._base_dir).glob(f"{runs[-1]}.db"))
        instance.add_dynamic_partitions("parts", ["a"])
        after = job.execute_in_process(partition_key="a", instance=instance).run_id
        assert Path(storage._base_dir, f"{after}.db").is_file()
        assert len(instance.all_logs(after)) == events > 10
        assert instance.all_logs(runs[-1]) == []  # wiped, as with Dagster's storage
    finally:
        instance.dispose()


def test_a_forked_child_opens_its_own_connections_and_leaves_the_parents_open(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    instance = _instance(_home(tmp_path / "home"), monkeypatch)
    try:
        instance.add_dynamic_partitions("parts", ["a"])
        pid = os.fork()
        if pid == 0:  # the child: its own pools, the parent's connections neither used nor closed
            code = 1
            try:
                instance.add_dynamic_partitions("parts", ["child"])
                code = 0 if instance.has_dynamic_partition("parts", "a") else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert instance.get_dynamic_partitions("parts") == ["a", "child"]
    finally:
        instance.dispose()
    shutil.rmtree(tmp_path / "home")


def test_uses_at_the_same_time_each_get_a_connection_without_waiting(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The webserver's threads may use the run storage at once, as many as they like with Dagster's storage (one
    connection a use): the pool opens more than it keeps instead of making them wait."""
    instance = _instance(_home(tmp_path / "home"), monkeypatch)
    try:
        with ExitStack() as uses:
            connections = [uses.enter_context(instance.run_storage.connect()) for _ in range(12)]  # type: ignore[attr-defined]
            assert [c.execute(db.text("SELECT count(*) FROM runs")).scalar() for c in connections] == [0] * 12
        assert instance.get_runs() == []  # and all given back
    finally:
        instance.dispose()


def test_the_live_view_of_a_run_sees_the_events_another_process_writes_while_its_pools_stay_open(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The webserver watches a run (``watch``: its live view) that a run worker writes on pooled connections, kept
    open until the run ends: every event reaches the watcher while the writer is still running (Dagster's watcher of
    the ``.db`` file saw none: SQLite only copies its write-ahead log into it when the last connection closes)."""
    home = _home(tmp_path / "home")
    instance = _instance(home, monkeypatch)
    seen: list[str] = []
    all_seen = threading.Event()

    def callback(entry: EventLogEntry, _cursor: str) -> None:
        seen.append(entry.user_message)
        if len(seen) == 5:
            all_seen.set()

    writer = textwrap.dedent("""
        import logging, sys, time
        import dagster as dg
        from dagster._core.events.log import EventLogEntry
        instance = dg.DagsterInstance.get()
        assert type(instance.event_log_storage).__name__ == "PooledSqliteEventLogStorage"
        for message in ["first", "m0", "m1", "m2"]:
            instance.event_log_storage.store_event(EventLogEntry(error_info=None, level=logging.INFO,
                user_message=message, run_id="r1", timestamp=time.time(), dagster_event=None))
            time.sleep(0.3)
        sys.stdin.read()  # the run goes on, its pools open, until the test has looked
    """)
    try:
        instance.event_log_storage.store_event(EventLogEntry(
            error_info=None, level=logging.INFO, user_message="before", run_id="r1", timestamp=time.time(),
            dagster_event=None))
        instance.event_log_storage.watch("r1", None, callback)
        worker = subprocess.Popen([sys.executable, "-c", writer], cwd=ROOT, stdin=subprocess.PIPE,
                                  env={**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(ROOT)})
        try:
            all_seen.wait(timeout=20)
        finally:
            assert worker.stdin is not None
            worker.stdin.close()
            assert worker.wait(timeout=60) == 0
        instance.event_log_storage.end_watch("r1", callback)
    finally:
        instance.dispose()
    assert seen == ["before", "first", "m0", "m1", "m2"]
