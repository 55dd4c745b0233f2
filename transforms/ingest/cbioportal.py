"""cBioPortal study folders: translate ``meta_*.txt`` files into the :class:`StudyManifest` of ``study.yaml``.

A cBioPortal study describes each data file in a ``meta_<name>.txt`` file of ``key: value`` lines
(``genetic_alteration_type``, ``datatype``, ``stable_id``, ``data_filename``, ...). Translating them here
means everything after discovery follows one path. Only layers the warehouse has tables for become assays;
every other datatype is reported as an info issue, not silently ignored and not fatal.

Choices made where cBioPortal leaves room:

- ``MRNA_EXPRESSION CONTINUOUS``: ``measure`` comes from the ``stable_id`` (see ``_MRNA_MEASURES``; TCGA
  ``rna_seq_v2_mrna`` holds RSEM ``normalized_results``, hence ``rsem_normalized``); an unknown ``stable_id``
  leaves ``measure`` unset and says so in an info issue.
- ``MRNA_EXPRESSION Z-SCORE``: kept as provided, ``measure="zscore"``; ``options["zscore_of"]`` is the
  ``stable_id`` of the profile it was computed from (``source_stable_id``, else the ``stable_id`` without its
  z-score suffix), so it can be matched against ``options["stable_id"]`` of the other assays.
- ``COPY_NUMBER_ALTERATION CONTINUOUS`` is linear copy number, ``LOG2-VALUE`` log2 ratios: both are format
  ``log2`` (gene x sample matrices) but ``measure`` says which (``linear`` / ``log2``).
- ``PROTEIN_LEVEL LOG2-VALUE`` / ``CONTINUOUS`` profiles (RPPA, CPTAC mass spectrometry) are log2 values
  already (CPTAC's are ratios, negative for half the proteins): ``measure="log2"``, never logged again.
- ``PROTEIN_LEVEL Z-SCORE`` is skipped: z-scores of protein levels are derived from the abundance matrix.
- The gene panel matrix is recorded in ``options["gene_panel_matrix"]`` of the variants assay(s).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from schemas.manifest import Assay, StudyManifest, confine, not_a_file, resolve_study_path, study_id_problem
from transforms.ingest.parse.text import read_lines
from transforms.issues import InputError, Issue, IssueLog

_MRNA_MEASURES: tuple[tuple[str, str], ...] = (
    ("rna_seq_v2_mrna", "rsem_normalized"),  # TCGA RNASeqV2: RSEM normalized_results (upper-quartile scaled)
    ("rna_seq_mrna", "rpkm"),  # TCGA RNASeq (v1) and capture: RPKM
    ("mrna_seq_fpkm", "fpkm"),  # also _capture, _polya
    ("mrna_seq_tpm", "tpm"),
    ("mrna_seq_cpm", "cpm"),
    ("mrna", "microarray"),  # mrna, mrna_U133, mrna_agilent...: array intensities
)
"""``stable_id`` prefix -> measure of a continuous mRNA profile; the first matching prefix wins."""

_ZSCORE_SUFFIX = re.compile(r"(_median)?(_all_sample)?(_ref_normal)?_zscores$", re.IGNORECASE)


@dataclass(frozen=True)
class _Meta:
    """One parsed meta file: values and the 1-based line each key was on."""

    file: str
    values: dict[str, str]
    lines: dict[str, int]

    def get(self, key: str) -> str | None:
        return self.values.get(key) or None


META_STUDY = "meta_study.txt"


def is_cbioportal_study(folder: Path) -> bool:
    """True when ``folder`` is laid out as a cBioPortal study (it has a ``meta_study.txt``)."""
    return (folder / META_STUDY).is_file()


def read_cbioportal_study(folder: Path, *, issues: IssueLog) -> StudyManifest:
    """Translate a cBioPortal study folder into a :class:`StudyManifest` (one assay per supported data file).

    Raises :class:`InputError` when ``meta_study.txt`` is missing or has no valid ``cancer_study_identifier``.
    Data files that are missing, meta lines that are not ``key: value`` and unsupported datatypes are issues.
    """
    study = _read_meta(folder / META_STUDY, issues=issues, folder=folder)
    study_id = study.get("cancer_study_identifier")
    if study_id is None:
        raise InputError(Issue(study.file, "missing_meta_field", "error",
                               "meta_study.txt has no `cancer_study_identifier`"))
    problem = study_id_problem(study_id)
    if problem is not None:
        raise InputError(Issue(study.file, "invalid_study_id", "error", f"{problem}; the study is not loaded",
                               study.lines.get("cancer_study_identifier"), "cancer_study_identifier"))
    reference_genome = study.get("reference_genome") or "hg19"  # cBioPortal's default
    fields: dict[str, str | None] = {"samples": None, "subjects": None}
    assays: list[Assay] = []
    panel_matrix: str | None = None
    for meta_path in sorted(folder.glob("meta_*.txt")):
        if meta_path.name == META_STUDY:
            continue
        try:
            meta = _read_meta(meta_path, issues=issues, folder=folder)
        except InputError as exc:
            issues.add(exc.issue)
            continue
        if not meta.values:
            issues.error("empty_file", "meta file holds no `key: value` lines; its data file is not read",
                         file=meta.file)
            continue
        _check_study_id(meta, study_id, issues=issues)
        alteration, datatype = meta.get("genetic_alteration_type"), meta.get("datatype")
        if alteration == "CLINICAL" and datatype in ("SAMPLE_ATTRIBUTES", "PATIENT_ATTRIBUTES"):
            target = "samples" if datatype == "SAMPLE_ATTRIBUTES" else "subjects"
            path = _data_file(folder, meta, issues=issues)
            if path is not None and fields[target] is not None:
                issues.warning("extra_clinical_file", f"a second {datatype} file; only {fields[target]} "
                               "is read", file=meta.file, line=meta.lines.get("data_filename"))
            elif path is not None:
                fields[target] = path
        elif alteration == "GENE_PANEL_MATRIX":
            panel_matrix = _data_file(folder, meta, issues=issues) or panel_matrix
        else:
            assay = _translate(meta, issues=issues)
            if assay is not None and _data_file(folder, meta, issues=issues) is not None:
                assays.append(assay)
    if fields["samples"] is None:
        issues.warning("no_sample_table", "no clinical SAMPLE_ATTRIBUTES meta file: samples are taken from "
                       "the data files' columns", file=study.file)
    if panel_matrix is not None:
        assays = _attach_panel_matrix(assays, panel_matrix, issues=issues)
    try:
        return StudyManifest(
            study_id=study_id, name=study.get("name") or study_id, description=study.get("description"),
            organism="mouse" if reference_genome.lower().startswith("mm") else "human",
            reference_genome=reference_genome, samples=fields["samples"], subjects=fields["subjects"],
            assays=assays, source_layout="cbioportal",
        )
    except ValueError as exc:
        raise InputError(Issue(study.file, "invalid_study", "error",
                               f"cannot build the study manifest: {exc}",
                               study.lines.get("cancer_study_identifier"))) from exc


def _read_meta(path: Path, *, issues: IssueLog, folder: Path) -> _Meta:
    """Parse ``key: value`` lines the way cBioPortal does (split at the first colon, blank lines ignored).

    A meta file linking out of the study folder is an InputError (``path_outside_study``) and is not read.
    """
    if (reason := not_a_file(path)) is not None:
        raise InputError(Issue(path.name, "unreadable_file", "error", reason))
    if not path.is_file():
        raise InputError(Issue(path.name, "file_missing", "error", "meta file does not exist"))
    try:
        confine(folder, path)
    except ValueError as exc:
        raise InputError(Issue(path.name, "path_outside_study", "error", f"{exc}; not read")) from exc
    values: dict[str, str] = {}
    lines: dict[str, int] = {}
    for number, text in read_lines(path, file=path.name):
        if not text.strip():
            continue
        key, sep, value = text.partition(":")
        if not sep or not key.strip():
            issues.warning("bad_meta_line", "line is not `key: value`; ignored", file=path.name, line=number,
                           record=text)
            continue
        key = key.strip()
        if key in values:
            issues.warning("duplicate_meta_key", f"`{key}` repeats line {lines[key]}; the later value "
                           "is used", file=path.name, line=number, column=key, record=text)
        values[key], lines[key] = value.strip(), number
    return _Meta(path.name, values, lines)


def _check_study_id(meta: _Meta, study_id: str, *, issues: IssueLog) -> None:
    other = meta.get("cancer_study_identifier")
    if other is not None and other != study_id:
        issues.error("study_id_mismatch", f"cancer_study_identifier {other!r} differs from meta_study.txt's "
                     f"{study_id!r}", file=meta.file, line=meta.lines["cancer_study_identifier"],
                     column="cancer_study_identifier")


def _data_file(folder: Path, meta: _Meta, *, issues: IssueLog) -> str | None:
    """``data_filename`` when it names an existing file inside the study folder; otherwise an error issue."""
    name = meta.get("data_filename")
    if name is None:
        issues.error("missing_meta_field", "no `data_filename`", file=meta.file)
        return None
    line = meta.lines["data_filename"]
    try:
        (path,) = resolve_study_path(folder, name)
    except ValueError as exc:
        issues.error("path_outside_study", str(exc), file=meta.file, line=line, column="data_filename")
        return None
    if (reason := not_a_file(path)) is not None:
        issues.error("unreadable_file", reason, file=name)
        return None
    if not path.is_file():
        issues.error("file_missing", f"data file {name!r} does not exist", file=meta.file, line=line,
                     column="data_filename")
        return None
    return name


def _translate(meta: _Meta, *, issues: IssueLog) -> Assay | None:
    """The assay a data meta file describes, or None (with an info issue) for datatypes not warehoused."""
    alteration = meta.get("genetic_alteration_type") or ""
    datatype = meta.get("datatype") or ""
    stable_id = meta.get("stable_id") or ""
    key = (alteration, datatype)
    options = {"genetic_alteration_type": alteration, "datatype": datatype}
    if stable_id:
        options["stable_id"] = stable_id
    if meta.get("gene_panel"):
        options["gene_panel"] = meta.values["gene_panel"]
    spec: dict[str, object]
    if key == ("MRNA_EXPRESSION", "CONTINUOUS"):
        spec = {"kind": "rna_abundance", "format": "cbioportal",
                "measure": _mrna_measure(meta, issues=issues)}
    elif key == ("MRNA_EXPRESSION", "Z-SCORE"):
        source = meta.get("source_stable_id") or _ZSCORE_SUFFIX.sub("", stable_id)
        if source and source != stable_id:
            options["zscore_of"] = source
        spec = {"kind": "rna_abundance", "format": "cbioportal", "measure": "zscore"}
    elif key == ("MUTATION_EXTENDED", "MAF"):
        spec = {"kind": "variants", "format": "maf"}
    elif key == ("COPY_NUMBER_ALTERATION", "DISCRETE"):
        spec = {"kind": "copy_number", "format": "gistic"}
    elif key == ("COPY_NUMBER_ALTERATION", "DISCRETE_LONG"):
        spec = {"kind": "copy_number", "format": "gistic_long"}
    elif key == ("COPY_NUMBER_ALTERATION", "LOG2-VALUE"):
        spec = {"kind": "copy_number", "format": "log2", "measure": "log2"}
    elif key == ("COPY_NUMBER_ALTERATION", "CONTINUOUS"):
        spec = {"kind": "copy_number", "format": "log2", "measure": "linear"}
    elif key == ("COPY_NUMBER_ALTERATION", "SEG"):
        spec = {"kind": "copy_number", "format": "seg", "reference_genome": meta.get("reference_genome_id")}
    elif key in (("PROTEIN_LEVEL", "LOG2-VALUE"), ("PROTEIN_LEVEL", "CONTINUOUS")):
        spec = {"kind": "protein_abundance", "format": "matrix", "measure": "log2",
                "platform": "rppa" if "rppa" in stable_id.lower() else "ms"}
    elif key == ("PROTEIN_LEVEL", "Z-SCORE"):
        _skip(meta, "PROTEIN_LEVEL Z-SCORE: protein z-scores are derived from the abundance profile",
              issues=issues)
        return None
    else:
        if meta.get("resource_type"):
            what = f"resource_type {meta.values['resource_type']}"
        else:
            what = f"{alteration} {datatype}".strip() or "no genetic_alteration_type / datatype"
            if meta.get("generic_assay_type"):
                what += f" ({meta.values['generic_assay_type']})"
        _skip(meta, f"{what}: not a warehoused datatype; file not read", issues=issues)
        return None
    return Assay(name=meta.file.removeprefix("meta_").removesuffix(".txt"),
                 path=meta.values.get("data_filename", ""), options=options, **spec)


def _skip(meta: _Meta, message: str, *, issues: IssueLog) -> None:
    line = meta.lines.get("datatype")
    issues.info("skipped_datatype", message, file=meta.file, line=line,
                column="datatype" if line is not None else None)


def _mrna_measure(meta: _Meta, *, issues: IssueLog) -> str | None:
    stable_id = (meta.get("stable_id") or "").lower()
    for prefix, measure in _MRNA_MEASURES:
        if stable_id == prefix or stable_id.startswith(prefix + "_"):
            return measure
    issues.info("unknown_measure", f"stable_id {stable_id!r} does not say what the values measure; "
                "measure left unset", file=meta.file, line=meta.lines.get("stable_id"), column="stable_id")
    return None


def _attach_panel_matrix(assays: list[Assay], panel_matrix: str, *, issues: IssueLog) -> list[Assay]:
    """Record the gene panel matrix on the variants assays, so the variants layer can honour panels."""
    if not any(a.kind == "variants" for a in assays):
        issues.info("unused_gene_panel_matrix", "gene panel matrix without a mutation profile; not used",
                    file=panel_matrix)
        return assays
    return [a.model_copy(update={"options": {**a.options, "gene_panel_matrix": panel_matrix}})
            if a.kind == "variants" else a for a in assays]
