"""A study is reprocessed when what computed it changed: its code, or the gene reference's files."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl

from transforms.ingest.genes import REFERENCE_DIR, GeneReference
from warehouse.versions import code_fingerprint, source_fingerprint


def test_source_fingerprint_changes_with_any_source_file_and_only_then(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "a.py").write_text("x = 1\n")
    (package / "sub" / "b.py").write_text("y = 2\n")
    (package / "notes.txt").write_text("not code\n")
    first = source_fingerprint([package])
    (package / "notes.txt").write_text("changed, still not code\n")
    assert source_fingerprint([package]) == first
    (package / "sub" / "b.py").write_text("y = 3\n")
    assert source_fingerprint([package]) != first
    assert len(code_fingerprint()) == 32


def test_gene_reference_fingerprint_follows_its_files_not_only_release_json(tmp_path: Path) -> None:
    copy = tmp_path / "reference"
    shutil.copytree(REFERENCE_DIR, copy)
    before = GeneReference.load(copy).fingerprint
    genes = pl.read_parquet(copy / "genes.parquet")
    genes.with_columns(pl.when(pl.col("gene_id") == 7157).then(pl.lit("TP53X")).otherwise("symbol").alias(
        "symbol")).write_parquet(copy / "genes.parquet")
    changed = tmp_path / "changed"
    shutil.copytree(copy, changed)  # a new folder: the loader caches per folder
    after = GeneReference.load(changed).fingerprint
    assert before != after
    assert before.split(":")[0] == after.split(":")[0] == "org.Hs.eg.db 3.16.0"  # same release.json source
