"""The one gene resolver: any gene or protein identifier found in a study file -> NCBI (Entrez) gene_id.

Every omics table keys genes by the Entrez ``gene_id`` of the committed reference snapshot
(``transforms/ingest/reference/``, org.Hs.eg.db 3.16.0). Identifiers arrive as Entrez IDs, versioned Ensembl gene or
transcript IDs, UniProt accessions, official or outdated symbols, Excel-mangled symbols (``1-Mar``) and cBioPortal
``symbol|entrez`` composites. :func:`resolve_gene_ids` decides each one with polars joins against one lookup table,
never guesses between several genes, and marks all but one identifier per gene as ``duplicate`` so (sample, gene)
stays unique.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path

import polars as pl

REFERENCE_DIR = Path(__file__).resolve().parent / "reference"

ID_TYPES = ("auto", "symbol", "entrez", "ensembl", "uniprot")

# rule -> (namespace, interpretation order, duplicate strength, id_types that try it). The interpretation order
# picks the rule that decides an identifier when several apply (an official symbol beats another gene's alias);
# the strength picks which of several identifiers of one gene stays "mapped" (lower wins, then input order).
RULES: dict[str, tuple[str, int, int, tuple[str, ...]]] = {
    "entrez": ("entrez", 0, 0, ("entrez",)),
    "ensembl_gene": ("ensembl_gene", 1, 0, ("ensembl",)),
    "ensembl_gene_par_y": ("ensembl_gene", 2, 1, ("ensembl",)),
    "ensembl_transcript": ("ensembl_transcript", 3, 1, ("ensembl",)),
    "uniprot": ("uniprot", 4, 0, ("uniprot",)),
    "uniprot_isoform": ("uniprot", 5, 1, ("uniprot",)),
    "symbol": ("symbol", 6, 0, ("symbol",)),
    "alias": ("symbol", 7, 2, ("symbol",)),
    "excel_date": ("symbol", 8, 3, ("symbol",)),
    "composite_entrez": ("entrez", 9, 0, ("symbol",)),
    "composite_symbol": ("symbol", 10, 0, ("symbol",)),
    "composite_alias": ("symbol", 11, 2, ("symbol",)),
    "composite_excel_date": ("symbol", 12, 3, ("symbol",)),
}

ENTREZ = r"^[0-9]+$"
ENSEMBL_GENE = r"^(ENSG[0-9]{11})(\.[0-9]+)?(_PAR_Y)?$"
ENSEMBL_TRANSCRIPT = r"^(ENST[0-9]{11})(\.[0-9]+)?(_PAR_Y)?$"
# UniProt's documented accession pattern, optionally with an isoform suffix.
UNIPROT = r"^([OPQ][0-9][A-Z0-9]{3}[0-9]|[A-NR-Z][0-9](?:[A-Z][A-Z0-9]{2}[0-9]){1,2})(-[0-9]+)?$"
UNIPROT_ENTRY_NAME = r"^[A-Z0-9]{1,10}_([A-Z][A-Z0-9]{1,4})$"
# Gene IDs of other species that reach us through model-organism studies (FlyBase, non-human Ensembl).
OTHER_SPECIES_ID = r"^(FBgn[0-9]{7}|ENS[A-Z]{3,4}[GTP][0-9]{11}(\.[0-9]+)?)$"
# Excel turns MARCH1 / SEPT2 / DEC1 into dates shown as 1-Mar or Mar-01; the family prefix it came from:
EXCEL_DATE = r"(?i)^(?:0?([1-9][0-9]?)-(mar|sep|dec)|(mar|sep|dec)-0?([1-9][0-9]?))$"
EXCEL_FAMILY = {"mar": "MARCH", "sep": "SEPT", "dec": "DEC"}

RESULT_SCHEMA = pl.Schema({
    "feature_id": pl.String,
    "namespace": pl.String,
    "gene_id": pl.Int64,
    "status": pl.String,
    "rule": pl.String,
})


@dataclass(frozen=True, eq=False)
class GeneReference:
    """The gene reference snapshot: ``genes`` (one row per NCBI gene), ``xrefs`` (gene_id, namespace, xref)
    and ``release`` (source package and dates, from ``release.json``).
    """

    genes: pl.DataFrame
    xrefs: pl.DataFrame
    release: dict
    fingerprint: str = ""
    """Hash of the snapshot's files: a file changed without a new release.json still reprocesses every study."""
    grch37: pl.DataFrame | None = None
    """GRCh37 / hg19 loci (gene_id, chromosome, start, end, strand) lifted from the GRCh38 ones, when shipped."""
    antibodies: pl.DataFrame | None = None
    """RPPA antibody annotation (``antibody``, ``genes``: the symbols it targets), from ``rppa_antibodies.json``:
    what bare antibody names (``ER-alpha``) mean, as cBioPortal writes them (``ESR1|ER-alpha``)."""

    def genes_on(self, build: str) -> pl.DataFrame | None:
        """``genes`` with coordinates on ``build`` (``GRCh38`` or ``GRCh37``, canonical names), or None when the
        snapshot has no coordinates on that build; a gene without a locus there keeps null coordinates.
        """
        if build == "GRCh38":
            return self.genes
        if build == "GRCh37" and self.grch37 is not None:
            return self.genes.drop("chromosome", "start", "end", "strand").join(self.grch37, on="gene_id",
                                                                                how="left")
        return None

    @classmethod
    def load(cls, path: Path | None = None) -> GeneReference:
        """Read the snapshot in ``path`` (default: the one shipped in ``transforms/ingest/reference/``); cached."""
        return _load_reference(Path(path or REFERENCE_DIR).resolve())

    @cached_property
    def lookup(self) -> pl.DataFrame:
        """One row per (lookup namespace, key, gene_id): entrez, symbol and every xref namespace."""
        return pl.concat(
            [
                self.genes.select(
                    pl.lit("entrez").alias("namespace"), pl.col("gene_id").cast(pl.String).alias("key"), "gene_id"
                ),
                # Four official symbols are shared with an NCBI phenotype-only locus (biotype "unknown", no
                # sequence, e.g. HBD): nothing can measure such a locus, so the symbol means the sequenced gene.
                self.genes.filter(
                    (pl.col("biotype") != "unknown") | (pl.col("biotype") == "unknown").all().over("symbol")
                ).select(pl.lit("symbol").alias("namespace"), pl.col("symbol").alias("key"), "gene_id"),
                self.xrefs.select("namespace", pl.col("xref").alias("key"), "gene_id"),
            ]
        ).unique()


