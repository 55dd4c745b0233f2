"""Keeping a warehouse healthy for years: vacuum old files safely, and a doctor that says what is damaged.

``vacuum`` deletes Parquet files no longer needed, older than a retention period, with delta-rs' own vacuum, but
always keeps every table version a published study set still reads (``study_versions``) — a study whose newest
load has not been published yet is still shown from older files, which must survive — and, with ``full``, also
deletes files no version references (staged by killed runs) once they are older than the retention period.

``doctor`` checks what readers depend on and returns one line per problem: the catalog opens and is current,
every table's newest version and every published file is readable, no orphan files, the gene reference is the
shipped one. ``vacuum`` also keeps the versions a stored feature set records as its inputs, and the staged files of
a run in progress.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
from deltalake import DeltaTable

from schemas.tables import TABLES
from warehouse.lake import Lake

DEFAULT_RETENTION_HOURS = 168
GENES_NOT_SHIPPED = "the gene dimension is not the shipped reference"


@dataclass(frozen=True)
class Vacuumed:
    """Files deleted (or that would be, in a dry run) per table, and the versions kept for published studies."""

    table: str
    files: list[str]
    kept_versions: list[int]


def protected_versions(lake: Lake) -> dict[str, list[int]]:
    """Table -> Delta versions a published study set or a stored feature set's manifest reads (they must outlive
    any retention period: a feature set records the input versions it was built from, to be rebuilt from them).
    """
    keep: dict[str, set[int]] = {}
    if lake.exists("study_versions"):
        rows = lake.scan("study_versions").select("table_name", "delta_version").unique().collect()
        for table, version in rows.iter_rows():
            keep.setdefault(table, set()).add(version)
    if lake.exists("feature_sets"):
        for (text,) in lake.scan("feature_sets").select("manifest").collect().iter_rows():
            inputs = json.loads(text).get("inputs") or {}
            if inputs.get("study_versions") is not None:
                keep.setdefault("study_versions", set()).add(int(inputs["study_versions"]))
            for table, versions in (inputs.get("tables") or {}).items():
                keep.setdefault(table, set()).update(int(v) for v in versions.values())
            for table, version in (inputs.get("global") or {}).items():  # gene_set_members: whole-table versions
                if version is not None:
                    keep.setdefault(table, set()).add(int(version))
    return {table: sorted(versions) for table, versions in keep.items()}


def vacuum(lake: Lake, *, retention_hours: int = DEFAULT_RETENTION_HOURS, dry_run: bool = False,
           full: bool = True) -> list[Vacuumed]:
    """Delete files older than ``retention_hours`` that neither the newest version, a published set nor a feature
    set needs. While another process holds a study's write lock (a run in progress) its staged, not yet committed
    files are unreferenced: then only files of superseded versions are deleted, never unreferenced ones.
    """
    keep = protected_versions(lake)
    full = full and not lake.sessions_in_progress()
    done = []
    for table in TABLES:
        if not lake.exists(table):
            continue
        kept = keep.get(table, [])
        run = partial(lake.delta(table).vacuum, retention_hours=retention_hours, enforce_retention_duration=False,
                      keep_versions=kept or None)
        # delta-rs lists a removed file again on every vacuum until its tombstone expires: report only real files
        superseded = [f for f in run(dry_run=True, full=False) if lake.file_exists(f"{table}/{f}")]
        orphans = _orphans(lake, table, run(dry_run=True, full=True), superseded) if full else []
        if superseded and not dry_run:
            run(dry_run=False, full=False)
        for relative in [] if dry_run else orphans:
            lake._delete(table, relative)
        done.append(Vacuumed(table, sorted([*superseded, *orphans]), kept))
    return done


def _orphans(lake: Lake, table: str, listed: list[str], superseded: list[str]) -> list[str]:
    """Files of ``listed`` (delta-rs' full listing, just made) that no version references and no run may still
    commit: none when a run holds a study's lock now, else those the newest version does not reference.

    Why not delta-rs' full vacuum: it lists and deletes in one call, and the check for runs was made once, before
    every table: a build that began after it staged files vacuum deleted before their commit (the build failed
    reading one back; a commit of them would have published missing files). A run that staged a listed file has,
    once no lock is held, died (an orphan) or committed, which the newest version, read after the check, shows.
    """
    if lake.sessions_in_progress():
        return []
    referenced = set(lake.add_actions(table)["path"].to_list())
    return sorted(f for f in set(listed) - set(superseded) if f not in referenced and lake.file_exists(f"{table}/{f}"))


def _failure(read: Callable[[], object]) -> str | None:
    """Why ``read()`` failed, or None; a Rust panic of a reader (a torn file) is a failure too, not a crash."""
    try:
        read()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # pyo3's PanicException derives from BaseException
        return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    return None


def _count_rows(lake: Lake, table: str) -> int:
    return int(lake.scan(table).select(pl.len()).collect().item())


def _written_since(lake: Lake, table: str, version: int | None) -> int | None:
    """The newest version of ``table`` written after ``version`` (vacuum's commits aside), else None.

    Published tables are shown through ``study_versions``: their own newer versions may be loads not yet
    published, so only the ledger and the tables readers see at their newest version are compared.
    """
    from schemas.tables import PUBLISHED_TABLES

    if table in PUBLISHED_TABLES or not lake.exists(table):
        return None
    written = [c["version"] for c in lake.delta(table).history()
               if c["version"] > (-1 if version is None else version)
               and not str(c.get("operation", "")).startswith("VACUUM")]
    return max(written) if written else None


def unreadable_tables(lake: Lake) -> dict[str, str]:
    """Table -> why its Delta log cannot be read (corrupt or missing commit files, a table folder without a log)."""
    broken = {}
    for table in TABLES:
        if lake.exists(table):  # opened afresh (not this process's open table): the whole log is replayed
            reason = _failure(partial(DeltaTable, lake.uri(table), storage_options=lake.storage_options))
            empty, torn = _damaged_commits(lake, table) if reason is None else ([], [])
            if reason is not None:
                broken[table] = f"its Delta log cannot be read ({reason})"
            elif empty:
                broken[table] = (f"its Delta log has an empty commit file, _delta_log/{empty[0]} (0 bytes: a write "
                                 "cut short by a crash or a full disk); delta-rs reads it as a commit of nothing, so "
                                 "the files that commit added are orphans to it and vacuum would delete them")
            elif torn:
                broken[table] = (f"its Delta log has a commit file that is not JSON, _delta_log/{torn[0][0]} "
                                 f"({torn[0][1]}); the newest version reads from a later checkpoint, but the "
                                 "versions before it (time travel, the published sets vacuum keeps) do not")
        elif lake.is_local and any(Path(lake.uri(table)).rglob("*.parquet")):
            broken[table] = "it has Parquet files but no Delta log (_delta_log missing)"
    return broken


def _damaged_commits(lake: Lake, table: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Commit files of a local table's log that are empty, and those that are not JSON lines (with why); an object
    store writes a commit whole or not at all.

    delta-rs takes a 0-byte ``N.json`` for a version without actions: commit N's files vanish from the table while
    the published set still lists them, doctor called them orphans of a killed run and vacuum deleted them. A commit
    older than the newest checkpoint is not read to open the table's newest version, so a torn one went unseen:
    doctor said healthy, and vacuum, which opens every version a published set reads, failed with a traceback.
    """
    if not lake.is_local:
        return [], []
    log = Path(lake.uri(table).removeprefix("file://"), "_delta_log")
    empty, torn = [], []
    with os.scandir(log) as entries:
        commits = sorted((e.name, e.path) for e in entries if e.name.endswith(".json") and e.is_file())
    for name, path in commits:
        text = Path(path).read_bytes()
        if not text:
            empty.append(name)
            continue
        try:
            for line in text.splitlines():
                if line.strip():
                    json.loads(line)
        except ValueError as exc:  # UnicodeDecodeError included
            torn.append((name, str(exc).splitlines()[0][:120]))
    return empty, torn


def _file_repair(lake: Lake, table: str, files: list[str]) -> str:
    """How to get damaged published files written again: a build skips a study whose input is unchanged, so the
    study is removed first (its next load writes every table anew); files of no study come back with their table.
    """
    studies = sorted({part.removeprefix("study_id=") for f in files for part in f.split("/")
                      if part.startswith("study_id=")})
    if studies:
        return (f"remove the stud{'y' if len(studies) == 1 else 'ies'} and load again: "
                + "; ".join(f"omicsdw remove {s}" for s in studies)
                + "; omicsdw build --landing DIR " + " ".join(f"--study {s}" for s in studies))
    return (f"restore them from a backup, or move {lake.uri(table)} aside and run omicsdw build (the table is "
            "written again)")


def doctor(lake: Lake, warehouse_dir: Path) -> list[str]:
    """Problems found, one line each naming the table or file (empty: healthy)."""
    import duckdb

    from schemas.tables import PUBLISHED_TABLES
    from transforms.ingest.genes import GeneReference
    from warehouse.catalog import CATALOG_NAME, CatalogMissing, connect, visible_files

    broken = unreadable_tables(lake)
    problems = [f"{table}: {reason}; restore {lake.uri(table)} from a backup (a build alone does not write it "
                "again: it skips studies whose input is unchanged)" for table, reason in broken.items()]
    # without a readable study_versions nobody knows which files readers of the published tables see
    skip = set(broken) | (set(PUBLISHED_TABLES) if "study_versions" in broken else set())
    # a table folder deleted whole: its study rows are gone, not merely a stale catalog (said once, here)
    published = set(protected_versions(lake)) if "study_versions" not in broken else set()
    gone = [t for t in TABLES if t not in skip and t in published and not lake.exists(t)]
    problems += [f"{table}: its folder {lake.uri(table)} is missing (published studies read it); restore it from a "
                 "backup (a build skips studies whose input is unchanged: omicsdw remove them, then build)"
                 for table in gone]
    skip |= set(gone)
    readable = [t for t in TABLES if t not in skip]
    visible = visible_files(lake, readable)
    try:
        con = connect(warehouse_dir)
    except CatalogMissing as exc:
        if "study_versions" in broken or not lake.exists("study_versions"):
            problems.append(f"catalog: {exc}")
        else:  # lost (deleted, a crash, a restore of the lake alone): the lake is whole, only the views are missing
            lake_option = "" if lake.is_local and Path(lake.root) == (warehouse_dir / "lake").resolve() \
                else f" --lake {lake.root}"
            problems.append(f"catalog: no catalog at {warehouse_dir / CATALOG_NAME}, but the lake {lake.root} holds "
                            f"published studies; rebuild the catalog: omicsdw build --landing DIR --warehouse "
                            f"{warehouse_dir}{lake_option} (studies whose input is unchanged are not loaded again)")
    except duckdb.Error as exc:
        problems.append(f"catalog: {warehouse_dir / CATALOG_NAME} cannot be opened ({str(exc).splitlines()[0]}); "
                        "delete it and rebuild it (omicsdw build)")
    else:
        try:
            rows = con.execute("SELECT table_name, delta_version, files FROM catalog_versions").fetchall()
            listed, built_on = {t: n for t, _, n in rows}, {t: v for t, v, _ in rows}
        except duckdb.Error as exc:
            listed, built_on = {}, {}
            problems.append(f"catalog: {CATALOG_NAME} is not an omicsdw catalog ({str(exc).splitlines()[0]}); "
                            "delete it and rebuild it (omicsdw build)")
        try:
            for table, (_, files) in visible.items():
                if listed.get(table) != len(files):
                    problems.append(f"{table}: the catalog lists {listed.get(table)} files, the lake {len(files)}; "
                                    f"rebuild it (omicsdw build, or any study run) — {CATALOG_NAME} is stale")
                elif (newer := _written_since(lake, table, built_on.get(table))) is not None:
                    problems.append(f"{table}: the catalog was built on Delta version {built_on.get(table)}, the "
                                    f"lake was written since (version {newer}); rebuild it (omicsdw build, or any "
                                    f"study run) — {CATALOG_NAME} is stale")
                try:
                    con.execute(f'SELECT count(*) FROM "{table}"').fetchall()
                except Exception as exc:
                    problems.append(f"{table}: its view cannot be read: {exc}")
        finally:
            con.close()
    for table, (_, files) in visible.items():
        missing = [f for f in files if not lake.file_exists(f)]
        if missing:
            problems.append(f"{table}: {len(missing)} file(s) readers need are missing, e.g. {missing[0]}; "
                            + _file_repair(lake, table, missing))
        torn = [(f, reason) for f in files if lake.is_local and f not in missing
                and (reason := _failure(partial(pq.read_metadata, Path(lake.root, f)))) is not None]
        if torn:
            problems.append(f"{table}: {len(torn)} file(s) readers need are not readable Parquet, e.g. {torn[0][0]} "
                            f"({torn[0][1]}); " + _file_repair(lake, table, [f for f, _ in torn]))
        if lake.exists(table) and not torn and (reason := _failure(partial(_count_rows, lake, table))) is not None:
            problems.append(f"{table}: its newest Delta version cannot be read: {reason}")
    if not lake.sessions_in_progress():  # a running build's staged files are not orphans yet
        for table in readable:
            if not lake.exists(table):
                continue
            delta = lake.delta(table)
            every, history = ({*delta.vacuum(retention_hours=0, dry_run=True, full=full,
                                             enforce_retention_duration=False)} for full in (True, False))
            orphans = sorted(every - history)  # files no version ever referenced: staged by killed runs
            if orphans:
                problems.append(f"{table}: {len(orphans)} file(s) in the lake no Delta version references (killed "
                                f"runs?), e.g. {orphans[0]}; omicsdw vacuum removes them after the retention period")
    shipped = GeneReference.load().fingerprint
    if "genes" not in broken and lake.exists("genes") and lake.last_fingerprint("genes", None) != shipped:
        problems.append(f"genes: {GENES_NOT_SHIPPED}; the next build rewrites it")
    return problems

