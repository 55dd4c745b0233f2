"""The study-level driver against edgeR 3.40 / DESeq2 1.38 figures (tests/data/r_reference, see its README),
numpy recomputations and hand-computed tiny blocks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from schemas.manifest import Contrast, QcSettings
from transforms.expression import normalise, study
from transforms.expression.differential import differential_expression
from transforms.qc.study import qc_study, structure_study

PASILLA_SAMPLES = ["untreated1", "untreated2", "untreated3", "untreated4", "treated1", "treated2", "treated3"]


@pytest.fixture(scope="module")
def pasilla_block(pasilla_long: pl.DataFrame) -> study.DenseBlock:
    return study.dense_block(pasilla_long.lazy(), value="count")


@pytest.fixture(scope="module")
def pasilla_model(pasilla_block: study.DenseBlock) -> study.CountModel:
    return study.fit_counts(pasilla_block)


@pytest.fixture(scope="module")
def pasilla_normalised(pasilla_block: study.DenseBlock, pasilla_model: study.CountModel) -> pl.DataFrame:
    return pl.concat(study.normalised_count_rows(pasilla_block, pasilla_model))


def test_dense_block_sorts_features_and_samples_by_id(pasilla_block: study.DenseBlock) -> None:
    # 14,599 genes x 7 samples (SOURCE.md); head -2 pasilla_gene_counts.tsv: FBgn0000003 0 0 0 0 0 0 1 (untreated1-4,
    # treated1-3), so in sample-id order (treated1-3, untreated1-4) its one read is in the third column
    assert pasilla_block.values.shape == (14599, 7)
    assert pasilla_block.sample_ids.to_list() == sorted(PASILLA_SAMPLES)
    assert pasilla_block.feature_ids.to_list() == sorted(pasilla_block.feature_ids.to_list())
    assert pasilla_block.feature_ids[0] == "FBgn0000003"
    assert pasilla_block.values[0].tolist() == [0, 0, 1, 0, 0, 0, 0]
    assert pasilla_block.values.flags.f_contiguous


def test_long_rows_are_written_in_gene_order_within_each_frame() -> None:
    # Each frame becomes one stored Parquet file: rows by gene_id (unmapped features last), feature_id, then sample,
    # so a one-gene query reads one run of each file. F2 and F5 are one gene; F4 is unmapped.
    long = pl.DataFrame({
        "sample_id": [s for s in ["s5", "s3", "s1", "s4", "s2"] for _ in range(5)],
        "feature_id": ["F1", "F2", "F3", "F4", "F5"] * 5,
        "gene_id": [30, 10, 20, None, 10] * 5,
        "count": [float(10 + i % 7) for i in range(25)],
    })
    block = study.dense_block(long.lazy(), value="count")
    assert block.feature_ids.to_list() == ["F2", "F5", "F3", "F1", "F4"]
    assert block.sample_ids.to_list() == ["s1", "s2", "s3", "s4", "s5"]
    model = study.fit_counts(block)
    frames = list(study.normalised_count_rows(block, model, frame_rows=10))  # 5 features: 2 samples a frame
    frames += list(study.normalised_abundance_rows(block, measure="tpm", frame_rows=10))
    for frame in frames:
        assert frame.height in (5, 10)
        ordered = frame.with_columns(pl.col("feature_id").replace_strict(
            {"F2": 0, "F5": 1, "F3": 2, "F1": 3, "F4": 4}).alias("rank")).sort("rank", "sample_id")
        assert frame.select("feature_id", "sample_id").equals(ordered.select("feature_id", "sample_id"))
    cells = pl.concat([f.select("sample_id", "feature_id") for f in frames[:3]])
    assert cells.sort("sample_id", "feature_id").equals(long.select("sample_id", "feature_id").sort(
        "sample_id", "feature_id"))


def _stage_tables(output: study.StageOutput) -> dict[str, pl.DataFrame]:
    """A stage's frames per table, rows sorted by every key column (the order rows are written in is free)."""
    frames: dict[str, list[pl.DataFrame]] = {}
    for table, frame in output.frames:
        frames.setdefault(table, []).append(frame)
    keys = ["assay", "contrast", "sample_id", "feature_id", "method", "k", "component"]
    tables = {table: pl.concat(parts).with_columns(pl.col(pl.Enum).cast(pl.String))  # the writer's coded ids as text
              for table, parts in frames.items()}
    return {table: frame.sort([k for k in keys if k in frame.columns]) for table, frame in tables.items()}


