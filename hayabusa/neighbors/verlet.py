"""VerletList: what every neighbor list with a Verlet skin shares — its rebuild policy, its
capacities and their regrowth, the grouped-by-type view models read, and checkpoints.

Rebuild policy (decided here and nowhere else). Since the last build, let A = H⁻¹·H_ref per
system (H the cell rows now, H_ref at the build), δ_i = |r_i·A − r_i,ref| (the displacement of
atom i measured in the build's cell) and ε = ‖A − I‖_F. A pair beyond cutoff + skin at the
build is still beyond the cutoff now while 2·max δ + cutoff·ε ≤ skin, so the list is stale when
the *effective displacement* max_i(δ_i + cutoff·ε/2) exceeds skin/2 (for a fixed cell: an atom
moved more than skin/2, the classic criterion). A list is also stale when a buffer overflowed
(more neighbours than its capacity, or than a type section's width); the next build grows it,
on the host and outside any CUDA graph.

Three ways to keep a list valid:
- ``update(state)`` (eager steps): every ``check_every`` calls, read the device flag (one host
  sync) and rebuild if stale. With ``check_every`` > 1 a check that finds the list already
  stale counts as a *dangerous build* (pairs may have been missed, LAMMPS' term).
- In blocks of steps with no host sync (``md.StepBlocks``): ``before_block`` rebuilds when the
  list is stale now or will be before the block ends, judged by how fast the effective
  displacement grew during the last block; ``check(state)`` folds "stale now" into a device
  flag at every force call; ``block_status`` packs that flag and the displacement into one
  tensor that the host reads once per block and hands back to ``after_block``.
- ``build(state)``: unconditionally (after an undone block).
"""

from __future__ import annotations

import abc

import torch

from ..errors import InputError
from .typed import TypedNeighbors, TypedRequest, TypedSections, group_by_type, type_counts


