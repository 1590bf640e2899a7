"""DeepPot-SE (the ``se_e2_a`` descriptor of DeePMD) as a hayabusa Potential.

For every neighbour j of atom i within r_cut (from the padded full neighbor matrix):
    s(r) = 1/r for r < r_smth; (1/r)[u³(−6u² + 15u − 10) + 1] with
           u = (r − r_smth)/(r_cut − r_smth) on [r_smth, r_cut); 0 beyond (C² smooth)
    R_j = s(r)·[1, x/r, y/r, z/r] [4], divided per centre type by the stored scales dstd.
Unlike deepmd-kit no mean is subtracted: deepmd-kit keeps a fixed number of neighbour slots,
so a neighbour entering the cutoff takes the place of an identical padding slot; our matrix
has a variable capacity, and a shifted entry would make the energy jump at r_cut.

An embedding net of the neighbour's type maps s(r) to G_j [M]. With
T = (1/N_c) Σ_j G_jᵀ R̂_j [M, 4], the descriptor D = T T_<ᵀ [M, M_<] (T_< = the first
``axis_neurons`` columns of G's side) is invariant under rotation, translation and
permutation. A fitting net of the centre's type maps D to the atom energy;
E = Σ atom energies + E0[type]. Forces and virial come from autograd of E (conservative).
Architecture after Zhang et al., NeurIPS 2018, and deepmd-kit's documentation (see
shared/reference/mlip-models.md); the code is ours.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError
from ..potentials import Potential, PotentialResult
from ..state import sum_over_systems

PRECISIONS = ("float64", "float32", "mixed")


def smooth_inverse(r: torch.Tensor, r_smth: float, r_cut: float) -> torch.Tensor:
    """s(r): 1/r switched smoothly (C²) to zero between r_smth and r_cut."""
    u = ((r - r_smth) / (r_cut - r_smth)).clamp(0.0, 1.0)
    switch = u**3 * (-6 * u**2 + 15 * u - 10) + 1
    return torch.where(r < r_cut, switch / r, torch.zeros_like(r))


class ResidualMLP(nn.Module):
    """Tanh MLP; a layer whose width equals (or doubles) its input's adds a residual."""

    def __init__(self, n_in: int, widths: list[int], n_out: int | None = None):
        super().__init__()
        sizes = [n_in, *widths]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:],
                                                                       strict=False))
        self.out = nn.Linear(sizes[-1], n_out) if n_out is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            y = torch.tanh(layer(x))
            if y.shape[-1] == x.shape[-1]:
                x = x + y
            elif y.shape[-1] == 2 * x.shape[-1]:
                x = torch.cat([x, x], dim=-1) + y
            else:
                x = y
        return self.out(x) if self.out is not None else x


