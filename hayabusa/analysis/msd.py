"""Windowed mean-squared displacement (every time origin) by FFT, per species and direction.

Positions are UNWRAPPED Cartesian coordinates [F, N, 3] in Å at equally spaced times. The
windowed MSD at lag m (0 ≤ m < F) averages over all F − m time origins and over the atoms:

    MSD_k(m) = 1/N Σ_i 1/(F−m) Σ_{t=0}^{F−m−1} (x_ik(t+m) − x_ik(t))²,   k = x, y, z,

computed in O(F log F) per atom as S1 − 2·S2 (S1 from prefix sums of x², S2 the FFT
autocorrelation). Functions return the three Cartesian components [F, 3]; sum the ones you
need with ``select_axes`` (e.g. ``"xy"`` in-plane and ``"z"`` normal to a GB plane in z).
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

_AXES = {"x": 0, "y": 1, "z": 2}
# Atoms transformed at once: bounds the transient memory (~ 3 · n_fft · 16 bytes per atom).
_CHUNK_BYTES = 1 << 27


def _check_positions(positions) -> np.ndarray:
    x = np.asarray(positions, dtype=np.float64)
    if x.ndim != 3 or x.shape[2] != 3 or x.shape[0] < 1:
        raise InputError(f"positions: expected an array [frames, atoms, 3], got shape {x.shape}")
    return x


def windowed_msd(positions) -> np.ndarray:
    """[F, 3] windowed MSD (Å²) of the atoms in ``positions`` [F, N, 3], per Cartesian axis."""
    x = _check_positions(positions)
    f, n, _ = x.shape
    if n == 0:
        raise InputError("positions: no atoms selected for the MSD")
    x = x - x[:1]  # translation-invariant; small numbers keep S1 − 2·S2 accurate
    n_fft = 1 << int(np.ceil(np.log2(2 * f)))
    chunk = max(1, _CHUNK_BYTES // (3 * 16 * n_fft))
    lag = np.arange(f)
    total = np.zeros((f, 3))
    for a in range(0, n, chunk):
        xc = x[:, a:a + chunk]
        spec = np.fft.rfft(xc, n=n_fft, axis=0)
        s2 = np.fft.irfft(spec * spec.conj(), n=n_fft, axis=0)[:f].sum(axis=1)  # [F, 3]
        prefix = np.concatenate([np.zeros((1, 3)), np.cumsum((xc * xc).sum(axis=1), axis=0)])
        s1 = prefix[f - lag] + (prefix[f] - prefix[lag])
        total += s1 - 2.0 * s2
    return total / (f - lag)[:, None] / n


def collective_msd(positions, charges=None) -> np.ndarray:
    """[F, 3] windowed MSD of the charge displacement Σ_i z_i Δr_i, divided by N (Å² e²).

    ⟨|Σ_i z_i Δr_i(m)|²⟩ / N over the N atoms of ``positions`` [F, N, 3]; ``charges`` [N] or a
    scalar z (e; None: 1). For N ions of one charge z whose motions are uncorrelated it equals
    z² times the tracer MSD; its slope gives the charge diffusion coefficient D_σ and the
    ionic conductivity (``diffusion.charge_diffusion``, ``diffusion.nernst_einstein``).
    """
    x = _check_positions(positions)
    n = x.shape[1]
    if n == 0:
        raise InputError("positions: no atoms selected for the collective MSD")
    z = np.ones(n) if charges is None else np.broadcast_to(np.asarray(charges, float), (n,))
    if not np.isfinite(z).all():
        raise InputError("charges: expected finite numbers (e), one per atom")
    return windowed_msd(np.einsum("fni,n->fi", x, z)[:, None, :]) / n


def local_slope(msd) -> np.ndarray:
    """[L] local log–log slope d ln MSD / d ln t of ``msd`` [L] at equally spaced lags 0..L−1:
    the least-squares slope of ln MSD against ln t over the lags k/√2 … √2·k (at least two).
    2 is ballistic, 1 diffusive, ≪ 1 caged; NaN at lag 0 and wherever a lag used has MSD ≤ 0."""
    m = np.asarray(msd, dtype=np.float64)
    out = np.full(m.size, np.nan)
    if m.size < 3:
        return out
    k = np.arange(1, m.size)
    x = np.log(k)
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.log(m[1:])
    bad = ~np.isfinite(y)
    y = np.where(bad, 0.0, y)
    # prefix sums over lags 1..k of: 1, x, y, x², xy, bad
    sums = [np.concatenate([[0.0], np.cumsum(v)])
            for v in (np.ones_like(x), x, y, x * x, x * y, bad)]
    hi = np.minimum(np.ceil(k * np.sqrt(2)).astype(int), m.size - 1)
    lo = np.minimum(np.maximum(np.floor(k / np.sqrt(2)).astype(int), 1), hi - 1)
    n, sx, sy, sxx, sxy, n_bad = (c[hi] - c[lo - 1] for c in sums)
    out[1:] = np.where(n_bad > 0, np.nan, (n * sxy - sx * sy) / (n * sxx - sx * sx))
    return out


def remove_drift(positions, reference) -> np.ndarray:
    """Positions [F, N, 3] minus the mean displacement of the ``reference`` atoms (mask or
    indices), frame by frame: removes a drift of the whole cell content (framework) as
    pymatgen-analysis-diffusion does (unweighted mean over the framework atoms)."""
    x = _check_positions(positions)
    ref = x[:, np.asarray(reference)]
    if ref.shape[1] == 0:
        return x.copy()
    drift = (ref - ref[:1]).mean(axis=1, keepdims=True)
    return x - drift


def select_axes(msd3, axes: str = "xyz") -> np.ndarray:
    """Sum of the MSD components ``axes`` (e.g. "xyz", "xy", "z") of ``msd3`` [..., 3]; the
    dimensionality d for D = slope / (2d) is ``len(axes)``."""
    if not axes or len(set(axes)) != len(axes) or any(a not in _AXES for a in axes):
        raise InputError(f"axes: expected distinct letters from 'xyz', got {axes!r}")
    msd3 = np.asarray(msd3)
    return msd3[..., [_AXES[a] for a in axes]].sum(axis=-1)


def msd_by_species(positions, symbols, drift_reference=None) -> dict[str, np.ndarray]:
    """{symbol: [F, 3] windowed MSD} for every species in ``symbols`` [N].

    ``drift_reference``: atoms (mask or indices) whose mean displacement is removed first
    (see ``remove_drift``), e.g. the framework; None keeps the positions as given."""
    x = _check_positions(positions)
    symbols = np.asarray(symbols)
    if symbols.shape != (x.shape[1],):
        raise InputError(f"symbols: expected {x.shape[1]} entries, got {symbols.shape}")
    if drift_reference is not None:
        x = remove_drift(x, drift_reference)
    return {str(s): windowed_msd(x[:, symbols == s]) for s in dict.fromkeys(symbols.tolist())}
