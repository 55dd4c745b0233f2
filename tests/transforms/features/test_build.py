"""Feature matrices on real BRCA values: cells equal the source, scaling learned on training samples only."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from schemas.features import FeatureSetSpec
from transforms.features.build import FeatureInputMissing, build_feature_matrix, feature_statistics

GENES = ["NDRG2", "CCDC113", "RTN2"]


@pytest.fixture(scope="module")
def mrna(shared_data) -> pl.DataFrame:
    return pl.read_csv(shared_data / "tcga_brca_mixomics" / "train_mrna.tsv", separator="\t")


def _gso(mrna: pl.DataFrame) -> pl.LazyFrame:
    """gene_sample_omics-shaped rows: the mRNA values, and TP53 mutated in every fourth sample."""
    rows = []
    for i, sample in enumerate(mrna["sample_id"]):
        for k, gene in enumerate(GENES):
            rows.append({"study_id": "brca", "sample_id": sample, "gene_id": k + 1, "symbol": gene,
                         "rna_log2": mrna[gene][i], "protein_log2": None, "cn_call": None, "mutated": None})
        rows.append({"study_id": "brca", "sample_id": sample, "gene_id": 7157, "symbol": "TP53", "rna_log2": None,
                     "protein_log2": None, "cn_call": (i % 5) - 2, "mutated": None if i == 0 else i % 4 == 0})
    return pl.DataFrame(rows).lazy()


def _inputs(mrna: pl.DataFrame) -> dict:
    samples = pl.DataFrame({"study_id": "brca", "sample_id": mrna["sample_id"]})
    split = ["train" if i < 12 else "test" for i in range(mrna.height)]
    attributes = pl.DataFrame({"study_id": "brca", "sample_id": mrna["sample_id"], "attribute": "split",
                               "value": split})
    return {"gso": _gso(mrna), "samples": samples, "attributes": attributes}


SPEC = {"name": "t", "studies": ["brca"], "layers": [
    {"layer": "rna", "genes": GENES}, {"layer": "copy_number", "genes": ["TP53"]},
    {"layer": "mutation", "genes": ["TP53", "KRAS"]}]}


def _wide(matrix) -> pl.DataFrame:
    return matrix.values.pivot(on="feature", index=["study_id", "sample_id"], values="value").sort("sample_id")


def test_build_feature_matrix_cells_equal_the_source_values(mrna):
    matrix = build_feature_matrix(FeatureSetSpec.model_validate(SPEC), **_inputs(mrna))
    assert matrix.columns == ["rna__NDRG2", "rna__CCDC113", "rna__RTN2", "copy_number__TP53", "mutation__TP53",
                              "mutation__KRAS"]
    assert matrix.missing == {"mutation": ["KRAS"]}
    wide = _wide(matrix).join(mrna, on="sample_id")
    for gene in GENES:
        assert wide[f"rna__{gene}"].to_list() == wide[gene].to_list()
    order = mrna["sample_id"].to_list()
    for row in wide.iter_rows(named=True):
        i = order.index(row["sample_id"])
        assert row["copy_number__TP53"] == (i % 5) - 2
        assert row["mutation__TP53"] == (None if i == 0 else float(i % 4 == 0))  # not profiled: NULL


def test_build_feature_matrix_scaling_learned_on_training_samples_only(mrna):
    spec = FeatureSetSpec.model_validate({**SPEC, "scale": {"method": "zscore",
                                                            "train": {"attribute": "split", "values": ["train"]}}})
    matrix = build_feature_matrix(spec, **_inputs(mrna))
    train = mrna.head(12)
    for gene in GENES:
        values = train[gene].to_numpy()
        assert matrix.scaling[f"rna__{gene}"]["mean"] == pytest.approx(values.mean())
        assert matrix.scaling[f"rna__{gene}"]["sd"] == pytest.approx(values.std(ddof=1))
    assert "mutation__TP53" not in matrix.scaling  # mutation is not scaled by default
    # a test sample's value changes nothing learned, and is scaled with the training parameters
    changed = mrna.with_columns(pl.when(pl.int_range(pl.len()) == 15).then(1e6).otherwise(pl.col("NDRG2"))
                                .alias("NDRG2"))
    again = build_feature_matrix(spec, **_inputs(changed))
    assert again.scaling == matrix.scaling
    test_value = _wide(again).filter(pl.col("sample_id") == mrna["sample_id"][15])["rna__NDRG2"].item()
    ndrg2 = train["NDRG2"].to_numpy()
    assert test_value == pytest.approx((1e6 - ndrg2.mean()) / ndrg2.std(ddof=1))


@pytest.mark.parametrize(("key", "selection", "named"), [
    ("scale.train", {"train": ["A0FJ", "A13E", "NOPE"]}, "sample ids that are no sample of the spec's studies: 'NOPE'"),
    ("scale.train", {"train": {"attribute": "split", "values": ["train", "Train"]}},
     "values of 'split' that no sample has and that look like a typo: 'Train' \\(held: 'train'\\)"),
    ("samples", {}, "values of 'split' that no sample has and that look like a typo: 'tset' \\(held: 'test'\\)"),
    ("scale.train", {"train": {"attribute": "split", "values": ["Normal", "validation"]}},
     "values of 'split' that no sample of the spec's studies has: 'Normal', 'validation'")])
def test_build_feature_matrix_refuses_a_selection_naming_what_no_sample_has(mrna, key, selection, named):
    # a typo in a training id or value was ignored: the training set shrank silently, and the scaling with it
    spec = {**SPEC, "scale": {"method": "zscore", **selection}}
    if key == "samples":
        spec["samples"] = {"attribute": "split", "values": ["test", "tset"]}
    with pytest.raises(ValueError, match=f"feature set 't': {key} names {named}"):
        build_feature_matrix(FeatureSetSpec.model_validate(spec), **_inputs(mrna))


def test_build_feature_matrix_refuses_a_set_of_no_column(mrna):
    # the top 5 proteins of studies with no protein values (a fly study's rna, here brca's protein) was built and
    # versioned as "7 rows x 0 columns", exit 0 (trialC)
    spec = FeatureSetSpec.model_validate({"name": "x", "studies": ["brca"],
                                          "layers": [{"layer": "protein", "top_variable": 5}]})
    with pytest.raises(ValueError, match="feature set 'x': no column: its layers \\(protein\\) hold no value"):
        build_feature_matrix(spec, **_inputs(mrna))


def test_build_feature_matrix_takes_a_value_no_sample_holds_beside_held_ones(mrna):
    # a spec written for cohorts with normal samples, run over one without: 'Normal' selects nothing here and is no
    # typo of 'train' / 'test' (refusing it broke specs that had worked)
    chosen = {"attribute": "split", "values": ["train", "test", "Normal"]}
    train = {"attribute": "split", "values": ["train", "Normal"]}
    spec = FeatureSetSpec.model_validate({**SPEC, "samples": chosen, "scale": {"method": "zscore", "train": train}})
    assert build_feature_matrix(spec, **_inputs(mrna)).scaling


def test_build_feature_matrix_top_variable_on_training_samples_and_imputation(mrna):
    spec = FeatureSetSpec.model_validate({"name": "t", "studies": ["brca"],
                                          "layers": [{"layer": "rna", "top_variable": 2}],
                                          "scale": {"method": "none", "train": list(mrna["sample_id"][:12])}})
    matrix = build_feature_matrix(spec, **_inputs(mrna))
    variances = {g: float(np.var(mrna[g].to_numpy()[:12], ddof=1)) for g in GENES}
    assert matrix.columns == [f"rna__{g}" for g in sorted(sorted(variances, key=variances.get)[-2:])]
    imputed = FeatureSetSpec.model_validate({**SPEC, "impute": "train_mean"})
    filled = _wide(build_feature_matrix(imputed, **_inputs(mrna)))
    first = filled.filter(pl.col("sample_id") == mrna["sample_id"][0])["mutation__TP53"].item()
    assert first == pytest.approx(np.mean([float(i % 4 == 0) for i in range(1, mrna.height)]))
    # the filled values are stored with the version (learned parameters); KRAS has no value to learn from
    stored = build_feature_matrix(imputed, **_inputs(mrna)).imputation
    assert stored["mutation__TP53"] == pytest.approx(first)
    assert stored["rna__NDRG2"] == pytest.approx(mrna["NDRG2"].mean())
    assert stored["mutation__KRAS"] is None


def test_build_feature_matrix_signature_layer_needs_the_signature_tables(mrna):
    spec = FeatureSetSpec.model_validate({"name": "t", "studies": ["brca"],
                                          "layers": [{"layer": "signature", "genes": ["HALLMARK_HYPOXIA"]}]})
    with pytest.raises(FeatureInputMissing, match="signature_scores"):
        build_feature_matrix(spec, **_inputs(mrna))


def test_build_feature_matrix_in_small_sample_blocks_equals_one_block(mrna):
    """Blocks of 2 samples (work files per block) give exactly the rows of one block, scaled and imputed alike."""
    spec = FeatureSetSpec.model_validate({**SPEC, "impute": "train_mean", "scale": {
        "method": "zscore", "train": {"attribute": "split", "values": ["train"]}}})
    one = build_feature_matrix(spec, **_inputs(mrna))
    small = build_feature_matrix(spec, **_inputs(mrna), rows_per_block=2 * len(one.columns))
    blocks = list(small.blocks())
    assert len(blocks) == mrna.height // 2
    assert all(b["sample_id"].n_unique() == 2 for b in blocks)
    assert pl.concat(blocks).equals(one.values)
    assert one.values.height == mrna.height * len(one.columns) - mrna.height  # mutation__KRAS never has a value
    assert small.scaling == one.scaling


def test_build_feature_matrix_scaling_and_imputation_equal_numpy_on_the_sorted_training_values(mrna):
    spec = FeatureSetSpec.model_validate({**SPEC, "impute": "train_mean", "scale": {
        "method": "zscore", "train": {"attribute": "split", "values": ["train"]}}})
    matrix = build_feature_matrix(spec, **_inputs(mrna))
    for gene in GENES:
        values = np.sort(mrna.head(12)[gene].to_numpy())
        mean, sd = np.mean(values), np.std(values, ddof=1)
        assert matrix.scaling[f"rna__{gene}"] == {"mean": mean, "sd": sd}
        assert matrix.imputation[f"rna__{gene}"] == np.mean((values - mean) / sd)  # the mean after scaling
    mutated = np.sort([float(i % 4 == 0) for i in range(1, 12)])  # unscaled; sample 0 not profiled
    assert matrix.imputation["mutation__TP53"] == np.mean(mutated)


def _random_rows(samples: int, features: int, seed: int) -> pl.DataFrame:
    """Long ``study_id, sample_id, feature, value`` rows of random values; about 10 % of cells absent or NULL."""
    rng = np.random.default_rng(seed)
    frame = pl.DataFrame({"study_id": "s", "sample_id": np.repeat([f"S{j:03d}" for j in range(samples)], features),
                          "feature": np.tile([f"rna__G{k:03d}" for k in range(features)], samples),
                          "value": rng.normal(8, 3, samples * features) * 10.0 ** rng.integers(-3, 4, samples
                                                                                                * features)})
    keep = rng.random(frame.height)
    return frame.filter(pl.Series(keep > 0.05)).with_columns(
        pl.when(pl.Series(keep[keep > 0.05] > 0.1)).then(pl.col("value")).alias("value"))


def test_feature_statistics_equal_numpy_on_sorted_values_in_any_block_size_and_row_order():
    rows = _random_rows(60, 25, seed=3)
    rows = pl.concat([rows, pl.DataFrame({"study_id": "s", "sample_id": ["S000", "S001", "S002"],
                                          "feature": ["rna__one", "rna__flat", "rna__flat"],
                                          "value": [2.5, 7.0, 7.0]})])
    train = pl.DataFrame({"study_id": "s", "sample_id": [f"S{j:03d}" for j in range(0, 60, 2)] + ["S001"]})
    features = [*sorted(rows["feature"].unique().to_list()), "rna__never"]
    one = feature_statistics(rows, train, features=features, standardised=True)
    assert one["feature"].to_list() == features[:-1]  # a feature without a training value has no row
    trained = rows.join(train, on=["study_id", "sample_id"]).drop_nulls("value")
    for row in one.iter_rows(named=True):
        values = np.sort(trained.filter(pl.col("feature") == row["feature"])["value"].to_numpy())
        assert row["n"] == len(values)
        assert row["mean"] == np.mean(values)  # numpy's operations on the ascending values, bit for bit
        assert row["mean"] == pytest.approx(math.fsum(values) / len(values), rel=1e-12, abs=0)
        if len(values) > 1:
            assert row["var"] == np.var(values, ddof=1)
            assert row["sd"] == np.std(values, ddof=1)
            exact = math.fsum((values - math.fsum(values) / len(values)) ** 2) / (len(values) - 1)
            assert row["var"] == pytest.approx(exact, rel=1e-12, abs=0)
            if row["sd"] > 0:  # the imputation value after scaling
                assert row["z_mean"] == np.mean((values - row["mean"]) / row["sd"])
                assert row["z_mean"] == pytest.approx(0, abs=1e-12)
    assert one.filter(pl.col("feature") == "rna__one").row(0)[1:] == (1, 2.5, None, None, None)
    assert one.filter(pl.col("feature") == "rna__flat").row(0)[1:] == (2, 7.0, 0.0, 0.0, None)  # SD 0: no z
    # many work files (blocks of whole features), shuffled rows: the same bits
    for seed in range(5):
        shuffled = rows.sample(fraction=1.0, shuffle=True, seed=seed)
        assert feature_statistics(shuffled.lazy(), train, features=features, standardised=True).equals(one)
        assert feature_statistics(shuffled.lazy(), train, features=features, standardised=True,
                                  rows_per_block=40).equals(one)


_BUILD = """
import hashlib, json, sys
import numpy as np, polars as pl
sys.path.insert(0, sys.argv[1])
from schemas.features import FeatureSetSpec
from transforms.features.build import build_feature_matrix
rng = np.random.default_rng(7)
samples, genes = 400, 60
ids = [f"S{j:03d}" for j in range(samples)]
gso = pl.DataFrame({"study_id": "s", "sample_id": np.repeat(ids, genes), "gene_id": np.tile(np.arange(genes), samples),
                    "symbol": np.tile([f"G{k}" for k in range(genes)], samples),
                    "rna_log2": rng.normal(8, 2, samples * genes) * np.tile(rng.uniform(0.1, 3, genes), samples),
                    "protein_log2": None, "cn_call": None, "mutated": None}).sample(fraction=1.0, shuffle=True,
                                                                                   seed=int(sys.argv[2]))