@pytest.mark.slow  # DE, VST and clustering of pasilla twice: ~10 s
def test_study_stages_do_not_depend_on_the_row_order_of_the_long_table(
        pasilla_long: pl.DataFrame, pasilla_attributes: pl.DataFrame, tmp_path: Path) -> None:
    # The stored long rows come back in any order (an unordered join at ingest, a parallel scan): the dense blocks
    # and every figure computed from them must be the same bit for bit.
    counts = pasilla_long.with_columns(pl.lit("counts").alias("assay"))
    shuffled = counts.sample(fraction=1.0, shuffle=True, seed=12)
    assert not shuffled["feature_id"].equals(counts["feature_id"])
    abundance = pl.LazyFrame(schema={"assay": pl.String, "measure": pl.String, "sample_id": pl.String,
                                     "feature_id": pl.String, "gene_id": pl.Int64, "value": pl.Float64})
    contrast = Contrast(name="treated_vs_untreated", factor="condition", test="treated", reference="untreated",
                        covariates=["type"])
    settings = QcSettings()

    def stages(rows: pl.DataFrame) -> tuple[study.DenseBlock, dict[str, pl.DataFrame]]:
        tables = _stage_tables(study.normalise_study(rows.lazy(), abundance, pasilla_attributes,
                                                      zscore_reference=None, workdir=tmp_path))
        tables |= _stage_tables(study.differential_study(rows.lazy(), pasilla_attributes, contrasts=[contrast],
                                                         workdir=tmp_path))
        tables |= _stage_tables(qc_study(rows.lazy(), pl.Series([], dtype=pl.Int64), settings=settings,
                                         workdir=tmp_path))
        vst = tables["rna_vst"].sample(fraction=1.0, shuffle=True, seed=len(rows))  # the stored order is free too
        tables |= _stage_tables(structure_study(vst.lazy(), tables["rna_normalized"].lazy(), settings=settings,
                                                workdir=tmp_path))
        return study.dense_block(rows.lazy(), value="count"), tables

    (block, first), (shuffled_block, second) = stages(counts), stages(shuffled)
    np.testing.assert_array_equal(shuffled_block.values, block.values)
    assert shuffled_block.feature_ids.equals(block.feature_ids)
    assert shuffled_block.sample_ids.equals(block.sample_ids)
    assert set(first) == {*study.NORMALISED_TABLES, study.DE_TABLE, "sample_qc", "sample_embeddings",
                          "sample_clusters"}
    for table, frame in first.items():
        assert frame.height > 0, table
        assert_frame_equal(second[table], frame, check_exact=True)


def test_sample_factor_rows_match_edger_and_deseq2(pasilla_block: study.DenseBlock,
                                                    pasilla_model: study.CountModel, r_table) -> None:
    # make_reference.R: colSums, calcNormFactors(method="TMM"), estimateSizeFactors
    ref = r_table("pasilla_sample_factors.tsv")
    got = study.sample_factor_rows(pasilla_block, pasilla_model)
    got = ref.select("sample_id").join(got, on="sample_id", how="left", maintain_order="left")
    np.testing.assert_array_equal(got["library_size"].to_numpy(), ref["library_size"].to_numpy())
    for column in ("tmm_factor", "size_factor"):
        np.testing.assert_allclose(got[column].to_numpy(), ref[column].to_numpy(), rtol=1e-6)


def test_normalised_count_rows_log2_cpm_matches_edger(pasilla_normalised: pl.DataFrame, r_table) -> None:
    # make_reference.R: cpm(calcNormFactors(DGEList(counts)), log=TRUE, prior.count=2)
    ref = r_table("pasilla_log2cpm.tsv")
    joined = ref.join(pasilla_normalised, on=["feature_id", "sample_id"], how="left")
    assert pasilla_normalised.height == ref.height == 14599 * 7
    np.testing.assert_allclose(joined["log2_cpm_right"].to_numpy(), joined["log2_cpm"].to_numpy(), rtol=0, atol=1e-6)
    assert (joined["log2_value"] == joined["log2_cpm_right"]).all()
    assert set(joined["source"].unique()) == {"counts"}
    assert joined["tpm"].null_count() == joined.height


def test_normalised_count_rows_zscore_matches_numpy_from_r_log2_cpm(pasilla_normalised: pl.DataFrame,
                                                                   r_table) -> None:
    ref = r_table("pasilla_log2cpm.tsv").pivot(on="sample_id", index="feature_id", values="log2_cpm")
    r = ref.select(PASILLA_SAMPLES).to_numpy()
    sd = r.std(axis=1, ddof=1)
    varying = sd > 1e-8
    expected = (r - r.mean(axis=1, keepdims=True)) / sd[:, None]
    got = (pasilla_normalised.pivot(on="sample_id", index="feature_id", values="zscore")
           .join(ref.select("feature_id"), on="feature_id", how="right").select(PASILLA_SAMPLES).to_numpy())
    np.testing.assert_allclose(got[varying], expected[varying], rtol=0, atol=1e-5)
    # 2,240 all-zero rows (SOURCE.md) have a constant log2 CPM: NULL z-scores, not rounding noise
    assert int((~varying).sum()) == 2240
    assert np.isnan(got[~varying]).all()


