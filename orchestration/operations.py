"""Running it for years: the nightly re-harmonisation schedule, failure summaries, retries for transient errors.

- ``nightly_reharmonisation``: at 02:00 requests a study run only for studies whose last ingest was made with
  another gene reference or other code (recorded in ``studies``; no landing file is hashed), so a reference or
  code upgrade reprocesses every study and an unchanged night costs nothing, and for studies whose last attempt
  failed (once a night: a fix may change nothing a comparison sees).
- ``run_failure_summary``: every failed run is appended to ``<warehouse>/runs/failures.jsonl`` and
  ``failures.log`` (job, study, failed steps and their messages); a team points ``OMICSDW_FAILURE_HOOK`` at a
  ``module:function`` taking that dict (their chat, their pager).
Retries of transient errors are every asset's (``orchestration.resources.TRANSIENT_RETRY``); one run per study
at a time is the instance's run queue (``orchestration/instance/dagster.yaml``).
"""

from __future__ import annotations

import importlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from orchestration.partitions import STUDIES, STUDY_RUN_TAG
from orchestration.resources import WarehouseResource
from orchestration.sensors import study_job

if TYPE_CHECKING:
    import polars as pl
    from dagster_shared.error import SerializableErrorInfo

    from warehouse.lake import Lake

HOOK_VARIABLE = "OMICSDW_FAILURE_HOOK"


@dg.schedule(job=study_job, cron_schedule="0 2 * * *", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.STOPPED)
def nightly_reharmonisation(context: dg.ScheduleEvaluationContext, warehouse: WarehouseResource):
    """A run for each registered study last loaded with another gene reference or other code (or never loaded), and
    for each study whose last ingest attempt failed.

    It compares what the ``studies`` table records of each study's load (``gene_reference_fingerprint``,
    ``code_fingerprint``) with today's, reading the landing's manifests (which studies exist) and no data file:
    hashing the landing took ~1.2 CPU s per GB, past Dagster's 60 s schedule limit over ~30 GB. A changed study file
    is the landing sensor's (it stats the landing every 30 s and hashes only the folders that moved).

    A study whose last attempt failed (``warehouse.status.ingest_attempts``) or was withheld (:func:`_withheld`)
    runs every night, whatever its
    ``studies`` row says: a fix may change no file stat the sensor or a stats comparison sees (``chmod`` of an
    unreadable file, a mount or a permission outside the folder, a file put back with its old times), and until
    session 20 such a study was never retried (nor was one that had loaded once, then failed with new files). It
    fails again and calls the failure hook at most once a night; the sensor does not retry it (it would every 30 s).
    Each request's ``omicsdw/nightly_reason`` tag says why it runs (:data:`RETRY_TAG` marks a retry of a failure,
    which the failure summary carries, so a team's hook can page on the first failure only).
    """
    from transforms.ingest.genes import GeneReference
    from transforms.ingest.study import find_studies
    from warehouse.status import ingest_attempts
    from warehouse.versions import code_fingerprint

    today = (GeneReference.load().fingerprint, code_fingerprint())
    lake = warehouse.lake()
    loaded = _loaded_with(lake)
    attempts = ingest_attempts(lake)
    failed = set(attempts.filter(attempts["failed"])["study_id"].to_list())
    withheld = _withheld(lake, attempts)
    registered = set(context.instance.get_dynamic_partitions(STUDIES))
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")  # one run per study and night
    requests = []
    for study_id, folder in find_studies(warehouse.landing()).items():
        if study_id not in registered:
            continue  # the landing sensor registers and runs new studies
        tags = {}
        if study_id in failed:
            reason = _retry_reason(lake, study_id, folder, today)
            tags[RETRY_TAG] = "true"
        elif study_id in withheld:
            reason = "last attempt withheld (a later stage or check failed); retried nightly"
            tags[RETRY_TAG] = "true"
        elif loaded.get(study_id) == today:
            continue
        else:
            reason = ("never loaded" if study_id not in loaded else
                      "gene reference changed" if loaded[study_id][0] != today[0] else "code changed")
        requests.append(dg.RunRequest(partition_key=study_id, run_key=f"{study_id}:nightly:{stamp}",
                                      tags={"omicsdw/nightly_reason": reason, STUDY_RUN_TAG: "true", **tags}))
    return requests or dg.SkipReason("nothing to run: every study is loaded with today's gene reference and code, "
                                     "and no study's last attempt failed or was withheld")


RETRY_TAG = "omicsdw/retry_of_failure"
"""Tag of a nightly run of a study whose last attempt failed (``run_failure_summary`` copies it into the summary as
``retry_of_failure``)."""


def _withheld(lake: Lake, attempts: pl.DataFrame) -> set[str]:
    """Studies whose last attempt ingested without errors but was not published (``study_status``'s ``withheld``:
    a later stage or a blocking check failed in its run). The automation does not rerun a whole-study run's
    stages (``orchestration.checks.FOLLOWS_INPUTS``), and neither the sensor nor the comparison of the ``studies``
    row would run it again until a file changed.
    """
    import polars as pl

    from warehouse.publish import LEDGER

    done = attempts.filter(~attempts["failed"])
    if done.is_empty():
        return set()
    published = (lake.scan(LEDGER).filter(pl.col("table_name") == "studies").select("study_id", "fingerprint")
                 .collect() if lake.exists(LEDGER) else pl.DataFrame(schema={"study_id": pl.String,
                                                                           "fingerprint": pl.String}))
    shown = dict(published.iter_rows())
    return {sid for sid, fingerprint in done.select("study_id", "fingerprint").iter_rows()
            if shown.get(sid) != fingerprint}


