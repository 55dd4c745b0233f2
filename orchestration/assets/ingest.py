"""Ingest one study partition into every harmonised table as one unit.

A study is loaded whole (like cBioPortal's importer): its tables are validated together and committed only if
the study has no error. Readers see the new load once every stage has run and the study is published.
"""

import dagster as dg

from orchestration.checks import contract_check, results, table_spec
from orchestration.executors import steps_share_process
from orchestration.partitions import ACCEPT_SHRINK_TAG, STUDY_POOL, studies
from orchestration.resources import TRANSIENT_RETRY, WarehouseResource
from schemas.tables import INGEST_TABLES
from transforms.expression.study import keep_shared_block
from transforms.ingest.genes import GeneReference
from transforms.qc.study import QC_TABLE
from warehouse.commit import Commit
from warehouse.load import DATA_TABLES, load_folder
from warehouse.publish import published_rows
from warehouse.reference import ensure_gene_reference
from warehouse.status import ATTEMPT_BY, ATTEMPT_RUN, launched_by
from warehouse.study import StudyInputs
from warehouse.summary import describe_errors
from warehouse.versions import code_fingerprint


@dg.multi_asset(
    name="ingest_study",
    specs=[table_spec(t, group="ingest", deps=["genes", "gene_xrefs"], skippable=True) for t in INGEST_TABLES],
    check_specs=[contract_check(t) for t in INGEST_TABLES],
    partitions_def=studies, pool=STUDY_POOL, retry_policy=TRANSIENT_RETRY,
)
def ingest_study_tables(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Parse, harmonise, validate and commit one study; errors fail the run after recording ingest_issues."""
    folder = warehouse.study_folder(context.partition_key)
    with warehouse.study_session(context.partition_key) as lake:
        reference_written = ensure_gene_reference(lake)
        run = {ATTEMPT_RUN: context.run.run_id, ATTEMPT_BY: launched_by(context.run.tags)}  # for study_status
        accepted = [*(warehouse.accept_shrink or ()),  # the CLI's --accept-shrink; the UI: a run tag
                    *([context.partition_key] if context.run.tags.get(ACCEPT_SHRINK_TAG) == "true" else [])]
        load = load_folder(lake, folder, reference=GeneReference.load(), code_version=code_fingerprint(),
                           keep_counts=_qc_follows(context), run=run, accept_shrink=accepted)
        if load.ok and load.counts_block is not None:  # for sample_qc, then normalise_study: the rna_counts rows
            assay, block = load.counts_block            # this commit made (keyed inside the lock), not read back
            key = StudyInputs.of(lake, load.study_id, after_qc=False).rows_key("rna_counts")
            if key is not None:
                keep_shared_block((*key, assay), block)
    commit = Commit(load.study_id, load.writes, load.check_failures)
    metadata: dict[str, dict[str, object]] = {t: {"assays": load.metadata.get(t, {})} for t in INGEST_TABLES}
    metadata["ingest_issues"] = {"errors": load.errors.height, "gene_reference_written": reference_written}
    yield from results(commit, metadata)
    errors = "none" if load.ok else describe_errors(  # located: file, line, column, code, reason
        load, published=published_rows(lake, load.study_id) > 0)
    for table in DATA_TABLES:
        if table not in commit.tables:  # not committed: its check did not run
            yield dg.AssetCheckResult(check_name="contract", asset_key=table, passed=load.ok,
                                      metadata={"failures": errors})
    if not load.ok:
        raise dg.Failure(description=errors, metadata={"errors": load.errors.height}, allow_retries=False)


def _qc_follows(context: dg.AssetExecutionContext) -> bool:
    """Whether sample_qc runs later in this run and in this process: only then is the ingest's count block worth
    building and keeping (a run of the ingest alone, or step processes, would hold it for nothing).
    """
    return (steps_share_process(context.job_def.executor_def)
            and dg.AssetKey(QC_TABLE) in context.job_def.asset_layer.selected_asset_keys)
