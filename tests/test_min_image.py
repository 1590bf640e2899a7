"""MinImageNeighborList (reference build on the CPU): same pairs and potentials as the cell
list; rejected where minimum images are not unique."""

import pytest
import torch

from hayabusa import InputError, State
from hayabusa.builders import kob_andersen_mixture
from hayabusa.md import NoseHooverChain, Simulation, maxwell_boltzmann
from hayabusa.neighbors import NeighborList
from hayabusa.neighbors.min_image import MinImageNeighborList, min_image_supported
from hayabusa.potentials import kob_andersen


def batch():
    systems = [kob_andersen_mixture(n, 1.2, seed=n) for n in (1000, 1331)]
    state = State.from_atoms(systems, units="lj")
    box = state.cell[0, 0, 0]
    state.positions[: 1000 : 2] += 2 * box  # unwrapped images of system 0
    state.positions -= 7.3
    return state


def test_same_pairs_and_forces_as_the_cell_list():
    state = batch()
    ref = NeighborList(2.5, 0.3).build(state)
    mi = MinImageNeighborList(2.5, 0.3).build(state)
    assert torch.equal(mi.mask.sum(1), ref.mask.sum(1))
    for i in range(0, state.n_atoms, 97):
        assert sorted(mi.neighbors[i][mi.mask[i]].tolist()) == \
            sorted(ref.neighbors[i][ref.mask[i]].tolist())
    pot = kob_andersen()
    a, b = pot(state, ref, compute_stress=True), pot(state, mi, compute_stress=True)
    assert torch.allclose(a.forces, b.forces, rtol=0, atol=1e-9)
    assert torch.allclose(a.energy, b.energy, rtol=1e-13)
    assert torch.allclose(a.stress, b.stress, rtol=1e-12, atol=1e-12)


def test_views_by_atom_from_lanes_in_cell_order():
    """The GPU build stores rows and neighbours as lanes (atom order[l]); the views by atom map
    them back. Here a reference list is permuted into that layout by hand."""
    state = batch()
    ref = MinImageNeighborList(2.5, 0.3).build(state)
    lanes = MinImageNeighborList(2.5, 0.3).build(state)
    order = torch.randperm(state.n_atoms, generator=torch.Generator().manual_seed(0))
    lane_of = torch.empty_like(order)
    lane_of[order] = torch.arange(state.n_atoms)
    lanes.order.copy_(order.to(torch.int32))
    lanes.count.copy_(ref.count[order])
    lanes.index.copy_(lane_of[ref.index.long()[:, order]].to(torch.int32))
    assert torch.equal(lanes.mask, ref.mask)
    assert torch.equal(torch.where(ref.mask, lanes.neighbors, -1),
                       torch.where(ref.mask, ref.neighbors, -1))
    assert torch.equal(lanes.pair_vectors(state), ref.pair_vectors(state))


def test_checkpoint_of_another_layout_is_rebuilt():
    """A list saved before the index held lanes (no "layout") is ignored on load."""
    state = batch()
    saved = MinImageNeighborList(2.5, 0.3).build(state).state_dict()
    same = MinImageNeighborList(2.5, 0.3)
    same.load_state_dict(saved, state)
    assert torch.equal(same.index, saved["index"]) and same.packed.shape == (3, state.n_atoms)
    old = MinImageNeighborList(2.5, 0.3)
    old.load_state_dict({k: v for k, v in saved.items() if k != "layout"}, state)
    assert old.index is None and old.reference_positions is None


def test_capacity_grows_from_one():
    state = batch()
    mi = MinImageNeighborList(2.5, 0.3, capacity=1).build(state)
    assert mi.capacity >= int(mi.count.max()) and mi.index.shape[0] == mi.capacity


def test_refuses_boxes_where_images_are_not_unique():
    small = State.from_atoms(kob_andersen_mixture(256, 1.2), units="lj")  # box 5.97 < 3·2.8
    assert not min_image_supported(small, 2.8)
    with pytest.raises(InputError, match="orthorhombic"):
        MinImageNeighborList(2.5, 0.3).build(small)


def test_simulation_on_min_image_list_follows_cell_list():
    def run(backend):
        state = State.from_atoms(kob_andersen_mixture(1000, 1.2, seed=3), units="lj")
        maxwell_boltzmann(state, 0.8, units="lj", seed=1)
        sim = Simulation(state, kob_andersen(), NoseHooverChain(0.002, 0.8, 0.2, units="lj"),
                         units="lj", neighbor_backend=backend)
        sim.run(60)
        return sim

    a, b = run("cell"), run("min_image")
    assert b.forces.neighbors.kind == "min_image" and b.forces.neighbors.n_builds >= 1
    assert (a.state.positions - b.state.positions).abs().max() < 1e-9