def _retry_reason(lake: Lake, study_id: str, folder: Path, today: tuple[str, str]) -> str:
    """Why a study whose last ingest attempt failed runs again: what changed since that attempt, else that it failed
    (a fix may change nothing a comparison sees, e.g. ``chmod``).
    """
    from transforms.ingest.study import file_stamps
    from warehouse.load import ATTEMPT_CODE, ATTEMPT_FILES, ATTEMPT_REFERENCE, files_digest

    last = lake.last_commit("ingest_issues", study_id) or {}
    if ATTEMPT_REFERENCE not in last:
        return "last attempt failed (what it was made with is not recorded)"
    if last.get(ATTEMPT_REFERENCE) != today[0]:
        return "gene reference changed since the failed attempt"
    if last.get(ATTEMPT_CODE) != today[1]:
        return "code changed since the failed attempt"
    if last.get(ATTEMPT_FILES) != files_digest(file_stamps(folder)):
        return "files changed since the failed attempt"
    return "last attempt failed; retried nightly (no file stat, code or reference changed since)"


RECORDED = ("gene_reference_fingerprint", "code_fingerprint")
"""The ``studies`` columns saying what a study's last load was made with."""


def _loaded_with(lake: Lake) -> dict[str, tuple[str | None, str | None]]:
    """Study id -> (gene reference, code) of its last load; a warehouse whose ``studies`` table predates these
    columns gives none (its studies are reloaded once, which records them).
    """
    if not lake.exists("studies") or not set(RECORDED) <= {f.name for f in lake.delta("studies").schema().fields}:
        return {}
    rows = lake.scan("studies").select("study_id", *RECORDED).collect()
    return {sid: (reference, code) for sid, reference, code in rows.iter_rows()}


DAGSTER_WRAPPERS = ("DagsterExecutionStepExecutionError", "RetryRequestedFromPolicy", "RetryRequested")
"""Errors Dagster puts around the user's exception: a plain exception in an op body, retries given up."""
SUMMARY_LINES = 20
"""Lines of a step's error in ``failures.log`` (a study with many located errors: the first ones and a count)."""


def error_text(error: SerializableErrorInfo | None) -> str:
    """What went wrong in a step, as a person reads it: the user's exception behind Dagster's wrappers (an op
    error, ``Exceeded max_retries``), by its class name without the module, a ``dg.Failure`` by its description
    alone (the located input errors).
    """
    if error is None:
        return "the step failed without an error"
    prefix = ""
    while error.cls_name in DAGSTER_WRAPPERS and error.cause is not None:
        if error.cls_name != "DagsterExecutionStepExecutionError":
            prefix += error.message.strip() + ": "  # "Exceeded max_retries of 3: OSError: ..."
        error = error.cause
    message = error.message.strip()
    head, colon, rest = message.partition(": ")  # "dagster._core.definitions.events.Failure: <description>"
    if colon and head.rsplit(".", 1)[-1] == error.cls_name:
        message = rest if error.cls_name == "Failure" else f"{error.cls_name}: {rest}"
    return prefix + message


def failure_summary(run: dg.DagsterRun, steps: list[tuple[str, str]]) -> dict[str, object]:
    """A readable record of a failed run: what, which study, which steps failed and why."""
    return {"failed_at": datetime.now(UTC).isoformat(timespec="seconds"), "run_id": run.run_id,
            "job": run.job_name, "study": run.tags.get("dagster/partition"),
            "retry_of_failure": run.tags.get(RETRY_TAG) == "true",
            "steps": [{"step": step, "error": error} for step, error in steps]}


def record_failure(summary: dict[str, object], folder: Path) -> None:
    """Append the summary to the warehouse's failure log (JSON lines and text), then call the team's hook."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "failures.jsonl", "a") as fh:
        fh.write(json.dumps(summary) + "\n")
    lines = [f"{summary['failed_at']} {summary['job']} study={summary['study']} run={summary['run_id']}"]
    for step in summary["steps"]:  # type: ignore[attr-defined]
        text = (step["error"] or "failed").splitlines()
        more = [f"    ... {len(text) - SUMMARY_LINES} more line(s) in failures.jsonl"] * (len(text) > SUMMARY_LINES)
        lines += [f"  {step['step']}: {text[0]}", *(f"    {line.strip()}" for line in text[1:SUMMARY_LINES]), *more]
    with open(folder / "failures.log", "a") as fh:
        fh.write("\n".join(lines) + "\n")
    target = os.environ.get(HOOK_VARIABLE)
    if target:
        module, _, function = target.partition(":")
        getattr(importlib.import_module(module), function)(summary)


@dg.run_failure_sensor(default_status=dg.DefaultSensorStatus.RUNNING)
def run_failure_summary(context: dg.RunFailureSensorContext, warehouse: WarehouseResource) -> None:
    """Write a readable summary of every failed run (and call ``OMICSDW_FAILURE_HOOK`` if set)."""
    steps = []
    for event in context.get_step_failure_events():
        steps.append((event.step_key or "?", error_text(event.step_failure_data.error)))
    if not steps:
        steps.append(("run", context.failure_event.message or "the run failed before any step"))
    record_failure(failure_summary(context.dagster_run, steps), Path(warehouse.warehouse_dir, "runs"))
