"""omicsdw's storage, SQL catalog, Python API and command line.

For analysts and feature pipelines::

    import warehouse
    con = warehouse.connect("warehouse_data")       # read-only DuckDB over the published table versions
    counts = warehouse.table("rna_counts")          # polars LazyFrame of what the catalog shows
    snapshot = warehouse.table("rna_counts", version=3)   # time travel to a Delta version
    matrix = warehouse.features("acc_panel", version=2)   # a feature set (wide polars DataFrame)
    warehouse.feature_versions("acc_panel")              # its versions and manifests
    warehouse.delta_snapshots("rna_counts")         # {Delta version: study ids}: the same rows for Daft, Spark
"""

from warehouse.api import connect, delta_snapshots, feature_batches, feature_versions, features, table

__version__ = "0.2.0"

__all__ = ["__version__", "connect", "delta_snapshots", "feature_batches", "feature_versions", "features", "table"]
