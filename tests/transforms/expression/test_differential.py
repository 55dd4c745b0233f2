from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from transforms.expression.deseq2 import DESeqResult, deseq_wald
from transforms.expression.differential import (
    DEResult,
    DesignError,
    _numeric_hint,
    check_design,
    design_matrix,
    differential_expression,
    independent_filtering,
)
from transforms.expression.normalise import size_factors
from transforms.report.plots import ma_plot, volcano_plot

Block = tuple[np.ndarray, list[str], pl.DataFrame]  # counts (genes x samples), gene ids, sample table


def _block(counts: pl.DataFrame, id_column: str, samples: pl.DataFrame) -> Block:
    columns = [c for c in counts.columns if c not in (id_column, "Length")]
    return counts.select(columns).to_numpy(), counts[id_column].to_list(), samples


@pytest.fixture(scope="module")
def pasilla(pasilla_counts: pl.DataFrame, pasilla_samples: pl.DataFrame) -> Block:
    return _block(pasilla_counts, "gene_id", pasilla_samples)


@pytest.fixture(scope="module")
def airway(airway_counts: pl.DataFrame, airway_samples: pl.DataFrame) -> Block:
    return _block(airway_counts, "Geneid", airway_samples)


def _run_pasilla(pasilla: Block, covariates: list[str]) -> DEResult:
    counts, genes, samples = pasilla
    return differential_expression(
        counts, genes=genes, samples=samples, factor="condition", test="treated", reference="untreated",
        covariates=covariates,
    )


@pytest.fixture(scope="module")
def pasilla_de(pasilla, r_table):
    start = time.perf_counter()
    result = _run_pasilla(pasilla, ["type"])
    print(f"pasilla DE: {time.perf_counter() - start:.1f} s")
    joined = result.table.join(r_table("pasilla_de_condition.tsv.gz"), on="feature_id", suffix="_r")
    return result, joined


@pytest.fixture(scope="module")
def pasilla_de_nocov(pasilla, r_table):
    result = _run_pasilla(pasilla, [])
    return result, result.table.join(r_table("pasilla_de_condition_nocov.tsv.gz"), on="feature_id", suffix="_r")


def _relative_difference(joined: pl.DataFrame, column: str, *, floor: float = 0.0) -> np.ndarray:
    """|ours - R| / max(|R|, floor) on genes with R's base mean > 1 and both values present.

    ``floor``: below it a value is compared in absolute terms, where a relative difference means nothing (a
    log2 fold change of 1.4e-5 differing by 1.5e-11 is a relative 1.1e-6, on an AMD EPYC's OpenBLAS).
    """
    both = joined.filter(pl.col("base_mean_r") > 1).drop_nulls([column, f"{column}_r"])
    ours, theirs = both[column].to_numpy(), both[f"{column}_r"].to_numpy()
    return np.abs(ours - theirs) / np.maximum(np.abs(theirs), floor)


def _assert_same_calls(joined: pl.DataFrame) -> set[str]:
    # Same genes without a p-value (all-zero, Cook's outliers) and without padj (independent filtering).
    assert joined.filter(pl.col("pvalue").is_null() != pl.col("pvalue_r").is_null()).height == 0
    assert joined.filter(pl.col("padj").is_null() != pl.col("padj_r").is_null()).height == 0
    ours = set(joined.filter(pl.col("padj") < 0.05)["feature_id"])
    theirs = set(joined.filter(pl.col("padj_r") < 0.05)["feature_id"])
    assert ours == theirs
    return ours


@pytest.mark.slow
def test_differential_expression_pasilla_matches_deseq2(pasilla_de):
    result, joined = pasilla_de
    # 14,599 genes x 7 samples: awk 'END {print NR-1, NF-1}' pasilla_gene_counts.tsv
    assert joined.height == 14_599
    assert result.parameters["n_samples"] == 7
    assert result.parameters["design"] == "~ type + condition"
    assert result.parameters["dispersion_trend"] == "parametric"
    # baseMean depends only on size factors, which both compute the same way.
    np.testing.assert_allclose(joined["base_mean"], joined["base_mean_r"], rtol=1e-12)
    # Measured max relative differences: log2FC 1.1e-7 (2.7e-7 on an AMD EPYC, and 1.1e-6 on a log2FC of -1.4e-5:
    # 1.5e-11 apart, hence the floor), lfcSE 1.1e-6, stat 1.2e-6, pvalue 1.1e-5.
    assert _relative_difference(joined, "log2_fold_change", floor=1e-3).max() < 1e-6
    assert _relative_difference(joined, "lfc_se").max() < 1e-5
    assert _relative_difference(joined, "stat").max() < 1e-5
    assert _relative_difference(joined, "pvalue").max() < 1e-4
    # R finds 1,068 genes at padj < 0.05: zcat pasilla_de_condition.tsv.gz | awk '$7!="NA" && $7<0.05' | wc -l
    assert len(_assert_same_calls(joined)) == 1_068