class DeepPotSE(Potential):
    """DeepPot-SE model. ``species``: atomic numbers in type order; lengths Å, energies eV.

    ``precision``: "float64"; "float32" (everything in float32 except the float64 sums of
    system energies); "mixed" (environment matrix in float64, networks in float32, energies
    accumulated in float64).
    """

    def __init__(self, species, r_cut: float = 6.0, r_smth: float = 0.5,
                 embedding: tuple[int, ...] = (25, 50, 100), axis_neurons: int = 16,
                 fitting: tuple[int, ...] = (240, 240, 240), neighbor_norm: float = 50.0,
                 precision: str = "float64"):
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
        self.neighbor_norm = float(neighbor_norm)
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
        self.register_buffer("type_of_z", torch.full((119,), -1, dtype=torch.long))
        self.type_of_z[list(self.species)] = torch.arange(n_types)
        self.register_buffer("e0", torch.zeros(n_types, dtype=torch.float64))
        self.register_buffer("dstd", torch.ones(n_types, 4, dtype=torch.float64))
        net_dtype = torch.float64 if precision == "float64" else torch.float32
        self.embedding_nets.to(net_dtype)
        self.fitting_nets.to(net_dtype)
        self.net_dtype = net_dtype
        self.fused = False  # see uses_fused_embedding
        self._fused_key = self._fused_weights = None

    # ------------------------------------------------------------ environment
    def environment(self, state, neighbors, positions=None, cell=None):
        """R̂ [N, K, 4] scaled environment matrix, s(r) [N, K], centre/neighbour types."""
        st = state
        if positions is not None:
            st = _with(state, positions, cell)
        env_dtype = torch.float32 if self.precision == "float32" else torch.float64
        vec = neighbors.pair_vectors(st).to(env_dtype)  # [N, K, 3]
        r2 = (vec * vec).sum(-1)
        inside = neighbors.mask & (r2 < self.cutoff**2)
        r = torch.sqrt(torch.where(inside, r2, torch.ones_like(r2)))
        s = torch.where(inside, smooth_inverse(r, self.r_smth, self.cutoff), torch.zeros_like(r))
        env = torch.cat([s[..., None], (s / r)[..., None] * vec], dim=-1)  # [N, K, 4]
        ti = self.type_of_z[state.atomic_numbers]
        tj = ti[neighbors.neighbors]
        env = env / self.dstd.to(env_dtype)[ti][:, None, :]  # zero outside r_cut stays zero
        return env, s, inside, ti, tj

    def atom_energies(self, state, neighbors, positions=None, cell=None) -> torch.Tensor:
        """[N] float64 atom energies (E0 included)."""
        env, s, inside, ti, tj = self.environment(state, neighbors, positions, cell)
        compact = self.host_sync_allowed(s)
        n = s.shape[0]
        if self.uses_fused_embedding(s):
            t_mat = self.fused_contraction(env, s, inside, tj) / self.neighbor_norm
        elif compact:
            t_mat = self.contraction_by_type(env, s, inside, tj) / self.neighbor_norm
        else:
            g = self.embedding_dense(s, inside, tj)
            t_mat = torch.einsum("nkm,nkc->nmc", g, env.to(self.net_dtype)) / self.neighbor_norm
        desc = torch.einsum("nmc,nac->nma", t_mat, t_mat[:, : self.axis_neurons])
        desc = desc.reshape(n, -1)
        energy = torch.zeros(n, dtype=torch.float64, device=s.device)
        for t, net in enumerate(self.fitting_nets):
            if compact:  # each type's net on its own atoms only
                atoms = (ti == t).nonzero().squeeze(1)
                energy = energy.index_put((atoms,), net(desc[atoms])[:, 0].to(torch.float64))
            else:
                energy = torch.where(ti == t, net(desc)[:, 0].to(torch.float64), energy)
        return energy + self.e0[ti]

    def uses_fused_embedding(self, s: torch.Tensor) -> bool:
        """Whether the embedding nets and the Gᵀ R̂ contraction run as one Triton kernel
        (``fused_embedding``): only when ``self.fused`` is True, the model is not training
        (no gradient reaches the weights) and the nets fit the kernel (1–3 layers, the first
        wider than 2). Off by default: on an H200 it is slower than the PyTorch path (10,976
        Cu atoms, fwd+bwd: 45 ms against 16 ms in float64 — docs/benchmarks.md)."""
        widths = [layer.out_features for layer in self.embedding_nets[0].layers]
        return bool(self.fused) and not (self.training and torch.is_grad_enabled()) and \
            1 <= len(widths) <= 3 and widths[0] > 2

    def fused_contraction(self, env, s, inside, tj) -> torch.Tensor:
        """T·N_c [N, M, 4] = Σ_j G_jᵀ R̂_j by the fused kernel; no gradient reaches the weights."""
        from .fused_embedding import EmbeddingWeights, FusedEmbeddingContraction

        params = [p for net in self.embedding_nets for p in net.parameters()]
        key = (self.net_dtype, *((p.data_ptr(), p._version) for p in params))
        if self._fused_key != key:  # weights changed (loaded, trained, moved): re-pad them
            self._fused_weights = EmbeddingWeights(self.embedding_nets, self.net_dtype)
            self._fused_key = key
        order, start, count = slots_by_type(inside, tj, len(self.embedding_nets))
        return FusedEmbeddingContraction.apply(s.to(self.net_dtype), env.to(self.net_dtype),
                                               order, start, count, self._fused_weights)

    @staticmethod
    def host_sync_allowed(x: torch.Tensor) -> bool:
        """False while a CUDA graph is being captured: then the networks run on every slot
        and atom (dense) instead of on per-type sections of the slots within r_cut and index
        lists of the atoms (compact)."""
        return not (x.is_cuda and torch.cuda.is_current_stream_capturing())

    def embedding_dense(self, s, inside, tj) -> torch.Tensor:
        """G [N, K, M]: every type's net on every slot, selected by neighbour type (no host
        synchronisation: the path inside a CUDA graph)."""
        g = torch.zeros(*s.shape, self.embedding_nets[0].layers[-1].out_features,
                        dtype=self.net_dtype, device=s.device)
        s_in = s.to(self.net_dtype)[..., None]
        for t, net in enumerate(self.embedding_nets):
            g = torch.where((inside & (tj == t))[..., None], net(s_in), g)
        return g

    def contraction_by_type(self, env, s, inside, tj) -> torch.Tensor:
        """T·N_c [N, M, 4] as ``embedding_dense`` and the contraction give it, but each
        neighbour type's net runs on a dense section of that type's slots within r_cut
        ([N, k_t], k_t = the most such slots of one atom; one host sync), as deepmd-kit's
        per-type ``sel`` sized from the data. Slots a section pads with have R̂ = 0, so they
        add nothing and G needs no mask; no [N, K, M] tensor is scattered or gathered."""
        order, first, counts = slots_by_type(inside, tj, len(self.embedding_nets))
        widths = counts.max(0).values.tolist() if counts.numel() else [0] * counts.shape[1]
        env = env.to(self.net_dtype)
        t_mat = torch.zeros(s.shape[0], self.embedding_nets[0].layers[-1].out_features, 4,
                            dtype=self.net_dtype, device=s.device)
        for t, (net, k) in enumerate(zip(self.embedding_nets, widths, strict=True)):
            col = torch.arange(k, device=s.device)  # k = 0 still joins the autograd graph
            slot = torch.gather(order, 1, (first[:, t, None] + col).clamp(max=order.shape[1] - 1))
            slot = slot.long()
            valid = (col < counts[:, t, None])[..., None]
            env_t = torch.gather(env, 1, slot[..., None].expand(-1, -1, 4)) * valid
            g = net(torch.gather(s, 1, slot).to(self.net_dtype)[..., None])
            t_mat = t_mat + torch.einsum("nkm,nkc->nmc", g, env_t)
        return t_mat

    # --------------------------------------------------------------- protocol
    def forward(self, state, neighbors, compute_stress: bool = False) -> PotentialResult:
        """Energy, forces (−∂E/∂r) and stress ((1/V) ∂E/∂ε) by autograd. In training mode
        with gradients enabled the results keep their graph (for force and stress losses);
        otherwise they are detached."""
        keep_graph = self.training and torch.is_grad_enabled()
        with torch.enable_grad():
            positions = state.positions.detach().requires_grad_(True)
            strain = torch.zeros(state.n_systems, 3, 3, dtype=state.dtype, device=state.device,
                                 requires_grad=compute_stress)
            deform = torch.eye(3, dtype=state.dtype, device=state.device) + strain
            pos = torch.einsum("ni,nij->nj", positions, deform[state.system_idx])
            cell = torch.einsum("sij,sjk->sik", state.cell, deform)
            atom_energy = self.atom_energies(state, neighbors, pos, cell)
            energy = sum_over_systems(atom_energy, state.system_idx, state.n_systems)
            inputs = [positions, strain] if compute_stress else [positions]
            grads = torch.autograd.grad(energy.sum(), inputs, create_graph=keep_graph)
        if not keep_graph:
            energy, atom_energy = energy.detach(), atom_energy.detach()
        stress = None
        if compute_stress:
            stress = grads[1].to(torch.float64) / state.volume.to(torch.float64)[:, None, None]
        return PotentialResult(energy=energy, forces=-grads[0], stress=stress,
                               atom_energy=atom_energy)


def slots_by_type(inside: torch.Tensor, tj: torch.Tensor, n_types: int):
    """Each row's slots within r_cut grouped by neighbour type, with no host sync:
    ``order`` [N, K] (int32), ``start`` and ``count`` [N, T] (int32)."""
    key = torch.where(inside, tj, n_types).to(torch.int32)
    order = torch.argsort(key, dim=1, stable=True).to(torch.int32)
    count = torch.stack([(key == t).sum(1) for t in range(n_types)], 1).to(torch.int32)
    start = (torch.cumsum(count, 1, dtype=torch.int32) - count).contiguous()
    return order.contiguous(), start, count.contiguous()


def _with(state, positions, cell):
    """A shallow copy of ``state`` with other positions and cell (keeps the autograd graph)."""
    from dataclasses import replace

    return replace(state, positions=positions, cell=cell)
