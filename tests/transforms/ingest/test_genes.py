from __future__ import annotations

import gzip
import json

import polars as pl
import pytest

from transforms.ingest.genes import (
    REFERENCE_DIR,
    GeneReference,
    gene_xrefs_table,
    genes_table,
    resolve_gene_ids,
    transcript_gene_map,
)


def resolved(feature_ids, reference, **options) -> dict[str | None, tuple]:
    """feature_id -> (namespace, gene_id, status, rule)."""
    result = resolve_gene_ids(feature_ids, reference=reference, **options)
    return {row[0]: row[1:] for row in result.iter_rows()}


def test_resolve_gene_ids_tcga_mrna_header_counts(shared_data, reference):
    with open(shared_data / "tcga_brca_mixomics" / "train_mrna.tsv") as handle:
        genes = handle.readline().rstrip("\n").split("\t")[1:]
    result = resolve_gene_ids(genes, reference=reference, id_type="symbol")
    rules = dict(result["rule"].value_counts().iter_rows())
    # tcga_brca_mixomics/SOURCE.md; 182 also by grep -Fxcf <(awk -F'\t' '$4=="TRUE"{print $1}' aliases) header
    assert rules == {"symbol": 182, "alias": 17, "not_found": 1}
    # awk over the aliases TSV: HN1 -> JPT1, MTRNR2L1 and C7orf55 -> two genes each
    ambiguous = result.filter(pl.col("status") == "ambiguous")
    assert sorted(ambiguous["feature_id"]) == ["C7orf55", "HN1"]
    assert ambiguous["gene_id"].null_count() == 2
    assert result.filter(pl.col("rule") == "not_found")["feature_id"].to_list() == ["FLJ23867"]


def test_resolve_gene_ids_geuvadis_ensembl_coverage(shared_data, reference):
    path = shared_data / "rnaseq_geuvadis_rsem" / "ERR188021.genes.results.gz"
    gene_ids = pl.read_csv(path, separator="\t", columns=["gene_id"])["gene_id"]
    result = resolve_gene_ids(gene_ids, reference=reference, id_type="ensembl").with_columns(
        unversioned=pl.col("feature_id").str.extract(r"^(ENSG[0-9]+)")
    )
    assert result.height == 1000  # zcat | tail -n +2 | wc -l (first 1,000 of 58,288 genes, see its SOURCE.md)
    linked = result.filter(pl.col("status") != "unmapped")
    # zcat | tail -n +2 | cut -f1 | sed 's/\..*//' | sort -u > ids; wc -l ids -> 999 unversioned IDs; of them
    # awk -F'\t' 'NR==FNR{e[$1]; next} ($1 in e)' ensembl_gene_to_entrez_orgHsEgDb.tsv ids | wc -l -> 997 in
    # ../shared/data/gene_annotation_human (the same command on the whole RSEM file gives its SOURCE.md's 35,854)
    assert result["unversioned"].n_unique() == 999
    assert linked["unversioned"].n_unique() == 997
    # each PAR_Y row that reaches a gene reaches the gene of its X copy, which stays the mapped one
    assert set(result.filter(pl.col("rule") == "ensembl_gene_par_y")["status"]) == {"duplicate"}
    mapped = result.filter(pl.col("status") == "mapped")
    assert mapped["gene_id"].is_unique().all()


def test_resolve_gene_ids_par_y_pair_resolves_once(reference):
    # zcat ERR188021.genes.results.gz | grep ENSG00000182378; grep ENSG00000182378 ensembl_gene_to_entrez -> 55344
    got = resolved(["ENSG00000182378.14_PAR_Y", "ENSG00000182378.14"], reference)
    assert got["ENSG00000182378.14"] == ("ensembl_gene", 55344, "mapped", "ensembl_gene")
    assert got["ENSG00000182378.14_PAR_Y"] == ("ensembl_gene", 55344, "duplicate", "ensembl_gene_par_y")


def read_gmt(path) -> dict[str, list[str]]:
    with open(path) as handle:
        return {fields[0]: fields[2:] for fields in (line.rstrip("\n").split("\t") for line in handle)}


def test_resolve_gene_ids_hallmark_symbols_match_entrez_sets(shared_data, reference):
    symbols = read_gmt(shared_data / "genesets" / "h.all.v7.4.symbols.gmt")
    entrez = read_gmt(shared_data / "genesets" / "h.all.v7.4.entrez.gmt")
    result = resolve_gene_ids([s for genes in symbols.values() for s in genes], reference=reference)
    # genesets/SOURCE.md + gene_annotation_human/SOURCE.md: 4,383 symbols, 4,373 official, 10 alias-only
    assert dict(result["rule"].value_counts().iter_rows()) == {"symbol": 4373, "alias": 10}
    gene_of = dict(zip(result["feature_id"], result["gene_id"], strict=True))
    for name, genes in symbols.items():
        assert {gene_of[s] for s in genes} == {int(g) for g in entrez[name]}, name


