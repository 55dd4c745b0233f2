import math

import polars as pl
import pytest

from transforms.ingest.parse.diann import parse_diann
from transforms.ingest.parse.maxquant import parse_maxquant
from transforms.ingest.parse.protein_table import FEATURE_SCHEMA
from transforms.ingest.parse.proteomics import parse_protein_file
from transforms.issues import IssueLog
from transforms.layers.proteins import (
    annotated_genes,
    map_protein_groups,
    missing_per_sample,
    normalise_protein_abundance,
)

MAXQUANT = "proteomics_maxquant_lfqanalyst/proteinGroups.txt"
DIANN = "proteomics_diann_pg_matrix/DIA-NN_example_domlfq_report.pg_matrix.tsv"


def _row(mapping: pl.DataFrame, feature_id: str) -> list[dict]:
    return mapping.filter(pl.col("feature_id") == feature_id).to_dicts()


def _features(rows: list[dict]) -> pl.DataFrame:
    full = [{**dict.fromkeys(FEATURE_SCHEMA), "gene_names": [], "accessions": [], "entry_names": [],
             "platform": "ms", **row} for row in rows]
    return pl.DataFrame(full, schema=FEATURE_SCHEMA)


# -- real files ---------------------------------------------------------------------------------------------------
def test_map_protein_groups_maxquant_keeps_every_group(shared_data, reference):
    assay = parse_maxquant(shared_data / MAXQUANT, issues=IssueLog("lfq"))
    mapping = map_protein_groups(assay.features, reference=reference)
    assert mapping["feature_id"].n_unique() == 198  # kept groups, see test_parse_proteomics; none dropped
    # P62834;P61224;A6NIZ1 has Gene names RAP1A;RAP1B -> Entrez 5906, 5908 (human_genes_orgHsEgDb.tsv)
    rap1 = _row(mapping, "P62834;P61224;A6NIZ1")
    assert [(r["identifier"], r["gene_id"], r["rule"], r["is_ambiguous"]) for r in rap1] == [
        ("RAP1A", 5906, "gene_name", True), ("RAP1B", 5908, "gene_name", True)]
    ambiguous = mapping.filter(pl.col("is_ambiguous") & pl.col("gene_id").is_not_null())["feature_id"].n_unique()
    # awk: 12 kept groups list several gene names; in 11 of them at least two are official symbols of
    # different genes (join with human_genes_orgHsEgDb.tsv), the rest may add genes through aliases:
    # awk -F'\t' 'NR==FNR{g[$2]=$1; next} FNR>1 && $143!="+" && $144!="+" && $145!="+" && $7 ~ /;/ {n=split($7, a,
    #   ";"); delete d; k=0; for (i=1; i<=n; i++) if ((a[i] in g) && !(g[a[i]] in d)) {d[g[a[i]]]; k++}
    #   if (k>=2) c++} END{print c}' human_genes_orgHsEgDb.tsv proteinGroups.txt -> 11 (56 on the whole file)
    assert 11 <= ambiguous <= 12
    # iRT-pepA..L have neither gene names nor UniProt accessions
    assert _row(mapping, "iRT-pepA")[0] == {
        "feature_id": "iRT-pepA", "protein_group": "iRT-pepA", "identifier": None, "namespace": "unknown",
        "gene_id": None, "status": "unmapped", "rule": "no_identifier", "is_ambiguous": False,
        "resolver_rule": None}
    # P01621 (Ig kappa chain V-III region NG9) has no Gene name and is not in uniprot_to_gene_orgHsEgDb.tsv
    assert [(r["rule"], r["gene_id"]) for r in _row(mapping, "P01621")] == [("uniprot_accession_not_found", None)]
    mapped = mapping.filter(pl.col("status") == "mapped")
    assert mapped["gene_id"].is_duplicated().sum() == 0


