"""biomarker_candidates on real RPPA values with a hand-made contrast and DESeq2-shaped rows."""

from __future__ import annotations

import polars as pl
import pytest
from scipy import stats

from schemas.manifest import Contrast
from transforms.cross_omics.study import biomarker_candidates


def test_biomarker_candidates_protein_welch_test_and_concordance(shared_data):
    protein = pl.read_csv(shared_data / "tcga_brca_mixomics" / "train_protein.tsv", separator="\t")
    samples = protein["sample_id"].to_list()
    gso = pl.DataFrame([{"gene_id": g, "sample_id": s, "protein_log2": protein[name][i]}
                        for g, name in ((2625, "GATA3"), (367, "AR")) for i, s in enumerate(samples)]).lazy()
    groups = ["tumour" if i % 2 == 0 else "normal" for i in range(len(samples))]
    attributes = pl.DataFrame({"study_id": "s", "sample_id": samples, "attribute": "tissue", "value": groups})
    differential = pl.LazyFrame({"contrast": ["t_vs_n"] * 3, "assay": ["counts"] * 3, "gene_id": [2625, 367, 1],
                                 "feature_id": ["GATA3", "AR", "X"], "log2_fold_change": [1.5, -0.5, 2.0],
                                 "padj": [0.01, 0.5, 0.2]})
    correlations = pl.DataFrame({"gene_id": [2625], "layer_x": ["rna"], "layer_y": ["protein"],
                                 "method": ["spearman"], "r": [0.42]})
    contrast = Contrast(name="t_vs_n", factor="tissue", test="tumour", reference="normal")
    found = biomarker_candidates(gso, differential, attributes, correlations, contrasts=[contrast], study_id="s",
                                 has_counts=True)
    assert sorted(found["gene_id"].to_list()) == [367, 2625]  # gene 1 has no protein
    assert set(found["rna_method"]) == {"deseq2"}
    for gene, name in ((2625, "GATA3"), (367, "AR")):
        row = found.filter(pl.col("gene_id") == gene).row(0, named=True)
        values = protein[name].to_numpy()
        test, ref = values[0::2], values[1::2]
        assert row["protein_difference"] == pytest.approx(test.mean() - ref.mean())
        assert row["protein_pvalue"] == pytest.approx(stats.ttest_ind(test, ref, equal_var=False).pvalue, rel=1e-9)
        lfc = 1.5 if gene == 2625 else -0.5
        assert row["rna_log2fc"] == lfc
        assert row["concordant"] is bool((lfc > 0) == (test.mean() - ref.mean() > 0))
    assert found.filter(pl.col("gene_id") == 2625)["rna_protein_r"].item() == 0.42
    assert found.filter(pl.col("gene_id") == 367)["rna_protein_r"].item() is None


