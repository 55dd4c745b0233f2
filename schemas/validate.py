"""The one validator: check a table's rows against its pandera contract before they are committed.

Small tables are validated whole (types, nullability, value checks, key uniqueness). Tables larger than
``EAGER_ROWS`` are validated in batches for everything but key uniqueness, so memory stays bounded; their keys
are unique by construction (the parser rejects duplicate features and sample columns, the sample mapping rejects
two labels for one sample), and ``tests/schemas`` proves that on corrupt input.
"""

from __future__ import annotations

import copy

import pandera.polars as pa
import polars as pl

from schemas.tables import TABLES

EAGER_ROWS = 5_000_000
_MAX_MESSAGES = 20

_FINITE = {"rna_counts": "count"}
"""Columns that must also be finite (pandera's ge=0 lets +inf through)."""


def validate_rows(table: str, frame: pl.LazyFrame | pl.DataFrame) -> list[str]:
    """Return failure messages (empty when the rows satisfy the contract of ``table``)."""
    lazy = frame.lazy()
    rows = lazy.select(pl.len()).collect().item()
    schema = TABLES[table].to_schema()
    if rows <= EAGER_ROWS:
        return _check(schema, lazy.collect(), table)
    batch_schema = copy.deepcopy(schema)  # to_schema() returns the model's cached schema: never mutate it
    batch_schema.unique = None
    messages: list[str] = []
    for batch in lazy.collect_batches(chunk_size=1_000_000):
        messages += _check(batch_schema, batch, table)
        if len(messages) >= _MAX_MESSAGES:
            break
    return messages[:_MAX_MESSAGES]


def _check(schema: pa.DataFrameSchema, frame: pl.DataFrame, table: str) -> list[str]:
    messages: list[str] = []
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        for row in cases.head(_MAX_MESSAGES).iter_rows(named=True):
            messages.append(f"{table}.{row['column']}: {row['check']} failed for {row['failure_case']!r}")
    column = _FINITE.get(table)
    if column is not None and column in frame.columns:
        bad = frame.filter(pl.col(column).is_infinite())
        if bad.height:
            messages.append(f"{table}.{column}: {bad.height} infinite values (first {bad[column][0]})")
    return messages
