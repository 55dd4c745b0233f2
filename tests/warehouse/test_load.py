"""load_study of a study the readers already failed: nothing staged, every problem still listed; load_folder of an
unchanged study: not read at all."""

from __future__ import annotations

from pathlib import Path

import polars as pl

import warehouse.load
from transforms.ingest.genes import GeneReference
from transforms.ingest.study import read_study
from warehouse.lake import Lake
from warehouse.load import load_folder, load_study

MANIFEST = ("study_id: s\nname: two problems\nsamples: samples.tsv\nassays:\n"
            "  - {name: rna, kind: rna_counts, format: matrix, path: counts.tsv, gene_id_type: symbol}\n")
COUNTS = "gene\tS1\tS2\tS3\nTP53\t10\t-5\t30\nMYC\t5\t6\t7\n"  # file line 2, column S2: a negative count
SAMPLES = "sample_id\tgroup\nS1\ta\nS2\tb\n"  # S3 of the counts is not a sample: a reader error


def test_a_study_the_readers_failed_stages_no_file_and_still_lists_its_quarantined_rows(
        tmp_path: Path, study_folder, reference: GeneReference, monkeypatch) -> None:
    planned: list[str] = []
    plan = Lake.plan

    def spy(self, table, *args, **kwargs):  # type: ignore[no-untyped-def]
        planned.append(table)
        return plan(self, table, *args, **kwargs)

    monkeypatch.setattr(Lake, "plan", spy)
    folder = study_folder(tmp_path / "landing", MANIFEST, {"counts.tsv": COUNTS, "samples.tsv": SAMPLES})
    lake = Lake(tmp_path / "wh" / "lake")
    ingest = read_study(folder, reference=reference)
    assert ingest.issues.has_errors  # failed before the load
    load = load_study(lake, ingest)
    assert not load.ok
    problems = set(load.issues.select("file", "line", "column", "code").rows())
    assert ("counts.tsv", 2, "S2", "negative_count") in problems
    assert "unknown_sample" in {code for *_, code in problems}
    assert planned == ["ingest_issues"]  # the log alone: no data file staged (it would only be discarded)
    logged = lake.scan("ingest_issues", study_id="s").collect()
    assert logged.filter(pl.col("code") == "negative_count").height == 1


GOOD_SAMPLES = "sample_id\tgroup\nS1\ta\nS2\tb\nS3\tb\n"
GOOD_COUNTS = "gene\tS1\tS2\tS3\nTP53\t10\t5\t30\nMYC\t5\t6\t7\n"


def test_load_folder_reads_a_study_only_when_its_files_or_last_load_differ(
        tmp_path: Path, study_folder, reference: GeneReference, monkeypatch) -> None:
    reads: list[Path] = []
    read = warehouse.load.read_study

    def counted(folder, **kwargs):  # type: ignore[no-untyped-def]
        reads.append(folder)
        return read(folder, **kwargs)

    monkeypatch.setattr(warehouse.load, "read_study", counted)
    folder = study_folder(tmp_path / "landing", MANIFEST, {"counts.tsv": COUNTS, "samples.tsv": SAMPLES})
    lake = Lake(tmp_path / "wh" / "lake")

    def load():  # type: ignore[no-untyped-def]
        return load_folder(lake, folder, reference=reference, code_version="v1")

    assert not load().ok
    assert not load().ok
    assert len(reads) == 2  # a failed load is read again each time: its stored fingerprint says it failed
    (folder / "counts.tsv").write_text(GOOD_COUNTS)
    (folder / "samples.tsv").write_text(GOOD_SAMPLES)
    first = load()
    assert first.ok
    assert not first.unchanged
    assert len(reads) == 3
    again = load()
    assert again.ok
    assert again.unchanged
    assert len(reads) == 3  # same files, reference and code: not read
    assert again.issues.equals(lake.scan("ingest_issues", study_id="s").collect())
    assert lake.scan("rna_counts", study_id="s").select(pl.col("count").sum()).collect().item() == 63
    assert load_folder(lake, folder, reference=reference, code_version="v2").ok  # new code: read and loaded
    assert len(reads) == 4
    (folder / "counts.tsv").write_text(GOOD_COUNTS.replace("30", "31"))
    assert not load().unchanged
    assert len(reads) == 5
    assert lake.scan("rna_counts", study_id="s").select(pl.col("count").sum()).collect().item() == 64


