"""pydantic models of a study's input contract: ``study.yaml`` and what a cBioPortal folder translates to.

Both recognised layouts become one :class:`StudyManifest`, so everything after discovery follows one path.
"""

from __future__ import annotations

import copy
import difflib
import functools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

AssayKind = Literal["rna_counts", "rna_abundance", "variants", "mutation_status", "copy_number",
                    "protein_abundance", "sc_rna_counts"]
GeneIdType = Literal["symbol", "entrez", "ensembl", "uniprot", "auto"]

FORMATS: dict[str, set[str]] = {
    "rna_counts": {"matrix", "featurecounts", "salmon", "rsem", "star"},
    "rna_abundance": {"matrix", "salmon", "rsem", "cbioportal"},
    "variants": {"maf", "vcf"},
    "mutation_status": {"matrix"},
    "copy_number": {"gistic", "log2", "seg", "gistic_long", "gistic2_peaks"},
    "protein_abundance": {"maxquant", "diann", "fragpipe", "matrix", "rppa"},
    "sc_rna_counts": {"h5ad", "10x_mtx", "10x_h5"},
}
"""Which file layouts feed which table; ``cbioportal`` is a gene x sample matrix with Hugo/Entrez columns."""

STUDY_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
STUDY_ID_MAX_LENGTH = 64
"""A study id is a Hive partition value and a file name: letters, digits, ``_ . -``, not starting with a
punctuation mark, at most 64 characters. :func:`check_study_id` is the one check, wherever the id comes from
(``study.yaml``, a folder name, cBioPortal ``cancer_study_identifier``)."""

_STUDY_ID = re.compile(STUDY_ID_PATTERN)


def study_id_problem(value: object) -> str | None:
    """Why ``value`` is not a valid study id, or None when it is."""
    if not isinstance(value, str):
        return f"study id must be text, got {type(value).__name__}"
    if len(value) > STUDY_ID_MAX_LENGTH:
        return f"study id {value[:80]!r} is longer than {STUDY_ID_MAX_LENGTH} characters"
    if not _STUDY_ID.fullmatch(value):
        return (f"study id {value!r} may only hold letters, digits, '_', '.' and '-' and must start with a "
                "letter or digit")
    return None


