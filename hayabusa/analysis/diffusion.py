"""Diffusion coefficients from the diffusive part of the MSD, their errors, Nernst–Einstein
conductivity, Haven ratio and Arrhenius fits.

Units: time in ps, MSD in Å², D in cm²/s (1 Å²/ps = 1e-4 cm²/s), σ in S/cm, Ea in eV.

Diffusive window (``diffusive_window``). MSD = 2d·D·t holds only once the motion is a random
walk. The window runs from the first lag t_lo after which, up to the longest usable lag t_max,
(1) the local log–log slope of the MSD (``msd.local_slope``) stays within 0.85–1.15 — past the
ballistic (slope 2) and caged (slope ≪ 1) regimes — and (2) the MSD is at least
``min_msd_A2`` (several squared hop lengths: a few hops are not yet a random walk); it must
span a factor ≥ 2 in lag. t_max is ``max_lag_fraction`` (default 0.5) of one time block, so
every block holds the window's lags. Without such a window there is no D: the result holds
None and the reason (``DiffusiveWindow.reason``).

Fit: straight line with intercept (OLS) over the window, D = slope / (2d), d = number of axes
summed. ``fit_msd`` / ``diffusion_from_msd`` fit any given window (``weighting="inverse_time"``
and ``pymatgen_window`` reproduce pymatgen-analysis-diffusion's ``DiffusionAnalyzer(smoothed=
"max")``, which fits from 1 ps whatever the MSD does; tests/test_analysis.py checks it).

Errors (``tracer_diffusion``): the frames are cut into B consecutive time blocks (independent
time origins) and the atoms into G groups (atom i in group i mod G: independent atoms); D_bg is
fitted in each of the B×G cells over the same window. They are combined as a two-way
random-effects model D_bg = D + τ_b + α_g + ε_bg: the variance of the mean is
(MS_time + MS_atoms − MS_resid) / (B·G) from the ANOVA mean squares, floored at MS_resid/(B·G)
(its value without time or atom effects); with one group it is std(D_b)²/B. Motion correlated
between atoms of different groups raises the time effect, so it is counted. Measured (5 × 4,
300 seeds of 20 independent Gaussian walkers, 500 frames): the error bar is 1.46× the scatter
of D (conservative; 2σ covers the truth in 98 %); walkers moving in lock-step groups of 4: 2σ
covers it in 94 %, where treating the 20 values as independent gives 66 %. The charge
(collective) MSD is one quantity of all the ions: its error comes from the time blocks alone,
std(D_b)/√B. The whole-run D is fitted on the MSD of all frames and atoms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .msd import collective_msd, local_slope, select_axes, windowed_msd

A2_PER_PS_IN_CM2_PER_S = 1e-4
_E = 1.602176634e-19  # C
_KB = 1.380649e-23  # J/K
_KB_EV = 8.617333262e-5  # eV/K


SLOPE_RANGE = (0.85, 1.15)  # local log–log slope of a diffusive MSD
MIN_SPAN = 2.0  # a diffusive window spans at least this factor in lag


@dataclass
class DiffusiveWindow:
    """The lags (ps) over which the MSD is diffusive, or None and the reason there are none.

    ``loglog_slope``: the log–log slope fitted over the window, or (no window) the local slope
    at the longest usable lag ``max_lag_ps``; ``min_msd_A2``: the MSD threshold applied."""

    window_ps: tuple[float, float] | None
    reason: str | None
    loglog_slope: float
    min_msd_A2: float
    max_lag_ps: float
    msd_at_max_lag_A2: float


@dataclass
class DiffusionResult:
    """D (cm²/s) fitted over ``window`` with its error and the block values; D, error and
    blocks are None when the window holds no diffusive lags (see ``window.reason``)."""

    D_cm2_s: float | None
    D_err_cm2_s: float | None
    blocks_cm2_s: np.ndarray | None  # [B, G] (tracer) or [B, 1] (charge)
    window: DiffusiveWindow
    intercept_A2: float | None = None  # of the whole-run line fit


def _check_times(time_ps) -> tuple[np.ndarray, float]:
    t = np.asarray(time_ps, dtype=np.float64)
    if t.ndim != 1 or t.size < 2:
        raise InputError(f"time_ps: expected at least 2 frame times, got shape {t.shape}")
    dt = np.diff(t)
    if dt.min() <= 0 or np.ptp(dt) > 1e-6 * dt.mean():
        raise InputError("time_ps: frames must be equally spaced in time (got spacings "
                         f"{dt.min():.6g}..{dt.max():.6g} ps)")
    return t, float(dt.mean())


def fit_msd(time_ps, msd, window_ps: tuple[float, float],
            weighting: str = "uniform") -> tuple[float, float]:
    """(slope Å²/ps, intercept Å²) of a line fitted to ``msd`` [L] at lags ``time_ps`` [L]
    within ``window_ps`` (inclusive); ``weighting`` "uniform" or "inverse_time"."""
    t, y = np.asarray(time_ps, dtype=np.float64), np.asarray(msd, dtype=np.float64)
    lo, hi = window_ps
    eps = 1e-9 * max(abs(hi), 1.0)
    keep = (t >= lo - eps) & (t <= hi + eps)
    if keep.sum() < 2:
        raise InputError(f"fit window {lo:g}..{hi:g} ps holds {int(keep.sum())} MSD points; "
                         "expected at least 2 (longer trajectory or wider window)")
    t, y = t[keep], y[keep]
    if weighting == "uniform":
        w = np.ones_like(t)
    elif weighting == "inverse_time":
        if t.min() <= 0:
            raise InputError("inverse_time weighting needs a fit window starting after t = 0")
        w = 1.0 / t
    else:
        raise InputError(f"weighting: expected 'uniform' or 'inverse_time', got {weighting!r}")
    a = np.stack([t, np.ones_like(t)], axis=1) * np.sqrt(w)[:, None]
    (slope, intercept), *_ = np.linalg.lstsq(a, y * np.sqrt(w), rcond=None)
    return float(slope), float(intercept)


def diffusion_from_msd(time_ps, msd, window_ps, dim: int = 3,
                       weighting: str = "uniform") -> float:
    """D (cm²/s) = slope / (2·dim) of ``msd`` (Å²) against ``time_ps`` over ``window_ps``."""
    slope, _ = fit_msd(time_ps, msd, window_ps, weighting)
    return slope / (2 * dim) * A2_PER_PS_IN_CM2_PER_S


def pymatgen_window(time_ps, n_ions: int, min_obs: int = 30) -> tuple[float, float]:
    """The lag window (ps) that pymatgen-analysis-diffusion's ``DiffusionAnalyzer`` fits with
    ``smoothed="max"``: from 1 ps to frame min(n_ions·F // min_obs, F) − 1."""
    t, dt = _check_times(time_ps)
    f = t.size
    first = int(1.0 / dt + 1e-9)  # pymatgen: int(1000 fs / (step_skip · time_step))
    last = min(n_ions * f // min_obs, f) - 1
    if first >= last:
        raise InputError(f"trajectory of {(f - 1) * dt:g} ps too short for pymatgen's window "
                         "(starts at 1 ps)")
    return first * dt, last * dt


def diffusive_window(msd, dt_ps: float, min_msd_A2: float, max_lag_ps: float,
                     slope_range=SLOPE_RANGE, min_span: float = MIN_SPAN) -> DiffusiveWindow:
    """The diffusive lag window of ``msd`` [L] (Å², lags k·``dt_ps``) up to ``max_lag_ps``:
    from the first lag after which the local log–log slope stays within ``slope_range`` and
    the MSD ≥ ``min_msd_A2``, to the longest usable lag (see the module docstring)."""
    m = np.asarray(msd, dtype=np.float64)
    last = min(int(max_lag_ps / dt_ps + 1e-9), m.size - 1)
    if last < 2:
        return DiffusiveWindow(None, f"only {last} MSD lag(s) up to {max_lag_ps:.3g} ps; the "
                               "window test needs 2 or more (longer run or fewer blocks)",
                               math.nan, min_msd_A2, last * dt_ps, float(m[max(last, 0)]))
    lo, hi = slope_range
    m = m[: last + 1]
    alpha = local_slope(m)
    ok = (alpha >= lo) & (alpha <= hi) & (m >= min_msd_A2)
    first = int(np.flatnonzero(~ok)[-1]) + 1  # ok[0] is False: the slope is NaN at lag 0
    t_max = last * dt_ps
    info = dict(min_msd_A2=float(min_msd_A2), max_lag_ps=t_max, msd_at_max_lag_A2=float(m[-1]))
    if first > last:
        if m[-1] < min_msd_A2:
            reason = (f"the MSD reaches {m[-1]:.3g} Å² at the longest usable lag {t_max:.3g} "
                      f"ps, below the {min_msd_A2:.3g} Å² a diffusive fit needs")
        else:
            kind = "ballistic" if alpha[-1] > hi else "caged or sub-diffusive"
            reason = (f"the MSD's log–log slope is {alpha[-1]:.2f} at the longest usable lag "
                      f"{t_max:.3g} ps (diffusive is {lo:g}–{hi:g}; {kind} or noisy)")
        return DiffusiveWindow(None, reason, float(alpha[-1]), **info)
    if last < min_span * first:
        return DiffusiveWindow(
            None, f"the MSD is diffusive only from {first * dt_ps:.3g} ps to the longest usable "
            f"lag {t_max:.3g} ps, less than a factor {min_span:g} in lag", float(alpha[-1]),
            **info)
    k = np.arange(first, last + 1)
    slope = np.polyfit(np.log(k), np.log(m[k]), 1)[0]
    return DiffusiveWindow((first * dt_ps, t_max), None, float(slope), **info)


def _check_run(positions, time_ps, n_blocks) -> tuple[np.ndarray, float, int]:
    """(positions [F, N, 3], frame spacing in ps, frames per block)."""
    x = np.asarray(positions, dtype=np.float64)
    t, dt = _check_times(time_ps)
    if x.ndim != 3 or x.shape[0] != t.size or x.shape[2] != 3:
        raise InputError(f"positions: expected [{t.size}, atoms, 3] to match time_ps, "
                         f"got {x.shape}")
    if isinstance(n_blocks, bool) or int(n_blocks) != n_blocks or n_blocks < 2:
        raise InputError(f"n_blocks: expected an integer >= 2, got {n_blocks!r}")
    block = t.size // int(n_blocks)
    if block < 3:
        raise InputError(f"{t.size} frames are too few for {n_blocks} blocks of >= 3 frames")
    return x, dt, block


def two_way_error(d) -> float:
    """Standard error of the mean of ``d`` [B, G] (time blocks × atom groups) under the
    two-way random-effects model of the module docstring; one group: std(d, ddof=1)/√B."""
    d = np.asarray(d, dtype=np.float64)
    b, g = d.shape
    if g == 1:
        return float(d[:, 0].std(ddof=1) / math.sqrt(b))
    grand, rows, cols = d.mean(), d.mean(axis=1), d.mean(axis=0)
    ms_time = g * ((rows - grand) ** 2).sum() / (b - 1)
    ms_atoms = b * ((cols - grand) ** 2).sum() / (g - 1)
    ms_resid = ((d - rows[:, None] - cols[None, :] + grand) ** 2).sum() / ((b - 1) * (g - 1))
    return float(math.sqrt(max(ms_time + ms_atoms - ms_resid, ms_resid) / (b * g)))


def tracer_diffusion(positions, time_ps, min_msd_A2: float, n_blocks: int = 5,
                     n_groups: int = 4, axes: str = "xyz",
                     max_lag_fraction: float = 0.5) -> DiffusionResult:
    """Tracer D of the atoms in ``positions`` [F, N, 3] (unwrapped, drift removed if wanted) at
    frame times ``time_ps`` [F], fitted over the diffusive window of their MSD (MSD ≥
    ``min_msd_A2``, lags ≤ ``max_lag_fraction`` of a block), with the time-block × atom-group
    error; ``axes`` e.g. "xy" for in-plane or "z" for normal diffusion. D is None when the
    MSD has no diffusive window."""
    x, dt, block = _check_run(positions, time_ps, n_blocks)
    if not 0.0 < max_lag_fraction <= 1.0:
        raise InputError(f"max_lag_fraction: expected 0 < f <= 1, got {max_lag_fraction!r}")
    if isinstance(n_groups, bool) or int(n_groups) != n_groups or n_groups < 1:
        raise InputError(f"n_groups: expected an integer >= 1, got {n_groups!r}")
    dim, n_atoms = len(axes), x.shape[1]
    lags = np.arange(x.shape[0]) * dt
    msd = select_axes(windowed_msd(x), axes)
    window = diffusive_window(msd, dt, min_msd_A2, max_lag_fraction * (block - 1) * dt)
    if window.window_ps is None:
        return DiffusionResult(None, None, None, window)
    slope, intercept = fit_msd(lags, msd, window.window_ps)
    n_g = max(1, min(int(n_groups), n_atoms))
    groups = [np.arange(g, n_atoms, n_g) for g in range(n_g)]
    blocks = np.array([[
        diffusion_from_msd(lags[:block], select_axes(windowed_msd(
            x[b * block:(b + 1) * block, idx]), axes), window.window_ps, dim)
        for idx in groups] for b in range(n_blocks)])
    return DiffusionResult(slope / (2 * dim) * A2_PER_PS_IN_CM2_PER_S, two_way_error(blocks),
                           blocks, window, intercept)


def charge_diffusion(positions, time_ps, window: DiffusiveWindow, charges=None,
                     n_blocks: int = 5, axes: str = "xyz") -> DiffusionResult:
    """Charge diffusion coefficient D_σ = slope / (2d) of the charge MSD ⟨|Σ z_i Δr_i|²⟩ / N
    (``collective_msd``; ``charges`` [N] or scalar in e, None: 1) of ``positions`` [F, N, 3],
    fitted over the tracer's diffusive ``window`` (the collective MSD is too noisy to find its
    own), with the time-block error. σ = nernst_einstein(D_σ, N, V, T) (z² is inside D_σ);
    for uncorrelated ions of one charge z, D_σ = z²·D*. None when ``window`` has no lags."""
    x, dt, block = _check_run(positions, time_ps, n_blocks)
    if window.window_ps is None:
        return DiffusionResult(None, None, None, window)
    dim = len(axes)
    lags = np.arange(x.shape[0]) * dt
    msd = select_axes(collective_msd(x, charges), axes)
    slope, intercept = fit_msd(lags, msd, window.window_ps)
    blocks = np.array([[diffusion_from_msd(
        lags[:block], select_axes(collective_msd(x[b * block:(b + 1) * block], charges), axes),
        window.window_ps, dim)] for b in range(n_blocks)])
    return DiffusionResult(slope / (2 * dim) * A2_PER_PS_IN_CM2_PER_S, two_way_error(blocks),
                           blocks, window, intercept)


def nernst_einstein(D_cm2_s: float, n_ions: int, volume_A3: float, temperature_K: float,
                    charge: float = 1.0) -> float:
    """Nernst–Einstein conductivity σ = n z² e² D / (k_B T) in S/cm for ``n_ions`` ions of
    charge ``charge`` (e) in ``volume_A3``. With the tracer D* it is the uncorrelated
    ("tracer") estimate; with the charge D_σ (charge=1, z² already inside D_σ) it is the
    conductivity of the ions. Linear in D, so it also converts an error of D."""
    if volume_A3 <= 0 or temperature_K <= 0:
        raise InputError(f"volume_A3 and temperature_K must be > 0, got {volume_A3}, "
                         f"{temperature_K}")
    n_per_cm3 = n_ions / (volume_A3 * 1e-24)
    return n_per_cm3 * (charge * _E) ** 2 * D_cm2_s / (_KB * temperature_K)


def haven_ratio(tracer: DiffusionResult, charge: DiffusionResult,
                charge_number: float = 1.0) -> tuple[float | None, float | None]:
    """(H, error) with H = z² D* / D_σ = σ_tracer / σ (``charge_number`` z of the ions whose
    charge D_σ was computed with charges z); the error propagates both errors as independent.
    (None, None) when either D is missing or D_σ ≤ 0."""
    if tracer.D_cm2_s is None or charge.D_cm2_s is None or charge.D_cm2_s <= 0:
        return None, None
    h = charge_number ** 2 * tracer.D_cm2_s / charge.D_cm2_s
    rel = math.hypot(tracer.D_err_cm2_s / tracer.D_cm2_s, charge.D_err_cm2_s / charge.D_cm2_s)
    return h, abs(h) * rel


@dataclass
class ArrheniusFit:
    """D(T) = D0 exp(−Ea / k_B T); ``cov`` [2, 2] is the covariance of (Ea in eV, ln D0), None
    when it cannot be estimated (2 points without errors)."""

    Ea_eV: float
    D0_cm2_s: float
    cov: np.ndarray | None

    @property
    def Ea_err_eV(self) -> float | None:
        return None if self.cov is None else float(math.sqrt(self.cov[0, 0]))

    def diffusion(self, temperature_K) -> np.ndarray | float:
        """D (cm²/s) at ``temperature_K`` from the fit."""
        return self.D0_cm2_s * np.exp(-self.Ea_eV / (_KB_EV * np.asarray(temperature_K)))

    def diffusion_err(self, temperature_K) -> np.ndarray | float | None:
        """Error of ``diffusion(temperature_K)`` (cm²/s) from ``cov``: σ_lnD² = aᵀ cov a with
        a = (−1/k_B T, 1)."""
        if self.cov is None:
            return None
        a = -1.0 / (_KB_EV * np.asarray(temperature_K, dtype=np.float64))
        var = self.cov[0, 0] * a * a + 2 * self.cov[0, 1] * a + self.cov[1, 1]
        return self.diffusion(temperature_K) * np.sqrt(var)


def fit_arrhenius(temperatures_K, D_cm2_s, D_err_cm2_s=None) -> ArrheniusFit:
    """Least-squares line ln D = ln D0 − Ea/(k_B T).

    Without errors: ordinary least squares; the Ea error is the standard error from the
    residuals (needs ≥ 3 points; the same as pymatgen's ``fit_arrhenius``). With errors
    [same length]: weights (D/σ_D)² (σ of ln D = σ_D/D); the covariance is (AᵀWA)⁻¹, scaled
    by χ²/(n−2) when n > 2 and the points scatter more than their error bars (χ²/(n−2) > 1).
    """
    temps = np.asarray(temperatures_K, dtype=np.float64)
    d = np.asarray(D_cm2_s, dtype=np.float64)
    if temps.ndim != 1 or temps.shape != d.shape or temps.size < 2:
        raise InputError(f"Arrhenius fit: expected ≥ 2 temperatures and as many D values, got "
                         f"{temps.shape} and {d.shape}")
    if (temps <= 0).any() or (d <= 0).any():
        raise InputError("Arrhenius fit: temperatures and D must be > 0")
    if np.unique(temps).size < 2:
        raise InputError("Arrhenius fit: expected at least 2 different temperatures")
    n = temps.size
    a = np.stack([-1.0 / (_KB_EV * temps), np.ones(n)], axis=1)  # columns: Ea, ln D0
    y = np.log(d)
    if D_err_cm2_s is None:
        w = np.ones(n)
    else:
        err = np.asarray(D_err_cm2_s, dtype=np.float64)
        if err.shape != d.shape or not (err > 0).all():
            raise InputError("Arrhenius fit: D errors must be > 0, one per temperature")
        w = (d / err) ** 2
    aw = a * np.sqrt(w)[:, None]
    coef, *_ = np.linalg.lstsq(aw, y * np.sqrt(w), rcond=None)
    chi2 = float((((a @ coef) - y) ** 2 * w).sum())
    cov = np.linalg.inv(aw.T @ aw)
    if D_err_cm2_s is None:
        cov = cov * chi2 / (n - 2) if n > 2 else None
    elif n > 2:
        cov = cov * max(1.0, chi2 / (n - 2))
    return ArrheniusFit(float(coef[0]), float(math.exp(coef[1])), cov)
