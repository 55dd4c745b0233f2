"""End to end: a study folder declaring a GMT and a signatures YAML, through `omicsdw build`, read back in SQL.

The study is made in a temporary folder from repository files: the six GEUVADIS RSEM gene files
(tests/data/rnaseq_geuvadis_rsem, 1,000 genes; counts and TPM assays), the MSigDB Hallmark v7.4 Entrez GMT
(tests/data/genesets) and a YAML written here. The design (three samples against three) is made up for the test.
Expected figures are recomputed here from the same inputs with independent code (gseapy, numpy).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import gseapy
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import warehouse
from orchestration.assets.signatures import gene_set_enrichment
from orchestration.resources import WarehouseResource
from tests.warehouse.catalog_sql import sql as _sql
from warehouse.cli import main

pytestmark = pytest.mark.slow
SAMPLES = ["ERR188021", "ERR188088", "ERR188288", "ERR188297", "ERR188329", "ERR188356"]
SIGNATURES = """signatures:
  - name: GEUV_UP_DOWN
    description: made-up signature of genes in the 1,000-gene subset
    up: [CFTR, CD99, TNMD, SCYL3, FGR, CFH, FUCA2, GCLC]
    down: [NFYA, STPG1, NIPAL3, LAS1L, ENPP4, SEMA3F, ANKIB1, KRIT1]
  - name: GEUV_WEIGHTED
    weights: {CFTR: 1.0, CD99: 0.5, SCYL3: 0.5, FGR: 2.0, CFH: -1.0, NOT_A_GENE_QQ: 1.0}
"""


def _study(root: Path, data: Path, *, extra: str = "", files: dict[str, str] | None = None) -> Path:
    folder = root / "geuv"
    (folder / "rsem").mkdir(parents=True)
    for sample in SAMPLES:
        shutil.copy(data / "rnaseq_geuvadis_rsem" / f"{sample}.genes.results.gz", folder / "rsem")
    shutil.copy(data / "genesets" / "h.all.v7.4.entrez.gmt", folder / "hallmark_entrez.gmt")
    (folder / "signatures.yaml").write_text(SIGNATURES)
    groups = ["a", "a", "a", "b", "b", "b"]
    (folder / "samples.tsv").write_text("sample_id\tsubject_id\tgroup\n" + "".join(
        f"{s}\t{s}\t{g}\n" for s, g in zip(SAMPLES, groups, strict=True)))
    for name, text in (files or {}).items():
        (folder / name).write_text(text)
    (folder / "study.yaml").write_text(f"""study_id: geuv
