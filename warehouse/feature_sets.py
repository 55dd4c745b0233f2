"""Feature sets in the lake: build a spec into a new version, list versions, read one back as a wide frame.

Storage: two global, append-only Delta tables (``APPEND_TABLES``). ``feature_values`` holds the matrix long, one
row per (feature_set, version, study_id, sample_id, feature) with a non-NULL value, so 20,000 genes x 3 layers is
60,000 row keys, never 60,000 Parquet columns; ``feature_sets`` one row per version with its manifest (the spec,
the Delta version of every input table per study, the ordered columns and sample keys, the scaling parameters
learned on the training samples). A version's rows are never rewritten: reading ``version=v`` gives the same
frame after new studies land or inputs change. The rows are stored sorted by (study_id, sample_id, feature), so
reading pivots on the fly a few hundred samples at a time: each read is a sample-id range (row groups outside it
are skipped) placed into one dense numpy block by integer positions (feature: its Enum index among the version's
columns), never a group-by pivot or a join over the whole long table; memory is the wide result plus one read.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from schemas.features import FeatureSetSpec
from schemas.tables import GLOBAL_TABLES, TABLES
from transforms.features.build import KEY, build_feature_matrix
from transforms.ingest.genes import GeneReference
from warehouse.commit import Commit, commit_frames
from warehouse.lake import Lake

SETS, VALUES = "feature_sets", "feature_values"
INPUT_TABLES = ("gene_sample_omics", "samples", "sample_attributes", "signature_scores", "gene_set_members")


class FeatureSetMissing(LookupError):
    """No such feature set (or version) in the warehouse."""


@dataclass(frozen=True)
class BuiltVersion:
    """What a build did: the version readers get, and whether it is new (same content as the newest = not)."""

    name: str
    version: int
    rows: int
    columns: int
    content_hash: str
    new: bool
    commit: Commit | None
    missing: dict[str, list[str]] = field(default_factory=dict)
    """Per layer, the genes / signatures the spec names that no selected sample has (their columns are NULL)."""
    hints: dict[str, str] = field(default_factory=dict)
    """Genes of ``missing`` given as an alias or in another case -> their official symbol (the column name to ask)."""
    unscalable: list[str] = field(default_factory=list)
    """Scaled columns with values whose training SD is zero or undefined: NULL in every cell after z-scoring."""
    empty_samples: list[list[str]] = field(default_factory=list)
    """Selected samples (study_id, sample_id) with no value in any column: NULL rows, or training means if imputed."""


def _published(lake: Lake, table: str, studies: list[str] | None) -> pl.LazyFrame | None:
    from warehouse.api import table as read_table

    if table not in TABLES or not lake.exists(table):
        return None
    frame = read_table(table, lake_uri=lake.root)
    if studies is not None and "study_id" in frame.collect_schema().names():
        return frame.filter(pl.col("study_id").is_in(studies))
    return frame


def _input_versions(lake: Lake, studies: list[str]) -> dict[str, object]:
    """The Delta version of every input table for each study (from the published set) and of the ledger."""
    if not lake.exists("study_versions"):
        return {}
    ledger = (lake.scan("study_versions").filter(pl.col("study_id").is_in(studies)
                                                 & pl.col("table_name").is_in(list(INPUT_TABLES)))
              .select("study_id", "table_name", "delta_version").collect().sort("table_name", "study_id"))
    tables: dict[str, dict[str, int]] = {}
    for study, table, version in ledger.iter_rows():
        tables.setdefault(table, {})[study] = version
    # global inputs (gene-set selection) are not in the per-study ledger: their own newest Delta version
    shared = {t: lake.version(t) for t in INPUT_TABLES if t in GLOBAL_TABLES and lake.exists(t)}
    return {"study_versions": lake.version("study_versions"), "tables": tables, "global": shared}


def _content_hash(blocks: Iterable[pl.DataFrame], columns: list[str], scaling: object) -> str:
    """Hash of the columns, the scaling and every row in order (the same digest however the rows are blocked)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps([columns, scaling], sort_keys=True, default=str).encode())
    for values in blocks:
        for batch in values.iter_slices(1_000_000):
            digest.update(batch.hash_rows(seed=0).to_numpy().tobytes())
    return digest.hexdigest()


