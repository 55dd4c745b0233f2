"""Correlations and Welch tests on real TCGA BRCA values (mixOmics subset) against scipy, FDR by hand."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest
from scipy import stats

from transforms.cross_omics.statistics import bh_fdr, layer_correlations, mutation_effect_rows

N_GENES = 30


@pytest.fixture(scope="module")
def brca(shared_data) -> tuple[pl.DataFrame, pl.DataFrame]:
    folder = shared_data / "tcga_brca_mixomics"
    return (pl.read_csv(folder / "train_mrna.tsv", separator="\t"),
            pl.read_csv(folder / "train_protein.tsv", separator="\t"))


def _long(mrna: pl.DataFrame, protein: pl.DataFrame, *, holes: bool) -> pl.DataFrame:
    """Gene i pairs the i-th mRNA column with the i-th antibody; with ``holes`` some cells are NULL."""
    rows = []
    samples = mrna["sample_id"].to_list()
    for i in range(N_GENES):
        x = mrna[:, i + 1].to_list()
        y = protein[:, i + 1].to_list()
        for j, sample in enumerate(samples):
            missing_x = holes and (i + j) % 7 == 0
            missing_y = holes and (i * j) % 11 == 3
            rows.append({"gene_id": i + 1, "sample_id": sample, "x": None if missing_x else x[j],
                         "y": None if missing_y else y[j]})
    return pl.DataFrame(rows)


@pytest.mark.parametrize("holes", [False, True])
def test_layer_correlations_equal_scipy_on_brca(brca, holes):
    frame = _long(*brca, holes=holes)
    found = layer_correlations(frame, x="x", y="y", min_samples=5)
    for gene, group in frame.group_by("gene_id"):
        both = group.drop_nulls()
        rho = stats.spearmanr(both["x"], both["y"])
        pearson = stats.pearsonr(both["x"], both["y"])
        row_s = found.filter((pl.col("gene_id") == gene[0]) & (pl.col("method") == "spearman")).row(0, named=True)
        row_p = found.filter((pl.col("gene_id") == gene[0]) & (pl.col("method") == "pearson")).row(0, named=True)
        assert row_s["n"] == row_p["n"] == both.height
        assert row_s["r"] == pytest.approx(rho.statistic, abs=1e-12)
        assert row_s["pvalue"] == pytest.approx(rho.pvalue, rel=1e-9)
        assert row_p["r"] == pytest.approx(pearson.statistic, abs=1e-12)
        assert row_p["pvalue"] == pytest.approx(pearson.pvalue, rel=1e-9)


def test_layer_correlations_average_ranks_on_ties_and_minimum_samples(brca):
    frame = _long(*brca, holes=False).with_columns(pl.col("x").round(0), pl.col("y").round(0))
    found = layer_correlations(frame, x="x", y="y", min_samples=5).filter(pl.col("method") == "spearman")
    for gene, group in frame.group_by("gene_id"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", stats.ConstantInputWarning)  # a constant rounded gene: r undefined
            rho = stats.spearmanr(group["x"], group["y"]).statistic
        got = found.filter(pl.col("gene_id") == gene[0])["r"].item()
        assert (got is None and np.isnan(rho)) or got == pytest.approx(rho, abs=1e-12)
    few = frame.filter(pl.col("sample_id").is_in(frame["sample_id"].unique().sort()[:4].to_list()))
    assert layer_correlations(few, x="x", y="y", min_samples=5).height == 0


def test_bh_fdr_equals_hand_calculation():
    # sorted 0.01, 0.03, 0.04, 0.2 -> 0.04, 0.06, 0.0533, 0.2 -> running minimum from the top
    got = bh_fdr(np.array([0.01, 0.04, np.nan, 0.03, 0.2]))
    assert got[[0, 1, 3, 4]] == pytest.approx([0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.2])
    assert np.isnan(got[2])


def test_mutation_effect_rows_equal_welch_ttest_and_need_three_per_group(brca):
    _, protein = brca
    rows = []
    samples = protein["sample_id"].to_list()
    for i in range(10):
        values = protein[:, i + 1].to_list()
        for j, sample in enumerate(samples):
            status = None if j == 0 else (j % (3 + i % 4) == 0)  # sample 0 not profiled: neither group
            if i == 9:
                status = j in (1, 2)  # two mutated: too few for a test
            rows.append({"gene_id": i + 1, "sample_id": sample, "v": values[j], "mutated": status})
    frame = pl.DataFrame(rows)
    found = mutation_effect_rows(frame, value="v")
    for gene, group in frame.filter(pl.col("mutated").is_not_null()).group_by("gene_id"):
        mutated = group.filter(pl.col("mutated"))["v"].to_numpy()
        wild = group.filter(~pl.col("mutated"))["v"].to_numpy()
        row = found.filter(pl.col("gene_id") == gene[0]).row(0, named=True)
        assert (row["n_mutated"], row["n_wildtype"]) == (len(mutated), len(wild))
        assert row["mean_difference"] == pytest.approx(mutated.mean() - wild.mean(), abs=1e-12)
        if gene[0] == 10:
            assert row["statistic"] is None
            assert row["pvalue"] is None
            continue
        test = stats.ttest_ind(mutated, wild, equal_var=False)
        assert row["statistic"] == pytest.approx(test.statistic, rel=1e-10)
        assert row["pvalue"] == pytest.approx(test.pvalue, rel=1e-9)
    tested = found.filter(pl.col("pvalue").is_not_null()).sort("gene_id")
    assert tested["fdr"].to_numpy() == pytest.approx(stats.false_discovery_control(tested["pvalue"].to_numpy()))
