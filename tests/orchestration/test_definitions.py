"""The whole Definitions object loads, and its asset graph is what the docs say (snapshot of keys and groups)."""

import dagster as dg

from orchestration.definitions import defs
from schemas.tables import STUDY_TABLES


def test_definitions_load_with_every_table_as_an_asset():
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert {"genes", "gene_xrefs", *STUDY_TABLES} <= keys


def test_ingest_assets_are_partitioned_by_study_and_checked():
    graph = defs.resolve_asset_graph()
    node = graph.get(dg.AssetKey("rna_counts"))
    assert node.partitions_def.name == "studies"
    assert node.group_name == "ingest"
    checks = {c.to_user_string() for c in graph.asset_check_keys}
    assert "rna_counts:contract" in checks and "genes:contract" in checks


def test_definitions_have_the_landing_sensor_and_spawn_executor():
    assert defs.resolve_sensor_def("landing_sensor") is not None
    config = defs.executor.apply_config_mapping({}).value["config"]
    assert defs.executor.name == "multiprocess" and config["start_method"] == {"spawn": {}}


def test_signature_assets_groups_partitions_and_checks():
    from schemas.tables import TABLES

    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert set(TABLES) <= keys
    groups = {t: graph.get(dg.AssetKey(t)).group_name for t in
              ("gene_sets", "gene_set_members", "signature_scores", "gene_set_enrichment", "signature_matches")}
    assert groups == {"gene_sets": "reference", "gene_set_members": "reference", "signature_scores": "signatures",
                      "gene_set_enrichment": "signatures", "signature_matches": "cross_study"}
    assert graph.get(dg.AssetKey("signature_scores")).partitions_def.name == "studies"
    assert graph.get(dg.AssetKey("signature_matches")).partitions_def is None
    checks = {c.to_user_string() for c in graph.asset_check_keys}
    assert {f"{t}:contract" for t in groups} <= checks
    # the study job runs the per-study signature assets; publication waits for them
    job = defs.resolve_job_def("study_job")
    assert {"signature_scores", "gene_set_enrichment", "study_versions"} <= {
        k.to_user_string() for k in job.asset_layer.selected_asset_keys}
    parents = {k.to_user_string() for k in graph.get(dg.AssetKey("study_versions")).parent_keys}
    assert {"signature_scores", "gene_set_enrichment"} <= parents
