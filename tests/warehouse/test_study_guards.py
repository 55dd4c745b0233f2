"""Typos in study.yaml that would shrink, rename or split a published study are held with a located error (defects20).

Real inputs: the six GEUVADIS RSEM files of tests/data and the bundled pasilla example. The expected figures are
counted by hand from the files (six ``ERR*.genes.results.gz`` files, one per sample; pasilla's samples.tsv lists 7
libraries) and from the manifests written here (the line of each key).
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from tests.warehouse.catalog_sql import sql
from warehouse.cli import main
from warehouse.lake import Lake
from warehouse.load import ATTEMPT_FOLDER, study_folders

RSEM = Path(__file__).resolve().parents[1] / "data" / "rnaseq_geuvadis_rsem"
GEUVADIS = ("study_id: geuvadis\n"                         # line 1
            "name: GEUVADIS RSEM genes\n"                  # 2
            "organism: Homo sapiens\n"                     # 3
            "reference_genome: GRCh38\n"                   # 4
            "assays:\n"                                    # 5
            "  - name: rsem_genes\n"                       # 6
            "    kind: rna_counts\n"                       # 7
            "    format: rsem\n"                           # 8
            "    path: '{path}'\n")                        # 9: the pattern's line
SAMPLES = ["ERR188021", "ERR188088", "ERR188288", "ERR188297", "ERR188329", "ERR188356"]


def _build(landing: Path, wh: Path, *extra: str) -> int:
    return main(["build", "--landing", str(landing), "--warehouse", str(wh), "--no-plots", "--jobs", "1", *extra])


def _status(wh: Path, study: str) -> tuple:
    return sql(wh, "SELECT result, published_version IS NOT NULL, first_error_file, first_error_line, "
                   f"first_error_column, first_error FROM study_status WHERE study_id = '{study}'")[0]


@pytest.fixture
def geuvadis(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(landing, warehouse, study.yaml) after a build of the six RSEM files."""
    landing, wh = tmp_path / "landing", tmp_path / "wh"
    (landing / "geu" / "rsem").mkdir(parents=True)
    for sample in SAMPLES:
        shutil.copy(RSEM / f"{sample}.genes.results.gz", landing / "geu" / "rsem")
    manifest = landing / "geu" / "study.yaml"
    manifest.write_text(GEUVADIS.format(path="rsem/*.genes.results.gz"))
    assert _build(landing, wh) == 0
    assert sql(wh, "SELECT n_samples FROM studies") == [(6,)]
    return landing, wh, manifest


def test_build_holds_a_load_whose_glob_typo_drops_samples_until_accept_shrink(geuvadis, capsys) -> None:
    landing, wh, manifest = geuvadis
    manifest.write_text(GEUVADIS.format(path="rsem/ERR188021*.genes.results.gz"))  # matches 1 of the 6 files
    capsys.readouterr()
    assert _build(landing, wh) == 1
    out = capsys.readouterr().out
    # held: readers keep the six samples, the counts of all six
    assert sql(wh, "SELECT n_samples FROM studies") == [(6,)]
    assert sql(wh, "SELECT count(DISTINCT sample_id) FROM rna_counts") == [(6,)]
    result, published, file, line, column, error = _status(wh, "geuvadis")
    assert (result, published, file, line, column) == ("failed", True, "study.yaml", 9, "assays.rsem_genes.path")
    assert error.startswith("study_would_shrink: assay 'rsem_genes' would lose 5 of its 6 sample(s) in rna_counts "
                            "(ERR188088, ERR188288, ERR188297, ERR188329, ERR188356): 1 sample(s) in this load, 6 in "
                            "the published version; its path 'rsem/ERR188021*.genes.results.gz' matches 1 file(s)")
    assert "--accept-shrink geuvadis" in error
    assert "previous data kept" in out
    # the switch must name a study of the build: a misspelt one would accept nothing
    assert _build(landing, wh, "--accept-shrink", "geuvadsi") == 2
    assert "--accept-shrink names geuvadsi, not a study this build loads" in capsys.readouterr().err
    # accepted: published with one sample, the loss kept as a warning
    assert _build(landing, wh, "--accept-shrink", "geuvadis") == 0
    assert sql(wh, "SELECT n_samples FROM studies") == [(1,)]
    assert sql(wh, "SELECT DISTINCT sample_id FROM rna_counts") == [("ERR188021",)]
    assert _status(wh, "geuvadis")[:2] == ("loaded", True)
    (warning,) = sql(wh, "SELECT severity, message FROM ingest_issues WHERE code = 'study_would_shrink'")
    assert warning[0] == "warning"
    assert "loses 5 of its 6" in warning[1]
    assert "accepted (--accept-shrink geuvadis)" in warning[1]


