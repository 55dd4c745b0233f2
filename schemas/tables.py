"""Column contracts of every warehouse table: one pandera ``DataFrameModel`` per table.

Each model is the single source for a table's column order, types, checks and documentation: the Delta writer
takes its Arrow schema from here, the blocking asset checks validate against it, and the ``Field`` descriptions
become the DuckDB column comments analysts read. ``Config.unique`` is the table's key; ``TABLE_DOCS`` says the
grain of each table.
"""

from __future__ import annotations

from typing import Annotated, Any

import pandera.polars as pa
import polars as pl

STATUS = ["mapped", "ambiguous", "unmapped", "duplicate"]
SEVERITY = ["error", "warning", "info"]


class _Table(pa.DataFrameModel):
    class Config:
        strict = True
        coerce = False


def _study() -> Any:
    return pa.Field(description="Study identifier (folder / cancer_study_identifier); the Delta partition.")


def _sample() -> Any:
    return pa.Field(description="Sample identifier within the study (after sample_map and barcode rules).")


def _gene(nullable: bool = True) -> Any:
    return pa.Field(nullable=nullable,
                    description="NCBI Gene ID in the `genes` dimension; NULL when the feature could not be "
                                "mapped (see gene_id_map for why).")


def _feature() -> Any:
    return pa.Field(description="Feature identifier exactly as given in the source file.")


def _assay() -> Any:
    return pa.Field(description="Assay name from study.yaml (or the cBioPortal meta file stem) the row came from.")


class Studies(_Table):
    study_id: str = pa.Field(unique=True, description="Study identifier.")
    name: str = pa.Field(description="Human-readable study name.")
    description: str = pa.Field(nullable=True, description="Free-text description from the manifest.")
    organism: str = pa.Field(description="Organism of the samples; only human features are mapped to genes.")
    reference_genome: str = pa.Field(description="Genome build of coordinates in the study (e.g. GRCh38, hg19).")
    source_layout: str = pa.Field(isin=["study_yaml", "cbioportal"], description="Input layout recognised.")
    content_hash: str = pa.Field(description="Hash of every file in the study folder when it was loaded.")
    gene_reference: str = pa.Field(description="Release of the gene reference used for mapping.")
    n_samples: int = pa.Field(ge=0, description="Number of samples in the study.")
    manifest: str = pa.Field(description="The study manifest as loaded (JSON of schemas.manifest.StudyManifest): "
                                         "what the derived stages read, so they follow the data, not the folder.")
    loaded_at: Annotated[pl.Datetime, "us", "UTC"] = pa.Field(description="When this version of the study was loaded.")
    gene_reference_fingerprint: str = pa.Field(
        nullable=True, description="Gene reference the study was mapped with: its release and a hash of its files "
                                   "(the nightly schedule re-ingests the study when the shipped one differs; NULL: "
                                   "loaded before this was recorded).")
    code_fingerprint: str = pa.Field(
        nullable=True, description="Hash of the source of transforms/ and schemas/ that loaded the study (the "
                                   "nightly schedule re-ingests the study when the code differs; NULL: loaded "
                                   "before this was recorded).")


class Subjects(_Table):
    study_id: str = _study()
    subject_id: str = pa.Field(description="Subject (patient / donor) identifier within the study.")

    class Config:
        unique = ["study_id", "subject_id"]


class SubjectAttributes(_Table):
    study_id: str = _study()
    subject_id: str = pa.Field(description="Subject identifier.")
    attribute: str = pa.Field(description="Attribute name as given in the subject table header.")
    value: str = pa.Field(nullable=True, description="Attribute value as text (cast in SQL by value_type).")
    value_type: str = pa.Field(isin=["string", "number", "boolean"], description="Declared or inferred type.")

    class Config:
        unique = ["study_id", "subject_id", "attribute"]


class Samples(_Table):
    study_id: str = _study()
    sample_id: str = _sample()
    subject_id: str = pa.Field(description="Subject the sample was taken from (the sample itself if unknown).")

    class Config:
        unique = ["study_id", "sample_id"]


class SampleAttributes(_Table):
    study_id: str = _study()
    sample_id: str = _sample()
    attribute: str = pa.Field(description="Attribute name as given in the sample table header.")
    value: str = pa.Field(nullable=True, description="Attribute value as text (cast in SQL by value_type).")
    value_type: str = pa.Field(isin=["string", "number", "boolean"], description="Declared or inferred type.")

    class Config:
        unique = ["study_id", "sample_id", "attribute"]


class Genes(_Table):
    gene_id: int = pa.Field(unique=True, description="NCBI Gene (Entrez) ID: the key of the gene dimension.")
    symbol: str = pa.Field(description="Official HGNC symbol (via NCBI).")
    name: str = pa.Field(nullable=True, description="Full gene name.")
    biotype: str = pa.Field(nullable=True, description="NCBI gene type (protein-coding, ncRNA, pseudo, ...).")
    chromosome: str = pa.Field(nullable=True, description="GRCh38 chromosome (primary assembly).")
    start: int = pa.Field(nullable=True, description="GRCh38 start, 1-based inclusive.")
    end: int = pa.Field(nullable=True, description="GRCh38 end, 1-based inclusive.")
    strand: str = pa.Field(nullable=True, isin=["+", "-"], description="Strand.")


class GeneXrefs(_Table):
    gene_id: int = pa.Field(description="NCBI Gene ID.")
    namespace: str = pa.Field(description="ensembl_gene, ensembl_transcript, uniprot or alias.")
    xref: str = pa.Field(description="Identifier in that namespace (aliases include previous symbols).")

    class Config:
        unique = ["gene_id", "namespace", "xref"]


class GeneIdMap(_Table):
    study_id: str = _study()
    assay: str = _assay()
    namespace: str = pa.Field(description="Namespace the identifier was read in (symbol, entrez, ensembl_gene, "
                                           "uniprot, ...).")
    feature_id: str = pa.Field(nullable=True, description="Identifier as given.")
    gene_id: int = pa.Field(nullable=True, description="Gene it resolved to (kept for duplicates; NULL when "
                                                       "ambiguous or unmapped).")
    status: str = pa.Field(isin=STATUS, description="mapped / ambiguous / unmapped / duplicate (another feature "
                                                    "of the assay already holds the gene).")
    rule: str = pa.Field(description="Rule that decided the status (official_symbol, alias, ensembl_version, ...).")

    class Config:
        unique = ['study_id', 'assay', 'feature_id', 'gene_id']


