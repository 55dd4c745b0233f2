"""The landing sensor registers study folders and requests a run only when a folder's content changes."""

from pathlib import Path

import dagster as dg
import pytest

from orchestration.resources import WarehouseResource
from orchestration.sensors import landing_sensor


def _evaluate(instance, landing: Path, cursor: str | None):
    resource = WarehouseResource(landing_dir=str(landing), warehouse_dir=str(landing.parent / "wh"))
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"warehouse": resource})
    return landing_sensor(context)


@pytest.fixture
def instance():
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


def test_landing_sensor_runs_new_and_changed_studies_once(tmp_path, instance, example_landing):
    landing = example_landing(tmp_path, "airway")

    first = _evaluate(instance, landing, None)
    assert [r.partition_key for r in first.run_requests] == ["airway"]
    assert first.dynamic_partitions_requests[0].partition_keys == ["airway"]

    again = _evaluate(instance, landing, first.cursor)
    assert again.run_requests == []

    samples = landing / "airway" / "samples.tsv"
    samples.write_text(samples.read_text().replace("GSM1275862", "GSM0000000"))
    changed = _evaluate(instance, landing, again.cursor)
    assert [r.partition_key for r in changed.run_requests] == ["airway"]
    assert changed.run_requests[0].run_key != first.run_requests[0].run_key
