"""Protein groups -> genes, and the per-sample scaling of protein abundances.

A protein group (MaxQuant ``Protein IDs``, DIA-NN ``Protein.Group``, an RPPA antibody) names one or several
proteins, which may come from several genes. :func:`map_protein_groups` resolves each group through the one gene
resolver (:func:`transforms.ingest.genes.resolve_gene_ids`), keeps every gene a group reaches (flagged ``is_ambiguous``)
and never drops a group it cannot map. :func:`normalise_protein_abundance` puts MS intensities on a log2 scale
centred per sample so runs with different loading compare; RPPA values are already centred log ratios.
"""

from __future__ import annotations

import polars as pl

from transforms.ingest.genes import GeneReference, resolve_gene_ids

MAPPING_SCHEMA = pl.Schema({
    "feature_id": pl.String(),
    "protein_group": pl.String(),
    "identifier": pl.String(),
    "namespace": pl.String(),
    "gene_id": pl.Int64(),
    "status": pl.String(),
    "rule": pl.String(),
    "is_ambiguous": pl.Boolean(),
    "resolver_rule": pl.String(),
})

# Sources of identifiers, in the order they are trusted: a group's gene names decide when any resolves, its
# UniProt accessions only when none does.
_TIER = {"gene_name": 0, "antibody_annotation": 0, "antibody_name": 0, "uniprot_accession": 1}
# RPPA antibody name -> the protein it targets: drop the MD Anderson validation suffix (``-R-V``), the phospho
# site (``_pS473``, ``-pT308``) and the cleavage site (``_cleavedD198``).
_ANTIBODY_SUFFIX = r"(?:-[RMG]-[A-Z]+)$"
_ANTIBODY_SITE = r"(?:[_\-\s.]p[STY][0-9]+|_cleaved).*$"


def map_protein_groups(features: pl.DataFrame, *, reference: GeneReference,
                       organism_is_human: bool = True) -> pl.DataFrame:
    """Map protein groups to genes: one row per (feature_id, gene), one row for a group that maps to none.

    Parameters
    ----------
    features
        The parser's ``features``: ``feature_id``, ``protein_group``, ``gene_names`` and ``accessions`` (lists),
        optionally ``entry_names`` (list), ``antibody`` and ``is_decoy``.
    organism_is_human
        The reference is human: for other organisms every group stays unmapped with rule ``other_species``.

    Returns
    -------
    pl.DataFrame
        ``feature_id``, ``protein_group``, ``identifier`` (the gene name, antibody name or accession resolved),
        ``namespace``, ``gene_id`` (null unless mapped or duplicate), ``status``, ``rule``, ``is_ambiguous`` and
        ``resolver_rule`` (the resolver's own rule, e.g. ``symbol`` / ``alias``).

    Rules: gene names decide when any resolves (``gene_name``; for RPPA antibodies written without genes, the
    genes the shipped MD Anderson / TCGA annotation gives the antibody, ``antibody_annotation``, see
    :func:`annotated_genes`; for antibodies it does not list, the antibody's target name read as a symbol,
    ``antibody_name``); otherwise the UniProt accessions (``uniprot_accession``,
    FASTA-header accessions included). Groups whose entry names are all of other species (``TRYP_PIG``), or that
    resolve nowhere and have an other-species entry name, stay unmapped (``other_species``), and so do decoys
    (``is_decoy``: reversed sequences, rule ``decoy``). Unresolved groups keep one row with
    ``<source>_not_found``, ``no_identifier`` when they carry no name at all, or status ``ambiguous`` when their
    identifier is an alias of several genes. ``is_ambiguous``: the group reaches more than one gene. When several
    groups reach one gene, one keeps ``mapped`` (single-gene groups first, then total over phospho-specific
    antibodies, then gene names over accessions, then file order) and the others become ``duplicate`` with the
    gene_id kept, so ``status == 'mapped'`` gives one group per gene.
    """
    groups = _with_optional_columns(features).with_row_index("group_order")
    candidates = _candidates(groups, annotation=reference.antibodies)
    resolved = pl.concat([
        _resolve(candidates.filter(pl.col("source") != "uniprot_accession"), reference=reference, id_type="symbol"),
        _resolve(candidates.filter(pl.col("source") == "uniprot_accession"), reference=reference,
                 id_type="uniprot"),
    ]).sort("group_order", "tier", "position")
    species = _species(groups, reference=reference, organism_is_human=organism_is_human)

    blocked = pl.concat([groups.filter(pl.col("is_decoy")).select("group_order"),
                         species.filter(pl.col("all_foreign")).select("group_order")])
    hits = resolved.filter(pl.col("gene_id").is_not_null()).join(blocked, on="group_order", how="anti")
    chosen = (
        hits.filter(pl.col("tier") == pl.col("tier").min().over("group_order"))
        .unique(["group_order", "gene_id"], keep="first", maintain_order=True)
        .with_columns(status=pl.lit("mapped"), rule=pl.col("source"),
                      is_ambiguous=pl.col("gene_id").n_unique().over("group_order") > 1)
    )
    misses = _unmapped(groups.join(chosen, on="group_order", how="anti"), resolved, species)
    mapping = (pl.concat([chosen, misses], how="diagonal_relaxed").sort("group_order", "tier", "position")
               .join(groups.select("group_order", "is_phospho"), on="group_order"))
    keeper = (pl.col("group_order").sort_by("is_ambiguous", "is_phospho", "tier", "group_order").first()
              .over(pl.when(pl.col("status") == "mapped").then("gene_id")))
    mapping = mapping.with_columns(
        status=pl.when((pl.col("status") == "mapped") & (pl.col("group_order") != keeper))
        .then(pl.lit("duplicate")).otherwise("status"))
    return (mapping.join(groups.select("group_order", "feature_id", "protein_group"), on="group_order")
            .select(list(MAPPING_SCHEMA)).cast(MAPPING_SCHEMA))