@pytest.mark.slow
def test_differential_expression_pasilla_without_covariate_matches_deseq2(pasilla_de_nocov):
    result, joined = pasilla_de_nocov
    assert result.parameters["design"] == "~ condition"
    # R: zcat pasilla_de_condition_nocov.tsv.gz | awk '$7!="NA" && $7<0.05' | wc -l
    assert len(_assert_same_calls(joined)) == 845
    # One gene (FBgn0011300) sits on a knife edge of fitDisp's Armijo test (its first step improves the log
    # posterior by less than the rounding of a 9,000-sized sum): R rejects the step, we accept it and its
    # gene-wise dispersion differs by 2.3 %. That moves the trend by 5e-6 relative and so every MAP dispersion a
    # little. Measured (base mean > 1): log2FC 7.6e-5 absolute (one gene above 1e-6), lfcSE 7.7e-3 relative
    # (4 genes above 1e-5), stat 5.6e-3, pvalue 9.8e-4 relative.
    finite = joined.filter(pl.col("base_mean_r") > 1).drop_nulls(["log2_fold_change", "log2_fold_change_r"])
    lfc_difference = (finite["log2_fold_change"] - finite["log2_fold_change_r"]).abs()
    assert lfc_difference.max() < 1e-4
    assert (lfc_difference > 1e-6).sum() <= 1
    assert (_relative_difference(joined, "lfc_se") > 1e-5).sum() <= 4
    for column in ("lfc_se", "stat", "pvalue"):
        assert _relative_difference(joined, column).max() < 1e-2, column


# The made-up RIN of make_numeric_covariate_reference.R, as text (sample attributes are text here).
_PASILLA_RIN = {"untreated1": "7.9", "untreated2": "8.6", "untreated3": "6.8", "untreated4": "9.1",
                "treated1": "7.2", "treated2": "8.3", "treated3": "6.5"}


@pytest.mark.slow
def test_differential_expression_pasilla_numeric_covariate_matches_deseq2(pasilla, r_table):
    # DESeq2 ~ rin + condition with rin a numeric colData column: one slope (3 coefficients, 4 residual df); as a
    # 7-level factor rin would leave no residual df at all.
    counts, genes, samples = pasilla
    samples = samples.with_columns(pl.col("sample_id").replace_strict(_PASILLA_RIN).alias("rin"))
    result = differential_expression(counts, genes=genes, samples=samples, factor="condition", test="treated",
                                     reference="untreated", covariates=["rin"], numeric=["rin"])
    joined = result.table.join(r_table("pasilla_de_numeric_covariate.tsv.gz"), on="feature_id", suffix="_r")
    assert joined.height == 14_599
    assert result.parameters["design"] == "~ rin + condition (numeric: rin)"
    assert result.parameters["dispersion_trend"] == "parametric"
    np.testing.assert_allclose(joined["base_mean"], joined["base_mean_r"], rtol=1e-12)
    # The tolerances of the ~ type + condition test above, except for two of the 8 genes whose IRLS fit did not
    # converge (the uncentred slope makes that commoner) and which both refit by L-BFGS-B: scipy's and R's optim
    # stop a little apart. Measured: FBgn0030880 (counts 103, 1, 0, ...: log2FC -29.97 vs -29.99, 7.6e-4
    # relative; pvalue 1.27e-13 vs 1.22e-13) and FBgn0053909 (log2FC 0.05919 vs 0.05920, 2.2e-4). Every other
    # gene: log2FC 1.1e-7, lfcSE 7.2e-7, stat 7.2e-7, pvalue 1.5e-5 relative (max).
    optim = ["FBgn0030880", "FBgn0053909"]
    rest = joined.filter(~pl.col("feature_id").is_in(optim))
    assert _relative_difference(rest, "log2_fold_change", floor=1e-3).max() < 1e-6
    assert _relative_difference(joined, "lfc_se").max() < 1e-5
    assert _relative_difference(rest, "stat").max() < 1e-5
    assert _relative_difference(rest, "pvalue").max() < 1e-4
    for column, bound in (("log2_fold_change", 1e-3), ("stat", 1e-3), ("pvalue", 0.05)):
        floor = 1e-3 if column == "log2_fold_change" else 0.0
        assert _relative_difference(joined, column, floor=floor).max() < bound, column
    # R: zcat pasilla_de_numeric_covariate.tsv.gz | awk '$7!="NA" && $7<0.05' | wc -l
    assert len(_assert_same_calls(joined)) == 497


