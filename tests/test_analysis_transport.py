"""Honest transport numbers: D only from the diffusive part of the MSD, with error bars that
hold over many seeds; conductivity from the charge displacement.

Random walks on a simple cubic lattice (hop rate Γ per atom, hop length a, thermal vibration
about the site) have D = Γa²/6. Walks shorter than a few hops, caged (harmonic) and ballistic
motion must give no D. The charge MSD of z = 2 ions is 4× that of z = 1 ions; ions that hop in
pairs have a collective D twice the tracer D (Haven ratio 1/2), which the Nernst–Einstein
estimate from the tracer D misses.
"""

from __future__ import annotations

import numpy as np
import pytest

from hayabusa.analysis import (
    charge_diffusion,
    diffusive_window,
    haven_ratio,
    local_slope,
    nernst_einstein,
    tracer_diffusion,
)
from hayabusa.analysis.diffusion import two_way_error

GAMMA, HOP, DT = 2.0, 2.0, 0.05  # hops per ps per atom, Å, ps per frame
D_TRUE = GAMMA * HOP**2 / 6  # Å²/ps
MIN_MSD = 3 * HOP**2  # three squared hop lengths, the analysis default


def lattice_walk(seed: int, frames: int, atoms: int, rate=GAMMA, hop=HOP, dt=DT,
                 vibration=0.3) -> np.ndarray:
    """[F, N, 3] nearest-neighbour hops on a simple cubic lattice: a Poisson number of hops
    (rate ``rate`` per ps) per frame, each ± ``hop`` along x, y or z at random, plus Gaussian
    vibration (``vibration`` Å per axis) about the site."""
    rng = np.random.default_rng(seed)
    n_hops = rng.poisson(rate * dt, size=(frames - 1, atoms))
    steps = np.zeros((frames - 1, atoms, 3))
    for k in range(n_hops.max(initial=0)):
        axis = rng.integers(0, 3, size=n_hops.shape)
        sign = rng.choice([-hop, hop], size=n_hops.shape) * (n_hops > k)
        steps += sign[..., None] * (axis[..., None] == np.arange(3))
    sites = np.concatenate([np.zeros((1, atoms, 3)), np.cumsum(steps, axis=0)])
    return sites + rng.normal(scale=vibration, size=sites.shape)


def times(frames: int, dt=DT) -> np.ndarray:
    return np.arange(frames) * dt


# ------------------------------------------------------------------------- MSD shape
@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_local_slope_of_a_power_law(alpha):
    t = np.arange(200.0)
    slope = local_slope(3.0 * t**alpha)
    assert np.isnan(slope[0])
    np.testing.assert_allclose(slope[1:], alpha, rtol=1e-10)


def test_window_starts_where_the_caged_msd_turns_diffusive():
    """MSD = A(1 − e^(−t/τ)) + 6Dt: caged plateau, then diffusion. With a negligible MSD
    threshold the window starts where the analytic slope t·MSD'/MSD reaches 0.85; with a
    threshold above that, where the MSD reaches it."""
    a, tau, d, dt = 1.0, 0.2, 0.5, 0.01
    t = np.arange(5000) * dt
    msd = a * (1 - np.exp(-t / tau)) + 6 * d * t
    with np.errstate(invalid="ignore"):
        analytic = t * (a / tau * np.exp(-t / tau) + 6 * d) / msd
    first = np.argmax((analytic >= 0.85) & (t > 4 * tau))  # past the plateau's dip
    w = diffusive_window(msd, dt, 1e-6, 40.0)
    assert w.reason is None and w.window_ps[1] == pytest.approx(40.0)
    assert abs(w.window_ps[0] - t[first]) < 0.05 * t[first]  # finite-span local slope
    assert 0.85 <= w.loglog_slope <= 1.0
    w = diffusive_window(msd, dt, 30.0, 40.0)
    assert w.window_ps[0] == pytest.approx(t[np.argmax(msd >= 30.0)])
    w = diffusive_window(msd, dt, 30.0, 15.0)  # the threshold is met too late
    assert w.window_ps is None and "less than a factor 2" in w.reason
    w = diffusive_window(msd, dt, 1e-6, 0.015)  # one lag: no slope to test
    assert w.window_ps is None and w.reason.startswith("only 1 MSD lag(s) up to 0.015 ps")


# --------------------------------------------------------------- D of a lattice walk
def test_lattice_walk_D_is_gamma_a2_over_6_within_its_error():
    x = lattice_walk(1, 1000, 32)
    res = tracer_diffusion(x, times(1000), MIN_MSD)
    lo, hi = res.window.window_ps
    assert res.window.msd_at_max_lag_A2 > MIN_MSD and hi >= 2 * lo
    assert abs(res.D_cm2_s / 1e-4 - D_TRUE) < 3 * res.D_err_cm2_s / 1e-4
    assert abs(res.D_cm2_s / 1e-4 / D_TRUE - 1) < 0.15
    assert res.blocks_cm2_s.shape == (5, 4)  # 5 time blocks × 4 atom groups


