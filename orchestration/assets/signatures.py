"""Signatures: the gene-set registry (reference group), per-study scores and enrichment, cross-study matches.

Per-study assets read the study's normalised tables at its newest load and the registry, call one function of
:mod:`transforms.signatures`, and commit through the one commit path with the load as ``inputs`` (so the study is
published with them). Gene sets with fewer than ``MIN_MEASURED`` measured members are not scored; they are
reported in the materialisation metadata (``sets_skipped``, ``skipped_examples``), not as ingest_issues (that
table belongs to the ingest's commit).
"""

import os
import tempfile
from pathlib import Path

import dagster as dg
import polars as pl

from orchestration.checks import (
    FOLLOWS_INPUTS,
    contract_check,
    raise_on_failures,
    results,
    table_metadata,
    table_spec,
    warn_excluded,
)
from orchestration.partitions import STUDY_POOL, studies
from orchestration.report import enrichment_plots, score_plots
from orchestration.resources import TRANSIENT_RETRY, WarehouseResource
from transforms.signatures.enrichment import (
    PERMUTATIONS,
    SEED,
    contrast_statistics,
    enrich_study,
    prerank_selection,
    unknown_prerank_libraries,
)
from transforms.signatures.scoring import MIN_MEASURED, score_study
from warehouse.commit import commit_frames, unchanged
from warehouse.lake import Lake
from warehouse.signatures import (
    MATCHES,
    REGISTRY_TABLES,
    ensure_gene_sets,
    study_gene_sets,
    warehouse_library_dir,
    write_gene_sets,
    write_signature_matches,
)
from warehouse.study import StudyInputs

SCORES, ENRICHMENT = "signature_scores", "gene_set_enrichment"


def _settings(warehouse: WarehouseResource, members: pl.DataFrame) -> dict[str, object]:
    """Enrichment settings: permutations and seed (environment), the libraries prerank tests (the resource's
    ``prerank_libraries``, resolved against the study's libraries: ``members`` needs only their scope and library).
    """
    return {"permutations": int(os.environ.get("OMICSDW_PRERANK_PERMUTATIONS", PERMUTATIONS)),
            "seed": int(os.environ.get("OMICSDW_PRERANK_SEED", SEED)),
            "prerank_libraries": prerank_selection(members, warehouse.prerank_library_setting())}


def _unknown_libraries(context: dg.AssetExecutionContext, lake: Lake, setting: str | None) -> list[str]:
    """Libraries the prerank setting names that the registry does not hold, warned about in the run log.

    A warning, not a failure: the other libraries are still tested, and a deployment's setting should not stop
    every study's enrichment (``omicsdw build`` refuses such a setting before it starts).
    """
    known = lake.scan("gene_sets").select("library").unique().collect()["library"].sort().to_list()
    unknown = unknown_prerank_libraries(setting, known)
    if unknown:
        context.log.warning(f"prerank_libraries names {', '.join(map(repr, unknown))}: no such gene-set library, "
                            f"so prerank skips it; known libraries: {', '.join(known)}")
    return unknown


@dg.multi_asset(specs=[table_spec(t, group="reference") for t in REGISTRY_TABLES],
                check_specs=[contract_check(t) for t in REGISTRY_TABLES], retry_policy=TRANSIENT_RETRY)
def gene_set_registry(warehouse: WarehouseResource):
    """Read every gene-set library (shipped, warehouse folder, study folders) and map its members to genes."""
    with warehouse.study_session(None) as lake:
        commit, metadata = write_gene_sets(lake, landing=Path(warehouse.landing_dir),
                                           library_dir=warehouse_library_dir())
    yield from results(commit, metadata)
    raise_on_failures(commit, "the gene-set registry")


@dg.asset(name=SCORES, group_name="signatures", description=table_spec(SCORES, group="signatures").description,
          metadata=table_metadata(SCORES), kinds={"delta"}, deps=["rna_normalized", "gene_sets", "gene_set_members"],
          check_specs=[contract_check(SCORES)], automation_condition=FOLLOWS_INPUTS, partitions_def=studies,
          pool=STUDY_POOL, retry_policy=TRANSIENT_RETRY)
