"""The one validator: check a table's rows against its pandera contract before they are committed.

Small tables are validated whole (types, nullability, value checks, key uniqueness). Tables larger than
``EAGER_ROWS`` are validated in batches for everything but key uniqueness, so memory stays bounded; their keys
are unique by construction (the parser rejects duplicate features and sample columns, the sample mapping rejects
two labels for one sample), and ``tests/schemas`` proves that on corrupt input.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any, Protocol

import pandera.polars as pa
import polars as pl

from schemas.tables import TABLES, polars_schema

EAGER_ROWS = 5_000_000
_MAX_MESSAGES = 20
_HEAD_ROWS = 100_000


class Statistics(Protocol):
    """Null count and min / max of one stored column (see :meth:`warehouse.lake.Lake.staged_statistics`)."""

    @property
    def nulls(self) -> int: ...
    @property
    def min(self) -> Any: ...
    @property
    def max(self) -> Any: ...

_FINITE = {"rna_counts": "count"}
"""Columns that must also be finite (pandera's ge=0 lets +inf through)."""

NOT_EMPTY = frozenset({"genes", "gene_xrefs"})
"""Tables that may never be committed empty: a study mapped against an empty gene dimension maps nothing."""


def validate_rows(table: str, frame: pl.LazyFrame | pl.DataFrame, *,
                  statistics: Mapping[str, Statistics | None] | None = None, rows: int | None = None) -> list[str]:
    """Return failure messages (empty when the rows satisfy the contract of ``table``).

    ``statistics``: per column stored in the files behind ``frame`` (the other columns are constants, such as
    the partition's ``study_id``), from their footers. A large table whose every value check is a bound or a
    non-null rule is then checked from them, with pandera on its first rows for types and constants, instead
    of reading every row back; a small table's key is then tested without its constant columns.
    ``rows``: the row count of those files (their footers), else counted by a query of its own.
    """
    lazy = frame.lazy()
    if rows is None:
        rows = lazy.select(pl.len()).collect().item()
    if rows == 0 and table in NOT_EMPTY:
        return [f"{table}: no rows; the gene dimension may not be empty"]
    if rows == 0 and lazy.collect_schema() == polars_schema(table):
        return []  # no row can break a check, the columns are the contract's: pandera's verdict, without its ~7 ms
    schema = TABLES[table].to_schema()
    if rows <= EAGER_ROWS:
        collected = lazy.collect()
        # a flat column the files do not store is their partition's one value (a nested one has statistics under
        # its leaf's path, not its name)
        constants = frozenset() if statistics is None else frozenset(
            name for name, dtype in collected.schema.items() if not dtype.is_nested()) - statistics.keys()
        if _plainly_valid(schema, collected, table, constants=constants):
            return []  # pandera's verdict, from one query instead of ~15 ms of its checks
        return _check(schema, collected, table)
    batch_schema = copy.deepcopy(schema)  # to_schema() returns the model's cached schema: never mutate it
    batch_schema.unique = None
    if statistics is not None:
        decided = _from_statistics(batch_schema, table, statistics)
        if decided is not None:
            return (_check(batch_schema, lazy.head(_HEAD_ROWS).collect(), table) + decided)[:_MAX_MESSAGES]
    messages: list[str] = []
    for batch in lazy.collect_batches(chunk_size=1_000_000):
        messages += _check(batch_schema, batch, table)
        if len(messages) >= _MAX_MESSAGES:
            break
    return messages[:_MAX_MESSAGES]


_BOUNDS = {
    "greater_than": lambda lo, hi, s: lo > s["min_value"],
    "greater_than_or_equal_to": lambda lo, hi, s: lo >= s["min_value"],
    "less_than": lambda lo, hi, s: hi < s["max_value"],
    "less_than_or_equal_to": lambda lo, hi, s: hi <= s["max_value"],
    "in_range": lambda lo, hi, s: lo >= s["min_value"] and hi <= s["max_value"],
}


def _from_statistics(schema: pa.DataFrameSchema, table: str, statistics: Mapping[str, Statistics | None]
                     ) -> list[str] | None:
    """Failure messages of the non-null, bound and set checks of the stored columns, decided from their min / max
    and null counts; None when some check needs the values themselves (``isin`` over more than one stored value,
    a custom check, no statistics).
    Columns not in ``statistics`` are constants, checked on the first rows.
    """
    messages: list[str] = []
    for name, column in schema.columns.items():
        if name not in statistics:
            continue
        stats = statistics[name]
        if stats is None:
            return None
        if not column.nullable and stats.nulls:
            messages.append(f"{table}.{name}: not_nullable failed for {stats.nulls} null value(s)")
        for check in column.checks:
            if stats.min is None:  # every value null: no bound or set to break
                continue
            if check.name == "isin":  # decided only when every stored value is the same one (min == max)
                if stats.min != stats.max:
                    return None
                if stats.min not in check.statistics["allowed_values"]:
                    messages.append(f"{table}.{name}: isin({check.statistics['allowed_values']}) failed for "
                                    f"{stats.min!r}")
                continue
            bound = _BOUNDS.get(check.name)
            if bound is None:
                return None
            if not bound(stats.min, stats.max, check.statistics):
                messages.append(f"{table}.{name}: {check.name}({check.statistics}) failed for values in "
                                f"[{stats.min!r}, {stats.max!r}]")
        if _FINITE.get(table) == name and stats.min is not None and not (
                math.isfinite(stats.min) and math.isfinite(stats.max)):
            messages.append(f"{table}.{name}: infinite values (range [{stats.min!r}, {stats.max!r}])")
    return messages


_PLAIN_CHECKS = {
    "greater_than": lambda c, s: c.gt(s["min_value"]),
    "greater_than_or_equal_to": lambda c, s: c.ge(s["min_value"]),
    "less_than": lambda c, s: c.lt(s["max_value"]),
    "less_than_or_equal_to": lambda c, s: c.le(s["max_value"]),
    "in_range": lambda c, s: (c.ge(s["min_value"]) if s["include_min"] else c.gt(s["min_value"])).and_(
        c.le(s["max_value"]) if s["include_max"] else c.lt(s["max_value"])),
    "isin": lambda c, s: c.is_in(s["allowed_values"]),
}
"""pandera's polars built-in checks of these names, as the expressions it evaluates (``pandera.backends.polars.
builtin_checks``)."""


def _plainly_valid(schema: pa.DataFrameSchema, frame: pl.DataFrame, table: str, *,
                   constants: frozenset[str] = frozenset()) -> bool:
    """True only when pandera would pass ``frame``: the contract's exact columns and types, then every non-null
    rule (nulls, and NaN in a float column, as pandera counts them), every value check (the expression pandera
    evaluates, a null result passing where the check ignores nulls) and every key's uniqueness, in one query.

    False means "ask pandera" (which then finds and words the failures): a rule this does not know (a custom or
    table-wide check), a type or column that differs, any failing value. Why: pandera took ~15 ms for a small
    table that passes, ~30 non-empty tables a small study.

    ``constants``: columns holding one value in every row (a study's staged files: its ``study_id``), left out of
    the key tests (a key is unique with them iff it is without them).
    """
    if frame.schema != polars_schema(table) or schema.checks:
        return False
    tests: list[pl.Expr] = []
    for name, column in schema.columns.items():
        value = pl.col(name)
        if column.regex:
            return False
        if not column.nullable:
            tests.append(value.is_not_null().all())
            if frame.schema[name].is_float():
                tests.append(value.is_not_nan().all())
        for check in column.checks:
            rule = _PLAIN_CHECKS.get(check.name)
            if rule is None:
                return False
            tests.append(rule(value, check.statistics).fill_null(bool(check.ignore_na)).all())
        if column.unique:
            tests.append(value.is_duplicated().any().not_())
    if table in _FINITE:  # as :func:`_check` adds after pandera
        tests.append(pl.col(_FINITE[table]).is_infinite().not_().all())
    if tests and not all(frame.select(t.alias(f"t{i}") for i, t in enumerate(tests)).row(0)):
        return False
    keys = schema.unique or []
    return not any(_duplicated_key(frame, subset, constants=constants)
                   for subset in ([keys] if all(isinstance(k, str) for k in keys) else keys) if subset)


def _duplicated_key(frame: pl.DataFrame, key: list[str], *, constants: frozenset[str] = frozenset()) -> bool:
    """Whether two rows of ``frame`` share ``key`` (nulls equal, as pandera tests a key).

    Tested on one 64-bit hash of the key's varying columns, then, only if two hashes are equal (a duplicate or a
    collision), on the columns themselves: the exact verdict, at ~2/3 of the exact test's cost on a small study's
    large tables (~38 -> ~26 ms a study, bench/README.md Session 19).
    """
    varying = [k for k in key if k not in constants]
    if not varying:  # every row has the same key
        return frame.height > 1
    if not frame.select(pl.struct(varying).hash().is_duplicated().any()).item():
        return False
    return bool(frame.select(varying).is_duplicated().any())


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


_CHECKS = {
    "greater_than": (lambda c, s: c > s["min_value"], "must be > {min_value}"),
    "greater_than_or_equal_to": (lambda c, s: c >= s["min_value"], "must be >= {min_value}"),
    "less_than": (lambda c, s: c < s["max_value"], "must be < {max_value}"),
    "less_than_or_equal_to": (lambda c, s: c <= s["max_value"], "must be <= {max_value}"),
    "isin": (lambda c, s: c.is_in(s["allowed_values"]), "must be one of {allowed_values}"),
    "in_range": (lambda c, s: c.is_between(s["min_value"], s["max_value"]), "must be in [{min_value}, {max_value}]"),
}


def contract_flags(table: str, records: pl.LazyFrame) -> pl.LazyFrame:
    """Flag record-level contract violations before staging, so they are located like any other problem.

    Every value check and non-null rule of the table's pandera columns becomes a ``problem`` on the records that
    break it (only records without a problem yet), with ``problem_column`` naming the table column; such records
    are quarantined with their file and line instead of failing the staged table's check without a location.
    """
    schema = records.collect_schema()
    code: pl.Expr = pl.col("problem_code")
    text: pl.Expr = pl.col("problem")
    where: pl.Expr = pl.col("problem_column")
    rules: list[tuple[pl.Expr, str, pl.Expr]] = []
    for name, column in TABLES[table].to_schema().columns.items():
        if name not in schema:
            continue
        value = pl.col(name)
        if not column.nullable:
            rules.append((value.is_null(), name, pl.lit(f"{name} is missing")))
        for check in column.checks:
            rule = _CHECKS.get(check.name)
            if rule is None:
                continue
            test, template = rule
            stats = check.statistics
            rules.append((~test(value, stats).fill_null(True), name,
                          pl.format("{} = {} " + template.format(**stats), pl.lit(name), value.cast(pl.String))))
    for broken, column_name, message in reversed(rules):
        hit = pl.col("problem").is_null() & broken
        code = pl.when(hit).then(pl.lit("contract_violation")).otherwise(code)
        text = pl.when(hit).then(message).otherwise(text)
        where = pl.when(hit).then(pl.lit(column_name)).otherwise(where)
    if "problem_column" not in schema:
        records = records.with_columns(pl.lit(None, pl.String).alias("problem_column"))
    return records.with_columns(code.alias("problem_code"), text.alias("problem"), where.alias("problem_column"))