# make_singleton_level_reference.R: pasilla's 7 samples with treated3 alone in a third level of 'group'.
_PASILLA_GROUP = {"untreated1": "untreated", "untreated2": "untreated", "untreated3": "untreated",
                  "untreated4": "untreated", "treated1": "treated", "treated2": "treated", "treated3": "treated_b"}


@pytest.mark.parametrize(("design", "test", "calls"), [("third_level", "treated", 484),
                                                       ("singleton_test", "treated_b", 245)])
def test_differential_expression_pasilla_singleton_level_matches_deseq2(pasilla, r_table, design, test, calls):
    # ~ group with levels of 4, 2 and 1 samples: 3 coefficients, 4 residual df, as DESeq2 fits it (the singleton's
    # coefficient fits its one sample; dispersions come from the replicated levels). Tested as a third level
    # (treated vs untreated) and as the test level itself (treated_b vs untreated). check_design refused both.
    counts, genes, samples = pasilla
    samples = samples.with_columns(pl.col("sample_id").replace_strict(_PASILLA_GROUP).alias("group"))
    result = differential_expression(counts, genes=genes, samples=samples, factor="group", test=test,
                                     reference="untreated")
    reference = r_table("pasilla_de_singleton.tsv.gz").filter(pl.col("design") == design)
    joined = result.table.join(reference, on="feature_id", suffix="_r")
    assert joined.height == 14_599
    assert result.parameters["design"] == "~ group"
    assert result.parameters["genes_with_replaced_outliers"] == 0  # no level has minReplicatesForReplace = 7
    assert result.parameters["dispersion_prior_rule"] == "mad"
    assert result.parameters["dispersion_prior_variance"] == pytest.approx(reference["disp_prior_var"][0], rel=1e-6)
    np.testing.assert_allclose(joined["base_mean"], joined["base_mean_r"], rtol=1e-12)
    # The tolerances of the pasilla ~ type + condition test. Measured max relative differences: log2FC 1.2e-8,
    # lfcSE 1.5e-7, stat 3.0e-7, pvalue 1.2e-7.
    assert _relative_difference(joined, "log2_fold_change", floor=1e-3).max() < 1e-6
    assert _relative_difference(joined, "lfc_se").max() < 1e-5
    assert _relative_difference(joined, "stat").max() < 1e-5
    assert _relative_difference(joined, "pvalue").max() < 1e-4
    # R: zcat pasilla_de_singleton.tsv.gz | awk -F'\t' '$1=="<design>" && $8!="NA" && $8<0.05' | wc -l
    assert len(_assert_same_calls(joined)) == calls


def test_differential_expression_one_treated_sample_as_deseq2(pasilla, r_table):
    # untreated1-4 against treated1 alone, ~ condition: 3 residual df, where DESeq2 draws its dispersion prior
    # variance by Monte Carlo (0.4965) and we integrate the same law exactly (0.3924, measured; the airway test's
    # known difference). Every MAP dispersion moves with it, so the figures are compared as the airway ones are:
    # measured, log2FC at most 0.0080 apart on the 8,064 genes with base mean > 10 and a p-value, 347 of R's 357
    # genes at padj < 0.05 found (360 in all).
    counts, genes, samples = pasilla
    one = samples["sample_id"].is_in(["untreated1", "untreated2", "untreated3", "untreated4", "treated1"])
    result = differential_expression(counts[:, one.to_numpy()], genes=genes, samples=samples.filter(one),
                                     factor="condition", test="treated", reference="untreated")
    reference = r_table("pasilla_de_singleton.tsv.gz").filter(pl.col("design") == "one_treated")
    assert result.parameters["n_samples"] == 5
    assert result.parameters["dispersion_prior_rule"] == "exact histogram match (small residual df)"
    assert abs(result.parameters["dispersion_prior_variance"] - reference["disp_prior_var"][0]) < 0.25
    joined = result.table.join(reference, on="feature_id", suffix="_r")
    np.testing.assert_allclose(joined["base_mean"], joined["base_mean_r"], rtol=1e-12)
    expressed = joined.filter(pl.col("base_mean_r") > 10).drop_nulls(["pvalue", "pvalue_r"])
    assert expressed.height == 8_064
    np.testing.assert_allclose(expressed["log2_fold_change"], expressed["log2_fold_change_r"], atol=0.01)
    ours = set(joined.filter(pl.col("padj") < 0.05)["feature_id"])
    theirs = set(joined.filter(pl.col("padj_r") < 0.05)["feature_id"])
    assert len(theirs) == 357
    assert len(ours & theirs) >= 340


