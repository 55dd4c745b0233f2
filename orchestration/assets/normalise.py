"""Normalise one study partition: sample factors, normalised expression, VST and differential expression.

Each count (or abundance) assay of a study is read once from the harmonised long table into a dense block
(:mod:`transforms.expression`), the block-wise fits run over it, and the long results are staged file by file and
committed once per table (:meth:`warehouse.lake.Lake.stage_frames`), after a blocking pandera contract check. The
fingerprint of a commit is the Delta version of each input table that last replaced the study, plus the manifest
settings used (z-score reference, contrasts): an unchanged study writes nothing. A study without inputs commits an
empty partition, so stale rows vanish.
"""

import base64
import hashlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl

from orchestration.partitions import studies
from orchestration.resources import WarehouseResource
from schemas.manifest import StudyManifest, ZscoreReference
from schemas.tables import TABLE_DOCS, polars_schema
from schemas.validate import validate_rows
from transforms import expression as ex
from transforms.differential import DesignError, check_design
from transforms.ingest import discover_study
from transforms.issues import IssueLog
from transforms.plots import ma_plot, volcano_plot
from warehouse import __version__
from warehouse.lake import STUDY_KEY, Lake, StagedFiles, WriteResult

CONTRACT = "contract"
NORMALISED = ["rna_sample_factors", "rna_normalized", "rna_vst"]
DE_TABLE = "differential_expression"
PADJ = 0.05
Metadata = dict[str, dg.MetadataValue | float | str | None]
"""Materialisation metadata of one table: numbers, text and Dagster values (JSON, Markdown, paths)."""


