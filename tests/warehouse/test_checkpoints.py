"""Delta checkpoints after commits: a table with many commits opens from a checkpoint with the same rows, history
and time travel; a checkpoint torn by a kill leaves every reader and doctor as they were.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from deltalake import DeltaTable

from warehouse.catalog import refresh_catalog
from warehouse.commit import commit_frames
from warehouse.lake import CHECKPOINT_EVERY, Lake
from warehouse.maintenance import doctor, vacuum

COMMITS = 25  # after the create at version 0: versions 1..25, checkpoints due at 10 and 20


def _samples(study: str, commit: int) -> pl.DataFrame:
    """Rows of study ``study`` written by commit number ``commit`` (a subject id naming the commit)."""
    return pl.DataFrame({"study_id": [study, study], "sample_id": ["a", "b"],
                         "subject_id": [f"p{commit}", f"q{commit}"]})


def _commit_many(lake: Lake) -> dict[int, dict[str, pl.DataFrame]]:
    """Commit 25 replacements rotating over 4 studies; the rows expected at each version, by hand."""
    current: dict[str, pl.DataFrame] = {}
    expected = {}
    for commit in range(1, COMMITS + 1):
        study = f"s{commit % 4}"
        current[study] = _samples(study, commit)
        assert commit_frames(lake, [("samples", current[study])], tables=["samples"], study_id=study,
                             fingerprint=f"f{commit}").ok
        expected[commit] = dict(current)
    return expected


def _rows(frames: dict[str, pl.DataFrame]) -> list[tuple]:
    return sorted(pl.concat(frames.values()).rows())


def _log(lake: Lake) -> Path:
    return Path(lake.uri("samples"), "_delta_log")


def test_a_table_with_many_commits_has_checkpoints_and_opens_with_the_same_rows_history_and_versions(
        tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    expected = _commit_many(lake)
    assert CHECKPOINT_EVERY == 10
    checkpoints = sorted(p.name for p in _log(lake).glob("*.checkpoint.parquet"))
    assert checkpoints == [f"{v:020d}.checkpoint.parquet" for v in (10, 20)]
    assert json.loads((_log(lake) / "_last_checkpoint").read_text())["version"] == 20
    fresh = DeltaTable(lake.uri("samples"))  # opened anew: from the checkpoint at 20 and commits 21..25
    assert fresh.version() == COMMITS
    assert sorted(pl.DataFrame(fresh.to_pyarrow_table()).select("study_id", "sample_id", "subject_id")
                  .rows()) == _rows(expected[COMMITS])
    for version in (5, 10, 15, 20, 25):  # time travel before, at and after each checkpoint
        assert sorted(lake.scan("samples", version=version).collect().rows()) == _rows(expected[version])
    history = Lake(tmp_path / "lake").history("samples")  # a new process's view: no cached commit infos
    assert [c["version"] for c in history] == list(range(COMMITS, -1, -1))
    assert [Lake(tmp_path / "lake").last_fingerprint("samples", f"s{i}") for i in range(4)] == [
        "f24", "f25", "f22", "f23"]


def test_a_torn_or_stale_checkpoint_leaves_readers_doctor_and_vacuum_as_they_were(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    expected = _commit_many(lake)
    refresh_catalog(lake, tmp_path)
    assert doctor(lake, tmp_path) == []
    log = _log(lake)
    good = (log / f"{20:020d}.checkpoint.parquet").read_bytes()
    # delta-rs writes each file as "<name>#<n>" and renames it: a kill leaves such a temporary file, cut short ...
    (log / f"{COMMITS:020d}.checkpoint.parquet#1").write_bytes(good[: len(good) // 2])
    (log / "_last_checkpoint#1").write_text('{"version": 25, "si')
    # ... or a _last_checkpoint one checkpoint behind (killed between the checkpoint's rename and its own)
    (log / "_last_checkpoint").write_text(json.dumps({"version": 10, "size": 1}))
    fresh = DeltaTable(lake.uri("samples"))
    assert fresh.version() == COMMITS
    assert sorted(Lake(tmp_path / "lake").scan("samples").collect().rows()) == _rows(expected[COMMITS])
    assert doctor(Lake(tmp_path / "lake"), tmp_path) == []
    vacuum(Lake(tmp_path / "lake"), retention_hours=0)
    assert sorted(Lake(tmp_path / "lake").scan("samples").collect().rows()) == _rows(expected[COMMITS])
    # without _last_checkpoint at all the log is listed: the same rows
    (log / "_last_checkpoint").unlink()
    assert sorted(Lake(tmp_path / "lake").scan("samples").collect().rows()) == _rows(expected[COMMITS])
