"""The SQLite storage of a ``$DAGSTER_HOME`` instance (``orchestration/instance/dagster.yaml``: ``instance_class``):
Dagster's own SQLite storages (``DagsterSqliteStorage``: the same files, tables and rows) with pooled connections.

Dagster's SQLite run and event-log storages create a new SQLAlchemy engine and open a new SQLite connection for every
use (``SqliteEventLogStorage._connect``, ``SqliteRunStorage.connect``, ``has_table``: ``NullPool``), ~0.8-1 ms each
against ~0.1 ms on a pooled connection; and ask the database's schema (``has_table`` before every dynamic-partition
question, ``asset_keys``' columns before every asset event is stored). A small study's run uses them ~1,000 times
(bench/README.md, "Session 20: the SQLite instance"). Here:

- each database file (the runs, the event-log index, a run's own event-log shard) has one engine, kept, with a
  connection pool: a use checks a connection out and returns it, its transaction committed or rolled back as
  before, so no use sees a snapshot older than its own start; the event log's uses stay serialised by its lock as
  in Dagster. The engines of the four newest run shards are kept (a run writes its own shard only), older ones closed.
- the tables and ``asset_keys`` columns found are remembered: a schema is only ever extended (``dagster instance
  migrate``), never shrunk, so a table once seen stays. Tables not found are asked every time.
- no answer about the data is cached: a dynamic partition another process adds or deletes (the landing sensor, a
  ``remove``) is seen at the next question, as with Dagster's storage. SQLite's file locks order the processes'
  writes as before (same busy timeouts, WAL journal).

Connections are never shared across a fork: a forked child drops the pools it inherited (without closing the
parent's connections) and opens its own. It relies on Dagster internals (1.13): ``SqliteEventLogStorage._connect`` /
``_initialized_dbs`` / ``_db_lock`` / ``_has_asset_key_col_on_connection``, ``SqliteRunStorage.connect`` and
``DagsterSqliteStorage``'s parts; ``tests/orchestration/test_sqlite_storage.py`` fails when they change.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import dagster as dg
import sqlalchemy as db
import yaml
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.event_log import SqliteEventLogStorage, SqlPollingEventWatcher
from dagster._core.storage.runs import SqliteRunStorage
from dagster._core.storage.schedules import SqliteScheduleStorage
from dagster._core.storage.sql import create_engine
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._core.storage.sqlite_storage import (
    DagsterSqliteStorage,
    _event_logs_directory,
    _runs_directory,
    _schedule_directory,
)
from dagster._serdes import ConfigurableClassData
from sqlalchemy.pool import QueuePool

INDEX_SHARD = "index"
RUN_SHARDS_KEPT = 4
"""Engines of run shards kept open (a run writes only its own; the webserver reads a few at a time)."""

_LIVE: weakref.WeakSet[_Engines] = weakref.WeakSet()


def _pooled_engine(url: str, connect_args: Mapping[str, Any]) -> db.engine.Engine:
    """An engine that keeps one connection between uses (checked out by one thread at a time); uses at the same
    time open more, closed when returned, so no use waits for the pool (Dagster's storage opens one a use).
    """
    return create_engine(url, poolclass=QueuePool, pool_size=1, max_overflow=-1,
                         connect_args={**connect_args, "check_same_thread": False})


class _Engines:
    """Engines by database name, the newest ``keep`` of those not in ``pinned`` kept, the rest disposed."""

    def __init__(self, keep: int, pinned: frozenset[str] = frozenset()) -> None:
        self._keep, self._pinned = keep, pinned
        self._engines: OrderedDict[str, db.engine.Engine] = OrderedDict()
        self._lock = threading.Lock()
        _LIVE.add(self)

    def get(self, name: str, url: str, connect_args: Mapping[str, Any]) -> tuple[db.engine.Engine, bool]:
        """The engine of ``name`` and whether it is new."""
        with self._lock:
            engine = self._engines.get(name)
            if engine is not None:
                self._engines.move_to_end(name)
                return engine, False
            engine = self._engines[name] = _pooled_engine(url, connect_args)
            old = [n for n in self._engines if n not in self._pinned]
            for stale in old[:max(0, len(old) - self._keep)]:
                self._engines.pop(stale).dispose()
            return engine, True

    def dispose(self, keep: frozenset[str] = frozenset()) -> None:
        with self._lock:
            for name in [n for n in self._engines if n not in keep]:
                self._engines.pop(name).dispose()

    def forget_after_fork(self) -> None:
        """In a forked child: drop the inherited pools without closing the parent's connections."""
        self._lock = threading.Lock()
        for engine in self._engines.values():
            engine.dispose(close=False)
        self._engines.clear()


def _after_fork_in_child() -> None:
    for engines in list(_LIVE):
        engines.forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """``SqliteEventLogStorage`` with one pooled engine per shard and the schema it has seen remembered."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._pools = _Engines(RUN_SHARDS_KEPT, frozenset({INDEX_SHARD}))
        self._tables: set[str] = set()
        self._asset_key_columns: set[str] = set()
        self._event_watcher: SqlPollingEventWatcher | None = None
        super().__init__(base_dir, inst_data)

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None,  # type: ignore[override]
                          config_value: Mapping[str, Any]) -> PooledSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def _pooled(self, shard: str) -> db.engine.Engine:
        engine, _ = self._pools.get(shard, self.conn_string_for_shard(shard),
                                    {"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})  # as Dagster's storage connects
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Any]:
        """As Dagster's: under the storage's lock, the shard's database made on first use, one transaction; on a
        pooled connection.
        """
        with self._db_lock:
            engine = self._pooled(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def has_table(self, table_name: str) -> bool:
        """Asked before every dynamic-partition question: a table found stays found (a schema only grows); one not
        found is asked again. On its own pooled connection, outside the storage's lock, as Dagster asks it.
        """
        if table_name in self._tables:
            return True
        engine = self._pooled(INDEX_SHARD)
        with engine.connect() as conn:
            found = bool(engine.dialect.has_table(conn, table_name))
        if found:
            self._tables.add(table_name)
        return found

    def _has_asset_key_col_on_connection(self, conn: Any, column_name: str) -> bool:
        """Asked before every asset event is stored: a column of ``asset_keys`` found stays found."""
        if column_name in self._asset_key_columns:
            return True
        found = super()._has_asset_key_col_on_connection(conn, column_name)
        if found:
            self._asset_key_columns.add(column_name)
        return found

    def watch(self, run_id: str, cursor: str | None, callback: Any) -> None:
        """New events of a run (the webserver's live view of a run), polled as Dagster's Postgres storage does.
        Dagster's SQLite storage watches the run's ``.db`` file instead, which SQLite writes when it copies its
        write-ahead log in: when a process's last connection to it closes, at every write with Dagster's connections,
        but with pooled connections only every 1,000 pages of log (~4 MB): the live view would stay still for a run.
        """
        with self._db_lock:
            if self._event_watcher is None:
                self._event_watcher = SqlPollingEventWatcher(self)
        self._event_watcher.watch_run(run_id, cursor, callback)

    def end_watch(self, run_id: str, handler: Any) -> None:
        if self._event_watcher is not None:
            self._event_watcher.unwatch_run(run_id, handler)

    def wipe(self) -> None:
        """Dagster's wipe deletes the run shards' files: their pools are closed first."""
        self._pools.dispose(keep=frozenset({INDEX_SHARD}))
        super().wipe()

    def upgrade(self) -> None:
        self._pools.dispose()
        super().upgrade()
        self._tables.clear()
        self._asset_key_columns.clear()

    def dispose(self) -> None:
        if self._event_watcher is not None:
            self._event_watcher.close()
            self._event_watcher = None
        self._pools.dispose()
        super().dispose()


class PooledSqliteRunStorage(SqliteRunStorage):
    """``SqliteRunStorage`` on one pooled engine (connected as Dagster's: default SQLite timeout)."""

    def __init__(self, conn_string: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._pools = _Engines(keep=1)
        super().__init__(conn_string, inst_data)

    @contextmanager
    def connect(self) -> Iterator[Any]:
        engine, _ = self._pools.get("runs", self._conn_string, {})
        with engine.connect() as conn, conn.begin():
            yield conn

    def upgrade(self) -> None:
        self._pools.dispose()
        super().upgrade()

    def dispose(self) -> None:
        self._pools.dispose()
        super().dispose()


class PooledSqliteStorage(DagsterSqliteStorage):
    """``DagsterSqliteStorage`` (the same directories under ``base_dir``) with the pooled run and event-log storages;
    the schedule storage is Dagster's.
    """

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        # DagsterSqliteStorage.__init__ with the pooled storages (it would open Dagster's own first)
        self.base_dir = base_dir
        self._run_storage = PooledSqliteRunStorage.from_local(_runs_directory(base_dir))
        self._event_log_storage = PooledSqliteEventLogStorage(_event_logs_directory(base_dir))
        self._schedule_storage = SqliteScheduleStorage.from_local(_schedule_directory(base_dir))
        self._inst_data = inst_data
        super(DagsterSqliteStorage, self).__init__()

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None,  # type: ignore[override]
                          config_value: Mapping[str, Any]) -> PooledSqliteStorage:
        return cls.from_local(inst_data=inst_data, **config_value)


class PooledSqliteInstance(dg.DagsterInstance):
    """Dagster's instance whose default storage (a ``dagster.yaml`` without ``storage``) is :class:`PooledSqliteStorage`
    in the instance's own directory, where Dagster's default ``DagsterSqliteStorage`` keeps its files; every other
    default and every entry of the ``dagster.yaml`` as Dagster reads them. ``dagster.yaml``::

        instance_class:
          module: orchestration.sqlite_storage
          class: PooledSqliteInstance

    (A ``storage: custom`` entry could name the storage too, but its ``base_dir`` would have to be written out or
    read from ``$DAGSTER_HOME``, which is not the instance's directory when it is loaded from another one.)
    """

    @classmethod
    def config_schema(cls) -> dict[str, Any]:
        return {}

    @staticmethod
    def config_defaults(base_dir: str) -> Mapping[str, ConfigurableClassData | None]:
        return {**InstanceRef.config_defaults(base_dir),
                "storage": ConfigurableClassData(__name__, PooledSqliteStorage.__name__,
                                                 yaml.dump({"base_dir": base_dir}, default_flow_style=False))}
