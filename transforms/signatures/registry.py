"""Gene-set libraries: GMT and signature YAML files read into ``gene_sets`` / ``gene_set_members`` rows.

A library is one file; its name is the file name without its extension(s). Three scopes: ``shipped`` (the files in
``libraries/`` beside this module, with version and licence from ``libraries/libraries.yaml``), ``warehouse`` (a
folder of libraries every study uses, ``OMICSDW_GENE_SETS``) and ``study`` (files a study declares under
``gene_sets:`` in its study.yaml). Every member identifier goes through the one gene resolver
(:func:`transforms.genes.resolve_gene_ids`); identifiers that do not map keep a NULL ``gene_id`` and are counted in
``n_mapped``, never dropped. Problems in a file are :class:`~transforms.issues.Issue` rows (file, line, reason).
"""

from __future__ import annotations

import gzip
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import yaml

from schemas.manifest import YamlRejected, check_yaml_lines, compose_yaml
from transforms.ingest.genes import GeneReference, resolve_gene_ids
from transforms.issues import Issue

LIBRARY_DIR = Path(__file__).resolve().parent / "libraries"
SUFFIXES = (".gmt.gz", ".gmt", ".yaml", ".yml")
SCOPES = ("shipped", "warehouse", "study")

MEMBER_SCHEMA = pl.Schema({
    "library": pl.String, "gene_set": pl.String, "identifier": pl.String,
    "weight": pl.Float64, "sign": pl.Int8,
})


@dataclass
class Library:
    """One parsed library file: its sets (name, description, kind) and members (one row per set and identifier)."""

    name: str
    file: str
    sets: list[dict[str, object]] = field(default_factory=list)
    members: list[dict[str, object]] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    version: str | None = None
    source_url: str | None = None
    license: str | None = None


def library_name(path: Path) -> str:
    """The library's name: its file name without ``.gmt``, ``.gmt.gz``, ``.yaml`` or ``.yml``."""
    for suffix in SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return path.stem


def is_library_file(path: Path) -> bool:
    """A file whose extension makes it a library (GMT, gzipped GMT, signature YAML)."""
    return path.is_file() and path.name.endswith(SUFFIXES)


def _text(path: Path) -> str:
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise YamlRejected(f"not UTF-8 text: byte 0x{data[exc.start]:02x} on line {line} (save the file as "
                           "UTF-8)", line) from exc


def read_gmt(path: Path, *, file: str | None = None) -> Library:
    """Read a GMT file (``name <TAB> description <TAB> gene ...`` per line); bad lines become issues."""
    file = file or path.name
    lib = Library(library_name(path), file)
    seen: set[str] = set()
    try:
        text = _text(path)
    except (OSError, YamlRejected, EOFError, gzip.BadGzipFile) as exc:
        lib.issues.append(Issue(file, "unreadable_gene_set_file", "error", f"cannot read the library: {exc}",
                                line=getattr(exc, "line", None)))
        return lib
    if not text.strip():
        lib.issues.append(Issue(file, "empty_file", "error", "the GMT file holds no gene sets"))
        return lib
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.rstrip("\r").split("\t")
        name = fields[0].strip()
        genes = [g.strip() for g in fields[2:] if g.strip()]
        if len(fields) < 3 or not name or not genes:
            lib.issues.append(Issue(file, "bad_gmt_line", "error", "a GMT line needs a set name, a description "
                                    "column and at least one gene, separated by tabs", line=number,
                                    record=line[:500]))
            continue
        if name in seen:
            lib.issues.append(Issue(file, "duplicate_gene_set", "error", f"gene set {name!r} is defined twice; "
                                    "the first definition is kept", line=number, record=line[:500]))
            continue
        seen.add(name)
        lib.sets.append({"gene_set": name, "description": fields[1].strip() or None, "kind": "set"})
        for gene in dict.fromkeys(genes):
            lib.members.append({"gene_set": name, "identifier": gene, "weight": None, "sign": None})
    return lib


def _yaml_line(text: str, name: str) -> int | None:
    """1-based line where ``name: <name>`` appears in the YAML text (for locating a bad signature)."""
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip().lstrip("- ").startswith("name:") and line.split("name:", 1)[1].strip().strip("'\"") == name:
            return number
    return None