@cache
def _load_reference(path: Path) -> GeneReference:
    digest = hashlib.blake2b(digest_size=16)
    grch37 = path / "genes_grch37.parquet"
    antibodies = path / "rppa_antibodies.json"
    for file in (path / "genes.parquet", path / "gene_xrefs.parquet", path / "release.json", grch37, antibodies):
        if file.exists():
            digest.update(file.read_bytes())
    release = json.loads((path / "release.json").read_text())
    return GeneReference(
        genes=pl.read_parquet(path / "genes.parquet"),
        xrefs=pl.read_parquet(path / "gene_xrefs.parquet"),
        release=release,
        fingerprint=f"{release.get('source', '')}:{digest.hexdigest()}",
        grch37=pl.read_parquet(grch37) if grch37.exists() else None,
        antibodies=_antibody_annotation(antibodies) if antibodies.exists() else None,
    )


def _antibody_annotation(path: Path) -> pl.DataFrame:
    """``GENE1 GENE2|antibody`` entries -> one row per antibody with its list of gene symbols."""
    entries = json.loads(path.read_text())["antibodies"]
    return pl.DataFrame({"entry": entries}).select(
        antibody=pl.col("entry").str.split("|").list.last(),
        genes=pl.col("entry").str.split("|").list.first().str.split(" "))


def genes_table(reference: GeneReference) -> pl.DataFrame:
    """The warehouse table ``genes``: one row per NCBI gene with symbol, name, biotype and GRCh38 locus."""
    return reference.genes.select("gene_id", "symbol", "name", "biotype", "chromosome", "start", "end", "strand")


def gene_xrefs_table(reference: GeneReference) -> pl.DataFrame:
    """The warehouse table ``gene_xrefs``: one row per gene, namespace and cross-reference."""
    return reference.xrefs.select("gene_id", "namespace", "xref")


