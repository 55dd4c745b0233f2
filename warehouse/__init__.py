"""omicsdw's storage, SQL catalog, Python API and command line.

For analysts and feature pipelines::

    import warehouse
    con = warehouse.connect("warehouse_data")       # read-only DuckDB over the published table versions
    counts = warehouse.table("rna_counts")          # polars LazyFrame of what the catalog shows
    snapshot = warehouse.table("rna_counts", version=3)   # time travel to a Delta version
"""

from warehouse.api import connect, table

__version__ = "0.2.0"

__all__ = ["__version__", "connect", "table"]