spec = FeatureSetSpec.model_validate({"name": "t", "studies": ["s"], "impute": "train_mean",
    "layers": [{"layer": "rna", "top_variable": 30}], "scale": {"method": "zscore", "train": ids[:300]}})
matrix = build_feature_matrix(spec, gso=gso.lazy(), samples=pl.DataFrame({"study_id": "s", "sample_id": ids}),
                              attributes=pl.DataFrame(schema={"study_id": pl.String, "sample_id": pl.String,
                                                              "attribute": pl.String, "value": pl.String}),
                              rows_per_block=int(sys.argv[3]))
learned = json.dumps([matrix.columns, {f: {k: v.hex() for k, v in p.items()} for f, p in matrix.scaling.items()},
                      {f: v.hex() for f, v in matrix.imputation.items()}])
values = matrix.values
digest = hashlib.sha256(values["value"].to_numpy().tobytes() + values["feature"].str.join("").item().encode())
print(json.dumps([learned, digest.hexdigest()]))
"""


def test_build_feature_matrix_learns_the_same_bits_from_shuffled_rows_on_any_thread_count():
    """Scaling, imputation means, top variable genes and values: one result for shuffled inputs, one or all
    threads, one or many statistics blocks (two builds once learned an SD 1 ulp apart).
    """
    repo = str(Path(__file__).resolve().parents[3])
    results = set()
    for threads, seed, block in [("1", 0, 5_000_000), (None, 1, 5_000_000), (None, 2, 2_000), ("1", 3, 2_000)]:
        env = {k: v for k, v in os.environ.items() if k != "POLARS_MAX_THREADS"}
        env.update({"POLARS_MAX_THREADS": threads} if threads else {})
        out = subprocess.run([sys.executable, "-c", _BUILD, repo, str(seed), str(block)], env=env, check=True,
                             capture_output=True, text=True).stdout
        results.add(out)
    assert len(results) == 1
    learned = json.loads(json.loads(results.pop())[0])
    assert len(learned[0]) == 30
    assert len(learned[1]) == 30


def test_build_feature_matrix_refuses_a_set_whose_every_named_gene_is_absent(mrna):
    # genes named as the file wrote them (an alias, HIST1H2BK for H2BC12) or absent from the studies (ESR1 in
    # mixOmics' 200 genes) gave a version of 158 rows x 5 all-NULL columns and exit 0 (trialH)
    spec = FeatureSetSpec.model_validate({"name": "x", "studies": ["brca"], "layers": [
        {"layer": "rna", "genes": ["HIST1H2BK", "ESR1"]}, {"layer": "mutation", "genes": ["KRAS"]}]})
    with pytest.raises(ValueError, match="feature set 'x': no column has a value for the selected samples of its "
                                         "studies; not found: rna: HIST1H2BK, ESR1; mutation: KRAS \\(genes are "
                                         "official symbols"):
        build_feature_matrix(spec, **_inputs(mrna))
    # one named gene with values is enough: the others stay NULL columns, listed as missing
    spec = FeatureSetSpec.model_validate({"name": "x", "studies": ["brca"], "layers": [
        {"layer": "rna", "genes": ["HIST1H2BK", "NDRG2"]}]})
    matrix = build_feature_matrix(spec, **_inputs(mrna))
    assert matrix.columns == ["rna__HIST1H2BK", "rna__NDRG2"]
    assert matrix.missing == {"rna": ["HIST1H2BK"]}


def test_build_feature_matrix_names_the_official_symbol_of_a_gene_written_otherwise(mrna):
    # mixOmics' mrna.tsv writes HIST1H2BK; the warehouse maps it to H2BC12 (NCBI's symbol since 2020; HIST1H2BK is
    # its alias in the shipped reference), so `genes: [HIST1H2BK]` found nothing and said only "not found" (trialH)
    from transforms.ingest.genes import GeneReference

    spec = FeatureSetSpec.model_validate({"name": "x", "studies": ["brca"], "layers": [
        {"layer": "rna", "genes": ["NDRG2", "HIST1H2BK", "rtn2", "NOTAGENE1"]}]})
    matrix = build_feature_matrix(spec, **_inputs(mrna), reference=GeneReference.load())
    assert matrix.missing == {"rna": ["HIST1H2BK", "rtn2", "NOTAGENE1"]}
    assert matrix.hints == {"HIST1H2BK": "H2BC12", "rtn2": "RTN2"}
    spec = FeatureSetSpec.model_validate({"name": "x", "studies": ["brca"], "layers": [
        {"layer": "rna", "genes": ["HIST1H2BK"]}]})
    with pytest.raises(ValueError, match=r"written otherwise than the official symbol: HIST1H2BK is H2BC12$"):
        build_feature_matrix(spec, **_inputs(mrna), reference=GeneReference.load())


def test_build_feature_matrix_names_the_scaled_columns_left_null_by_an_undefined_training_sd(mrna):
    # trialK: a protein measured in one sample (ACTB in the MaxQuant CD34 study: LFQ only in N5) became an all-NULL
    # column after z-scoring, and the build said nothing (it was neither 'not found' nor named anywhere)
    inputs = _inputs(mrna)
    train = mrna["sample_id"][:12].to_list()
    extra = [{"study_id": "brca", "sample_id": s, "gene_id": 100 + k, "symbol": gene, "rna_log2": value,
              "protein_log2": None, "cn_call": None, "mutated": None}
             for k, (gene, values) in enumerate([("ONE", {train[3]: 5.0}), ("FLAT", dict.fromkeys(train, 2.5))])
             for s, value in values.items()]
    gso = pl.concat([inputs["gso"].collect(), pl.DataFrame(extra)], how="vertical_relaxed").lazy()
    spec = FeatureSetSpec.model_validate({
        "name": "t", "studies": ["brca"], "layers": [{"layer": "rna", "genes": ["NDRG2", "ONE", "FLAT", "KRAS"]}],
        "scale": {"method": "zscore", "train": {"attribute": "split", "values": ["train"]}}})
    matrix = build_feature_matrix(spec, **{**inputs, "gso": gso})
    assert matrix.missing == {"rna": ["KRAS"]}  # no value at all: named there, not again
    assert matrix.unscalable == ["rna__ONE", "rna__FLAT"]  # one training value; one value repeated (SD 0)
    held = set(matrix.values["feature"].unique())
    assert held == {"rna__NDRG2"}  # every cell of the two is NULL, as named
    ndrg2 = mrna["NDRG2"][:12].to_numpy()
    assert matrix.scaling["rna__NDRG2"]["sd"] == pytest.approx(float(np.std(ndrg2, ddof=1)), rel=1e-12)


@pytest.mark.parametrize("rows_per_block", [1_000_000, 30])
def test_build_feature_matrix_names_the_samples_without_any_value(mrna, rows_per_block):
    # trialK: airway's samples.tsv lists 8 runs, Salmon gave 2; the feature set had 6 rows of training means (with
    # impute: train_mean) that nothing named: fabricated samples a model would train on
    inputs = _inputs(mrna)
    blank = ["ZZ01", "AA00"]  # in the samples table, no value anywhere
    samples = pl.concat([inputs["samples"], pl.DataFrame({"study_id": "brca", "sample_id": blank})])
    spec = FeatureSetSpec.model_validate({"name": "t", "studies": ["brca"], "layers": [{"layer": "rna",
                                                                                      "genes": GENES}],
                                          "impute": "train_mean"})
    matrix = build_feature_matrix(spec, **{**inputs, "samples": samples}, rows_per_block=rows_per_block)
    list(matrix.blocks())
    assert sorted(matrix.empty) == [("brca", "AA00"), ("brca", "ZZ01")]
    filled = _wide(matrix).filter(pl.col("sample_id").is_in(blank))
    for gene in GENES:  # what they hold: the training means (every sample trains by default)
        assert filled[f"rna__{gene}"].to_list() == pytest.approx([float(np.mean(mrna[gene].to_numpy()))] * 2)
