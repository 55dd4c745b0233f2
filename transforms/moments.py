"""Per-group count, mean and variance that two runs compute bit for bit, whatever order the rows arrive in.

polars' group-by and window aggregations sum a group's floats in the order its rows arrive, and that order varies
between runs (multithreaded scans and sinks, joins that keep no row order): two builds of the same inputs then
stored values 1 ulp apart. Here every group's values are put in ascending order and summed by numpy, with the
operations of ``np.mean`` and ``np.var(ddof=1)`` on the sorted values.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import polars as pl


def group_moments(rows: pl.DataFrame, *, key: str, value: str = "value", standardised: bool = False
                  ) -> pl.DataFrame:
    """One row per ``key`` with a non-NULL ``value``: ``n``, ``mean``, ``var`` and ``sd`` (ddof=1; NULL below 2
    values), sorted by ``key``; with ``standardised`` also ``z_mean``, the mean of the group's values z-scored with
    that mean and SD (NULL unless the SD is positive), summed in the same ascending order. A NaN value makes its
    group's statistics NaN, as in numpy and polars.
    """
    rows = rows.select(key, value).drop_nulls(value)
    order, starts, bounds, mean, var, sd, z_mean = _moments(rows, key=key, value=value, standardised=standardised)
    frame = pl.DataFrame({key: rows[key].gather(order.gather(starts)), "n": np.diff(bounds), "mean": mean,
                          "var": var, "sd": sd, **({"z_mean": z_mean} if standardised else {})})
    two = pl.col("n") > 1  # NaN below 2 values is NULL (NaN from NaN values stays)
    return frame.with_columns(pl.when(two).then(pl.col("var", "sd")).name.keep(),
                              *([pl.when(two & (pl.col("sd") > 0)).then("z_mean").alias("z_mean")]
                                if standardised else [])).sort(key)


def group_zscores(rows: pl.DataFrame, *, key: str, value: str = "value") -> pl.Series:
    """Each row's ``(value - mean) / sd`` with its group's :func:`group_moments` mean and SD (the same bits), NULL
    unless the SD is positive (also for a group of one value or holding a NaN); ``rows`` without NULL values. No
    join back to the groups: each row's statistics are put in place through the grouping's own order.
    """
    if rows[value].has_nulls():
        raise ValueError(f"group_zscores needs {value!r} without NULL values")
    order, _, bounds, mean, _, sd, _ = _moments(rows, key=key, value=value, standardised=False)
    places = order.to_numpy()
    row_mean, row_sd = np.empty(rows.height), np.empty(rows.height)
    row_mean[places] = np.repeat(mean, np.diff(bounds))
    row_sd[places] = np.repeat(sd, np.diff(bounds))
    with np.errstate(invalid="ignore", divide="ignore"):
        zscore = (rows[value].to_numpy() - row_mean) / row_sd
    return pl.select(pl.when(pl.Series(row_sd > 0)).then(pl.Series(zscore))).to_series().alias(value)


def _moments(rows: pl.DataFrame, *, key: str, value: str, standardised: bool
             ) -> tuple[pl.Series, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The rows' grouping (``order`` puts them in groups, group ``i`` is ``bounds[i]:bounds[i + 1]`` of that order,
    ``starts`` its first rows) and each group's mean, var, SD and z-score mean (NaN where undefined).
    """
    # text keys grouped by a categorical code (half the CPU of sorting the strings); any code order will do,
    # since only each group's values need their ascending order
    group = rows[key].cast(pl.Categorical).to_physical() if rows[key].dtype == pl.String else rows[key]
    # rows grouped by one integer sort, then each group's values sorted by numpy (a sort by group and value in
    # polars took 5x the time of the integer arg-sort)
    order = (group.arg_sort() if group.has_nulls() else
             pl.Series(np.argsort(group.to_numpy(), kind="stable"), dtype=pl.UInt32))  # numpy's: half the CPU
    groups = group.gather(order)
    values = np.ascontiguousarray(rows[value].gather(order).to_numpy(), dtype=np.float64)
    starts = np.flatnonzero(groups.ne_missing(groups.shift(1)).to_numpy())
    bounds = np.append(starts, len(values))
    mean = np.empty(len(starts))
    var, sd, z_mean = (np.full(len(starts), np.nan) for _ in range(3))
    for i, (start, end) in enumerate(pairwise(bounds)):
        part = np.sort(values[start:end])
        mean[i] = np.add.reduce(part) / len(part)
        if len(part) > 1:
            deviation = part - mean[i]
            var[i] = np.add.reduce(deviation * deviation) / (len(part) - 1)
            sd[i] = np.sqrt(var[i])
            if standardised and sd[i] > 0:
                z_mean[i] = np.add.reduce(deviation / sd[i]) / len(part)
    return order, starts, bounds, mean, var, sd, z_mean
