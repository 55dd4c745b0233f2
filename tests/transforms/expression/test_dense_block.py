"""dense_block's one pass (identifiers coded as they come, the block grown and put in order at the end) against the
two group-bys it replaced, written out here: the same features, genes, samples, cells and lengths whatever order
and batching the long rows come in, in memory or memory-mapped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from transforms.expression import study


def _long_table() -> pl.DataFrame:
    """60 features x 25 samples with missing cells, unmapped features, genes shared by two features, a feature
    whose rows disagree on its gene (NULL in some), a sample with rows for 3 features only, NULL values and
    lengths given only for some samples; plus two rows without an identifier (left out)."""
    rng = np.random.default_rng(7)
    features = [f"F{i:03d}" for i in rng.permutation(60)]
    gene = {f: (None if i % 6 == 0 else 500 - (i % 45)) for i, f in enumerate(features)}
    samples = [f"S{j:02d}" for j in rng.permutation(25)]
    cells = [(s, f) for s in samples for f in features if rng.random() > 0.15]
    cells = [(s, f) for s, f in cells if s != samples[3] or f in features[:3]]  # a nearly empty sample
    frame = pl.DataFrame({
        "sample_id": [s for s, _ in cells], "feature_id": [f for _, f in cells],
        "gene_id": pl.Series([gene[f] for _, f in cells], dtype=pl.Int64),
        "count": rng.poisson(30, len(cells)).astype(float),
        "length": [float(1000 + int(f[1:])) if s in samples[:4] else None for s, f in cells],
    })
    mixed = features[1]  # its gene is the smallest of its rows' (NULL in some)
    frame = frame.with_columns(
        pl.when((pl.col("feature_id") == mixed) & (pl.col("sample_id") == samples[0])).then(3)
        .when((pl.col("feature_id") == mixed) & (pl.col("sample_id") == samples[1])).then(None)
        .otherwise(pl.col("gene_id")).alias("gene_id"),
        pl.when(pl.int_range(pl.len()) % 17 == 5).then(None).otherwise(pl.col("count")).alias("count"))
    strays = pl.DataFrame({"sample_id": [None, samples[0]], "feature_id": [features[0], None], "gene_id": [1, 1],
                           "count": [1.0, 1.0], "length": [None, None]}, schema=frame.schema)
    return pl.concat([frame, strays])


def _reference(long: pl.DataFrame) -> tuple[list[str], list[int | None], list[str], np.ndarray, np.ndarray]:
    """The group-by identifiers and the scatter of the code this replaced."""
    long = long.filter(pl.col("feature_id").is_not_null(), pl.col("sample_id").is_not_null())
    features = (long.group_by("feature_id").agg(pl.col("gene_id").min())
                .sort("gene_id", "feature_id", nulls_last=True))
    samples = sorted(set(long["sample_id"]))
    row = {f: i for i, f in enumerate(features["feature_id"])}
    col = {s: j for j, s in enumerate(samples)}
    values = np.full((len(row), len(col)), np.nan)
    lengths = np.full((len(row), len(col)), np.nan)
    for s, f, count, length in long.select("sample_id", "feature_id", "count", "length").iter_rows():
        values[row[f], col[s]] = np.nan if count is None else count
        lengths[row[f], col[s]] = np.nan if length is None else length
    return features["feature_id"].to_list(), features["gene_id"].to_list(), samples, values, lengths


ORDERS = {
    "shuffled": lambda t: t.sample(fraction=1.0, shuffle=True, seed=3),
    "gene_by_gene": lambda t: t.sort("feature_id", "sample_id"),  # rows grow after the first batch
    "sample_by_sample": lambda t: t.sort("sample_id", "feature_id"),  # columns grow; lengths come late
    "reversed": lambda t: t.sort("sample_id", "feature_id", descending=True),
}


@pytest.mark.parametrize("batch_rows", [97, 10_000])
@pytest.mark.parametrize("order", list(ORDERS))
@pytest.mark.parametrize("memory", ["in_memory", "mapped", "mapped_midway"])
def test_dense_block_equals_the_group_by_identifiers_and_scatter(order: str, batch_rows: int, memory: str,
                                                                  tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    long = ORDERS[order](_long_table())
    features, genes, samples, values, lengths = _reference(long)
    monkeypatch.setattr(study, "BATCH_ROWS", batch_rows)
    # mapped_midway: the first batches fit in memory, the grown block does not (copied into the map)
    limit = {"in_memory": study.IN_MEMORY_BYTES, "mapped": 0, "mapped_midway": 8 * 1300}[memory]
    block = study.dense_block(long.lazy(), value="count", workdir=tmp_path, in_memory_bytes=limit)
    assert block.feature_ids.to_list() == features
    assert block.gene_ids.to_list() == genes
    assert block.sample_ids.to_list() == samples
    assert block.values.flags.f_contiguous
    assert block.values.shape == (60, 25)
    assert isinstance(block.values, np.memmap) == (memory != "in_memory")
    np.testing.assert_array_equal(np.asarray(block.values), values)
    assert block.lengths is not None
    np.testing.assert_array_equal(np.asarray(block.lengths), lengths)


def test_dense_block_without_rows_or_lengths() -> None:
    empty = pl.LazyFrame(schema={"sample_id": pl.String, "feature_id": pl.String, "gene_id": pl.Int64,
                                 "count": pl.Float64, "length": pl.Float64})
    block = study.dense_block(empty, value="count")
    assert block.values.shape == (0, 0)
    assert block.feature_ids.dtype == pl.String
    assert block.gene_ids.dtype == pl.Int64
    long = _long_table().with_columns(pl.lit(None, pl.Float64).alias("length"))
    assert study.dense_block(long.lazy(), value="count").lengths is None


def test_two_mapped_blocks_in_one_workdir_keep_their_own_values(tmp_path: Path) -> None:
    # signature scoring reads log2_value and zscore of the same rows into two blocks in one workdir: each its own file
    long = _long_table().with_columns((pl.col("count") * -1).alias("negated"))
    first = study.dense_block(long.lazy(), value="count", workdir=tmp_path, in_memory_bytes=0)
    second = study.dense_block(long.lazy(), value="negated", workdir=tmp_path, in_memory_bytes=0)
    expected = _reference(long)[3]
    np.testing.assert_array_equal(np.asarray(first.values), expected)
    np.testing.assert_array_equal(np.asarray(second.values), -expected)


def test_distinct_rows_are_the_unique_rows_of_partitioned_files(tmp_path: Path) -> None:
    # assay is a partition column (in the paths, not the files); "empty" has a file without rows, and the rows of
    # "only_abundance" are all left out by a filter on a column in the files: neither is listed
    rows = pl.DataFrame({
        "assay": ["b", "a", "b", "c", "only_abundance", "a", "d"],
        "source": ["counts", "counts", "abundance", "counts", "abundance", "counts", "counts"],
        "measure": ["tpm", None, "tpm", "fpkm", "tpm", None, "tpm"],
        "value": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]})
    for (assay,), part in rows.group_by("assay"):
        folder = tmp_path / f"assay={assay}"
        folder.mkdir()
        part.drop("assay").write_parquet(folder / "part-0.parquet")
    (tmp_path / "assay=empty").mkdir()
    rows.drop("assay").head(0).write_parquet(tmp_path / "assay=empty" / "part-0.parquet")
    frame = pl.scan_parquet(tmp_path / "**" / "*.parquet", hive_partitioning=True)
    for query, columns in [(frame, ("assay",)), (frame.filter(pl.col("source") == "counts"), ("assay",)),
                           (frame, ("assay", "measure")), (frame.filter(pl.col("value") > 2), ("measure", "assay"))]:
        expected = sorted(query.select(*columns).unique().collect().iter_rows(), key=str)
        assert sorted(study.distinct_rows(query, *columns), key=str) == expected
    assert study.distinct_rows(frame.filter(pl.col("source") == "counts"), "assay") == [("a",), ("b",), ("c",), ("d",)]
    assert study.distinct_rows(frame.filter(pl.col("value") > 99), "assay") == []


@pytest.mark.parametrize("memory", ["in_memory", "mapped"])
def test_dense_block_of_a_table_stored_sample_by_sample(memory: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # every feature in the first batch, none new in the second: the first batch's lines move to the narrower stride
    rng = np.random.default_rng(11)
    long = pl.DataFrame({"sample_id": [f"S{j:02d}" for j in rng.permutation(25) for _ in range(60)],
                         "feature_id": [f"F{i:03d}" for _ in range(25) for i in rng.permutation(60)],
                         "gene_id": pl.Series([None] * 1500, dtype=pl.Int64),
                         "count": rng.poisson(30, 1500).astype(float), "length": [None] * 1500},
                        schema_overrides={"length": pl.Float64})
    features, _, samples, values, _ = _reference(long)
    monkeypatch.setattr(study, "BATCH_ROWS", 130)
    block = study.dense_block(long.lazy(), value="count", workdir=tmp_path,
                              in_memory_bytes=0 if memory == "mapped" else study.IN_MEMORY_BYTES)
    assert block.feature_ids.to_list() == features
    assert block.sample_ids.to_list() == samples
    np.testing.assert_array_equal(np.asarray(block.values), values)