def check_study_id(value: str) -> str:
    """Return ``value`` if it is a valid study id (:data:`STUDY_ID_PATTERN`); raise ValueError saying why not."""
    problem = study_id_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def check_file_name_part(value: str) -> str:
    """Return ``value`` if it can name a file in one folder (an assay or contrast name becomes part of a plot's file
    name, ``<contrast>_volcano.png``); raise ValueError saying why not. A ``/`` or a leading ``.`` let a name such as
    ``../../x`` write the plots outside the study's report folder.
    """
    if not value.strip():
        raise ValueError("an assay or contrast name may not be empty")
    if "/" in value or "\\" in value or value.startswith(".") or any(ord(c) < 32 for c in value):
        raise ValueError(f"{value!r}: an assay or contrast name names files in the study's report folder, so it may "
                         "not contain '/' or '\\' or control characters, nor start with '.'")
    return value


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

    name: Annotated[str, AfterValidator(check_file_name_part)] = Field(
        description="Unique name of the assay within the study; `sample_map.assay` refers to it.")
    kind: AssayKind = Field(description="Warehouse table the assay feeds.")
    format: str = Field(description="File layout; see FORMATS for the layouts allowed per kind.")
    path: str = Field(description="Path relative to the study folder; a glob for per-sample files "
                                  "(Salmon, RSEM, STAR), one sample per matched file.")
    gene_id_type: GeneIdType = Field("auto", description="Namespace of the feature identifiers.")
    measure: str | None = Field(None, description="rna_abundance: tpm, fpkm, rsem_normalized, zscore, ...; "
                                 "protein_abundance: log2 when the values are log2 already (not logged again).")
    strandedness: Literal["unstranded", "forward", "reverse"] | None = Field(
        None, description="STAR ReadsPerGene.out.tab: which count column (2, 3 or 4) to take.")
    platform: Literal["ms", "rppa"] = Field("ms", description="protein_abundance: mass spectrometry or RPPA.")
    quantity: Literal["lfq", "intensity", "ibaq", "razor_intensity"] = Field(
        "lfq", description="protein_abundance from a search engine: which quantity columns to read.")
    reference_genome: str | None = Field(None, description="Build of coordinates (variants, seg) when it "
                                                           "differs from the study's.")
    options: dict[str, str] = Field(default_factory=dict, description="Format-specific extras "
                                    "(e.g. the cBioPortal datatype it came from).")
    sample_column: str | None = Field(None, description="sc_rna_counts: obs (or cell_annotations) column naming "
                                                        "the sample of each cell.")
    cell_type_column: str | None = Field(None, description="sc_rna_counts: obs (or cell_annotations) column "
                                                           "naming the cell type of each cell.")
    layer: str | None = Field(None, description="sc_rna_counts h5ad: the AnnData layer holding raw counts "
                                                "(default X).")
    cell_annotations: str | None = Field(None, description="sc_rna_counts: table file (relative to the study "
                                         "folder) with a barcode column and the sample / cell type columns; "
                                         "required for 10x formats, optional for h5ad (replaces obs).")

    @model_validator(mode="after")
    def _format_fits_kind(self) -> Assay:
        if self.format not in FORMATS[self.kind]:
            raise ValueError(f"format {self.format!r} is not a {self.kind} layout; "
                             f"use one of {sorted(FORMATS[self.kind])}")
        if self.kind == "sc_rna_counts":
            self._check_single_cell()
        if self.format == "star" and self.strandedness is None:
            raise ValueError("STAR ReadsPerGene.out.tab needs `strandedness` (unstranded, forward, reverse)")
        measures = FILE_MEASURES.get(self.format, ())
        if self.kind == "rna_abundance" and measures and (self.measure or "tpm") not in measures:
            raise ValueError(f"{self.format} output holds no {self.measure!r} column; "
                             f"set `measure` to one of {list(measures)}")
        return self

    def _check_single_cell(self) -> None:
        missing = [k for k in ("sample_column", "cell_type_column") if getattr(self, k) is None]
        if missing:
            raise ValueError(f"sc_rna_counts needs {' and '.join(missing)}: the cell-level column(s) naming each "
                             "cell's sample and cell type")
        if self.format != "h5ad" and self.cell_annotations is None:
            raise ValueError(f"{self.format} files hold no cell annotations: set `cell_annotations` to a table of "
                             f"barcode, {self.sample_column}, {self.cell_type_column}")
        if self.format != "h5ad" and self.layer is not None:
            raise ValueError(f"`layer` names an AnnData layer; a {self.format} file has none (remove it)")


def level_text(value: object) -> object:
    """A sample attribute value written as a YAML number (``test: 10``, ``filter: {batch: 2}``) as its text.

    Sample attributes are text (``10`` in samples.tsv is the level '10'), but YAML reads an unquoted 10 as a number,
    and the study failed with 'Input should be a valid string' until the level was quoted. The text is the one
    written (:class:`YamlInt` / :class:`YamlFloat` from :func:`load_yaml_text`): YAML 1.1 reads ``01`` as 1,
    ``010`` as 8 (octal), ``0.50`` as 0.5, ``1_000`` as 1000 and ``1:30`` as 90, so ``str`` of the number named a
    level the user never wrote, and a filter ``{batch: 01}`` silently selected '1'. A number given in Python (not
    read from YAML) is ``str(value)``. A boolean (YAML's ``yes`` / ``no``) is not a number here: it stays refused,
    as its text could be several spellings.
    """
    if isinstance(value, YamlInt | YamlFloat):
        return value.text
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, list):
        return [level_text(v) for v in value]
    return value