def _with_optional_columns(features: pl.DataFrame) -> pl.DataFrame:
    defaults = {"protein_group": pl.lit(None, pl.String), "gene_names": pl.lit([], pl.List(pl.String)),
                "accessions": pl.lit([], pl.List(pl.String)), "entry_names": pl.lit([], pl.List(pl.String)),
                "antibody": pl.lit(None, pl.String), "is_decoy": pl.lit(False), "is_phospho": pl.lit(False)}
    return features.with_columns(
        **{name: expr for name, expr in defaults.items() if name not in features.columns}
    ).select("feature_id", *defaults).with_columns(
        pl.col("gene_names", "accessions", "entry_names").fill_null([]),
        pl.col("is_decoy", "is_phospho").fill_null(False))


def _candidates(groups: pl.DataFrame, *, annotation: pl.DataFrame | None) -> pl.DataFrame:
    """One row per (group, identifier to try): gene names, annotated or read antibody targets, accessions."""
    target = _target(pl.col("antibody"))
    # Antibody names are written in protein case (Akt, K-Ras); their gene symbols are upper case without the
    # hyphen. Weight names (p27, p38) are left as written: upper-cased they are other genes' aliases (P27 = IFI27).
    upper = pl.when(target.str.contains(r"^p[0-9]")).then(target).otherwise(target.str.to_uppercase())
    antibody_names = pl.concat_list(target, upper, upper.str.replace_all("-", "", literal=True))
    no_genes = pl.col("gene_names").list.len() == 0
    annotated = annotated_genes(groups["antibody"], annotation=annotation)
    listed = groups.with_columns(annotated=annotated).select(
        "group_order",
        gene_name=pl.col("gene_names"),
        antibody_annotation=pl.when(no_genes).then("annotated").otherwise([]),
        antibody_name=pl.when(no_genes & (pl.col("annotated").list.len() == 0)).then(antibody_names)
        .otherwise([]),
        uniprot_accession=pl.col("accessions"),
    )
    frames = [
        listed.select("group_order", pl.col(source).list.unique(maintain_order=True).alias("identifier"))
        .with_columns(position=pl.int_ranges(pl.col("identifier").list.len()))
        .explode("identifier", "position")
        .drop_nulls("identifier")
        .with_columns(source=pl.lit(source), tier=pl.lit(tier))
        for source, tier in _TIER.items()
    ]
    return pl.concat(frames).filter(pl.col("identifier").str.strip_chars() != "")


