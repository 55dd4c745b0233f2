"""Materialise the normalise assets on studies written straight into a temporary lake (no ingest), read back."""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest

from orchestration.assets.normalise import differential_expression_table, normalised_expression
from orchestration.resources import WarehouseResource
from tests.lake_rows import commit_load
from warehouse.lake import Lake

NORMALISE = [normalised_expression]


AIRWAY_CONTRASTS = {"contrasts": [{"name": "dex", "factor": "dex", "test": "trt", "reference": "untrt",
                                   "covariates": ["cell"]}]}


@pytest.fixture
def warehouse(tmp_path: Path) -> WarehouseResource:
    return WarehouseResource(landing_dir=str(tmp_path / "landing"), warehouse_dir=str(tmp_path / "warehouse"))


@pytest.fixture
def airway(airway_long: pl.DataFrame, airway_attributes: pl.DataFrame, warehouse: WarehouseResource) -> Lake:
    """Study 'airway': featureCounts counts of 20 genes x 8 samples, cell and dex attributes, one contrast."""
    lake = warehouse.lake()
    commit_load(lake, "airway", {"rna_counts": airway_long,
                                 "sample_attributes": airway_attributes}, load="v1",
                manifest=AIRWAY_CONTRASTS)
    return lake


def _materialize(assets: list, warehouse: WarehouseResource, study_id: str, *, raise_on_error: bool = True
                 ) -> dg.ExecuteInProcessResult:
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("studies", [study_id])
        return dg.materialize(assets, partition_key=study_id, instance=instance, resources={"warehouse": warehouse},
                              raise_on_error=raise_on_error)