def signature_scores(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """ssGSEA, singscore and weighted scores of every gene set on every normalised assay of one study."""
    with warehouse.study_session(None) as lake:
        registry = ensure_gene_sets(lake, landing=Path(warehouse.landing_dir), library_dir=warehouse_library_dir())
    with warehouse.study_session(context.partition_key) as lake:
        inputs = StudyInputs.of(lake, context.partition_key)
        warn_excluded(context, inputs)
        fingerprint = inputs.fingerprint("signature_scores", {"registry": registry, "min_measured": MIN_MEASURED})
        commit = unchanged(lake, [SCORES], study_id=inputs.study_id, fingerprint=fingerprint)
        metadata = {}
        if commit is None:
            with tempfile.TemporaryDirectory(prefix="omicsdw-scores-") as workdir:
                stage = score_study(inputs.scan("rna_normalized"), inputs.scan("gene_id_map"),
                                    study_gene_sets(lake, inputs.study_id).index, workdir=workdir)
            commit = commit_frames(lake, [(SCORES, stage.frame)], tables=[SCORES], study_id=inputs.study_id,
                                   fingerprint=fingerprint, inputs=inputs.load,
                                   metadata=inputs.commit_metadata)
            metadata = {SCORES: {"assays": stage.metadata,
                                 **score_plots(stage.frame, study_id=inputs.study_id,
                                               folder=warehouse.reports_dir(inputs.study_id),
                                               draw=warehouse.draws_plots())}}
    yield from results(commit, metadata, inputs=inputs)
    raise_on_failures(commit, SCORES)


@dg.asset(name=ENRICHMENT, group_name="signatures",
          description=table_spec(ENRICHMENT, group="signatures").description,
          metadata=table_metadata(ENRICHMENT), kinds={"delta"},
          deps=["differential_expression", "gene_sets", "gene_set_members"],
          check_specs=[contract_check(ENRICHMENT)], automation_condition=FOLLOWS_INPUTS, partitions_def=studies,
          pool=STUDY_POOL, retry_policy=TRANSIENT_RETRY)
def gene_set_enrichment(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Prerank (on the libraries the resource's ``prerank_libraries`` selects) and ORA (on every library) of every
    contrast of one study.
    """
    with warehouse.study_session(None) as lake:
        registry = ensure_gene_sets(lake, landing=Path(warehouse.landing_dir), library_dir=warehouse_library_dir())
    with warehouse.study_session(context.partition_key) as lake:
        inputs = StudyInputs.of(lake, context.partition_key)
        warn_excluded(context, inputs)
        gene_sets = study_gene_sets(lake, inputs.study_id)
        settings = _settings(warehouse, gene_sets.library_scopes)
        unknown = _unknown_libraries(context, lake, warehouse.prerank_library_setting())
        fingerprint = inputs.fingerprint("gene_set_enrichment", {"registry": registry, **settings})
        commit = unchanged(lake, [ENRICHMENT], study_id=inputs.study_id, fingerprint=fingerprint)
        metadata = {}
        if commit is None:
            statistics = contrast_statistics(inputs.scan("differential_expression"), inputs.scan("gene_id_map"))
            libraries = gene_sets.libraries
            frame, stage_metadata = enrich_study(statistics, libraries, **settings)  # type: ignore[arg-type]
            commit = commit_frames(lake, [(ENRICHMENT, frame)], tables=[ENRICHMENT], study_id=inputs.study_id,
                                   fingerprint=fingerprint, inputs=inputs.load,
                                   metadata=inputs.commit_metadata)
            plots = enrichment_plots(frame, statistics, libraries, study_id=inputs.study_id,
                                     folder=warehouse.reports_dir(inputs.study_id), draw=warehouse.draws_plots(),
                                     permutations=int(settings["permutations"]))  # type: ignore[call-overload]
            metadata = {ENRICHMENT: {"contrasts": stage_metadata, "prerank_libraries": settings["prerank_libraries"],
                                     **plots}}
            if unknown:
                metadata[ENRICHMENT]["prerank_unknown_libraries"] = unknown
    yield from results(commit, metadata, inputs=inputs)
    raise_on_failures(commit, ENRICHMENT)


@dg.asset(name=MATCHES, group_name="cross_study", description=table_spec(MATCHES, group="cross_study").description,
          metadata=table_metadata(MATCHES), kinds={"delta"}, check_specs=[contract_check(MATCHES)],
          deps=[dg.AssetDep("differential_expression", partition_mapping=dg.AllPartitionMapping()),
                "gene_set_members"], retry_policy=TRANSIENT_RETRY)
def signature_matches(warehouse: WarehouseResource):
    """CMap connectivity of every contrast's and user signature's up / down genes against every stored contrast.

    Reads every study's differential_expression (all partitions) and the registry's user signatures;
    ``matches_sensor`` requests it when either gets new content.
    """
    with warehouse.study_session(None) as lake:
        commit, metadata = write_signature_matches(lake)
    yield from results(commit, {MATCHES: metadata})
    raise_on_failures(commit, MATCHES)
