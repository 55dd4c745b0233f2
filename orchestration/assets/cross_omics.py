"""Cross-omics tables of one study partition: layers joined per gene and sample, correlations, mutation effects.

Reads the study's harmonised and normalised rows at its newest load, calls
:func:`transforms.cross_omics.study.cross_omics_study`, commits the four tables through the one commit path.
"""

import tempfile

import dagster as dg

from orchestration.checks import contract_check, raise_on_failures, results, table_spec, warn_excluded
from orchestration.partitions import STUDY_POOL, studies
from orchestration.resources import TRANSIENT_RETRY, WarehouseResource
from schemas.tables import CROSS_OMICS_TABLES
from transforms.cross_omics.statistics import MIN_GROUP, MIN_SAMPLES
from transforms.cross_omics.study import cross_omics_study
from transforms.layers.variants import NON_SILENT
from warehouse.commit import commit_frames, unchanged
from warehouse.study import StudyInputs

TABLES = list(CROSS_OMICS_TABLES)
INPUTS = ["rna_normalized", "protein_abundance", "copy_number", "gene_mutation_status", "variants",
          "differential_expression"]


@dg.multi_asset(
    name="cross_omics_study",
    specs=[table_spec(t, group="cross_omics", deps=[*INPUTS, "sample_attributes", "genes"], derived=True)
           for t in TABLES],
    check_specs=[contract_check(t) for t in TABLES],
    partitions_def=studies, pool=STUDY_POOL, retry_policy=TRANSIENT_RETRY,
)
def cross_omics_tables(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """gene_sample_omics, omics_correlations, mutation_effects and biomarker_candidates of one study."""
    with warehouse.study_session(context.partition_key) as lake:
        inputs = StudyInputs.of(lake, context.partition_key)
        warn_excluded(context, inputs)
        contrasts = inputs.manifest.contrasts
        settings = {"min_samples": MIN_SAMPLES, "min_group": MIN_GROUP,
                    "contrasts": [c.model_dump() for c in contrasts]}
        fingerprint = inputs.fingerprint("cross_omics", settings)
        commit = unchanged(lake, TABLES, study_id=inputs.study_id, fingerprint=fingerprint)
        metadata = {}
        if commit is None:
            with tempfile.TemporaryDirectory(prefix="omicsdw-cross-omics-") as workdir:
                stage = cross_omics_study({t: inputs.scan(t) for t in INPUTS},
                                          inputs.scan("sample_attributes").collect(), lake.scan("genes"),
                                          study_id=inputs.study_id, contrasts=contrasts,
                                          non_silent=sorted(NON_SILENT), workdir=workdir,
                                          segment_assays=inputs.manifest.segment_assays)
                commit = commit_frames(lake, stage.frames, tables=TABLES, study_id=inputs.study_id,
                                       fingerprint=fingerprint, inputs=inputs.load,
                                       metadata=inputs.commit_metadata)
                metadata = stage.metadata
    yield from results(commit, metadata, inputs=inputs)
    raise_on_failures(commit, "the cross-omics tables")