def gather_rows(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values[index] [N, K, D] for values [M, D] and index [N, K], by index_select: its
    backward adds with atomics (index_add_), where advanced indexing's sorts the indices first
    (0.35 ms of a DeepPot-SE force call on 10,976 atoms, H200)."""
    return values.index_select(0, index.reshape(-1)).view(index.shape[0], index.shape[1],
                                                          values.shape[-1])


def inverse3x3(m: torch.Tensor) -> torch.Tensor:
    """[..., 3, 3] inverse by cofactors: elementwise, no host sync (graph-safe)."""
    a, b, c = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    d, e, f = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    g, h, i = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    cof = torch.stack([e * i - f * h, c * h - b * i, b * f - c * e,
                       f * g - d * i, a * i - c * g, c * d - a * f,
                       d * h - e * g, b * g - a * h, a * e - b * d], -1).reshape(m.shape)
    det = a * cof[..., 0, 0] + b * cof[..., 1, 0] + c * cof[..., 2, 0]
    return cof / det[..., None, None]


class VerletList(abc.ABC):
    """Subclasses set ``kind`` and ``buffer_names`` and implement ``_build(state)`` and
    ``slots(state)``."""

    kind = ""
    buffer_names: tuple[str, ...] = ()
    #: type sections get room to grow (atoms move); a list over fixed frames sizes them exactly
    section_headroom = True

    def __init__(self, cutoff: float, skin: float = 0.0, capacity: int = 0,
                 growth: float = 1.25, check_every: int = 1):
        if not cutoff > 0 or not skin >= 0:
            raise InputError(f"neighbor list: cutoff must be > 0 and skin >= 0, "
                             f"got cutoff={cutoff}, skin={skin}")
        if int(check_every) < 1:
            raise InputError(f"neighbor list: check_every must be >= 1, got {check_every}")
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        self.capacity = int(capacity)
        self.growth = growth
        self.check_every = int(check_every)
        self.n_builds = 0
        self.dangerous_builds = 0
        self.updates = 0  # calls of update(); checks happen every check_every of them
        self.reference_positions: torch.Tensor | None = None  # [N, 3] at the last build
        self.reference_cell: torch.Tensor | None = None  # [S, 3, 3] at the last build
        self.overflow: torch.Tensor | None = None  # [] bool: more neighbours than capacity
        self.stale: torch.Tensor | None = None  # [] int32 flag, set by check() within a block
        self.requests: list[TypedRequest] = []  # grouped-by-type views to serve
        self.sections: dict[TypedRequest, TypedSections] = {}  # their sizes, set at builds
        self._moved: tuple | None = None  # (effective displacement, its positions' version)
        self._moved_before = 0.0  # the same at the end of the block before
        for name in self.buffer_names:
            setattr(self, name, None)

    @property
    def list_cutoff(self) -> float:
        return self.cutoff + self.skin

    # ------------------------------------------------------------------ build
    def build(self, state) -> VerletList:
        """Build from scratch (host-driven): capacities grow until everything fits."""
        self._build(state)
        self.reference_positions = _keep(self.reference_positions, state.positions)
        self.reference_cell = _keep(self.reference_cell, state.cell)
        self.stale = _keep(self.stale, torch.zeros((), dtype=torch.int32, device=state.device))
        self._size_sections(state)
        self.n_builds += 1
        self._moved, self._moved_before = None, 0.0
        return self

    @abc.abstractmethod
    def _build(self, state) -> None:
        """Fill the buffers for ``state``, growing the capacity until every pair fits."""

    def request(self, request: TypedRequest) -> None:
        """Serve the grouped-by-type view ``request`` (sized at the next build)."""
        if request.cutoff > self.cutoff:
            raise InputError(f"neighbor list: a model asks for neighbours within "
                             f"{request.cutoff:g}, the list holds {self.cutoff:g}")
        if request not in self.requests:
            self.requests.append(request)

    def _size_sections(self, state, slots=None) -> None:
        """Set (first build) or grow (later builds) each type section from the neighbours
        within its cutoff now and the most seen since (host side); ``slots``: this state's
        ``slots(state)`` if already made."""
        if not self.requests:
            return
        with torch.no_grad():
            neighbors, _, mask, vec = slots if slots is not None else self.slots(state)
            r2 = (vec * vec).sum(-1)
        for request in self.requests:
            types = request.types_of(state.atomic_numbers)
            old = self.sections.get(request) or TypedSections(request, [0] * request.n_types,
                                                              types)
            counts = type_counts(mask & (r2 < request.cutoff ** 2), types[neighbors],
                                 request.n_types)
            sel = old.grown(counts, self.section_headroom)
            if request in self.sections and list(old.sel) == sel and \
                    old.types.shape == types.shape and torch.equal(old.types, types):
                old.seen.zero_()  # the same tensors: a captured graph keeps reading them
            else:
                self.sections[request] = TypedSections(request, sel, types)

    # ---------------------------------------------------------------- policy
    def effective_displacement(self, state) -> torch.Tensor:
        """[] on the device: max over atoms of δ_i + cutoff·ε/2 (module docstring)."""
        ref, ref_cell = self.reference_positions, self.reference_cell
        same = (state.cell == ref_cell).flatten(1).all(1)  # [S]: no cell change
        a = inverse3x3(state.cell) @ ref_cell
        eye = torch.eye(3, dtype=a.dtype, device=a.device)
        a = torch.where(same[:, None, None], eye, a)
        strain = torch.linalg.matrix_norm(a - eye)  # [S] Frobenius
        sys = state.system_idx
        mapped = torch.einsum("ni,nij->nj", state.positions, a[sys])
        delta = (mapped - ref).norm(dim=-1) + 0.5 * self.cutoff * strain[sys]
        return delta.max() if delta.numel() else delta.sum()

    def unbuilt(self, state) -> bool:
        """No build yet for a batch of ``state``'s shape (host side, no sync)."""
        ref = self.reference_positions
        return ref is None or ref.shape != state.positions.shape or \
            self.reference_cell.shape != state.cell.shape

    def needs_rebuild(self, state) -> torch.Tensor:
        """[] bool on the device: stale (effective displacement > skin/2) or overflowed."""
        if self.unbuilt(state):
            return torch.ones((), dtype=torch.bool, device=state.device)
        return (self.effective_displacement(state) > 0.5 * self.skin) | self.overflowed()

    def overflowed(self) -> torch.Tensor:
        """[] bool on the device: a buffer or a type section was too small."""
        flag = self.overflow
        for sections in self.sections.values():
            flag = flag | sections.overflowed()
        return flag

    def update(self, state) -> bool:
        """Rebuild if the list is stale or overflowed, checked every ``check_every`` calls
        (one host sync per check); returns whether it rebuilt."""
        first = self.unbuilt(state)
        due = self.updates % self.check_every == 0
        self.updates += 1
        if not (first or due) or not bool(self.needs_rebuild(state)):
            return False
        if not first and self.check_every > 1:
            self.dangerous_builds += 1
        self.build(state)
        return True

    def reset_checks(self) -> None:
        """Clear the device flag that ``check`` sets (in place: inside a block's graph)."""
        self.stale.zero_()

    def check(self, state) -> None:
        """OR "stale now" into the device flag ``stale`` (no host sync; within blocks)."""
        self.stale.bitwise_or_(self.needs_rebuild(state).to(torch.int32))

    def before_block(self, state) -> None:
        """Rebuild before a block of steps when the list is stale now or likely to be before
        the block ends (the growth of the effective displacement over the last block, with a
        margin); host side."""
        if self.unbuilt(state):
            self.build(state)
            return
        version = state.positions._version  # eager steps since the last block move atoms
        moved = self._moved[0] if self._moved is not None and self._moved[1] == version \
            else float(self.effective_displacement(state))
        growth = max(moved - self._moved_before, 0.0)
        if moved + 1.25 * growth > 0.5 * self.skin:
            self._build_for_block(state)
            moved = 0.0
        self._moved_before = moved

    def _build_for_block(self, state) -> None:
        """A rebuild between blocks (subclasses may replay a device build)."""
        self.build(state)

    def block_status(self, state) -> torch.Tensor:
        """[3] float64 on the device: (stale, overflowed, the largest displacement since the
        build). The flags decide; the displacement only guides ``before_block``'s guess (it
        leaves out a cell change, which ``check`` counts), so it is the cheap one."""
        moved = ((state.positions - self.reference_positions) ** 2).sum(-1).max().sqrt()
        return torch.stack([self.stale.to(torch.float64), self.overflowed().to(torch.float64),
                            moved.to(torch.float64)])

    def after_block(self, state, status: list[float]) -> bool:
        """Take the host copy of ``block_status``; returns whether the block was valid."""
        self._moved = (status[2], state.positions._version)
        return not (status[0] or status[1])

    # ------------------------------------------------------------------ views
    @abc.abstractmethod
    def slots(self, state):
        """(neighbors [N, K] int64 by atom, shifts [N, K, 3], mask [N, K], pair vectors
        [N, K, 3]) of the whole list."""

    def typed(self, state, request: TypedRequest) -> TypedNeighbors:
        """The neighbours within ``request.cutoff`` grouped by type in fixed sections (no host
        sync once the sections exist; an unrequested view is sized at once: host sync)."""
        with torch.no_grad():
            slots = neighbors, shifts, mask, vec = self.slots(state)
            if request not in self.sections:
                self.request(request)
                self._size_sections(state, slots)
            sections = self.sections[request]
            within = mask & ((vec * vec).sum(-1) < request.cutoff ** 2)
            index, typed_shifts, counts = group_by_type(
                neighbors, shifts, within, sections.types[neighbors], sections.sel)
            sections.record(counts)
        return TypedNeighbors(index, typed_shifts, sections.sel, sections.types,
                              sections.centers)

    def section_widths(self, request: TypedRequest) -> tuple[int, ...]:
        """The type-section widths of ``request`` (empty before it was sized)."""
        sections = self.sections.get(request)
        return sections.sel if sections is not None else ()

    def buffers(self) -> tuple[torch.Tensor, ...]:
        """The persistent device tensors (a captured CUDA graph reads these)."""
        return tuple(getattr(self, n) for n in (*self.buffer_names, "reference_positions",
                                                 "reference_cell", "overflow", "stale"))

    def graph_key(self) -> tuple:
        """Changes whenever a captured CUDA graph of steps on this list must be recaptured:
        a buffer or a type section replaced (grown, or for other atoms)."""
        sections = [t for s in self.sections.values()
                    for t in (s.types, s.limit, s.seen, *s.centers)]
        return (tuple(0 if t is None else t.data_ptr() for t in self.buffers()),
                tuple(t.data_ptr() for t in sections),
                tuple((r, s.sel) for r, s in self.sections.items()))

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        d = {"kind": self.kind, "cutoff": self.cutoff, "skin": self.skin,
             "capacity": self.capacity, "n_builds": self.n_builds,
             "dangerous_builds": self.dangerous_builds, "updates": self.updates,
             "sections": [(r.cutoff, list(r.species), list(s.sel)) for r, s in
                          self.sections.items()]}
        d.update({n: getattr(self, n) for n in (*self.buffer_names, "reference_positions",
                                                 "reference_cell", "overflow")})
        return d

    def load_state_dict(self, d: dict, state) -> None:
        """Restore a saved list for ``state``; one saved by another kind of list or for
        another cutoff or skin is ignored (the next update rebuilds the list)."""
        if (d.get("kind"), d["cutoff"], d["skin"]) != (self.kind, self.cutoff, self.skin) \
                or d.get("reference_cell") is None:
            return
        device = state.device
        for key, value in d.items():
            if key != "sections":
                setattr(self, key, value.to(device) if isinstance(value, torch.Tensor)
                        else value)
        self.stale = torch.zeros((), dtype=torch.int32, device=device)
        self.sections = {}
        for cutoff, species, sel in d.get("sections", []):
            request = TypedRequest(cutoff, tuple(species))
            self.request(request)
            self.sections[request] = TypedSections(request, sel,
                                                   request.types_of(state.atomic_numbers))


def _keep(buffer: torch.Tensor | None, value: torch.Tensor) -> torch.Tensor:
    """``value`` copied into ``buffer`` in place when shapes agree (a captured graph keeps
    reading the same memory), else a new copy."""
    if buffer is not None and buffer.shape == value.shape and buffer.device == value.device \
            and buffer.dtype == value.dtype:
        return buffer.copy_(value)
    return value.detach().clone()