def _contract_check(table: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(CONTRACT, asset=table, blocking=True,
                             description="Rows satisfy the pandera contract in schemas/tables.py.")


@dg.multi_asset(
    name="normalise_study",
    specs=[dg.AssetSpec(table, group_name="normalise", description=TABLE_DOCS[table], kinds={"delta"},
                        deps=["rna_counts", "rna_abundance", "sample_attributes"]) for table in NORMALISED],
    check_specs=[_contract_check(table) for table in NORMALISED],
    partitions_def=studies,
)
def normalised_expression(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Sample factors, normalised expression and VST of every count / abundance assay of one study."""
    lake, study_id = warehouse.lake(), context.partition_key
    manifest = _manifest(warehouse, study_id)
    reference = manifest.zscore_reference
    fingerprint = _fingerprint(lake, study_id, ["rna_counts", "rna_abundance", "sample_attributes"],
                               {"zscore_reference": reference.model_dump() if reference else None})
    if all(lake.last_fingerprint(t, study_id) == fingerprint for t in NORMALISED):
        yield from _results({t: lake.unchanged(t, study_id) for t in NORMALISED}, {}, {})
        return
    try:
        staged, metadata = _normalise(lake, study_id, reference=reference)
    except ValueError as exc:  # no sample with counts, an empty z-score reference population
        raise dg.Failure(description=f"study {study_id!r} cannot be normalised: {exc}") from exc
    writes, failures = _commit(lake, staged, fingerprint=fingerprint)
    warehouse.refresh_catalog()
    yield from _results(writes, failures, metadata)
    if failures:
        raise dg.Failure(description="normalised tables break their contract; nothing was committed",
                         metadata={t: "\n".join(m) for t, m in failures.items()})


@dg.asset(
    name=DE_TABLE,
    group_name="normalise",
    description=TABLE_DOCS[DE_TABLE],
    kinds={"delta"},
    deps=["rna_counts", "sample_attributes"],
    check_specs=[_contract_check(DE_TABLE)],
    partitions_def=studies,
)
def differential_expression_table(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """DESeq2 results of every manifest contrast on every count assay of one study; designs checked first."""
    lake, study_id = warehouse.lake(), context.partition_key
    manifest = _manifest(warehouse, study_id)
    contrasts = [c.model_dump() for c in manifest.contrasts]
    fingerprint = _fingerprint(lake, study_id, ["rna_counts", "sample_attributes"], {"contrasts": contrasts})
    if lake.last_fingerprint(DE_TABLE, study_id) == fingerprint:
        yield from _results({DE_TABLE: lake.unchanged(DE_TABLE, study_id)}, {}, {})
        return
    staged, metadata = _differential(lake, study_id, manifest, reports=Path(warehouse.warehouse_dir, "reports"))
    writes, failures = _commit(lake, staged, fingerprint=fingerprint)
    warehouse.refresh_catalog()
    yield from _results(writes, failures, metadata)
    if failures:
        raise dg.Failure(description="differential_expression breaks its contract; nothing was committed",
                         metadata={t: "\n".join(m) for t, m in failures.items()})


# -- inputs, fingerprints and commits ----------------------------------------------------------------------------
def _manifest(warehouse: WarehouseResource, study_id: str) -> StudyManifest:
    issues = IssueLog(study_id)
    manifest = discover_study(warehouse.study_folder(study_id), issues=issues)
    if manifest is None:
        raise dg.Failure(description="the study manifest cannot be read: " + "; ".join(map(str, issues.errors)))
    return manifest


def _study_version(lake: Lake, table: str, study_id: str) -> int | None:
    """Delta version of the newest commit that replaced this study in ``table`` (None: never loaded)."""
    if not lake.exists(table):
        return None
    return next((c["version"] for c in lake.delta(table).history() if c.get(STUDY_KEY) == study_id), None)


def _fingerprint(lake: Lake, study_id: str, inputs: list[str], settings: dict[str, object]) -> str:
    state = {"inputs": {t: _study_version(lake, t, study_id) for t in inputs}, "settings": settings,
             "code": __version__}
    return hashlib.blake2b(json.dumps(state, sort_keys=True).encode(), digest_size=16).hexdigest()


def _scan(lake: Lake, table: str, study_id: str) -> pl.LazyFrame:
    """The study's rows of ``table`` at its newest commit; no rows when the study was never loaded into it."""
    version = _study_version(lake, table, study_id)
    if version is None:
        return pl.LazyFrame(schema=polars_schema(table))
    return lake.scan(table, version=version, study_id=study_id)


def _stage(lake: Lake, table: str, frames: Iterator[pl.DataFrame], study_id: str,
           staged: dict[str, StagedFiles]) -> None:
    """Stage ``frames`` into ``table``, adding the files to the study's staged set of that table."""
    new = lake.stage_frames(table, frames, study_id=study_id)
    old = staged.get(table)
    staged[table] = new if old is None else StagedFiles(table, study_id, old.relative_paths + new.relative_paths,
                                                        lake)


def _commit(lake: Lake, staged: dict[str, StagedFiles], *, fingerprint: str
            ) -> tuple[dict[str, WriteResult], dict[str, list[str]]]:
    """Check every staged table against its contract; commit them all, or none if any fails."""
    failures = {}
    for table, files in staged.items():
        found = validate_rows(table, lake.scan_staged(files)) if files.relative_paths else []
        if found:
            failures[table] = found
    if failures:
        for files in staged.values():
            lake.discard(files)
        return {}, failures
    return {table: lake.commit(files, fingerprint=fingerprint) for table, files in staged.items()}, {}


def _results(writes: dict[str, WriteResult], failures: dict[str, list[str]],
             metadata: dict[str, Metadata]) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    for table in writes.keys() | failures.keys():
        check = dg.AssetCheckResult(check_name=CONTRACT, asset_key=table, passed=table not in failures,
                                    metadata={"failures": "\n".join(failures.get(table, [])) or "none"})
        if table not in writes:
            yield check
            continue
        write = writes[table]
        yield dg.MaterializeResult(asset_key=table, check_results=[check], metadata={
            "rows": write.rows, "delta_version": write.version, "unchanged": write.skipped,
            **metadata.get(table, {})})


def _assays(frame: pl.LazyFrame, *columns: str) -> list[tuple[str, ...]]:
    return sorted(frame.select(*columns).unique().collect().iter_rows())


def _span(values: np.ndarray) -> str:
    values = values[np.isfinite(values)]
    return f"{values.min():.6g} .. {values.max():.6g}" if values.size else "none"


# -- normalised expression ----------------------------------------------------------------------------------------
def _normalise(lake: Lake, study_id: str, *, reference: ZscoreReference | None
               ) -> tuple[dict[str, StagedFiles], dict[str, Metadata]]:
    counts = _scan(lake, "rna_counts", study_id)
    abundance = _scan(lake, "rna_abundance", study_id)
    attributes = _scan(lake, "sample_attributes", study_id).collect()
    lake.ensure_tables(NORMALISED)
    staged = {t: lake.stage_frames(t, [], study_id=study_id) for t in NORMALISED}
    factors_meta: Metadata = {}
    normalised_meta: Metadata = {
        "zscore_method": "per gene (log2_cpm for counts, log2(x+1) for abundances - mean) / SD, ddof=1",
        "zscore_reference": ("all samples of the assay" if reference is None
                             else f"samples with {reference.attribute} in {reference.values}")}
    vst_meta: Metadata = {}

    def mask(block: ex.DenseBlock) -> np.ndarray | None:
        if reference is None:
            return None
        return ex.reference_mask(block.sample_ids, attributes, attribute=reference.attribute,
                                 values=reference.values)

    count_assays = _assays(counts, "assay")
    for (assay,) in count_assays:
        with tempfile.TemporaryDirectory(prefix="omicsdw-normalise-") as workdir:
            block = ex.dense_block(counts.filter(pl.col("assay") == assay), value="count", workdir=workdir)
            in_reference = mask(block)
            model = ex.fit_counts(block, reference=in_reference)
            label = pl.lit(assay).alias("assay")
            _stage(lake, "rna_sample_factors", iter([ex.sample_factor_rows(block, model).with_columns(label)]),
                   study_id, staged)
            _stage(lake, "rna_normalized", (f.with_columns(label) for f in ex.normalised_count_rows(block, model)),
                   study_id, staged)
            try:
                trend, method = ex.fit_vst(block, model)
            except ValueError as exc:  # DESeq2 would fall back to a local trend, which is not implemented here
                vst_meta[f"{assay}.not_computed"] = str(exc)
            else:
                _stage(lake, "rna_vst", (f.with_columns(label) for f in ex.vst_rows(block, model, trend)),
                       study_id, staged)
                vst_meta |= {f"{assay}.method": method, f"{assay}.asympt_disp": trend.asympt_disp,
                             f"{assay}.extra_pois": trend.extra_pois}
            used = model.columns
            factors_meta |= {
                f"{assay}.samples": int(used.size),
                f"{assay}.library_size": _span(model.library_size[used]),
                f"{assay}.tmm_factor": _span(model.tmm_factor),
                f"{assay}.size_factor": _span(model.size_factor),
                f"{assay}.samples_without_counts": int(block.sample_ids.len() - used.size),
                f"{assay}.incomplete_features": model.incomplete_features,
                f"{assay}.counts_rounded_for_deseq2": model.rounded}
            if in_reference is not None:
                normalised_meta[f"{assay}.reference_samples"] = int(in_reference[used].sum())
            del block
    abundance_assays = _assays(abundance, "assay", "measure")
    skipped = sorted({a for a, m in abundance_assays if m.lower() == "zscore"})
    for assay, measure in abundance_assays:
        if measure.lower() == "zscore":
            continue
        with tempfile.TemporaryDirectory(prefix="omicsdw-normalise-") as workdir:
            rows = abundance.filter(pl.col("assay") == assay, pl.col("measure") == measure)
            block = ex.dense_block(rows, value="value", workdir=workdir)
            in_reference = mask(block)
            frames = ex.normalised_abundance_rows(block, measure=measure, reference=in_reference)
            _stage(lake, "rna_normalized", (f.with_columns(pl.lit(assay).alias("assay")) for f in frames),
                   study_id, staged)
            normalised_meta[f"{assay}.measure"] = measure
            normalised_meta[f"{assay}.log2_value"] = ("value as given" if measure.lower() in ex.LOG_SCALE_MEASURES
                                                      else "log2(value + 1)")
            if in_reference is not None:
                normalised_meta[f"{assay}.reference_samples"] = int(in_reference.sum())
            del block
    normalised_meta |= {"count_assays": ", ".join(a for (a,) in count_assays) or "none",
                        "abundance_assays": ", ".join(a for a, m in abundance_assays if a not in skipped) or "none",
                        "skipped_zscore_assays": ", ".join(skipped) or "none"}
    if not count_assays:
        note = "the study has no rna_counts rows: an empty partition was committed"
        factors_meta["note"] = vst_meta["note"] = note
        if not abundance_assays:
            normalised_meta["note"] = ("the study has no rna_counts or rna_abundance rows: an empty partition was "
                                       "committed")
    return staged, {"rna_sample_factors": factors_meta, "rna_normalized": normalised_meta, "rna_vst": vst_meta}


# -- differential expression --------------------------------------------------------------------------------------
def _differential(lake: Lake, study_id: str, manifest: StudyManifest, *, reports: Path
                  ) -> tuple[dict[str, StagedFiles], dict[str, Metadata]]:
    counts = _scan(lake, "rna_counts", study_id)
    attributes = _scan(lake, "sample_attributes", study_id).collect()
    lake.ensure_tables([DE_TABLE])
    staged = {DE_TABLE: lake.stage_frames(DE_TABLE, [], study_id=study_id)}
    assays = [a for (a,) in _assays(counts, "assay")]
    if not assays or not manifest.contrasts:
        why = "no contrasts in the manifest" if assays else "the study has no rna_counts rows"
        return staged, {DE_TABLE: {"note": f"{why}: an empty partition was committed"}}
    sample_ids = counts.select("assay", "sample_id").unique(maintain_order=True).collect()
    for assay in assays:  # every design is checked before any block is built or any model fitted
        ids = sample_ids.filter(pl.col("assay") == assay)["sample_id"]
        for contrast in manifest.contrasts:
            design = ex.sample_table(ids, attributes, columns=[contrast.factor, *contrast.covariates])
            try:
                check_design(design, factor=contrast.factor, test=contrast.test, reference=contrast.reference,
                             covariates=contrast.covariates)
            except DesignError as exc:
                raise dg.Failure(description=f"contrast {contrast.name!r} on assay {assay!r}: {exc}") from exc
    metadata: Metadata = {"padj_threshold": PADJ}
    for assay in assays:
        with tempfile.TemporaryDirectory(prefix="omicsdw-de-") as workdir:
            block = ex.dense_block(counts.filter(pl.col("assay") == assay), value="count", workdir=workdir)
            for contrast in manifest.contrasts:
                design = ex.sample_table(block.sample_ids, attributes,
                                         columns=[contrast.factor, *contrast.covariates])
                try:  # samples without counts are left out, which can still break a design checked above
                    result = ex.differential_rows(block, samples=design, factor=contrast.factor,
                                                  test=contrast.test, reference=contrast.reference,
                                                  covariates=contrast.covariates)
                except ValueError as exc:
                    raise dg.Failure(description=f"contrast {contrast.name!r} on assay {assay!r}: {exc}") from exc
                rows = result.table.with_columns(pl.lit(contrast.name).alias("contrast"),
                                                 pl.lit(assay).alias("assay"))
                _stage(lake, DE_TABLE, iter([rows]), study_id, staged)
                name = contrast.name if len(assays) == 1 else f"{contrast.name}_{assay}"
                metadata |= _contrast_metadata(result.table, result.parameters, name=name, study_id=study_id,
                                               reports=reports / study_id)
            del block
    return staged, {DE_TABLE: metadata}


def _contrast_metadata(table: pl.DataFrame, parameters: dict[str, object], *, name: str, study_id: str,
                       reports: Path) -> Metadata:
    """Significant genes, fit parameters and volcano / MA plots (PNG files and inline images) of one contrast."""
    reports.mkdir(parents=True, exist_ok=True)
    title = f"{study_id}: {name}"
    metadata: Metadata = {
        f"{name}.de_genes_padj_lt_{PADJ}": int(table.filter(pl.col("padj") < PADJ).height),
        f"{name}.parameters": dg.MetadataValue.json(parameters)}
    for kind, plot in (("volcano", volcano_plot), ("ma", ma_plot)):
        png = plot(table, title=title, padj_threshold=PADJ)
        path = reports / f"{name}_{kind}.png"
        path.write_bytes(png)
        encoded = base64.b64encode(png).decode()
        metadata[f"{name}.{kind}"] = dg.MetadataValue.md(f"![{kind} plot of {name}](data:image/png;base64,{encoded})")
        metadata[f"{name}.{kind}_png"] = dg.MetadataValue.path(str(path))
    return metadata