class IngestIssues(_Table):
    study_id: str = _study()
    file: str = pa.Field(description="File (relative to the study folder) the issue is about.")
    line: int = pa.Field(nullable=True, description="1-based line in the file, when known.")
    column: str = pa.Field(nullable=True, description="Column (header name) involved, when known.")
    code: str = pa.Field(description="Stable issue code, e.g. ragged_row, unknown_sample, negative_count.")
    severity: str = pa.Field(isin=SEVERITY, description="error fails the study; warning and info do not.")
    message: str = pa.Field(description="What is wrong and how to fix it.")
    record: str = pa.Field(nullable=True, description="The offending raw record or value (the quarantine).")


class RnaCounts(_Table):
    study_id: str = _study()
    assay: str = _assay()
    sample_id: str = _sample()
    gene_id: int = _gene()
    feature_id: str = _feature()
    count: float = pa.Field(ge=0, description="Read / fragment count (estimated counts may be fractional).")
    length: float = pa.Field(nullable=True, gt=0, description="Feature length for TPM: featureCounts Length, or "
                                                              "this sample's Salmon / RSEM effective length.")

    class Config:
        unique = ['study_id', 'assay', 'sample_id', 'feature_id']


class RnaAbundance(_Table):
    study_id: str = _study()
    assay: str = _assay()
    sample_id: str = _sample()
    gene_id: int = _gene()
    feature_id: str = _feature()
    measure: str = pa.Field(description="What value holds: tpm, fpkm, rsem_normalized, zscore, ...")
    value: float = pa.Field(nullable=True, description="Abundance as provided (NULL = missing in the file).")

    class Config:
        unique = ['study_id', 'assay', 'sample_id', 'feature_id', 'measure']


class Variants(_Table):
    study_id: str = _study()
    assay: str = _assay()
    sample_id: str = _sample()
    gene_id: int = _gene()
    feature_id: str = pa.Field(nullable=True, description="Gene identifier as given (Hugo symbol / VEP SYMBOL).")
    chromosome: str = pa.Field(description="Chromosome as in the file.")
    position: int = pa.Field(ge=1, description="1-based start position.")
    ref: str = pa.Field(nullable=True, description="Reference allele.")
    alt: str = pa.Field(nullable=True, description="Alternate allele (one row per alt allele).")
    variant_class: str = pa.Field(nullable=True, description="SNV, insertion, deletion, MNV or complex.")
    consequence: str = pa.Field(nullable=True, description="Sequence Ontology consequence of the chosen "
                                                           "transcript (canonical, else most severe).")
    protein_change: str = pa.Field(nullable=True, description="HGVSp short form, e.g. p.R132H.")
    vaf: float = pa.Field(nullable=True, ge=0, le=1, description="Variant allele fraction.")
    depth: int = pa.Field(nullable=True, ge=0, description="Read depth at the site.")
    filter: str = pa.Field(nullable=True, description="FILTER value.")
    source_format: str = pa.Field(isin=["maf", "vcf"], description="File format the variant came from.")
    transcript_id: str = pa.Field(nullable=True, description="Transcript of the chosen consequence.")
    impact: str = pa.Field(nullable=True, description="VEP/SnpEff impact of the chosen consequence.")


class GeneMutationStatus(_Table):
    study_id: str = _study()
    assay: str = _assay()
    sample_id: str = _sample()
    gene_id: int = _gene()
    feature_id: str = _feature()
    mutated: bool = pa.Field(nullable=True, description="True: a non-silent variant; False: profiled, none; "
                                                        "NULL: gene not profiled in this sample (panel).")
    n_variants: int = pa.Field(nullable=True, ge=0, description="Number of non-silent variants.")
    top_consequence: str = pa.Field(nullable=True, description="Most severe consequence among them.")

    class Config:
        unique = ['study_id', 'assay', 'sample_id', 'feature_id']


class CopyNumber(_Table):
    study_id: str = _study()
    assay: str = _assay()
    sample_id: str = _sample()
    gene_id: int = _gene()
    feature_id: str = _feature()
    log2_ratio: float = pa.Field(nullable=True, description="Continuous gene-level log2 copy ratio.")
    call: pl.Int8 = pa.Field(nullable=True, ge=-2, le=2, description="Discrete GISTIC call: -2 deep deletion, "
                                                                      "-1 loss, 0 diploid, 1 gain, 2 amplification.")

    class Config:
        unique = ['study_id', 'assay', 'sample_id', 'feature_id']


class CnSegments(_Table):
    study_id: str = _study()
    assay: str = _assay()
    sample_id: str = _sample()
    chromosome: str = pa.Field(description="Chromosome without 'chr' prefix.")
    start: int = pa.Field(ge=0, description="Segment start (1-based).")
    end: int = pa.Field(ge=0, description="Segment end (inclusive).")
    num_probes: int = pa.Field(nullable=True, ge=0, description="Probes / markers in the segment.")
    segment_mean: float = pa.Field(nullable=True, description="Segment mean log2 ratio.")


class CopyNumberPeaks(_Table):
    study_id: str = _study()
    assay: str = _assay()
    peak_name: str = pa.Field(description="GISTIC peak ('Amplification Peak 3', 'Deletion Peak 12'), without the "
                                          "file's padding; the key of copy_number_peak_calls and _genes.")
    direction: str = pa.Field(isin=["amplification", "deletion"], description="amplification or deletion.")
    peak_number: int = pa.Field(ge=1, description="GISTIC's number of the peak within its direction.")
    cytoband: str = pa.Field(nullable=True, description="Cytoband of the peak (all_lesions Descriptor).")
    chromosome: str = pa.Field(description="Chromosome without 'chr' prefix.")
    wide_peak_start: int = pa.Field(ge=0, description="Wide peak start (leave-one-out boundaries: where the "
                                                      "target gene most likely is).")
    wide_peak_end: int = pa.Field(ge=0, description="Wide peak end (inclusive).")
    peak_start: int = pa.Field(ge=0, description="Peak start (the region's greatest amplitude and frequency).")
    peak_end: int = pa.Field(ge=0, description="Peak end (inclusive).")
    region_start: int = pa.Field(ge=0, description="Start of the significant region holding the peak.")
    region_end: int = pa.Field(ge=0, description="End of the significant region (inclusive).")
    q_value: float = pa.Field(ge=0, le=1, description="GISTIC q-value of the peak.")
    residual_q_value: float = pa.Field(nullable=True, ge=0, le=1,
                                       description="q-value after removing segments shared with higher peaks.")
    broad_or_focal: str = pa.Field(nullable=True, description="GISTIC's Broad or Focal column, as given.")
    n_genes: int = pa.Field(nullable=True, ge=0, description="Genes listed for the wide peak in amp_genes / "
                                                             "del_genes (NULL: the assay has no such file).")

    class Config:
        unique = ['study_id', 'assay', 'peak_name']


