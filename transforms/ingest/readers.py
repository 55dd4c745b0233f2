"""One reader per assay kind: parse the assay's files, then put samples and genes on the records.

Each reader returns an :class:`AssayOutput`: lazy frames per target table (table columns plus the routing
columns of :mod:`transforms.ingest.harmonise`), the ``gene_id_map`` rows of the assay and the sample mapping of its
column labels. Format differences end at the parser; identity is always decided by the same two functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from schemas.manifest import Assay, StudyManifest, confine, resolve_study_path
from transforms.ingest.genes import GeneReference, resolve_gene_ids, transcript_gene_map
from transforms.ingest.harmonise import attach_identity, flag_values, gene_map_rows
from transforms.ingest.parse import ParsedAssay
from transforms.ingest.parse.copy_number import parse_cn_log2, parse_gistic, parse_gistic_long
from transforms.ingest.parse.featurecounts import parse_featurecounts
from transforms.ingest.parse.gene_panel import parse_gene_panels
from transforms.ingest.parse.gistic2 import (
    GENE_LEVEL_FILE,
    GENES_FILE,
    LESIONS_FILE,
    parse_gistic_lesions,
    parse_gistic_peak_genes,
)
from transforms.ingest.parse.labels import PER_SAMPLE_FORMATS, sample_label_from_path
from transforms.ingest.parse.maf import parse_maf
from transforms.ingest.parse.matrix import parse_matrix
from transforms.ingest.parse.proteomics import parse_protein_file
from transforms.ingest.parse.rsem import parse_rsem
from transforms.ingest.parse.salmon import parse_salmon
from transforms.ingest.parse.seg import parse_seg
from transforms.ingest.parse.star import parse_star
from transforms.ingest.parse.vcf import parse_vcf
from transforms.ingest.samples import map_sample_columns
from transforms.issues import InputError, Issue, IssueLog
from transforms.layers.copy_number import (
    build_mismatch_message,
    canonical_build,
    match_peak_genes,
    segments_to_genes,
)
from transforms.layers.proteins import map_protein_groups, missing_per_sample, normalise_protein_abundance
from transforms.layers.variants import NON_SILENT_RULE, mutation_status_from_matrix, mutation_status_from_variants

CBIOPORTAL_IDS = ("Hugo_Symbol", "Entrez_Gene_Id")
CBIOPORTAL_ANNOTATIONS = ("Cytoband", "Entrez_Gene_Id")


@dataclass(frozen=True)
class AssayContext:
    """What every reader needs besides the assay: the study's identity tables and the gene reference."""

    study_id: str
    folder: Path
    manifest: StudyManifest
    reference: GeneReference
    samples: pl.DataFrame | None
    sample_map: pl.DataFrame | None
    issues: IssueLog
    attributes: pl.DataFrame | None = None
    """The sample table's attributes (long: sample_id, attribute, value): hints of unknown_sample errors."""

    def relative(self, path: Path) -> str:
        return str(path.resolve().relative_to(self.folder.resolve()))


@dataclass
class AssayOutput:
    """A reader's result: table -> lazy frame, gene_id_map rows, sample mapping and run metadata."""

    tables: dict[str, pl.LazyFrame]
    gene_map: pl.DataFrame
    samples: pl.DataFrame
    metadata: dict[str, object] = field(default_factory=dict)
    expected_rows: dict[str, int] = field(default_factory=dict)
    """Rows a table gets when no record has a problem (known for matrices): lets the loader skip the
    quarantine pass over a clean file."""
    derived_samples: pl.DataFrame | None = None
    """Samples the assay makes from others (single-cell pseudobulk profiles): sample_id, subject_id,
    parent_sample_id, cell_type; they join the samples tables with their parent's attributes."""


