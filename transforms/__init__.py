"""Pure functions on polars frames and numpy blocks: parsers, harmonisation, normalisation, statistics.

Nothing in this package imports dagster (enforced by ``tests/test_layering.py``).
"""