def test_normalised_count_rows_cpm_and_mor_by_hand(pasilla_normalised: pl.DataFrame) -> None:
    row = pasilla_normalised.filter(pl.col("feature_id") == "FBgn0000008", pl.col("sample_id") == "untreated1")
    # awk '$1=="FBgn0000008"' pasilla_gene_counts.tsv -> 92 in untreated1; R: library 13972512, TMM 0.99957312423,
    # size factor 1.1382629765908434 (pasilla_sample_factors.tsv)
    assert row["cpm"].item() == pytest.approx(92 / 13972512 * 1e6, rel=1e-12)
    assert row["tmm_cpm"].item() == pytest.approx(92 / (13972512 * 0.99957312423014155) * 1e6, rel=1e-9)
    assert row["mor"].item() == pytest.approx(92 / 1.1382629765908434, rel=1e-6)


def test_fit_counts_blockwise_equals_whole(pasilla_block: study.DenseBlock, pasilla_model: study.CountModel,
                                           pasilla_normalised: pl.DataFrame) -> None:
    model = study.fit_counts(pasilla_block, width=3)
    for name in ("library_size", "tmm_factor", "size_factor"):
        np.testing.assert_allclose(getattr(model, name), getattr(pasilla_model, name), rtol=1e-12)
    blockwise = pl.concat(study.normalised_count_rows(pasilla_block, model, width=3, frame_rows=10_000))
    key = ["sample_id", "feature_id"]
    joined = pasilla_normalised.join(blockwise, on=key, how="full")
    assert joined.height == pasilla_normalised.height == blockwise.height
    for name in ("cpm", "log2_cpm", "tmm_cpm", "mor", "zscore"):
        np.testing.assert_allclose(joined[f"{name}_right"].to_numpy(), joined[name].to_numpy(), rtol=1e-10,
                                   atol=1e-12)


def test_dense_block_memmap_equals_in_memory(pasilla_long: pl.DataFrame, pasilla_block: study.DenseBlock,
                                             tmp_path: Path) -> None:
    mapped = study.dense_block(pasilla_long.lazy(), value="count", workdir=tmp_path, in_memory_bytes=0)
    assert isinstance(mapped.values, np.memmap)
    np.testing.assert_array_equal(np.asarray(mapped.values), pasilla_block.values)
    with pytest.raises(ValueError, match="workdir"):
        study.dense_block(pasilla_long.lazy(), value="count", in_memory_bytes=0)


def test_vst_rows_match_deseq2(pasilla_block: study.DenseBlock, pasilla_model: study.CountModel,
                               r_table) -> None:
    # make_reference.R: assay(vst(dds, blind=TRUE))
    trend, method = study.fit_vst(pasilla_block, pasilla_model)
    assert method == "vst(blind=TRUE, nsub=1000)"
    got = pl.concat(study.vst_rows(pasilla_block, pasilla_model, trend, width=3))
    ref = r_table("pasilla_vst.tsv").join(got, on=["feature_id", "sample_id"], how="left")
    np.testing.assert_allclose(ref["vst_right"].to_numpy(), ref["vst"].to_numpy(), rtol=0, atol=1e-6)


@pytest.mark.slow  # DE on 14,599 genes: a few seconds
def test_differential_rows_match_deseq2(pasilla_attributes: pl.DataFrame, pasilla_block: study.DenseBlock,
                                        r_table) -> None:
    samples = study.sample_table(pasilla_block.sample_ids, pasilla_attributes,
                              columns=["condition", "type"])
    # pasilla_sample_annotation.csv: untreated1 is untreated, single-read (samples in id order: treated1-3 first)
    assert samples.row(3) == ("untreated1", "untreated", "single-read")
    result = study.differential_rows(pasilla_block, samples=samples, factor="condition", test="treated",
                                  reference="untreated", covariates=["type"])
    # make_reference.R: results(DESeq(~ type + condition), contrast=c("condition", "treated", "untreated"))
    ref = r_table("pasilla_de_condition.tsv").join(result.table, on="feature_id", how="left")
    finite = ref.drop_nulls(["log2_fold_change", "log2_fold_change_right"])
    r = np.corrcoef(finite["log2_fold_change"].to_numpy(), finite["log2_fold_change_right"].to_numpy())[0, 1]
    assert r > 0.999
    assert result.table.height == 14599
    assert result.parameters["design"] == "~ type + condition"


