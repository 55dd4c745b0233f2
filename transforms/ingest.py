"""Ingest one study folder: discover its layout, parse every assay and harmonise it into table frames.

This is the path a reader follows from raw files to warehouse rows: ``discover_study`` turns either layout
(``study.yaml`` or a cBioPortal folder) into one :class:`StudyManifest`; ``ingest_study`` reads the sample and
subject tables, then hands each assay to the reader of its kind (a parser per format, then the shared identity
step in :mod:`transforms.harmonise`). Nothing here writes: the result is lazy frames per table plus the issue
log, and :mod:`warehouse.load` validates and commits them. A file that cannot be read becomes an error issue and
the other assays are still read, so one run reports every problem of a study.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import yaml
from pydantic import ValidationError

from schemas.manifest import Assay, StudyManifest, load_manifest, resolve_study_path
from schemas.tables import polars_schema
from transforms import assays
from transforms.genes import GeneReference
from transforms.issues import InputError, IssueLog
from transforms.parse.cbioportal import is_cbioportal_study, read_cbioportal_study
from transforms.samples import SampleSheet, SubjectSheet, read_sample_map, read_samples, read_subjects
from transforms.signatures import registry

MANIFEST_NAME = "study.yaml"


@dataclass
class StudyIngest:
    """Everything read from one study folder, ready for validation and commit.

    ``tables``: table name -> lazy frames with the table's columns plus routing columns (``problem``,
    ``problem_code``, ``line``, ``column``, ``raw``, ``file``); rows with a problem go to ``ingest_issues``.
    ``metadata``: per table, facts for the run's metadata (mapped fraction, samples, rule used, ...).
    """

    study_id: str
    folder: Path
    manifest: StudyManifest | None
    issues: IssueLog
    fingerprint: str
    tables: dict[str, list[pl.LazyFrame]] = field(default_factory=dict)
    metadata: dict[str, dict[str, object]] = field(default_factory=dict)
    expected_rows: dict[str, int | None] = field(default_factory=dict)

    def add(self, table: str, frame: pl.LazyFrame | pl.DataFrame, *, expected_rows: int | None = None) -> None:
        """Add rows to a table; ``expected_rows`` (when every part knows it) says how many a clean file gives."""
        known = self.expected_rows.get(table, 0) if table in self.tables else 0
        self.expected_rows[table] = None if known is None or expected_rows is None else known + expected_rows
        self.tables.setdefault(table, []).append(frame.lazy())


def is_study_folder(folder: Path) -> bool:
    """A landing sub-folder is a study when it has a study.yaml or a cBioPortal meta_study.txt."""
    return (folder / MANIFEST_NAME).is_file() or is_cbioportal_study(folder)


def study_fingerprint(folder: Path, *, salt: str = "") -> str:
    """Content hash of every file in the study folder (names and bytes), plus ``salt`` (code / reference)."""
    digest = hashlib.blake2b(salt.encode(), digest_size=16)
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        with open(path, "rb") as fh:
            digest.update(hashlib.file_digest(fh, "blake2b").digest())
    return digest.hexdigest()


def discover_study(folder: Path, *, issues: IssueLog) -> StudyManifest | None:
    """Read a study's manifest from either layout; problems become issues and None is returned."""
    manifest_path = folder / MANIFEST_NAME
    if manifest_path.is_file():
        try:
            manifest = load_manifest(manifest_path)
        except ValidationError as exc:
            for error in exc.errors():
                where = ".".join(str(p) for p in error["loc"])
                issues.error("invalid_manifest", f"{where}: {error['msg']}", file=MANIFEST_NAME, column=where)
            return None
        except (yaml.YAMLError, ValueError, OSError) as exc:  # YAML syntax, not a mapping, unreadable file
            line = getattr(getattr(exc, "problem_mark", None), "line", None)
            issues.error("invalid_manifest", str(exc), file=MANIFEST_NAME,
                         line=None if line is None else line + 1)
            return None
        for name in manifest.unknown_fields():
            issues.warning("unknown_manifest_field", f"{name} is not a study.yaml field; it was ignored",
                           file=MANIFEST_NAME, column=name)
        return manifest
    if is_cbioportal_study(folder):
        return read_cbioportal_study(folder, issues=issues)
    issues.error("not_a_study", f"{folder.name} has neither {MANIFEST_NAME} nor meta_study.txt", file=folder.name)
    return None