def resolve_features(feature_ids: pl.Series, assay: Assay, context: AssayContext) -> pl.DataFrame:
    """Resolver output for an assay's identifiers; a non-human study keeps every feature unmapped."""
    if context.manifest.is_human:
        if assay.format == "salmon" and assay.gene_id_type not in ("auto", "entrez"):
            resolved = _resolve_salmon_features(feature_ids, assay, context)
        else:
            resolved = resolve_gene_ids(feature_ids, reference=context.reference, id_type=assay.gene_id_type)
        _check_declared_id_type(resolved, assay, context)
        return resolved
    distinct = feature_ids.drop_nulls().unique(maintain_order=True)
    return pl.DataFrame({"feature_id": distinct, "namespace": "unknown", "gene_id": None,
                         "status": "unmapped", "rule": "organism_not_human"},
                        schema={"feature_id": pl.String, "namespace": pl.String, "gene_id": pl.Int64,
                                "status": pl.String, "rule": pl.String})


def _resolve_salmon_features(feature_ids: pl.Series, assay: Assay, context: AssayContext) -> pl.DataFrame:
    """A human Salmon assay's identifiers: the transcripts summed to genes are keyed by the gene's Entrez id
    (:func:`transcript_gene_map`) and resolved as such; the others, transcripts of no gene, under the declared
    ``gene_id_type``. Resolved all under the declared type (``ensembl``, as the file's ids are), every summed gene
    was unmapped, with a ``gene_id_type_mismatch`` warning naming an Entrez id the file does not hold.
    """
    genes = transcript_gene_map(context.reference).get_column("gene_id").cast(pl.String).unique()
    ids = feature_ids.cast(pl.String).unique(maintain_order=True)
    summed = ids.is_in(genes.implode()).fill_null(False)
    parts = [resolve_gene_ids(ids.filter(summed), reference=context.reference, id_type="entrez"),
             resolve_gene_ids(ids.filter(~summed), reference=context.reference, id_type=assay.gene_id_type)]
    order = ids.to_frame("feature_id").with_row_index("_order")
    return (pl.concat(parts).join(order, on="feature_id", how="left", nulls_equal=True).sort("_order")
            .drop("_order"))


def _check_declared_id_type(resolved: pl.DataFrame, assay: Assay, context: AssayContext) -> None:
    """A ``gene_id_type_mismatch`` warning when identifiers left unmapped under the declared ``gene_id_type`` map
    when read as another type (Ensembl ids in a column declared ``symbol``): they stay unmapped, as declared, but
    the likely cause is named, where gene_id_map only said ``not_found``.
    """
    if assay.gene_id_type == "auto":
        return
    unmapped = resolved.filter((pl.col("status") == "unmapped") & pl.col("feature_id").is_not_null())["feature_id"]
    if unmapped.is_empty():
        return
    other = resolve_gene_ids(unmapped, reference=context.reference, id_type="auto").filter(
        pl.col("status") != "unmapped")
    if other.is_empty():
        return
    readings = ", ".join(f"{n} {ns}" for ns, n in other.group_by("namespace").len().sort(
        "len", "namespace", descending=[True, False]).iter_rows())
    context.issues.warning(
        "gene_id_type_mismatch", f"assay {assay.name!r}: {other.height} of {resolved.height} identifiers are not "
        f"{assay.gene_id_type} ids but read as another type ({readings}; e.g. {other['feature_id'][0]!r}); they are "
        "kept unmapped: set gene_id_type to auto (or fix the column) to map them", file="study.yaml",
        column=f"assays.{assay.name}.gene_id_type")


def _map_samples(parsed: ParsedAssay, assay: Assay, context: AssayContext, file: str) -> pl.DataFrame:
    header_line = parsed.metadata.get("header_line")
    return map_sample_columns(parsed.columns, assay=assay.name, samples=context.samples, attributes=context.attributes,
                              sample_map=context.sample_map, issues=context.issues, file=file,
                              header_line=header_line if isinstance(header_line, int) else 1)


def _mapped_fraction(resolved: pl.DataFrame) -> float:
    if not resolved.height:
        return 0.0
    fraction = resolved.select((pl.col("status") == "mapped").mean()).item()
    return round(float(fraction or 0.0), 4)