def _pasilla_fit(pasilla: Block, covariates: list[str]) -> DESeqResult:
    counts, _, samples = pasilla
    design, names = design_matrix(samples, factor="condition", reference="untreated", covariates=covariates)
    condition = samples["condition"].to_numpy()
    return deseq_wald(counts, design, size_factors=size_factors(counts), coefficient=names.index(
        "condition[T.treated]"), contrast_samples=np.isin(condition, ["treated", "untreated"]), two_group=False)


@pytest.mark.slow
@pytest.mark.parametrize(("covariates", "design"), [(["type"], "~ type + condition"), ([], "~ condition")])
def test_deseq_wald_dispersions_match_deseq2(pasilla, r_table, covariates, design):
    fit = _pasilla_fit(pasilla, covariates)
    trend = r_table("dispersion_trends.tsv").filter(pl.col("design") == design).row(0, named=True)
    reference = r_table("pasilla_dispersions.tsv.gz").filter(pl.col("design") == design)
    assert fit.dispersion_trend == "parametric"
    # Measured relative differences, ~ type + condition / ~ condition: trend 1.1e-11 / 5.2e-6, prior variance
    # 1.8e-12 / 8.0e-6, gene-wise dispersions median 0 / 2.6e-15 with 2 / 1 genes above 1e-5 (two genes near
    # 1e-8 that stop at maxit; one knife-edge gene, see the ~ condition test above), final dispersions max
    # 5e-6 / 1.8e-2 with 0 / 4 genes above 1e-5 (the knife-edge gene moves the trend and so every MAP fit a little).
    tight = covariates == ["type"]
    rtol = 1e-9 if tight else 1e-5
    np.testing.assert_allclose(fit.trend, [trend["asympt_disp"], trend["extra_pois"]], rtol=rtol)
    assert fit.prior_variance == pytest.approx(trend["disp_prior_var"], rel=rtol)
    assert fit.var_log_disp == pytest.approx(trend["var_log_disp_ests"], rel=rtol)
    for ours, column, median, above in (
        (fit.dispersion_gene_est, "disp_gene_est", 1e-12, 2),
        (fit.dispersion_fit, "disp_fit", 1e-9 if tight else 1e-5, 0),
        (fit.dispersion, "dispersion", 1e-9 if tight else 1e-5, 0 if tight else 4),
    ):
        theirs = reference[column].fill_null(np.nan).to_numpy()
        assert (np.isnan(ours) == np.isnan(theirs)).all()
        relative = np.abs(ours - theirs)[~np.isnan(theirs)] / theirs[~np.isnan(theirs)]
        assert np.median(relative) < median, column
        assert (relative > 1e-5).sum() <= above, column


def _assert_identical(first: DESeqResult, second: DESeqResult) -> None:
    for name, value in vars(first).items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(getattr(second, name), value, err_msg=name)  # NaN equals NaN here
        else:
            assert getattr(second, name) == value, name


def _wald(counts: np.ndarray, samples: pl.DataFrame, covariates: list[str], reference: str, **blocks) -> DESeqResult:
    design, names = design_matrix(samples, factor="condition", reference=reference, covariates=covariates)
    return deseq_wald(counts, design, size_factors=size_factors(counts), coefficient=len(names) - 1,
                      contrast_samples=np.ones(counts.shape[1], dtype=bool), two_group=not covariates, **blocks)


@pytest.mark.slow
def test_deseq_wald_in_small_blocks_on_two_threads_equals_one_block(pasilla):
    # ~ type + condition takes the GLM route to the gene-wise means and refits 5 genes with L-BFGS-B; 14,599
    # genes in blocks of 97 (151 blocks, the last one short) on two threads against one block on one thread.
    counts, _, samples = pasilla
    whole = _wald(counts, samples, ["type"], "untreated", block_genes=counts.shape[0], threads=1)
    assert whole.n_optim == 5
    _assert_identical(whole, _wald(counts, samples, ["type"], "untreated", block_genes=97, threads=2))


def test_deseq_wald_refits_outliers_in_blocks_like_in_one(r_table):
    # The outlier replacement and refit (16 genes with replaced counts) split over blocks of 3 genes.
    table = r_table("simulated_outliers_counts.tsv")
    counts = table.drop("gene_id").to_numpy().astype(float)
    samples = pl.DataFrame({"sample_id": table.columns[1:], "condition": ["A"] * 8 + ["B"] * 8})
    whole = _wald(counts, samples, [], "A", block_genes=counts.shape[0], threads=1)
    assert whole.n_replaced == 16
    _assert_identical(whole, _wald(counts, samples, [], "A", block_genes=3, threads=2))


