"""One asset per feature-set spec file: ``features/<name>`` builds a new version when its inputs changed.

The spec folder is ``$OMICSDW_FEATURES`` (every ``*.yaml`` / ``*.yml`` in it; unset: no feature assets). Specs are
validated when the definitions load (a broken spec fails ``dg check defs`` with its error) and read again when the
asset runs, so an edited spec needs no reload to take effect. Each asset depends on ``study_versions``: it reads
the published tables, and writes only when the content differs from the newest version.
"""


import os
import re
from pathlib import Path

import dagster as dg

from orchestration.resources import TRANSIENT_RETRY, WarehouseResource
from schemas.features import load_spec
from warehouse.feature_sets import build_feature_set

FEATURES_ENV = "OMICSDW_FEATURES"


def spec_files(folder: str | Path | None) -> list[Path]:
    """The spec files of a features folder, sorted (none when the folder is unset)."""
    if not folder:
        return []
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{FEATURES_ENV}={folder}: no such folder of feature-set specs")
    return sorted([*root.glob("*.yaml"), *root.glob("*.yml")])


def feature_set_asset(path: Path) -> dg.AssetsDefinition:
    """The asset of one spec file (key ``features/<name>``, group ``features``)."""
    spec = load_spec(path)
    key = re.sub(r"[^A-Za-z0-9_]", "_", spec.name)

    @dg.asset(key=["features", key], group_name="features", deps=["study_versions"], kinds={"delta"},
              retry_policy=TRANSIENT_RETRY,
              description=f"Feature set {spec.name!r} from {path.name}: one row per sample, <layer>__<symbol> "
                          "columns, stored long in feature_values with its manifest in feature_sets.")
    def _feature_set(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        current = load_spec(path)
        with warehouse.study_session(None) as lake:  # inside it: the session fails anything else without retries
            try:
                built = build_feature_set(lake, current)
            except (LookupError, ValueError) as exc:
                named = f"feature set {current.name!r}"
                raise dg.Failure(str(exc) if named in str(exc) else f"{named}: {exc}", allow_retries=False) from exc
        not_found = "; ".join(f"{layer}: {', '.join(names)}" for layer, names in built.missing.items())
        if not_found:
            hints = ", ".join(f"{name} is {symbol}" for name, symbol in built.hints.items())
            context.log.warning(f"feature set {current.name!r}: not found (their columns are NULL): {not_found}"
                                + (f"; official symbols of genes written otherwise: {hints}" if hints else ""))
        unscalable = ", ".join(built.unscalable)
        if unscalable:
            context.log.warning(f"feature set {current.name!r}: NULL after scaling (training SD zero or undefined): "
                                f"{unscalable}")
        empty = ", ".join(sample for _, sample in built.empty_samples)
        if empty:
            context.log.warning(f"feature set {current.name!r}: {len(built.empty_samples)} of {built.rows} samples "
                                f"have no value in any column: {empty}")
        return dg.MaterializeResult(metadata={"version": built.version, "rows": built.rows, "columns": built.columns,
                                              "content_hash": built.content_hash, "unchanged": not built.new,
                                              "not_found": not_found, "unscalable": unscalable,
                                              "empty_samples": len(built.empty_samples)})

    return _feature_set


def feature_set_assets(folder: str | Path | None = None) -> list[dg.AssetsDefinition]:
    """One asset per spec file of ``folder`` (default ``$OMICSDW_FEATURES``)."""
    return [feature_set_asset(p) for p in spec_files(folder if folder is not None else os.environ.get(FEATURES_ENV))]