def _identified(parsed_files: list[tuple[str, ParsedAssay]], assay: Assay, context: AssayContext, *,
                lengths: bool = False) -> tuple[pl.LazyFrame, pl.DataFrame, pl.DataFrame]:
    """Samples and genes on every file's records: (records, gene_id_map rows, sample mapping).

    ``lengths`` adds each feature's length (rna_counts).
    """
    ids = [p.features["feature_id"] if p.features is not None and "feature_id" in p.features.columns
           else p.records.select("feature_id").unique(maintain_order=True).collect()["feature_id"]
           for _, p in parsed_files]
    resolved = resolve_features(pl.concat(ids) if ids else pl.Series("feature_id", [], pl.String), assay, context)
    frames, mappings = [], []
    first_file: dict[str, str] = {}  # sample -> the per-sample file that gave it first
    for file, parsed in parsed_files:
        mapping = _map_samples(parsed, assay, context, file)
        if assay.format in PER_SAMPLE_FORMATS:
            mapping = _first_file_per_sample(mapping, first_file, file=file, issues=context.issues)
        mappings.append(mapping)
        records = parsed.records
        if lengths:
            per_feature = _lengths(parsed)
            records = (records.join(per_feature.lazy(), on="feature_id", how="left", maintain_order="left")
                       if per_feature.get_column("length").is_not_null().any()
                       else records.with_columns(pl.lit(None, pl.Float64).alias("length")))  # no per-row join
        matrix = parsed.matrix()
        features = parsed.features.get_column("feature_id") if matrix is not None and parsed.features is not None \
            else None
        frames.append(attach_identity(records, sample_map=mapping, gene_map=resolved, study_id=context.study_id,
                                      assay=assay.name, file=file, features=features))
    records = pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]
    return records, gene_map_rows(resolved, study_id=context.study_id, assay=assay.name), pl.concat(mappings)


def _first_file_per_sample(mapping: pl.DataFrame, first_file: dict[str, str], *, file: str,
                           issues: IssueLog) -> pl.DataFrame:
    """``mapping`` of one per-sample file with a sample an earlier file of the assay gave already left without
    a sample (its records left out), as a second column of one sample in a matrix is: a ``duplicate_sample``
    error naming both files. Two files labelled alike (``run1/S1.genes.results`` and ``run2/S1.genes.results``
    under one glob) were both loaded as that sample, and the build failed on the table contract's duplicate keys,
    naming no file, while ``omicsdw validate`` said nothing. ``first_file`` is updated with this file's samples.
    """
    repeated = mapping.filter(pl.col("sample_id").is_in(list(first_file)))
    for label, sample_id in repeated.select("column", "sample_id").iter_rows():
        issues.error("duplicate_sample", f"files {first_file[sample_id]!r} and {file!r} are both sample "
                     f"{sample_id!r}; only the first is kept (rename one, or narrow the assay's path glob)", file=file,
                     column=label)
    if not repeated.is_empty():
        taken = pl.col("sample_id").is_in(list(first_file))
        mapping = mapping.with_columns(
            *(pl.when(taken).then(None).otherwise(pl.col(c)).alias(c) for c in ("sample_id", "subject_id")),
            rule=pl.when(taken).then(pl.lit("duplicate")).otherwise(pl.col("rule")))
    first_file.update(dict.fromkeys(mapping["sample_id"].drop_nulls().to_list(), file))
    return mapping


# -- RNA -------------------------------------------------------------------------------------------------------
def _parse_rna(assay: Assay, path: Path, context: AssayContext) -> ParsedAssay:
    name = context.relative(path)
    quantity = "counts" if assay.kind == "rna_counts" else (assay.measure or "tpm")
    if assay.format == "matrix":  # options.orientation: samples_by_features for samples as rows (mixOmics)
        return parse_matrix(path, issues=context.issues, display_name=name,
                            transpose=assay.options.get("orientation") == "samples_by_features")
    if assay.format == "cbioportal":
        return parse_matrix(path, issues=context.issues, display_name=name, id_columns=CBIOPORTAL_IDS,
                            annotation_columns=CBIOPORTAL_ANNOTATIONS)
    if assay.format == "featurecounts":
        return parse_featurecounts(path, issues=context.issues, display_name=name)
    label = sample_label_from_path(path, assay.format)
    if assay.format == "salmon":
        tx2gene = transcript_gene_map(context.reference).select(
            "transcript_id", pl.col("gene_id").cast(pl.String).alias("gene"))
        # the manifest allows only counts / tpm for Salmon (FILE_MEASURES)
        return parse_salmon(path, issues=context.issues, display_name=name, sample=label,
                            quantity="counts" if quantity == "counts" else "tpm",
                            tx2gene=tx2gene if context.manifest.is_human else None)
    if assay.format == "rsem":
        # the manifest allows only counts / tpm / fpkm for RSEM (FILE_MEASURES)
        return parse_rsem(path, issues=context.issues, display_name=name, sample=label,
                          quantity="counts" if quantity == "counts" else "fpkm" if quantity == "fpkm" else "tpm")
    assert assay.strandedness is not None  # the manifest requires it for STAR
    return parse_star(path, issues=context.issues, display_name=name, sample=label,
                      strandedness=assay.strandedness)