class Contrast(_Strict):
    """A differential-expression comparison: ``test`` against ``reference`` levels of ``factor``."""

    name: Annotated[str, AfterValidator(check_file_name_part)]
    factor: str = Field(description="Sample attribute holding the condition.")
    test: str = Field(description="Level compared.")
    reference: str = Field(description="Baseline level.")
    covariates: list[str] = Field(default_factory=list, description="Other sample attributes in the design.")
    numeric_covariates: list[str] = Field(default_factory=list, description="Covariates (each also in "
                                          "`covariates`) fitted as one numeric slope, as R's DESeq2 fits a numeric "
                                          "colData column; the others are categorical (one coefficient per level).")
    filter: dict[str, list[str]] = Field(default_factory=dict, description="Sample attribute -> value(s): the "
                                         "contrast uses only samples holding one of them, e.g. {cell_type: B} for "
                                         "DE within one cell type of single-cell pseudobulk samples.")

    @field_validator("test", "reference", mode="before")
    @classmethod
    def _levels_as_text(cls, value: object) -> object:
        return level_text(value)

    @field_validator("filter", mode="before")
    @classmethod
    def _values_as_lists(cls, value: object) -> object:
        if isinstance(value, dict):
            return {k: level_text(v if isinstance(v, list) else [v]) for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _two_groups(self) -> Contrast:
        """A level compared with itself, or the factor also a covariate, gives no testable design."""
        if self.test == self.reference:
            raise ValueError(f"contrast {self.name!r}: test and reference are both {self.test!r}; name two levels")
        if self.factor in self.covariates:
            raise ValueError(f"contrast {self.name!r}: the factor {self.factor!r} is also listed as a covariate")
        stray = [c for c in self.numeric_covariates if c not in self.covariates]
        if stray:
            raise ValueError(f"contrast {self.name!r}: numeric_covariates {stray} must also be listed in "
                             f"covariates ({self.covariates})")
        return self


class ZscoreReference(_Strict):
    """Which samples define the per-gene mean and SD of abundance z-scores (all samples when not set)."""

    attribute: str
    values: list[str]

    @field_validator("values", mode="before")
    @classmethod
    def _values_as_text(cls, value: object) -> object:
        return level_text(value)


class QcSettings(_Strict):
    """``qc:`` in study.yaml: sample QC thresholds and what downstream stages do with failed samples.

    Thresholds are scater / nf-core style median absolute deviations (MAD, scaled to the normal SD), per count
    assay: log library size and log detected genes below median - nmads x MAD, pct_mito above median + nmads x MAD,
    median correlation below median - nmads x MAD, PCA distance above median + nmads x MAD.
    """

    nmads: float = Field(3.0, gt=0, description="MADs from the median a sample may lie before it is flagged.")
    exclude_failed: bool = Field(False, description="Declare that downstream stages should leave out samples "
                                                    "failing QC (recorded in metadata, never silent).")
    top_genes: int = Field(500, ge=2, description="Most variable genes PCA, correlation and clustering use "
                                                  "(DESeq2 plotPCA ntop = 500).")
    color_by: str | None = Field(None, description="Sample attribute colouring the report's PCA (default: the "
                                                   "first contrast's factor).")


class StudyManifest(_Strict):
    """``study.yaml``: one study folder. Paths are relative to the folder and may not leave it."""

    study_id: str = Field(description="Warehouse partition key; see STUDY_ID_PATTERN.")
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
    qc: QcSettings = Field(default_factory=QcSettings)
    source_layout: Literal["study_yaml", "cbioportal"] = "study_yaml"

    @field_validator("study_id")
    @classmethod
    def _valid_study_id(cls, value: str) -> str:
        return check_study_id(value)

    @field_validator("assays")
    @classmethod
    def _unique_assay_names(cls, assays: list[Assay]) -> list[Assay]:
        names = [a.name for a in assays]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"assay names must be unique; repeated: {dupes}")
        return assays

    @property
    def segment_assays(self) -> list[str]:
        """Copy-number assays whose gene values are placed from segments (SEG files), not measured per gene."""
        return [a.name for a in self.assays if a.kind == "copy_number" and a.format == "seg"]

    @property
    def is_human(self) -> bool:
        return self.organism.strip().lower() in {"human", "homo sapiens", "hsapiens", "9606"}


