"""Where a run's steps execute: the run's process (default), a process per step, Celery workers, or Kubernetes Jobs
(``OMICSDW_EXECUTOR``).

The Definitions take their executor from :func:`executor_from_env`, so the sensor's ``study_job``, the nightly
schedule and runs started from the UI all follow the code location's setting; the assets do not change. The
distributed executors come from the ``distributed`` extra (dagster-celery, dagster-k8s) and are imported only
when selected, so a single-machine install does not need them.

- ``in_process`` (default): every step of a run in the run's own process, one after the other. A step process
  imports the whole code location (~4 CPU s) before its first row: a small study run of 10 steps cost ~4x the CPU
  of in-process (``bench/README.md``, "Session 12: study runs in Dagster"), so on one machine the runs, not the
  steps, are what run side by side (the ``study`` pool: two at a time), and a big study's peak memory is one step's.
- ``multiprocess``: a process per step on this machine (at most 2 at once), started with ``spawn`` (Polars' thread
  pool deadlocks in forked children): for a single large study whose independent stages should overlap.
- ``celery``: each step is a Celery task on a Redis (or any Celery) broker, run by ``dagster-celery worker``
  processes on any machine that imports this package and reaches the lake and the instance's storage;
  ``OMICSDW_CELERY_BROKER`` and ``OMICSDW_CELERY_BACKEND`` are read when a run starts (the workers read the same
  variables through ``orchestration/instance/celery.yaml``).
- ``k8s``: each step is a Kubernetes Job (``dagster_k8s.k8s_job_executor``); image, namespace and environment
  come from the ``K8sRunLauncher`` of the instance or the run config (see ``docs/distributed.md``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

import dagster as dg

EXECUTOR_VARIABLE = "OMICSDW_EXECUTOR"
BROKER_VARIABLE = "OMICSDW_CELERY_BROKER"
BACKEND_VARIABLE = "OMICSDW_CELERY_BACKEND"

MULTIPROCESS = dg.multiprocess_executor.configured({"max_concurrent": 2, "start_method": {"spawn": {}}})


def celery() -> dg.ExecutorDefinition:
    """Dagster's Celery executor, broker and result backend from the environment of the run's process."""
    from dagster_celery import celery_executor

    return celery_executor.configured({"broker": {"env": BROKER_VARIABLE}, "backend": {"env": BACKEND_VARIABLE}})


def kubernetes() -> dg.ExecutorDefinition:
    """Dagster's Kubernetes executor, configured by the instance's K8sRunLauncher and the run config."""
    from dagster_k8s import k8s_job_executor

    return k8s_job_executor


EXECUTORS: dict[str, Callable[[], dg.ExecutorDefinition]] = {
    "in_process": lambda: dg.in_process_executor, "multiprocess": lambda: MULTIPROCESS, "celery": celery,
    "k8s": kubernetes}


IN_PROCESS_EXECUTORS = frozenset({"in_process", "execute_in_process_executor"})
"""Executors running every step of a run in the run's own process (the second: ``execute_in_process``, which
``omicsdw build`` uses)."""


def steps_share_process(executor: dg.ExecutorDefinition) -> bool:
    """Whether a run on ``executor`` runs its steps in one process, so a step can leave a block in memory for a
    later one (``transforms.expression.study.keep_shared_block``); a step process of the multiprocess, Celery or
    Kubernetes executor would only hold it until it exits.
    """
    return executor.name in IN_PROCESS_EXECUTORS


def executor_from_env(environ: Mapping[str, str] = os.environ) -> dg.ExecutorDefinition:
    """The executor ``OMICSDW_EXECUTOR`` names (``in_process`` when unset)."""
    name = environ.get(EXECUTOR_VARIABLE) or "in_process"
    if name not in EXECUTORS:
        raise ValueError(f"{EXECUTOR_VARIABLE}={name!r}: choose one of {', '.join(EXECUTORS)}")
    return EXECUTORS[name]()