def _lengths(parsed: ParsedAssay) -> pl.DataFrame:
    """Each feature's length for TPM: the effective length where the tool reports one, else the length.

    A format without lengths (a plain count matrix) gives null lengths: rna_counts always has the column.
    """
    features = parsed.features
    names = [c for c in ("effective_length", "length") if features is not None and c in features.columns]
    if features is None or not names:
        ids = features["feature_id"] if features is not None else pl.Series("feature_id", [], pl.String)
        return pl.DataFrame({"feature_id": ids, "length": pl.Series([None] * len(ids), dtype=pl.Float64)})
    return features.select("feature_id", pl.col(names[0]).cast(pl.Float64).alias("length"))


def _cells(parsed: list[tuple[str, ParsedAssay]]) -> int | None:
    """Value cells of matrix-shaped files (features x sample columns), if every parser reported both."""
    total = 0
    for _, p in parsed:
        rows, columns = p.metadata.get("rows"), p.metadata.get("value_columns")
        if not (isinstance(rows, int) and isinstance(columns, int)):
            return None
        total += rows * columns
    return total


INTEGER_COUNT_FORMATS = frozenset({"matrix", "featurecounts", "star"})
"""rna_counts layouts that hold whole read counts; Salmon NumReads and RSEM expected_count are estimates,
fractional by nature (differential expression rounds them), so only these are checked for fractions."""


def _warn_fractional_counts(records: pl.LazyFrame, *, file: str, issues: IssueLog) -> None:
    """One ``fractional_count`` warning per sample column holding counts that are not whole numbers.

    The values are kept (differential expression rounds them); the warning says where the first one is and how
    many there are, not one issue per cell.
    """
    value = pl.col("value")
    fractional = (records.filter(value.is_finite() & (value != value.floor()))
                  .group_by("column").agg(pl.len().alias("cells"), pl.col("line").min().alias("first"))
                  .sort("first", "column").collect())
    for column, cells, first in fractional.select("column", "cells", "first").iter_rows():
        issues.warning("fractional_count", f"{cells} count(s) in column {column!r} are not whole numbers "
                       f"(first on line {first}); kept as given, rounded by differential expression",
                       file=file, line=first, column=column)


def read_rna(assay: Assay, files: list[Path], context: AssayContext) -> AssayOutput:
    """RNA counts or abundances from any RNA format; one file per sample for Salmon / RSEM / STAR."""
    parsed = [(context.relative(f), _parse_rna(assay, f, context)) for f in files]
    # a typed matrix was proven plain whole numbers below any bound: no cell to warn about or flag
    typed = all((m := p.matrix()) is not None and m.typed for _, p in parsed)
    if assay.kind == "rna_counts" and assay.format in INTEGER_COUNT_FORMATS and not typed:
        for file, p in parsed:
            _warn_fractional_counts(p.records, file=file, issues=context.issues)
    records, gene_map, mapping = _identified(parsed, assay, context, lengths=assay.kind == "rna_counts")
    if assay.kind == "rna_counts":
        table = (records if typed else flag_values(records, kind="count")).rename({"value": "count"})
    else:
        measure = assay.measure or "value"
        table = flag_values(records, kind=measure, allow_missing=True).with_columns(pl.lit(measure).alias("measure"))
    metadata: dict[str, object] = {"files": len(files), "samples": int(mapping["sample_id"].drop_nulls().n_unique()),
                "features": gene_map.height, "mapped_fraction": _mapped_fraction(gene_map)}
    for _, p in parsed[:1]:
        metadata.update({k: v for k, v in p.metadata.items() if isinstance(v, (int, float, str))})
    cells = _cells(parsed)
    expected: dict[str, int] = {} if cells is None else {assay.kind: cells}
    return AssayOutput({assay.kind: table}, gene_map, mapping, metadata, expected)


