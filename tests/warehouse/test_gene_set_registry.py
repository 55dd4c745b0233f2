"""The gene-set registry keeps the libraries of a study it cannot read from the landing any more.

A study whose landing folder was deleted is kept, whole, until ``omicsdw remove`` (README, "Never emptied by
accident"); a study whose study.yaml or library file breaks keeps its previous load. The registry
(``gene_sets`` / ``gene_set_members``) is rewritten from the landing whenever any library changes, and used to drop
those studies' own libraries then, while their ``signature_scores`` and ``gene_set_enrichment`` rows kept naming
them and ``signature_matches`` lost their signatures (found on trialK: GEUVADIS with a signatures YAML, then a
build of another landing folder).

The expected rows are the GMT written here, with the NCBI Gene ids of its symbols (TP53 7157, EGFR 1956, MYC 4609).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from transforms.ingest.genes import GeneReference
from warehouse.lake import Lake
from warehouse.publish import remove_study
from warehouse.signatures import write_gene_sets

GMT = "OWN_SET\tmade up\tTP53\tEGFR\tMYC\tNOT_A_GENE_QQ\n"
EXPECTED_MEMBERS = [("OWN_SET", "EGFR", 1956), ("OWN_SET", "MYC", 4609), ("OWN_SET", "NOT_A_GENE_QQ", None),
                    ("OWN_SET", "TP53", 7157)]


@pytest.fixture(scope="module")
def reference() -> GeneReference:
    return GeneReference.load()


def _own(lake: Lake, study_id: str = "own") -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """The study's library rows: (library, gene_set, n_genes, n_mapped) and (gene_set, identifier, gene_id)."""
    sets = (lake.scan("gene_sets").filter(pl.col("study_id") == study_id)
            .select("library", "gene_set", "n_genes", "n_mapped").sort("gene_set").collect().rows())
    members = (lake.scan("gene_set_members").filter(pl.col("study_id") == study_id)
               .select("gene_set", "identifier", "gene_id").sort("identifier").collect().rows())
    return sets, members


def _landing(root: Path, study_folder) -> Path:
    landing = root / "landing"
    study_folder(landing, "study_id: own\nname: n\ngene_sets: [own.gmt]\n", {"own.gmt": GMT}, name="own")
    study_folder(landing, "study_id: other\nname: n\n", name="other")
    return landing


def _rewrite(lake: Lake, landing: Path, reference: GeneReference) -> None:
    """A registry rewrite, as any library change makes one (here: a warehouse-wide library added)."""
    extra = landing.parent / f"sets{len(list(landing.parent.glob('sets*')))}"
    extra.mkdir()
    (extra / "team.gmt").write_text("TEAM_SET\tna\tTP53\tMYC\n")
    commit, _ = write_gene_sets(lake, landing=landing, library_dir=extra, reference=reference)
    assert commit.ok
    assert lake.scan("gene_sets").filter(pl.col("library") == "team").collect().height == 1  # it was rewritten


def test_write_gene_sets_keeps_the_libraries_of_a_study_without_its_folder(tmp_path, study_folder, reference):
    landing = _landing(tmp_path, study_folder)
    lake = Lake(tmp_path / "lake")
    assert write_gene_sets(lake, landing=landing, reference=reference)[0].ok
    assert _own(lake) == ([("own", "OWN_SET", 4, 3)], EXPECTED_MEMBERS)
    shutil.rmtree(landing / "own")  # the folder deleted: the study is kept whole until omicsdw remove
    _rewrite(lake, landing, reference)
    assert _own(lake) == ([("own", "OWN_SET", 4, 3)], EXPECTED_MEMBERS)
    # the shipped libraries are there once, not twice
    assert lake.scan("gene_sets").filter(pl.col("library") == "msigdb_hallmark").collect().height == 50
    remove_study(lake, "own")  # removed on purpose: its libraries go, and a later rewrite does not bring them back
    assert _own(lake) == ([], [])
    _rewrite(lake, landing, reference)
    assert _own(lake) == ([], [])


def test_write_gene_sets_keeps_a_study_library_whose_manifest_or_file_breaks(tmp_path, study_folder, reference):
    landing = _landing(tmp_path, study_folder)
    lake = Lake(tmp_path / "lake")
    assert write_gene_sets(lake, landing=landing, reference=reference)[0].ok
    manifest = landing / "own" / "study.yaml"
    manifest.write_text("study_id: own\nname: [n\n")  # a YAML syntax error: the study's ingest fails, keeps its load
    _rewrite(lake, landing, reference)
    assert _own(lake) == ([("own", "OWN_SET", 4, 3)], EXPECTED_MEMBERS)
    manifest.write_text("study_id: own\nname: n\ngene_sets: [own.gmt]\n")
    (landing / "own" / "own.gmt").write_text("not a GMT line\n")  # a broken library: the ingest fails likewise
    _rewrite(lake, landing, reference)
    assert _own(lake) == ([("own", "OWN_SET", 4, 3)], EXPECTED_MEMBERS)
    manifest.write_text("study_id: own\nname: n\n")  # the library taken out on purpose: it leaves the registry
    _rewrite(lake, landing, reference)
    assert _own(lake) == ([], [])
