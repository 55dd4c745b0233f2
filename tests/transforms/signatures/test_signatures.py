"""Signatures stage: registry parsing, scores against gseapy / hand calculations, ORA against scipy, prerank
against gseapy's own run, connectivity of a contrast with itself and its reverse.

Real data: GEUVADIS RSEM TPMs (1,000 genes x 6 samples, tests/data/rnaseq_geuvadis_rsem), TCGA BRCA mRNA
(200 genes x 20 samples, tests/data/tcga_brca_mixomics), MSigDB Hallmark v7.4 (tests/data/genesets).
"""

from __future__ import annotations

import logging
from pathlib import Path

import gseapy
import numpy as np
import pandas as pd
import polars as pl
import pytest
import scipy.sparse as sp
from polars.testing import assert_frame_equal
from scipy.stats import hypergeom

from transforms.ingest.genes import GeneReference, resolve_gene_ids
from transforms.signatures import connectivity, enrichment, registry, scoring

SAMPLES = ["ERR188021", "ERR188088", "ERR188288", "ERR188297", "ERR188329", "ERR188356"]


@pytest.fixture(scope="module")
def geuvadis(shared_data) -> tuple[np.ndarray, list[int]]:
    """log2(TPM + 1) of the mapped genes (genes x samples) and their gene_ids."""
    frames = [pl.read_csv(shared_data / "rnaseq_geuvadis_rsem" / f"{s}.genes.results.gz", separator="\t")
              .select("gene_id", pl.col("TPM").alias(s)) for s in SAMPLES]
    wide = frames[0]
    for f in frames[1:]:
        wide = wide.join(f, on="gene_id")
    resolved = resolve_gene_ids(wide["gene_id"], reference=GeneReference.load())
    wide = (wide.join(resolved.select(pl.col("feature_id").alias("gene_id"), pl.col("gene_id").alias("entrez"),
                                      "status"), on="gene_id").filter(pl.col("status") == "mapped"))
    return np.log2(wide.select(SAMPLES).to_numpy() + 1), wide["entrez"].to_list()


@pytest.fixture(scope="module")
def hallmark_entrez(shared_data) -> dict[str, list[str]]:
    lib = registry.read_gmt(shared_data / "genesets" / "h.all.v7.4.entrez.gmt")
    sets: dict[str, list[str]] = {}
    for m in lib.members:
        sets.setdefault(str(m["gene_set"]), []).append(str(m["identifier"]))
    return sets


def _membership(sets: dict[str, list[str]], genes: list[str], *, min_size: int) -> tuple[list[str], sp.csr_array]:
    index = {g: i for i, g in enumerate(genes)}
    names, rows = [], []
    for name, members in sets.items():
        hits = sorted({index[g] for g in members if g in index})
        if len(hits) >= min_size:
            names.append(name)
            row = np.zeros(len(genes))
            row[hits] = 1
            rows.append(row)
    return names, sp.csr_array(np.array(rows))


def test_ssgsea_equals_gseapy_es_on_geuvadis_tpm(geuvadis, hallmark_entrez):
    values, gene_ids = geuvadis
    genes = [str(g) for g in gene_ids]
    names, member = _membership(hallmark_entrez, genes, min_size=5)
    assert len(names) >= 10
    mine = scoring.ssgsea(values, member, alpha=0.25)
    # gseapy reads an index of numeric-looking strings as data, not gene names: give the ids as the first column
    frame = pd.DataFrame(values, index=pd.Index(genes, name="gene"), columns=SAMPLES).reset_index()
    ref = gseapy.ssgsea(data=frame, gene_sets={n: hallmark_entrez[n] for n in names}, outdir=None,
                        sample_norm_method="rank", min_size=5, max_size=5000, permutation_num=0, no_plot=True,
                        threads=1, seed=1, verbose=False).res2d
    expected = ref.pivot(index="Term", columns="Name", values="ES").astype(float).loc[names, SAMPLES].to_numpy()
    np.testing.assert_allclose(mine, expected, rtol=1e-10, atol=1e-9)


def test_ssgsea_equals_gseapy_on_tcga_brca_symbols_with_ties(shared_data):
    wide = pl.read_csv(shared_data / "tcga_brca_mixomics" / "train_mrna.tsv", separator="\t")
    genes = wide.columns[1:]
    values = np.round(wide.select(genes).to_numpy().T, 1)  # rounding makes ties, ordered as gseapy orders them
    lib = registry.read_gmt(shared_data / "genesets" / "h.all.v7.4.symbols.gmt")
    sets: dict[str, list[str]] = {}
    for m in lib.members:
        sets.setdefault(str(m["gene_set"]), []).append(str(m["identifier"]))
    names, member = _membership(sets, genes, min_size=3)
    samples = wide["sample_id"].cast(pl.String).to_list()
    ref = gseapy.ssgsea(data=pd.DataFrame(values, index=genes, columns=samples),
                        gene_sets={n: sets[n] for n in names}, outdir=None, min_size=3, max_size=5000,
                        permutation_num=0, no_plot=True, threads=1, seed=1, verbose=False).res2d
    expected = ref.pivot(index="Term", columns="Name", values="ES").astype(float).loc[names, samples].to_numpy()
    np.testing.assert_allclose(scoring.ssgsea(values, member), expected, rtol=1e-10, atol=1e-9)


