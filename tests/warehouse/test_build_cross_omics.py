"""The cross-omics tables of a built study equal scipy on the source files.

A study.yaml over the 20-sample TCGA BRCA subset (mixOmics mRNA, log2 as given, and RPPA; the mRNA file is
transposed here into genes x samples), with small copy-number and mutation matrices written here (hand-counted).
References are computed from the source files with scipy, never from the warehouse. The mixOmics mRNA genes and
RPPA antibodies share two genes once the antibodies resolve through the shipped MD Anderson / TCGA annotation
(STAT5A|STAT5-alpha, COL6A1|Collagen_VI): RNA vs protein on those, copy number vs RNA and vs protein on the
hand-written ramps.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from scipy import stats

import warehouse as api
from orchestration.assets.cross_omics import INPUTS
from tests.warehouse.brca_study import CN_GENES, ramp, write_brca_study
from transforms.cross_omics.study import cross_omics_study
from transforms.layers.variants import NON_SILENT
from warehouse.cli import main
from warehouse.storage import open_lake
from warehouse.study import StudyInputs

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


def test_block_wise_cross_omics_equals_the_one_shot_build_and_the_source_files(built, tmp_path):
    """Small gene blocks forced: the same rows and figures as one block, cells equal to the source files."""
    warehouse, mrna, protein = built
    lake = open_lake(warehouse, None)
    inputs = StudyInputs.of(lake, "brca")
    tables = {t: inputs.scan(t) for t in INPUTS}
    attributes = inputs.scan("sample_attributes").collect()

    def run(rows_per_block: int, workdir: Path) -> dict[str, pl.DataFrame]:
        out = cross_omics_study(tables, attributes, lake.scan("genes"), study_id="brca", contrasts=[],
                                non_silent=sorted(NON_SILENT), workdir=workdir, rows_per_block=rows_per_block)
        frames: dict[str, list[pl.DataFrame]] = {}
        for table, frame in out.frames:
            frames.setdefault(table, []).append(frame.lazy().collect())
        return {t: pl.concat(f).sort(pl.all()) for t, f in frames.items()}

    one = run(10**9, tmp_path / "one")
    many = run(300, tmp_path / "many")
    assert len(list((tmp_path / "many" / "gene_sample_omics").glob("*.parquet"))) > 10
    assert len(list((tmp_path / "one" / "gene_sample_omics").glob("*.parquet"))) == 1
    for table in ("gene_sample_omics", "omics_correlations", "mutation_effects"):
        assert_frame_equal(many[table], one[table])  # exact: same rows, same floats
    gso = many["gene_sample_omics"]
    assert gso.select("sample_id", "gene_id").is_duplicated().sum() == 0
    order = mrna["sample_id"].to_list()
    # an antibody's columns by the genes the shipped annotation gives it (`GENE1 GENE2|antibody`), else its own name
    shipped = Path(__file__).parents[2] / "transforms/ingest/reference/rppa_antibodies.json"
    annotation = json.loads(shipped.read_text())["antibodies"]
    targets = {a.split("|")[1]: a.split("|")[0].split() for a in annotation}
    columns_of: dict[str, list[str]] = {}
    for column in protein.columns[1:]:
        for gene in targets.get(column, [column]):
            columns_of.setdefault(gene, []).append(column)
    checked = 0
    for sample, symbol, rna, prot in gso.select("sample_id", "symbol", "rna_log2", "protein_log2").iter_rows():
        i = order.index(sample)
        if rna is not None and symbol in mrna.columns:
            assert rna == mrna[symbol][i]
            checked += 1
        if prot is not None and symbol in columns_of:
            assert prot in {protein[c][i] for c in columns_of[symbol]}
            checked += 1
    assert checked > 0.7 * gso.height  # the rest: mRNA aliases and antibody names outside the annotation
    effects = many["mutation_effects"].join(lake.scan("genes").select("gene_id", "symbol").collect(), on="gene_id")
    gata3 = effects.filter(pl.col("symbol") == "GATA3").row(0, named=True)
    values, mutated = protein["GATA3"].to_numpy()[1:], np.array([i % 3 == 1 for i in range(1, mrna.height)])
    assert gata3["pvalue"] == pytest.approx(
        stats.ttest_ind(values[mutated], values[~mutated], equal_var=False).pvalue, rel=1e-9)
