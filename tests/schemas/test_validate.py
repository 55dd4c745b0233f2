import polars as pl

from schemas import validate
from schemas.tables import TABLES, polars_schema


def _copy_number_rows(n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {"study_id": ["s"] * n, "assay": ["cna"] * n, "sample_id": [f"S{i}" for i in range(n)],
         "feature_id": ["TP53"] * n, "gene_id": [7157] * n, "log2_ratio": [0.5] * n, "call": [1] * n},
    ).select(polars_schema("copy_number").names()).cast(polars_schema("copy_number"))


def test_validate_rows_batches_large_tables_without_the_key_check(monkeypatch):
    monkeypatch.setattr(validate, "EAGER_ROWS", 2)
    rows = _copy_number_rows(3)
    duplicated = pl.concat([rows, rows.head(1)])
    # 4 rows > EAGER_ROWS: checked batch by batch, so the duplicate key is not looked for (unique by construction)
    assert validate.validate_rows("copy_number", duplicated) == []
    # the model's own schema keeps its key for the eager path
    assert TABLES["copy_number"].to_schema().unique == ["study_id", "assay", "sample_id", "feature_id"]


def test_validate_rows_batched_still_reports_value_failures(monkeypatch):
    monkeypatch.setattr(validate, "EAGER_ROWS", 2)
    bad = _copy_number_rows(3).with_columns(call=pl.Series([1, 5, 0], dtype=pl.Int8))
    messages = validate.validate_rows("copy_number", bad)
    # call must lie in -2..2: the second row (5) is the one failure
    assert len(messages) == 1
    assert messages[0].startswith("copy_number.call:")
    assert "5" in messages[0]


def test_validate_rows_eager_reports_duplicate_keys():
    rows = _copy_number_rows(2)
    messages = validate.validate_rows("copy_number", pl.concat([rows, rows.head(1)]))
    # rows 0 and 2 share the key (S0, TP53): pandera names the duplicated row once per occurrence
    duplicate = ('copy_number.CopyNumber: multiple_fields_uniqueness failed for \'{"study_id":"s","assay":"cna",'
                 '"sample_id":"S0","gene_id":7157,"feature_id":"TP53","log2_ratio":0.5,"call":1}\'')
    assert messages == [duplicate, duplicate]


def test_contract_flags_locate_every_value_check_of_the_model():
    records = pl.LazyFrame({
        "study_id": ["s"] * 4, "assay": ["maf"] * 4, "sample_id": ["a"] * 4, "feature_id": ["TP53"] * 4,
        "chromosome": ["17", "17", None, "17"], "position": [7675088, 0, 5, 9], "vaf": [0.5, 0.5, 0.5, 1.5],
        "source_format": ["maf", "maf", "maf", "maf"], "file": "m.maf", "line": [2, 3, 4, 5],
        "problem": [None, None, None, None], "problem_code": [None, None, None, None],
    }, schema_overrides={"problem": pl.String, "problem_code": pl.String})
    flagged = validate.contract_flags("variants", records).collect()
    # variants contract: position >= 1, chromosome not null, 0 <= vaf <= 1 (schemas/tables.py)
    assert flagged.select("line", "problem_code", "problem_column", "problem").rows() == [
        (2, None, None, None),
        (3, "contract_violation", "position", "position = 0 must be >= 1"),
        (4, "contract_violation", "chromosome", "chromosome is missing"),
        (5, "contract_violation", "vaf", "vaf = 1.5 must be <= 1"),
    ]


def test_validate_rows_refuses_an_empty_gene_dimension():
    assert validate.validate_rows("genes", pl.DataFrame(schema=polars_schema("genes"))) == [
        "genes: no rows; the gene dimension may not be empty"]
    assert validate.validate_rows("samples", pl.DataFrame(schema=polars_schema("samples"))) == []


def _rna_rows(counts: list[float]) -> pl.DataFrame:
    n = len(counts)
    return pl.DataFrame({"study_id": ["s"] * n, "assay": ["rna"] * n, "sample_id": [f"S{i}" for i in range(n)],
                         "gene_id": [7157] * n, "feature_id": ["TP53"] * n, "count": counts, "length": [None] * n},
                        schema=polars_schema("rna_counts"))


