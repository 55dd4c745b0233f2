"""gene_sample_omics on hand-written rows: which source wins per layer, panels, ambiguous protein groups."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from schemas.tables import polars_schema
from transforms.cross_omics.joins import copy_number_layer, gene_sample_omics, protein_layer


def _frame(table: str, rows: list[dict]) -> pl.LazyFrame:
    schema = polars_schema(table)
    full = [{c: r.get(c, "s" if c == "study_id" else None) for c in schema} for r in rows]
    return pl.DataFrame(full, schema=schema).lazy()


@pytest.fixture
def joined() -> pl.DataFrame:
    rna = _frame("rna_normalized", [
        {"assay": "tpm", "sample_id": "A", "gene_id": 7157, "feature_id": "TP53", "source": "abundance",
         "log2_value": 9.0, "zscore": 1.0},
        {"assay": "counts", "sample_id": "A", "gene_id": 7157, "feature_id": "TP53", "source": "counts",
         "log2_value": 5.0, "zscore": -1.0},
        {"assay": "counts", "sample_id": "B", "gene_id": 7157, "feature_id": "TP53", "source": "counts",
         "log2_value": 6.0, "zscore": 1.0},
    ])
    protein = _frame("protein_abundance", [
        {"assay": "rppa", "sample_id": "A", "gene_id": 7157, "feature_id": "p53", "platform": "rppa",
         "is_phospho": False, "is_ambiguous": False, "log2_abundance": 0.5},
        {"assay": "ms", "sample_id": "A", "gene_id": 7157, "feature_id": "P04637", "platform": "ms",
         "is_phospho": False, "is_ambiguous": False, "log2_abundance": 20.0},
        {"assay": "ms", "sample_id": "B", "gene_id": 7157, "feature_id": "P04637", "platform": "ms",
         "is_phospho": False, "is_ambiguous": False, "log2_abundance": 22.0},
        {"assay": "ms", "sample_id": "A", "gene_id": 4609, "feature_id": "P01106;P12524", "platform": "ms",
         "is_phospho": False, "is_ambiguous": True, "log2_abundance": 18.0},
    ])
    cn = _frame("copy_number", [
        {"assay": "cna", "sample_id": "A", "gene_id": 4609, "feature_id": "MYC", "call": 2},
        {"assay": "log2", "sample_id": "A", "gene_id": 4609, "feature_id": "MYC", "log2_ratio": 1.2},
    ])
    status = _frame("gene_mutation_status", [
        {"assay": "maf", "sample_id": "A", "gene_id": 7157, "feature_id": "TP53", "mutated": True,
         "top_consequence": "missense_variant"},
        {"assay": "maf", "sample_id": "B", "gene_id": 7157, "feature_id": "TP53", "mutated": False},
        {"assay": "maf", "sample_id": "C", "gene_id": 7157, "feature_id": "TP53", "mutated": None},
    ])
    variants = _frame("variants", [
        {"assay": "maf", "sample_id": "A", "gene_id": 7157, "feature_id": "TP53", "consequence": "stop_gained"},
        {"assay": "maf", "sample_id": "A", "gene_id": 7157, "feature_id": "TP53",
         "consequence": "missense_variant"},
        {"assay": "maf", "sample_id": "A", "gene_id": 7157, "feature_id": "TP53",
         "consequence": "synonymous_variant"},
    ])
    genes = pl.LazyFrame({"gene_id": [7157, 4609], "symbol": ["TP53", "MYC"]})
    return gene_sample_omics(rna, protein, cn, status, variants, genes, study_id="s",
                             non_silent=["stop_gained", "missense_variant"]).collect().sort("gene_id", "sample_id")


def test_gene_sample_omics_counts_before_abundance_and_ms_before_rppa(joined):
    tp53 = joined.filter(pl.col("gene_id") == 7157)
    assert tp53["sample_id"].to_list() == ["A", "B"]  # C: not profiled and no other value -> no row
    assert tp53["rna_log2"].to_list() == [5.0, 6.0]
    assert tp53["rna_assay"].to_list() == ["counts", "counts"]
    assert tp53["protein_log2"].to_list() == [20.0, 22.0]
    # z-score by hand: mean 21, SD sqrt(2)
    assert tp53["protein_zscore"].to_list() == pytest.approx([-1 / 2 ** 0.5, 1 / 2 ** 0.5])
    assert tp53["mutated"].to_list() == [True, False]
    assert tp53["mutation_classes"].to_list() == ["missense_variant; stop_gained", None]
    assert tp53["symbol"].to_list() == ["TP53", "TP53"]


def test_gene_sample_omics_copy_number_from_both_assays_and_flags_shared_groups(joined):
    myc = joined.filter(pl.col("gene_id") == 4609).row(0, named=True)
    assert (myc["cn_call"], myc["cn_log2"]) == (2, 1.2)
    assert myc["protein_log2"] == 18.0
    assert myc["protein_ambiguous"] is True
    assert myc["protein_zscore"] is None  # one sample: SD undefined
    assert myc["rna_log2"] is None
    assert myc["mutated"] is None


def test_copy_number_layer_prefers_a_gene_level_assay_over_values_placed_from_segments():
    # cBioPortal study_es_0 names its SEG assay cna_hg19_seg, which sorts before cna_log2: the measured gene-level
    # log2 ratio must still win, and the segment value fills a gene the matrix lacks
    rows = pl.LazyFrame({"assay": ["cna_hg19_seg", "cna_log2", "cna_hg19_seg"], "sample_id": ["s1", "s1", "s1"],
                         "gene_id": [7157, 7157, 4609], "feature_id": ["TP53", "TP53", "MYC"],
                         "log2_ratio": [-0.8, -0.3, 0.5], "call": pl.Series([None, None, None], dtype=pl.Int8)})
    out = copy_number_layer(rows, segment_assays=["cna_hg19_seg"]).collect().sort("gene_id")
    assert out["cn_log2"].to_list() == [0.5, -0.3]
    assert copy_number_layer(rows).collect().sort("gene_id")["cn_log2"].to_list() == [0.5, -0.8]


def test_protein_layer_z_scores_do_not_depend_on_the_row_order_and_equal_numpy_by_hand():
    """The per-gene mean and SD summed the values in arrival order, which the block split's sink and the source
    join do not fix: shuffled rows gave z-scores 1 ulp apart. Two sources of one gene (the join path) included.
    """
    rng = np.random.default_rng(5)
    genes, samples = 40, 150
    frame = pl.DataFrame({
        "sample_id": np.repeat([f"S{j:03d}" for j in range(samples)], genes), "gene_id": np.tile(np.arange(genes),
                                                                                                  samples),
        "assay": "ms", "feature_id": np.tile([f"P{k}" for k in range(genes)], samples), "platform": "ms",
        "is_phospho": False, "is_ambiguous": False,
        "log2_abundance": rng.normal(20, 3, genes * samples) * 10.0 ** rng.integers(-2, 3, genes * samples)})
    rppa = frame.filter(pl.col("gene_id") < 5).with_columns(assay=pl.lit("rppa"), platform=pl.lit("rppa"),
                                                             log2_abundance=pl.lit(1.0))
    rows = pl.concat([frame, rppa]).with_columns(
        pl.when(pl.int_range(pl.len()) % 17 == 0).then(None).otherwise("log2_abundance").alias("log2_abundance"))
    results = set()
    for seed in range(5):
        out = protein_layer(rows.sample(fraction=1.0, shuffle=True, seed=seed).lazy()).collect()
        results.add(out.sort("gene_id", "sample_id")["protein_zscore"].to_numpy().tobytes())
    assert len(results) == 1
    assert out["protein_assay"].str.starts_with("ms:").all()  # MS wins over RPPA for the two-source genes
    for gene in (0, 7, 39):
        mine = out.filter(pl.col("gene_id") == gene).sort("sample_id")
        values = np.sort(mine["protein_log2"].to_numpy())
        assert mine["protein_zscore"].to_list() == list(
            (mine["protein_log2"].to_numpy() - np.mean(values)) / np.std(values, ddof=1))
