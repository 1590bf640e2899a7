"""Pair potentials on the padded full neighbor matrix, with analytic forces and virial.

Each atom sums over its own row of the matrix, so forces need no scatter (no atomics):
F_i = Σ_j u'(r_ij) r_ij / r_ij with r_ij = r_j − r_i, atom energy ½ Σ_j u(r_ij), and
stress (1/V) ½ Σ_ij u'(r_ij) r_ij ⊗ r_ij / r_ij.

Truncation at r_c (per type pair): ``"none"`` (plain cut), ``"shift"`` (u − u(r_c)),
``"shift_force"`` (u − u(r_c) − (r − r_c) u'(r_c)).
"""

from __future__ import annotations

import abc

import torch

from ..errors import InputError
from ..state import sum_over_systems
from .base import PRECISIONS, Potential, PotentialResult

TRUNCATIONS = ("none", "shift", "shift_force")
# "float64": pair terms in the state's dtype. "float32": pair vectors are formed in the state's
# dtype (float64 positions keep their precision), the pair terms and per-atom sums run in
# float32, and system energies and virials are accumulated in float64 ("mixed" is the same
# for a pair potential, which has no network).


def type_matrix(value, n_types: int, name: str) -> torch.Tensor:
    """A per-type-pair parameter [T, T] from a scalar or a symmetric matrix."""
    t = torch.as_tensor(value, dtype=torch.float64)
    if t.ndim == 0:
        return t.expand(n_types, n_types).clone()
    if t.shape != (n_types, n_types) or not torch.allclose(t, t.T):
        raise InputError(f"{name} must be a scalar or a symmetric {n_types}x{n_types} matrix, "
                         f"got shape {tuple(t.shape)}")
    return t


