"""Neighbor lists: the cell list equals brute force, vesin and ASE on random cells; the
padded NeighborList holds exactly the pair set, grows on overflow and keeps every pair within
the cutoff between rebuilds of its Verlet skin."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from ase.geometry import complete_cell
from ase.neighborlist import primitive_neighbor_list

from hayabusa.errors import InputError
from hayabusa.neighbors import NeighborList, brute_force_pairs, cell_list_pairs
from hayabusa.state import State

N_RANDOM_CASES = 240
KINDS = ("cubic", "triclinic", "skewed", "tiny", "mixed", "open", "open_zero_cell", "unwrapped")


# ------------------------------------------------------------------------------ generators
def _random_cell(rng, length: float, skew: float) -> np.ndarray:
    """Lower-triangular-ish cell with diagonal ~length and off-diagonals up to skew*length."""
    cell = np.diag(length * rng.uniform(0.8, 1.2, 3))
    cell[1, 0] = skew * length * rng.uniform(-1, 1)
    cell[2, :2] = skew * length * rng.uniform(-1, 1, 2)
    # A random rotation so that no cell vector is aligned with the axes.
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return cell @ q


def random_system(rng, kind: str, cutoff: float, n_atoms: int):
    """positions [n, 3], cell [3, 3], pbc [3] for one system of the given kind."""
    pbc = np.ones(3, dtype=bool)
    if kind == "cubic":
        cell = np.eye(3) * rng.uniform(0.9, 3.0) * cutoff
    elif kind == "triclinic":
        cell = _random_cell(rng, rng.uniform(1.0, 2.5) * cutoff, 0.4)
    elif kind == "skewed":  # off-diagonals several times the diagonal: very thin cells
        cell = _random_cell(rng, rng.uniform(1.0, 2.0) * cutoff, rng.uniform(1.5, 3.0))
    elif kind == "tiny":  # thinner than the cutoff: several images of the same neighbour
        cell = _random_cell(rng, rng.uniform(0.3, 0.9) * cutoff, 0.3)
        n_atoms = min(n_atoms, 4)
    elif kind == "mixed":
        cell = _random_cell(rng, rng.uniform(0.6, 2.0) * cutoff, 0.3)
        pbc = rng.random(3) < 0.5
        if pbc.all():
            pbc[rng.integers(3)] = False
        if rng.random() < 0.5:  # a zero cell row along a non-periodic direction is allowed
            cell[~pbc] = 0.0
    elif kind in ("open", "open_zero_cell"):
        cell = _random_cell(rng, rng.uniform(0.5, 2.0) * cutoff, 0.3)
        pbc = np.zeros(3, dtype=bool)
        if kind == "open_zero_cell":
            cell = np.zeros((3, 3))
    elif kind == "unwrapped":
        cell = _random_cell(rng, rng.uniform(0.7, 2.0) * cutoff, 0.5)
        pbc = rng.random(3) < 0.8
    else:  # pragma: no cover
        raise ValueError(kind)

    if kind in ("open", "open_zero_cell") or not pbc.any():
        # A cluster: random points in a box whose size sets the density.
        box = rng.uniform(0.5, 2.5) * cutoff
        positions = rng.uniform(-box, box, size=(n_atoms, 3)) + rng.uniform(-50, 50, 3)
        return positions, cell, pbc
    frac = rng.random((n_atoms, 3))
    # Along non-periodic directions atoms may lie anywhere, not only inside the cell.
    frac[:, ~pbc] = rng.uniform(-1.5, 2.5, size=(n_atoms, int((~pbc).sum())))
    if kind == "unwrapped":
        frac += rng.integers(-6, 7, size=(n_atoms, 3))
    basis = complete_cell(cell)
    return frac @ basis, cell, pbc


def random_batch(seed: int):
    """A batch of 1-4 systems of random kinds and sizes (1-atom systems included)."""
    rng = np.random.default_rng(seed)
    cutoff = float(rng.uniform(1.5, 3.5))
    n_systems = int(rng.integers(1, 5))
    systems = []
    for s in range(n_systems):
        kind = KINDS[seed % len(KINDS)] if s == 0 else KINDS[rng.integers(len(KINDS))]
        n_atoms = 1 if rng.random() < 0.15 else int(rng.integers(2, 28))
        systems.append(random_system(rng, kind, cutoff, n_atoms))
    return systems, cutoff


def batch_tensors(systems):
    positions = torch.tensor(np.concatenate([p for p, _, _ in systems]), dtype=torch.float64)
    cell = torch.tensor(np.stack([c for _, c, _ in systems]), dtype=torch.float64)
    pbc = torch.tensor(np.stack([b for _, _, b in systems]))
    system_idx = torch.repeat_interleave(torch.arange(len(systems)),
                                         torch.tensor([len(p) for p, _, _ in systems]))
    return positions, cell, pbc, system_idx


def make_state(systems) -> State:
    positions, cell, pbc, system_idx = batch_tensors(systems)
    n = positions.shape[0]
    return State(positions=positions, velocities=torch.zeros_like(positions),
                 masses=torch.ones(n, dtype=torch.float64),
                 atomic_numbers=torch.full((n,), 18), type_ids=torch.zeros(n, dtype=torch.int64),
                 cell=cell, pbc=pbc, system_idx=system_idx, species=(18,))


# --------------------------------------------------------------------------------- helpers
def as_tuples(i, j, shift) -> list[tuple]:
    i, j, shift = (np.asarray(torch.as_tensor(x).cpu()) for x in (i, j, shift))
    shift = shift.reshape(-1, 3)
    return [(int(a), int(b), *map(int, s)) for a, b, s in zip(i, j, shift, strict=True)]


def pair_set(pairs, *, allow_duplicates: bool = False) -> set[tuple]:
    tuples = as_tuples(pairs.i, pairs.j, pairs.shift)
    if not allow_duplicates:
        assert len(tuples) == len(set(tuples)), "duplicate pairs"
    return set(tuples)


def distances(positions, cell, system_idx, tuples) -> np.ndarray:
    pos = positions.numpy()
    cells = cell.numpy()
    sys = system_idx.numpy()
    t = np.array(tuples, dtype=np.int64).reshape(-1, 5)
    vec = pos[t[:, 1]] - pos[t[:, 0]] + np.einsum("pi,pij->pj", t[:, 2:], cells[sys[t[:, 0]]])
    return np.linalg.norm(vec, axis=1)


def ase_pairs(systems, cutoff) -> set[tuple]:
    """Independent oracle: ASE's primitive neighbor list, one system at a time."""
    out, offset = set(), 0
    for positions, cell, pbc in systems:
        i, j, shift = primitive_neighbor_list("ijS", pbc, complete_cell(cell), positions, cutoff,
                                              self_interaction=False)
        out |= set(as_tuples(i + offset, j + offset, shift))
        offset += len(positions)
    return out