def test_singscore_matches_hand_calculation_up_and_up_down():
    # 6 genes, one sample; ascending ranks (ties "min"): values 5,1,3,3,9,0 -> ranks 5,2,3,3,6,1
    values = np.array([[5.0], [1.0], [3.0], [3.0], [9.0], [0.0]])
    up = sp.csr_array(np.array([[1, 0, 0, 0, 1, 0]]))  # ranks 5, 6 -> mean 5.5; bounds (k+1)/2 = 1.5, (2n-k+1)/2 = 5.5
    assert scoring.singscore(values, up)[0, 0] == pytest.approx((5.5 - 1.5) / (5.5 - 1.5) - 0.5)
    down = sp.csr_array(np.array([[0, 1, 0, 0, 0, 1]]))  # ranks 2, 1 -> mean 1.5 -> 0 -> 1 - 0 - 0.5 = 0.5
    assert scoring.singscore(values, up, down)[0, 0] == pytest.approx(1.0)
    up3 = sp.csr_array(np.array([[0, 0, 1, 1, 1, 0]]))  # ranks 3, 3, 6 -> mean 4; bounds 2 and 5
    assert scoring.singscore(values, up3)[0, 0] == pytest.approx((4 - 2) / (5 - 2) - 0.5)


def test_score_block_weighted_is_sum_of_weight_times_zscore():
    members = pl.DataFrame({"library": ["l"] * 5, "gene_set": ["AKT"] * 5, "identifier": list("abcde"),
                            "gene_id": [1, 2, 3, 4, 99], "weight": [1.0, 0.6, -1.0, 0.5, 2.0], "sign": [None] * 5},
                           schema_overrides={"sign": pl.Int8})
    sets = scoring.index_sets(members, np.array([1, 2, 3, 4, 5, 6]), min_measured=4)
    z = np.array([[1.0, -1.0], [2.0, 0.0], [0.5, np.nan], [0.0, 4.0], [9.0, 9.0], [7.0, 7.0]])
    values = np.arange(12, dtype=float).reshape(6, 2)
    scores = scoring.score_block(values, z, sets)
    # sample 1: 1*1 + 0.6*2 - 1*0.5 + 0.5*0 = 1.7; sample 2: -1 + 0 + 0 (NULL z) + 2 = 1.0 (gene 99 unmeasured)
    np.testing.assert_allclose(scores["weighted"], [[1.7, 1.0]])
    # weights split the signature: ssgsea = ES(up: 1, 2, 4) - ES(down: 3)
    up = sp.csr_array(np.array([[1, 1, 0, 1, 0, 0]]))
    down = sp.csr_array(np.array([[0, 0, 1, 0, 0, 0]]))
    np.testing.assert_allclose(scores["ssgsea"], scoring.ssgsea(values, up) - scoring.ssgsea(values, down))


def test_index_sets_skips_sets_with_fewer_than_five_measured_members():
    members = pl.DataFrame({"library": ["l"] * 7, "gene_set": ["BIG"] * 5 + ["SMALL"] * 2,
                            "identifier": list("abcdefg"), "gene_id": [1, 2, 3, 4, 5, 1, None],
                            "weight": [None] * 7, "sign": [None] * 7},
                           schema_overrides={"weight": pl.Float64, "sign": pl.Int8, "gene_id": pl.Int64})
    sets = scoring.index_sets(members, np.arange(1, 20))
    assert sets.keys == [("l", "BIG")]
    assert sets.skipped == [{"library": "l", "gene_set": "SMALL", "measured": 1,
                             "reason": "1 measured member(s), fewer than 5"}]


