"""Build one feature set: one row per (study, sample), one column per ``<layer>__<symbol>``, kept long.

Values come from ``gene_sample_omics`` (rna = ``rna_normalized.log2_value``, protein = ``log2_abundance``,
copy_number = the GISTIC call, mutation = 1 / 0, NULL where the gene was not profiled) and, for the signature
layer, from ``signature_scores``. Scaling is fitted on the declared training samples only and applied unchanged
to every sample (:func:`fit_scaling` / :func:`apply_scaling`); missing cells stay NULL unless ``impute`` says
otherwise. The matrix is returned long (absent row = NULL cell) so 60,000 columns never exist as a frame here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from schemas.features import FeatureSetSpec, LayerSpec, SampleFilter

SOURCE_COLUMNS = {"rna": "rna_log2", "protein": "protein_log2", "copy_number": "cn_call", "mutation": "mutated"}
"""gene_sample_omics column of each gene layer."""
KEY = ["study_id", "sample_id"]
SIGNATURE_METHOD = "ssgsea"
"""signature_scores method of the signature layer when the spec names none."""


class FeatureInputMissing(LookupError):
    """The spec needs a table the warehouse does not have (signature tables, gene sets)."""


@dataclass
class FeatureMatrix:
    """The built matrix: long ``values`` (study_id, sample_id, feature, value), ordered ``columns`` and ``samples``,
    scaling parameters learned on ``train`` samples, and genes asked for but absent.
    """

    values: pl.DataFrame
    columns: list[str]
    samples: pl.DataFrame
    scaling: dict[str, dict[str, float | None]] = field(default_factory=dict)
    train: list[list[str]] = field(default_factory=list)
    missing: dict[str, list[str]] = field(default_factory=dict)
    imputation: dict[str, float | None] = field(default_factory=dict)
    """``impute: train_mean``: the value each feature's missing cells got (its training mean, after scaling)."""


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
                members: pl.DataFrame | None, samples: pl.DataFrame, train: pl.DataFrame
                ) -> tuple[pl.DataFrame, list[str], list[str]]:
    """Long rows ``study_id, sample_id, feature, value`` of one layer, its ordered columns, names not found."""
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
    found = rows.collect()
    if layer.top_variable is not None:
        variance = (found.join(train, on=KEY, how="semi").group_by("name")
                    .agg(pl.col("value").var(ddof=1).alias("v")).drop_nulls("v")
                    .sort(["v", "name"], descending=[True, False]).head(layer.top_variable))
        names = sorted(variance["name"].to_list())
    elif layer.genes is not None:
        names = list(dict.fromkeys(layer.genes))
    else:
        names = sorted(found["name"].unique().to_list())
    present = set(found["name"].unique().to_list())
    missing = [n for n in names if n not in present]
    rows_out = found.filter(pl.col("name").is_in(names)).select(
        *KEY, (pl.lit(f"{layer.layer}__") + pl.col("name")).alias("feature"), "value")
    return rows_out, [f"{layer.layer}__{n}" for n in names], missing


def fit_scaling(values: pl.DataFrame, train: pl.DataFrame, *, features: list[str]
                ) -> dict[str, dict[str, float | None]]:
    """Per feature: mean and SD (ddof=1) over the training samples' non-NULL values only."""
    fitted = (values.filter(pl.col("feature").is_in(features)).join(train, on=KEY, how="semi")
              .group_by("feature").agg(pl.col("value").mean().alias("mean"), pl.col("value").std(ddof=1).alias("sd")))
    found = {r["feature"]: {"mean": r["mean"], "sd": r["sd"]} for r in fitted.iter_rows(named=True)}
    return {f: found.get(f, {"mean": None, "sd": None}) for f in features}


def apply_scaling(values: pl.DataFrame, scaling: dict[str, dict[str, float | None]]) -> pl.DataFrame:
    """(value - mean) / sd with the learned parameters; NULL where the SD is zero or unknown."""
    if not scaling:
        return values
    params = pl.DataFrame([{"feature": f, "_mean": p["mean"], "_sd": p["sd"]} for f, p in scaling.items()],
                          schema={"feature": pl.String, "_mean": pl.Float64, "_sd": pl.Float64})
    joined = values.join(params, on="feature", how="left")
    scaled = pl.when(pl.col("_sd") > 0).then((pl.col("value") - pl.col("_mean")) / pl.col("_sd"))
    return joined.with_columns(pl.when(pl.col("feature").is_in(params["feature"].implode()))
                               .then(scaled).otherwise(pl.col("value")).alias("value")).drop("_mean", "_sd")


def build_feature_matrix(spec: FeatureSetSpec, *, gso: pl.LazyFrame, samples: pl.DataFrame,
                         attributes: pl.DataFrame, signatures: pl.LazyFrame | None = None,
                         members: pl.DataFrame | None = None) -> FeatureMatrix:
    """The feature set of ``spec`` over ``samples`` (already limited to its studies)."""
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
        rows, names, absent = _layer_rows(layer, gso, signatures, members, chosen, train)
        parts.append(rows)
        columns += names
        if absent:
            missing[layer.layer] = absent
        if spec.scale is not None and spec.scale.method == "zscore" and layer.layer in spec.scale.layers:
            scaled += names
    values = pl.concat(parts) if parts else pl.DataFrame(schema={"study_id": pl.String, "sample_id": pl.String,
                                                                 "feature": pl.String, "value": pl.Float64})
    scaling = fit_scaling(values, train, features=scaled) if scaled else {}
    values = apply_scaling(values, scaling)
    imputation: dict[str, float | None] = {}
    if spec.impute == "train_mean":
        means = values.join(train, on=KEY, how="semi").group_by("feature").agg(pl.col("value").mean().alias("_m"))
        learned = dict(zip(means["feature"], means["_m"], strict=True))
        imputation = {f: learned.get(f) for f in columns}
        grid = chosen.join(pl.DataFrame({"feature": columns}), how="cross")
        values = (grid.join(values, on=[*KEY, "feature"], how="left").join(means, on="feature", how="left")
                  .with_columns(pl.coalesce("value", "_m").alias("value")).drop("_m"))
    values = values.filter(pl.col("value").is_not_null()).sort([*KEY, "feature"])
    return FeatureMatrix(values, columns, chosen, scaling, [list(r) for r in train.sort(KEY).rows()], missing,
                         imputation)
