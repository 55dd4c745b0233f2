"""Crash trial: SIGKILL ``omicsdw build`` (its whole process group) at random points, then check what readers see.

Run: ``.venv/bin/python bench/crash_trial.py --trials 100 --out bench/out/crash.json``

Implementation-independent: the checks read the warehouse only as a reader does (``warehouse.connect(W)`` SQL,
``warehouse.table``) plus the Delta logs and the file system, and compare with clean builds of the same input.

1. Landing A = copies of ``examples/`` studies (airway: RNA counts + normalise + DE; laml: MAF + segments);
   landing B = the same with edits that change every non-empty table of each study (see :func:`make_version_b`).
2. References: A built clean twice (W_A, W_A2: the columns that differ between them are volatile and excluded from
   the digests), B built clean (W_B), and one un-killed B-over-A build that measures the duration and the number
   of Delta commits, staged files, publications and catalog swaps a build makes (the kill targets).
3. Each trial: copy W_A, start ``omicsdw build --landing B`` in a new session, SIGKILL its process group (random
   delay over the measured duration, or at the k-th occurrence of a targeted event), then (a) the catalog opens,
   (b) each study's per-table digests are ALL-A or ALL-B (else MIX, naming the tables), ``warehouse.table``
   agrees with SQL for rna_counts, (c) a re-run completes, every study is ALL-B, no staged Parquet file is
   untracked by every Delta log version and by ``study_versions``, no staging journal and no catalog temp file
   remain.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
STUDY_FOLDERS = {"airway": "airway", "tcga_laml": "laml"}
"""Study id -> folder of examples/ used by the trial."""
EXCLUDED_TABLES = {"ingest_issues", "study_versions"}
CATALOG_TMP = ".warehouse.duckdb."
TARGETS = ("random", "stage", "commit", "publish", "catalog")
TARGET_WEIGHTS = (0.5, 0.1, 0.2, 0.1, 0.1)
POLL_S = 0.002
BUILD_ARGS = ("--no-plots",)
"""Every build of the trial (references, killed runs, re-runs): plots are PNG files of the HTML report, not tables
that readers query, so a build without them (less CPU per build) exercises every table commit, the publication and
the catalog swap the same way."""


# -- landing versions -------------------------------------------------------------------------------------------
def make_landing(root: Path, version: str, studies: dict[str, str] = STUDY_FOLDERS) -> Path:
    """A landing folder of the trial's studies as shipped (A) or edited (B)."""
    landing = root / f"landing_{version}"
    shutil.rmtree(landing, ignore_errors=True)
    landing.mkdir(parents=True)
    for folder in studies.values():
        shutil.copytree(EXAMPLES / folder, landing / folder)
    if version == "B":
        make_version_b(landing)
    return landing