def test_build_holds_a_load_that_loses_a_whole_assay(geuvadis, capsys) -> None:
    landing, wh, manifest = geuvadis
    # the assay renamed: its published samples are lost under the old name
    manifest.write_text(GEUVADIS.format(path="rsem/*.genes.results.gz").replace("rsem_genes", "genes"))
    assert _build(landing, wh) == 1
    result, published, file, line, column, error = _status(wh, "geuvadis")
    assert (result, published, file, line, column) == ("failed", True, "study.yaml", 5, "assays")
    assert error.startswith("study_would_shrink: assay 'rsem_genes' (rna_counts, 6 sample(s)) is not in this load")
    assert sql(wh, "SELECT DISTINCT assay FROM rna_counts") == [("rsem_genes",)]


def test_build_refuses_a_study_id_typo_or_case_change_of_a_published_folder(tmp_path: Path, capsys,
                                                                             example_landing) -> None:
    landing, wh = example_landing(tmp_path, "pasilla"), tmp_path / "wh"
    assert _build(landing, wh) == 0
    manifest = landing / "pasilla" / "study.yaml"
    # the folder is recorded with each attempt: what the refusal below compares
    assert study_folders(Lake(wh / "lake")) == {"pasilla": str((landing / "pasilla").absolute())}
    assert ATTEMPT_FOLDER == "omicsdw.attempt.folder"
    text = manifest.read_text()
    assert text.splitlines()[1] == "study_id: pasilla"  # line 2
    manifest.write_text(text.replace("study_id: pasilla", "study_id: pasila"))
    assert _build(landing, wh) == 1
    assert sql(wh, "SELECT study_id FROM studies") == [("pasilla",)]  # no second study
    result, published, file, line, column, error = _status(wh, "pasila")
    assert (result, published, file, line, column) == ("failed", False, "study.yaml", 2, "study_id")
    assert error == ("study_id_changed: this folder published study 'pasilla' and its study_id now says 'pasila': "
                     "loading it would publish a second study beside 'pasilla', which the warehouse keeps; nothing "
                     "was loaded. A typo: declare study_id: pasilla again; then `omicsdw remove pasila` clears this "
                     "failed attempt from study_status. A rename on purpose: `omicsdw remove pasilla` first, then "
                     "build")
    # ids that differ only in case: another folder (or this one) declaring Pasilla
    shutil.copytree(landing / "pasilla", tmp_path / "other" / "P")
    other = tmp_path / "other" / "P" / "study.yaml"
    other.write_text(text.replace("study_id: pasilla", "study_id: Pasilla"))
    assert _build(tmp_path / "other", wh) == 1
    assert sql(wh, "SELECT study_id FROM studies") == [("pasilla",)]
    result, published, file, line, column, error = _status(wh, "Pasilla")
    assert (result, published, file, line, column) == ("failed", False, "study.yaml", 2, "study_id")
    assert error.startswith("duplicate_study_id: study id 'Pasilla' differs only in case from 'pasilla', which the "
                            "warehouse holds: on a case-insensitive file system")
    # the typo fixed: unchanged and loaded; the refused ids' attempts removed from study_status
    manifest.write_text(text)
    assert _build(landing, wh) == 0
    assert main(["remove", "pasila", "--warehouse", str(wh)]) == 0
    assert main(["remove", "Pasilla", "--warehouse", str(wh)]) == 0
    assert sql(wh, "SELECT study_id, result FROM study_status") == [("pasilla", "loaded")]


def test_a_first_load_whose_id_was_refused_or_failed_blocks_no_later_id(tmp_path: Path, example_landing) -> None:
    # never published: fixing a first load's id is not a rename
    landing, wh = example_landing(tmp_path, "pasilla"), tmp_path / "wh"
    manifest = landing / "pasilla" / "study.yaml"
    text = manifest.read_text()
    manifest.write_text(text.replace("samples: samples.tsv", "samples: sample.tsv"))  # fails: no such file
    assert _build(landing, wh) == 1
    manifest.write_text(text.replace("study_id: pasilla", "study_id: Pasilla"))
    assert _build(landing, wh) == 0
    assert sql(wh, "SELECT study_id FROM studies") == [("Pasilla",)]


def test_a_study_moved_to_another_folder_frees_its_old_folder_for_a_new_id(tmp_path: Path, example_landing) -> None:
    # pasilla moves from folder pasilla/ to moved/ (unchanged: its load writes nothing), and pasilla/ becomes a
    # new study: not a typo, the old id is still declared in the landing
    landing, wh = example_landing(tmp_path, "pasilla"), tmp_path / "wh"
    assert _build(landing, wh) == 0
    shutil.copytree(landing / "pasilla", landing / "moved")
    manifest = landing / "pasilla" / "study.yaml"
    manifest.write_text(manifest.read_text().replace("study_id: pasilla", "study_id: pasilla2"))
    assert _build(landing, wh) == 0
    assert sql(wh, "SELECT study_id FROM studies ORDER BY ALL") == [("pasilla",), ("pasilla2",)]