def test_deseq_wald_small_residual_df_prior_variance(airway, r_table):
    # airway ~ cell + dex leaves 3 residual df: DESeq2 draws 1e4 log-chisq values per grid point (set.seed(2))
    # and smooths the divergences with loess; we integrate the same law exactly. R's Monte Carlo gives 2.635,
    # the exact version 2.434 on these 16 genes (measured).
    counts, genes, samples = airway
    result = differential_expression(
        counts, genes=genes, samples=samples, factor="dex", test="trt", reference="untrt", covariates=["cell"]
    )
    reference = r_table("dispersion_trends.tsv").filter(pl.col("design") == "~ cell + dex").row(0, named=True)
    assert result.parameters["dispersion_prior_rule"] == "exact histogram match (small residual df)"
    assert abs(result.parameters["dispersion_prior_variance"] - reference["disp_prior_var"]) < 0.25


def test_differential_expression_replaces_outliers_like_deseq2(r_table):
    # 8 + 8 samples simulated by DESeq2 (make_reference.R) with 20 counts multiplied by 20: refitWithoutOutliers.
    counts = r_table("simulated_outliers_counts.tsv")
    samples = pl.DataFrame({"sample_id": counts.columns[1:], "condition": ["A"] * 8 + ["B"] * 8})
    result = differential_expression(counts.drop("gene_id").to_numpy(), genes=counts["gene_id"].to_list(),
                                     samples=samples, factor="condition", test="B", reference="A")
    assert result.parameters["genes_with_replaced_outliers"] == 16
    joined = result.table.join(r_table("simulated_outliers_de.tsv"), on="feature_id", suffix="_r")
    _assert_same_calls(joined)
    # Measured: 5e-12 relative at most (log2FC, stat).
    for column in ("base_mean", "log2_fold_change", "lfc_se", "stat", "pvalue", "padj"):
        np.testing.assert_allclose(joined[column].fill_null(np.nan), joined[f"{column}_r"].fill_null(np.nan),
                                   rtol=1e-9, atol=1e-12, err_msg=column)


def test_differential_expression_airway_matches_deseq2(airway, r_table):
    counts, genes, samples = airway
    result = differential_expression(
        counts, genes=genes, samples=samples, factor="dex", test="trt", reference="untrt", covariates=["cell"]
    )
    joined = result.table.join(r_table("airway_de_dex.tsv"), on="feature_id", suffix="_r")
    # Genes with base_mean > 10 in R's airway_de_dex.tsv: awk -F'\t' 'NR>1 && $2>10' | wc -l
    expressed = joined.filter(pl.col("base_mean_r") > 10)
    assert expressed.height == 8
    np.testing.assert_allclose(expressed["log2_fold_change"], expressed["log2_fold_change_r"], atol=0.005)
    # The four genes R calls at padj < 0.05: awk -F'\t' '$7!="NA" && $7<0.05 {print $1}' airway_de_dex.tsv
    assert set(joined.filter(pl.col("padj") < 0.05)["feature_id"]) == {
        "ENSG00000120948", "ENSG00000009724", "ENSG00000116649", "ENSG00000171819",
    }
    # Four all-zero genes: base_mean 0 and nothing else, as DESeq2.
    zero = joined.filter(pl.col("base_mean") == 0)
    assert zero.height == 4
    assert zero.select(pl.col("log2_fold_change", "pvalue", "padj").null_count().sum()).row(0) == (4, 4, 4)
    assert result.parameters["counts_rounded"] is False


def test_differential_expression_does_not_depend_on_sample_order(airway):
    counts, genes, samples = airway
    order = np.array([7, 2, 5, 0, 3, 6, 1, 4])
    kwargs = {"genes": genes, "factor": "dex", "test": "trt", "reference": "untrt", "covariates": ["cell"]}
    first = differential_expression(counts, samples=samples, **kwargs).table
    shuffled = differential_expression(counts[:, order], samples=samples[order], **kwargs).table
    assert first.equals(shuffled)


_PASILLA_IN_CHILD = """
import importlib.util
import polars as pl
spec = importlib.util.spec_from_file_location("helpers", {test_file!r})
helpers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(helpers)
pasilla = helpers._block(pl.read_parquet({counts!r}), "gene_id", pl.read_parquet({samples!r}))
helpers._run_pasilla(pasilla, ["type"]).table.write_parquet({out!r})
"""


