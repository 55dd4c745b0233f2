"""The warehouse resource: where studies land, where the lake and the catalog live."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from transforms.ingest import find_studies
from warehouse.catalog import refresh_catalog
from warehouse.lake import Lake


class WarehouseResource(dg.ConfigurableResource):
    """Landing folder of study folders, warehouse folder (catalog, reports) and lake root (path or URI)."""

    landing_dir: str
    warehouse_dir: str
    lake_uri: str | None = None

    @classmethod
    def from_env(cls) -> WarehouseResource:
        """Settings from OMICSDW_LANDING / OMICSDW_WAREHOUSE / OMICSDW_LAKE (defaults: examples, warehouse)."""
        return cls(landing_dir=os.environ.get("OMICSDW_LANDING", "examples"),
                   warehouse_dir=os.environ.get("OMICSDW_WAREHOUSE", "warehouse"),
                   lake_uri=os.environ.get("OMICSDW_LAKE"))

    def lake(self) -> Lake:
        return Lake(self.lake_uri or Path(self.warehouse_dir, "lake").resolve())

    def refresh_catalog(self) -> Path:
        return refresh_catalog(self.lake(), Path(self.warehouse_dir))

    def study_folder(self, study_id: str) -> Path:
        """Folder of a study in the landing folder (partition keys are study ids)."""
        studies = find_studies(Path(self.landing_dir))
        if study_id not in studies:
            raise dg.Failure(f"study {study_id!r} is not in the landing folder {self.landing_dir}; "
                             f"found: {sorted(studies)}")
        return studies[study_id]
