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
    found = biomarker_candidates(gso, differential, attributes, correlations, contrasts=[contrast], study_id="s")
    assert sorted(found["gene_id"].to_list()) == [367, 2625]  # gene 1 has no protein
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
