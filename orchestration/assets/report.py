"""The study report: an offline HTML page of what readers see of one study, written after it is published.

It reads the study's published files through the catalog's views (not the stages' newest commits), so it runs after
``study_versions`` and writes no table: its output is ``<warehouse>/reports/<study>/index.html`` and the
warehouse's report index.
"""

import dagster as dg

from orchestration.checks import FOLLOWS_INPUTS
from orchestration.partitions import STUDY_POOL, studies
from orchestration.resources import TRANSIENT_RETRY, WarehouseResource
from warehouse.publish import LEDGER
from warehouse.report import write_study_report


@dg.asset(name="study_report", group_name="report", deps=[LEDGER], kinds={"html"}, partitions_def=studies,
          pool=STUDY_POOL, automation_condition=FOLLOWS_INPUTS, retry_policy=TRANSIENT_RETRY,
          description="HTML report of a published study: sample QC, correlation heatmap, PCA, clusters, volcano "
                      "and MA plots, omics coverage, enrichment, signature scores, biomarker candidates, "
                      "RNA-protein correlation (reports/<study>/index.html).")
def study_report(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Write the study's report and the report index from what readers see."""
    with warehouse.study_session(context.partition_key) as lake:  # the study's lock: one writer of its reports
        written = write_study_report(warehouse.warehouse_path, context.partition_key, lake=lake,
                                     plots=warehouse.draws_plots(), index=not warehouse.report_index_with_catalog)
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(written.path)),
        "url": dg.MetadataValue.url(written.path.resolve().as_uri()),
        "sections": written.sections, "unchanged": written.unchanged})
