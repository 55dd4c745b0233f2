"""The temporary Dagster instance of ``omicsdw build`` without ``$DAGSTER_HOME``: Dagster's ephemeral instance with
storages that keep their SQLite connection open.

Dagster's ephemeral instance (``DagsterInstance.ephemeral()``) keeps its runs and its event log in in-memory SQLite
databases and opens a new connection, with two PRAGMAs, for every use (``InMemoryEventLogStorage._connect``,
``InMemoryRunStorage.connect``, both ``NullPool``): a small study's run stores ~216 events and asks ~160
partition-key and input-version questions, ~1,300 connections at ~0.3 ms each (bench/README.md, "Session 13: fixed
cost"). The storages here are the same ones on one connection each, opened (PRAGMAs included) once: each use
is still its own transaction (the event log's under its lock), on the same in-memory databases, so the runs, the
events, their order and what is read back are the same. The event log also remembers what cannot change behind
its back, since every write of its private database goes through it: the tables and the ``asset_keys`` columns
it has seen (both asked before every asset event is stored), and the dynamic partitions it has found (asked ~160
times a study), forgotten when a partition is deleted or the storage wiped (bench/README.md, "Session 14: fixed
cost").

It relies on Dagster internals (1.13): the in-memory storages' ``_connect`` / ``connect`` / ``_engine`` /
``_db_lock`` / ``_has_asset_key_col_on_connection`` and the parts ``create_ephemeral_instance`` assembles;
``tests/orchestration/test_ephemeral.py`` fails when they change.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
import sqlalchemy as db
from dagster._core.storage.event_log import InMemoryEventLogStorage
from dagster._core.storage.event_log.schema import AssetKeyTable
from dagster._core.storage.runs import InMemoryRunStorage
from sqlalchemy.pool import NullPool


class _HeldConnections:
    """One open connection on a storage's in-memory database, PRAGMAs run once, for every thread in turn (the
    storages' locks serialise the uses; SQLite's same-thread check is off for it).
    """

    _engine: Any

    def _hold(self) -> None:
        # the stock storage's held connection (its own engine) keeps the in-memory database alive; ours joins it
        self._engine = db.create_engine(self._engine.url, poolclass=NullPool,
                                        connect_args={"check_same_thread": False})
        self._conn: Any = None
        self._tables: set[str] = set()
        self.opened = 0
        """Connections opened: one, now."""
        self._held_connection()

    def _held_connection(self) -> Any:
        if self._conn is None:
            self._conn = self._engine.connect()
            with self._conn.begin():  # as Dagster starts each of its connections
                self._conn.execute(db.text("PRAGMA journal_mode=WAL;")).close()
                self._conn.execute(db.text("PRAGMA foreign_keys=ON;")).close()
                self._tables.update(db.inspect(self._conn).get_table_names())  # all made with the storage
            self.opened += 1
        return self._conn

    @contextmanager
    def _transaction(self, lock: Any) -> Iterator[Any]:
        """The held connection under ``lock``, in a transaction of its own (a use inside another use of the same
        thread, which only a reentrant lock lets through, joins the outer one).
        """
        with lock:
            conn = self._held_connection()
            if conn.in_transaction():
                yield conn
                return
            with conn.begin():
                yield conn

    def dispose(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        super().dispose()  # type: ignore[misc]


class HeldConnectionEventLog(_HeldConnections, InMemoryEventLogStorage):
    """``InMemoryEventLogStorage`` on one open connection; each use its own transaction, under the storage's lock."""

    def __init__(self) -> None:
        super().__init__()
        self._hold()
        self._asset_key_columns: set[str] = set()
        self._partitions: dict[str, set[str]] = {}
        self._partitions_lock = threading.Lock()
        self._partitions_generation = 0

    @contextmanager
    def _connect(self) -> Iterator[Any]:
        with self._transaction(self._db_lock) as conn:
            yield conn

    def _has_asset_key_col_on_connection(self, conn: Any, column_name: str) -> bool:
        """Asked (a schema reflection, ``PRAGMA table_xinfo``) before every asset event is stored and inside
        asset reads: a column of the in-memory ``asset_keys`` table, once seen, stays (nothing migrates it).
        """
        if column_name in self._asset_key_columns:
            return True
        found = column_name in {c.get("name") for c in db.inspect(conn).get_columns(AssetKeyTable.name)}
        if found:
            self._asset_key_columns.add(column_name)
        return found

    def has_dynamic_partition(self, partitions_def_name: str, partition_key: str) -> bool:
        """Asked at every output context and every partitioned input (~160 times a study): a key, once found,
        is answered from memory until a partition is deleted or the storage wiped (every write of the
        in-memory database goes through this object). Keys not found are asked every time.
        """
        if partition_key in self._partitions.get(partitions_def_name, ()):
            return True
        with self._partitions_lock:
            generation = self._partitions_generation
        found = super().has_dynamic_partition(partitions_def_name, partition_key)
        if found:
            with self._partitions_lock:
                if generation == self._partitions_generation:  # no deletion began since the query was made
                    self._partitions.setdefault(partitions_def_name, set()).add(partition_key)
        return found

    def _forget_partitions(self) -> None:
        with self._partitions_lock:
            self._partitions_generation += 1
            self._partitions = {}

    def delete_dynamic_partition(self, partitions_def_name: str, partition_key: str) -> None:
        self._forget_partitions()  # before: no answer read before the deletion is kept; after: none read during
        try:
            super().delete_dynamic_partition(partitions_def_name, partition_key)
        finally:
            self._forget_partitions()

    def wipe(self) -> None:
        self._forget_partitions()
        try:
            super().wipe()
        finally:
            self._forget_partitions()

    def has_table(self, table_name: str) -> bool:
        """Asked before every dynamic-partition query and inside event writes, a new connection each time: a table
        of the in-memory database, once seen, stays (asked on its own connection, as the stock storage does).
        """
        if table_name not in self._tables and super().has_table(table_name):
            self._tables.add(table_name)
        return table_name in self._tables


class HeldConnectionRunStorage(_HeldConnections, InMemoryRunStorage):
    """``InMemoryRunStorage`` on one open connection; each use its own transaction under a lock of ours (the stock
    storage takes none), and a use inside another use of the same thread joins its transaction.
    """

    def __init__(self) -> None:
        super().__init__()
        self._hold()
        self._lock = threading.RLock()

    @contextmanager
    def connect(self) -> Iterator[Any]:
        with self._transaction(self._lock) as conn:
            yield conn


def ephemeral_instance() -> dg.DagsterInstance:
    """Dagster's ephemeral instance as ``dagster._core.instance.factory.create_ephemeral_instance`` assembles it,
    with :class:`HeldConnectionEventLog` and :class:`HeldConnectionRunStorage` for its storages.
    """
    from dagster._core.instance import InstanceType
    from dagster._core.launcher.sync_in_memory_run_launcher import SyncInMemoryRunLauncher
    from dagster._core.run_coordinator import DefaultRunCoordinator
    from dagster._core.storage.noop_compute_log_manager import NoOpComputeLogManager
    from dagster._core.storage.root import TemporaryLocalArtifactStorage

    return dg.DagsterInstance(
        instance_type=InstanceType.EPHEMERAL,
        local_artifact_storage=TemporaryLocalArtifactStorage(),
        run_storage=HeldConnectionRunStorage(),
        event_storage=HeldConnectionEventLog(),
        compute_log_manager=NoOpComputeLogManager(),
        run_coordinator=DefaultRunCoordinator(),
        run_launcher=SyncInMemoryRunLauncher(),
    )