def test_map_protein_groups_accession_when_gene_names_empty(shared_data, reference):
    assay = parse_maxquant(shared_data / MAXQUANT, issues=IssueLog("lfq"), keep_flagged=True)
    mapping = map_protein_groups(assay.features, reference=reference)
    # CON__Q3ZBS7;P04004 has empty Gene names; grep '^P04004' uniprot_to_gene_orgHsEgDb.tsv -> 7448 VTN
    assert [(r["identifier"], r["gene_id"], r["status"], r["rule"]) for r in
            _row(mapping, "CON__Q3ZBS7;P04004")] == [("P04004", 7448, "mapped", "uniprot_accession")]
    # reversed sequences never reach a gene
    assert [(r["gene_id"], r["rule"]) for r in _row(mapping, "REV__P02771")] == [(None, "decoy")]


def test_map_protein_groups_diann_fallback_and_other_species(shared_data, reference):
    assay = parse_diann(shared_data / DIANN, issues=IssueLog("hela"))
    mapping = map_protein_groups(assay.features, reference=reference)
    assert mapping["feature_id"].n_unique() == 299
    # O00193: Genes 'SMAP' is an alias of 3 genes (human_gene_aliases: BRD8, C11orf58, KIFAP3) -> accession
    # O00193 -> 10944 C11orf58 (uniprot_to_gene_orgHsEgDb.tsv)
    assert [(r["identifier"], r["gene_id"], r["rule"]) for r in _row(mapping, "O00193")] == [
        ("O00193", 10944, "uniprot_accession")]
    # Cont_P00761 TRYP_PIG (no gene) and Cont_P01966 HBA_BOVIN (gene 'HBA') are other species
    for feature_id, entry in (("Cont_P00761", "TRYP_PIG"), ("Cont_P01966", "HBA_BOVIN")):
        assert [(r["identifier"], r["gene_id"], r["status"], r["rule"]) for r in _row(mapping, feature_id)] == [
            (entry, None, "unmapped", "other_species")]


def test_map_protein_groups_rppa_multi_gene_antibody(shared_data, reference):
    assay = parse_protein_file(shared_data / "cbioportal_study_es_0/data_rppa.txt", issues=IssueLog("es_0"),
                               format="rppa")
    mapping = map_protein_groups(assay.features, reference=reference)
    # 'ACACA ACACB|ACC_pS79' -> ACACA 31, ACACB 32 (human_genes_orgHsEgDb.tsv); ACACA is already held by the
    # single-gene 'ACACA|ACC1', so that row is the duplicate
    acc = _row(mapping, "ACACA ACACB|ACC_pS79")
    assert [(r["gene_id"], r["status"], r["is_ambiguous"]) for r in acc] == [
        (31, "duplicate", True), (32, "mapped", True)]
    assert [(r["gene_id"], r["status"]) for r in _row(mapping, "ACACA|ACC1")] == [(31, "mapped")]
    # the total antibody keeps the gene, phospho-specific ones are duplicates
    assert [r["status"] for r in _row(mapping, "EIF4EBP1|4E-BP1")] == ["mapped"]
    assert [r["status"] for r in _row(mapping, "EIF4EBP1|4E-BP1_pS65")] == ["duplicate"]