def _edit_tsv(path: Path, edit: Any, *, compressed: bool = False) -> None:
    opener: Any = gzip.open if compressed else open
    with opener(path, "rt") as fh:
        lines = fh.read().splitlines()
    lines = edit(lines)
    with opener(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")


def make_version_b(landing: Path) -> None:
    """Edits touching every non-empty table of each study (checked against the references by the harness)."""
    airway = landing / "airway"
    if airway.is_dir():
        # studies: the name; samples/subjects/sample_attributes: donor N61311 renamed, a sample attribute
        # (geo_sample) changed; rna_counts and everything derived: one sample's counts doubled and one gene added
        # (gene_id_map gains an unmapped id)
        text = (airway / "study.yaml").read_text()
        (airway / "study.yaml").write_text(text.replace("name: airway smooth", "name: airway (B) smooth"))
        _edit_tsv(airway / "samples.tsv", lambda ls: [ls[0]] + [
            row.replace("N61311", "N61311B").replace("GSM1275862", "GSM1275862B") for row in ls[1:]])

        def counts(lines: list[str]) -> list[str]:
            header = next(i for i, row in enumerate(lines) if row.startswith("Geneid"))
            out = lines[: header + 1]
            for line in lines[header + 1:]:
                cells = line.split("\t")
                cells[6] = str(int(cells[6]) * 2)
                out.append("\t".join(cells))
            extra = out[-1].split("\t")
            extra[0] = "ENSG00000999999"
            extra[6:] = [str(10 + 3 * i) for i in range(len(extra) - 6)]
            return [*out, "\t".join(extra)]

        _edit_tsv(airway / "featurecounts.txt", counts)
    laml = landing / "laml"
    if laml.is_dir():
        text = (laml / "study.yaml").read_text()
        (laml / "study.yaml").write_text(text.replace("name: TCGA LAML", "name: TCGA LAML (B)"))
        # samples/subjects/sample_attributes: one more clinical row and one FAB class changed
        _edit_tsv(laml / "clinical.tsv", lambda ls: [ls[0], ls[1].replace("\tM4\t", "\tM5\t"), *ls[2:],
                                                     "TCGA-AB-9999\tM1\t100\t0"])

        def maf(lines: list[str]) -> list[str]:  # first variant: another gene, another position
            cells = lines[1].split("\t")
            cells[0], cells[1] = "TP53", "7157"
            cells[4], cells[5], cells[6] = "17", "7577120", "7577120"
            return [lines[0], "\t".join(cells), *lines[2:]]

        _edit_tsv(laml / "tcga_laml.maf.gz", maf, compressed=True)

        def seg(lines: list[str]) -> list[str]:  # cn_segments: one segment's copy number
            cells = lines[1].split("\t")
            cells[5] = "0.75"
            return [lines[0], "\t".join(cells), *lines[2:]]

        _edit_tsv(laml / "LAML_CBS_segments.tsv.gz", seg, compressed=True)


# -- reading what readers see ---------------------------------------------------------------------------------------
def _connect(wh: Path) -> Any:
    import warehouse

    return warehouse.connect(wh)


def study_tables(con: Any) -> list[str]:
    """Catalog views of base tables (those in catalog_versions) that have a study_id column, minus the excluded."""
    tables = [t for (t,) in con.execute("SELECT table_name FROM catalog_versions").fetchall()]
    with_study = {t for (t,) in con.execute(
        "SELECT DISTINCT table_name FROM duckdb_columns() WHERE column_name = 'study_id'").fetchall()}
    return sorted(t for t in tables if t in with_study and t not in EXCLUDED_TABLES)


def _columns(con: Any, table: str) -> list[tuple[str, str]]:
    return con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? "
                       "ORDER BY column_index", [table]).fetchall()


def _value(column: str, dtype: str) -> str:
    """SQL for a column's value in a digest: floats at 10 significant digits (two clean builds of the same input
    differ in the last bits of normalised and DE values), everything else as stored."""
    if dtype in ("DOUBLE", "FLOAT"):
        return f"printf('%.10g', {_q(column)})"
    if dtype in ("DOUBLE[]", "FLOAT[]"):
        return f"list_transform({_q(column)}, lambda v: printf('%.10g', v))"
    return _q(column)


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _study_hashes(con: Any, table: str, exprs: list[str], studies: list[str]) -> dict[str, list[Any]]:
    """study -> [rows, then per expression the sum of its 64-bit hash over the study's rows] in one scan of the
    table. A sum of row hashes is a digest of the rows as a multiset (order-free, duplicates counted, unlike a
    XOR), computed by DuckDB without sorting or concatenating millions of rows as text."""
    sums = ", ".join(f"CAST(sum(CAST(hash({e}) AS HUGEINT)) AS VARCHAR)" for e in exprs)
    found = {s: list(rest) for s, *rest in con.execute(
        f"SELECT study_id, count(*), {sums} FROM {_q(table)} t WHERE study_id IN (SELECT unnest(?::VARCHAR[])) "
        "GROUP BY study_id", [studies]).fetchall()}
    return {s: found.get(s, [0, *[None] * len(exprs)]) for s in studies}


def column_digests(wh: Path, studies: list[str]) -> dict[str, dict[str, dict[str, str]]]:
    """study -> table -> column -> digest of the column's values as a multiset (to find volatile columns)."""
    con = _connect(wh)
    try:
        out: dict[str, dict[str, dict[str, str]]] = {s: {} for s in studies}
        for table in study_tables(con):
            cols = _columns(con, table)
            found = _study_hashes(con, table, [_value(c, t) for c, t in cols], studies)
            for study in studies:
                out[study][table] = {c: str(h) for (c, _), h in zip(cols, found[study][1:], strict=True)}
        return out
    finally:
        con.close()