def test_read_signature_yaml_up_down_and_weights(tmp_path):
    path = tmp_path / "my_sigs.yaml"
    path.write_text("signatures:\n"
                    "  - name: PROLIFERATION_UP_APOPTOSIS_DOWN\n    description: text\n"
                    "    up: [CCNB1, CDK1, FOXM1]\n    down: [CDKN1A, BAX]\n"
                    "  - name: AKT_ACTIVITY\n    weights: {AKT1: 1.0, MTOR: 0.6, PTEN: -1.0}\n")
    lib = registry.read_signature_yaml(path)
    assert lib.name == "my_sigs"
    assert not lib.issues
    assert [(s["gene_set"], s["kind"]) for s in lib.sets] == [("PROLIFERATION_UP_APOPTOSIS_DOWN", "up_down"),
                                                             ("AKT_ACTIVITY", "weighted")]
    sets, members = registry.registry_frames([("study", "s1", lib)], reference=GeneReference.load())
    row = members.filter(pl.col("identifier") == "BAX").row(0, named=True)
    assert (row["sign"], row["weight"], row["gene_id"]) == (-1, None, 581)  # BAX = NCBI Gene 581
    assert members.filter(pl.col("identifier") == "PTEN")["weight"].item() == -1.0
    assert sets.filter(pl.col("gene_set") == "AKT_ACTIVITY").select("n_genes", "n_mapped").row(0) == (3, 3)


def test_bad_library_files_are_located_errors(tmp_path):
    gmt = tmp_path / "bad.gmt"
    gmt.write_text("SET_A\tdesc\tTP53\tBRCA1\nONLY_A_NAME\nSET_A\tdesc\tEGFR\n")
    issues = registry.read_gmt(gmt).issues
    assert [(i.code, i.line) for i in issues] == [("bad_gmt_line", 2), ("duplicate_gene_set", 3)]
    yml = tmp_path / "bad.yaml"
    yml.write_text("signatures:\n  - name: X\n    up: [A]\n    weights: {B: 1}\n  - name: Y\n    weights: {C: high}\n")
    found = registry.read_signature_yaml(yml).issues
    assert [(i.code, i.line) for i in found] == [("bad_signature", 2), ("bad_signature", 5)]
    assert "not both" in found[0].message
    assert "not a number" in found[1].message
    broken = tmp_path / "broken.yaml"
    broken.write_text("signatures:\n  - name: [unclosed\n")
    (issue,) = registry.read_signature_yaml(broken).issues
    assert issue.code == "bad_signature_yaml"
    assert issue.line is not None


def test_signature_weights_that_are_not_finite_are_located_errors(tmp_path):
    # YAML's .nan and .inf are floats: they passed, and every weighted score of the signature was NaN or inf
    yml = tmp_path / "weights.yaml"
    yml.write_text("signatures:\n  - name: OK\n    weights: {TP53: 1.5, MYC: -2}\n"
                   "  - name: NOT_A_NUMBER\n    weights: {TP53: .nan}\n  - name: INFINITE\n    weights: {MYC: -.inf}\n")
    found = registry.read_signature_yaml(yml).issues
    assert [(i.code, i.line) for i in found] == [("bad_signature", 4), ("bad_signature", 6)]
    assert "weight of 'TP53' is not a finite number: nan" in found[0].message
    assert "weight of 'MYC' is not a finite number: -inf" in found[1].message


def test_unmapped_members_are_kept_and_counted(tmp_path):
    gmt = tmp_path / "mixed.gmt"
    gmt.write_text("S\td\tTP53\tNOT_A_GENE_XYZ\tCG1234\n")
    lib = registry.read_gmt(gmt)
    sets, members = registry.registry_frames([("warehouse", None, lib)], reference=GeneReference.load())
    assert members.height == 3
    assert members["gene_id"].null_count() == 2
    assert sets.select("n_genes", "n_mapped").row(0) == (3, 1)
    (warning,) = registry.unmapped_issues(members, files={"mixed": "mixed.gmt"})
    assert warning.code == "unmapped_gene_set_member"
    assert "NOT_A_GENE_XYZ" in warning.message


def test_shipped_libraries_carry_version_and_licence():
    libs = {lib.name: lib for lib in registry.shipped_libraries()}
    assert set(libs) == {"msigdb_hallmark", "reactome_pathways", "go_biological_process"}
    # SOURCE.md of ../shared/data/genesets: 50, 2,512 and 6,036 sets
    assert [len(libs[n].sets) for n in ("msigdb_hallmark", "reactome_pathways", "go_biological_process")] == \
        [50, 2512, 6036]
    assert all("CC BY 4.0" in (lib.license or "") for lib in libs.values())


def _de_frame(values: np.ndarray, gene_ids: list[int]) -> pl.DataFrame:
    """A real statistic: mean of three samples minus mean of the other three, log2 TPM (GEUVADIS)."""
    diff = values[:, :3].mean(axis=1) - values[:, 3:].mean(axis=1)
    spread = values.std(axis=1, ddof=1) + 0.1
    stat = diff / spread
    rng = np.random.default_rng(7)
    pvalue = np.clip(np.exp(-np.abs(stat) * 3) + rng.uniform(0, 1e-6, len(stat)), 0, 1)
    padj = np.minimum(pvalue * 4, 1)
    return pl.DataFrame({"gene_id": gene_ids, "stat": stat, "log2_fold_change": diff, "pvalue": pvalue,
                         "padj": padj})


