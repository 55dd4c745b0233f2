"""The gene dimension, built from the reference snapshot shipped with the package."""

import dagster as dg

from orchestration.checks import contract_check, raise_on_failures, results, table_spec
from orchestration.resources import TRANSIENT_RETRY, WarehouseResource
from warehouse.reference import GENE_TABLES, write_gene_reference


@dg.multi_asset(specs=[table_spec(t, group="reference") for t in GENE_TABLES],
                check_specs=[contract_check(t) for t in GENE_TABLES], retry_policy=TRANSIENT_RETRY)
def reference_tables(warehouse: WarehouseResource):
    """Write ``genes`` and ``gene_xrefs`` from the snapshot (a commit only when its files changed)."""
    with warehouse.study_session(None) as lake:
        commit, metadata = write_gene_reference(lake)
    yield from results(commit, metadata)
    raise_on_failures(commit, "the gene reference")
