"""One place to see a night: each study's last ingest attempt, from the Delta log of ``ingest_issues``.

Every ingest attempt that reads a study (the CLI build's and the daemon's, good or failed) commits the study's
``ingest_issues`` through the one commit path (:func:`warehouse.load.load_study`), and that commit records when,
which run, and what it was made with (:data:`warehouse.load.ATTEMPT_FILES`, ...; a failed one's fingerprint ends in
``:failed``). :func:`ingest_attempts` reads the newest such commit per study; the catalog holds it as the table
``ingest_attempts`` under the ``study_status`` view (``warehouse/sql/study_status.sql``), which adds the issue
counts, the first located error and the published version. An unchanged study writes nothing, so its last attempt
is the one that loaded what it holds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    from collections.abc import Mapping

    from warehouse.lake import Lake

ATTEMPT_RUN = "omicsdw.attempt.run"
ATTEMPT_BY = "omicsdw.attempt.launched_by"
"""Commit keys of the attempt's Dagster run id and what launched it (cli, schedule, sensor, dagster)."""

LAUNCHED_BY_TAG = "omicsdw/launched_by"
"""Run tag the CLI build sets (``cli``); runs without it are named by Dagster's schedule / sensor tags."""

ATTEMPT_COLUMNS = (
    ("study_id", pl.String, "Study identifier."),
    ("attempted_at", pl.Datetime("us", "UTC"), "When the study's last ingest attempt committed its ingest_issues."),
    ("run_id", pl.String, "Dagster run id of that attempt (NULL: made before runs were recorded)."),
    ("launched_by", pl.String, "What started the run: cli (omicsdw build), schedule, sensor or dagster (the UI, "
                               "a job launched by hand)."),
    ("failed", pl.Boolean, "The attempt found errors: nothing of it was loaded."),
    ("fingerprint", pl.String, "Input fingerprint of the attempt (files, gene reference, code)."),
    ("code_fingerprint", pl.String, "Code the attempt ran (NULL: made before attempts were recorded)."),
    ("gene_reference_fingerprint", pl.String, "Gene reference the attempt mapped with (NULL: not recorded)."),
)
"""Columns of the catalog table ``ingest_attempts`` (one row per study with an attempt, newest attempt)."""


def launched_by(tags: Mapping[str, str]) -> str:
    """What started a run, from its tags."""
    if tags.get(LAUNCHED_BY_TAG):
        return tags[LAUNCHED_BY_TAG]
    if tags.get("dagster/schedule_name"):
        return "schedule"
    if tags.get("dagster/sensor_name"):
        return "sensor"
    return "dagster"


def ingest_attempts(lake: Lake) -> pl.DataFrame:
    """The newest ingest attempt of every study in the lake (a removed study has none), :data:`ATTEMPT_COLUMNS`."""
    from warehouse.lake import FINGERPRINT_KEY, STUDY_KEY
    from warehouse.load import ATTEMPT_CODE, ATTEMPT_REFERENCE
    from warehouse.publish import REMOVED

    rows, seen = [], set()
    for commit in lake.history("ingest_issues") if lake.exists("ingest_issues") else []:
        study, fingerprint = commit.get(STUDY_KEY), commit.get(FINGERPRINT_KEY)
        if study is None or fingerprint is None or study in seen:
            continue
        seen.add(study)
        if fingerprint == REMOVED:
            continue
        rows.append((study, datetime.fromtimestamp(int(commit["timestamp"]) / 1000, UTC), commit.get(ATTEMPT_RUN),
                     commit.get(ATTEMPT_BY), fingerprint.endswith(":failed"), fingerprint.removesuffix(":failed"),
                     commit.get(ATTEMPT_CODE), commit.get(ATTEMPT_REFERENCE)))
    return pl.DataFrame(rows, schema={name: dtype for name, dtype, _ in ATTEMPT_COLUMNS}, orient="row")
