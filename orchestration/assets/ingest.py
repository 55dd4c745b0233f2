"""Ingest one study partition into every harmonised table as one unit.

A study is loaded whole (like cBioPortal's importer): its tables are validated together and committed only if
the study has no error, so a table never mixes two versions of a study. Each table is its own asset with a
blocking contract check; the run's metadata says rows, mapped fraction and issues per table.
"""

import dagster as dg

from orchestration.partitions import studies
from orchestration.resources import WarehouseResource
from schemas.tables import INGEST_TABLES, TABLE_DOCS
from transforms.genes import GeneReference
from transforms.ingest import ingest_study
from warehouse import __version__
from warehouse.load import DATA_TABLES, StudyLoad, load_study
from warehouse.summary import describe_errors

CONTRACT = "contract"


@dg.multi_asset(
    name="ingest_study",
    specs=[dg.AssetSpec(table, group_name="ingest", description=TABLE_DOCS[table], skippable=True,
                        deps=["genes", "gene_xrefs"], kinds={"delta"}) for table in INGEST_TABLES],
    check_specs=[dg.AssetCheckSpec(CONTRACT, asset=table, blocking=True,
                                   description="Rows satisfy the pandera contract in schemas/tables.py.")
                 for table in DATA_TABLES],
    partitions_def=studies,
)
def ingest_study_tables(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Parse, harmonise, validate and commit one study; errors fail the run after recording ingest_issues."""
    folder = warehouse.study_folder(context.partition_key)
    ingest = ingest_study(folder, reference=GeneReference.load(), code_version=__version__)
    load = load_study(warehouse.lake(), ingest)
    warehouse.refresh_catalog()
    yield from _results(load)
    if not load.ok:
        raise dg.Failure(description=describe_errors(load), metadata={"errors": load.errors.height})


def _results(load: StudyLoad):
    issues = load.writes["ingest_issues"]
    yield dg.MaterializeResult(asset_key="ingest_issues", metadata={
        "rows": issues.rows, "errors": load.errors.height, "delta_version": issues.version})
    for table in DATA_TABLES:
        failures = load.check_failures.get(table, [])
        check = dg.AssetCheckResult(check_name=CONTRACT, asset_key=table, passed=not failures,
                                    metadata={"failures": "\n".join(failures) or "none"})
        if table not in load.writes:
            yield check
            continue
        write = load.writes[table]
        metadata: dict[str, float | str] = {"rows": write.rows, "delta_version": write.version,
                                            "unchanged": write.skipped}
        for name, value in load.metadata.get(table, {}).items():
            if isinstance(value, dict):
                metadata.update({f"{name}.{k}": v for k, v in value.items() if isinstance(v, (int, float, str))})
        yield dg.MaterializeResult(asset_key=table, metadata=metadata, check_results=[check])
