"""The feature-set spec: the issue's example validates; ambiguous or unknown keys are precise errors."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from schemas.features import FeatureSetSpec, load_spec

EXAMPLE = """\
name: acc_panel
studies: [acc_xo]
samples: {attribute: sample_type, values: [primary_tumor]}
layers:
  - layer: rna
    genes: [TP53, CTNNB1, MYC]
  - layer: copy_number
    genes: [TP53, MYC]
  - layer: mutation
    genes: [TP53, CTNNB1]
  - layer: protein
    top_variable: 500
  - layer: signature
    genes: [HALLMARK_HYPOXIA]
scale:
  method: zscore
  train: {attribute: split, values: [train]}
"""


def test_load_spec_reads_the_documented_example(tmp_path):
    path = tmp_path / "acc.yaml"
    path.write_text(EXAMPLE)
    spec = load_spec(path)
    assert spec.name == "acc_panel"
    assert [layer.layer for layer in spec.layers] == ["rna", "copy_number", "mutation", "protein", "signature"]
    assert spec.scale is not None
    assert spec.scale.train is not None
    assert spec.impute == "none"


def test_load_spec_reads_filter_values_written_as_yaml_numbers_as_written(tmp_path):
    """Sample attributes are text: `values: [01, 2]` selected nothing but a refusal ('Input should be a valid
    string'), while study.yaml takes the same values as the text written; numeric keys stay numbers."""
    path = tmp_path / "batches.yaml"
    path.write_text(EXAMPLE.replace("values: [primary_tumor]", "values: [01, 2, 0.50]").replace("500", "1_000"))
    spec = load_spec(path)
    assert spec.samples is not None
    assert spec.samples.values == ["01", "2", "0.50"]
    assert type(spec.layers[3].top_variable) is int
    assert spec.layers[3].top_variable == 1000


@pytest.mark.parametrize(("change", "message"), [
    ({"layers": [{"layer": "rna", "genes": ["TP53"], "top_variable": 5}]}, "exactly one of"),
    ({"layers": [{"layer": "rna"}]}, "exactly one of"),
    ({"layers": [{"layer": "rnaseq", "genes": ["TP53"]}]}, "rnaseq"),
    ({"layers": [{"layer": "signature", "gene_set": {"library": "h", "name": "x"}}]}, "signature"),
    ({"layers": [{"layer": "rna", "genes": ["A"]}, {"layer": "rna", "genes": ["B"]}]}, "listed twice"),
    ({"name": "bad name"}, "must match"),
    ({"studies": []}, "at least one"),
    ({"scale": {"method": "zscore", "trian": ["S1"]}}, "trian"),
])
def test_feature_set_spec_rejects_ambiguous_specs(change, message):
    data = {**yaml.safe_load(EXAMPLE), **change}
    with pytest.raises(ValidationError, match=message):
        FeatureSetSpec.model_validate(data)


def test_feature_set_spec_gene_set_and_all_studies():
    spec = FeatureSetSpec.model_validate({"name": "h", "studies": "all", "layers": [
        {"layer": "rna", "gene_set": {"library": "MSigDB_Hallmark_2020", "name": "Hypoxia"}}]})
    assert spec.studies == "all"
    assert spec.layers[0].gene_set is not None
