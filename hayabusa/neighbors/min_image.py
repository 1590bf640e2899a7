"""MinImageNeighborList: a column-major int32 neighbor matrix for orthorhombic periodic boxes
at least three list cutoffs wide — the layout the fused GPU kernels read.

Each neighbour appears once and its pair vector is the minimum image of r_j − r_i, so no image
shifts are stored: ``index`` [K, N] int32 (column k holds every atom's k-th neighbour, so the
threads of a kernel read consecutive memory) and ``count`` [N] int32. On a CUDA device the list
is built by a Triton cell-list kernel; elsewhere by ``cell_list_pairs``. It offers the same
views as NeighborList (``neighbors``, ``mask``, ``pair_vectors``) so every potential runs on it.
"""

from __future__ import annotations

import math

import torch

from ..errors import InputError
from .pairs import cell_list_pairs


def min_image_supported(state, list_cutoff: float) -> bool:
    """True when every system is fully periodic, orthorhombic and ≥ 3 list cutoffs wide."""
    cell = state.cell.detach().cpu()
    diagonal = torch.diag_embed(torch.diagonal(cell, dim1=1, dim2=2))
    return bool(state.pbc.all()) and bool(torch.equal(cell, diagonal)) and \
        bool((torch.diagonal(cell, dim1=1, dim2=2) >= 3 * list_cutoff).all())


class MinImageNeighborList:
    kind = "min_image"

    def __init__(self, cutoff: float, skin: float = 0.0, capacity: int = 0,
                 growth: float = 1.25):
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        self.capacity = int(capacity)
        self.growth = growth
        self.n_builds = 0
        self.index: torch.Tensor | None = None  # [K, N] int32
        self.count: torch.Tensor | None = None  # [N] int32
        self.reference_positions: torch.Tensor | None = None
        self.overflow: torch.Tensor | None = None  # [] bool

    @property
    def list_cutoff(self) -> float:
        return self.cutoff + self.skin

    # ------------------------------------------------------------------ build
    def build(self, state) -> MinImageNeighborList:
        if not min_image_supported(state, self.list_cutoff):
            raise InputError("min_image neighbor list: needs fully periodic orthorhombic cells "
                             f"at least 3 × {self.list_cutoff:g} wide")
        n = state.n_atoms
        use_kernel = state.device.type == "cuda"
        while True:
            k = max(self.capacity, 8)
            index = torch.zeros(k, n, dtype=torch.int32, device=state.device)
            count = torch.zeros(n, dtype=torch.int32, device=state.device)
            if use_kernel:
                from .triton_build import build_min_image
                most = build_min_image(state, self.list_cutoff, index, count)
            else:
                most = self._build_reference(state, index, count)
            if most <= k:
                break
            self.capacity = 8 * math.ceil(most * self.growth / 8)
        self.capacity = k
        self._store(index, count, state)
        self.n_builds += 1
        return self

    def _build_reference(self, state, index, count) -> int:
        """Fill ``index``/``count`` from the PyTorch cell list; returns the largest count."""
        pairs = cell_list_pairs(state.positions, state.cell, state.pbc, state.system_idx,
                                self.list_cutoff)
        counts = torch.bincount(pairs.i, minlength=state.n_atoms)
        most = int(counts.max()) if counts.numel() else 0
        slot = torch.arange(pairs.i.numel(), device=pairs.i.device) - \
            (torch.cumsum(counts, 0) - counts)[pairs.i]
        fits = slot < index.shape[0]
        index[slot[fits], pairs.i[fits]] = pairs.j[fits].to(torch.int32)
        count.copy_(torch.clamp(counts, max=index.shape[0]).to(torch.int32))
        return most

    def _store(self, index, count, state) -> None:
        """Keep buffers in place when their shape is unchanged (captured CUDA graphs)."""
        if self.index is not None and self.index.shape == index.shape:
            self.index.copy_(index)
            self.count.copy_(count)
            self.reference_positions.copy_(state.positions)
        else:
            self.index, self.count = index, count
            self.reference_positions = state.positions.detach().clone()
            self.overflow = torch.zeros((), dtype=torch.bool, device=state.device)

    # ---------------------------------------------------------------- updates
    def needs_rebuild(self, state) -> torch.Tensor:
        """[] bool on the device: an atom moved more than skin/2 since the build."""
        ref = self.reference_positions
        if ref is None or ref.shape != state.positions.shape:
            return torch.ones((), dtype=torch.bool, device=state.device)
        disp2 = ((state.positions - ref) ** 2).sum(-1).max()
        return (disp2 > (0.5 * self.skin) ** 2) | self.overflow

    def update(self, state) -> bool:
        if bool(self.needs_rebuild(state)):
            self.build(state)
            return True
        return False

    # ------------------------------------------------------------------ views
    @property
    def mask(self) -> torch.Tensor:
        """[N, K] bool: slot k of atom i holds a neighbour."""
        k = torch.arange(self.index.shape[0], device=self.index.device)
        return k[None, :] < self.count[:, None]

    @property
    def neighbors(self) -> torch.Tensor:
        """[N, K] int64, padded with the atom's own index."""
        own = torch.arange(self.index.shape[1], device=self.index.device)[:, None]
        return torch.where(self.mask, self.index.T.long(), own)

    def pair_vectors(self, state) -> torch.Tensor:
        """[N, K, 3] minimum-image r_j − r_i (zeros in padding slots)."""
        box = torch.diagonal(state.cell, dim1=1, dim2=2)[state.system_idx][:, None, :]
        pos = state.positions
        d = pos[self.neighbors] - pos[:, None, :]
        return d - box * torch.round(d / box)

    # ------------------------------------------------------------- checkpoints
    def buffers(self) -> tuple[torch.Tensor, ...]:
        """The persistent device tensors (a captured CUDA graph reads these)."""
        return (self.index, self.count, self.reference_positions, self.overflow)

    def state_dict(self) -> dict:
        return {"kind": self.kind, "cutoff": self.cutoff, "skin": self.skin,
                "capacity": self.capacity,
                "n_builds": self.n_builds, "index": self.index, "count": self.count,
                "reference_positions": self.reference_positions, "overflow": self.overflow}

    def load_state_dict(self, d: dict, device=None) -> None:
        if (d.get("kind"), d["cutoff"], d["skin"]) != (self.kind, self.cutoff, self.skin):
            return
        for key, value in d.items():
            setattr(self, key, value.to(device) if isinstance(value, torch.Tensor) else value)