def volatile_columns(first: Path, second: Path, studies: list[str]) -> dict[str, list[str]]:
    """Columns whose values differ between two clean builds of the same input."""
    a, b = column_digests(first, studies), column_digests(second, studies)
    found: dict[str, set[str]] = {}
    for study in studies:
        for table, cols in a[study].items():
            for c, digest in cols.items():
                if b[study].get(table, {}).get(c) != digest:
                    found.setdefault(table, set()).add(c)
    return {t: sorted(c) for t, c in sorted(found.items())}


def study_digests(wh: Path, studies: list[str], volatile: dict[str, list[str]], con: Any = None
                  ) -> dict[str, dict[str, list[Any]]]:
    """study -> table -> [rows, digest of the rows as a multiset (volatile columns left out)], through catalog SQL:
    the sum of a 64-bit hash of each row's values (floats rounded by :func:`_value`), one scan per table."""
    own = con is None
    con = con or _connect(wh)
    try:
        out: dict[str, dict[str, list[Any]]] = {s: {} for s in studies}
        for table in study_tables(con):
            row = "struct_pack(" + ", ".join(f"{_q(c)} := {_value(c, t)}" for c, t in _columns(con, table)
                                            if c not in volatile.get(table, [])) + ")"
            for study, (rows, digest) in _study_hashes(con, table, [row], studies).items():
                out[study][table] = [rows, digest]
        return out
    finally:
        if own:
            con.close()


def api_digests(wh: Path, studies: list[str], volatile: dict[str, list[str]], tables: list[str]
                ) -> dict[str, dict[str, list[Any]]]:
    """The same digests over ``warehouse.table`` (the Python API's view of each study), via an in-memory DuckDB."""
    import duckdb

    import warehouse

    mem = duckdb.connect(":memory:")
    mem.execute("SET enable_progress_bar = false")
    try:
        for table in tables:
            frame = warehouse.table(table, warehouse=wh).collect().to_arrow()
            mem.register(f"{table}_arrow", frame)
            mem.execute(f"CREATE VIEW {_q(table)} AS SELECT * FROM {_q(table + '_arrow')}")
        mem.execute("CREATE TABLE catalog_versions AS SELECT unnest(?::VARCHAR[]) AS table_name", [tables])
        return study_digests(wh, studies, volatile, mem)
    finally:
        mem.close()


def classify(found: dict[str, list[Any]], ref_a: dict[str, list[Any]], ref_b: dict[str, list[Any]]
             ) -> tuple[str, dict[str, str]]:
    """'A', 'B' or 'MIX' for one study, and per table which reference it matches (A, B, AB if both, or NONE)."""
    per = {}
    for table, value in found.items():
        a, b = value == ref_a.get(table), value == ref_b.get(table)
        per[table] = "AB" if a and b else "A" if a else "B" if b else "NONE"
    if all(v in ("A", "AB") for v in per.values()):
        return "A", per
    if all(v in ("B", "AB") for v in per.values()):
        return "B", per
    return "MIX", {t: v for t, v in per.items() if v != "AB"}


def api_agrees(wh: Path, con: Any, table: str, study: str) -> bool:
    """``warehouse.table`` shows the same rows of the study as catalog SQL."""
    import polars as pl

    import warehouse

    sql = pl.DataFrame(con.sql(f"SELECT * FROM {_q(table)} WHERE study_id = $1", params=[study]).to_arrow_table())
    api = warehouse.table(table, warehouse=wh).filter(pl.col("study_id") == study).collect()
    if sql.columns != api.columns or sql.height != api.height:
        return False
    try:
        api = api.cast(dict(sql.schema))  # type: ignore[arg-type]
    except Exception:
        return False
    return sql.sort(sql.columns).equals(api.sort(api.columns))


# -- lake hygiene -------------------------------------------------------------------------------------------------
def _log_paths(table_dir: Path) -> set[str]:
    """Every file path any version of the table's Delta log adds (json commits and checkpoints)."""
    paths: set[str] = set()
    log = table_dir / "_delta_log"
    for entry in log.iterdir():
        if entry.name.endswith(".json") and entry.name[:1].isdigit():
            for line in entry.read_text().splitlines():
                action = json.loads(line)
                if "add" in action:
                    paths.add(action["add"]["path"])
        elif entry.name.endswith(".checkpoint.parquet"):
            added = pq.read_table(entry, columns=["add"]).column("add").to_pylist()
            paths.update(a["path"] for a in added if a)
    return paths


