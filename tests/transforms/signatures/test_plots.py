"""The enrichment dot plot's empty-state text (what the study report shows above the enrichment table)."""

from __future__ import annotations

import numpy as np
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


def test_enrichment_dot_plot_draws_a_prerank_fdr_of_0_at_one_over_the_permutations(monkeypatch):
    # gseapy's FDR 0 means no permutation did as well (below 1 / permutations): it was drawn at -log10(1e-300),
    # a colour bar of 270-330 for a 1,000-permutation run
    colours: list[np.ndarray] = []
    original = Axes.scatter

    def record(self, x, y, *args, **kwargs):
        colours.append(np.asarray(kwargs["c"]))
        return original(self, x, y, *args, **kwargs)

    monkeypatch.setattr(Axes, "scatter", record)
    rows = pl.DataFrame({"method": ["prerank", "prerank", "ora_up"], "library": "lib", "gene_set": ["A", "B", "C"],
                         "es": [0.5, 0.4, 4.0], "nes": [2.5, 2.0, None], "size": [20, 30, 10],
                         "pvalue": [0.0, 0.0, 1e-12], "fdr": [0.0, 0.01, 1e-10]})
    enrichment_dot_plot(rows, title="t", permutations=500)
    # rows drawn from the largest FDR down: B (0.01), C (ORA 1e-10: exact, kept), A (0: drawn at 1/500)
    assert np.allclose(colours[0], [2.0, 10.0, np.log10(500)])


def test_enrichment_dot_plot_keeps_the_colour_bar_label_inside_the_picture(monkeypatch):
    # airway's dot plot (FDR 0.15-0.29) cut its colour bar's label '-log10 FDR' at the right edge (trialH)
    import io

    from PIL import Image

    from transforms.signatures import plots

    figures = []
    original = plots.new_figure
    monkeypatch.setattr(plots, "new_figure", lambda *a, **k: figures.append(original(*a, **k)) or figures[-1])
    sets = ["CHR1_WINDOW_PROTEIN_CODING", "DEX_RESPONSE_CHR1_WINDOW", "MTOR_EXOSOME_WEIGHTED"]  # airway's 6 rows
    rows = pl.DataFrame({"method": ["ora_up", "ora_down"] * 3, "library": ["chr1_window"] * 2 + ["signatures"] * 4,
                         "gene_set": [s for s in sets for _ in range(2)], "es": [1.375] * 4 + [1.1] * 2,
                         "nes": [None] * 6, "size": [8] * 4 + [5] * 2, "pvalue": [0.5091] * 2 + [0.7273] * 4,
                         "fdr": [0.5091] * 2 + [0.7273] * 4}, schema_overrides={"nes": pl.Float64})
    picture = Image.open(io.BytesIO(enrichment_dot_plot(rows, title="airway: dex_vs_untreated")))
    figure = figures[0]
    drawn = figure.get_tightbbox(figure.canvas.get_renderer())  # every artist, in inches from the figure's corner
    saved = figure.get_size_inches() if picture.size == tuple(figure.get_size_inches() * figure.dpi) else None
    if saved is not None:  # saved at the figure's size: every artist must lie inside it
        assert drawn.x0 >= 0
        assert drawn.y0 >= 0
        assert drawn.x1 <= saved[0]
        assert drawn.y1 <= saved[1]
    else:  # saved around the drawn artists (bbox_inches="tight"): the picture holds them all
        assert picture.width >= drawn.width * figure.dpi - 1
        assert picture.height >= drawn.height * figure.dpi - 1