class CopyNumberPeakCalls(_Table):
    study_id: str = _study()
    assay: str = _assay()
    sample_id: str = _sample()
    peak_name: str = pa.Field(description="Peak (copy_number_peaks.peak_name).")
    call: pl.Int8 = pa.Field(ge=0, le=2, description="GISTIC's thresholded call: 0 below the low-level threshold, 1 "
                                                     "above it, 2 above the sample's high-level threshold.")
    copy_change: float = pa.Field(nullable=True, description="The peak's actual copy change in the sample (the "
                                                             "'- CN values' row: log2 ratio, negative for "
                                                             "deletions).")

    class Config:
        unique = ['study_id', 'assay', 'sample_id', 'peak_name']


class CopyNumberPeakGenes(_Table):
    study_id: str = _study()
    assay: str = _assay()
    peak_name: str = pa.Field(description="Peak (copy_number_peaks.peak_name).")
    gene_id: int = _gene()
    feature_id: str = pa.Field(description="Gene as listed in amp_genes / del_genes (brackets removed).")
    in_wide_peak: bool = pa.Field(description="False for GISTIC's bracketed nearest gene of a peak with none.")

    class Config:
        unique = ['study_id', 'assay', 'peak_name', 'feature_id']


class ProteinAbundance(_Table):
    study_id: str = _study()
    assay: str = _assay()
    sample_id: str = _sample()
    gene_id: int = _gene()
    feature_id: str = pa.Field(description="Protein group / row identifier as given.")
    protein_group: str = pa.Field(nullable=True, description="Original protein group (accessions as given).")
    platform: str = pa.Field(isin=["ms", "rppa"], description="ms (mass spectrometry) or rppa.")
    antibody: str = pa.Field(nullable=True, description="RPPA antibody.")
    is_phospho: bool = pa.Field(nullable=True, description="Phospho-specific antibody / site.")
    is_ambiguous: bool = pa.Field(nullable=True, description="The group maps to more than one gene.")
    abundance: float = pa.Field(nullable=True, description="Quantity as given (NULL = missing; MaxQuant 0).")
    log2_abundance: float = pa.Field(nullable=True, description=(
        "log2 of abundance (RPPA and `measure: log2` assays, e.g. cBioPortal protein profiles: as given)."))
    normalized: float = pa.Field(nullable=True, description="MS: log2 median-centred per sample; RPPA: as given.")

    class Config:
        unique = ['study_id', 'assay', 'sample_id', 'feature_id', 'gene_id']


class ScPseudobulk(_Table):
    study_id: str = _study()
    assay: str = _assay()
    sample_id: str = pa.Field(description="Sample the cells came from (the parent sample, after the sample-identity "
                                          "rules); its profile is sample `<sample_id>__<cell_type>` of rna_counts.")
    cell_type: str = pa.Field(description="Cell type as given by the cell_type_column of the cells.")
    gene_id: int = _gene()
    feature_id: str = pa.Field(description="Feature identifier as the file gives it (h5ad var name, 10x feature "
                                           "id).")
    count: float = pa.Field(ge=0, description="Sum of the raw counts of the sample's cells of this type.")
    n_cells: int = pa.Field(ge=1, description="Cells summed into the profile.")

    class Config:
        unique = ["study_id", "assay", "sample_id", "cell_type", "feature_id"]


class CellTypeComposition(_Table):
    study_id: str = _study()
    assay: str = _assay()
    sample_id: str = pa.Field(description="Sample the cells came from.")
    cell_type: str = pa.Field(description="Cell type as given by the cell_type_column of the cells.")
    n_cells: int = pa.Field(ge=1, description="Cells of the sample with this cell type.")
    fraction: float = pa.Field(gt=0, le=1, description="n_cells over the sample's cells with a cell type in the "
                                                       "assay (cells without one are left out and reported).")

    class Config:
        unique = ["study_id", "assay", "sample_id", "cell_type"]


def _nullable_float(description: str) -> Any:
    return pa.Field(nullable=True, description=description)


class RnaSampleFactors(_Table):
    study_id: str = _study()
    assay: str = _assay()
    sample_id: str = _sample()
    library_size: float = pa.Field(ge=0, description="Sum of the sample's counts over every feature of the assay "
                                                     "(mapped or not; features with a missing value left out).")
    tmm_factor: float = pa.Field(nullable=True, gt=0, description="edgeR calcNormFactors(method=\"TMM\") factor "
                                                                  "(NULL for a sample without counts).")
    size_factor: float = pa.Field(nullable=True, gt=0, description="DESeq2 estimateSizeFactors median-of-ratios "
                                                                   "factor on the rounded counts (NULL without "
                                                                   "counts).")

    class Config:
        unique = ["study_id", "assay", "sample_id"]


class RnaNormalized(_Table):
    study_id: str = _study()
    assay: str = _assay()
    sample_id: str = _sample()
    gene_id: int = _gene()
    feature_id: str = _feature()
    source: str = pa.Field(isin=["counts", "abundance"], description="counts: from rna_counts; abundance: from "
                                                                     "rna_abundance (count-only columns NULL).")
    cpm: float = _nullable_float("Counts per million: count / library_size x 1e6.")
    log2_cpm: float = _nullable_float("edgeR cpm(y, log=TRUE, prior.count=2) with TMM factors.")
    tmm_cpm: float = _nullable_float("Counts per million of the TMM-effective library (library_size x tmm_factor).")
    mor: float = _nullable_float("DESeq2 normalised count: count / size_factor (median of ratios).")
    tpm: float = _nullable_float("Transcripts per million: count / rna_counts.length (featureCounts Length, "
                                 "Salmon / RSEM effective length), scaled so that the sample's features with a "
                                 "length sum to 1e6; NULL where the length is unknown or not positive; the value "
                                 "itself for abundance assays measured as TPM.")
    log2_value: float = _nullable_float("The log2 scale z-scores are taken on: log2_cpm for counts, "
                                        "log2(value + 1) for abundances (NULL for missing or negative values), "
                                        "the value as given for array intensities (already log2).")
    zscore: float = _nullable_float("(log2_value - mean) / SD (ddof=1) per gene over the reference samples of the "
                                    "assay (all samples unless study.yaml sets zscore_reference); NULL when the "
                                    "SD is zero or undefined.")

    class Config:
        unique = ["study_id", "assay", "sample_id", "feature_id"]


