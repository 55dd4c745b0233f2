"""The design of one comparison, checked before any fit: R's ``model.matrix`` of ``~ covariates + factor``.

Treatment-coded indicators with ``reference`` as the factor's baseline, and for each covariate listed in ``numeric``
(study.yaml ``numeric_covariates``) one column holding its value as a number, the one slope R's DESeq2 fits for a
numeric colData column. Sample attributes are text, so a covariate is categorical unless listed as numeric.
Apart from :mod:`transforms.expression.differential` (which loads scipy) so that ingest checks a study's contrasts
without loading the fit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from transforms.ingest.samples import looks_like_measurement


class DesignError(ValueError):
    """The sample table cannot support the requested comparison; the message says why and what to change."""


def check_design(
    samples: pl.DataFrame,
    *,
    factor: str,
    test: str,
    reference: str,
    covariates: Sequence[str] = (),
    numeric: Sequence[str] = (),
) -> None:
    """Raise :class:`DesignError` unless ``test`` vs ``reference`` of ``factor`` can be fitted on ``samples``.

    ``samples`` has one row per sample. Checks, in order: the design columns exist, have no missing values,
    ``test`` and ``reference`` are distinct levels present, the design matrix ``~ covariates + factor`` has full
    column rank and leaves at least one residual degree of freedom. A level of one sample is fitted, as DESeq2
    1.38 fits it: its coefficient fits that sample, and the dispersions come from the residual degrees of freedom
    the replicated levels leave (DESeq2 refuses only a design with as many coefficients as samples).
    ``numeric``: the covariates fitted as one slope each; every value of theirs must parse as a finite number
    (a constant one fails the rank check, as DESeq2 refuses it).
    """
    columns = [*covariates, factor]
    missing = [c for c in columns if c not in samples.columns]
    if missing:
        raise DesignError(
            f"design column(s) {missing} not in the sample table; available columns: {samples.columns}"
        )
    if factor in covariates:
        raise DesignError(f"{factor!r} is both the factor and a covariate; list it once, as the factor")
    stray = [c for c in numeric if c not in covariates]
    if stray:
        raise DesignError(f"numeric covariate(s) {stray} are not among the covariates {list(covariates)}")
    for column in columns:
        values = samples[column]
        n_missing = values.null_count() + (values.is_nan().sum() if values.dtype.is_float() else 0)
        if n_missing:
            raise DesignError(
                f"{column!r} has {n_missing} missing value(s); fill them in or drop those samples before testing"
            )
    for column in numeric:
        _numeric_values(samples, column)
    if test == reference:
        raise DesignError(f"test and reference are both {test!r}; choose two different levels of {factor!r}")
    counts = dict(samples[factor].cast(pl.String).value_counts().iter_rows())
    for role, level in (("test", test), ("reference", reference)):
        if level not in counts:
            raise DesignError(f"{role} level {level!r} not found in {factor!r}; its levels are {sorted(counts)}")
    design, names = design_matrix(samples, factor=factor, reference=reference, covariates=covariates,
                                  numeric=numeric)
    rank = np.linalg.matrix_rank(design)
    if rank < design.shape[1]:
        confounded = [
            c
            for c in covariates
            if _full_rank(samples, factor=factor, reference=reference, covariates=[k for k in covariates if k != c],
                          numeric=numeric)
        ]
        hint = (
            f"drop covariate(s) {confounded}: each is confounded with the others or with {factor!r}"
            if confounded
            else "some level combinations are confounded; check the covariates against each other"
        )
        constant = [c for c in numeric if samples[c].cast(pl.String).n_unique() == 1]
        if constant:
            hint = f"numeric covariate(s) {constant} hold one value: a slope needs at least two; drop them"
        raise DesignError(f"design {design_formula(factor, covariates, numeric)} is not full rank "
                          f"({rank} < {len(names)}); {hint}{_numeric_hint(samples, covariates, numeric)}")
    if design.shape[0] <= design.shape[1]:
        single = sorted(str(level) for level, n in counts.items() if n == 1)
        remedy = (f"{factor!r} level(s) {single} have one sample each: add replicates of a level, or drop a "
                  "covariate" if single else "drop a covariate")
        raise DesignError(
            f"design {design_formula(factor, covariates, numeric)} has {design.shape[1]} coefficients for "
            f"{design.shape[0]} samples: no residual degrees of freedom to estimate dispersion; {remedy}"
            f"{_numeric_hint(samples, covariates, numeric)}"
        )


def _numeric_values(samples: pl.DataFrame, column: str) -> np.ndarray:
    """``column`` parsed as float64; :class:`DesignError` naming the first sample whose value is no finite number."""
    text = samples[column].cast(pl.String)
    parsed = text.str.strip_chars().cast(pl.Float64, strict=False)
    bad = parsed.is_null() | ~parsed.is_finite().fill_null(False)
    if bad.any():
        identifier = "sample_id" if "sample_id" in samples.columns else samples.columns[0]
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DesignError(f"numeric covariate {column!r} of sample {samples[identifier][row]!r} is "
                          f"{text[row]!r}, not a finite number ({int(bad.sum())} such value(s)); correct it or "
                          "drop the sample")
    return parsed.to_numpy().astype(float)


def _numeric_hint(samples: pl.DataFrame, covariates: Sequence[str], listed: Sequence[str] = ()) -> str:
    """A sentence naming the categorical covariates that look like a measurement, or ''.

    A covariate not listed as numeric is categorical, so a numeric one (RIN, age) costs one coefficient per
    distinct value, where R's DESeq2 fits a numeric colData column as one slope: the design then looks
    confounded, or without residual degrees of freedom, for a reason the user cannot see in the generic message.
    Numbers that look like labels (a batch coded 1, 2, 3, 4) are not named (:func:`looks_like_measurement`), and
    the sentence is conditional: only the user knows whether the numbers measure something.
    """
    numeric = [c for c in covariates if c not in listed and looks_like_measurement(samples[c])]
    if not numeric:
        return ""
    named = ", ".join(f"{c!r} ({samples[c].cast(pl.String).n_unique()} distinct values)" for c in numeric)
    shown = ", ".join(repr(c) for c in numeric)
    return (f"; {named} holds numbers, fitted as categorical levels (one coefficient per distinct value): if "
            f"{shown} is a measurement (RIN, age) rather than labels, list it under numeric_covariates in "
            "study.yaml to fit one slope, as R's DESeq2 fits a numeric column")


def design_matrix(
    samples: pl.DataFrame, *, factor: str, reference: str, covariates: Sequence[str] = (),
    numeric: Sequence[str] = (),
) -> tuple[np.ndarray, list[str]]:
    """Design ``~ covariates + factor`` (one row per sample) and its column names, as R's ``model.matrix``.

    Intercept first, then per column in formula order: a covariate in ``numeric`` is one column, its values as
    numbers (not centred; named as R names it, e.g. ``rin``); any other column is one indicator per non-baseline
    level: the factor's baseline is ``reference``, a covariate's baseline is its first level in sorted order (R's
    default factor levels).
    """
    blocks = [np.ones((samples.height, 1))]
    names = ["Intercept"]
    for column in [*covariates, factor]:
        if column in numeric and column != factor:
            blocks.append(_numeric_values(samples, column)[:, None])
            names.append(column)
            continue
        values = samples[column].cast(pl.String).to_numpy()
        levels = sorted(set(values))
        baseline = reference if column == factor else levels[0]
        for level in (lv for lv in levels if lv != baseline):
            blocks.append((values == level).astype(float)[:, None])
            names.append(f"{column}[T.{level}]")
    return np.hstack(blocks), names


def design_formula(factor: str, covariates: Sequence[str] = (), numeric: Sequence[str] = ()) -> str:
    """The design as an R-style formula string, for metadata and messages, e.g. ``~ type + condition``; numeric
    covariates (one slope each) are named after it: ``~ rin + condition (numeric: rin)``.
    """
    slopes = [c for c in covariates if c in numeric]
    return "~ " + " + ".join([*covariates, factor]) + (f" (numeric: {', '.join(slopes)})" if slopes else "")


def _full_rank(samples: pl.DataFrame, *, factor: str, reference: str, covariates: Sequence[str],
               numeric: Sequence[str] = ()) -> bool:
    design, _ = design_matrix(samples, factor=factor, reference=reference, covariates=covariates,
                              numeric=[c for c in numeric if c in covariates])
    return bool(np.linalg.matrix_rank(design) == design.shape[1])
