"""omicsdw's storage, SQL catalog, Python API and command line.

For analysts and feature pipelines::

    import warehouse
    con = warehouse.connect("warehouse")            # read-only DuckDB over the current table versions
    counts = warehouse.table("rna_counts")          # polars LazyFrame of the current version
    snapshot = warehouse.table("rna_counts", version=3)   # time travel to a Delta version
"""

from warehouse.api import connect, table

__version__ = "0.1.0"

__all__ = ["__version__", "connect", "table"]