def unknown_keys(data: object) -> list[tuple[str, str | None]]:
    """Keys of a raw ``study.yaml`` mapping that no model defines: (dotted location, likely intended key or None).

    Works on the raw mapping, so a typo is named even when validation fails because of it (``fromat:`` makes
    ``format`` missing). The location is ``assay`` or ``assays[0].fromat``, as :meth:`_Strict.unknown_fields`.
    """
    found: list[tuple[str, str | None]] = []

    def walk(model: type[BaseModel], value: object, prefix: str) -> None:
        if not isinstance(value, dict):
            return
        known = list(model.model_fields)
        for key, item in value.items():
            if key not in model.model_fields:
                close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
                found.append((f"{prefix}{key}", close[0] if close else None))
                continue
            nested = _NESTED.get((model, key))
            if nested is None:
                continue
            if isinstance(item, list):
                for i, element in enumerate(item):
                    walk(nested, element, f"{prefix}{key}[{i}].")
            else:
                walk(nested, item, f"{prefix}{key}.")

    walk(StudyManifest, data, "")
    return found


_NESTED: dict[tuple[type[BaseModel], str], type[BaseModel]] = {
    (StudyManifest, "assays"): Assay, (StudyManifest, "contrasts"): Contrast,
    (StudyManifest, "zscore_reference"): ZscoreReference, (StudyManifest, "qc"): QcSettings,
}


MAX_YAML_LINE_CHARS = 1 << 18
"""Longest line a YAML input may have (256 KiB: a signature's 5,000 genes in one flow list are ~40 KB). PyYAML
scans in pure Python, about 2 s per MB: a 10 MB line is a broken file, refused before it is parsed."""

MAX_YAML_VALUES = 1_000_000
"""Most values a YAML document may hold once its aliases are expanded; more is an alias bomb ("billion laughs":
nine anchors of nine aliases each expand to 9^9 values), which would hang any walk of the data."""


class YamlRejected(ValueError):
    """A YAML input refused before or instead of parsing; ``line`` (1-based) locates it when known."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


def read_yaml_text(path: Path) -> str:
    """A YAML file's text (UTF-8, BOM allowed); undecodable bytes and overlong lines are :class:`YamlRejected`
    with their line.
    """
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise YamlRejected(f"not UTF-8 text: byte 0x{raw[exc.start]:02x} on line {line} (save the file as UTF-8)",
                           line) from exc
    check_yaml_lines(text)
    return text


class YamlInt(int):
    """An int read from YAML that keeps the scalar's text as written (``010`` is 8 with ``text`` '010')."""

    text: str


class YamlFloat(float):
    """A float read from YAML that keeps the scalar's text as written (``0.50`` is 0.5 with ``text`` '0.50')."""

    text: str


class _TextKeepingLoader(yaml.SafeLoader):
    """``SafeLoader`` whose ints and floats carry their written text (see :func:`level_text`)."""


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> YamlInt:
    number = YamlInt(loader.construct_yaml_int(node))
    number.text = node.value
    return number


def _construct_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> YamlFloat:
    number = YamlFloat(loader.construct_yaml_float(node))
    number.text = node.value
    return number


_TextKeepingLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_TextKeepingLoader.add_constructor("tag:yaml.org,2002:float", _construct_float)


def load_yaml_text(text: str) -> Any:
    """``yaml.safe_load`` of ``text``, but each int / float is a :class:`YamlInt` / :class:`YamlFloat` (an int /
    float that also holds its written text). Call :func:`compose_yaml` on ``text`` first (alias bombs).
    """
    return yaml.load(text, Loader=_TextKeepingLoader)  # a SafeLoader subclass: no Python object tags


def check_yaml_lines(text: str) -> None:
    """Refuse (:class:`YamlRejected`) a text with a line longer than :data:`MAX_YAML_LINE_CHARS`."""
    for number, line_text in enumerate(text.split("\n"), start=1):
        if len(line_text) > MAX_YAML_LINE_CHARS:
            raise YamlRejected(f"line {number} has {len(line_text):,} characters (more than "
                               f"{MAX_YAML_LINE_CHARS:,}); not read", number)