@pytest.mark.parametrize("seed", range(6))
def test_differential_rows_take_the_block_once_and_equal_de_on_the_hand_built_subset(seed: int) -> None:
    rng = np.random.default_rng(seed)
    genes, names = 300, [f"s{j:02d}" for j in range(12)]
    counts = rng.negative_binomial(5, 0.05, size=(genes, 12)).astype(float)
    counts[:, 4] = 0  # a sample without counts
    counts[7, 0] = np.nan  # a quarantined cell: gene 7 is left out
    order = rng.permutation(12)  # columns scanned in no canonical order
    block = study.DenseBlock(np.asfortranarray(counts[:, order]), pl.Series([f"g{i}" for i in range(genes)]),
                             pl.Series(np.arange(genes)), pl.Series([names[j] for j in order]))
    condition = ["a", "b", "c"] * 4
    samples = pl.DataFrame({"sample_id": block.sample_ids, "condition": [condition[j] for j in order]})
    keep = samples["condition"].is_in(["a", "b"]).to_numpy()
    result = study.differential_rows(block, samples=samples, factor="condition", test="b", reference="a", keep=keep)
    # by hand: genes without a missing cell, samples of a and b with counts, in id order
    used = [j for j in range(12) if condition[j] in ("a", "b") and j != 4]
    rows = [i for i in range(genes) if i != 7]
    expected = differential_expression(counts[np.ix_(rows, used)], genes=[f"g{i}" for i in rows],
                                       samples=pl.DataFrame({"sample_id": [names[j] for j in used],
                                                             "condition": [condition[j] for j in used]}),
                                       factor="condition", test="b", reference="a")
    assert result.table.drop("gene_id").equals(expected.table)  # same bits
    assert result.parameters["samples_without_counts"] == 1
    assert result.parameters["incomplete_features"] == 1


def test_normalised_abundance_rows_by_hand() -> None:
    long = pl.DataFrame({
        "sample_id": ["a", "b", "c", "d"] * 2,
        "feature_id": ["G1"] * 4 + ["G2"] * 4,
        "gene_id": [1] * 4 + [None] * 4,
        "value": [0.0, 1.0, 3.0, 7.0, 5.0, None, -2.0, 5.0],
    })
    block = study.dense_block(long.lazy(), value="value")
    rows = pl.concat(study.normalised_abundance_rows(block, measure="tpm", width=2))
    g1 = rows.filter(pl.col("feature_id") == "G1").sort("sample_id")
    # log2(x + 1) of 0, 1, 3, 7 = 0, 1, 2, 3: mean 1.5, SD (ddof=1) sqrt(5/3)
    assert g1["log2_value"].to_list() == [0.0, 1.0, 2.0, 3.0]
    np.testing.assert_allclose(g1["zscore"].to_numpy(), (np.array([0, 1, 2, 3]) - 1.5) / np.sqrt(5 / 3))
    assert g1["tpm"].to_list() == [0.0, 1.0, 3.0, 7.0]
    assert all(g1[c].null_count() == 4 for c in study.COUNT_ONLY)
    assert set(g1["source"]) == {"abundance"}
    g2 = rows.filter(pl.col("feature_id") == "G2").sort("sample_id")
    # missing and negative values have no log2 value; the two left (log2 6, log2 6) are constant: NULL z-scores
    assert g2["log2_value"].is_null().to_list() == [False, True, True, False]
    assert g2["zscore"].null_count() == 4
    # reference = samples a and b only: G1 mean 0.5, SD sqrt(0.5)
    ref = pl.concat(study.normalised_abundance_rows(block, measure="rsem", reference=np.array([1, 1, 0, 0], bool)))
    g1 = ref.filter(pl.col("feature_id") == "G1").sort("sample_id")
    np.testing.assert_allclose(g1["zscore"].to_numpy(), (np.array([0, 1, 2, 3]) - 0.5) / np.sqrt(0.5))
    assert g1["tpm"].null_count() == 4
    with pytest.raises(ValueError, match="reference population"):
        next(study.normalised_abundance_rows(block, measure="tpm", reference=np.zeros(4, bool)))
    # array intensities are already log2: G2 keeps 5, -2, 5 (mean 8/3, SD sqrt(49/3)) and its missing value
    array = pl.concat(study.normalised_abundance_rows(block, measure="microarray"))
    g2 = array.filter(pl.col("feature_id") == "G2").sort("sample_id")
    assert g2["log2_value"].to_list() == [5.0, None, -2.0, 5.0]
    np.testing.assert_allclose(g2["zscore"].to_numpy(), (np.array([5, np.nan, -2, 5]) - 8 / 3) / np.sqrt(49 / 3))


def test_row_moments_blockwise_ignore_missing_values_like_numpy() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(size=(50, 9))
    values[rng.random(values.shape) < 0.2] = np.nan
    got = normalise.row_moments([values[:, :2], values[:, 2:4], values[:, 4:]])
    np.testing.assert_allclose(got.mean, np.nanmean(values, axis=1), rtol=1e-12)
    np.testing.assert_allclose(got.sd, np.nanstd(values, axis=1, ddof=1), rtol=1e-12)


