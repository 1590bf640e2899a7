"""DeepPot-SE (the ``se_e2_a`` descriptor of DeePMD): a model core, tensors in and out.

``DeepPotSE.forward(positions, cell, atom_types, system_idx, neighbors, shifts, sel,
centers)`` → atom energies [N] (eV, float64). Inputs: positions [N, 3] Å; cell [S, 3, 3]
rows; atom types [N] int64 in the model's species order; system_idx [N]; ``neighbors``
[N, Σsel] int64 and ``shifts`` [N, Σsel, 3] — every atom's neighbours within r_cut grouped
by type, type t in a section of ``sel[t]`` columns, −1 where empty (``neighbors.typed``);
``centers`` per type the atoms of that type. No host syncs and no shapes that depend on
values: the sections come with the neighbours. Forces and virial come from autograd of the
energy (``ModelPotential``).

For every neighbour j of atom i:
    s(r) = 1/r for r < r_smth; (1/r)[u³(−6u² + 15u − 10) + 1] with
           u = (r − r_smth)/(r_cut − r_smth) on [r_smth, r_cut); 0 beyond (C² smooth)
    R_j = s(r)·[1, x/r, y/r, z/r] [4], divided per centre type by the stored scales dstd.
Unlike deepmd-kit no mean is subtracted: a neighbour entering the cutoff takes an empty
column, and a shifted entry would make the energy jump at r_cut.

An embedding net of the neighbour's type maps s(r) to G_j [M]. With
T = (1/N_c) Σ_j G_jᵀ R̂_j [M, 4], the descriptor D = T T_<ᵀ [M, M_<] (T_< = the first
``axis_neurons`` columns of G's side) is invariant under rotation, translation and
permutation. A fitting net of the centre's type maps D to the atom energy;
E = Σ atom energies + E0[type]. Architecture after Zhang et al., NeurIPS 2018, and
deepmd-kit's documentation (see shared/reference/mlip-models.md); the code is ours.

Inference (no weight gradients) uses the custom operators of ``ops`` (Triton on a GPU);
training and exported files use their PyTorch references (``kernels = False``).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from ..errors import InputError
from ..neighbors import TypedRequest
from ..neighbors.verlet import gather_rows
from ..potentials.base import PRECISIONS
from .ops import environment_reference, smooth_inverse  # noqa: F401  (smooth_inverse: API)
from .registry import ModelKind, ModelSettings, Positive, PositiveInt, register

#: the share of the smallest pair distance of the training data below which the model is not
#: trusted (``core_radius``, the md health check)
CORE_SHARE = 0.7


class ResidualMLP(nn.Module):
    """Tanh MLP; a layer whose width equals (or doubles) its input's adds a residual."""

    def __init__(self, n_in: int, widths: list[int], n_out: int | None = None):
        super().__init__()
        sizes = [n_in, *widths]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:],
                                                                       strict=False))
        self.out = nn.Linear(sizes[-1], n_out) if n_out is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            y = torch.tanh(layer(x))
            if y.shape[-1] == x.shape[-1]:
                x = x + y
            elif y.shape[-1] == 2 * x.shape[-1]:
                x = torch.cat([x, x], dim=-1) + y
            else:
                x = y
        return self.out(x)

    def weights(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The layers' weights [out, in] and biases (for ``ops.tangent_contraction``)."""
        return [layer.weight for layer in self.layers], [layer.bias for layer in self.layers]


class DeepPotSE(nn.Module):
    """DeepPot-SE model core. ``species``: atomic numbers in type order; lengths Å, energies
    eV.

    ``precision``: "float64"; "float32" (everything in float32 except the float64 sums of
    system energies); "mixed" (environment matrix in float64, networks in float32, energies
    accumulated in float64).
    """

    kind = "deeppot_se"
    __jit_unused_properties__ = ["typed_request", "core_radius"]  # engine side, not exported
    # a TorchScript constant: with kernels False the operator branches are not compiled, so an
    # exported file needs no hayabusa operators
    __constants__ = ["kernels"]

    def __init__(self, species, r_cut: float = 6.0, r_smth: float = 0.5,
                 embedding: tuple[int, ...] = (25, 50, 100), axis_neurons: int = 16,
                 fitting: tuple[int, ...] = (240, 240, 240),
                 neighbor_norm: float | None = 50.0, precision: str = "float64"):
        """``neighbor_norm`` None: set by ``fit_input_statistics`` (mean neighbours)."""
        super().__init__()
        if not 0 < r_smth < r_cut:
            raise InputError(f"DeepPot-SE: need 0 < r_smth < r_cut, got {r_smth}, {r_cut}")
        if axis_neurons > embedding[-1]:
            raise InputError("DeepPot-SE: axis_neurons must not exceed the last embedding width")
        if precision not in PRECISIONS:
            raise InputError(f"DeepPot-SE: precision must be one of {PRECISIONS}")
        self.species = tuple(int(z) for z in species)
        self.cutoff = float(r_cut)
        self.r_smth = float(r_smth)
        self.axis_neurons = axis_neurons
        self.neighbor_norm = None if neighbor_norm is None else float(neighbor_norm)
        self.precision = precision
        self.config = {"species": list(self.species), "r_cut": r_cut, "r_smth": r_smth,
                       "embedding": list(embedding), "axis_neurons": axis_neurons,
                       "fitting": list(fitting), "neighbor_norm": neighbor_norm,
                       "precision": precision}
        n_types = len(self.species)
        m = embedding[-1]
        self.embedding_nets = nn.ModuleList(ResidualMLP(1, list(embedding))
                                            for _ in range(n_types))
        self.fitting_nets = nn.ModuleList(ResidualMLP(m * axis_neurons, list(fitting), 1)
                                          for _ in range(n_types))
        self.register_buffer("e0", torch.zeros(n_types, dtype=torch.float64))
        self.register_buffer("dstd", torch.ones(n_types, 4, dtype=torch.float64))
        self.register_buffer("min_distance", torch.zeros((), dtype=torch.float64))
        self.register_buffer("max_neighbors", torch.zeros(n_types, dtype=torch.int64))
        self.net_dtype = torch.float64 if precision == "float64" else torch.float32
        self.env_dtype = torch.float32 if precision == "float32" else torch.float64
        self.embedding_nets.to(self.net_dtype)
        self.fitting_nets.to(self.net_dtype)
        self.kernels = True  # inference through ops' custom operators; False: references

    #: buffers that files of earlier versions may lack (their defaults stay)
    optional_state = ("min_distance", "max_neighbors")
    #: buffers that files of earlier versions hold and this version no longer reads
    retired_state = ("type_of_z",)

    @property
    def typed_request(self) -> TypedRequest:
        """The neighbours this model reads: within r_cut, grouped by its species."""
        return TypedRequest(self.cutoff, self.species)

    @property
    def core_radius(self) -> float:
        """Å: pairs closer than this are far outside the training data (0: unknown)."""
        return CORE_SHARE * float(self.min_distance)

    # ------------------------------------------------------------- model state
    def set_reference_energies(self, e0) -> None:
        """Per-species reference energies [T] (eV), added to every atom's energy."""
        with torch.no_grad():
            self.e0.copy_(torch.as_tensor(e0, dtype=torch.float64))

    def fit_input_statistics(self, batches) -> None:
        """Statistics of the training inputs, from (state, neighbor list) pairs: ``dstd``
        [T, 4], the RMS of the environment-matrix entries over every neighbour within r_cut
        (radial, and the three angular columns together) per centre type, so the networks see
        inputs of order one; ``neighbor_norm`` (if None) the mean number of neighbours within
        r_cut; ``min_distance`` the smallest pair distance; ``max_neighbors`` [T] the most
        neighbours of each type one atom has within r_cut (sizes exported type sections)."""
        n_types = len(self.species)
        sums = torch.zeros(n_types, 3, dtype=torch.float64, device=self.dstd.device)
        pairs = atoms = 0
        closest = math.inf
        with torch.no_grad():
            self.dstd.fill_(1.0)
            self.max_neighbors.zero_()
            for state, neighbors in batches:
                typed = neighbors.typed(state, self.typed_request)
                env, s = self.environment(state.positions, state.cell, typed.types,
                                          state.system_idx, typed.index, typed.shifts, False)
                inside = s > 0
                centre = typed.types[:, None].expand_as(s)
                for t in range(n_types):
                    e = env[inside & (centre == t)].double()
                    sums[t] += torch.stack([e[:, 0].pow(2).sum(), e[:, 1:].pow(2).sum(),
                                            e.new_tensor(float(e.shape[0]))])
                pairs += int(inside.sum())
                atoms += state.n_atoms
                start = 0
                for t, width in enumerate(typed.sel):
                    most = (inside[:, start:start + width]).sum(1).max() if width else 0
                    self.max_neighbors[t] = max(int(self.max_neighbors[t]), int(most))
                    start += width
                if bool(inside.any()):
                    vec = self.pair_vectors(state.positions, state.cell, state.system_idx,
                                            typed.index, typed.shifts)
                    closest = min(closest, float(vec[inside].norm(dim=-1).min()))
            for t in range(n_types):
                if sums[t, 2] > 0:
                    radial, angular = (sums[t, :2] / (sums[t, 2] * torch.tensor(
                        [1.0, 3.0], dtype=torch.float64, device=sums.device))).sqrt()
                    self.dstd[t] = torch.stack([radial, angular, angular, angular])
            if math.isfinite(closest):
                self.min_distance.fill_(closest)
        if self.neighbor_norm is None:
            self.neighbor_norm = round(pairs / max(atoms, 1), 4)
            self.config["neighbor_norm"] = self.neighbor_norm

    # -------------------------------------------------------------- the core
    def forward(self, positions: torch.Tensor, cell: torch.Tensor, atom_types: torch.Tensor,
                system_idx: torch.Tensor, neighbors: torch.Tensor, shifts: torch.Tensor,
                sel: list[int], centers: list[torch.Tensor]) -> torch.Tensor:
        """[N] float64 atom energies (E0 included); see the module docstring."""
        training = self.training and torch.is_grad_enabled()
        fused = self.kernels and not training
        env, s = self.environment(positions, cell, atom_types, system_idx, neighbors, shifts,
                                  fused)
        n = positions.shape[0]
        t_mat = self.contraction(s, env, sel, fused)
        t_mat = t_mat / self.neighbor_norm
        desc = torch.einsum("nmc,nac->nma", t_mat, t_mat[:, : self.axis_neurons]).reshape(n, -1)
        if len(self.fitting_nets) == 1:
            energy = self.fitting_nets[0](desc)[:, 0].to(torch.float64)
        else:
            energy = torch.zeros(n, dtype=torch.float64, device=positions.device)
            for t, net in enumerate(self.fitting_nets):  # each type's net on its own atoms
                atoms = centers[t]
                energy = energy.index_put((atoms,), net(desc[atoms])[:, 0].to(torch.float64))
        return energy + self.e0[atom_types]

    def contraction(self, s: torch.Tensor, env: torch.Tensor, sel: list[int],
                    fused: bool) -> torch.Tensor:
        """T·N_c [N, M, 4] = Σ_j G_t(s_j)ᵀ R̂_j over each type t's section of ``sel[t]``
        columns of s [N, K] and R̂ [N, K, 4]: the tangent operator (``fused``) or autograd
        through the nets (training, references)."""
        s, env = s.to(self.net_dtype), env.to(self.net_dtype)
        t_mat = torch.zeros(s.shape[0], self.embedding_nets[0].layers[-1].out_features, 4,
                            dtype=self.net_dtype, device=s.device)
        start = 0
        for t, net in enumerate(self.embedding_nets):
            stop = start + sel[t]
            s_t, env_t = s[:, start:stop], env[:, start:stop]
            if self.kernels and fused:
                w, b = net.weights()
                t_mat = t_mat + torch.ops.hayabusa.tangent_contraction(s_t, env_t, w, b)[0]
            else:
                t_mat = t_mat + torch.einsum("nkm,nkc->nmc", net(s_t[..., None]), env_t)
            start = stop
        return t_mat

    def pair_vectors(self, positions, cell, system_idx, neighbors, shifts) -> torch.Tensor:
        """[N, K, 3] r_j + shift·cell − r_i in the environment dtype (zeros where empty)."""
        pos = positions.to(self.env_dtype)
        return gather_rows(pos, neighbors.clamp(min=0)) - pos[:, None, :] + torch.einsum(
            "nki,nij->nkj", shifts.to(self.env_dtype), cell.to(self.env_dtype)[system_idx])

    def environment(self, positions, cell, atom_types, system_idx, neighbors, shifts,
                    fused: bool):
        """(R̂ [N, K, 4], s [N, K]) in the environment dtype."""
        mask = neighbors >= 0
        vec = self.pair_vectors(positions, cell, system_idx, neighbors, shifts)
        inv_std = (1.0 / self.dstd.to(self.env_dtype))[atom_types]
        if self.kernels and fused:
            s, env = torch.ops.hayabusa.environment(vec, mask, inv_std, self.r_smth, self.cutoff)
        else:
            s, env = environment_reference(vec, mask, inv_std, self.r_smth, self.cutoff)
        return env, s

class DeepPotSESettings(ModelSettings):
    """The ``model:`` section for DeepPot-SE (lengths Å)."""

    type: Literal["deeppot_se"] = "deeppot_se"
    r_cut_A: Positive = 6.0
    r_smth_A: Positive = 0.5
    embedding: list[PositiveInt] = Field(default=[25, 50, 100], min_length=1)
    axis_neurons: PositiveInt = 16
    fitting: list[PositiveInt] = Field(default=[240, 240, 240], min_length=1)
    neighbor_norm: Positive | None = None

    @model_validator(mode="after")
    def _geometry(self):
        if self.r_smth_A >= self.r_cut_A:
            raise ValueError(f"r_smth_A ({self.r_smth_A:g}) must be below r_cut_A "
                             f"({self.r_cut_A:g})")
        if self.axis_neurons > self.embedding[-1]:
            raise ValueError(f"axis_neurons ({self.axis_neurons}) must not exceed the last "
                             f"embedding width ({self.embedding[-1]})")
        return self


def build_deeppot(settings: DeepPotSESettings, species) -> DeepPotSE:
    """An untrained DeepPot-SE for ``species`` (atomic numbers) from its settings."""
    return DeepPotSE(species, r_cut=settings.r_cut_A, r_smth=settings.r_smth_A,
                     embedding=tuple(settings.embedding), axis_neurons=settings.axis_neurons,
                     fitting=tuple(settings.fitting), neighbor_norm=settings.neighbor_norm,
                     precision=settings.precision)


register(ModelKind("deeppot_se", DeepPotSE, DeepPotSESettings, build_deeppot))