def test_ora_pvalues_equal_scipy_hypergeom(geuvadis, hallmark_entrez):
    values, gene_ids = geuvadis
    de = _de_frame(values, gene_ids)
    result = enrichment.ora(de, hallmark_entrez, padj_threshold=0.05, direction=1)
    assert result.height > 0
    universe = set(de["gene_id"].to_list())
    chosen = set(de.filter((pl.col("padj") < 0.05) & (pl.col("log2_fold_change") > 0))["gene_id"].to_list())
    for row in result.iter_rows(named=True):
        members = {int(g) for g in hallmark_entrez[row["gene_set"]]} & universe
        x = len(members & chosen)
        expected = hypergeom(M=len(universe), n=len(members), N=len(chosen)).sf(x - 1)
        assert row["size"] == len(members)
        assert row["pvalue"] == pytest.approx(expected, rel=1e-12)
    p = result["pvalue"].to_numpy()
    order = np.argsort(p)
    m = len(p)
    bh = np.minimum.accumulate((p[order] * m / np.arange(1, m + 1))[::-1])[::-1]
    np.testing.assert_allclose(result["fdr"].to_numpy()[order], np.minimum(bh, 1), rtol=1e-12)


def test_ora_leading_edge_and_fold_enrichment_by_hand():
    # universe 1..10 (tested), up at padj < 0.05: 1, 2, 3; set A holds 1, 2, 4, 5, 6: overlap 1, 2
    de = pl.DataFrame({"gene_id": list(range(1, 11)), "stat": [1.0] * 10,
                       "log2_fold_change": [1.0, 1.0, 1.0] + [-1.0] * 7,
                       "pvalue": [0.001] * 3 + [0.5] * 7, "padj": [0.01] * 3 + [0.9] * 7})
    rows = enrichment.ora(de, {"A": ["1", "2", "4", "5", "6"], "small": ["1", "2"]}, direction=1)
    assert rows["gene_set"].to_list() == ["A"]  # "small" has fewer than 5 members in the universe
    assert rows["leading_edge"].to_list() == ["1;2"]
    assert rows["es"][0] == pytest.approx(2 / (5 * 3 / 10))
    assert rows["pvalue"][0] == pytest.approx(hypergeom(M=10, n=5, N=3).sf(1), rel=1e-12)


def test_prerank_selection_defaults_to_hallmark_and_the_libraries_a_team_added():
    members = pl.DataFrame({"scope": ["shipped", "shipped", "shipped", "warehouse", "study"],
                            "library": ["msigdb_hallmark", "reactome_pathways", "go_biological_process", "team",
                                        "mine"]})
    assert enrichment.prerank_selection(members, None) == ["mine", "msigdb_hallmark", "team"]
    assert enrichment.prerank_selection(members, "") == ["mine", "msigdb_hallmark", "team"]
    assert enrichment.prerank_selection(members, "all") == ["go_biological_process", "mine", "msigdb_hallmark",
                                                            "reactome_pathways", "team"]
    assert enrichment.prerank_selection(members, "reactome_pathways, nowhere") == ["reactome_pathways"]
    known = members["library"].to_list()
    assert enrichment.unknown_prerank_libraries("reactome_pathways, nowhere,team, Team", known) == ["nowhere", "Team"]
    assert enrichment.unknown_prerank_libraries("all", known) == []
    assert enrichment.unknown_prerank_libraries(None, known) == []


def test_prerank_equals_gseapys_own_run_with_the_same_seed(geuvadis, hallmark_entrez):
    values, gene_ids = geuvadis
    de = _de_frame(values, gene_ids)
    mine = enrichment.prerank(de.select("gene_id", "stat"), hallmark_entrez, permutations=200, seed=11, min_size=5)
    again = enrichment.prerank(de.select("gene_id", "stat"), hallmark_entrez, permutations=200, seed=11, min_size=5)
    assert mine.equals(again)
    rnk = pd.Series(de["stat"].to_numpy(), index=[str(g) for g in de["gene_id"]])
    ref = gseapy.prerank(rnk=rnk, gene_sets=hallmark_entrez, permutation_num=200, seed=11, threads=1, min_size=5,
                         max_size=500, outdir=None, no_plot=True, verbose=False).res2d.set_index("Term")
    assert mine.height == len(ref) > 0
    for row in mine.iter_rows(named=True):
        assert row["es"] == pytest.approx(float(ref.loc[row["gene_set"], "ES"]), abs=1e-12)
        assert row["nes"] == pytest.approx(float(ref.loc[row["gene_set"], "NES"]), abs=1e-12)
        assert row["pvalue"] == pytest.approx(float(ref.loc[row["gene_set"], "NOM p-val"]), abs=1e-12)
        assert row["fdr"] == pytest.approx(float(ref.loc[row["gene_set"], "FDR q-val"]), abs=1e-12)
        assert row["leading_edge"] == ref.loc[row["gene_set"], "Lead_genes"]


