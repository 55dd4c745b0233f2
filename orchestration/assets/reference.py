"""The gene dimension, built from the reference snapshot shipped in ``reference/``."""

import dagster as dg

from orchestration.resources import WarehouseResource
from schemas.tables import TABLE_DOCS
from schemas.validate import validate_rows
from transforms.genes import GeneReference, gene_xrefs_table, genes_table

_BUILDERS = {"genes": genes_table, "gene_xrefs": gene_xrefs_table}


@dg.multi_asset(
    specs=[dg.AssetSpec(name, group_name="reference", description=TABLE_DOCS[name], kinds={"delta"})
           for name in _BUILDERS],
    check_specs=[dg.AssetCheckSpec("contract", asset=name, blocking=True,
                                   description="Rows satisfy the pandera contract in schemas/tables.py.")
                 for name in _BUILDERS],
)
def reference_tables(warehouse: WarehouseResource):
    """Write ``genes`` and ``gene_xrefs`` from the snapshot (a commit only when the release changed)."""
    reference = GeneReference.load()
    lake = warehouse.lake()
    lake.ensure_tables(_BUILDERS)
    release = str(reference.release.get("source", ""))
    for name, build in _BUILDERS.items():
        frame = build(reference)
        failures = validate_rows(name, frame)
        if failures:
            raise dg.Failure(f"{name} violates its contract: {failures[:5]}")
        result = lake.write(name, frame, study_id=None, fingerprint=release)
        yield dg.MaterializeResult(
            asset_key=name,
            metadata={"rows": result.rows, "delta_version": result.version, "release": release,
                      "unchanged": result.skipped},
            check_results=[dg.AssetCheckResult(check_name="contract", passed=True, asset_key=name)],
        )
    warehouse.refresh_catalog()
