"""Diffusion coefficients from MSD fits, block-averaged errors, Nernst–Einstein conductivity,
Haven ratio and Arrhenius fits.

Units: time in ps, MSD in Å², D in cm²/s (1 Å²/ps = 1e-4 cm²/s), σ in S/cm, Ea in eV.

Fit convention. D = slope / (2d) of a straight line (with intercept) fitted to the windowed
MSD over the lags ``t_min ≤ t ≤ t_max`` (``window_ps``), d = number of axes summed.
``weighting="uniform"`` is ordinary least squares; ``"inverse_time"`` weights each lag by 1/t,
which is what pymatgen-analysis-diffusion's ``DiffusionAnalyzer(smoothed="max")`` does. That
analyzer fits the lags from 1 ps up to frame min(N_ion·F // min_obs, F) − 1 (all of them while
the window spans < 400 frames, else ~200 evenly strided ones) after removing the mean
displacement of the framework atoms; ``pymatgen_window`` returns that window, so
``tracer_diffusion(..., window_ps=pymatgen_window(...), weighting="inverse_time")`` reproduces
its ``diffusivity`` (tests/test_analysis.py checks it).

Errors by block averaging: the frames are cut into ``n_blocks`` consecutive blocks, D is fitted
in every block over the same window, and the error of the whole-run D is the standard error of
the block values, std(D_b, ddof=1)/√n_blocks. The default window is 10–50 % of one block's
duration, so every block fits the same lags as the whole run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .msd import collective_msd, select_axes, windowed_msd

A2_PER_PS_IN_CM2_PER_S = 1e-4
_E = 1.602176634e-19  # C
_KB = 1.380649e-23  # J/K
_KB_EV = 8.617333262e-5  # eV/K


@dataclass
class DiffusionResult:
    """D of the whole run, its block-averaging error, the block values and the fit window."""

    D_cm2_s: float
    D_err_cm2_s: float
    blocks_cm2_s: np.ndarray  # [n_blocks]
    window_ps: tuple[float, float]


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


def _blocked(msd_fn, positions, time_ps, n_blocks: int, window_ps, axes: str,
             weighting: str) -> DiffusionResult:
    x = np.asarray(positions, dtype=np.float64)
    t, dt = _check_times(time_ps)
    if x.ndim != 3 or x.shape[0] != t.size:
        raise InputError(f"positions: expected [{t.size}, atoms, 3] to match time_ps, "
                         f"got {x.shape}")
    if int(n_blocks) != n_blocks or n_blocks < 2:
        raise InputError(f"n_blocks: expected an integer >= 2, got {n_blocks!r}")
    block = t.size // n_blocks
    if block < 3:
        raise InputError(f"{t.size} frames are too few for {n_blocks} blocks of >= 3 frames")
    if window_ps is None:
        span = (block - 1) * dt
        window_ps = (0.1 * span, 0.5 * span)
    window_ps = (float(window_ps[0]), float(window_ps[1]))
    dim = len(axes)
    lags = np.arange(t.size) * dt
    d_all = diffusion_from_msd(lags, select_axes(msd_fn(x), axes), window_ps, dim, weighting)
    blocks = np.array([
        diffusion_from_msd(lags[:block], select_axes(msd_fn(x[b * block:(b + 1) * block]), axes),
                           window_ps, dim, weighting)
        for b in range(n_blocks)])
    err = float(blocks.std(ddof=1) / math.sqrt(n_blocks))
    return DiffusionResult(d_all, err, blocks, window_ps)


def tracer_diffusion(positions, time_ps, n_blocks: int = 5, window_ps=None, axes: str = "xyz",
                     weighting: str = "uniform") -> DiffusionResult:
    """Tracer D of the atoms in ``positions`` [F, N, 3] (unwrapped, drift removed if wanted)
    at frame times ``time_ps`` [F], with a block-averaging error; ``axes`` e.g. "xy" for
    in-plane or "z" for normal diffusion."""
    return _blocked(windowed_msd, positions, time_ps, n_blocks, window_ps, axes, weighting)


def charge_diffusion(positions, time_ps, n_blocks: int = 5, window_ps=None, axes: str = "xyz",
                     weighting: str = "uniform") -> DiffusionResult:
    """Collective (charge) D_σ from the MSD of the summed displacement / N (``collective_msd``)
    of equal ions in ``positions`` [F, N, 3], with a block-averaging error."""
    return _blocked(collective_msd, positions, time_ps, n_blocks, window_ps, axes, weighting)


def nernst_einstein(D_cm2_s: float, n_ions: int, volume_A3: float, temperature_K: float,
                    charge: float = 1.0) -> float:
    """Nernst–Einstein conductivity σ = n z² e² D / (k_B T) in S/cm for ``n_ions`` ions of
    charge ``charge`` (e) in ``volume_A3``. With the charge D_σ this is the conductivity of
    the ions; with the tracer D* it is the uncorrelated ("tracer") estimate."""
    if volume_A3 <= 0 or temperature_K <= 0:
        raise InputError(f"volume_A3 and temperature_K must be > 0, got {volume_A3}, "
                         f"{temperature_K}")
    n_per_cm3 = n_ions / (volume_A3 * 1e-24)
    return n_per_cm3 * (charge * _E) ** 2 * D_cm2_s / (_KB * temperature_K)


def haven_ratio(tracer: DiffusionResult, charge: DiffusionResult) -> tuple[float, float]:
    """(H, error) with H = D* / D_σ; the error propagates both block errors (independent)."""
    h = tracer.D_cm2_s / charge.D_cm2_s
    rel = math.hypot(tracer.D_err_cm2_s / tracer.D_cm2_s, charge.D_err_cm2_s / charge.D_cm2_s)
    return h, abs(h) * rel


@dataclass
class ArrheniusFit:
    """D(T) = D0 exp(−Ea / k_B T); ``Ea_err_eV`` is None when it cannot be estimated."""

    Ea_eV: float
    Ea_err_eV: float | None
    D0_cm2_s: float
    ln_D0_err: float | None

    def diffusion(self, temperature_K) -> np.ndarray | float:
        """Extrapolated D (cm²/s) at ``temperature_K``."""
        return self.D0_cm2_s * np.exp(-self.Ea_eV / (_KB_EV * np.asarray(temperature_K)))


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
    ea_err = None if cov is None else float(math.sqrt(cov[0, 0]))
    ln_d0_err = None if cov is None else float(math.sqrt(cov[1, 1]))
    return ArrheniusFit(float(coef[0]), ea_err, float(math.exp(coef[1])), ln_d0_err)