def ingest_study(folder: Path, *, reference: GeneReference, code_version: str = "") -> StudyIngest:
    """Read and harmonise one study folder (no writes); see the module docstring for the path it follows."""
    issues = IssueLog(folder.name)
    fingerprint = study_fingerprint(folder, salt=f"{code_version}|{reference.fingerprint}")
    manifest = discover_study(folder, issues=issues)
    study_id = manifest.study_id if manifest else folder.name
    issues.study_id = study_id
    result = StudyIngest(study_id, folder, manifest, issues, fingerprint)
    if manifest is None:
        return result
    sheet, subjects, sample_map = _read_sample_tables(folder, manifest, issues=issues)
    context = assays.AssayContext(study_id=study_id, folder=folder, manifest=manifest, reference=reference,
                                  samples=sheet.samples if sheet else None, sample_map=sample_map, issues=issues)
    mapped_samples: list[pl.DataFrame] = []
    for assay in manifest.assays:
        try:
            files = resolve_study_path(folder, assay.path)
        except ValueError as exc:
            issues.error("path_outside_study", str(exc), file=MANIFEST_NAME, column=f"assays.{assay.name}.path")
            continue
        if not files or not all(f.is_file() for f in files):
            issues.error("file_missing", f"assay {assay.name!r}: no file matches {assay.path!r}", file=assay.path)
            continue
        try:
            output = READERS[assay.kind](assay, files, context)
        except InputError as exc:
            issues.add(exc.issue)
            continue
        for table, frame in output.tables.items():
            result.add(table, frame, expected_rows=output.expected_rows.get(table))
        result.add("gene_id_map", output.gene_map)
        mapped_samples.append(output.samples)
        for table in output.tables:  # keyed by table, as the assets report it (mutation_status -> its table)
            result.metadata.setdefault(table, {})[assay.name] = output.metadata
    _add_study_tables(result, manifest, sheet, subjects, mapped_samples,
                      reference_tag=str(reference.release.get("source", "")))
    check_study_gene_sets(folder, manifest, reference=reference, issues=issues)
    return result


def study_gene_set_files(folder: Path, manifest: StudyManifest, *, issues: IssueLog | None = None) -> list[Path]:
    """The study's declared gene-set library files (inside its folder); bad paths become issues when given."""
    found = []
    for index, relative in enumerate(manifest.gene_sets):
        try:
            files = resolve_study_path(folder, relative)
        except ValueError as exc:
            if issues is not None:
                issues.error("path_outside_study", str(exc), file=MANIFEST_NAME, column=f"gene_sets[{index}]")
            continue
        if not files or not all(f.is_file() for f in files):
            if issues is not None:
                issues.error("file_missing", f"gene_sets: no file matches {relative!r}", file=relative)
            continue
        found += files
    return found


def check_study_gene_sets(folder: Path, manifest: StudyManifest, *, reference: GeneReference,
                          issues: IssueLog) -> None:
    """Read the study's gene-set libraries as the registry will: bad files are located errors, unmapped member
    genes one warning per library (they are kept with a NULL gene_id).
    """
    root = folder.resolve()
    libraries: list[tuple[str, str | None, registry.Library]] = []
    for path in study_gene_set_files(folder, manifest, issues=issues):
        relative = str(path.resolve().relative_to(root))
        if not registry.is_library_file(path):
            issues.error("bad_gene_set_file", f"gene_sets: {relative} is not a .gmt, .gmt.gz, .yaml or .yml file",
                         file=relative)
            continue
        library = registry.read_library(path, file=relative)
        for issue in library.issues:
            issues.add(issue)
        libraries.append(("study", manifest.study_id, library))
    if libraries:
        _, members = registry.registry_frames(libraries, reference=reference)
        for issue in registry.unmapped_issues(members, files={lib.name: lib.file for _, _, lib in libraries}):
            issues.add(issue)