def read_signature_yaml(path: Path, *, file: str | None = None) -> Library:
    """Read a YAML file of named signatures with ``up`` / ``down`` gene lists or gene ``weights``."""
    file = file or path.name
    lib = Library(library_name(path), file)
    try:
        text = _text(path)
        check_yaml_lines(text)
        compose_yaml(text)
        data = yaml.safe_load(text)
    except YamlRejected as exc:
        lib.issues.append(Issue(file, "bad_signature_yaml", "error", str(exc), line=exc.line))
        return lib
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        lib.issues.append(Issue(file, "bad_signature_yaml", "error", f"not valid YAML: {exc}".splitlines()[0],
                                line=mark.line + 1 if mark is not None else None))
        return lib
    except (OSError, UnicodeDecodeError) as exc:
        lib.issues.append(Issue(file, "unreadable_gene_set_file", "error", f"cannot read the library: {exc}"))
        return lib
    signatures = data.get("signatures") if isinstance(data, dict) else None
    if not isinstance(signatures, list):
        lib.issues.append(Issue(file, "bad_signature_yaml", "error",
                                "expected a top-level key 'signatures:' holding a list of signatures", line=1))
        return lib
    seen: set[str] = set()
    for index, entry in enumerate(signatures):
        where = f"signatures[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"].strip():
            lib.issues.append(Issue(file, "bad_signature", "error", f"{where}: each signature needs a 'name'",
                                    column=where))
            continue
        name = entry["name"].strip()
        line = _yaml_line(text, name)
        unknown = sorted(set(entry) - {"name", "description", "up", "down", "weights"})
        problem = None
        if unknown:
            problem = f"unknown keys {unknown}; allowed: name, description, up, down, weights"
        elif name in seen:
            problem = "this name is used twice in the file"
        elif "weights" in entry and ("up" in entry or "down" in entry):
            problem = "give either up / down gene lists or gene weights, not both"
        elif not any(k in entry for k in ("up", "down", "weights")):
            problem = "a signature needs 'up' and/or 'down' gene lists, or 'weights'"
        members: list[dict[str, object]] = []
        if problem is None and "weights" in entry:
            weights = entry["weights"]
            if not isinstance(weights, dict) or not weights:
                problem = "'weights' must be a mapping gene: number"
            else:
                for gene, weight in weights.items():
                    if isinstance(weight, bool) or not isinstance(weight, int | float):
                        problem = f"weight of {gene!r} is not a number: {weight!r}"
                        break
                    if not math.isfinite(weight):  # YAML's .nan / .inf: every weighted score would be NaN or inf
                        problem = f"weight of {gene!r} is not a finite number: {weight!r}"
                        break
                    members.append({"gene_set": name, "identifier": str(gene).strip(), "weight": float(weight),
                                    "sign": None})
        elif problem is None:
            for key, sign in (("up", 1), ("down", -1)):
                genes = entry.get(key, [])
                if not isinstance(genes, list) or not all(isinstance(g, str | int) for g in genes):
                    problem = f"'{key}' must be a list of gene identifiers"
                    break
                members += [{"gene_set": name, "identifier": str(g).strip(), "weight": None, "sign": sign}
                            for g in dict.fromkeys(genes)]
            both = ({str(m["identifier"]) for m in members if m["sign"] == 1}
                    & {str(m["identifier"]) for m in members if m["sign"] == -1})
            if problem is None and both:
                problem = f"genes in both up and down: {sorted(both)}"
            if problem is None and not members:
                problem = "the signature has no genes"
        if problem is not None:
            lib.issues.append(Issue(file, "bad_signature", "error", f"signature {name!r}: {problem}", line=line,
                                    column=where))
            continue
        seen.add(name)
        kind = "weighted" if "weights" in entry else "up_down"
        description = entry.get("description")
        lib.sets.append({"gene_set": name, "description": str(description) if description is not None else None,
                         "kind": kind})
        lib.members += members
    return lib


def read_library(path: Path, *, file: str | None = None) -> Library:
    """A GMT or signature YAML library, by its extension."""
    if path.name.endswith((".yaml", ".yml")):
        return read_signature_yaml(path, file=file)
    return read_gmt(path, file=file)


