"""Dagster definitions: ``dg dev`` / ``dagster dev`` / ``dg check defs`` load this module."""

import dagster as dg

from orchestration.assets.cross_omics import cross_omics_tables
from orchestration.assets.features import feature_set_assets
from orchestration.assets.ingest import ingest_study_tables
from orchestration.assets.normalise import differential_expression_table, normalised_expression
from orchestration.assets.publish import study_versions
from orchestration.assets.qc import sample_qc, sample_structure_tables
from orchestration.assets.reference import reference_tables
from orchestration.assets.report import study_report
from orchestration.assets.signatures import gene_set_enrichment, gene_set_registry, signature_matches, signature_scores
from orchestration.executors import executor_from_env
from orchestration.operations import nightly_reharmonisation, run_failure_summary
from orchestration.resources import WarehouseResource
from orchestration.sensors import cross_study_job, landing_sensor, matches_sensor, study_automation, study_job

STUDY_ASSETS = [ingest_study_tables, sample_qc, normalised_expression, differential_expression_table,
                signature_scores, gene_set_enrichment, cross_omics_tables, sample_structure_tables, study_versions,
                study_report]
"""Assets partitioned by study, in the order ``omicsdw build`` materialises them: sample QC precedes normalisation
(``qc.exclude_failed`` decides its input); publication is the last asset that writes tables; the report follows it
because it shows what readers see (the published catalog)."""
REFERENCE_ASSETS = [reference_tables, gene_set_registry]
"""Warehouse-wide inputs ``omicsdw build`` materialises before the studies."""
CROSS_STUDY_ASSETS = [signature_matches]
"""Warehouse-wide results ``omicsdw build`` materialises after the studies."""


def definitions(executor: dg.ExecutorDefinition) -> dg.Definitions:
    """Every asset, job, sensor and schedule, with the steps of every job run by ``executor``."""
    return dg.Definitions(
        assets=[reference_tables, gene_set_registry, *STUDY_ASSETS, signature_matches, *feature_set_assets()],
        jobs=[study_job, cross_study_job],
        schedules=[nightly_reharmonisation],
        sensors=[landing_sensor, matches_sensor, run_failure_summary, study_automation],
        resources={"warehouse": WarehouseResource.from_env()},
        executor=executor,
    )


defs = definitions(executor_from_env())
"""The code location: each run's steps in its own process unless ``OMICSDW_EXECUTOR`` names multiprocess, celery or
k8s."""