def test_fit_counts_leaves_out_incomplete_features_and_empty_samples() -> None:
    long = pl.DataFrame({
        "sample_id": ["s1", "s2", "s3", "s4"] * 3,
        "feature_id": ["A"] * 4 + ["B"] * 4 + ["C"] * 4,
        "gene_id": [1] * 4 + [2] * 4 + [3] * 4,
        "count": [10.0, 20.0, 30.0, 0.0, 5.0, 5.0, 10.0, 0.0, 1.0, None, 2.0, 0.0],
    }).filter(pl.col("count").is_not_null())  # C has no row for s2 (quarantined)
    block = study.dense_block(long.lazy(), value="count")
    model = study.fit_counts(block)
    # library sizes over A and B only: 15, 25, 40, 0; s4 has no counts
    assert model.library_size.tolist() == [15.0, 25.0, 40.0, 0.0]
    assert model.incomplete_features == 1
    assert model.columns.tolist() == [0, 1, 2]
    factors = study.sample_factor_rows(block, model)
    assert factors.filter(pl.col("sample_id") == "s4")[["tmm_factor", "size_factor"]].row(0) == (None, None)
    rows = pl.concat(study.normalised_count_rows(block, model))
    assert sorted(set(rows["feature_id"])) == ["A", "B"]
    assert sorted(set(rows["sample_id"])) == ["s1", "s2", "s3"]
    # cpm of A in s1: 10 / 15 x 1e6
    assert rows.filter(pl.col("feature_id") == "A", pl.col("sample_id") == "s1")["cpm"].item() == pytest.approx(
        10 / 15 * 1e6)


def test_fit_counts_all_empty_fails() -> None:
    long = pl.DataFrame({"sample_id": ["s1", "s2"], "feature_id": ["A", "A"], "gene_id": [1, 1], "count": [0.0, 0.0]})
    with pytest.raises(ValueError, match="no sample has counts"):
        study.fit_counts(study.dense_block(long.lazy(), value="count"))


def test_sample_table_and_reference_mask() -> None:
    attributes = pl.DataFrame({"sample_id": ["a", "b", "c"], "attribute": ["tissue"] * 3,
                               "value": ["normal", "tumour", None]})
    table = study.sample_table(pl.Series(["c", "a", "x"]), attributes, columns=["tissue", "batch"])
    assert table.columns == ["sample_id", "tissue"]
    assert table["tissue"].to_list() == [None, "normal", None]
    mask = study.reference_mask(pl.Series(["a", "b", "c"]), attributes, attribute="tissue", values=["normal"])
    assert mask.tolist() == [True, False, False]
    with pytest.raises(ValueError, match="'batch' is not a sample attribute"):
        study.reference_mask(pl.Series(["a"]), attributes, attribute="batch", values=["1"])


def test_contrast_samples_keeps_samples_with_the_filter_values():
    ids = pl.Series(["a__B", "a__T", "b__B", "c"])
    attributes = pl.DataFrame({"sample_id": ["a__B", "a__T", "b__B"], "attribute": ["cell_type"] * 3,
                               "value": ["B", "T", "B"]})
    np.testing.assert_array_equal(study.contrast_samples(ids, attributes, where={"cell_type": ["B"]}),
                                  [True, False, True, False])
    np.testing.assert_array_equal(study.contrast_samples(ids, attributes, where={}), [True] * 4)
    with pytest.raises(study.DesignError, match="filter attribute 'celltype' is not a sample attribute"):
        study.contrast_samples(ids, attributes, where={"celltype": ["B"]})


@pytest.mark.parametrize(("cell", "expected"), [((3, 150), True), ((0, 0), True), (None, False)])
def test_fit_counts_finds_a_fractional_count_in_any_column(cell, expected) -> None:
    counts = np.random.default_rng(1).poisson(20, size=(40, 230)).astype(float)
    if cell is not None:
        counts[cell] += 0.5
    counts[5, 7] = np.nan  # missing cells are not fractions
    block = study.DenseBlock(np.asfortranarray(counts), pl.Series([f"g{i}" for i in range(40)]),
                             pl.Series(np.arange(40)), pl.Series([f"s{j}" for j in range(230)]))
    assert study.fit_counts(block).rounded is expected


def test_dense_block_orders_features_by_gene_and_samples_by_id_from_batches() -> None:
    # rows arrive in two batches, in random order: genes sorted (unmapped last, then by feature id), samples by id
    rng = np.random.default_rng(3)
    n = 5000
    long = pl.DataFrame({"sample_id": [f"s{i}" for i in rng.integers(0, 40, n)],
                         "feature_id": [f"f{i}" for i in rng.integers(0, 300, n)],
                         "count": rng.poisson(5, n).astype(float)})
    long = long.unique(["sample_id", "feature_id"], keep="first", maintain_order=True)
    gene = {f: (None if int(f[1:]) % 7 == 0 else 1000 - int(f[1:])) for f in long["feature_id"]}
    long = long.with_columns(pl.Series("gene_id", [gene[f] for f in long["feature_id"]], dtype=pl.Int64))
    block = study.dense_block(pl.concat([long.slice(0, 2000), long.slice(2000)]).lazy(), value="count")
    mapped = sorted((g, f) for f, g in gene.items() if g is not None)
    features = [f for _, f in mapped] + sorted(f for f, g in gene.items() if g is None)
    samples = sorted(set(long["sample_id"]))
    assert block.feature_ids.to_list() == features
    assert block.sample_ids.to_list() == samples
    assert block.gene_ids.to_list() == [gene[f] for f in features]
    first = long.row(0, named=True)
    assert block.values[features.index(first["feature_id"]), samples.index(first["sample_id"])] == first["count"]
    assert np.isnan(block.values).sum() == len(features) * len(samples) - long.height


