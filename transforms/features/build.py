"""Build one feature set: one row per (study, sample), one column per ``<layer>__<symbol>``, kept long.

Values come from ``gene_sample_omics`` (rna = ``rna_normalized.log2_value``, protein = ``log2_abundance``,
copy_number = the GISTIC call, mutation = 1 / 0, NULL where the gene was not profiled) and, for the signature
layer, from ``signature_scores``. Scaling is fitted on the declared training samples only and applied unchanged
to every sample (:func:`feature_statistics` / :func:`apply_scaling`); missing cells stay NULL unless ``impute``
says otherwise. The matrix is returned long (absent row = NULL cell) so 60,000 columns never exist as a frame here.

Bounded memory: the layers' rows stay lazy; names are a streaming aggregation, and what is learned from values
(top variable genes, scaling parameters, imputation means) comes from :func:`feature_statistics`, block by block of
whole features and bit-reproducible; :meth:`FeatureMatrix.blocks` yields the finished rows
for consecutive blocks of about ``rows_per_block`` long rows (whole samples), each sorted, so their concatenation
is the whole matrix in (study_id, sample_id, feature) order. Several blocks: the rows are first split by sample
block into work files in one streaming pass, so the inputs are read once, not once per block.
"""

from __future__ import annotations

import difflib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import polars as pl

from schemas.features import FeatureSetSpec, LayerSpec, SampleFilter
from transforms.moments import group_moments

if TYPE_CHECKING:
    from transforms.ingest.genes import GeneReference

SOURCE_COLUMNS = {"rna": "rna_log2", "protein": "protein_log2", "copy_number": "cn_call", "mutation": "mutated"}
"""gene_sample_omics column of each gene layer."""
KEY = ["study_id", "sample_id"]
SIGNATURE_METHOD = "ssgsea"
"""signature_scores method of the signature layer when the spec names none."""
ROWS_PER_BLOCK = 5_000_000
"""Long rows (samples x features) per block the matrix is finished in (20,000 features: 250 samples)."""
LONG_SCHEMA = pl.Schema({"study_id": pl.String, "sample_id": pl.String, "feature": pl.String, "value": pl.Float64})
Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)


class FeatureInputMissing(LookupError):
    """The spec needs a table the warehouse does not have (signature tables, gene sets)."""