READERS: dict[str, Callable[[Assay, list[Path], assays.AssayContext], assays.AssayOutput]] = {
    "rna_counts": assays.read_rna,
    "rna_abundance": assays.read_rna,
    "variants": assays.read_variants,
    "mutation_status": assays.read_mutation_matrix,
    "copy_number": assays.read_copy_number,
    "protein_abundance": assays.read_proteins,
}
"""Assay kind -> reader; a new format is a parser inside a reader, a new kind one entry here."""


def _read_sample_tables(folder: Path, manifest: StudyManifest, *, issues: IssueLog
                        ) -> tuple[SampleSheet | None, SubjectSheet | None, pl.DataFrame | None]:
    def read(relative: str | None, reader: Callable[..., object]) -> object | None:
        if relative is None:
            return None
        try:
            (path,) = resolve_study_path(folder, relative)
            return reader(path, issues=issues, display_name=relative)
        except ValueError as exc:
            issues.error("path_outside_study", str(exc), file=MANIFEST_NAME)
        except InputError as exc:
            issues.add(exc.issue)
        return None

    sheet = read(manifest.samples, read_samples)
    subjects = read(manifest.subjects, read_subjects)
    sample_map = read(manifest.sample_map, read_sample_map)
    return sheet, subjects, sample_map  # type: ignore[return-value]


def _add_study_tables(result: StudyIngest, manifest: StudyManifest, sheet: SampleSheet | None,
                      subjects: SubjectSheet | None, mapped: list[pl.DataFrame], *, reference_tag: str) -> None:
    """studies, subjects, samples and their attributes: from the tables, or from the assays when there are none."""
    sid = result.study_id
    if sheet is not None:
        samples = sheet.samples.select("sample_id", "subject_id")
    else:
        found = [m.select("sample_id", "subject_id") for m in mapped if m.height]
        samples = (pl.concat(found).drop_nulls("sample_id").unique("sample_id", keep="first", maintain_order=True)
                   if found else pl.DataFrame(schema={"sample_id": pl.String, "subject_id": pl.String}))
    subject_ids = samples.select("subject_id")
    if subjects is not None:
        subject_ids = pl.concat([subjects.subjects.select("subject_id"), subject_ids])
    lit = pl.lit(sid).alias("study_id")
    result.add("samples", samples.select(lit, "sample_id", "subject_id"))
    result.add("subjects", subject_ids.unique(maintain_order=True).select(lit, "subject_id"))
    if sheet is not None:
        result.add("sample_attributes", sheet.attributes.select(lit, "sample_id", "attribute", "value",
                                                                "value_type"))
    if subjects is not None:
        result.add("subject_attributes", subjects.attributes.select(lit, "subject_id", "attribute", "value",
                                                                    "value_type"))
    study = pl.DataFrame({
        "study_id": [sid], "name": [manifest.name], "description": [manifest.description],
        "organism": [manifest.organism], "reference_genome": [manifest.reference_genome],
        "source_layout": [manifest.source_layout], "content_hash": [result.fingerprint],
        "gene_reference": [reference_tag], "n_samples": [samples.height],
        "manifest": [manifest.model_dump_json()], "loaded_at": [datetime.now(UTC)],
    }, schema=polars_schema("studies"))
    result.add("studies", study)



def study_key(folder: Path) -> str:
    """The study id a folder declares (study.yaml ``study_id`` or cBioPortal ``cancer_study_identifier``).

    A folder whose manifest cannot be read keeps its folder name, so its failure still has a partition.
    """
    manifest = folder / MANIFEST_NAME
    try:
        if manifest.is_file():
            return str(load_manifest(manifest).study_id)
        for line in (folder / "meta_study.txt").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "cancer_study_identifier" and value.strip():
                return value.strip()
    except (ValidationError, yaml.YAMLError, ValueError, OSError):
        pass
    return folder.name


def find_studies(landing: Path) -> dict[str, Path]:
    """Study id -> folder for every study folder directly under ``landing`` (or ``landing`` itself)."""
    if is_study_folder(landing):
        return {study_key(landing): landing}
    found: dict[str, Path] = {}
    for folder in sorted(p for p in landing.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if is_study_folder(folder):
            found.setdefault(study_key(folder), folder)
    return found