# -- variants and mutation status ----------------------------------------------------------------------------
def read_variants(assay: Assay, files: list[Path], context: AssayContext) -> AssayOutput:
    """Variants from MAF / VCF, and gene mutation status derived from them (gene panels honoured)."""
    parsed = []
    for path in files:
        name = context.relative(path)
        if assay.format == "maf":
            parsed.append((name, parse_maf(path, issues=context.issues, display_name=name)))
        else:
            parsed.append((name, _parse_vcf(path, assay, context, name)))
    _warn_unannotated([(name, p) for name, p in parsed if assay.format != "maf"], context)
    records, gene_map, mapping = _identified(parsed, assay, context)
    variants = records.collect()
    panel_genes = None
    panel_file = assay.options.get("gene_panel_matrix")
    if panel_file:
        panel_genes = _gene_panels(panel_file, context)
    good = variants.filter(pl.col("problem").is_null())
    calls = mutation_status_from_variants(good, samples=mapping["column"].to_list(), panel_genes=panel_genes)
    status = attach_identity(calls.lazy(), sample_map=mapping, gene_map=gene_map.select(
        "feature_id", "gene_id", "status"), study_id=context.study_id, assay=assay.name,
        file=parsed[0][0])
    metadata = {"variants": good.height, "samples": int(good["column"].n_unique()),
                "mapped_fraction": _mapped_fraction(gene_map),
                "consequence_rule": str(parsed[0][1].metadata.get("consequence_rule", "")),
                "mutated_rule": NON_SILENT_RULE}
    return AssayOutput({"variants": variants.lazy(), "gene_mutation_status": status}, gene_map, mapping, metadata)


def _gene_panels(panel_file: str, context: AssayContext) -> dict[str, set[str]] | None:
    """Gene panels of a variants assay; every file goes through the study's confinement check first."""
    try:
        (matrix,) = resolve_study_path(context.folder, panel_file)
    except ValueError as exc:
        raise InputError(Issue("study.yaml" if context.manifest.source_layout == "study_yaml" else panel_file,
                               "path_outside_study", "error", f"options.gene_panel_matrix: {exc}; nothing read",
                               column="options.gene_panel_matrix")) from exc
    panels = []
    for path in sorted(context.folder.glob("data_gene_panel_*.txt")):
        if path.name == matrix.name:
            continue
        try:
            panels.append(confine(context.folder, path))
        except ValueError as exc:
            context.issues.error("path_outside_study", f"{exc}; gene panel file not read", file=path.name)
    return parse_gene_panels(matrix, panels, issues=context.issues, display_name=panel_file)


def _parse_vcf(path: Path, assay: Assay, context: AssayContext, name: str) -> ParsedAssay:
    """A VCF's own sample columns; a sites-only VCF is one sample, labelled by ``options.sample`` or the file name."""
    try:
        parsed = parse_vcf(path, issues=context.issues, display_name=name, sample=assay.options.get("sample"))
    except InputError as exc:
        if exc.issue.code != "sites_only":
            raise
        label = path.name.split(".")[0]
        context.issues.info("sites_only_vcf", f"no sample columns: the file is sample {label!r} "
                            "(set options.sample to name it)", file=name)
        parsed = parse_vcf(path, issues=context.issues, display_name=name, sample=label)
    return parsed


def _warn_unannotated(parsed: list[tuple[str, ParsedAssay]], context: AssayContext) -> None:
    """One ``unannotated_vcf`` warning per assay, at its first such file, counting the others: VCFs without
    annotation loaded silently before (rows with no gene to count), and a glob of per-sample files would repeat it.
    """
    bare = [name for name, p in parsed if p.metadata.get("annotation") is None]
    if not bare:
        return
    others = f" ({len(bare) - 1} more file(s) of this assay alike)" if len(bare) > 1 else ""
    context.issues.warning("unannotated_vcf", "the header declares no CSQ (VEP), ANN or EFF (SnpEff) annotation: "
                           "variants are stored without gene, consequence or impact, so they add nothing to "
                           f"gene_mutation_status; annotate the file with VEP or SnpEff{others}", file=bare[0])


