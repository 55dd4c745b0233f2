"""Studies are dynamic partitions: the landing sensor adds a key per study id it finds."""

import dagster as dg

STUDIES = "studies"
studies = dg.DynamicPartitionsDefinition(name=STUDIES)

STUDY_POOL = "study"
"""Concurrency pool of every study-partitioned asset: the instance (``orchestration/instance/dagster.yaml``,
``concurrency.pools``) limits how many study runs are in progress at once; one run per study is its run queue's
``dagster/partition`` limit, since a pool is named on the asset, not per partition."""

STUDY_RUN_TAG = "omicsdw/study_run"
"""Tag of the whole-study runs the landing sensor, the nightly schedule and ``omicsdw build`` launch: such a run
computes every stage of its study itself, so its updates trigger no automation of the derived assets
(``orchestration.checks.FOLLOWS_INPUTS``). Set where those runs are requested, not on ``study_job``: a job tag is
on every run of the job, and a run of some of its steps from the UI (the ingest alone) left the derived assets
stale (review20b). A whole ``study_job`` launched from the UI has no tag: the automation may repeat its later
stages (commits ``unchanged``), as before session 20. A re-execution of chosen steps of a tagged run inherits
the tag (Dagster copies the parent's tags): its derived assets are followed at the study's next run."""

ACCEPT_SHRINK_TAG = "omicsdw/accept_shrink"
"""Run tag (value ``true``) that accepts a study run's load losing samples or assays of the published version
(``study_would_shrink``), as ``omicsdw build --accept-shrink STUDY`` does: set it in the UI's launchpad (Tags) for
the study's run."""