def _metadata(result: dg.ExecuteInProcessResult, table: str) -> dict[str, object]:
    (event,) = [e for e in result.get_asset_materialization_events()
                if e.materialization.asset_key == dg.AssetKey(table)]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_normalised_expression_matches_edger_on_airway(airway: Lake, warehouse: WarehouseResource,
                                                       airway_attributes: pl.DataFrame, r_table) -> None:
    result = _materialize(NORMALISE, warehouse, "airway")
    assert result.success
    factors = airway.scan("rna_sample_factors", study_id="airway").collect()
    # make_reference.R: colSums, calcNormFactors(method="TMM"), estimateSizeFactors on the same featureCounts file
    ref = r_table("airway_sample_factors.tsv").join(
        factors, on="sample_id", how="left")
    assert factors.height == 8
    assert set(factors["assay"]) == {"featurecounts"}
    np.testing.assert_array_equal(ref["library_size_right"].to_numpy(), ref["library_size"].to_numpy())
    np.testing.assert_allclose(ref["tmm_factor_right"].to_numpy(), ref["tmm_factor"].to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(ref["size_factor_right"].to_numpy(), ref["size_factor"].to_numpy(), rtol=1e-6)

    normalised = airway.scan("rna_normalized", study_id="airway").collect()
    assert normalised.height == 20 * 8
    assert set(normalised["source"]) == {"counts"}
    # make_reference.R: cpm(calcNormFactors(DGEList(counts)), log=TRUE, prior.count=2)
    log2 = r_table("airway_log2cpm.tsv").join(
        normalised, on=["feature_id", "sample_id"], how="left")
    np.testing.assert_allclose(log2["log2_cpm_right"].to_numpy(), log2["log2_cpm"].to_numpy(), atol=1e-6)
    # z-scores: numpy from the R log2 CPM, per gene over the 8 samples, SD ddof=1
    wide = log2.pivot(on="sample_id", index="feature_id", values="log2_cpm")
    r = wide.drop("feature_id").to_numpy()
    sd = r.std(axis=1, ddof=1, keepdims=True)
    varying = sd[:, 0] > 1e-8
    expected = (r[varying] - r[varying].mean(axis=1, keepdims=True)) / sd[varying]
    got = wide.select("feature_id").join(
        normalised.pivot(on="sample_id", index="feature_id", values="zscore"), on="feature_id", how="left"
    ).select(wide.columns[1:]).to_numpy()
    np.testing.assert_allclose(got[varying], expected, atol=1e-5)
    assert np.isnan(got[~varying]).all()  # the 4 all-zero genes (README: 16 of 20 with counts)
    # awk -F'\t' '$1=="ENSG00000120948"{print $7}' airway_subset_featureCounts.txt -> 2673 of 6649 in SRR1039508
    cell = normalised.filter(pl.col("feature_id") == "ENSG00000120948", pl.col("sample_id") == "SRR1039508")
    assert cell["cpm"].item() == pytest.approx(2673 / 6649 * 1e6, rel=1e-12)
    assert cell["mor"].item() == pytest.approx(2673 / 0.83479200246713237, rel=1e-6)
    # awk: (count / Length) / sum over genes of (count / Length) x 1e6 in SRR1039508 (Length 4622)
    assert cell["tpm"].item() == pytest.approx(372942.619593115116, rel=1e-9)

    vst = airway.scan("rna_vst", study_id="airway").collect()
    assert vst.height == 160
    for stored in (normalised, vst):  # one file each, in gene order (unmapped here: by feature_id), then sample
        keys = stored.select("feature_id", "sample_id")
        assert keys.equals(keys.sort("feature_id", "sample_id"))
    assert vst["vst"].is_finite().all()
    meta = _metadata(result, "rna_sample_factors")
    # airway_sample_factors.tsv: library sizes 5415 (SRR1039520) .. 11148 (SRR1039517)
    assert meta["featurecounts.library_size"] == "5415 .. 11148"
    assert _metadata(result, "rna_normalized")["zscore_reference"] == "all samples of the assay"
    assert _metadata(result, "rna_vst")["featurecounts.method"] == "varianceStabilizingTransformation(blind=TRUE)"
    assert {c.check_name for c in result.get_asset_check_evaluations() if c.passed} == {"contract"}

    again = _materialize(NORMALISE, warehouse, "airway")  # same inputs and settings: no new Delta version
    assert _metadata(again, "rna_normalized")["unchanged"] is True
    assert _metadata(again, "rna_normalized")["delta_version"] == _metadata(result, "rna_normalized")["delta_version"]

    commit_load(airway, "airway", {"rna_counts": airway.scan("rna_counts").head(0).collect().drop("study_id"),
                                   "sample_attributes": airway_attributes}, load="v2",
                manifest=AIRWAY_CONTRASTS)
    emptied = _materialize(NORMALISE, warehouse, "airway")  # counts gone: stale rows vanish
    assert airway.scan("rna_normalized", study_id="airway").collect().height == 0
    assert "no rna_counts" in str(_metadata(emptied, "rna_sample_factors")["note"])


def test_differential_expression_matches_deseq2_on_airway(airway: Lake, warehouse: WarehouseResource,
                                                          r_table) -> None:
    result = _materialize([differential_expression_table], warehouse, "airway")
    de = airway.scan("differential_expression", study_id="airway").collect()
    assert de.height == 20
    assert set(de["contrast"]) == {"dex"}
    # make_reference.R: results(DESeq(~ cell + dex), contrast=c("dex", "trt", "untrt"))
    ref = r_table("airway_de_dex.tsv").join(
        de, on="feature_id", how="left").drop_nulls(["log2_fold_change", "log2_fold_change_right"])
    r = np.corrcoef(ref["log2_fold_change"].to_numpy(), ref["log2_fold_change_right"].to_numpy())[0, 1]
    assert r > 0.99  # 16 genes with counts; the numpy port vs DESeq2
    meta = _metadata(result, "differential_expression")
    assert meta["dex.parameters"]["design"] == "~ cell + dex"
    assert meta["dex.volcano"].startswith("![volcano plot of dex](data:image/png;base64,iVBOR")
    png = Path(warehouse.warehouse_dir, "reports", "airway", "dex_volcano.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def _contrasts_check(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    (evaluation,) = [e.event_specific_data for e in result.all_events
                     if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
                     and e.event_specific_data.check_name == "contrasts_fitted"]
    return evaluation


def test_differential_expression_bad_contrast_skipped_others_committed(airway: Lake, warehouse: WarehouseResource,
                                                                       airway_long: pl.DataFrame,
                                                                       airway_attributes: pl.DataFrame) -> None:
    # Three contrasts, two of which the samples cannot support: a reference level no sample has and a covariate
    # no sample has. The step failed and withheld the valid contrast too; now the valid one is committed and the
    # contrasts_fitted check warns naming both bad ones and why.
    contrasts = {"contrasts": [
        {"name": "bad", "factor": "dex", "test": "trt", "reference": "placebo"},
        *AIRWAY_CONTRASTS["contrasts"],
        {"name": "no_batch", "factor": "dex", "test": "trt", "reference": "untrt", "covariates": ["batch"]}]}
    commit_load(airway, "airway", {"rna_counts": airway_long,
                                   "sample_attributes": airway_attributes}, load="v2", manifest=contrasts)
    start = time.perf_counter()
    result = _materialize([differential_expression_table], warehouse, "airway")
    assert result.success
    assert time.perf_counter() - start < 20
    de = airway.scan("differential_expression", study_id="airway").collect()
    assert set(de["contrast"]) == {"dex"}
    assert de.height == 20  # featureCounts subset: 20 genes
    meta = _metadata(result, "differential_expression")
    # sample_table.csv: dex has levels trt and untrt only, and no attribute is called batch
    assert meta["skipped_contrasts"] == {
        "bad": "contrast 'bad' on assay 'featurecounts' skipped: reference level 'placebo' not found in 'dex'; its "
               "levels are ['trt', 'untrt']",
        "no_batch": "contrast 'no_batch' on assay 'featurecounts' skipped: design column(s) ['batch'] not in the "
                    "sample table; available columns: ['sample_id', 'dex']"}
    check = _contrasts_check(result)
    assert not check.passed
    assert check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["skipped_contrasts"].value == 2
    assert "reference level 'placebo' not found" in check.metadata["skipped"].value
    # A run that finds the study unchanged writes nothing and still says which contrasts were skipped.
    again = _materialize([differential_expression_table], warehouse, "airway")
    assert _metadata(again, "differential_expression")["unchanged"] is True
    assert _contrasts_check(again).metadata["skipped"].value == check.metadata["skipped"].value
    # Every contrast fitted: the check passes.
    commit_load(airway, "airway", {"rna_counts": airway_long,
                                   "sample_attributes": airway_attributes}, load="v3", manifest=AIRWAY_CONTRASTS)
    assert _contrasts_check(_materialize([differential_expression_table], warehouse, "airway")).passed


def test_differential_expression_of_a_study_without_counts_warns_naming_its_contrast(
        warehouse: WarehouseResource) -> None:
    # small19: a proteomics-only study's contrast was silently ignored: an empty partition and a passing
    # contrasts_fitted check; now the check warns and skipped_contrasts names it and why
    lake = warehouse.lake()
    attributes = pl.DataFrame({"sample_id": ["a1", "a2", "b1", "b2"], "attribute": "group",
                               "value": ["a", "a", "b", "b"], "value_type": "string"})
    commit_load(lake, "prot_only", {"sample_attributes": attributes}, load="v1",  # no rna_counts rows
                manifest={"contrasts": [{"name": "b_vs_a", "factor": "group", "test": "b", "reference": "a"}]})
    result = _materialize([differential_expression_table], warehouse, "prot_only")
    assert result.success  # the study is published all the same
    assert lake.scan("differential_expression", study_id="prot_only").collect().height == 0
    why = "contrast 'b_vs_a' skipped: differential expression needs RNA counts and the study has no rna_counts rows"
    assert _metadata(result, "differential_expression")["skipped_contrasts"] == {"b_vs_a": why}
    check = _contrasts_check(result)
    assert (check.passed, check.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert check.metadata["skipped"].value == why


def test_abundance_only_study_uses_the_zscore_reference(warehouse: WarehouseResource) -> None:
    lake = warehouse.lake()
    samples = ["n1", "n2", "t1"]
    tpm = pl.DataFrame({"assay": "rsem", "sample_id": samples * 2, "gene_id": [7157] * 3 + [None] * 3,
                        "feature_id": ["TP53"] * 3 + ["X"] * 3, "measure": "tpm",
                        "value": [1.0, 3.0, 15.0, 0.0, 0.0, 0.0]})
    zscores = tpm.with_columns(pl.lit("rsem_z").alias("assay"), pl.lit("zscore").alias("measure"))
    attributes = pl.DataFrame({"sample_id": samples, "attribute": "tissue", "value": ["normal", "normal", "tumour"],
                               "value_type": "string"})
    commit_load(lake, "tpm_only", {"rna_abundance": pl.concat([tpm, zscores]), "sample_attributes": attributes},
                load="v1", manifest={"zscore_reference": {"attribute": "tissue", "values": ["normal"]}})
    result = _materialize(NORMALISE, warehouse, "tpm_only")
    rows = lake.scan("rna_normalized", study_id="tpm_only").collect().sort("feature_id", "sample_id")
    assert set(rows["assay"]) == {"rsem"}
    assert set(rows["source"]) == {"abundance"}
    tp53 = rows.filter(pl.col("feature_id") == "TP53")
    # log2(x + 1) of 1, 3, 15 = 1, 2, 4; reference n1, n2: mean 1.5, SD sqrt(0.5)
    assert tp53["log2_value"].to_list() == [1.0, 2.0, 4.0]
    np.testing.assert_allclose(tp53["zscore"].to_numpy(), (np.array([1, 2, 4]) - 1.5) / np.sqrt(0.5))
    assert tp53["tpm"].to_list() == [1.0, 3.0, 15.0]
    assert tp53["log2_cpm"].null_count() == 3
    assert rows.filter(pl.col("feature_id") == "X")["zscore"].null_count() == 3  # constant gene
    meta = _metadata(result, "rna_normalized")
    assert meta["zscore_reference"] == "samples with tissue in ['normal']"
    assert meta["rsem.reference_samples"] == 2
    assert meta["skipped_zscore_assays"] == "rsem_z"
    assert lake.scan("rna_sample_factors", study_id="tpm_only").collect().height == 0
    assert "no rna_counts" in str(_metadata(result, "rna_vst")["note"])