def _written(blocks: Iterator[pl.DataFrame], folder: Path, files: list[Path]) -> Iterator[pl.DataFrame]:
    """Pass the blocks on, each also written to a work file of ``folder`` (appended to ``files``)."""
    for block in blocks:
        files.append(folder / f"block-{len(files):05d}.parquet")
        block.write_parquet(files[-1])
        yield block


def feature_set_rows(lake: Lake, name: str | None = None) -> pl.DataFrame:
    """The ``feature_sets`` rows (of one set), newest version last."""
    if not lake.exists(SETS):
        return pl.DataFrame(schema=pl.Schema({c: t for c, t in _schema(SETS).items()}))
    frame = lake.scan(SETS)
    if name is not None:
        frame = frame.filter(pl.col("feature_set") == name)
    return frame.collect().sort("feature_set", "version")


def _schema(table: str) -> pl.Schema:
    from schemas.tables import polars_schema

    return polars_schema(table)


def build_feature_set(lake: Lake, spec: FeatureSetSpec) -> BuiltVersion:
    """Build ``spec`` from the published tables into a new version (unless the newest has the same content).

    Hold the lake's global session (``lake.study_session(None)``) around this call: versions are numbered in order.
    """
    if not lake.exists("study_versions"):
        raise FeatureSetMissing("the warehouse has no published study: build studies first")
    published = lake.scan("study_versions").select("study_id").unique().collect()["study_id"].sort().to_list()
    studies = published if spec.studies == "all" else list(spec.studies)
    unknown = [s for s in studies if s not in published]
    if unknown:
        raise FeatureSetMissing(f"feature set {spec.name!r}: studies not published: {', '.join(unknown)}")
    gso, samples, attributes = (_published(lake, t, studies) for t in INPUT_TABLES[:3])
    if gso is None or samples is None or attributes is None:
        raise FeatureSetMissing("the warehouse has no gene_sample_omics: run the cross_omics stage first")
    signatures = _published(lake, "signature_scores", studies)
    members = _published(lake, "gene_set_members", None)
    matrix = build_feature_matrix(spec, gso=gso, samples=samples.collect(), attributes=attributes.collect(),
                                  signatures=signatures, members=members.collect() if members is not None else None,
                                  reference=GeneReference.load())  # as the genes table (doctor)
    with tempfile.TemporaryDirectory(prefix="omicsdw-feature-set-") as workdir:
        files: list[Path] = []  # the finished blocks, computed once: hashed, then staged if the content is new
        content = _content_hash(_written(matrix.blocks(), Path(workdir), files), matrix.columns, matrix.scaling)
        history = feature_set_rows(lake, spec.name)
        if history.height and history["content_hash"][-1] == content:
            last = history.row(-1, named=True)
            return BuiltVersion(spec.name, last["version"], last["rows"], last["columns"], content, False, None,
                                matrix.missing, matrix.hints, matrix.unscalable,
                                [list(k) for k in matrix.empty])
        version = int(history["version"].max() or 0) + 1 if history.height else 1  # type: ignore[arg-type]
        manifest = {"spec": spec.model_dump(mode="json"), "inputs": _input_versions(lake, studies),
                    "columns": matrix.columns, "samples": matrix.samples.rows(), "scaling": matrix.scaling,
                    "train": matrix.train, "imputation": matrix.imputation, "missing": matrix.missing,
                    "unscalable": matrix.unscalable, "empty_samples": [list(k) for k in matrix.empty]}
        row = pl.DataFrame([{"feature_set": spec.name, "version": version, "created_at": datetime.now(UTC),
                             "rows": matrix.samples.height, "columns": len(matrix.columns), "content_hash": content,
                             "manifest": json.dumps(manifest, default=str)}], schema=_schema(SETS))
        tag = [pl.lit(spec.name).alias("feature_set"), pl.lit(version).alias("version")]
        frames: list[tuple[str, pl.DataFrame | pl.LazyFrame]] = [
            (SETS, row), *[(VALUES, pl.scan_parquet(f).with_columns(tag)) for f in files]]
        commit = commit_frames(lake, frames, tables=[SETS, VALUES], study_id=None,
                               fingerprint=f"{spec.name}:{version}:{content}")
    if not commit.ok:
        raise ValueError(f"feature set {spec.name!r} breaks its contract: {commit.failures}")
    return BuiltVersion(spec.name, version, matrix.samples.height, len(matrix.columns), content, True, commit,
                        matrix.missing, matrix.hints, matrix.unscalable, [list(k) for k in matrix.empty])


