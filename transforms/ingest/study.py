"""Ingest one study folder: discover its layout, parse every assay and harmonise it into table frames.

This is the path a reader follows from raw files to warehouse rows: ``discover_study`` turns either layout
(``study.yaml`` or a cBioPortal folder) into one :class:`StudyManifest`; ``read_study`` reads the sample and
subject tables, then hands each assay to the reader of its kind (a parser per format, then the shared identity
step in :mod:`transforms.ingest.harmonise`). Nothing here writes: the result is lazy frames per table plus the issue
log, and :mod:`warehouse.load` validates and commits them. A file that cannot be read becomes an error issue and
the other assays are still read, so one run reports every problem of a study.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import os
import stat
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import polars as pl
import yaml
from pydantic import ValidationError

from schemas.manifest import (
    Assay,
    Contrast,
    PathOutsideStudy,
    StudyManifest,
    confine,
    not_a_file,
    read_manifest_data,
    recording_inputs,
    resolve_study_path,
    study_id_problem,
    unknown_keys,
)
from schemas.tables import polars_schema
from transforms.ingest import readers
from transforms.ingest.cbioportal import META_STUDY, is_cbioportal_study, read_cbioportal_study
from transforms.ingest.genes import GeneReference
from transforms.ingest.parse.text import READ_ERRORS, iter_lines, unreadable
from transforms.ingest.samples import (
    TOOL_QC_ASSAY,
    SampleSheet,
    SubjectSheet,
    looks_like_measurement,
    read_sample_map,
    read_samples,
    read_subjects,
    read_tool_qc,
)
from transforms.issues import InputError, Issue, IssueLog
from transforms.signatures import registry

MANIFEST_NAME = "study.yaml"
MULTIQC_STATS = "multiqc_general_stats.txt"
"""MultiQC's general statistics table: found anywhere in a study folder, its columns become sample attributes."""


@dataclass
class StudyIngest:
    """Everything read from one study folder, ready for validation and commit.

    ``tables``: table name -> lazy frames with the table's columns plus routing columns (``problem``,
    ``problem_code``, ``line``, ``column``, ``raw``, ``file``); rows with a problem go to ``ingest_issues``.
    ``assays``: per table, the assay of each of its frames (None: a table without an assay column, or several).
    ``metadata``: per table, facts for the run's metadata (mapped fraction, samples, rule used, ...).
    ``valid_id``: the study id, or None when the folder declares none that is valid (an ``invalid_study_id``
    error is in ``issues``, there are no tables, and :attr:`study_id` raises: nothing may be written under it).
    """

    valid_id: str | None
    folder: Path
    manifest: StudyManifest | None
    issues: IssueLog
    fingerprint: str
    tables: dict[str, list[pl.LazyFrame]] = field(default_factory=dict)
    assays: dict[str, list[str | None]] = field(default_factory=dict)
    metadata: dict[str, dict[str, object]] = field(default_factory=dict)
    expected_rows: dict[str, int | None] = field(default_factory=dict)
    inputs: frozenset[str] | None = None
    """The files and folders the readers opened, relative to the folder (study.yaml included; a folder stands for
    the files under it); None: unknown (a cBioPortal folder, whose meta files name its data), take every file."""

    @property
    def study_id(self) -> str:
        """The validated study id; ValueError for a folder without a valid one (check ``valid_id`` first)."""
        if self.valid_id is None:
            raise ValueError(f"{self.folder.name!r} has no valid study id; see its invalid_study_id issue")
        return self.valid_id

    def add(self, table: str, frame: pl.LazyFrame | pl.DataFrame, *, expected_rows: int | None = None,
            assay: str | None = None) -> None:
        """Add rows to a table; ``expected_rows`` (when every part knows it) says how many a clean file gives;
        ``assay``: the assay of every row (the writer puts it in the path of tables partitioned by assay).
        """
        known = self.expected_rows.get(table, 0) if table in self.tables else 0
        self.expected_rows[table] = None if known is None or expected_rows is None else known + expected_rows
        self.tables.setdefault(table, []).append(frame.lazy())
        self.assays.setdefault(table, []).append(assay)


def is_study_folder(folder: Path) -> bool:
    """A landing sub-folder is a study when it has a study.yaml or a cBioPortal meta_study.txt."""
    return (folder / MANIFEST_NAME).is_file() or is_cbioportal_study(folder)


def load_fingerprint(folder: Path, *, reference: GeneReference, code_version: str,
                     stamps: dict[str, tuple[int, int]] | None = None) -> str:
    """What a study's ingested tables depend on: its files, the gene reference's files and the code."""
    return study_fingerprint(folder, salt=f"{code_version}|{reference.fingerprint}", stamps=stamps)


def walk_study(folder: Path) -> Iterator[tuple[Path, os.DirEntry[str]]]:
    """Every entry under ``folder`` at any depth, as ``Path.rglob("*")`` lists them (folders entered, links to
    folders not), without recursion: a tree a few thousand folders deep overflowed Python's stack in
    ``rglob`` (RecursionError), which failed the study's ingest and the landing sensor with no issue. A folder
    that cannot be listed (permissions, a path longer than the system takes) is not entered.
    """
    pending = [folder]
    while pending:
        current = pending.pop()
        try:
            with os.scandir(current) as listing:
                entries = list(listing)
        except OSError:
            continue
        for entry in entries:
            path = current / entry.name
            yield path, entry
            try:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(path)
            except OSError:
                continue


def study_files(folder: Path) -> list[Path]:
    """The regular files under ``folder`` (links to files included), hidden names left out, in path order: what
    the study's fingerprint and the landing sensor hash. FIFOs, sockets and devices are not files: never opened.
    """
    found = []
    for path, entry in walk_study(folder):
        try:
            regular = entry.is_file()  # follows a link, as Path.is_file
        except OSError:
            continue
        if regular and not entry.name.startswith("."):
            found.append(path)
    return sorted(found)