def test_validate_rows_large_table_decided_from_file_statistics(monkeypatch):
    from warehouse.lake import ColumnStatistics

    monkeypatch.setattr(validate, "EAGER_ROWS", 2)
    monkeypatch.setattr(validate, "_HEAD_ROWS", 1)
    rows = _rna_rows([1.0, 2.0, 3.0])
    stored = {c: ColumnStatistics(0, rows[c].min(), rows[c].max()) for c in rows.columns if c not in ("study_id",
                                                                                                       "length")}
    stored["length"] = ColumnStatistics(3, None, None)
    assert validate.validate_rows("rna_counts", rows, statistics=stored) == []
    # the rows are not read past the first: a footer saying -4 and a null fail, whatever the rows hold
    stored["count"] = ColumnStatistics(1, -4.0, 3.0)
    messages = validate.validate_rows("rna_counts", rows, statistics=stored)
    assert [m.split(":")[0] for m in messages] == ["rna_counts.count", "rna_counts.count"]
    assert "1 null" in messages[0]
    assert "-4.0" in messages[1]
    # an infinite count (pandera's ge=0 lets it through) is caught from the maximum
    stored["count"] = ColumnStatistics(0, 0.0, float("inf"))
    assert validate.validate_rows("rna_counts", rows, statistics=stored)[0].startswith("rna_counts.count: infinite")
    # a column without statistics makes every row be read: this negative count is then found in the rows
    stored["count"] = None
    messages = validate.validate_rows("rna_counts", _rna_rows([1.0, -2.0, 3.0]), statistics=stored)
    assert len(messages) == 1
    assert "-2.0" in messages[0]


def test_validate_rows_decides_a_set_check_from_statistics_only_for_one_stored_value(monkeypatch):
    from warehouse.lake import ColumnStatistics

    monkeypatch.setattr(validate, "EAGER_ROWS", 2)
    monkeypatch.setattr(validate, "_HEAD_ROWS", 1)
    schema = polars_schema("rna_normalized")
    rows = pl.DataFrame({"study_id": "s", "assay": "rna", "sample_id": ["S0", "S1", "S2"], "gene_id": 7157,
                         "feature_id": "TP53", "source": ["counts", "counts", "bogus"]}).with_columns(
        *(pl.lit(1.0).alias(c) for c in schema if schema[c] == pl.Float64)).select(schema.names()).cast(schema)
    stored = {c: ColumnStatistics(0, rows[c].min(), rows[c].max()) for c in rows.columns if c != "study_id"}
    # source isin {counts, abundance}: a footer saying every value is 'counts' passes without reading the rows
    # (the third row's 'bogus' is not looked at: the footer is the evidence), one saying 'bogus' fails
    stored["source"] = ColumnStatistics(0, "counts", "counts")
    assert validate.validate_rows("rna_normalized", rows, statistics=stored) == []
    stored["source"] = ColumnStatistics(0, "bogus", "bogus")
    messages = validate.validate_rows("rna_normalized", rows, statistics=stored)
    assert len(messages) == 1
    assert messages[0].startswith("rna_normalized.source: isin(")
    assert "'bogus'" in messages[0]
    # two different stored values cannot be decided from min / max: every row is read, and 'bogus' is found
    stored["source"] = ColumnStatistics(0, "bogus", "counts")
    messages = validate.validate_rows("rna_normalized", rows, statistics=stored)
    assert len(messages) == 1
    assert messages[0].startswith("rna_normalized.source: isin")
    assert "bogus" in messages[0]


def test_an_empty_table_is_decided_without_pandera_as_pandera_decides_it():
    # validate_rows skips pandera for 0 rows in the contract's columns and types: equivalent only while pandera
    # itself passes every such empty table (no table-wide check that needs a row), which this asserts per table
    for table, model in TABLES.items():
        empty = pl.DataFrame(schema=polars_schema(table))
        assert validate._check(model.to_schema(), empty, table) == [], table
        assert validate.validate_rows(table, empty) == ([] if table not in validate.NOT_EMPTY else [
            f"{table}: no rows; the gene dimension may not be empty"])
    # an empty frame with a column of another type still goes to pandera, which names the column
    wrong = pl.DataFrame(schema=polars_schema("samples")).with_columns(pl.col("subject_id").cast(pl.Int64))
    assert [m.split(":")[0] for m in validate.validate_rows("samples", wrong)] == ["samples.subject_id"]