def test_prerank_warning_of_tied_statistics_goes_to_the_log_not_the_terminal(geuvadis, hallmark_entrez, capfd,
                                                                              caplog):
    # gseapy's per-run logger printed "Duplicated values found in preranked stats" on stderr, through the build's
    # progress line (geuvadis, a study with many genes at one statistic).
    values, gene_ids = geuvadis
    stats = _de_frame(values, gene_ids).select("gene_id", pl.col("stat").round(0))
    with caplog.at_level(logging.INFO, logger="transforms.signatures.enrichment"):
        assert enrichment.prerank(stats, hallmark_entrez, permutations=20, seed=11, min_size=5).height > 0
    assert capfd.readouterr().err == ""
    assert any("Duplicated values found in preranked stats" in r.getMessage() for r in caplog.records)


def test_contrast_connects_to_itself_and_reverses_its_reverse(geuvadis):
    values, gene_ids = geuvadis
    stats = _de_frame(values, gene_ids).select("gene_id", "stat")
    query = connectivity.contrast_query("s", "c", stats, top=50)
    itself = connectivity.make_target("t", "same", stats, version="v")
    reverse = connectivity.make_target("t", "reversed", stats.with_columns(-pl.col("stat")), version="v")
    assert connectivity.connectivity(query, itself)["score"] > 0.9
    assert connectivity.connectivity(query, reverse)["score"] < -0.9
    assert connectivity.connectivity(query, itself)["n_up"] == 50


def test_weighted_ks_equals_hand_running_sum():
    target = connectivity.Target("s", "c", "v", np.array([10, 20, 30, 40]), np.array([2.0, 1.0, -1.0, -2.0]))
    # hits 10 and 30 (weights 2, 1 of 3); miss step 1/2: running sum 2/3, 1/6, 1/2, 0 -> max 2/3
    es, k = connectivity.weighted_ks(target, (10, 30))
    assert (es, k) == (pytest.approx(2 / 3), 2)


def test_weighted_ks_of_the_targets_top_genes_is_1_not_past_it():
    # two studies holding the same contrast (one data set loaded twice): the query's genes are the target's top
    # ones, ES is exactly 1 by hand, but the rounded sum of the weights gave 1.0000000000000002 and the whole
    # signature_matches commit broke its contract (score <= 1)
    stat = [-3.621, 0.394, -0.693, -1.573, 0.874, 2.785, -0.032, -3.542, 1.228, -1.382, 2.988, -1.008, 2.115, -3.487,
            5.134, -2.414, -1.723, 1.06, 7.022, -0.196, 0.648, -6.724, 2.75, -0.928, 2.061, 5.219, -4.987, -1.011,
            3.649, 4.204]
    stats = pl.DataFrame({"gene_id": range(1, 31), "stat": stat})
    target = connectivity.make_target("t", "same", stats, version="v")
    top = tuple(int(g) for g in target.gene_ids[:3])  # genes 19, 26, 15 (statistics 7.02, 5.22, 5.13)
    assert connectivity.weighted_ks(target, top) == (1.0, 3)
    up_only = connectivity.Query("signature", None, "lib/UP_ONLY", top, ())
    assert connectivity.connectivity(up_only, target)["score"] == 1.0


def test_signature_matches_are_incremental():
    stats = pl.DataFrame({"gene_id": list(range(1, 41)), "stat": np.linspace(3, -3, 40)})
    a = connectivity.make_target("s1", "c1", stats, version="v1")
    qa = connectivity.contrast_query("s1", "c1", stats, top=5)
    empty = pl.DataFrame(schema=_matches_schema())
    table, computed = connectivity.match_signatures([qa], [a], empty)
    assert computed == 0
    assert table.height == 0
    b = connectivity.make_target("s2", "c2", stats.with_columns(-pl.col("stat")), version="v1")
    qb = connectivity.contrast_query("s2", "c2", b_stats := stats.with_columns(-pl.col("stat")), top=5)
    assert b_stats.height == 40
    table, computed = connectivity.match_signatures([qa, qb], [a, b], table)
    assert computed == 2
    assert table.height == 2
    assert all(s < -0.9 for s in table["score"])
    _, computed = connectivity.match_signatures([qa, qb], [a, b], table)
    assert computed == 0
    c = connectivity.make_target("s2", "c2", stats, version="v2")  # s2's DE changed: only its pairs again
    _, computed = connectivity.match_signatures([qa, qb], [a, c], table)
    assert computed == 1


