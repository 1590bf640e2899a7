"""The grouped-by-type neighbour view: per-type sections hold exactly the pairs within the
requested cutoff, sized from the structure; an overflow is flagged on the device and grown at
the next build; cell changes and per-system cutoffs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk

from hayabusa import State
from hayabusa.neighbors import NeighborList, TypedRequest, brute_force_pairs
from hayabusa.neighbors.typed import TypedSections, group_by_type, section_width


def alloy(seed: int = 0, repeat: int = 2) -> State:
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(repeat)
    rng = np.random.default_rng(seed)
    atoms.numbers[rng.random(len(atoms)) < 0.3] = 47
    atoms.rattle(0.15, seed=seed)
    atoms.set_cell(atoms.cell.array @ np.array([[1, 0.1, 0], [0, 1, 0.05], [0.04, 0, 1]]),
                   scale_atoms=True)
    return State.from_atoms([atoms, atoms.repeat((1, 1, 2))])


def typed_pairs(typed) -> set[tuple]:
    rows, cols = torch.nonzero(typed.index >= 0, as_tuple=True)
    return set(zip(rows.tolist(), typed.index[rows, cols].tolist(),
                   map(tuple, typed.shifts[rows, cols].long().tolist()), strict=True))


def pair_set(p) -> set[tuple]:
    return set(zip(p.i.tolist(), p.j.tolist(), map(tuple, p.shift.tolist()), strict=True))


@pytest.mark.parametrize("species", [(29, 47), (47, 29)])
def test_sections_hold_exactly_the_pairs_within_the_cutoff_by_type(species):
    state = alloy()
    request = TypedRequest(3.2, species)
    nl = NeighborList(4.0, skin=0.5)
    nl.request(request)
    nl.build(state)
    typed = nl.typed(state, request)
    expected = pair_set(brute_force_pairs(state.positions, state.cell, state.pbc,
                                          state.system_idx, 3.2))
    assert typed_pairs(typed) == expected
    # Each section holds neighbours of its type, and is sized from the structure.
    z = state.atomic_numbers
    start = 0
    for t, width in enumerate(typed.sel):
        cols = typed.index[:, start:start + width]
        kept = cols[cols >= 0]
        assert bool((z[kept] == species[t]).all())
        most = int((cols >= 0).sum(1).max())
        assert width == section_width(most)
        start += width
    assert torch.equal(typed.types, torch.tensor([species.index(int(x)) for x in z]))
    for t in range(2):
        assert torch.equal(typed.centers[t], torch.nonzero(typed.types == t).flatten())
    assert not bool(nl.overflowed())


def test_group_by_type_keeps_slot_order_and_reports_what_did_not_fit():
    g = torch.Generator().manual_seed(0)
    n, k = 40, 23
    index = torch.randint(0, 100, (n, k), generator=g)
    shifts = torch.randint(-1, 2, (n, k, 3), generator=g).double()
    within = torch.rand(n, k, generator=g) < 0.7
    types = torch.randint(0, 3, (n, k), generator=g)
    sel = (4, 7, 2)
    typed_index, typed_shifts, counts = group_by_type(index, shifts, within, types, sel)
    assert torch.equal(counts, torch.stack([(within & (types == t)).sum(1)
                                            for t in range(3)], 1))
    start = 0
    for t, width in enumerate(sel):
        for i in range(n):
            slots = torch.nonzero(within[i] & (types[i] == t)).flatten()[:width]
            got = typed_index[i, start:start + width]
            assert torch.equal(got[:len(slots)], index[i, slots])
            assert bool((got[len(slots):] == -1).all())
            assert torch.equal(typed_shifts[i, start:start + len(slots)], shifts[i, slots])
        start += width


def test_overflow_is_flagged_then_grown_at_the_next_build():
    state = alloy(1)
    request = TypedRequest(3.2, (29, 47))
    nl = NeighborList(4.0, skin=0.5).build(state)
    good = nl.typed(state, request)
    most = nl.sections[request].seen.tolist()
    nl.sections[request] = TypedSections(request, [m - 1 for m in most], good.types)
    narrow = nl.typed(state, request)
    assert bool(nl.overflowed()) and bool(nl.needs_rebuild(state))
    assert len(typed_pairs(narrow)) < len(typed_pairs(good))  # pairs were dropped, and said so
    nl.update(state)
    grown = nl.typed(state, request)
    assert not bool(nl.overflowed())
    assert typed_pairs(grown) == typed_pairs(good)
    assert grown.sel == tuple(section_width(m) for m in most)


def test_a_changed_cell_makes_the_list_stale_by_the_strain_it_implies():
    """With every atom fixed in the build's fractional frame, only the cell term decides:
    stale when cutoff·‖A − I‖ exceeds the skin (a pair at cutoff + skin can come within the
    cutoff), not for a smaller strain."""
    state = alloy(2)
    nl = NeighborList(3.0, skin=0.3).build(state)
    for strain, stale in ((0.004, False), (0.06, True)):
        moved = state.clone()
        deform = torch.eye(3, dtype=torch.float64) * (1 - strain)
        moved.cell = state.cell @ deform
        moved.positions = state.positions @ deform
        assert bool(nl.needs_rebuild(moved)) == stale
    # Compressed by 6 %, pairs beyond cutoff + skin at the build are now within the cutoff.
    expected = pair_set(brute_force_pairs(moved.positions, moved.cell, moved.pbc,
                                          moved.system_idx, 3.0))
    assert nl.update(moved)
    vec = nl.pair_vectors(moved)
    keep = nl.mask & (vec.norm(dim=-1) < 3.0)
    rows, cols = torch.nonzero(keep, as_tuple=True)
    found = set(zip(rows.tolist(), nl.neighbors[rows, cols].tolist(),
                    map(tuple, nl.shifts[rows, cols].long().tolist()), strict=True))
    assert found == expected


def test_per_system_cutoffs():
    state = alloy(3)
    nl = NeighborList([2.8, 3.4], skin=0.2).build(state)
    rows, cols = torch.nonzero(nl.mask, as_tuple=True)
    got = set(zip(rows.tolist(), nl.neighbors[rows, cols].tolist(),
                  map(tuple, nl.shifts[rows, cols].long().tolist()), strict=True))
    args = (state.positions, state.cell, state.pbc, state.system_idx)

    def of_system(cutoff, s):
        return {p for p in pair_set(brute_force_pairs(*args, cutoff))
                if int(state.system_idx[p[0]]) == s}

    assert got == of_system(3.0, 0) | of_system(3.6, 1)


def test_a_rebuild_keeps_the_sections_tensors_a_graph_reads():
    """A build with unchanged widths and atoms keeps every tensor of the sections (a captured
    CUDA graph keeps reading them: found on an H200, where a rebuild that replaced them let a
    graph read freed memory); a grown section changes the graph key."""
    state = alloy(4)
    request = TypedRequest(3.2, (29, 47))
    nl = NeighborList(4.0, skin=0.5)
    nl.request(request)
    nl.build(state)
    key = nl.graph_key()
    before = nl.sections[request]
    nl.build(state)
    assert nl.sections[request] is before and nl.graph_key() == key
    before.seen += 100  # as if an atom had outgrown its sections
    nl.build(state)
    assert nl.sections[request] is not before and nl.graph_key() != key


def test_training_batches_size_their_sections_exactly():
    """Training frames never move: a batch's sections are as wide as the most neighbours of
    a type one atom has (MD lists add headroom), so no network runs on empty slots."""
    from ase.calculators.emt import EMT

    from hayabusa.train import Frame, FrameSet

    frames = []
    for seed in range(3):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
        atoms.numbers[np.random.default_rng(seed).random(len(atoms)) < 0.3] = 47
        atoms.rattle(0.1, seed=seed)
        atoms.calc = EMT()
        frames.append(Frame(atoms, atoms.get_potential_energy(), atoms.get_forces(), None,
                            str(seed)))
    batch = FrameSet(frames, (29, 47), 4.0).batch([0, 1, 2])
    request = TypedRequest(4.0, (29, 47))
    typed = batch.neighbors.typed(batch.state, request)
    z = batch.state.atomic_numbers
    start = 0
    for t, width in enumerate(typed.sel):
        cols = typed.index[:, start:start + width]
        assert width == int((cols >= 0).sum(1).max()) < section_width(width)
        assert bool((z[cols[cols >= 0]] == (29, 47)[t]).all())
        start += width