def annotated_genes(antibodies: pl.Series, *, annotation: pl.DataFrame | None) -> pl.Series:
    """The gene symbols the RPPA annotation gives each antibody name (an empty list when it lists none).

    Names are compared without the validation suffix (``-R-V``), case and punctuation (``Pea-15`` = ``PEA15``);
    a name still not listed is compared by its target, the site removed (``4E-BP1_pT37`` -> ``4E-BP1``, listed as
    ``4E-BP1_pT37_T46``), when every listed antibody of that target names the same genes. Several genes
    (``AKT1 AKT2 AKT3|Akt``) are all returned; the mapping keeps one row per gene, flagged ``is_ambiguous``.
    """
    names = pl.DataFrame({"antibody": antibodies}, schema={"antibody": pl.String}).with_row_index("order")
    if annotation is None or annotation.is_empty():
        return pl.Series("annotated", [[]] * names.height, dtype=pl.List(pl.String))
    keys = {"name_key": _key(pl.col("antibody").str.strip_chars().str.replace(_ANTIBODY_SUFFIX, "")),
            "target_key": _key(_target(pl.col("antibody")))}
    found = names.with_columns(**keys)
    for key, genes in (("name_key", "by_name"), ("target_key", "by_target")):
        unique = (annotation.with_columns(**keys).group_by(key).agg(pl.col("genes").unique())
                  .filter(pl.col("genes").list.len() == 1).select(key, pl.col("genes").list.first().alias(genes)))
        found = found.join(unique, on=key, how="left")
    return found.sort("order").select(annotated=pl.coalesce("by_name", "by_target").fill_null([]))["annotated"]


def _target(name: pl.Expr) -> pl.Expr:
    """The protein an antibody targets: name without validation suffix, phospho or cleavage site."""
    return name.str.strip_chars().str.replace(_ANTIBODY_SUFFIX, "").str.replace(_ANTIBODY_SITE, "")


def _key(name: pl.Expr) -> pl.Expr:
    return name.str.to_lowercase().str.replace_all(r"[^a-z0-9]", "")


def _resolve(candidates: pl.DataFrame, *, reference: GeneReference, id_type: str) -> pl.DataFrame:
    answers = resolve_gene_ids(candidates["identifier"], reference=reference, id_type=id_type).rename(
        {"feature_id": "identifier", "status": "resolver_status", "rule": "resolver_rule"})
    return candidates.join(answers, on="identifier", how="left").with_columns(
        # duplicate only means another identifier reached the gene first; at group level it is a hit
        gene_id=pl.when(pl.col("resolver_status").is_in(["mapped", "duplicate"])).then("gene_id"))


def _species(groups: pl.DataFrame, *, reference: GeneReference, organism_is_human: bool) -> pl.DataFrame:
    """Per group with entry names: are all / any of them of another species, and the first such entry name."""
    entries = (groups.select("group_order", identifier=pl.col("entry_names")).explode("identifier")
               .drop_nulls("identifier"))
    verdict = resolve_gene_ids(entries["identifier"], reference=reference, id_type="auto")
    foreign = entries.join(verdict.select(identifier="feature_id", foreign=pl.col("rule") == "other_species"),
                           on="identifier", how="left")
    summary = foreign.group_by("group_order").agg(
        all_foreign=pl.col("foreign").all(),
        any_foreign=pl.col("foreign").any(),
        entry=pl.col("identifier").filter(pl.col("foreign")).first(),
    )
    if organism_is_human:
        return summary
    return groups.select("group_order").join(summary.select("group_order", "entry"), on="group_order",
                                             how="left").with_columns(all_foreign=True, any_foreign=True)


