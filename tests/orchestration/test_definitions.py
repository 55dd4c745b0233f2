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


def test_definitions_have_the_landing_sensor_and_run_steps_in_the_runs_process():
    assert defs.resolve_sensor_def("landing_sensor").name == "landing_sensor"
    assert defs.executor.name == "in_process"


# -- snapshot of the asset graph: an asset or check appearing, disappearing or moving fails with a readable diff ---
# (key, group, partitions name or None, sorted upstream keys); update deliberately when the graph changes.
INGEST_DEPS = ("gene_xrefs", "genes")
NORMALISE_DEPS = ("rna_abundance", "rna_counts", "sample_attributes", "sample_qc")
CROSS_OMICS_DEPS = ("copy_number", "differential_expression", "gene_mutation_status", "genes", "protein_abundance",
                    "rna_normalized", "sample_attributes", "variants")
QC_DEPS = ("genes", "rna_counts")
STRUCTURE_DEPS = ("rna_normalized", "rna_vst")
ASSET_GRAPH = [
    ("biomarker_candidates", "cross_omics", "studies", CROSS_OMICS_DEPS),
    ("cell_type_composition", "ingest", "studies", INGEST_DEPS),
    ("cn_segments", "ingest", "studies", INGEST_DEPS),
    ("copy_number", "ingest", "studies", INGEST_DEPS),
    ("copy_number_peak_calls", "ingest", "studies", INGEST_DEPS),
    ("copy_number_peak_genes", "ingest", "studies", INGEST_DEPS),
    ("copy_number_peaks", "ingest", "studies", INGEST_DEPS),
    ("differential_expression", "normalise", "studies", ("rna_counts", "sample_attributes", "sample_qc")),
    ("gene_id_map", "ingest", "studies", INGEST_DEPS),
    ("gene_mutation_status", "ingest", "studies", INGEST_DEPS),
    ("gene_sample_omics", "cross_omics", "studies", CROSS_OMICS_DEPS),
    ("gene_set_enrichment", "signatures", "studies", ("differential_expression", "gene_set_members", "gene_sets")),
    ("gene_set_members", "reference", None, ()),
    ("gene_sets", "reference", None, ()),
    ("gene_xrefs", "reference", None, ()),
    ("genes", "reference", None, ()),
    ("ingest_issues", "ingest", "studies", INGEST_DEPS),
    ("mutation_effects", "cross_omics", "studies", CROSS_OMICS_DEPS),
    ("omics_correlations", "cross_omics", "studies", CROSS_OMICS_DEPS),
    ("protein_abundance", "ingest", "studies", INGEST_DEPS),
    ("rna_abundance", "ingest", "studies", INGEST_DEPS),
    ("rna_counts", "ingest", "studies", INGEST_DEPS),
    ("rna_normalized", "normalise", "studies", NORMALISE_DEPS),
    ("rna_sample_factors", "normalise", "studies", NORMALISE_DEPS),
    ("rna_vst", "normalise", "studies", NORMALISE_DEPS),
    ("sample_attributes", "ingest", "studies", INGEST_DEPS),
    ("sample_clusters", "qc", "studies", STRUCTURE_DEPS),
    ("sample_embeddings", "qc", "studies", STRUCTURE_DEPS),
    ("sample_qc", "qc", "studies", QC_DEPS),
    ("samples", "ingest", "studies", INGEST_DEPS),
    ("sc_pseudobulk", "ingest", "studies", INGEST_DEPS),
    ("signature_matches", "cross_study", None, ("differential_expression", "gene_set_members")),
    ("signature_scores", "signatures", "studies", ("gene_set_members", "gene_sets", "rna_normalized")),
    ("studies", "ingest", "studies", INGEST_DEPS),
    ("study_report", "report", "studies", ("study_versions",)),
    ("study_versions", "publish", "studies", (
        "biomarker_candidates", "cell_type_composition", "cn_segments", "copy_number", "copy_number_peak_calls",
        "copy_number_peak_genes", "copy_number_peaks", "differential_expression", "gene_id_map",
        "gene_mutation_status", "gene_sample_omics", "gene_set_enrichment", "mutation_effects", "omics_correlations",
        "protein_abundance", "rna_abundance", "rna_counts", "rna_normalized", "rna_sample_factors", "rna_vst",
        "sample_attributes", "sample_clusters", "sample_embeddings", "sample_qc", "samples", "sc_pseudobulk",
        "signature_scores", "studies", "subject_attributes", "subjects", "variants")),
    ("subject_attributes", "ingest", "studies", INGEST_DEPS),
    ("subjects", "ingest", "studies", INGEST_DEPS),
    ("variants", "ingest", "studies", INGEST_DEPS),
]
# one contract check per asset; differential_expression also warns when a contrast was skipped
ASSET_CHECKS = [
    "biomarker_candidates:contract",
    "cell_type_composition:contract",
    "cn_segments:contract",
    "copy_number:contract",
    "copy_number_peak_calls:contract",
    "copy_number_peak_genes:contract",
    "copy_number_peaks:contract",
    "differential_expression:contract",
    "differential_expression:contrasts_fitted",
    "gene_id_map:contract",
    "gene_mutation_status:contract",
    "gene_sample_omics:contract",
    "gene_set_enrichment:contract",
    "gene_set_members:contract",
    "gene_sets:contract",
    "gene_xrefs:contract",
    "genes:contract",
    "ingest_issues:contract",
    "mutation_effects:contract",
    "omics_correlations:contract",
    "protein_abundance:contract",
    "rna_abundance:contract",
    "rna_counts:contract",
    "rna_normalized:contract",
    "rna_sample_factors:contract",
    "rna_vst:contract",
    "sample_attributes:contract",
    "sample_clusters:contract",
    "sample_embeddings:contract",
    "sample_qc:contract",
    "samples:contract",
    "sc_pseudobulk:contract",
    "signature_matches:contract",
    "signature_scores:contract",
    "studies:contract",
    "study_versions:contract",
    "subject_attributes:contract",
    "subjects:contract",
    "variants:contract",
]


