"""The small-residual-df dispersion prior: the exact law that replaces DESeq2's Monte Carlo histogram."""

import numpy as np
import pytest
from scipy import integrate
from scipy.special import ndtr
from scipy.stats import chi2

from transforms.expression.deseq2 import _PRIOR_BREAKS, _coarse_noise_bins, _log_chisq_noise_bins


def _bins_by_quadrature(df: int, variance: float) -> np.ndarray:
    """Bin densities of log(chisq_df / df) + N(0, variance) within the breaks, by adaptive quadrature."""
    def density(y: float) -> float:  # of log(chisq_df / df)
        return float(chi2.pdf(df * np.exp(y), df) * df * np.exp(y))

    if variance == 0:
        values = chi2.cdf(df * np.exp(_PRIOR_BREAKS), df)
    else:  # the CDF at every break at once: P(Y + Z <= b) = integral of density(y) * Phi((b - y) / sd)
        values = integrate.quad_vec(lambda y: density(y) * ndtr((_PRIOR_BREAKS - y) / np.sqrt(variance)), -60, 12,
                                    points=[-5.0, 0.0], epsabs=1e-13, epsrel=1e-11)[0]
    return np.diff(values) / (values[-1] - values[0]) / np.diff(_PRIOR_BREAKS)


@pytest.mark.parametrize("df", [1, 2, 3])
def test_noise_bins_equal_adaptive_quadrature_of_the_same_law(df):
    variances = np.array([0.0, 0.04, 1.3, 7.9])
    bins = _log_chisq_noise_bins(df, variances, _PRIOR_BREAKS)
    for row, variance in zip(bins, variances, strict=True):
        np.testing.assert_allclose(row, _bins_by_quadrature(df, variance), rtol=0, atol=1e-10)


def test_the_coarse_grid_kept_per_df_equals_a_fresh_evaluation():
    picked = [0, 57, 199]
    fresh = _log_chisq_noise_bins(2, np.linspace(0, 8, 200)[picked], _PRIOR_BREAKS)
    np.testing.assert_allclose(_coarse_noise_bins(2)[picked], fresh, rtol=1e-13, atol=0)
    assert not _coarse_noise_bins(2).flags.writeable
