"""DESeq2 1.38.3 ``DESeq()`` + ``results()`` for categorical designs, ported to numpy (Wald test, no shrinkage).

Pure functions on numpy arrays: ``counts`` is genes x samples, ``design`` is the samples x coefficients model
matrix (intercept first), ``size_factors`` one value per sample. Every gene-wise fit of DESeq2's C++ code
(``fitBeta``, ``fitDisp``, ``fitDispGrid``) runs for a block of genes in lockstep: each iteration is a handful of
array operations over the block's genes still iterating, on stacked p x p matrices. :func:`deseq_wald` fits
blocks of about 512 KB (genes x samples), so memory stays bounded at cohort scale, optionally on several threads.

Determinism: nothing here calls BLAS or LAPACK. Products with the design are numpy row sums (pairwise summation
along each gene's row) and the p x p systems are solved by a Cholesky factorisation written out below, so results
do not depend on the BLAS library, its kernel or its thread count. Every value of a gene is computed from that
gene's row alone, so results are the same bit for bit whatever the block size and the number of threads
(tested); runs are identical bit for bit on one machine. numpy's exp and log are vectorised per CPU family
(AVX-512 or not) and may differ in the last bit between machines, as glibc's do for R; the fits converge to
DESeq2's values within ~1e-6 relative either way, so such bits move results by far less than the test tolerances.
A gene whose Armijo step improves the log posterior by less than the rounding of its sum (rare: one pasilla gene
under ``~ condition``) can still be decided differently from R, in both directions.

Function names in the docstrings are DESeq2's (``R/core.R``, ``R/fitNbinomGLMs.R``, ``R/methods.R``,
``R/results.R``, ``src/DESeq2.cpp`` at the 1.38.0 release commit 0e059f4 of github.com/thelovelab/DESeq2).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple, TypeVar

import numpy as np
from scipy.optimize import minimize
from scipy.special import digamma, gammaln, ndtr, polygamma
from scipy.stats import chi2, f, norm

_T = TypeVar("_T")

MIN_DISP = 1e-8
"""DESeq2's ``minDisp``: lower bound of every dispersion estimate."""

MIN_MU = 0.5
"""DESeq2's ``minmu``: lower bound of the gene-wise means the dispersions are fitted at."""

_LN_2PI = np.log(2 * np.pi)
_LN_SQRT_2PI = 0.5 * _LN_2PI
_LARGE = 30.0  # fitBeta / fitNbinomGLMsOptim: |beta| above this (natural log scale) means divergence


class DispersionTrend(NamedTuple):
    """DESeq2's parametric dispersion trend ``asympt_disp + extra_pois / mean``."""

    asympt_disp: float
    extra_pois: float


# ------------------------------------------------------------------------------------- small batched linear algebra