def lake_leftovers(wh: Path) -> dict[str, Any]:
    """Parquet files under table folders that no Delta log version and no study_versions row references
    (untracked: staged by a killed run and never cleaned), files only in history (tombstoned: expected until a
    vacuum), staging journals left, catalog temp files in W."""
    from urllib.parse import unquote

    from deltalake import DeltaTable

    lake = wh / "lake"
    published: set[str] = set()
    if (lake / "study_versions" / "_delta_log").is_dir():
        import polars as pl

        ledger = pl.read_delta(str(lake / "study_versions"))
        published = {f"{t}/{f}" for t, files in ledger.select("table_name", "files").iter_rows() for f in files}
    untracked, tombstoned = [], 0
    for table_dir in sorted(p for p in lake.iterdir() if (p / "_delta_log").is_dir()):
        current = {unquote(u).split(f"/{table_dir.name}/", 1)[-1]
                   for u in DeltaTable(str(table_dir)).file_uris()}
        history = {unquote(p) for p in _log_paths(table_dir)}
        for f in table_dir.rglob("*.parquet"):
            if "_delta_log" in f.parts:
                continue
            rel = f.relative_to(table_dir).as_posix()
            if rel in current or f"{table_dir.name}/{rel}" in published:
                continue
            if rel in history:
                tombstoned += 1
            else:
                untracked.append(f"{table_dir.name}/{rel}")
    journals = sorted(str(p.relative_to(lake)) for p in (lake / "_omicsdw").rglob("staged-*.txt"))
    temps = sorted(p.name for p in wh.glob(f"{CATALOG_TMP}*"))
    return {"untracked": untracked, "tombstoned": tombstoned, "journals": journals, "catalog_tmp": temps}


# -- running and killing ----------------------------------------------------------------------------------------------
CODE_ROOT = Path(__file__).resolve().parent.parent
"""The checkout this harness belongs to: its builds run this tree's code, whatever checkout the environment's
``omicsdw`` command was installed from (a second worktree on the same virtualenv ran another tree's code in the
separate-process builds, and ``studies.code_fingerprint`` then differed from the in-process references)."""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}  # an ephemeral Dagster instance per run
    env.update(DO_NOT_TRACK="1", DAGSTER_TELEMETRY_DISABLED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(CODE_ROOT), env.get("PYTHONPATH")) if p)
    return env


def start_build(landing: Path, wh: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "warehouse.cli", "build", "--landing", str(landing),
                                 "--warehouse", str(wh), *BUILD_ARGS],
                                stdout=out, stderr=subprocess.STDOUT, env=_env(), start_new_session=True)


def build(landing: Path, wh: Path, log: Path, *, timeout: float = 900) -> int:
    proc = start_build(landing, wh, log)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return -9


class Watcher:
    """Polls the warehouse for the events a kill can target: new names in a ``_delta_log`` (commit), new Parquet
    files in table folders (stage), new names in study_versions' log (publish), catalog temp files (catalog)."""

    def __init__(self, wh: Path):
        self.wh = wh
        self.lake = wh / "lake"
        self.logs = sorted(p / "_delta_log" for p in self.lake.iterdir() if (p / "_delta_log").is_dir()) \
            if self.lake.is_dir() else []
        self.seen: dict[str, set[str]] = {t: set() for t in TARGETS[1:]}
        self.counts: Counter[str] = Counter()
        self._base_logs = {log: set(os.listdir(log)) for log in self.logs}
        self._base_parquet = self._parquet()
        self._catalog_present: set[str] = set()

    def _parquet(self) -> set[str]:
        found = set()
        for log in self.logs:
            table = log.parent
            for part in os.scandir(table):
                if part.is_dir() and part.name.startswith("study_id="):
                    found.update(f"{table.name}/{part.name}/{n}" for n in os.listdir(part.path))
        return found

    def poll(self, targets: tuple[str, ...]) -> list[tuple[str, str]]:
        """New events since the last poll, as (target, name), for the targets asked."""
        events = []
        if "commit" in targets or "publish" in targets:
            for log in self.logs:
                try:
                    names = set(os.listdir(log)) - self._base_logs[log]
                except FileNotFoundError:
                    continue
                for name in {f"{log.parent.name}/{n}" for n in names} - self.seen["commit"]:
                    self.seen["commit"].add(name)
                    events.append(("commit", name))
                    if name.startswith("study_versions/0") and name.endswith(".json"):
                        events.append(("publish", name))
        if "stage" in targets:
            for name in self._parquet() - self._base_parquet - self.seen["stage"]:
                self.seen["stage"].add(name)
                events.append(("stage", name))
        if "catalog" in targets:  # each appearance of the temp catalog (its name repeats within one process)
            present = {n for n in os.listdir(self.wh) if n.startswith(CATALOG_TMP) and n.endswith(".tmp")}
            for name in sorted(present - self._catalog_present):
                events.append(("catalog", f"{name}#{self.counts['catalog'] + 1}"))
            self._catalog_present = present
        for target, _ in events:
            self.counts[target] += 1
        return events