def test_biomarker_candidates_rna_side_is_welch_on_log2_without_deseq2_rows(shared_data):
    """A study of log-scale abundances has no differential_expression rows: the RNA side is a Welch t-test of
    rna_log2 between the contrast's groups, BH over the tested genes (real mRNA values; the mixOmics mRNA and
    RPPA share no gene, so protein values of two antibodies are put on two mRNA genes here).
    """
    mrna = pl.read_csv(shared_data / "tcga_brca_mixomics" / "train_mrna.tsv", separator="\t")
    protein = pl.read_csv(shared_data / "tcga_brca_mixomics" / "train_protein.tsv", separator="\t")
    samples = mrna["sample_id"].to_list()
    genes = {1001: "NDRG2", 1002: "RTN2", 1003: "ZEB1"}  # gene ids made up; values are the symbols' mRNA
    rna = [{"gene_id": g, "sample_id": s, "rna_log2": mrna[name][i], "protein_log2": None}
           for g, name in genes.items() for i, s in enumerate(samples)]
    prot = [{"gene_id": g, "sample_id": s, "rna_log2": None, "protein_log2": protein[name][i]}
            for g, name in ((1001, "GATA3"), (1002, "AR")) for i, s in enumerate(samples)]
    gso = pl.DataFrame(rna + prot).group_by("gene_id", "sample_id").agg(
        pl.col("rna_log2").drop_nulls().first(), pl.col("protein_log2").drop_nulls().first()).lazy()
    groups = ["a" if i < 12 else "b" for i in range(len(samples))]
    attributes = pl.DataFrame({"study_id": "s", "sample_id": samples, "attribute": "arm", "value": groups})
    differential = pl.LazyFrame(schema={"contrast": pl.String, "assay": pl.String, "gene_id": pl.Int64,
                                        "feature_id": pl.String, "log2_fold_change": pl.Float64,
                                        "padj": pl.Float64})
    contrast = Contrast(name="b_vs_a", factor="arm", test="b", reference="a")
    found = biomarker_candidates(gso, differential, pl.DataFrame(attributes), pl.DataFrame(
        schema={"gene_id": pl.Int64, "layer_x": pl.String, "layer_y": pl.String, "method": pl.String,
                "r": pl.Float64}), contrasts=[contrast], study_id="s", has_counts=False)
    assert sorted(found["gene_id"].to_list()) == [1001, 1002]  # ZEB1 has no protein
    assert set(found["rna_method"]) == {"welch"}
    tests = {g: stats.ttest_ind(mrna[name].to_numpy()[12:], mrna[name].to_numpy()[:12], equal_var=False)
             for g, name in genes.items()}
    padj = stats.false_discovery_control([tests[g].pvalue for g in genes], method="bh")  # all three genes tested
    for row in found.iter_rows(named=True):
        values = mrna[genes[row["gene_id"]]].to_numpy()
        assert row["rna_log2fc"] == pytest.approx(values[12:].mean() - values[:12].mean(), rel=1e-12)
        assert row["rna_padj"] == pytest.approx(padj[list(genes).index(row["gene_id"])], rel=1e-9)


def test_biomarker_candidates_no_welch_stand_in_for_a_contrast_de_skipped(shared_data):
    """In a study with counts, a contrast without differential_expression rows was skipped by DE (its design could
    not be fitted): it gets no candidates. A Welch test of rna_log2 stood in for DESeq2 there, ignoring the
    covariates that made DE skip it; the contrast DE fitted keeps its DESeq2 rows."""
    protein = pl.read_csv(shared_data / "tcga_brca_mixomics" / "train_protein.tsv", separator="\t")
    samples = protein["sample_id"].to_list()
    gso = pl.DataFrame([{"gene_id": 2625, "sample_id": s, "protein_log2": protein["GATA3"][i],
                         "rna_log2": protein["AR"][i]} for i, s in enumerate(samples)]).lazy()
    attributes = pl.DataFrame({"study_id": "s", "sample_id": samples, "attribute": "tissue",
                               "value": ["tumour" if i % 2 == 0 else "normal" for i in range(len(samples))]})
    differential = pl.LazyFrame({"contrast": ["fitted"], "assay": ["counts"], "gene_id": [2625],
                                 "feature_id": ["GATA3"], "log2_fold_change": [1.5], "padj": [0.01]})
    contrasts = [Contrast(name=name, factor="tissue", test="tumour", reference="normal")
                 for name in ("fitted", "skipped")]
    no_correlations = pl.DataFrame(schema={"gene_id": pl.Int64, "layer_x": pl.String, "layer_y": pl.String,
                                           "method": pl.String, "r": pl.Float64})
    found = biomarker_candidates(gso, differential, attributes, no_correlations, contrasts=contrasts, study_id="s",
                                 has_counts=True)
    assert found.select("contrast", "rna_method", "rna_log2fc").rows() == [("fitted", "deseq2", 1.5)]
    every_skipped = biomarker_candidates(gso, differential.clear(), attributes, no_correlations,
                                         contrasts=contrasts, study_id="s", has_counts=True)
    assert every_skipped.height == 0  # DE skipped every contrast: still no Welch stand-in (review18)