def _row_dot(w: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``sum_m w[g, m] v[m]`` for every gene g, as numpy's pairwise row sum (a plain sum where v is all ones)."""
    return w.sum(axis=-1) if (v == 1).all() else (w * v).sum(axis=-1)


def _cross(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``X' w_g`` for every gene g: (genes, p) from values (genes, m) and the design (m, p)."""
    return np.stack([_row_dot(w, x[:, i]) for i in range(x.shape[1])], axis=-1)


def _linear(beta: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``X beta_g`` for every gene g: (genes, m) from coefficients (genes, p) and the design (m, p)."""
    out = beta[:, :1] * x[:, 0]
    for i in range(1, x.shape[1]):
        out += beta[:, i : i + 1] * x[:, i]
    return out


@lru_cache(maxsize=16)
def _gram_plan(design: bytes, m: int, p: int) -> tuple[list[np.ndarray], list[tuple[int, int, int]]]:
    """The distinct products of two design columns, and for each (i <= j) the index of ``x_i * x_j`` among them."""
    x = np.frombuffer(design).reshape(m, p)
    products: list[np.ndarray] = []
    keys: list[bytes] = []
    pairs = []
    for i in range(p):
        for j in range(i, p):
            v = x[:, i] * x[:, j]
            if v.tobytes() not in keys:
                keys.append(v.tobytes())
                products.append(v)
            pairs.append((i, j, keys.index(v.tobytes())))
    return products, pairs


def _gram(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``X' diag(w_g) X`` for every gene g: (genes, p, p) from the design (m, p) and weights (genes, m).

    One row sum per distinct product of two design columns: for an intercept and indicator columns that is one
    sum per column, the intercept's without a multiplication.
    """
    m, p = x.shape
    products, pairs = _gram_plan(np.ascontiguousarray(x, dtype=np.float64).tobytes(), m, p)
    sums = [_row_dot(w, v) for v in products]
    out = np.empty((w.shape[0], p, p))
    for i, j, k in pairs:
        out[:, i, j] = out[:, j, i] = sums[k]
    return out


def _cholesky(a: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of each symmetric positive definite matrix of a (n, p, p) stack."""
    p = a.shape[-1]
    lower = np.zeros_like(a)
    for j in range(p):
        s = a[:, j, j].copy()
        for k in range(j):
            s -= lower[:, j, k] ** 2
        with np.errstate(invalid="ignore"):
            lower[:, j, j] = np.sqrt(s)
        for i in range(j + 1, p):
            t = a[:, i, j].copy()
            for k in range(j):
                t -= lower[:, i, k] * lower[:, j, k]
            with np.errstate(invalid="ignore", divide="ignore"):
                lower[:, i, j] = t / lower[:, j, j]
    return lower


def _cho_solve(lower: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve ``L L' x = b`` for a (n, p) right-hand side (or (n, p, k))."""
    p = lower.shape[-1]
    y = np.array(b, dtype=np.float64, copy=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        for i in range(p):
            for k in range(i):
                y[:, i] -= _col(lower[:, i, k], y) * y[:, k]
            y[:, i] /= _col(lower[:, i, i], y)
        for i in reversed(range(p)):
            for k in range(i + 1, p):
                y[:, i] -= _col(lower[:, k, i], y) * y[:, k]
            y[:, i] /= _col(lower[:, i, i], y)
    return y


def _col(v: np.ndarray, like: np.ndarray) -> np.ndarray:
    return v if like.ndim == 2 else v[:, None]


def _inverse(a: np.ndarray) -> np.ndarray:
    """Inverse of each matrix of a (n, p, p) stack of symmetric positive definite matrices."""
    eye = np.broadcast_to(np.eye(a.shape[-1]), a.shape)
    return _cho_solve(_cholesky(a), eye)


# -------------------------------------------------------------------------------------------- R's dnbinom (log)


def _stirlerr(n: np.ndarray) -> np.ndarray:
    """R 4.2 ``stirlerr``: log(n!) minus its Stirling approximation (closed form below 15, series above)."""
    out = np.empty_like(n)
    small = n <= 15.0
    ns = n[small]
    out[small] = gammaln(ns + 1.0) - (ns + 0.5) * np.log(ns) + ns - _LN_SQRT_2PI
    s0, s1, s2, s3, s4 = 1 / 12, 1 / 360, 1 / 1260, 1 / 1680, 1 / 1188
    for lo, hi, series in (
        (500.0, np.inf, lambda nl, nn: (s0 - s1 / nn) / nl),
        (80.0, 500.0, lambda nl, nn: (s0 - (s1 - s2 / nn) / nn) / nl),
        (35.0, 80.0, lambda nl, nn: (s0 - (s1 - (s2 - s3 / nn) / nn) / nn) / nl),
        (15.0, 35.0, lambda nl, nn: (s0 - (s1 - (s2 - (s3 - s4 / nn) / nn) / nn) / nn) / nl),
    ):
        band = (n > lo) & (n <= hi)
        nl = n[band]
        out[band] = series(nl, nl * nl)
    return out


def _bd0(x: np.ndarray, np_: np.ndarray) -> np.ndarray:
    """R 4.2 ``bd0``: deviance term ``x log(x/np) + np - x``, by a series where x is close to np."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = x * np.log(x / np_) + np_ - x
    close = np.abs(x - np_) < 0.1 * (x + np_)
    if close.any():
        xc, nc = x[close], np_[close]
        v = (xc - nc) / (xc + nc)
        s = (xc - nc) * v
        ej = 2 * xc * v
        v = v * v
        start = s
        # Every term has the sign of the first and shrinks by v < 0.01, so once a term no longer changes the sum
        # none after it does: adding terms until every sum has stopped changing gives R's loop, which stops each
        # sum at its own first unchanged term.
        for j in range(1, 1000):
            ej = ej * v
            s1 = s + ej / (2 * j + 1)
            if (s1 == s).all():
                break
            s = s1
        out[close] = np.where(np.abs(start) < np.finfo(float).tiny, start, s)
    return out


def nb_log_density(y: np.ndarray, mu: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Log negative binomial density, R's ``dnbinom(y, mu=mu, size=1/alpha, log=TRUE)`` (``dnbinom_mu``).

    Used for the deviance that decides convergence in ``fitBeta``: R's saddle-point form stays accurate for the
    large sizes (tiny dispersions) where a difference of log-gammas loses the digits the 1e-8 test needs.
    """
    y, mu = np.broadcast_arrays(np.asarray(y, dtype=np.float64), np.asarray(mu, dtype=np.float64))
    size_in = 1.0 / np.asarray(alpha, dtype=np.float64)
    size = np.broadcast_to(size_in, y.shape)
    out = np.empty(y.shape)
    zero = y == 0
    sz, mz = size[zero], mu[zero]
    out[zero] = sz * np.where(sz < mz, np.log(sz / (sz + mz)), np.log1p(-mz / (sz + mz)))
    tiny = ~zero & (y < 1e-10 * size)
    if tiny.any():
        yt, st, mt = y[tiny], size[tiny], mu[tiny]
        lp = np.where(st < mt, np.log(st / (1 + st / mt)), np.log(mt / (1 + mt / st)))
        out[tiny] = yt * lp - mt - gammaln(yt + 1) + np.log1p(yt * (yt - 1) / (2 * st))
    rest = ~zero & ~tiny
    yr, sr, mr = y[rest], size[rest], mu[rest]
    n = yr + sr
    p, q = sr / (sr + mr), mr / (sr + mr)
    stirlerr_size = np.broadcast_to(_stirlerr(np.atleast_1d(size_in)).reshape(size_in.shape), y.shape)[rest]
    lc = _stirlerr(n) - stirlerr_size - _stirlerr(n - sr) - _bd0(sr, n * p) - _bd0(n - sr, n * q)
    lf = _LN_2PI + np.log(sr) + np.log1p(-sr / n)
    out[rest] = np.log(sr / n) + lc - 0.5 * lf
    return out


# ------------------------------------------------------------------------------------ design helpers (core.R)


def _cells(design: np.ndarray) -> np.ndarray:
    """For each sample, the first sample with its row of the design (its cell), read-only."""
    return _cells_of(np.ascontiguousarray(design, dtype=np.float64).tobytes(), *design.shape)


@lru_cache(maxsize=16)
def _cells_of(design: bytes, m: int, p: int) -> np.ndarray:
    first: dict[bytes, int] = {}
    cells = np.array([first.setdefault(row.tobytes(), i) for i, row in enumerate(np.frombuffer(design).reshape(m, p))])
    cells.setflags(write=False)
    return cells


def n_or_more_in_cell(design: np.ndarray, n: int) -> np.ndarray:
    """``nOrMoreInCell``: for each sample, whether at least ``n`` samples share its row of the design."""
    cells = _cells(design)
    return np.bincount(cells, minlength=cells.size)[cells] >= n


def n_groups(design: np.ndarray) -> int:
    """Number of distinct rows of the design (``nlevels(modelMatrixGroups(x))``)."""
    return int(np.unique(_cells(design)).size)


def _xtx_inverse(design: np.ndarray) -> np.ndarray:
    return _inverse(_gram(design, np.ones((1, design.shape[0]))))[0]


def _project(y: np.ndarray, design: np.ndarray) -> np.ndarray:
    """``linearModelMu``: least-squares fitted values ``X (X'X)^-1 X' y`` of every row of ``y`` on the design.

    Computed as coefficients then fitted values (genes x p, then genes x samples), not through R's samples x
    samples hat matrix: the same values to rounding, at p / m of the work.
    """
    return _linear(np.einsum("gi,ij->gj", _cross(y, design), _xtx_inverse(design)), design)


# ----------------------------------------------------------------------- Cox-Reid adjusted dispersion likelihood


def _log_posterior(
    log_alpha: np.ndarray,
    y: np.ndarray,
    mu: np.ndarray,
    design: np.ndarray,
    prior_mean: np.ndarray | None = None,
    prior_var: float = 1.0,
) -> np.ndarray:
    """C++ ``log_posterior``: NB log likelihood (without the constant log y!) plus the Cox-Reid term
    ``-0.5 log det(X' W X)``, ``W = 1 / (1/mu + alpha)``, plus a normal prior on log alpha if ``prior_mean``.
    """
    alpha = np.exp(log_alpha)
    a = alpha[:, None]
    inv = 1 / a
    w = 1 / (1 / mu + a)
    chol = _cholesky(_gram(design, w))
    cr = -np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
    ll = (gammaln(y + inv) - gammaln(inv) - y * np.log(mu + inv) - inv * np.log(1.0 + mu * a)).sum(axis=1)
    if prior_mean is not None:  # summed in the C++ order: (ll + prior) + cr
        ll = ll + -0.5 * (log_alpha - prior_mean) ** 2 / prior_var
    return ll + cr


def _dlog_posterior(
    log_alpha: np.ndarray,
    y: np.ndarray,
    mu: np.ndarray,
    design: np.ndarray,
    prior_mean: np.ndarray | None = None,
    prior_var: float = 1.0,
) -> np.ndarray:
    """C++ ``dlog_posterior``: derivative of :func:`_log_posterior` with respect to log alpha."""
    alpha = np.exp(log_alpha)
    a = alpha[:, None]
    inv = 1 / a
    w = 1 / (1 / mu + a)
    b_inv = _inverse(_gram(design, w))
    db = _gram(design, -(w**2))
    cr = -0.5 * np.einsum("gij,gji->g", b_inv, db)
    mu_a = mu * a
    one_mu_a = 1.0 + mu_a
    ll = (digamma(inv) + np.log(one_mu_a) - mu_a / one_mu_a - digamma(y + inv) + y / (mu + inv)).sum(axis=1) / alpha**2
    out = (ll + cr) * alpha
    if prior_mean is not None:
        out = out - (log_alpha - prior_mean) / prior_var
    return out


def _take(prior_mean: np.ndarray | None, idx: np.ndarray) -> np.ndarray | None:
    return None if prior_mean is None else prior_mean[idx]


def fit_log_dispersion(
    y: np.ndarray,
    mu: np.ndarray,
    design: np.ndarray,
    log_alpha: np.ndarray,
    *,
    prior_mean: np.ndarray | None = None,
    prior_var: float = 1.0,
    tol: float = 1e-6,
    maxit: int = 100,
    kappa_0: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """C++ ``fitDisp``: Armijo backtracking line search on log dispersion, all genes in lockstep.

    Returns the log dispersions, the iterations, and the initial and last log posteriors (DESeq2 rejects gene-wise
    fits that did not improve on the start).
    """
    epsilon, min_log_alpha = 1.0e-4, np.log(MIN_DISP / 10)
    a = np.array(log_alpha, dtype=np.float64, copy=True)
    lp = _log_posterior(a, y, mu, design, prior_mean, prior_var)
    dlp = _dlog_posterior(a, y, mu, design, prior_mean, prior_var)
    initial_lp = lp.copy()
    kappa = np.full(a.shape, kappa_0)
    iters = np.zeros(a.shape, dtype=np.int64)
    accepts = np.zeros(a.shape, dtype=np.int64)
    active = np.ones(a.shape, dtype=bool)
    for _ in range(maxit):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        iters[idx] += 1
        ai, di, ki = a[idx], dlp[idx], kappa[idx]
        proposal = ai + ki * di
        with np.errstate(divide="ignore", invalid="ignore"):
            ki = np.where(proposal < -30.0, (-30.0 - ai) / di, ki)
            ki = np.where(proposal > 10.0, (10.0 - ai) / di, ki)
        step = ai + ki * di
        lp_new = _log_posterior(step, y[idx], mu[idx], design, _take(prior_mean, idx), prior_var)
        accept = -lp_new <= -lp[idx] - ki * epsilon * di**2
        kappa[idx] = np.where(accept, ki, ki / 2)
        acc = idx[accept]
        if acc.size == 0:
            continue
        accepts[acc] += 1
        a[acc] = step[accept]
        change = lp_new[accept] - lp[acc]
        converged = change < tol
        lp[acc[converged]] = lp_new[accept][converged]
        escaped = ~converged & (a[acc] < min_log_alpha)
        active[acc[converged | escaped]] = False
        go = acc[~converged & ~escaped]
        lp[go] = lp_new[accept][~converged & ~escaped]
        dlp[go] = _dlog_posterior(a[go], y[go], mu[go], design, _take(prior_mean, go), prior_var)
        kappa[go] = np.minimum(kappa[go] * 1.1, kappa_0)
        kappa[go] = np.where(accepts[go] % 5 == 0, kappa[go] / 2, kappa[go])
    return a, iters, initial_lp, lp


def grid_log_dispersion(
    y: np.ndarray,
    mu: np.ndarray,
    design: np.ndarray,
    *,
    prior_mean: np.ndarray | None = None,
    prior_var: float = 1.0,
) -> np.ndarray:
    """C++ ``fitDispGrid`` (via ``fitDispGridWrapper``): coarse then fine 20-point grids of log dispersion."""
    grid = np.linspace(np.log(1e-8), np.log(max(10, y.shape[1])), 20)
    delta = grid[1] - grid[0]

    def best(points: np.ndarray) -> np.ndarray:
        lp = np.stack(
            [_log_posterior(points[:, t], y, mu, design, prior_mean, prior_var) for t in range(points.shape[1])],
            axis=1,
        )
        return points[np.arange(points.shape[0]), np.argmax(lp, axis=1)]

    coarse = best(np.broadcast_to(grid, (y.shape[0], grid.size)))
    fine = np.linspace(coarse - delta, coarse + delta, grid.size, axis=1)
    return best(fine)


# --------------------------------------------------------------------------------------------- GLM fit (fitBeta)


@dataclass
class GLMFit:
    """``fitNbinomGLMs`` output for the genes fitted: coefficients and SEs on the log2 scale."""

    beta: np.ndarray  # genes x p, log2
    beta_se: np.ndarray  # genes x p, log2
    mu: np.ndarray  # genes x samples, nf * exp(X beta), not bounded below
    hat: np.ndarray  # genes x samples, hat matrix diagonal of the IRLS fit
    converged: np.ndarray  # genes
    iterations: np.ndarray  # genes
    n_optim: int  # genes refitted with L-BFGS-B


def _fit_beta(
    y: np.ndarray,
    design: np.ndarray,
    nf: np.ndarray,
    alpha: np.ndarray,
    beta0: np.ndarray,
    ridge: np.ndarray,
    *,
    tol: float,
    maxit: int,
    minmu: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """C++ ``fitBeta`` (``useQR``): IRLS on the natural log scale with ridge ``ridge``, all genes in lockstep.

    Converged on the relative change of the deviance (``Rf_dnbinom_mu``) below ``tol``; a coefficient above 30 in
    absolute value or an undefined deviance stops the gene with ``iterations = maxit`` (not converged). Returns
    beta, its sandwich variance, the hat diagonals and the iterations.
    """
    n, _m = y.shape
    beta = np.array(beta0, dtype=np.float64, copy=True)
    mu = np.maximum(nf * np.exp(_linear(beta, design)), minmu)
    dev_old = np.zeros(n)
    iters = np.zeros(n, dtype=np.int64)
    active = np.ones(n, dtype=bool)
    ridge_mat = np.diag(ridge)
    a2 = alpha[:, None]
    for t in range(maxit):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        iters[idx] += 1
        mu_i, y_i = mu[idx], y[idx]
        w = mu_i / (1.0 + a2[idx] * mu_i)
        z = np.log(mu_i / nf) + (y_i - mu_i) / mu_i
        lhs = _gram(design, w) + ridge_mat
        new = _cho_solve(_cholesky(lhs), _cross(w * z, design))
        beta[idx] = new
        large = (np.abs(new) > _LARGE).any(axis=1)
        iters[idx[large]] = maxit
        active[idx[large]] = False
        keep = ~large
        idx, new = idx[keep], new[keep]
        mu_new = np.maximum(nf * np.exp(_linear(new, design)), minmu)
        mu[idx] = mu_new
        dev = (-2.0 * nb_log_density(y[idx], mu_new, alpha[idx][:, None])).sum(axis=1)
        conv_test = np.abs(dev - dev_old[idx]) / (np.abs(dev) + 0.1)
        bad = np.isnan(conv_test)
        iters[idx[bad]] = maxit
        done = bad | ((t > 0) & (conv_test < tol))
        active[idx[done]] = False
        dev_old[idx] = dev
    w = mu / (1.0 + a2 * mu)
    xtwx = _gram(design, w)
    inv = _inverse(xtwx + ridge_mat)
    hat = np.zeros_like(w)
    for i in range(design.shape[1]):
        for j in range(design.shape[1]):
            hat += inv[:, i, j, None] * (design[:, i] * design[:, j])
    hat *= w
    sigma = np.einsum("gij,gjk,gkl->gil", inv, xtwx, inv)
    return beta, np.diagonal(sigma, axis1=1, axis2=2).copy(), hat, iters


def _optim_rows(
    y: np.ndarray,
    design: np.ndarray,
    nf: np.ndarray,
    alpha: np.ndarray,
    start: np.ndarray,
    lam: np.ndarray,
    *,
    minmu: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``fitNbinomGLMsOptim``: per gene L-BFGS-B on the log2-scale negative log posterior (prior sd
    ``sqrt(1/lambda)``) within [-30, 30], with R ``optim``'s settings: central differences of step 1e-3 cut at
    the bounds, 5 corrections, ``factr`` 1e7, ``pgtol`` 0, 100 iterations.
    """
    lam_nat = lam / np.log(2) ** 2
    prior_sd = np.sqrt(1 / lam)
    k = y.shape[0]
    beta = np.empty_like(start)
    se = np.empty_like(start)
    mu_out = np.empty_like(y)
    converged = np.zeros(k, dtype=bool)
    for g in range(k):
        yg, ag = y[g], alpha[g]

        def objective(p: np.ndarray, yg: np.ndarray = yg, ag: float = ag) -> float:
            mu_row = nf * 2.0 ** (design @ p)
            ll = nb_log_density(yg, mu_row, np.full(yg.shape, ag)).sum()
            prior = norm.logpdf(p, 0, prior_sd).sum()
            value = -(ll + prior)
            return float(value) if np.isfinite(value) else 1e300

        def gradient(p: np.ndarray, objective=objective) -> np.ndarray:
            grad = np.empty_like(p)
            for i in range(p.size):
                up, down = p.copy(), p.copy()
                up[i] = min(p[i] + 1e-3, _LARGE)
                down[i] = max(p[i] - 1e-3, -_LARGE)
                grad[i] = (objective(up) - objective(down)) / (up[i] - down[i])
            return grad

        res = minimize(
            objective,
            start[g],
            jac=gradient,
            method="L-BFGS-B",
            bounds=[(-_LARGE, _LARGE)] * start.shape[1],
            options={"maxcor": 5, "ftol": 1e7 * np.finfo(float).eps, "gtol": 0.0, "maxiter": 100},
        )
        converged[g] = bool(res.success)
        beta[g] = res.x
        mu_row = nf * 2.0 ** (design @ res.x)
        mu_out[g] = mu_row
        mu_b = np.maximum(mu_row, minmu)
        w = 1 / (1 / mu_b + ag)
        xtwx = _gram(design, w[None])
        inv = _inverse(xtwx + np.diag(lam_nat)[None])
        sigma = np.einsum("gij,gjk,gkl->gil", inv, xtwx, inv)[0]
        se[g] = np.log2(np.e) * np.sqrt(np.maximum(np.diagonal(sigma), 0))
    return beta, se, mu_out, converged


def fit_glm(
    counts: np.ndarray,
    design: np.ndarray,
    *,
    size_factors: np.ndarray,
    dispersion: np.ndarray,
    beta_tol: float = 1e-8,
    maxit: int = 100,
    minmu: float = 0.5,
) -> GLMFit:
    """``fitNbinomGLMs`` (standard model matrix, ``lambda = 1e-6`` on the log2 scale, ``useOptim``, ``useQR``).

    Starts from the least-squares fit of ``log(normalised + 0.1)``, runs ``fitBeta`` and refits with
    ``fitNbinomGLMsOptim`` the genes that did not converge or have a missing coefficient or a non-positive
    variance. ``counts`` holds only genes with some count.
    """
    p = design.shape[1]
    nf = np.asarray(size_factors, dtype=np.float64)
    lam = np.full(p, 1e-6)
    normed = counts / size_factors
    beta0 = np.einsum("gi,ij->gj", _cross(np.log(normed + 0.1), design), _xtx_inverse(design))
    beta_nat, var, hat, iters = _fit_beta(
        counts, design, nf, dispersion, beta0, lam / np.log(2) ** 2, tol=beta_tol, maxit=maxit, minmu=minmu
    )
    mu = nf * np.exp(_linear(beta_nat, design))
    converged = iters < maxit
    beta = np.log2(np.e) * beta_nat
    with np.errstate(invalid="ignore"):
        se = np.log2(np.e) * np.sqrt(np.maximum(var, 0))
    stable = ~np.isnan(beta_nat).any(axis=1)
    var_positive = ~(var <= 0).any(axis=1)
    rows = np.flatnonzero(~converged | ~stable | ~var_positive)
    if rows.size:
        start = np.where(
            (stable[rows] & (np.abs(beta[rows]) < _LARGE).all(axis=1))[:, None], beta[rows], beta0[rows]
        )
        b, s, mu_o, conv = _optim_rows(
            counts[rows], design, nf, dispersion[rows], start, lam, minmu=minmu
        )
        beta[rows], se[rows], mu[rows] = b, s, mu_o
        converged[rows] = converged[rows] | conv
    return GLMFit(beta, se, mu, hat, converged, iters, int(rows.size))


# ---------------------------------------------------------------------------------------------- dispersions


@dataclass
class GeneWiseDispersion:
    """``estimateDispersionsGeneEst`` output for the genes with some count."""

    dispersion: np.ndarray
    mu: np.ndarray  # the bounded means the dispersion was fitted at (``assays(dds)$mu``)
    base_mean: np.ndarray
    linear_mu: bool


def gene_wise_dispersions(
    counts: np.ndarray, design: np.ndarray, *, size_factors: np.ndarray, minmu: float = MIN_MU, maxit: int = 100
) -> GeneWiseDispersion:
    """``estimateDispersionsGeneEst`` (niter 1, Cox-Reid, no weights) on genes that all have some count.

    Start ``min(roughDispEstimate, momentsDispEstimate)`` bounded to [minDisp, max(10, m)]; means from the linear
    model when the design has as many groups as coefficients (``linearMu``), else from ``fitNbinomGLMs`` at the
    start dispersion; then ``fitDisp``, the no-increase rule and ``fitDispGrid`` for genes that did not converge.
    """
    counts = np.asarray(counts, dtype=np.float64)
    sf = np.asarray(size_factors, dtype=np.float64)
    m, p = design.shape
    normed = counts / sf
    base_mean = normed.mean(axis=1)
    base_var = normed.var(axis=1, ddof=1)
    projected = _project(normed, design)
    rough_mu = np.maximum(1.0, projected)
    rough = np.maximum((((normed - rough_mu) ** 2 - rough_mu) / rough_mu**2).sum(axis=1) / (m - p), 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        moments = (base_var - np.mean(1 / sf) * base_mean) / base_mean**2
    max_disp = max(10.0, float(m))
    alpha_init = np.minimum(np.maximum(MIN_DISP, np.minimum(rough, moments)), max_disp)
    linear_mu = n_groups(design) == p
    if linear_mu:
        mu = projected * sf
    else:
        mu = fit_glm(counts, design, size_factors=sf, dispersion=alpha_init, minmu=minmu).mu
    mu = np.maximum(mu, minmu)
    log_alpha, iters, initial_lp, last_lp = fit_log_dispersion(counts, mu, design, np.log(alpha_init), maxit=maxit)
    disp = np.minimum(np.exp(log_alpha), max_disp)
    no_increase = last_lp < initial_lp + np.abs(initial_lp) / 1e6
    disp[no_increase] = alpha_init[no_increase]
    refit = ~((iters < maxit) & (iters != 1)) & (disp > MIN_DISP * 10)
    if refit.any():
        disp[refit] = np.exp(grid_log_dispersion(counts[refit], mu[refit], design))
    disp = np.clip(disp, MIN_DISP, max_disp)
    return GeneWiseDispersion(disp, mu, base_mean, linear_mu)


def _gamma_identity_glm(y: np.ndarray, x: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, bool]:
    """R's ``glm(y ~ x, family=Gamma(link="identity"), start=start)``: IRLS with R's convergence rule.

    The 2 x 2 weighted least-squares step is solved from its normal equations (einsum sums, no LAPACK).
    """
    design = np.column_stack([np.ones_like(x), x])

    def deviance(mu: np.ndarray) -> float:
        return float(np.sum(-2 * (np.log(np.where(y == 0, 1, y / mu)) - (y - mu) / mu)))

    coef: np.ndarray = start.astype(np.float64)
    mu = design @ coef
    if not (np.isfinite(mu).all() and (mu > 0).all()):
        raise ValueError("parametric dispersion fit failed: no valid starting values")
    dev_old = deviance(mu)
    coef_old: np.ndarray | None = None
    for _ in range(25):
        w = 1 / mu**2
        lhs = np.einsum("m,mi,mj->ij", w, design, design)
        rhs = np.einsum("m,mi->i", w * y, design)
        coef = _cho_solve(_cholesky(lhs[None]), rhs[None])[0]
        mu = design @ coef
        dev = deviance(mu) if (mu > 0).all() else np.inf
        while not (np.isfinite(dev) and np.isfinite(mu).all() and (mu > 0).all()):
            if coef_old is None:
                raise ValueError("parametric dispersion fit failed: no valid set of coefficients")
            coef = (coef + coef_old) / 2
            mu = design @ coef
            dev = deviance(mu) if (mu > 0).all() else np.inf
        if abs(dev - dev_old) / (abs(dev) + 0.1) < 1e-8:
            return coef, True
        dev_old, coef_old = dev, coef
    return coef, False


def parametric_dispersion_fit(means: np.ndarray, disps: np.ndarray) -> DispersionTrend:
    """``parametricDispersionFit``: iteratively refit a Gamma GLM ``disp ~ a0 + a1/mean`` on genes near the curve.

    Raises ``ValueError`` where DESeq2 would fall back to a local fit.
    """
    coefs = np.array([0.1, 1.0])
    for _ in range(11):
        residuals = disps / (coefs[0] + coefs[1] / means)
        good = (residuals > 1e-4) & (residuals < 15)
        old = coefs
        coefs, converged = _gamma_identity_glm(disps[good], 1 / means[good], coefs)
        if not (coefs > 0).all():
            raise ValueError("parametric dispersion fit failed: a trend coefficient is not positive")
        if np.sum(np.log(coefs / old) ** 2) < 1e-6 and converged:
            return DispersionTrend(float(coefs[0]), float(coefs[1]))
    raise ValueError("parametric dispersion fit did not converge")


def _trimmed_mean(x: np.ndarray, trim: float) -> np.ndarray:
    """R ``mean(x, trim=trim)`` of each row."""
    n = x.shape[1]
    if trim >= 0.5:
        return np.median(x, axis=1)
    lo = int(np.floor(n * trim))
    return np.sort(x, axis=1)[:, lo : n - lo].mean(axis=1)


def _mad(x: np.ndarray) -> float:
    """R ``mad``: 1.4826 times the median absolute deviation from the median."""
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def _hist_density(values: np.ndarray, breaks: np.ndarray) -> np.ndarray:
    """R ``hist(values, breaks, plot=FALSE)$density``: right-closed bins, the first one closed on both sides."""
    idx = np.searchsorted(breaks, values, side="left") - 1
    idx[values == breaks[0]] = 0
    counts = np.bincount(idx, minlength=breaks.size - 1)[: breaks.size - 1]
    return counts / (values.size * np.diff(breaks))


_NOISE_STEP = 0.002
"""Grid step of the integral in :func:`_log_chisq_noise_bins` (over v in [-40, 6])."""


def _log_chisq_noise_bins(df: int, variance: np.ndarray, breaks: np.ndarray) -> np.ndarray:
    """Bin densities of ``log(chisq_df / df) + N(0, variance)`` restricted to (min(breaks), max(breaks)).

    The exact law R's Monte Carlo in ``estimateDispersionsPriorVar`` samples from (1e4 draws): the CDF at every
    break is the integral over v of the density of log(chisq/df) times the normal CDF, by the trapezoid rule on
    a 0.002 grid over [-40, 6] (the density is below 1e-25 outside). The breaks lie on that grid, so each
    break minus a grid point is a multiple of the step: the normal CDF is evaluated once per multiple (33,001)
    instead of once per break and grid point (943,041), and each break's integral is a dot product with a
    window of them.
    """
    v = np.arange(-40.0, 6.0 + 1e-12, _NOISE_STEP)
    dens = chi2.pdf(df * np.exp(v), df) * df * np.exp(v)
    weight = np.full(v.size, _NOISE_STEP)
    weight[[0, -1]] = _NOISE_STEP / 2
    reversed_mass = (dens * weight)[::-1]
    # break i sits at grid index at[i]: break_i - v_j = step * (at[i] - j), j = 0 .. n-1
    at = np.rint((breaks - v[0]) / _NOISE_STEP).astype(np.int64)
    if not np.allclose(v[0] + at * _NOISE_STEP, breaks, rtol=0, atol=1e-9):
        raise ValueError("the breaks must lie on the integration grid")
    multiples = np.arange(at.min() - (v.size - 1), at.max() + 1) * _NOISE_STEP
    start = at - at.min()  # the window of break i: multiples[start[i] : start[i] + n], in reverse grid order
    cdf = np.empty((variance.size, breaks.size))
    positive = variance != 0
    cdf[~positive] = chi2.cdf(df * np.exp(breaks), df)
    if positive.any():
        normal = ndtr(multiples[:, None] / np.sqrt(variance[positive])[None, :])  # multiples x variances
        for i, s in enumerate(start):
            cdf[positive, i] = reversed_mass @ normal[s : s + v.size]
    prob = np.diff(cdf, axis=1)
    return prob / (cdf[:, -1:] - cdf[:, :1]) / np.diff(breaks)[None, :]


_PRIOR_BREAKS = np.arange(-20, 21) / 2
"""Histogram breaks of ``estimateDispersionsPriorVar`` for small residual df."""
_PRIOR_GRID = np.linspace(0, 8, 200)
"""R's coarse grid of prior variances for small residual df (a 1000-point grid refines around its best)."""


@lru_cache(maxsize=3)
def _coarse_noise_bins(df: int) -> np.ndarray:
    """:func:`_log_chisq_noise_bins` on R's 200-point grid of variances: the same for every study of ``df``."""
    bins = _log_chisq_noise_bins(df, _PRIOR_GRID, _PRIOR_BREAKS)
    bins.flags.writeable = False
    return bins


def dispersion_prior_variance(
    residuals: np.ndarray, *, var_log_disp: float, n_samples: int, n_coefficients: int
) -> tuple[float, str]:
    """``estimateDispersionsPriorVar``: variance of the normal prior on log dispersion around the trend.

    ``residuals`` are ``log(dispGeneEst) - log(dispFit)`` of genes with gene-wise estimates >= 100 * minDisp.
    With more than 3 residual degrees of freedom: ``max(mad^2 - trigamma((m-p)/2), 0.25)``. With 1 to 3, DESeq2
    matches the residuals' histogram to simulated ``log(chisq)/df + N(0, v)`` (1e4 draws per v, ``set.seed(2)``,
    a loess through the Kullback-Leibler divergences). Here the simulated histograms are replaced by the exact bin
    probabilities (:func:`_log_chisq_noise_bins`), so the divergence is a smooth function of v; it is minimised on
    R's 200-point grid and then on R's 1000-point fine grid around that minimum. The pseudo-count ``small`` of
    R's divergence is the smallest positive density either histogram can show: min of the observed one and one
    draw of 1e4 in a bin. The returned label says which rule was used.
    """
    m, p = n_samples, n_coefficients
    df = m - p
    if df > 3:
        return max(var_log_disp - float(polygamma(1, df / 2)), 0.25), "mad"
    if df < 1:
        return var_log_disp, "mad (no residual df)"
    breaks = _PRIOR_BREAKS
    obs = residuals[(residuals > breaks[0]) & (residuals < breaks[-1])]
    obs_density = _hist_density(obs, breaks)
    small = min(float(obs_density[obs_density > 0].min()), 1 / (1e4 * 0.5))

    def kl(rand: np.ndarray) -> np.ndarray:
        return (obs_density[None] * (np.log(obs_density + small)[None] - np.log(rand + small))).sum(axis=1)

    best = _PRIOR_GRID[int(np.argmin(kl(_coarse_noise_bins(df))))]
    fine = np.linspace(0, 8, 1000)
    near = fine[np.abs(fine - best) <= _PRIOR_GRID[1]]
    arg = float(near[int(np.argmin(kl(_log_chisq_noise_bins(df, near, breaks))))])
    return max(arg, 0.25), "exact histogram match (small residual df)"


def map_dispersions(
    counts: np.ndarray,
    mu: np.ndarray,
    design: np.ndarray,
    *,
    gene_est: np.ndarray,
    fitted: np.ndarray,
    prior_var: float,
    var_log_disp: float,
    outlier_sd: float = 2.0,
    maxit: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    """``estimateDispersionsMAP``: maximum a posteriori log dispersion with a normal prior centred on the trend.

    Start at the gene-wise estimate unless it is 10 times below the trend; ``fitDispGrid`` for genes that hit
    ``maxit``; genes whose gene-wise estimate is ``outlier_sd`` prior SDs above the trend keep it. Returns the final
    dispersions and the outlier flags.
    """
    m = counts.shape[1]
    init = np.where(gene_est > 0.1 * fitted, gene_est, fitted)
    log_prior = np.log(fitted)
    log_alpha, iters, _, _ = fit_log_dispersion(
        counts, mu, design, np.log(init), prior_mean=log_prior, prior_var=prior_var, maxit=maxit
    )
    disp = np.exp(log_alpha)
    refit = ~(iters < maxit)
    if refit.any():
        disp[refit] = np.exp(
            grid_log_dispersion(counts[refit], mu[refit], design, prior_mean=log_prior[refit], prior_var=prior_var)
        )
    disp = np.clip(disp, MIN_DISP, max(10.0, float(m)))
    outlier = np.log(gene_est) > np.log(fitted) + outlier_sd * np.sqrt(var_log_disp)
    return np.where(outlier, gene_est, disp), outlier


# ----------------------------------------------------------------------------------------------- Cook's distance


def _trimmed_cell_variance(cnts: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """``trimmedCellVariance``: per gene, the largest scaled trimmed variance over the cells."""
    variances = []
    qmat = np.empty_like(cnts)
    levels = list(dict.fromkeys(cells.tolist()))
    for level in levels:
        cols = cells == level
        n = int(cols.sum())
        trim = 1 / 3 if n <= 3.5 else (1 / 4 if n <= 23.5 else 1 / 8)
        qmat[:, cols] = _trimmed_mean(cnts[:, cols], trim)[:, None]
    sqerror = (cnts - qmat) ** 2
    for level in levels:
        cols = cells == level
        n = int(cols.sum())
        trim, scale = (1 / 3, 2.04) if n <= 3.5 else ((1 / 4, 1.86) if n <= 23.5 else (1 / 8, 1.51))
        variances.append(scale * _trimmed_mean(sqerror[:, cols], trim))
    return np.max(np.column_stack(variances), axis=1)


def robust_moments_dispersion(normed: np.ndarray, design: np.ndarray) -> np.ndarray:
    """``robustMethodOfMomentsDisp``: trimmed method-of-moments dispersion (at least 0.04) for Cook's distance."""
    three = n_or_more_in_cell(design, 3)
    if three.any():
        v = _trimmed_cell_variance(normed[:, three], _cells(design)[three])
    else:
        rm = _trimmed_mean(normed, 1 / 8)
        v = 1.51 * _trimmed_mean((normed - rm[:, None]) ** 2, 1 / 8)
    mean = normed.mean(axis=1)
    return np.maximum((v - mean) / mean**2, 0.04)


def cooks_distance(counts: np.ndarray, design: np.ndarray, *, size_factors: np.ndarray, fit: GLMFit) -> np.ndarray:
    """``calculateCooksDistance``: Pearson residual squared / p times h / (1 - h)^2, genes x samples."""
    disp = robust_moments_dispersion(counts / size_factors, design)
    variance = fit.mu + disp[:, None] * fit.mu**2
    return (counts - fit.mu) ** 2 / variance / design.shape[1] * fit.hat / (1 - fit.hat) ** 2


def max_cooks(cooks: np.ndarray, design: np.ndarray) -> np.ndarray:
    """``recordMaxCooks``: per gene, the largest Cook's distance over samples with 3 or more in their cell."""
    samples = n_or_more_in_cell(design, 3)
    m, p = design.shape
    if m > p and samples.any():
        return cooks[:, samples].max(axis=1)
    return np.full(cooks.shape[0], np.nan)


# ---------------------------------------------------------------------------------------------- the whole run

CHUNK_ELEMENTS = 1 << 16
"""Genes x samples values in one block of genes (512 KB of float64, at least ``MIN_BLOCK_GENES`` genes). Every
gene-wise step (dispersions, MAP, GLM, Cook's distances, refits) runs one block at a time, so its temporaries stay
a few blocks large whatever the cohort; each gene's numbers do not depend on which other genes share its block.
Measured at 4,000 genes x 1,000 samples (load 8-11): blocks of 8 MB took 1.4x the CPU time of blocks of 512 KB (the
temporaries no longer fit the caches, and allocating them is page faults) and 1.5x the peak memory."""

MIN_BLOCK_GENES = 32
"""Fewest genes in a block: below it, Python's per-call overhead outweighs the array work."""


def _blocks(n: int, size: int) -> list[slice]:
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


@dataclass
class DESeqResult:
    """One coefficient's ``results()`` columns (one value per gene) and what the run did, for metadata."""

    base_mean: np.ndarray
    log2_fold_change: np.ndarray
    lfc_se: np.ndarray
    stat: np.ndarray
    pvalue: np.ndarray
    dispersion_gene_est: np.ndarray  # estimateDispersionsGeneEst, NaN for genes without counts
    dispersion_fit: np.ndarray  # the trend at each gene's base mean
    dispersion: np.ndarray  # final (MAP, or gene-wise for dispersion outliers)
    dispersion_trend: str
    trend: DispersionTrend | None
    var_log_disp: float
    prior_variance: float
    prior_variance_rule: str
    n_optim: int
    n_not_converged: int
    n_replaced: int


class _Coefficient(NamedTuple):
    """What ``results()`` reads of a block's GLM fit: the tested coefficient (log2) and convergence."""

    lfc: np.ndarray
    lfc_se: np.ndarray
    converged: np.ndarray
    n_optim: int

    @classmethod
    def of(cls, glm: GLMFit, coefficient: int) -> _Coefficient:
        return cls(glm.beta[:, coefficient], glm.beta_se[:, coefficient], glm.converged, glm.n_optim)


@dataclass
class _WaldBlock:
    """A block of genes after ``estimateDispersionsMAP``, ``nbinomWaldTest`` and ``calculateCooksDistance``, with
    the genes x samples distances reduced to what the outlier steps read.
    """

    dispersion: np.ndarray
    wald: _Coefficient
    max_cooks: np.ndarray  # recordMaxCooks
    max_cooks_kept: np.ndarray  # recordMaxCooks after replacement: replaceable samples count as 0
    argmax_cooks: np.ndarray  # sample with the largest distance (NaN ignored), for results()' two-group rule
    outlier_rows: np.ndarray  # genes of the block with a distance above the replacement cutoff
    outlier: np.ndarray  # those genes' samples above the cutoff


def _wald_block(
    y: np.ndarray,
    mu: np.ndarray,
    design: np.ndarray,
    *,
    size_factors: np.ndarray,
    gene_est: np.ndarray,
    fitted: np.ndarray,
    prior_var: float,
    var_log_disp: float,
    replaceable: np.ndarray,
    cutoff: float,
    coefficient: int,
) -> _WaldBlock:
    disp, _ = map_dispersions(
        y, mu, design, gene_est=gene_est, fitted=fitted, prior_var=prior_var, var_log_disp=var_log_disp
    )
    glm = fit_glm(y, design, size_factors=size_factors, dispersion=disp)
    cooks = cooks_distance(y, design, size_factors=size_factors, fit=glm)
    outlier = cooks > cutoff
    rows = np.flatnonzero(outlier.any(axis=1))
    return _WaldBlock(
        dispersion=disp,
        wald=_Coefficient.of(glm, coefficient),
        max_cooks=max_cooks(cooks, design),
        max_cooks_kept=max_cooks(np.where(replaceable[None, :], 0.0, cooks), design),
        argmax_cooks=np.where(np.isnan(cooks), -np.inf, cooks).argmax(axis=1),
        outlier_rows=rows,
        outlier=outlier[rows],
    )


class _Refit(NamedTuple):
    gene_est: np.ndarray
    fitted: np.ndarray
    dispersion: np.ndarray
    wald: _Coefficient


def _refit(
    y: np.ndarray,
    design: np.ndarray,
    sf: np.ndarray,
    trend_fn: Callable[[np.ndarray], np.ndarray],
    prior_var: float,
    var_log_disp: float,
    coefficient: int,
) -> _Refit:
    """``refitWithoutOutliers`` for a block of genes with replaced counts: gene-wise dispersions, the MAP step
    against the trend and prior of the first fit, and the GLM.
    """
    gene = gene_wise_dispersions(y, design, size_factors=sf)
    fitted = trend_fn(gene.base_mean)
    disp, _ = map_dispersions(
        y, gene.mu, design, gene_est=gene.dispersion, fitted=fitted, prior_var=prior_var, var_log_disp=var_log_disp
    )
    glm = fit_glm(y, design, size_factors=sf, dispersion=disp)
    return _Refit(gene.dispersion, fitted, disp, _Coefficient.of(glm, coefficient))


def _map_blocks(function: Callable[[slice], _T], blocks: list[slice], threads: int) -> list[_T]:
    """``function`` of every block, in order; on ``threads`` threads (numpy and scipy release the GIL in their
    array loops). A block's result does not depend on the thread that computed it.
    """
    if threads <= 1 or len(blocks) <= 1:
        return [function(block) for block in blocks]
    with ThreadPoolExecutor(max_workers=min(threads, len(blocks))) as pool:
        return list(pool.map(function, blocks))


def deseq_wald(
    counts: np.ndarray,
    design: np.ndarray,
    *,
    size_factors: np.ndarray,
    coefficient: int,
    contrast_samples: np.ndarray,
    two_group: bool,
    min_replicates_for_replace: int = 7,
    block_genes: int | None = None,
    threads: int = 1,
) -> DESeqResult:
    """``DESeq(dds)`` then ``results(dds, contrast=...)`` for one coefficient of ``design`` (log2 fold change of
    a level against the baseline), on integer ``counts`` (genes x samples).

    ``contrast_samples`` marks the samples of the two compared levels (``contrastAllZeroCharacter``: genes with
    no count in them get fold change 0, statistic 0 and p-value 1); ``two_group`` enables ``results()``'s "three
    or more counts larger than the outlier" rule, which DESeq2 applies only when the design is one two-level
    factor. Steps: ``estimateDispersionsGeneEst``, ``estimateDispersionsFit`` (parametric; the mean of gene-wise
    estimates where DESeq2 would substitute a locfit), ``estimateDispersionsPriorVar``, ``estimateDispersionsMAP``,
    ``nbinomWaldTest``, ``refitWithoutOutliers`` when a cell has ``min_replicates_for_replace`` samples, then
    Cook's filtering at ``qf(.99, p, m - p)``. Genes without counts get base mean 0 and NaN elsewhere; the p-value
    is NaN for Cook's outliers. Independent filtering is left to the caller.

    Genes are fitted ``block_genes`` at a time (default: ``CHUNK_ELEMENTS`` values a block), ``threads`` blocks at
    once; only the trend and the prior variance see all genes. Beyond ``counts`` the run keeps per-gene vectors,
    and one genes x samples array only where the gene-wise means come from a GLM (more coefficients than groups).
    Neither the block size nor the thread count changes a single bit of the result.
    """
    counts = np.asarray(counts, dtype=np.float64)
    sf = np.asarray(size_factors, dtype=np.float64)
    n, m = counts.shape
    p = design.shape[1]
    size = block_genes or max(MIN_BLOCK_GENES, CHUNK_ELEMENTS // m)
    total = counts.sum(axis=1)
    nz = np.flatnonzero(total > 0)

    # estimateDispersionsGeneEst, a block at a time
    gene_est, gene_base = np.empty(nz.size), np.empty(nz.size)
    blocks = _blocks(nz.size, size)

    # The means the MAP step starts from: recomputed per block where they are linearModelMu (cheap, same bits),
    # kept from the gene-wise fit where they came from a GLM.
    linear_mu = n_groups(design) == p
    gene_mu: dict[int, np.ndarray] = {}

    def gene_wise(block: slice) -> None:  # stores what later steps read; each block writes its own slots
        gene = gene_wise_dispersions(counts[nz[block]], design, size_factors=sf)
        if not linear_mu:
            gene_mu[block.start] = gene.mu
        gene_est[block], gene_base[block] = gene.dispersion, gene.base_mean

    _map_blocks(gene_wise, blocks, threads)

    # estimateDispersionsFit and estimateDispersionsPriorVar: over all genes
    use = gene_est > 100 * MIN_DISP
    if not use.any():
        raise ValueError(
            "all gene-wise dispersion estimates are within 2 orders of magnitude of the minimum: the counts look "
            "like technical replicates or simulated Poisson data, and DESeq2 cannot fit a trend"
        )
    trend: DispersionTrend | None
    try:
        trend = parametric_dispersion_fit(gene_base[use], gene_est[use])
        a0, a1 = trend
        trend_name = "parametric"

        def trend_fn(mean: np.ndarray) -> np.ndarray:
            return a0 + a1 / mean
    except ValueError:
        trend = None
        trend_name = "mean"
        for_mean = gene_est[gene_est > 10 * MIN_DISP]
        mean_disp = float(_trimmed_mean(for_mean[None], 0.001)[0])

        def trend_fn(mean: np.ndarray) -> np.ndarray:
            return np.full(mean.shape, mean_disp)

    fitted = trend_fn(gene_base)
    above = gene_est >= 100 * MIN_DISP
    residuals = np.log(gene_est[above]) - np.log(fitted[above])
    var_log_disp = _mad(residuals) ** 2
    prior_var, prior_rule = dispersion_prior_variance(
        residuals, var_log_disp=var_log_disp, n_samples=m, n_coefficients=p
    )

    # estimateDispersionsMAP, nbinomWaldTest and Cook's distances, a block at a time
    replaceable = n_or_more_in_cell(design, min_replicates_for_replace)
    cutoff = float(f.ppf(0.99, p, m - p)) if m > p else np.nan

    def wald(block: slice) -> _WaldBlock:
        y = counts[nz[block]]
        mu = np.maximum(_project(y / sf, design) * sf, MIN_MU) if linear_mu else gene_mu.pop(block.start)
        return _wald_block(
            y, mu, design, size_factors=sf, gene_est=gene_est[block], fitted=fitted[block], prior_var=prior_var,
            var_log_disp=var_log_disp, replaceable=replaceable, cutoff=cutoff, coefficient=coefficient,
        )

    fits = _map_blocks(wald, blocks, threads)  # each block's means are dropped once used

    def gather(values: list[np.ndarray], fill: float = np.nan) -> np.ndarray:
        out = np.full(n, fill)
        out[nz] = np.concatenate(values)
        return out

    dispersions = np.full((3, n), np.nan)
    dispersions[:, nz] = gene_est, fitted, np.concatenate([fit.dispersion for fit in fits])
    lfc = gather([fit.wald.lfc for fit in fits])
    lfc_se = gather([fit.wald.lfc_se for fit in fits])
    converged = np.concatenate([fit.wald.converged for fit in fits])
    n_optim = sum(fit.wald.n_optim for fit in fits)
    max_cooks_all = gather([fit.max_cooks for fit in fits])
    argmax_cooks = gather([fit.argmax_cooks for fit in fits], 0).astype(np.int64)
    base_mean = np.zeros(n)
    base_mean[nz] = gene_base
    n_replaced = 0
    now_zero = np.zeros(n, dtype=bool)

    # refitWithoutOutliers (replaceOutliers with trim 0.2) when some cell has enough replicates
    if replaceable.any() and m > p:
        replace = np.concatenate([nz[block][fit.outlier_rows] for block, fit in zip(blocks, fits, strict=True)])
        if replace.size:
            outlier = np.concatenate([fit.outlier for fit in fits])
            n_replaced = int(replace.size)

            def refit(block: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray, _Refit | None]:
                rows = replace[block]
                sub = counts[rows]
                replacement = np.trunc(_trimmed_mean(sub / sf, 0.2)[:, None] * sf[None, :])
                swap = outlier[block] & replaceable[None, :]
                sub[swap] = replacement[swap]
                zero_now = sub.sum(axis=1) == 0
                kept = sub[~zero_now]
                if not kept.shape[0]:
                    return rows, (sub / sf).mean(axis=1), zero_now, None
                fit = _refit(kept, design, sf, trend_fn, prior_var, var_log_disp, coefficient)
                return rows, (sub / sf).mean(axis=1), zero_now, fit

            for rows, new_base, zero_now, refit_fit in _map_blocks(refit, _blocks(replace.size, size), threads):
                base_mean[rows] = new_base
                now_zero[rows[zero_now]] = True
                rows = rows[~zero_now]
                if refit_fit is None:
                    continue
                refit_wald = refit_fit.wald
                dispersions[:, rows] = refit_fit.gene_est, refit_fit.fitted, refit_fit.dispersion
                lfc[rows] = refit_wald.lfc
                lfc_se[rows] = refit_wald.lfc_se
                n_optim += refit_wald.n_optim
                converged[np.searchsorted(nz, rows)] = refit_wald.converged
            max_cooks_all = np.full(n, np.nan) if replaceable.all() else gather([fit.max_cooks_kept for fit in fits])
            lfc[now_zero] = np.nan
            lfc_se[now_zero] = np.nan

    with np.errstate(invalid="ignore", divide="ignore"):
        stat = lfc / lfc_se
    pvalue = 2 * ndtr(-np.abs(stat))

    # results(): both compared groups without counts
    contrast_zero = total > 0
    for block in _blocks(n, size):
        contrast_zero[block] &= ~(counts[block][:, contrast_samples] != 0).any(axis=1)
    lfc[contrast_zero], stat[contrast_zero], pvalue[contrast_zero] = 0.0, 0.0, 1.0

    # results(): Cook's cutoff, with the two-group heuristic
    with np.errstate(invalid="ignore"):
        cooks_outlier = max_cooks_all > f.ppf(0.99, p, m - p)
    if two_group and cooks_outlier.any():
        for i in np.flatnonzero(cooks_outlier):
            if (counts[i] > counts[i, argmax_cooks[i]]).sum() >= 3:
                cooks_outlier[i] = False
    pvalue[cooks_outlier] = np.nan

    # results(): genes whose replaced counts are all zero
    if now_zero.any():
        lfc[now_zero], lfc_se[now_zero], stat[now_zero], pvalue[now_zero] = 0.0, 0.0, 0.0, 1.0

    return DESeqResult(
        base_mean=base_mean,
        log2_fold_change=lfc,
        lfc_se=lfc_se,
        stat=stat,
        pvalue=pvalue,
        dispersion_gene_est=dispersions[0],
        dispersion_fit=dispersions[1],
        dispersion=dispersions[2],
        dispersion_trend=trend_name,
        trend=trend,
        var_log_disp=var_log_disp,
        prior_variance=float(prior_var),
        prior_variance_rule=prior_rule,
        n_optim=n_optim,
        n_not_converged=int((~converged).sum()),
        n_replaced=n_replaced,
    )
