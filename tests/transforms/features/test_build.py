"""Feature matrices on real BRCA values: cells equal the source, scaling learned on training samples only."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from schemas.features import FeatureSetSpec
from transforms.features.build import FeatureInputMissing, build_feature_matrix

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