def test_map_protein_groups_antibody_names_without_genes(shared_data, reference):
    assay = parse_protein_file(shared_data / "tcga_brca_mixomics/train_protein.tsv", issues=IssueLog("brca"),
                               format="rppa", transpose=True)
    mapping = map_protein_groups(assay.features, reference=reference)
    assert mapping["feature_id"].n_unique() == 142
    by_id = {r["feature_id"]: r for r in mapping.to_dicts()}
    genes = {f: [(r["identifier"], r["gene_id"], r["status"], r["is_ambiguous"]) for r in _row(mapping, f)]
             for f in ("ER-alpha", "PR", "STAT5-alpha", "Collagen_VI", "Akt", "Akt_pS473", "p27")}
    # MD Anderson / TCGA annotation (TCGA-Assembler-2 Module_A.R): ESR1|ER-alpha, PGR|PR, STAT5A|STAT5-alpha,
    # COL6A1|Collagen_VI, CDKN1B|p27, AKT1 AKT2 AKT3|Akt(_pS473); Entrez IDs from human_genes_orgHsEgDb.tsv
    # (ESR1 2099, PGR 5241, STAT5A 6776, COL6A1 1291, CDKN1B 1027, AKT1 207, AKT2 208, AKT3 10000)
    assert genes == {
        "ER-alpha": [("ESR1", 2099, "mapped", False)],
        "PR": [("PGR", 5241, "mapped", False)],
        "STAT5-alpha": [("STAT5A", 6776, "mapped", False)],
        "Collagen_VI": [("COL6A1", 1291, "mapped", False)],
        "Akt": [("AKT1", 207, "mapped", True), ("AKT2", 208, "mapped", True), ("AKT3", 10000, "mapped", True)],
        # the total antibody keeps the genes, the phospho-specific one is the duplicate
        "Akt_pS473": [("AKT1", 207, "duplicate", True), ("AKT2", 208, "duplicate", True),
                      ("AKT3", 10000, "duplicate", True)],
        "p27": [("CDKN1B", 1027, "mapped", False)],
    }
    assert {by_id[f]["rule"] for f in genes} == {"antibody_annotation"}
    # names written differently from the annotation: 'Pea-15' is listed as PEA15 (8682); 'JNK_pT183_pT185' and
    # '4E-BP1_pT37' by their targets, listed as JNK_pT183_pY185 (MAPK8 5599) and 4E-BP1_pT37_T46 (EIF4EBP1 1978)
    assert [(by_id[f]["gene_id"], by_id[f]["rule"]) for f in ("Pea-15", "JNK_pT183_pT185", "4E-BP1_pT37")] == [
        (8682, "antibody_annotation"), (5599, "antibody_annotation"), (1978, "antibody_annotation")]
    # EGFR|EGFR and EGFR|EGFR_pY1068 in the annotation (1956); the phospho antibody becomes the duplicate
    assert (by_id["EGFR"]["gene_id"], by_id["EGFR"]["status"]) == (1956, "mapped")
    assert (by_id["EGFR_pY1068"]["gene_id"], by_id["EGFR_pY1068"]["status"]) == (1956, "duplicate")
    # not in the annotation: the target name read as a symbol. K-Ras -> KRAS 3845 (upper case, hyphen removed);
    # 'Annexin_I' and 'LBK1' (a typo of LKB1) are no symbol or alias: kept, unmapped, said why
    assert (by_id["K-Ras"]["gene_id"], by_id["K-Ras"]["rule"]) == (3845, "antibody_name")
    assert [by_id[f]["rule"] for f in ("Annexin_I", "LBK1")] == ["antibody_name_not_found"] * 2
    assert mapping.filter(pl.col("rule") == "antibody_name")["feature_id"].sort().to_list() == [
        "ANLN", "K-Ras", "RBM3", "SCD1"]


def test_annotated_genes_never_guesses_between_targets():
    annotation = pl.DataFrame({"antibody": ["X_pS1", "X_pT2", "Y_pS1", "Y-total"],
                               "genes": [["GA"], ["GB"], ["GC"], ["GC"]]})
    names = pl.Series(["x_ps1", "X_pS9", "Y_pT5-R-V", "Z", None])
    # exact after case folding; X's target names two gene sets (no answer); Y's one; Z and null unlisted
    assert annotated_genes(names, annotation=annotation).to_list() == [["GA"], [], ["GC"], [], []]
    assert annotated_genes(names, annotation=None).to_list() == [[]] * 5


# -- hand-made groups ---------------------------------------------------------------------------------------------
def test_map_protein_groups_rules_on_small_groups(reference):
    features = _features([
        {"feature_id": "yeast", "gene_names": ["ACT1"], "accessions": ["P60010"], "entry_names": ["ACT_YEAST"]},
        {"feature_id": "nothing"},
        {"feature_id": "decoy", "accessions": ["P04637"], "is_decoy": True},
        {"feature_id": "p53", "gene_names": ["TP53"]},
        {"feature_id": "p53 again", "accessions": ["P04637-2"]},
    ])
    mapping = map_protein_groups(features, reference=reference)
    rows = {r["feature_id"]: (r["gene_id"], r["status"], r["rule"]) for r in mapping.to_dicts()}
    # ACT1 alone would be an alias of TRAF3IP2 (10758); the yeast entry name keeps it unmapped
    assert rows == {
        "yeast": (None, "unmapped", "other_species"),
        "nothing": (None, "unmapped", "no_identifier"),
        "decoy": (None, "unmapped", "decoy"),
        "p53": (7157, "mapped", "gene_name"),
        "p53 again": (7157, "duplicate", "uniprot_accession"),
    }
    mouse = map_protein_groups(features.filter(pl.col("feature_id") == "p53"), reference=reference,
                               organism_is_human=False)
    assert mouse.select("gene_id", "status", "rule").rows() == [(None, "unmapped", "other_species")]