def study_fingerprint(folder: Path, *, salt: str = "", stamps: dict[str, tuple[int, int]] | None = None) -> str:
    """Content hash of every file in the study folder (names and bytes), plus ``salt`` (code / reference).

    A link leading out of the folder is hashed by its target's name, never read; an unreadable file by its
    error (ingest reports it), so fingerprinting never fails and never reads outside the study. A name is hashed
    as its bytes on disk (``os.fsencode``): one that is not UTF-8 (a Latin-1 name from an old share or zip) is a
    Python str with surrogates, which ``str.encode()`` refused, failing the study with no issue.

    ``stamps``: filled with :func:`file_stamp` of each file hashed (taken before its bytes are read), by path
    relative to ``folder``, to be compared with the files after the study's read.
    """
    digest = hashlib.blake2b(salt.encode(), digest_size=16)
    for path in study_files(folder):
        digest.update(os.fsencode(path.relative_to(folder)) + b"\0")
        try:
            confine(folder, path)
        except ValueError:
            digest.update(b"outside:" + os.fsencode(path.readlink() if path.is_symlink() else ""))
            continue
        except OSError as exc:  # resolving the path failed (too long, a link loop): what it holds is unknown
            digest.update(f"unresolved:{exc.errno}".encode())
            continue
        if stamps is not None and (stamp := file_stamp(path)) is not None:
            stamps[str(path.relative_to(folder))] = stamp
        try:
            with open(path, "rb") as fh:
                digest.update(hashlib.file_digest(fh, "blake2b").digest())
        except OSError as exc:
            digest.update(f"unreadable:{exc.errno}".encode())
    return digest.hexdigest()


def file_stamp(path: Path) -> tuple[int, int] | None:
    """Size and modification time of a file (None when it cannot be looked at)."""
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns


def file_stamps(folder: Path) -> dict[str, tuple[int, int]]:
    """:func:`file_stamp` of every file the study's hash reads (links out of the folder are not), by path
    relative to ``folder``: the same keys :func:`study_fingerprint` fills for files that did not change.
    """
    stamps = {}
    for path in study_files(folder):
        try:
            confine(folder, path)
        except (ValueError, OSError):
            continue
        if (stamp := file_stamp(path)) is not None:
            stamps[str(path.relative_to(folder))] = stamp
    return stamps


def discover_study(folder: Path, *, issues: IssueLog) -> StudyManifest | None:
    """Read a study's manifest from either layout; problems become issues and None is returned.

    Unknown keys are warnings naming the likely intended key (``assay`` -> ``assays``), also when the manifest
    is invalid because of them; a manifest without assays is a ``no_assays`` warning.
    """
    manifest_path = folder / MANIFEST_NAME
    if manifest_path.exists() and not manifest_path.is_file():
        issues.error("not_a_study", f"{MANIFEST_NAME} is not a file", file=MANIFEST_NAME)
        return None
    if manifest_path.is_file():
        try:
            confine(folder, MANIFEST_NAME)
            data, lines = read_manifest_data(manifest_path)
        except (yaml.YAMLError, ValueError, OSError) as exc:  # YAML syntax, not a mapping, unreadable, a link out
            mark = getattr(getattr(exc, "problem_mark", None), "line", None)
            line = mark + 1 if mark is not None else getattr(exc, "line", None)
            issues.error("path_outside_study" if isinstance(exc, PathOutsideStudy) else "invalid_manifest",
                         str(exc), file=MANIFEST_NAME, line=line)
            return None
        typos = unknown_keys(data)
        for where, guess in typos:
            hint = f" (did you mean {guess!r}?)" if guess else ""
            issues.warning("unknown_manifest_field", f"unknown key {where.rsplit('.', 1)[-1]!r}{hint}; it was "
                           "ignored", file=MANIFEST_NAME, line=lines.get(where), column=where)
        try:
            manifest = StudyManifest.model_validate(data)
        except ValidationError as exc:
            for error in exc.errors():
                where = ".".join(str(p) for p in error["loc"])
                issues.error("invalid_manifest", f"{where}: {error['msg']}{_typo_hint(error['loc'], typos)}"
                             f"{_quote_hint(error)}", file=MANIFEST_NAME, line=_error_line(error["loc"], lines),
                             column=where)
            return None
        if not manifest.assays:
            issues.warning("no_assays", "the study declares no assays: nothing will be loaded into the omics "
                           "tables (only studies, samples and subjects)", file=MANIFEST_NAME,
                           line=lines.get("assays"), column="assays")
        return manifest
    if is_cbioportal_study(folder):
        try:
            return read_cbioportal_study(folder, issues=issues)
        except InputError as exc:
            issues.add(exc.issue)
            return None
    issues.error("not_a_study", f"{folder.name} has neither {MANIFEST_NAME} nor {META_STUDY}", file=folder.name)
    return None


def _error_line(loc: tuple[int | str, ...], lines: dict[str, int]) -> int | None:
    """Line of the deepest key of a pydantic error location that the YAML has (the assay for a missing field)."""
    parts = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc]
    for n in range(len(parts), 0, -1):
        key = "".join(parts[:n]).lstrip(".")
        if key in lines:
            return lines[key]
    return None


def _quote_hint(error: Any) -> str:
    """For text the YAML made a boolean or a number (a level ``yes`` or ``1``), how to keep it text."""
    if error.get("type") != "string_type":
        return ""
    value = error.get("input")
    if isinstance(value, bool):
        return " (YAML reads an unquoted yes, no, on, off, true or false as a boolean: quote the value, e.g. 'yes')"
    if isinstance(value, int | float):
        text = getattr(value, "text", str(value))  # as written (YamlInt / YamlFloat): 010 is the number 8
        number = "a number" if text == str(value) else f"the number {value!r}"
        return f" (YAML read {text} as {number}: quote it, e.g. '{text}', to give the text)"
    return ""