def _valid_rows(table: str, n: int) -> pl.DataFrame:
    """``n`` rows passing the contract: distinct keys, every value inside its checks (built from the contract)."""
    from datetime import UTC, datetime

    columns = {}
    for name, column in TABLES[table].to_schema().columns.items():
        dtype = polars_schema(table)[name]
        stats = {k: v for check in column.checks for k, v in check.statistics.items()}
        if "allowed_values" in stats:
            values: list = [sorted(stats["allowed_values"])[i % len(stats["allowed_values"])] for i in range(n)]
        elif dtype == pl.String:
            values = [f"{name}{i}" for i in range(n)]
        elif dtype.is_numeric():
            lo, hi = stats.get("min_value"), stats.get("max_value")
            start = (lo + hi) / 2 if lo is not None and hi is not None else lo + 1 if lo is not None else \
                hi - 1 if hi is not None else 1
            values = [start if hi is not None else start + i for i in range(n)]
        elif dtype == pl.Boolean:
            values = [i % 2 == 0 for i in range(n)]
        elif isinstance(dtype, pl.List):
            values = [[f"x{i}"] for i in range(n)]
        else:
            values = [datetime(2026, 1, 1, tzinfo=UTC)] * n
        columns[name] = pl.Series(name, values).cast(dtype)
    return pl.DataFrame(columns)


def _mutations(table: str, rows: pl.DataFrame):
    """Frames breaking one rule each (or not: a null in a nullable column), built from valid ``rows``."""
    for name in TABLES[table].to_schema().columns:
        dtype = rows.schema[name]
        yield rows.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(None).otherwise(pl.col(name)).alias(name))
        if dtype.is_float():
            for bad in (float("nan"), float("inf"), -1.0, 2.0):
                yield rows.with_columns(pl.when(pl.int_range(pl.len()) == 1).then(bad).otherwise(pl.col(name))
                                        .alias(name))
        elif dtype.is_integer():
            for bad in (-1, 0, 1, 100):
                yield rows.with_columns(pl.when(pl.int_range(pl.len()) == 1).then(pl.lit(bad, dtype))
                                        .otherwise(pl.col(name)).alias(name))
        elif dtype == pl.String:
            yield rows.with_columns(pl.when(pl.int_range(pl.len()) == 1).then(pl.lit("bogus"))
                                    .otherwise(pl.col(name)).alias(name))
            yield rows.with_columns(pl.col(name).first().alias(name))  # every value the same: keys collide
        if validate._FINITE.get(table) != name:  # _check's own finite test needs a number there
            yield rows.with_columns(pl.col(name).list.len() if isinstance(dtype, pl.List) else
                                    pl.col(name).cast(pl.String if dtype != pl.String else pl.Categorical))
    yield pl.concat([rows, rows.head(1)])  # a duplicated row
    yield rows.drop(rows.columns[-1])
    yield rows.with_columns(pl.lit(1).alias("extra"))
    yield rows.select(rows.columns[::-1])


def test_a_small_table_passed_without_pandera_is_one_pandera_passes_and_any_other_goes_to_pandera():
    # validate_rows decides "passes" by one query when the rows are plainly valid; this holds only if that query
    # never passes what pandera fails. Asserted on valid rows of every table and ~1,000 frames breaking one rule
    # each (nulls, NaN, inf, bounds, sets, key collisions, types, missing / extra / reordered columns).
    plain = failed = 0
    for table, model in TABLES.items():
        schema = model.to_schema()
        rows = _valid_rows(table, 4)
        assert validate._check(schema, rows, table) == [], table  # the generated rows are valid...
        assert validate._plainly_valid(schema, rows, table), table  # ...and decided so without pandera
        routed = False  # validate_rows of a frame not plainly valid is pandera's verdict: asserted once per table
        for frame in _mutations(table, rows):
            verdict = validate._check(schema, frame, table)
            if validate._plainly_valid(schema, frame, table):
                assert verdict == [], (table, frame)
                assert validate.validate_rows(table, frame) == [], (table, frame)
                plain += 1
            else:
                failed += bool(verdict)
                if verdict and not routed:
                    assert validate.validate_rows(table, frame) == verdict, (table, frame)
                    routed = True
    assert plain > 100
    assert failed > 500


