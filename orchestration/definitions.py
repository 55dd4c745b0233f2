"""Dagster definitions: ``dg dev`` / ``dagster dev`` / ``dg check defs`` load this module."""

import dagster as dg

from orchestration.assets.ingest import ingest_study_tables
from orchestration.assets.normalise import differential_expression_table, normalised_expression
from orchestration.assets.publish import study_versions
from orchestration.assets.qc import sample_qc_tables
from orchestration.assets.reference import reference_tables
from orchestration.assets.report import study_report
from orchestration.resources import WarehouseResource
from orchestration.sensors import landing_sensor, study_job

# Polars' thread pool deadlocks in forked children: every multiprocess step starts with spawn.
executor = dg.multiprocess_executor.configured({"max_concurrent": 2, "start_method": {"spawn": {}}})

STUDY_ASSETS = [ingest_study_tables, normalised_expression, differential_expression_table, sample_qc_tables,
                study_versions, study_report]
"""Assets partitioned by study, in the order ``omicsdw build`` materialises them: publication is the last asset
that writes tables; the report follows it because it shows what readers see (the published catalog)."""

defs = dg.Definitions(
    assets=[reference_tables, *STUDY_ASSETS],
    jobs=[study_job],
    sensors=[landing_sensor],
    resources={"warehouse": WarehouseResource.from_env()},
    executor=executor,
)
