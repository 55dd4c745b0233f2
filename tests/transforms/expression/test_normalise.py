"""Normalisation against edgeR 3.40.2 / DESeq2 1.38.3 figures in tests/data/r_reference (see its README)."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy.stats import rankdata

from transforms.expression import normalise

Dataset = tuple[list[str], list[str], np.ndarray]  # gene ids, sample ids, counts (genes x samples, float)


@pytest.fixture(params=["sort", "partition"])
def selection(request, monkeypatch) -> str:
    """Both ways of finding order statistics (numpy's sort where it is AVX-512's, partitions elsewhere) must give
    the same factors, whatever this machine picks."""
    monkeypatch.setattr(normalise, "_SORT_SELECTS", request.param == "sort")
    return request.param


@pytest.fixture(params=["kernel", "numpy"])
def tmm_path(request, monkeypatch) -> str:
    """The compiled kernels of TMM and of the size factors (blocks of at least _TMM_KERNEL_MIN_VALUES counts; size
    factors alone from _SIZE_FACTOR_KERNEL_MIN_VALUES) and the numpy path for smaller blocks must both give edgeR's
    and DESeq2's factors."""
    limit = 0 if request.param == "kernel" else 1 << 62
    monkeypatch.setattr(normalise, "_TMM_KERNEL_MIN_VALUES", limit)
    monkeypatch.setattr(normalise, "_SIZE_FACTOR_KERNEL_MIN_VALUES", limit)
    return request.param


@pytest.fixture(scope="module")
def pasilla(pasilla_counts: pl.DataFrame) -> Dataset:
    samples = pasilla_counts.columns[1:]
    return pasilla_counts["gene_id"].to_list(), samples, pasilla_counts.select(samples).to_numpy().astype(np.float64)


@pytest.fixture(scope="module")
def airway(airway_counts: pl.DataFrame) -> Dataset:
    samples = airway_counts.columns[2:]  # after Geneid, Length
    return airway_counts["Geneid"].to_list(), samples, airway_counts.select(samples).to_numpy().astype(np.float64)


@pytest.fixture(scope="module")
def geuvadis(shared_data: Path) -> Dataset:
    files = sorted((shared_data / "rnaseq_geuvadis_rsem").glob("*.genes.results.gz"))
    frames = [pl.read_csv(f, separator="\t") for f in files]
    counts = np.column_stack([f["expected_count"].to_numpy() for f in frames]).astype(np.float64)
    return frames[0]["gene_id"].to_list(), [f.name.split(".")[0] for f in files], counts


def _r_wide(long: pl.DataFrame, value: str, genes: list[str], samples: list[str]) -> np.ndarray:
    """An R long table (feature_id, sample_id, value) as a genes x samples block in our row order."""
    wide = long.pivot(on="sample_id", index="feature_id", values=value)
    assert wide.height == len(genes)
    order = pl.DataFrame({"feature_id": genes})
    return order.join(wide, on="feature_id", how="left", maintain_order="left").select(samples).to_numpy()


def _blocks(counts: np.ndarray) -> list[np.ndarray]:
    return np.array_split(counts, 3, axis=1)