def transcript_gene_map(reference: GeneReference) -> pl.DataFrame:
    """One row per unversioned Ensembl transcript that belongs to exactly one gene: transcript_id, gene_id.

    Used to sum transcript quantifications to genes; the few transcripts linked to several genes are left out,
    since adding them to every gene would count their reads more than once.
    """
    return (
        reference.xrefs.filter(pl.col("namespace") == "ensembl_transcript")
        .filter(pl.len().over("xref") == 1)
        .select(pl.col("xref").alias("transcript_id"), "gene_id")
        .sort("transcript_id")
    )


def _symbol_candidates(ids: pl.DataFrame, key: pl.Expr, *, prefix: str) -> list[pl.DataFrame]:
    """Lookups that read ``key`` as a gene symbol: official symbol, alias, then the symbol Excel mangled."""
    excel = key.str.extract_groups(EXCEL_DATE)
    family = pl.coalesce(excel.struct.field("2"), excel.struct.field("3")).str.to_lowercase()
    number = pl.coalesce(excel.struct.field("1"), excel.struct.field("4"))
    unmangled = family.replace_strict(EXCEL_FAMILY, default=None) + number
    return [
        ids.select("order", pl.lit(f"{prefix}symbol").alias("rule"), pl.lit("symbol").alias("lookup"), key),
        ids.select("order", pl.lit(f"{prefix}alias").alias("rule"), pl.lit("alias").alias("lookup"), key),
        *(
            ids.select(
                "order",
                pl.lit(f"{prefix}excel_date").alias("rule"),
                pl.lit(lookup).alias("lookup"),
                unmangled.alias("key"),
                pl.lit(step).alias("step"),
            )
            for step, lookup in enumerate(("symbol", "alias"))
        ),
    ]


def _candidates(ids: pl.DataFrame) -> pl.DataFrame:
    """Every (identifier, rule, lookup namespace, key) reading that the identifier's shape allows."""
    key = pl.col("key")
    ensembl_gene = key.str.extract_groups(ENSEMBL_GENE)
    transcript = key.str.extract_groups(ENSEMBL_TRANSCRIPT)
    uniprot = key.str.extract_groups(UNIPROT)
    plain = ids.filter(~key.str.contains("|", literal=True))
    composite = ids.filter(key.str.contains("|", literal=True)).with_columns(
        symbol_part=key.str.split_exact("|", 1).struct.field("field_0").str.strip_chars(),
        entrez_part=key.str.split_exact("|", 1).struct.field("field_1").str.strip_chars(),
    )
    frames = [
        plain.filter(key.str.contains(ENTREZ)).select(
            "order", rule=pl.lit("entrez"), lookup=pl.lit("entrez"), key=key.cast(pl.Int64, strict=False)
        ),
        plain.select(
            "order",
            rule=pl.when(ensembl_gene.struct.field("3").is_null())
            .then(pl.lit("ensembl_gene"))
            .otherwise(pl.lit("ensembl_gene_par_y")),
            lookup=pl.lit("ensembl_gene"),
            key=ensembl_gene.struct.field("1"),
        ),
        plain.select(
            "order",
            rule=pl.lit("ensembl_transcript"),
            lookup=pl.lit("ensembl_transcript"),
            key=transcript.struct.field("1"),
        ),
        plain.select(
            "order",
            rule=pl.when(uniprot.struct.field("2").is_null())
            .then(pl.lit("uniprot"))
            .otherwise(pl.lit("uniprot_isoform")),
            lookup=pl.lit("uniprot"),
            key=uniprot.struct.field("1"),
        ),
        *_symbol_candidates(plain, key, prefix=""),
        composite.filter(pl.col("entrez_part").str.contains(ENTREZ)).select(
            "order",
            rule=pl.lit("composite_entrez"),
            lookup=pl.lit("entrez"),
            key=pl.col("entrez_part").cast(pl.Int64, strict=False),
        ),
        *_symbol_candidates(composite, pl.col("symbol_part").alias("key"), prefix="composite_"),
    ]
    return (
        pl.concat([frame.with_columns(pl.col("key").cast(pl.String)) for frame in frames], how="diagonal")
        .with_columns(pl.col("step").fill_null(0))
        .drop_nulls("key")
    )