def shipped_libraries() -> list[Library]:
    """The libraries shipped in ``libraries/`` with their version, source URL and licence."""
    catalog = yaml.safe_load((LIBRARY_DIR / "libraries.yaml").read_text())
    found = []
    for name, info in catalog.items():
        lib = read_library(LIBRARY_DIR / info["file"])
        if lib.issues:
            raise ValueError(f"shipped library {name} is broken: {lib.issues[0]}")
        lib.version, lib.source_url, lib.license = info["version"], info["source_url"], info["license"]
        found.append(lib)
    return found


def folder_libraries(folder: Path) -> list[Library]:
    """Every GMT / signature YAML file directly in ``folder`` (sorted by name)."""
    return [read_library(p) for p in sorted(folder.iterdir()) if is_library_file(p)]


def library_files_digest(paths: list[Path]) -> str:
    """Hash of the libraries' names and bytes: a changed file re-reads the registry."""
    digest = hashlib.blake2b(digest_size=16)
    for path in paths:
        digest.update(path.name.encode())
        digest.update(path.read_bytes() if path.is_file() else b"<missing>")
    return digest.hexdigest()


def registry_frames(libraries: list[tuple[str, str | None, Library]], *, reference: GeneReference
                    ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``gene_sets`` and ``gene_set_members`` rows of ``(scope, study_id, library)`` triples, members resolved.

    One row per member identifier as given (genes that do not map keep a NULL gene_id); ``n_genes`` counts the
    set's distinct identifiers and ``n_mapped`` those that resolved to a gene.
    """
    member_frames, set_rows = [], []
    for scope, study_id, lib in libraries:
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}; got {scope!r}")
        members = pl.DataFrame(lib.members, schema={k: v for k, v in MEMBER_SCHEMA.items() if k != "library"},
                               orient="row")
        member_frames.append(members.with_columns(library=pl.lit(lib.name), scope=pl.lit(scope),
                                                  study_id=pl.lit(study_id, dtype=pl.String)))
        set_rows += [{**s, "library": lib.name, "library_version": lib.version, "source_url": lib.source_url,
                      "license": lib.license, "scope": scope, "study_id": study_id} for s in lib.sets]
    members = pl.concat(member_frames) if member_frames else pl.DataFrame(
        schema={**MEMBER_SCHEMA, "scope": pl.String, "study_id": pl.String})
    resolved = resolve_gene_ids(members["identifier"], reference=reference)
    members = members.join(resolved.select(pl.col("feature_id").alias("identifier"), "gene_id"),
                           on="identifier", how="left", nulls_equal=True)
    members = members.select("scope", "study_id", "library", "gene_set", "identifier", "gene_id", "weight", "sign")
    counts = members.group_by("scope", "study_id", "library", "gene_set").agg(
        n_genes=pl.col("identifier").n_unique(),
        n_mapped=pl.col("identifier").filter(pl.col("gene_id").is_not_null()).n_unique())
    set_schema = {"gene_set": pl.String, "description": pl.String, "kind": pl.String, "library": pl.String,
                  "library_version": pl.String, "source_url": pl.String, "license": pl.String,
                  "scope": pl.String, "study_id": pl.String}
    sets = (pl.DataFrame(set_rows, schema=set_schema, orient="row")
            .join(counts, on=["scope", "study_id", "library", "gene_set"], how="left", nulls_equal=True)
            .with_columns(pl.col("n_genes", "n_mapped").fill_null(0).cast(pl.Int64))
            .select("scope", "study_id", "library", "library_version", "gene_set", "kind", "description",
                    "source_url", "license", "n_genes", "n_mapped"))
    return sets, members


def unmapped_issues(members: pl.DataFrame, *, files: dict[str, str]) -> list[Issue]:
    """One warning per library listing the member identifiers that did not map to a gene (kept with NULL)."""
    issues = []
    for (library,), group in members.filter(pl.col("gene_id").is_null()).group_by("library", maintain_order=True):
        names = group["identifier"].unique(maintain_order=True).to_list()
        issues.append(Issue(files.get(str(library), str(library)), "unmapped_gene_set_member", "warning",
                            f"{len(names)} gene identifier(s) of library {library} map to no gene (kept with a "
                            f"NULL gene_id): {', '.join(names[:20])}{' ...' if len(names) > 20 else ''}"))
    return issues