@pytest.mark.slow
def test_differential_expression_does_not_depend_on_thread_count(pasilla_counts, pasilla_samples, tmp_path):
    # The same pasilla DE in two fresh interpreters: BLAS / OpenMP limited to one thread, and the defaults.
    pasilla_counts.write_parquet(tmp_path / "counts.parquet")
    pasilla_samples.write_parquet(tmp_path / "samples.parquet")
    tables = []
    for name, limit in (("one", "1"), ("default", None)):
        env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
        if limit:
            env |= {"OMP_NUM_THREADS": limit, "OPENBLAS_NUM_THREADS": limit, "MKL_NUM_THREADS": limit}
        out = tmp_path / f"{name}.parquet"
        code = _PASILLA_IN_CHILD.format(test_file=__file__, counts=str(tmp_path / "counts.parquet"),
                                        samples=str(tmp_path / "samples.parquet"), out=str(out))
        subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=Path(__file__).parents[3])
        tables.append(pl.read_parquet(out))
    assert tables[0].height == 14_599
    assert tables[0].equals(tables[1])


def _de_in_child(airway: Block, queue) -> None:
    counts, genes, samples = airway
    differential_expression(counts, genes=genes, samples=samples, factor="dex", test="trt", reference="untrt",
                            covariates=["cell"])
    queue.put(time.monotonic())


def test_differential_expression_lets_a_spawned_process_exit(airway):
    # pydeseq2's loky workers kept a spawned Dagster step alive ~300 s after the DE returned (idle timeout).
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_de_in_child, args=(airway, queue))
    child.start()
    returned = queue.get(timeout=120)
    child.join(timeout=30)
    exited = time.monotonic()
    assert child.exitcode == 0
    assert exited - returned < 5


def test_differential_expression_imports_no_worker_pool_library():
    # The DE path must not load joblib / loky (pydeseq2's pools) or pydeseq2 itself; Poisson counts also take
    # the mean-trend fallback (the parametric trend does not converge on them).
    code = """
import sys, numpy as np, polars as pl
from transforms.expression.differential import differential_expression
counts = np.random.default_rng(0).poisson(20, size=(50, 6)).astype(float)
result = differential_expression(counts, genes=[f"g{i}" for i in range(50)], factor="g", test="b", reference="a",
                                 samples=pl.DataFrame({"g": ["a", "a", "a", "b", "b", "b"]}))
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("joblib", "loky", "pydeseq2", "threadpoolctl"))
print(result.parameters["dispersion_trend"], loaded)
"""
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                          cwd=Path(__file__).parents[3])
    assert done.stdout.strip() == "mean []"


def test_differential_expression_rounds_fractional_counts(airway):
    counts, genes, samples = airway
    kwargs = dict(genes=genes, samples=samples, factor="dex", test="trt", reference="untrt", covariates=["cell"])
    whole = differential_expression(counts, **kwargs)
    # +0.3 / -0.3 on every non-zero count rounds back to the same integers.
    jitter = np.where(counts > 0, counts + np.where(np.arange(counts.size).reshape(counts.shape) % 2, 0.3, -0.3), 0)
    fractional = differential_expression(jitter, **kwargs)
    assert fractional.parameters["counts_rounded"] is True
    assert fractional.table.equals(whole.table)


def test_differential_expression_rejects_bad_counts():
    samples = pl.DataFrame({"group": ["a", "a", "b", "b"]})
    kwargs = dict(samples=samples, factor="group", test="b", reference="a")
    with pytest.raises(ValueError, match="finite and non-negative"):
        differential_expression(np.array([[1.0, np.nan, 3, 4]]), genes=["g1"], **kwargs)
    with pytest.raises(ValueError, match="finite and non-negative"):
        differential_expression(np.array([[1.0, -2, 3, 4]]), genes=["g1"], **kwargs)
    with pytest.raises(ValueError, match="1 x 4 but there are 2 genes"):
        differential_expression(np.array([[1.0, 2, 3, 4]]), genes=["g1", "g2"], **kwargs)
    with pytest.raises(ValueError, match="unique"):
        differential_expression(np.ones((2, 4)), genes=["g1", "g1"], **kwargs)


def test_independent_filtering_reproduces_deseq2_padj(r_table):
    # R's own p-values and base means in, R's padj out (DESeq2 1.38 pvalueAdjustment, alpha 0.1).
    reference = r_table("pasilla_de_condition.tsv.gz")
    padj = independent_filtering(
        reference["pvalue"].fill_null(np.nan).to_numpy(), base_mean=reference["base_mean"].to_numpy()
    )
    np.testing.assert_allclose(padj, reference["padj"].fill_null(np.nan).to_numpy(), rtol=1e-12, equal_nan=True)


