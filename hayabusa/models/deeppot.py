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

import math

import torch
from torch import nn

from ..errors import InputError
from ..potentials import Potential, PotentialResult
from ..potentials.base import shapes_fixed
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

    def forward_with_tangent(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(y, dy/ds) [..., M] for a scalar input s [...] (n_in = 1, no output layer): the
        derivative is carried forward through the layers (forward mode), one more matmul
        per layer, so a backward pass needs no stored activations."""
        x, dx = s[..., None], torch.ones_like(s)[..., None]
        for layer in self.layers:
            y = torch.tanh(layer(x))
            dy = (1 - y * y) * (dx @ layer.weight.T)
            if y.shape[-1] == x.shape[-1]:
                x, dx = x + y, dx + dy
            elif y.shape[-1] == 2 * x.shape[-1]:
                x, dx = torch.cat([x, x], dim=-1) + y, torch.cat([dx, dx], dim=-1) + dy
            else:
                x, dx = y, dy
        return x, dx


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
        self._kernel_key = self._kernel_weights = None  # see embedding_with_tangent
        self._fixed: SectionSizes | None = None  # see fix_sizes

    # ------------------------------------------------------------ environment
    def environment(self, state, neighbors, positions=None, cell=None):
        """R̂ [N, K, 4] scaled environment matrix, s(r) [N, K], the slots within r_cut
        [N, K] and the centre/neighbour types. On a CUDA device one Triton kernel each way
        (``environment_kernel``)."""
        st = state
        if positions is not None:
            st = _with(state, positions, cell)
        env_dtype = torch.float32 if self.precision == "float32" else torch.float64
        vec = neighbors.pair_vectors(st).to(env_dtype)  # [N, K, 3]
        ti = self.type_of_z[state.atomic_numbers]
        tj = ti[neighbors.neighbors]
        dstd = self.dstd.to(env_dtype)[ti]
        if vec.is_cuda:
            from .environment_kernel import EnvironmentMatrix

            s, env, inside = EnvironmentMatrix.apply(vec, neighbors.mask, 1.0 / dstd,
                                                     self.r_smth, self.cutoff)
            return env, s, inside, ti, tj
        r2 = (vec * vec).sum(-1)
        inside = neighbors.mask & (r2 < self.cutoff**2)
        r = torch.sqrt(torch.where(inside, r2, torch.ones_like(r2)))
        s = torch.where(inside, smooth_inverse(r, self.r_smth, self.cutoff), torch.zeros_like(r))
        env = torch.cat([s[..., None], (s / r)[..., None] * vec], dim=-1)  # [N, K, 4]
        env = env / dstd[:, None, :]  # zero outside r_cut stays zero
        return env, s, inside, ti, tj

    def atom_energies(self, state, neighbors, positions=None, cell=None) -> torch.Tensor:
        """[N] float64 atom energies (E0 included)."""
        env, s, inside, ti, tj = self.environment(state, neighbors, positions, cell)
        sizes = self.fixed_sizes(state) if shapes_fixed(s) else None
        n = s.shape[0]
        t_mat = self.contraction(env, s, inside, tj, sizes) / self.neighbor_norm
        desc = torch.einsum("nmc,nac->nma", t_mat, t_mat[:, : self.axis_neurons])
        desc = desc.reshape(n, -1)
        if len(self.fitting_nets) == 1:
            return self.fitting_nets[0](desc)[:, 0].to(torch.float64) + self.e0[ti]
        energy = torch.zeros(n, dtype=torch.float64, device=s.device)
        for t, net in enumerate(self.fitting_nets):  # each type's net on its own atoms only
            atoms = (ti == t).nonzero().squeeze(1) if sizes is None else sizes.atoms[t]
            energy = energy.index_put((atoms,), net(desc[atoms])[:, 0].to(torch.float64))
        return energy + self.e0[ti]

    # ----------------------------------------------------------- fixed shapes
    def fix_sizes(self, state, neighbors) -> tuple:
        """Section widths for evaluations inside ``fixed_shapes()`` (no host sync, as in a
        CUDA graph): for each neighbour type the most of its slots within r_cut that one atom
        has now (or had since the last call), plus 1/16 (at least 2), rounded up to even. On
        the same atoms the widths stay unless an evaluation outgrew them, and never shrink.
        Also each type's atoms (fixed during MD)."""
        key = SectionSizes.key_of(state)
        before = self._fixed
        if before is None or before.key != key or \
                not torch.equal(before.numbers, state.atomic_numbers):  # other atoms
            before = None
        elif not bool(before.overflowed()):
            return tuple(before.widths)
        with torch.no_grad():
            _, _, inside, ti, tj = self.environment(state, neighbors)
            most = slots_by_type(inside, tj, len(self.embedding_nets))[2].amax(0)
        if before is not None:
            most = torch.maximum(most, before.seen)
        widths = [section_width(w) for w in most.tolist()]
        if before is not None:
            widths = [max(a, b) for a, b in zip(widths, before.widths, strict=True)]
        atoms = [(ti == t).nonzero().squeeze(1) for t in range(len(widths))]
        self._fixed = SectionSizes(key, state.atomic_numbers.clone(), widths, atoms)
        return tuple(widths)

    def fixed_sizes(self, state) -> SectionSizes:
        """The sizes ``fix_sizes`` set for ``state``'s atoms."""
        if self._fixed is None or self._fixed.key != SectionSizes.key_of(state):
            raise InputError("DeepPot-SE inside fixed_shapes() (a CUDA graph): call "
                             "model.fix_sizes(state, neighbors) for these atoms first")
        return self._fixed

    def sizes_overflowed(self) -> torch.Tensor | None:
        return None if self._fixed is None else self._fixed.overflowed()

    # ------------------------------------------------------------ embedding
    def contraction(self, env, s, inside, tj, sizes: SectionSizes | None = None) -> torch.Tensor:
        """T·N_c [N, M, 4] = Σ_j G_t(s_j)ᵀ R̂_j over the slots within r_cut, t = the type of j.

        Training (gradients reach the weights, and forces enter the loss): autograd through
        the embedding nets. Otherwise ``TangentContraction``: G and dG/ds in one forward pass,
        and a backward of two batched matmuls."""
        env, s = env.to(self.net_dtype), s.to(self.net_dtype)
        tangent = not (self.training and torch.is_grad_enabled())
        t_mat = 0
        for t, (s_t, env_t) in enumerate(self.sections(env, s, inside, tj, sizes)):
            if tangent:
                t_mat = t_mat + TangentContraction.apply(s_t, env_t, self, t)
            else:
                g = self.embedding_nets[t](s_t[..., None])
                t_mat = t_mat + torch.einsum("nkm,nkc->nmc", g, env_t)
        return t_mat

    def sections(self, env, s, inside, tj, sizes: SectionSizes | None = None):
        """Per neighbour type t: (s_t [N, k_t], R̂_t [N, k_t, 4]), type t's slots within r_cut
        first, R̂_t zero in the rest (they add nothing to T), as deepmd-kit's per-type ``sel``.

        k_t: with ``sizes`` (no host sync) its fixed width, recording the widths needed;
        else the most such slots of one atom (one host sync)."""
        order, first, counts = slots_by_type(inside, tj, len(self.embedding_nets))
        if sizes is None:
            widths = counts.amax(0).tolist() if counts.numel() else [0] * counts.shape[1]
        else:
            widths = sizes.widths
            sizes.record(counts)
        out = []
        for t, k in enumerate(widths):
            col = torch.arange(k, device=s.device)  # k = 0 still joins the autograd graph
            slot = torch.gather(order, 1, (first[:, t, None] + col).clamp(max=order.shape[1] - 1))
            slot = slot.long()
            valid = (col < counts[:, t, None])[..., None]
            env_t = torch.gather(env, 1, slot[..., None].expand(-1, -1, 4)) * valid
            out.append((torch.gather(s, 1, slot), env_t))
        return out

    def embedding_with_tangent(self, t: int, s: torch.Tensor):
        """(G, dG/ds) [*s.shape, M] of type t's embedding net, no autograd: on a CUDA device
        one Triton launch per layer (``tangent_embedding``) for DeePMD's shape of nets (widths
        w, 2w, 4w, …), else ``ResidualMLP.forward_with_tangent``."""
        net = self.embedding_nets[t]
        if not s.is_cuda:
            return net.forward_with_tangent(s)
        from .tangent_embedding import EmbeddingWeights, embedding_with_tangent, kernel_supports

        if not kernel_supports([layer.out_features for layer in net.layers]):
            return net.forward_with_tangent(s)

        params = [p for net in self.embedding_nets for p in net.parameters()]
        key = (self.net_dtype, *((p.data_ptr(), p._version) for p in params))
        if self._kernel_key != key:  # weights changed (loaded, trained, moved): re-stack them
            self._kernel_weights = EmbeddingWeights(self.embedding_nets, self.net_dtype)
            self._kernel_key = key
        return embedding_with_tangent(s, t, self._kernel_weights)

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


class TangentContraction(torch.autograd.Function):
    """T [N, M, 4] = Σ_k G(s_k)ᵀ R̂_k for one neighbour type's slots, s [N, k], R̂ [N, k, 4].

    The embedding net's input is the scalar s, so dG/ds [N, k, M] comes out of the forward
    pass with G (``embedding_with_tangent``); the backward is then two batched matmuls,
    ∂E/∂R̂ = G·∂E/∂T and ∂E/∂s = Σ_c R̂_c (G'·∂E/∂T)_c, with no reverse pass through the
    net. No gradient reaches the weights (inference: MD, ASE)."""

    @staticmethod
    def forward(ctx, s, env, model, t):
        g, dg = model.embedding_with_tangent(t, s)
        ctx.save_for_backward(env, g, dg)
        return torch.bmm(g.transpose(1, 2), env)

    @staticmethod
    def backward(ctx, grad):
        env, g, dg = ctx.saved_tensors
        grad_s = (torch.bmm(dg, grad) * env).sum(-1)
        return grad_s, torch.bmm(g, grad), None, None


def section_width(most: int) -> int:
    """A fixed section for at most ``most`` slots: 1/16 more (at least 2), rounded up to even
    (the slots within r_cut of one atom vary little in MD)."""
    width = most + max(2, math.ceil(most / 16))
    return width + width % 2


class SectionSizes:
    """DeepPot-SE's per-type section widths for evaluations without host sync
    (``DeepPotSE.fix_sizes``) on the atoms ``numbers`` [N]: ``widths`` [T] ints, ``atoms``
    per type its atom indices, ``seen`` [T] int32 on the device, the most slots of each type
    within r_cut that one atom had in an evaluation since. ``key`` (``key_of``) identifies
    the state's atoms without a host sync."""

    def __init__(self, key: tuple, numbers: torch.Tensor, widths: list[int],
                 atoms: list[torch.Tensor]):
        self.key = key
        self.numbers = numbers
        self.widths = list(widths)
        self.atoms = atoms
        device = atoms[0].device if atoms else None
        self.limit = torch.tensor(self.widths, dtype=torch.int32, device=device)
        self.seen = torch.zeros_like(self.limit)

    @staticmethod
    def key_of(state) -> tuple:
        numbers = state.atomic_numbers
        return (numbers.data_ptr(), numbers._version, state.n_atoms, str(state.device))

    def record(self, counts: torch.Tensor) -> None:
        """Fold the per-type counts [N, T] of one evaluation into ``seen`` (on the device)."""
        if counts.numel():
            torch.maximum(self.seen, counts.amax(0), out=self.seen)

    def overflowed(self) -> torch.Tensor:
        """[] bool: some atom had more slots of a type than its section holds."""
        return (self.seen > self.limit).any()


def slots_by_type(inside: torch.Tensor, tj: torch.Tensor, n_types: int):
    """Each row's slots within r_cut grouped by neighbour type (in slot order), the rest after
    them, with no host sync: ``order`` [N, K], ``start`` and ``count`` [N, T] (int32). By
    counting (a running count per type along the row) rather than sorting each row."""
    n, k = inside.shape
    key = torch.where(inside, tj, n_types)  # [N, K]; n_types: outside r_cut or padding
    if k == 0:
        empty = torch.zeros(n, n_types, dtype=torch.int32, device=inside.device)
        return torch.zeros(n, 0, dtype=torch.int32, device=inside.device), empty, empty
    position = torch.empty_like(key)  # of each slot in the row's new order
    start = torch.zeros(n, dtype=torch.int32, device=key.device)
    starts, counts = [], []
    for t in range(n_types + 1):
        match = key == t
        rank = torch.cumsum(match, 1, dtype=torch.int32)  # [N, K]: 1 + earlier slots of t
        position = torch.where(match, start[:, None] + rank - 1, position)
        starts.append(start)
        counts.append(rank[:, -1])
        start = start + counts[-1]
    slots = torch.arange(k, dtype=torch.int32, device=key.device).expand(n, k)
    order = torch.empty_like(slots).scatter_(1, position, slots)
    return order, torch.stack(starts[:-1], 1), torch.stack(counts[:-1], 1)


def _with(state, positions, cell):
    """A shallow copy of ``state`` with other positions and cell (keeps the autograd graph)."""
    from dataclasses import replace

    return replace(state, positions=positions, cell=cell)