def _version_row(lake: Lake, name: str, version: int | None) -> dict[str, object]:
    history = feature_set_rows(lake, name)
    if history.height == 0:
        raise FeatureSetMissing(f"no feature set {name!r}; built: "
                                f"{', '.join(feature_set_rows(lake)['feature_set'].unique().sort()) or 'none'}")
    if version is None:
        return history.row(-1, named=True)
    found = history.filter(pl.col("version") == version)
    if found.height == 0:
        raise FeatureSetMissing(f"feature set {name!r} has versions {history['version'].to_list()}, not {version}")
    return found.row(0, named=True)


READ_SAMPLES = 250
"""Samples whose long rows are read at once when a version is read back (20,000 features: 5M rows)."""


def fill_block(scan: pl.LazyFrame, keys: pl.DataFrame, columns: list[str], *, read_samples: int = READ_SAMPLES
               ) -> np.ndarray:
    """``keys`` rows x ``columns`` float64 array (NaN where no row) from long ``study_id, sample_id, feature, value``
    rows, read ``read_samples`` keys at a time.

    ``keys`` are sorted by (study_id, sample_id) as the rows are stored, so each read is a sample-id range of one
    study, which skips the other row groups; a row's cell is found by position (feature: its index in an Enum of
    ``columns``; sample: its index in the read), never by a join on the whole long table.
    """
    block = np.full((keys.height, len(columns)), np.nan, order="F")
    feature = pl.Enum(columns)
    indexed = keys.with_row_index("_r")
    for start in range(0, keys.height, read_samples):
        part = indexed.slice(start, read_samples)
        for (study,), rows in part.group_by("study_id", maintain_order=True):
            ids = rows["sample_id"]
            long = (scan.filter((pl.col("study_id") == study)
                                & pl.col("sample_id").is_between(pl.lit(ids.min()), pl.lit(ids.max())))
                    .select(pl.col("sample_id").replace_strict(ids, rows["_r"], default=None).alias("_r"),
                            pl.col("feature").cast(feature).to_physical().alias("_c"), "value")
                    .drop_nulls("_r").collect())
            block[long["_r"].to_numpy(), long["_c"].to_numpy()] = long["value"].to_numpy()
    return block


def wide_frame(scan: pl.LazyFrame, keys: pl.DataFrame, columns: list[str], *, read_samples: int = READ_SAMPLES
               ) -> pl.DataFrame:
    """``keys`` beside one column per feature (NULL where no row), filled by :func:`fill_block`."""
    block = fill_block(scan, keys, columns, read_samples=read_samples)
    values = pl.DataFrame([pl.Series(c, block[:, j]) for j, c in enumerate(columns)]).fill_nan(None)
    return pl.concat([keys, values], how="horizontal")


def read_feature_set(lake: Lake, name: str, version: int | None = None) -> pl.DataFrame:
    """One version (default the newest) as a wide frame: ``study_id, sample_id, <layer>__<symbol>...``."""
    return next(iter_feature_batches(lake, name, version, batch_rows=None))


def iter_feature_batches(lake: Lake, name: str, version: int | None = None, *, batch_rows: int | None = 1000
                         ) -> Iterator[pl.DataFrame]:
    """The wide frame in batches of ``batch_rows`` samples (None: all at once), each read on its own."""
    row = _version_row(lake, name, version)
    manifest = json.loads(str(row["manifest"]))
    keys = pl.DataFrame(manifest["samples"], schema=KEY, orient="row")
    scan = (lake.scan(VALUES).filter((pl.col("feature_set") == name) & (pl.col("version") == row["version"]))
            .select(*KEY, "feature", "value"))
    step = batch_rows or max(keys.height, 1)
    for start in range(0, max(keys.height, 1), step):
        yield wide_frame(scan, keys.slice(start, step), manifest["columns"])


def version_table(lake: Lake, name: str) -> pl.DataFrame:
    """One row per version: version, created_at, rows, columns, content_hash and the manifest (a JSON string)."""
    history = feature_set_rows(lake, name)
    if history.height == 0:
        raise FeatureSetMissing(f"no feature set {name!r}")
    return history.select("version", "created_at", "rows", "columns", "content_hash", "manifest")