def check_pair_invariants(pairs, positions, cell, pbc, system_idx, cutoff):
    """Every pair within the cutoff, within one system, no self pair, no shift along an open
    direction, i sorted, and (i, j, S) present exactly when (j, i, -S) is."""
    tuples = as_tuples(pairs.i, pairs.j, pairs.shift)
    assert bool((pairs.i[1:] >= pairs.i[:-1]).all())
    s = set(tuples)
    for i, j, *shift in tuples:
        assert system_idx[i] == system_idx[j]
        assert (i, *shift) != (j, 0, 0, 0)
        assert (j, i, *(-x for x in shift)) in s
        assert not any(shift[d] for d in range(3) if not pbc[system_idx[i], d])
    if tuples:
        assert distances(positions, cell, system_idx, tuples).max() < cutoff


# ------------------------------------------------------------------ cell list vs references
@pytest.mark.parametrize("seed", range(N_RANDOM_CASES))
def test_cell_list_equals_brute_force(seed):
    systems, cutoff = random_batch(seed)
    args = batch_tensors(systems)
    cell_pairs = cell_list_pairs(*args, cutoff)
    brute = brute_force_pairs(*args, cutoff)
    assert pair_set(cell_pairs) == pair_set(brute)
    check_pair_invariants(cell_pairs, *args, cutoff)


@pytest.mark.parametrize("seed", range(N_RANDOM_CASES))
def test_cell_list_equals_vesin(seed):
    pytest.importorskip("vesin")
    from hayabusa.neighbors.vesin_backend import vesin_pairs

    systems, cutoff = random_batch(seed)
    args = batch_tensors(systems)
    assert pair_set(cell_list_pairs(*args, cutoff)) == pair_set(vesin_pairs(*args, cutoff))


@pytest.mark.parametrize("seed", range(0, N_RANDOM_CASES, 3))
def test_brute_force_equals_ase(seed):
    """The reference itself against an implementation that shares no code with it."""
    systems, cutoff = random_batch(seed)
    assert pair_set(brute_force_pairs(*batch_tensors(systems), cutoff)) == ase_pairs(
        systems, cutoff)