# -- normalise ----------------------------------------------------------------------------------------------------
def _records() -> pl.DataFrame:
    return pl.DataFrame({
        "column": ["A"] * 3 + ["B"] * 3 + ["C"] * 3,
        "feature_id": ["g1", "g2", "g3"] * 3,
        "abundance": [2.0, 8.0, 32.0, 4.0, None, 16.0, 1.0, 4.0, 64.0],
    })


def test_normalise_protein_abundance_ms_median_centres_each_sample():
    out = normalise_protein_abundance(_records().lazy(), platform="ms")
    assert isinstance(out, pl.LazyFrame)
    out = out.collect()
    # by hand: A log2 = 1, 3, 5 (median 3); B = 2, -, 4 (median 3); C = 0, 2, 6 (median 2)
    assert out["log2_abundance"].to_list() == [1.0, 3.0, 5.0, 2.0, None, 4.0, 0.0, 2.0, 6.0]
    assert out["normalized"].to_list() == [-2.0, 0.0, 2.0, -1.0, None, 1.0, -2.0, 0.0, 4.0]
    medians = out.group_by("column").agg(pl.col("normalized").median())["normalized"].to_list()
    assert medians == [0.0, 0.0, 0.0]


def test_normalise_protein_abundance_counts_multi_gene_groups_once():
    # g3 of sample A joined to two genes: the median of A stays log2(8) = 3, not log2(32) = 5
    records = pl.concat([_records(), _records().filter(pl.col("column") == "A", pl.col("feature_id") == "g3")])
    out = normalise_protein_abundance(records, platform="ms")
    assert out.filter(pl.col("column") == "A")["normalized"].to_list() == [-2.0, 0.0, 2.0, 2.0]


def test_normalise_protein_abundance_rppa_as_given_and_bad_platform():
    out = normalise_protein_abundance(_records(), platform="rppa")
    assert out["normalized"].to_list() == out["abundance"].to_list()
    assert out["log2_abundance"].to_list() == out["abundance"].to_list()
    with pytest.raises(ValueError, match="platform"):
        normalise_protein_abundance(_records(), platform="tmt")
    zero = normalise_protein_abundance(pl.DataFrame({"column": ["A"], "feature_id": ["g1"], "abundance": [0.0]}),
                                       platform="ms")
    assert zero["log2_abundance"].to_list() == [None]
    assert not any(isinstance(v, float) and math.isinf(v) for v in zero["normalized"].to_list())


def test_missing_per_sample_counts_null_abundance():
    assert missing_per_sample(_records().lazy()).rows() == [("A", 0, 3), ("B", 1, 3), ("C", 0, 3)]


def test_normalise_protein_abundance_ms_log2_given_is_not_logged_again():
    # cBioPortal's CPTAC profile (study_es_0 data_protein_quantification.txt) holds log2 ratios: TP53 is
    # -1.286652 in TCGA-C8-A12T-01; logging again made every negative ratio NULL and the rest wrong
    records = pl.DataFrame({"column": ["A", "A", "A", "B", "B"], "feature_id": ["TP53", "BRAF", "g3", "TP53", "g3"],
                            "abundance": [-1.286652, 0.082298, 0.5, -1.268997, None]})
    out = normalise_protein_abundance(records, platform="ms", log2_given=True)
    assert out["log2_abundance"].to_list() == [-1.286652, 0.082298, 0.5, -1.268997, None]
    # by hand: median of A = 0.082298, of B = -1.268997 (its only value)
    assert out["normalized"].to_list() == pytest.approx([-1.36895, 0.0, 0.417702, 0.0, None], abs=1e-9)