class RnaVst(_Table):
    study_id: str = _study()
    assay: str = _assay()
    sample_id: str = _sample()
    gene_id: int = _gene()
    feature_id: str = _feature()
    vst: float = pa.Field(description="DESeq2 vst(dds, blind=TRUE) of the rounded counts (log2 scale).")

    class Config:
        unique = ["study_id", "assay", "sample_id", "feature_id"]


class DifferentialExpression(_Table):
    study_id: str = _study()
    contrast: str = pa.Field(description="Contrast name from study.yaml (test vs reference of a sample attribute).")
    assay: str = _assay()
    gene_id: int = _gene()
    feature_id: str = _feature()
    base_mean: float = pa.Field(nullable=True, ge=0, description="Mean of the size-factor normalised counts.")
    log2_fold_change: float = _nullable_float("log2(test / reference), unshrunk (DESeq2 1.38 Wald test, numpy port).")
    lfc_se: float = _nullable_float("Standard error of log2_fold_change.")
    stat: float = _nullable_float("Wald statistic.")
    pvalue: float = _nullable_float("Wald test p-value (NULL for all-zero genes and Cook's outliers).")
    padj: float = _nullable_float("Benjamini-Hochberg adjusted p-value after independent filtering (alpha 0.1); "
                                  "NULL for filtered genes, as DESeq2 results().")

    class Config:
        unique = ["study_id", "contrast", "assay", "feature_id"]


SIGNATURE_METHODS = ["ssgsea", "singscore", "weighted"]
ENRICHMENT_METHODS = ["prerank", "ora_up", "ora_down"]


def _library() -> Any:
    return pa.Field(description="Gene-set library: its file name without the extension (msigdb_hallmark, "
                                "reactome_pathways, go_biological_process, or a user GMT / signature YAML).")


def _gene_set() -> Any:
    return pa.Field(description="Gene set (GMT line name or YAML signature name) within the library.")


def _scope() -> Any:
    return pa.Field(isin=["shipped", "warehouse", "study"],
                    description="Where the library comes from: shipped with omicsdw, the warehouse-wide folder "
                                "($OMICSDW_GENE_SETS), or a study's study.yaml gene_sets.")


def _scope_study() -> Any:
    return pa.Field(nullable=True, description="Study that declared the library (scope 'study'); NULL for "
                                               "libraries every study uses.")


class GeneSets(_Table):
    scope: str = _scope()
    study_id: str = _scope_study()
    library: str = _library()
    library_version: str = pa.Field(nullable=True, description="Release of the library (shipped ones); NULL for "
                                                               "user files.")
    gene_set: str = _gene_set()
    kind: str = pa.Field(isin=["set", "up_down", "weighted"],
                         description="set: plain member list (GMT); up_down: signature with up / down parts; "
                                     "weighted: signature with gene weights.")
    description: str = pa.Field(nullable=True, description="GMT description column or YAML description.")
    source_url: str = pa.Field(nullable=True, description="Where the library was obtained (shipped ones).")
    license: str = pa.Field(nullable=True, description="Licence of the library (shipped ones; CC BY 4.0).")
    n_genes: int = pa.Field(ge=0, description="Distinct member identifiers as given.")
    n_mapped: int = pa.Field(ge=0, description="Of those, identifiers the gene resolver mapped to a gene_id.")

    class Config:
        unique = ["scope", "study_id", "library", "gene_set"]


class GeneSetMembers(_Table):
    scope: str = _scope()
    study_id: str = _scope_study()
    library: str = _library()
    gene_set: str = _gene_set()
    identifier: str = pa.Field(description="Member gene identifier exactly as given in the library file.")
    gene_id: int = pa.Field(nullable=True, description="NCBI Gene ID from the one gene resolver "
                                                       "(transforms.genes.resolve_gene_ids); NULL when unmapped "
                                                       "(kept and counted in gene_sets.n_mapped, never dropped).")
    weight: float = _nullable_float("Weight given in a weighted signature (YAML weights); NULL otherwise.")
    sign: pl.Int8 = pa.Field(nullable=True, isin=[-1, 1],  # type: ignore[valid-type]
                             description="+1 for up, -1 for down members of an up / down signature; NULL otherwise.")

    class Config:
        unique = ["scope", "study_id", "library", "gene_set", "identifier"]


class SignatureScores(_Table):
    study_id: str = _study()
    sample_id: str = _sample()
    assay: str = _assay()
    library: str = _library()
    gene_set: str = _gene_set()
    method: str = pa.Field(isin=SIGNATURE_METHODS, description=(
        "ssgsea: un-normalised ssGSEA ES (Barbie 2009; GSVA ssgsea.norm=FALSE, gseapy ES; alpha 0.25) of "
        "rna_normalized.log2_value; singscore: centred singscore (Foroutan 2018) of log2_value ranks; weighted: "
        "sum of weight x rna_normalized.zscore over measured members. Up / down signatures: ES(up) - ES(down) "
        "and singscore's up + down form."))
    score: float = pa.Field(nullable=True, description="The sample's score on the assay's log-scale normalised "
                                                       "expression (rna_normalized.log2_value; zscore for "
                                                       "weighted).")

    class Config:
        unique = ["study_id", "sample_id", "assay", "library", "gene_set", "method"]