def test_lattice_walk_error_bar_is_honest_over_seeds():
    """Over 60 seeds: unbiased, the 2σ interval covers Γa²/6 in ≥ 90 % of them and the error
    bars are not inflated beyond 1.6× the scatter of the estimates."""
    est, err = [], []
    for seed in range(60):
        res = tracer_diffusion(lattice_walk(100 + seed, 1000, 24), times(1000), MIN_MSD)
        est.append(res.D_cm2_s / 1e-4)
        err.append(res.D_err_cm2_s / 1e-4)
    est, err = np.array(est), np.array(err)
    z = (est - D_TRUE) / err
    assert abs(est.mean() / D_TRUE - 1) < 3 * est.std() / np.sqrt(est.size)
    assert (np.abs(z) < 2).mean() >= 0.9
    assert 0.6 < est.std() / np.median(err) < 1.6


def test_error_counts_atoms_that_move_together():
    """Atoms hopping in lock-step groups of 4 (one member in each atom group) leave 10
    independent walkers of 40: the error must grow to match (the time-block effect), where
    treating the 20 block × group values as independent understates it."""
    est, err, naive = [], [], []
    for seed in range(60):
        walk = lattice_walk(300 + seed, 1000, 10, vibration=0.0)
        x = np.repeat(walk, 4, axis=1)
        res = tracer_diffusion(x, times(1000), MIN_MSD)
        if res.D_cm2_s is None:  # 10 walkers: now and then too noisy for a window
            continue
        est.append(res.D_cm2_s / 1e-4)
        err.append(res.D_err_cm2_s / 1e-4)
        naive.append(res.blocks_cm2_s.std(ddof=1) / np.sqrt(res.blocks_cm2_s.size) / 1e-4)
    est, err, naive = np.array(est), np.array(err), np.array(naive)
    assert est.size >= 50
    assert (np.abs(est - D_TRUE) < 2 * err).mean() >= 0.85
    assert (np.abs(est - D_TRUE) < 2 * naive).mean() < 0.8  # the negative control fails


def test_two_way_error_of_constructed_tables():
    rng = np.random.default_rng(0)
    # pure time effect: every group identical within a block → SE of the block means
    rows = rng.normal(size=5)
    table = np.repeat(rows[:, None], 4, axis=1)
    assert two_way_error(table) == pytest.approx(rows.std(ddof=1) / np.sqrt(5))
    # one group: the time-block standard error
    assert two_way_error(rows[:, None]) == pytest.approx(rows.std(ddof=1) / np.sqrt(5))
    # no effects (additive noise only): floored at the residual mean square
    noise = rng.normal(size=(5, 4))
    centred = noise - noise.mean(1, keepdims=True) - noise.mean(0) + noise.mean()
    resid = (centred**2).sum() / 12
    assert two_way_error(centred) == pytest.approx(np.sqrt(resid / 20))


# ------------------------------------------------------------------ refused as non-diffusive
def test_walk_of_a_few_hops_gives_no_D():
    """5 ps at Γ = 2/ps: the longest usable lag (half a 1-ps block) sees < 1 hop per atom and
    an MSD far below 3a²: no D, and the reason says so (the old fixed window gave a number)."""
    x = lattice_walk(2, 100, 32)
    res = tracer_diffusion(x, times(100), MIN_MSD)
    assert res.D_cm2_s is None and res.D_err_cm2_s is None and res.blocks_cm2_s is None
    assert res.window.window_ps is None
    assert res.window.msd_at_max_lag_A2 < MIN_MSD
    assert f"below the {MIN_MSD:.3g} Å²" in res.window.reason
    charge = charge_diffusion(x, times(100), res.window)
    assert charge.D_cm2_s is None and haven_ratio(res, charge) == (None, None)


def test_caged_harmonic_motion_gives_no_D():
    """Atoms in harmonic wells (Ornstein–Uhlenbeck, relaxation 0.1 ps, 1.5 Å per axis): the
    MSD plateaus at 6σ² = 13.5 Å², above a small threshold, but its slope → 0: caged."""
    rng = np.random.default_rng(3)
    frames, n, sigma, phi = 1000, 32, 1.5, np.exp(-DT / 0.1)
    x = np.zeros((frames, n, 3))
    x[0] = rng.normal(scale=sigma, size=(n, 3))
    for k in range(1, frames):
        x[k] = phi * x[k - 1] + np.sqrt(1 - phi**2) * sigma * rng.normal(size=(n, 3))
    res = tracer_diffusion(x, times(frames), min_msd_A2=1.0)
    assert res.D_cm2_s is None and res.window.msd_at_max_lag_A2 > 1.0
    assert res.window.loglog_slope < 0.85 and "caged" in res.window.reason


