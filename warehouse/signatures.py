"""The gene-set registry and the cross-study signature matches in the lake (both written through the commit path).

``gene_sets`` / ``gene_set_members`` hold every library once: the shipped ones, the warehouse-wide folder
(``OMICSDW_GENE_SETS``) and each study's declared files in the landing folder. They are rewritten (one commit per
table) when any library file, the gene reference or the code changes; study runs call :func:`ensure_gene_sets`
first, as they call :func:`warehouse.reference.ensure_gene_reference`, so a study never scores against a stale
registry. ``signature_matches`` is recomputed incrementally by :func:`write_signature_matches`.
"""

from __future__ import annotations

import hashlib
import os
from functools import cached_property, partial
from pathlib import Path

import polars as pl
import yaml

from schemas.manifest import StudyManifest, load_manifest
from schemas.tables import polars_schema
from transforms.ingest.genes import GeneReference
from transforms.ingest.study import MANIFEST_NAME, find_studies, per_manifest, study_gene_set_files
from transforms.signatures import connectivity, registry
from transforms.signatures.enrichment import contrast_statistics, gene_set_dict
from transforms.signatures.scoring import MemberIndex, member_index
from warehouse.commit import Commit, commit_frames, unchanged
from warehouse.lake import Lake
from warehouse.versions import code_fingerprint

REGISTRY_TABLES = ["gene_sets", "gene_set_members"]
MATCHES = "signature_matches"
GENE_SETS_ENV = "OMICSDW_GENE_SETS"
"""Folder of GMT / signature YAML libraries every study uses (optional)."""


def warehouse_library_dir() -> Path | None:
    """The warehouse-wide library folder from ``OMICSDW_GENE_SETS`` (None when unset)."""
    folder = os.environ.get(GENE_SETS_ENV)
    return Path(folder) if folder else None


_MANIFESTS: dict[str, tuple[tuple[int, int, int, int], StudyManifest]] = {}
"""Study folder -> (stamp of its study.yaml, the validated manifest): the registry check below looks for every
study's libraries once or twice per study a build handles, so each study's manifest is validated once while it is
unchanged (:func:`transforms.ingest.study.per_manifest`), not once per study in the landing each time."""


def library_sources(*, landing: Path | None, library_dir: Path | None) -> list[tuple[str, str | None, Path]]:
    """(scope, study_id, file) of every non-shipped library: the warehouse folder's, then each study's."""
    return _scan_sources(landing=landing, library_dir=library_dir)[0]


def _scan_sources(*, landing: Path | None, library_dir: Path | None
                  ) -> tuple[list[tuple[str, str | None, Path]], set[str]]:
    """:func:`library_sources`, and the ids of the landing's studies whose manifest was read (their libraries are
    the files listed; a study absent from the landing or whose manifest does not load keeps its stored ones).
    """
    found: list[tuple[str, str | None, Path]] = []
    read: set[str] = set()
    if library_dir is not None and library_dir.is_dir():
        found += [("warehouse", None, p) for p in sorted(library_dir.iterdir()) if registry.is_library_file(p)]
    if landing is not None and landing.is_dir():
        for study_id, folder in find_studies(landing).items():
            if not (folder / MANIFEST_NAME).is_file():
                read.add(study_id)  # a cBioPortal folder: no libraries of its own
                continue
            try:
                manifest = per_manifest(_MANIFESTS, folder, partial(load_manifest, folder / MANIFEST_NAME))
            except (yaml.YAMLError, ValueError, OSError):
                continue  # the study's ingest reports it (a YAML syntax error too: one study's typo stops no build)
            read.add(study_id)
            found += [("study", study_id, p) for p in study_gene_set_files(folder, manifest)
                      if registry.is_library_file(p)]
    return found, read


def _kept_study_libraries(lake: Lake, *, read: set[str], broken: set[tuple[str, str]]
                          ) -> tuple[pl.DataFrame, pl.DataFrame] | None:
    """Stored ``gene_sets`` / ``gene_set_members`` rows of study libraries the landing no longer gives: those of a
    study without a folder there (kept whole until ``omicsdw remove``, which deletes these rows too) or whose
    study.yaml does not load, and a library file of a study that now has errors (the study's failed ingest keeps
    its previous load, whose scores and enrichment name that library). None when there are none.
    """
    if not lake.exists("gene_sets") or not lake.exists("gene_set_members"):
        return None
    keep = ((pl.col("scope") == "study") & pl.col("study_id").is_not_null()
            & (~pl.col("study_id").is_in(sorted(read))
               | pl.concat_str("study_id", "library", separator="\x00").is_in(
                   sorted(f"{s}\x00{lib}" for s, lib in broken))))
    sets = lake.scan("gene_sets").filter(keep).collect()
    if not sets.height:
        return None
    return sets, lake.scan("gene_set_members").filter(keep).collect()


