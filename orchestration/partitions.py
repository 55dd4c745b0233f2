"""Studies are dynamic partitions: the landing sensor adds a key per study id it finds."""

import dagster as dg

STUDIES = "studies"
studies = dg.DynamicPartitionsDefinition(name=STUDIES)

STUDY_POOL = "study"
"""Concurrency pool of every study-partitioned asset: the instance (``orchestration/instance/dagster.yaml``,
``concurrency.pools``) limits how many study runs are in progress at once; one run per study is its run queue's
``dagster/partition`` limit, since a pool is named on the asset, not per partition."""

STUDY_RUN_TAG = "omicsdw/study_run"
"""Tag of every ``study_job`` run (a job tag, so the landing sensor's, the nightly schedule's, the UI's and
``omicsdw build``'s runs all carry it): such a run computes every stage of its study itself, so its updates trigger
no automation of the derived assets (``orchestration.checks.FOLLOWS_INPUTS``)."""