def _typo_hint(loc: tuple[int | str, ...], typos: list[tuple[str, str | None]]) -> str:
    """For a missing field, the unknown key beside it that was probably meant for it."""
    parent = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[:-1]).lstrip(".")
    prefix = f"{parent}." if parent else ""
    meant = [where for where, guess in typos if guess == loc[-1] and where.startswith(prefix)
             and "." not in where[len(prefix):]]
    return f" (unknown key {meant[0].rsplit('.', 1)[-1]!r} there: did you mean {loc[-1]!r}?)" if meant else ""


def read_study(folder: Path, *, reference: GeneReference, code_version: str = "",
               fingerprint: str | None = None) -> StudyIngest:
    """Read and harmonise one study folder (no writes); see the module docstring for the path it follows.

    The folder's content hash runs in a thread beside the parsing: hashlib releases the GIL on large buffers, so
    on a 1.3 GB matrix its ~1.5 CPU s overlap the parsers' single-threaded line pre-pass instead of preceding it.
    ``fingerprint``: the :func:`load_fingerprint` already computed by the caller (then nothing is hashed again).
    """
    # absolute (links kept): files found by globbing are then absolute too, never read as relative to the study
    # folder by the confinement check (which a relative landing path like `omicsdw validate landing` defeated)
    folder = folder.absolute()
    with recording_inputs() as opened:
        if fingerprint is not None:
            ingest = _read_study(folder, lambda: fingerprint, reference=reference, code_version=code_version)
        else:
            with ThreadPoolExecutor(1, thread_name_prefix="omicsdw-fingerprint") as pool:
                hashing = pool.submit(load_fingerprint, folder, reference=reference, code_version=code_version)
                ingest = _read_study(folder, hashing.result, reference=reference, code_version=code_version)
    if ingest.manifest is not None and ingest.manifest.source_layout == "study_yaml":
        ingest.inputs = frozenset(opened | {MANIFEST_NAME})
    return ingest


def _read_study(folder: Path, fingerprinted: Callable[[], str], *, reference: GeneReference,
                code_version: str) -> StudyIngest:
    """:func:`read_study` with the fingerprint from ``fingerprinted``, called only once the assays are read."""
    issues = IssueLog(folder.name)
    valid_id, id_problem = declared_study_id(folder)
    found = IssueLog(folder.name)
    manifest = discover_study(folder, issues=found)
    if id_problem is not None:  # report the id once, the manifest's other problems too, and read nothing
        issues.add(id_problem)
        issues.issues += [i for i in found.issues if i.column not in ("study_id", "cancer_study_identifier")]
        return StudyIngest(None, folder, None, issues, fingerprinted())
    issues.issues += found.issues
    assert valid_id is not None  # declared_study_id gives an id or a problem
    study_id = manifest.study_id if manifest else valid_id
    issues.study_id = study_id
    if manifest is None:
        return StudyIngest(study_id, folder, manifest, issues, fingerprinted())
    result = StudyIngest(study_id, folder, manifest, issues, "")  # the hash is still running: set below
    sheet, subjects, sample_map = _read_sample_tables(folder, manifest, issues=issues)
    context = readers.AssayContext(study_id=study_id, folder=folder, manifest=manifest, reference=reference,
                                  samples=sheet.samples if sheet else None, sample_map=sample_map, issues=issues,
                                  attributes=sheet.attributes if sheet else None)
    mapped_samples: list[pl.DataFrame] = []
    derived: list[pl.DataFrame] = []
    counted: dict[str, set[str]] = {}
    for assay in manifest.assays:
        try:
            files = resolve_study_path(folder, assay.path)
        except ValueError as exc:
            issues.error("path_outside_study", f"assay {assay.name!r}: {exc}; nothing read", file=MANIFEST_NAME,
                         column=f"assays.{assay.name}.path")
            continue
        folder_input = assay.format == "10x_mtx"  # a Cell Ranger matrix folder
        odd = [] if folder_input else [(f, reason) for f in files if (reason := not_a_file(f))]
        if odd:
            issues.error("unreadable_file", odd[0][1], file=str(odd[0][0].relative_to(folder.resolve())))
            continue
        if not files or not all(f.is_dir() if folder_input else f.is_file() for f in files):
            what = "folder" if folder_input else "file"
            issues.error("file_missing", f"assay {assay.name!r}: no {what} matches {assay.path!r}", file=assay.path)
            continue
        try:
            output = READERS[assay.kind](assay, files, context)
        except InputError as exc:
            issues.add(exc.issue)
            continue
        except READ_ERRORS as exc:  # a reader path without its own check
            issues.add(unreadable(assay.path, exc).issue)
            continue
        except pl.exceptions.PolarsError as exc:
            issues.error("unreadable_table", f"cannot parse file: {exc}", file=assay.path)
            continue
        for table, frame in output.tables.items():
            result.add(table, frame, expected_rows=output.expected_rows.get(table), assay=assay.name)
        result.add("gene_id_map", output.gene_map)
        mapped_samples.append(output.samples)
        if output.derived_samples is not None:
            derived.append(output.derived_samples)
        if "rna_counts" in output.tables:  # the samples differential expression fits for this assay
            held = output.derived_samples if output.derived_samples is not None else output.samples
            counted[assay.name] = set(held["sample_id"].drop_nulls().to_list())
        for table in output.tables:  # keyed by table, as the assets report it (mutation_status -> its table)
            result.metadata.setdefault(table, {})[assay.name] = output.metadata
    samples = _study_samples(sheet, mapped_samples)
    profiles = pl.concat(derived) if derived else None
    if profiles is not None:
        samples = pl.concat([samples, profiles.select("sample_id", "subject_id")]).unique(
            "sample_id", keep="first", maintain_order=True)
    attributes = sheet.attributes.select("sample_id", "attribute", "value") if sheet else None
    if profiles is not None:  # contrasts may name the profiles' cell_type / parent_sample_id
        attributes = pl.concat([f for f in (attributes, _profile_attributes(profiles, sheet).select(
            "sample_id", "attribute", "value")) if f is not None])
    _check_contrasts(folder, manifest, attributes, subjects, counted=counted, issues=issues)
    tool_qc = _read_tool_qc(folder, samples, sample_map, sheet.attributes if sheet else None, issues=issues)
    result.fingerprint = fingerprinted()
    _add_study_tables(result, manifest, samples, sheet, subjects, tool_qc, profiles, reference=reference,
                      code_version=code_version)
    check_study_gene_sets(folder, manifest, reference=reference, issues=issues)
    return result