def known_libraries(*, landing: Path | None, library_dir: Path | None) -> list[str]:
    """Names of every library the registry would hold (shipped, warehouse folder, study folders), sorted; read from
    the file names and manifests, without parsing a library (a setting is checked before any work starts).
    """
    shipped = yaml.safe_load((registry.LIBRARY_DIR / "libraries.yaml").read_text())
    names = {registry.library_name(Path(info["file"])) for info in shipped.values()}
    names |= {registry.library_name(path) for _, _, path in library_sources(landing=landing, library_dir=library_dir)}
    return sorted(names)


def registry_fingerprint(sources: list[tuple[str, str | None, Path]], reference: GeneReference) -> str:
    """Hash of every library file, the gene reference and the code: the registry's commit fingerprint."""
    shipped = sorted(registry.LIBRARY_DIR.iterdir())
    digest = hashlib.blake2b(digest_size=16)
    for scope, study_id, path in sources:
        digest.update(f"{scope}|{study_id}|".encode())
        digest.update(registry.library_files_digest([path]).encode())
    digest.update(registry.library_files_digest(shipped).encode())
    digest.update(f"{reference.fingerprint}|{code_fingerprint()}".encode())
    return digest.hexdigest()


def write_gene_sets(lake: Lake, *, landing: Path | None, library_dir: Path | None = None,
                    reference: GeneReference | None = None) -> tuple[Commit, dict[str, dict[str, object]]]:
    """Commit ``gene_sets`` and ``gene_set_members`` from every library unless they already hold these files.

    Libraries with errors are left out (their study's ingest reports the errors as ingest_issues).
    """
    reference = reference or GeneReference.load()
    sources, read = _scan_sources(landing=landing, library_dir=library_dir)
    fingerprint = registry_fingerprint(sources, reference)
    lake.ensure_tables(REGISTRY_TABLES)
    done = unchanged(lake, REGISTRY_TABLES, study_id=None, fingerprint=fingerprint)
    if done is not None:
        return done, {}
    libraries: list[tuple[str, str | None, registry.Library]] = [
        ("shipped", None, lib) for lib in registry.shipped_libraries()]
    broken = []
    broken_study: set[tuple[str, str]] = set()
    for scope, study_id, path in sources:
        lib = registry.read_library(path)
        if any(i.severity == "error" for i in lib.issues):
            broken.append(f"{study_id or scope}:{path.name}")
            if study_id is not None:
                broken_study.add((study_id, registry.library_name(path)))
            continue
        libraries.append((scope, study_id, lib))
    sets, members = registry.registry_frames(libraries, reference=reference)
    kept = _kept_study_libraries(lake, read=read, broken=broken_study)
    if kept is not None:  # a study kept whole keeps its libraries: a registry rewrite used to drop them
        sets = pl.concat([sets, kept[0].select(sets.columns).cast(sets.schema)])
        members = pl.concat([members, kept[1].select(members.columns).cast(members.schema)])
    summary = (sets.group_by("scope", "library").agg(sets=pl.len(), genes=pl.col("n_genes").sum(),
                                                     mapped=pl.col("n_mapped").sum()).sort("scope", "library"))
    metadata: dict[str, dict[str, object]] = {
        "gene_sets": {"libraries": {f"{r['scope']}:{r['library']}": f"{r['sets']} sets, {r['mapped']}/{r['genes']} "
                                    "members mapped" for r in summary.iter_rows(named=True)},
                      "left_out_with_errors": broken},
        "gene_set_members": {"unmapped": members.filter(pl.col("gene_id").is_null()).height}}
    commit = commit_frames(lake, [("gene_sets", sets), ("gene_set_members", members)], tables=REGISTRY_TABLES,
                           study_id=None, fingerprint=fingerprint)
    return commit, metadata


def ensure_gene_sets(lake: Lake, *, landing: Path | None, library_dir: Path | None = None) -> str:
    """Write the registry if it is missing or any library changed; its fingerprint (what a study's scores used)."""
    commit, _ = write_gene_sets(lake, landing=landing, library_dir=library_dir)
    if not commit.ok:
        raise RuntimeError(f"the gene-set registry breaks its contract: {commit.failures}")
    return str(lake.last_fingerprint("gene_sets", None))


