"""Operations: the nightly schedule requests only studies whose inputs moved; failed runs leave a summary."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import pytest

from orchestration.definitions import defs
from orchestration.operations import (
    error_text,
    failure_summary,
    nightly_reharmonisation,
    record_failure,
    run_failure_summary,
)
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


def _bad_count(landing: Path) -> None:
    """examples/airway with the count of its fourth gene in the second sample replaced by text."""
    path = landing / "airway" / "featurecounts.txt"
    lines = path.read_text().splitlines(keepends=True)
    cells = lines[5].split("\t")
    cells[7] = "x12"
    lines[5] = "\t".join(cells)
    path.write_text("".join(lines))


@pytest.mark.slow
def test_run_failure_sensor_summarises_a_failed_study_run_with_its_located_error_and_calls_the_hook(
        tmp_path: Path, monkeypatch) -> None:
    landing = tmp_path / "landing"
    shutil.copytree(EXAMPLES / "airway", landing / "airway")
    _bad_count(landing)
    resource = WarehouseResource(landing_dir=str(landing), warehouse_dir=str(tmp_path / "wh"))
    monkeypatch.setenv("OMICSDW_FAILURE_HOOK", "tests.orchestration.test_operations:_hook")
    HOOKED.clear()
    repository = defs.get_repository_def()

    def tick(instance: dg.DagsterInstance, cursor: str | None) -> str | None:
        context = dg.build_sensor_context(instance=instance, cursor=cursor, repository_def=repository,
                                          resources={"warehouse": resource})
        return run_failure_summary.evaluate_tick(context).cursor

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("studies", ["airway"])
        cursor = tick(instance, None)  # a new sensor starts after the runs already in the instance
        result = defs.resolve_job_def("study_job").execute_in_process(
            partition_key="airway", instance=instance, resources={"warehouse": resource}, raise_on_error=False)
        assert not result.success
        cursor = tick(instance, cursor)
        tick(instance, cursor)  # the same failure is summarised once
    log = (tmp_path / "wh" / "runs" / "failures.log").read_text().splitlines()
    assert log[0].endswith(f"study_job study=airway run={result.run_id}")
    # the step, the study-level message and the located error (file:line, column, reason) in the text log
    assert log[1:] == ["  ingest_study: study 'airway' failed with 1 error(s); previous data kept:",
                       "    ERROR featurecounts.txt:6 column 'SRR1039509_subset' [invalid_value] non-numeric value "
                       "'x12'"]
    (summary,) = HOOKED
    assert (summary["job"], summary["study"], summary["run_id"]) == ("study_job", "airway", result.run_id)
    assert [step["step"] for step in summary["steps"]] == ["ingest_study"]
    assert json.loads((tmp_path / "wh" / "runs" / "failures.jsonl").read_text()) == summary


@dg.op(retry_policy=dg.RetryPolicy(max_retries=1))
def _flaky_store() -> None:
    raise OSError("connection reset by the object store")


@dg.op
def _bug() -> None:
    raise KeyError("sample_id")


@dg.job
def _failing() -> None:
    _flaky_store()
    _bug()


def test_error_text_shows_the_users_exception_behind_dagsters_wrappers() -> None:
    with dg.instance_for_test() as instance:
        result = _failing.execute_in_process(instance=instance, raise_on_error=False)
    errors = {event.step_key: error_text(event.step_failure_data.error) for event in result.get_step_failure_events()}
    # Dagster reports these as "Exceeded max_retries of 1" and "Error occurred while executing op ..." alone
    assert errors == {"_flaky_store": "Exceeded max_retries of 1: OSError: connection reset by the object store",
                      "_bug": "KeyError: 'sample_id'"}