def test_design_matrix_treatment_codes_reference_as_baseline():
    samples = pl.DataFrame({"batch": ["x", "y", "x", "y"], "group": ["ctl", "ctl", "kd", "kd"]})
    matrix, names = design_matrix(samples, factor="group", reference="ctl", covariates=["batch"])
    assert names == ["Intercept", "batch[T.y]", "group[T.kd]"]
    # By hand: intercept, batch == "y", group == "kd".
    np.testing.assert_array_equal(matrix, [[1, 0, 0], [1, 1, 0], [1, 0, 1], [1, 1, 1]])


def _design(**columns) -> pl.DataFrame:
    return pl.DataFrame(columns)


def test_check_design_accepts_pasilla_layout(pasilla):
    _, _, samples = pasilla
    start = time.perf_counter()
    check_design(samples, factor="condition", test="treated", reference="untreated", covariates=["type"])
    assert time.perf_counter() - start < 0.1


def test_check_design_missing_column():
    samples = _design(group=["a", "a", "b", "b"])
    with pytest.raises(DesignError, match=r"\['batch'\] not in the sample table"):
        check_design(samples, factor="group", test="b", reference="a", covariates=["batch"])


def test_check_design_missing_level():
    samples = _design(group=["a", "a", "b", "b"])
    with pytest.raises(DesignError, match=r"test level 'c' not found in 'group'; its levels are \['a', 'b'\]"):
        check_design(samples, factor="group", test="c", reference="a")


def test_check_design_one_replicate():
    # DESeq2 1.38 fits a level of one sample while residual df remain (3 samples, 2 coefficients): accepted.
    check_design(_design(group=["a", "a", "b"]), factor="group", test="b", reference="a")
    check_design(_design(group=["a", "a", "a", "b", "c"]), factor="group", test="b", reference="c")
    # One sample per level: as many coefficients as samples, which DESeq() refuses too; the message names them.
    with pytest.raises(DesignError, match=r"2 coefficients for 2 samples: no residual degrees of freedom to "
                                          r"estimate dispersion; 'group' level\(s\) \['a', 'b'\] have one sample "
                                          "each: add replicates"):
        check_design(_design(group=["a", "b"]), factor="group", test="b", reference="a")
    with pytest.raises(DesignError, match=r"4 coefficients for 4 samples.*\['b', 'c'\] have one sample each"):
        check_design(_design(group=["a", "a", "b", "c"], batch=["1", "2", "1", "1"]), factor="group", test="b",
                     reference="a", covariates=["batch"])


def test_check_design_confounded_covariate():
    # batch 1 holds only group a, batch 2 only group b: batch and group are the same split.
    samples = _design(group=["a", "a", "b", "b"], batch=["1", "1", "2", "2"])
    with pytest.raises(DesignError, match=r"not full rank \(2 < 3\); drop covariate\(s\) \['batch'\]"):
        check_design(samples, factor="group", test="b", reference="a", covariates=["batch"])


def test_check_design_numeric_covariate_says_it_is_categorical():
    # A RIN per sample (6 distinct numbers): one coefficient per value, 1 + 5 + 1 = 7 for 6 samples, so the design
    # is not full rank. The generic 'confounded' hint alone sent a user to look for a confounding that R's DESeq2
    # (one slope for a numeric column) would not have: the message names the numeric covariate (trialE).
    samples = _design(group=["a", "b", "a", "b", "a", "b"], rin=["9.1", "8.7", "9.5", "7.9", "8.8", "9.0"])
    with pytest.raises(DesignError, match=r"not full rank \(6 < 7\); drop covariate\(s\) \['rin'\].*; 'rin' "
                                          r"\(6 distinct values\) holds numbers, fitted as categorical levels.*"
                                          r"list it under numeric_covariates"):
        check_design(samples, factor="group", test="b", reference="a", covariates=["rin"])
    # Full rank but no residual df: 3 distinct numbers in 4 samples (1 + 2 + 1 = 4 coefficients).
    samples = _design(group=["a", "a", "b", "b"], rin=["9.1", "8.7", "9.5", "9.1"])
    with pytest.raises(DesignError, match=r"4 coefficients for 4 samples.*'rin' \(3 distinct values\) holds numbers"):
        check_design(samples, factor="group", test="b", reference="a", covariates=["rin"])
    # Two numeric values (a batch coded 1 / 2) are one indicator either way: no hint.
    samples = _design(group=["a", "a", "b", "b"], batch=["1", "1", "2", "2"])
    with pytest.raises(DesignError) as caught:
        check_design(samples, factor="group", test="b", reference="a", covariates=["batch"])
    assert "holds numbers" not in str(caught.value)
    # A batch coded 1, 1, 2, 3, 3, 4 (labels: integers, most shared) is not named either (review, Session 17);
    # ages 31, 45, 52, 60, 38, 41 (integers, each its own) are, with the conditional advice.
    samples = _design(group=["a", "b", "a", "b", "a", "b"], batch=["1", "1", "2", "3", "3", "4"],
                      age=["31", "45", "52", "60", "38", "41"])
    assert _numeric_hint(samples, ["batch"]) == ""
    assert _numeric_hint(samples, ["batch", "age"]) == (
        "; 'age' (6 distinct values) holds numbers, fitted as categorical levels (one coefficient per distinct "
        "value): if 'age' is a measurement (RIN, age) rather than labels, list it under numeric_covariates in "
        "study.yaml to fit one slope, as R's DESeq2 fits a numeric column")


