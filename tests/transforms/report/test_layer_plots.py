"""Axis labels of the report's layer plots: long gene-set names are cut with an ellipsis, keeping their identifier."""

from __future__ import annotations

import polars as pl
import pytest

from transforms.report import layer_plots
from transforms.report.plots import short_label

GO = "regulation of endothelial cell proliferation (GO:0001936)"  # 57 characters, a GO_Biological_Process_2021 set


@pytest.mark.parametrize(("text", "width", "expected"), [
    (GO, 50, "regulation of endothelial cell proli\u2026 (GO:0001936)"),
    ("HALLMARK_ESTROGEN_RESPONSE_EARLY", 50, "HALLMARK_ESTROGEN_RESPONSE_EARLY"),
    ("a" * 12, 10, "a" * 9 + "\u2026"),
    ("no identifier here (but a long parenthetical remark)", 20, "no identifier here\u2026")])
def test_short_label_cuts_with_an_ellipsis_keeping_a_trailing_identifier(text, width, expected):
    assert short_label(text, width) == expected
    assert len(short_label(text, width)) <= width


def test_signature_heatmap_labels_keep_the_go_identifier(monkeypatch):
    # the brca report's heatmap showed 'regulation of endothelial cell proliferation (GO:0' and 'positive
    # regulation of cytokine production (GO:000': the identifier, all that tells such sets apart, was cut (trialH)
    drawn = []
    monkeypatch.setattr(layer_plots, "png", lambda figure: drawn.append(figure) or b"")
    scores = pl.DataFrame({"gene_set": [GO, GO, "HALLMARK_G2M_CHECKPOINT", "HALLMARK_G2M_CHECKPOINT"],
                           "sample_id": ["s1", "s2", "s1", "s2"], "score": [0.1, 0.3, -0.2, 0.4]})
    layer_plots.signature_heatmap(scores, title="t")
    labels = [label.get_text() for label in drawn[0].axes[0].get_yticklabels()]
    assert labels == ["regulation of endothelial cell proli\u2026 (GO:0001936)", "HALLMARK_G2M_CHECKPOINT"]
