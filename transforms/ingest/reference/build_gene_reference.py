"""Build the committed human gene reference snapshot from the org.Hs.eg.db 3.16.0 TSV export.

Run once by hand when the source changes::

    .venv/bin/python transforms/ingest/reference/build_gene_reference.py ../shared/data/gene_annotation_human

It writes, next to this script, ``genes.parquet`` (one row per NCBI gene), ``gene_xrefs.parquet`` (one row per
gene, namespace and cross-reference) and ``release.json`` (source release and dates). The files are small zstd
Parquet so the resolver reads the same reference on every machine without network access.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path

import polars as pl

SOURCE_PACKAGE = "org.Hs.eg.db"
SOURCE_VERSION = "3.16.0"
PRIMARY_CHROMOSOME = r"^([0-9]{1,2}|X|Y|MT)$"


def read_tsv(path: Path) -> pl.DataFrame:
    """Read one export table with every column as text, so identifiers keep their exact spelling."""
    return pl.read_csv(path, separator="\t", infer_schema=False)


def gene_loci(locations: pl.DataFrame, ncbi_chromosome: pl.DataFrame) -> pl.DataFrame:
    """Choose one GRCh38 locus per gene: one row per gene with chromosome, start, end and strand.

    The source has one row per transcript span, on the primary assembly, alt/fix contigs and both PARs, and
    multi-copy genes (snRNA, rRNA clusters) sit at several distant places. Overlapping rows on one chromosome
    and strand are merged into a locus; the locus chosen is on a primary chromosome, on NCBI's chromosome for
    the gene (X before Y for PAR genes), with the most rows, then the lowest position.
    """
    keys = ["gene_id", "chromosome", "strand"]
    spans = (
        locations.select(
            pl.col("entrez_id").cast(pl.Int64).alias("gene_id"),
            pl.col("chromosome").replace("M", "MT"),
            pl.col("start").cast(pl.Int64),
            pl.col("end").cast(pl.Int64),
            pl.col("strand"),
        )
        .sort([*keys, "start", "end"])
        .with_columns(reach=pl.col("end").cum_max().shift(1).over(keys))
        .with_columns(locus=(pl.col("start") > pl.col("reach")).fill_null(False).cum_sum().over(keys))
        .group_by([*keys, "locus"])
        .agg(pl.col("start").min(), pl.col("end").max(), rows=pl.len())
    )
    return (
        spans.join(ncbi_chromosome, on="gene_id", how="left")
        .sort(
            pl.col("chromosome").str.contains(PRIMARY_CHROMOSOME),
            pl.col("chromosome") == pl.col("ncbi_chromosome").str.split(";").list.first(),
            pl.col("rows"),
            pl.col("chromosome"),
            pl.col("start"),
            pl.col("strand"),
            descending=[True, True, True, False, False, False],
            nulls_last=True,
        )
        .unique("gene_id", keep="first", maintain_order=True)
        .select("gene_id", "chromosome", "start", "end", "strand")
    )


def build_genes(source: Path) -> pl.DataFrame:
    """One row per NCBI gene: gene_id, symbol, name, biotype, chromosome, start, end, strand (GRCh38)."""
    genes = read_tsv(source / "human_genes_orgHsEgDb.tsv").select(
        pl.col("entrez_id").cast(pl.Int64).alias("gene_id"),
        "symbol",
        "name",
        pl.col("gene_type").alias("biotype"),
        pl.col("chromosome").alias("ncbi_chromosome"),
    )
    loci = gene_loci(
        read_tsv(source / "gene_locations_hg38_orgHsEgDb.tsv"), genes.select("gene_id", "ncbi_chromosome")
    )
    return (
        genes.join(loci, on="gene_id", how="left")
        .with_columns(
            # Genes without coordinates keep NCBI's chromosome when it names exactly one.
            pl.coalesce(
                "chromosome",
                pl.when(pl.col("ncbi_chromosome").str.contains(PRIMARY_CHROMOSOME)).then("ncbi_chromosome"),
            ).alias("chromosome")
        )
        .select("gene_id", "symbol", "name", "biotype", "chromosome", "start", "end", "strand")
        .sort("gene_id")
    )


def build_xrefs(source: Path) -> pl.DataFrame:
    """One row per gene_id, namespace and xref (ensembl_gene, ensembl_transcript, uniprot, alias)."""
    aliases = read_tsv(source / "human_gene_aliases_orgHsEgDb.tsv")
    parts = [
        ("ensembl_gene", read_tsv(source / "ensembl_gene_to_entrez_orgHsEgDb.tsv"), "ensembl_gene_id"),
        (
            "ensembl_transcript",
            read_tsv(source / "ensembl_transcript_to_gene_orgHsEgDb.tsv.gz"),
            "ensembl_transcript_id",
        ),
        ("uniprot", read_tsv(source / "uniprot_to_gene_orgHsEgDb.tsv"), "uniprot_accession"),
        ("alias", aliases.filter(pl.col("is_official_symbol") == "FALSE"), "alias"),
    ]
    return (
        pl.concat(
            frame.select(
                pl.col("entrez_id").cast(pl.Int64).alias("gene_id"),
                pl.lit(namespace).alias("namespace"),
                pl.col(column).alias("xref"),
            )
            for namespace, frame, column in parts
        )
        .unique()
        .sort("namespace", "xref", "gene_id")
    )


def source_date(value: str) -> str:
    """ISO date from the metadata's mixed spellings ('2022-Sep12', 'Fri Sep 23 16:26:35 2022')."""
    for pattern in ("%Y-%b%d", "%a %b %d %H:%M:%S %Y"):
        try:
            return datetime.strptime(value, pattern).date().isoformat()
        except ValueError:
            continue
    raise ValueError(f"unrecognised source date {value!r} in org.Hs.eg.db_metadata.tsv")


def build_release(source: Path, genes: pl.DataFrame, xrefs: pl.DataFrame) -> dict:
    """Source package, version, per-source dates and row counts, for the warehouse to record with each run."""
    meta = dict(read_tsv(source / "org.Hs.eg.db_metadata.tsv").iter_rows())
    return {
        "source": f"{SOURCE_PACKAGE} {SOURCE_VERSION}",
        "organism": meta["ORGANISM"],
        "taxid": int(meta["TAXID"]),
        "ncbi_gene_date": source_date(meta["EGSOURCEDATE"]),
        "ensembl_date": source_date(meta["ENSOURCEDATE"]),
        "uniprot_date": source_date(meta["UPSOURCEDATE"]),
        "locations": f"{meta['GPSOURCENAME']}, GRCh38, {source_date(meta['GPSOURCEDATE'])}",
        "genes": genes.height,
        "genes_with_coordinates": genes["start"].is_not_null().sum(),
        "xrefs": dict(sorted(xrefs["namespace"].value_counts().iter_rows())),
    }


def main() -> None:
    """Parse the command line, build the three files and print the release record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="folder with the org.Hs.eg.db TSV export")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()
    genes = build_genes(args.source)
    xrefs = build_xrefs(args.source)
    release = build_release(args.source, genes, xrefs)
    genes.write_parquet(args.out / "genes.parquet", compression="zstd", compression_level=19)
    xrefs.write_parquet(args.out / "gene_xrefs.parquet", compression="zstd", compression_level=19)
    (args.out / "release.json").write_text(json.dumps(release, indent=2) + "\n")
    print(json.dumps(release, indent=2))


if __name__ == "__main__":
    main()
