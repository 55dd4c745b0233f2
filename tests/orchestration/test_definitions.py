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
    assert "rna_counts:contract" in checks
    assert "genes:contract" in checks


def test_definitions_have_the_landing_sensor_and_spawn_executor():
    assert defs.resolve_sensor_def("landing_sensor") is not None
    config = defs.executor.apply_config_mapping({}).value["config"]
    assert defs.executor.name == "multiprocess"
    assert config["start_method"] == {"spawn": {}}


def test_qc_and_report_assets_follow_normalise_and_publication():
    from orchestration.definitions import STUDY_ASSETS
    from orchestration.sensors import STUDY_GROUPS
    from schemas.tables import QC_TABLES

    graph = defs.resolve_asset_graph()
    for table in QC_TABLES:
        node = graph.get(dg.AssetKey(table))
        assert node.group_name == "qc"
        assert node.partitions_def.name == "studies"
        assert dg.AssetKey("rna_vst") in node.parent_keys
        assert dg.AssetKey(table) in graph.get(dg.AssetKey("study_versions")).parent_keys  # published with the set
    report = graph.get(dg.AssetKey("study_report"))
    assert report.group_name == "report"
    assert report.parent_keys == {dg.AssetKey("study_versions")}
    assert {"qc", "report"} <= set(STUDY_GROUPS)
    keys = [key.to_user_string() for asset in STUDY_ASSETS for key in asset.keys]
    assert keys[-2:] == ["study_versions", "study_report"]  # publication writes the last table; the report reads it