def compose_yaml(text: str) -> yaml.Node | None:
    """The YAML node graph of ``text``, refused (:class:`YamlRejected`) when its aliases expand to more than
    :data:`MAX_YAML_VALUES` values, or when a mapping gives one key twice. Sizes are memoised per node, so the
    check is linear in the file's size.

    A repeated key is an error of the YAML spec that PyYAML lets through, keeping the last value: a second
    ``contrasts:`` block appended to a study.yaml silently dropped every contrast of the first. Keys merged in
    with ``<<: *anchor`` are not repeats (they sit in the anchor's mapping, and the explicit key overrides them).
    """
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        sizes[id(node)] = 1  # a recursive alias counts once
        if isinstance(node, yaml.MappingNode):
            _check_unique_keys(node)
            total = 1 + sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(item) for item in node.value)
        else:
            total = 1
        sizes[id(node)] = min(total, MAX_YAML_VALUES + 1)
        return sizes[id(node)]

    if root is not None and size(root) > MAX_YAML_VALUES:
        raise YamlRejected(f"the YAML aliases expand to more than {MAX_YAML_VALUES:,} values (an alias bomb); "
                           "not read", root.start_mark.line + 1)
    return root


def _check_unique_keys(node: yaml.MappingNode) -> None:
    """Refuse (:class:`YamlRejected`, at the repeat's line) a mapping that gives a scalar key twice."""
    first: dict[object, tuple[int, str]] = {}
    loader = yaml.SafeLoader("")
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or (key.value == "<<" and key.tag.endswith(":merge")):
            continue
        line = key.start_mark.line + 1
        try:  # the key as loaded, compared as the loaded dict compares it: `yes` / `true`, `1` / `0x1` / `1.0`
            loaded = loader.construct_object(key)
            same: object = loaded if loaded.__hash__ is not None else (key.tag, key.value)
        except yaml.YAMLError:
            same = (key.tag, key.value)
        seen = first.get(same)
        if seen is not None:
            where = f"line {line}" if seen[0] == line else f"lines {seen[0]} and {line}"
            spelt = repr(key.value) if seen[1] == key.value else f"{seen[1]!r} / {key.value!r} (one key to YAML)"
            raise YamlRejected(f"key {spelt} is given twice ({where}): YAML keeps only the last one and "
                               "drops the first without a word; merge them into one", line)
        first[same] = (line, key.value)


def load_yaml(path: Path) -> Any:
    """Parse a YAML file safely: :func:`read_yaml_text` and :func:`compose_yaml` checks, then
    :func:`load_yaml_text` (numbers keep their written text for values that are sample attributes).
    """
    text = read_yaml_text(path)
    compose_yaml(text)
    return load_yaml_text(text)