def test_check_design_numeric_covariate_is_one_slope():
    # The same RIN listed as numeric: 1 + 1 + 1 = 3 coefficients for 6 samples, full rank.
    samples = _design(sample_id=[f"s{i}" for i in range(6)], group=["a", "b", "a", "b", "a", "b"],
                      rin=["9.1", "8.7", "9.5", "7.9", "8.8", "9.0"])
    check_design(samples, factor="group", test="b", reference="a", covariates=["rin"], numeric=["rin"])
    # A value that is no number, or not finite, is refused naming the sample and the value.
    bad = samples.with_columns(pl.Series("rin", ["9.1", "8.7", "9.5", "high", "8.8", "inf"]))
    with pytest.raises(DesignError, match=r"numeric covariate 'rin' of sample 's3' is 'high', not a finite number "
                                          r"\(2 such value"):
        check_design(bad, factor="group", test="b", reference="a", covariates=["rin"], numeric=["rin"])
    # A constant numeric column is collinear with the intercept (DESeq2 refuses it as not full rank).
    constant = samples.with_columns(pl.lit("8.0").alias("rin"))
    with pytest.raises(DesignError, match=r"not full rank \(2 < 3\).*\['rin'\] hold one value"):
        check_design(constant, factor="group", test="b", reference="a", covariates=["rin"], numeric=["rin"])
    with pytest.raises(DesignError, match=r"numeric covariate\(s\) \['rin'\] are not among the covariates"):
        check_design(samples, factor="group", test="b", reference="a", numeric=["rin"])


def test_design_matrix_numeric_covariate_is_its_value_uncentred():
    samples = pl.DataFrame({"rin": ["7.5", "8", "6.25", "9"], "group": ["ctl", "ctl", "kd", "kd"]})
    matrix, names = design_matrix(samples, factor="group", reference="ctl", covariates=["rin"], numeric=["rin"])
    # R: model.matrix(~ rin + group) names the slope column 'rin' and holds the values as given.
    assert names == ["Intercept", "rin", "group[T.kd]"]
    np.testing.assert_array_equal(matrix, [[1, 7.5, 0], [1, 8, 0], [1, 6.25, 1], [1, 9, 1]])


def test_check_design_missing_values():
    samples = _design(group=["a", "a", "b", "b"], batch=["1", None, "2", "1"])
    with pytest.raises(DesignError, match="'batch' has 1 missing value"):
        check_design(samples, factor="group", test="b", reference="a", covariates=["batch"])


def test_check_design_same_test_and_reference():
    samples = _design(group=["a", "a", "b", "b"])
    with pytest.raises(DesignError, match="test and reference are both 'a'"):
        check_design(samples, factor="group", test="a", reference="a")


def test_check_design_no_residual_degrees_of_freedom():
    # Full rank, but 4 coefficients (intercept, pair[T.p2], lane[T.l2], group[T.b]) for 4 samples.
    samples = _design(group=["a", "a", "b", "b"], pair=["p1", "p2", "p1", "p2"], lane=["l1", "l1", "l1", "l2"])
    with pytest.raises(DesignError, match="4 coefficients for 4 samples"):
        check_design(samples, factor="group", test="b", reference="a", covariates=["pair", "lane"])


def test_volcano_and_ma_plot_return_small_pngs():
    de = pl.DataFrame(
        {
            "feature_id": ["g1", "g2", "g3", "g4"],
            "base_mean": [0.0, 10.0, 500.0, 3.0],
            "log2_fold_change": [None, 1.5, -2.0, 0.1],
            "pvalue": [None, 0.0, 1e-8, 0.7],
            "padj": [None, 0.0, 1e-7, None],
        },
        schema_overrides={"log2_fold_change": pl.Float64, "pvalue": pl.Float64, "padj": pl.Float64},
    )
    for plot in (volcano_plot, ma_plot):
        png = plot(de, title="toy")
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert len(png) < 150_000
