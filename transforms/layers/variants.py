"""Variant vocabulary and per-gene mutation status.

One place for the facts every variant format shares: the Ensembl severity order of Sequence Ontology (SO)
consequence terms, the mapping of SnpEff effect names and MAF ``Variant_Classification`` values onto those terms,
the variant class derived from REF/ALT, the choice of one consequence among a record's transcript annotations,
and the set of consequences counted as "mutated". MAF and VCF parsers both use them, so a variant means the same
thing whichever file it came from.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from transforms.ingest.parse import ParsedAssay

#: Ensembl VEP's consequence ranking, most severe first (ensembl.org "Calculated variant consequences"), with
#: ``splice_site_variant`` added after the splice donor for MAF ``Splice_Site`` (donor or acceptor not stated).
SO_SEVERITY: tuple[str, ...] = (
    "transcript_ablation", "splice_acceptor_variant", "splice_donor_variant", "splice_site_variant",
    "stop_gained", "frameshift_variant", "stop_lost", "start_lost", "transcript_amplification",
    "feature_elongation", "feature_truncation", "inframe_insertion", "inframe_deletion", "missense_variant",
    "protein_altering_variant", "splice_donor_5th_base_variant", "splice_region_variant",
    "splice_donor_region_variant", "splice_polypyrimidine_tract_variant", "incomplete_terminal_codon_variant",
    "start_retained_variant", "stop_retained_variant", "synonymous_variant", "coding_sequence_variant",
    "mature_miRNA_variant", "5_prime_UTR_variant", "3_prime_UTR_variant", "non_coding_transcript_exon_variant",
    "intron_variant", "NMD_transcript_variant", "non_coding_transcript_variant", "coding_transcript_variant",
    "upstream_gene_variant", "downstream_gene_variant", "TFBS_ablation", "TFBS_amplification",
    "TF_binding_site_variant", "regulatory_region_ablation", "regulatory_region_amplification",
    "regulatory_region_variant", "intergenic_variant", "sequence_variant",
)
SEVERITY_RANK: dict[str, int] = {term: rank for rank, term in enumerate(SO_SEVERITY)}
#: rank given to a term outside :data:`SO_SEVERITY`: less severe than any known term
UNKNOWN_RANK = len(SO_SEVERITY)

#: VEP IMPACT of each SO term (used when the annotation or the MAF carries no IMPACT)
SO_IMPACT: dict[str, str] = {
    **dict.fromkeys(SO_SEVERITY[:11], "HIGH"),
    **dict.fromkeys(SO_SEVERITY[11:15], "MODERATE"),
    **dict.fromkeys(SO_SEVERITY[15:23], "LOW"),
    **dict.fromkeys(SO_SEVERITY[23:], "MODIFIER"),
}

#: SnpEff 3 ``EFF`` effect names and SnpEff 4+ ``ANN`` terms outside Ensembl's list -> nearest Ensembl SO term
SNPEFF_TO_SO: dict[str, str] = {
    "CHROMOSOME_LARGE_DELETION": "transcript_ablation", "EXON_DELETED": "feature_truncation",
    "SPLICE_SITE_ACCEPTOR": "splice_acceptor_variant", "SPLICE_SITE_DONOR": "splice_donor_variant",
    "STOP_GAINED": "stop_gained", "FRAME_SHIFT": "frameshift_variant", "STOP_LOST": "stop_lost",
    "START_LOST": "start_lost", "RARE_AMINO_ACID": "protein_altering_variant",
    "NON_SYNONYMOUS_CODING": "missense_variant", "CODON_INSERTION": "inframe_insertion",
    "CODON_CHANGE_PLUS_CODON_INSERTION": "inframe_insertion", "CODON_DELETION": "inframe_deletion",
    "CODON_CHANGE_PLUS_CODON_DELETION": "inframe_deletion", "CODON_CHANGE": "coding_sequence_variant",
    "NON_SYNONYMOUS_START": "start_retained_variant", "SYNONYMOUS_START": "start_retained_variant",
    "NON_SYNONYMOUS_STOP": "stop_retained_variant", "SYNONYMOUS_STOP": "stop_retained_variant",
    "SYNONYMOUS_CODING": "synonymous_variant", "SPLICE_SITE_REGION": "splice_region_variant",
    "SPLICE_SITE_BRANCH": "intron_variant", "SPLICE_SITE_BRANCH_U12": "intron_variant",
    "UTR_5_PRIME": "5_prime_UTR_variant", "UTR_5_DELETED": "5_prime_UTR_variant",
    "START_GAINED": "5_prime_UTR_variant", "UTR_3_PRIME": "3_prime_UTR_variant",
    "UTR_3_DELETED": "3_prime_UTR_variant", "EXON": "non_coding_transcript_exon_variant",
    "INTRON": "intron_variant", "INTRON_CONSERVED": "intron_variant", "UPSTREAM": "upstream_gene_variant",
    "DOWNSTREAM": "downstream_gene_variant", "INTERGENIC": "intergenic_variant",
    "INTERGENIC_CONSERVED": "intergenic_variant", "INTRAGENIC": "non_coding_transcript_variant",
    "REGULATION": "regulatory_region_variant", "MICRO_RNA": "mature_miRNA_variant",
    "exon_loss_variant": "feature_truncation", "disruptive_inframe_insertion": "inframe_insertion",
    "conservative_inframe_insertion": "inframe_insertion", "disruptive_inframe_deletion": "inframe_deletion",
    "conservative_inframe_deletion": "inframe_deletion", "rare_amino_acid_variant": "protein_altering_variant",
    "initiator_codon_variant": "start_retained_variant", "non_canonical_start_codon": "start_retained_variant",
    "5_prime_UTR_premature_start_codon_gain_variant": "5_prime_UTR_variant",
    "5_prime_UTR_truncation": "5_prime_UTR_variant", "3_prime_UTR_truncation": "3_prime_UTR_variant",
    "conserved_intron_variant": "intron_variant", "conserved_intergenic_variant": "intergenic_variant",
    "intragenic_variant": "non_coding_transcript_variant", "exon_variant": "coding_sequence_variant",
    "gene_variant": "sequence_variant", "transcript_variant": "sequence_variant",
    "miRNA": "mature_miRNA_variant", "structural_interaction_variant": "protein_altering_variant",
    "protein_protein_contact": "protein_altering_variant",
}

#: MAF ``Variant_Classification`` -> SO term (the inverse of vcf2maf's mapping)
MAF_TO_SO: dict[str, str] = {
    "Missense_Mutation": "missense_variant", "Nonsense_Mutation": "stop_gained", "Silent": "synonymous_variant",
    "Splice_Site": "splice_site_variant", "Frame_Shift_Del": "frameshift_variant",
    "Frame_Shift_Ins": "frameshift_variant", "In_Frame_Del": "inframe_deletion", "In_Frame_Ins": "inframe_insertion",
    "Nonstop_Mutation": "stop_lost", "Translation_Start_Site": "start_lost", "Splice_Region": "splice_region_variant",
    "3'UTR": "3_prime_UTR_variant", "5'UTR": "5_prime_UTR_variant", "3'Flank": "downstream_gene_variant",
    "5'Flank": "upstream_gene_variant", "Intron": "intron_variant", "IGR": "intergenic_variant",
    "RNA": "non_coding_transcript_exon_variant", "De_novo_Start_InFrame": "5_prime_UTR_variant",
    "De_novo_Start_OutOfFrame": "5_prime_UTR_variant", "Targeted_Region": "sequence_variant",
    "Unknown": "sequence_variant",
}

#: Consequences counted as "mutated": maftools' default non-synonymous classes (``vc_nonSyn``: Frame_Shift_Del/Ins,
#: Splice_Site, Translation_Start_Site, Nonsense, Nonstop, In_Frame_Del/Ins, Missense) as SO terms, plus the VEP
#: terms of the same kind (protein_altering_variant, transcript_ablation). Synonymous, splice region, UTR, intron,
#: flanking, intergenic and non-coding consequences are silent.
NON_SILENT: frozenset[str] = frozenset({
    "transcript_ablation", "splice_acceptor_variant", "splice_donor_variant", "splice_site_variant",
    "stop_gained", "frameshift_variant", "stop_lost", "start_lost", "inframe_insertion", "inframe_deletion",
    "missense_variant", "protein_altering_variant",
})
NON_SILENT_RULE = (
    "mutated = at least one variant whose chosen consequence is one of "
    + ", ".join(sorted(NON_SILENT))
    + " (maftools vc_nonSyn as SO terms); null when the gene is outside the sample's gene panel"
)

CONSEQUENCE_RULE = (
    "one annotation per variant allele: annotations are matched to the alt allele (ALLELE_NUM, else Allele with "
    "VEP's shared-first-base trimming, else all alts); among them prefer CANONICAL=YES, then the most severe "
    "consequence term by Ensembl's SO order (SnpEff names mapped to SO), then a protein_coding biotype, then the "
    "first listed; consequence = the most severe term of the chosen annotation"
)


def variant_class(ref: pl.Expr, alt: pl.Expr) -> pl.Expr:
    """SNV / insertion / deletion / MNV / complex from REF and ALT, the same for MAF and VCF alleles.

    ``-`` (MAF) is an empty allele. Equal lengths are an SNV (one base, or two with the first shared) or an MNV;
    a shorter REF that is a prefix or suffix of ALT (VCF padding base, or MAF ``-``) is an insertion, the
    converse a deletion; anything else (delins, symbolic alleles) is complex.
    """
    r = pl.when(ref == "-").then(pl.lit("")).otherwise(ref)
    a = pl.when(alt == "-").then(pl.lit("")).otherwise(alt)
    n_ref, n_alt = r.str.len_chars(), a.str.len_chars()
    padded = (n_ref > 1) & (r.str.slice(0, 1) == a.str.slice(0, 1))
    n_changed = pl.when(padded).then(n_ref - 1).otherwise(n_ref)
    symbolic = a.str.contains(r"[<>\[\]*.]")
    return (
        pl.when(ref.is_null() | alt.is_null()).then(pl.lit(None, dtype=pl.String))
        .when(symbolic).then(pl.lit("complex"))
        .when((n_ref == n_alt) & (n_changed == 1)).then(pl.lit("SNV"))
        .when((n_ref == n_alt) & (n_changed > 1)).then(pl.lit("MNV"))
        .when((n_ref < n_alt) & (a.str.starts_with(r) | a.str.ends_with(r))).then(pl.lit("insertion"))
        .when((n_ref > n_alt) & (r.str.starts_with(a) | r.str.ends_with(a))).then(pl.lit("deletion"))
        .otherwise(pl.lit("complex"))
    )


def consequence_terms(raw: pl.Series) -> pl.DataFrame:
    """Rank each distinct consequence string (``a&b``, SnpEff ``A+B``): one row per distinct ``raw`` value.

    Returns ``raw``, ``consequence`` (its most severe SO term, SnpEff names mapped) and ``severity`` (that term's
    rank in :data:`SO_SEVERITY`, :data:`UNKNOWN_RANK` for terms outside it). Computed on the distinct strings
    (a few hundred even for millions of annotations) so the per-annotation work stays a join.
    """
    distinct = raw.drop_nulls().unique()
    rows = []
    for value in distinct.to_list():
        terms = [SNPEFF_TO_SO.get(t, t) for t in value.replace("+", "&").split("&") if t]
        if not terms:
            continue
        best = min(terms, key=lambda t: SEVERITY_RANK.get(t, UNKNOWN_RANK))
        rows.append((value, best, SEVERITY_RANK.get(best, UNKNOWN_RANK)))
    return pl.DataFrame(rows, schema={"raw": pl.String, "consequence": pl.String, "severity": pl.Int64},
                        orient="row")


def mutation_status_from_variants(variants: pl.DataFrame, *, samples: Sequence[str],
                                  panel_genes: dict[str, set[str]] | None = None) -> pl.DataFrame:
    """Per-gene mutation calls from a ``variants`` table: one row per sample and gene (``gene_mutation_status``).

    The grain is every sample in ``samples`` (all samples with variant data, including those without a
    variant) x every gene (``feature_id``) with at least one non-silent variant (:data:`NON_SILENT`) in any sample
    of the study. ``mutated`` is true when the sample has a non-silent variant in the gene, false when it has
    none, and null when ``panel_genes`` (sample label -> genes of its sequencing panel) says the gene was not
    profiled in that sample and the sample has no non-silent variant in it (an observed variant wins over the
    panel); samples missing from ``panel_genes`` count as profiled for every gene.
    ``n_variants`` counts non-silent variants, ``top_consequence`` is the most severe consequence of any of the
    sample's variants in the gene (silent ones included), null without variants.
    """
    labelled = variants.select("column", "feature_id", "consequence").filter(
        pl.col("feature_id").is_not_null() & pl.col("column").is_in(list(samples)))
    ranked = labelled.with_columns(
        pl.col("consequence").replace_strict(SEVERITY_RANK, default=UNKNOWN_RANK, return_dtype=pl.Int64)
        .alias("severity"),
        pl.col("consequence").is_in(list(NON_SILENT)).alias("non_silent"),
    )
    genes = ranked.filter("non_silent").select(pl.col("feature_id").unique()).sort("feature_id")
    per_pair = ranked.group_by("column", "feature_id").agg(
        pl.col("non_silent").sum().cast(pl.Int64).alias("n_variants"),
        pl.col("consequence").sort_by("severity").first().alias("top_consequence"),
    )
    grid = pl.DataFrame({"column": list(samples)}).join(genes, how="cross")
    status = grid.join(per_pair, on=["column", "feature_id"], how="left").with_columns(
        pl.col("n_variants").fill_null(0))
    status = status.with_columns((pl.col("n_variants") > 0).alias("mutated"))
    if panel_genes is not None:
        panel = pl.DataFrame(
            [(s, g) for s, gs in panel_genes.items() for g in gs],
            schema={"column": pl.String, "feature_id": pl.String}, orient="row",
        ).with_columns(pl.lit(True).alias("in_panel"))
        with_panel = pl.DataFrame({"column": list(panel_genes)}, schema={"column": pl.String})
        status = status.join(panel, on=["column", "feature_id"], how="left").with_columns(
            pl.when(pl.col("column").is_in(with_panel["column"].to_list()) & pl.col("in_panel").is_null()
                    & ~pl.col("mutated"))
            .then(pl.lit(None, dtype=pl.Boolean)).otherwise(pl.col("mutated")).alias("mutated"),
        ).drop("in_panel")
    return status.select("column", "feature_id", "mutated", "n_variants", "top_consequence").sort(
        "column", "feature_id")


def mutation_status_from_matrix(parsed: ParsedAssay) -> ParsedAssay:
    """Mutation calls from a binary gene x sample matrix parsed by ``parse_matrix``: one row per sample and gene.

    ``value`` 1 is mutated, 0 wild type, null (empty / NA cell) not profiled; any other value keeps ``mutated``
    null and sets ``problem`` so the row is quarantined instead of read as a call. ``n_variants`` and
    ``top_consequence`` are unknown from such a matrix and left null.
    """
    value = pl.col("value")
    records = parsed.records.with_columns(
        pl.when(value == 1).then(pl.lit(True)).when(value == 0).then(pl.lit(False))
        .otherwise(pl.lit(None, dtype=pl.Boolean)).alias("mutated"),
        pl.lit(None, dtype=pl.Int64).alias("n_variants"),
        pl.lit(None, dtype=pl.String).alias("top_consequence"),
    ).with_columns(
        pl.when(value.is_not_null() & value.is_in([0.0, 1.0]).not_())
        .then(pl.format("mutation call is not 0 or 1: {}", pl.coalesce(pl.col("raw"), value.cast(pl.String))))
        .otherwise(pl.col("problem")).alias("problem"),
    )
    return ParsedAssay(
        records=records.select("column", "feature_id", "line", "mutated", "n_variants", "top_consequence",
                               "problem", "raw"),
        columns=parsed.columns, features=parsed.features,
        metadata={**parsed.metadata, "mutation_rule": "1 = mutated, 0 = wild type, empty/NA = not profiled"},
    )
