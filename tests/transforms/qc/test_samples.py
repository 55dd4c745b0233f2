"""Sample QC on real counts (pasilla) and planted outliers; PCA against scikit-learn; consensus on planted groups."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.decomposition import PCA

from schemas.manifest import QcSettings
from transforms.expression.study import DenseBlock
from transforms.qc import samples as qc
from transforms.qc.study import qc_frame, qc_study, structure_study, top_raw_log2_cpm

PASILLA = Path(__file__).resolve().parents[3] / "examples" / "pasilla" / "counts.tsv"

# awk -F'\t' 'NR==1{for(i=2;i<=NF;i++)h[i]=$i; next} {for(i=2;i<=NF;i++){s[i]+=$i; if($i>0)d[i]++}}
#     END{for(i=2;i<=8;i++) print h[i], s[i], d[i]}' examples/pasilla/counts.tsv
PASILLA_BY_HAND = {"untreated1": (13972512, 10529), "untreated2": (21911438, 11154), "untreated3": (8358426, 10202),
                   "untreated4": (9841335, 10281), "treated1": (18670279, 11208), "treated2": (9571826, 10323),
                   "treated3": (10343856, 10332)}


def _pasilla() -> pl.DataFrame:
    return pl.read_csv(PASILLA, separator="\t")


def _long(wide: pl.DataFrame) -> pl.LazyFrame:
    return (wide.unpivot(index="gene_id", variable_name="sample_id", value_name="count")
            .rename({"gene_id": "feature_id"})
            .with_columns(pl.lit("gene_counts").alias("assay"), pl.lit(None, pl.Int64).alias("gene_id"),
                          pl.col("count").cast(pl.Float64)).lazy())


def _log2_cpm(counts: pl.LazyFrame) -> pl.LazyFrame:
    """log2(CPM + 1): a plain log scale for the tests (the stage uses VST, else edgeR's log2 CPM)."""
    return counts.with_columns(
        (pl.col("count") / pl.col("count").sum().over("sample_id") * 1e6 + 1).log(2).alias("log2_cpm"),
        pl.lit("counts").alias("source"))


def _stage(counts: pl.LazyFrame, tmp_path: Path, **settings: object) -> dict[str, pl.DataFrame]:
    """sample_qc from the counts, embeddings and clusters from a plain log2 CPM (no VST)."""
    empty_vst = pl.LazyFrame(schema={"assay": pl.String, "sample_id": pl.String, "feature_id": pl.String,
                                     "gene_id": pl.Int64, "vst": pl.Float64})
    parsed = QcSettings.model_validate(settings)
    found: dict[str, list[pl.DataFrame]] = {}
    for stage in (qc_study(counts, pl.Series([], dtype=pl.Int64), settings=parsed, workdir=tmp_path),
                  structure_study(empty_vst, _log2_cpm(counts), settings=parsed, workdir=tmp_path)):
        for table, frame in stage.frames:
            found.setdefault(table, []).append(frame)
    return {t: pl.concat(f) for t, f in found.items()}


def test_count_metrics_library_size_and_detected_genes_by_hand():
    wide = _pasilla()
    samples = [c for c in wide.columns if c != "gene_id"]
    metrics = qc.count_metrics(wide.select(samples).to_numpy().astype(float))
    found = {s: (metrics.library_size[i], metrics.detected_genes[i]) for i, s in enumerate(samples)}
    assert found == PASILLA_BY_HAND
    assert np.isnan(metrics.pct_mito).all()  # no mitochondrial rows given


def test_count_metrics_pct_top100_and_mito_on_a_small_block():
    counts = np.zeros((150, 2))
    counts[:100, 0] = 1  # sample 0: 100 features of 1 and 50 of 0 -> top 100 hold everything
    counts[:, 1] = 2     # sample 1: 150 features of 2 -> top 100 hold 200 / 300
    mito = np.zeros(150, dtype=bool)
    mito[:3] = True      # sample 0: 3 / 100 on mito; sample 1: 6 / 300
    metrics = qc.count_metrics(counts, mito=mito)
    np.testing.assert_allclose(metrics.pct_top100, [100.0, 100 * 200 / 300])
    np.testing.assert_allclose(metrics.pct_mito, [3.0, 2.0])


def test_mad_outliers_follow_scater_is_outlier():
    # scater::isOutlier(c(10, 11, 12, 13, 100), nmads = 3, type = "higher"): median 12, mad = 1.4826 * 1
    values = np.array([10.0, 11, 12, 13, 100])
    assert qc.mad_outliers(values, nmads=3, side="higher").tolist() == [False, False, False, False, True]
    assert not qc.mad_outliers(values, nmads=3, side="lower").any()
    # median 11.5, absolute deviations 4.5 4.4 .5 .5 .5 1.5 -> MAD 1.0 x 1.4826; 11.5 - 3 x 1.4826 = 7.052
    values = np.array([7.0, 7.1, 11, 12, 12, 13])
    assert qc.mad_outliers(values, nmads=3, side="lower").tolist() == [True, False, False, False, False, False]


def test_pca_equals_scikit_learn_up_to_sign():
    rng = np.random.default_rng(7)
    block = rng.normal(size=(40, 9)) + np.linspace(0, 3, 9)  # genes x samples
    fit = qc.pca(block)
    reference = PCA(n_components=8, svd_solver="full").fit(block.T)
    expected = reference.transform(block.T)
    assert fit.scores.shape == (9, 8)
    for component in range(8):
        a, b = fit.scores[:, component], expected[:, component]
        sign = np.sign(a @ b)
        np.testing.assert_allclose(a, sign * b, atol=1e-10)
    np.testing.assert_allclose(fit.explained, reference.explained_variance_ratio_, atol=1e-12)


def test_pca_equals_numpy_svd_of_the_centred_transpose():
    rng = np.random.default_rng(3)
    block = rng.poisson(20, size=(30, 6)).astype(float)
    x = block.T - block.T.mean(axis=0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    fit = qc.pca(block)
    np.testing.assert_allclose(np.abs(fit.scores), np.abs(u[:, :5] * s[:5]), atol=1e-10)


def test_top_variable_keeps_the_most_variable_complete_rows():
    block = np.array([[1.0, 1, 1], [0, 5, 10], [0, 1, 2], [np.nan, 0, 100]])
    np.testing.assert_array_equal(qc.top_variable(block, top_genes=2), block[[1, 2]])


def test_consensus_clusters_recover_planted_groups():
    rng = np.random.default_rng(11)
    base = rng.normal(size=(200, 1))
    group_a = base + rng.normal(scale=0.3, size=(200, 5))
    group_b = -base + rng.normal(scale=0.3, size=(200, 5))
    found = qc.consensus_clusters(np.hstack([group_a, group_b]))
    assert found is not None
    assert found.chosen_k == 2
    assert found.consensus[2].tolist() == [1] * 5 + [2] * 5
    assert found.hierarchical[2].tolist() == [1] * 5 + [2] * 5
    assert found.pac[2] == 0.0


def _consensus_by_resample_loop(values: np.ndarray, *, resamples: int, seed: int = 1) -> dict[str, dict]:
    """Monti et al.'s consensus written out: per resample, add 1 to every drawn pair and, per k, to every pair the
    subsample's average-linkage tree (scipy ``fcluster``) puts together; the n x n matrices one by one."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    n = values.shape[1]
    size = int(np.ceil(qc.SUBSAMPLE * n))
    ks = list(range(2, min(qc.MAX_K, n - 1, size - 1) + 1))
    full = np.round(qc.correlation_distance(np.corrcoef(values, rowvar=False)), qc.DISTANCE_DIGITS)
    rng = np.random.default_rng(seed)
    sampled = np.zeros((n, n))
    together = {k: np.zeros((n, n)) for k in ks}
    for _ in range(resamples):
        pick = np.sort(rng.choice(n, size=size, replace=False))
        tree = linkage(squareform(full[np.ix_(pick, pick)], checks=False), method="average")
        for i, a in enumerate(pick):
            sampled[a, pick] += 1
            for k in ks:
                labels = fcluster(tree, t=k, criterion="maxclust")
                together[k][a, pick] += labels == labels[i]
    upper = np.triu_indices(n, 1)
    pac, consensus, hierarchical = {}, {}, {}
    for k in ks:
        matrix = together[k] / sampled
        np.fill_diagonal(matrix, 1)
        pac[k] = float(((matrix[upper] > 0.1) & (matrix[upper] < 0.9)).mean())
        consensus[k] = qc.hierarchical_clusters(1 - matrix, k=k)
        hierarchical[k] = qc.hierarchical_clusters(full, k=k)
    return {"pac": pac, "consensus": consensus, "hierarchical": hierarchical}


def test_consensus_pair_counts_by_matrix_product_equal_the_resample_loop():
    values, _ = _planted(3, 12, seed=21)  # noisy: PAC between 0 and 1 for several k, so the counts matter
    values = values + np.random.default_rng(3).normal(scale=2.0, size=values.shape)
    found = qc.consensus_clusters(values, resamples=15)
    expected = _consensus_by_resample_loop(values, resamples=15)
    assert found is not None
    assert found.pac == expected["pac"]  # exact: the same integer counts over the same draws
    assert len(set(found.pac.values()) - {0.0, 1.0}) >= 3
    for k in found.ks:
        assert found.consensus[k].tolist() == expected["consensus"][k].tolist()
        assert found.hierarchical[k].tolist() == expected["hierarchical"][k].tolist()


def test_maxclust_cuts_like_scipy_fcluster_also_with_tied_heights():
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist

    rng = np.random.default_rng(12)
    for n in (4, 17, 64):
        points = np.round(rng.normal(size=(n, 3)), 1)  # coarse coordinates: many equal distances and merge heights
        tree = linkage(np.round(pdist(points), 2), method="average")
        for k in range(1, n + 1):
            assert np.array_equal(qc._maxclust(tree, k), fcluster(tree, t=k, criterion="maxclust")), (n, k)


def test_qc_study_flags_planted_outliers(tmp_path):
    wide = _pasilla()
    rng = np.random.default_rng(5)
    # treated3 thinned to 2% of its reads (a failed library); untreated4's counts shuffled across genes (a swap)
    thinned = rng.binomial(wide["treated3"].to_numpy(), 0.02)
    shuffled = rng.permutation(wide["untreated4"].to_numpy())
    planted = wide.with_columns(pl.Series("treated3", thinned), pl.Series("untreated4", shuffled))
    tables = _stage(_long(planted), tmp_path)
    qc_rows = tables["sample_qc"].sort("sample_id")
    flags = dict(zip(qc_rows["sample_id"], qc_rows["qc_flags"].to_list(), strict=True))
    assert "low_library_size" in flags["treated3"]
    assert "low_correlation" in flags["untreated4"]
    assert {s for s, f in flags.items() if f} == {"treated3", "untreated4"}
    assert dict(zip(qc_rows["sample_id"], qc_rows["qc_pass"], strict=True))["treated1"] is True
    assert qc_rows.filter(pl.col("sample_id") == "treated3")["library_size"].item() == thinned.sum()


def test_qc_study_writes_pca_and_clusters_of_every_sample(tmp_path):
    tables = _stage(_long(_pasilla()), tmp_path)
    embeddings = tables["sample_embeddings"]
    assert embeddings.height == 7 * 6  # 7 samples x (7 - 1) components
    assert set(embeddings["method"]) == {"pca"}
    clusters = tables["sample_clusters"]
    assert set(clusters["method"]) == {"hierarchical", "consensus"}
    assert clusters.group_by("method", "k").len()["len"].to_list() == [7] * clusters.select("method", "k").n_unique()
    assert tables["sample_qc"]["qc_pass"].all()


def test_structure_study_stages_the_clusters_of_an_assay_as_one_frame(tmp_path):
    """Every method and k of an assay in one frame (one staged file), not a file per method and k: ~10 files of
    ~80 rows a small study, each a sink, a footer read at its commit and in every catalog rebuild."""
    empty_vst = pl.LazyFrame(schema={"assay": pl.String, "sample_id": pl.String, "feature_id": pl.String,
                                     "gene_id": pl.Int64, "vst": pl.Float64})
    stage = structure_study(empty_vst, _log2_cpm(_long(_pasilla())), settings=QcSettings(), workdir=tmp_path)
    frames = [frame for table, frame in stage.frames if table == "sample_clusters"]
    assert len(frames) == 1
    ks = sorted(int(k) for k in stage.metadata["sample_clusters"]["gene_counts.pac"])
    assert len(ks) > 1
    per_k = frames[0].group_by("method", "k").agg(pl.col("sample_id").sort()).sort("method", "k")
    assert per_k.select("method", "k").rows() == [(m, k) for m in ("consensus", "hierarchical") for k in ks]
    assert per_k["sample_id"].to_list() == [sorted(PASILLA_BY_HAND)] * (2 * len(ks))


@pytest.mark.parametrize("nmads", [0.5, 3.0])
def test_qc_study_nmads_from_the_manifest_moves_the_threshold(tmp_path, nmads):
    tables = _stage(_long(_pasilla()), tmp_path, nmads=nmads)
    failed = (~tables["sample_qc"]["qc_pass"]).sum()
    assert (failed > 0) == (nmads < 1)


def test_top_raw_log2_cpm_is_edger_log_cpm_of_the_most_variable_complete_rows():
    counts = np.array([[10.0, 0], [30, 50], [np.nan, 1], [60, 150]])
    lib = np.array([100.0, 200])
    prior = 2 * lib / lib.mean()  # edgeR addPriorCount: prior.count scaled by library size over the mean
    expected = np.log2((counts[[0, 1, 3]] + prior) / (lib + 2 * prior) * 1e6)
    by_variance = np.argsort([-np.var(row, ddof=1) for row in expected], kind="stable")
    for cells in (1, 2, 10**6):
        found = top_raw_log2_cpm(counts, np.arange(2), top_genes=3, block_cells=cells)
        np.testing.assert_allclose(found, expected[by_variance], rtol=1e-12)


def _pasilla_block() -> tuple[np.ndarray, np.ndarray]:
    """Pasilla counts (Fortran order, as dense_block builds them) with one missing cell and 13 'mito' rows."""
    wide = _pasilla()
    counts = np.asfortranarray(wide.drop("gene_id").to_numpy().astype(float))
    counts[5, 2] = np.nan
    mito = np.zeros(counts.shape[0], dtype=bool)
    mito[100:113] = True
    return counts, mito


@pytest.mark.parametrize("cells", [1, 3 * 14_000, 10_000])
def test_count_metrics_in_small_sample_blocks_equal_one_block_and_numpy_by_hand(cells):
    counts, mito = _pasilla_block()
    whole = qc.count_metrics(counts, mito=mito, block_cells=10**12)
    blocks = qc.count_metrics(counts, mito=mito, block_cells=cells)
    for name in ("library_size", "detected_genes", "pct_top100", "pct_mito"):
        np.testing.assert_array_equal(getattr(blocks, name), getattr(whole, name))  # same bits
    complete = counts[~np.isnan(counts).any(axis=1)]
    keep_mito = mito[~np.isnan(counts).any(axis=1)]
    for j in range(counts.shape[1]):
        column = [float(v) for v in complete[:, j]]
        library = sum(column)
        assert whole.library_size[j] == library
        assert whole.detected_genes[j] == sum(v > 0 for v in column)
        assert whole.pct_top100[j] == pytest.approx(100 * sum(sorted(column, reverse=True)[:100]) / library,
                                                    rel=1e-12)
        assert whole.pct_mito[j] == pytest.approx(100 * complete[keep_mito, j].sum() / library, rel=1e-12)


@pytest.mark.parametrize("cells", [14_000 * 3, 10**12])
def test_count_metrics_of_a_complete_fortran_block_sum_each_columns_top_100_in_order(cells):
    counts, mito = _pasilla_block()
    complete = np.asfortranarray(counts[~np.isnan(counts).any(axis=1)])  # as dense_block lays a study out
    found = qc.count_metrics(complete, mito=mito[~np.isnan(counts).any(axis=1)], block_cells=cells)
    for j in range(complete.shape[1]):
        column = [float(v) for v in complete[:, j]]
        assert found.library_size[j] == sum(column)
        assert found.pct_top100[j] == 100 * sum(sorted(column, reverse=True)[:100]) / sum(column)  # same bits


@pytest.mark.parametrize("cells", [1, 7, 50])
def test_top_variable_in_small_row_blocks_equals_one_block_and_row_variances(cells):
    rng = np.random.default_rng(2)
    block = np.asfortranarray(rng.normal(size=(60, 7)) * rng.uniform(0.1, 3, size=(60, 1)))
    block[4, 1] = np.nan
    whole = qc.top_variable(block, top_genes=20, block_cells=10**9)
    np.testing.assert_array_equal(qc.top_variable(block, top_genes=20, block_cells=cells), whole)
    variances = {i: sum((v - row.mean()) ** 2 for v in row) / 6 for i, row in enumerate(block) if i != 4}
    chosen = sorted(variances, key=lambda i: -variances[i])[:20]
    np.testing.assert_array_equal(whole, block[chosen])


@pytest.mark.parametrize("cells", [1, 4 * 30, 29 * 30])
def test_median_correlations_in_sample_blocks_equal_the_whole_matrix_by_hand(cells):
    rng = np.random.default_rng(4)
    values = rng.normal(size=(80, 30)) + rng.normal(size=(80, 1))
    by_hand = []
    for i in range(30):
        others = [np.corrcoef(values[:, i], values[:, j])[0, 1] for j in range(30) if j != i]
        by_hand.append(np.median(others))
    np.testing.assert_allclose(qc.median_correlations(values, whole_up_to=1, block_cells=cells), by_hand,
                               rtol=1e-12)
    np.testing.assert_allclose(qc.median_correlations(values, whole_up_to=30), by_hand, rtol=1e-12)


def test_sample_qc_in_tiny_blocks_equals_one_block(tmp_path):
    wide = _pasilla()
    rng = np.random.default_rng(5)
    wide = wide.with_columns(pl.Series("treated3", rng.binomial(wide["treated3"].to_numpy(), 0.02)))
    counts, mito = _pasilla_block()
    counts[:, 6] = wide["treated3"].to_numpy()
    block = DenseBlock(counts, wide["gene_id"], pl.Series(np.arange(counts.shape[0])),
                       pl.Series(wide.columns[1:]))
    settings = QcSettings.model_validate({"nmads": 1.0})
    mito_ids = set(np.flatnonzero(mito).tolist())
    whole = qc_frame(block, assay="a", mito=mito_ids, settings=settings, summary={})
    tiny = qc_frame(block, assay="a", mito=mito_ids, settings=settings, summary={}, block_cells=5_000,
                    correlation_block=2)
    assert whole["qc_flags"].to_list() == tiny["qc_flags"].to_list()
    assert whole["qc_flags"].list.len().sum() > 0  # something to agree on
    exact = whole.drop("median_correlation")
    assert exact.equals(tiny.drop("median_correlation"))  # same bits
    np.testing.assert_allclose(tiny["median_correlation"], whole["median_correlation"], rtol=1e-12)


def _planted(groups: int, per_group: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(200, groups)) * 2
    truth = np.repeat(np.arange(groups), per_group)
    rng.shuffle(truth)
    return centres[:, truth] + rng.normal(scale=0.5, size=(200, truth.size)), truth


def test_consensus_above_max_samples_clusters_a_seeded_subsample_and_assigns_the_rest():
    values, truth = _planted(3, 30, seed=8)
    found = qc.consensus_clusters(values, resamples=20, max_samples=40)
    assert found is not None
    assert found.pac[3] == 0.0
    chosen = np.sort(np.random.default_rng(1).choice(90, size=40, replace=False))
    alone = qc.consensus_clusters(values[:, chosen], resamples=20)
    assert alone is not None
    assert found.pac == alone.pac
    assert found.within == alone.within
    for labels in (found.consensus[3], found.hierarchical[3]):
        pairs = truth[:, None] == truth[None, :]
        assert ((labels[:, None] == labels[None, :]) == pairs).all()  # every sample in its planted group
        assert labels.tolist() == qc._renumber(labels).tolist()  # numbered 1..k by first sample
    # at or below max_samples nothing changes
    every = qc.consensus_clusters(values, resamples=20)
    same = qc.consensus_clusters(values, resamples=20, max_samples=90)
    assert every is not None
    assert same is not None
    assert all((every.consensus[k] == same.consensus[k]).all() for k in every.ks)
    assert every.pac == same.pac


def test_assign_to_centroids_by_hand():
    values = np.array([[1.0, 2, 0, 0, 1.9, 0.1], [2, 4, 1, 1.2, 4.1, 1], [0, 0, 3, 3.1, 0.2, 2.8]])
    chosen = np.array([0, 1, 2, 3])
    labels = np.array([1, 1, 2, 2])
    first, second = values[:, :2].mean(axis=1), values[:, 2:4].mean(axis=1)
    expected = [1, 1, 2, 2] + [1 + int(np.corrcoef(values[:, j], second)[0, 1] > np.corrcoef(values[:, j], first)[0, 1])
                                for j in (4, 5)]
    assert qc.assign_to_centroids(values, chosen, labels).tolist() == expected
    assert expected == [1, 1, 2, 2, 1, 2]


@pytest.mark.parametrize("exclude", [True, False])
def test_qc_study_marks_failed_samples_excluded_only_when_the_study_says_so(tmp_path, exclude):
    wide = _pasilla()
    thinned = np.random.default_rng(5).binomial(wide["treated3"].to_numpy(), 0.02)
    tables = _stage(_long(wide.with_columns(pl.Series("treated3", thinned))), tmp_path, exclude_failed=exclude)
    excluded = tables["sample_qc"].filter(pl.col("excluded"))["sample_id"].to_list()
    assert excluded == (["treated3"] if exclude else [])