def read_manifest_data(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """The raw mapping of a ``study.yaml`` and the 1-based line of each key (dotted as :func:`unknown_keys`).

    Raises ``yaml.YAMLError`` (syntax), ``ValueError`` (not a mapping; :class:`YamlRejected`: not UTF-8, an
    overlong line, an alias bomb) or ``OSError`` (unreadable).
    """
    data, lines = _parsed_manifest(read_yaml_text(path))
    if not isinstance(data, dict):
        raise ValueError(f"{path.name}: expected a mapping of study fields, got {type(data).__name__}")
    return copy.deepcopy(data), dict(lines)


@functools.lru_cache(maxsize=1024)
def _parsed_manifest(text: str) -> tuple[Any, dict[str, int]]:
    """The parsed YAML of a manifest text and each key's line, memoised by the text itself: a build reads every
    study's manifest again for each study (landing scans, the gene-set registry check), and parsing (twice: the
    alias check composes, then loads) costs milliseconds where reading the file costs microseconds.
    """
    root = compose_yaml(text)
    data = load_yaml_text(text)
    lines: dict[str, int] = {}
    if not isinstance(data, dict):
        return data, lines

    seen: set[int] = set()

    def walk(node: yaml.Node, prefix: str) -> None:
        if id(node) in seen:  # an alias: its keys are located where the anchor is
            return
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name = f"{prefix}.{key.value}" if prefix else str(key.value)
                lines.setdefault(name, key.start_mark.line + 1)
                walk(value, name)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines.setdefault(f"{prefix}[{i}]", item.start_mark.line + 1)
                walk(item, f"{prefix}[{i}]")

    if root is not None:
        walk(root, "")
    return data, lines


def load_manifest(path: Path) -> StudyManifest:
    """Read and validate a ``study.yaml`` (pydantic errors name the field that is wrong)."""
    data, _ = read_manifest_data(path)
    return StudyManifest.model_validate(data)


class PathOutsideStudy(ValueError):
    """A path named by a study (manifest, meta file, glob match) leaves the study folder; nothing is read."""


_CONFINED: ContextVar[set[str] | None] = ContextVar("omicsdw_confined", default=None)


@contextmanager
def recording_inputs() -> Iterator[set[str]]:
    """The paths :func:`confine` lets through while the block runs, relative to their study folder: every file a
    reader opens passes the confinement check first, so these are the study's inputs (a folder stands for the
    files under it), each as written and with its links resolved. Only the calling thread's checks are recorded
    (a context variable).
    """
    seen: set[str] = set()
    token = _CONFINED.set(seen)
    try:
        yield seen
    finally:
        _CONFINED.reset(token)


def confine(study_dir: Path, path: Path | str) -> Path:
    """The one confinement check: ``path`` (relative to ``study_dir``, or a path found inside it) with every
    symlink resolved must stay inside the resolved study folder; raise :class:`PathOutsideStudy` if not.

    Returns the path under the resolved study folder (links not followed), so issue file names stay readable.
    """
    root = study_dir.resolve()
    given = Path(path)
    if not given.is_absolute():
        if ".." in given.parts:
            raise PathOutsideStudy(f"path {str(path)!r} must stay inside the study folder (no '..')")
        given = root / given
    elif not given.is_relative_to(root) and not given.is_relative_to(study_dir.absolute()):
        raise PathOutsideStudy(f"path {str(path)!r} is absolute; name files relative to the study folder")
    if not given.resolve().is_relative_to(root):
        shown = str(path) if not Path(path).is_absolute() else Path(path).name
        raise PathOutsideStudy(f"path {shown!r} leaves the study folder (through a symbolic link)")
    inside = given if given.is_relative_to(root) else root / given.relative_to(study_dir.absolute())
    if (seen := _CONFINED.get()) is not None:  # as written and as reached: a linked folder's files are stamped
        seen.add(str(inside.relative_to(root)))  # under their real path (the walk does not enter the link)
        seen.add(str(given.resolve().relative_to(root)))
    return inside


def resolve_study_path(study_dir: Path, relative: str) -> list[Path]:
    """Resolve a manifest path (or glob) inside ``study_dir``; raise :class:`PathOutsideStudy` (a ValueError)
    if it, or any file it matches, leaves the folder (absolute, ``..`` or a symbolic link).
    """
    root = study_dir.resolve()
    if Path(relative).is_absolute():
        raise PathOutsideStudy(f"path {relative!r} is absolute; name files relative to the study folder")
    confine(study_dir, relative)
    matches = sorted(root.glob(relative)) if any(c in relative for c in "*?[") else [root / relative]
    return [confine(study_dir, match) for match in matches]


def not_a_file(path: Path) -> str | None:
    """Why an existing ``path`` cannot be read as a file (a directory, a FIFO, a device), else None.

    Checked before opening: a FIFO nobody writes to would block the read for ever.
    """
    if not path.exists() or path.is_file():
        return None
    kind = ("a directory" if path.is_dir() else "a FIFO (named pipe)" if path.is_fifo() else
            "a socket or device")
    return f"{path.name} is {kind}, not a regular file; not read"
