"""The enrichment dot plot's empty-state text (what the study report shows above the enrichment table)."""

from __future__ import annotations

import polars as pl
import pytest
from matplotlib.axes import Axes

from transforms.signatures.plots import enrichment_dot_plot


@pytest.fixture
def texts(monkeypatch) -> list[str]:
    drawn: list[str] = []
    original = Axes.text

    def record(self, x, y, s, *args, **kwargs):
        drawn.append(s)
        return original(self, x, y, s, *args, **kwargs)

    monkeypatch.setattr(Axes, "text", record)
    return drawn


def _rows(es: list[float]) -> pl.DataFrame:
    n = len(es)
    return pl.DataFrame({"method": ["ora_up"] * n, "library": ["lib"] * n, "gene_set": [f"S{i}" for i in range(n)],
                         "es": es, "nes": [None] * n, "size": [10] * n, "pvalue": [1.0] * n, "fdr": [1.0] * n},
                        schema_overrides={"nes": pl.Float64, "es": pl.Float64, "size": pl.Int64, "pvalue": pl.Float64,
                                          "fdr": pl.Float64})


def test_enrichment_dot_plot_tested_sets_without_enrichment_are_not_called_untested(texts):
    # A contrast without any gene at padj < 0.05: ORA tests every set with enrichment 0 (log2 = -inf), and the
    # report's table lists them under a plot that said "no gene set tested".
    enrichment_dot_plot(_rows([0.0, 0.0]), title="t")
    assert texts == ["no gene set enriched (no gene at padj < 0.05, no prerank result)"]


def test_enrichment_dot_plot_without_rows_says_none_was_tested(texts):
    enrichment_dot_plot(_rows([]), title="t")
    assert texts == ["no gene set tested"]
