"""Sample QC of one study partition: QC metrics and flags, PCA embeddings and clusters of every count assay.

Reads the study's counts and normalised values at their newest commits (the normalise stage runs first), calls
:func:`transforms.qc.study.qc_study` and commits the three tables through the one commit path, computed from the
study's newest load (``inputs=inputs.load``), so publication checks them with the rest of the set.
"""

import tempfile

import dagster as dg
import polars as pl

from orchestration.checks import contract_check, raise_on_failures, results, table_spec
from orchestration.partitions import STUDY_POOL, studies
from orchestration.resources import WarehouseResource
from transforms.qc.study import QC_TABLES, qc_study
from warehouse.commit import commit_frames, unchanged
from warehouse.study import StudyInputs

QC = list(QC_TABLES)


@dg.multi_asset(
    name="sample_qc_study",
    specs=[table_spec(t, group="qc", deps=["rna_counts", "rna_vst", "rna_normalized", "genes"]) for t in QC],
    check_specs=[contract_check(t) for t in QC],
    partitions_def=studies, pool=STUDY_POOL,
)
def sample_qc_tables(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """QC flags (MAD thresholds of the manifest's ``qc:`` key), PCA and clusters of every count assay of a study."""
    with warehouse.study_session(context.partition_key) as lake:
        inputs = StudyInputs.of(lake, context.partition_key)
        settings = inputs.manifest.qc
        fingerprint = inputs.fingerprint("qc", settings.model_dump())
        commit = unchanged(lake, QC, study_id=inputs.study_id, fingerprint=fingerprint)
        metadata = {}
        if commit is None:
            mito = lake.scan("genes").filter(pl.col("chromosome") == "MT").select("gene_id").collect()["gene_id"]
            with tempfile.TemporaryDirectory(prefix="omicsdw-qc-") as workdir:
                stage = qc_study(inputs.scan("rna_counts"), inputs.scan("rna_vst"), inputs.scan("rna_normalized"),
                                 mito, settings=settings, workdir=workdir)
                commit = commit_frames(lake, stage.frames, tables=QC, study_id=inputs.study_id,
                                       fingerprint=fingerprint, inputs=inputs.load)
                metadata = stage.metadata
    yield from results(commit, metadata)
    raise_on_failures(commit, "the sample QC tables")
