"""The cross-omics tables of a built study equal scipy on the source files.

A study.yaml over the 20-sample TCGA BRCA subset (mixOmics mRNA, log2 as given, and RPPA; the mRNA file is
transposed here into genes x samples), with small copy-number and mutation matrices written here (hand-counted).
References are computed from the source files with scipy, never from the warehouse. The mixOmics mRNA genes and
RPPA antibodies share two genes once the antibodies resolve through the shipped MD Anderson / TCGA annotation
(STAT5A|STAT5-alpha, COL6A1|Collagen_VI): RNA vs protein on those, copy number vs RNA and vs protein on the
hand-written ramps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

import warehouse as api
from tests.warehouse.brca_study import CN_GENES, ramp, write_brca_study
from warehouse.cli import main

pytestmark = pytest.mark.slow


def _sql(wh: Path, query: str) -> pl.DataFrame:
    con = api.connect(wh)
    try:
        return con.sql(query).pl()
    finally:
        con.close()


@pytest.fixture(scope="module")
def built(tmp_path_factory, shared_data) -> tuple[Path, pl.DataFrame, pl.DataFrame]:
    tmp = tmp_path_factory.mktemp("brca")
    mrna, protein = write_brca_study(tmp / "landing" / "brca", shared_data)
    warehouse = tmp / "wh"
    assert main(["build", "--landing", str(tmp / "landing"), "--warehouse", str(warehouse)]) == 0
    return warehouse, mrna, protein


def test_gene_sample_omics_cells_equal_the_source_files(built):
    warehouse, mrna, protein = built
    rows = _sql(warehouse, "SELECT sample_id, symbol, rna_log2, protein_log2, mutated, cn_log2 "
                           "FROM gene_sample_omics WHERE symbol IN ('GATA3', 'AR', 'NDRG2')")
    order = mrna["sample_id"].to_list()
    for row in rows.iter_rows(named=True):
        i = order.index(row["sample_id"])
        source = mrna if row["symbol"] == "NDRG2" else protein
        value = row["rna_log2"] if row["symbol"] == "NDRG2" else row["protein_log2"]
        assert value == source[row["symbol"]][i]
        assert row["cn_log2"] == ramp(i, CN_GENES[row["symbol"]])
        expected = None if i == 0 or row["symbol"] == "AR" else i % 3 == 1
        assert row["mutated"] is expected
    assert rows.height == 3 * mrna.height


def test_omics_correlations_equal_scipy_on_the_source_files(built):
    warehouse, mrna, protein = built
    found = _sql(warehouse, "SELECT g.symbol, c.* FROM omics_correlations c JOIN genes g USING (gene_id)")
    pairs = {("GATA3", "protein"): protein, ("AR", "protein"): protein, ("NDRG2", "rna"): mrna}
    for (symbol, layer), source in pairs.items():
        cn = [ramp(i, CN_GENES[symbol]) for i in range(mrna.height)]
        y = source[symbol].to_numpy()
        rho, pearson = stats.spearmanr(cn, y), stats.pearsonr(cn, y)
        rows = found.filter((pl.col("symbol") == symbol) & (pl.col("layer_x") == "copy_number")
                            & (pl.col("layer_y") == layer))
        row = {r["method"]: r for r in rows.iter_rows(named=True)}
        assert row["spearman"]["n"] == row["pearson"]["n"] == mrna.height
        assert row["spearman"]["r"] == pytest.approx(rho.statistic, abs=1e-12)
        assert row["spearman"]["pvalue"] == pytest.approx(rho.pvalue, rel=1e-9)
        assert row["pearson"]["r"] == pytest.approx(pearson.statistic, abs=1e-12)
        assert row["pearson"]["pvalue"] == pytest.approx(pearson.pvalue, rel=1e-9)
        assert row["pearson"]["protein_ambiguous"] is (False if layer == "protein" else None)


def test_rna_protein_correlations_equal_scipy_on_the_antibodies_the_annotation_resolves(built):
    warehouse, mrna, protein = built
    found = _sql(warehouse, "SELECT g.symbol, c.* FROM omics_correlations c JOIN genes g USING (gene_id) "
                            "WHERE layer_x = 'rna' AND layer_y = 'protein'")
    # annotation: STAT5A|STAT5-alpha, COL6A1|Collagen_VI; no other mRNA gene is an antibody target here
    assert sorted(set(found["symbol"])) == ["COL6A1", "STAT5A"]
    for method, test in (("spearman", stats.spearmanr), ("pearson", stats.pearsonr)):
        rows = found.filter(pl.col("method") == method).sort("symbol")
        results = [test(mrna[gene], protein[antibody]) for gene, antibody in
                   (("COL6A1", "Collagen_VI"), ("STAT5A", "STAT5-alpha"))]
        assert rows["r"].to_list() == pytest.approx([r.statistic for r in results], abs=1e-12)
        assert rows["pvalue"].to_list() == pytest.approx([r.pvalue for r in results], rel=1e-9)
        # BH within the study, pair of layers and method: over these two p-values
        bh = stats.false_discovery_control([r.pvalue for r in results], method="bh")
        assert rows["fdr"].to_list() == pytest.approx(list(bh), rel=1e-9)
        assert rows["n"].to_list() == [mrna.height] * 2
        assert rows["protein_ambiguous"].to_list() == [False, False]


def test_mutation_effects_equal_welch_ttest_on_the_source_files(built):
    warehouse, mrna, protein = built
    found = _sql(warehouse, "SELECT g.symbol, e.* FROM mutation_effects e JOIN genes g USING (gene_id)")
    mutated = np.array([i % 3 == 1 for i in range(1, mrna.height)])
    for symbol, layer, source in (("NDRG2", "rna", mrna), ("GATA3", "protein", protein)):
        values = source[symbol].to_numpy()[1:]  # the first sample is not profiled: neither group
        test = stats.ttest_ind(values[mutated], values[~mutated], equal_var=False)
        row = found.filter((pl.col("symbol") == symbol) & (pl.col("layer") == layer)).row(0, named=True)
        assert (row["n_mutated"], row["n_wildtype"]) == (mutated.sum(), (~mutated).sum())
        assert row["mean_difference"] == pytest.approx(values[mutated].mean() - values[~mutated].mean())
        assert row["statistic"] == pytest.approx(test.statistic, rel=1e-10)
        assert row["pvalue"] == pytest.approx(test.pvalue, rel=1e-9)
    assert found.height == 2


def test_gene_omics_profile_and_correlation_summary_views(built):
    warehouse, mrna, protein = built
    gata3 = _sql(warehouse, "SELECT * FROM gene_omics_profile WHERE symbol = 'GATA3'").row(0, named=True)
    assert (gata3["n_samples"], gata3["n_protein"], gata3["n_rna"]) == (mrna.height, mrna.height, 0)
    assert gata3["mean_protein_log2"] == pytest.approx(protein["GATA3"].mean())
    assert gata3["n_profiled"] == mrna.height - 1
    assert gata3["cn_protein_spearman"] == pytest.approx(
        stats.spearmanr([ramp(i, 3) for i in range(mrna.height)], protein["GATA3"]).statistic)
    summary = _sql(warehouse, "SELECT * FROM omics_correlation_summary WHERE method = 'spearman' "
                              "AND layer_x = 'copy_number' AND layer_y = 'protein'").row(0, named=True)
    rhos = [stats.spearmanr([ramp(i, CN_GENES[g]) for i in range(mrna.height)], protein[g]).statistic
            for g in ("GATA3", "AR")]
    assert summary["n_genes"] == 2
    assert summary["median_r"] == pytest.approx(float(np.median(rhos)))