def _matches_schema() -> dict[str, pl.DataType]:
    from schemas.tables import polars_schema

    return dict(polars_schema("signature_matches"))


def test_library_name_strips_extensions():
    assert registry.library_name(Path("x/reactome_pathways.gmt.gz")) == "reactome_pathways"
    assert registry.library_name(Path("my.sigs.yml")) == "my.sigs"


def test_ssgsea_equals_gsva_on_tcga_brca_where_no_member_is_tied(shared_data):
    """GSVA 1.46 ``gsva(method="ssgsea", tau=0.25, ssgsea.norm=FALSE)`` on the 200-gene BRCA mRNA subset
    (tests/data/r_reference/make_gsva_reference.R). GSVA truncates average ranks to integers (``mode(R) <-
    "integer"``) and keeps tied genes in input order, where gseapy (and this scorer) keeps average ranks and
    reverses that order: a cell whose set has a member tied with another gene in that sample differs (46 of 320
    cells here; those follow gseapy, tested above); every other cell is GSVA's to the last bits of a double sum
    of up to 200 terms (observed 6e-14 on scores up to 76).
    """
    wide = pl.read_csv(shared_data / "tcga_brca_mixomics" / "train_mrna.tsv", separator="\t",
                       schema_overrides={"sample_id": pl.String})
    genes, samples = wide.columns[1:], wide["sample_id"].to_list()
    values = wide.select(genes).to_numpy().T
    ref = pl.read_csv(shared_data / "r_reference" / "brca_ssgsea_gsva.tsv", separator="\t",
                      schema_overrides={"sample_id": pl.String})
    names = ref["gene_set"].unique(maintain_order=True).to_list()
    lib = registry.read_gmt(shared_data / "genesets" / "h.all.v7.4.symbols.gmt")
    sets: dict[str, list[str]] = {}
    for m in lib.members:
        sets.setdefault(str(m["gene_set"]), []).append(str(m["identifier"]))
    found, member = _membership({n: sets[n] for n in names}, genes, min_size=5)
    assert found == names  # the sets GSVA kept with min.sz = 5
    assert len(names) == 16
    expected = (ref.pivot(index="gene_set", on="sample_id", values="es")
                .join(pl.DataFrame({"gene_set": names}), on="gene_set", how="right").select(samples).to_numpy())
    mine = scoring.ssgsea(values, member, alpha=0.25)

    tied = np.zeros(mine.shape, dtype=bool)
    for j in range(values.shape[1]):
        _, inverse, counts = np.unique(values[:, j], return_inverse=True, return_counts=True)
        tied[:, j] = (member.toarray() * (counts[inverse] > 1)).any(axis=1)
    assert tied.sum() == 46
    np.testing.assert_allclose(mine[~tied], expected[~tied], rtol=1e-12, atol=1e-10)
    assert not np.allclose(mine[tied], expected[tied], rtol=1e-6)  # the convention differs there, as documented


