"""Shared fixtures: the small real public files vendored in ``tests/data`` (see tests/data/README.md).

Each sub-folder keeps the name and layout of its source folder in the developers' ``../shared/data`` and a
``SOURCE.md`` naming the origin, license and how the copy was cut, so a clone runs every test on its own.

The readers of those files live here once, as session-scoped fixtures handing out polars frames (immutable, so
sharing them between tests is safe); tests shape them into numpy blocks or long rows themselves. Factories write
study folders (a ``study.yaml`` and its files) or copy the bundled examples into a landing folder.
"""

from __future__ import annotations

import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pytest

from transforms.ingest.genes import GeneReference

TEST_DATA = Path(__file__).resolve().parent / "data"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _sigterm_ignored() -> bool:
    """Whether this process ignores SIGTERM at the OS level (``SigIgn`` of /proc/self/status; False elsewhere)."""
    status = Path("/proc/self/status")
    if not status.exists():
        return False
    mask = next(line.split()[1] for line in status.read_text().splitlines() if line.startswith("SigIgn:"))
    return bool(int(mask, 16) & (1 << (signal.SIGTERM - 1)))


@pytest.fixture(scope="session", autouse=True)
def _no_dagster_home() -> Iterator[None]:
    """Builds in the tests use ``omicsdw build``'s temporary Dagster instance, whatever the shell exports.

    ``make test`` exports $DAGSTER_HOME (for ``make run`` / ``make dev``); with it every test's build would record
    its runs in one SQLite instance, which the two test workers (``-n 2``) would share and lock. The tests of
    $DAGSTER_HOME itself give it a fresh folder of their own.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("DAGSTER_HOME", raising=False)
        yield


@pytest.fixture(scope="session", autouse=True)
def _one_study_at_a_time() -> Iterator[None]:
    """Builds in the tests build one study after another in the test's process (``--jobs 1``), whatever the
    machine's cores: most tests watch a build from inside (monkeypatched functions, the order of catalog rebuilds),
    which worker processes would not show, and two test workers (``-n 2``) already use the cores. The tests of
    ``--jobs`` (``tests/warehouse/test_build_jobs.py``, the crash trial's) give it on the command line.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMICSDW_BUILD_JOBS", "1")
        yield


@pytest.fixture(autouse=True)
def _sigterm_not_left_ignored(request: pytest.FixtureRequest) -> Iterator[None]:
    """Restore SIGTERM's default after a test whose code left it ignored, and say which test did.

    Dagster gives SIGTERM SIGINT's disposition after every in-process run, and a test runner started in the
    background has SIGINT ignored: every test that materialises assets directly leaves SIGTERM ignored then
    (``omicsdw build`` restores it itself). An ignored disposition survives exec: spawned children of later tests
    (a lock holder, a process pool) then outlive ``terminate()``; one full-suite run lost 60 s to that and another
    hung in a pool's join.
    """
    yield
    if _sigterm_ignored():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        print(f"\n{request.node.nodeid} left SIGTERM ignored; restored", file=sys.stderr)


@pytest.fixture(autouse=True)
def _no_dagster_instance_left_current() -> Iterator[None]:
    """Fail the test that leaves a Dagster instance current (entered, never closed).

    Dagster keeps the entered instance's state storage in a context variable; a later test's ``materialize`` reads
    it and fails on a deleted temporary folder far from the cause (CI once failed that way). Private API: Dagster
    has no public accessor for it.
    """
    from dagster._core.storage.defs_state.base import DefsStateStorage

    before = DefsStateStorage.get()
    yield
    assert DefsStateStorage.get() is before, "a Dagster instance was entered and not closed (use `with`)"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of vendored real data files (``tests/data``); the name is kept for the tests that use it."""
    return TEST_DATA


@pytest.fixture(scope="session")
def reference() -> GeneReference:
    """The gene reference snapshot shipped with the code (frozen; loaded once)."""
    return GeneReference.load()


# -- R reference tables (tests/data/r_reference, made by make_reference.R; see its README) -----------------------
@pytest.fixture(scope="session")
def r_table() -> Callable[[str], pl.DataFrame]:
    """Read an R reference table by name (``.gz`` found when the plain name is absent); R's NA becomes null."""

    def read(name: str) -> pl.DataFrame:
        path = TEST_DATA / "r_reference" / name
        path = path if path.exists() else path.with_name(path.name + ".gz")
        return pl.read_csv(path, separator="\t", null_values="NA")

    return read


# -- pasilla (tests/data/rnaseq_pasilla): 14,599 fly genes x 7 samples ---------------------------------------------
@pytest.fixture(scope="session")
def pasilla_counts() -> pl.DataFrame:
    """pasilla_gene_counts.tsv as read: gene_id then one count column per sample (untreated1 ... treated3)."""
    return pl.read_csv(TEST_DATA / "rnaseq_pasilla" / "pasilla_gene_counts.tsv", separator="\t")


@pytest.fixture(scope="session")
def pasilla_samples(pasilla_counts: pl.DataFrame) -> pl.DataFrame:
    """pasilla_sample_annotation.csv with sample_id (``file`` without its 'fb' suffix), in the counts' column order."""
    annotation = pl.read_csv(TEST_DATA / "rnaseq_pasilla" / "pasilla_sample_annotation.csv").with_columns(
        sample_id=pl.col("file").str.strip_suffix("fb"))
    return pl.DataFrame({"sample_id": pasilla_counts.columns[1:]}).join(annotation, on="sample_id",
                                                                        maintain_order="left")


@pytest.fixture(scope="session")
def pasilla_long(pasilla_counts: pl.DataFrame) -> pl.DataFrame:
    """The counts as long rna_counts rows (one row per sample and gene, no gene mapping)."""
    return (pasilla_counts.unpivot(index="gene_id", variable_name="sample_id", value_name="count")
            .rename({"gene_id": "feature_id"})
            .with_columns(pl.lit(None, pl.Int64).alias("gene_id"), pl.col("count").cast(pl.Float64)))


@pytest.fixture(scope="session")
def pasilla_attributes() -> pl.DataFrame:
    """sample_attributes rows (condition, type) from pasilla_sample_annotation.csv, in the file's order."""
    annotation = pl.read_csv(TEST_DATA / "rnaseq_pasilla" / "pasilla_sample_annotation.csv")
    return (annotation.select(pl.col("file").str.strip_suffix("fb").alias("sample_id"), "condition", "type")
            .unpivot(index="sample_id", variable_name="attribute", value_name="value"))


# -- airway subset (tests/data/rnaseq_airway): featureCounts of 20 genes x 8 runs -----------------------------------
@pytest.fixture(scope="session")
def airway_counts() -> pl.DataFrame:
    """airway_subset_featureCounts.txt: Geneid, Length and one count column per run (``_subset.bam`` stripped)."""
    wide = pl.read_csv(TEST_DATA / "rnaseq_airway" / "featurecounts" / "airway_subset_featureCounts.txt",
                       separator="\t", comment_prefix="#")
    runs = [c for c in wide.columns if c.endswith("_subset.bam")]
    return wide.select("Geneid", "Length", *runs).rename({c: c.removesuffix("_subset.bam") for c in runs})


@pytest.fixture(scope="session")
def airway_samples(airway_counts: pl.DataFrame) -> pl.DataFrame:
    """sample_table.csv rows (Run, cell, dex, ...) in the counts' column order."""
    table = pl.read_csv(TEST_DATA / "rnaseq_airway" / "sample_table.csv")
    return pl.DataFrame({"Run": airway_counts.columns[2:]}).join(table, on="Run", maintain_order="left")


@pytest.fixture(scope="session")
def airway_long(airway_counts: pl.DataFrame) -> pl.DataFrame:
    """The counts as rna_counts rows of assay 'featurecounts' (feature length kept, no gene mapping)."""
    return (airway_counts.unpivot(index=["Geneid", "Length"], variable_name="sample_id", value_name="count")
            .select(pl.lit("featurecounts").alias("assay"), "sample_id", pl.lit(None, pl.Int64).alias("gene_id"),
                    pl.col("Geneid").alias("feature_id"), pl.col("count").cast(pl.Float64),
                    pl.col("Length").cast(pl.Float64).alias("length")))


@pytest.fixture(scope="session")
def airway_attributes(airway_samples: pl.DataFrame) -> pl.DataFrame:
    """sample_attributes rows (cell, dex) from sample_table.csv."""
    return (airway_samples.select(pl.col("Run").alias("sample_id"), "cell", "dex")
            .unpivot(index="sample_id", variable_name="attribute", value_name="value")
            .with_columns(pl.lit("string").alias("value_type")))


# -- study folders ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def study_folder() -> Callable[..., Path]:
    """Write a study folder ``parent/name``: ``study.yaml`` holding ``manifest`` (none when None) and ``files``
    (name -> text or bytes); returns the folder. Session-scoped so module-scoped fixtures can use it too."""

    def write(parent: Path, manifest: str | None, files: dict[str, str | bytes] | None = None, *,
              name: str = "s") -> Path:
        folder = parent / name
        folder.mkdir(parents=True)
        if manifest is not None:
            (folder / "study.yaml").write_text(manifest)
        for file, content in (files or {}).items():
            if isinstance(content, bytes):
                (folder / file).write_bytes(content)
            else:
                (folder / file).write_text(content)
        return folder

    return write


@pytest.fixture(scope="session")
def example_landing() -> Callable[..., Path]:
    """Copy bundled examples (``examples/<study>``) into ``root/landing``; returns the landing folder."""

    def copy(root: Path, *studies: str) -> Path:
        landing = root / "landing"
        landing.mkdir(parents=True, exist_ok=True)
        for study in studies:
            shutil.copytree(EXAMPLES / study, landing / study)
        return landing

    return copy
