"""A study re-ingested through some steps of ``study_job`` (the UI's ingest alone) is followed by automation.

review20b found session 20's first ``FOLLOWS_INPUTS`` blind to it: ``omicsdw/study_run`` was a job tag of
``study_job``, so a run of one of its steps carried it too and its updates were no trigger; the derived assets stayed
stale (the tick requested 0 of the 15 it requested before). The tag is now set where whole-study runs are launched.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from orchestration.resources import WarehouseResource
from tests.orchestration.test_operations import DERIVED, EXAMPLES, _automation_tick, change_one_count


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::dagster.BetaWarning")
def test_a_study_reingested_alone_through_study_job_is_followed(tmp_path: Path) -> None:
    from orchestration.assets.ingest import ingest_study_tables
    from orchestration.definitions import STUDY_ASSETS
    from orchestration.sensors import study_job

    landing, wh = tmp_path / "landing", tmp_path / "wh"
    shutil.copytree(EXAMPLES / "airway", landing / "airway")
    resource = {"warehouse": WarehouseResource(landing_dir=str(landing), warehouse_dir=str(wh))}
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("studies", ["airway"])
        assert dg.materialize(STUDY_ASSETS, partition_key="airway", instance=instance, resources=resource).success
        quiet = _automation_tick(instance)
        change_one_count(landing)
        job = dg.Definitions(assets=STUDY_ASSETS, jobs=[study_job], resources=resource).resolve_job_def("study_job")
        result = job.execute_in_process(partition_key="airway", instance=instance,
                                        asset_selection=list(ingest_study_tables.keys))  # the ingest step alone
        assert result.success
        run = instance.get_run_by_id(result.run_id)
        assert run is not None
        assert "omicsdw/study_run" not in run.tags  # not a whole-study run: the tag is set where those are launched
        assert _automation_tick(instance, quiet.cursor).total_requested == len(DERIVED)


def test_the_whole_study_runs_of_the_cli_carry_the_tag_the_automation_skips() -> None:
    from orchestration.partitions import STUDY_RUN_TAG
    from warehouse.cli import CLI_TAGS

    assert CLI_TAGS[STUDY_RUN_TAG] == "true"
