"""Operations: the nightly schedule requests only studies whose inputs moved; failed runs leave a summary."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import pytest

from orchestration.operations import failure_summary, nightly_reharmonisation, record_failure
from orchestration.resources import WarehouseResource
from warehouse.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.slow
def test_nightly_reharmonisation_requests_only_studies_whose_fingerprint_moved(tmp_path: Path) -> None:
    landing, wh = tmp_path / "landing", tmp_path / "wh"
    shutil.copytree(EXAMPLES / "airway", landing / "airway")
    assert main(["build", "--landing", str(landing), "--warehouse", str(wh)]) == 0
    resource = WarehouseResource(landing_dir=str(landing), warehouse_dir=str(wh))
    with dg.instance_for_test() as instance:  # the schedule's context re-opens the instance by reference
        instance.add_dynamic_partitions("studies", ["airway"])
        context = dg.build_schedule_context(instance=instance, resources={"warehouse": resource})
        assert isinstance(nightly_reharmonisation(context), dg.SkipReason)  # built with today's files and code
        samples = landing / "airway" / "samples.tsv"
        samples.write_text(samples.read_text() + "\n")
        (request,) = nightly_reharmonisation(context)
        assert request.partition_key == "airway"


def test_record_failure_writes_a_readable_summary_and_calls_the_hook(tmp_path: Path, monkeypatch) -> None:
    run = dg.DagsterRun(job_name="study_job", run_id="r1", tags={"dagster/partition": "airway"})
    summary = failure_summary(run, [("ingest_study", "study 'airway' failed with 1 error(s)\n  detail")])
    monkeypatch.setenv("OMICSDW_FAILURE_HOOK", "tests.orchestration.test_operations:_hook")
    record_failure(summary, tmp_path)
    (line,) = (tmp_path / "failures.jsonl").read_text().splitlines()
    assert json.loads(line)["study"] == "airway"
    assert json.loads(line)["steps"][0]["step"] == "ingest_study"
    log = (tmp_path / "failures.log").read_text()
    assert "study_job study=airway run=r1" in log
    assert "ingest_study: study 'airway' failed with 1 error(s)" in log
    assert [summary] == HOOKED


HOOKED: list[dict] = []


def _hook(summary: dict) -> None:
    HOOKED.append(summary)
