"""State: conversion from and to ASE (units, masses, cells, pbc), species mapping, validation
messages that name the system and atom, dtype casts and wrapping."""

from __future__ import annotations

import ase
import ase.units
import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

from hayabusa.errors import InputError
from hayabusa.state import State
from hayabusa.units import METAL


def _structures() -> list[ase.Atoms]:
    rng = np.random.default_rng(3)
    cu = bulk("Cu", "fcc", a=3.6) * (2, 2, 1)
    cu.cell[2] += [0.7, -0.4, 0.0]  # triclinic
    cu.rattle(0.05, seed=1)
    water = molecule("H2O")  # no cell, no pbc
    slab = bulk("NaCl", "rocksalt", a=5.6, cubic=True)
    slab.pbc = [True, True, False]
    slab.positions += [0.0, 0.0, 30.0]  # far outside the cell along the open direction
    slab.set_masses(rng.uniform(5.0, 50.0, len(slab)))  # masses need not be the default
    structures = [cu, water, slab]
    for atoms in structures:
        atoms.set_velocities(rng.normal(scale=0.05, size=(len(atoms), 3)))
    return structures


def test_round_trip_through_ase():
    structures = _structures()
    state = State.from_atoms(structures)
    assert state.n_systems == 3 and state.n_atoms == sum(len(a) for a in structures)
    assert state.n_atoms_per_system.tolist() == [len(a) for a in structures]
    assert state.dtype == torch.float64
    back = state.to_atoms()
    for a, b in zip(structures, back, strict=True):
        assert np.array_equal(a.numbers, b.numbers)
        assert np.allclose(a.positions, b.positions, rtol=0, atol=1e-12)
        assert np.allclose(a.get_velocities(), b.get_velocities(), rtol=1e-12, atol=0)
        assert np.allclose(a.get_masses(), b.get_masses(), rtol=1e-12, atol=0)
        assert np.allclose(a.cell.array, b.cell.array, rtol=0, atol=1e-12)
        assert np.array_equal(a.pbc, b.pbc)
        assert np.isclose(a.get_kinetic_energy(), b.get_kinetic_energy(), rtol=1e-12)


def test_velocities_are_angstrom_per_fs():
    """The kinetic energy ½ m v² (amu Å²/fs² → eV) equals ASE's; 1 Å/fs = 1/ase.units.fs in
    ASE's velocity unit."""
    structures = _structures()
    state = State.from_atoms(structures)
    ke = 0.5 * (state.masses[:, None] * state.velocities**2).sum(1) * METAL.mvv2e
    per_system = torch.zeros(3, dtype=torch.float64).index_add_(0, state.system_idx, ke)
    expected = [a.get_kinetic_energy() for a in structures]
    assert np.allclose(per_system.numpy(), expected, rtol=1e-12)
    # An atom moving at 1 Å/fs in ASE units.
    atoms = ase.Atoms("Ar", positions=[[0, 0, 0]], velocities=[[1 / ase.units.fs, 0, 0]])
    assert torch.allclose(State.from_atoms(atoms).velocities,
                          torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64))
    # Reduced units: numbers pass through unchanged both ways.
    lj = State.from_atoms(structures, units="lj")
    assert np.allclose(lj.velocities.numpy(),
                       np.concatenate([a.get_velocities() for a in structures]), rtol=1e-15)
    assert np.allclose(lj.to_atoms(units="lj")[0].get_velocities(),
                       structures[0].get_velocities(), rtol=1e-15)


def test_default_species_are_sorted_atomic_numbers():
    state = State.from_atoms(_structures())
    assert state.species == (1, 8, 11, 17, 29)
    expected = [{1: 0, 8: 1, 11: 2, 17: 3, 29: 4}[int(z)] for z in state.atomic_numbers]
    assert state.type_ids.tolist() == expected


@pytest.mark.parametrize("species", [["O", "H"], [8, 1], ["O", "H", "Cu"]])
def test_species_fix_the_type_ids(species):
    water = molecule("H2O")  # O, H, H
    state = State.from_atoms(water, species=species)
    assert state.type_ids.tolist() == [0, 1, 1]
    assert state.species[:2] == (8, 1)


def test_unknown_species_names_system_and_atom():
    structures = [molecule("H2O"), molecule("CH4")]  # CH4: C is atom 0 of system 1
    with pytest.raises(InputError) as info:
        State.from_atoms(structures, species=["H", "O"])
    message = str(info.value)
    assert "system 1, atom 0" in message and "C" in message and "\n" not in message
    with pytest.raises(InputError, match="Xx"):
        State.from_atoms(structures, species=["H", "Xx"])


def _bad_inputs():
    """(structures, expected fragment) for each kind of unusable input."""
    cases = []
    atoms = _structures()
    atoms[2].set_masses([*atoms[2].get_masses()[:5], 0.0, *atoms[2].get_masses()[6:]])
    cases.append(("zero mass", atoms, "system 2, atom 5 has a non-positive mass"))
    atoms = _structures()
    masses = atoms[0].get_masses()
    masses[3] = -1.0
    atoms[0].set_masses(masses)
    cases.append(("negative mass", atoms, "system 0, atom 3 has a non-positive mass"))
    atoms = _structures()
    atoms[1].positions[2, 1] = np.nan
    cases.append(("NaN coordinate", atoms, "system 1, atom 2 has a NaN or infinite coordinate"))
    atoms = _structures()
    atoms[2].positions[0, 0] = np.inf
    cases.append(("inf coordinate", atoms, "system 2, atom 0 has a NaN or infinite coordinate"))
    atoms = _structures()
    velocities = atoms[0].get_velocities()
    velocities[3, 2] = np.nan
    atoms[0].set_velocities(velocities)
    cases.append(("NaN velocity", atoms, "system 0, atom 3 has a NaN or infinite velocity"))
    atoms = _structures()
    atoms[1].cell = [[3.0, 0, 0], [6.0, 0, 0], [0, 0, 4.0]]  # a ∥ b
    atoms[1].pbc = True
    cases.append(("singular cell", atoms, "system 1: the cell vectors along periodic"))
    atoms = _structures()
    atoms[2].pbc = [True, True, True]
    atoms[2].cell[2] = 0.0  # zero vector along a direction that is now periodic
    cases.append(("zero periodic row", atoms, "system 2: the cell vectors along periodic"))
    atoms = _structures()
    atoms.insert(1, ase.Atoms())
    cases.append(("empty system", atoms, "system 1 has no atoms"))
    return cases


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # ASE: momenta / 0
@pytest.mark.parametrize("name, structures, fragment", _bad_inputs(),
                         ids=[c[0] for c in _bad_inputs()])