def read_mutation_matrix(assay: Assay, files: list[Path], context: AssayContext) -> AssayOutput:
    """Binary gene x sample mutation matrices (1 mutated, 0 wild type, empty / NA not profiled)."""
    parsed = [(context.relative(f), mutation_status_from_matrix(
        parse_matrix(f, issues=context.issues, display_name=context.relative(f)))) for f in files]
    records, gene_map, mapping = _identified(parsed, assay, context)
    return AssayOutput({"gene_mutation_status": records}, gene_map, mapping,
                       {"mapped_fraction": _mapped_fraction(gene_map)})


# -- copy number -----------------------------------------------------------------------------------------------
def read_copy_number(assay: Assay, files: list[Path], context: AssayContext) -> AssayOutput:
    """Gene-level calls / log2 ratios, or segments (placed on genes when their build matches the reference)."""
    if assay.format == "seg":
        return _read_segments(assay, files, context)
    if assay.format == "gistic2_peaks":
        return _read_gistic_peaks(assay, files, context)
    parser = {"gistic": parse_gistic, "log2": parse_cn_log2, "gistic_long": parse_gistic_long}[assay.format]
    parsed = [(context.relative(f), parser(f, issues=context.issues, display_name=context.relative(f)))
              for f in files]
    records, gene_map, mapping = _identified(parsed, assay, context)
    return AssayOutput({"copy_number": records}, gene_map, mapping,
                       {"mapped_fraction": _mapped_fraction(gene_map),
                        "samples": int(mapping["sample_id"].drop_nulls().n_unique())})


def _read_segments(assay: Assay, files: list[Path], context: AssayContext) -> AssayOutput:
    build = assay.reference_genome or context.manifest.reference_genome
    parsed = [(context.relative(f), parse_seg(f, issues=context.issues, display_name=context.relative(f)))
              for f in files]
    frames, mappings = [], []
    for file, p in parsed:
        mapping = _map_samples(p, assay, context, file)
        mappings.append(mapping)
        frames.append(attach_identity(p.records.with_columns(pl.lit(None, pl.String).alias("feature_id")),
                                      sample_map=mapping, gene_map=None, study_id=context.study_id,
                                      assay=assay.name, file=file))
    segments = pl.concat(frames, how="diagonal_relaxed").collect()
    mapping = pl.concat(mappings)
    tables: dict[str, pl.LazyFrame] = {"cn_segments": segments.lazy()}
    empty_map = gene_map_rows(resolve_features(pl.Series([], dtype=pl.String), assay, context),
                              study_id=context.study_id, assay=assay.name)
    good = segments.filter(pl.col("problem").is_null())
    target = canonical_build(build)
    loci = context.reference.genes_on(target)  # GRCh38, or GRCh37 loci lifted from them
    genes = None if loci is None else segments_to_genes(good, loci, segment_build=build, reference_build=target)
    if genes is None:
        context.issues.warning("segment_build_mismatch", build_mismatch_message(build), file=parsed[0][0])
        return AssayOutput(tables, empty_map, mapping, {"segments": good.height, "gene_level": False,
                                                        "build": canonical_build(build)})
    gene_rows = genes.join(mapping.select("column", "sample_id"), on="column", how="inner").select(
        pl.lit(context.study_id).alias("study_id"), pl.lit(assay.name).alias("assay"), "sample_id", "gene_id",
        "feature_id", "log2_ratio", pl.lit(None, pl.Int8).alias("call"), pl.lit(None, pl.String).alias("problem"))
    mapped = genes.select("feature_id", "gene_id").unique("feature_id").with_columns(
        pl.lit("symbol").alias("namespace"), pl.lit("mapped").alias("status"), pl.lit("segment_overlap").alias("rule"))
    gene_map = gene_map_rows(mapped, study_id=context.study_id, assay=assay.name)
    tables["copy_number"] = gene_rows.lazy()
    return AssayOutput(tables, gene_map, mapping, {"segments": good.height, "gene_level": True,
                                                   "genes": gene_map.height, "build": target})


