"""Peer engines timed on the same systems in the same run as hayabusa (optional imports).

TorchSim (``torch-sim-atomistic``, needs Python ≥ 3.12) runs as its users would run it: its
``SimState`` from the same ase.Atoms, its ``LennardJonesModel`` (or a ``PairPotentialModel``
with the Kob–Andersen pair function for the mixture), its default neighbor list (rebuilt at
every step) and its ``nve_step`` / ``nvt_nose_hoover_step`` integrators, in reduced units
(σ = ε = m = 1). Each runner returns the row of the bench table, or ``{"missing": reason}``
when the peer cannot be imported.
"""

from __future__ import annotations

import time

import torch

from .timing import sync

KA_PAIRS = {  # (zi, zj) → (ε, σ); atomic numbers of KA_SYMBOLS: A = H (1), B = He (2)
    (1, 1): (1.0, 1.0), (1, 2): (1.5, 0.8), (2, 1): (1.5, 0.8), (2, 2): (0.5, 0.88)}


def torchsim_version() -> str | None:
    try:
        import importlib.metadata

        import torch_sim  # noqa: F401

        return importlib.metadata.version("torch-sim-atomistic")
    except Exception:  # ImportError, or a SyntaxError on Python < 3.12
        return None


def _ka_pair_energy(dr: torch.Tensor, zi: torch.Tensor, zj: torch.Tensor) -> torch.Tensor:
    """Kob–Andersen pair energies [P], cut and shifted at 2.5 σ_ij."""
    eps = torch.full_like(dr, KA_PAIRS[(1, 1)][0])
    sig = torch.full_like(dr, KA_PAIRS[(1, 1)][1])
    for (a, b), (e, s) in KA_PAIRS.items():
        pick = (zi == a) & (zj == b)
        eps = torch.where(pick, e, eps)
        sig = torch.where(pick, s, sig)
    s6 = (sig / dr) ** 6
    sc6 = (1 / 2.5) ** 6
    u = 4 * eps * (s6 * s6 - s6) - 4 * eps * (sc6 * sc6 - sc6)
    return torch.where(dr < 2.5 * sig, u, torch.zeros_like(u))


def torchsim_md(atoms_list, device, ensemble: str, steps: int, warmup: int,
                temperature: float, dtype: torch.dtype) -> dict:
    """Time TorchSim MD on ``atoms_list`` (one batch). ``ensemble``: "nve" (LJ, σ=ε=1,
    r_c=2.5) or "nvt" (Kob–Andersen, Nosé–Hoover chain). Returns ms/step, atom-steps/s and
    the starting potential energy per atom (to check it is the same system)."""
    version = torchsim_version()
    if version is None:
        return {"peer": "TorchSim", "missing": "torch_sim not importable (pip install "
                "torch-sim-atomistic==0.6.2; Python >= 3.12)"}
    import torch_sim as ts
    from torch_sim.models.lennard_jones import LennardJonesModel
    from torch_sim.models.pair_potential import PairPotentialModel

    state = ts.io.atoms_to_state(atoms_list, device=device, dtype=dtype)
    if ensemble == "nve":
        model = LennardJonesModel(sigma=1.0, epsilon=1.0, cutoff=2.5, device=device,
                                  dtype=dtype)
    else:
        model = PairPotentialModel(_ka_pair_energy, cutoff=2.5, device=device, dtype=dtype,
                                   reduce_to_half_list=True)
    dt = torch.tensor(0.005, device=device, dtype=dtype)
    kT = torch.tensor(temperature, device=device, dtype=dtype)
    state.rng = 0
    if ensemble == "nve":
        md = ts.nve_init(state, model, kT=kT)

        def step(s):
            return ts.nve_step(s, model, dt=dt)
    else:
        md = ts.nvt_nose_hoover_init(state, model, kT=kT, dt=dt)

        def step(s):
            return ts.nvt_nose_hoover_step(s, model, dt=dt, kT=kT)
    n_atoms = sum(len(a) for a in atoms_list)
    potential_per_atom = float(md.energy.sum()) / n_atoms
    for _ in range(warmup):
        md = step(md)
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        md = step(md)
    sync(device)
    seconds = time.perf_counter() - start
    return {"peer": f"TorchSim {version}", "atoms": n_atoms, "systems": len(atoms_list),
            "steps": steps, "ms_per_step": 1e3 * seconds / steps,
            "atom_steps_per_s": n_atoms * steps / seconds,
            "potential_energy_per_atom": potential_per_atom,
            "dtype": str(dtype).removeprefix("torch.")}
