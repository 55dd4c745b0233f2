"""MAF (Mutation Annotation Format) -> native ``variants`` rows: one row per variant per tumour sample.

Reads the MAF flavours in use: MAF-lite (17 columns, maftools' ``End_position``), the 114-column vcf2maf MAF and
cBioPortal's 168-column ``data_mutations_extended`` (``#version`` comment lines, any column-name case, gzip or
not). The consequence is ``Variant_Classification`` mapped to its SO term (:data:`transforms.layers.variants.MAF_TO_SO`)
so MAF and VCF variants share one vocabulary; the original value is kept in ``variant_classification``.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from transforms.ingest.parse import ParsedAssay
from transforms.ingest.parse.text import checks_stream, read_table, sniff_table
from transforms.issues import InputError, Issue, IssueLog
from transforms.layers.variants import MAF_TO_SO, SO_IMPACT, variant_class

REQUIRED = ("Hugo_Symbol", "Chromosome", "Start_Position", "Reference_Allele", "Tumor_Seq_Allele2",
            "Tumor_Sample_Barcode", "Variant_Classification")
#: first present, non-empty column wins (case-insensitive names)
PROTEIN_COLUMNS = ("HGVSp_Short", "Protein_Change", "Amino_Acid_Change")
TRANSCRIPT_COLUMNS = ("Transcript_ID", "Feature", "i_transcript_name")
ENSEMBL_GENE_COLUMNS = ("Gene", "ensembl_gene_id")
#: allele-fraction columns in percent (WashU ``i_TumorVAF_WU``, cBioPortal ``tumor_vaf``) and as a fraction (MuTect)
PERCENT_VAF_COLUMNS = ("i_TumorVAF_WU", "tumor_vaf")
FRACTION_VAF_COLUMNS = ("tumor_f",)
MAF_CONSEQUENCE_RULE = ("Variant_Classification mapped to its SO term (transforms.layers.variants.MAF_TO_SO); "
                        "the transcript is the one the MAF's annotator chose (Transcript_ID)")
MISSING = ("", "NA", ".", "__UNKNOWN__")

VARIANT_SCHEMA = pl.Schema({
    "column": pl.String, "feature_id": pl.String, "line": pl.Int64, "chromosome": pl.String,
    "position": pl.Int64, "ref": pl.String, "alt": pl.String, "variant_class": pl.String,
    "consequence": pl.String, "variant_classification": pl.String, "protein_change": pl.String,
    "vaf": pl.Float64, "depth": pl.Int64, "filter": pl.String, "source_format": pl.String,
    "transcript_id": pl.String, "impact": pl.String, "ensembl_gene": pl.String, "problem": pl.String,
})


@checks_stream
def parse_maf(path: Path, *, issues: IssueLog, display_name: str | None = None) -> ParsedAssay:
    """Read a MAF into ``variants`` rows (see :data:`VARIANT_SCHEMA`), one per MAF row.

    ``feature_id`` is ``Hugo_Symbol``, or ``Entrez_Gene_Id`` when the symbol is empty or ``Unknown``. ``alt`` is
    ``Tumor_Seq_Allele2``, or ``Tumor_Seq_Allele1`` when allele 2 equals the reference. ``vaf`` is
    ``t_alt_count / t_depth`` (``t_ref_count + t_alt_count`` when ``t_depth`` is absent or 0), else a percent
    column such as ``i_TumorVAF_WU`` / 100, else MuTect's ``tumor_f``, else null. Values that cannot be read
    (a non-integer position, a count that is not a number) become null and are named in ``problem``; such rows
    are kept for quarantine and counted in one warning issue per problem. A missing required column raises
    :class:`InputError`.
    """
    name = display_name or path.name
    layout = sniff_table(path, issues=issues, display_name=name, separators="\t")
    by_lower = {h.lower(): h for h in layout.header}
    missing = [c for c in REQUIRED if c.lower() not in by_lower]
    if missing:
        raise InputError(Issue(name, "missing_column", "error",
                               f"MAF lacks required column(s) {', '.join(missing)}", layout.header_line,
                               missing[0]))
    # comment_prefix=None: read_table with a comment prefix drops the first data row after a "#version" line
    # (polars counts skip_rows after removing comments); MAF comments only precede the header.
    raw = read_table(layout, issues=issues, comment_prefix=None)
    if raw.height == 0:  # every column would be null-typed: say so instead of failing later in a join
        raise InputError(Issue(name, "no_rows", "error", "the MAF has a header but no variant rows",
                               layout.header_line))

    def col(*names: str) -> pl.Expr:
        """The first of ``names`` present in the file, missing markers as null (null literal if none is)."""
        present = [by_lower[n.lower()] for n in names if n.lower() in by_lower]
        if not present:
            return pl.lit(None, dtype=pl.String)
        cleaned = [pl.when(pl.col(p).str.strip_chars().is_in(MISSING)).then(None)
                   .otherwise(pl.col(p).str.strip_chars()) for p in present]
        return pl.coalesce(cleaned)

    def integer(expr: pl.Expr, label: str) -> tuple[pl.Expr, pl.Expr]:
        value = expr.cast(pl.Int64, strict=False)
        return value, pl.when(expr.is_not_null() & value.is_null()).then(pl.lit(f"{label} is not an integer"))

    def number(expr: pl.Expr, label: str) -> tuple[pl.Expr, pl.Expr]:
        value = expr.cast(pl.Float64, strict=False)
        return value, pl.when(expr.is_not_null() & value.is_null()).then(pl.lit(f"{label} is not a number"))

    position, bad_position = integer(col("Start_Position"), "position")
    depth, bad_depth = integer(col("t_depth"), "t_depth")
    alt_count, bad_alt = integer(col("t_alt_count"), "t_alt_count")
    ref_count, bad_ref = integer(col("t_ref_count"), "t_ref_count")
    percent, bad_percent = number(col(*PERCENT_VAF_COLUMNS), "tumour VAF")
    fraction, bad_fraction = number(col(*FRACTION_VAF_COLUMNS), "tumor_f")

    symbol = col("Hugo_Symbol")
    entrez = col("Entrez_Gene_Id")
    ref = col("Reference_Allele")
    allele2 = col("Tumor_Seq_Allele2")
    alt = pl.when(allele2.is_null() | (allele2 == ref)).then(col("Tumor_Seq_Allele1")).otherwise(allele2)
    count_depth = pl.when(depth > 0).then(depth).otherwise(ref_count + alt_count)
    protein = col(*PROTEIN_COLUMNS)
    classification = col("Variant_Classification")
    consequence = classification.replace_strict(MAF_TO_SO, default=None, return_dtype=pl.String)
    frame = raw.select(
        col("Tumor_Sample_Barcode").alias("column"),
        pl.when(symbol.is_null() | (symbol == "Unknown")).then(pl.when(entrez != "0").then(entrez))
        .otherwise(symbol).alias("feature_id"),
        pl.col("line"),
        col("Chromosome").alias("chromosome"),
        position.alias("position"),
        ref.alias("ref"),
        alt.alias("alt"),
        variant_class(ref, alt).alias("variant_class"),
        consequence.alias("consequence"),
        classification.alias("variant_classification"),
        pl.when(protein.is_null() | protein.str.starts_with("p.")).then(protein)
        .otherwise(pl.lit("p.") + protein).alias("protein_change"),
        pl.when(alt_count.is_not_null() & (count_depth > 0)).then(alt_count / count_depth)
        .when(percent.is_not_null()).then(percent / 100).otherwise(fraction).alias("vaf"),
        depth.alias("depth"),
        col("FILTER").alias("filter"),
        pl.lit("maf").alias("source_format"),
        col(*TRANSCRIPT_COLUMNS).alias("transcript_id"),
        pl.coalesce(col("IMPACT"), consequence.replace_strict(SO_IMPACT, default=None, return_dtype=pl.String))
        .alias("impact"),
        col(*ENSEMBL_GENE_COLUMNS).alias("ensembl_gene"),
        pl.concat_str(
            [bad_position, bad_depth, bad_alt, bad_ref, bad_percent, bad_fraction,
             pl.when(classification.is_not_null() & consequence.is_null())
             .then(pl.lit("unknown Variant_Classification")),
             pl.when(col("Tumor_Sample_Barcode").is_null()).then(pl.lit("Tumor_Sample_Barcode is empty")),
             pl.when(col("Chromosome").is_null() | col("Start_Position").is_null() | ref.is_null() | alt.is_null())
             .then(pl.lit("chromosome, position or allele is empty"))],
            separator="; ", ignore_nulls=True,
        ).alias("problem"),
    ).with_columns(pl.when(pl.col("problem") == "").then(None).otherwise(pl.col("problem")).alias("problem"))
    _report_problems(frame, issues=issues, file=name)
    samples = frame.get_column("column").drop_nulls().unique(maintain_order=True).to_list()
    return ParsedAssay(
        records=frame.cast(VARIANT_SCHEMA).lazy(),
        columns=samples,
        metadata={"format": "maf", "n_columns": len(layout.header), "variants": frame.height,
                  "samples": len(samples), "consequence_rule": MAF_CONSEQUENCE_RULE},
    )


def _report_problems(frame: pl.DataFrame, *, issues: IssueLog, file: str) -> None:
    """One warning per distinct problem, naming how many rows and the first line."""
    flagged = frame.filter(pl.col("problem").is_not_null())
    for (problem,), rows in flagged.group_by("problem", maintain_order=True):
        first = rows.row(0, named=True)
        issues.warning("bad_value", f"{problem} ({rows.height} row(s); kept with a problem for quarantine)",
                       file=file, line=first["line"], record=str(problem))
