"""Dagster definitions: ``dg dev`` / ``dagster dev`` / ``dg check defs`` load this module."""

import dagster as dg

from orchestration.assets.cross_omics import cross_omics_tables
from orchestration.assets.features import feature_set_assets
from orchestration.assets.ingest import ingest_study_tables
from orchestration.assets.normalise import differential_expression_table, normalised_expression
from orchestration.assets.publish import study_versions
from orchestration.assets.reference import reference_tables
from orchestration.resources import WarehouseResource
from orchestration.sensors import landing_sensor, study_job

# Polars' thread pool deadlocks in forked children: every multiprocess step starts with spawn.
executor = dg.multiprocess_executor.configured({"max_concurrent": 2, "start_method": {"spawn": {}}})

STUDY_ASSETS = [ingest_study_tables, normalised_expression, differential_expression_table, cross_omics_tables,
                study_versions]
"""Assets partitioned by study, in the order ``omicsdw build`` materialises them (publication last)."""

defs = dg.Definitions(
    assets=[reference_tables, *STUDY_ASSETS, *feature_set_assets()],
    jobs=[study_job],
    sensors=[landing_sensor],
    resources={"warehouse": WarehouseResource.from_env()},
    executor=executor,
)