def resolve_gene_ids(
    feature_ids: pl.Series | Sequence[str | None], *, reference: GeneReference, id_type: str = "auto"
) -> pl.DataFrame:
    """Map identifiers as written in a study file to Entrez ``gene_id``; one row per distinct identifier.

    Returns ``feature_id``, ``namespace`` (symbol / entrez / ensembl_gene / ensembl_transcript / uniprot /
    unknown), ``gene_id`` (Int64), ``status`` (mapped / ambiguous / unmapped / duplicate) and ``rule`` (what
    decided it), in first-seen order, nulls included. ``id_type`` restricts the readings tried ("symbol",
    "entrez", "ensembl", "uniprot"); "auto" tries every reading the identifier's shape allows, in the order of
    :data:`RULES`. Several genes at the deciding rule make the identifier ``ambiguous`` with a null gene_id.
    When several identifiers reach one gene, the one with the strongest rule (then the first) stays ``mapped``
    and the others become ``duplicate`` but keep the gene_id: consumers use gene_id only where status is mapped.
    """
    if id_type not in ID_TYPES:
        raise ValueError(f"id_type must be one of {', '.join(ID_TYPES)}; got {id_type!r}")
    rules = pl.DataFrame(
        [
            (rule, namespace, order, strength)
            for rule, (namespace, order, strength, id_types) in RULES.items()
            if id_type == "auto" or id_type in id_types
        ],
        schema={"rule": pl.String, "namespace": pl.String, "priority": pl.Int64, "strength": pl.Int64},
        orient="row",
    )
    series = feature_ids if isinstance(feature_ids, pl.Series) else pl.Series(feature_ids, dtype=pl.String)
    ids = (
        series.cast(pl.String)
        .rename("feature_id")
        .unique(maintain_order=True)
        .to_frame()
        .with_row_index("order")
        .with_columns(key=pl.col("feature_id").str.strip_chars())
    )
    candidates = _candidates(ids.filter(pl.col("key") != "")).join(rules, on="rule")
    hits = (
        candidates.join(reference.lookup, left_on=["lookup", "key"], right_on=["namespace", "key"])
        # Within the Excel rule the unmangled symbol is read as an official symbol (step 0) before an alias.
        .with_columns(reading=pl.col("priority") * 2 + pl.col("step"))
        .filter(pl.col("reading") == pl.col("reading").min().over("order"))
        .group_by("order")
        .agg(
            pl.col("rule", "namespace", "strength").first(),
            genes=pl.col("gene_id").n_unique(),
            gene_id=pl.col("gene_id").first(),
        )
        .with_columns(
            status=pl.when(pl.col("genes") == 1).then(pl.lit("mapped")).otherwise(pl.lit("ambiguous")),
            gene_id=pl.when(pl.col("genes") == 1).then("gene_id"),
        )
    )
    # Identifiers that reached no gene keep the namespace of their first reading and say why they failed.
    misses = candidates.sort("priority").group_by("order").agg(miss_namespace=pl.col("namespace").first())
    entry_species = pl.col("key").str.extract(UNIPROT_ENTRY_NAME, 1)
    result = (
        ids.join(hits, on="order", how="left")
        .join(misses, on="order", how="left")
        .with_columns(
            status=pl.col("status").fill_null("unmapped"),
            namespace=pl.coalesce(
                "namespace",
                pl.when(entry_species.is_not_null()).then(pl.lit("uniprot")),
                pl.when(~pl.col("key").str.contains(OTHER_SPECIES_ID)).then("miss_namespace"),
                pl.lit("unknown"),
            ),
            rule=pl.coalesce(
                "rule",
                pl.when(pl.col("key").fill_null("") == "").then(pl.lit("empty")),
                pl.when(entry_species == "HUMAN").then(pl.lit("entry_name")),
                pl.when(entry_species.is_not_null() | pl.col("key").str.contains(OTHER_SPECIES_ID)).then(
                    pl.lit("other_species")
                ),
                pl.lit("not_found"),
            ),
        )
        .with_columns(
            # Strongest reading first, then input order: the first identifier of each gene stays mapped.
            keeper=pl.col("order")
            .sort_by("strength", "order")
            .first()
            .over(pl.when(pl.col("status") == "mapped").then("gene_id"))
        )
        .with_columns(
            status=pl.when((pl.col("status") == "mapped") & (pl.col("order") != pl.col("keeper")))
            .then(pl.lit("duplicate"))
            .otherwise("status")
        )
        .sort("order")
    )
    return result.select(list(RESULT_SCHEMA)).cast(RESULT_SCHEMA)