def test_load_folder_refuses_a_read_during_which_a_file_of_the_study_changed(
        tmp_path: Path, study_folder, reference: GeneReference, monkeypatch) -> None:
    """A matrix still being copied into the landing (its writer appends whole lines): the read took the first
    part, loaded with no issue, and those rows were published until the next build. Now the read is an error and
    the previous load stays; the next build, once the file is whole, loads it."""
    folder = study_folder(tmp_path / "landing", MANIFEST, {"counts.tsv": GOOD_COUNTS, "samples.tsv": GOOD_SAMPLES})
    lake = Lake(tmp_path / "wh" / "lake")
    assert load_folder(lake, folder, reference=reference, code_version="v1").ok  # the previous good load: 63
    counts = folder / "counts.tsv"
    counts.write_text(GOOD_COUNTS.replace("MYC\t5\t6\t7\n", "MYC\t50\t60\t70\n"))
    read = warehouse.load.read_study

    def read_while_written(path, **kwargs):  # type: ignore[no-untyped-def]
        ingest = read(path, **kwargs)
        with open(counts, "a") as fh:  # the writer goes on after the reader took the file
            fh.write("EGFR\t1\t2\t3\n")
        return ingest

    monkeypatch.setattr(warehouse.load, "read_study", read_while_written)
    load = load_folder(lake, folder, reference=reference, code_version="v1")
    assert not load.ok
    (error,) = load.errors.iter_rows(named=True)
    assert (error["code"], error["file"]) == ("file_changed", "counts.tsv")
    assert "changed while the study was read" in error["message"]
    assert lake.scan("rna_counts", study_id="s").select(pl.col("count").sum()).collect().item() == 63
    monkeypatch.setattr(warehouse.load, "read_study", read)
    assert load_folder(lake, folder, reference=reference, code_version="v1").ok  # the whole file: 10+5+30 + 180 + 6
    assert lake.scan("rna_counts", study_id="s").select(pl.col("count").sum()).collect().item() == 231


def test_load_folder_ignores_a_file_the_readers_never_open_changing_during_the_read(
        tmp_path: Path, study_folder, reference: GeneReference, monkeypatch) -> None:
    """A lab's notes/run.log appended to during every read, a README edited: no reader opens them, so the read
    stands (it failed the study with "still being copied" at every build); an input changing still voids it."""
    folder = study_folder(tmp_path / "landing", MANIFEST, {"counts.tsv": GOOD_COUNTS, "samples.tsv": GOOD_SAMPLES,
                                                           "README.md": "# s\n"})
    (folder / "notes").mkdir()
    (folder / "notes" / "run.log").write_text("started\n")
    lake = Lake(tmp_path / "wh" / "lake")
    read = warehouse.load.read_study
    touched = [folder / "notes" / "run.log", folder / "README.md"]

    def read_while_logging(path, **kwargs):  # type: ignore[no-untyped-def]
        ingest = read(path, **kwargs)
        for file in touched:
            with open(file, "a") as fh:
                fh.write("still running\n")
        return ingest

    monkeypatch.setattr(warehouse.load, "read_study", read_while_logging)
    load = load_folder(lake, folder, reference=reference, code_version="v1")
    assert load.ok, load.errors
    assert lake.scan("rna_counts", study_id="s").select(pl.col("count").sum()).collect().item() == 63
    touched = [folder / "samples.tsv"]  # an input: its change voids the read, named as before
    load = load_folder(lake, folder, reference=reference, code_version="v1")
    assert not load.ok
    assert load.errors.select("code", "file").rows() == [("file_changed", "samples.tsv")]


def test_load_folder_refuses_a_read_during_which_an_input_reached_through_a_linked_folder_changed(
        tmp_path: Path, study_folder, reference: GeneReference, monkeypatch) -> None:
    """The manifest names current/counts.tsv, current a link to runs/v1 inside the study: the stamps name the
    real file (the walk does not enter the link), the read the path as written; both are the one input, so the
    file growing during the read is a file_changed error (it loaded the half-copied file with no issue)."""
    manifest = MANIFEST.replace("path: counts.tsv", "path: current/counts.tsv")
    folder = study_folder(tmp_path / "landing", manifest, {"samples.tsv": GOOD_SAMPLES})
    (folder / "runs" / "v1").mkdir(parents=True)
    counts = folder / "runs" / "v1" / "counts.tsv"
    counts.write_text(GOOD_COUNTS)
    (folder / "current").symlink_to(Path("runs") / "v1", target_is_directory=True)
    lake = Lake(tmp_path / "wh" / "lake")
    read = warehouse.load.read_study

    def read_while_written(path, **kwargs):  # type: ignore[no-untyped-def]
        ingest = read(path, **kwargs)
        with open(counts, "a") as fh:
            fh.write("EGFR\t1\t2\t3\n")
        return ingest

    monkeypatch.setattr(warehouse.load, "read_study", read_while_written)
    load = load_folder(lake, folder, reference=reference, code_version="v1")
    assert not load.ok
    assert load.errors.select("code", "file").rows() == [("file_changed", "runs/v1/counts.tsv")]
    monkeypatch.setattr(warehouse.load, "read_study", read)
    assert load_folder(lake, folder, reference=reference, code_version="v1").ok  # 63 + the EGFR line
    assert lake.scan("rna_counts", study_id="s").select(pl.col("count").sum()).collect().item() == 69