SKIPPED_CONTRAST = ("; differential expression skips this contrast (the study's other contrasts and tables are "
                    "computed and published)")
"""End of an ``invalid_contrast`` warning: what happens to the contrast and to the rest of the study."""
SKIPPED_ON_ASSAY = ("; differential expression skips it on assay {assay!r} (another count assay whose samples "
                    "support it still fits it; the study's other contrasts and tables are computed and published)")
"""End of an ``invalid_contrast`` warning about one count assay's samples: the DE stage skips per (assay,
contrast), so the contrast is not skipped as a whole."""


def _check_contrasts(folder: Path, manifest: StudyManifest, attributes: pl.DataFrame | None,
                     subjects: SubjectSheet | None, *, counted: dict[str, set[str]] | None = None,
                     issues: IssueLog) -> None:
    """Contrasts the samples cannot support: located ``invalid_contrast`` warnings at ingest (study.yaml line and
    key), so ``omicsdw validate`` names them before the DE stage skips them.

    A contrast that names no sample attribute or a level the factor never takes, a compared level without samples
    (after the contrast's ``filter``), a ``numeric_covariates`` value that is no number, or a design that is not
    full rank or leaves no residual degrees of freedom (:func:`check_design` on the samples holding the factor) is
    a warning, not an error: the DE stage skips that contrast and computes the others, and the study is published
    (one bad contrast does not withhold the study). A level of one sample is fitted (as DESeq2 fits it) when the
    design leaves residual degrees of freedom. A contrast name used twice stays an error: the table's rows of the
    two could not be told apart. ``attributes``: (sample_id, attribute, value) of the sample table and of derived
    samples (pseudobulk profiles). The design is checked on the sample table's samples, those with counts being
    among them; then, when it passes there, on each count assay's own samples (``counted``: assay -> sample ids
    with counts), as the DE stage fits it: a level whose samples are in the sample table but have no counts (a glob
    that matches a few of the files) is a warning naming the assay, not a contrast the DE stage leaves out unsaid.
    """
    if not manifest.contrasts:
        return
    try:
        lines = read_manifest_data(folder / MANIFEST_NAME)[1] if manifest.source_layout == "study_yaml" else {}
    except (yaml.YAMLError, ValueError, OSError):
        lines = {}
    known = set() if attributes is None else set(attributes["attribute"])
    known |= set() if subjects is None else set(subjects.attributes["attribute"])
    unused = _contrasts_unused(manifest)
    seen: set[str] = set()
    for index, contrast in enumerate(manifest.contrasts):
        where = f"contrasts[{index}]"
        line = lines.get(where)
        if contrast.name in seen:
            issues.error("invalid_contrast", f"contrast name {contrast.name!r} is used twice", file=MANIFEST_NAME,
                         line=line, column=f"{where}.name")
        seen.add(contrast.name)
        if unused is not None:
            issues.warning("invalid_contrast", f"contrast {contrast.name!r}: {unused}", file=MANIFEST_NAME,
                           line=line, column=f"{where}.name")
            continue  # its design is never fitted: no warning about it
        if attributes is None:
            continue  # samples come from the assays: the DE stage checks the design
        found = len(issues.issues)
        skipped = functools.partial(_skipped_contrast, issues, contrast.name, where=where, line=line)
        for key, column in [("factor", contrast.factor), *(("covariates", c) for c in contrast.covariates)]:
            if column not in known:
                skipped(key, f"{key} {column!r} is no sample attribute (known: {', '.join(sorted(known)) or 'none'})")
        levels = set(attributes.filter(pl.col("attribute") == contrast.factor)["value"])
        sample_attributes = set(attributes["attribute"])
        for key, level in (("test", contrast.test), ("reference", contrast.reference)):
            if levels and level not in levels:
                skipped(key, f"{key} level {level!r} is not a value of {contrast.factor!r} (values: "
                             f"{', '.join(sorted(levels))})")
            elif (levels and set(contrast.filter) <= sample_attributes  # not a subject attribute's filter
                  and _samples_at_level(attributes, contrast.factor, level, where=contrast.filter) == 0):
                chosen = " and ".join(f"{k} = {' or '.join(map(str, v))}" for k, v in contrast.filter.items())
                skipped(key, f"{key} level {level!r} of {contrast.factor!r} has no sample with {chosen}")
        if set(contrast.filter) <= sample_attributes:
            _check_covariate_values(contrast, attributes, where=where, line=line, issues=issues)
        if not any(i.code == "invalid_contrast" for i in issues.issues[found:]):
            design = _contrast_design(contrast, attributes)
            if design is not None:
                skipped("factor", design)
                continue
            for assay, held in (counted or {}).items():  # the samples the DE stage fits: those with counts
                design = _contrast_design(contrast, attributes, among=held)
                if design is not None:
                    skipped("factor", f"on assay {assay!r} ({len(held)} sample(s) with counts): {design}",
                            assay=assay)


