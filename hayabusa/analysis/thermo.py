"""Thermodynamics of a run from its H5MD trajectory: the time series, their summary and the
equilibration check.

Source: ``observables/system_0/`` of ``traj.h5`` (``hayabusa.md.trajectory.H5MDWriter``):
``potential_energy``, ``kinetic_energy``, ``total_energy`` (eV) and, when the file has them,
``temperature`` (K) and ``conserved_energy`` (eV), one value per complete frame. Without
``temperature``, T = 2·KE / (N_f k_B) with N_f = 3N − 3; without ``conserved_energy`` the total
energy stands in (not conserved under a thermostat; ``conserved`` says which was used).

Equilibration check over the production frames, with B time blocks and z = ``z_max``:
- ⟨T⟩ ± SE with SE = max(std(block means)/√B, σ_T/√F): block averaging, floored at the error
  of F independent frames; σ_T = T_target·√(2/N_f) is the canonical fluctuation of the
  kinetic temperature. Flagged when |⟨T⟩ − T_target| > z·SE.
- drift of T and of the potential energy per atom over the run: the least-squares slope of the
  B block means against time, times the run's span; its error from the scatter of the block
  means about that line (at least the floor's σ/√(frames per block); the potential energy's
  floor σ is its per-frame scatter about a straight line). Flagged when |drift| > z·error.

Blocks must be longer than the correlation time of T. Measured on synthetic equilibrated
series (AR(1) with the canonical σ_T, 300 runs of 200 frames, correlation time 5 frames) with
10 blocks and z = 4: 7 runs (2.3 %) are flagged by one of the three tests; with the
correlation time at 60 % of a block (1000 frames, 200 runs), 8 %.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase.units import kB  # eV/K

from ..errors import InputError, first_line

_OPTIONAL = ("temperature", "conserved_energy")


@dataclass
class Thermo:
    """Per-frame series [F] of one system and what they were made from."""

    step: np.ndarray
    time_ps: np.ndarray
    temperature_K: np.ndarray
    potential_eV: np.ndarray
    conserved_eV: np.ndarray
    conserved: str  # "conserved_energy" | "total_energy"
    temperature_source: str  # "temperature" | "kinetic_energy"
    n_atoms: int
    n_dof: int  # 3N − 3


def read_thermo(path, system: int = 0) -> Thermo:
    """The thermo series of ``system`` in the H5MD file ``path`` (complete frames only)."""
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            part = f[f"particles/system_{system}"]
            obs = f[f"observables/system_{system}"]
            t = part["position/step"].shape[0]
            n = int(part["species"].shape[0])
            data = {k: obs[f"{k}/value"][:t] for k in ("potential_energy", "kinetic_energy",
                                                        "total_energy")}
            data |= {k: obs[f"{k}/value"][:t] for k in _OPTIONAL if k in obs}
            step = part["position/step"][:t].astype(np.int64)
            time_ps = part["position/time"][:t] / 1000.0
    except Exception as exc:  # h5py: OSError, KeyError, RuntimeError… for a damaged file
        raise InputError(f"{path}: cannot read the thermo observables of system {system} "
                         f"({first_line(exc)})") from None
    if t < 2:
        raise InputError(f"{path}: {t} frame(s); the thermo analysis needs at least 2")
    n_dof = max(3 * n - 3, 1)
    if "temperature" in data:
        temp, source = data["temperature"], "temperature"
    else:
        temp, source = 2.0 * data["kinetic_energy"] / (n_dof * kB), "kinetic_energy"
    conserved = "conserved_energy" if "conserved_energy" in data else "total_energy"
    return Thermo(step, time_ps, temp, data["potential_energy"], data[conserved], conserved,
                  source, n, n_dof)


def _mean_and_error(x: np.ndarray, n_blocks: int, floor_std: float) -> tuple[float, float]:
    """(mean, SE) of ``x`` [F]: SE from ``n_blocks`` block means, at least floor_std/√F."""
    blocks = np.array([b.mean() for b in np.array_split(x, n_blocks)])
    se = blocks.std(ddof=1) / math.sqrt(n_blocks)
    return float(x.mean()), float(max(se, floor_std / math.sqrt(x.size)))


def _drift(t: np.ndarray, x: np.ndarray, n_blocks: int, floor_std: float) -> tuple[float, float]:
    """(change, error) of ``x`` [F] over the run: least-squares slope × span of the ``n_blocks``
    block means against their mid-times; error from their scatter about the line (≥ 2 blocks of
    freedom), its scatter at least floor_std/√(frames per block)."""
    parts = list(zip(np.array_split(t, n_blocks), np.array_split(x, n_blocks), strict=True))
    c = np.array([pt.mean() for pt, _ in parts])
    m = np.array([px.mean() for _, px in parts])
    slope, intercept = np.polyfit(c, m, 1)
    resid = math.sqrt(((m - slope * c - intercept) ** 2).sum() / max(n_blocks - 2, 1))
    resid = max(resid, floor_std / math.sqrt(x.size / n_blocks))
    span = t[-1] - t[0]
    return float(slope * span), float(resid / math.sqrt(((c - c.mean()) ** 2).sum()) * span)


def thermo_summary(th: Thermo, target_K: float, n_blocks: int, z_max: float = 4.0) -> dict:
    """The run's thermo summary for analysis.json: means with block errors, drifts, the
    conserved-energy drift (least-squares slope over the frames, per atom) and the
    equilibration verdict ``equilibrated`` with its ``flags`` (why not; see the module
    docstring) for a run thermostatted at ``target_K``."""
    sigma_t = target_K * math.sqrt(2.0 / th.n_dof)
    mean_t, err_t = _mean_and_error(th.temperature_K, n_blocks, sigma_t)
    pe = th.potential_eV / th.n_atoms
    mean_pe, err_pe = _mean_and_error(pe, n_blocks, pe.std())
    drift_t, drift_t_err = _drift(th.time_ps, th.temperature_K, n_blocks, sigma_t)
    detrended = pe - np.polyval(np.polyfit(th.time_ps, pe, 1), th.time_ps)
    drift_pe, drift_pe_err = _drift(th.time_ps, pe, n_blocks, detrended.std())
    flags = []
    if abs(mean_t - target_K) > z_max * err_t:
        flags.append(f"⟨T⟩ = {mean_t:.1f} ± {err_t:.2g} K, {abs(mean_t - target_K) / err_t:.0f} "
                     f"standard errors from the {target_K:g} K target")
    if abs(drift_t) > z_max * drift_t_err:
        flags.append(f"T drifts by {drift_t:+.1f} ± {drift_t_err:.2g} K over the run")
    if abs(drift_pe) > z_max * drift_pe_err:
        flags.append(f"the potential energy drifts by {1e3 * drift_pe:+.3g} ± "
                     f"{1e3 * drift_pe_err:.2g} meV/atom over the run")
    slope = np.polyfit(th.time_ps, th.conserved_eV, 1)[0]  # eV/ps
    span = th.time_ps[-1] - th.time_ps[0]
    return {"equilibrated": not flags, "flags": flags,
            "frames": int(th.step.size), "first_step": int(th.step[0]),
            "last_step": int(th.step[-1]), "temperature_source": th.temperature_source,
            "n_dof": th.n_dof, "target_T_K": float(target_K), "mean_T_K": mean_t,
            "mean_T_err_K": err_t, "sigma_T_canonical_K": sigma_t, "T_drift_K": drift_t,
            "T_drift_err_K": drift_t_err, "mean_pe_eV_per_atom": mean_pe,
            "mean_pe_err_eV_per_atom": err_pe, "pe_drift_eV_per_atom": drift_pe,
            "pe_drift_err_eV_per_atom": drift_pe_err, "conserved": th.conserved,
            "conserved_drift_meV_per_atom": 1e3 * slope * span / th.n_atoms,
            "conserved_drift_meV_per_atom_per_ns": 1e3 * slope * 1e3 / th.n_atoms,
            "z_max": z_max}