def test_ballistic_motion_gives_no_D():
    """Free flight x = x0 + v·t: MSD = ⟨v²⟩t², slope 2: ballistic, however large the MSD."""
    rng = np.random.default_rng(4)
    v = rng.normal(scale=2.0, size=(1, 32, 3))  # Å/ps
    x = rng.uniform(0, 10, size=(1, 32, 3)) + v * times(400)[:, None, None]
    res = tracer_diffusion(x, times(400), MIN_MSD)
    assert res.D_cm2_s is None and res.window.msd_at_max_lag_A2 > MIN_MSD
    assert res.window.loglog_slope == pytest.approx(2.0, abs=1e-6)
    assert "ballistic" in res.window.reason


def test_haven_ratio_needs_a_positive_charge_D():
    """A noisy charge MSD can fit a slope ≤ 0: no Haven ratio rather than a negative or
    infinite one."""
    x = lattice_walk(8, 1000, 32)
    tracer = tracer_diffusion(x, times(1000), MIN_MSD)
    charge = charge_diffusion(x, times(1000), tracer.window)
    for d in (0.0, -charge.D_cm2_s):
        charge.D_cm2_s = d
        assert haven_ratio(tracer, charge) == (None, None)


# --------------------------------------------------------------------------- conductivity
V_A3, T_K = 20.0**3, 600.0


def test_conductivity_of_z2_ions_from_the_charge_displacement():
    """Independent z = 2 ions: the charge MSD |Σ zΔr|²/N is exactly 4× that of z = 1; σ from
    it agrees with Nernst–Einstein n z² e² D*/kT on average over 20 seeds (one run's collective
    MSD scatters by ~25 %), and the Haven ratio z²D*/D_σ is 1."""
    t = times(1000)
    ratios = []
    for seed in range(20):
        x = lattice_walk(500 + seed, 1000, 32)
        tracer = tracer_diffusion(x, t, MIN_MSD)
        one = charge_diffusion(x, t, tracer.window)
        two = charge_diffusion(x, t, tracer.window, charges=2.0)
        assert two.D_cm2_s == pytest.approx(4 * one.D_cm2_s, rel=1e-10)
        assert two.D_err_cm2_s == pytest.approx(4 * one.D_err_cm2_s, rel=1e-10)
        sigma = nernst_einstein(two.D_cm2_s, 32, V_A3, T_K)  # z² inside D_σ
        sigma_ne = nernst_einstein(tracer.D_cm2_s, 32, V_A3, T_K, charge=2.0)
        assert sigma_ne == pytest.approx(4 * nernst_einstein(tracer.D_cm2_s, 32, V_A3, T_K))
        h, _ = haven_ratio(tracer, two, charge_number=2.0)
        assert h == pytest.approx(haven_ratio(tracer, one)[0], rel=1e-10)
        assert h == pytest.approx(sigma_ne / sigma, rel=1e-10)
        ratios.append(sigma / sigma_ne)
    ratios = np.array(ratios)
    assert abs(ratios.mean() - 1) < 3 * ratios.std(ddof=1) / np.sqrt(ratios.size)
    assert abs(ratios.mean() - 1) < 0.2


def test_ions_hopping_in_pairs_have_haven_ratio_one_half():
    """Pairs of ions make the same hops (own vibrations): the summed displacement of a pair is
    2Δr, so D_σ = 2 D* and H = 1/2; σ from the charge MSD is twice the tracer estimate, and a
    Haven ratio of 1 is excluded by the error bar."""
    walk = lattice_walk(6, 1500, 32, vibration=0.0)
    rng = np.random.default_rng(7)
    x = np.repeat(walk, 2, axis=1) + rng.normal(scale=0.3, size=(1500, 64, 3))
    t = times(1500)
    tracer = tracer_diffusion(x, t, MIN_MSD)
    charge = charge_diffusion(x, t, tracer.window)
    assert abs(tracer.D_cm2_s / 1e-4 - D_TRUE) < 3 * tracer.D_err_cm2_s / 1e-4
    h, h_err = haven_ratio(tracer, charge)
    assert abs(h - 0.5) < 3 * h_err and abs(h - 1) > 3 * h_err
    sigma = nernst_einstein(charge.D_cm2_s, 64, V_A3, T_K)
    sigma_tracer = nernst_einstein(tracer.D_cm2_s, 64, V_A3, T_K)
    assert sigma / sigma_tracer == pytest.approx(1 / h)
    assert 1.5 < sigma / sigma_tracer < 2.7
