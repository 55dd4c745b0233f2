"""QC plots drawn with fewer artists give the pictures matplotlib's own calls give."""

from __future__ import annotations

import io

import numpy as np
import polars as pl
import pytest
from matplotlib.image import imread

from transforms.report import qc_plots


@pytest.mark.parametrize("samples", [6, 80])  # with sample names on the axis, and without (over MAX_LABELS)
def test_qc_bars_draw_the_pixels_of_matplotlib_bar_charts(monkeypatch, samples):
    rng = np.random.default_rng(samples)
    qc = pl.DataFrame({"sample_id": [f"s{i}" for i in range(samples)],
                       "library_size": rng.uniform(1e4, 3e6, samples), "detected_genes": rng.integers(0, 700, samples),
                       "qc_pass": [i % 5 != 2 for i in range(samples)]})
    drawn = imread(io.BytesIO(qc_plots.qc_bars(qc, title="t")), format="png")
    monkeypatch.setattr(qc_plots, "_bars", lambda axes, heights, colours: axes.bar(range(len(heights)), heights,
                                                                                  color=colours))
    reference = imread(io.BytesIO(qc_plots.qc_bars(qc, title="t")), format="png")
    assert drawn.shape == reference.shape
    assert np.array_equal(drawn, reference)
    red = np.all(np.isclose(drawn[..., :3], [0xC0 / 255, 0x39 / 255, 0x2B / 255], atol=1e-6), axis=-1)
    assert red.any()  # the failing samples are there, in red


def test_plot_modules_import_matplotlib_only_when_they_draw() -> None:
    """matplotlib costs ~0.6 CPU s a process: ``omicsdw build --no-plots`` imports these modules and draws nothing."""
    import subprocess
    import sys

    code = ("import sys; import transforms.report.plots, transforms.report.qc_plots, transforms.report.layer_plots, "
            "transforms.signatures.plots; print(sorted(m for m in sys.modules if m.startswith('matplotlib')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