def test_bad_input_raises_one_line_input_error(name, structures, fragment):
    with pytest.raises(InputError) as info:
        State.from_atoms(structures)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_open_directions_may_have_zero_cell_vectors():
    slab = bulk("Cu", "fcc", a=3.6, cubic=True)
    slab.pbc = [True, False, True]
    slab.cell[1] = 0.0
    State.from_atoms([slab, molecule("H2O")]).validate()  # no error


def test_empty_list_is_an_input_error():
    with pytest.raises(InputError, match="empty"):
        State.from_atoms([])


def test_to_float32_keeps_integer_tensors():
    state = State.from_atoms(_structures())
    low = state.to(dtype=torch.float32)
    for name in ("positions", "velocities", "masses", "cell"):
        assert getattr(low, name).dtype == torch.float32
        assert torch.allclose(getattr(low, name).double(), getattr(state, name), rtol=1e-6)
    for name in ("atomic_numbers", "type_ids", "system_idx"):
        assert getattr(low, name).dtype == torch.int64
        assert torch.equal(getattr(low, name), getattr(state, name))
    assert low.pbc.dtype == torch.bool and torch.equal(low.pbc, state.pbc)
    assert low.species == state.species
    assert state.positions.dtype == torch.float64  # the original is untouched
    back = low.to(dtype=torch.float64)
    assert back.dtype == torch.float64 and back.type_ids.dtype == torch.int64


def test_from_atoms_dtype_argument():
    state = State.from_atoms(_structures(), dtype=torch.float32)
    assert state.positions.dtype == state.cell.dtype == state.masses.dtype == torch.float32
    assert state.type_ids.dtype == state.system_idx.dtype == torch.int64


def test_wrap_along_periodic_directions_only():
    rng = np.random.default_rng(5)
    structures = _structures()
    state = State.from_atoms(structures)
    # Move atoms by many cell vectors (only along periodic directions) and far out of it.
    shifts = np.concatenate([rng.integers(-5, 6, size=(len(a), 3)) * a.pbc for a in structures])
    cells = state.cell[state.system_idx].numpy()
    original = state.positions.clone()
    state.positions = state.positions + torch.tensor(np.einsum("ni,nij->nj", shifts, cells))
    unwrapped = state.positions.clone()
    assert state.wrap() is state
    pbc = state.pbc[state.system_idx].numpy()
    for s, atoms in enumerate(structures):
        sel = (state.system_idx == s).numpy()
        if not atoms.pbc.any():
            assert torch.equal(state.positions[sel], unwrapped[sel])
            continue
        # Fractional coordinates against a completed cell (open directions keep theirs).
        basis = atoms.cell.complete()
        frac = np.linalg.solve(basis.T, state.positions[sel].numpy().T).T
        frac_before = np.linalg.solve(basis.T, unwrapped[sel].numpy().T).T
        periodic = pbc[sel][0]
        assert (frac[:, periodic] >= -1e-12).all() and (frac[:, periodic] < 1).all()
        assert np.allclose(frac[:, ~periodic], frac_before[:, ~periodic], atol=1e-12)
        # Wrapping moved each atom by whole cell vectors.
        moved = frac - np.linalg.solve(basis.T, original[sel].numpy().T).T
        assert np.allclose(moved, np.round(moved), atol=1e-9)
    # The slab lies 30 Å above its cell along the open direction and stays there.
    assert state.positions[state.system_idx == 2][:, 2].min() > 29.0


def test_wrap_tiny_negative_coordinate_lands_at_zero():
    """frac = -1e-17 must wrap to 0 (the next image), not to the excluded value 1."""
    atoms = ase.Atoms("Ar2", positions=[[-1e-17, 0.5, 0.5], [2.0, -3.0 - 1e-16, 0.25]],
                      cell=np.eye(3), pbc=True)
    state = State.from_atoms(atoms).wrap()
    frac = state.positions.numpy()  # unit cube: positions are fractional coordinates
    assert (frac >= 0).all() and (frac < 1).all()
    assert np.allclose(frac, [[0.0, 0.5, 0.5], [0.0, 0.0, 0.25]], atol=1e-15)


def test_clone_is_independent():
    state = State.from_atoms(_structures())
    copy = state.clone()
    copy.positions += 1.0
    copy.type_ids[0] = 3
    assert not torch.equal(copy.positions, state.positions)
    assert state.type_ids[0] != 3


def test_volume_and_sizes():
    structures = _structures()
    state = State.from_atoms(structures)
    assert np.allclose(state.volume[[0, 2]].numpy(),
                       [structures[0].get_volume(), structures[2].get_volume()])
    assert state.volume[1] == 0.0
    assert torch.equal(state.system_idx, torch.tensor(
        sum([[s] * len(a) for s, a in enumerate(structures)], [])))