def _unmapped(groups: pl.DataFrame, resolved: pl.DataFrame, species: pl.DataFrame) -> pl.DataFrame:
    """One row per group that reached no gene, saying why."""
    tried = groups.select("group_order", "is_decoy").join(resolved, on="group_order", how="left")
    # Leading candidate: an ambiguous one if there is any (it says most), else the first one tried.
    first = (tried.sort("group_order", pl.col("resolver_status") != "ambiguous", "tier", "position",
                        nulls_last=True)
             .unique("group_order", keep="first", maintain_order=True)
             .join(species, on="group_order", how="left")
             .with_columns(foreign=pl.col("any_foreign").fill_null(False) & ~pl.col("is_decoy"),
                           ambiguous=(pl.col("resolver_status") == "ambiguous").fill_null(False)
                           & ~pl.col("is_decoy")))
    return first.select(
        "group_order",
        pl.col("tier").fill_null(0),
        pl.col("position").fill_null(0),
        identifier=pl.when(pl.col("foreign")).then(pl.coalesce("entry", "identifier")).otherwise("identifier"),
        namespace=pl.when(pl.col("foreign")).then(pl.lit("uniprot"))
        .otherwise(pl.coalesce("namespace", pl.lit("unknown"))),
        gene_id=pl.lit(None, pl.Int64),
        status=pl.when(~pl.col("foreign") & pl.col("ambiguous")).then(pl.lit("ambiguous"))
        .otherwise(pl.lit("unmapped")),
        rule=pl.when(pl.col("is_decoy")).then(pl.lit("decoy"))
        .when(pl.col("foreign")).then(pl.lit("other_species"))
        .when(pl.col("source").is_null()).then(pl.lit("no_identifier"))
        .when(pl.col("ambiguous")).then("source")
        .otherwise(pl.col("source") + "_not_found"),
        is_ambiguous=~pl.col("foreign") & pl.col("ambiguous"),
        resolver_rule=pl.when(pl.col("foreign")).then(pl.lit("other_species")).otherwise("resolver_rule"),
    )


def normalise_protein_abundance(records: pl.LazyFrame | pl.DataFrame, *, platform: str, log2_given: bool = False
                                ) -> pl.LazyFrame | pl.DataFrame:
    """Add ``log2_abundance`` and ``normalized`` to protein records (one row per sample and protein group).

    MS (``platform='ms'``): ``log2_abundance`` is log2 of the intensity; ``normalized`` subtracts each sample's
    median log2 over its non-missing groups (each ``feature_id`` once, also when records were already joined to
    several genes), so the median of every sample is 0 and loading differences between runs cancel. RPPA: values
    are already median-centred log2 ratios, both columns copy ``abundance``. ``log2_given`` (an MS assay with
    ``measure: log2``, e.g. cBioPortal's CPTAC ``PROTEIN_LEVEL`` ratios, negative for half the proteins): the
    values are log2 already, ``log2_abundance`` copies them and ``normalized`` median-centres them as above.
    Missing values stay missing (never imputed). Returns the same kind of frame it was given.
    """
    if platform == "rppa":
        return records.with_columns(log2_abundance=pl.col("abundance"), normalized=pl.col("abundance"))
    if platform != "ms":
        raise ValueError(f"platform must be 'ms' or 'rppa'; got {platform!r}")
    log2 = pl.col("abundance") if log2_given else pl.when(pl.col("abundance") > 0).then(pl.col("abundance").log(2))
    # A group mapped to several genes has one row per gene after the gene join: count it once in the median.
    once = pl.struct("column", "feature_id").is_first_distinct()
    return records.with_columns(log2_abundance=log2).with_columns(
        normalized=pl.col("log2_abundance") - pl.col("log2_abundance").filter(once).median().over("column"))


def missing_per_sample(records: pl.LazyFrame | pl.DataFrame) -> pl.DataFrame:
    """One row per sample column: ``n_missing`` (null abundance, problems included) and ``n_total`` groups."""
    summary = (records.lazy().group_by("column", maintain_order=True)
               .agg(n_missing=pl.col("abundance").null_count(), n_total=pl.len()))
    return summary.collect().cast({"n_missing": pl.Int64, "n_total": pl.Int64})