@pytest.mark.parametrize("dataset", ["pasilla", "airway", "geuvadis"])
def test_library_sizes_tmm_factors_size_factors_match_r(
    request, r_table, dataset: str, selection: str, tmm_path: str
) -> None:
    _genes, samples, counts = request.getfixturevalue(dataset)
    # made by make_reference.R: colSums, calcNormFactors(method="TMM"), estimateSizeFactors (round() for geuvadis)
    ref = r_table(f"{dataset}_sample_factors.tsv")
    assert ref["sample_id"].to_list() == samples
    np.testing.assert_allclose(normalise.library_sizes(counts), ref["library_size"].to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(normalise.tmm_factors(counts), ref["tmm_factor"].to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(normalise.size_factors(np.round(counts)), ref["size_factor"].to_numpy(), rtol=1e-6)


@pytest.mark.parametrize("dataset", ["pasilla", "airway"])
def test_log2_cpm_matches_edger(request, r_table, dataset: str) -> None:
    genes, samples, counts = request.getfixturevalue(dataset)
    expected = _r_wide(r_table(f"{dataset}_log2cpm.tsv"), "log2_cpm", genes, samples)
    lib = normalise.library_sizes(counts)
    got = normalise.log2_cpm(counts, library_size=lib, norm_factors=normalise.tmm_factors(counts))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_vst_matches_deseq2(pasilla: Dataset, r_table) -> None:
    genes, samples, counts = pasilla
    sf = normalise.size_factors(counts)
    # measured: max |ours - R| = 4.4e-15 for vst (1000-gene trend), 2.2e-10 for the all-gene trend
    expected = _r_wide(r_table("pasilla_vst.tsv"), "vst", genes, samples)
    np.testing.assert_allclose(normalise.vst(counts, size_factors=sf), expected, rtol=0, atol=1e-9)
    expected_full = _r_wide(r_table("pasilla_vst.tsv"), "vst_full", genes, samples)
    np.testing.assert_allclose(normalise.vst(counts, size_factors=sf, nsub=None), expected_full, rtol=0, atol=1e-8)


def test_size_factors_blockwise_equal_whole(pasilla: Dataset, tmm_path: str) -> None:
    _genes, _samples, counts = pasilla
    log_geomeans = normalise.fit_log_geomeans(_blocks(counts))
    blockwise = np.concatenate([normalise.size_factors_from_reference(b, log_geomeans) for b in _blocks(counts)])
    np.testing.assert_allclose(blockwise, normalise.size_factors(counts), rtol=1e-12)


def test_tmm_factors_against_blockwise_equal_whole(pasilla: Dataset) -> None:
    _genes, _samples, counts = pasilla
    blocks = _blocks(counts)
    lib = [normalise.library_sizes(b) for b in blocks]
    expressed = np.logical_or.reduce([(b > 0).any(axis=1) for b in blocks])
    f75 = np.concatenate(
        [normalise.upper_quartiles(b, library_size=s, expressed=expressed) for b, s in zip(blocks, lib, strict=True)]
    )
    sqrt_sums = np.concatenate([np.sqrt(b).sum(axis=0) for b in blocks])
    ref = normalise.tmm_reference(f75, sqrt_sums=sqrt_sums)
    all_lib = np.concatenate(lib)
    raw = np.concatenate(
        [
            normalise.tmm_factors_against(b, counts[:, ref], library_size=s, reference_library_size=all_lib[ref])
            for b, s in zip(blocks, lib, strict=True)
        ]
    )
    np.testing.assert_allclose(normalise.geometric_mean_scaled(raw), normalise.tmm_factors(counts), rtol=1e-12)


def _tmm_pair(
    obs: np.ndarray, ref: np.ndarray, n_obs: float, n_ref: float, trim: float, sum_trim: float, a_cutoff: float = -1e10
) -> float:
    """edgeR's .calcFactorTMM written per sample with scipy's average ranks (an independent re-derivation)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        log_r = np.log2((obs / n_obs) / (ref / n_ref))
        abs_e = (np.log2(obs / n_obs) + np.log2(ref / n_ref)) / 2
        v = (n_obs - obs) / n_obs / obs + (n_ref - ref) / n_ref / ref
    fin = np.isfinite(log_r) & np.isfinite(abs_e) & (abs_e > a_cutoff)
    log_r, abs_e, v = log_r[fin], abs_e[fin], v[fin]
    if log_r.size == 0 or np.max(np.abs(log_r)) < 1e-6:  # R: max() of nothing is -Inf
        return 1.0
    n = len(log_r)
    lo_l, lo_s = np.floor(n * trim) + 1, np.floor(n * sum_trim) + 1
    rl, ra = rankdata(log_r), rankdata(abs_e)
    keep = (rl >= lo_l) & (rl <= n + 1 - lo_l) & (ra >= lo_s) & (ra <= n + 1 - lo_s)
    if not keep.any():  # R: f is NaN, then 0
        return 1.0
    return float(2 ** (np.sum(log_r[keep] / v[keep]) / np.sum(1 / v[keep])))


@pytest.mark.parametrize(("trim", "sum_trim"), [(0.3, 0.05), (0.25, 0.1), (0.4, 0.0)])
def test_tmm_factors_against_ties_equal_rank_loop(trim: float, sum_trim: float, tmm_path: str) -> None:
    # Small counts give many tied M and A values: the trim bounds fall inside tie groups.
    rng = np.random.default_rng(7)
    counts = rng.poisson(rng.gamma(0.8, 3.0, size=(400, 1)), size=(400, 12)).astype(np.float64)
    lib = counts.sum(axis=0)
    expected = [_tmm_pair(counts[:, j], counts[:, 3], lib[j], lib[3], trim, sum_trim) for j in range(12)]
    got = normalise.tmm_factors_against(
        counts, counts[:, 3], library_size=lib, reference_library_size=lib[3], logratio_trim=trim, sum_trim=sum_trim
    )
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_tmm_factors_against_a_cutoff_equal_rank_loop(tmm_path: str) -> None:
    # A cutoff inside the range of A drops the least expressed genes of each sample before both trims.
    rng = np.random.default_rng(11)
    counts = rng.poisson(rng.gamma(0.8, 3.0, size=(400, 1)), size=(400, 6)).astype(np.float64)
    lib = counts.sum(axis=0)
    with np.errstate(divide="ignore"):
        a = (np.log2(counts / lib) + np.log2(counts[:, [0]] / lib[0])) / 2
    cutoff = -9.0
    assert ((a > -np.inf) & (a <= cutoff)).any()
    assert (a > cutoff).any()
    expected = [_tmm_pair(counts[:, j], counts[:, 0], lib[j], lib[0], 0.3, 0.05, cutoff) for j in range(6)]
    got = normalise.tmm_factors_against(counts, counts[:, 0], library_size=lib, reference_library_size=lib[0],
                                        a_cutoff=cutoff)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_tmm_factors_against_unweighted_equal_rank_loop(tmm_path: str) -> None:
    # do_weighting=False: the plain mean of the kept M values (edgeR doWeighting=FALSE)
    rng = np.random.default_rng(5)
    counts = rng.poisson(rng.gamma(0.8, 3.0, size=(300, 1)), size=(300, 5)).astype(np.float64)
    lib = counts.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        m = np.log2((counts / lib) / (counts[:, [2]] / lib[2]))
    expected = []
    for j in range(5):
        log_r = m[np.isfinite(m[:, j]), j]
        n = log_r.size
        lo = np.floor(n * 0.3) + 1
        ra = rankdata(log_r)
        with np.errstate(divide="ignore", invalid="ignore"):
            abs_e = ((np.log2(counts[:, j] / lib[j]) + np.log2(counts[:, 2] / lib[2])) / 2)[np.isfinite(m[:, j])]
        rs = rankdata(abs_e)
        lo_s = np.floor(n * 0.05) + 1
        keep = (ra >= lo) & (ra <= n + 1 - lo) & (rs >= lo_s) & (rs <= n + 1 - lo_s)
        expected.append(1.0 if j == 2 else 2 ** np.mean(log_r[keep]))
    got = normalise.tmm_factors_against(
        counts, counts[:, 2], library_size=lib, reference_library_size=lib[2], do_weighting=False
    )
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize("genes", [7, 30, 101])
def test_tmm_factors_against_tiny_tied_samples_equal_rank_loop(genes: int, tmm_path: str) -> None:
    # Counts 0-3: a few tie groups per sample, so both trim bounds often fall in one tie group, or exactly at its
    # average rank; many trims and samples.
    rng = np.random.default_rng(genes)
    counts = rng.integers(0, 4, size=(genes, 60)).astype(np.float64)
    counts[:, 0] = rng.integers(1, 4, size=genes)
    lib = counts.sum(axis=0)
    for trim, sum_trim in [(0.3, 0.05), (0.4, 0.0), (0.25, 0.1), (0.45, 0.45), (0.1, 0.3)]:
        expected = [_tmm_pair(counts[:, j], counts[:, 0], lib[j], lib[0], trim, sum_trim) for j in range(60)]
        got = normalise.tmm_factors_against(counts, counts[:, 0], library_size=lib, reference_library_size=lib[0],
                                            logratio_trim=trim, sum_trim=sum_trim)
        np.testing.assert_allclose(got, expected, rtol=1e-12, err_msg=f"trims {trim}, {sum_trim}")


def test_tmm_factors_against_study_sized_samples_equal_rank_loop(tmm_path: str) -> None:
    # 20,000 genes of negative-binomial counts (means spread over five orders, a tenth of them below 1, so M and A
    # have large tie groups at both trims) against a reference that misses some genes.
    rng = np.random.default_rng(3)
    mean = np.exp(rng.uniform(-3.0, 9.0, size=(20_000, 1)))
    counts = rng.negative_binomial(5, 5 / (5 + mean), size=(20_000, 8)).astype(np.float64)
    lib = counts.sum(axis=0)
    assert (counts[:, 5] == 0).mean() > 0.05
    expected = [_tmm_pair(counts[:, j], counts[:, 5], lib[j], lib[5], 0.3, 0.05) for j in range(8)]
    got = normalise.tmm_factors_against(counts, counts[:, 5], library_size=lib, reference_library_size=lib[5])
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_tmm_factors_against_sample_at_or_below_reference_everywhere(tmm_path: str) -> None:
    # Every M <= 0 (the largest is 0): edgeR's "all |M| < 1e-6, factor 1" test must look at the smallest kept M
    # too. A third of the genes at M = 0, -1 and -2 (counts moved onto genes the reference lacks, so both libraries
    # are 3,000): the 30 % trim keeps the middle third, M = -1, factor 1/2.
    ref = np.concatenate([np.full(300, 10.0), np.zeros(10)])
    sample = np.concatenate([np.full(100, 10.0), np.full(100, 5.0), np.full(100, 2.5), np.full(10, 125.0)])
    counts = np.column_stack([sample, ref])
    lib = counts.sum(axis=0)
    assert lib[0] == lib[1]
    expected = _tmm_pair(sample, ref, lib[0], lib[1], 0.3, 0.05)
    assert expected == 0.5
    got = normalise.tmm_factors_against(counts, ref, library_size=lib, reference_library_size=lib[1])
    np.testing.assert_allclose(got, [expected, 1.0], rtol=1e-12)


def test_tmm_without_a_kernel_cache_takes_the_numpy_path(monkeypatch) -> None:
    # A read-only install where numba has nowhere to cache: each process would compile the kernel (~15 CPU s)
    from transforms.expression import _tmm_kernel

    def compiled(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the kernel was called without a cache")

    monkeypatch.setattr(normalise, "_TMM_KERNEL_MIN_VALUES", 0)
    monkeypatch.setattr(_tmm_kernel, "CACHED", False)
    monkeypatch.setattr(_tmm_kernel, "tmm_columns", compiled)
    ref = np.concatenate([np.full(300, 10.0), np.zeros(10)])
    sample = np.concatenate([np.full(100, 10.0), np.full(100, 5.0), np.full(100, 2.5), np.full(10, 125.0)])
    counts = np.column_stack([sample, ref])
    lib = counts.sum(axis=0)
    got = normalise.tmm_factors_against(counts, ref, library_size=lib, reference_library_size=lib[1])
    np.testing.assert_allclose(got, [0.5, 1.0], rtol=1e-12)  # as in the test above, by hand


def test_upper_quartiles_drop_all_zero_rows(selection: str) -> None:
    counts = np.array([[0, 0], [1, 4], [2, 0], [3, 8], [4, 2], [0, 0]], dtype=np.float64)
    # R: quantile(c(1,2,3,4), 0.75) = 3.25 and quantile(c(4,0,8,2), 0.75) = 5, over library sizes 10 and 14
    got = normalise.upper_quartiles(counts, library_size=np.array([10.0, 14.0]))
    np.testing.assert_allclose(got, [3.25 / 10, 5 / 14], rtol=1e-15)


def test_log2_cpm_blockwise_equal_whole(pasilla: Dataset) -> None:
    _genes, _samples, counts = pasilla
    lib, tmm = normalise.library_sizes(counts), normalise.tmm_factors(counts)
    whole = normalise.log2_cpm(counts, library_size=lib, norm_factors=tmm)
    cols = np.array_split(np.arange(counts.shape[1]), 3)
    mean_lib = float(np.mean(lib * tmm))
    blockwise = np.hstack(
        [normalise.log2_cpm(counts[:, c], library_size=lib[c], norm_factors=tmm[c], mean_library_size=mean_lib)
         for c in cols]
    )
    np.testing.assert_allclose(blockwise, whole, rtol=0, atol=1e-12)


def test_log2_cpm_hand_calculation() -> None:
    counts = np.array([[0.0, 10.0], [30.0, 90.0]])
    # libs 30 and 100, mean 65: priors 2*30/65 and 2*100/65; log2((y + p) / (lib + 2p) * 1e6)
    p = np.array([60 / 65, 200 / 65])
    expected = np.log2((counts + p) / (np.array([30.0, 100.0]) + 2 * p) * 1e6)
    np.testing.assert_allclose(normalise.log2_cpm(counts, library_size=np.array([30.0, 100.0])), expected, rtol=1e-14)


def test_cpm_hand_calculation() -> None:
    counts = np.array([[1.0, 0.0], [3.0, 5.0]])
    np.testing.assert_allclose(normalise.cpm(counts, library_size=np.array([4.0, 5.0])), [[250000, 0], [750000, 1e6]])


def test_tpm_unknown_length_rows_are_nan() -> None:
    counts = np.array([[10.0, 0.0], [20.0, 6.0], [5.0, 5.0]])
    got = normalise.tpm(counts, lengths=np.array([1000.0, 2000.0, np.nan]))
    # rates per bp: sample 1: 0.01 and 0.01 -> 500,000 each; sample 2: 0 and 0.003 -> 0 and 1e6
    np.testing.assert_allclose(got[:2], [[5e5, 0.0], [5e5, 1e6]])
    assert np.isnan(got[2]).all()


def test_zscore_rows_reference_mask_and_zero_sd() -> None:
    values = np.array([[1.0, 3.0, 5.0, 11.0], [2.0, 2.0, 2.0, 7.0]])
    got = normalise.zscore_rows(values, reference_mask=np.array([True, True, True, False]))
    # row 1: reference mean 3, sd 2 (ddof=1) -> (-1, 0, 1, 4); row 2: reference sd 0 -> NaN
    np.testing.assert_allclose(got[0], [-1.0, 0.0, 1.0, 4.0])
    assert np.isnan(got[1]).all()


def test_zscore_rows_blockwise_moments_equal_whole(pasilla: Dataset) -> None:
    _genes, _samples, counts = pasilla
    values = normalise.log2_cpm(counts, library_size=normalise.library_sizes(counts))
    moments = normalise.row_moments(_blocks(values))
    blockwise = np.hstack([normalise.zscore_rows(b, moments=moments) for b in _blocks(values)])
    np.testing.assert_allclose(blockwise, normalise.zscore_rows(values), rtol=1e-9, atol=1e-12)


def test_vst_transform_blockwise_equal_whole(pasilla: Dataset) -> None:
    _genes, _samples, counts = pasilla
    sf = normalise.size_factors(counts)
    base_mean = np.sum(
        [(b / s).sum(axis=1) for b, s in zip(_blocks(counts), np.array_split(sf, 3), strict=True)], axis=0
    )
    rows = normalise.vst_genes(base_mean / counts.shape[1])
    trend = normalise.fit_vst_trend(np.hstack([b[rows] for b in _blocks(counts)]), size_factors=sf)
    blockwise = np.hstack(
        [
            normalise.vst_transform(b, size_factors=s, trend=trend)
            for b, s in zip(_blocks(counts), np.array_split(sf, 3), strict=True)
        ]
    )
    np.testing.assert_allclose(blockwise, normalise.vst(counts, size_factors=sf), rtol=0, atol=1e-12)


@pytest.mark.parametrize("function", [normalise.tmm_factors, normalise.size_factors, normalise.library_sizes])
def test_factors_reject_nan_and_negative_counts(function) -> None:
    counts = np.array([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(ValueError, match="NaNs are not allowed in the count matrix"):
        function(np.where(counts == 2.0, np.nan, counts))
    with pytest.raises(ValueError, match="should only contain non-negative values"):
        function(-counts)


@pytest.mark.parametrize("function", [normalise.tmm_factors, normalise.size_factors])
def test_factors_reject_all_zero_sample(function) -> None:
    counts = np.array([[1.0, 0.0, 2.0], [3.0, 0.0, 4.0]])
    with pytest.raises(ValueError, match=r"Sample column\(s\) \[1\] have no counts"):
        function(counts)


def test_size_factors_reject_when_every_gene_has_a_zero() -> None:
    counts = np.array([[0.0, 2.0], [3.0, 0.0]])
    with pytest.raises(ValueError, match="every gene contains at least one zero"):
        normalise.size_factors(counts)


@pytest.mark.parametrize("genes", [501, 502])
@pytest.mark.parametrize("scale", [1.0, 0.5, 1e4])
def test_size_factors_equal_numpy_median_of_ratios(genes: int, scale: float, selection: str, tmm_path: str) -> None:
    # Whole counts take their logs from a table, halves (fractional estimates) and counts beyond the table's 4 M
    # are computed; an odd and an even number of genes give the middle value and the mean of the middle two. The
    # kernels give numpy's bits for whole counts and hand the others back to numpy.
    rng = np.random.default_rng(genes)
    counts = rng.poisson(rng.gamma(2.0, 200.0, size=(genes, 1)), size=(genes, 7)).astype(np.float64) * scale
    counts[0, 0] = 0.0  # one gene left out
    counts[1:4] = counts[1]  # tied ratios around the middle
    assert (counts.max() >= 1 << 22) == (scale == 1e4)
    with np.errstate(divide="ignore"):
        logs = np.log(counts)
    log_geomeans = logs.mean(axis=1)
    use = np.isfinite(log_geomeans)
    expected = np.exp(np.median(logs[use] - log_geomeans[use, None], axis=0))
    np.testing.assert_allclose(normalise.size_factors(counts), expected, rtol=1e-14)
    found = normalise.size_factors_from_reference(counts, log_geomeans)
    np.testing.assert_allclose(found, expected, rtol=1e-14)
    if scale == 1.0:  # same logs (the table is numpy's), same sums in the same order: numpy's median, bit for bit
        assert found.tobytes() == np.exp(np.median(logs[use] - log_geomeans[use, None], axis=0)).tobytes()


@pytest.mark.parametrize("layout", ["C", "F"])
def test_size_factor_kernel_log_row_sums_are_numpy_row_sums_bit_for_bit(layout: str) -> None:
    # numpy adds a contiguous row pairwise (eight running sums in blocks of up to 128, longer runs halved at a
    # multiple of 8) and a Fortran-order block column after column; the kernel must give its bits for each chunk of
    # columns, the chunks' sums added in order (what size_factors did with numpy).
    from transforms.expression import _tmm_kernel

    rng = np.random.default_rng(11)
    block = np.asarray(rng.negative_binomial(2, 0.01, (40, 700)).astype(np.float64) + 1, order=layout)
    table = normalise._log_table(1 << 20)
    logs = np.log(block)
    for width in (700, 300, 129, 128, 26, 7, 1):  # runs of 2-4 blocks of 128; one block; fewer than 8
        chunks = [np.array(logs[:, s:s + width]).sum(axis=1) for s in range(0, 700, width)]
        expected = np.sum(chunks, axis=0)
        found = np.empty(40)
        assert _tmm_kernel.log_row_sums(block, width, table, found)
        assert found.tobytes() == expected.tobytes(), width
    block[3, 5] = 2.5  # not a whole count: no table logarithm
    assert not _tmm_kernel.log_row_sums(block, 700, table, found)


@pytest.mark.parametrize("where", ["everywhere", "unsampled_row"])
def test_size_factors_of_fractional_counts_skip_the_kernel_medians(where: str, monkeypatch) -> None:
    # RSEM / Salmon expected counts: the kernels take whole counts only. With them forced, a block whose counts are
    # not all whole gives the numpy path's bits without running the kernel's medians (they wrote the ratios of a whole
    # chunk before handing it back): by the sample of counts checked first, or by what the kernel's log sums found
    # (a fraction in a row the sample skips).
    from transforms.expression import _tmm_kernel

    rng = np.random.default_rng(17)
    counts = rng.poisson(rng.gamma(2.0, 200.0, size=(600, 1)), size=(600, 9)).astype(np.float64) + 1
    if where == "everywhere":
        counts /= 2
    else:
        counts[1, 4] += 0.25  # the sample takes every 9th row (600 // 64): not row 1
    with np.errstate(divide="ignore"):
        logs = np.log(counts)
    log_geomeans = logs.mean(axis=1)
    expected = np.exp(np.median(logs - log_geomeans[:, None], axis=0))

    monkeypatch.setattr(normalise, "_TMM_KERNEL_MIN_VALUES", 1 << 62)
    monkeypatch.setattr(normalise, "_SIZE_FACTOR_KERNEL_MIN_VALUES", 1 << 62)
    numpy_sf = normalise.size_factors(counts)
    numpy_found = normalise.size_factors_from_reference(counts, log_geomeans)

    def no_medians(*args: object) -> bool:
        raise AssertionError("the kernel's medians ran on counts that are not whole")

    sums_calls: list[bool] = []
    median_log_ratios, kernel_log_row_sums = _tmm_kernel.median_log_ratios, _tmm_kernel.log_row_sums

    def log_row_sums(*args: object) -> bool:
        sums_calls.append(kernel_log_row_sums(*args))
        return sums_calls[-1]

    monkeypatch.setattr(normalise, "_TMM_KERNEL_MIN_VALUES", 0)
    monkeypatch.setattr(normalise, "_SIZE_FACTOR_KERNEL_MIN_VALUES", 0)
    monkeypatch.setattr(_tmm_kernel, "median_log_ratios", no_medians)
    monkeypatch.setattr(_tmm_kernel, "log_row_sums", log_row_sums)
    kernel_sf = normalise.size_factors(counts)
    assert (sums_calls == []) == (where == "everywhere")  # the sample found it first, numba need not run
    assert not all(sums_calls or [False])  # the part of the rows with the fraction
    if where == "unsampled_row":  # nothing told the reference's size factors: the medians run and find it
        monkeypatch.setattr(_tmm_kernel, "median_log_ratios", median_log_ratios)
    kernel_found = normalise.size_factors_from_reference(counts, log_geomeans)
    np.testing.assert_allclose(kernel_sf, expected, rtol=1e-14)
    assert kernel_sf.tobytes() == numpy_sf.tobytes()
    assert kernel_found.tobytes() == numpy_found.tobytes() == expected.tobytes()


def test_normalise_imports_without_scipy_or_numba() -> None:
    # Sample factors alone must not pay for scipy's optimize / stats imports (about a second of every process), and
    # importing normalise must not import numba (a few tenths of a second; only TMM needs it).
    code = (
        "import sys, transforms.expression.normalise; "
        "print(sorted(m for m in sys.modules if m.startswith(('scipy', 'numba'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[3])
    assert out.stdout.strip() == "[]"


def test_log2_cpm_rejects_non_positive_library_size() -> None:
    with pytest.raises(ValueError, match="library sizes should be finite and positive"):
        normalise.log2_cpm(np.ones((2, 2)), library_size=np.array([2.0, 0.0]))


def test_vst_genes_rejects_too_few_expressed_genes() -> None:
    with pytest.raises(ValueError, match="less than 'nsub'"):
        normalise.vst_genes(np.array([10.0, 3.0, 7.0]), nsub=3)


def test_tpm_per_sample_lengths() -> None:
    # hand calculation: rates 10/100, 30/300 (sample 1) and 20/100, 40/400 (sample 2)
    counts = np.array([[10.0, 20.0], [30.0, 40.0]])
    lengths = np.array([[100.0, 100.0], [300.0, 400.0]])
    np.testing.assert_allclose(normalise.tpm(counts, lengths=lengths), [[5e5, 2e6 / 3], [5e5, 1e6 / 3]])


@pytest.mark.parametrize("order", ["C", "F"])
def test_row_moments_of_complete_blocks_are_the_nansum_moments_bit_for_bit(order: str) -> None:
    # A block without NaN is summed without np.nansum's NaN-zeroed copy: the same sums, so the same bits as the
    # per-row count, nansum mean and nansum of squared deviations written out (the formula before the shortcut),
    # block by block with Chan's update; one block with a NaN takes the nansum path.
    rng = np.random.default_rng(5)
    values = np.asarray(rng.lognormal(3.0, 2.0, size=(50, 700)), order=order)
    with_nan = values.copy(order=order)
    with_nan[3, 10] = np.nan

    def reference(blocks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        n, mean, m2 = None, np.zeros(0), np.zeros(0)
        for block in blocks:
            k = (~np.isnan(block)).sum(axis=1).astype(np.float64)
            b_mean = np.nansum(block, axis=1) / k
            b_m2 = np.nansum((block - b_mean[:, None]) ** 2, axis=1)
            if n is None:
                n, mean, m2 = k, b_mean, b_m2
                continue
            total = n + k
            delta = b_mean - mean
            mean, m2, n = mean + delta * (k / total), m2 + b_m2 + delta**2 * n * k / total, total
        return mean, np.sqrt(m2 / (n - 1))

    for data in (values, with_nan):
        blocks = [np.asarray(data[:, :300], order=order), np.asarray(data[:, 300:], order=order)]
        got = normalise.row_moments(blocks)
        mean, sd = reference(blocks)
        np.testing.assert_array_equal(got.mean, mean)
        np.testing.assert_array_equal(got.sd, sd)


def test_tmm_a_trim_ends_in_ties_across_count_pairs_equal_rank_loop(tmm_path: str) -> None:
    # Count pairs with equal products (1, 6), (2, 3), (3, 2), (6, 1), ... have the same A but for rounding (edgeR's
    # A, and any A computed otherwise, e.g. from M, round differently): the A trim ends fall among them.
    rng = np.random.default_rng(13)
    pairs = np.array([(a, b) for a in range(1, 13) for b in range(1, 13) if (a * b) in (6, 12, 24, 36)], dtype=float)
    genes = 600
    ref = np.empty(genes)
    counts = np.empty((genes, 24))
    low = rng.integers(0, len(pairs), size=genes)
    ref[:] = pairs[low, 1]
    for j in range(24):
        counts[:, j] = pairs[low, 0]
        high = rng.random(genes) < 0.6  # the rest spread above, so the lower A end lands in the tied pairs
        counts[high, j] = rng.integers(20, 400, size=high.sum())
    counts[:, 0] = ref
    lib = counts.sum(axis=0) * rng.uniform(0.5, 2.0, size=24)  # library sizes unrelated to the counts
    for sum_trim in (0.05, 0.1, 0.15, 0.2, 0.3):
        expected = [_tmm_pair(counts[:, j], ref, lib[j], lib[0], 0.3, sum_trim) for j in range(24)]
        got = normalise.tmm_factors_against(counts, ref, library_size=lib, reference_library_size=lib[0],
                                            sum_trim=sum_trim)
        np.testing.assert_allclose(got, expected, rtol=1e-12, err_msg=f"sum_trim={sum_trim}")


def _kept_by_rank(values: list[float], trim: float) -> np.ndarray:
    """edgeR's rank trim of one sample's values with scipy's average ranks: which values it keeps."""
    n = len(values)
    lo = np.floor(n * trim) + 1
    rank = rankdata(values)
    return (rank >= lo) & (rank <= n + 1 - lo)


def _tied_values(rng: np.random.Generator, n: int) -> np.ndarray:
    """n values in a few large tie groups and a spread: a trim's ends often fall inside a tie group."""
    groups = rng.normal(size=int(rng.integers(1, 6)))
    values = np.where(rng.random(n) < rng.random(), groups[rng.integers(0, groups.size, size=n)], rng.normal(size=n))
    return values


def test_tmm_kernel_trim_range_equal_rank_trim() -> None:
    # The kernel's trim (a histogram, then a sort of the values of the two buckets holding the ends) against scipy's
    # average ranks, on values with large tie groups, all-equal values and tiny samples.
    from transforms.expression import _tmm_kernel

    rng = np.random.default_rng(17)
    hist, buf = np.empty(_tmm_kernel._BUCKETS, dtype=np.int64), np.empty(3000)
    for case in range(400):
        n = int(rng.integers(1, 3000))
        values = np.full(n, 0.25) if case % 50 == 0 else _tied_values(rng, n)
        trim = float(rng.choice([0.0, 0.05, 0.1, 0.3, 0.45, 0.5]))
        low, high = _tmm_kernel._trim_range(values.copy(), n, trim, values.min(), values.max(), hist, buf)
        got = (values >= low) & (values <= high)
        np.testing.assert_array_equal(got, _kept_by_rank(values.tolist(), trim), err_msg=f"case {case}, trim {trim}")


def test_tmm_kernel_log_trim_range_ties_of_log2_across_ratios() -> None:
    # The M trim works on the ratios (obs / n_obs) / p and takes log2 only near its ends: ratios a few units in the
    # last place apart can share one log2 (M), and R ranks M. Ratios 2^20 (1 + k eps) for k = 0..40 fall in about
    # four M values (M's ulp at 20 is 16 eps); with a spread around them, the trim ends land in those M ties.
    from transforms.expression import _tmm_kernel

    rng = np.random.default_rng(19)
    eps = np.finfo(np.float64).eps
    near = 2.0**20 * (1 + np.arange(41) * eps)
    assert len({math.log2(v) for v in near}) < 10  # they do share M values
    hist, buf1, buf2 = np.empty(_tmm_kernel._BUCKETS, dtype=np.int64), np.empty(4000), np.empty(4000)
    for case in range(300):
        spread = 2.0 ** rng.normal(20, 2 * rng.random(), size=int(rng.integers(0, 400)))
        ratios = np.concatenate([rng.choice(near, size=int(rng.integers(1, 400))), spread])
        rng.shuffle(ratios)
        n, trim = ratios.size, float(rng.choice([0.05, 0.1, 0.3, 0.45]))
        low, high = _tmm_kernel._log_trim_range(ratios.copy(), n, trim, ratios.min(), ratios.max(), hist, buf1, buf2)
        got = (ratios >= low) & (ratios <= high)
        # math.log2 is the C library's log2, as in R and in the kernel
        expected = _kept_by_rank([math.log2(v) for v in ratios], trim)
        np.testing.assert_array_equal(got, expected, err_msg=f"case {case}, trim {trim}")


def _keyed_factor(obs: np.ndarray, ref: np.ndarray, n_obs: float, n_ref: float, trim: float, sum_trim: float,
                  weighting: bool = True) -> float:  # fmt: skip
    """The compiled kernel's keyed path on one sample (NaN: it leaves the sample to the exact path)."""
    from transforms.expression import _tmm_kernel

    rows = ref > 0
    c, o = ref[rows], obs[rows].copy()
    p = c / n_ref
    whole = np.arange(_tmm_kernel._INT_TABLE, dtype=np.float64)
    with np.errstate(divide="ignore"):
        log2_int, inv_int = np.log2(whole), 1 / whole
    buf = [np.empty(c.size) for _ in range(6)]
    hist_m = np.empty(_tmm_kernel._M_BUCKETS, dtype=np.int32)
    hist_a = np.empty(_tmm_kernel._A_BUCKETS, dtype=np.int32)
    return _tmm_kernel._tmm_sample_keyed(
        o, float(n_obs), c, 1 / c, p, np.log2(p), (n_ref - c) / n_ref / c, trim, sum_trim, weighting, log2_int,
        inv_int, buf[0], buf[1], hist_m, hist_a, buf[2], buf[3], buf[4], buf[5], np.empty(c.size, dtype=np.intp),
        np.empty(c.size, dtype=bool), np.empty(c.size, dtype=np.int8),
    )  # fmt: skip


def _keyed_cases(rng: np.random.Generator, genes: int) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(name, sample, reference) pairs whose trims end inside tie groups, with zeros and counts beyond the tables."""
    ref = rng.poisson(rng.gamma(0.7, 4.0, size=genes)).astype(np.float64)
    yield "small counts: large tie groups of M and A at every trim end", rng.poisson(ref * 1.3 + 0.2).astype(float), ref
    base = rng.integers(1, 4, size=genes).astype(np.float64)
    scale = rng.integers(1, 6, size=genes).astype(np.float64)
    # equal ratios from different count pairs (1/2, 2/4, 3/6 ...): edgeR's ratios differ by units in the last place
    yield "equal ratios of different count pairs", base * scale, 2 * base * rng.integers(1, 4, size=genes)
    deep = np.round(np.exp(rng.uniform(0, 11, size=genes)))
    sample = rng.poisson(deep * rng.uniform(0.5, 2.0)).astype(np.float64)
    sample[rng.random(genes) < 0.3] = 0  # zero counts: M and A are -inf, edgeR leaves them out
    yield "deep counts beyond the tables, 30 % zeros", sample, deep
    yield "fractional counts", rng.gamma(2.0, 3.0, size=genes).round(2), rng.gamma(2.0, 3.0, size=genes).round(2) + 0.01


@pytest.mark.parametrize("seed", range(6))
def test_tmm_kernel_keyed_path_equal_rank_loop(seed: int) -> None:
    # The keyed path ranks genes by count / reference count and count * reference count and takes edgeR's exact
    # values only near the trims' ends: against scipy's average ranks of edgeR's own M and A (_tmm_pair).
    rng = np.random.default_rng(100 + seed)
    decided = 0
    for name, sample, ref in _keyed_cases(rng, int(rng.integers(300, 4000))):
        n_obs, n_ref = sample.sum() * rng.uniform(0.8, 1.25), ref.sum()
        for trim, sum_trim, weighting in [(0.3, 0.05, True), (0.25, 0.1, True), (0.4, 0.0, True), (0.3, 0.05, False),
                                          (0.1, 0.3, True)]:  # fmt: skip
            got = _keyed_factor(sample, ref, n_obs, n_ref, trim, sum_trim, weighting)
            if math.isnan(got):
                continue
            decided += 1
            if weighting:
                expected = _tmm_pair(sample, ref, n_obs, n_ref, trim, sum_trim)
            else:
                with np.errstate(divide="ignore", invalid="ignore"):
                    m = np.log2((sample / n_obs) / (ref / n_ref))
                    a = (np.log2(sample / n_obs) + np.log2(ref / n_ref)) / 2
                fin = np.isfinite(m)
                keep = _kept_by_rank(m[fin].tolist(), trim) & _kept_by_rank(a[fin].tolist(), sum_trim)
                expected = 2 ** np.mean(m[fin][keep])
            assert got == pytest.approx(expected, rel=1e-12), f"{name}, trims {trim}, {sum_trim}, {weighting}"
    assert decided >= 15  # the path decides the usual samples (it leaves few to the exact path)


def test_tmm_kernel_keyed_path_leaves_degenerate_samples_to_the_exact_path(tmm_path: str) -> None:
    # A sample equal to the reference (every M = 0: edgeR's factor 1), counts far below 1, and fewer than 64 genes
    # are not decided by keys; the factors stay edgeR's.
    rng = np.random.default_rng(23)
    ref = rng.poisson(20.0, size=500).astype(np.float64)
    assert math.isnan(_keyed_factor(ref, ref, ref.sum(), ref.sum(), 0.3, 0.05))
    tiny = ref * 1e-3
    assert math.isnan(_keyed_factor(tiny, ref, tiny.sum(), ref.sum(), 0.3, 0.05))
    assert math.isnan(_keyed_factor(ref[:40] + 1, ref[:40], ref[:40].sum() + 40, ref[:40].sum(), 0.3, 0.05))
    counts = np.column_stack([ref, tiny, rng.poisson(ref * 2).astype(np.float64)])
    lib = counts.sum(axis=0)
    expected = [_tmm_pair(counts[:, j], ref, lib[j], lib[0], 0.3, 0.05) for j in range(3)]
    assert expected[0] == 1.0
    got = normalise.tmm_factors_against(counts, ref, library_size=lib, reference_library_size=lib[0])
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize("layout", ["C", "F"])
def test_upper_quartiles_kernel_equal_sort_bit_for_bit(layout: str, monkeypatch) -> None:
    # The compiled histograms of whole counts against numpy's sort: ties at the quartile, interpolation between two
    # counts, all-zero rows, and blocks it hands back (a fractional count; a quartile of 4,096 or more).
    rng = np.random.default_rng(29)
    blocks = []
    for genes in (7, 8, 401, 2000):
        counts = rng.poisson(rng.gamma(0.6, 8.0, size=(genes, 1)), size=(genes, 90)).astype(np.float64)
        counts[rng.random(genes) < 0.2] = 0
        blocks.append(counts)
    fractional = blocks[-1].copy()
    fractional[5, 3] = 2.5
    large = blocks[-1] + 5000
    blocks += [fractional, large]
    for counts in blocks:
        counts = np.asarray(counts, order=layout)
        lib = counts.sum(axis=0)
        monkeypatch.setattr(normalise, "_TMM_KERNEL_MIN_VALUES", 1 << 62)
        expected = normalise.upper_quartiles(counts, library_size=lib)
        monkeypatch.setattr(normalise, "_TMM_KERNEL_MIN_VALUES", 0)
        np.testing.assert_array_equal(normalise.upper_quartiles(counts, library_size=lib), expected)
    from transforms.expression import _tmm_kernel

    out = np.empty(90)
    assert not _tmm_kernel.upper_quartile_columns(fractional, 0, 90, 1500, 0.25, True, out)
    assert not _tmm_kernel.upper_quartile_columns(large, 0, 90, 1500, 0.25, True, out)
    assert _tmm_kernel.upper_quartile_columns(blocks[3], 0, 90, 1500, 0.25, True, out)


def test_tmm_kernel_keyed_path_tie_group_across_a_bucket_edge() -> None:
    # 49 * (1 / 49) is one unit below 1: genes with count == reference count have keys on both sides of the bucket
    # edge at 1, yet one M (edgeR's ratios, (49 / n_obs) / (49 / n_ref) and (1 / n_obs) / (1 / n_ref), share a log2).
    # The trims' ends fall in that tie group (its average rank just inside or outside a bound) in many of the cases.
    assert 49 * (1 / 49) < 1.0
    rng = np.random.default_rng(31)
    decided = 0
    for case in range(300):
        below, group, above = (int(v) for v in rng.integers(20, 120, size=3))
        tie_ref = rng.choice([1.0, 49.0, 98.0, 2.0, 49.0 * 3], size=group)
        ref = np.concatenate([2 * rng.integers(1, 30, size=below), tie_ref, rng.integers(1, 30, size=above)])
        sample = np.concatenate([ref[:below] / 2, tie_ref, 2 * ref[below + group:]])
        n_obs = n_ref = float(ref.sum())
        trim = float(rng.uniform(0.05, 0.45))
        got = _keyed_factor(sample.astype(float), ref.astype(float), n_obs, n_ref, trim, 0.05)
        if math.isnan(got):
            continue
        decided += 1
        expected = _tmm_pair(sample.astype(float), ref.astype(float), n_obs, n_ref, trim, 0.05)
        assert got == pytest.approx(expected, rel=1e-12), f"case {case}"
    assert decided > 250


@pytest.mark.parametrize("layout", ["C", "F"])
def test_upper_quartiles_kernel_with_counts_beyond_int64(layout: str, monkeypatch) -> None:
    # A count of 2^63 or more (finite, so accepted) is clamped into the histogram's overflow bin, not converted to an
    # int64 first (numba gives -2^63, an index that counted it as a zero of the next sample): every sample's upper
    # quartile stays R's quantile type 7 (numpy's default method), and so TMM's reference sample.
    counts = np.ones((200, 3))
    counts[0, 0] = 1e19
    counts[:, 1] = np.arange(1, 201)
    counts[:, 2] = np.arange(200, 0, -1) % 37 + 1
    counts = np.asarray(counts, order=layout)
    expected = np.quantile(counts, 0.75, axis=0)  # no all-zero row: edgeR's quartile of every row
    assert expected[1] == 150.25
    monkeypatch.setattr(normalise, "_TMM_KERNEL_MIN_VALUES", 0)
    got = normalise.upper_quartiles(counts, library_size=np.ones(3))
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(("trim", "sum_trim"), [(-0.1, 0.05), (0.3, -0.2), (-1.0, -1.0)])
def test_tmm_negative_trims_keep_every_rank_as_edger(trim: float, sum_trim: float, tmm_path: str) -> None:
    # edgeR keeps ranks floor(n * trim) + 1 .. n + 1 - (floor(n * trim) + 1): a negative trim keeps them all (the
    # numpy path raised an IndexError, the kernel gave 1 for every sample).
    rng = np.random.default_rng(37)
    counts = rng.negative_binomial(2, 0.1, size=(3000, 4)).astype(np.float64)
    lib = counts.sum(axis=0)
    expected = [_tmm_pair(counts[:, j], counts[:, 0], lib[j], lib[0], trim, sum_trim) for j in range(4)]
    got = normalise.tmm_factors_against(
        counts, counts[:, 0], library_size=lib, reference_library_size=lib[0], logratio_trim=trim, sum_trim=sum_trim
    )
    np.testing.assert_allclose(got, expected, rtol=1e-12)
