"""Sample QC of one study partition, in two assets around normalisation.

``sample_qc`` reads the study's counts at its newest load, before normalisation (so ``qc: exclude_failed: true``
can keep failed samples out of every later stage), and calls :func:`transforms.qc.study.qc_study`.
``sample_structure_study`` reads the VST / log2 CPM the normalise stage wrote (without excluded samples) and calls
:func:`transforms.qc.study.structure_study` for PCA embeddings and clusters. Both commit through the one commit
path, computed from the study's newest load (``inputs=inputs.load``), so publication checks them with the set.
"""

import tempfile

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
from orchestration.resources import TRANSIENT_RETRY, WarehouseResource
from transforms.expression.study import drop_shared_blocks
from transforms.qc.study import QC_TABLE, STRUCTURE_TABLES, qc_study, structure_study
from warehouse.commit import commit_frames, unchanged
from warehouse.study import StudyInputs

STRUCTURE = list(STRUCTURE_TABLES)


@dg.asset(name=QC_TABLE, group_name="qc", description=table_spec(QC_TABLE, group="qc").description,
          metadata=table_metadata(QC_TABLE), kinds={"delta"}, deps=["rna_counts", "genes"],
          check_specs=[contract_check(QC_TABLE)],
          automation_condition=FOLLOWS_INPUTS,  # re-ingested from the UI: QC is redone with normalisation
          partitions_def=studies, pool=STUDY_POOL, retry_policy=TRANSIENT_RETRY)
def sample_qc(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """QC metrics and flags (MAD thresholds of the manifest's ``qc:`` key) of every count assay of a study."""
    with warehouse.study_session(context.partition_key) as lake:
        inputs = StudyInputs.of(lake, context.partition_key, after_qc=False)
        settings = inputs.manifest.qc
        fingerprint = inputs.fingerprint("qc", settings.model_dump())
        commit = unchanged(lake, [QC_TABLE], study_id=inputs.study_id, fingerprint=fingerprint)
        metadata = {}
        if commit is None:
            mito = lake.scan("genes").filter(pl.col("chromosome") == "MT").select("gene_id").collect()["gene_id"]
            with tempfile.TemporaryDirectory(prefix="omicsdw-qc-") as workdir:
                stage = qc_study(inputs.scan("rna_counts"), mito, settings=settings, workdir=workdir,
                                 counts_key=inputs.rows_key("rna_counts"))
                commit = commit_frames(lake, stage.frames, tables=[QC_TABLE], study_id=inputs.study_id,
                                       fingerprint=fingerprint, inputs=inputs.load)
                metadata = stage.metadata
    yield from results(commit, metadata)
    raise_on_failures(commit, QC_TABLE)


@dg.multi_asset(
    name="sample_structure_study",
    specs=[table_spec(t, group="qc", deps=["rna_vst", "rna_normalized"], derived=True) for t in STRUCTURE],
    check_specs=[contract_check(t) for t in STRUCTURE],
    partitions_def=studies, pool=STUDY_POOL, retry_policy=TRANSIENT_RETRY,
)
def sample_structure_tables(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """PCA embeddings and hierarchical / consensus clusters of every count assay of a study (on its VST)."""
    with warehouse.study_session(context.partition_key) as lake:
        inputs = StudyInputs.of(lake, context.partition_key)
        warn_excluded(context, inputs)
        settings = inputs.manifest.qc
        fingerprint = inputs.fingerprint("qc_structure", settings.model_dump())
        commit = unchanged(lake, STRUCTURE, study_id=inputs.study_id, fingerprint=fingerprint)
        metadata = {}
        if commit is not None:
            drop_shared_blocks()  # a VST block normalise kept for this stage is not needed: free it now
        else:
            with tempfile.TemporaryDirectory(prefix="omicsdw-qc-") as workdir:
                stage = structure_study(inputs.scan("rna_vst"), inputs.scan("rna_normalized"), settings=settings,
                                        workdir=workdir, vst_key=inputs.rows_key("rna_vst"))
                commit = commit_frames(lake, stage.frames, tables=STRUCTURE, study_id=inputs.study_id,
                                       fingerprint=fingerprint, inputs=inputs.load,
                                       metadata=inputs.commit_metadata)
                metadata = stage.metadata
    yield from results(commit, metadata, inputs=inputs)
    raise_on_failures(commit, "the sample structure tables")
