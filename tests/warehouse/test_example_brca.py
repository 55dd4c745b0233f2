"""The bundled ``examples/brca`` (mixOmics TCGA BRCA mRNA + RPPA, PAM50 subtype) through ``omicsdw build``.

It is the example that scores the shipped Hallmark library (its 200 genes reach 16 Hallmark sets with >= 5
measured genes; airway's 20-gene window reaches none) and has RNA and protein of the same samples. Its RPPA columns
are bare antibody names; the shipped MD Anderson / TCGA annotation (``GENE|antibody``) resolves them, and two genes
are then measured by both layers: STAT5A (``STAT5A|STAT5-alpha``) and COL6A1 (``COL6A1|Collagen_VI``). The
shipped spec ``features/brca_pam50.yaml`` is built as ``make run`` builds it. Every
figure below is computed from the example's files with scipy / numpy (spearmanr, pearsonr, Welch ttest_ind,
false_discovery_control), never read from the warehouse.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

import warehouse
from tests.warehouse.catalog_sql import sql as _sql
from warehouse.cli import main

pytestmark = pytest.mark.slow
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "brca"
FEATURES = Path(__file__).resolve().parents[2] / "features"


@pytest.fixture(scope="module")
def built(tmp_path_factory, example_landing) -> Path:
    """The warehouse of ``make run`` for this study: ``build --features features`` (the shipped spec folder)."""
    tmp = tmp_path_factory.mktemp("brca_example")
    landing = example_landing(tmp, "brca")
    assert main(["build", "--landing", str(landing), "--warehouse", str(tmp / "wh"),
                 "--features", str(FEATURES)]) == 0
    return tmp / "wh"


def test_example_scores_hallmark_with_every_method(built):
    found = _sql(built, "SELECT method, count(DISTINCT gene_set), count(*) FROM signature_scores "
                        "WHERE library = 'msigdb_hallmark' GROUP BY method ORDER BY method")
    assert found == [(m, 16, 16 * 150) for m in ("singscore", "ssgsea", "weighted")]


BOTH = (("COL6A1", "Collagen_VI", 1291), ("STAT5A", "STAT5-alpha", 6776))
"""Gene, RPPA antibody and Entrez id of the genes measured by both layers (TCGA annotation; org.Hs.eg.db)."""


@pytest.fixture(scope="module")
def source() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    read = [pl.read_csv(EXAMPLE / f, separator="\t") for f in ("mrna.tsv", "protein.tsv", "samples.tsv")]
    return read[0], read[1], read[2]


def test_example_rna_and_protein_land_unchanged_on_the_genes_both_measure(built, source):
    mrna, protein, _ = source
    rows = _sql(built, "SELECT sample_id, symbol, rna_log2, protein_log2, protein_assay FROM gene_sample_omics "
                       "WHERE symbol IN ('NDRG2', 'GATA3', 'STAT5A', 'COL6A1')")
    order = mrna["sample_id"].to_list()
    antibodies = {"NDRG2": None, "GATA3": "GATA3", "STAT5A": "STAT5-alpha", "COL6A1": "Collagen_VI"}
    for sample_id, symbol, rna_log2, protein_log2, protein_assay in rows:
        i = order.index(sample_id)
        rna = None if symbol == "GATA3" else mrna[symbol][i]
        antibody = antibodies[symbol]
        expected = (rna, None if antibody is None else protein[antibody][i],
                    None if antibody is None else f"rppa:{antibody}")
        assert (rna_log2, protein_log2, protein_assay) == expected
    assert len(rows) == 4 * 150
    both = _sql(built, "SELECT symbol, count(*) FROM gene_sample_omics WHERE rna_log2 IS NOT NULL "
                       "AND protein_log2 IS NOT NULL GROUP BY symbol ORDER BY symbol")
    assert both == [("COL6A1", 150), ("STAT5A", 150)]


def test_example_rna_protein_correlations_equal_scipy(built, source):
    mrna, protein, _ = source
    for method, test in (("spearman", stats.spearmanr), ("pearson", stats.pearsonr)):
        found = [row[1:] for row in _sql(
            built, "SELECT method, gene_id, r, pvalue, fdr, n, protein_ambiguous FROM omics_correlations "
                   "WHERE layer_x = 'rna' AND layer_y = 'protein' ORDER BY gene_id") if row[0] == method]
        results = [test(mrna[gene], protein[antibody]) for gene, antibody, _ in BOTH]
        fdr = stats.false_discovery_control([r.pvalue for r in results], method="bh")
        assert [row[0] for row in found] == [gene_id for _, _, gene_id in BOTH]
        for row, result, q in zip(found, results, fdr, strict=True):
            assert row[1] == pytest.approx(result.statistic, abs=1e-12)
            assert row[2] == pytest.approx(result.pvalue, rel=1e-9)
            assert row[3] == pytest.approx(q, rel=1e-9)
            assert row[4:] == (150, False)
    summary = _sql(built, "SELECT n_genes, median_r, r_histogram FROM omics_correlation_summary "
                          "WHERE study_id = 'brca' AND layer_x = 'rna' AND layer_y = 'protein' AND method = 'spearman'")
    rhos = [stats.spearmanr(mrna[gene], protein[antibody]).statistic for gene, antibody, _ in BOTH]
    assert summary[0][0] == 2
    assert summary[0][1] == pytest.approx(float(np.median(rhos)), abs=1e-12)
    bins = [round(float(np.floor(r * 10)) / 10, 1) for r in rhos]  # 0.24 -> 0.2, 0.47 -> 0.4
    assert summary[0][2] == {b: bins.count(b) for b in bins}
    assert sorted(bins) == [0.2, 0.4]


def test_example_biomarker_candidates_equal_welch_between_pam50_groups(built, source):
    mrna, protein, samples = source
    subtype = mrna.select("sample_id").join(samples, on="sample_id", how="left")["subtype"]
    basal, luma = (subtype == "Basal").to_numpy(), (subtype == "LumA").to_numpy()
    assert (basal.sum(), luma.sum()) == (45, 75)
    # RNA side (no counts: rna_method welch): Welch on every mRNA gene that maps; BH over them. Unmapped
    # columns (tests/data/tcga_brca_mixomics/SOURCE.md): FLJ23867 unresolved, C7orf55 and HN1 ambiguous aliases
    genes = [g for g in mrna.columns[1:] if g not in ("FLJ23867", "C7orf55", "HN1")]
    rna_p = [stats.ttest_ind(mrna[g].to_numpy()[basal], mrna[g].to_numpy()[luma], equal_var=False).pvalue
             for g in genes]
    rna_padj = dict(zip(genes, stats.false_discovery_control(rna_p, method="bh"), strict=True))
    found = _sql(built, "SELECT gene_id, contrast, rna_log2fc, rna_padj, rna_method, protein_difference, "
                        "protein_pvalue, rna_protein_r, concordant FROM biomarker_candidates ORDER BY gene_id")
    assert [row[:2] for row in found] == [(gene_id, "basal_vs_luma") for _, _, gene_id in BOTH]
    for row, (gene, antibody, _) in zip(found, BOTH, strict=True):
        rna, prot = mrna[gene].to_numpy(), protein[antibody].to_numpy()
        protein_test = stats.ttest_ind(prot[basal], prot[luma], equal_var=False)
        fold = rna[basal].mean() - rna[luma].mean()
        difference = prot[basal].mean() - prot[luma].mean()
        assert row[2] == pytest.approx(fold, abs=1e-12)
        assert row[3] == pytest.approx(rna_padj[gene], rel=1e-9)
        assert row[4] == "welch"
        assert row[5] == pytest.approx(difference, abs=1e-12)
        assert row[6] == pytest.approx(protein_test.pvalue, rel=1e-9)
        assert row[7] == pytest.approx(stats.spearmanr(rna, prot).statistic, abs=1e-12)
        assert row[8] is bool(np.sign(fold) == np.sign(difference))
    # COL6A1 is lower in basal than luminal A tumours in both layers (hand check of the means above)
    assert (found[0][2] < 0, found[0][5] < 0, found[0][8]) == (True, True, True)


def test_example_report_lists_the_biomarker_candidates_and_says_why_there_is_no_de(built, source):
    # the known defect (small19): brca's report said there is no DE and showed none of its Welch candidates
    mrna, protein, samples = source
    subtype = mrna.select("sample_id").join(samples, on="sample_id", how="left")["subtype"]
    basal, luma = (subtype == "Basal").to_numpy(), (subtype == "LumA").to_numpy()
    genes = [g for g in mrna.columns[1:] if g not in ("FLJ23867", "C7orf55", "HN1")]  # as the test above
    rna_padj = dict(zip(genes, stats.false_discovery_control(
        [stats.ttest_ind(mrna[g].to_numpy()[basal], mrna[g].to_numpy()[luma], equal_var=False).pvalue
         for g in genes], method="bh"), strict=True))
    page = (built / "reports" / "brca" / "index.html").read_text()
    section = page[page.index('<section id="biomarker-candidates">'):]
    section = section[:section.index("</section>")]
    assert "<h3>basal_vs_luma</h3>" in section
    rows = section.split("<h3>basal_vs_luma</h3>")[1].split("<tr>")[2:]  # after the header row
    by_padj = sorted(BOTH, key=lambda gene: rna_padj[gene[0]])
    assert [row.split("</td>")[1].removeprefix("<td>") for row in rows] == [gene for gene, _, _ in by_padj]
    for row, (gene, antibody, gene_id) in zip(rows, by_padj, strict=True):
        prot = protein[antibody].to_numpy()
        cells = [c.removeprefix("<td>") for c in row.split("</td>")[:9]]
        assert cells[0] == str(gene_id)
        assert cells[3] == f"{rna_padj[gene]:.4g}"
        assert cells[4] == "welch"
        assert cells[6] == f"{stats.ttest_ind(prot[basal], prot[luma], equal_var=False).pvalue:.4g}"
    # counts: 2 genes tested; COL6A1 passes 0.05 in RNA and protein, same sign (the test above), STAT5A neither
    assert "<td>basal_vs_luma</td><td>welch</td><td>2</td><td>1</td><td>1</td><td>1</td>" in section
    de = page[page.index('<section id="differential-expression">'):]
    assert "The contrast of study.yaml (basal_vs_luma) was skipped by DESeq2" in de[:de.index("</section>")]


def test_example_multi_gene_antibody_gives_each_gene_its_value_flagged(built, source):
    _, protein, _ = source
    # AKT1 AKT2 AKT3|Akt (annotation): each gene gets the total Akt antibody's value (before Akt_pS473 / _pT308)
    rows = _sql(built, "SELECT symbol, sample_id, protein_log2, protein_assay, protein_ambiguous "
                       "FROM gene_sample_omics WHERE symbol IN ('AKT1', 'AKT2', 'AKT3') ORDER BY symbol, sample_id")
    akt = dict(zip(protein["sample_id"], protein["Akt"], strict=True))
    assert len(rows) == 3 * 150
    assert all(r[2:] == (akt[r[1]], "rppa:Akt", True) for r in rows)
    profile = _sql(built, "SELECT symbol, protein_assay, protein_ambiguous FROM gene_omics_profile "
                          "WHERE symbol IN ('AKT1', 'STAT5A') ORDER BY symbol")
    assert profile == [("AKT1", "rppa:Akt", True), ("STAT5A", "rppa:STAT5-alpha", False)]


def test_example_gene_omics_profile_in_one_query(built, source):
    mrna, protein, _ = source
    row = _sql(built, "SELECT n_samples, n_rna, mean_rna_log2, n_protein, mean_protein_log2, rna_protein_spearman "
                      "FROM gene_omics_profile WHERE study_id = 'brca' AND symbol = 'STAT5A'")
    assert (row[0][0], row[0][1], row[0][3]) == (150, 150, 150)
    assert row[0][2] == pytest.approx(mrna["STAT5A"].mean(), abs=1e-12)
    assert row[0][4] == pytest.approx(protein["STAT5-alpha"].mean(), abs=1e-12)
    assert row[0][5] == pytest.approx(stats.spearmanr(mrna["STAT5A"], protein["STAT5-alpha"]).statistic, abs=1e-12)


def test_example_feature_set_from_the_shipped_spec_equals_the_source_files(built, source):
    mrna, protein, samples = source
    frame = warehouse.features("brca_pam50", warehouse=built)
    manifest = json.loads(warehouse.feature_versions("brca_pam50", warehouse=built)["manifest"][-1])
    # spec: Basal and LumA tumours (45 + 75); training samples split == train (2 of every 3 in file order)
    chosen = samples.filter(pl.col("subtype").is_in(["Basal", "LumA"]))
    train = chosen.filter(pl.col("split") == "train")["sample_id"].to_list()
    assert sorted(frame["sample_id"]) == sorted(chosen["sample_id"])
    assert sorted(s for _, s in manifest["train"]) == sorted(train)
    assert len(train) == 80
    # rna: the 50 mapped genes of highest variance over the training samples only (numpy, ddof=1); the three
    # columns that map to no gene (tests/data/tcga_brca_mixomics/SOURCE.md) are not candidates
    rows = mrna.filter(pl.col("sample_id").is_in(train))
    candidates = [g for g in mrna.columns[1:] if g not in ("FLJ23867", "C7orf55", "HN1")]
    variance = {g: float(np.var(rows[g].to_numpy(), ddof=1)) for g in candidates}
    top = sorted(candidates, key=lambda g: -variance[g])[:50]
    symbols = dict(_sql(built, "SELECT m.feature_id, g.symbol FROM gene_id_map m JOIN genes g USING (gene_id) "
                               "WHERE m.study_id = 'brca' AND m.assay = 'mrna'"))
    rna = [c for c in frame.columns if c.startswith("rna__")]
    assert sorted(rna) == sorted(f"rna__{symbols[g]}" for g in top)
    # every cell: (value - training mean) / training SD, the parameters stored with the version
    checks = [(f"rna__{symbols[g]}", mrna, g) for g in top] + [
        (f"protein__{gene}", protein, antibody) for gene, antibody in
        (("ESR1", "ER-alpha"), ("STAT5A", "STAT5-alpha"), ("COL6A1", "Collagen_VI"), ("GATA3", "GATA3"))]
    for column, table, source_column in checks:
        values = table.filter(pl.col("sample_id").is_in(train))[source_column].to_numpy()
        mean, sd = values.mean(), values.std(ddof=1)
        assert manifest["scaling"][column]["mean"] == pytest.approx(mean, rel=1e-12)
        assert manifest["scaling"][column]["sd"] == pytest.approx(sd, rel=1e-12)
        cells = frame.select("sample_id", column).join(table.select("sample_id", source_column), on="sample_id")
        expected = (cells[source_column].to_numpy() - mean) / sd
        assert cells[column].to_numpy() == pytest.approx(expected, rel=1e-9, abs=1e-12)
    # on the training samples each scaled column has mean 0 and SD 1; on the held-out ones it need not
    held_out = frame.filter(~pl.col("sample_id").is_in(train))["protein__ESR1"].to_numpy()
    assert abs(held_out.mean()) > 1e-6
    assert [c for c in frame.columns if c.startswith("signature__")] == [
        "signature__HALLMARK_ESTROGEN_RESPONSE_EARLY", "signature__HALLMARK_G2M_CHECKPOINT"]
    assert frame.width == 2 + 50 + 7 + 2