name: GEUVADIS subset with gene sets
organism: human
samples: samples.tsv
assays:
  - name: counts
    kind: rna_counts
    format: rsem
    path: rsem/*.genes.results.gz
  - name: tpm
    kind: rna_abundance
    format: rsem
    path: rsem/*.genes.results.gz
    measure: tpm
contrasts:
  - name: b_vs_a
    factor: group
    test: b
    reference: a
gene_sets:
  - hallmark_entrez.gmt
  - signatures.yaml
{extra}""")
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory, shared_data) -> Path:
    tmp = tmp_path_factory.mktemp("sigbuild")
    landing = _study(tmp / "landing", shared_data)
    wh = tmp / "warehouse"
    mp = pytest.MonkeyPatch()
    mp.setenv("OMICSDW_PRERANK_PERMUTATIONS", "100")
    try:
        assert main(["build", "--landing", str(landing), "--warehouse", str(wh)]) == 0
    finally:
        mp.undo()
    return wh


def test_study_libraries_are_in_the_registry_with_unmapped_members_kept(built):
    rows = _sql(built, "SELECT library, kind, n_genes, n_mapped FROM gene_sets WHERE study_id = 'geuv' "
                       "AND gene_set LIKE 'GEUV%' ORDER BY gene_set")
    assert rows == [("signatures", "up_down", 16, 16), ("signatures", "weighted", 6, 5)]
    (unmapped,) = _sql(built, "SELECT identifier, gene_id FROM gene_set_members WHERE gene_id IS NULL "
                              "AND study_id = 'geuv'")
    assert unmapped == ("NOT_A_GENE_QQ", None)
    (issue,) = _sql(built, "SELECT file, code FROM ingest_issues WHERE code = 'unmapped_gene_set_member'")
    assert issue == ("signatures.yaml", "unmapped_gene_set_member")
    # the shared libraries are there once, not per study
    assert _sql(built, "SELECT count(*) FROM gene_sets WHERE library = 'msigdb_hallmark'") == [(50,)]


def test_ssgsea_scores_in_the_catalog_equal_gseapy_on_the_stored_log2_values(built):
    values = pl.DataFrame(_sql(built, "SELECT sample_id, gene_id, log2_value FROM rna_normalized n "
                                      "JOIN gene_id_map m USING (study_id, assay, feature_id, gene_id) "
                                      "WHERE study_id = 'geuv' AND assay = 'tpm' AND status = 'mapped'"),
                          schema=["sample_id", "gene_id", "log2_value"], orient="row")
    # zero TPMs tie; the scorer orders genes by gene_id, so gseapy gets them in that order too
    wide = values.pivot(on="sample_id", index="gene_id", values="log2_value").drop_nulls().sort("gene_id")
    frame = wide.to_pandas().astype({"gene_id": str})
    members = _sql(built, "SELECT gene_set, gene_id FROM gene_set_members WHERE library = 'hallmark_entrez' "
                          "AND gene_id IS NOT NULL")
    sets: dict[str, list[str]] = {}
    for name, gene in members:
        sets.setdefault(name, []).append(str(gene))
    ref = gseapy.ssgsea(data=frame, gene_sets=sets, outdir=None, min_size=5, max_size=5000, permutation_num=0,
                        no_plot=True, threads=1, verbose=False).res2d
    stored = pl.DataFrame(_sql(built, "SELECT gene_set, sample_id, score FROM signature_scores WHERE "
                                      "library = 'hallmark_entrez' AND method = 'ssgsea' AND assay = 'tpm'"),
                          schema=["Term", "Name", "score"], orient="row").to_pandas()
    joined = stored.merge(ref[["Term", "Name", "ES"]], on=["Term", "Name"])
    assert len(joined) == len(ref) == len(stored) > 0
    np.testing.assert_allclose(joined["score"], joined["ES"].astype(float), rtol=1e-9, atol=1e-9)


def test_every_method_scores_both_assays_and_small_sets_are_skipped(built):
    rows = dict(_sql(built, "SELECT method || ':' || assay, count(DISTINCT gene_set) FROM signature_scores "
                            "WHERE study_id = 'geuv' GROUP BY ALL"))
    assert set(rows) == {f"{m}:{a}" for m in ("ssgsea", "singscore", "weighted") for a in ("counts", "tpm")}
    overlap = _sql(built, "SELECT members_measured, scored FROM gene_set_overlap WHERE study_id = 'geuv' "
                          "AND library = 'hallmark_entrez' AND assay = 'tpm'")
    assert all(scored == (measured >= 5) for measured, scored in overlap)


def test_enrichment_and_matches_after_build(built):
    methods = dict(_sql(built, "SELECT method, count(*) FROM gene_set_enrichment WHERE study_id = 'geuv' "
                               "GROUP BY ALL"))
    assert methods.get("prerank", 0) > 0
    assert {"ora_up", "ora_down"} & set(methods)
    matches = _sql(built, "SELECT query_kind, query_name, target_contrast, n_up, n_down FROM signature_matches "
                          "WHERE query_name = 'signatures/GEUV_UP_DOWN'")
    # n_up / n_down: the signature's genes with a Wald statistic in the contrast (all-zero genes have none)
    ranked = dict(_sql(built, "SELECT m.sign, count(DISTINCT m.gene_id) FROM gene_set_members m JOIN "
                              "differential_expression d ON d.gene_id = m.gene_id AND d.assay = 'counts' WHERE "
                              "m.gene_set = 'GEUV_UP_DOWN' AND d.stat IS NOT NULL GROUP BY ALL"))
    assert matches == [("signature", "signatures/GEUV_UP_DOWN", "b_vs_a", ranked[1], ranked[-1])]
    assert ranked[1] + ranked[-1] >= 14
    top = _sql(built, "SELECT rank FROM top_gene_sets WHERE contrast = 'b_vs_a' AND method = 'prerank' "
                      "ORDER BY rank LIMIT 1")
    assert top == [(1,)]


def test_plots_are_in_the_study_report_folder(built):
    folder = built / "reports" / "geuv"
    for name in ("b_vs_a_enrichment_dots.png", "b_vs_a_running_score_1.png", "tpm_ssgsea_heatmap.png",
                 "counts_ssgsea_heatmap.png"):
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_a_bad_signature_file_is_a_located_error(tmp_path, shared_data):
    bad = "signatures:\n  - name: OK\n    up: [CFTR]\n  - name: BROKEN\n    up: [CD99]\n    weights: {FGR: 1}\n"
    landing = _study(tmp_path / "landing", shared_data, files={"signatures.yaml": bad})
    wh = tmp_path / "warehouse"
    assert main(["build", "--landing", str(landing), "--warehouse", str(wh)]) == 1
    rows = _sql(wh, "SELECT file, line, code, severity FROM ingest_issues WHERE code = 'bad_signature'")
    assert rows == [("signatures.yaml", 4, "bad_signature", "error")]


def test_a_second_build_recomputes_nothing_and_keeps_the_numbers(built):
    from warehouse.lake import Lake

    lake = Lake(built / "lake")
    tables = ("gene_sets", "gene_set_members", "signature_scores", "gene_set_enrichment", "signature_matches")
    before = {t: lake.version(t) for t in tables}
    prerank = _sql(built, "SELECT gene_set, nes, pvalue FROM gene_set_enrichment WHERE method = 'prerank' "
                          "ORDER BY gene_set, library")
    landing = built.parent / "landing"
    mp = pytest.MonkeyPatch()
    mp.setenv("OMICSDW_PRERANK_PERMUTATIONS", "100")
    try:
        assert main(["build", "--landing", str(landing), "--warehouse", str(built)]) == 0
    finally:
        mp.undo()
    assert {t: lake.version(t) for t in tables} == before
    assert _sql(built, "SELECT gene_set, nes, pvalue FROM gene_set_enrichment WHERE method = 'prerank' "
                       "ORDER BY gene_set, library") == prerank


def test_prerank_tests_hallmark_and_the_studys_own_libraries_by_default(built):
    # shipped Reactome / GO get ORA only unless named (--prerank-libraries, OMICSDW_PRERANK_LIBRARIES)
    libraries = {lib for (lib,) in _sql(built, "SELECT DISTINCT library FROM gene_set_enrichment WHERE "
                                               "method = 'prerank'")}
    assert "hallmark_entrez" in libraries
    assert libraries <= {"hallmark_entrez", "signatures", "msigdb_hallmark"}
    ora = {lib for (lib,) in _sql(built, "SELECT DISTINCT library FROM gene_set_enrichment WHERE method = 'ora_up'")}
    assert {"reactome_pathways", "go_biological_process"} <= ora


@pytest.fixture(scope="module")
def rebuilt(built, tmp_path_factory) -> Path:
    """The same landing built again without plots into a second warehouse, in this same process."""
    wh = tmp_path_factory.mktemp("rebuild") / "warehouse"
    mp = pytest.MonkeyPatch()
    mp.setenv("OMICSDW_PRERANK_PERMUTATIONS", "100")
    try:
        assert main(["build", "--landing", str(built.parent / "landing"), "--warehouse", str(wh), "--no-plots"]) == 0
    finally:
        mp.undo()
    return wh


def test_a_build_without_plots_writes_no_png(rebuilt):
    assert not list((rebuilt / "reports" / "geuv").glob("*.png"))
    page = (rebuilt / "reports" / "geuv" / "index.html").read_text()
    assert "<img" not in page
    assert "Built without plots" in page


STAGE_TABLES = ["rna_counts", "rna_sample_factors", "rna_normalized", "rna_vst", "differential_expression",
                "sample_qc", "sample_embeddings", "sample_clusters", "signature_scores", "gene_set_enrichment",
                "signature_matches"]


@pytest.mark.parametrize("table", STAGE_TABLES)
def test_two_builds_in_one_process_give_bit_identical_tables(built, rebuilt, table):
    # Two builds of the same folder in one process (the second without plots, which change no table) once gave
    # Wald statistics 6.5e-7 apart and prerank NES 0.03 apart: the stored row order differed and dense blocks
    # followed it. Every stage's rows must now be equal bit for bit (rows compared in key order).
    first, second = (warehouse.table(table, warehouse=wh).collect() for wh in (built, rebuilt))
    keys = [c for c, dtype in first.schema.items() if not dtype.is_float()]
    assert first.height > 0
    assert_frame_equal(second.sort(keys), first.sort(keys), check_exact=True)


def test_enrichment_asset_warns_about_a_prerank_library_the_registry_lacks(built, tmp_path):
    # Dagster runs (UI, sensors) keep going on the libraries that exist; the run log and metadata name the typo
    wh = tmp_path / "warehouse"
    shutil.copytree(built, wh)  # a changed setting rewrites the study's enrichment: not in the shared warehouse
    resource = WarehouseResource(landing_dir=str(built.parent / "landing"), warehouse_dir=str(wh),
                                 prerank_libraries="hallmark_entrez,halmark")
    mp = pytest.MonkeyPatch()
    mp.setenv("OMICSDW_PRERANK_PERMUTATIONS", "100")
    try:
        with dg.DagsterInstance.ephemeral() as instance:
            instance.add_dynamic_partitions("studies", ["geuv"])
            result = dg.materialize([gene_set_enrichment], partition_key="geuv", instance=instance,
                                    resources={"warehouse": resource})
            messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    finally:
        mp.undo()
    (warning,) = [m for m in messages if "no such gene-set library" in m]
    assert warning.startswith("prerank_libraries names 'halmark': no such gene-set library, so prerank skips it; "
                              "known libraries: go_biological_process, hallmark_entrez, msigdb_hallmark, ")
    (event,) = result.get_asset_materialization_events()
    metadata = {k: v.value for k, v in event.materialization.metadata.items()}
    assert metadata["prerank_unknown_libraries"] == ["halmark"]
    assert metadata["prerank_libraries"] == ["hallmark_entrez"]
    stored = resource.lake().scan("gene_set_enrichment").filter(pl.col("method") == "prerank").collect()
    assert set(stored["library"]) == {"hallmark_entrez"}


def test_the_report_shows_the_ssgsea_heatmap_the_stage_drew(built):
    import base64
    import re

    folder = built / "reports" / "geuv"
    page = (folder / "index.html").read_text()
    shown = dict(re.findall(r'alt="signature score heatmap of ([^"]+)" src="data:image/png;base64,([^"]+)"', page))
    assert set(shown) == {"counts", "tpm"}
    for assay, encoded in shown.items():
        assert base64.b64decode(encoded) == (folder / f"{assay}_ssgsea_heatmap.png").read_bytes()


def test_study_gene_sets_are_the_registry_rows_and_follow_a_new_registry_version(built, tmp_path):
    from warehouse.commit import commit_frames
    from warehouse.lake import Lake
    from warehouse.signatures import REGISTRY_TABLES, study_gene_sets

    shutil.copytree(built / "lake", tmp_path / "lake")
    lake = Lake(tmp_path / "lake")

    def by_hand(where: str) -> dict[str, dict[str, list[str]]]:  # distinct mapped ids per set, first seen first
        sets: dict[str, dict[str, list[str]]] = {}
        for library, gene_set, gene_id in _sql(built, "SELECT library, gene_set, gene_id FROM gene_set_members "
                                                      f"WHERE {where}"):
            genes = sets.setdefault(library, {}).setdefault(gene_set, [])
            if gene_id is not None and str(gene_id) not in genes:
                genes.append(str(gene_id))
        return {lib: {k: sorted(v) for k, v in s.items() if v} for lib, s in sets.items()}

    def seen(libraries: dict[str, dict[str, list[str]]]) -> dict[str, dict[str, list[str]]]:
        return {lib: {k: sorted(v) for k, v in s.items()} for lib, s in libraries.items()}

    other = study_gene_sets(lake, "no_libraries_of_its_own")
    assert seen(other.libraries) == by_hand("study_id IS NULL")
    assert study_gene_sets(lake, "another_one") is other  # shared libraries built once per registry version
    own = study_gene_sets(lake, "geuv")
    assert seen(own.libraries) == by_hand("study_id IS NULL OR study_id = 'geuv'")
    assert own.members.height == _sql(built, "SELECT count(*) FROM gene_set_members WHERE study_id IS NULL "
                                             "OR study_id = 'geuv'")[0][0]
    # a new registry version (one Hallmark set dropped) is seen by the next study
    members = lake.scan("gene_set_members").collect().filter(pl.col("gene_set") != "HALLMARK_APOPTOSIS")
    sets = lake.scan("gene_sets").collect().filter(pl.col("gene_set") != "HALLMARK_APOPTOSIS")
    assert commit_frames(lake, [("gene_sets", sets), ("gene_set_members", members)], tables=REGISTRY_TABLES,
                         study_id=None, fingerprint="edited").ok
    after = study_gene_sets(lake, "no_libraries_of_its_own")
    assert "HALLMARK_APOPTOSIS" in other.libraries["msigdb_hallmark"]
    assert "HALLMARK_APOPTOSIS" not in after.libraries["msigdb_hallmark"]
    assert len(after.libraries["msigdb_hallmark"]) == len(other.libraries["msigdb_hallmark"]) - 1


def test_library_sources_validates_an_unchanged_manifest_once_and_follows_edits(tmp_path, study_folder, monkeypatch):
    import warehouse.signatures as signatures
    from schemas.manifest import load_manifest
    from transforms.ingest import study

    monkeypatch.setattr(study, "SETTLED_NS", 0)  # the files here were written just now
    loaded: list[str] = []
    monkeypatch.setattr(signatures, "load_manifest",
                        lambda path: loaded.append(path.parent.name) or load_manifest(path))
    gmt = "SET_A\tna\tTP53\tEGFR\n"
    for i in range(3):
        study_folder(tmp_path, f"study_id: s{i}\nname: n\n", name=f"s{i}")
    with_sets = study_folder(tmp_path, "study_id: own\nname: n\ngene_sets: [own.gmt]\n", {"own.gmt": gmt}, name="own")
    own = [("study", "own", with_sets / "own.gmt")]
    for _ in range(3):
        assert signatures.library_sources(landing=tmp_path, library_dir=None) == own
    assert sorted(loaded) == ["own", "s0", "s1", "s2"]  # once each, not once per call
    (with_sets / "study.yaml").write_text("study_id: own\nname: n\ngene_sets: []\n")  # the library taken out
    assert signatures.library_sources(landing=tmp_path, library_dir=None) == []


@pytest.mark.parametrize("broken", ["study_id: bad\nassays:\n\t- name: x\n",  # a tab where YAML wants spaces
                                    "study_id: bad\nassays: [\n  - name: x\n"])  # an unclosed flow sequence
def test_library_sources_skips_a_study_whose_yaml_does_not_parse(tmp_path, study_folder, broken):
    # One study's YAML syntax error is that study's ingest issue; it stopped every study's build
    # ("the gene reference did not load") when the registry's scan let yaml.YAMLError through.
    import warehouse.signatures as signatures

    own = study_folder(tmp_path, "study_id: own\nname: n\ngene_sets: [own.gmt]\n", {"own.gmt": "SET_A\tna\tTP53\n"},
                       name="own")
    study_folder(tmp_path, broken, name="bad")
    assert signatures.library_sources(landing=tmp_path, library_dir=None) == [("study", "own", own / "own.gmt")]