@dataclass
class FeatureMatrix:
    """The built matrix: the layers' long ``rows`` (lazy, before scaling), ordered ``columns`` and ``samples``,
    scaling parameters learned on ``train`` samples, genes asked for but absent, and the training means that
    fill missing cells when the spec imputes. The finished values come from :meth:`blocks` (or :attr:`values`).
    """

    rows: pl.LazyFrame
    columns: list[str]
    samples: pl.DataFrame
    scaling: dict[str, dict[str, float | None]] = field(default_factory=dict)
    train: list[list[str]] = field(default_factory=list)
    missing: dict[str, list[str]] = field(default_factory=dict)
    impute: pl.DataFrame | None = None
    rows_per_block: int = ROWS_PER_BLOCK
    imputation: dict[str, float | None] = field(default_factory=dict)
    """``impute: train_mean``: the value each feature's missing cells got (its training mean, after scaling)."""
    hints: dict[str, str] = field(default_factory=dict)
    """Genes of ``missing`` written other than as their official symbol (an alias, another case) -> that symbol."""
    empty: dict[tuple[str, str], None] = field(default_factory=dict)
    """Selected samples with no value in any column (after scaling, before imputation), in order: found by
    :meth:`blocks` as it finishes each block (a sample of samples.tsv without data is a row of NULLs, or of training
    means when the spec imputes)."""

    @property
    def unscalable(self) -> list[str]:
        """Scaled columns that hold values but whose training SD is zero or undefined (one training value or
        none, or the same value in every training sample): z-scoring makes every cell of them NULL. The columns
        of ``missing`` (no value at all) are not listed again.
        """
        absent = {f"{layer}__{name}" for layer, names in self.missing.items() for name in names}
        return [f for f, p in self.scaling.items()
                if f not in absent and not (p["sd"] is not None and p["sd"] > 0)]

    def _finish(self, rows: pl.DataFrame, samples: pl.DataFrame) -> pl.DataFrame:
        """Scaled (and imputed) long rows of ``samples``, NULL cells dropped, sorted."""
        values = apply_scaling(rows, self.scaling)
        held = values.filter(pl.col("value").is_not_null()).select(KEY).unique()
        self.empty.update(dict.fromkeys(samples.join(held, on=KEY, how="anti").select(KEY).iter_rows()))
        if self.impute is not None:
            grid = samples.join(pl.DataFrame({"feature": self.columns}), how="cross")
            values = (grid.join(values, on=[*KEY, "feature"], how="left").join(self.impute, on="feature", how="left")
                      .with_columns(pl.coalesce("value", "_m").alias("value")).drop("_m"))
        return values.filter(pl.col("value").is_not_null()).sort([*KEY, "feature"])

    def blocks(self) -> Iterator[pl.DataFrame]:
        """The finished long rows ``study_id, sample_id, feature, value`` block by block of samples, in order."""
        step = max(1, self.rows_per_block // max(len(self.columns), 1))
        if self.samples.height <= step:
            yield self._finish(self.rows.collect(), self.samples)
            return
        chosen = self.samples.with_columns((pl.int_range(pl.len()) // step).cast(pl.UInt32).alias("_block"))
        with tempfile.TemporaryDirectory(prefix="omicsdw-features-") as workdir:
            self.rows.join(chosen.lazy(), on=KEY).sink_parquet(
                pl.PartitionBy(workdir, key="_block", include_key=False), compression="lz4", statistics=False)
            for (block,), samples in chosen.group_by("_block", maintain_order=True):
                folder = Path(workdir, f"_block={block}")
                rows = (pl.read_parquet(folder / "*.parquet", hive_partitioning=False) if folder.is_dir()
                        else pl.DataFrame(schema=LONG_SCHEMA))
                yield self._finish(rows.select(list(LONG_SCHEMA)), samples.drop("_block"))

    @property
    def values(self) -> pl.DataFrame:
        """Every block at once (small sets)."""
        return pl.concat([pl.DataFrame(schema=LONG_SCHEMA), *self.blocks()])


def select_samples(samples: pl.DataFrame, attributes: pl.DataFrame, chosen: SampleFilter | list[str] | None
                   ) -> pl.DataFrame:
    """``study_id, sample_id`` of ``samples`` matching an attribute filter or a list of sample ids."""
    if chosen is None:
        return samples.select(KEY)
    if isinstance(chosen, list):
        return samples.filter(pl.col("sample_id").is_in(chosen)).select(KEY)
    keep = attributes.filter((pl.col("attribute") == chosen.attribute) & pl.col("value").is_in(chosen.values))
    return samples.join(keep.select(KEY).unique(), on=KEY, how="semi").select(KEY)


def _layer_rows(layer: LayerSpec, gso: pl.LazyFrame, signatures: pl.LazyFrame | None,
                members: pl.DataFrame | None, samples: pl.DataFrame, train: pl.DataFrame, rows_per_block: int
                ) -> tuple[pl.LazyFrame, list[str], list[str]]:
    """Long rows ``study_id, sample_id, feature, value`` of one layer (lazy), its ordered columns, names not found."""
    if layer.layer == "signature":
        if signatures is None:
            raise FeatureInputMissing("layer 'signature' needs the signature_scores table, which this warehouse "
                                      "does not have (the signatures stage has not run)")
        # one score per sample and set: the layer's method; of several assays / libraries, the first by name
        rows = (signatures.join(samples.lazy(), on=KEY, how="semi")
                .filter(pl.col("method") == (layer.method or SIGNATURE_METHOD)).sort("assay", "library")
                .group_by([*KEY, "gene_set"], maintain_order=True).agg(pl.col("score").first())
                .select(*KEY, pl.col("gene_set").alias("name"), pl.col("score").cast(pl.Float64).alias("value")))
    else:
        source = pl.col(SOURCE_COLUMNS[layer.layer]).cast(pl.Float64)
        rows = (gso.join(samples.lazy(), on=KEY, how="semi").filter(pl.col("symbol").is_not_null())
                .select(*KEY, pl.col("symbol").alias("name"), pl.col("gene_id"), source.alias("value")))
        if layer.gene_set is not None:
            if members is None:
                raise FeatureInputMissing("gene_set selection needs the gene_set_members table, which this "
                                          "warehouse does not have (the signatures stage has not run)")
            ids = members.filter((pl.col("library") == layer.gene_set.library)
                                 & (pl.col("gene_set") == layer.gene_set.name))["gene_id"].drop_nulls()
            if ids.len() == 0:
                raise FeatureInputMissing(f"gene set {layer.gene_set.library}/{layer.gene_set.name} has no "
                                          "mapped member in gene_set_members")
            rows = rows.filter(pl.col("gene_id").is_in(ids.implode()))
        rows = rows.drop("gene_id")
    rows = rows.filter(pl.col("value").is_not_null())
    if layer.genes is not None:
        rows = rows.filter(pl.col("name").is_in(list(dict.fromkeys(layer.genes))))
    present = sorted(rows.select(pl.col("name").unique()).collect()["name"].to_list())
    if layer.top_variable is not None:
        variance = (feature_statistics(rows.rename({"name": "feature"}), train, features=present,
                                       rows_per_block=rows_per_block).drop_nulls("var")
                    .sort(["var", "feature"], descending=[True, False]).head(layer.top_variable))
        names = sorted(variance["feature"].to_list())
    elif layer.genes is not None:
        names = list(dict.fromkeys(layer.genes))
    else:
        names = present
    found = set(present)
    missing = [n for n in names if n not in found]
    rows_out = rows.filter(pl.col("name").is_in(names)).select(
        *KEY, (pl.lit(f"{layer.layer}__") + pl.col("name")).alias("feature"), "value")
    return rows_out, [f"{layer.layer}__{n}" for n in names], missing


def feature_statistics(values: pl.DataFrame | pl.LazyFrame, train: pl.DataFrame, *, features: list[str],
                       rows_per_block: int = ROWS_PER_BLOCK, standardised: bool = False) -> pl.DataFrame:
    """One row per feature of ``features`` with a training value: ``n``, ``mean``, ``var`` and ``sd`` (ddof=1) of
    the training samples' non-NULL values; with ``standardised`` also ``z_mean``, the training mean after z-scoring
    with them (the imputation value of a scaled feature), from the same pass.

    Bit-reproducible: each feature's values are summed in ascending order (:func:`transforms.moments.group_moments`;
    a polars group-by summed them in an order that varied between runs, so two builds learned an SD 1 ulp apart).
    Bounded: features are hashed into blocks of about ``rows_per_block`` training rows, the rows split into one
    work file per block in one streaming pass, and one block is held at a time. The block size changes nothing:
    every feature's values are in one block.
    """
    chosen = (values.lazy().filter(pl.col("feature").is_in(features) & pl.col("value").is_not_null())
              .join(train.lazy().select(KEY), on=KEY, how="semi").select("feature", "value"))
    count = -(-len(features) * train.height // max(rows_per_block, 1))
    if count <= 1:
        return group_moments(chosen.collect(), key="feature", standardised=standardised)
    parts = [group_moments(pl.DataFrame(schema=LONG_SCHEMA), key="feature", standardised=standardised)]
    with tempfile.TemporaryDirectory(prefix="omicsdw-feature-statistics-") as workdir:
        chosen.with_columns((pl.col("feature").hash(seed=0) % count).alias("_block")).sink_parquet(
            pl.PartitionBy(workdir, key="_block", include_key=False), compression="lz4", statistics=False)
        for folder in sorted(Path(workdir).iterdir()):
            block = pl.read_parquet(folder / "*.parquet", hive_partitioning=False)
            parts.append(group_moments(block, key="feature", standardised=standardised))
    return pl.concat(parts).sort("feature")


def apply_scaling(values: Frame, scaling: dict[str, dict[str, float | None]]) -> Frame:
    """(value - mean) / sd with the learned parameters; NULL where the SD is zero or unknown."""
    if not scaling:
        return values
    params = pl.DataFrame([{"feature": f, "_mean": p["mean"], "_sd": p["sd"]} for f, p in scaling.items()],
                          schema={"feature": pl.String, "_mean": pl.Float64, "_sd": pl.Float64})
    joined = values.join(params.lazy() if isinstance(values, pl.LazyFrame) else params, on="feature", how="left")
    scaled = pl.when(pl.col("_sd") > 0).then((pl.col("value") - pl.col("_mean")) / pl.col("_sd"))
    return joined.with_columns(pl.when(pl.col("feature").is_in(params["feature"].implode()))
                               .then(scaled).otherwise(pl.col("value")).alias("value")).drop("_mean", "_sd")


def _check_selection(name: str, key: str, samples: pl.DataFrame, attributes: pl.DataFrame,
                     chosen: SampleFilter | list[str] | None) -> None:
    """Raise ValueError naming the sample ids that are no sample of the spec's studies, or the values of the
    filter's attribute that look like a typo of a value samples hold (``Train`` for ``train``, ``tset`` for
    ``test``) or that select nothing at all: a typo silently shrank the selection or the training set, and with it
    the learned scaling. A value no sample holds and nothing resembles (``Normal`` in a spec written for a cohort
    with normal samples) is fine: the spec may span studies that lack it.
    """
    if chosen is None:
        return
    if isinstance(chosen, list):
        unknown = sorted(set(chosen) - set(samples["sample_id"]))
        what = "sample ids that are no sample of the spec's studies"
    else:
        held = sorted(set(attributes.filter(pl.col("attribute") == chosen.attribute)["value"].drop_nulls()))
        absent = sorted(set(chosen.values) - set(held))
        if len(absent) == len(set(chosen.values)):
            unknown, what = absent, f"values of {chosen.attribute!r} that no sample of the spec's studies has"
        else:
            unknown = [f"{v!r} (held: {near[0]!r})" for v in absent
                       if (near := _resembling(v, held))]
            what = f"values of {chosen.attribute!r} that no sample has and that look like a typo"
            if unknown:
                shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
                raise ValueError(f"feature set {name!r}: {key} names {what}: {shown}")
            return
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise ValueError(f"feature set {name!r}: {key} names {what}: {shown}")


def _not_found(missing: dict[str, list[str]], *, shown: int = 10) -> str:
    """``layer: A, B; layer: C`` with at most ``shown`` names per layer."""
    return "; ".join(f"{layer}: {', '.join(names[:shown])}"
                     + (f" and {len(names) - shown} more" if len(names) > shown else "")
                     for layer, names in missing.items())


def symbol_hints(names: list[str], reference: GeneReference) -> dict[str, str]:
    """The official symbol of each name that is not one itself but an alias or a previous symbol (through the one
    gene resolver) or a symbol in another case (``esr1``): the columns of gene layers are official symbols
    (``gene_sample_omics.symbol``), so a spec naming a gene as its study file wrote it (``HIST1H2BK``, now
    ``H2BC12``) found nothing.
    """
    from transforms.ingest.genes import resolve_gene_ids

    if not names:
        return {}
    symbols = reference.genes.select("gene_id", "symbol")
    resolved = (resolve_gene_ids(names, reference=reference, id_type="symbol").filter(pl.col("status") == "mapped")
                .join(symbols, on="gene_id").select(pl.col("feature_id").alias("name"), "symbol"))
    cased = (pl.DataFrame({"name": names}).with_columns(pl.col("name").str.to_uppercase().alias("_u"))
             .join(symbols.with_columns(pl.col("symbol").str.to_uppercase().alias("_u")), on="_u")
             .group_by("name").agg(pl.col("symbol").unique().sort()).filter(pl.col("symbol").list.len() == 1)
             .select("name", pl.col("symbol").list.first()))
    hints: dict[str, str] = {}
    for name, symbol in pl.concat([resolved, cased]).iter_rows():
        if symbol != name:
            hints.setdefault(name, symbol)
    return hints


def _hint_text(hints: dict[str, str]) -> str:
    return "" if not hints else "; written otherwise than the official symbol: " + ", ".join(
        f"{name} is {symbol}" for name, symbol in hints.items())


def _resembling(value: str, held: list[str]) -> list[str]:
    """Held values ``value`` may be a typo of: equal but for case, or close (difflib ratio >= 0.75: one swap or
    one wrong letter in a short word).
    """
    same_case = [h for h in held if h.casefold() == value.casefold()]
    return same_case or difflib.get_close_matches(value, held, n=1, cutoff=0.75)


def build_feature_matrix(spec: FeatureSetSpec, *, gso: pl.LazyFrame, samples: pl.DataFrame,
                         attributes: pl.DataFrame, signatures: pl.LazyFrame | None = None,
                         members: pl.DataFrame | None = None, rows_per_block: int = ROWS_PER_BLOCK,
                         reference: GeneReference | None = None) -> FeatureMatrix:
    """The feature set of ``spec`` over ``samples`` (already limited to its studies); ``rows_per_block`` long rows
    per finished block (bounds memory; the values do not depend on it). With the gene ``reference``, genes not
    found that are an alias or another case of an official symbol are named with it (:attr:`FeatureMatrix.hints`).
    """
    _check_selection(spec.name, "samples", samples, attributes, spec.samples)
    if spec.scale is not None:
        _check_selection(spec.name, "scale.train", samples, attributes, spec.scale.train)
    chosen = select_samples(samples, attributes, spec.samples).sort(KEY)
    if chosen.height == 0:
        raise ValueError(f"feature set {spec.name!r}: no sample matches the spec's studies and sample filter")
    train = chosen
    if spec.scale is not None and spec.scale.train is not None:
        train = select_samples(chosen, attributes, spec.scale.train)
        if train.height < 2:
            declared = (f"{len(spec.scale.train)} sample ids" if isinstance(spec.scale.train, list) else
                        f"{spec.scale.train.attribute} in {spec.scale.train.values}")
            raise ValueError(f"feature set {spec.name!r}: {train.height} of the {chosen.height} selected samples "
                             f"are training samples (scale.train: {declared}); at least 2 are needed")
    parts, columns, scaled = [], [], []
    missing: dict[str, list[str]] = {}
    for layer in spec.layers:
        rows, names, absent = _layer_rows(layer, gso, signatures, members, chosen, train, rows_per_block)
        parts.append(rows)
        columns += names
        if absent:
            missing[layer.layer] = absent
        if spec.scale is not None and spec.scale.method == "zscore" and layer.layer in spec.scale.layers:
            scaled += names
    if not columns:  # a set of 0 columns was built and versioned as if it held something
        layers = ", ".join(layer.layer for layer in spec.layers)
        raise ValueError(f"feature set {spec.name!r}: no column: its layers ({layers}) hold no value for the "
                         "selected samples of its studies (a layer a study lacks, or a non-human study, which has "
                         "no gene-level values)")
    absent_genes = [n for layer, names in missing.items() if layer != "signature" for n in names]
    hints = symbol_hints(absent_genes, reference) if reference is not None else {}
    if sum(map(len, missing.values())) == len(columns):  # every named gene absent: an all-NULL matrix, versioned
        raise ValueError(f"feature set {spec.name!r}: no column has a value for the selected samples of its "
                         f"studies; not found: {_not_found(missing)} (genes are official symbols of the genes "
                         f"table, as gene_sample_omics.symbol; signatures are gene_set names){_hint_text(hints)}")
    rows = pl.concat(parts) if parts else pl.LazyFrame(schema=LONG_SCHEMA)
    # one pass learns the scaling and the imputation means (a scaled feature's mean after scaling: z_mean)
    imputing = spec.impute == "train_mean"
    stats = (feature_statistics(rows, train, features=columns if imputing else scaled, rows_per_block=rows_per_block,
                                standardised=imputing) if scaled or imputing else None)
    learned = {r["feature"]: r for r in stats.iter_rows(named=True)} if stats is not None else {}
    none = {"mean": None, "sd": None, "z_mean": None}
    scaling = {f: {k: learned.get(f, none)[k] for k in ("mean", "sd")} for f in scaled}
    imputation = {f: learned.get(f, none)["z_mean" if f in scaling else "mean"] for f in columns} if imputing else {}
    impute = (pl.DataFrame({"feature": list(imputation), "_m": list(imputation.values())},
                           schema={"feature": pl.String, "_m": pl.Float64}).drop_nulls("_m") if imputing else None)
    return FeatureMatrix(rows, columns, chosen, scaling, [list(r) for r in train.sort(KEY).rows()], missing, impute,
                         rows_per_block, imputation, hints)