def measure(landing: Path, wh: Path, log: Path) -> dict[str, Any]:
    """Run a build to the end while watching: its duration and how many events of each target it makes."""
    watcher = Watcher(wh)
    t0 = time.monotonic()
    proc = start_build(landing, wh, log)
    while proc.poll() is None:
        watcher.poll(TARGETS[1:])
        time.sleep(POLL_S)
    return {"seconds": round(time.monotonic() - t0, 2), "rc": proc.returncode, "events": dict(watcher.counts)}


def killed_run(landing: Path, wh: Path, log: Path, target: str, param: float) -> dict[str, Any]:
    """Start a build and SIGKILL its process group: after ``param`` s (random), or at the ``param``-th event."""
    watcher = Watcher(wh)
    t0 = time.monotonic()
    proc = start_build(landing, wh, log)
    hit = None
    while proc.poll() is None:
        if target == "random":
            if time.monotonic() - t0 >= param:
                break
            time.sleep(min(POLL_S * 5, max(0.0, param - (time.monotonic() - t0))))
            continue
        for kind, name in watcher.poll((target,)):
            if kind == target and watcher.counts[target] >= param:
                hit = name
                break
        if hit:
            break
        time.sleep(POLL_S)
    delay = time.monotonic() - t0
    killed = proc.poll() is None
    if killed:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            killed = False
    proc.wait()
    return {"delay_s": round(delay, 3), "killed": killed, "rc": proc.returncode, "event": hit}


def phase(log: Path, wh: Path, base_versions: dict[str, int]) -> dict[str, Any]:
    """What the killed run reached: its last progress line and the Delta commits it made per table."""
    from deltalake import DeltaTable

    text = log.read_text(errors="replace").strip().splitlines()
    progress = [row for row in text if row.startswith("[")]
    commits = {}
    for table_dir in sorted(p for p in (wh / "lake").iterdir() if (p / "_delta_log").is_dir()):
        new = DeltaTable(str(table_dir)).version() - base_versions.get(table_dir.name, -1)
        if new:
            commits[table_dir.name] = new
    return {"progress": progress[-1] if progress else (text[-1][:80] if text else ""), "commits": commits,
            "catalog_tmp_after_kill": sorted(p.name for p in wh.glob(f"{CATALOG_TMP}*"))}


def table_versions(wh: Path) -> dict[str, int]:
    from deltalake import DeltaTable

    return {p.name: DeltaTable(str(p)).version() for p in (wh / "lake").iterdir() if (p / "_delta_log").is_dir()}


# -- the trial ------------------------------------------------------------------------------------------------
@dataclass
class Trial:
    n: int
    target: str
    param: float
    delay_s: float = 0.0
    killed: bool = False
    event: str | None = None
    phase: dict[str, Any] = field(default_factory=dict)
    opens: bool = False
    outcome: dict[str, str] = field(default_factory=dict)
    mixed_tables: dict[str, dict[str, str]] = field(default_factory=dict)
    api_outcome: dict[str, str] = field(default_factory=dict)
    api_mixed_tables: dict[str, dict[str, str]] = field(default_factory=dict)
    api_agrees: bool | None = None
    rerun_rc: int | None = None
    converged: bool = False
    after_rerun: dict[str, str] = field(default_factory=dict)
    leftovers: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None


@dataclass
class Setup:
    work: Path
    landing_b: Path
    wh_a: Path
    studies: list[str]
    volatile: dict[str, list[str]]
    ref_a: dict[str, dict[str, list[Any]]]
    ref_b: dict[str, dict[str, list[Any]]]
    base_versions: dict[str, int]
    measured: dict[str, Any]
    notes: dict[str, Any]


