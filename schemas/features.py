"""The feature-set spec (YAML): which studies, samples, layers and genes make an ML matrix, and how it is scaled.

Example (every key below is validated; unknown keys are errors)::

    name: acc_panel
    studies: [acc_xo]                   # or: all
    samples: {attribute: sample_type, values: [primary_tumor]}   # optional
    layers:
      - layer: rna                      # rna | protein | copy_number | mutation | signature
        genes: [TP53, CTNNB1, MYC]      # or: gene_set: {library: ..., name: ...}, or: top_variable: 500
      - layer: mutation
        genes: [TP53, CTNNB1]
      - layer: signature                # signature_scores of these gene sets
        genes: [HALLMARK_HYPOXIA]
        method: ssgsea                  # default; or singscore | weighted
    scale:
      method: zscore
      train: {attribute: split, values: [train]}   # or a list of sample ids
    impute: none                        # none (default: missing cells stay NULL) | train_mean
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.manifest import level_text, load_yaml

Layer = Literal["rna", "protein", "copy_number", "mutation", "signature"]
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SampleFilter(_Spec):
    attribute: str = Field(description="A sample attribute (sample_attributes.attribute).")
    values: list[str] = Field(min_length=1, description="Values (as text) a sample must have.")

    @field_validator("values", mode="before")
    @classmethod
    def _values_as_text(cls, value: object) -> object:
        """A value written as a YAML number (``batch: [1, 2]``) is its text as written, as in study.yaml."""
        return level_text(value)


class GeneSet(_Spec):
    library: str = Field(description="Gene-set library in gene_set_members (e.g. MSigDB_Hallmark_2020).")
    name: str = Field(description="Gene-set name in that library.")


class LayerSpec(_Spec):
    layer: Layer
    genes: list[str] | None = Field(None, min_length=1, description="Symbols (signature: signature names).")
    gene_set: GeneSet | None = Field(None, description="Genes of a gene set (needs the gene_set_members table).")
    top_variable: int | None = Field(None, ge=1, description="The N genes of highest variance over the "
                                                             "training samples (all selected samples without "
                                                             "a declared training set).")
    method: Literal["ssgsea", "singscore", "weighted"] | None = Field(
        None, description="Signature layer only: the signature_scores method (default ssgsea).")

    @model_validator(mode="after")
    def _one_selection(self) -> LayerSpec:
        chosen = [k for k in ("genes", "gene_set", "top_variable") if getattr(self, k) is not None]
        if len(chosen) != 1:
            raise ValueError(f"layer {self.layer!r}: give exactly one of genes, gene_set, top_variable "
                             f"(got {', '.join(chosen) or 'none'})")
        if self.layer == "signature" and self.gene_set is not None:
            raise ValueError("layer 'signature' selects signatures by name (genes: [...]) or top_variable")
        if self.layer != "signature" and self.method is not None:
            raise ValueError(f"layer {self.layer!r}: method applies to layer 'signature' only")
        return self


class Scale(_Spec):
    method: Literal["zscore", "none"] = "zscore"
    train: SampleFilter | list[str] | None = Field(None, description="Training samples the statistics are "
                                                                     "learned on (an attribute filter or sample "
                                                                     "ids); default all selected samples.")
    layers: list[Layer] = Field(
        default_factory=lambda: list[Layer](["rna", "protein", "copy_number", "signature"]),
        description="Layers scaled (mutation 1/0 is left as is unless listed).")


class FeatureSetSpec(_Spec):
    name: str = Field(description="Feature-set name: letters, digits, _ . - (at most 64).")
    studies: list[str] | Literal["all"] = Field(description="Study ids, or all published studies.")
    samples: SampleFilter | None = None
    layers: list[LayerSpec] = Field(min_length=1)
    scale: Scale | None = None
    impute: Literal["none", "train_mean"] = Field("none", description="Missing cells: kept NULL, or the "
                                                                      "training mean (after scaling).")

    @model_validator(mode="after")
    def _check(self) -> FeatureSetSpec:
        if not NAME.match(self.name):
            raise ValueError(f"name {self.name!r} must match {NAME.pattern}")
        if isinstance(self.studies, list) and not self.studies:
            raise ValueError("studies: list at least one study id, or write 'all'")
        layers = [spec.layer for spec in self.layers]
        twice = sorted({x for x in layers if layers.count(x) > 1})
        if twice:
            raise ValueError(f"layer(s) listed twice: {', '.join(twice)}")
        return self


def load_spec(path: str | Path) -> FeatureSetSpec:
    """Read and validate a feature-set YAML file."""
    data = load_yaml(Path(path))  # refuses alias bombs and overlong lines
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a feature-set spec is a YAML mapping")
    return FeatureSetSpec.model_validate(data)
