"""pydantic models of a study's input contract: ``study.yaml`` and what a cBioPortal folder translates to.

Both recognised layouts become one :class:`StudyManifest`, so everything after discovery follows one path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

AssayKind = Literal["rna_counts", "rna_abundance", "variants", "mutation_status", "copy_number",
                    "protein_abundance"]
GeneIdType = Literal["symbol", "entrez", "ensembl", "uniprot", "auto"]

FORMATS: dict[str, set[str]] = {
    "rna_counts": {"matrix", "featurecounts", "salmon", "rsem", "star"},
    "rna_abundance": {"matrix", "salmon", "rsem", "cbioportal"},
    "variants": {"maf", "vcf"},
    "mutation_status": {"matrix"},
    "copy_number": {"gistic", "log2", "seg", "gistic_long"},
    "protein_abundance": {"maxquant", "diann", "fragpipe", "matrix", "rppa"},
}
"""Which file layouts feed which table; ``cbioportal`` is a gene x sample matrix with Hugo/Entrez columns."""

FILE_MEASURES: dict[str, tuple[str, ...]] = {"salmon": ("counts", "tpm"), "rsem": ("counts", "tpm", "fpkm")}
"""rna_abundance from per-sample tool output: the measures its columns hold (``measure`` unset means tpm)."""


class _Strict(BaseModel):
    """Unknown keys are kept (``model_extra``) and reported as warnings, so a newer manifest still loads."""

    model_config = ConfigDict(extra="allow", frozen=True)

    def unknown_fields(self, prefix: str = "") -> list[str]:
        """Dotted names of keys the model does not define, here and in nested models."""
        found = [f"{prefix}{key}" for key in (self.model_extra or {})]
        for name, value in self:
            items = value if isinstance(value, list) else [value]
            for i, item in enumerate(items):
                if isinstance(item, _Strict):
                    label = f"{name}[{i}]" if isinstance(value, list) else name
                    found += item.unknown_fields(f"{prefix}{label}.")
        return found


class Assay(_Strict):
    """One data file (or glob of per-sample files) and the table it feeds."""

    name: str = Field(description="Unique name of the assay within the study; `sample_map.assay` refers to it.")
    kind: AssayKind = Field(description="Warehouse table the assay feeds.")
    format: str = Field(description="File layout; see FORMATS for the layouts allowed per kind.")
    path: str = Field(description="Path relative to the study folder; a glob for per-sample files "
                                  "(Salmon, RSEM, STAR), one sample per matched file.")
    gene_id_type: GeneIdType = Field("auto", description="Namespace of the feature identifiers.")
    measure: str | None = Field(None, description="rna_abundance: tpm, fpkm, rsem_normalized, zscore, ...")
    strandedness: Literal["unstranded", "forward", "reverse"] | None = Field(
        None, description="STAR ReadsPerGene.out.tab: which count column (2, 3 or 4) to take.")
    platform: Literal["ms", "rppa"] = Field("ms", description="protein_abundance: mass spectrometry or RPPA.")
    quantity: Literal["lfq", "intensity", "ibaq", "razor_intensity"] = Field(
        "lfq", description="protein_abundance from a search engine: which quantity columns to read.")
    reference_genome: str | None = Field(None, description="Build of coordinates (variants, seg) when it "
                                                           "differs from the study's.")
    options: dict[str, str] = Field(default_factory=dict, description="Format-specific extras "
                                    "(e.g. the cBioPortal datatype it came from).")

    @model_validator(mode="after")
    def _format_fits_kind(self) -> Assay:
        if self.format not in FORMATS[self.kind]:
            raise ValueError(f"format {self.format!r} is not a {self.kind} layout; "
                             f"use one of {sorted(FORMATS[self.kind])}")
        if self.format == "star" and self.strandedness is None:
            raise ValueError("STAR ReadsPerGene.out.tab needs `strandedness` (unstranded, forward, reverse)")
        measures = FILE_MEASURES.get(self.format, ())
        if self.kind == "rna_abundance" and measures and (self.measure or "tpm") not in measures:
            raise ValueError(f"{self.format} output holds no {self.measure!r} column; "
                             f"set `measure` to one of {list(measures)}")
        return self


class Contrast(_Strict):
    """A differential-expression comparison: ``test`` against ``reference`` levels of ``factor``."""

    name: str
    factor: str = Field(description="Sample attribute holding the condition.")
    test: str = Field(description="Level compared.")
    reference: str = Field(description="Baseline level.")
    covariates: list[str] = Field(default_factory=list, description="Other sample attributes in the design.")


class ZscoreReference(_Strict):
    """Which samples define the per-gene mean and SD of abundance z-scores (all samples when not set)."""

    attribute: str
    values: list[str]


class StudyManifest(_Strict):
    """``study.yaml``: one study folder. Paths are relative to the folder and may not leave it."""

    study_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)
    name: str
    description: str | None = None
    organism: str = Field("human", description="Only human features are mapped to the gene dimension; "
                                               "others are kept unmapped.")
    reference_genome: str = Field("GRCh38", description="Build of genomic coordinates.")
    subjects: str | None = Field(None, description="Table file: subject_id (or PATIENT_ID) plus attributes.")
    samples: str | None = Field(None, description="Table file: sample_id, subject_id, attributes.")
    sample_map: str | None = Field(None, description="Table file: assay, column, sample_id.")
    assays: list[Assay] = Field(default_factory=list)
    contrasts: list[Contrast] = Field(default_factory=list)
    zscore_reference: ZscoreReference | None = None
    gene_sets: list[str] = Field(default_factory=list, description="Gene-set libraries of the study: GMT files or "
                                 "signature YAML files (signatures: name, up / down or weights), relative to the "
                                 "study folder; the library name is the file name without its extension.")
    source_layout: Literal["study_yaml", "cbioportal"] = "study_yaml"

    @field_validator("assays")
    @classmethod
    def _unique_assay_names(cls, assays: list[Assay]) -> list[Assay]:
        names = [a.name for a in assays]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"assay names must be unique; repeated: {dupes}")
        return assays

    @property
    def is_human(self) -> bool:
        return self.organism.strip().lower() in {"human", "homo sapiens", "hsapiens", "9606"}


def load_manifest(path: Path) -> StudyManifest:
    """Read and validate a ``study.yaml`` (pydantic errors name the field that is wrong)."""
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict):
        raise ValueError(f"{path.name}: expected a mapping of study fields, got {type(data).__name__}")
    return StudyManifest.model_validate(data)


def resolve_study_path(study_dir: Path, relative: str) -> list[Path]:
    """Resolve a manifest path (or glob) inside ``study_dir``; raise ValueError if it leaves the folder."""
    root = study_dir.resolve()
    if Path(relative).is_absolute() or ".." in Path(relative).parts:
        raise ValueError(f"path {relative!r} must be relative to the study folder and stay inside it")
    matches = sorted(root.glob(relative)) if any(c in relative for c in "*?[") else [root / relative]
    for match in matches:
        if not match.resolve().is_relative_to(root):
            raise ValueError(f"path {relative!r} leaves the study folder (through a link)")
    return matches