def prepare(work: Path, studies: dict[str, str] = STUDY_FOLDERS, *, log=print, builder=build  # type: ignore[no-untyped-def]
            ) -> Setup:
    """Landing A and B, clean builds W_A, W_A2, W_B (with ``builder``), and a measured un-killed B-over-A build
    (always a separate ``omicsdw build`` process, like the killed ones)."""
    landing_a, landing_b = make_landing(work, "A", studies), make_landing(work, "B", studies)
    ids = list(studies)
    times = {}
    for name, landing in (("W_A", landing_a), ("W_A2", landing_a), ("W_B", landing_b)):
        t0 = time.monotonic()
        rc = builder(landing, work / name, work / f"{name}.log")
        times[name] = round(time.monotonic() - t0, 2)
        if rc != 0:
            raise RuntimeError(f"clean build {name} failed (rc {rc}); see {work / f'{name}.log'}")
        log(f"clean build {name}: {times[name]} s")
    volatile = volatile_columns(work / "W_A", work / "W_A2", ids)
    ref_a = study_digests(work / "W_A", ids, volatile)
    ref_b = study_digests(work / "W_B", ids, volatile)
    same = {s: sorted(t for t in ref_a[s] if ref_a[s][t] == ref_b[s][t] and ref_a[s][t][0] > 0) for s in ids}
    empty = {s: sorted(t for t in ref_a[s] if ref_a[s][t][0] == 0 and ref_b[s][t][0] == 0) for s in ids}
    con = _connect(work / "W_A")
    tables = study_tables(con)
    con.close()
    api_matches = {name: api_digests(work / name, ids, volatile, tables) == ref
                   for name, ref in (("W_A", ref_a), ("W_B", ref_b))}
    base_versions = table_versions(work / "W_A")
    over = work / "W_BoverA"
    shutil.copytree(work / "W_A", over)
    measured = measure(landing_b, over, work / "W_BoverA.log")
    log(f"un-killed B-over-A build: {measured}")
    converged = study_digests(over, ids, volatile) == ref_b
    notes = {"clean_build_s": times, "volatile_columns": volatile, "tables_same_in_A_and_B": same,
             "tables_empty_in_A_and_B": empty, "b_over_a_equals_clean_b": converged,
             "b_over_a_leftovers": lake_leftovers(over), "api_digests_equal_sql_on_references": api_matches,
             "rows_A": {s: {t: v[0] for t, v in ref_a[s].items()} for s in ids},
             "rows_B": {s: {t: v[0] for t, v in ref_b[s].items()} for s in ids}}
    return Setup(work, landing_b, work / "W_A", ids, volatile, ref_a, ref_b, base_versions, measured, notes)


def run_trial(setup: Setup, n: int, target: str, param: float, *, keep: bool = False,  # type: ignore[no-untyped-def]
              builder=build) -> Trial:
    """One kill of a B build over a fresh copy of W_A, the checks, the re-run (with ``builder``) and its checks."""
    trial = Trial(n, target, round(param, 3))
    t0 = time.monotonic()
    wh = setup.work / f"trial_{n:03d}"
    shutil.rmtree(wh, ignore_errors=True)
    shutil.copytree(setup.wh_a, wh)
    log = setup.work / f"trial_{n:03d}.kill.log"
    try:
        run = killed_run(setup.landing_b, wh, log, target, param)
        trial.delay_s, trial.killed, trial.event = run["delay_s"], run["killed"], run["event"]
        trial.phase = phase(log, wh, setup.base_versions)
        con = _connect(wh)
        trial.opens = True
        try:
            found = study_digests(wh, setup.studies, setup.volatile, con)
            for study in setup.studies:
                state, per = classify(found[study], setup.ref_a[study], setup.ref_b[study])
                trial.outcome[study] = state
                if state == "MIX":
                    trial.mixed_tables[study] = per
            same_rows = api_agrees(wh, con, "rna_counts", setup.studies[0])
            tables = study_tables(con)
        finally:
            con.close()
        found = api_digests(wh, setup.studies, setup.volatile, tables)
        for study in setup.studies:
            state, per = classify(found[study], setup.ref_a[study], setup.ref_b[study])
            trial.api_outcome[study] = state
            if state == "MIX":
                trial.api_mixed_tables[study] = per
        trial.api_agrees = same_rows and trial.api_outcome == trial.outcome
        trial.rerun_rc = builder(setup.landing_b, wh, setup.work / f"trial_{n:03d}.rerun.log")
        after = study_digests(wh, setup.studies, setup.volatile)
        trial.after_rerun = {s: classify(after[s], setup.ref_a[s], setup.ref_b[s])[0] for s in setup.studies}
        trial.leftovers = lake_leftovers(wh)
        trial.converged = trial.rerun_rc == 0 and all(v == "B" for v in trial.after_rerun.values())
    except Exception as exc:  # a catalog that does not open, a failed digest: recorded as the trial's error
        trial.error = f"{type(exc).__name__}: {exc}"[:500]
    trial.seconds = round(time.monotonic() - t0, 2)
    ok = (trial.error is None and not trial.mixed_tables and not trial.api_mixed_tables and trial.converged
          and trial.api_agrees
          and not trial.leftovers.get("untracked") and not trial.leftovers.get("journals")
          and not trial.leftovers.get("catalog_tmp"))
    if ok and not keep:
        shutil.rmtree(wh, ignore_errors=True)
        for suffix in ("kill", "rerun"):
            (setup.work / f"trial_{n:03d}.{suffix}.log").unlink(missing_ok=True)
    return trial