class GeneSetEnrichment(_Table):
    study_id: str = _study()
    contrast: str = pa.Field(description="Contrast name from study.yaml (differential_expression.contrast).")
    library: str = _library()
    gene_set: str = _gene_set()
    method: str = pa.Field(isin=ENRICHMENT_METHODS, description=(
        "prerank: gseapy 1.3.1 prerank on differential_expression.stat (fixed seed); ora_up / ora_down: "
        "hypergeometric over-representation of genes with padj < 0.05 and positive / negative log2 fold change "
        "among the genes tested (non-null pvalue)."))
    size: int = pa.Field(ge=0, description="Members in the ranked list (prerank) or in the tested universe (ORA).")
    es: float = _nullable_float("prerank: enrichment score; ORA: fold enrichment (observed / expected overlap).")
    nes: float = _nullable_float("prerank: normalised enrichment score; NULL for ORA.")
    pvalue: float = _nullable_float("prerank: permutation p-value, 0 when no permutation did as well: read it as "
                                    "p < 1 / permutations (1,000 unless OMICSDW_PRERANK_PERMUTATIONS is set); ORA: "
                                    "hypergeometric P(X >= overlap).")
    fdr: float = _nullable_float("prerank: gseapy FDR q-value (0 likewise means below 1 / permutations); ORA: "
                                 "Benjamini-Hochberg over the library's sets.")
    leading_edge: str = pa.Field(nullable=True, description="Semicolon-separated gene_ids: the prerank leading edge, "
                                                            "or the ORA overlap.")

    class Config:
        unique = ["study_id", "contrast", "library", "gene_set", "method"]


class SignatureMatches(_Table):
    query_kind: str = pa.Field(isin=["contrast", "signature"], description=(
        "contrast: a stored contrast's own signature (top up / down genes by Wald statistic); signature: a user "
        "signature with up / down parts."))
    query_study_id: str = pa.Field(nullable=True, description="Study of the query contrast, or the study that "
                                                              "declared the signature (NULL for shared libraries).")
    query_name: str = pa.Field(description="Contrast name, or library/gene_set of the signature.")
    target_study_id: str = pa.Field(description="Study of the target contrast.")
    target_contrast: str = pa.Field(description="Target contrast whose ranked Wald statistics are scored.")
    score: float = pa.Field(nullable=True, ge=-1, le=1, description=(
        "Connectivity (Lamb 2006 / Subramanian 2017): (ES_up - ES_down) / 2 of weighted KS enrichment scores of "
        "the query's up and down genes in the target's ranked statistic; 0 when they have the same sign. +1: same "
        "direction, -1: reversed."))
    n_up: int = pa.Field(ge=0, description="Query up genes found in the target's ranked list.")
    n_down: int = pa.Field(ge=0, description="Query down genes found in the target's ranked list.")
    method: str = pa.Field(isin=["cmap_wks"], description="cmap_wks: weighted (p = 1) KS connectivity score.")
    query_version: str = pa.Field(description="Fingerprint of the query's gene lists: a row is recomputed only "
                                              "when this or target_version changes.")
    target_version: str = pa.Field(description="Fingerprint of the DE commit the target's statistic came from.")

    class Config:
        unique = ["query_kind", "query_study_id", "query_name", "target_study_id", "target_contrast", "method"]


class StudyVersions(_Table):
    study_id: str = _study()
    table_name: str = pa.Field(description="Warehouse table.")
    delta_version: int = pa.Field(ge=0, description="Delta version of the table when the study was published.")
    fingerprint: str = pa.Field(nullable=True, description="Input fingerprint of the commit that wrote the study's "
                                                           "rows of the table.")
    rows: int = pa.Field(ge=0, description="Rows of the study in the table.")
    files: pl.List(pl.String) = pa.Field(  # type: ignore[valid-type]
        description="Parquet files (relative to the table's folder) holding them.")
    published_at: Annotated[pl.Datetime, "us", "UTC"] = pa.Field(description="When the set was published.")

    class Config:
        unique = ["study_id", "table_name"]


LAYERS = ["rna", "protein", "copy_number"]
"""Layers of the cross-omics tables: rna (rna_normalized.log2_value), protein (protein_abundance.log2_abundance),
copy_number (copy_number.log2_ratio, else the GISTIC call)."""


class GeneSampleOmics(_Table):
    study_id: str = _study()
    sample_id: str = _sample()
    gene_id: int = pa.Field(description="NCBI Gene ID (only mapped features are joined across layers).")
    symbol: str = pa.Field(nullable=True, description="Official symbol from the `genes` dimension.")
    rna_log2: float = _nullable_float("rna_normalized.log2_value of the gene's RNA source (rna_assay).")
    rna_zscore: float = _nullable_float("rna_normalized.zscore of the same row (per gene over the study).")
    rna_assay: str = pa.Field(nullable=True, description="The RNA assay that won for this gene: count assays "
                                                         "before abundance assays, then the assay with most "
                                                         "samples for the gene, then by name.")
    protein_log2: float = _nullable_float("protein_abundance.log2_abundance (RPPA: as given) of the gene's protein "
                                          "source: total (non-phospho) before phospho, ms before rppa, groups of one "
                                          "gene before shared groups, then most samples, then by name.")
    protein_zscore: float = _nullable_float("(protein_log2 - mean) / SD (ddof=1) per gene over the study's samples "
                                            "with a value; NULL when the SD is zero or undefined.")
    protein_assay: str = pa.Field(nullable=True, description="Assay and feature of the protein source "
                                                             "(`assay:feature_id`).")
    protein_ambiguous: bool = pa.Field(nullable=True, description="The protein value comes from a group or "
                                                                  "antibody mapped to several genes (each gene gets "
                                                                  "the group's value, flagged here).")
    cn_call: pl.Int8 = pa.Field(nullable=True, ge=-2, le=2, description="copy_number.call (GISTIC -2..2); first "
                                                                        "assay by name with a call.")
    cn_log2: float = _nullable_float("copy_number.log2_ratio; first assay by name with a ratio.")
    mutated: bool = pa.Field(nullable=True, description="gene_mutation_status.mutated (non-silent): True if any "
                                                        "assay says mutated, False if profiled and none, NULL "
                                                        "when not profiled (panel) or no mutation data.")
    mutation_classes: str = pa.Field(nullable=True, description="Distinct consequences of the non-silent "
                                                                "variants ('; '-separated, sorted), else the "
                                                                "status table's top_consequence.")

    class Config:
        unique = ["study_id", "sample_id", "gene_id"]


