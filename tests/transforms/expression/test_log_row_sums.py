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