def plan(n: int, measured: dict[str, Any], rng: random.Random, targets: tuple[str, ...] = TARGETS
         ) -> list[tuple[str, float]]:
    """(target, param) per trial: a delay uniform over the measured duration, or the k-th targeted event."""
    out = []
    events = measured["events"]
    weights = [w for t, w in zip(TARGETS, TARGET_WEIGHTS, strict=True) if t in targets]
    for _ in range(n):
        target = rng.choices([t for t in TARGETS if t in targets], weights)[0]
        if target != "random" and not events.get(target):
            target = "random"
        if target == "random":
            out.append((target, rng.uniform(0.0, measured["seconds"])))
        else:
            out.append((target, float(rng.randint(1, events[target]))))
    return out


def summary(trials: list[Trial], studies: list[str]) -> dict[str, Any]:
    by_study = {s: dict(Counter(t.outcome.get(s, "ERROR") for t in trials)) for s in studies}
    by_target: dict[str, dict[str, int]] = {}
    for t in trials:
        row = by_target.setdefault(t.target, Counter())  # type: ignore[arg-type]
        row["trials"] += 1
        row["killed"] += t.killed
        row["MIX"] += bool(t.mixed_tables)
        for s in studies:
            row[f"{s}={t.outcome.get(s, 'ERROR')}"] += 1
    return {
        "trials": len(trials),
        "killed": sum(t.killed for t in trials),
        "finished_before_kill": sum(not t.killed for t in trials),
        "outcomes_per_study": by_study,
        "api_outcomes_per_study": {s: dict(Counter(t.api_outcome.get(s, "ERROR") for t in trials)) for s in studies},
        "mixed_trials": [t.n for t in trials if t.mixed_tables],
        "api_mixed_trials": [t.n for t in trials if t.api_mixed_tables],
        "catalog_did_not_open": [t.n for t in trials if not t.opens],
        "api_disagrees": [t.n for t in trials if t.api_agrees is False],
        "converge_failures": [t.n for t in trials if not t.converged],
        "untracked_files": sum(len(t.leftovers.get("untracked", [])) for t in trials),
        "trials_with_untracked_files": [t.n for t in trials if t.leftovers.get("untracked")],
        "journals_left": [t.n for t in trials if t.leftovers.get("journals")],
        "catalog_tmp_left": [t.n for t in trials if t.leftovers.get("catalog_tmp")],
        "catalog_tmp_right_after_kill": [t.n for t in trials if t.phase.get("catalog_tmp_after_kill")],
        "errors": {t.n: t.error for t in trials if t.error},
        "by_target": {k: dict(v) for k, v in by_target.items()},
    }


def _table(trials: list[Trial], studies: list[str]) -> str:
    lines = [f"{'n':>3} {'target':8} {'param':>7} {'delay':>6} kill {'sql':8} {'api':8} conv untracked  progress"]
    for t in trials:
        outcome = "/".join(t.outcome.get(s, "?") for s in studies)
        api = "/".join(t.api_outcome.get(s, "?") for s in studies)
        lines.append(f"{t.n:>3} {t.target:8} {t.param:>7} {t.delay_s:>6.2f} {'y' if t.killed else 'n':4} "
                     f"{outcome:8} {api:8} {'ok' if t.converged else 'FAIL':4} "
                     f"{len(t.leftovers.get('untracked', [])):>9}  {t.phase.get('progress', '')[:40]}"
                     + (f"  ERROR {t.error}" if t.error else ""))
    return "\n".join(lines)


