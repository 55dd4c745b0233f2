"""gene_sample_omics on hand-written rows: which source wins per layer, panels, ambiguous protein groups."""

from __future__ import annotations

import polars as pl
import pytest

from schemas.tables import polars_schema
from transforms.cross_omics.joins import gene_sample_omics


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
