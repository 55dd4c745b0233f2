"""``omicsdw build``'s temporary Dagster instance (orchestration/ephemeral.py): the same runs, events and reads as
Dagster's own ephemeral instance, on one SQLite connection per storage instead of one per use."""

import threading

import dagster as dg
import pytest
import sqlalchemy as db

from orchestration.ephemeral import HeldConnectionEventLog, HeldConnectionRunStorage, ephemeral_instance

PARTS = dg.DynamicPartitionsDefinition(name="parts")


@dg.asset(partitions_def=PARTS)
def upstream(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"key": context.partition_key}, data_version=dg.DataVersion(
        context.partition_key))


@dg.asset(partitions_def=PARTS, deps=[upstream], check_specs=[dg.AssetCheckSpec("positive", asset="downstream")])
def downstream(context: dg.AssetExecutionContext):
    yield dg.MaterializeResult(metadata={"key": context.partition_key})
    yield dg.AssetCheckResult(check_name="positive", passed=context.partition_key != "b")


JOB = dg.define_asset_job("job", selection=[upstream, downstream])


def _run_all(instance: dg.DagsterInstance) -> list[tuple]:
    """Run the job for three partitions; what the instance holds afterwards, in a comparable form."""
    instance.add_dynamic_partitions("parts", ["a", "b", "c"])
    job = dg.Definitions(assets=[upstream, downstream], jobs=[JOB]).resolve_job_def("job")
    seen: list[tuple] = []
    for key in ["a", "b", "c", "a"]:
        result = job.execute_in_process(partition_key=key, instance=instance, raise_on_error=False)
        seen.append(("success", key, result.success))
        seen += [("event", key, e.event_type_value, e.step_key) for e in result.all_events]
    seen.append(("partitions", tuple(instance.get_dynamic_partitions("parts"))))
    seen.append(("has b", instance.has_dynamic_partition("parts", "b")))
    seen.append(("runs", len(instance.get_runs()),
                 tuple(sorted(str(r.status) for r in instance.get_runs()))))
    for asset in ("upstream", "downstream"):
        records = instance.fetch_materializations(dg.AssetKey(asset), limit=10).records
        seen.append(("materializations", asset, tuple((r.partition_key, r.asset_materialization.metadata["key"].value)
                                                      for r in records)))
    versions = instance.get_latest_data_version_record(dg.AssetKey("upstream"), partition_key="c")
    seen.append(("data version", versions.asset_materialization.tags.get("dagster/data_version")
                 if versions and versions.asset_materialization else None))
    check = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("downstream"), "positive"), limit=10)
    seen.append(("checks", tuple(sorted(str(c.status) for c in check))))
    for step in ("delete b", "add b", "wipe"):  # partitions known to the storage come and go
        if step == "delete b":
            instance.delete_dynamic_partition("parts", "b")
        elif step == "add b":
            instance.add_dynamic_partitions("parts", ["b"])
        else:
            instance.wipe()
        seen.append((step, tuple(instance.get_dynamic_partitions("parts")),
                     tuple(instance.has_dynamic_partition("parts", k) for k in "abc")))
    return seen


def _connections(instance: dg.DagsterInstance) -> list[int]:
    """Count the SQLite connections each storage opens from now on."""
    counts = [0, 0]
    for i, storage in enumerate((instance.event_log_storage, instance.run_storage)):
        def opened(*_args: object, i: int = i) -> None:
            counts[i] += 1
        db.event.listen(storage._engine, "connect", opened)  # type: ignore[attr-defined]
    return counts