def markdown(report: dict[str, Any]) -> str:
    """Tables for bench/README.md from a saved report: outcomes per kill kind, then the failures found."""
    trials, studies = report["trials"], report["studies"]
    head = ["kill kind", "trials", "killed"] + [f"{s} SQL A/B/MIX" for s in studies] + \
        [f"{s} API A/B/MIX" for s in studies] + ["API != SQL", "converged", "untracked files", "journals left",
                                                 "catalog tmp left", "catalog tmp right after kill"]
    rows = []
    for kind in [*TARGETS, "all"]:
        group = [t for t in trials if kind in ("all", t["target"])]
        if not group:
            continue

        def count(key: str, study: str, group: list[dict[str, Any]] = group) -> str:
            c = Counter(t[key].get(study, "ERROR") for t in group)
            return f"{c['A']}/{c['B']}/{c['MIX']}" + (f" (+{c['ERROR']} error)" if c["ERROR"] else "")

        rows.append([kind, len(group), sum(t["killed"] for t in group),
                     *[count("outcome", s) for s in studies], *[count("api_outcome", s) for s in studies],
                     sum(t["api_agrees"] is False for t in group), sum(t["converged"] for t in group),
                     sum(len(t["leftovers"].get("untracked", [])) for t in group),
                     sum(bool(t["leftovers"].get("journals")) for t in group),
                     sum(bool(t["leftovers"].get("catalog_tmp")) for t in group),
                     sum(bool(t["phase"].get("catalog_tmp_after_kill")) for t in group)])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--out", default="bench/out/crash.json")
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument("--work", help="folder for warehouses and logs (default: a new temporary folder)")
    parser.add_argument("--deadline", type=float, default=0.0,
                        help="stop starting trials after this many seconds (0: no limit)")
    parser.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS),
                        help=f"kinds of kill to draw from (default: all, weights {TARGET_WEIGHTS})")
    parser.add_argument("--jobs", type=int, default=0,
                        help="omicsdw build --jobs N for every build of the trial (default: the build's default; "
                             "the killed process group then holds the workers and their forkserver too)")
    parser.add_argument("--keep", action="store_true", help="keep every trial's warehouse, not only failed ones")
    parser.add_argument("--markdown", metavar="REPORT", nargs="+",
                        help="print README tables from saved reports (several: runs side by side, e.g. two seeds, "
                             "counted together) and exit")
    args = parser.parse_args(argv)
    if args.markdown:
        reports = [json.loads(Path(r).read_text()) for r in args.markdown]
        if any(r["studies"] != reports[0]["studies"] for r in reports):
            parser.error("reports of different studies")
        print(markdown({"studies": reports[0]["studies"], "trials": [t for r in reports for t in r["trials"]]}))
        return 0
    if args.jobs:
        global BUILD_ARGS
        BUILD_ARGS = (*BUILD_ARGS, "--jobs", str(args.jobs))
    t0 = time.monotonic()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="omicsdw-crash-"))
    work.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    setup = prepare(work, log=lambda m: print(m, flush=True))
    print(f"volatile columns excluded: {setup.notes['volatile_columns']}", flush=True)
    rng = random.Random(args.seed)
    trials: list[Trial] = []
    for n, (target, param) in enumerate(plan(args.trials, setup.measured, rng, tuple(args.targets)), start=1):
        if args.deadline and time.monotonic() - t0 > args.deadline:
            print(f"deadline reached after {len(trials)} trials", flush=True)
            break
        trial = run_trial(setup, n, target, param, keep=args.keep)
        trials.append(trial)
        print(_table([trial], setup.studies).splitlines()[1], flush=True)
        report = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(time.time() - (time.monotonic() - t0))),
                  "planned_trials": args.trials, "seed": args.seed, "work": "(temporary folder)",
                  "studies": setup.studies, "measured_b_over_a": setup.measured, "setup": setup.notes,
                  "wall_s": round(time.monotonic() - t0, 1), "summary": summary(trials, setup.studies),
                  "trials": [asdict(t) for t in trials]}
        out.write_text(json.dumps(report, indent=1, default=str))
    print(_table(trials, setup.studies))
    print(json.dumps(summary(trials, setup.studies), indent=1))
    print(f"wall time {time.monotonic() - t0:.0f} s; work folder {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