class OmicsCorrelations(_Table):
    study_id: str = _study()
    gene_id: int = pa.Field(description="NCBI Gene ID.")
    layer_x: str = pa.Field(isin=LAYERS, description="First layer: rna (for rna vs protein) or copy_number.")
    layer_y: str = pa.Field(isin=LAYERS, description="Second layer: protein or rna.")
    method: str = pa.Field(isin=["spearman", "pearson"], description="Correlation coefficient.")
    r: float = _nullable_float("Correlation over the samples with both values (NULL if either is constant).")
    pvalue: float = _nullable_float("Two-sided p-value of r = 0 (t distribution with n - 2 df, as "
                                    "scipy.stats.pearsonr / spearmanr).")
    fdr: float = _nullable_float("Benjamini-Hochberg adjusted p-value within the study, layer pair and method.")
    n: int = pa.Field(ge=0, description="Samples with both values (at least MIN_SAMPLES = 5 for a row).")
    protein_ambiguous: bool = pa.Field(nullable=True, description="The protein values come from a group mapped to "
                                                                  "several genes (NULL without protein).")

    class Config:
        unique = ["study_id", "gene_id", "layer_x", "layer_y", "method"]


class MutationEffects(_Table):
    study_id: str = _study()
    gene_id: int = pa.Field(description="NCBI Gene ID of the mutated gene (its own RNA / protein is tested).")
    layer: str = pa.Field(isin=["rna", "protein"], description="rna: rna_log2; protein: protein_log2.")
    n_mutated: int = pa.Field(ge=0, description="Samples with a non-silent mutation and a value.")
    n_wildtype: int = pa.Field(ge=0, description="Samples profiled without one and with a value (samples whose "
                                                 "panel does not cover the gene are neither).")
    mean_difference: float = _nullable_float("mean(mutated) - mean(wild type) on the layer's log2 scale.")
    statistic: float = _nullable_float("Welch t statistic (unequal variances, scipy.stats.ttest_ind(equal_var="
                                       "False)); NULL unless at least 3 mutated and 3 wild type.")
    pvalue: float = _nullable_float("Two-sided Welch t-test p-value; NULL when statistic is.")
    fdr: float = _nullable_float("Benjamini-Hochberg adjusted p-value within the study and layer.")

    class Config:
        unique = ["study_id", "gene_id", "layer"]


class BiomarkerCandidates(_Table):
    study_id: str = _study()
    contrast: str = pa.Field(description="Contrast name from study.yaml.")
    gene_id: int = pa.Field(description="NCBI Gene ID.")
    rna_log2fc: float = _nullable_float("RNA log2 fold change, test vs reference: DESeq2's (differential_expression) "
                                        "for count assays, else mean(test) - mean(reference) of rna_log2 "
                                        "(see rna_method).")
    rna_padj: float = _nullable_float("RNA adjusted p-value: DESeq2's padj, or BH FDR of the Welch t-test of "
                                      "rna_log2 over the study's genes (see rna_method).")
    rna_method: str = pa.Field(description="Source of the RNA side: deseq2 (count assays) or welch (log-scale "
                                           "abundances only, e.g. microarray / TCGA-processed mRNA).")
    protein_difference: float = _nullable_float("mean(test) - mean(reference) of protein_log2.")
    protein_pvalue: float = _nullable_float("Welch t-test p-value of protein_log2 between the contrast's groups "
                                            "(NULL unless 3 samples with a value in each).")
    rna_protein_r: float = _nullable_float("Spearman r of RNA and protein over the study (omics_correlations).")
    concordant: bool = pa.Field(nullable=True, description="RNA fold change and protein difference have the same "
                                                           "non-zero sign (NULL when either is missing).")

    class Config:
        unique = ["study_id", "contrast", "gene_id"]


class FeatureSets(_Table):
    feature_set: str = pa.Field(description="Feature-set name (the spec's `name`).")
    version: int = pa.Field(ge=1, description="Version of the feature set, 1, 2, ... in build order.")
    created_at: Annotated[pl.Datetime, "us", "UTC"] = pa.Field(description="When the version was built.")
    rows: int = pa.Field(ge=0, description="Rows (study, sample) of the matrix.")
    columns: int = pa.Field(ge=0, description="Feature columns of the matrix (`<layer>__<symbol>`).")
    content_hash: str = pa.Field(description="Hash of the values (the same inputs and spec give the same hash).")
    manifest: str = pa.Field(description="JSON: the spec, the Delta version of every input table, the ordered "
                                         "feature columns, the sample keys and the learned scaling parameters; "
                                         "also unscalable (columns NULL after scaling) and empty_samples (samples "
                                         "with no value in any column).")

    class Config:
        unique = ["feature_set", "version"]


class FeatureValues(_Table):
    feature_set: str = pa.Field(description="Feature-set name.")
    version: int = pa.Field(ge=1, description="Feature-set version.")
    study_id: str = pa.Field(description="Study of the sample.")
    sample_id: str = pa.Field(description="Sample identifier within the study.")
    feature: str = pa.Field(description="Feature column, `<layer>__<symbol>` (e.g. rna__TP53).")
    value: float = _nullable_float("The value after the declared scaling (absent row = NULL cell).")

    class Config:
        unique = ["feature_set", "version", "study_id", "sample_id", "feature"]
QC_FLAGS = ["low_library_size", "low_detected_genes", "high_pct_mito", "low_correlation", "pca_outlier"]


class SampleQc(_Table):
    study_id: str = _study()
    sample_id: str = _sample()
    assay: str = _assay()
    library_size: float = pa.Field(ge=0, description="Sum of the sample's counts over every complete feature of "
                                                     "the assay.")
    detected_genes: int = pa.Field(ge=0, description="Features with count > 0 in the sample.")
    pct_top100: float = _nullable_float("Percent of the library in the sample's 100 most counted features (NULL "
                                        "when the assay has 100 features or fewer).")
    pct_mito: float = _nullable_float("Percent of the library on mitochondrial genes (chromosome MT in `genes`); "
                                      "NULL when the assay maps no mitochondrial gene.")
    median_correlation: float = _nullable_float("Median Pearson correlation with the study's other samples over "
                                                "the top variable genes of log2 CPM of the raw counts (QC runs "
                                                "before normalisation, so it can decide its input).")
    pca_distance: float = _nullable_float("Euclidean distance from the study's median in PCA space of the same "
                                          "log2 CPM values (sample_embeddings holds the PCA of the VST).")
    qc_flags: pl.List(pl.String) = pa.Field(  # type: ignore[valid-type]
        description="Failed checks: low_library_size, low_detected_genes (log scale, below median - nmads MAD), "
                    "high_pct_mito, pca_outlier (above median + nmads MAD), low_correlation (below); empty when "
                    "none.")
    qc_pass: bool = pa.Field(description="True when qc_flags is empty.")
    excluded: bool = pa.Field(description="True when the sample failed QC and the study's study.yaml says `qc: "
                                          "exclude_failed: true`: normalisation, DE, signatures, enrichment, "
                                          "cross-omics and QC structure of this assay leave it out (the "
                                          "excluded_samples view lists them).")

    class Config:
        unique = ["study_id", "assay", "sample_id"]