def test_resolve_gene_ids_official_symbol_beats_other_genes_alias(reference):
    # aliases TSV: DBP is the official symbol of 1628 and an alias of 2638 (GC) and 3295 (HSD17B4)
    assert resolved(["DBP"], reference)["DBP"] == ("symbol", 1628, "mapped", "symbol")


def test_resolve_gene_ids_symbol_shared_with_phenotype_locus(reference):
    # human_genes TSV: HBD is 3045 (protein-coding) and 100187828 (unknown, hypophosphatemic bone disease)
    assert resolved(["HBD"], reference)["HBD"] == ("symbol", 3045, "mapped", "symbol")


def test_resolve_gene_ids_previous_symbol(reference):
    # grep -P '^SEPT9\t' aliases TSV -> 10801 SEPTIN9
    assert resolved(["SEPT9"], reference)["SEPT9"] == ("symbol", 10801, "mapped", "alias")


def test_resolve_gene_ids_duplicate_keeps_strongest_rule(reference):
    got = resolved(["SEPT9", "SEPTIN9", "10801"], reference)
    # the official symbol wins over the earlier alias; the Entrez ID ties with it and comes later
    assert got["SEPTIN9"] == ("symbol", 10801, "mapped", "symbol")
    assert got["SEPT9"] == ("symbol", 10801, "duplicate", "alias")
    assert got["10801"] == ("entrez", 10801, "duplicate", "entrez")


def test_resolve_gene_ids_excel_dates(reference):
    got = resolved(["1-Mar", "Mar-01", "3-Mar", "2-Sep", "1-Dec"], reference, id_type="symbol")
    # aliases TSV: MARCH1 -> 55016 MARCHF1, MARCH3 -> 115123 MARCHF3
    assert got["1-Mar"] == ("symbol", 55016, "mapped", "excel_date")
    assert got["Mar-01"] == ("symbol", 55016, "duplicate", "excel_date")
    assert got["3-Mar"] == ("symbol", 115123, "mapped", "excel_date")
    # aliases TSV: SEPT2 -> 4735 SEPTIN2 and 23157 SEPTIN6; DEC1 -> 8553 BHLHE40 and 50514 DELEC1
    assert got["2-Sep"] == ("symbol", None, "ambiguous", "excel_date")
    assert got["1-Dec"] == ("symbol", None, "ambiguous", "excel_date")


def test_resolve_gene_ids_cbioportal_composites(reference):
    # ERCC5|aaa from cbioportal_study_es_0/data_cna_log2.txt; human_genes TSV: ERCC5 = 2073, AKT1 = 207
    got = resolved(["TP53|7157", "ERCC5|aaa", "AKT1|Akt", "TP53|999999999"], reference)
    assert got["TP53|7157"] == ("entrez", 7157, "mapped", "composite_entrez")
    assert got["ERCC5|aaa"] == ("symbol", 2073, "mapped", "composite_symbol")
    assert got["AKT1|Akt"] == ("symbol", 207, "mapped", "composite_symbol")
    # an unknown Entrez part falls back to the symbol part
    assert got["TP53|999999999"] == ("symbol", 7157, "duplicate", "composite_symbol")


def test_resolve_gene_ids_entrez_known_only(reference):
    got = resolved(["7157", "999999999"], reference, id_type="entrez")
    assert got["7157"] == ("entrez", 7157, "mapped", "entrez")
    assert got["999999999"] == ("entrez", None, "unmapped", "not_found")


def test_resolve_gene_ids_ensembl_transcript(reference):
    # ENST00000000412.7 in ERR188021.genes.results.gz; zgrep ENST00000000412 transcript TSV -> 4074 M6PR
    got = resolved(["ENST00000000412.7"], reference)
    assert got["ENST00000000412.7"] == ("ensembl_transcript", 4074, "mapped", "ensembl_transcript")


def test_resolve_gene_ids_uniprot_and_entry_names(reference):
    # grep -P '^P04637\t' uniprot TSV -> 7157; ALBU_BOVIN from the DIA-NN pg_matrix Protein.Names
    got = resolved(["P04637", "P04637-2", "ALBU_BOVIN", "ADH1_YEAST", "P53_HUMAN"], reference)
    assert got["P04637"] == ("uniprot", 7157, "mapped", "uniprot")
    assert got["P04637-2"] == ("uniprot", 7157, "duplicate", "uniprot_isoform")
    assert got["ALBU_BOVIN"] == ("uniprot", None, "unmapped", "other_species")
    assert got["ADH1_YEAST"] == ("uniprot", None, "unmapped", "other_species")
    assert got["P53_HUMAN"] == ("uniprot", None, "unmapped", "entry_name")