def test_differential_rows_fit_interleaved_groups_in_canonical_order() -> None:
    # columns a1 b1 a2 b2 ...: the fit's order (a's, then b's) is a permutation spanning the whole block
    counts = np.random.default_rng(4).negative_binomial(5, 0.05, size=(200, 8)).astype(float)
    counts[:20, 1::2] *= 4  # b up in 20 genes
    names = [f"{g}{i}" for i in range(4) for g in "ab"]
    block = study.DenseBlock(np.asfortranarray(counts), pl.Series([f"g{i}" for i in range(200)]),
                             pl.Series(np.arange(200)), pl.Series(names))
    samples = pl.DataFrame({"sample_id": names, "condition": [n[0] for n in names]})
    result = study.differential_rows(block, samples=samples, factor="condition", test="b", reference="a")
    order = [0, 2, 4, 6, 1, 3, 5, 7]
    expected = differential_expression(counts[:, order], genes=[f"g{i}" for i in range(200)],
                                       samples=samples[order], factor="condition", test="b", reference="a")
    assert result.table.drop("gene_id").equals(expected.table)


def test_coded_long_frames_are_the_text_frames_with_enum_ids() -> None:
    # normalise_study hands the writer its long frames with sample_id, feature_id and source as Enums (no text per
    # row); as text they are the frames the functions give by default, value for value.
    long = pl.DataFrame({"sample_id": [s for s in ["s2", "s1", "s3"] for _ in range(4)],
                         "feature_id": ["F1", "F2", "F3", "F4"] * 3, "gene_id": [3, 1, None, 2] * 3,
                         "count": [float(5 + i % 5) for i in range(12)]})
    block = study.dense_block(long.lazy(), value="count")
    model = study.fit_counts(block)
    pairs = [(list(study.normalised_count_rows(block, model, frame_rows=4, coded=coded)),
              list(study.normalised_abundance_rows(block, measure="tpm", frame_rows=4, coded=coded)))
             for coded in (True, False)]
    for coded, text in zip(pairs[0][0] + pairs[0][1], pairs[1][0] + pairs[1][1], strict=True):
        assert all(isinstance(coded.schema[c], pl.Enum) for c in ("sample_id", "feature_id", "source"))
        assert_frame_equal(coded.with_columns(pl.col(pl.Enum).cast(pl.String)), text, check_exact=True)
    assert pl.concat(pairs[1][0])["sample_id"].unique().sort().to_list() == ["s1", "s2", "s3"]