class SampleEmbeddings(_Table):
    study_id: str = _study()
    sample_id: str = _sample()
    assay: str = _assay()
    method: str = pa.Field(isin=["pca"], description="Embedding method: pca (centred, unscaled, on the top "
                                                    "variable genes of the VST, else log2 CPM, as DESeq2 plotPCA).")
    component: int = pa.Field(ge=1, description="Component number, 1 = most variance explained.")
    value: float = pa.Field(description="The sample's score on the component (sign as numpy SVD, made positive on "
                                        "the largest-magnitude loading).")

    class Config:
        unique = ["study_id", "assay", "method", "sample_id", "component"]


class SampleClusters(_Table):
    study_id: str = _study()
    sample_id: str = _sample()
    assay: str = _assay()
    method: str = pa.Field(isin=["hierarchical", "consensus"],
                           description="hierarchical: average linkage on 1 - Pearson correlation; consensus: "
                                       "Monti 2003 consensus clustering over resamples of 80% of the samples. "
                                       "A study with more than 2,000 samples (CONSENSUS_MAX_SAMPLES) is clustered "
                                       "on a fixed-seed subsample of 2,000 (seed 1, over the samples in id order) "
                                       "and every other sample joins the cluster whose centroid it correlates "
                                       "with most (Pearson r on the same genes).")
    k: int = pa.Field(ge=2, description="Number of clusters the tree was cut into.")
    cluster: int = pa.Field(ge=1, description="Cluster of the sample at this k (1..k, numbered by first sample).")

    class Config:
        unique = ["study_id", "assay", "method", "k", "sample_id"]


TABLES: dict[str, type[_Table]] = {
    "studies": Studies,
    "subjects": Subjects,
    "subject_attributes": SubjectAttributes,
    "samples": Samples,
    "sample_attributes": SampleAttributes,
    "genes": Genes,
    "gene_xrefs": GeneXrefs,
    "gene_id_map": GeneIdMap,
    "ingest_issues": IngestIssues,
    "rna_counts": RnaCounts,
    "rna_abundance": RnaAbundance,
    "variants": Variants,
    "gene_mutation_status": GeneMutationStatus,
    "copy_number": CopyNumber,
    "cn_segments": CnSegments,
    "copy_number_peaks": CopyNumberPeaks,
    "copy_number_peak_calls": CopyNumberPeakCalls,
    "copy_number_peak_genes": CopyNumberPeakGenes,
    "protein_abundance": ProteinAbundance,
    "sc_pseudobulk": ScPseudobulk,
    "cell_type_composition": CellTypeComposition,
    "rna_sample_factors": RnaSampleFactors,
    "rna_normalized": RnaNormalized,
    "rna_vst": RnaVst,
    "differential_expression": DifferentialExpression,
    "gene_sets": GeneSets,
    "gene_set_members": GeneSetMembers,
    "signature_scores": SignatureScores,
    "gene_set_enrichment": GeneSetEnrichment,
    "signature_matches": SignatureMatches,
    "gene_sample_omics": GeneSampleOmics,
    "omics_correlations": OmicsCorrelations,
    "mutation_effects": MutationEffects,
    "biomarker_candidates": BiomarkerCandidates,
    "feature_sets": FeatureSets,
    "feature_values": FeatureValues,
    "sample_qc": SampleQc,
    "sample_embeddings": SampleEmbeddings,
    "sample_clusters": SampleClusters,
    "study_versions": StudyVersions,
}