def test_random_cases_cover_every_kind_and_edge_case():
    """The generator really produces what the randomized tests claim to cover."""
    kinds_seen, n_images, one_atom, far_outside, n_pairs = set(), 0, 0, 0, 0
    for seed in range(N_RANDOM_CASES):
        systems, cutoff = random_batch(seed)
        args = batch_tensors(systems)
        pairs = brute_force_pairs(*args, cutoff)
        n_pairs += pairs.i.numel()
        tuples = as_tuples(pairs.i, pairs.j, pairs.shift)
        ij = [(i, j) for i, j, *_ in tuples]
        n_images += len(ij) - len(set(ij))
        for positions, cell, pbc in systems:
            one_atom += len(positions) == 1
            if pbc.any():
                frac = np.linalg.solve(complete_cell(cell).T, positions.T).T
                far_outside += bool((np.abs(frac[:, pbc]) > 3).any())
        kinds_seen.add(KINDS[seed % len(KINDS)])
    assert kinds_seen == set(KINDS)
    assert n_images > 100 and one_atom > 20 and far_outside > 20 and n_pairs > 10_000


def _lattice_vectors_within(cutoff: float, cell: np.ndarray) -> set[tuple]:
    n = int(np.ceil(cutoff / np.min(np.linalg.svd(cell, compute_uv=False)))) + 1
    out = set()
    for shift in itertools.product(range(-n, n + 1), repeat=3):
        if any(shift) and np.linalg.norm(np.array(shift) @ cell) < cutoff:
            out.add((0, 0, *shift))
    return out


@pytest.mark.parametrize("cutoff, n_expected", [(0.8, 12), (1.1, 18), (1.3, 42), (1.5, 54)])
def test_fcc_primitive_cell_shells(cutoff, n_expected):
    """One atom in the skewed fcc primitive cell (a=1.6): its own images are the fcc shells
    (12 at a/√2, 6 at a, 24 at a√(3/2), 12 at a√2)."""
    a = 1.6
    cell = 0.5 * a * np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    positions = np.array([[0.3, -0.2, 0.1]])
    args = batch_tensors([(positions, cell, np.ones(3, dtype=bool))])
    pairs = pair_set(cell_list_pairs(*args, cutoff * a))
    assert len(pairs) == n_expected
    assert pairs == _lattice_vectors_within(cutoff * a, cell)


def test_tiny_cubic_cell_counts_lattice_points():
    """Unit cube, one atom, cutoff 2.5: every nonzero integer vector shorter than 2.5."""
    args = batch_tensors([(np.array([[0.5, 0.5, 0.5]]), np.eye(3), np.ones(3, dtype=bool))])
    pairs = pair_set(cell_list_pairs(*args, 2.5))
    n_expected = sum(1 for n in itertools.product(range(-3, 4), repeat=3)
                     if 0 < sum(x * x for x in n) < 6.25)
    assert len(pairs) == n_expected == 80


def test_no_pbc_far_apart_and_empty():
    """Two open systems: a dimer closer than the cutoff and one farther; a lone atom."""
    systems = [
        (np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.9]]), np.zeros((3, 3)), np.zeros(3, bool)),
        (np.array([[5.0, 5.0, 5.0], [5.0, 5.0, 7.1]]), np.zeros((3, 3)), np.zeros(3, bool)),
        (np.array([[1e4, -1e4, 3.0]]), np.zeros((3, 3)), np.zeros(3, bool)),
    ]
    for search in (cell_list_pairs, brute_force_pairs):
        assert pair_set(search(*batch_tensors(systems), 2.0)) == {(0, 1, 0, 0, 0),
                                                                   (1, 0, 0, 0, 0)}


# --------------------------------------------------------------------------- NeighborList
def dense_pair_set(nl: NeighborList) -> set[tuple]:
    rows, cols = torch.nonzero(nl.mask, as_tuple=True)
    shifts = nl.shifts[rows, cols]
    assert torch.equal(shifts, shifts.round()), "shifts must hold integers"
    tuples = as_tuples(rows, nl.neighbors[rows, cols], shifts.round().to(torch.int64))
    assert len(tuples) == len(set(tuples))
    return set(tuples)


def dense_batch(seed: int, n_systems: int = 3):
    rng = np.random.default_rng(1000 + seed)
    kinds = ("triclinic", "tiny", "mixed", "open", "unwrapped", "skewed")
    systems = [random_system(rng, kinds[(seed + s) % len(kinds)], 2.0, int(rng.integers(1, 30)))
               for s in range(n_systems)]
    return make_state(systems)


