"""Publish a study once every stage has run: readers then see all of its tables at one consistent load."""

import dagster as dg

from orchestration.checks import FOLLOWS_INPUTS, contract_check, raise_on_failures, results, table_metadata, table_spec
from orchestration.partitions import STUDY_POOL, studies
from orchestration.resources import TRANSIENT_RETRY, WarehouseResource
from schemas.tables import PUBLISHED_TABLES
from warehouse.publish import LEDGER, InconsistentStudy, publish_study


@dg.asset(
    name=LEDGER,
    group_name="publish",
    description=table_spec(LEDGER, group="publish").description,
    metadata=table_metadata(LEDGER),
    kinds={"delta"},
    deps=PUBLISHED_TABLES,
    automation_condition=FOLLOWS_INPUTS,
    check_specs=[contract_check(LEDGER)],
    partitions_def=studies, pool=STUDY_POOL, retry_policy=TRANSIENT_RETRY,
)
def study_versions(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Record the study's table versions in one commit (the resource then rebuilds the catalog)."""
    with warehouse.study_session(context.partition_key) as lake:
        try:
            commit = publish_study(lake, context.partition_key)
        except InconsistentStudy as exc:
            raise dg.Failure(str(exc), allow_retries=False) from exc
    yield from results(commit)
    raise_on_failures(commit, LEDGER)