def _rna_count_rows(samples: list[str], features: list[str]) -> pl.DataFrame:
    n = len(samples)
    return pl.DataFrame({"study_id": ["s"] * n, "assay": ["rna"] * n, "sample_id": samples, "feature_id": features,
                         "gene_id": list(range(1, n + 1)), "count": [1.0] * n, "length": [None] * n},
                        ).select(polars_schema("rna_counts").names()).cast(polars_schema("rna_counts"))


def test_duplicated_key_is_exact_when_every_hash_collides(monkeypatch):
    # Hash every key to the same value: each test then goes to the exact fallback, which must still tell a
    # unique key (pairs differing in one column) from a duplicated one. A version trusting the hashes alone
    # calls the unique key duplicated.
    monkeypatch.setattr(pl.Expr, "hash", lambda self, *a, **k: pl.lit(7, pl.UInt64).repeat_by(pl.len()).explode())
    unique = _rna_count_rows(["a", "a", "b", "b"], ["f1", "f2", "f1", "f2"])
    key = ["study_id", "assay", "sample_id", "feature_id"]
    assert unique.select(pl.struct(key).hash()).n_unique() == 1  # the patch holds: one hash for four keys
    assert not validate._duplicated_key(unique, key)
    assert validate._duplicated_key(pl.concat([unique, unique.tail(1)]), key)
    schema = TABLES["rna_counts"].to_schema()
    assert validate._plainly_valid(schema, unique, "rna_counts")
    assert not validate._plainly_valid(schema, pl.concat([unique, unique.tail(1)]), "rna_counts")


def test_duplicated_key_leaves_out_constant_columns_and_still_finds_a_duplicate():
    key = ["study_id", "assay", "sample_id", "feature_id"]
    rows = _rna_count_rows(["a", "b", "a"], ["f1", "f1", "f2"])
    assert not validate._duplicated_key(rows, key, constants=frozenset({"study_id", "assay"}))
    # the third row's (sample, feature) repeats the first's: found without the constant columns too
    twice = _rna_count_rows(["a", "b", "a"], ["f1", "f1", "f1"])
    assert validate._duplicated_key(twice, key, constants=frozenset({"study_id"}))
    assert validate._duplicated_key(twice, key, constants=frozenset({"study_id", "assay"}))
    # a key of constants alone: two rows share it
    assert validate._duplicated_key(rows, ["study_id"], constants=frozenset({"study_id"}))
    assert not validate._duplicated_key(rows.head(1), ["study_id"], constants=frozenset({"study_id"}))


def test_validate_rows_of_staged_files_reports_a_duplicate_key_counted_from_their_footers(tmp_path):
    # The commit path (warehouse.commit.commit_tables): statistics and the row count come from the footers, the
    # study_id from the path (not stored, so a constant of the key). A duplicated (sample, feature) is reported.
    from warehouse.lake import Lake

    lake = Lake(str(tmp_path / "lake"))
    lake.ensure_tables(["rna_counts"])
    rows = _rna_count_rows(["a", "b", "a"], ["f1", "f1", "f1"]).drop("study_id")
    staged = lake.stage_frames("rna_counts", [rows], study_id="s1")
    statistics = lake.staged_statistics(staged)
    assert "study_id" not in statistics
    assert lake.staged_rows(staged) == 3
    messages = validate.validate_rows("rna_counts", lake.scan_staged(staged), statistics=statistics,
                                      rows=lake.staged_rows(staged))
    assert messages
    assert all("multiple_fields_uniqueness" in m for m in messages)
    assert validate.validate_rows("rna_counts", lake.scan_staged(staged).head(2), statistics=statistics,
                                  rows=2) == []