@pytest.mark.parametrize("backend", ["cell", "brute", "vesin"])
@pytest.mark.parametrize("seed", range(4))
def test_dense_matrix_holds_exactly_the_pairs(seed, backend):
    if backend == "vesin":
        pytest.importorskip("vesin")
    state = dense_batch(seed)
    nl = NeighborList(cutoff=1.6, skin=0.4, backend=backend).build(state)
    args = (state.positions, state.cell, state.pbc, state.system_idx)
    expected = pair_set(brute_force_pairs(*args, 2.0))
    assert dense_pair_set(nl) == expected
    assert pair_set(nl.edges().compact()) == expected
    # Padding slots point at the atom itself, are masked out and carry zero shifts.
    own = torch.arange(state.n_atoms)[:, None].expand_as(nl.neighbors)
    assert torch.equal(nl.neighbors[~nl.mask], own[~nl.mask])
    assert not nl.shifts[~nl.mask].any()
    assert nl.mask.sum(1).max() <= nl.capacity == nl.neighbors.shape[1]
    # pair_vectors gives r_j + S·cell − r_i.
    rows, cols = torch.nonzero(nl.mask, as_tuple=True)
    vec = nl.pair_vectors(state)[rows, cols]
    tuples = as_tuples(rows, nl.neighbors[rows, cols], nl.shifts[rows, cols].long())
    assert np.allclose(vec.norm(dim=-1).numpy(),
                       distances(state.positions, state.cell, state.system_idx, tuples))
    assert not bool(nl.overflow)


def test_overflow_grows_capacity_and_drops_nothing():
    state = dense_batch(0)
    nl = NeighborList(cutoff=2.0, capacity=1)
    nl.build(state)
    counts = torch.bincount(brute_force_pairs(state.positions, state.cell, state.pbc,
                                              state.system_idx, 2.0).i, minlength=state.n_atoms)
    assert counts.max() > 1
    assert nl.capacity >= int(counts.max()) > 1
    assert torch.equal(nl.mask.sum(1), counts)
    assert not bool(nl.overflow) and not bool(nl.needs_rebuild(state))
    first_capacity = nl.capacity

    # Compress the system: more neighbours per atom than the buffer holds → it grows again.
    dense = state.clone()
    dense.positions = state.positions * 0.6
    dense.cell = state.cell * 0.6
    assert nl.update(dense)
    counts = torch.bincount(brute_force_pairs(dense.positions, dense.cell, dense.pbc,
                                              dense.system_idx, 2.0).i, minlength=dense.n_atoms)
    assert int(counts.max()) > first_capacity
    assert nl.capacity >= int(counts.max())
    assert dense_pair_set(nl) == pair_set(brute_force_pairs(
        dense.positions, dense.cell, dense.pbc, dense.system_idx, 2.0))


def _fcc_like_state(seed: int) -> State:
    """A dense periodic triclinic liquid-like configuration (min distance ~0.8)."""
    rng = np.random.default_rng(seed)
    n = 4
    grid = np.array(list(itertools.product(range(n), repeat=3)), dtype=float)
    cell = np.diag([n * 1.1] * 3)
    cell[1, 0], cell[2, 0], cell[2, 1] = 0.9, -0.5, 0.7
    positions = (grid + 0.12 * rng.normal(size=grid.shape)) / n @ cell
    return make_state([(positions, cell, np.ones(3, dtype=bool))])


def pairs_within(nl: NeighborList, state: State, cutoff: float) -> set[tuple]:
    """Pairs of the current list closer than ``cutoff`` at the current positions."""
    vec = nl.pair_vectors(state)
    keep = nl.mask & (vec.norm(dim=-1) < cutoff)
    rows, cols = torch.nonzero(keep, as_tuple=True)
    return set(as_tuples(rows, nl.neighbors[rows, cols], nl.shifts[rows, cols].long()))


