"""MinImageNeighborList: a column-major int32 neighbor matrix for orthorhombic periodic boxes
at least three list cutoffs wide — the layout the fused GPU kernels read.

Each neighbour appears once and its pair vector is the minimum image of r_j − r_i, so no image
shifts are stored: ``index`` [K, N] int32 and ``count`` [N] int32. Rows ("lanes") are in cell
order — lane l belongs to atom ``order[l]`` — and ``index`` holds the *lanes* of the
neighbours, so kernels gather them from positions packed in the same order (``pack``), where a
neighbourhood is a few contiguous rows; ``State`` keeps the user's atom order. Slot k of every
lane is contiguous, so the threads of a kernel read consecutive memory. On a CUDA device the
list is built by a Triton cell-list kernel with no host synchronisation (``build_async``,
which a CUDA graph can capture; between blocks of steps a build is the replay of such a graph)
elsewhere by ``cell_list_pairs`` with lanes = atoms. It offers the same views as NeighborList
(``neighbors``, ``mask``, ``pair_vectors``, ``slots``), by atom, so every potential runs on
it; the image shifts of those views are those of the minimum image.
"""

from __future__ import annotations

import math

import torch

from ..errors import InputError
from .pairs import cell_list_pairs
from .verlet import VerletList, gather_rows


def min_image_supported(state, list_cutoff: float) -> bool:
    """True when every system is fully periodic, orthorhombic and ≥ 3 list cutoffs wide."""
    cell = state.cell.detach().cpu()
    diagonal = torch.diag_embed(torch.diagonal(cell, dim1=1, dim2=2))
    return bool(state.pbc.all()) and bool(torch.equal(cell, diagonal)) and \
        bool((torch.diagonal(cell, dim1=1, dim2=2) >= 3 * list_cutoff).all())