def test_scores_and_enrichment_do_not_depend_on_the_row_order_of_their_inputs(geuvadis, hallmark_entrez):
    # Stored rows (normalised values, DE rows, gene-set members) come back in any order: scores, prerank and ORA
    # rows must be the same bit for bit. Ties in the statistic and a gene measured by two features make the
    # order matter unless the stage fixes it.
    values, gene_ids = geuvadis
    n = len(gene_ids)
    features = [f"F{i:04d}" for i in range(n)]
    normalized = pl.DataFrame({
        "assay": "tpm", "sample_id": np.repeat(SAMPLES, n), "feature_id": features * len(SAMPLES),
        "gene_id": gene_ids * len(SAMPLES), "log2_value": values.T.ravel(),
        "zscore": ((values - values.mean(axis=1, keepdims=True)) / (values.std(axis=1, keepdims=True) + 1)).T.ravel()})
    de = _de_frame(values, gene_ids).with_columns(pl.lit("b_vs_a").alias("contrast"), pl.lit("counts").alias("assay"),
                                                  pl.Series("feature_id", features))
    de = de.with_columns(stat=pl.when(pl.int_range(pl.len()) < 40).then(0.5).otherwise(pl.col("stat")))
    member = int(next(g for g in hallmark_entrez["HALLMARK_APOPTOSIS"] if int(g) in set(gene_ids)))
    de = pl.concat([de, de.filter(pl.col("gene_id") == member).with_columns(  # a second feature of one gene
        pl.lit("F9999").alias("feature_id"), -pl.col("stat"))])
    gene_map = pl.DataFrame({"assay": ["tpm"] * n + ["counts"] * (n + 1), "feature_id": [*features, *features, "F9999"],
                             "status": "mapped"})
    members = pl.DataFrame([{"library": "h", "gene_set": name, "identifier": g, "gene_id": int(g), "weight": None,
                             "sign": None} for name, genes in hallmark_entrez.items() for g in genes],
                           schema_overrides={"weight": pl.Float64, "sign": pl.Int8})

    def stages(normalized: pl.DataFrame, de: pl.DataFrame, members: pl.DataFrame) -> list[pl.DataFrame]:
        scores = scoring.score_study(normalized.lazy(), gene_map.lazy(), members).frame
        statistics = enrichment.contrast_statistics(de.lazy(), gene_map.lazy())
        rows, _ = enrichment.enrich_study(statistics, {"h": enrichment.gene_set_dict(members)["h"]},
                                          permutations=50, seed=5)
        return [scores.sort("assay", "library", "gene_set", "method", "sample_id"),
                rows.sort("contrast", "library", "gene_set", "method")]

    first = stages(normalized, de, members)
    shuffled = stages(*(frame.sample(fraction=1.0, shuffle=True, seed=i) for i, frame in
                        enumerate((normalized, de, members))))
    assert first[1].filter(pl.col("method") == "prerank").height > 0
    for got, expected in zip(shuffled, first, strict=True):
        assert_frame_equal(got, expected, check_exact=True)


def _scoring_study() -> tuple[pl.LazyFrame, pl.LazyFrame, pl.DataFrame, dict[tuple[str, int], float]]:
    """Two assays of normalised rows in scan order (samples and genes shuffled), one gene missing a sample, one
    null log2_value, unmapped and ambiguous features; members with and without weights; zscores by (sample, gene)."""
    rng = np.random.default_rng(1)
    genes, samples = 120, 23
    rows, z = [], {}
    for assay in ("rna", "arr"):
        for j in rng.permutation(samples):
            for g in rng.permutation(genes):
                if assay == "arr" and g == 5 and j == 3:
                    continue
                zscore = float(rng.normal()) if g % 9 else None
                if assay == "rna" and zscore is not None:
                    z[(f"S{j:02d}", (g + 1) * 10)] = zscore
                rows.append({"assay": assay, "sample_id": f"S{j:02d}", "feature_id": f"F{g}",
                             "gene_id": (g + 1) * 10 if g != 11 else None,
                             "log2_value": None if (g, j) == (7, 2) else float(rng.normal(5, 2)), "zscore": zscore})
    gene_map = pl.DataFrame({"assay": ["rna"] * genes + ["arr"] * genes,
                             "feature_id": [f"F{g}" for g in range(genes)] * 2,
                             "status": ["ambiguous" if g == 13 else "mapped" for g in range(genes)] * 2})
    members = pl.DataFrame({"library": "L", "gene_set": [f"set{k}" for k in range(6) for _ in range(12)],
                            "gene_id": [int(x) for x in rng.choice(np.arange(1, genes + 1) * 10, size=72)],
                            "weight": [None] * 36 + list(rng.normal(size=36)), "sign": [None] * 72},
                           schema_overrides={"weight": pl.Float64, "sign": pl.Int64})
    # identifiers in row order: a gene listed twice in a set keeps its first row (the scorer keeps the first by
    # identifier), as the sums by hand below do
    members = members.with_columns(identifier=pl.format("m{}", pl.int_range(pl.len()).cast(pl.String).str.zfill(3)))
    return pl.DataFrame(rows).lazy(), gene_map.lazy(), members, z


@pytest.mark.parametrize("at_once", [1, 4])
def test_score_study_in_sample_blocks_equals_one_block_and_weighted_sums_by_hand(at_once):
    normalized, gene_map, members, z = _scoring_study()
    whole = scoring.score_study(normalized, gene_map, members, samples_at_once=1000)
    blocks = scoring.score_study(normalized, gene_map, members, samples_at_once=at_once)
    assert blocks.frame.equals(whole.frame)  # same rows, same bits
    # genes 7 (a null log2_value), 11 (no gene), 13 (ambiguous) are not scored; set4 has weights
    set4 = members.filter(pl.col("gene_set") == "set4").unique("gene_id", keep="first", maintain_order=True)
    used = set4.filter(~pl.col("gene_id").is_in([80, 120, 140]))
    for sample in ("S00", "S17"):
        by_hand = sum(w * z.get((sample, g), 0.0) for g, w in used.select("gene_id", "weight").iter_rows())
        found = whole.frame.filter(pl.col("assay") == "rna", pl.col("sample_id") == sample,
                                   pl.col("gene_set") == "set4", pl.col("method") == "weighted")["score"].item()
        assert found == pytest.approx(by_hand, rel=1e-12)
    assert whole.frame["sample_id"].n_unique() == 23