def test_a_study_folder_link_re_pointed_to_a_version_with_an_id_typo_is_refused(tmp_path: Path,
                                                                              example_landing) -> None:
    """landing/pasilla is a link to the current version of the study (v1, then v2): the folder is the link's name,
    not its target, so v2 declaring 'pasila' is the typo it is (review20e: recorded by target, it loaded)."""
    versions = example_landing(tmp_path / "v", "pasilla")
    (versions / "pasilla").rename(versions / "v1")
    shutil.copytree(versions / "v1", versions / "v2")
    v2 = versions / "v2" / "study.yaml"
    v2.write_text(v2.read_text().replace("study_id: pasilla", "study_id: pasila"))
    landing, wh = tmp_path / "landing", tmp_path / "wh"
    landing.mkdir()
    (landing / "pasilla").symlink_to(versions / "v1", target_is_directory=True)
    assert _build(landing, wh) == 0
    (landing / "pasilla").unlink()
    (landing / "pasilla").symlink_to(versions / "v2", target_is_directory=True)
    assert _build(landing, wh) == 1
    assert sql(wh, "SELECT study_id FROM studies") == [("pasilla",)]
    assert _status(wh, "pasila")[5].startswith("study_id_changed: this folder published study 'pasilla'")


LAML = Path(__file__).resolve().parents[2] / "examples" / "laml"


def test_a_sample_left_without_variants_is_no_shrink_but_one_gone_from_the_sample_sheet_is(tmp_path) -> None:
    """A caller update that leaves one sample with no variant keeps the sample (clinical.tsv lists it): the
    variants and gene_mutation_status tables have rows only where a sample has a mutation, so that is no loss."""
    landing, wh = tmp_path / "landing", tmp_path / "wh"
    study = landing / "laml"
    study.mkdir(parents=True)
    shutil.copy(LAML / "clinical.tsv", study)
    manifest = (LAML / "study.yaml").read_text().split("  - name: segments")[0]  # the mutations assay alone
    (study / "study.yaml").write_text(manifest)
    maf = gzip.decompress((LAML / "tcga_laml.maf.gz").read_bytes()).decode().splitlines(keepends=True)
    barcode = maf[0].rstrip("\n").split("\t").index("Tumor_Sample_Barcode")
    (study / "tcga_laml.maf.gz").write_bytes(gzip.compress("".join(maf).encode()))
    assert _build(landing, wh) == 0
    assert sql(wh, "SELECT count(DISTINCT sample_id) FROM variants WHERE sample_id = 'TCGA-AB-2988'") == [(1,)]
    # TCGA-AB-2988 has 15 MAF rows (grep): none after the "caller update"; clinical.tsv (200 samples) still lists it
    kept = [row for row in maf if row.split("\t")[barcode] != "TCGA-AB-2988"]
    assert len(maf) - len(kept) == 15
    (study / "tcga_laml.maf.gz").write_bytes(gzip.compress("".join(kept).encode()))
    assert _build(landing, wh) == 0
    assert _status(wh, "tcga_laml")[:2] == ("loaded", True)
    assert sql(wh, "SELECT count(*) FROM variants WHERE sample_id = 'TCGA-AB-2988'") == [(0,)]
    assert sql(wh, "SELECT count(*) FROM samples WHERE sample_id = 'TCGA-AB-2988'") == [(1,)]
    # the sample sheet losing that sample too is still held
    clinical = (LAML / "clinical.tsv").read_text().splitlines(keepends=True)
    (study / "clinical.tsv").write_text("".join(r for r in clinical if not r.startswith("TCGA-AB-2988\t")))
    assert _build(landing, wh) == 1
    error = _status(wh, "tcga_laml")[5]
    assert error.startswith("study_would_shrink: the study's sample table would lose 1 of its 200 sample(s) "
                            "(TCGA-AB-2988)")
    assert sql(wh, "SELECT count(*) FROM samples WHERE sample_id = 'TCGA-AB-2988'") == [(1,)]


PBMC = Path(__file__).resolve().parents[2] / "examples" / "pbmc_chr21"