class MinImageNeighborList(VerletList):
    kind = "min_image"
    buffer_names = ("index", "count", "order")  # [K, N] int32; [N] int32; [N] int32
    layout = "lanes"  # what ``index`` holds; a checkpoint with another layout is rebuilt

    def __init__(self, cutoff: float, skin: float = 0.0, capacity: int = 0,
                 growth: float = 1.25, check_every: int = 1):
        super().__init__(cutoff, skin, capacity, growth, check_every)
        self._build_graph: torch.cuda.CUDAGraph | None = None
        self._graph_cell = None  # (cell tensor, its version) the build graph was made for
        self._graph_key = None  # the reference buffer it writes

    # ------------------------------------------------------------------ build
    def _build(self, state) -> None:
        """Build (host-driven): grows the capacity until every neighbour fits."""
        if not min_image_supported(state, self.list_cutoff):
            raise InputError("min_image neighbor list: needs fully periodic orthorhombic cells "
                             f"at least 3 × {self.list_cutoff:g} wide")
        if state.device.type != "cuda":
            self._build_reference(state)
        else:
            self._prepare(state)
            while True:
                self.build_async(state)
                most = int(self.most)  # host sync
                if most <= self.capacity:
                    break
                self.capacity = 8 * math.ceil(most * self.growth / 8)
                self._prepare(state)

    def _build_for_block(self, state) -> None:
        """Between blocks on a GPU: replay a CUDA graph of ``build_async`` (captured at the
        first such build, and again after the box or a buffer changed)."""
        if state.device.type != "cuda":
            return self.build(state)
        cell = (state.cell.data_ptr(), state.cell._version)
        if self._build_graph is None or self._graph_cell != cell or \
                self.reference_positions.data_ptr() != self._graph_key:
            self.build(state)  # host path: sizes the buffers for this box
            self.build_async(state)  # warm-up outside the graph (the same list)
            torch.cuda.synchronize(state.device)
            self._build_graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self._build_graph):
                self.build_async(state)
            self._graph_cell, self._graph_key = cell, self.reference_positions.data_ptr()
        self._build_graph.replay()
        self.reference_cell.copy_(state.cell)
        self.n_builds += 1
        self._moved, self._moved_before = None, 0.0

    def _allocate(self, state, k: int) -> None:
        n, dev = state.n_atoms, state.device
        self.index = torch.zeros(k, n, dtype=torch.int32, device=dev)
        self.count = torch.zeros(n, dtype=torch.int32, device=dev)
        self.order = torch.arange(n, dtype=torch.int32, device=dev)
        self._allocate_packed()
        self.reference_positions = state.positions.detach().clone()
        self.overflow = torch.zeros((), dtype=torch.bool, device=dev)

    def _allocate_packed(self) -> None:
        """The lane-ordered copies that ``pack`` fills, sized like ``index``."""
        n, dev = self.index.shape[1], self.index.device
        self.packed = torch.zeros(3, n, dtype=torch.float64, device=dev)
        self.packed_type = torch.zeros(n, dtype=torch.int32, device=dev)

    def _prepare(self, state) -> None:
        """Fixed-size buffers for ``build_async`` (host work, once per box and capacity)."""
        box = torch.diagonal(state.cell, dim1=1, dim2=2).contiguous()
        key = (state.n_atoms, tuple(box.flatten().tolist()), self.capacity)
        if getattr(self, "_key", None) == key:
            return
        self._key = key
        self.capacity = max(self.capacity, 8)
        self._allocate(state, self.capacity)
        nbins = torch.floor(box / self.list_cutoff).to(torch.int64)  # ≥ 3 (supported)
        per_system = nbins.prod(dim=1)
        self.box = box
        self.nbins = nbins
        self.nbins32 = nbins.to(torch.int32)
        self.bin_offset = torch.cumsum(per_system, 0) - per_system
        self.bin_offset32 = self.bin_offset.to(torch.int32)
        self.bin_count = torch.zeros(int(per_system.sum()), dtype=torch.int32,
                                     device=state.device)
        self.bin3 = torch.zeros(state.n_atoms, 3, dtype=torch.int32, device=state.device)
        self.system32 = state.system_idx.to(torch.int32)
        self.ones = torch.ones(state.n_atoms, dtype=torch.int32, device=state.device)
        self.most = torch.zeros(1, dtype=torch.int32, device=state.device)

    def build_async(self, state) -> None:
        """Build on the GPU with no host synchronisation (can be captured in a CUDA graph).
        ``overflow`` is set on the device when an atom has more neighbours than fit."""
        from .triton_build import launch_build

        sys = state.system_idx
        nb = self.nbins[sys]
        frac = state.positions / self.box[sys]
        bin3 = torch.minimum(((frac - torch.floor(frac)) * nb).to(torch.int64), nb - 1)
        gbin = self.bin_offset[sys] + (bin3[:, 0] * nb[:, 1] + bin3[:, 1]) * nb[:, 2] \
            + bin3[:, 2]
        self.bin3.copy_(bin3)
        self.order.copy_(torch.argsort(gbin))
        self.pack(state)
        self.bin_count.zero_()
        self.bin_count.index_add_(0, gbin, self.ones)
        bin_start = torch.cumsum(self.bin_count, 0, dtype=torch.int32) - self.bin_count
        self.most.zero_()
        launch_build((self.packed, self.system32, self.box, self.nbins32, self.bin_offset32,
                      self.bin3, self.order, bin_start, self.bin_count, self.index, self.count,
                      self.most, state.n_atoms, self.capacity, self.list_cutoff ** 2),
                     state.n_atoms)
        self.reference_positions.copy_(state.positions)
        self.overflow.copy_(self.most[0] > self.capacity)

    def pack(self, state) -> None:
        """Copy positions and types into lane order: ``packed`` [3, N] float64 (x, y, z rows)
        and ``packed_type`` [N] int32 (GPU; the kernels read these)."""
        from .triton_build import pack

        pack(state, self.order, self.packed, self.packed_type)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "layout": self.layout}

    def load_state_dict(self, d: dict, state) -> None:
        if d.get("layout") == self.layout:
            super().load_state_dict(d, state)
            if self.index is not None:
                self._allocate_packed()

    def check(self, state) -> None:
        """As VerletList.check; on a GPU the displacement part is one Triton kernel (the
        positions scaled by the box change, against skin/2 less the box-change margin)."""
        if not state.positions.is_cuda:
            return super().check(state)
        from .triton_build import launch_mark_stale

        launch_mark_stale(state.positions, self.reference_positions, state.system_idx,
                          state.cell, self.reference_cell, self.stale, state.n_atoms,
                          self.skin, self.cutoff)

    def _build_reference(self, state) -> None:
        """Fill the list from the PyTorch cell list (CPU and reference path)."""
        pairs = cell_list_pairs(state.positions, state.cell, state.pbc, state.system_idx,
                                self.list_cutoff)
        counts = torch.bincount(pairs.i, minlength=state.n_atoms)
        most = int(counts.max()) if counts.numel() else 0
        if self.index is None or most > self.capacity or \
                self.index.shape[1] != state.n_atoms:
            self.capacity = max(self.capacity, 8 * math.ceil(most * self.growth / 8), 8)
            self._allocate(state, self.capacity)
        slot = torch.arange(pairs.i.numel(), device=pairs.i.device) - \
            (torch.cumsum(counts, 0) - counts)[pairs.i]
        self.index[slot, pairs.i] = pairs.j.to(torch.int32)
        torch.arange(state.n_atoms, out=self.order)  # lanes are atoms here
        self.count.copy_(counts.to(torch.int32))
        self.reference_positions.copy_(state.positions)

    # ------------------------------------------------------------------ views
    def slots(self, state):
        rows = self._rows_of_atoms()
        mask = self._mask(rows)
        neighbors = self._neighbors(rows, mask)
        pos = state.positions
        d = gather_rows(pos, neighbors) - pos[:, None, :]
        box = torch.diagonal(state.cell, dim1=1, dim2=2)[state.system_idx][:, None, :]
        shifts = -torch.round(d / box)
        return neighbors, shifts, mask, d + shifts * box

    def _rows_of_atoms(self) -> torch.Tensor:
        """[N] the matrix row (lane) of each atom: rows are stored in cell order."""
        lanes = torch.empty_like(self.order)
        lanes[self.order.long()] = torch.arange(self.order.numel(), dtype=self.order.dtype,
                                                device=self.order.device)
        return lanes.long()

    def _mask(self, rows: torch.Tensor) -> torch.Tensor:
        k = torch.arange(self.index.shape[0], device=self.index.device)
        return k[None, :] < self.count[rows][:, None]

    def _neighbors(self, rows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        own = torch.arange(self.index.shape[1], device=self.index.device)[:, None]
        lanes = self.index.T[rows].long()
        return torch.where(mask, self.order.long()[lanes], own)

    @property
    def mask(self) -> torch.Tensor:
        """[N, K] bool: slot k of atom i holds a neighbour."""
        return self._mask(self._rows_of_atoms())

    @property
    def neighbors(self) -> torch.Tensor:
        """[N, K] int64 atom ids by atom, padded with the atom's own index."""
        rows = self._rows_of_atoms()
        return self._neighbors(rows, self._mask(rows))

    def pair_vectors(self, state) -> torch.Tensor:
        """[N, K, 3] minimum-image r_j − r_i (zeros in padding slots)."""
        return self.slots(state)[3]