def test_asset_graph_matches_snapshot():
    graph = defs.resolve_asset_graph()
    got = []
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        partitions = node.partitions_def.name if node.partitions_def is not None else None
        deps = tuple(sorted(parent.to_user_string() for parent in node.parent_keys))
        got.append((key.to_user_string(), node.group_name, partitions, deps))
    assert sorted(got) == ASSET_GRAPH


def test_asset_checks_match_snapshot():
    graph = defs.resolve_asset_graph()
    assert sorted(c.to_user_string() for c in graph.asset_check_keys) == ASSET_CHECKS


def test_signature_assets_groups_partitions_and_checks():
    from schemas.tables import TABLES

    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    # feature_sets / feature_values are written by one asset per spec file (features/<name>), not by a table asset
    assert set(TABLES) - {"feature_sets", "feature_values"} <= keys
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


def test_sample_qc_precedes_normalise_structure_follows_it_report_follows_publication():
    from orchestration.definitions import STUDY_ASSETS
    from orchestration.sensors import STUDY_GROUPS
    from schemas.tables import QC_TABLES

    graph = defs.resolve_asset_graph()
    for table in QC_TABLES:
        node = graph.get(dg.AssetKey(table))
        assert node.group_name == "qc"
        assert node.partitions_def.name == "studies"
        assert dg.AssetKey(table) in graph.get(dg.AssetKey("study_versions")).parent_keys  # published with the set
    # qc.exclude_failed: normalisation and DE read counts without the samples sample_qc failed
    for table in ("rna_normalized", "differential_expression"):
        assert dg.AssetKey("sample_qc") in graph.get(dg.AssetKey(table)).parent_keys
    assert dg.AssetKey("rna_vst") in graph.get(dg.AssetKey("sample_embeddings")).parent_keys
    report = graph.get(dg.AssetKey("study_report"))
    assert report.group_name == "report"
    assert report.parent_keys == {dg.AssetKey("study_versions")}
    assert {"qc", "report"} <= set(STUDY_GROUPS)
    keys = [key.to_user_string() for asset in STUDY_ASSETS for key in asset.keys]
    assert keys[-2:] == ["study_versions", "study_report"]  # publication writes the last table; the report reads it


AUTOMATED = {"sample_qc", "rna_sample_factors", "rna_normalized", "rna_vst", "differential_expression",
             "signature_scores", "gene_set_enrichment", "gene_sample_omics", "omics_correlations", "mutation_effects",
             "biomarker_candidates", "sample_embeddings", "sample_clusters", "study_versions", "study_report"}
"""Every study asset after ingest: what a study re-ingested alone gets recomputed, published and reported."""


def test_every_derived_study_asset_follows_its_inputs_by_a_sensor_on_by_default():
    graph = defs.resolve_asset_graph()
    automated = {key.to_user_string() for key in graph.get_all_asset_keys()
                 if graph.get(key).automation_condition is not None}
    assert automated == AUTOMATED
    sensor = defs.resolve_sensor_def("study_automation")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING  # Dagster's own automation sensor starts off
    assert {k.to_user_string() for k in sensor.asset_selection.resolve(graph)} >= AUTOMATED


def test_every_table_asset_shows_its_columns_with_their_descriptions():
    """The UI's *Columns* of each table asset (``dagster/column_schema``): the contract's columns in order, each
    described, as the catalog's column comments are; no column was listed before (trialG).
    """
    from schemas.tables import TABLES, polars_schema

    graph = defs.resolve_asset_graph()
    tables = [key.to_user_string() for key in graph.get_all_asset_keys() if key.to_user_string() in TABLES]
    assert {"genes", "rna_counts", "sample_qc", "differential_expression", "signature_scores", "study_versions",
            "signature_matches", "gene_set_enrichment"} <= set(tables)
    for table in tables:
        schema = graph.get(dg.AssetKey(table)).metadata.get("dagster/column_schema")
        assert isinstance(schema, dg.TableSchema), table
        assert [column.name for column in schema.columns] == list(polars_schema(table)), table
        assert all(column.description for column in schema.columns), table
    columns = {c.name: c for c in graph.get(dg.AssetKey("rna_counts")).metadata["dagster/column_schema"].columns}
    assert columns["gene_id"].description.startswith("NCBI Gene ID in the `genes` dimension")
    assert (columns["gene_id"].type, columns["gene_id"].constraints.nullable) == ("Int64", True)
    assert (columns["count"].type, columns["count"].constraints.nullable) == ("Float64", False)