def _read_gistic_peaks(assay: Assay, files: list[Path], context: AssayContext) -> AssayOutput:
    """GISTIC 2.0 peaks of one confidence level: the files of ``path`` are told apart by GISTIC's names.

    One ``all_lesions.conf_XX.txt`` (peaks and per-sample calls) is required; ``amp_genes`` / ``del_genes`` of the
    same run add each peak's genes (at most one file per direction). A gene-level table matched by the glob is a
    warning naming the format to declare it with; any other file an info issue; neither is read.
    """
    lesions: list[tuple[str, Path]] = []
    genes: dict[str, list[tuple[str, Path]]] = {}
    for path in files:
        name = context.relative(path)
        if LESIONS_FILE.search(path.name):
            lesions.append((name, path))
        elif match := GENES_FILE.search(path.name):
            genes.setdefault(match.group(2), []).append((name, path))
        elif GENE_LEVEL_FILE.search(path.name):
            context.issues.warning("gistic_gene_table", "a GISTIC 2.0 gene-level table, not read by a gistic2_peaks "
                                   "assay: declare it as a copy_number assay of its own (format gistic for "
                                   "all_thresholded.by_genes, log2 for *_data_by_genes)", file=name)
        else:
            context.issues.info("not_gistic_peaks", "not an all_lesions, amp_genes or del_genes file of GISTIC 2.0; "
                                "not read", file=name)
    where = "study.yaml" if context.manifest.source_layout == "study_yaml" else assay.path
    if len(lesions) != 1 or any(len(found) > 1 for found in genes.values()):
        several = [n for n, _ in lesions] if len(lesions) > 1 else next(
            ([n for n, _ in found] for found in genes.values() if len(found) > 1), [])
        problem = (f"the path matches {len(several)} files of one kind ({', '.join(several)}): one GISTIC run "
                   "and confidence level per assay" if several else "no all_lesions.conf_XX.txt file matches the "
                   "path: the peaks and their calls are in it")
        raise InputError(Issue(where, "gistic_peak_files", "error", f"assay {assay.name!r}: {problem}",
                               column=f"assays.{assay.name}.path"))
    file, path = lesions[0]
    parsed = parse_gistic_lesions(path, issues=context.issues, display_name=file)
    mapping = _map_samples(parsed.calls, assay, context, file)
    calls = attach_identity(parsed.calls.records, sample_map=mapping, gene_map=None, study_id=context.study_id,
                            assay=assay.name, file=file)
    peaks = parsed.peaks
    members = []
    for direction, found in sorted(genes.items()):
        genes_file, genes_path = found[0]
        listed = parse_gistic_peak_genes(genes_path, issues=context.issues, display_name=genes_file)
        matched = match_peak_genes(listed, peaks)
        for column, cytoband, line, n in matched.unknown.iter_rows():
            context.issues.warning("unknown_peak", f"the peak of column {column} ({cytoband}) has wide peak "
                                   f"boundaries that no {direction} peak of {file} has: another run or confidence "
                                   f"level? Its {n} gene(s) are left out", file=genes_file, line=line,
                                   column=cytoband)
        if (repeated := matched.repeated).height:
            context.issues.info("repeated_peak_gene", f"{repeated.height} gene(s) listed again in the same peak "
                                f"(first: {repeated['feature_id'][0]!r}, line {repeated['line'][0]}); kept once",
                                file=genes_file, line=int(repeated["line"][0]))
        members.append(matched.kept.with_columns(pl.lit(genes_file).alias("file")))
    listed_directions = ["amplification" if d == "amp" else "deletion" for d in genes]
    member_rows = pl.concat(members) if members else None
    counts = (member_rows.group_by("peak_name").agg(pl.len().cast(pl.Int64).alias("n_genes"))
              if member_rows is not None else pl.DataFrame(schema={"peak_name": pl.String, "n_genes": pl.Int64}))
    peak_rows = peaks.join(counts, on="peak_name", how="left", maintain_order="left").with_columns(
        pl.when(pl.col("direction").is_in(listed_directions)).then(pl.col("n_genes").fill_null(0)).alias("n_genes"),
        pl.lit(context.study_id).alias("study_id"), pl.lit(assay.name).alias("assay"), pl.lit(file).alias("file"))
    resolved = resolve_features(member_rows["feature_id"] if member_rows is not None
                                else pl.Series("feature_id", [], pl.String), assay, context)
    tables: dict[str, pl.LazyFrame] = {"copy_number_peaks": peak_rows.lazy(), "copy_number_peak_calls": calls}
    if member_rows is not None:
        mapped = resolved.filter(pl.col("status") == "mapped").select("feature_id", "gene_id").unique("feature_id")
        tables["copy_number_peak_genes"] = member_rows.join(mapped, on="feature_id", how="left",
                                                            maintain_order="left").with_columns(
            pl.lit(context.study_id).alias("study_id"), pl.lit(assay.name).alias("assay")).lazy()
    metadata: dict[str, object] = {k: v for k, v in parsed.calls.metadata.items() if k != "header_line"}
    metadata.update({"samples": int(mapping["sample_id"].drop_nulls().n_unique()),
                     "genes": 0 if member_rows is None else member_rows.height,
                     "mapped_fraction": _mapped_fraction(resolved)})
    return AssayOutput(tables, gene_map_rows(resolved, study_id=context.study_id, assay=assay.name), mapping,
                       metadata)