class PairPotential(Potential, metaclass=abc.ABCMeta):
    """Subclasses implement ``pair(r, params) -> (u, du/dr)`` with params [N, K] tensors."""

    def __init__(self, params: dict, cutoff, truncation: str, n_types: int | None = None,
                 precision: str = "float64"):
        super().__init__()
        if truncation not in TRUNCATIONS:
            raise InputError(f"truncation must be one of {list(TRUNCATIONS)}, got {truncation!r}")
        if precision not in PRECISIONS:
            raise InputError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
        self.precision = "float32" if precision == "mixed" else precision
        if n_types is None:
            n_types = max(torch.as_tensor(v).shape[0] if torch.as_tensor(v).ndim else 1
                          for v in [*params.values(), cutoff])
        self.n_types = n_types
        self.truncation = truncation
        self.param_names = tuple(params)
        for name, value in params.items():
            self.register_buffer(name, type_matrix(value, n_types, name))
        self.register_buffer("cutoff_matrix", type_matrix(cutoff, n_types, "cutoff"))
        if not bool((self.cutoff_matrix > 0).all()):
            raise InputError("cutoff must be positive")
        self.cutoff = float(self.cutoff_matrix.max())
        rc = self.cutoff_matrix
        u_c, du_c = self.pair(rc, {n: getattr(self, n) for n in self.param_names})
        self.register_buffer("u_at_cutoff", u_c if truncation != "none" else torch.zeros_like(rc))
        self.register_buffer("du_at_cutoff",
                             du_c if truncation == "shift_force" else torch.zeros_like(rc))

    @abc.abstractmethod
    def pair(self, r: torch.Tensor, p: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """u(r) and du/dr for distances r [N, K] with per-pair parameters p[name] [N, K]."""

    def forward(self, state, neighbors, compute_stress: bool = False) -> PotentialResult:
        vec = neighbors.pair_vectors(state)  # [N, K, 3]
        if self.precision == "float32":
            vec = vec.to(torch.float32)
        ti = state.type_ids[:, None]
        tj = state.type_ids[neighbors.neighbors]
        dtype = vec.dtype
        rc = self.cutoff_matrix.to(dtype)[ti, tj]
        r2 = (vec * vec).sum(-1)
        within = neighbors.mask & (r2 < rc * rc)
        r = torch.sqrt(torch.where(within, r2, torch.ones_like(r2)))
        p = {n: getattr(self, n).to(dtype)[ti, tj] for n in self.param_names}
        u, du = self.pair(r, p)
        du_c = self.du_at_cutoff.to(dtype)[ti, tj]
        u = u - self.u_at_cutoff.to(dtype)[ti, tj] - (r - rc) * du_c
        du = du - du_c
        zero = torch.zeros_like(u)
        u = torch.where(within, u, zero)
        f_over_r = torch.where(within, du / r, zero)  # u'(r)/r
        forces = (f_over_r[..., None] * vec).sum(1).to(state.dtype)
        atom_energy = 0.5 * u.sum(1)
        energy = sum_over_systems(atom_energy, state.system_idx, state.n_systems)
        stress = None
        if compute_stress:
            atom_virial = 0.5 * torch.einsum("nk,nka,nkb->nab", f_over_r, vec, vec)
            virial = sum_over_systems(atom_virial, state.system_idx, state.n_systems)
            stress = virial / state.volume.to(torch.float64)[:, None, None]
        return PotentialResult(energy=energy, forces=forces, stress=stress,
                               atom_energy=atom_energy)


class LennardJones(PairPotential):
    """u(r) = 4ε[(σ/r)¹² − (σ/r)⁶]; ε, σ, cutoff scalars or [T, T] per type pair.

    On a CUDA device with a MinImageNeighborList, energy and forces come from one fused Triton
    kernel (``triton_pair``); stress and every other case use the PyTorch path. Core radius
    σ_min/2, where u ≈ 1.6·10⁴ ε."""

    def __init__(self, epsilon=1.0, sigma=1.0, cutoff=2.5, truncation: str = "shift",
                 n_types: int | None = None, precision: str = "float64"):
        super().__init__({"epsilon": epsilon, "sigma": sigma}, cutoff, truncation, n_types,
                         precision)
        self.core_radius = 0.5 * float(self.sigma.min())
        rc = self.cutoff_matrix
        table = torch.stack([4 * self.epsilon, self.sigma**2, rc**2, rc, self.u_at_cutoff,
                             self.du_at_cutoff], dim=-1)
        self.register_buffer("fused_table", table.reshape(-1, 6).contiguous())

    def forward(self, state, neighbors, compute_stress: bool = False) -> PotentialResult:
        if compute_stress or getattr(neighbors, "kind", None) != "min_image" \
                or state.device.type != "cuda" or state.dtype != torch.float64:
            return super().forward(state, neighbors, compute_stress)
        from .triton_pair import lj_forces

        forces, atom_energy = lj_forces(state, neighbors, self.fused_table, self.n_types,
                                        self.precision == "float32",
                                        self.truncation == "shift_force")
        energy = sum_over_systems(atom_energy, state.system_idx, state.n_systems)
        return PotentialResult(energy=energy, forces=forces, atom_energy=atom_energy)

    def pair(self, r, p):
        sr6 = (p["sigma"] / r) ** 6
        u = 4 * p["epsilon"] * (sr6 * sr6 - sr6)
        du = -24 * p["epsilon"] * (2 * sr6 * sr6 - sr6) / r
        return u, du


class Morse(PairPotential):
    """u(r) = D[e^{−2α(r−r0)} − 2e^{−α(r−r0)}]; D, α, r0, cutoff scalars or per type pair.
    Core radius min(r0 − 3/α) (u ≈ 360 D there), at least 0."""

    def __init__(self, D=1.0, alpha=1.0, r0=1.0, cutoff=5.0, truncation: str = "shift",
                 n_types: int | None = None, precision: str = "float64"):
        super().__init__({"D": D, "alpha": alpha, "r0": r0}, cutoff, truncation, n_types,
                         precision)
        self.core_radius = max(0.0, float((self.r0 - 3.0 / self.alpha).min()))

    def pair(self, r, p):
        e = torch.exp(-p["alpha"] * (r - p["r0"]))
        u = p["D"] * (e * e - 2 * e)
        du = -2 * p["alpha"] * p["D"] * (e * e - e)
        return u, du


def kob_andersen(truncation: str = "shift_force", precision: str = "float64") -> LennardJones:
    """Kob–Andersen 80:20 binary LJ mixture (type 0 = A, type 1 = B), r_c = 2.5 σ_αβ.

    ε_AA=1, ε_AB=1.5, ε_BB=0.5; σ_AA=1, σ_AB=0.8, σ_BB=0.88; equal masses (reduced units).
    """
    epsilon = [[1.0, 1.5], [1.5, 0.5]]
    sigma = [[1.0, 0.8], [0.8, 0.88]]
    cutoff = [[2.5 * s for s in row] for row in sigma]
    return LennardJones(epsilon, sigma, cutoff, truncation, precision=precision)
