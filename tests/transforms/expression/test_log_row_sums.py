"""The per-gene log sums of DESeq2's geometric means, logged a chunk of rows at a time, are the same bits as the sums
over a log of a copy of the whole block (what the code did before, written out here)."""

from __future__ import annotations

import numpy as np
import pytest

from transforms.expression import normalise


def _whole_copy(block: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(np.array(block, dtype=np.float64)).sum(axis=1)


@pytest.mark.parametrize("layout", ["F", "C"])
@pytest.mark.parametrize("kind", ["counts", "fractional", "zeros"])
def test_log_row_sums_by_chunks_of_rows_equal_the_whole_block_bit_for_bit(layout: str, kind: str,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    values = {"counts": rng.negative_binomial(2, 0.02, (1003, 257)).astype(float),
              "fractional": rng.gamma(0.8, 60.0, (1003, 257)),
              "zeros": rng.poisson(0.7, (1003, 257)).astype(float)}[kind]  # -inf rows
    block = np.asarray(values, order=layout)
    expected = _whole_copy(block)
    for cells in (normalise._ROW_CHUNK_CELLS, 257 * 40, 257 * 2, 1):  # one chunk; 25; 2-row chunks; as many as can be
        monkeypatch.setattr(normalise, "_ROW_CHUNK_CELLS", cells)
        found = normalise._log_row_sums(block, normalise._log_table_for(block))
        assert found.tobytes() == expected.tobytes(), cells
    np.testing.assert_array_equal(normalise._log_row_sums(block[:, :0]), np.zeros(1003))


@pytest.mark.parametrize("layout", ["F", "C"])
def test_column_and_row_sums_by_chunks_equal_the_whole_block_bit_for_bit(layout: str) -> None:
    from transforms.expression import study

    block = np.asarray(np.random.default_rng(5).gamma(0.8, 60.0, (1001, 203)), order=layout)
    for cells in (1 << 20, 1001 * 7, 1):  # one chunk; ~29; two columns (rows) each
        assert study._column_sums(block, np.sqrt, cells=cells).tobytes() == np.sqrt(block).sum(axis=0).tobytes()
    means = block.mean(axis=1)
    expected = np.square(block - means[:, None]).sum(axis=1)
    found = normalise.row_sums_by_chunks(block, lambda rows, at: np.square(rows - means[at, None]))
    assert found.tobytes() == expected.tobytes()


@pytest.mark.parametrize("missing", [False, True])
def test_fit_counts_moments_are_those_of_the_log2_cpm_of_the_kept_columns_as_copied_before(missing: bool) -> None:
    # the z-score reference moments: log2 CPM of part[:, keep] (a copy: Fortran-order from a Fortran-order part,
    # which fit_counts now uses as it is, but not from the C-order part a block with a missing cell gives)
    import polars as pl

    from transforms.expression import study

    values = np.asfortranarray(np.random.default_rng(8).negative_binomial(3, 0.05, (800, 60)).astype(float))
    if missing:
        values[17, 4] = np.nan
    ids = [pl.Series([f"{p}{i}" for i in range(n)]) for p, n in (("F", 800), ("S", 60))]
    block = study.DenseBlock(values, ids[0], pl.Series([None] * 800, dtype=pl.Int64), ids[1])
    model = study.fit_counts(block)
    rows = np.flatnonzero(~np.isnan(values).any(axis=1))
    part = values if not missing else values[rows]  # as fit_counts takes the used rows: a C-order copy
    keep = np.ones(60, dtype=bool)
    log2 = normalise.log2_cpm(part[:, keep], library_size=model.library_size, norm_factors=model.tmm_factor,
                              mean_library_size=model.mean_library_size)
    expected = normalise.row_moments([log2])
    assert model.moments.mean.tobytes() == expected.mean.tobytes()
    assert model.moments.sd.tobytes() == expected.sd.tobytes()
