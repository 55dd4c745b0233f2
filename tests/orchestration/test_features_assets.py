"""One Dagster asset per feature-set spec file of $OMICSDW_FEATURES."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from orchestration.assets.features import feature_set_assets

SPEC = "name: {name}\nstudies: all\nlayers:\n  - {{layer: rna, genes: [TP53]}}\n"


def test_feature_set_assets_one_per_spec_file(tmp_path):
    (tmp_path / "a.yaml").write_text(SPEC.format(name="acc_panel"))
    (tmp_path / "b.yml").write_text(SPEC.format(name="brca.v2-panel"))
    (tmp_path / "notes.txt").write_text("not a spec")
    assets = feature_set_assets(tmp_path)
    keys = sorted(a.key.to_user_string() for a in assets)
    assert keys == ["features/acc_panel", "features/brca_v2_panel"]
    assert all(a.group_names_by_key[a.key] == "features" for a in assets)
    assert feature_set_assets("") == []


def test_feature_set_assets_refuse_a_broken_spec(tmp_path):
    (tmp_path / "bad.yaml").write_text("name: x\nstudies: all\nlayers: []\n")
    with pytest.raises(ValidationError, match="layers"):
        feature_set_assets(tmp_path)
    with pytest.raises(FileNotFoundError, match="OMICSDW_FEATURES"):
        feature_set_assets(tmp_path / "missing")