def test_build_instance_holds_what_dagsters_ephemeral_instance_holds_on_one_connection_per_storage() -> None:
    stock, held = dg.DagsterInstance.ephemeral(), ephemeral_instance()
    assert isinstance(held.event_log_storage, HeldConnectionEventLog)
    assert isinstance(held.run_storage, HeldConnectionRunStorage)
    stock_opened, held_opened = _connections(stock), _connections(held)
    try:
        expected, got = _run_all(stock), _run_all(held)
    finally:
        stock.dispose()
        held.dispose()
    assert got == expected
    assert ("checks", ("AssetCheckExecutionRecordStatus.FAILED", "AssetCheckExecutionRecordStatus.SUCCEEDED",
                       "AssetCheckExecutionRecordStatus.SUCCEEDED", "AssetCheckExecutionRecordStatus.SUCCEEDED")) in got
    assert stock_opened[0] > 100  # Dagster's: a connection a use
    assert stock_opened[1] > 10
    assert held_opened == [0, 0]  # ours: the one each storage opened when it was made
    assert (held.event_log_storage.opened, held.run_storage.opened) == (1, 1)  # type: ignore[attr-defined]


def test_build_instance_storages_serve_another_thread_on_the_same_connection() -> None:
    instance = ephemeral_instance()
    try:
        instance.add_dynamic_partitions("parts", ["a"])
        answers: list[object] = []
        worker = threading.Thread(target=lambda: answers.append(
            (instance.has_dynamic_partition("parts", "a"), len(instance.get_runs()))))
        worker.start()
        worker.join()
        assert answers == [(True, 0)]
        assert instance.event_log_storage.opened == 1  # type: ignore[attr-defined]
        assert instance.run_storage.opened == 1  # type: ignore[attr-defined]
    finally:
        instance.dispose()


def _delete_partitions_then_fail(storage: HeldConnectionEventLog) -> None:
    with storage.index_connection() as conn:
        conn.execute(db.text("DELETE FROM dynamic_partitions"))
        raise RuntimeError("a statement failed")


def test_a_failed_use_rolls_back_only_itself() -> None:
    instance = ephemeral_instance()
    try:
        instance.add_dynamic_partitions("parts", ["a"])
        with pytest.raises(RuntimeError, match="a statement failed"):
            _delete_partitions_then_fail(instance.event_log_storage)  # type: ignore[arg-type]
        assert instance.get_dynamic_partitions("parts") == ["a"]
        instance.add_dynamic_partitions("parts", ["b"])  # the connection is usable again
        assert instance.get_dynamic_partitions("parts") == ["a", "b"]
    finally:
        instance.dispose()


def test_omicsdw_build_without_dagster_home_uses_the_held_connection_instance(monkeypatch: pytest.MonkeyPatch
                                                                             ) -> None:
    from warehouse.cli import _instance

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    with _instance() as instance:
        assert isinstance(instance.event_log_storage, HeldConnectionEventLog)


def _statements(instance: dg.DagsterInstance, pattern: str) -> list[str]:
    """The SQL statements the event log runs from now on that contain ``pattern``."""
    seen: list[str] = []
    def executed(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if pattern in statement:
            seen.append(statement)
    db.event.listen(instance.event_log_storage._engine, "before_cursor_execute", executed)  # type: ignore[attr-defined]
    return seen


def test_build_instance_asks_its_database_once_for_a_found_partition_and_the_asset_key_columns() -> None:
    instance = ephemeral_instance()
    try:
        instance.add_dynamic_partitions("parts", ["a", "b", "c"])
        partitions, columns = _statements(instance, "dynamic_partitions"), _statements(instance, "table_xinfo")
        job = dg.Definitions(assets=[upstream, downstream], jobs=[JOB]).resolve_job_def("job")
        for key in ["a", "b", "c", "a"]:
            assert job.execute_in_process(partition_key=key, instance=instance, raise_on_error=False)
        asked = [s for s in partitions if s.lstrip().startswith("SELECT")]
        assert len(asked) == 3  # a, b, c: once each (Dagster's own storage: 32 queries in this job)
        # the asset_keys columns Dagster asks about (last_materialization_timestamp, cached_status_data): once each
        # (Dagster's own storage: before each asset event, 28 times here)
        assert len(columns) == 2
        assert not instance.has_dynamic_partition("parts", "d")
        assert not instance.has_dynamic_partition("parts", "d")  # a key not found is asked again
        assert len([s for s in partitions if s.lstrip().startswith("SELECT")]) == 5
    finally:
        instance.dispose()
