"""What every proteomics parser shares: protein identifiers, sample labels and abundance cells.

MaxQuant, DIA-NN, FragPipe and the RPPA readers differ only in header names. Each reads its file into a frame of
strings (one row per protein group), names the sample columns, and hands both to :func:`protein_assay`, so
identifiers, missing values and problem cells are treated the same way whichever search engine wrote the file.

The records grain is one row per sample column and protein group: ``column`` (sample label), ``feature_id``
(group identifier as given), ``line``, ``abundance`` (Float64, null = missing), ``problem`` and ``raw`` (the cell
text when ``problem`` is set). The features grain is one row per protein group (see :data:`FEATURE_SCHEMA`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import polars as pl

from transforms.ingest.parse import ParsedAssay
from transforms.issues import InputError, Issue, IssueLog

FEATURE_SCHEMA: dict[str, pl.DataType] = {
    "feature_id": pl.String(),
    "line": pl.Int64(),
    "protein_group": pl.String(),
    "gene_names": pl.List(pl.String()),
    "accessions": pl.List(pl.String()),
    "entry_names": pl.List(pl.String()),
    "description": pl.String(),
    "antibody": pl.String(),
    "is_phospho": pl.Boolean(),
    "platform": pl.String(),
    "is_decoy": pl.Boolean(),
    "is_contaminant": pl.Boolean(),
    "only_by_site": pl.Boolean(),
}

_MISSING_TOKENS = ["", "na", "nan", "n/a", "#n/a", "null", "none"]
_UNIPROT = re.compile(r"^(?:[OPQ][0-9][A-Z0-9]{3}[0-9]|[A-NR-Z][0-9](?:[A-Z][A-Z0-9]{2}[0-9]){1,2})(?:-\d+)?$")
_FASTA = re.compile(r"^>?(?:sp|tr)\|([^|\s]+)\|([^\s|]+)(.*)$")
_GENE_IN_HEADER = re.compile(r"\bGN=(\S+)")
_DECOY_PREFIX = re.compile(r"^(?:rev__|rev_|decoy_|##)", re.IGNORECASE)
_CONTAMINANT_PREFIX = re.compile(r"^(?:con__|contam_|cont_)", re.IGNORECASE)
_RUN_EXTENSIONS = re.compile(r"\.(?:mzml|mzxml|raw|d|dia|wiff2?|mgf|gz)$", re.IGNORECASE)
_PHOSPHO = re.compile(r"(?:^|[_\-\s.])p[STY]\d+|(?i:phospho)")


def header_key(name: str) -> str:
    """Header name folded for matching: lower case, runs of spaces, dots and underscores become one space.

    ``Protein.Ids``, ``Protein IDs`` and ``protein_ids`` all become ``protein ids``.
    """
    return re.sub(r"[\s._]+", " ", name).strip().lower()


def find_column(header: Sequence[str], *names: str) -> str | None:
    """The first header cell whose :func:`header_key` equals one of ``names`` (already folded), else None."""
    keys = {header_key(h): h for h in reversed(header)}
    for name in names:
        if name in keys:
            return keys[name]
    return None


def run_label(header: str) -> str:
    r"""Sample label of a run column: the file stem of a Windows or POSIX path (``D:\x\run.mzML`` -> ``run``).

    Known raw-file extensions (``.mzML``, ``.raw``, ``.d``, ``.dia``, ``.wiff``, ...) are removed repeatedly, so
    ``run.mzML.dia`` also becomes ``run``; other dots are kept.
    """
    name = re.split(r"[\\/]", header.strip().rstrip("\\/"))[-1]
    while (stripped := _RUN_EXTENSIONS.sub("", name)) != name and stripped:
        name = stripped
    return name


def is_phospho_antibody(name: str | None) -> bool:
    """A phospho-specific antibody or site: ``Akt_pS473``, ``JNK_pT183_pT185``, ``Akt-pS473``, ``PHOSPHOPROTEIN``."""
    return name is not None and _PHOSPHO.search(name) is not None


@dataclass
class ProteinIds:
    """Accessions, entry names and header gene names found in one protein-group identifier list."""

    accessions: list[str] = field(default_factory=list)
    entry_names: list[str] = field(default_factory=list)
    header_genes: list[str] = field(default_factory=list)
    n_entries: int = 0
    n_decoy: int = 0
    n_contaminant: int = 0


def parse_protein_ids(texts: Iterable[str | None], *, separators: str = ";") -> ProteinIds:
    """Split protein identifier lists into UniProt accessions, entry names and FASTA ``GN=`` gene names.

    Entries may be bare accessions (``P04637``, isoforms ``P04637-2`` kept), FASTA-style headers
    (``sp|P04637|P53_HUMAN``, ``tr|...``, with or without ``>`` and a description), and may carry a decoy
    (``REV__``, ``rev_``, ``DECOY_``) or contaminant (``CON__``, ``contam_``, ``Cont_``) prefix, which is
    counted and removed. Anything else (``ENSEMBL:...``, ``iRT-pepA``) is not an accession.
    """
    found = ProteinIds()
    for text in texts:
        if not text:
            continue
        for raw in re.split(f"[{re.escape(separators)}]", text):
            token = raw.strip()
            if not token:
                continue
            found.n_entries += 1
            if _DECOY_PREFIX.match(token):
                found.n_decoy += 1
                token = _DECOY_PREFIX.sub("", token)
            if _CONTAMINANT_PREFIX.match(token):
                found.n_contaminant += 1
                token = _CONTAMINANT_PREFIX.sub("", token)
            if fasta := _FASTA.match(token):
                accession, entry, rest = fasta.groups()
                _append(found.accessions, accession)
                _append(found.entry_names, entry)
                if gene := _GENE_IN_HEADER.search(rest):
                    _append(found.header_genes, gene.group(1))
            elif _UNIPROT.match(token):
                _append(found.accessions, token)
    return found


def split_names(text: str | None, *, separators: str = ";") -> list[str]:
    """Non-empty, distinct names of a ``;``-joined cell, in the order given."""
    names: list[str] = []
    for part in re.split(f"[{re.escape(separators)}]", text or ""):
        _append(names, part.strip())
    return names


def _append(values: list[str], value: str) -> None:
    if value and value not in values:
        values.append(value)


def feature_row(feature_id: str, line: int | None, *, platform: str, protein_group: str | None = None,
                gene_names: Sequence[str] = (), ids: ProteinIds | None = None, description: str | None = None,
                antibody: str | None = None, is_decoy: bool | None = None, is_contaminant: bool | None = None,
                only_by_site: bool | None = None) -> dict[str, object]:
    """One row of the features frame; decoy / contaminant flags default to what the identifier prefixes say."""
    ids = ids or ProteinIds()
    if is_decoy is None and ids.n_entries:
        is_decoy = ids.n_decoy == ids.n_entries
    if is_contaminant is None and ids.n_entries:
        is_contaminant = ids.n_contaminant > 0
    return {
        "feature_id": feature_id,
        "line": line,
        "protein_group": protein_group,
        "gene_names": list(gene_names) or list(ids.header_genes),
        "accessions": ids.accessions,
        "entry_names": ids.entry_names,
        "description": description or None,
        "antibody": antibody,
        "is_phospho": is_phospho_antibody(antibody),
        "platform": platform,
        "is_decoy": is_decoy,
        "is_contaminant": is_contaminant,
        "only_by_site": only_by_site,
    }


def features_frame(rows: list[dict[str, object]]) -> pl.DataFrame:
    """The features frame (one row per protein group) with the fixed :data:`FEATURE_SCHEMA`."""
    return pl.DataFrame(rows, schema=FEATURE_SCHEMA, orient="row") if rows else pl.DataFrame(schema=FEATURE_SCHEMA)


def drop_unusable_ids(table: pl.DataFrame, id_column: str, *, issues: IssueLog, file: str) -> pl.DataFrame:
    """Remove rows with an empty or repeated identifier, one warning issue per removed row (first one kept)."""
    ids = pl.col(id_column).str.strip_chars()
    empty = table.filter(ids.is_null() | (ids == ""))
    repeated = table.filter(ids.is_not_null() & (ids != "") & ids.is_duplicated() & ~ids.is_first_distinct())
    for row in empty.iter_rows(named=True):
        issues.warning("empty_identifier", "row has no protein identifier; skipped", file=file,
                       line=row["line"], column=id_column)
    for row in repeated.iter_rows(named=True):
        issues.warning("duplicate_feature", f"identifier {row[id_column]!r} repeats an earlier row; skipped",
                       file=file, line=row["line"], column=id_column, record=row[id_column])
    return table.filter(ids.is_not_null() & (ids != "") & ids.is_first_distinct())


def protein_assay(table: pl.DataFrame, *, id_column: str, samples: dict[str, str], features: pl.DataFrame,
                  file: str, intensities: bool, metadata: dict[str, object] | None = None) -> ParsedAssay:
    """Melt a wide string table into protein records and wrap it with its features.

    ``samples`` maps each sample header to its label (file order). Missing cells (empty, ``NA``, ``NaN``; and
    zeros when the values are MS ``intensities``, as MaxQuant and FragPipe write them) give a null abundance
    without a problem; a cell that is not a number, not finite, or a negative intensity gives a null abundance
    with ``problem`` set and the text kept in ``raw``. Duplicate labels (two runs with the same file stem) are an
    error. RPPA values are log ratios: zeros and negatives are values.
    """
    labels = list(samples.values())
    seen: set[str] = set()
    for header, label in samples.items():
        if label in seen:
            raise InputError(Issue(file, "duplicate_sample", "error",
                                   f"sample label {label!r} (from column {header!r}) occurs more than once", None,
                                   header))
        seen.add(label)
    wide = table.select(pl.col(id_column).str.strip_chars().alias("feature_id"), "line",
                        *[pl.col(h).alias(label) for h, label in samples.items()])
    long = wide.unpivot(index=["feature_id", "line"], on=labels, variable_name="column", value_name="text")
    text, number = pl.col("text"), pl.col("number")
    missing = text.str.to_lowercase().is_in(_MISSING_TOKENS).fill_null(True)
    problem = (pl.when(missing).then(None)
               .when(number.is_null()).then(pl.format("non-numeric value '{}'", text))
               .when(~number.is_finite()).then(pl.format("non-finite value '{}'", text))
               .when(pl.lit(intensities) & (number < 0)).then(pl.format("negative intensity '{}'", text)))
    unmeasured = missing | (pl.lit(intensities) & (number == 0))
    records = (
        long.with_columns(text.str.strip_chars())
        .with_columns(number=text.cast(pl.Float64, strict=False))
        .with_columns(problem=problem)
        .select("column", "feature_id", pl.col("line").cast(pl.Int64),
                abundance=pl.when(~unmeasured & pl.col("problem").is_null()).then(number),
                problem="problem", raw=pl.when(pl.col("problem").is_not_null()).then(text))
    )
    meta = {"n_features": features.height, "n_samples": len(labels),
            "sample_headers": dict(zip(labels, samples, strict=True))}
    meta.update(metadata or {})
    return ParsedAssay(records=records.lazy(), columns=labels, features=features, metadata=meta)


def quantity_columns(header: Sequence[str], patterns: dict[str, re.Pattern[str]], *, quantity: str, file: str
                     ) -> dict[str, str]:
    """Sample columns of the requested ``quantity``: ``{header: sample label}`` in file order.

    ``patterns`` maps each quantity this engine writes to a regex whose group 1 is the sample label. A quantity
    the engine does not know, or one absent from the file, raises :class:`InputError` naming the quantity
    columns that are present.
    """
    matches = {q: {h: m.group(1).strip() for h in header if (m := p.match(h))} for q, p in patterns.items()}
    present = {q: list(cols) for q, cols in matches.items() if cols}
    if quantity not in patterns or quantity not in present:
        found = "; ".join(f"{q}: {', '.join(repr(c) for c in cols[:3])}{' ...' if len(cols) > 3 else ''}"
                          for q, cols in present.items()) or "none"
        raise InputError(Issue(file, "quantity_missing", "error",
                               f"quantity {quantity!r} has no sample columns in this file; "
                               f"quantities present: {found}"))
    return matches[quantity]


def matrix_assay(assay: ParsedAssay, features: pl.DataFrame) -> ParsedAssay:
    """A :func:`parse_matrix` result as a protein assay: ``value`` becomes ``abundance``, features replaced."""
    records = assay.records.select("column", "feature_id", "line", pl.col("value").alias("abundance"), "problem",
                                   "raw")
    metadata = {**assay.metadata, "n_features": features.height, "n_samples": len(assay.columns)}
    return ParsedAssay(records=records, columns=assay.columns, features=features, metadata=metadata)