COUNT_KINDS = ("rna_counts", "sc_rna_counts")
"""Assay kinds that give differential expression its counts (single-cell counts through pseudobulk profiles)."""


def _contrasts_unused(manifest: StudyManifest) -> str | None:
    """Why nothing in the warehouse can use the study's contrasts, or None when something can.

    DE (DESeq2) needs counts; without them only ``biomarker_candidates`` reads a contrast (Welch tests of log2 RNA
    and protein, so a study needs both). A proteomics-only study's contrast was silently ignored (small19). A
    protein-level DE (limma-style moderated t on log intensities) would be the fuller answer; it is not built.
    """
    kinds = {a.kind for a in manifest.assays}
    if kinds & set(COUNT_KINDS) or {"rna_abundance", "protein_abundance"} <= kinds:
        return None
    return (f"differential expression needs RNA counts (an assay of kind {' or '.join(COUNT_KINDS)}) and the study "
            f"has none (assay kinds: {', '.join(sorted(kinds)) or 'none'}); it skips this contrast, and nothing else "
            "uses it (biomarker_candidates compares a contrast's groups only in a study with RNA and protein); the "
            "study's tables are computed and published")


def _skipped_contrast(issues: IssueLog, name: str, key: str, message: str, *, where: str, line: int | None,
                      assay: str | None = None) -> None:
    """An ``invalid_contrast`` warning at the contrast's line and ``key``, saying the contrast is skipped (on
    ``assay`` only, when given).
    """
    ending = SKIPPED_CONTRAST if assay is None else SKIPPED_ON_ASSAY.format(assay=assay)
    issues.warning("invalid_contrast", f"contrast {name!r}: {message}{ending}", file=MANIFEST_NAME,
                   line=line, column=f"{where}.{key}")


def _contrast_samples(contrast: Contrast, attributes: pl.DataFrame) -> pl.DataFrame:
    """``sample_id`` of the samples the contrast uses: those with a value of its factor, after its ``filter``."""
    chosen = attributes.filter(pl.col("attribute") == contrast.factor, pl.col("value").is_not_null()).select(
        "sample_id").unique()
    for attribute, kept in contrast.filter.items():
        chosen = chosen.join(attributes.filter(pl.col("attribute") == attribute, pl.col("value").is_in(kept))
                             .select("sample_id"), on="sample_id", how="semi")
    return chosen


def _contrast_design(contrast: Contrast, attributes: pl.DataFrame, *, among: set[str] | None = None) -> str | None:
    """Why the design of ``contrast`` cannot be fitted on the samples holding its factor (after its ``filter``),
    by :func:`check_design`; None when it can, or when a column is not a sample attribute (a subject's: the DE
    stage checks it). A sample without a covariate's value is left out here: the DE stage names it if it has counts.
    ``among``: only these samples (an assay's samples with counts).
    """
    from transforms.expression.design import DesignError, check_design

    columns = [contrast.factor, *contrast.covariates]
    if not set([*columns, *contrast.filter]) <= set(attributes["attribute"]):
        return None
    chosen = _contrast_samples(contrast, attributes)
    if among is not None:
        chosen = chosen.filter(pl.col("sample_id").is_in(sorted(among)))
    wide = (attributes.filter(pl.col("attribute").is_in(columns))
            .pivot(on="attribute", index="sample_id", values="value", aggregate_function="first"))
    table = chosen.join(wide, on="sample_id", how="left").drop_nulls(columns).sort("sample_id")
    try:
        check_design(table, factor=contrast.factor, test=contrast.test, reference=contrast.reference,
                     covariates=contrast.covariates, numeric=contrast.numeric_covariates)
    except DesignError as exc:
        return str(exc)
    return None


def _check_covariate_values(contrast: Contrast, attributes: pl.DataFrame, *, where: str, line: int | None,
                            issues: IssueLog) -> None:
    """Covariate values of the samples the contrast uses (those with a factor value, after its ``filter``).

    A ``numeric_covariates`` value that is missing or no finite number is an ``invalid_contrast`` warning naming
    sample and value (the DE stage skips the contrast). A categorical covariate whose values look like a measurement
    (:func:`looks_like_measurement`: numbers, more than two distinct, some not an integer or most held by one sample
    only) is a ``numeric_covariate_as_levels`` warning: it is fitted as that many levels where R's DESeq2 would fit
    a numeric column as one slope. A batch coded 1 / 2, or 1, 1, 2, 3, 3, 4, is labels: not warned.
    """
    chosen = _contrast_samples(contrast, attributes)
    for column in contrast.covariates:
        held = attributes.filter(pl.col("attribute") == column)
        if held.is_empty():
            continue  # a subject attribute (or none): the DE stage checks it
        table = chosen.join(held.select("sample_id", "value"), on="sample_id", how="left").sort("sample_id")
        text = table["value"].str.strip_chars()
        parsed = text.cast(pl.Float64, strict=False)
        numbers = parsed.is_not_null() & parsed.is_finite().fill_null(False)
        if column in contrast.numeric_covariates:
            bad = table.filter(~numbers)
            if not bad.is_empty():
                sample, value = bad.row(0)
                shown = "missing" if value is None or not value.strip() else repr(value)
                issues.warning("invalid_contrast", f"contrast {contrast.name!r}: numeric covariate {column!r} of "
                               f"sample {sample!r} is {shown}, not a finite number ({bad.height} such sample(s))"
                               f"{SKIPPED_CONTRAST}", file=MANIFEST_NAME, line=line,
                               column=f"{where}.numeric_covariates")
            continue
        if looks_like_measurement(table["value"]):
            issues.warning("numeric_covariate_as_levels", f"contrast {contrast.name!r}: covariate {column!r} "
                           f"holds numbers and is fitted as {text.n_unique()} levels (one coefficient each); if "
                           f"{column!r} is a measurement (RIN, age) rather than labels, list it under "
                           "numeric_covariates to fit one slope, as R's DESeq2 fits a numeric column",
                           file=MANIFEST_NAME, line=line, column=f"{where}.covariates")


