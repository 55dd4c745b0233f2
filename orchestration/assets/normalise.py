"""Normalise one study partition: sample factors, normalised expression, VST and differential expression.

Each asset reads the study's harmonised rows at its newest load (without the samples ``sample_qc`` excludes when the
study says ``qc: exclude_failed: true``), calls one study-stage function of
:mod:`transforms.expression.study`, and commits the frames it yields through the one commit path. The fingerprint of a
commit is the ingested load (``studies`` fingerprint) plus the settings and code used: an unchanged study writes
nothing. The manifest comes from the ``studies`` row of that load, not from the landing folder.
"""

import json
import tempfile
from collections.abc import Iterator

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
from orchestration.executors import steps_share_process
from orchestration.partitions import STUDY_POOL, studies
from orchestration.report import contrast_plots
from orchestration.resources import TRANSIENT_RETRY, WarehouseResource
from transforms.expression.study import (
    DE_TABLE,
    NORMALISED_TABLES,
    differential_study,
    drop_shared_blocks,
    keep_shared_block,
    normalise_study,
)
from warehouse.commit import commit_frames, unchanged
from warehouse.study import StudyInputs

NORMALISED = list(NORMALISED_TABLES)
CONTRASTS_FITTED = "contrasts_fitted"
SKIPPED_KEY = "omicsdw.skipped_contrasts"
"""Delta commit metadata of a study's differential_expression: the contrasts skipped, as JSON (name -> why)."""


@dg.multi_asset(
    name="normalise_study",
    specs=[table_spec(t, group="normalise", deps=["rna_counts", "rna_abundance", "sample_attributes",
                                                                 "sample_qc"], derived=True)
           for t in NORMALISED],
    check_specs=[contract_check(t) for t in NORMALISED],
    partitions_def=studies, pool=STUDY_POOL, retry_policy=TRANSIENT_RETRY,
)
def normalised_expression(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Sample factors, normalised expression and VST of every count / abundance assay of one study."""
    with warehouse.study_session(context.partition_key) as lake:
        inputs = StudyInputs.of(lake, context.partition_key)
        warn_excluded(context, inputs)
        reference = inputs.manifest.zscore_reference
        fingerprint = inputs.fingerprint("normalise", reference.model_dump() if reference else None)
        commit = unchanged(lake, NORMALISED, study_id=inputs.study_id, fingerprint=fingerprint)
        metadata = {}
        if commit is not None:
            drop_shared_blocks()  # a count block sample QC kept for this stage is not needed: free it now
        else:
            with tempfile.TemporaryDirectory(prefix="omicsdw-normalise-") as workdir:
                try:
                    stage = normalise_study(inputs.scan("rna_counts"), inputs.scan("rna_abundance"),
                                            inputs.scan("sample_attributes").collect(),
                                            zscore_reference=reference, workdir=workdir,
                                            counts_key=inputs.rows_key("rna_counts"),
                                            keep_vst=steps_share_process(context.job_def.executor_def))
                    commit = commit_frames(lake, stage.frames, tables=NORMALISED, study_id=inputs.study_id,
                                           fingerprint=fingerprint, inputs=inputs.load,
                                           metadata=inputs.commit_metadata)
                    vst_key = inputs.rows_key("rna_vst") if commit.ok and stage.blocks else None
                    if vst_key is not None:  # for sample_structure_study: the rna_vst rows just committed
                        for assay, block in stage.blocks.items():
                            keep_shared_block((*vst_key, assay), block)
                except ValueError as exc:  # no sample with counts, an empty z-score reference population
                    raise dg.Failure(f"study {inputs.study_id!r} cannot be normalised: {exc}",
                                     allow_retries=False) from exc
                metadata = stage.metadata
    yield from results(commit, metadata, inputs=inputs)
    raise_on_failures(commit, "the normalised tables")


@dg.asset(
    name=DE_TABLE,
    group_name="normalise",
    description=table_spec(DE_TABLE, group="normalise").description,
    metadata=table_metadata(DE_TABLE),
    kinds={"delta"},
    deps=["rna_counts", "sample_attributes", "sample_qc"],
    automation_condition=FOLLOWS_INPUTS,
    check_specs=[contract_check(DE_TABLE),
                 dg.AssetCheckSpec(CONTRASTS_FITTED, asset=DE_TABLE, blocking=False,
                                   description="Every study.yaml contrast was fitted; a contrast whose design the "
                                               "samples cannot support is skipped and named here (WARN).")],
    partitions_def=studies, pool=STUDY_POOL, retry_policy=TRANSIENT_RETRY,
)
def differential_expression_table(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """DESeq2 results of every manifest contrast on every count assay of one study; designs checked first.

    A contrast the samples cannot support is skipped (the ``contrasts_fitted`` check warns, naming it and why); the
    others are committed, so the study is still published. The skipped ones are kept in the Delta commit's
    metadata, for the check of a later run that finds the study unchanged.
    """
    with warehouse.study_session(context.partition_key) as lake:
        inputs = StudyInputs.of(lake, context.partition_key)
        warn_excluded(context, inputs)
        contrasts = inputs.manifest.contrasts
        fingerprint = inputs.fingerprint("differential", [c.model_dump() for c in contrasts])
        commit = unchanged(lake, [DE_TABLE], study_id=inputs.study_id, fingerprint=fingerprint)
        metadata = {}
        if commit is not None:
            skipped = json.loads((lake.last_commit(DE_TABLE, inputs.study_id) or {}).get(SKIPPED_KEY) or "{}")
        else:
            with tempfile.TemporaryDirectory(prefix="omicsdw-de-") as workdir:
                try:
                    stage = differential_study(inputs.scan("rna_counts"), inputs.scan("sample_attributes").collect(),
                                               contrasts=contrasts, workdir=workdir)
                    commit_metadata = dict(inputs.commit_metadata)

                    def frames() -> Iterator[tuple[str, pl.DataFrame]]:  # skips are known once all are consumed
                        yield from stage.frames
                        if stage.skipped:
                            commit_metadata[SKIPPED_KEY] = json.dumps(stage.skipped)

                    commit = commit_frames(lake, frames(), tables=[DE_TABLE], study_id=inputs.study_id,
                                           fingerprint=fingerprint, inputs=inputs.load, metadata=commit_metadata)
                except ValueError as exc:  # counts that are no counts: the data, not a contrast
                    raise dg.Failure(f"study {inputs.study_id!r}: {exc}", allow_retries=False) from exc
            skipped = stage.skipped
            for reason in skipped.values():
                context.log.warning(f"study {inputs.study_id!r}: {reason}")
            metadata = {DE_TABLE: {**stage.metadata[DE_TABLE],
                                   **contrast_plots(stage.contrasts, study_id=inputs.study_id,
                                                    folder=warehouse.reports_dir(inputs.study_id),
                                                    draw=warehouse.draws_plots())}}
    yield from results(commit, metadata, inputs=inputs)
    if DE_TABLE in commit.writes:
        yield dg.AssetCheckResult(check_name=CONTRASTS_FITTED, asset_key=DE_TABLE, passed=not skipped,
                                  severity=dg.AssetCheckSeverity.WARN,
                                  metadata={"skipped": "\n".join(skipped.values()) or "none",
                                            "contrasts": len(contrasts), "skipped_contrasts": len(skipped)})
    raise_on_failures(commit, DE_TABLE)