def test_score_frame_rows_are_each_method_by_set_then_sample_in_the_matrices_order():
    sets = scoring.SetIndex(keys=[("lib_b", "set_1"), ("lib_a", "set_2")], up=sp.csr_array((2, 1)),
                            down=sp.csr_array((2, 1)), weights=sp.csr_array((2, 1)), skipped=[])
    scores = {"ssgsea": np.array([[1.0, 2.0], [3.0, np.nan]]), "weighted": np.array([[5.0, 6.0], [7.0, 8.0]])}
    frame = scoring.score_frame(scores, sets, ["s2", "s1"], assay="rna")
    expected = pl.DataFrame({
        "assay": ["rna"] * 8,
        "sample_id": ["s2", "s1"] * 4,
        "library": ["lib_b", "lib_b", "lib_a", "lib_a"] * 2,
        "gene_set": ["set_1", "set_1", "set_2", "set_2"] * 2,
        "method": ["ssgsea"] * 4 + ["weighted"] * 4,
        "score": [1.0, 2.0, 3.0, float("nan"), 5.0, 6.0, 7.0, 8.0]})
    assert_frame_equal(frame, expected)
    empty = scoring.score_frame({"ssgsea": np.empty((0, 2))}, scoring.SetIndex([], sp.csr_array((0, 1)),
                                sp.csr_array((0, 1)), sp.csr_array((0, 1)), []), ["s2", "s1"], assay="rna")
    assert_frame_equal(empty, expected.clear())


def test_prerank_selection_of_a_studys_library_scopes_is_that_of_its_members():
    from warehouse.signatures import StudyGeneSets

    members = pl.DataFrame({"scope": ["shipped"] * 3 + ["shipped", "study", "study"],
                            "library": ["msigdb_hallmark"] * 3 + ["reactome_pathways", "mine", "mine"],
                            "gene_set": ["a", "b", "c", "r", "m1", "m2"]})
    scopes = StudyGeneSets(members).library_scopes
    assert scopes.sort("library").rows() == [("study", "mine"), ("shipped", "msigdb_hallmark"),
                                             ("shipped", "reactome_pathways")]
    for setting in (None, "all", "reactome_pathways"):
        assert enrichment.prerank_selection(scopes, setting) == enrichment.prerank_selection(members, setting)


def _counted_scan(frame: pl.DataFrame, reads: list[int]) -> pl.LazyFrame:
    """``frame`` as a lazy source that counts how often a query reads it."""
    from polars.io.plugins import register_io_source

    def source(with_columns, predicate, n_rows, batch_size):  # type: ignore[no-untyped-def]
        reads.append(1)
        out = frame if with_columns is None else frame.select(with_columns)
        out = out if predicate is None else out.filter(predicate)
        yield out if n_rows is None else out.head(n_rows)
    return register_io_source(source, schema=frame.schema)


def test_assay_blocks_of_a_small_study_read_its_rows_once_and_equal_the_streamed_blocks():
    """A small study's normalised rows are read (and joined) once for all its blocks: each block read them three
    times before (a count, a look for gene ids, the rows), ~25 ms of ~50 a small study; a large one still streams.
    """
    normalized, gene_map, _, z = _scoring_study()
    rows = normalized.collect()
    reads: list[int] = []
    once = list(scoring.assay_blocks(_counted_scan(rows, reads), gene_map))
    assert len(reads) == 2  # the row count (a bound, from footers in a lake) and the rows
    streamed = list(scoring.assay_blocks(rows.lazy(), gene_map, collect_rows=0))
    assert [b.assay for b in once] == [b.assay for b in streamed] == ["arr", "rna"]
    for a, b in zip(once, streamed, strict=True):
        assert a.samples == b.samples
        np.testing.assert_array_equal(a.gene_ids, b.gene_ids)
        np.testing.assert_array_equal(a.values, b.values)
        np.testing.assert_array_equal(a.zscores, b.zscores)
    rna = once[1]  # the zscores drawn, where they were drawn (genes 80, 120, 140 are left out: see the test above)
    _, zscores = rna.part(np.arange(len(rna.samples)))
    genes = [int(g) for g in rna.gene_ids]
    checked = 0
    for (sample, gene), value in z.items():
        if gene in genes:
            assert zscores[genes.index(gene), rna.samples.index(sample)] == value
            checked += 1
    assert checked > 300