# -- proteins --------------------------------------------------------------------------------------------------
def read_proteins(assay: Assay, files: list[Path], context: AssayContext) -> AssayOutput:
    """Protein groups or RPPA antibodies; groups map to genes many-to-many through gene names or accessions."""
    frames, gene_maps, mappings = [], [], []
    metadata: dict[str, object] = {}
    for path in files:
        file = context.relative(path)
        parsed = parse_protein_file(path, issues=context.issues, display_name=file, format=assay.format,
                                    platform=assay.platform, quantity=assay.quantity,
                                    transpose=assay.options.get("orientation") == "samples_by_features")
        features = parsed.features
        assert features is not None  # every protein parser returns its protein groups (protein_assay)
        groups = map_protein_groups(features, reference=context.reference,
                                    organism_is_human=context.manifest.is_human)
        mapping = _map_samples(parsed, assay, context, file)
        mappings.append(mapping)
        records = attach_identity(parsed.records, sample_map=mapping, gene_map=None, study_id=context.study_id,
                                  assay=assay.name, file=file)
        records = flag_values(records, value="abundance", kind="abundance", allow_missing=True)  # NaN, 1e300
        records = records.join(groups.lazy().select("feature_id", "gene_id", "is_ambiguous"), on="feature_id",
                               how="left", maintain_order="left")
        records = records.join(features.lazy().select(
            "feature_id", "protein_group", "antibody", "is_phospho"), on="feature_id", how="left",
            maintain_order="left")
        if assay.platform == "ms" and assay.measure != "log2":
            n_negative = parsed.records.lazy().select((pl.col("abundance") < 0).sum()).collect().item()
            if n_negative:
                context.issues.warning(
                    "negative_abundance", f"{n_negative} negative abundance(s) left without log2 value: "
                    "intensities are never negative; if the file holds log2 values (log ratios), set "
                    "`measure: log2` on the assay", file=file)
        missing = missing_per_sample(parsed.records)
        if missing.height:
            context.issues.info("missing_values", "missing abundances per sample: " + ", ".join(
                f"{c} {m}/{t}" for c, m, t in missing.iter_rows()), file=file)
            n_missing, n_total = missing.select(pl.col("n_missing", "n_total").sum()).row(0)
            metadata["missing_fraction"] = round(n_missing / n_total, 4)
        frames.append(normalise_protein_abundance(records, platform=assay.platform,
                                                  log2_given=assay.measure == "log2").lazy().with_columns(
            pl.lit(assay.platform).alias("platform")))
        gene_maps.append(gene_map_rows(groups, study_id=context.study_id, assay=assay.name))
        metadata.update({k: v for k, v in parsed.metadata.items() if isinstance(v, (int, float, str))})
    gene_map = pl.concat(gene_maps).unique(maintain_order=True)
    metadata["mapped_fraction"] = _mapped_fraction(gene_map)
    return AssayOutput({"protein_abundance": pl.concat(frames, how="diagonal_relaxed")}, gene_map,
                       pl.concat(mappings), metadata)