TABLE_DOCS: dict[str, str] = {
    "studies": "One row per study loaded: its manifest facts and the hash of the files it was loaded from.",
    "subjects": "One row per subject (patient / donor) of a study.",
    "subject_attributes": "One row per subject and clinical attribute (long form, any attribute set).",
    "samples": "One row per sample of a study, linked to its subject.",
    "sample_attributes": "One row per sample and attribute (long form, so heterogeneous clinical columns fit).",
    "genes": "The gene dimension: one row per NCBI gene, GRCh38 coordinates, from the shipped reference.",
    "gene_xrefs": "One row per gene and external identifier (Ensembl gene / transcript, UniProt, alias).",
    "gene_id_map": "One row per study, assay and source identifier: how it was mapped to a gene, or why not.",
    "ingest_issues": "One row per problem found while loading a study (file, line, column, code); rows with a "
                     "record are the quarantine of rows kept out of the tables.",
    "rna_counts": "Raw RNA-seq counts: one row per study, assay, sample and feature (unmapped features kept).",
    "rna_abundance": "RNA abundances as provided (TPM, FPKM, RSEM, z-scores): one row per assay, sample, feature "
                     "and measure.",
    "variants": "One row per variant, alt allele and sample, with the chosen transcript consequence.",
    "gene_mutation_status": "One row per sample and gene mutated in the study: mutated / wild type / not profiled.",
    "copy_number": "Gene-level copy number: one row per sample and gene (log2 ratio and/or GISTIC call).",
    "cn_segments": "Copy-number segments: one row per sample and segment.",
    "copy_number_peaks": "GISTIC 2.0 significant peaks: one row per study, assay and peak (all_lesions.conf_XX.txt): "
                         "direction, cytoband, wide peak / peak / region boundaries, q-values.",
    "copy_number_peak_calls": "GISTIC 2.0 per-sample peak calls: one row per study, assay, sample and peak: the "
                              "thresholded call (0/1/2) and the actual copy change.",
    "copy_number_peak_genes": "GISTIC 2.0 peak membership: one row per study, assay, peak and gene listed in its wide "
                              "peak (amp_genes / del_genes.conf_XX.txt), mapped through the gene resolver.",
    "protein_abundance": "One row per sample, protein group (or antibody) and mapped gene.",
    "sc_pseudobulk": "Single-cell counts summed per sample and cell type: one row per study, assay, sample, cell "
                     "type and feature, with the cells summed (each profile is also an rna_counts sample "
                     "`<sample_id>__<cell_type>`).",
    "cell_type_composition": "One row per study, single-cell assay, sample and cell type: cells and their fraction "
                             "of the sample's annotated cells.",
    "rna_sample_factors": "One row per study, count assay and sample: library size, edgeR TMM and DESeq2 size "
                          "factors.",
    "rna_normalized": "One row per study, assay, sample and feature: CPM, log2 CPM, TMM CPM, median-of-ratios, "
                      "TPM and per-gene z-scores of counts, or log2 and z-scores of provided abundances.",
    "rna_vst": "One row per study, count assay, sample and feature: DESeq2 blind variance-stabilised counts.",
    "differential_expression": "One row per study, contrast, count assay and feature: DESeq2 1.38 Wald test "
    "results (numpy port).",
    "gene_sets": "One row per gene set of every library (shipped, warehouse-wide, study-declared): version, "
                 "source, licence and how many members mapped to genes.",
    "gene_set_members": "One row per gene set and member identifier as given, with the gene it resolved to "
                        "(NULL when unmapped), its weight or up / down sign.",
    "signature_scores": "One row per study, sample, assay, gene set and method: ssGSEA, singscore or weighted "
                        "z-score of the sample on the assay's log-scale normalised expression "
                        "(rna_normalized.log2_value).",
    "gene_set_enrichment": "One row per study, contrast, gene set and method: gseapy prerank on the Wald "
                           "statistic, or hypergeometric over-representation of up / down DE genes.",
    "signature_matches": "One row per query (a contrast's top up / down genes, or a user up / down signature) "
                         "and target contrast of any study: CMap connectivity score. Cross-study, updated "
                         "incrementally.",
    "gene_sample_omics": "One row per study, sample and gene with a value in any layer: RNA, protein, copy number "
                         "and mutation side by side (one source assay per gene and layer).",
    "omics_correlations": "One row per study, gene, pair of layers (rna-protein, copy_number-rna, "
                          "copy_number-protein) and method: correlation across samples with both values.",
    "mutation_effects": "One row per study, mutated gene and layer (rna, protein): Welch t-test of the gene's own "
                        "level in mutated vs wild-type samples.",
    "biomarker_candidates": "One row per study, contrast and gene with RNA and protein: the RNA fold change (DESeq2, "
                            "or a Welch test of log2 values without counts) beside the protein difference and the "
                            "RNA-protein correlation.",
    "feature_sets": "One row per feature set and version: its manifest (spec, input table versions, columns, "
                    "scaling parameters), size and content hash.",
    "feature_values": "One row per feature set, version, sample and non-null feature: the ML matrix in long "
                      "form (pivoted on read by warehouse.features).",
    "sample_qc": "One row per study, count assay and sample: library size, detected genes, top-100 and "
                 "mitochondrial fractions, correlation and PCA distance, the MAD-based QC flags, pass / fail and "
                 "whether the study's later stages leave the sample out (qc.exclude_failed).",
    "sample_embeddings": "One row per study, count assay, method, sample and component: PCA scores of the "
                         "samples on the top variable genes.",
    "sample_clusters": "One row per study, count assay, method, k and sample: hierarchical and consensus "
                       "clusters of the samples on the top variable genes.",
    "study_versions": "One row per study and table: the table version and files the catalog shows for the study. "
                      "A study's tables are published together in one commit once every stage has run, so "
                      "readers never see counts of one load beside normalised values of another.",
}

CROSS_STUDY_TABLES = ["gene_sets", "gene_set_members", "signature_matches"]
"""Tables written for the whole warehouse at once (the gene-set registry, cross-study matches), not per study;
the catalog shows them at their newest version."""
APPEND_TABLES = ["feature_sets", "feature_values"]
"""Global tables that only grow: each feature-set version is appended, earlier versions stay readable."""
GLOBAL_TABLES = ["genes", "gene_xrefs", *CROSS_STUDY_TABLES, *APPEND_TABLES]
"""Tables not partitioned by study (the gene dimension, cross-study tables, feature sets); every other table is
partitioned by ``study_id``."""
STUDY_TABLES = [t for t in TABLES if t not in GLOBAL_TABLES]
"""Tables partitioned by study_id, each study replaced as one commit."""
NORMALISE_TABLES = ["rna_sample_factors", "rna_normalized", "rna_vst", "differential_expression"]
"""Tables computed from harmonised ones by the normalise stage (not written by ingest)."""
SIGNATURE_TABLES = ["signature_scores", "gene_set_enrichment"]
"""Per-study tables of the signatures stage (computed from the normalised tables)."""
CROSS_OMICS_TABLES = ["gene_sample_omics", "omics_correlations", "mutation_effects", "biomarker_candidates"]
"""Tables the cross_omics stage computes from the harmonised and normalised ones."""
QC_TABLES = ["sample_qc", "sample_embeddings", "sample_clusters"]
"""Tables the qc stage computes: sample_qc from a study's counts before normalisation, the others from its VST."""
DERIVED_TABLES = [*NORMALISE_TABLES, *SIGNATURE_TABLES, *CROSS_OMICS_TABLES, *QC_TABLES]
"""Per-study tables computed from a study's load by a stage after ingest: each commit records that load."""
INGEST_TABLES = [t for t in STUDY_TABLES if t not in {*DERIVED_TABLES, "study_versions"}]
"""Tables one study's ingest replaces together."""
PUBLISHED_TABLES = [t for t in STUDY_TABLES if t not in {"ingest_issues", "study_versions"}]
"""Tables the catalog shows at each study's published version set (``study_versions``); ``ingest_issues`` is
always shown at its newest version, so the problems of a failed run are visible at once."""


def polars_schema(table: str) -> pl.Schema:
    """Column names and polars types of ``table``, in contract order."""
    columns = TABLES[table].to_schema().columns
    return pl.Schema({name: col.dtype.type for name, col in columns.items()})


def column_descriptions(table: str) -> dict[str, str]:
    """Column name -> description (the DuckDB column comments)."""
    return {name: col.description or "" for name, col in TABLES[table].to_schema().columns.items()}