@pytest.mark.slow  # DE on 14,599 genes twice: ~10 s
def test_differential_study_fits_numeric_covariates_as_deseq2_also_in_a_filtered_contrast(
        pasilla_long: pl.DataFrame, pasilla_attributes: pl.DataFrame, r_table, tmp_path: Path) -> None:
    # make_numeric_covariate_reference.R: DESeq2 ~ rin + condition with rin a numeric column. A contrast with
    # numeric_covariates, and the same filtered to both conditions (all 7 samples, through the filter path), give
    # R's figures; rin as levels would leave no residual df (1 + 6 + 1 coefficients for 7 samples).
    rin = {"untreated1": "7.9", "untreated2": "8.6", "untreated3": "6.8", "untreated4": "9.1", "treated1": "7.2",
           "treated2": "8.3", "treated3": "6.5"}
    attributes = pl.concat([pasilla_attributes, pl.DataFrame({"sample_id": list(rin), "attribute": "rin",
                                                              "value": list(rin.values())})])
    counts = pasilla_long.with_columns(pl.lit("counts").alias("assay")).lazy()
    contrasts = [Contrast(name=name, factor="condition", test="treated", reference="untreated", covariates=["rin"],
                          numeric_covariates=["rin"], filter=where)
                 for name, where in (("all", {}), ("filtered", {"condition": ["treated", "untreated"]}))]
    output = study.differential_study(counts, attributes, contrasts=contrasts, workdir=tmp_path)
    table = _stage_tables(output)["differential_expression"]
    assert output.metadata["differential_expression"]["filtered.parameters"]["design"] == (  # type: ignore[index]
        "~ rin + condition (numeric: rin)")
    reference = r_table("pasilla_de_numeric_covariate.tsv.gz")
    for name in ("all", "filtered"):
        joined = table.filter(pl.col("contrast") == name).join(reference, on="feature_id", suffix="_r")
        assert joined.height == 14_599
        # bulk of genes to the R test's tolerance (the two L-BFGS-B genes of that test aside, see there)
        both = joined.filter(pl.col("base_mean_r") > 1, ~pl.col("feature_id").is_in(["FBgn0030880", "FBgn0053909"]))
        np.testing.assert_allclose(both["log2_fold_change"], both["log2_fold_change_r"], rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(both["pvalue"], both["pvalue_r"], rtol=1e-4)
    # as levels: skipped, naming rin as numeric
    levels = study.differential_study(counts, attributes, contrasts=[contrasts[0].model_copy(
        update={"numeric_covariates": []})], workdir=tmp_path)
    assert list(levels.frames) == []
    assert "'rin' (7 distinct values) holds numbers" in levels.skipped["all"]


def test_differential_study_skips_a_contrast_it_cannot_fit_and_fits_the_others(
        pasilla_long: pl.DataFrame, pasilla_attributes: pl.DataFrame, r_table, tmp_path: Path) -> None:
    # Three contrasts; treated2 and treated3 hold no count (their rows are 0), so DE leaves them out:
    # - one_treated: untreated1-4 against treated1 alone, fitted as DESeq2 fits it (make_singleton_level_reference.R)
    # - confounded: a covariate 'lab' that is the condition under another name: not full rank (the design check)
    # - paired: paired-end samples only, whose treated ones are the two without counts (found at the fit)
    # One bad contrast raised and withheld the study's whole table; now the two are skipped, each with its reason.
    counts = pasilla_long.with_columns(
        pl.when(pl.col("sample_id").is_in(["treated2", "treated3"])).then(0.0).otherwise(pl.col("count"))
        .alias("count"), pl.lit("counts").alias("assay")).lazy()
    lab = (pasilla_attributes.filter(pl.col("attribute") == "condition")
           .with_columns(pl.lit("lab").alias("attribute"), pl.col("value").replace({"treated": "A", "untreated": "B"})))
    attributes = pl.concat([pasilla_attributes, lab])
    contrasts = [Contrast(name="one_treated", factor="condition", test="treated", reference="untreated"),
                 Contrast(name="confounded", factor="condition", test="treated", reference="untreated",
                          covariates=["lab"]),
                 Contrast(name="paired", factor="condition", test="treated", reference="untreated",
                          filter={"type": ["paired-end"]})]
    output = study.differential_study(counts, attributes, contrasts=contrasts, workdir=tmp_path)
    table = _stage_tables(output)["differential_expression"]
    assert set(table["contrast"]) == {"one_treated"}
    assert [name for name, _ in output.contrasts] == ["one_treated"]
    assert output.skipped == {
        "confounded": "contrast 'confounded' on assay 'counts' skipped: design ~ lab + condition is not full rank "
                      "(2 < 3); drop covariate(s) ['lab']: each is confounded with the others or with 'condition'",
        "paired": "contrast 'paired' on assay 'counts' skipped: test level 'treated' not found in 'condition'; its "
                  "levels are ['untreated']"}
    metadata = output.metadata["differential_expression"]
    assert metadata["skipped_contrasts"] == output.skipped
    assert metadata["one_treated.parameters"]["n_samples"] == 5  # type: ignore[index]
    # R's one_treated figures, to the tolerance of test_differential_expression_one_treated_sample_as_deseq2
    reference = r_table("pasilla_de_singleton.tsv.gz").filter(pl.col("design") == "one_treated")
    joined = table.join(reference, on="feature_id", suffix="_r").filter(pl.col("base_mean_r") > 10).drop_nulls(
        ["pvalue", "pvalue_r"])
    assert joined.height == 8_064
    np.testing.assert_allclose(joined["log2_fold_change"], joined["log2_fold_change_r"], atol=0.01)


def test_count_rows_pair_each_block_of_samples_rna_normalized_and_rna_vst_rows_with_the_same_ids(
        pasilla_block: study.DenseBlock, pasilla_model: study.CountModel, pasilla_normalised: pl.DataFrame,
        r_table) -> None:
    # frames of 2 samples (30,000 rows // 14,599 genes): each block of samples gives its rna_vst frame, then its
    # rna_normalized frame of the same cells; table by table, the rows of normalised_count_rows and DESeq2's vst
    trend, _ = study.fit_vst(pasilla_block, pasilla_model)
    shape = (pasilla_block.values.shape[0], pasilla_model.columns.size)
    into = np.full(shape, np.nan, order="F")
    pairs = list(study.count_rows(pasilla_block, pasilla_model, trend, frame_rows=30_000, into=into))
    assert [t for t, _ in pairs] == ["rna_vst", "rna_normalized"] * 4
    for (_, vst), (_, normalised) in zip(pairs[::2], pairs[1::2], strict=True):
        assert vst.height == normalised.height == shape[0] * normalised["sample_id"].n_unique()
        assert_frame_equal(vst.select("sample_id", "gene_id", "feature_id"),
                           normalised.select("sample_id", "gene_id", "feature_id"))
    normalised = pl.concat(f for t, f in pairs if t == "rna_normalized")
    assert_frame_equal(normalised, pl.concat(study.normalised_count_rows(pasilla_block, pasilla_model,
                                                                        frame_rows=30_000)), check_exact=True)
    assert_frame_equal(normalised.sort("feature_id", "sample_id"), pasilla_normalised.sort("feature_id", "sample_id"),
                       check_exact=True)
    vst = pl.concat(f for t, f in pairs if t == "rna_vst")
    ref = r_table("pasilla_vst.tsv").join(vst, on=["feature_id", "sample_id"], how="left")  # make_reference.R
    np.testing.assert_allclose(ref["vst_right"].to_numpy(), ref["vst"].to_numpy(), rtol=0, atol=1e-6)
    # the VST block: sample j's column holds its rows' values in the block's (gene) order
    for j, sample in enumerate(pasilla_block.sample_ids.gather(pasilla_model.columns)):
        np.testing.assert_array_equal(into[:, j], vst.filter(pl.col("sample_id") == sample)["vst"].to_numpy())


def test_count_rows_without_a_trend_and_with_a_missing_cell_and_lengths() -> None:
    # feature F2 lacks a count in s1 (left out of every table); no VST trend: rna_normalized rows alone; tpm by hand
    long = pl.DataFrame({"sample_id": [s for s in ["s1", "s2", "s3"] for _ in range(3)],
                         "feature_id": ["F1", "F2", "F3"] * 3, "gene_id": [1, 2, None] * 3,
                         "count": [10.0, None, 30.0, 20.0, 5.0, 20.0, 15.0, 6.0, 45.0],
                         "length": [1000.0, 500.0, 2000.0] * 3})
    block = study.dense_block(long.drop_nulls("count").lazy(), value="count")
    model = study.fit_counts(block)
    pairs = list(study.count_rows(block, model, None, frame_rows=2))  # one sample per frame (2 features used)
    assert [t for t, _ in pairs] == ["rna_normalized"] * 3
    rows = pl.concat(f for _, f in pairs)
    assert rows.select("sample_id", "feature_id").rows() == [("s1", "F1"), ("s1", "F3"), ("s2", "F1"),
                                                           ("s2", "F3"), ("s3", "F1"), ("s3", "F3")]
    rpk = np.array([[10 / 1, 30 / 2], [20 / 1, 20 / 2], [15 / 1, 45 / 2]])  # counts per kilobase, per sample
    np.testing.assert_allclose(rows["tpm"].to_numpy(), (rpk / rpk.sum(axis=1, keepdims=True) * 1e6).ravel(),
                               rtol=1e-12)
    assert rows["source"].unique().to_list() == ["counts"]


@pytest.mark.parametrize(("cells", "expected"), [
    ([], False),                                     # whole counts with a missing cell
    ([((3, 249), 0.5)], True),                       # the last column of a last, narrower chunk
    ([((0, 100), -1.25)], True),                     # the first column of the second chunk, negative
    ([((7, 3), np.inf), ((8, 3), -np.inf)], False),  # infinities are not fractions
    ([((9, 120), np.nan), ((2, 120), 1e-9)], True),  # a fraction beside a missing cell in the same chunk
])
def test_has_fractions_by_hand(cells, expected) -> None:
    counts = np.asfortranarray(np.random.default_rng(2).poisson(8, size=(12, 250)).astype(float))
    counts[5, 7] = np.nan
    for cell, value in cells:
        counts[cell] = value if np.isnan(value) or np.isinf(value) else counts[cell] + value
    assert study._has_fractions(counts) is expected
    assert study._has_fractions(np.ascontiguousarray(counts)) is expected
    assert study._has_fractions(counts, columns=7) is expected


def test_differential_study_without_counts_names_every_contrast_it_skips(tmp_path):
    # small19: a study without counts (proteomics only, or log2 RNA as TCGA's) committed an empty DE partition and
    # its contrasts_fitted check passed, as if each contrast had been fitted
    counts = pl.DataFrame(schema={"assay": pl.String, "sample_id": pl.String, "feature_id": pl.String,
                                  "gene_id": pl.Int64, "count": pl.Float64}).lazy()
    attributes = pl.DataFrame({"sample_id": ["a", "b"], "attribute": "group", "value": ["x", "y"]})
    contrasts = [Contrast(name="y_vs_x", factor="group", test="y", reference="x"),
                 Contrast(name="x_vs_y", factor="group", test="x", reference="y")]
    output = study.differential_study(counts, attributes, contrasts=contrasts, workdir=tmp_path)
    assert output.skipped == {
        "y_vs_x": "contrast 'y_vs_x' skipped: differential expression needs RNA counts and the study has no "
                  "rna_counts rows",
        "x_vs_y": "contrast 'x_vs_y' skipped: differential expression needs RNA counts and the study has no "
                  "rna_counts rows"}
    assert output.metadata["differential_expression"]["skipped_contrasts"] == output.skipped
    assert output.contrasts == []
    assert study.differential_study(counts, attributes, contrasts=[], workdir=tmp_path).skipped == {}
