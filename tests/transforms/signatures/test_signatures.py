"""Signatures stage: registry parsing, scores against gseapy / hand calculations, ORA against scipy, prerank
against gseapy's own run, connectivity of a contrast with itself and its reverse.

Real data: GEUVADIS RSEM TPMs (1,000 genes x 6 samples, tests/data/rnaseq_geuvadis_rsem), TCGA BRCA mRNA
(200 genes x 20 samples, tests/data/tcga_brca_mixomics), MSigDB Hallmark v7.4 (tests/data/genesets).
"""

from __future__ import annotations

from pathlib import Path

import gseapy
import numpy as np
import pandas as pd
import polars as pl
import pytest
import scipy.sparse as sp
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
    members = pl.DataFrame({"library": ["l"] * 5, "gene_set": ["AKT"] * 5, "gene_id": [1, 2, 3, 4, 99],
                            "weight": [1.0, 0.6, -1.0, 0.5, 2.0], "sign": [None] * 5},
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
                            "gene_id": [1, 2, 3, 4, 5, 1, None], "weight": [None] * 7, "sign": [None] * 7},
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


def test_assay_blocks_place_values_by_sorted_gene_and_sample_and_drop_incomplete_genes():
    # gene 30 lacks sample b, gene 20 has a NULL log2_value: both left out; a NULL zscore is NaN in the block
    rows = [("x", "b", 10, 1.0, 0.1), ("x", "a", 10, 2.0, None), ("x", "a", 40, 3.0, 0.3), ("x", "b", 40, 4.0, 0.4),
            ("x", "a", 30, 5.0, 0.5), ("x", "a", 20, None, 0.6), ("x", "b", 20, 7.0, 0.7)]
    normalized = pl.LazyFrame(rows, schema={"assay": pl.String, "sample_id": pl.String, "gene_id": pl.Int64,
                                            "log2_value": pl.Float64, "zscore": pl.Float64}, orient="row"
                              ).with_columns(feature_id=pl.col("gene_id").cast(pl.String))
    gene_map = pl.LazyFrame({"assay": "x", "feature_id": ["10", "20", "30", "40"], "status": "mapped"})
    ((assay, genes, samples, values, zscores),) = scoring.assay_blocks(normalized, gene_map)
    assert (assay, genes.tolist(), samples) == ("x", [10, 40], ["a", "b"])
    assert values.tolist() == [[2.0, 1.0], [3.0, 4.0]]
    assert np.isnan(zscores[0, 0])
    assert zscores[0, 1] == 0.1
    assert zscores[1].tolist() == [0.3, 0.4]
    twice = normalized.with_columns(gene_id=pl.when(pl.col("gene_id") == 40).then(10).otherwise(pl.col("gene_id")))
    with pytest.raises(ValueError, match="more than one mapped feature"):
        scoring.assay_blocks(twice, gene_map)