def test_resolve_gene_ids_one_row_per_distinct_identifier(reference):
    result = resolve_gene_ids(pl.Series(["TP53", None, "", "TP53", None, " ", "FBgn0000003"]), reference=reference)
    assert result.schema == pl.Schema(
        {"feature_id": pl.String, "namespace": pl.String, "gene_id": pl.Int64, "status": pl.String, "rule": pl.String}
    )
    assert result.rows() == [
        ("TP53", "symbol", 7157, "mapped", "symbol"),
        (None, "unknown", None, "unmapped", "empty"),
        ("", "unknown", None, "unmapped", "empty"),
        (" ", "unknown", None, "unmapped", "empty"),
        ("FBgn0000003", "unknown", None, "unmapped", "other_species"),
    ]


def test_resolve_gene_ids_id_type_restricts_readings(reference):
    got = resolved(["TP53", "7157"], reference, id_type="entrez")
    assert got["TP53"] == ("unknown", None, "unmapped", "not_found")
    assert got["7157"] == ("entrez", 7157, "mapped", "entrez")


def test_resolve_gene_ids_rejects_unknown_id_type(reference):
    with pytest.raises(ValueError, match="id_type must be one of"):
        resolve_gene_ids(["TP53"], reference=reference, id_type="hgnc")


def test_genes_table_one_primary_locus_per_gene(reference):
    genes = genes_table(reference)
    assert genes.height == 77614  # tail -n +2 human_genes_orgHsEgDb.tsv | wc -l
    assert genes["gene_id"].is_unique().all()
    loci = {row[0]: row[1:] for row in genes.select("symbol", "chromosome", "start", "end", "strand").iter_rows()}
    # awk '$1==7157' gene_locations: min start / max end of its five overlapping rows
    assert loci["TP53"] == ("17", 7668401, 7687550, "-")
    # HLA-A has rows on chr6 and on alt contigs 6_GL000250v2_alt ...: the primary one is kept
    assert loci["HLA-A"] == ("6", 29942469, 29945884, "+")
    # SHOX (NCBI chromosome X;Y) sits in PAR1 on X and Y at the same positions: X is kept
    assert loci["SHOX"] == ("X", 624343, 659411, "+")


def test_gene_xrefs_table_counts_per_namespace(reference):
    counts = dict(gene_xrefs_table(reference)["namespace"].value_counts().iter_rows())
    # wc -l of each TSV minus header; aliases: awk -F'\t' '$4=="FALSE"' | wc -l
    assert counts == {"ensembl_gene": 40102, "ensembl_transcript": 39771, "uniprot": 32265, "alias": 72445}


def test_transcript_gene_map_drops_multi_gene_transcripts(shared_data, reference):
    mapping = transcript_gene_map(reference)
    with gzip.open(shared_data / "gene_annotation_human" / "ensembl_transcript_to_gene_orgHsEgDb.tsv.gz", "rt") as f:
        rows = [line.split("\t")[:2] for line in f][1:]
    genes_per_transcript: dict[str, set[str]] = {}
    for transcript, gene in rows:
        genes_per_transcript.setdefault(transcript, set()).add(gene)
    single = {t: int(next(iter(g))) for t, g in genes_per_transcript.items() if len(g) == 1}
    assert len(single) == 37982  # awk count of transcripts listed once
    assert dict(mapping.iter_rows()) == single
    assert "ENST00000645965" not in set(mapping["transcript_id"])  # listed for 775 and 100874369


def test_gene_reference_load_release_and_cache(shared_data, reference):
    assert GeneReference.load() is reference
    text = (shared_data / "gene_annotation_human" / "org.Hs.eg.db_metadata.tsv").read_text()
    meta = dict(line.split("\t") for line in text.splitlines())
    assert meta["EGSOURCEDATE"] == "2022-Sep12"
    assert meta["UPSOURCEDATE"].startswith("Fri Sep 23")
    assert reference.release["source"] == "org.Hs.eg.db 3.16.0"
    assert reference.release["ncbi_gene_date"] == "2022-09-12"
    assert reference.release["ensembl_date"] == "2022-06-28"
    assert reference.release["uniprot_date"] == "2022-09-23"
    assert json.loads((REFERENCE_DIR / "release.json").read_text()) == reference.release
