"""Property-based neighbor lists (hypothesis): on random batches of cells — triclinic, strongly
skewed, boxes whose widths are near 2·cutoff, thinner than the cutoff, mixed and open
periodicity (zero cell rows along open directions), atoms far outside the cell — the cell list
and the dense matrix of ``NeighborList.build`` hold exactly brute force's pairs (i, j, shift).

Pairs within 1e-9 of the cutoff may fall either way (the searches round differently); every
other pair must match: brute(r_c − 1e-9) ⊆ found ⊆ brute(r_c + 1e-9).
"""

import numpy as np
from ase.geometry import complete_cell
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_neighbors import batch_tensors, dense_pair_set, make_state, pair_set

from hayabusa.neighbors import NeighborList, brute_force_pairs, cell_list_pairs

# kind: (cell lengths / cutoff, largest off-diagonal / diagonal, periodicity)
KINDS = {
    "triclinic": ((1.0, 3.0), 0.5, "periodic"),
    "skewed": ((1.0, 2.5), 3.0, "periodic"),  # very thin cells
    "near_2rc": ((1.9, 2.1), 0.05, "periodic"),  # widths near 2·cutoff
    "thin": ((0.3, 0.9), 0.3, "periodic"),  # several images of one neighbour
    "mixed": ((0.5, 2.5), 0.5, "mixed"),
    "open": ((0.5, 2.5), 0.3, "open"),
}
DELTA = 1e-9


@st.composite
def system(draw, cutoff: float):
    """positions [n, 3], cell [3, 3], pbc [3] of one system (atoms and rotation from a drawn
    seed)."""
    (low, high), skew, periodicity = KINDS[draw(st.sampled_from(sorted(KINDS)))]
    cell = np.diag([draw(st.floats(low, high)) * cutoff for _ in range(3)])
    for i, j in ((1, 0), (2, 0), (2, 1)):
        cell[i, j] = draw(st.floats(-skew, skew)) * cell[i, i]
    pbc = np.array({"periodic": [True] * 3, "open": [False] * 3}.get(periodicity) or
                   draw(st.lists(st.booleans(), min_size=3, max_size=3)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    cell = cell @ (q * np.sign(np.diag(r)))  # rotated: no cell vector along an axis
    if draw(st.booleans()):  # a zero row along an open direction is allowed
        cell[~pbc] = 0.0
    n_atoms = int(rng.integers(1, 5 if high < 1 else 25))
    frac = rng.random((n_atoms, 3))
    frac[:, ~pbc] = rng.uniform(-1.5, 2.5, size=(n_atoms, int((~pbc).sum())))
    if draw(st.booleans()):  # unwrapped: atoms several cells away along periodic directions
        frac[:, pbc] += rng.integers(-4, 5, size=(n_atoms, int(pbc.sum())))
    return frac @ complete_cell(cell), cell, pbc


@st.composite
def batch(draw):
    cutoff = draw(st.floats(1.0, 3.0))
    return draw(st.lists(system(cutoff), min_size=1, max_size=4)), cutoff


def brute_bounds(args, cutoff) -> tuple[set, set]:
    return (pair_set(brute_force_pairs(*args, cutoff - DELTA)),
            pair_set(brute_force_pairs(*args, cutoff + DELTA)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch())
def test_cell_list_equals_brute_force(case):
    systems, cutoff = case
    args = batch_tensors(systems)
    inner, outer = brute_bounds(args, cutoff)
    found = pair_set(cell_list_pairs(*args, cutoff))
    assert inner <= found <= outer, (len(inner - found), len(found - outer))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch(), st.floats(0.0, 0.5))
def test_neighbor_list_dense_matrix_equals_brute_force(case, skin_fraction):
    systems, cutoff = case
    state = make_state(systems)
    skin = skin_fraction * cutoff
    nl = NeighborList(cutoff=cutoff - skin, skin=skin).build(state)
    inner, outer = brute_bounds((state.positions, state.cell, state.pbc, state.system_idx),
                                cutoff)
    found = dense_pair_set(nl)
    assert inner <= found <= outer, (len(inner - found), len(found - outer))
