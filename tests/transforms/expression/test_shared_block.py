"""shared_dense_block: sample QC keeps its count block for the normalise stage of the same process, which takes it
instead of reading rna_counts again; the block is only ever handed out for the key it was read under, once, kept
read-only, and never when it is large or memory-mapped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from transforms.expression import study


@pytest.fixture(autouse=True)
def _nothing_kept() -> Iterator[None]:
    study.drop_shared_blocks()
    yield
    study.drop_shared_blocks()


def _counts(seed: int) -> pl.LazyFrame:
    rng = np.random.default_rng(seed)
    frame = pl.DataFrame({"sample_id": [f"S{j}" for j in range(6) for _ in range(40)],
                          "feature_id": [f"F{i:02d}" for _ in range(6) for i in range(40)],
                          "gene_id": pl.Series([None] * 240, dtype=pl.Int64),
                          "count": rng.poisson(20, 240).astype(float)})
    return frame.sample(fraction=1.0, shuffle=True, seed=seed).lazy()


def _expected(records: pl.LazyFrame) -> np.ndarray:
    """The block written out: features x samples by id, from the rows."""
    wide = records.collect().pivot(on="sample_id", index="feature_id", values="count").sort("feature_id")
    return wide.select(sorted(c for c in wide.columns if c != "feature_id")).to_numpy()


class _Counting:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        read = study.dense_block

        def counted(*args: object, **kwargs: object) -> study.DenseBlock:
            self.calls += 1
            return read(*args, **kwargs)  # type: ignore[arg-type]
        monkeypatch.setattr(study, "dense_block", counted)


def test_the_kept_block_is_taken_once_for_its_key_and_read_again_for_another(monkeypatch: pytest.MonkeyPatch) -> None:
    reads = _Counting(monkeypatch)
    first, other = _counts(1), _counts(2)
    kept = study.shared_dense_block(first, value="count", key=("rna_counts", "3", "s", "a"), keep=True)
    np.testing.assert_array_equal(kept.values, _expected(first))
    assert not kept.values.flags.writeable  # neither stage may change what the other sees
    with pytest.raises(ValueError, match="read-only"):
        kept.values[0, 0] = 1.0
    # another key (a newer version of the table): read from its own rows, and the kept block is dropped
    newer = study.shared_dense_block(other, value="count", key=("rna_counts", "4", "s", "a"), keep=False)
    np.testing.assert_array_equal(newer.values, _expected(other))
    assert reads.calls == 2
    again = study.shared_dense_block(first, value="count", key=("rna_counts", "3", "s", "a"), keep=False)
    assert reads.calls == 3
    assert again is not kept
    # kept, then taken by the same key without a read; taken once only
    kept = study.shared_dense_block(first, value="count", key=("rna_counts", "3", "s", "a"), keep=True)
    taken = study.shared_dense_block(first, value="count", key=("rna_counts", "3", "s", "a"), keep=False)
    assert reads.calls == 4
    assert taken is kept
    np.testing.assert_array_equal(taken.values, _expected(first))
    study.shared_dense_block(first, value="count", key=("rna_counts", "3", "s", "a"), keep=False)
    assert reads.calls == 5
    # no key: always read, nothing kept
    study.shared_dense_block(first, value="count", key=None, keep=True)
    study.shared_dense_block(first, value="count", key=None, keep=True)
    assert reads.calls == 7
    assert not study._shared


def test_large_or_mapped_blocks_are_not_kept(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    reads = _Counting(monkeypatch)
    monkeypatch.setattr(study, "SHARED_BLOCK_BYTES", 40 * 6 * 8 - 1)  # one cell short of the block
    block = study.shared_dense_block(_counts(1), value="count", key=("k",), keep=True)
    assert not study._shared
    assert block.values.flags.writeable
    monkeypatch.setattr(study, "SHARED_BLOCK_BYTES", 40 * 6 * 8)
    study.shared_dense_block(_counts(1), value="count", key=("k",), keep=True)
    assert list(study._shared) == [("k",)]
    study.drop_shared_blocks()
    read = study.dense_block  # a memory map lives in the stage's workdir: never kept
    monkeypatch.setattr(study, "dense_block", lambda *a, **k: read(*a, **k, in_memory_bytes=0))
    mapped = study.shared_dense_block(_counts(1), value="count", key=("k",), keep=True, workdir=tmp_path)
    assert isinstance(mapped.values, np.memmap)
    assert not study._shared
    assert reads.calls == 3


def _study_counts() -> pl.DataFrame:
    """Two count assays of 300 features x 8 samples: mapped and unmapped features (one gene for two features), a
    feature with a missing cell, a sample without counts; rows shuffled."""
    rng = np.random.default_rng(7)
    parts = []
    for assay in ("a", "b"):
        mean = rng.lognormal(4, 1.5, 300)
        counts = rng.negative_binomial(5, 5 / (5 + mean[:, None] * np.ones(8))).astype(float)
        counts[:, 5] = 0  # a sample without counts
        frame = pl.DataFrame({"assay": assay,
                              "sample_id": [f"S{j}" for _ in range(300) for j in (3, 0, 7, 1, 6, 2, 5, 4)],
                              "feature_id": [f"F{i:03d}" for i in range(300) for _ in range(8)],
                              "gene_id": pl.Series([None if i % 3 == 0 else 1000 - i // 2 for i in range(300)
                                                    for _ in range(8)], dtype=pl.Int64),
                              "count": counts[:, [3, 0, 7, 1, 6, 2, 5, 4]].ravel()})
        parts.append(frame.filter((pl.col("feature_id") != "F010") | (pl.col("sample_id") != "S2")))  # missing cell
    return pl.concat(parts).sample(fraction=1.0, shuffle=True, seed=3)


def test_normalise_keeps_the_vst_block_its_rows_read_back_would_give(tmp_path: Path) -> None:
    counts = _study_counts()
    output = study.normalise_study(counts.lazy(), pl.LazyFrame(schema={"assay": pl.String, "measure": pl.String}),
                                   pl.DataFrame(), zscore_reference=None, workdir=tmp_path, keep_vst=True)
    vst = pl.concat([frame.with_columns(pl.col("sample_id", "feature_id").cast(pl.String))
                     for table, frame in output.frames if table == "rna_vst"])
    assert list(output.blocks) == ["a"]  # one block per process: the first count assay's
    kept = output.blocks["a"]
    expected = study.dense_block(vst.filter(pl.col("assay") == "a").lazy(), value="vst")
    assert kept.values.shape == (299, 7)  # F010 (missing cell) and S5 (no counts) are not in rna_vst
    assert kept.values.flags.f_contiguous == expected.values.flags.f_contiguous
    np.testing.assert_array_equal(kept.values.view(np.int64), expected.values.view(np.int64))  # bit for bit
    for ids in ("feature_ids", "gene_ids", "sample_ids"):
        assert getattr(kept, ids).equals(getattr(expected, ids), check_names=True), ids
    assert kept.lengths is None
    assert expected.lengths is None
    assert study.keep_shared_block(("rna_vst", "7", "s", "a"), kept)
    assert study.shared_dense_block(vst.lazy(), value="vst", key=("rna_vst", "7", "s", "a"), keep=False) is kept
    assert not kept.values.flags.writeable