def test_cells_annotated_anew_are_no_shrink_but_a_donor_gone_is(tmp_path) -> None:
    """Pseudobulk profiles are ``<sample>__<cell_type>``: re-annotating pbmc_6's 144 lymphocytes as monocytes (its
    counts read with pandas: 6 donors x lymphocyte, monocyte) drops profile pbmc_6__lymphocyte, not a sample."""
    anndata = pytest.importorskip("anndata")
    landing, wh = tmp_path / "landing", tmp_path / "wh"
    shutil.copytree(PBMC, landing / "pbmc")
    cells = landing / "pbmc" / "cells.h5ad"
    assert _build(landing, wh) == 0
    assert sql(wh, "SELECT count(DISTINCT sample_id) FROM rna_counts") == [(12,)]
    data = anndata.read_h5ad(cells)
    mask = (data.obs["sample"].astype(str) == "pbmc_6") & (data.obs["cell_type"].astype(str) == "lymphocyte")
    assert int(mask.sum()) == 144
    cell_type = data.obs["cell_type"].astype(str)
    cell_type[mask] = "monocyte"
    data.obs["cell_type"] = cell_type.astype("category")
    data.write_h5ad(cells)
    assert _build(landing, wh) == 0
    assert _status(wh, "pbmc_chr21")[:2] == ("loaded", True)
    assert sql(wh, "SELECT DISTINCT sample_id FROM rna_counts WHERE sample_id LIKE 'pbmc_6%'") == [
        ("pbmc_6__monocyte",)]
    # every cell of donor pbmc_6 gone: its last profile is lost, held
    data = data[(data.obs["sample"].astype(str) != "pbmc_6").to_numpy()].copy()
    data.write_h5ad(cells)
    assert _build(landing, wh) == 1
    error = _status(wh, "pbmc_chr21")[5]
    assert error.startswith("study_would_shrink: assay 'sc' would lose 1 of its 11 sample(s) in rna_counts "
                            "(pbmc_6__monocyte)")


def test_identity_check_reads_the_logs_once_not_once_per_study(tmp_path) -> None:
    """200 published studies, 190 of them last loaded 50 builds ago: the id check of one load looks at each commit
    of the ledger and ingest_issues logs a bounded number of times (it scanned the ledger down to each study's newest
    commit, 190 x 1,500 commits)."""
    from warehouse.lake import FINGERPRINT_KEY, STUDY_KEY
    from warehouse.load import identity_issues

    reads = [0]

    class Commit(dict):
        def get(self, key, default=None):
            reads[0] += 1
            return super().get(key, default)

    # newest first: 50 builds that changed s0-s9, after a first build of all 200 studies
    loads = [i for _ in range(50) for i in range(10)] + list(range(200))
    issues = [Commit({STUDY_KEY: f"s{i}", FINGERPRINT_KEY: "f", ATTEMPT_FOLDER: f"/elsewhere/s{i}"}) for i in loads]
    ledger = [Commit({STUDY_KEY: f"s{i}", FINGERPRINT_KEY: "f"}) for i in loads for _ in range(3)]

    class FakeLake:
        def exists(self, table: str) -> bool:
            return True

        def history(self, table: str) -> list[Commit]:
            return issues if table == "ingest_issues" else ledger

        def last_commit(self, table: str, study_id: str | None) -> dict | None:
            return next((c for c in self.history(table) if c.get(STUDY_KEY) == study_id), None)

        def last_fingerprint(self, table: str, study_id: str | None) -> str | None:
            commit = self.last_commit(table, study_id)
            return None if commit is None else commit.get(FINGERPRINT_KEY)

    folder = tmp_path / "s0"
    folder.mkdir()
    (folder / "study.yaml").write_text("study_id: s0\n")
    assert identity_issues(FakeLake(), "s0", folder) == []  # type: ignore[arg-type]
    assert reads[0] <= 3 * (len(issues) + len(ledger))


def test_a_dagster_run_accepts_a_shrink_by_its_run_tag(geuvadis) -> None:
    """In the UI the shrink is accepted by the run tag ``omicsdw/accept_shrink`` (the resource's launchpad config
    needs every other setting retyped): the same load is held without it and published with it."""
    import dagster as dg

    from orchestration.definitions import STUDY_ASSETS
    from orchestration.partitions import ACCEPT_SHRINK_TAG
    from orchestration.resources import WarehouseResource
    from orchestration.sensors import study_job

    landing, wh, manifest = geuvadis
    manifest.write_text(GEUVADIS.format(path="rsem/ERR188021*.genes.results.gz"))  # matches 1 of the 6 files
    resource = {"warehouse": WarehouseResource(landing_dir=str(landing), warehouse_dir=str(wh), plots=False)}
    job = dg.Definitions(assets=STUDY_ASSETS, jobs=[study_job], resources=resource).resolve_job_def("study_job")
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("studies", ["geuvadis"])
        held = job.execute_in_process(partition_key="geuvadis", instance=instance, raise_on_error=False)
        assert not held.success
        assert Lake(wh / "lake").scan("samples", study_id="geuvadis").collect().height == 6
        accepted = job.execute_in_process(partition_key="geuvadis", instance=instance,
                                          tags={ACCEPT_SHRINK_TAG: "true"})
        assert accepted.success
    assert Lake(wh / "lake").scan("samples", study_id="geuvadis").collect().height == 1
