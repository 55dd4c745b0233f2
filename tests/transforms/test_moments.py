"""Group z-scores against numpy, with the SD-0, single-value and NaN cases the protein layer meets."""

import numpy as np
import polars as pl

from transforms.moments import group_zscores


def test_group_zscores_by_numpy_and_null_without_a_positive_sd():
    rows = pl.DataFrame({"gene": ["a", "b", "a", "c", "b", "a", "c", "d"],
                         "value": [1.0, 2.0, 4.0, 5.0, float("nan"), 10.0, 5.0, 3.0]})
    got = group_zscores(rows, key="gene").to_list()
    a = np.array([1.0, 4.0, 10.0])
    expected_a = (a - a.mean()) / a.std(ddof=1)
    np.testing.assert_allclose([got[0], got[2], got[5]], expected_a, rtol=1e-15)
    assert [got[1], got[4]] == [None, None]  # b holds a NaN: no SD
    assert [got[3], got[6], got[7]] == [None, None, None]  # c's SD is 0, d has one value