def _samples_at_level(attributes: pl.DataFrame, factor: str, level: str, *, where: dict[str, list[str]]) -> int:
    """Samples whose ``factor`` is ``level`` and that hold one of the listed values of every ``where`` attribute."""
    chosen = attributes.filter(pl.col("attribute") == factor, pl.col("value") == level).select("sample_id")
    for attribute, values in where.items():
        chosen = chosen.join(attributes.filter(pl.col("attribute") == attribute, pl.col("value").is_in(values))
                             .select("sample_id"), on="sample_id", how="semi")
    return chosen["sample_id"].n_unique()


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
        odd = [(f, reason) for f in files if (reason := not_a_file(f))]
        if odd and issues is not None:
            issues.error("unreadable_file", odd[0][1], file=str(odd[0][0].relative_to(folder.resolve())))
        if odd:
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


def _read_single_cell(assay: Assay, files: list[Path], context: readers.AssayContext) -> readers.AssayOutput:
    """:func:`transforms.ingest.single_cell.read_single_cell`, imported on first use: its h5py and scipy.sparse
    cost ~0.35 s of start-up that a study without single-cell data never needs.
    """
    from transforms.ingest.single_cell import read_single_cell

    return read_single_cell(assay, files, context)


READERS: dict[str, Callable[[Assay, list[Path], readers.AssayContext], readers.AssayOutput]] = {
    "rna_counts": readers.read_rna,
    "rna_abundance": readers.read_rna,
    "variants": readers.read_variants,
    "mutation_status": readers.read_mutation_matrix,
    "copy_number": readers.read_copy_number,
    "protein_abundance": readers.read_proteins,
    "sc_rna_counts": _read_single_cell,
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
        except InputError as exc:
            issues.add(exc.issue)
        except ValueError as exc:
            issues.error("path_outside_study", f"{exc}; nothing read", file=MANIFEST_NAME)
        except READ_ERRORS as exc:
            issues.add(unreadable(relative, exc).issue)
        return None

    sheet = read(manifest.samples, read_samples)
    subjects = read(manifest.subjects, read_subjects)
    sample_map = read(manifest.sample_map, read_sample_map)
    if isinstance(sample_map, pl.DataFrame) and manifest.sample_map is not None:
        _check_sample_map_assays(sample_map, manifest, file=manifest.sample_map, issues=issues)
    return sheet, subjects, sample_map  # type: ignore[return-value]


def _check_sample_map_assays(sample_map: pl.DataFrame, manifest: StudyManifest, *, file: str,
                             issues: IssueLog) -> None:
    """One ``unknown_assay`` warning per ``sample_map`` assay name that no assay of the manifest has (a typo there
    made the rows apply to nothing, silently: the labels were then read as sample ids, or failed without a hint).
    """
    known = [a.name for a in manifest.assays] + [TOOL_QC_ASSAY]
    rows = sample_map.filter(pl.col("assay").is_not_null() & ~pl.col("assay").is_in(known))
    for assay, line, count in rows.group_by("assay", maintain_order=True).agg(
            pl.col("line").first(), pl.len()).iter_rows():
        close = difflib.get_close_matches(assay, known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (assays: {', '.join(known[:-1]) or 'none'})"
        issues.warning("unknown_assay", f"sample_map names assay {assay!r}, which the study does not declare{hint}; "
                       f"its {count} row(s) apply to no assay", file=file, line=line, column="assay")


def _study_samples(sheet: SampleSheet | None, mapped: list[pl.DataFrame]) -> pl.DataFrame:
    """The study's samples (sample_id, subject_id): the sample table's, else those the assays' labels defined."""
    if sheet is not None:
        return sheet.samples.select("sample_id", "subject_id")
    found = [m.select("sample_id", "subject_id") for m in mapped if m.height]
    return (pl.concat(found).drop_nulls("sample_id").unique("sample_id", keep="first", maintain_order=True)
            if found else pl.DataFrame(schema={"sample_id": pl.String, "subject_id": pl.String}))


def _read_tool_qc(folder: Path, samples: pl.DataFrame, sample_map: pl.DataFrame | None,
                  known: pl.DataFrame | None, *, issues: IssueLog) -> pl.DataFrame | None:
    """Sample attributes of every ``multiqc_general_stats.txt`` anywhere in the study folder (None: no file).

    A value for a (sample, attribute) that ``known`` (the sample table's attributes) or an earlier file already has
    is a ``duplicate_attribute`` warning and is not stored.
    """
    taken = known.select("sample_id", "attribute") if known is not None else None
    frames = []
    for path in sorted(path for path, entry in walk_study(folder) if entry.name == MULTIQC_STATS):
        relative = str(path.relative_to(folder))
        try:
            confine(folder, path)
            rows = read_tool_qc(path, samples=samples, sample_map=sample_map, issues=issues, display_name=relative)
        except ValueError as exc:
            issues.error("path_outside_study", f"{exc}; nothing read", file=relative)
            continue
        except InputError as exc:
            issues.add(exc.issue)
            continue
        except READ_ERRORS as exc:
            issues.add(unreadable(relative, exc).issue)
            continue
        if taken is not None:
            for sample_id, attribute, line in rows.join(taken, on=["sample_id", "attribute"]).select(
                    "sample_id", "attribute", "line").iter_rows():
                issues.warning("duplicate_attribute", f"sample {sample_id!r} already has {attribute!r} (sample table "
                               "or an earlier MultiQC file); this value is not stored", file=relative, line=line,
                               column=attribute)
            rows = rows.join(taken, on=["sample_id", "attribute"], how="anti")
        frames.append(rows)
        taken = rows.select("sample_id", "attribute") if taken is None else pl.concat(
            [taken, rows.select("sample_id", "attribute")])
    return pl.concat(frames) if frames else None


def _add_study_tables(result: StudyIngest, manifest: StudyManifest, samples: pl.DataFrame,
                      sheet: SampleSheet | None, subjects: SubjectSheet | None, tool_qc: pl.DataFrame | None,
                      profiles: pl.DataFrame | None, *, reference: GeneReference, code_version: str) -> None:
    """studies, subjects, samples and their attributes (the sample table's, then tool QC values it lacks).

    The studies row records the gene reference and the code the study was loaded with, so the nightly schedule
    compares them with today's without hashing the study's files again.

    ``profiles``: samples an assay made from others (pseudobulk profiles), given their parent's attributes
    plus ``cell_type`` and ``parent_sample_id``.
    """
    sid = result.study_id
    subject_ids = samples.select("subject_id")
    if subjects is not None:
        subject_ids = pl.concat([subjects.subjects.select("subject_id"), subject_ids])
    lit = pl.lit(sid).alias("study_id")
    result.add("samples", samples.select(lit, "sample_id", "subject_id"))
    result.add("subjects", subject_ids.unique(maintain_order=True).select(lit, "subject_id"))
    attributes = [f.select("sample_id", "attribute", "value", "value_type")
                  for f in (sheet.attributes if sheet else None, tool_qc,
                            _profile_attributes(profiles, sheet) if profiles is not None else None)
                  if f is not None]
    if attributes:
        result.add("sample_attributes", pl.concat(attributes).select(lit, "sample_id", "attribute", "value",
                                                                     "value_type"))
    if subjects is not None:
        result.add("subject_attributes", subjects.attributes.select(lit, "subject_id", "attribute", "value",
                                                                    "value_type"))
    study = pl.DataFrame({
        "study_id": [sid], "name": [manifest.name], "description": [manifest.description],
        "organism": [manifest.organism], "reference_genome": [manifest.reference_genome],
        "source_layout": [manifest.source_layout], "content_hash": [result.fingerprint],
        "gene_reference": [str(reference.release.get("source", ""))], "n_samples": [samples.height],
        "manifest": [manifest.model_dump_json()], "loaded_at": [datetime.now(UTC)],
        "gene_reference_fingerprint": [reference.fingerprint], "code_fingerprint": [code_version],
    }, schema=polars_schema("studies"))
    result.add("studies", study)


def _profile_attributes(profiles: pl.DataFrame, sheet: SampleSheet | None) -> pl.DataFrame:
    """Attributes of derived samples: their parent's (so a contrast on a sample attribute applies to them),
    then ``cell_type`` and ``parent_sample_id``, which replace parent attributes of those names.
    """
    own = profiles.unpivot(index="sample_id", on=["cell_type", "parent_sample_id"], variable_name="attribute",
                           value_name="value").with_columns(pl.lit("string").alias("value_type"))
    if sheet is None:
        return own
    inherited = profiles.select("sample_id", "parent_sample_id").join(
        sheet.attributes.select(pl.col("sample_id").alias("parent_sample_id"), "attribute", "value", "value_type"),
        on="parent_sample_id").filter(~pl.col("attribute").is_in(["cell_type", "parent_sample_id"]))
    return pl.concat([inherited.select(own.columns), own])


def declared_study_id(folder: Path) -> tuple[str | None, Issue | None]:
    """The study id a folder declares (study.yaml ``study_id`` or cBioPortal ``cancer_study_identifier``),
    validated by :func:`schemas.manifest.check_study_id`: ``(id, None)`` or ``(None, invalid_study_id issue)``.

    A folder whose manifest declares no id (unreadable, invalid YAML, key absent) keeps its folder name, so its
    failure still has a partition, but only when that name is a valid id too. An invalid declared id is never
    replaced by the folder name: the author meant that id. The issue's ``file`` is relative to the folder.
    """
    declared, source, line, column = _declared(folder)
    if declared is not None:
        problem = study_id_problem(declared)
        if problem is None:
            return str(declared), None
        return None, Issue(source, "invalid_study_id", "error", f"{problem}; the folder is not loaded",
                           line, column)
    problem = study_id_problem(folder.name)
    if problem is None:
        return folder.name, None
    return None, Issue(source, "invalid_study_id", "error",
                       f"no valid {column or 'study_id'} is declared and the folder name cannot stand in: "
                       f"{problem}; declare one or rename the folder (it is not loaded)", None, column)


_T = TypeVar("_T")
_Declared = tuple[object | None, str, int | None, str]
_DECLARED: dict[str, tuple[tuple[int, int, int, int], _Declared]] = {}
"""Folder -> (stamp of its study.yaml, what it declares). A build or a sensor run scans the landing ~3 times for each
study it handles; reading, copying and resolving every manifest made a scan cost ~0.2 ms per study in the landing
(~0.6 s for each study handled at 1,000 studies); with the stamps it is a few stats per study."""


SETTLED_NS = 2_000_000_000
"""A study.yaml changed in the last 2 s is read again at every scan: file times move in steps of a clock tick, so
an edit of the same size right after a read could otherwise keep the stamp it was read with (git's "racy" rule)."""


def manifest_stamp(folder: Path) -> tuple[int, int, int, int] | None:
    """Inode, size, mtime and ctime of the folder's study.yaml when it and the folder are no symlinks, it is a
    regular file and it has not changed for :data:`SETTLED_NS` (any later edit, replacement or chmod changes the
    stamp); None otherwise: then memoise nothing.
    """
    try:
        if stat.S_ISLNK(os.lstat(folder).st_mode):
            return None
        st = os.lstat(folder / MANIFEST_NAME)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < SETTLED_NS:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def per_manifest(cache: dict[str, tuple[tuple[int, int, int, int], _T]], folder: Path, read: Callable[[], _T]) -> _T:
    """``read()`` of what the folder's study.yaml says, kept in ``cache`` while its :func:`manifest_stamp` holds
    (an exception of ``read`` propagates and nothing is kept).
    """
    stamp, seen = manifest_stamp(folder), cache.get(str(folder))
    if stamp is not None and seen is not None and seen[0] == stamp:
        return seen[1]
    value = read()
    if stamp is not None and manifest_stamp(folder) == stamp:  # unchanged while read
        cache[str(folder)] = (stamp, value)
    return value


def _declared(folder: Path) -> _Declared:
    """(declared id as written or None, file it is in, its line, its key); unreadable manifests declare none."""
    if (folder / MANIFEST_NAME).is_file():
        def read() -> _Declared:
            try:
                confine(folder, MANIFEST_NAME)
                data, lines = read_manifest_data(folder / MANIFEST_NAME)
                return data.get("study_id"), MANIFEST_NAME, lines.get("study_id"), "study_id"
            except (yaml.YAMLError, ValueError, OSError):
                return None, MANIFEST_NAME, None, "study_id"

        return per_manifest(_DECLARED, folder, read)
    if not is_cbioportal_study(folder):
        return None, MANIFEST_NAME, None, "study_id"
    declared, line, column = None, None, "cancer_study_identifier"
    try:
        confine(folder, META_STUDY)
        for number, text in iter_lines(folder / META_STUDY):
            key, _, value = text.partition(":")
            if key.strip() == column and value.strip():
                declared, line = value.strip(), number
    except (ValueError, OSError, EOFError, zlib.error):
        pass
    return declared, META_STUDY, line, column


def study_id_location(folder: Path) -> tuple[str, int | None, str]:
    """Where the folder declares its study id: (file relative to the folder, 1-based line or None, key)."""
    _, source, line, column = _declared(folder)
    return source, line, column


def study_key(folder: Path) -> str | None:
    """The validated study id of a folder (see :func:`declared_study_id`); None when it has none."""
    return declared_study_id(folder)[0]


def scan_landing(landing: Path) -> tuple[dict[str, Path], list[Issue]]:
    """Study id -> folder for every study directly under ``landing`` (or ``landing`` itself), and one error
    :class:`Issue` per folder that is not loaded.

    ``file`` of an issue is relative to ``landing`` (``a=b/study.yaml``). Codes: ``not_a_study`` (no study.yaml
    or meta_study.txt, or one that is not a file), ``invalid_study_id`` (see :func:`declared_study_id`),
    ``duplicate_study_id`` (two folders declare one id, or ids that differ only in case, which name one folder on a
    case-insensitive file system: neither is loaded; one issue per folder, naming all of them). Hidden folders
    (``.name``) are skipped by design.
    """
    itself = is_study_folder(landing) or (landing / MANIFEST_NAME).exists()
    folders = [landing] if itself else sorted(
        p for p in landing.iterdir() if p.is_dir() and not p.name.startswith("."))
    issues: list[Issue] = []
    by_id: dict[str, list[tuple[str, Path]]] = {}
    for folder in folders:
        prefix = "" if folder == landing else f"{folder.name}/"
        bad = [n for n in (MANIFEST_NAME, META_STUDY) if (folder / n).exists() and not (folder / n).is_file()]
        if bad and not is_study_folder(folder):
            issues.append(Issue(prefix + bad[0], "not_a_study", "error",
                                f"{bad[0]} is a directory, not a file; the folder is not loaded"))
            continue
        if not is_study_folder(folder):
            issues.append(Issue(prefix.rstrip("/") or ".", "not_a_study", "error",
                                f"folder has neither {MANIFEST_NAME} nor {META_STUDY}; not loaded"))
            continue
        sid, problem = declared_study_id(folder)
        if problem is not None:
            issues.append(replace(problem, file=prefix + problem.file))
            continue
        assert sid is not None
        by_id.setdefault(sid.lower(), []).append((sid, folder))  # ids are ASCII: lower() is their case fold
    found: dict[str, Path] = {}
    for same in by_id.values():
        if len(same) == 1:
            found[same[0][0]] = same[0][1]
            continue
        names = ", ".join(repr(f.name) for _, f in same)
        ids = sorted({sid for sid, _ in same})
        why = (f"study id {ids[0]!r} is declared by folders {names}: the id is ambiguous" if len(ids) == 1 else
               f"study ids {', '.join(map(repr, ids))} (folders {names}) differ only in case: on a case-insensitive "
               "file system (macOS, Windows, most network shares) their lake partitions and report folders are one "
               "folder")
        for _, folder in same:
            _, source, line, column = _declared(folder)
            issues.append(Issue(f"{folder.name}/{source}", "duplicate_study_id", "error",
                                f"{why}, so none of them is loaded; give each study its own id", line, column))
    return found, issues


def find_studies(landing: Path) -> dict[str, Path]:
    """Study id -> folder of every valid, unambiguous study under ``landing``; problems: :func:`scan_landing`."""
    return scan_landing(landing)[0]