class StudyGeneSets:
    """The gene sets a study uses (shared libraries, study_id NULL, and its own), in the forms its stages take: the
    ``gene_set_members`` rows, the library -> set -> gene ids dict (enrichment) and the member index (scores).

    The dict and the index are built on first use: a stage that finds its tables unchanged needs only the rows
    (for its fingerprint), and building both for ~325,000 members cost ~0.45 CPU s a study with libraries of its own.
    """

    def __init__(self, members: pl.DataFrame) -> None:
        self.members = members

    @cached_property
    def libraries(self) -> dict[str, dict[str, list[str]]]:
        return gene_set_dict(self.members)

    @cached_property
    def index(self) -> MemberIndex:
        return member_index(self.members)

    @cached_property
    def library_scopes(self) -> pl.DataFrame:
        """The distinct (scope, library) pairs of the members: what the prerank selection reads of them, found once
        per registry version for the shared libraries instead of once per study (~12 ms each over ~325,000 rows).
        """
        return self.members.select("scope", "library").unique()


_SHARED: dict[tuple[str, str, int], StudyGeneSets] = {}


def study_gene_sets(lake: Lake, study_id: str) -> StudyGeneSets:
    """:class:`StudyGeneSets` of a study at the registry's newest version.

    A study without libraries of its own uses exactly the shared ones, so their forms are built once per registry
    version (Delta table id and version) and process: a build used to read and reshape the ~325,000 shipped
    members twice per study (~0.4 CPU s a small study). A study with its own libraries gets them built afresh.
    """
    delta = lake.delta("gene_set_members")
    version = delta.version()
    members = lake.scan("gene_set_members", version=version)
    if members.filter(pl.col("study_id") == study_id).select(pl.len()).collect().item():
        return StudyGeneSets(members.filter(pl.col("study_id").is_null() | (pl.col("study_id") == study_id))
                                .collect())
    key = (lake.uri("gene_set_members"), str(delta.metadata().id), version)
    if key not in _SHARED:
        _SHARED.clear()  # one registry version held at a time
        _SHARED[key] = StudyGeneSets(members.filter(pl.col("study_id").is_null()).collect())
    return _SHARED[key]


def write_signature_matches(lake: Lake, *, top: int = connectivity.TOP_GENES) -> tuple[Commit, dict[str, object]]:
    """Bring ``signature_matches`` up to date: keep valid rows, compute only pairs with a new or changed side."""
    lake.ensure_tables([MATCHES])
    targets, queries = [], []
    if lake.exists("differential_expression") and lake.exists("studies"):
        studies = lake.scan("studies").select("study_id").unique().collect()["study_id"].to_list()
        # each study's partition at the tables' newest version (one open each: a study's partition changes only by
        # commits of that study, so its rows there are those of its newest commit); scanned by study, so a study's
        # plan holds its own files, not one scan per study of the warehouse (n x n: 8.6 CPU s at 100 studies)
        for study_id in sorted(studies):
            version = lake.last_fingerprint("differential_expression", study_id)
            if version is None:
                continue
            stats = contrast_statistics(lake.scan("differential_expression", study_id=study_id),
                                        lake.scan("gene_id_map", study_id=study_id))
            for contrast, frame in stats.items():
                targets.append(connectivity.make_target(study_id, contrast, frame, version=version))
                queries.append(connectivity.contrast_query(study_id, contrast, frame, top=top))
    if lake.exists("gene_sets"):
        queries += connectivity.signature_queries(lake.scan("gene_set_members").collect(),
                                                  lake.scan("gene_sets").collect())
    existing = lake.scan(MATCHES).collect().select(list(polars_schema(MATCHES)))
    table, computed = connectivity.match_signatures(queries, targets, existing)
    fingerprint = hashlib.blake2b(str(sorted((q.kind, q.study_id or "", q.name, q.version) for q in queries)
                                      + sorted((t.study_id, t.contrast, t.version) for t in targets)).encode(),
                                  digest_size=16).hexdigest()
    done = unchanged(lake, [MATCHES], study_id=None, fingerprint=fingerprint)
    top_rows = table.filter(pl.col("query_kind") == "contrast").sort("score", descending=True).head(5)
    metadata: dict[str, object] = {
        "queries": len(queries), "targets": len(targets), "pairs_computed": computed,
        "pairs_kept": table.height - computed,
        "top_matches": [f"{r['query_study_id']}:{r['query_name']} ~ {r['target_study_id']}:{r['target_contrast']} "
                        f"{r['score']:.3f}" for r in top_rows.iter_rows(named=True) if r["score"] is not None]}
    if done is not None:
        return done, metadata
    return commit_frames(lake, [(MATCHES, table)], tables=[MATCHES], study_id=None, fingerprint=fingerprint), metadata