def test_verlet_skin_keeps_every_pair_until_rebuild():
    cutoff, skin = 2.0, 0.5
    state = _fcc_like_state(1)
    nl = NeighborList(cutoff=cutoff, skin=skin)
    assert nl.update(state) and nl.n_builds == 1
    rng = np.random.default_rng(7)
    moved = state.clone()
    for _ in range(5):
        # Random displacements, each below skin/2 from the build positions; atoms cross the
        # periodic boundaries unwrapped.
        direction = torch.tensor(rng.normal(size=(state.n_atoms, 3)))
        direction /= direction.norm(dim=1, keepdim=True)
        length = torch.tensor(rng.uniform(0, 0.499 * skin, size=(state.n_atoms, 1)))
        moved.positions = state.positions + direction * length
        assert not bool(nl.needs_rebuild(moved))
        assert not nl.update(moved) and nl.n_builds == 1
        expected = pair_set(brute_force_pairs(moved.positions, moved.cell, moved.pbc,
                                              moved.system_idx, cutoff))
        assert pairs_within(nl, moved, cutoff) == expected

    # One atom beyond skin/2: the device flag says so and update rebuilds.
    moved.positions = state.positions.clone()
    moved.positions[5] += torch.tensor([0.0, 0.0, 0.51 * skin], dtype=torch.float64)
    assert bool(nl.needs_rebuild(moved))
    assert nl.update(moved) and nl.n_builds == 2
    assert torch.equal(nl.reference_positions, moved.positions)
    assert dense_pair_set(nl) == pair_set(brute_force_pairs(
        moved.positions, moved.cell, moved.pbc, moved.system_idx, cutoff + skin))


def test_skin_rebuild_criterion_is_needed():
    """Negative control: a dimer just outside cutoff+skin whose atoms each move 0.6·skin
    towards each other comes within the cutoff; the list misses it, so a rebuild must be
    requested — and after it the pair is there."""
    cutoff, skin = 2.0, 0.4
    positions = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, cutoff + skin + 0.01]])
    state = make_state([(positions, np.zeros((3, 3)), np.zeros(3, dtype=bool))])
    nl = NeighborList(cutoff=cutoff, skin=skin).build(state)
    assert dense_pair_set(nl) == set()
    moved = state.clone()
    moved.positions = state.positions + torch.tensor([[0, 0, 0.6 * skin], [0, 0, -0.6 * skin]],
                                                     dtype=torch.float64)
    assert pairs_within(nl, moved, cutoff) == set()  # the stale list would miss the pair
    assert bool(nl.needs_rebuild(moved))
    assert nl.update(moved)
    assert pairs_within(nl, moved, cutoff) == {(0, 1, 0, 0, 0), (1, 0, 0, 0, 0)}


def test_needs_rebuild_when_atom_count_changes():
    nl = NeighborList(cutoff=2.0, skin=0.3).build(dense_batch(1, n_systems=1))
    assert bool(nl.needs_rebuild(dense_batch(2, n_systems=2)))


@pytest.mark.parametrize("seed", range(4))
def test_half_mask_selects_each_pair_once(seed):
    state = dense_batch(seed)
    nl = NeighborList(cutoff=2.0, skin=0.2).build(state)
    full = dense_pair_set(nl)
    half_tuples = as_tuples(*_masked(nl, nl.half_mask()))
    half = set(half_tuples)
    assert len(half_tuples) == len(half) and 2 * len(half) == len(full)
    for i, j, *s in full:
        reverse = (j, i, *(-x for x in s))
        assert ((i, j, *s) in half) != (reverse in half)
    assert any(i == j for i, j, *_ in half), "the case should contain self images"
    assert set(as_tuples(*_fields(nl.edges(half=True).compact()))) == half
    assert set(as_tuples(*_fields(nl.edges().compact()))) == full
    # Summing a symmetric pair function over the half list gives half the full sum.
    r = nl.pair_vectors(state).norm(dim=-1)
    assert torch.allclose((r * nl.half_mask()).sum() * 2, (r * nl.mask).sum())


def _masked(nl, mask):
    rows, cols = torch.nonzero(mask, as_tuple=True)
    return rows, nl.neighbors[rows, cols], nl.shifts[rows, cols].round().long()


def _fields(pairs):
    return pairs.i, pairs.j, pairs.shift


def test_constructor_rejects_bad_input():
    with pytest.raises(InputError, match="cutoff"):
        NeighborList(cutoff=0.0)
    with pytest.raises(InputError, match="skin"):
        NeighborList(cutoff=1.0, skin=-0.1)
    with pytest.raises(InputError, match="backend"):
        NeighborList(cutoff=1.0, backend="octree")


@pytest.mark.parametrize("seed", range(0, N_RANDOM_CASES, 20))
def test_cell_list_in_small_chunks(seed, monkeypatch):
    """The chunked candidate loop (taken for large systems) gives the same pairs."""
    import hayabusa.neighbors.pairs as pairs_module

    systems, cutoff = random_batch(seed)
    args = batch_tensors(systems)
    expected = pair_set(brute_force_pairs(*args, cutoff))
    monkeypatch.setattr(pairs_module, "_CHUNK_CANDIDATES", 50)
    assert pair_set(cell_list_pairs(*args, cutoff)) == expected
